"""In which intensity space were Levin et al. 2009's blurry images blurred?

    python benchmarks/levin_space.py [--shared ../shared]

For each of the 32 pairs in ../shared/data/levin09_pairs, the sharp image is
blurred by its recorded kernel (../shared/data/kernels/levin09.npz) in three
spaces: the stored values, the linear light of gamma-2.2-encoded values
(x ** 2.2, blur, ** (1/2.2): how the `photos:` and `globalblur:` training data
blur), and the inverse (x ** (1/2.2), blur, ** 2.2). Each is compared with
the stored blurry image at the best integer shift within +-4 px, 20 px border
excluded; the space with the highest PSNR is the one the data were blurred
in. Printed per pair, then the means. Measured 2026-11-26: stored 39.9 dB,
gamma-encoded 29.2 dB, inverse 33.6 dB: the pairs are linear intensities,
which is why the model card gamma-encodes them for the network
(benchmarks/model_card.py, `LinearData`).
"""
import argparse
import os

import cv2
import numpy as np

GAMMA = 2.2


def best_shift_psnr(estimate, blurry, border=20, shift=4):
    h, w = blurry.shape
    ref = blurry[border : h - border, border : w - border]
    mse = min(
        float(np.mean((estimate[border + dy : h - border + dy, border + dx : w - border + dx] - ref) ** 2))
        for dy in range(-shift, shift + 1)
        for dx in range(-shift, shift + 1)
    )
    return 10.0 * np.log10(1.0 / mse)


def main(argv=None):
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shared", default=os.path.join(here, "..", "shared"))
    args = ap.parse_args(argv)
    root = os.path.join(args.shared, "data", "levin09_pairs")
    kernel_file = os.path.join(args.shared, "data", "kernels", "levin09.npz")
    for path in (root, kernel_file):
        if not os.path.exists(path):
            raise SystemExit(f"error: {path} not found (--shared)")
    kernels = np.load(kernel_file)
    names = sorted(n for n in os.listdir(os.path.join(root, "blur")) if n.endswith(".png"))
    fits = []
    print("pair                 stored   x^2.2   x^(1/2.2)   (PSNR of the re-blurred sharp image vs the blurry one, dB)")
    for name in names:
        k = np.asarray(kernels["k" + name.split("kernel")[1].split(".")[0]], np.float64)
        k = k / k.sum()
        y = cv2.imread(os.path.join(root, "blur", name), cv2.IMREAD_GRAYSCALE) / 255.0
        x = cv2.imread(os.path.join(root, "sharp", name), cv2.IMREAD_GRAYSCALE) / 255.0

        def blur(z):
            return cv2.filter2D(z, -1, k, borderType=cv2.BORDER_REFLECT)

        row = [best_shift_psnr(blur(x), y),
               best_shift_psnr(np.power(blur(x**GAMMA), 1 / GAMMA), y),
               best_shift_psnr(np.power(blur(x ** (1 / GAMMA)), GAMMA), y)]
        fits.append(row)
        print(f"{name:20s} {row[0]:6.2f}  {row[1]:6.2f}  {row[2]:6.2f}")
    m = np.mean(fits, axis=0)
    print(f"{'mean':20s} {m[0]:6.2f}  {m[1]:6.2f}  {m[2]:6.2f}")
    print("best fit:", ("stored values (linear data)", "linear light of gamma-encoded values", "inverse gamma")[int(np.argmax(m))])


if __name__ == "__main__":
    main()
