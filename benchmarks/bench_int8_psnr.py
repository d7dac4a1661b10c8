"""int8 vs float: PSNR of the int8 TFLite output against the float network's,
on the GoPro dev pairs' blurry frames, for docs/serving.md.

    python benchmarks/bench_int8_psnr.py [--model mtwdn-photos] [--pairs N] [--crop 256]
                                         [--calibration-data ../shared/data/real_blur_only]
                                         [--keep-float none|OP,LAYER,...]

The model (a shipped weights name or `.keras` file) is converted to int8,
calibrated on `--calibration-data` photos (centre crops; default: the
synthetic fallback), and run with `deblur_float` on a centre crop of the
first N blurry dev frames; PSNR (peak 1.0, 8-bit rounded outputs, as saved)
of int8 against the Keras float32 output, and of both against the sharp
frame. `--keep-float` as in `cli.py export` (default: the network's own
list, e.g. msfs's; `none`: fully integer). Nothing here is a test.
"""
import argparse
import os
import pathlib
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from tests.helpers import SHARED  # noqa: E402
from tfdeblur import export  # noqa: E402
from tfdeblur.inference import load_model  # noqa: E402
from tfdeblur.io import list_images, read_image, to_uint8  # noqa: E402


def psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="mtwdn-photos")
    p.add_argument("--pairs", type=int, default=4)
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--calibration-data", default=str(SHARED / "data" / "real_blur_only"))
    p.add_argument("--keep-float", help="none, or op types and layer-name prefixes (default: the network's)")
    args = p.parse_args()
    keep_float = None if args.keep_float is None else (
        "none" if args.keep_float.lower() == "none" else args.keep_float.split(","))
    model = load_model(args.model)
    root = SHARED / "data" / "gopro_dev_pairs"
    blurs = list_images(root / "blur")[: args.pairs]
    size = (args.crop, args.crop)
    representative = (export.calibration_images(args.calibration_data, 16, size=args.crop)
                      if args.calibration_data else export.representative_images(16, args.crop))
    start = time.perf_counter()
    ops, layers = export.resolve_keep_float(keep_float, model)
    flatbuffer = export.convert_tflite(model, "int8", representative, keep_float=list(ops + layers))
    convert_s = time.perf_counter() - start
    interpreter = export.load_tflite(flatbuffer)
    rows = []
    for path in blurs:
        blur = export.fit_to_size(read_image(path), size)[None]
        sharp = to_uint8(export.fit_to_size(read_image(root / "sharp" / os.path.basename(path)), size))
        ref = to_uint8(np.clip(model(blur).numpy()[0], 0, 1))
        got = to_uint8(np.clip(export.run_tflite(interpreter, blur)[0], 0, 1))
        rows.append((psnr(got, ref), psnr(ref, sharp), psnr(got, sharp)))
        print(os.path.basename(path), *(f"{v:.2f}" for v in rows[-1]), flush=True)
    mean = np.mean(rows, axis=0)
    kept = ",".join(ops + layers) or "nothing"
    print(f"\n{args.model}: int8 keeping {kept} in float ({len(flatbuffer) / 1e6:.1f} MB, converted in {convert_s:.0f} s, calibrated on "
          f"{args.calibration_data or 'synthetic images'}) vs float32 on {len(rows)} GoPro dev crops {args.crop}x{args.crop}: "
          f"{mean[0]:.2f} dB (min {min(r[0] for r in rows):.2f}); vs sharp: float {mean[1]:.2f} dB, int8 {mean[2]:.2f} dB")


if __name__ == "__main__":
    main()
