"""Gain over the blurry input as a function of the blur's extent.

    python benchmarks/gain_by_extent.py mtwdn-photos lmfn-photos [--photos 8] [--scales 1 1,0.5]

Where does a model stop helping? Held-out photos (CBSD68, never in the
`photos:` training data) are centre-cropped to --crop px and blurred in linear
light, 8-bit, no noise (`tfdeblur.datasets.blur_image`, as the model card's
CBSD68 row) by:

- straight motion of length L px (`linear_motion_kernel`) at --angles angles
  spread over 180 degrees, for each L of --lengths;
- each of Levin et al.'s 8 real camera-shake kernels, with its extent (the
  side of the bounding box holding 99 % of its mass).

For each (model, kernel) it prints the mean input PSNR, output PSNR and gain
(dB, whole image; `--protocol levin`: Levin's shift search, as the model
card scores Levin's kernels since 2026-11-27 -- a blind network restores
to the blur's centre of mass, and Levin's kernels are centred by their
support, up to 4.3 px away). The photos stream's blur sizes (datasets/photos.py:
MAX_SHIFT, UNIFORM_SIZE_BIAS) are printed beside, so the table says whether a
weak row is a size the training data rarely shows. `--scales` gives each
model one column per setting of `Deblurrer(scales=...)` (`deblur --scales`:
restoring at smaller scales too), to see which blur extents gain from it.

The `ceiling` column is the protocol's PSNR of a perfect restoration that
sits where a blind network puts it, at the blur's centre of mass (the
training kernels are centred on their mass, `kernels._splat`): the sharp
crop moved by the kernel's mass offset from its array centre (Lanczos).
Symmetric kernels have none (inf); Levin's k6 is 4.3 px off, so on the
whole image even a perfect blind restoration scores below its blurry input.
"""

import argparse
import os
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def extent(kernel, mass=0.99):
    """Side (px) of the smallest centred-on-mass bounding box holding `mass`
    of the kernel: rows and columns trimmed from both ends while the dropped
    weight stays under (1 - mass) / 2 per axis end pair."""
    k = np.asarray(kernel, np.float64)
    k = k / k.sum()
    sides = []
    for axis in (0, 1):
        profile = k.sum(axis=1 - axis)
        c = np.cumsum(profile)
        lo = int(np.searchsorted(c, (1 - mass) / 2))
        hi = int(np.searchsorted(c, 1 - (1 - mass) / 2))
        sides.append(hi - lo + 1)
    return max(sides)


def mass_offset(kernel):
    """(dy, dx) of the kernel's centre of mass from its array centre, px:
    where `blur_image` (a true convolution) moves a point's mass to."""
    k = np.asarray(kernel, np.float64)
    k = k / k.sum()
    ys, xs = np.mgrid[: k.shape[0], : k.shape[1]]
    return float((k * ys).sum() - (k.shape[0] - 1) / 2), float((k * xs).sum() - (k.shape[1] - 1) / 2)


def moved(img, dy, dx):
    """`img` translated by (dy, dx) px (Lanczos, reflected borders)."""
    import cv2

    if dy == 0 and dx == 0:
        return img
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    h, w = img.shape[:2]
    out = cv2.warpAffine(np.asarray(img, np.float32), m, (w, h), flags=cv2.INTER_LANCZOS4, borderMode=cv2.BORDER_REFLECT)
    return np.clip(out, 0.0, 1.0)


def kernels_to_test(lengths, angles, levin_path):
    from tfdeblur.datasets import kernels as K

    out = []
    for L in lengths:
        ks = [K.linear_motion_kernel(L, 180.0 * i / angles + 10.0) for i in range(angles)]
        out.append((f"line {L:g} px", L, ks))
    if levin_path and os.path.exists(levin_path):
        for i, k in enumerate(K.load_kernels(levin_path)):
            out.append((f"Levin k{i + 1}", extent(k), [k]))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("names", nargs="+", metavar="NAME", help="shipped weights names or .keras files")
    p.add_argument("--shared", default=os.path.join(REPO, "..", "shared"))
    p.add_argument("--photos", type=int, default=8, help="CBSD68 photos used (first N, sorted)")
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--lengths", default="5,9,13,17,21,25,31")
    p.add_argument("--angles", type=int, default=2)
    p.add_argument("--protocol", default="whole", choices=("whole", "levin"),
                   help="how output and input are scored (default whole: the 2026-11-26 tables)")
    p.add_argument("--scales", nargs="+", default=["1"], metavar="S[,S...]",
                   help="Deblurrer scales settings, one column each (default 1: the plain network)")
    args = p.parse_args(argv)

    import tensorflow as tf

    from tfdeblur import io as tio
    from tfdeblur import protocols
    from tfdeblur.datasets import blur_image, photos as P
    from tfdeblur.inference import Deblurrer, check_scales, inference_fn, load_model

    try:
        settings = [check_scales(text.split(",")) for text in args.scales]
    except ValueError as e:
        p.error(f"--scales: {e}")

    folder = os.path.join(args.shared, "data", "cbsd68")
    if not os.path.isdir(folder):
        sys.exit(f"error: {folder} not found (--shared)")
    sharp = []
    for path in tio.list_images(folder)[: args.photos]:
        img = tio.read_image(path, allow_conversion=True)
        h, w = img.shape[:2]
        s = min(args.crop, h, w) // 8 * 8
        y, x = (h - s) // 2, (w - s) // 2
        sharp.append(img[y:y + s, x:x + s])
    lengths = [float(v) for v in args.lengths.split(",")]
    table = kernels_to_test(lengths, args.angles, os.path.join(args.shared, "data", "kernels", "levin09.npz"))
    print(f"# {len(sharp)} CBSD68 photos, centre {args.crop} px; photos stream: camera shift <= {P.MAX_SHIFT:g} px, "
          f"uniform kernels <= {P.MAX_KERNEL} px (size bias {P.UNIFORM_SIZE_BIAS:g}); protocol {args.protocol}; "
          f"load {os.getloadavg()[0]:.2f}")
    models = []
    for name in args.names:
        m = load_model(name, arg="names")
        for scales in settings:
            if scales == (1.0,):
                fn = inference_fn(m)
                models.append((name, lambda x, fn=fn: np.clip(fn(x[None]).numpy()[0], 0.0, 1.0)))
            else:
                label = f"{name}@{','.join(f'{v:g}' for v in scales)}"
                models.append((label, Deblurrer(m, scales=scales).restore_rgb))
    head = f"{'kernel':<14}{'extent':>7}{'ceiling':>9}{'input':>8}" + "".join(f"{n[:20]:>21}" for n, _ in models)
    print(head)
    started = time.perf_counter()
    for label, ext, ks in table:
        inp, ceil, outs = [], [], [[] for _ in models]
        for k in ks:
            dy, dx = mass_offset(k)
            for img in sharp:
                ceil.append(protocols.score(args.protocol, moved(img, dy, dx), img)["psnr"])
                blurry = blur_image(img, k, noise_sigma=0, gamma=2.2, quantize=True)
                inp.append(protocols.score(args.protocol, blurry, img)["psnr"])
                with tf.device("/CPU:0"):
                    for j, (_, restore) in enumerate(models):
                        outs[j].append(protocols.score(args.protocol, restore(blurry), img)["psnr"])
        i = float(np.mean(inp))
        cells = "".join(f"{np.mean(o):>11.2f} ({np.mean(o) - i:+.2f})" for o in outs)
        c = float(np.mean(ceil))
        print(f"{label:<14}{ext:>7g}{c:>9.2f}{i:>8.2f}{cells}", flush=True)
    print(f"# {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
