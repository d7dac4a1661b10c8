"""Every recipe entry is read: FDDN's hold-then-linear schedule, the papers'
run lengths in epochs, the "augment" lists (what each network's stream
does, determinism and pairing of the extra augmentations)."""
import keras
import numpy as np
import pytest
import tensorflow as tf

import tfdeblur.models as models
from tests.helpers import random_images
from tfdeblur.schedules import HoldThenLinearDecay
from tfdeblur.training import compile_args
from tfdeblur.training.recipes import GOPRO_TRAIN_PAIRS, augmentation, make_schedule, paper_steps
from tfdeblur.datasets.stream import train_stream


def test_fddn_schedule_holds_500_epochs_then_decays_linearly_to_zero_at_2500():
    schedule = compile_args("fddn", total_steps=1000, metrics=False)["optimizer"]._learning_rate
    epoch = -(-GOPRO_TRAIN_PAIRS // 16)  # 132 steps: GoPro at the recipe's batch 16
    assert epoch == 132
    values = [float(schedule(s)) for s in (0, 500 * epoch - 1, 1500 * epoch, 2500 * epoch, 3000 * epoch)]
    assert values == pytest.approx([1e-3, 1e-3, 5e-4, 0.0, 0.0], abs=1e-9)
    # the epoch is the data's: train passes ceil(training pairs / batch)
    custom = make_schedule("fddn", total_steps=10, steps_per_epoch=10)
    assert float(custom(5000)) == pytest.approx(1e-3) and float(custom(15_000)) == pytest.approx(5e-4)
    clone = HoldThenLinearDecay.from_config(schedule.get_config())
    assert float(clone(1500 * epoch)) == pytest.approx(5e-4)
    assert keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(schedule)).hold_steps == 500 * epoch
    with pytest.raises(ValueError, match=r"hold_steps must be in \[0, end_steps=10\); got 10"):
        HoldThenLinearDecay(1e-3, 10, 10)


@pytest.mark.parametrize("recipe, batch, expected", [
    ("fddn", 16, 2500 * 132),  # paper: 2500 epochs
    ("msfs", 4, 3000 * 526),  # paper: 3000 epochs (the authors' main.py too)
    ("mtwdn", 16, None),  # 4000 epochs in the paper: not encoded while mtwdn trains (models/mtwdn.py)
    ("lmfn", 16, None),  # the paper counts iterations, not epochs
])
def test_paper_run_length_in_epochs_of_the_given_data(recipe, batch, expected):
    assert paper_steps(recipe, GOPRO_TRAIN_PAIRS, batch) == expected
    if expected:
        assert paper_steps(recipe, 100, 10) == models.get_recipe(recipe)["epochs"] * 10
    with pytest.raises(ValueError, match="train_pairs must be a positive integer; got 0"):
        paper_steps("fddn", 0, 4)


def test_each_networks_augment_entry_is_what_its_stream_does():
    assert augmentation("mtwdn")[:2] == (True, None)  # flips and rot90 (ours: MTWDN names none)
    assert augmentation("lmfn") == (False, None, [])  # "without augmentation"
    d4, extra, skipped = augmentation("msfs")  # the authors' code: a horizontal flip only
    assert not d4 and extra is not None and skipped == []
    d4, extra, skipped = augmentation("fddn")
    assert d4 and extra is not None
    assert skipped == ["rotation", "motion_blur", "median_blur", "snow"]  # reported, not silently dropped
    assert augmentation("glbdn")[:2] == (True, None)
    with pytest.raises(ValueError, match="recipe augment entries must be among .*; got 'blurr'"):
        augmentation({"augment": ["flip", "blurr"]})


def _extra(names):
    return augmentation({"augment": names})[1]


def test_extra_augmentations_are_paired_deterministic_and_jpeg_touches_the_input_only():
    x = tf.constant(random_images(1, 32, 32)[0])
    paired = _extra(["hflip", "hue", "saturation", "colour", "grayscale"])
    changed = 0
    for k in range(8):
        seed = tf.constant([7, k], tf.int64)
        blur, sharp = paired(x, x, seed)
        np.testing.assert_array_equal(blur.numpy(), sharp.numpy())  # one transform for both images
        again, _ = paired(x, x, seed)
        np.testing.assert_array_equal(blur.numpy(), again.numpy())  # a function of the seed
        changed += not np.allclose(blur.numpy(), x.numpy())
        assert 0.0 <= blur.numpy().min() and blur.numpy().max() <= 1.0
    assert changed == 8
    jpeg = _extra(["jpeg"])
    outs = [jpeg(x, x, tf.constant([1, k], tf.int64)) for k in range(8)]
    assert all(np.array_equal(s.numpy(), x.numpy()) for _, s in outs)  # the sharp target is untouched
    assert 0 < sum(not np.allclose(b.numpy(), x.numpy()) for b, _ in outs) < 8  # JPEG with probability 1/2


def test_stream_honours_augment_and_applies_the_extra_per_sample():
    plain = next(iter(train_stream("synthetic", 32, seed=3, batch_size=2, augment=False)))
    d4 = next(iter(train_stream("synthetic", 32, seed=3, batch_size=2, augment=True)))
    assert not np.allclose(plain[0].numpy(), d4[0].numpy())  # flips/rotations on, vs off

    def mark(blur, sharp, seed):  # records each sample's seed in its first two values
        values = tf.cast(tf.math.floormod(seed, 1000), tf.float32)
        return blur, tf.tensor_scatter_nd_update(sharp, [[0, 0, 0], [0, 0, 1]], values)

    first = next(iter(train_stream("synthetic", 32, seed=3, batch_size=2, augment=False, extra_augment=mark)))
    again = next(iter(train_stream("synthetic", 32, seed=3, batch_size=2, augment=False, extra_augment=mark)))
    np.testing.assert_array_equal(first[1].numpy(), again[1].numpy())
    np.testing.assert_array_equal(first[0].numpy(), plain[0].numpy())
    assert not np.array_equal(first[1][0, 0, 0, :2].numpy(), first[1][1, 0, 0, :2].numpy())  # a seed per sample


def test_released_model_recipes_compile_and_train_on_photos():
    """The released models' recipes (mtwdn_photos, lmfn_photos,
    fddn_photos): the warm-up then cosine schedule over a leg, Charbonnier,
    D4 augmentation, the photos stream; lmfn_photos's batch 8 (LMFN's cost
    per pixel)."""
    for name, batch in (("mtwdn_photos", 4), ("lmfn_photos", 8), ("fddn_photos", 4)):
        recipe = models.get_recipe(name)
        assert recipe["data"].startswith("photos:") and recipe["batch_size"] == batch and recipe["crop"] == 128
        assert recipe["loss"]["kind"] == "charbonnier" and augmentation(name)[0]
        schedule = compile_args(name, total_steps=1000, metrics=False)["optimizer"]._learning_rate
        assert float(schedule(0)) < float(schedule(99)) == pytest.approx(3e-4, rel=0.02)
        assert float(schedule(1000)) == pytest.approx(0.05 * 3e-4, rel=0.02)
