"""Sharded TFRecords of (blur, sharp) pairs: `prepare` writes, `tfrecord:DIR` reads.

`python cli.py prepare SPEC --out DIR [--shards N] [--crop N]` converts any
file-based `--data` spec, and `prepare synthetic|dynamic|globalblur[:...]
--count N [--seed S] [--size N]` N pairs of a generated one
(`write_generated`), into `DIR/pairs-00000-of-0000N.tfrecord` plus
`DIR/meta.json`. Multi-worker training reads them with per-file
auto-sharding (each worker opens its own shards), and decoding runs in
TensorFlow ops (`tf.io.decode_png`), outside the Python GIL.

Record (one `tf.train.Example` per pair or crop):

    name    bytes   pair name (with `@y,x` for a crop at row y, column x)
    blur    bytes   lossless PNG of the blurry image's RGB samples
    sharp   bytes   lossless PNG of the sharp image's RGB samples
    depth   int64   8 or 16 (bits per sample of both PNGs)
    height, width   int64

The samples are the integers `tfdeblur.io.read_image_samples` returns
(grayscale already replicated, alpha dropped), and reading divides them by
255 or 65535 in float32 exactly as `read_image` does, so a record reads
back bit-identical to the source files (tested). `--crop N` stores the
non-overlapping N x N tiles of each pair (row-major, remainders dropped)
instead of whole images: smaller records that need no crop at train time.
Pairs go to shards round robin, so shards hold equal counts (+-1).

The folder appears atomically: everything is written into a hidden
temporary folder beside DIR, which is renamed to DIR at the end.
"""
import json
import logging
import os

import cv2
import numpy as np
import tensorflow as tf

from tfdeblur.datasets.augment import paired_flip_rot, paired_random_crop
from tfdeblur.io import ImageError, atomic_path, read_image_samples, read_json

logger = logging.getLogger(__name__)

META = "meta.json"
FORMAT = "tfdeblur-pairs-v1"
MAX_VAL_RECORDS = 16


def shard_name(index, count):
    return f"pairs-{index:05d}-of-{count:05d}.tfrecord"


def _png(samples):
    bgr = cv2.cvtColor(samples, cv2.COLOR_RGB2BGR)
    # Level 1: about as small as the default for photos, several times faster.
    ok, data = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise ImageError("cannot encode a PNG record")
    return data.tobytes()


def _example(name, blur, sharp):
    feature = {
        "name": tf.train.Feature(bytes_list=tf.train.BytesList(value=[name.encode()])),
        "blur": tf.train.Feature(bytes_list=tf.train.BytesList(value=[_png(blur)])),
        "sharp": tf.train.Feature(bytes_list=tf.train.BytesList(value=[_png(sharp)])),
        "depth": tf.train.Feature(int64_list=tf.train.Int64List(value=[8 * blur.dtype.itemsize])),
        "height": tf.train.Feature(int64_list=tf.train.Int64List(value=[blur.shape[0]])),
        "width": tf.train.Feature(int64_list=tf.train.Int64List(value=[blur.shape[1]])),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _tiles(name, blur, sharp, crop):
    if not crop:
        yield name, blur, sharp
        return
    h, w = blur.shape[:2]
    for y in range(0, h - crop + 1, crop):
        for x in range(0, w - crop + 1, crop):
            yield f"{name}@{y},{x}", blur[y:y + crop, x:x + crop], sharp[y:y + crop, x:x + crop]


def _same_depth(blur, sharp):
    """Both images at one bit depth (a 16-bit image beside an 8-bit partner
    is widened, v * 257, which `/ 65535` maps to the same float as `/ 255`)."""
    if blur.dtype == sharp.dtype:
        return blur, sharp
    return blur.astype(np.uint16) * np.uint16(257) if blur.dtype == np.uint8 else blur, (
        sharp.astype(np.uint16) * np.uint16(257) if sharp.dtype == np.uint8 else sharp
    )


def write_tfrecords(pairs, names, out, shards=1, crop=None, source="", overwrite=False, log=None):
    """Writes `pairs` (paths) as `shards` TFRecord files in folder `out`.

    Returns the metadata dict also written to `out/meta.json`.
    """
    log = log or logger.info
    def samples():
        for (blur_path, sharp_path), name in zip(pairs, names):
            blur = read_image_samples(blur_path, allow_conversion=True)
            sharp = read_image_samples(sharp_path, allow_conversion=True)
            if blur.shape != sharp.shape:
                raise ImageError(f"{blur_path} is {blur.shape[1]}x{blur.shape[0]} but its sharp partner "
                                 f"{sharp_path} is {sharp.shape[1]}x{sharp.shape[0]}")
            yield blur_path, name, blur, sharp

    return _write(samples(), len(pairs), out, shards, crop, {"source": source}, overwrite, log)


def _write(samples, total, out, shards, crop, meta_extra, overwrite, log):
    """Writes (label, name, blur, sharp) integer samples; see `write_tfrecords`."""
    if not isinstance(shards, int) or shards < 1:
        raise ValueError(f"`shards` must be a positive integer; got {shards!r}")
    if crop is not None and (not isinstance(crop, int) or crop < 1):
        raise ValueError(f"`crop` must be a positive integer; got {crop!r}")
    if shards > total:
        raise ValueError(f"`shards` must be at most the {total} pairs; got {shards}")
    out = os.path.abspath(out)
    if os.path.exists(out) and not (os.path.isdir(out) and (overwrite or not os.listdir(out))):
        raise ValueError(f"`out` {out}: already exists; choose another folder or pass `overwrite`")
    try:
        with atomic_path(out) as tmp:
            os.makedirs(tmp)
            writers = [tf.io.TFRecordWriter(os.path.join(tmp, shard_name(i, shards))) for i in range(shards)]
            counts = [0] * shards
            records = 0
            for k, (label, name, blur, sharp) in enumerate(samples):
                if crop and min(blur.shape[:2]) < crop:
                    raise ImageError(f"{label}: {blur.shape[1]}x{blur.shape[0]} is smaller than `crop` {crop}")
                blur, sharp = _same_depth(blur, sharp)
                for tile_name, b, s in _tiles(name, blur, sharp, crop):
                    i = records % shards
                    writers[i].write(_example(tile_name, b, s))
                    counts[i] += 1
                    records += 1
                if log and (k + 1) % 100 == 0:
                    log(f"{k + 1}/{total} pairs, {records} records")
            for w in writers:
                w.close()
            names = [shard_name(i, shards) for i in range(shards)]
            # Shard sizes let a reader name a truncated shard before reading it.
            meta = {"format": FORMAT, **meta_extra, "pairs": total, "records": records,
                    "crop": crop, "shards": names, "counts": counts,
                    "bytes": [os.path.getsize(os.path.join(tmp, n)) for n in names]}
            with open(os.path.join(tmp, META), "w") as f:
                json.dump(meta, f, indent=2)
    except (OSError, tf.errors.OpError) as e:
        from tfdeblur.errors import disk_full, tf_error_reason

        if not disk_full(e):
            raise
        reason = e.strerror if isinstance(e, OSError) and e.strerror else tf_error_reason(e).split("; ")[-1]
        raise ValueError(f"`out` {out}: disk full ({reason}); nothing was written") from e
    return meta


# Specs whose pairs are generated (no files): `prepare` writes `count` of them.
GENERATED_KINDS = ("synthetic", "globalblur", "dynamic")
DEFAULT_GENERATED_SIZE = 256


def _to_uint8(x):
    return np.round(np.clip(x, 0.0, 1.0) * 255).astype(np.uint8)


def generated_samples(spec, count, seed=0, size=None):
    """Yields (label, name, blur, sharp) uint8 samples 0 .. count - 1 of a
    generated spec, each a function of (`seed`, index) only:

    - `synthetic`: `synthetic.make_pair((SPLIT_TAGS["train"], seed, i), size)`,
      i.e. element i of `synthetic_dataset("train", crop=size, seed=seed)`;
    - `dynamic`: `dynamic.make_dynamic_pair((SPLIT_TAGS["train"], seed, i), size)`,
      element i of `dynamic_dataset("train", crop=size, seed=seed)`;
    - `globalblur[:SHARP_DIR[,KERNELS]]`: the whole (sharp image, kernel)
      pair that element i of `globalblur_dataset("train", seed=seed)` crops
      (`GlobalBlurSet.train_pair_index`), at the image's own size (`size`
      must be None).

    The generators' samples are multiples of 1/255, so the uint8 values
    are exact and `tfrecord:DIR` reads back the generators' float32 values
    bit for bit.
    """
    kind = spec.kind
    if kind not in GENERATED_KINDS:
        raise ValueError(f"{spec}: not a generated spec ({', '.join(GENERATED_KINDS)})")
    if kind == "globalblur":
        if size is not None:
            raise ValueError("`size` applies to synthetic and dynamic; globalblur pairs have their images' size")
        from tfdeblur.datasets.globalblur import GlobalBlurSet

        sharp_dir, kernel_file = (list(spec.paths) + [None, None])[:2]
        gb = GlobalBlurSet(sharp_dir or None, kernel_file or None, seed=0)

        def make(i):
            s, k = gb.train_pair_index(i, seed)
            return f"{gb.sharp.names[s]}_k{k:02d}_{i:06d}", gb.pair(s, k)
    else:
        size = DEFAULT_GENERATED_SIZE if size is None else size
        if not isinstance(size, int) or size < 1:
            raise ValueError(f"`size` must be a positive integer; got {size!r}")
        if kind == "synthetic":
            from tfdeblur.datasets.synthetic import SPLIT_TAGS, make_pair
        else:
            from tfdeblur.datasets.dynamic import SPLIT_TAGS, make_dynamic_pair as make_pair

        def make(i):
            return f"{kind}_{i:06d}", make_pair((SPLIT_TAGS["train"], int(seed), i), size)

    for i in range(count):
        name, (blur, sharp) = make(i)
        yield f"{spec} sample {i}", name, _to_uint8(blur), _to_uint8(sharp)


def write_generated(spec, count, out, seed=0, size=None, shards=1, crop=None, overwrite=False, log=None):
    """Writes `count` generated pairs of `spec` (see `generated_samples`) like
    `write_tfrecords`; meta.json also records seed and size."""
    log = log or logger.info
    if not isinstance(count, int) or count < 1:
        raise ValueError(f"`count` must be a positive integer; got {count!r}")
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"`seed` must be a non-negative integer; got {seed!r}")
    samples = generated_samples(spec, count, seed, size)
    extra = {"source": str(spec), "seed": seed,
             "size": None if spec.kind == "globalblur" else (size or DEFAULT_GENERATED_SIZE)}
    return _write(samples, count, out, shards, crop, extra, overwrite, log)


def read_meta(directory):
    path = os.path.join(directory, META)
    if not os.path.isdir(directory):
        raise ImageError(f"{directory}: no such directory (tfrecord:DIR)")
    if not os.path.isfile(path):
        raise ImageError(f"{directory}: no {META}; not a folder written by `prepare`")
    meta = read_json(path, error=ImageError)
    if meta.get("format") != FORMAT:
        raise ImageError(f"{path}: format must be {FORMAT}; got {meta.get('format')!r}")
    missing = [s for s in meta["shards"] if not os.path.isfile(os.path.join(directory, s))]
    if missing:
        raise ImageError(f"{directory}: {len(missing)} shard(s) missing ({', '.join(missing[:3])})")
    for shard, expected in zip(meta["shards"], meta.get("bytes", ())):  # folders from before "bytes": unchecked
        size = os.path.getsize(os.path.join(directory, shard))
        if size != expected:
            raise ImageError(f"{os.path.join(directory, shard)}: damaged TFRecord shard ({size} bytes; "
                             f"prepare wrote {expected}); prepare it again")
    return meta


def damaged_shard(directory):
    """(shard path, reason) of the first shard of a prepared folder whose
    records fail their checksums, or None. Reads every record: for naming
    the shard after a `DataLossError`, whose message names none."""
    meta = read_meta(directory)
    for shard in meta["shards"]:
        path = os.path.join(directory, shard)
        try:
            for _ in tf.data.TFRecordDataset(path):
                pass
        except tf.errors.DataLossError as e:
            from tfdeblur.errors import tf_error_reason

            return path, tf_error_reason(e)
    return None


_FEATURES = {
    "name": tf.io.FixedLenFeature([], tf.string),
    "blur": tf.io.FixedLenFeature([], tf.string),
    "sharp": tf.io.FixedLenFeature([], tf.string),
    "depth": tf.io.FixedLenFeature([], tf.int64),
    "height": tf.io.FixedLenFeature([], tf.int64),
    "width": tf.io.FixedLenFeature([], tf.int64),
}


def _decode(data, depth):
    def as_float(dtype, scale):
        return tf.cast(tf.io.decode_png(data, channels=3, dtype=dtype), tf.float32) / scale

    img = tf.cond(depth == 16, lambda: as_float(tf.uint16, 65535.0), lambda: as_float(tf.uint8, 255.0))
    img.set_shape([None, None, 3])
    return img


def parse_record(record):
    """(name, blur, sharp) of one serialized record; float32 [0, 1]."""
    f = tf.io.parse_single_example(record, _FEATURES)
    return f["name"], _decode(f["blur"], f["depth"]), _decode(f["sharp"], f["depth"])


def _files(directory, meta, shard=None):
    files = [os.path.join(directory, s) for s in meta["shards"]]
    if shard is not None:
        count, index = shard
        files = files[index::count]
        if not files:
            raise ImageError(f"{directory}: {len(meta['shards'])} shard(s) cannot feed {count} input pipelines")
    return files


def records_dataset(directory, shard=None, with_names=False):
    """Every record once, shards in order (deterministic): (blur, sharp) or
    (name, blur, sharp)."""
    meta = read_meta(directory)
    ds = tf.data.TFRecordDataset(_files(directory, meta, shard))
    ds = ds.map(parse_record, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds if with_names else ds.map(lambda n, b, s: (b, s))


def _min_side(meta, directory, min_size):
    if meta.get("crop") and meta["crop"] < min_size:
        raise ImageError(f"{directory}: records are {meta['crop']}x{meta['crop']} crops, under the minimum {min_size}")


SHUFFLE_BYTES = 256 << 20  # encoded records held by the shuffle buffer


def _shuffle_buffer(directory, meta):
    """As many records as fit in `SHUFFLE_BYTES` (at least 16, at most all):
    thousands of pre-cut crops, a few dozen full 720p pairs."""
    size = sum(os.path.getsize(os.path.join(directory, s)) for s in meta["shards"])
    per_record = max(1, size // max(1, meta["records"]))
    return int(min(max(1, meta["records"]), max(16, SHUFFLE_BYTES // per_record)))


def train_val(directory, crop, seed=0, min_size=1, augment=True, shard=None):
    """(train, val) from a prepared folder: every 10th record of the first
    shard (at most 16) is held out for validation, the rest trains
    (shuffled, repeated, random crops, D4 augmentation). With
    `shard=(count, index)` a pipeline reads only its shard files."""
    meta = read_meta(directory)
    _min_side(meta, directory, max(min_size, crop))
    first = meta["shards"][0]

    def keep(for_val):
        def predicate(i, file_index, record):
            held = tf.logical_and(tf.equal(file_index, 0), tf.logical_and(i % 10 == 0, i < 10 * MAX_VAL_RECORDS))
            return held if for_val else tf.logical_not(held)

        return predicate

    def indexed(files):
        # (index within its file, index of the file among all shards, record)
        per_file = [
            tf.data.TFRecordDataset(f).enumerate().map(
                lambda i, r, j=meta["shards"].index(os.path.basename(f)): (i, tf.constant(j, tf.int64), r)
            )
            for f in files
        ]
        ds = per_file[0]
        for other in per_file[1:]:
            ds = ds.concatenate(other)
        return ds

    files = _files(directory, meta, shard)
    train = indexed(files)
    if meta["records"] > 1:
        train = train.filter(keep(False))
    train = train.map(lambda i, j, r: r)
    train = train.shuffle(_shuffle_buffer(directory, meta), seed=seed, reshuffle_each_iteration=True).repeat()
    train = train.map(parse_record, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
    train = train.map(lambda n, b, s: paired_random_crop(b, s, crop), num_parallel_calls=tf.data.AUTOTUNE)
    if augment:
        train = train.map(paired_flip_rot, num_parallel_calls=tf.data.AUTOTUNE)
    val = indexed([os.path.join(directory, first)]).filter(keep(True)).map(lambda i, j, r: r)
    val = val.map(parse_record).map(lambda n, b, s: (b, s))
    return train, val


def evaluation(directory, min_size=1):
    """(dataset of (blur, sharp), count, names), every record in shard order."""
    meta = read_meta(directory)
    _min_side(meta, directory, min_size)
    names = [n.decode() for n, _, _ in _names_only(directory, meta)]
    return records_dataset(directory), meta["records"], names


def _names_only(directory, meta):
    ds = tf.data.TFRecordDataset(_files(directory, meta)).map(
        lambda r: (tf.io.parse_single_example(r, {"name": _FEATURES["name"]})["name"], 0, 0)
    )
    return ds.as_numpy_iterator()


def damaged_data_line(data, e):
    """A `DataLossError` while reading `--data` as one line, or None for
    any other error. TensorFlow's message names no file: for
    `tfrecord:DIR` the shards are read again to find the damaged one."""
    if type(e).__name__ != "DataLossError" or not type(e).__module__.startswith("tensorflow"):
        return None
    from tfdeblur.errors import tf_error_reason

    data = data or ""
    if data.startswith("tfrecord:"):
        found = damaged_shard(data.split(":", 1)[1])
        if found:
            return f"{found[0]}: damaged TFRecord shard ({found[1]}); prepare it again"
    return f"`data` {data}: damaged data ({tf_error_reason(e)})"
