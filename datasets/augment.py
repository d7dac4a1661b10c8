"""Paired augmentation: the same random window and the same flip/rotation
applied to the blurry and the sharp image (tf.data side, so `tf.*` is fine)."""
import tensorflow as tf


def paired_random_crop(blur, sharp, size, seed=None):
    """One random `size`x`size` window, identical on both images."""
    both = tf.concat([blur, sharp], axis=-1)
    both = tf.image.random_crop(both, [size, size, 6], seed=seed)
    return both[..., :3], both[..., 3:]


def paired_flip_rot(blur, sharp):
    """A random element of the dihedral group D4 (4 rotations x optional flip),
    as MTWDN sec. 4 and most deblurring recipes augment."""
    both = tf.concat([blur, sharp], axis=-1)
    k = tf.random.uniform([], 0, 4, dtype=tf.int32)
    both = tf.image.rot90(both, k)
    both = tf.cond(
        tf.random.uniform([]) < 0.5, lambda: tf.image.flip_left_right(both), lambda: both
    )
    return both[..., :3], both[..., 3:]
