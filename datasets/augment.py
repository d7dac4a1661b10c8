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


def paired_color_jitter(blur, sharp, strength=0.1, seed=None):
    """One random brightness and colour gain applied to both images.

    A global gain exp(u), u ~ U(-strength, strength), times a per-channel
    gain exp(v_c), v_c ~ U(-strength/2, strength/2), then clipping to
    [0, 1]: exposure and white-balance changes that keep the pair aligned
    in intensity (the blurry image stays the sharp one's blur wherever
    neither clips).
    """
    s = tf.cast(strength, tf.float32)
    gain = tf.exp(tf.random.uniform([], -s, s, seed=seed)) * tf.exp(
        tf.random.uniform([3], -s / 2, s / 2, seed=seed)
    )
    return tf.clip_by_value(blur * gain, 0.0, 1.0), tf.clip_by_value(sharp * gain, 0.0, 1.0)


def paired_flip_rot_stateless(blur, sharp, seed):
    """`paired_flip_rot` drawn from a stateless seed (shape [2] ints): the
    same seed gives the same transform in any process, so a resumed run
    replays exactly the augmentation of the run it continues."""
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=2)
    both = tf.concat([blur, sharp], axis=-1)
    k = tf.random.stateless_uniform([], seeds[0], 0, 4, dtype=tf.int32)
    both = tf.image.rot90(both, k)
    both = tf.cond(
        tf.random.stateless_uniform([], seeds[1]) < 0.5,
        lambda: tf.image.flip_left_right(both),
        lambda: both,
    )
    return both[..., :3], both[..., 3:]


def paired_random_crop_stateless(blur, sharp, size, seed):
    """`paired_random_crop` drawn from a stateless seed (shape [2] ints)."""
    both = tf.concat([blur, sharp], axis=-1)
    both = tf.image.stateless_random_crop(both, [size, size, 6], seed=seed)
    return both[..., :3], both[..., 3:]


def color_gains_stateless(strength, seed):
    """The [3] gain of `paired_color_jitter` drawn from a stateless seed
    (shape [2] ints): exp(u) * exp(v_c), u ~ U(-s, s), v_c ~ U(-s/2, s/2)."""
    s = tf.cast(strength, tf.float32)
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=2)
    u = tf.random.stateless_uniform([], seeds[0], -s, s)
    v = tf.random.stateless_uniform([3], seeds[1], -s / 2, s / 2)
    return tf.exp(u) * tf.exp(v)


def paired_color_jitter_stateless(blur, sharp, strength, seed):
    """`paired_color_jitter` drawn from a stateless seed: the same gain on
    both images, and the same gain for the same seed in any process (exact
    resume, `tfdeblur.datasets.stream`)."""
    gain = color_gains_stateless(strength, seed)
    return tf.clip_by_value(blur * gain, 0.0, 1.0), tf.clip_by_value(sharp * gain, 0.0, 1.0)
