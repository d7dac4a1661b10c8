"""The training stream: batches that are a pure function of (seed, step).

Exact resume needs the data pipeline's position. Instead of serializing a
`tf.data` iterator (prefetch buffers of images, Python generators that
cannot be saved), every training sample is indexed: sample `g` of the run
(g = 0, 1, 2, ...) depends only on the run's seed and `g`, so the batch of
step `s` is samples `s * B ... s * B + B - 1` (B the global batch), and a run
resumed at step `k` starts its stream at sample `k * B`. The checkpoint
stores that position (`data_position`); nothing else is needed.

- `synthetic`: sample g is `make_pair((train tag, seed, g))` (see
  `datasets/synthetic.py`), then a D4 flip/rotation drawn from the stateless
  seed (seed, g).
- file kinds (`pairs:`, `gopro:`, `hide:`, `realblur:`, `list:`): epoch
  e = g // n of the n training pairs visits them in the order of a
  stateless permutation seeded (seed, e); the crop window and the
  flip/rotation of sample g are drawn from the stateless seed (seed, g).
  Each worker decodes only the pairs of its own samples.
- `dynamic`, `globalblur`: sample g is the dataset's own element g, then a
  stateless flip/rotation as for `synthetic`.
- `photos:DIR`: sample g is `datasets.photos.make_photo_pair` of the
  train tag, seed and g (a pure function of them and the folder's photos),
  then a stateless flip/rotation as for `synthetic`.
- `tfrecord:` (sequential files): the data module's training dataset, one
  pipeline per worker reading its own shard files
  (`datasets.spec.train_val(shard=...)`). It decodes in parallel without a
  fixed order and draws crops from stateful RNGs, so it cannot be replayed;
  a resumed run restarts it with the seed `seed + step` (fresh samples, the
  same distribution): resume is exact in the weights, optimizer and step,
  not in the batches.

Sharding (multi-worker, indexed kinds): worker w of W builds only its own part of each
global batch, samples `s * B + w * b ... s * B + w * b + b - 1` with
b = B / W, so the global batch of step s is the same whatever the number of
workers (and equal to the single-device batch).

Colour jitter (`jitter` > 0, `train --jitter S`): after the kind's own
crop and flip/rotation, sample g is multiplied by the brightness/colour
gain of `augment.paired_color_jitter` (exp(u) * exp(v_c), u ~ U(-S, S),
v_c ~ U(-S/2, S/2)), the same gain on blur and sharp, then clipped to
[0, 1]. The gain is drawn from the stateless seed fold_in((seed, g),
`JITTER_TAG`), so it is a function of (seed, g) like the rest of the
sample and resume stays exact; with `jitter` = 0 the stream is unchanged.

A recipe's augmentations beyond flip/rotation (`extra_augment`, from
`tfdeblur.training.recipes.augmentation`) act likewise, before the jitter,
seeded by fold_in((seed, g), `EXTRA_TAG`); `augment=False` turns the D4
flip/rotation off (LMFN trains without augmentation).
"""
import tensorflow as tf

from tfdeblur.datasets import pairs as _pairs
from tfdeblur.datasets import spec as _spec
from tfdeblur.datasets.augment import (paired_color_jitter_stateless, paired_flip_rot_stateless,
                                       paired_random_crop_stateless)
from tfdeblur.datasets.synthetic import synthetic_dataset


# `--data` kinds read as a list of image files: indexed exactly (see above).
FILE_KINDS = ("pairs", "gopro", "hide", "realblur", "list")
JITTER_TAG = 0x6A177E  # folded into a sample's seed (seed, g) for its colour gain
EXTRA_TAG = 0xA06E47  # folded into a sample's seed for the recipe's extra augmentations


def sample_indices(start_step, global_batch, shard=0, num_shards=1):
    """Infinite int64 dataset of the global sample indices one shard reads,
    in order, from step `start_step` on."""
    if global_batch % num_shards:
        raise ValueError(f"global batch {global_batch} must be a multiple of the {num_shards} shards")
    local = global_batch // num_shards
    base = int(start_step) * global_batch + shard * local

    def to_global(j):
        return base + (j // local) * global_batch + j % local

    return tf.data.Dataset.counter(dtype=tf.int64).map(to_global)


def _sample_seed(seed, index):
    return tf.stack([tf.constant(int(seed), tf.int64), index])


def _with_flip_rot(indices, pairs, seed):
    """Sample g flipped/rotated by the stateless seed (seed, g)."""
    keyed = tf.data.Dataset.zip((indices, pairs))
    return keyed.map(
        lambda g, pair: paired_flip_rot_stateless(pair[0], pair[1], _sample_seed(seed, g)),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )


def _synthetic(indices, crop, seed, augment):
    pairs = synthetic_dataset("train", crop=crop, seed=seed, indices=indices)
    return _with_flip_rot(indices, pairs, seed) if augment else pairs


def _file_pairs(spec, indices, crop, seed, min_size, augment):
    train_pairs, _ = _spec.train_val_pairs(spec, crop, min_size)
    n = len(train_pairs)
    blur_paths = tf.constant([p[0] for p in train_pairs])
    sharp_paths = tf.constant([p[1] for p in train_pairs])

    def load(g):
        perm = tf.random.experimental.stateless_shuffle(
            tf.range(n, dtype=tf.int64), seed=tf.stack([tf.constant(int(seed), tf.int64), g // n])
        )
        i = perm[g % n]
        blur, sharp = _pairs.load_pair_tf(blur_paths[i], sharp_paths[i])
        crop_seed, aug_seed = tf.unstack(
            tf.random.experimental.stateless_split(_sample_seed(seed, g), num=2)
        )
        blur, sharp = paired_random_crop_stateless(blur, sharp, crop, crop_seed)
        if augment:
            blur, sharp = paired_flip_rot_stateless(blur, sharp, aug_seed)
        return blur, sharp

    return indices.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def _procedural(spec, indices, crop, seed, augment):
    """GLBDN's global-blur set and the dynamic scenes: sample g is the
    dataset's own element g (as `globalblur_dataset` / `dynamic_dataset`
    make it), generated only for this shard's indices."""
    if spec.kind == "dynamic":
        from tfdeblur.datasets.dynamic import SPLIT_TAGS, make_dynamic_pair

        def generate(g):
            return make_dynamic_pair((SPLIT_TAGS["train"], int(seed), int(g)), crop)
    else:
        from tfdeblur.datasets.globalblur import GlobalBlurSet

        sharp_dir, kernel_file = (list(spec.paths) + [None, None])[:2]
        gb = GlobalBlurSet(sharp_dir or None, kernel_file or None, seed=0)

        def generate(g):
            return gb.train_element(int(g), crop, int(seed))

    def to_tensors(g):
        blur, sharp = tf.numpy_function(generate, [g], [tf.float32, tf.float32], stateful=False)
        blur.set_shape((crop, crop, 3))
        sharp.set_shape((crop, crop, 3))
        if augment:
            blur, sharp = paired_flip_rot_stateless(blur, sharp, _sample_seed(seed, g))
        return blur, sharp

    return indices.map(to_tensors, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def _photos(spec, indices, crop, seed, augment):
    from tfdeblur.datasets.photos import photos_dataset

    pairs = photos_dataset(spec.paths[0], "train", crop=crop, seed=seed, indices=indices,
                           mix=_spec.photos_mix(spec))
    return _with_flip_rot(indices, pairs, seed) if augment else pairs


def jitter_seed(seed, index):
    """The stateless seed of sample `index`'s colour gain."""
    return tf.random.experimental.stateless_fold_in(_sample_seed(seed, index), JITTER_TAG)


def _with_jitter(ds, indices, seed, jitter):
    keyed = tf.data.Dataset.zip((indices, ds))
    return keyed.map(
        lambda g, pair: paired_color_jitter_stateless(pair[0], pair[1], jitter, jitter_seed(seed, g)),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )


def _with_extra(ds, indices, seed, extra):
    keyed = tf.data.Dataset.zip((indices, ds))
    return keyed.map(
        lambda g, pair: extra(pair[0], pair[1], tf.random.experimental.stateless_fold_in(_sample_seed(seed, g), EXTRA_TAG)),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )


def train_stream(spec, crop, seed, batch_size, start_step=0, shard=0, num_shards=1,
                 min_size=1, augment=True, replica_batch=None, jitter=0.0, extra_augment=None):
    """Batched training dataset of one shard from step `start_step` on.

    Batches hold `batch_size // num_shards` samples (this shard's part of
    the global batch `batch_size`), or `replica_batch` when the shard feeds
    several local replicas (they take its consecutive batches in turn); see
    the module docstring for which samples.
    """
    spec = _spec.parse_spec(spec) if isinstance(spec, str) else spec
    local = batch_size // num_shards
    indices = sample_indices(start_step, batch_size, shard, num_shards)
    if spec.kind == "synthetic":
        ds = _synthetic(indices, crop, seed, augment)
    elif spec.kind in FILE_KINDS:
        ds = _file_pairs(spec, indices, crop, seed, min_size, augment)
    elif spec.kind in ("dynamic", "globalblur"):
        ds = _procedural(spec, indices, crop, seed, augment)
    elif spec.kind == "photos":
        ds = _photos(spec, indices, crop, seed, augment)
    else:
        # Not indexable (tfrecord: sequential files, parallel decoding in no
        # fixed order). Skipping to the position would decode every skipped
        # record and still not give the same batches, so a resumed stream
        # starts afresh, seeded by the position, to not replay the first
        # batches of the run.
        shard_of = (num_shards, shard) if num_shards > 1 else None
        ds, _ = _spec.train_val(spec, crop, seed=int(seed) + int(start_step), min_size=min_size,
                                augment=augment, shard=shard_of)
    if extra_augment is not None:
        ds = _with_extra(ds, indices, seed, extra_augment)
    if jitter:
        ds = _with_jitter(ds, indices, seed, float(jitter))
    return ds.batch(replica_batch or local, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def replica_dataset_fn(spec, crop, seed, global_batch, start_step=0, **options):
    """The `dataset_fn` of `strategy.distribute_datasets_from_function`:
    input pipeline w of W builds only its part of every global batch of the
    training stream, in batches of `global_batch / replicas` per replica.
    `options` are `train_stream`'s (min_size, augment, jitter, ...)."""

    def make(ctx):
        return train_stream(spec, crop, seed, global_batch, start_step=start_step,
                            shard=ctx.input_pipeline_id, num_shards=ctx.num_input_pipelines,
                            replica_batch=ctx.get_per_replica_batch_size(global_batch), **options)

    return make


def distributed_train_dataset(strategy, spec, crop, global_batch, seed=0, min_size=1, augment=True,
                              start_step=0):
    """The training stream `train` reads, for `strategy`, batched per replica.

    One stream, `train_stream` above (every sample a function of seed and
    index, so resume is exact), split with
    `strategy.distribute_datasets_from_function` (`replica_dataset_fn`): each
    input pipeline (one per worker) builds only its part of every global
    batch (for file specs it decodes only those files). For one worker this
    is the whole stream.
    """
    return strategy.distribute_datasets_from_function(
        replica_dataset_fn(spec, crop, seed, global_batch, start_step=start_step, min_size=min_size, augment=augment))
