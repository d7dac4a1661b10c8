"""The "global blur dataset" of GLBDN: sharp images x a fixed kernel set.

Li, Yang, Huang, Zhuo, "A Global-Local Blur Disentangling Network for
Dynamic Scene Deblurring", Appl. Sci. 2021, sec. 3.2: the global branch is
pre-trained on uniformly blurred images made from the 68 sharp images of
BSD68 and 56 kernels (32 motion, 16 Gaussian, 8 defocus), 3808 pairs.

Here:

* sharp images: a folder (e.g. `../shared/data/cbsd68`, 8-bit RGB files,
  sorted by name) or, with no folder, `DEFAULT_SYNTHETIC_IMAGES` procedural
  dead-leaves scenes of BSD68's size (321 x 481, `synthetic.dead_leaves`);
* kernels (`kernel_bank`): `counts` of each type drawn once from `seed`
  (default 32/16/8 as the paper): "motion" = camera-shake trajectories
  (`kernels.trajectory_kernel`, Boracchi & Foi 2012, path length uniform in
  [5, max_size]), "gaussian" (sigma_x uniform in [0.8, 3] px, sigma_y =
  sigma_x * U(0.5, 1), random orientation), "defocus" (disk radius uniform
  in [1.5, 5] px, soft edge U(0, 1)); optionally the real kernels of a file
  (`kernels.load_kernels`, e.g. `../shared/data/kernels/levin09.npz`) are
  appended as type "file". The paper does not give its kernels' parameters;
  these ranges are ours;
* pair (s, k) = sharp image s blurred by kernel k, uniformly, in linear
  light (`synthetic.blur_image`: gamma 2.2, reflected borders), optional
  Gaussian noise (default none: the paper adds none), 8-bit quantized. Each
  pair depends only on (seed, s, k) and the options.

Splits: every 10th sharp image (at most 8) is held out; "val" is 16 pairs
of held-out images, each with a kernel drawn from the seed, centre-cropped
to 256 px; "train" draws (pair, crop window) per element from
`(TRAIN_TAG, data seed, stream seed, element)`, so the stream is reproducible and
independent of tf.data scheduling. `write_globalblur` writes the full
product (every image x every kernel, 3808 pairs for BSD68) to disk, readable
back with `--data pairs:OUT/blur,OUT/sharp`.

`--data globalblur` (synthetic sharp images), `globalblur:SHARP_DIR` or
`globalblur:SHARP_DIR,KERNEL_FILE` (see `tfdeblur.datasets.spec`);
`python -m tfdeblur.datasets.globalblur --out DIR` writes it to disk.
"""
import argparse
import functools
import json
import logging
import os
import sys
from types import MappingProxyType

import numpy as np

from tfdeblur.datasets import kernels
from tfdeblur.datasets.synthetic import blur_image, dead_leaves, quantize8

logger = logging.getLogger(__name__)

DEFAULT_COUNTS = MappingProxyType({"motion": 32, "gaussian": 16, "defocus": 8})
KINDS = tuple(DEFAULT_COUNTS)
DEFAULT_SYNTHETIC_IMAGES = 68  # as BSD68
SYNTHETIC_SIZE = (321, 481)  # BSD68's landscape size
VAL_PAIRS = 16
VAL_CROP = 256
TRAIN_TAG, VAL_TAG, KERNEL_TAG, SCENE_TAG, NOISE_TAG = 11, 12, 13, 14, 15


def kernel_bank(seed=0, counts=None, max_size=31, kernel_file=None):
    """The fixed kernel set: list of (kind, float32 kernel), in kind order.

    Args:
      seed: non-negative int; the same seed gives the same kernels.
      counts: mapping kind -> number ("motion", "gaussian", "defocus");
        default `DEFAULT_COUNTS` (32/16/8, the paper's).
      max_size: odd bound on the kernel size.
      kernel_file: optional `.npz`/`.png`/folder of real kernels, appended
        as kind "file".
    """
    counts = dict(DEFAULT_COUNTS if counts is None else counts)
    unknown = sorted(set(counts) - set(KINDS))
    if unknown:
        raise ValueError(f"counts keys must be in {list(KINDS)}; got {unknown}")
    for kind, n in counts.items():
        if int(n) != n or n < 0:
            raise ValueError(f"counts[{kind!r}] must be a non-negative int; got {n!r}")
    bank = []
    for kind in KINDS:
        rng = np.random.default_rng((KERNEL_TAG, int(seed), KINDS.index(kind)))
        for _ in range(int(counts.get(kind, 0))):
            if kind == "motion":
                k = kernels.trajectory_kernel(rng, max_size=max_size, length=rng.uniform(5.0, max_size))
            elif kind == "gaussian":
                sx = rng.uniform(0.8, 3.0)
                k = kernels.gaussian_kernel(sx, sx * rng.uniform(0.5, 1.0), rng.uniform(0, 180))
            else:
                k = kernels.defocus_kernel(rng.uniform(1.5, 5.0), rng.uniform(0.0, 1.0))
            bank.append((kind, k))
    if kernel_file:
        bank += [("file", k) for k in kernels.load_kernels(kernel_file)]
    if not bank:
        raise ValueError(f"the kernel set must hold at least one kernel; got counts {counts} and no kernel file")
    return bank


class SharpImages:
    """The sharp images: files of a folder, or procedural scenes (lazy, cached as uint8)."""

    def __init__(self, folder=None, num_synthetic=DEFAULT_SYNTHETIC_IMAGES, seed=0, size=SYNTHETIC_SIZE):
        self.folder = folder
        self.seed = int(seed)
        self.size = tuple(size)
        if folder:
            from tfdeblur.io import ImageError, list_images

            self.paths = list_images(folder)
            if not self.paths:
                raise ImageError(f"{folder}: no image files for the global blur dataset")
            self.names = [os.path.splitext(os.path.basename(p))[0] for p in self.paths]
        else:
            if int(num_synthetic) < 1:
                raise ValueError(f"num_synthetic must be >= 1; got {num_synthetic!r}")
            self.paths = None
            self.names = [f"scene{i:03d}" for i in range(int(num_synthetic))]
        self._get = functools.lru_cache(maxsize=None)(self._load)

    def __len__(self):
        return len(self.names)

    def _load(self, index):
        if self.paths is not None:
            from tfdeblur.io import read_image, to_uint8

            return to_uint8(read_image(self.paths[index], allow_conversion=True))
        rng = np.random.default_rng((SCENE_TAG, self.seed, index))
        return np.round(dead_leaves(rng, *self.size) * 255).astype(np.uint8)

    def __getitem__(self, index):
        return self._get(int(index)).astype(np.float32) * (1 / 255)


def split_indices(n):
    """(train, val) sharp-image indices: every 10th image, at most 8, is held out."""
    if n < 2:
        return list(range(n)), list(range(n))
    val = list(range(0, n, 10))[:8]
    return [i for i in range(n) if i not in val], val


class GlobalBlurSet:
    """Sharp images x kernel bank, with the pair rule of the module docstring."""

    def __init__(self, sharp_dir=None, kernel_file=None, counts=None, seed=0, max_size=31,
                 noise_sigma=0.0, num_synthetic=DEFAULT_SYNTHETIC_IMAGES, synthetic_size=SYNTHETIC_SIZE):
        if int(seed) != seed or seed < 0:
            raise ValueError(f"seed must be a non-negative int; got {seed!r}")
        if not noise_sigma >= 0:
            raise ValueError(f"noise_sigma must be >= 0; got {noise_sigma!r}")
        self.seed = int(seed)
        self.noise_sigma = float(noise_sigma)
        self.bank = kernel_bank(seed, counts, max_size, kernel_file)
        self.sharp = SharpImages(sharp_dir, num_synthetic, seed, synthetic_size)
        self.train_images, self.val_images = split_indices(len(self.sharp))

    def pair(self, s, k):
        """(blur, sharp) float32 full-size images of sharp image s and kernel k."""
        sharp = self.sharp[s]
        rng = np.random.default_rng((NOISE_TAG, self.seed, int(s), int(k)))
        blur = blur_image(sharp, self.bank[k][1], rng, noise_sigma=self.noise_sigma)
        return blur, quantize8(sharp)

    def _train_rng(self, index, stream_seed):
        return np.random.default_rng((TRAIN_TAG, self.seed, int(stream_seed), int(index)))

    def _draw_pair(self, rng):
        s = self.train_images[rng.integers(len(self.train_images))]
        return s, int(rng.integers(len(self.bank)))

    def train_pair_index(self, index, stream_seed=0):
        """(sharp index, kernel index) that train element `index` crops."""
        return self._draw_pair(self._train_rng(index, stream_seed))

    def train_element(self, index, crop, stream_seed=0):
        """Element `index` of train stream `stream_seed`: a random pair, a random crop window."""
        rng = self._train_rng(index, stream_seed)
        s, k = self._draw_pair(rng)
        blur, sharp = self.pair(s, k)
        h, w = sharp.shape[:2]
        if min(h, w) < crop:
            raise ValueError(f"{self.sharp.names[s]}: {w}x{h} is smaller than the crop {crop}")
        y, x = int(rng.integers(h - crop + 1)), int(rng.integers(w - crop + 1))
        return blur[y:y + crop, x:x + crop], sharp[y:y + crop, x:x + crop]

    def val_pairs(self, num=VAL_PAIRS):
        """[(sharp index, kernel index)] of the validation set (deterministic)."""
        rng = np.random.default_rng((VAL_TAG, self.seed))
        return [(self.val_images[j % len(self.val_images)], int(rng.integers(len(self.bank))))
                for j in range(num)]

    def val_element(self, j, crop=VAL_CROP):
        s, k = self.val_pairs()[j]
        blur, sharp = self.pair(s, k)
        h, w = sharp.shape[:2]
        ch, cw = min(crop, h), min(crop, w)
        y, x = (h - ch) // 2, (w - cw) // 2
        return blur[y:y + ch, x:x + cw], sharp[y:y + ch, x:x + cw]

    def val_names(self):
        return [f"{self.sharp.names[s]}_k{k:02d}" for s, k in self.val_pairs()]


def globalblur_dataset(split="train", crop=256, seed=0, sharp_dir=None, kernel_file=None,
                       data_seed=0, **options):
    """Unbatched tf.data of (blur, sharp) float32 crops from `GlobalBlurSet`.

    `data_seed` fixes the dataset (kernels, synthetic scenes); `seed` the
    order and crops of the infinite "train" stream. "val" is
    `VAL_PAIRS` centre crops of at most `VAL_CROP` px (`crop` is ignored).
    """
    import tensorflow as tf

    gb = GlobalBlurSet(sharp_dir, kernel_file, seed=data_seed, **options)
    if split == "train":
        crop = int(crop)

        def generate(index):
            return gb.train_element(int(index), crop, int(seed))

        shape = (crop, crop, 3)
        indices = tf.data.Dataset.counter()
    elif split == "val":
        def generate(index):
            return gb.val_element(int(index))

        shape = (None, None, 3)
        indices = tf.data.Dataset.range(VAL_PAIRS)
    else:
        raise ValueError(f"split must be 'train' or 'val'; got {split!r}")

    def to_tensors(index):
        blur, sharp = tf.numpy_function(generate, [index], [tf.float32, tf.float32], stateful=False)
        blur.set_shape(shape)
        sharp.set_shape(shape)
        return blur, sharp

    return indices.map(to_tensors, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def write_globalblur(out_dir, sharp_dir=None, kernel_file=None, counts=None, seed=0, max_size=31,
                     noise_sigma=0.0, num_synthetic=DEFAULT_SYNTHETIC_IMAGES,
                     synthetic_size=SYNTHETIC_SIZE, log=None):
    """Writes every (image, kernel) pair: OUT/blur/NAME_kKK.png, OUT/sharp/NAME_kKK.png
    (the sharp image repeated, so `pairs:OUT/blur,OUT/sharp` reads it), the
    kernels as OUT/kernels.npz and OUT/manifest.json. Files appear atomically.
    Returns the number of pairs."""
    log = log or logger.info
    from tfdeblur.io import atomic_path, atomic_write, write_image

    out_dir = os.fspath(out_dir)
    if os.path.exists(os.path.join(out_dir, "manifest.json")):
        raise ValueError(f"`out_dir` {out_dir}: already holds a global blur dataset (manifest.json)")
    gb = GlobalBlurSet(sharp_dir, kernel_file, counts, seed, max_size, noise_sigma, num_synthetic,
                       synthetic_size)
    os.makedirs(out_dir, exist_ok=True)
    count = 0
    for s, name in enumerate(gb.sharp.names):
        for k in range(len(gb.bank)):
            blur, sharp = gb.pair(s, k)
            stem = f"{name}_k{k:02d}.png"
            write_image(os.path.join(out_dir, "blur", stem), blur)
            write_image(os.path.join(out_dir, "sharp", stem), sharp)
            count += 1
        if log:
            log(f"{s + 1}/{len(gb.sharp)} images, {count} pairs")
    with atomic_path(os.path.join(out_dir, "kernels.npz")) as tmp:
        np.savez(tmp, **{f"k{i:02d}_{kind}": k for i, (kind, k) in enumerate(gb.bank)})
    manifest = {
        "pairs": count, "images": len(gb.sharp), "kernels": [kind for kind, _ in gb.bank],
        "sharp_dir": sharp_dir, "kernel_file": kernel_file, "seed": seed, "max_size": max_size,
        "noise_sigma": noise_sigma, "gamma": 2.2,
    }
    atomic_write(os.path.join(out_dir, "manifest.json"), json.dumps(manifest, indent=2))
    return count


def main(argv=None):
    p = argparse.ArgumentParser(
        prog="python -m tfdeblur.datasets.globalblur",
        description="Write GLBDN's global blur dataset (sharp images x kernels) to a folder.",
    )
    p.add_argument("--out", dest="out_dir", required=True, help="output folder (blur/, sharp/, kernels.npz, manifest.json)")
    p.add_argument("--sharp", help="folder of sharp images (default: 68 synthetic scenes)")
    p.add_argument("--kernels", help="real kernels to add (.npz, .png or folder), e.g. levin09.npz")
    for kind in KINDS:
        p.add_argument(f"--{kind}", type=int, default=DEFAULT_COUNTS[kind], help=f"number of {kind} kernels")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--noise", type=float, default=0.0, help="Gaussian noise sigma in [0, 1] units")
    args = p.parse_args(argv)
    try:
        n = write_globalblur(
            args.out_dir, args.sharp, args.kernels, {k: getattr(args, k) for k in KINDS}, args.seed,
            noise_sigma=args.noise, log=lambda m: print(m, flush=True),
        )
    except (ValueError, OSError) as e:
        from tfdeblur.errors import first_line, flags, print_error

        return print_error(first_line(e), flags(p))
    print(f"wrote {n} pairs to {args.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
