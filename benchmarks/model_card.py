"""The model card of shipped weights (docs/models.md), measured from the weights.

    python benchmarks/model_card.py mtwdn-photos [lmfn-photos ...] [--out-dir model_card] [--sheet-dir docs/models]
    python benchmarks/model_card.py --model runs/mtwdn/model.keras --limit 2     # any .keras, quick
    options: --data synthetic levin gopro_dev gopro_pair cbsd68 (default: all)
             --limit N (images per set and sheet photos), --sheet-limit N (sheet photos;
             0: all, whatever --limit says), --repeats N (CPU timing),
             --shared DIR (default ../shared beside the checkout), --no-sheet,
             --ensemble SET [SET ...] (also score those sets with self-ensemble),
             --precision fp32|bf16|auto (the network's precision; default fp32)

For each model it writes OUT_DIR/LABEL.md (the card: the training summary
from the weights' manifest, parameters, 1280x720 CPU time, the metric
table), OUT_DIR/LABEL.json (every number, per image) and
OUT_DIR/LABEL-real_blur_only.jpg (the before/after sheet), and prints the
card. Metrics come from `tfdeblur.evaluate.evaluate_pairs` and
`tfdeblur.protocols` (8-bit outputs; SSIM = per-channel Gaussian SSIM,
`tfdeblur.metrics.SSIM_CONVENTION`); restoring goes through
`tfdeblur.inference.Deblurrer` (photos above its max_pixels are tiled, as
`deblur` does). The sets:

- `synthetic`: the synthetic validation set (`--data synthetic` of eval:
  16 procedural 256x256 pairs).
- `levin`: Levin et al. 2009's 32 gray 255x255 pairs (4 images x 8 real
  kernels). Gray is restored via RGB as `tfdeblur.deblur` does (plane
  replicated, the three outputs averaged). The pairs are linear intensities
  (their blur is a convolution of the stored values), so the input is
  gamma-encoded (1/2.2) for the network and the output decoded (`LinearData`);
  the row below it feeds them as stored. Scored with the `levin`
  protocol (Levin et al.'s `comp_upto_shift`: best shift within +-5 px on
  a quarter-pixel grid, border of 15 px excluded; before 2026-11-27 the
  best integer shift within +-3 px); the blurry input is scored the same way.
- `gopro_dev`: the 11 real 1280x720 GoPro-protocol pairs, whole image.
- `gopro_pair`: the official GoPro test frame GOPR0384_11_00-000001, with
  the published models' released outputs scored beside ours (DMPHN 30.82
  dB, HINet 33.19 dB: measured here from their output files).
- `cbsd68`: the 68 CBSD68 photos (held out from the `photos:` training
  data, ../shared/data/sharp; GLBDN's `globalblur:` phase may use them) x the 8
  Levin kernels, blurred in linear light (gamma 2.2) and quantized to 8
  bits, no noise: deterministic (`tfdeblur.datasets.blur_image`). Scored
  with the `levin` protocol as the Levin pairs (since 2026-11-27), the
  whole-image score beside it: Levin's kernels sit in their arrays by
  their support, not their centre of mass (k6's is 4.3 px off), and a
  blind network restores to the blur's centre of mass, so a perfect
  restoration scores below the blurry input on the whole image for three
  of the eight kernels (`benchmarks/gain_by_extent.py`'s ceiling).

`--ensemble SET ...` scores the named sets a second time through
`Deblurrer(model, ensemble=True)`, what `deblur --ensemble` and
`tfdeblur.deblur(..., ensemble=True)` do (the mean of the 8 flips/rotations,
8x the time), as a row under the plain one. `--uniform-blur SET ...` adds
a row through `Deblurrer(model, scales="auto", kernel_refine=True)`, what
`deblur` and `tfdeblur.deblur` do by default since 2026-11-28 on images of
at least 122 px a side (`tfdeblur.kernel_refine`, guarded: for uniform
blur). `--auto SET ...` adds a row
through `Deblurrer(model, scales="auto")`, what `deblur --no-uniform-blur`
does (1,0.5 for images of 600 px and more on
the shorter side: the 1280x720 GoPro sets; 1,0.5,0.25 from 1200 px; the
others are smaller and score as the plain row). The real_blur_only sheet is restored that way too.

The 1280x720 time is fp32, batch 1, on the CPU (`/CPU:0` even when a GPU
is visible), median of `--repeats` runs after a warm-up
(`tfdeblur.bench`'s timer), with the machine and its load average.
"""
import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SETS = ("synthetic", "levin", "gopro_dev", "gopro_pair", "cbsd68")
GOPRO_FRAME = "GOPR0384_11_00-000001"
# Published models' released outputs on that frame, in ../shared/data/gopro_pair.
PUBLISHED = (("DMPHN (1-2-4-8)", "dmphn1248"), ("SDNet4", "sdnet4"), ("HINet", "hinet"))
SET_TITLES = {
    "synthetic": "synthetic validation (procedural scenes, 256x256)",
    "levin": "Levin et al. 2009 (4 gray images x 8 real kernels; linear data, gamma-encoded for the network; best shift within +-5 px, quarter-pixel, as `comp_upto_shift`)",
    "gopro_dev": "GoPro dev pairs (real, 1280x720)",
    "gopro_pair": f"GoPro test frame {GOPRO_FRAME}",
    "cbsd68": "CBSD68 x 8 Levin kernels (linear light, 8-bit, no noise; Levin's shift search)",
}
SHEET_HEIGHT = 200  # pixels of each downscaled photo on the sheet
SHEET_CROP = 200  # a 1:1 centre crop beside it (ringing and seams show at 1:1)


def _log(text):
    print(text, file=sys.stderr, flush=True)


class GrayViaRGB:
    """`Deblurrer.restore_rgb` as `tfdeblur.deblur` applies it to a gray
    image: the replicated plane restored as RGB, the three outputs averaged
    (returned replicated, so the RGB protocols score the gray result)."""

    def __init__(self, deblurrer):
        self.deblurrer = deblurrer

    def restore_rgb(self, rgb, progress=None):
        out = self.deblurrer.restore_rgb(rgb, progress)
        return np.repeat(out.mean(axis=2, keepdims=True), 3, axis=2)


class LinearData:
    """Restores linear-intensity data with a network trained on display-encoded
    photos: the input is gamma-encoded (x ** (1 / 2.2)) before restoring and
    the output decoded (** 2.2) after. Levin et al.'s pairs are linear: their
    blurry images are the sharp ones convolved with the kernels in the stored
    values (benchmarks/levin_space.py: the stored-value blur fits at 39.9 dB on
    average, blur in the linear light of gamma-2.2-encoded values at 29.2 dB), whereas the
    `photos:` and `globalblur:` training data blur in the linear light of
    encoded photos: fed as stored, a trained network applies its learned
    correction for that encoding to data that never had it."""

    GAMMA = 2.2

    def __init__(self, deblurrer):
        self.deblurrer = deblurrer

    def restore_rgb(self, rgb, progress=None):
        encoded = np.power(np.clip(np.asarray(rgb, np.float64), 0.0, 1.0), 1.0 / self.GAMMA).astype(np.float32)
        out = self.deblurrer.restore_rgb(encoded, progress)
        return np.power(np.clip(out.astype(np.float64), 0.0, 1.0), self.GAMMA).astype(np.float32)


def _data(shared, *parts):
    path = os.path.join(shared, "data", *parts)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} not found (--shared)")
    return path


def cbsd68_pairs(shared, limit=None):
    """(pairs generator, names): every CBSD68 photo blurred by every Levin
    kernel, image-major; deterministic."""
    from tfdeblur import io as tio
    from tfdeblur.datasets import blur_image, load_kernels

    photos = tio.list_images(_data(shared, "cbsd68"))
    kernels = load_kernels(_data(shared, "kernels", "levin09.npz"))
    items = [(p, k) for p in photos for k in range(len(kernels))][:limit]
    names = [f"{os.path.splitext(os.path.basename(p))[0]}_k{k + 1}" for p, k in items]

    def pairs():
        cache = {}
        for path, k in items:
            if path not in cache:
                cache.clear()
                cache[path] = tio.read_image(path, allow_conversion=True)
            sharp = cache[path]
            yield blur_image(sharp, kernels[k], noise_sigma=0, gamma=2.2, quantize=True), sharp

    return pairs(), names


def load_set(name, model, deblurrer, shared, limit=None, fed_as_stored=True):
    """One set of the card, ready to score: (pairs iterator, names, protocol,
    the deblurrer wrapped as the set needs it, extra summary fields)."""
    import itertools

    from tfdeblur import io as tio
    from tfdeblur import protocols
    from tfdeblur.datasets import spec as data_spec
    from tfdeblur.evaluate import evaluate_pairs

    extra = {}
    protocol = "whole"
    if name == "synthetic":
        dataset, _, names = data_spec.evaluation("synthetic")
    elif name in ("levin", "gopro_dev"):
        folder = _data(shared, "levin09_pairs" if name == "levin" else "gopro_dev_pairs")
        dataset, _, names = data_spec.evaluation(f"pairs:{folder}/blur,{folder}/sharp", min_size=model.min_size)
        if name == "levin":
            protocol = "levin"
            stored = GrayViaRGB(deblurrer)
            deblurrer = LinearData(stored)
        if name == "levin" and fed_as_stored:
            # the same pairs fed as stored (the card's row before 2026-11-26)
            as_stored, _, _ = evaluate_pairs(model, itertools.islice(iter(data_spec.evaluation(
                f"pairs:{folder}/blur,{folder}/sharp", min_size=model.min_size)[0]), len(names[:limit])),
                names=names[:limit], protocol=protocol, deblurrer=stored)
            extra["as_stored"] = {"psnr": as_stored["psnr"], "ssim": as_stored["ssim"]}
    elif name == "gopro_pair":
        folder = _data(shared, "gopro_pair")
        sharp = tio.read_image(os.path.join(folder, f"{GOPRO_FRAME}_sharp.png"))
        dataset = [(tio.read_image(os.path.join(folder, f"{GOPRO_FRAME}_blur.png")), sharp)]
        names = [GOPRO_FRAME]
        extra["published"] = {
            label: protocols.score("whole", tio.read_image(os.path.join(folder, f"{GOPRO_FRAME}_out_{tag}.png")), sharp)
            for label, tag in PUBLISHED
        }
    elif name == "cbsd68":
        dataset, names = cbsd68_pairs(shared, limit)
        protocol = "levin"
    else:
        raise ValueError(f"--data must be among {', '.join(SETS)}; got {name!r}")
    names = names[:limit]
    return itertools.islice(iter(dataset), len(names)), names, protocol, deblurrer, extra


def evaluate_set(name, model, deblurrer, shared, limit=None, fed_as_stored=True):
    """The summary and rows of one set (see the module docstring);
    `fed_as_stored=False` skips the Levin set's fed-as-stored row."""
    from tfdeblur.evaluate import evaluate_pairs

    dataset, names, protocol, deblurrer, extra = load_set(name, model, deblurrer, shared, limit, fed_as_stored)
    also = ("whole",) if name == "cbsd68" else ()
    scored, rows, _ = evaluate_pairs(model, dataset, names=names, protocol=protocol, deblurrer=deblurrer, also=also)
    summary = {k: scored[k] for k in ("psnr", "ssim", "input_psnr", "input_ssim", "ssim_matlab",
                                      "input_ssim_matlab", "images", "protocol", "restore_seconds_median")}
    if also:
        summary["also"] = scored["also"]
    summary["gain_db"] = summary["psnr"] - summary["input_psnr"]
    summary.update(extra)
    return summary, rows


def cpu_seconds_720p(model, repeats):
    import tensorflow as tf

    from tfdeblur import bench
    from tfdeblur.inference import inference_fn

    x = np.random.default_rng(0).random((1, 720, 1280, 3), dtype=np.float32)
    with tf.device("/CPU:0"):
        fn = inference_fn(model)
        seconds = bench.median_seconds(lambda: fn(x).numpy(), repeats)
    return {"seconds": seconds, "repeats": repeats, "precision": "fp32", "machine": bench.machine(),
            "load_average": [round(v, 2) for v in os.getloadavg()]}


def _resized(img, height):
    import cv2

    h, w = img.shape[:2]
    if h <= height:
        return img
    return cv2.resize(img, (max(1, round(w * height / h)), height), interpolation=cv2.INTER_AREA)


def _centre_crop(img, side):
    h, w = img.shape[:2]
    y, x = max(0, (h - side) // 2), max(0, (w - side) // 2)
    return img[y : y + side, x : x + side]


def real_blur_sheet(deblurrer, shared, path, limit=None):
    """Before/after sheet of ../shared/data/real_blur_only: per photo, the
    input and output downscaled to SHEET_HEIGHT rows, then a 1:1 centre crop
    of each. Returns the number of photos."""
    from tfdeblur import io as tio

    photos = tio.list_images(_data(shared, "real_blur_only"))[:limit]
    rows, labels = [], []
    for i, photo in enumerate(photos):
        image = tio.read_image_raw(photo)
        out = deblurrer(image, name=photo)
        rgb_in, rgb_out = tio.to_uint8(image[..., :3] if image.ndim == 3 else image), tio.to_uint8(out[..., :3] if out.ndim == 3 else out)
        # SHEET_CROP == SHEET_HEIGHT, so a row shares one height (min(h, 200)).
        crops = [_centre_crop(rgb_in, SHEET_CROP), _centre_crop(rgb_out, SHEET_CROP)]
        row = [_resized(rgb_in, SHEET_HEIGHT), _resized(rgb_out, SHEET_HEIGHT)] + crops
        rows.append(row)
        stem = os.path.splitext(os.path.basename(photo))[0]
        labels.append([f"{stem[:28]} input", "output", "input 1:1", "output 1:1"])
        _log(f"  sheet {i + 1}/{len(photos)} {stem}")
    tio.write_image(path, tio.contact_sheet(rows, labels=labels), jpeg_quality=90)
    return len(photos)


# ------------------------------------------------------------------ the card


def _fmt_seconds(s):
    if s is None:
        return "not recorded"
    if isinstance(s, (int, float)):
        return f"{s / 3600:.1f} h ({s:,.0f} s)" if s >= 3600 else f"{s / 60:.1f} min ({s:,.0f} s)"
    return str(s)


def _machine_text(machine):
    gpus = ", ".join(machine.get("gpus") or [])
    if gpus:  # a GPU leg: the GPU is what timed it
        return f"{gpus} ({machine.get('cores', '?')} CPU cores)"
    amx = {True: "AMX", False: "no AMX"}.get(machine.get("amx"), "AMX not recorded")
    return f"{machine.get('cores', '?')}-core {machine.get('cpu', '?')} ({amx}, no GPU)"


def _leg_text(leg):
    """One leg of a leg log as one line of the card."""
    val = leg.get("val") or {}
    gain = f", held-out photos {val['psnr']:.2f} dB ({val['psnr'] - val['input_psnr']:+.2f})" if val else ""
    lr = leg.get("learning_rate")
    sched = (leg.get("schedule") or {}).get("class", "")
    salvaged = " (salvaged from a checkpoint)" if leg.get("salvaged_from_checkpoint") else ""
    machine = leg.get("machine") or {}
    where = _machine_text(machine) if machine.get("gpus") else f"load average {(machine.get('load_average') or ['?'])[0]}"
    backend = f", {leg['backend']}" if leg.get("backend") else ""
    if leg.get("averaged_from"):  # `legs average`: no training
        sources = ", ".join(str(a.get("leg") or a.get("weights")) for a in leg["averaged_from"])
        return (f"no training: the weight average of legs {sources} (`legs average`), "
                f"{_fmt_seconds(leg.get('wall_seconds'))}, {where}{gain}")
    return (f"{leg.get('steps_done')} steps{salvaged} from {leg.get('init_from')}, seed {leg.get('seed')}, "
            f"crop {leg.get('crop')}, batch {leg.get('batch_size')}, lr {lr:g} {sched}, {leg.get('precision')}, "
            f"{_fmt_seconds(leg.get('wall_seconds'))}, {where}{backend}{gain}")


def card_markdown(result):
    """The model card of one model as markdown (see docs/models.md)."""
    summary = result.get("summary") or {}
    run = result.get("run") or {}
    results = run.get("results") or {}
    lines = [f"### {result['label']}", ""]
    if result.get("kind") == "file":
        lines += [f"Measured from `{result['source']}` (a `.keras` file, not shipped weights).", ""]
    lines += ["| | |", "| --- | --- |"]
    net = f"`{result['preset']}` ({result['class']})" if result.get("preset") else result["class"]
    lines.append(f"| network | {net}, {result['params']:,} parameters |")
    if result.get("weights"):
        w = result["weights"]
        lines.append(f"| weights | {w['dtype']}, {w['bytes'] / 1e6:.2f} MB, sha256 `{w['sha256'][:16]}`; "
                     f"storing {w['dtype']} costs {w['loss_db']:+.4f} dB on {w['check_images']} |")

    def field(key, fallback=None):
        value = summary.get(key, fallback)
        return "not recorded" if value in (None, "", {}) else value

    lines.append(f"| data | {field('data', results.get('data'))} |")
    lines.append(f"| recipe | {field('recipe')} |")
    lines.append(f"| steps | {field('steps', results.get('steps'))} |")
    legs = result.get("legs") or []
    if legs:
        machines = sorted({_machine_text(leg.get("machine") or {}) for leg in legs})
        lines.append(f"| hardware | {'; '.join(machines)} |")
        total = sum(float(leg.get("wall_seconds") or 0) for leg in legs)
        lines.append(f"| wall time | {_fmt_seconds(total)} in {len(legs)} leg(s) |")
        for leg in legs:
            lines.append(f"| leg {leg.get('leg')} | {_leg_text(leg)} |")
    else:
        lines.append(f"| hardware | {field('hardware')} |")
        lines.append(f"| wall time | {_fmt_seconds(summary.get('wall_time', summary.get('wall_seconds', results.get('train_seconds'))))} |")
    for key, value in summary.items():
        if key in ("legs", "last_leg") and legs:
            continue  # one line per leg above
        if key not in ("data", "recipe", "steps", "hardware", "wall_time", "wall_seconds", "metrics"):
            lines.append(f"| {key.replace('_', ' ')} | {value} |")
    if result.get("cpu"):
        c = result["cpu"]
        lines.append(f"| 1280x720 CPU time | {c['seconds']:.2f} s ({c['precision']}, batch 1, median of {c['repeats']}; "
                     f"{c['machine']}, load average {c['load_average'][0]}) |")
    lines += ["", "| set | images | input PSNR / SSIM | output PSNR / SSIM | gain |", "| --- | --- | --- | --- | --- |"]
    for name in SETS:
        s = result["sets"].get(name)
        if s is None:
            continue
        if "skipped" in s:
            lines.append(f"| {SET_TITLES[name]} | skipped: {s['skipped']} | | | |")
            continue
        lines.append(f"| {SET_TITLES[name]} | {s['images']} | {s['input_psnr']:.2f} dB / {s['input_ssim']:.4f} "
                     f"| {s['psnr']:.2f} dB / {s['ssim']:.4f} | **{s['gain_db']:+.2f} dB** |")
        if "ensemble" in s:
            e = s["ensemble"]
            lines.append(f"| &nbsp;&nbsp;the same, self-ensemble (mean of 8 flips/rotations, `--ensemble`, 8x time) | {e['images']} | "
                         f"| {e['psnr']:.2f} dB / {e['ssim']:.4f} | **{e['gain_db']:+.2f} dB** |")
        if "auto" in s:
            a = s["auto"]
            lines.append(f"| &nbsp;&nbsp;the same, `--scales auto` (also at half size from 600 px on the shorter side; "
                         f"`deblur --no-uniform-blur`) | {a['images']} | | {a['psnr']:.2f} dB / {a['ssim']:.4f} "
                         f"| **{a['gain_db']:+.2f} dB** |")
        if "uniform_blur" in s:
            u = s["uniform_blur"]
            lines.append(f"| &nbsp;&nbsp;the same, as `deblur` restores by default (`--scales auto` and kernel refinement: a "
                         f"kernel estimated from the output, then deconvolution, guarded) | {u['images']} | | "
                         f"{u['psnr']:.2f} dB / {u['ssim']:.4f} "
                         f"| **{u['gain_db']:+.2f} dB** |")
        for protocol, p in (s.get("also") or {}).items():
            lines.append(f"| &nbsp;&nbsp;the same, `{protocol}` protocol (no shift search) | {s['images']} | {p['input_psnr']:.2f} dB / "
                         f"{p['input_ssim']:.4f} | {p['psnr']:.2f} dB / {p['ssim']:.4f} | {p['gain_db']:+.2f} dB |")
        if "as_stored" in s:
            p = s["as_stored"]
            lines.append(f"| &nbsp;&nbsp;the same, fed as stored (not gamma-encoded) | {s['images']} | "
                         f"| {p['psnr']:.2f} dB / {p['ssim']:.4f} | {p['psnr'] - s['input_psnr']:+.2f} dB |")
        for label, p in (s.get("published") or {}).items():
            lines.append(f"| &nbsp;&nbsp;{label} on that frame (published output) | 1 | | {p['psnr']:.2f} dB / {p['ssim']:.4f} "
                         f"| {p['psnr'] - s['input_psnr']:+.2f} dB |")
    lines += ["", "PSNR on 8-bit outputs; SSIM per-channel Gaussian (`tf.image.ssim`; MATLAB's RGB `ssim` reads "
              "0.02-0.09 higher, in the JSON as `ssim_matlab`)."]
    if result.get("precision", "fp32") != "fp32":
        lines.append(f"**Restored with `--precision {result['precision']}`** (the network in bf16 where chosen; "
                     "the card's numbers are fp32's).")
    if result.get("limit"):
        lines.append(f"**Quick run: at most {result['limit']} images per set (`--limit`); not the card's numbers.**")
    if result.get("sheet"):
        docs = os.path.join(REPO, "docs")
        where = os.path.join(REPO, result["sheet"])
        # Under docs/, a link that renders in docs/models.md; elsewhere the path.
        link = (f"![before/after]({os.path.relpath(where, docs)})" if where.startswith(docs + os.sep)
                else f"`{result['sheet']}`")
        lines += ["", f"Before/after, `real_blur_only` ({result['sheet_photos']} photos restored as `deblur` does, `--scales auto` and kernel refinement, guarded; "
                          f"downscaled, then a 1:1 centre crop): "
                  f"{link}"]
    return "\n".join(lines) + "\n"


def measure(spec, args):
    """Everything the card needs for one model (`spec`: weights name or .keras path)."""
    from tfdeblur import weights as W
    from tfdeblur.inference import Deblurrer, load_model

    model = load_model(spec, arg="model")
    is_file = os.path.exists(spec)
    label = os.path.splitext(os.path.basename(spec))[0] if is_file else spec
    result = {"label": label, "kind": "file" if is_file else "weights", "source": spec, "class": type(model).__name__,
              "params": int(model.count_params()), "limit": args.limit, "sets": {},
              "measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    if not is_file or spec.endswith(W.MANIFEST_SUFFIX):
        m = W.read_manifest(spec)
        check = m.data.get("precision_check") or {}
        from tfdeblur.training import legs as legs_log

        # the leg log (docs/legs/NAME.jsonl) of weights trained in legs: the
        # card's hardware, wall time and one line per leg come from it
        result["legs"] = [leg for leg in legs_log.read_legs(label) if leg.get("shipped", True)] if not is_file else []
        result.update(preset=m.preset, summary=m.summary, run=m.data.get("run") or {},
                      weights={"dtype": m.dtype, "bytes": m.data.get("bytes", 0), "sha256": m.data["sha256"],
                               "loss_db": check.get("loss_db", float("nan")), "check_images": check.get("images", "?")})
    else:
        from tfdeblur.models import available

        result["preset"] = model.name if model.name in available() else None
    if args.repeats:
        _log(f"{label}: 1280x720 CPU time ...")
        result["cpu"] = cpu_seconds_720p(model, args.repeats)
    result["precision"] = args.precision

    def make(**options):  # every restoration of the card runs in --precision
        return Deblurrer(model, precision=args.precision, **options)

    deblurrer = make()
    for name in args.data:
        _log(f"{label}: {name} ...")
        try:
            summary, rows = evaluate_set(name, model, deblurrer, args.shared, args.limit)
        except FileNotFoundError as e:
            result["sets"][name] = {"skipped": str(e)}
            continue
        result["sets"][name] = summary
        result.setdefault("per_image", {})[name] = rows
        _log(f"  {summary['images']} images: {summary['input_psnr']:.2f} -> {summary['psnr']:.2f} dB ({summary['gain_db']:+.2f})")
        if name in args.ensemble:
            _log(f"{label}: {name}, self-ensemble ...")
            ens, ens_rows = evaluate_set(name, model, make(ensemble=True), args.shared, args.limit,
                                         fed_as_stored=False)
            summary["ensemble"] = {k: ens[k] for k in ("psnr", "ssim", "ssim_matlab", "gain_db", "images",
                                                       "restore_seconds_median")}
            result["per_image"][f"{name}_ensemble"] = ens_rows
            _log(f"  self-ensemble: {ens['psnr']:.2f} dB ({ens['gain_db']:+.2f})")
        if name in args.auto:
            _log(f"{label}: {name}, --scales auto ...")
            auto, auto_rows = evaluate_set(name, model, make(scales="auto"), args.shared, args.limit,
                                           fed_as_stored=False)
            summary["auto"] = {k: auto[k] for k in ("psnr", "ssim", "ssim_matlab", "gain_db", "images",
                                                    "restore_seconds_median")}
            result["per_image"][f"{name}_auto"] = auto_rows
            _log(f"  --scales auto: {auto['psnr']:.2f} dB ({auto['gain_db']:+.2f})")
        if name in args.uniform_blur:
            _log(f"{label}: {name}, --uniform-blur ...")
            uni, uni_rows = evaluate_set(name, model, make(scales="auto", kernel_refine=True), args.shared,
                                         args.limit, fed_as_stored=False)
            summary["uniform_blur"] = {k: uni[k] for k in ("psnr", "ssim", "ssim_matlab", "gain_db", "images",
                                                           "restore_seconds_median")}
            result["per_image"][f"{name}_uniform_blur"] = uni_rows
            _log(f"  --uniform-blur: {uni['psnr']:.2f} dB ({uni['gain_db']:+.2f})")
    if args.sheet:
        path = os.path.join(args.sheet_dir or args.out_dir, f"{label}-real_blur_only.jpg")
        try:
            limit = args.limit if args.sheet_limit is None else (args.sheet_limit or None)
            result["sheet_photos"] = real_blur_sheet(make(scales="auto", kernel_refine="auto"), args.shared, path, limit)
            result["sheet"] = os.path.relpath(path, REPO) if path.startswith(REPO) else path
        except FileNotFoundError as e:
            result["sheet_skipped"] = str(e)
    return result


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("names", nargs="*", metavar="NAME", help="shipped weights names (tfdeblur list)")
    p.add_argument("--model", action="append", default=[], metavar="FILE.keras", help="also card a .keras file (repeatable)")
    p.add_argument("--data", nargs="+", default=list(SETS), choices=SETS, help="sets to measure (default: all)")
    p.add_argument("--limit", type=int, help="at most N images per set and N sheet photos (quick runs)")
    p.add_argument("--precision", choices=("fp32", "bf16", "auto"), default="fp32",
                   help="run every restoration in this precision (Deblurrer(precision=...); default fp32; "
                        "the 1280x720 time is fp32 whatever it says)")
    p.add_argument("--sheet-limit", type=int, help="at most N sheet photos; 0: every photo of real_blur_only "
                   "(default: --limit)")
    p.add_argument("--repeats", type=int, default=3, help="timed 1280x720 runs after a warm-up (0: skip timing)")
    p.add_argument("--shared", default=os.path.join(REPO, "..", "shared"), help="the shared data folder (default ../shared)")
    p.add_argument("--out-dir", default="model_card", help="where LABEL.md, LABEL.json and the sheet go (default model_card/)")
    p.add_argument("--no-sheet", dest="sheet", action="store_false", help="skip the real_blur_only sheet")
    p.add_argument("--ensemble", nargs="+", default=[], choices=SETS, metavar="SET",
                   help="also score these sets with self-ensemble (8 flips/rotations, 8x time)")
    p.add_argument("--auto", nargs="+", default=[], choices=SETS, metavar="SET",
                   help="also score these sets as deblur restores by default (--scales auto)")
    p.add_argument("--uniform-blur", nargs="+", default=[], choices=SETS, metavar="SET",
                   help="also score these sets as `deblur` restores them by default (--scales auto + kernel refinement)")
    p.add_argument("--sheet-dir", help="where the sheet goes (default --out-dir; docs/models for a shipped card: "
                   "the card then links it)")
    args = p.parse_args(argv)
    specs = args.names + args.model
    if not specs:
        p.error("give shipped weights names and/or --model FILE.keras")
    if args.limit is not None and args.limit < 1:
        p.error(f"--limit must be a positive integer; got {args.limit}")
    if args.sheet_limit is not None and args.sheet_limit < 0:
        p.error(f"--sheet-limit must be 0 (every photo) or a positive integer; got {args.sheet_limit}")
    args.out_dir = os.path.abspath(args.out_dir)
    args.sheet_dir = os.path.abspath(args.sheet_dir) if args.sheet_dir else None
    os.makedirs(args.out_dir, exist_ok=True)
    from tfdeblur.io import atomic_write

    for spec in specs:
        try:
            result = measure(spec, args)
        except ValueError as e:
            print(f"error: {str(e).strip().splitlines()[0]}", file=sys.stderr)
            return 2
        # the measurements first: a card that fails to render keeps them
        atomic_write(os.path.join(args.out_dir, f"{result['label']}.json"), json.dumps(result, indent=1) + "\n")
        text = card_markdown(result)
        atomic_write(os.path.join(args.out_dir, f"{result['label']}.md"), text)
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
