"""Packing a trained `.keras` model as shipped weights (see `tfdeblur.weights`).

    python -m tfdeblur.weights pack --model runs/mtwdn/model.keras --name mtwdn-photos \\
        [--dtype fp16|bf16|fp32] [--summary FILE.json] [--out DIR] [--overwrite]

Writes `NAME.weights.npz` then `NAME.json` into `--out` (default: the
package's weights folder), each atomically, so an interrupted pack never
leaves a manifest pointing at half a file. Before writing it measures what
the stored precision costs: the fp32 model and the packed one restore the
same deterministic batch (the first synthetic validation images), and the
PSNR difference is printed and recorded in the manifest
(`precision_check`): the issue's rule is fp16/bf16 only where it costs
< 0.05 dB, fp32 otherwise. After writing, the files are loaded back through
`tfdeblur.models.from_preset` and must give the packed model's outputs.
"""
import datetime
import hashlib
import io
import json
import os

import numpy as np

from tfdeblur import weights as W
from tfdeblur.io import atomic_write

CHECK_IMAGES = 4
CHECK_SIZE = 256  # the synthetic validation images' size
LOSS_RULE_DB = 0.05


def _read_json(path, arg):
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as e:
        raise ValueError(f"{arg} {path}: cannot read ({e.strerror})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{arg} {path}: not valid JSON ({str(e).splitlines()[0]})") from None
    return data


def _run_record(model_path):
    """The run's own record when the model sits in a `train` run folder."""
    folder = os.path.dirname(os.path.abspath(model_path))
    run = {}
    for key, fname in (("config", "config.json"), ("results", "results.json")):
        path = os.path.join(folder, fname)
        if os.path.isfile(path):
            try:
                data = _read_json(path, fname)
            except ValueError:
                continue
            if isinstance(data, dict):
                data.pop("per_image", None)
                run[key] = data
    return run


def _check_batch():
    from tfdeblur.datasets import synthetic_dataset

    pairs = [(np.asarray(b), np.asarray(s)) for b, s in synthetic_dataset("val", crop=CHECK_SIZE).take(CHECK_IMAGES)]
    return np.stack([b for b, _ in pairs]), np.stack([s for _, s in pairs])


def _mean_psnr(model, blur, sharp):
    from tfdeblur import metrics
    from tfdeblur.inference import inference_fn
    from tfdeblur.io import to_uint8

    out = inference_fn(model)(blur).numpy()
    return float(np.mean([metrics.psnr(to_uint8(np.clip(o, 0, 1)), to_uint8(s)) for o, s in zip(out, sharp)])), out


def _dumps(manifest):
    """The manifest as JSON, one line per weight (readable in a diff)."""
    head = json.dumps({k: v for k, v in manifest.items() if k != "weights"}, indent=1)
    rows = ",\n".join("  " + json.dumps(w) for w in manifest["weights"])
    return f'{head[:-2]},\n "weights": [\n{rows}\n ]\n}}\n'


def pack(model_path, name, dtype="fp16", summary=None, out=None, overwrite=False, preset=None, log=print):
    """Packs `model_path` (a `.keras` file, or shipped weights to repack) as
    weights `name`; returns the manifest dict. `summary`: a dict or a JSON
    file path (the training summary: data, recipe, steps, hardware, wall
    time, metrics; free-form)."""
    import keras
    import tensorflow as tf

    import tfdeblur
    import tfdeblur.models as models
    from tfdeblur.inference import load_model

    W.check_name(name)
    if dtype not in W.DTYPES:
        raise ValueError(f"`dtype` must be one of {', '.join(W.DTYPES)}; got {dtype!r}")
    out = os.path.abspath(out or W.weights_dir())
    if os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"`out` {out}: exists and is not a directory")
    manifest_path = os.path.join(out, name + W.MANIFEST_SUFFIX)
    weights_path = os.path.join(out, name + W.WEIGHTS_SUFFIX)
    for path in (manifest_path, weights_path):
        if os.path.exists(path) and not overwrite:
            raise ValueError(f"{path}: already exists; pass `overwrite` to replace it")
    if isinstance(summary, (str, os.PathLike)):
        summary = _read_json(os.fspath(summary), "`summary`")
    if summary is not None and not isinstance(summary, dict):
        raise ValueError(f"`summary` must hold a JSON object; got {type(summary).__name__}")

    model = load_model(model_path, arg="`model_path`")
    preset = preset or model.name
    if preset not in models.available():
        raise ValueError(f"`model_path` {model_path}: network name {model.name!r} is not a registered preset; "
                         f"pass `preset` NET (known: {', '.join(models.available())})")
    if models.get_preset(preset).cls is not type(model):
        raise ValueError(f"`preset` {preset!r} is a {models.get_preset(preset).cls.__name__}; "
                         f"`model_path` {model_path} holds a {type(model).__name__}")
    if name.split("-")[0] != preset:
        raise ValueError(f"`name` must start with the network preset and a hyphen, '{preset}-...'; got {name!r}")

    config = model.get_config()
    variables = list(model.weights)
    paths = [v.path for v in variables]
    if len(set(paths)) != len(paths):
        dup = sorted({p for p in paths if paths.count(p) > 1})
        raise ValueError(f"`model_path` {model_path}: weight names are not unique ({', '.join(dup[:3])}); name the layers")
    values = {v.path: keras.ops.convert_to_numpy(v) for v in variables}
    bad = [p for p, a in values.items() if np.issubdtype(a.dtype, np.floating) and not np.isfinite(a).all()]
    if bad:
        raise ValueError(f"`model_path` {model_path}: weight {bad[0]!r} holds NaN or infinite values; not packing a diverged model")
    stored = {p: W.encode(a, dtype) for p, a in values.items()}

    # What the stored precision costs, measured before anything is written.
    packed_model = type(model).from_config(config)
    fake = W.Manifest(name, manifest_path, {"preset": preset, "file": os.path.basename(weights_path)})
    W.assign(packed_model, fake, {k: W.decode(v, dtype) for k, v in stored.items()})
    blur, sharp = _check_batch()
    psnr_fp32, out_fp32 = _mean_psnr(model, blur, sharp)
    psnr_packed, out_packed = _mean_psnr(packed_model, blur, sharp)
    check = {
        "images": f"{CHECK_IMAGES} synthetic validation images, {CHECK_SIZE}x{CHECK_SIZE}",
        "psnr_fp32": psnr_fp32,
        "psnr_packed": psnr_packed,
        "loss_db": psnr_fp32 - psnr_packed,
        "max_abs_output_diff": float(np.abs(out_fp32 - out_packed).max()),
    }

    buf = io.BytesIO()
    np.savez(buf, **stored)
    blob = buf.getvalue()
    manifest = {
        "format": W.FORMAT,
        "format_version": W.FORMAT_VERSION,
        "name": name,
        "preset": preset,
        "class": type(model).__name__,
        "config": config,
        "dtype": dtype,
        "file": os.path.basename(weights_path),
        "sha256": hashlib.sha256(blob).hexdigest(),
        "bytes": len(blob),
        "params": int(model.count_params()),
        "summary": summary or {},
        "run": _run_record(model_path) if str(model_path).endswith(".keras") else {},
        "source": {"file": os.path.basename(os.fspath(model_path)),
                   "sha256": W.sha256_of(model_path) if os.path.isfile(model_path) else None},
        "precision_check": check,
        "packed_with": {"tfdeblur": tfdeblur.__version__, "keras": keras.__version__, "tensorflow": tf.__version__},
        "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "weights": [{"name": p, "shape": list(stored[p].shape), "stored_as": str(stored[p].dtype)} for p in paths],
    }
    atomic_write(weights_path, blob)
    atomic_write(manifest_path, _dumps(manifest))

    reloaded = models.from_preset(manifest_path)
    _, out_reloaded = _mean_psnr(reloaded, blur, sharp)
    if not np.array_equal(out_reloaded, out_packed):
        raise ValueError(f"{weights_path}: reloading gives other outputs than the packed model (max diff "
                         f"{np.abs(out_reloaded - out_packed).max():.3g}); please report this")

    log(f"packed {model_path} -> {weights_path} ({len(blob) / 1e6:.2f} MB, {dtype}, {len(paths)} weights, "
        f"{manifest['params']:,} parameters; sha256 {manifest['sha256'][:16]}...) + {os.path.basename(manifest_path)}")
    verdict = "ok" if abs(check["loss_db"]) < LOSS_RULE_DB else f"OVER the {LOSS_RULE_DB} dB rule: pack with `dtype` fp32"
    log(f"precision check ({check['images']}): fp32 {psnr_fp32:.3f} dB, {dtype} {psnr_packed:.3f} dB, "
        f"loss {check['loss_db']:+.4f} dB (rule < {LOSS_RULE_DB} dB: {verdict}); max |output diff| "
        f"{check['max_abs_output_diff']:.2e}")
    return manifest
