"""What a non-blind method reaches on the card's kernel sets: Richardson-Lucy given the true kernel.

    python benchmarks/rl_reference.py [--iters 10 30 100] [--limit 16] [--shared ../shared]

Issue #15 sets the blind target on uniform blur with real kernels at
">= +4 dB, which is what Richardson-Lucy reaches when it is given the true
kernel". This measures that reference on the sets of the model card
(`benchmarks/model_card.py`), scored as the card scores them:

- `levin`: Levin et al. 2009's gray pairs (first `--limit` of 32) (linear intensities: RL runs
  on the stored values, the space their blur fits in, `levin_space.py`),
  the `levin` protocol (Levin's `comp_upto_shift`);
- `cbsd68`: the card's CBSD68 x 8 Levin kernels pairs (first `--limit`),
  RL in linear light (the pairs were blurred there, gamma 2.2), scored with
  the `levin` protocol and the whole image.

RL: x <- x * H^T(y / H x), started from the blurry image, reflected borders,
with the kernel exactly as the pairs were blurred (so the restoration is
aligned). No regularization: the pairs are noise-free 8-bit, where RL
improves for a while; the gain per iteration count is printed, per kernel
and mean. Measured 2026-11-27 on all 32 Levin pairs (`--limit 32`): +5.15
dB at 10 iterations, +8.06 at 30, +9.34 at 100.
"""
import argparse
import os
import sys

import cv2
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# True convolution centred as `blur_image` blurs, reflected borders; RL from
# the blurry image (the library's, shared with `deblur --uniform-blur`).
from tfdeblur.kernel_refine import convolve, richardson_lucy  # noqa: E402

GAMMA = 2.2


def levin_pair_kernel(kernel):
    """The kernel as Levin et al.'s pairs were blurred with it: the stored
    kernel (`levin09.npz`, the one the card's CBSD68 x Levin pairs are
    blurred with through `blur_image`) turned 180 degrees. Measured on the
    shared pairs: `convolve(sharp, rot180(k))` fits the blurry image at
    37-46 dB (best integer shift within +-6 px, 20 px border), the stored
    orientation at 22-27 dB for the asymmetric kernels (tests check k6)."""
    return np.ascontiguousarray(np.asarray(kernel)[::-1, ::-1])


def fit_db(sharp, blurry, kernel, max_shift=6, border=20):
    """PSNR of `convolve(sharp, kernel)` against `blurry` at the best integer
    shift within +-`max_shift` px, over the interior (`border` px off)."""
    blurred = convolve(np.asarray(sharp, np.float64), kernel)
    inner = (slice(border, -border),) * 2
    best = np.inf
    for dy in range(-max_shift, max_shift + 1):
        for dx in range(-max_shift, max_shift + 1):
            diff = np.roll(blurred, (dy, dx), (0, 1))[inner] - np.asarray(blurry, np.float64)[inner]
            best = min(best, float(np.mean(diff ** 2)))
    return 10 * np.log10(1.0 / max(best, 1e-12))


def _u8(img):
    img = np.clip(np.rint(np.asarray(img) * 255.0), 0, 255).astype(np.uint8)
    return np.repeat(img[..., None], 3, axis=2) if img.ndim == 2 else img


def main(argv=None):
    from tfdeblur import io as tio
    from tfdeblur import protocols
    from tfdeblur.datasets import blur_image, load_kernels

    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shared", default=os.path.join(here, "..", "shared"))
    ap.add_argument("--iters", type=int, nargs="+", default=[10, 30, 100])
    ap.add_argument("--limit", type=int, default=16, help="pairs of each set (default 16, as the card; Levin has 32)")
    args = ap.parse_args(argv)
    if args.limit < 1:
        raise SystemExit(f"error: --limit must be >= 1; got {args.limit}")
    if any(i < 1 for i in args.iters):
        raise SystemExit(f"error: --iters must be >= 1; got {args.iters}")
    levin_root = os.path.join(args.shared, "data", "levin09_pairs")
    kernel_file = os.path.join(args.shared, "data", "kernels", "levin09.npz")
    cbsd_root = os.path.join(args.shared, "data", "cbsd68")
    for path in (levin_root, kernel_file, cbsd_root):
        if not os.path.exists(path):
            raise SystemExit(f"error: {path} not found (--shared)")
    kernels = [np.asarray(k, np.float64) / np.sum(k) for k in load_kernels(kernel_file)]
    pair_kernels = [levin_pair_kernel(k) for k in kernels]

    print("Levin pairs (stored values, levin protocol): gain over the blurry input, dB")
    names = sorted(n for n in os.listdir(os.path.join(levin_root, "blur")) if n.endswith(".png"))[: args.limit]
    gains = {i: np.zeros(8) for i in args.iters}
    counts = np.zeros(8)
    for name in names:
        k = int(name.split("kernel")[1].split(".")[0]) - 1
        y = cv2.imread(os.path.join(levin_root, "blur", name), cv2.IMREAD_GRAYSCALE) / 255.0
        x = cv2.imread(os.path.join(levin_root, "sharp", name), cv2.IMREAD_GRAYSCALE) / 255.0
        base = protocols.score("levin", _u8(y), _u8(x))["psnr"]
        counts[k] += 1
        for i in args.iters:
            gains[i][k] += protocols.score("levin", _u8(richardson_lucy(y, pair_kernels[k], i)), _u8(x))["psnr"] - base
    for i in args.iters:
        per = gains[i] / np.maximum(counts, 1)
        print(f"  RL {i:3d} it: mean {np.sum(gains[i]) / np.sum(counts):+.2f}, {int(np.sum(counts))} pairs | "
              + " ".join(f"k{j + 1} {g:+.2f}" for j, g in enumerate(per) if counts[j]))

    print(f"CBSD68 x Levin kernels (first {args.limit}; RL in linear light): gain, levin protocol / whole image, dB")
    photos = tio.list_images(cbsd_root)
    items = [(p, k) for p in photos for k in range(len(kernels))][: args.limit]
    rows = {i: [] for i in args.iters}
    for path, k in items:
        sharp = tio.read_image(path, allow_conversion=True)
        blurry = blur_image(sharp, kernels[k].astype(np.float32), noise_sigma=0, gamma=GAMMA, quantize=True)
        s8, b8 = _u8(sharp), _u8(blurry)
        base = (protocols.score("levin", b8, s8)["psnr"], protocols.score("whole", b8, s8)["psnr"])
        linear = np.power(np.asarray(blurry, np.float64), GAMMA)
        for i in args.iters:
            out = _u8(np.power(np.clip(richardson_lucy(linear, kernels[k], i), 0, 1), 1 / GAMMA))
            rows[i].append((protocols.score("levin", out, s8)["psnr"] - base[0], protocols.score("whole", out, s8)["psnr"] - base[1]))
    for i in args.iters:
        m = np.mean(rows[i], axis=0)
        print(f"  RL {i:3d} it: {m[0]:+.2f} (levin protocol) / {m[1]:+.2f} (whole image), {len(rows[i])} pairs")


if __name__ == "__main__":
    main()
