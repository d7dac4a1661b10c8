"""Real (blur, sharp) pairs from two folders matched by file name.

`--data pairs:BLUR_DIR,SHARP_DIR`. Every pair is checked before training
starts (readable, not truncated, same size, large enough), reading headers only,
so a bad file is reported by name in one line instead of failing mid-run.
"""
import os

import numpy as np
import tensorflow as tf

from tfdeblur.datasets.augment import paired_color_jitter, paired_flip_rot, paired_random_crop
from tfdeblur.io import ImageError, check_header, header_size, match_pairs, read_image


def _header(path):
    """(width, height) from the file header, without decoding pixels."""
    try:
        return header_size(path)
    except ImageError as e:
        raise ImageError(f"{path}: not a readable image ({e.__cause__.__class__.__name__})") from e


_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"


def _truncated(path):
    """True when a PNG lacks its IEND chunk: the usual signature of an
    interrupted download or copy, found from the file's last bytes without
    decoding it. JPEGs are checked by `tfdeblur.io.check_header`, which
    walks to the EOI marker: data after it (a phone's "motion photo"
    video) is fine, so the last bytes say nothing."""
    ext = os.path.splitext(path)[1].lower()
    if ext != ".png":
        return False
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - 64))
        tail = f.read()
    if ext == ".png":
        return _PNG_END not in tail[-len(_PNG_END) - 8:]  # a few trailing bytes are tolerated


def check_pairs(pairs, min_size=1):
    """Raises `ImageError` naming the first unusable file or pair.

    Reads headers (a PNG's last bytes, a JPEG's markers) only: unreadable
    or truncated files, files over the pixel budget
    (`tfdeblur.io.max_decode_pixels`), pairs of different sizes, images
    under `min_size`.
    Grayscale, RGBA and 16-bit images are fine: they are converted when
    read (`tfdeblur.io.read_image(allow_conversion=True)`: gray replicated
    to RGB, alpha dropped, 16-bit samples divided by 65535). Returns the
    (width, height) of each pair.
    """
    sizes = []
    for blur, sharp in pairs:
        wb, hb = _header(blur)
        ws, hs = _header(sharp)
        for path in (blur, sharp):
            check_header(path)
            if _truncated(path):
                raise ImageError(f"{path}: truncated image file (its end marker is missing)")
        if (wb, hb) != (ws, hs):
            raise ImageError(
                f"{blur} is {wb}x{hb} but its sharp partner {sharp} is {ws}x{hs}"
            )
        if min(wb, hb) < min_size:
            raise ImageError(f"{blur}: {wb}x{hb} is smaller than the minimum {min_size}x{min_size}")
        sizes.append((wb, hb))
    return sizes


def _load_pair(blur_path, sharp_path):
    blur = read_image(blur_path.decode(), allow_conversion=True)
    sharp = read_image(sharp_path.decode(), allow_conversion=True)
    return blur, sharp


def load_pair_tf(blur_path, sharp_path):
    blur, sharp = tf.numpy_function(_load_pair, [blur_path, sharp_path], [tf.float32, tf.float32])
    blur.set_shape([None, None, 3])
    sharp.set_shape([None, None, 3])
    return blur, sharp


# Decoded pairs are cached in memory when they fit in this many bytes
# (float32, both images): a folder of a few hundred photos is decoded once,
# GoPro's 2103 train pairs (46 GB as float32) are decoded every time.
CACHE_BYTES = int(os.environ.get("TFDEBLUR_CACHE_BYTES", 2 << 30))


def decoded_bytes(pairs):
    """Memory of the decoded float32 (blur, sharp) images of `pairs`."""
    total = 0
    for blur, _ in pairs:
        w, h = _header(blur)
        total += 2 * w * h * 3 * 4
    return total


def pairs_dataset(pairs, crop=None, training=False, seed=0, augment=True, jitter=0.0,
                  cache="auto", shard=None):
    """tf.data of (blur, sharp) float32 [0, 1] from a list of path pairs.

    training=True: shuffled with `seed`, repeated, decoded in parallel
    (non-deterministic order), random paired crops of `crop` pixels, D4
    augmentation (`augment`) and, when `jitter` > 0, a brightness/colour
    gain identical on both images (`augment.paired_color_jitter`).
    `cache`: True, False or "auto" (cache the decoded images in memory when
    they fit in `CACHE_BYTES`). training=False: full images (or a centre
    crop when `crop` is given), in order, once.

    `shard=(count, index)` keeps every count-th pair from `index` on, before
    anything is read: one input pipeline per worker in multi-worker
    training reads only its own files (see `tfdeblur.datasets.stream`).
    """
    if shard is not None:
        count, index = shard
        pairs = list(pairs)[index::count]
    if not pairs:
        raise ImageError("pairs_dataset needs at least one pair; got none")
    blur_paths = [p[0] for p in pairs]
    sharp_paths = [p[1] for p in pairs]
    ds = tf.data.Dataset.from_tensor_slices((blur_paths, sharp_paths))
    if training:
        use_cache = decoded_bytes(pairs) <= CACHE_BYTES if cache == "auto" else bool(cache)
        if use_cache:
            ds = ds.map(load_pair_tf, num_parallel_calls=tf.data.AUTOTUNE).cache()
            ds = ds.shuffle(len(pairs), seed=seed, reshuffle_each_iteration=True).repeat()
        else:
            ds = ds.shuffle(len(pairs), seed=seed, reshuffle_each_iteration=True).repeat()
            ds = ds.map(load_pair_tf, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
        if crop:
            ds = ds.map(lambda b, s: paired_random_crop(b, s, crop), num_parallel_calls=tf.data.AUTOTUNE)
        if augment:
            ds = ds.map(paired_flip_rot, num_parallel_calls=tf.data.AUTOTUNE)
        if jitter:
            ds = ds.map(lambda b, s: paired_color_jitter(b, s, jitter), num_parallel_calls=tf.data.AUTOTUNE)
        return ds
    ds = ds.map(load_pair_tf, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if crop:
        def centre(b, s):
            both = tf.image.resize_with_crop_or_pad(tf.concat([b, s], -1), crop, crop)
            return both[..., :3], both[..., 3:]

        ds = ds.map(centre)
    return ds


def folder_pairs(blur_dir, sharp_dir, min_size=1, check=True):
    """Matched (and, with `check`, checked) (blur, sharp) paths of two folders."""
    for d in (blur_dir, sharp_dir):
        if not os.path.isdir(d):
            raise ImageError(f"{d}: no such directory")
    pairs = match_pairs(blur_dir, sharp_dir)
    if check:
        check_pairs(pairs, min_size=min_size)
    return pairs


def split_pairs(pairs, max_val=16):
    """Deterministic train/validation split: every 10th pair, at most `max_val`."""
    if len(pairs) < 2:
        return list(pairs), list(pairs)
    idx = np.arange(len(pairs))
    val_idx = set(idx[::10][:max_val].tolist())
    val = [pairs[i] for i in sorted(val_idx)]
    train = [pairs[i] for i in idx if i not in val_idx]
    return train, val
