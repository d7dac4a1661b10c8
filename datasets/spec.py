"""`--data SPEC` strings -> datasets.

    synthetic                         procedural scenes + random uniform blur (default, no files)
    pairs:BLUR_DIR,SHARP_DIR          real pairs matched by file name
    gopro:ROOT[,split=S][,variant=V]  GoPro (GOPRO_Large or flattened); V = blur (default) | blur_gamma
    hide:ROOT[,split=S]               HIDE_dataset (GT/, train/, test/test-{close-ups,long-shot}/)
    realblur:ROOT,J|R[,split=S]       RealBlur-J or -R from the official list files in ROOT
    kohler:ROOT                       Köhler et al. 2012, 48 photos (evaluation only)
    list:FILE                         text/CSV of `blur,sharp` paths relative to FILE's folder
    tfrecord:DIR                      shards written by `prepare` (tfdeblur.datasets.tfrecord)
    globalblur[:SHARP_DIR[,KERNELS]]  GLBDN's global blur set: sharp images (default: synthetic) x
                                      32 motion/16 Gaussian/8 defocus kernels (+ real KERNELS file)
    dynamic                           procedural dynamic scenes: camera + moving objects over sub-frames
    photos:DIR[,MODE=W...]            sharp photos under DIR blurred on the fly (uniform kernels, camera
                                      motion, moving objects, camera pipeline; datasets/photos.py); MODE
                                      weights reweight the mix (uniform, camera, objects, synthetic, dynamic;
                                      shake, weight 0 by default); clean=P: the chance of a sample without
                                      noise or JPEG (default 0); validation keeps the default mix

Options follow the root after commas, `key=value`; `realblur` also takes
`J`/`R` bare (= `camera=J`). `split` is train or test; when it is not
given, training reads `train` and validates on up to 16 evenly spaced
`test` pairs (or on every 10th train pair when no test split is on disk),
`eval` reads `test`, `prepare` reads `train`. Specs without
splits (pairs, list) hold out every 10th pair (at most 16) for validation.
Layouts are described in `tfdeblur.datasets.layouts`.

Images may be 8- or 16-bit, grayscale, RGB or RGBA: they are converted to
RGB float32 in [0, 1] (gray replicated, alpha dropped, 16-bit / 65535).
Unknown or malformed specs raise `DataSpecError` with a one-line message.
"""
import dataclasses
import logging
import os

import numpy as np

from tfdeblur.datasets import layouts as _layouts
from tfdeblur.datasets import pairs as _pairs
from tfdeblur.datasets.augment import paired_flip_rot
from tfdeblur.datasets.synthetic import synthetic_dataset

logger = logging.getLogger(__name__)

# The --data help of the command line.
HELP = (
    "synthetic (default), dynamic (non-uniform, GoPro-like), globalblur[:SHARP_DIR[,KERNELS]] (GLBDN's uniform set), "
    "pairs:BLUR_DIR,SHARP_DIR, gopro:ROOT[,split=train|test][,variant=blur|blur_gamma], "
    "hide:ROOT[,split=..], realblur:ROOT,J|R[,split=..], kohler:ROOT (eval only), list:FILE (blur,sharp per line), "
    "tfrecord:DIR (from `prepare`); see tfdeblur/datasets/spec.py"
)

KINDS = ("synthetic", "pairs:BLUR_DIR,SHARP_DIR", "gopro:ROOT", "hide:ROOT", "realblur:ROOT,J|R",
         "kohler:ROOT", "list:FILE", "tfrecord:DIR")
# Options each loader kind accepts after its root (`gopro:ROOT,split=test`).
LOADER_OPTIONS = {
    "gopro": {"split": _layouts.GOPRO_SPLITS, "variant": _layouts.GOPRO_VARIANTS},
    "hide": {"split": _layouts.GOPRO_SPLITS},
    "realblur": {"camera": _layouts.REALBLUR_CAMERAS, "split": _layouts.GOPRO_SPLITS},
    "kohler": {},
    "list": {},
    "tfrecord": {},
}
MAX_VAL_PAIRS = 16
SYNTHETIC_VAL_SIZE = 256  # validation images of the synthetic default, pixels


class DataSpecError(ValueError):
    """A `--data` value that names no usable dataset."""


@dataclasses.dataclass(frozen=True)
class DataSpec:
    kind: str
    paths: tuple = ()
    options: tuple = ()  # sorted (key, value) pairs, e.g. (("split", "test"),)

    def __str__(self):
        parts = list(self.paths) + [f"{k}={v}" for k, v in self.options]
        return self.kind if not parts else f"{self.kind}:{','.join(parts)}"

    def option(self, key, default=None):
        return dict(self.options).get(key, default)


def parse_spec(spec):
    spec = (spec or "").strip()
    if spec == "synthetic":
        return DataSpec("synthetic")
    kind, sep, rest = spec.partition(":")
    if kind == "pairs" and sep:
        parts = [p for p in rest.split(",")]
        if len(parts) != 2 or not all(parts):
            raise DataSpecError(f"`data` pairs needs two folders, pairs:BLUR_DIR,SHARP_DIR; got {spec!r}")
        return DataSpec("pairs", tuple(os.path.expanduser(p) for p in parts))
    if kind in LOADER_OPTIONS and sep:
        return _parse_loader(kind, rest, spec)
    if kind in SYNTHESIS_KINDS:
        return _parse_synthesis(kind, sep, rest, spec)
    if kind == "photos":
        return _parse_photos(sep, rest, spec)
    raise DataSpecError(f"`data` must be one of {', '.join(KINDS)}; got {spec!r}")


def _parse_loader(kind, rest, spec):
    root, *fields = [p.strip() for p in rest.split(",")]
    if not root:
        raise DataSpecError(f"`data` {kind} needs a path, {kind}:PATH; got {spec!r}")
    allowed = LOADER_OPTIONS[kind]
    options = {}
    for field in fields:
        key, eq, value = field.partition("=")
        if not eq and kind == "realblur" and field in _layouts.REALBLUR_CAMERAS:
            key, value = "camera", field
        elif not eq:
            raise DataSpecError(f"`data` {kind} options are key=value after the path; got {field!r} in {spec!r}")
        if key not in allowed:
            known = ", ".join(allowed) or "none"
            raise DataSpecError(f"`data` {kind} option {key!r} is unknown (options: {known}); got {spec!r}")
        if value not in allowed[key]:
            raise DataSpecError(f"`data` {kind} {key} must be one of {', '.join(allowed[key])}; got {value!r}")
        options[key] = value
    if kind == "realblur" and "camera" not in options:
        raise DataSpecError(f"`data` realblur needs the camera, realblur:ROOT,J or realblur:ROOT,R; got {spec!r}")
    return DataSpec(kind, (os.path.expanduser(root),), tuple(sorted(options.items())))


# Procedural data made on the fly (datasets/globalblur.py, datasets/dynamic.py).
SYNTHESIS_KINDS = ("globalblur", "dynamic")
KINDS = KINDS + ("globalblur[:SHARP_DIR[,KERNEL_FILE]]", "dynamic")


def _parse_synthesis(kind, sep, rest, spec):
    if kind == "dynamic":
        if sep:
            raise DataSpecError(f"`data` dynamic takes no path (procedural dynamic scenes); got {spec!r}")
        return DataSpec("dynamic")
    parts = [p.strip() for p in rest.split(",")] if sep else []
    if len(parts) > 2 or (sep and not any(parts)):
        raise DataSpecError(f"`data` globalblur takes at most a sharp folder and a kernel file, "
                            f"globalblur[:SHARP_DIR[,KERNEL_FILE]]; got {spec!r}")
    for i, p in enumerate(parts):
        if p and not os.path.exists(os.path.expanduser(p)):
            what = "sharp image folder" if i == 0 else "kernel file"
            raise DataSpecError(f"`data` globalblur: {what} {p} does not exist")
    return DataSpec("globalblur", tuple(os.path.expanduser(p) for p in parts))


KINDS = KINDS + ("photos:DIR[,MODE=WEIGHT...]",)


def _parse_photos(sep, rest, spec):
    from tfdeblur.datasets.photos import CLEAN_KEY, MODES

    root, *fields = [p.strip() for p in rest.split(",")] if sep else [""]
    if not root:
        raise DataSpecError(f"`data` photos needs a folder of sharp photos, photos:DIR; got {spec!r}")
    root = os.path.expanduser(root)
    if not os.path.isdir(root):
        raise DataSpecError(f"`data` photos: {root} is not a directory")
    options = {}
    for field in fields:
        key, eq, value = field.partition("=")
        if not eq or key not in MODES + (CLEAN_KEY,):
            raise DataSpecError(f"`data` photos options are MODE=WEIGHT with MODE in {', '.join(MODES)}, or "
                                f"{CLEAN_KEY}=P; got {field!r} in {spec!r}")
        try:
            weight = float(value)
        except ValueError:
            weight = -1.0
        if key == CLEAN_KEY and not 0 <= weight <= 1:
            raise DataSpecError(f"`data` photos {CLEAN_KEY} (the chance of a sample without noise or JPEG) must "
                                f"be from 0 to 1; got {value!r}")
        if not weight >= 0:
            raise DataSpecError(f"`data` photos {key} weight must be a non-negative number; got {value!r}")
        options[key] = value
    return DataSpec("photos", (root,), tuple(sorted(options.items())))


def photos_mix(spec):
    """The mode weights of a photos spec: the default mix with the spec's
    overrides (and its `clean` probability, if given)."""
    from tfdeblur.datasets.photos import DEFAULT_MIX

    mix = dict(DEFAULT_MIX)
    mix.update({k: float(v) for k, v in spec.options})
    return mix


def _photos_train_val(spec, crop, seed, augment):
    from tfdeblur.datasets.photos import VAL_SIZE, photos_dataset

    train = photos_dataset(spec.paths[0], "train", crop=crop, seed=seed, mix=photos_mix(spec))
    if augment:
        train = train.map(paired_flip_rot)
    # Validation keeps the default mix whatever the spec reweights: the
    # held-out pairs stay the same set, so runs and legs on different mixes
    # are scored on one yardstick.
    return train, photos_dataset(spec.paths[0], "val", crop=VAL_SIZE)


def _synthesis_train_val(spec, crop, seed, augment):
    if spec.kind == "dynamic":
        from tfdeblur.datasets.dynamic import dynamic_dataset

        train, val = dynamic_dataset("train", crop=crop, seed=seed), dynamic_dataset("val", crop=SYNTHETIC_VAL_SIZE)
    else:
        from tfdeblur.datasets.globalblur import globalblur_dataset

        sharp_dir, kernel_file = (list(spec.paths) + [None, None])[:2]
        kw = dict(sharp_dir=sharp_dir or None, kernel_file=kernel_file or None)
        train, val = globalblur_dataset("train", crop=crop, seed=seed, **kw), globalblur_dataset("val", **kw)
    if augment:
        train = train.map(paired_flip_rot)
    return train, val


def spec_pairs(spec, split):
    """(pairs, names) of a file-based spec; `split` applies where the spec
    gives none (and the dataset has splits)."""
    spec = parse_spec(spec) if isinstance(spec, str) else spec
    root = spec.paths[0] if spec.paths else None
    split = spec.option("split", split)
    if spec.kind == "pairs":
        pairs = _pairs.folder_pairs(*spec.paths, check=False)
        return pairs, [os.path.splitext(os.path.basename(b))[0] for b, _ in pairs]
    if spec.kind == "gopro":
        return _layouts.gopro_pairs(root, split, spec.option("variant", "blur"))
    if spec.kind == "hide":
        return _layouts.hide_pairs(root, split)
    if spec.kind == "realblur":
        return _layouts.realblur_pairs(root, spec.option("camera"), split)
    if spec.kind == "kohler":
        return _layouts.kohler_pairs(root)
    if spec.kind == "list":
        return _layouts.list_pairs(root)
    raise DataSpecError(
        f"`data` {spec}: not a file-based spec; this needs pairs, gopro, hide, realblur, kohler or list"
    )


def _has_splits(spec):
    return spec.kind in ("gopro", "hide", "realblur")


def _evenly_spaced(items, n=MAX_VAL_PAIRS):
    if len(items) <= n:
        return list(items)
    idx = np.linspace(0, len(items) - 1, n).round().astype(int)
    return [items[i] for i in idx]


def train_val_pairs(spec, crop, min_size=1):
    """(train pairs, validation pairs) of a file-based spec, checked."""
    spec = parse_spec(spec) if isinstance(spec, str) else spec
    if _has_splits(spec) and spec.option("split", "train") == "train":
        train_pairs, _ = spec_pairs(spec, "train")
        try:
            val_pairs = _evenly_spaced(spec_pairs(spec, "test")[0])
        except _layouts.LayoutError:  # only the train split is on disk: hold some out
            train_pairs, val_pairs = _pairs.split_pairs(train_pairs, max_val=MAX_VAL_PAIRS)
        _pairs.check_pairs(train_pairs, min_size=max(min_size, crop))
        _pairs.check_pairs(val_pairs, min_size=min_size)
    else:
        pairs, _ = spec_pairs(spec, None)
        _pairs.check_pairs(pairs, min_size=max(min_size, crop))
        train_pairs, val_pairs = _pairs.split_pairs(pairs, max_val=MAX_VAL_PAIRS)
    return train_pairs, val_pairs


def train_val(spec, crop, seed=0, min_size=1, augment=True, shard=None):
    """(train, val): unbatched datasets of (blur, sharp); train is infinite.

    `shard=(count, index)`: this input pipeline's share of the training
    data (files, records, or for synthetic data its own seed stream).
    """
    spec = parse_spec(spec) if isinstance(spec, str) else spec
    if spec.kind == "synthetic":
        if shard is not None and shard[0] > 1:
            seed = seed * 1024 + shard[1]  # disjoint streams per pipeline (< 1024 pipelines)
        train = synthetic_dataset("train", crop=crop, seed=seed)
        if augment:
            train = train.map(paired_flip_rot)
        val = synthetic_dataset("val", crop=SYNTHETIC_VAL_SIZE)
        return train, val
    if spec.kind in SYNTHESIS_KINDS:
        return _synthesis_train_val(spec, crop, seed * 1024 + shard[1] if shard and shard[0] > 1 else seed, augment)
    if spec.kind == "photos":
        return _photos_train_val(spec, crop, seed * 1024 + shard[1] if shard and shard[0] > 1 else seed, augment)
    if spec.kind == "kohler":
        raise DataSpecError(f"`data` {spec}: Köhler's 48 photos are an evaluation benchmark; train on another dataset")
    if spec.kind == "tfrecord":
        from tfdeblur.datasets import tfrecord as _tfrecord

        return _tfrecord.train_val(spec.paths[0], crop, seed=seed, min_size=min_size, augment=augment, shard=shard)
    train_pairs, val_pairs = train_val_pairs(spec, crop, min_size)
    train = _pairs.pairs_dataset(train_pairs, crop=crop, training=True, seed=seed, augment=augment, shard=shard)
    val = _pairs.pairs_dataset(val_pairs, crop=None, training=False)
    return train, val


def evaluation(spec, min_size=1):
    """(dataset of full-size (blur, sharp) pairs, count, names) for scoring."""
    spec = parse_spec(spec) if isinstance(spec, str) else spec
    if spec.kind == "synthetic":
        from tfdeblur.datasets.synthetic import DEFAULT_VAL_IMAGES

        names = [f"synthetic_val_{i:03d}" for i in range(DEFAULT_VAL_IMAGES)]
        return synthetic_dataset("val", crop=SYNTHETIC_VAL_SIZE), len(names), names
    if spec.kind == "tfrecord":
        from tfdeblur.datasets import tfrecord as _tfrecord

        return _tfrecord.evaluation(spec.paths[0], min_size=min_size)
    if spec.kind == "photos":
        from tfdeblur.datasets.photos import VAL_IMAGES

        _, val = _photos_train_val(spec, 128, 0, augment=False)
        return val, VAL_IMAGES, [f"photos_val_{i:03d}" for i in range(VAL_IMAGES)]
    if spec.kind in SYNTHESIS_KINDS:
        _, val = _synthesis_train_val(spec, SYNTHETIC_VAL_SIZE, 0, augment=False)
        if spec.kind == "dynamic":
            names = [f"dynamic_val_{i:03d}" for i in range(16)]
        else:
            from tfdeblur.datasets.globalblur import GlobalBlurSet

            sharp_dir, kernel_file = (list(spec.paths) + [None, None])[:2]
            names = GlobalBlurSet(sharp_dir or None, kernel_file or None).val_names()
        return val, len(names), names
    pairs, names = spec_pairs(spec, "test")
    if spec.kind == "pairs":
        names = [os.path.basename(b) for b, _ in pairs]
    _pairs.check_pairs(pairs, min_size=min_size)
    return _pairs.pairs_dataset(pairs, training=False), len(pairs), names


def prepare(spec, out, count=None, seed=None, size=None, shards=1, crop=None, overwrite=False, log=None):
    """Writes `spec`'s training pairs as sharded TFRecords at `out` (`tfdeblur
    prepare`; read back with `tfrecord:OUT`); returns (meta, one summary line).
    Generated kinds (`tfrecord.GENERATED_KINDS`) need `count` and take `seed`
    and `size`; file kinds refuse those. Errors name the option."""
    log = log or logger.info
    from tfdeblur.datasets import tfrecord as _tfrecord

    spec = parse_spec(spec) if isinstance(spec, str) else spec
    if seed is not None and seed < 0:
        raise ValueError(f"`seed` must be a non-negative integer; got {seed}")
    if spec.kind in _tfrecord.GENERATED_KINDS:
        if count is None:
            raise ValueError(f"prepare {spec}: generated data needs `count` N (the number of pairs to write)")
        meta = _tfrecord.write_generated(spec, count, out, seed=seed or 0, size=size, shards=shards, crop=crop,
                                         overwrite=overwrite, log=log)
        return meta, (f"{spec}: {meta['pairs']} generated pairs (seed {meta['seed']}) -> {meta['records']} records "
                      f"in {len(meta['shards'])} shard(s) at {out}")
    if spec.kind == "tfrecord":
        raise ValueError(f"prepare {spec}: already TFRecords written by prepare; give a file-based or generated spec")
    for option, value in (("count", count), ("seed", seed), ("size", size)):
        if value is not None:
            raise ValueError(f"`{option}` applies to generated specs ({', '.join(_tfrecord.GENERATED_KINDS)}); got {spec}")
    pairs, names = spec_pairs(spec, "train")
    _pairs.check_pairs(pairs, min_size=crop or 1)
    meta = _tfrecord.write_tfrecords(pairs, names, out, shards=shards, crop=crop, source=str(spec),
                                     overwrite=overwrite, log=log)
    return meta, f"{spec}: {meta['pairs']} pairs -> {meta['records']} records in {len(meta['shards'])} shard(s) at {out}"
