"""`--data SPEC` strings -> datasets.

    synthetic                    procedural scenes + random uniform blur (default, no files)
    pairs:BLUR_DIR,SHARP_DIR     real pairs matched by file name

Unknown or malformed specs raise `DataSpecError` with a one-line message.
"""
import dataclasses
import os

from tfdeblur.datasets import pairs as _pairs
from tfdeblur.datasets.augment import paired_flip_rot
from tfdeblur.datasets.synthetic import synthetic_dataset

KINDS = ("synthetic", "pairs:BLUR_DIR,SHARP_DIR")
SYNTHETIC_VAL_SIZE = 256  # validation images of the synthetic default, pixels


class DataSpecError(ValueError):
    """A `--data` value that names no usable dataset."""


@dataclasses.dataclass(frozen=True)
class DataSpec:
    kind: str
    paths: tuple = ()

    def __str__(self):
        return self.kind if not self.paths else f"{self.kind}:{','.join(self.paths)}"


def parse_spec(spec):
    spec = (spec or "").strip()
    if spec == "synthetic":
        return DataSpec("synthetic")
    kind, sep, rest = spec.partition(":")
    if kind == "pairs" and sep:
        parts = [p for p in rest.split(",")]
        if len(parts) != 2 or not all(parts):
            raise DataSpecError(f"--data pairs needs two folders, pairs:BLUR_DIR,SHARP_DIR; got {spec!r}")
        return DataSpec("pairs", tuple(os.path.expanduser(p) for p in parts))
    raise DataSpecError(f"--data must be one of {', '.join(KINDS)}; got {spec!r}")


def train_val(spec, crop, seed=0, min_size=1, augment=True):
    """(train, val): unbatched datasets of (blur, sharp); train is infinite."""
    spec = parse_spec(spec) if isinstance(spec, str) else spec
    if spec.kind == "synthetic":
        train = synthetic_dataset("train", crop=crop, seed=seed)
        if augment:
            train = train.map(paired_flip_rot)
        val = synthetic_dataset("val", crop=SYNTHETIC_VAL_SIZE)
        return train, val
    pairs = _pairs.folder_pairs(*spec.paths, min_size=max(min_size, crop))
    train_pairs, val_pairs = _pairs.split_pairs(pairs)
    train = _pairs.pairs_dataset(train_pairs, crop=crop, training=True, seed=seed, augment=augment)
    val = _pairs.pairs_dataset(val_pairs, crop=None, training=False)
    return train, val


def evaluation(spec, min_size=1):
    """(dataset of full-size (blur, sharp) pairs, count, names) for scoring."""
    spec = parse_spec(spec) if isinstance(spec, str) else spec
    if spec.kind == "synthetic":
        from tfdeblur.datasets.synthetic import DEFAULT_VAL_IMAGES

        names = [f"synthetic_val_{i:03d}" for i in range(DEFAULT_VAL_IMAGES)]
        return synthetic_dataset("val", crop=SYNTHETIC_VAL_SIZE), len(names), names
    pairs = _pairs.folder_pairs(*spec.paths, min_size=min_size)
    names = [os.path.basename(b) for b, _ in pairs]
    return _pairs.pairs_dataset(pairs, training=False), len(pairs), names
