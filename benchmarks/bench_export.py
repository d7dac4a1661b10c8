"""Export numbers for docs/serving.md: sizes, parity and latency per network.

    python benchmarks/bench_export.py [--nets mtwdn mtwdn_oneway] [--model FILE.keras ...]
                                      [--size 512] [--repeats 5]

For each network: SavedModel and TFLite sizes (none/fp16/dynamic/int8),
parity of every export against the Keras model (max abs difference; PSNR
against the Keras float32 output, peak 1.0, not rounded to 8 bits) on
random images and on the real GoPro blurry frame (1280x720, from
../shared when present), and latency on one SIZE x SIZE image: Keras
(`tfdeblur.inference.inference_fn`, a traced tf.function) against the LiteRT
interpreter (XNNPACK, one thread per core). Prints markdown tables; nothing
here is a test.

Registry networks are untrained unless `--model` gives trained ones; an
untrained MTWDN is the identity (zero-initialized output convolutions), so
its output heads get the same small random weights as in the tests.
"""
import argparse
import os
import pathlib
import shutil
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tfdeblur.models as models  # noqa: E402
from tests.helpers import SHARED, random_images  # noqa: E402
from tests.test_export import float_psnr, with_random_heads  # noqa: E402
from tfdeblur import export  # noqa: E402
from tfdeblur.bench import median_seconds  # noqa: E402
from tfdeblur.inference import inference_fn  # noqa: E402
from tfdeblur.io import read_image  # noqa: E402

MODES = ("none", "fp16", "dynamic", "int8")


def _megabytes(path):
    path = pathlib.Path(path)
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files) / 1e6


def measure(model, size, repeats, images):
    import tensorflow as tf

    row = {"network": model.name}
    keras_fn = inference_fn(model)
    references = {key: keras_fn(x).numpy() for key, x in images.items()}
    workdir = tempfile.mkdtemp(prefix="bench-export-")
    try:
        saved = export.export_saved_model(model, os.path.join(workdir, "1"))
        row["saved_model_mb"] = _megabytes(saved)
        loaded = tf.saved_model.load(saved)
        row["saved_model_diff"] = max(
            float(np.abs(loaded.signatures["deblur_float"](images=tf.constant(x))["deblurred"].numpy() - references[k]).max())
            for k, x in images.items()
        )
        x512 = random_images(1, size, size, seed=5)
        row["keras_ms"] = 1000 * median_seconds(lambda: keras_fn(x512).numpy(), repeats)
        with export.TFLiteExport(model) as source:
            for mode in MODES:
                flatbuffer = source.convert(mode, export.representative_images() if mode == "int8" else None)
                row[f"{mode}_mb"] = len(flatbuffer) / 1e6
                interpreter = export.load_tflite(flatbuffer, num_threads=os.cpu_count())
                outputs = {k: export.run_tflite(interpreter, x) for k, x in images.items()}
                row[f"{mode}_diff"] = max(float(np.abs(outputs[k] - references[k]).max()) for k in images)
                row[f"{mode}_psnr"] = min(float_psnr(outputs[k], references[k]) for k in images)
                row[f"{mode}_ms"] = 1000 * median_seconds(lambda: export.run_tflite(interpreter, x512), repeats)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return row


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nets", nargs="+", default=models.available(), help="registry networks (random output heads)")
    p.add_argument("--model", action="append", default=[], help="trained .keras files to measure instead")
    p.add_argument("--size", type=int, default=512, help="latency image side")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()

    images = {"random 37x53": random_images(1, 37, 53), "random 64x64": random_images(1, 64, 64, seed=1)}
    gopro = sorted((SHARED / "data" / "gopro_pair").glob("*_blur.png"))
    if gopro:
        images["GoPro 1280x720"] = read_image(gopro[0])[None]
    if args.model:
        nets = [keras.saving.load_model(path, compile=False, safe_mode=True) for path in args.model]
    else:
        nets = []
        for name in args.nets:
            keras.utils.set_random_seed(0)
            nets.append(with_random_heads(models.build(name)))
    rows = []
    for model in nets:
        rows.append(measure(model, args.size, args.repeats, images))
        print(f"measured {model.name}", file=sys.stderr)

    print(f"parity on: {', '.join(images)}; int8 calibrated on 16 synthetic 128x128 images; "
          f"{os.cpu_count()} CPU threads\n")
    print("| network | SavedModel MB | TFLite MB none / fp16 / dynamic / int8 | SavedModel max diff | "
          "TFLite fp32 max diff | fp16 max diff, PSNR | dynamic max diff, PSNR | int8 max diff, PSNR |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        sizes = " / ".join(f"{r[f'{m}_mb']:.1f}" for m in MODES)
        quant = " | ".join(f"{r[f'{m}_diff']:.1e}, {r[f'{m}_psnr']:.1f} dB" for m in MODES[1:])
        print(f"| {r['network']} | {r['saved_model_mb']:.1f} | {sizes} | {r['saved_model_diff']:.1e} | "
              f"{r['none_diff']:.1e} | {quant} |")
    print(f"\nlatency, one {args.size}x{args.size} image, median of {args.repeats} (ms):\n")
    print("| network | Keras (tf.function) | TFLite fp32 | fp16 | dynamic | int8 |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['network']} | {r['keras_ms']:.0f} | " + " | ".join(f"{r[f'{m}_ms']:.0f}" for m in MODES) + " |")


if __name__ == "__main__":
    main()
