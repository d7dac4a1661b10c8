"""docs/synthetic_blur.png: the synthetic blur library at a glance.

    python benchmarks/figure_synthetic.py [--out docs/synthetic_blur.png] [--seed 0]

Row 1: camera-shake trajectories (Boracchi & Foi 2012), linear motion,
isotropic and anisotropic Gaussians, hard and soft defocus disks, and, when
../shared is present, two of Levin et al.'s recorded kernels (all 31x31,
shown enlarged 4x, each scaled to its own peak). Row 2: a procedural
dead-leaves scene, sharp, then blurred uniformly in linear light with
kernels of row 1 (`synthetic.blur_image`: gamma 2.2, noise sigma 0.005,
8-bit), each with its kernel inset in the corner. Deterministic from --seed.
"""
import argparse
import os

import cv2
import numpy as np

from tfdeblur import io as tio
from tfdeblur.datasets import kernels
from tfdeblur.datasets.dynamic import make_dynamic_pair
from tfdeblur.datasets.synthetic import blur_image, dead_leaves

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("TFDEBLUR_SHARED", os.path.join(os.path.dirname(REPO), "shared"))
SIZE = 31
TILE = 124  # 31 px x 4


def kernel_set(rng):
    ks = [
        ("shake", kernels.trajectory_kernel(rng, max_size=SIZE, length=25)),
        ("shake", kernels.trajectory_kernel(rng, max_size=SIZE, length=40)),
        ("shake", kernels.trajectory_kernel(rng, max_size=SIZE, length=60)),
        ("linear 21px 30deg", kernels.linear_motion_kernel(21, 30)),
        ("gauss s=2.5", kernels.gaussian_kernel(2.5)),
        ("gauss 4x1.2 60deg", kernels.gaussian_kernel(4.0, 1.2, 60)),
        ("disk r=6", kernels.defocus_kernel(6.0)),
        ("disk r=9 soft", kernels.defocus_kernel(9.0, soft_edge=2.0)),
    ]
    levin = os.path.join(SHARED, "data", "kernels", "levin09.npz")
    if os.path.exists(levin):
        real = kernels.load_kernels(levin)
        ks += [("Levin k1", real[0]), ("Levin k4", real[3])]
    return ks


def kernel_tile(k):
    pad = (SIZE - k.shape[0]) // 2
    k = np.pad(k, max(pad, 0))[:SIZE, :SIZE] if k.shape[0] <= SIZE else k[:SIZE, :SIZE]
    img = (k / k.max()).astype(np.float32)
    img = cv2.resize(img, (TILE, TILE), interpolation=cv2.INTER_NEAREST)
    return np.repeat(img[..., None], 3, axis=2)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", default=os.path.join(REPO, "docs", "synthetic_blur.png"))
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    rng = np.random.default_rng(args.seed)
    ks = kernel_set(rng)
    sharp = dead_leaves(np.random.default_rng(args.seed + 1), 176, 176)
    rows = [[kernel_tile(k) for _, k in ks]]
    labels = [[name for name, _ in ks]]
    picks = [0, 2, 3, 5, 7, len(ks) - 1]
    samples, sample_labels = [sharp], ["sharp"]
    for i in picks:
        name, k = ks[i]
        blurred = blur_image(sharp, k, rng=rng, noise_sigma=0.005)
        inset = cv2.resize(kernel_tile(k), (48, 48), interpolation=cv2.INTER_AREA)
        blurred = blurred.copy()
        blurred[-50:, -50:] = 1.0
        blurred[-49:-1, -49:-1] = inset
        samples.append(blurred)
        sample_labels.append(name)
    rows.append(samples)
    labels.append(sample_labels)
    # non-uniform (GoPro-like): sub-frames of a moving camera and objects averaged
    dyn, dyn_labels = [], []
    for j in range(len(samples) // 2):
        blur, sharp_j = make_dynamic_pair(args.seed + 100 + j, size=176)
        dyn += [sharp_j, blur]
        dyn_labels += [f"dynamic {j} sharp", f"dynamic {j} blur"]
    rows.append(dyn)
    labels.append(dyn_labels)
    sheet = tio.contact_sheet(rows, labels=labels)
    tio.write_image(args.out, sheet)
    print(f"wrote {args.out} ({sheet.shape[1]}x{sheet.shape[0]})")


if __name__ == "__main__":
    main()
