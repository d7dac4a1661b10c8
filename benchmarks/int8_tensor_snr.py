"""Where an int8 TFLite file loses the float network: per-tensor SNR.

Converts the network once to float32 and once to int8 (one trace, so both
files share tensor names), runs both on one image with every intermediate
tensor kept, dequantizes the int8 tensors and prints, in execution order,
SNR = 10 log10(sum f^2 / sum (f - q)^2) for every tensor both files
hold (-inf: zero in float, not in int8), then the first, last and lowest
per block (the name's first part; blocks in order of their first tensor,
weights included). A few layers
with a low SNR can be kept in float; an SNR that falls with depth is
error accumulating over the whole network (docs/serving.md, msfs).

    python benchmarks/int8_tensor_snr.py --model runs/msfs/best.keras \
        --calibration-data ../shared/data/real_blur_only \
        --image ../shared/data/gopro_dev_pairs/blur/X.png --out /tmp/snr
"""
import argparse
import collections
import os
import pathlib
import re
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from tfdeblur import export  # noqa: E402
from tfdeblur.inference import load_model  # noqa: E402
from tfdeblur.io import read_image  # noqa: E402


def tensors(path, x):
    """name -> (execution index, dequantized float32 array) of the activations."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=path, experimental_preserve_all_tensors=True, num_threads=2)
    it.allocate_tensors()
    it.get_signature_runner(export.SIGNATURE_FLOAT)(**{export.INPUT_KEY: x})
    out = {}
    for t in it.get_tensor_details():
        q = t["quantization_parameters"]
        if len(q["scales"]) > 1:  # per-channel: a weight, not an activation
            continue
        try:
            v = it.get_tensor(t["index"])
        except ValueError:
            continue
        if v is None or v.size == 0:
            continue
        if len(q["scales"]) == 1 and v.dtype in (np.int8, np.uint8, np.int16):
            v = (v.astype(np.float32) - q["zero_points"][0]) * q["scales"][0]
        out[t["name"]] = (t["index"], np.asarray(v, np.float32))
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--calibration-data", required=True, help="folder of photos (16 are used)")
    p.add_argument("--image", required=True, help="the image both files run on (centre crop)")
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--out", required=True, help="folder for float.tflite and int8.tflite (reused if there)")
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    files = {k: os.path.join(args.out, f"{k}.tflite") for k in ("float", "int8")}
    if not all(os.path.isfile(f) for f in files.values()):
        representative = export.calibration_images(args.calibration_data, 16, size=args.crop)
        with export.TFLiteExport(load_model(args.model)) as source:
            for kind, quantize in (("float", "none"), ("int8", "int8")):
                data = source.convert(quantize, representative if quantize == "int8" else None)
                with open(files[kind], "wb") as f:
                    f.write(data)
    x = export.fit_to_size(read_image(args.image), (args.crop, args.crop))[None].astype(np.float32)
    ref, got = tensors(files["float"], x), tensors(files["int8"], x)
    rows = []
    for name, (index, q) in got.items():
        if name in ref and ref[name][1].shape == q.shape:
            f = ref[name][1]
            err = float(((f - q) ** 2).sum())
            if err > 0:
                rows.append((index, 10 * np.log10(float((f ** 2).sum()) / err), name.split(";")[0]))
    rows.sort()
    for index, snr, name in rows:
        print(f"{index:6d} {snr:7.1f} dB  {name}")
    blocks = collections.OrderedDict()
    for index, snr, name in rows:
        m = re.search(r"/(?:encoder_\d+/)?([A-Za-z]+\d*)_", name)
        blocks.setdefault(m.group(1) if m else name, []).append((snr, name))
    print("\nblock: activations, SNR of the first / last / lowest (dB)")
    for block, v in blocks.items():
        low = min(v)
        print(f"{block:24s} {len(v):4d}  {v[0][0]:6.1f} {v[-1][0]:6.1f} {low[0]:6.1f} ({low[1]})")


if __name__ == "__main__":
    main()
