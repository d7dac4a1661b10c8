"""Kernel refinement (`tfdeblur.kernel_refine`) against the network alone.

    python benchmarks/kernel_refine.py [--model mtwdn-photos] [--data tune levin cbsd68 gopro_dev]
        [--limit 16] [--iters 20] [--edges 0.05] [--size 41] [--rounds 3] [--restarts 4] [--ensemble N] [--precision auto]
        [--sheet docs/models/mtwdn-photos-uniform_blur.jpg] [--shared ../shared]

For each pair: the network's restoration (as `tfdeblur.deblur` restores
it, `--scales auto`), then `kernel_refine.refine(blurry, restored)`, scored
as the model card scores the set. Prints, per set, the blurry input, the
network, the refinement, Richardson-Lucy with the *true* kernel from the
same start (the network's output) where the kernel is known (the ceiling of
the kernel estimate), the estimated kernel's
similarity to the true one (peak normalized cross-correlation over shifts)
and how well the network's output re-blurred by the estimated kernel fits
the blurry image (`fit`, dB over the interior: a candidate signal for
telling uniform blur from non-uniform).

Sets:
- `tune`: the tuning set, and the only one the defaults were chosen on:
  `--limit` held-out photos of `../shared/data/sharp` (the `photos:`
  stream's validation split: every 10th photo, never trained on), halved
  when at least 640 px, centre 320 px (smaller ones skipped), blurred in linear light (gamma 2.2) by camera-shake
  trajectories of `random_kernel` (up to 31 px, extent drawn uniformly),
  Gaussian noise sigma 0.003, 8 bits. Seeded: pair i uses seed (7, i).
- `levin`: Levin et al.'s 32 gray pairs (stored values are linear: gamma 1),
  `levin` protocol; true kernel: the stored one turned 180 degrees.
- `cbsd68`: CBSD68 x the 8 Levin kernels (linear light, gamma 2.2), `levin`
  protocol; true kernel: the stored one.
- `synthetic`: the card's procedural validation set (16 dead-leaves scenes,
  256 px, uniform blur by every kernel type of `random_kernel`: shake,
  linear, Gaussian, defocus; noise), whole image.
- `gopro_dev`: the 11 real GoPro-protocol pairs (non-uniform blur: where
  refinement is expected to hurt), whole image.
- `photos_uniform`, `photos_shake`, `photos_camera`, `photos_objects`,
  `photos_wide`: `--limit` pairs of the `photos:` stream's own modes on its
  held-out validation photos (`make_photo_pair(..., split="val",
  mode=...)`, 320 px, seeds 2000, 2001, ...): blur with the camera
  pipeline (clipped highlights, Poisson-Gaussian noise, JPEG), uniform
  (`uniform`: every kernel type; `shake`: trajectories) or not (camera
  rotation/zoom/perspective, moving objects, wide motion). Where the
  guard was chosen (with `tune`, `levin`, `cbsd68`, `synthetic`,
  `gopro_dev`).

Columns: `refined` is `refine(..., guard=False)`, `guarded` the default
(`guard=True`: the network's output where `kernel_refine.accepts` says no;
`kept` counts the pairs where the refinement was kept).
"""
import argparse
import os
import sys
import time

import cv2
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # rl_reference, model_card

PHOTO_MODES = ("uniform", "shake", "camera", "objects", "wide")
SETS = ("tune", "levin", "cbsd68", "synthetic", "gopro_dev") + tuple(f"photos_{m}" for m in PHOTO_MODES)
PHOTOS_SIDE = 320
PHOTOS_SEED = 2000
TUNE_SIDE = 320
TUNE_NOISE = 0.003


def tune_pairs(shared, limit):
    """(blurry, sharp, kernel, name) of the tuning set (module docstring)."""
    from tfdeblur import io as tio
    from tfdeblur.datasets import blur_image
    from tfdeblur.datasets.kernels import random_kernel
    from tfdeblur.datasets.photos import PhotoBank

    held = PhotoBank(os.path.join(shared, "data", "sharp")).splits["val"]
    out = []
    for i, path in enumerate(held):
        if len(out) >= limit:
            break
        img = tio.read_image(path, allow_conversion=True)
        if min(img.shape[:2]) >= 2 * TUNE_SIDE:
            img = cv2.resize(img, (img.shape[1] // 2, img.shape[0] // 2), interpolation=cv2.INTER_AREA)
        if min(img.shape[:2]) < TUNE_SIDE:
            continue
        t, l = (img.shape[0] - TUNE_SIDE) // 2, (img.shape[1] - TUNE_SIDE) // 2
        sharp = np.ascontiguousarray(img[t:t + TUNE_SIDE, l:l + TUNE_SIDE])
        rng = np.random.default_rng((7, i))
        kernel = random_kernel(rng, max_size=31, probs={"trajectory": 1.0}, size_bias=1.0).astype(np.float64)
        blurry = blur_image(sharp, kernel.astype(np.float32), rng=rng, noise_sigma=TUNE_NOISE, gamma=2.2, quantize=True)
        out.append((blurry, sharp, kernel, os.path.basename(path)))
    return out


def levin_pairs(shared, limit):
    from rl_reference import levin_pair_kernel
    from tfdeblur.datasets import load_kernels

    root = os.path.join(shared, "data", "levin09_pairs")
    kernels = load_kernels(os.path.join(shared, "data", "kernels", "levin09.npz"))
    names = sorted(n for n in os.listdir(os.path.join(root, "blur")) if n.endswith(".png"))[:limit]
    out = []
    for name in names:
        k = int(name.split("kernel")[1].split(".")[0]) - 1
        gray = [cv2.imread(os.path.join(root, part, name), cv2.IMREAD_GRAYSCALE) for part in ("blur", "sharp")]
        blurry, sharp = (np.repeat(g[..., None], 3, axis=2).astype(np.float32) / 255.0 for g in gray)
        kernel = np.asarray(kernels[k], np.float64)
        out.append((blurry, sharp, levin_pair_kernel(kernel / kernel.sum()), name))
    return out


def cbsd68_pairs(shared, limit):
    from model_card import cbsd68_pairs as card_pairs
    from tfdeblur.datasets import load_kernels

    kernels = load_kernels(os.path.join(shared, "data", "kernels", "levin09.npz"))
    pairs, names = card_pairs(shared, limit)
    return [(b, s, np.asarray(kernels[int(n.rsplit("_k", 1)[1]) - 1], np.float64), n) for (b, s), n in zip(pairs, names)]


def synthetic_pairs(shared, limit):
    """The card's procedural synthetic validation set (uniform blur of every
    kernel type, noise; `data_spec.evaluation("synthetic")`); kernels not kept."""
    import itertools

    from tfdeblur.datasets import spec as data_spec

    dataset, _, names = data_spec.evaluation("synthetic")
    return [(np.asarray(b), np.asarray(s), None, n) for (b, s), n in zip(itertools.islice(iter(dataset), limit), names)]


def gopro_pairs(shared, limit):
    from tfdeblur import io as tio

    root = os.path.join(shared, "data", "gopro_dev_pairs")
    names = tio.list_images(os.path.join(root, "blur"))[:limit]
    return [(tio.read_image(p), tio.read_image(os.path.join(root, "sharp", os.path.basename(p))), None,
             os.path.basename(p)) for p in names]


def photo_pairs(shared, limit, mode):
    """`limit` pairs of the photos: stream's `mode` on its validation photos (module docstring)."""
    from tfdeblur.datasets.photos import PhotoBank, make_photo_pair

    bank = PhotoBank(os.path.join(shared, "data", "sharp"))
    out = []
    for i in range(limit):
        blurry, sharp = make_photo_pair(bank, PHOTOS_SEED + i, size=PHOTOS_SIDE, split="val", mode=mode)
        out.append((np.asarray(blurry), np.asarray(sharp), None, f"{mode}_{i:03d}"))
    return out


def kernel_similarity(a, b):
    """Peak normalized cross-correlation of two kernels over all shifts."""
    a = np.asarray(a, np.float32)
    b = np.asarray(b, np.float32)
    big, small = (a, b) if a.shape[0] >= b.shape[0] else (b, a)
    pad = small.shape[0]
    score = cv2.matchTemplate(np.pad(big, pad), small, cv2.TM_CCORR_NORMED)
    return float(score.max())


def fit_db(restored, blurry, kernel, gamma, border=20):
    from tfdeblur.kernel_refine import _luma, convolve

    model = convolve(_luma(np.power(np.clip(restored, 0, 1), gamma)), kernel)
    target = _luma(np.power(np.clip(blurry, 0, 1), gamma))
    inner = (slice(border, -border),) * 2
    return 10 * np.log10(1.0 / max(float(np.mean((model[inner] - target[inner]) ** 2)), 1e-12))


def run_set(name, deblurrer, shared, limit, options):
    from tfdeblur import kernel_refine, protocols

    loaders = {"tune": tune_pairs, "levin": levin_pairs, "cbsd68": cbsd68_pairs, "synthetic": synthetic_pairs,
               "gopro_dev": gopro_pairs}
    for mode in PHOTO_MODES:
        loaders[f"photos_{mode}"] = lambda shared, limit, mode=mode: photo_pairs(shared, limit, mode)
    protocol = "levin" if name in ("levin", "cbsd68") else "whole"
    gamma = 1.0 if name == "levin" else 2.2
    rows = []
    for blurry, sharp, kernel, pair in loaders[name](shared, limit):
        blurry = np.asarray(blurry, np.float32)
        sharp = np.asarray(sharp, np.float32)
        net_in = np.power(blurry, 1 / 2.2).astype(np.float32) if gamma == 1.0 else blurry  # LinearData, as the card
        t0 = time.perf_counter()
        net = deblurrer(net_in)
        net = np.power(net, 2.2) if gamma == 1.0 else net
        t1 = time.perf_counter()
        refined, info = kernel_refine.refine(blurry, net, gamma=gamma, guard=False, return_info=True, **options)
        t2 = time.perf_counter()
        guarded, guard_info = kernel_refine.refine(blurry, net, gamma=gamma, return_info=True, **options)
        t3 = time.perf_counter()
        estimate = info["kernel"]
        kept = guard_info["applied"]
        row = {"input": protocols.score(protocol, blurry, sharp)["psnr"],
               "net": protocols.score(protocol, net.astype(np.float32), sharp)["psnr"],
               "refined": protocols.score(protocol, refined.astype(np.float32), sharp)["psnr"],
               "kept": float(kept), "noise": info["noise"] * 255, "away": info["away"], "local": info["local_fit"],
               "blend": protocols.score(protocol, ((refined + net) / 2).astype(np.float32), sharp)["psnr"],
               "fit": fit_db(net, blurry, estimate, gamma), "net_s": t1 - t0, "refine_s": t2 - t1}
        if kernel is not None:
            y = np.power(np.clip(blurry.astype(np.float64), 0, 1), gamma)
            start = np.power(np.clip(np.asarray(net, np.float64), 0, 1), gamma)
            true = np.power(np.clip(kernel_refine.richardson_lucy(y, kernel, options["iters"], start=start), 0, 1),
                            1 / gamma)
            row["true_kernel"] = protocols.score(protocol, true.astype(np.float32), sharp)["psnr"]
            row["similarity"] = kernel_similarity(estimate, kernel)
        row["guarded"] = protocols.score(protocol, guarded.astype(np.float32), sharp)["psnr"]
        row["guarded_s"] = t3 - t2
        rows.append(row)
        print(f"  {pair}: " + " ".join(f"{k} {v:.2f}" for k, v in row.items()), file=sys.stderr, flush=True)
    return rows


SHEET_PHOTOS = ("jin2018_image_1_blurry.png", "jin2018_image_3_blurry.png", "jin2018_image_5_blurry.png",
                "srn_01.png", "nafnet_blurry.jpg", "jin2018_00038-blurry.png")
SHEET_CROP = 300


def real_sheet(model, shared, path, photos=SHEET_PHOTOS, ensemble=1):
    """Writes a sheet of `../shared/data/real_blur_only` photos (downscaled to
    at most 900 px, as `deblur` restores them with `--scales auto`): per row
    the centre 300 px of the blurry photo | the network | the network with
    `--uniform-blur`."""
    from tfdeblur import io as tio
    from tfdeblur.inference import Deblurrer

    plain = Deblurrer(model, scales="auto", ensemble=ensemble)
    refined = Deblurrer(plain.model, scales="auto", ensemble=ensemble, kernel_refine=True)
    rows = []
    for name in photos:
        img, _ = tio.read_photo(os.path.join(shared, "data", "real_blur_only", name))
        h, w = img.shape[:2]
        if max(h, w) > 900:
            img = cv2.resize(img, (round(w * 900 / max(h, w)), round(h * 900 / max(h, w))), interpolation=cv2.INTER_AREA)
        h, w = img.shape[:2]
        t, l, c = max(0, (h - SHEET_CROP) // 2), max(0, (w - SHEET_CROP) // 2), SHEET_CROP
        gap = np.full((min(c, h), 4, 3), 255, np.uint8)
        parts = [x[t:t + c, l:l + c] for x in (img, plain(img), refined(img))]
        rows.append(np.concatenate([parts[0], gap, parts[1], gap, parts[2]], axis=1))
        print(f"  sheet: {name}", file=sys.stderr, flush=True)
    width = max(r.shape[1] for r in rows)
    sheet = np.concatenate([np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows])
    ok, data = cv2.imencode(os.path.splitext(path)[1] or ".png", sheet[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:
        raise SystemExit(f"error: --sheet {path}: cannot encode that image type")
    tio.atomic_write(path, data.tobytes())
    print(f"sheet -> {path}")


def main(argv=None):
    from tfdeblur import kernel_refine as kr

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="mtwdn-photos", help="shipped weights name or .keras file")
    p.add_argument("--data", nargs="+", default=list(SETS), choices=SETS)
    p.add_argument("--limit", type=int, default=16, help="pairs per set (default 16)")
    p.add_argument("--shared", default=os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                                    "..", "shared"))
    p.add_argument("--iters", type=int, default=kr.ITERS)
    p.add_argument("--edges", type=float, default=kr.EDGES)
    p.add_argument("--size", type=int, default=kr.KERNEL_SIZE)
    p.add_argument("--rounds", type=int, default=kr.ROUNDS)
    p.add_argument("--restarts", type=int, default=kr.RESTARTS,
                   help=f"starts of the L0 rounds (default {kr.RESTARTS}; 1: the restoration alone, as before 2026-11-29)")
    p.add_argument("--sheet", metavar="PATH", help="also write the real-photo sheet (blurry | network | "
                   "--uniform-blur) to PATH (.jpg or .png)")
    p.add_argument("--ensemble", type=int, default=1, choices=(1, 2, 4, 8),
                   help="the network's self-ensemble before refining (default 1)")
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"),
                   help="the network's precision (default auto, as `deblur`: bf16 where the CPU has it)")
    args = p.parse_args(argv)
    if args.limit < 1:
        raise SystemExit(f"error: --limit must be >= 1; got {args.limit}")
    if not os.path.isdir(os.path.join(args.shared, "data")):
        raise SystemExit(f"error: {os.path.join(args.shared, 'data')} not found (--shared)")
    from tfdeblur.inference import Deblurrer

    deblurrer = Deblurrer(args.model, scales="auto", ensemble=args.ensemble, precision=args.precision)
    options = {"iters": args.iters, "edges": args.edges, "size": args.size, "rounds": args.rounds,
               "restarts": args.restarts}
    print(f"{args.model} (ensemble {args.ensemble}, precision {deblurrer.precision}); refine {options}")
    for name in args.data:
        rows = run_set(name, deblurrer, args.shared, args.limit, options)
        mean = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
        gains = {k: mean[k] - mean["input"] for k in ("net", "refined", "guarded", "blend", "true_kernel") if k in mean}
        up = sum(r["refined"] > r["net"] for r in rows)
        kept = sum(r["kept"] > 0 for r in rows)
        print(f"{name} ({len(rows)} pairs): input {mean['input']:.2f} dB | net {gains['net']:+.2f} | refined "
              f"{gains['refined']:+.2f} ({up}/{len(rows)} above the net) | guarded {gains['guarded']:+.2f} "
              f"({kept}/{len(rows)} kept) | mean of the two {gains['blend']:+.2f}"
              + (f" | true kernel {gains['true_kernel']:+.2f}, similarity {mean['similarity']:.2f}"
                 if "true_kernel" in gains else "")
              + f" | fit {mean['fit']:.1f} dB | {mean['net_s']:.2f} s net + {mean['refine_s']:.2f} s refine "
              f"({mean['guarded_s']:.2f} s guarded)", flush=True)
    if args.sheet:
        real_sheet(deblurrer.model, args.shared, args.sheet, ensemble=args.ensemble)


if __name__ == "__main__":
    main()
