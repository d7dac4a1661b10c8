"""Real (blur, sharp) pairs from two folders matched by file name.

`--data pairs:BLUR_DIR,SHARP_DIR`. Every pair is checked before training
starts (readable, 8-bit RGB, same size, large enough), reading headers only,
so a bad file is reported by name in one line instead of failing mid-run.
"""
import os

import numpy as np
import tensorflow as tf

from tfdeblur.datasets.augment import paired_flip_rot, paired_random_crop
from tfdeblur.io import ImageError, match_pairs, read_image


def _header(path):
    """(width, height, mode) from the file header, without decoding pixels."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return im.size[0], im.size[1], im.mode
    except (UnidentifiedImageError, OSError) as e:
        raise ImageError(f"{path}: not a readable image ({e.__class__.__name__})") from e


def _png_bit_depth(path):
    """Bit depth from a PNG's IHDR chunk (Pillow reports 16-bit RGB as "RGB")."""
    with open(path, "rb") as f:
        head = f.read(26)
    if len(head) == 26 and head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
        return head[24]
    return 8


def check_pairs(pairs, min_size=1):
    """Raises `ImageError` naming the first unusable file or pair."""
    for blur, sharp in pairs:
        wb, hb, mb = _header(blur)
        ws, hs, ms = _header(sharp)
        for path, mode in ((blur, mb), (sharp, ms)):
            if mode != "RGB":
                raise ImageError(
                    f"{path}: image mode {mode}; tfdeblur expects 8-bit RGB images"
                )
            if _png_bit_depth(path) != 8:
                raise ImageError(f"{path}: 16-bit image; tfdeblur expects 8-bit RGB images")
        if (wb, hb) != (ws, hs):
            raise ImageError(
                f"{blur} is {wb}x{hb} but its sharp partner {sharp} is {ws}x{hs}"
            )
        if min(wb, hb) < min_size:
            raise ImageError(f"{blur}: {wb}x{hb} is smaller than the minimum {min_size}x{min_size}")


def _load_pair(blur_path, sharp_path):
    blur = read_image(blur_path.decode())
    sharp = read_image(sharp_path.decode())
    return blur, sharp


def load_pair_tf(blur_path, sharp_path):
    blur, sharp = tf.numpy_function(_load_pair, [blur_path, sharp_path], [tf.float32, tf.float32])
    blur.set_shape([None, None, 3])
    sharp.set_shape([None, None, 3])
    return blur, sharp


def pairs_dataset(pairs, crop=None, training=False, seed=0, augment=True):
    """tf.data of (blur, sharp) float32 [0, 1] from a list of path pairs.

    training=True: shuffled, repeated, random paired crops of `crop` pixels
    and D4 augmentation. training=False: full images (or a centre crop when
    `crop` is given), in order, once.
    """
    blur_paths = [p[0] for p in pairs]
    sharp_paths = [p[1] for p in pairs]
    ds = tf.data.Dataset.from_tensor_slices((blur_paths, sharp_paths))
    if training:
        ds = ds.shuffle(len(pairs), seed=seed, reshuffle_each_iteration=True).repeat()
    ds = ds.map(load_pair_tf, num_parallel_calls=tf.data.AUTOTUNE, deterministic=not training)
    if crop:
        if training:
            ds = ds.map(lambda b, s: paired_random_crop(b, s, crop), num_parallel_calls=tf.data.AUTOTUNE)
        else:
            def centre(b, s):
                both = tf.image.resize_with_crop_or_pad(tf.concat([b, s], -1), crop, crop)
                return both[..., :3], both[..., 3:]

            ds = ds.map(centre)
    if training and augment:
        ds = ds.map(paired_flip_rot, num_parallel_calls=tf.data.AUTOTUNE)
    return ds


def folder_pairs(blur_dir, sharp_dir, min_size=1):
    """Matched and checked (blur, sharp) paths of two folders."""
    for d in (blur_dir, sharp_dir):
        if not os.path.isdir(d):
            raise ImageError(f"{d}: no such directory")
    pairs = match_pairs(blur_dir, sharp_dir)
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
