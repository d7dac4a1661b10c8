"""Tiled inference goals: 3840x2160 under 3 GB peak RSS on CPU, and tiled vs
whole-image output >= 45 dB PSNR (1280x720, where the whole image fits).

    python benchmarks/bench_tiling.py [--nets mtwdn fddn lmfn] [--model mtwdn=runs/mtwdn/model.keras]

Each network runs in its own process (peak RSS is per process). A network
without a trained `--model` is measured at random weights, with its
zero-initialised layers (which make fddn/lmfn the identity at init, and any
tiling trivially exact) re-drawn from N(0, 0.02^2), so tile borders matter.
The test image is the real GoPro frame (../shared/data/gopro_pair) for
1280x720 and that frame upscaled 3x (bicubic) for 3840x2160. Prints a
markdown table; nothing here is a test.
"""
import argparse
import json
import os
import subprocess
import sys

WORKER = r"""
import json, os, resource, sys, time
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import cv2, numpy as np
net, model_path, shared = sys.argv[1], sys.argv[2], sys.argv[3]
from tfdeblur import io as tio, metrics
from tfdeblur.inference import Deblurrer, load_model, receptive_radius, DEFAULT_TILE
if model_path:
    model = load_model(model_path)
else:
    import tfdeblur.models as models
    model = models.build(net)
    rng = np.random.default_rng(0)
    for v in model.weights:
        w = v.numpy()
        if w.ndim > 1 and not w.any():
            v.assign(rng.normal(0, 0.02, w.shape).astype(w.dtype))
frame = tio.read_image_raw(os.path.join(shared, "data", "gopro_pair", "GOPR0384_11_00-000001_blur.png"))
out = {"net": net, "weights": "trained" if model_path else "random", "erf_radius": receptive_radius(model)}
whole = Deblurrer(model, max_pixels=2**62)(frame)
for tile in (512, 256):
    tiled = Deblurrer(model, tile=tile)(frame)
    out[f"psnr_tile{tile}"] = metrics.psnr(tiled, whole)
del whole, tiled
big = cv2.resize(frame, (3840, 2160), interpolation=cv2.INTER_CUBIC)
t = time.perf_counter()
restored = Deblurrer(model)(big)
out["seconds_4k"] = time.perf_counter() - t
out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out))
"""


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--nets", nargs="+", default=["mtwdn", "fddn", "lmfn"])
    p.add_argument("--model", action="append", default=[], help="NET=FILE.keras: a trained model for NET")
    p.add_argument("--shared", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared"))
    args = p.parse_args()
    trained = dict(item.split("=", 1) for item in args.model)
    print("| network | weights | effective RF radius (99%) | tiled 512 vs whole (dB) | tiled 256 vs whole (dB) | 3840x2160 tiled (s) | peak RSS (MB) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for net in args.nets:
        proc = subprocess.run([sys.executable, "-c", WORKER, net, trained.get(net, ""), args.shared],
                              capture_output=True, text=True)
        if proc.returncode:
            raise SystemExit(proc.stderr[-3000:])
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"| {r['net']} | {r['weights']} | {r['erf_radius']} | {r['psnr_tile512']:.1f} | {r['psnr_tile256']:.1f} "
              f"| {r['seconds_4k']:.0f} | {r['peak_rss_mb']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
