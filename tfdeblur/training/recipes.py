"""Recipe (data, see each model's `RECIPES`) -> optimizer, schedule, loss,
augmentation and run length.

One documented line compiles any network with its paper's recipe:

    model.compile(**tfdeblur.training.compile_args("mtwdn", total_steps=10_000))

Every recipe entry is read: "optimizer", "learning_rate", "schedule",
"loss" here; "crop", "batch_size" by `train --paper`; "quick" (ours,
optional: the quick run's crop, batch size or learning rate where the
network needs its own) by `train` without `--paper`; "augment" by
`augmentation()` (the training stream); "epochs" (the paper's run length,
in passes over its training set) by `paper_steps()`; "phases" by
`tfdeblur/training/phases.py`.
"""
import math

import keras
import tensorflow as tf

from tfdeblur import losses as _losses
from tfdeblur import perceptual as _perceptual
from tfdeblur.metrics import PSNR, SSIM

_OPTIMIZERS = {"Adam": keras.optimizers.Adam, "AdamW": keras.optimizers.AdamW}
_LOSSES = {
    "MultiScaleLoss": _losses.MultiScaleLoss,
    "PerceptualLoss": _perceptual.PerceptualLoss,
    "MSFSLoss": _losses.MSFSLoss,
}


def _recipe(recipe):
    if isinstance(recipe, dict):
        return recipe
    from tfdeblur.models import get_recipe

    return get_recipe(recipe)


def make_schedule(recipe, total_steps, learning_rate=None, steps_per_epoch=None):
    """The recipe's learning rate: a float, or a Keras schedule over `total_steps`.

    Schedule kinds (the recipe's ``"schedule"`` dict; ``"class"`` picks one):

    - ``PolynomialDecay`` (MTWDN/SRN: power 0.3 to 0): decays over
      `total_steps`; extra keys go to `keras.optimizers.schedules.PolynomialDecay`.
    - ``WarmupCosine`` (`tfdeblur.schedules`): linear warm-up, then cosine
      annealing over `total_steps` (released models' recipes).
    - ``HoldThenLinearDecay`` (FDDN): constant for ``hold_epochs``, then
      linear to ``end_learning_rate`` at ``decay_epochs``.
    - ``ExponentialDecay`` with ``staircase=True`` is the papers' step decay,
      lr * decay_rate ** floor(step / decay_steps) (LMFN: /10 every 5e5
      iterations). A recipe may give ``decay_epochs`` instead of
      ``decay_steps``.

    Epochs are passes over the training set, `steps_per_epoch` steps each
    (`train` passes ceil(training pairs / batch)); without it, GoPro's
    2103 pairs at the recipe's batch size.
    """
    recipe = _recipe(recipe)
    lr = float(learning_rate if learning_rate is not None else recipe["learning_rate"])
    spec = dict(recipe.get("schedule") or {})
    kind = spec.pop("class", None)
    if kind is None:
        return lr
    if kind == "PolynomialDecay":
        if int(total_steps) < 1:
            raise ValueError(f"total_steps must be >= 1; got {total_steps}")
        return keras.optimizers.schedules.PolynomialDecay(lr, decay_steps=int(total_steps), **spec)
    def steps(key):
        # An epoch is one pass over the training set: `steps_per_epoch`
        # steps, by default GoPro's at the recipe's batch size.
        epochs = spec.pop(key)
        per_epoch = steps_per_epoch
        if per_epoch is None and "batch_size" in recipe:
            per_epoch = math.ceil(GOPRO_TRAIN_PAIRS / int(recipe["batch_size"]))
        if per_epoch is None or int(per_epoch) < 1:
            raise ValueError(
                f"steps_per_epoch (a positive integer) is needed to convert the recipe's "
                f"{key}={epochs} into steps; got {steps_per_epoch!r}"
            )
        return int(epochs) * int(per_epoch)

    if kind == "ExponentialDecay":
        if "decay_epochs" in spec:
            spec["decay_steps"] = steps("decay_epochs")
        return keras.optimizers.schedules.ExponentialDecay(lr, **spec)
    if kind == "WarmupCosine":
        from tfdeblur.schedules import WarmupCosine

        # a run shorter than twice the warm-up warms up over its first half
        spec["warmup_steps"] = min(int(spec.get("warmup_steps", 0)), int(total_steps) // 2)
        return WarmupCosine(lr, decay_steps=int(total_steps), **spec)
    if kind == "HoldThenLinearDecay":
        from tfdeblur.schedules import HoldThenLinearDecay

        hold, end = steps("hold_epochs"), steps("decay_epochs")
        return HoldThenLinearDecay(lr, hold, end, **spec)
    raise ValueError(
        "recipe schedule class must be PolynomialDecay, ExponentialDecay, WarmupCosine, HoldThenLinearDecay "
        f"or absent; got {kind!r}"
    )


# GoPro's training split (Nah et al. 2017), the set all five papers train on:
# the "epoch" of generated data, which has no finite training set.
GOPRO_TRAIN_PAIRS = 2103


def paper_steps(recipe, train_pairs, batch_size):
    """The paper's run length in steps: its "epochs" (passes over the
    training set) times ceil(`train_pairs` / `batch_size`); None when the
    recipe states no run length."""
    recipe = _recipe(recipe)
    if recipe.get("epochs") is None:
        return None
    for arg, value in (("train_pairs", train_pairs), ("batch_size", batch_size)):
        if int(value) < 1:
            raise ValueError(f"{arg} must be a positive integer; got {value!r}")
    return int(recipe["epochs"]) * math.ceil(int(train_pairs) / int(batch_size))


# -- augmentation ("augment": a list of names) --------------------------------
# Implemented: what is cheap and a pure function of the sample's stateless
# seed (exact resume, datasets/stream.py). "flip" and "rot90" are the
# stream's own D4 flip/rotation. The rest act after it; paired ones apply the
# same transform to blur and sharp, "jpeg" degrades the blurry input only
# (an input artifact, not a change of the target). The papers give no
# strengths: ours are below, mild.
D4 = ("flip", "rot90")
# "hflip": a horizontal flip alone, with probability 1/2 (MSFS-Net's code).
JPEG_QUALITY = (70, 100)  # with probability 1/2
HUE_DELTA = 0.05  # of the hue circle
SATURATION = (0.8, 1.2)
COLOUR_GAIN = 0.1  # `datasets.augment.paired_color_jitter_stateless` strength
GRAYSCALE_P = 0.1
EXTRA = ("hflip", "jpeg", "hue", "saturation", "colour", "grayscale")
# Named by FDDN but not implemented: "rotation" (arbitrary angles need
# interpolation and leave empty corners), "motion_blur" and "median_blur"
# (they change the blur the network learns to remove; the paper does not say
# on which image), "snow" (a weather model the paper does not describe).
NOT_IMPLEMENTED = ("rotation", "motion_blur", "median_blur", "snow")


def _extra_augmentation(names):
    def apply(blur, sharp, seed):
        seeds = tf.unstack(tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=len(EXTRA) + 1))
        s = dict(zip(EXTRA + ("jpeg_p",), seeds))
        if "hflip" in names:
            flip = tf.random.stateless_uniform([], s["hflip"]) < 0.5
            blur, sharp = tf.cond(flip, lambda: (tf.image.flip_left_right(blur), tf.image.flip_left_right(sharp)),
                                  lambda: (blur, sharp))
        if "hue" in names:
            blur = tf.image.stateless_random_hue(blur, HUE_DELTA, s["hue"])
            sharp = tf.image.stateless_random_hue(sharp, HUE_DELTA, s["hue"])
        if "saturation" in names:
            blur = tf.image.stateless_random_saturation(blur, *SATURATION, s["saturation"])
            sharp = tf.image.stateless_random_saturation(sharp, *SATURATION, s["saturation"])
        if "colour" in names:
            from tfdeblur.datasets.augment import paired_color_jitter_stateless

            blur, sharp = paired_color_jitter_stateless(blur, sharp, COLOUR_GAIN, s["colour"])
        if "grayscale" in names:
            gray = tf.random.stateless_uniform([], s["grayscale"]) < GRAYSCALE_P
            to_gray = lambda t: tf.image.grayscale_to_rgb(tf.image.rgb_to_grayscale(t))  # noqa: E731
            blur, sharp = tf.cond(gray, lambda: (to_gray(blur), to_gray(sharp)), lambda: (blur, sharp))
        if "jpeg" in names:
            jpeg = tf.random.stateless_uniform([], s["jpeg_p"]) < 0.5
            blur = tf.cond(jpeg, lambda: tf.image.stateless_random_jpeg_quality(blur, *JPEG_QUALITY, s["jpeg"]),
                           lambda: blur)
        return tf.clip_by_value(blur, 0.0, 1.0), tf.clip_by_value(sharp, 0.0, 1.0)

    return apply


def augmentation(recipe):
    """The recipe's "augment" list as (d4, extra, skipped): `d4` whether the
    stream flips/rotates (any of "flip", "rot90"), `extra` a per-sample
    function (blur, sharp, stateless seed) -> (blur, sharp) or None, and
    `skipped` the named augmentations not implemented (to be reported)."""
    names = list(_recipe(recipe).get("augment") or [])
    unknown = [n for n in names if n not in D4 + EXTRA + NOT_IMPLEMENTED]
    if unknown:
        raise ValueError(f"recipe augment entries must be among {D4 + EXTRA + NOT_IMPLEMENTED}; got {unknown[0]!r}")
    extra = [n for n in names if n in EXTRA]
    return (any(n in D4 for n in names), _extra_augmentation(extra) if extra else None,
            [n for n in names if n in NOT_IMPLEMENTED])


def make_optimizer(recipe, total_steps, learning_rate=None, steps_per_epoch=None):
    recipe = _recipe(recipe)
    spec = dict(recipe["optimizer"])
    cls = _OPTIMIZERS[spec.pop("class")]
    return cls(learning_rate=make_schedule(recipe, total_steps, learning_rate, steps_per_epoch), **spec)


def make_loss(recipe):
    spec = dict(_recipe(recipe)["loss"])
    return _LOSSES[spec.pop("class")](**spec)


def compile_args(recipe, total_steps, learning_rate=None, metrics=True, steps_per_epoch=None):
    """kwargs for `model.compile`: the recipe's optimizer (its schedule over
    `total_steps`; `steps_per_epoch` converts a schedule given in epochs), its
    loss, and PSNR/SSIM metrics."""
    return {
        "optimizer": make_optimizer(recipe, total_steps, learning_rate, steps_per_epoch),
        "loss": make_loss(recipe),
        "metrics": [PSNR(), SSIM()] if metrics else None,
    }
