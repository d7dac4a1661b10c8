"""A trained model on the one real GoPro frame of ../shared/data/gopro_pair.

    python benchmarks/eval_gopro_pair.py runs/mtwdn/model.keras [--shared ../shared]

Prints PSNR/SSIM (8-bit, whole image, per-channel Gaussian SSIM) of the
model's output and of the blurry input against the sharp frame, the
inference time, and writes a before/after sheet next to the model.
"""
import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from tfdeblur import io as tio  # noqa: E402
from tfdeblur import metrics  # noqa: E402
from tfdeblur.inference import load_model  # noqa: E402
from tfdeblur.inference import inference_fn  # noqa: E402

FRAME = "GOPR0384_11_00-000001"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("--shared", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared"))
    args = p.parse_args()
    folder = os.path.join(args.shared, "data", "gopro_pair")
    blur = tio.read_image(os.path.join(folder, f"{FRAME}_blur.png"))
    sharp = tio.to_uint8(tio.read_image(os.path.join(folder, f"{FRAME}_sharp.png")))
    model = load_model(args.model)
    fn = inference_fn(model)
    fn(blur[None])  # trace once
    start = time.perf_counter()
    out = tio.to_uint8(fn(blur[None])[0].numpy())
    seconds = time.perf_counter() - start
    b8 = tio.to_uint8(blur)
    print(f"GoPro {FRAME} (1280x720), {args.model}")
    print(f"  blurry input: PSNR {metrics.psnr(b8, sharp):.3f} dB  SSIM {metrics.ssim(b8, sharp):.4f}")
    print(f"  output:       PSNR {metrics.psnr(out, sharp):.3f} dB  SSIM {metrics.ssim(out, sharp):.4f}")
    print(f"  inference {seconds:.2f} s; SSIM: {metrics.SSIM_CONVENTION}")
    sheet = os.path.join(os.path.dirname(os.path.abspath(args.model)), "gopro_pair.png")
    tio.write_image(sheet, tio.contact_sheet([[b8[200:456, 500:756], out[200:456, 500:756], sharp[200:456, 500:756]]],
                                             labels=["blurry", "output", "sharp"]))
    print(f"  crop sheet: {sheet}")


if __name__ == "__main__":
    main()
