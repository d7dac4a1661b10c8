"""Recipe (data, see each model's `RECIPES`) -> optimizer, schedule, loss.

One documented line compiles any network with its paper's recipe:

    model.compile(**tfdeblur.training.compile_args("mtwdn", total_steps=10_000))
"""
import keras

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
    - ``ExponentialDecay`` with ``staircase=True`` is the papers' step decay,
      lr * decay_rate ** floor(step / decay_steps) (LMFN: /10 every 5e5
      iterations). A recipe may give ``decay_epochs`` instead of
      ``decay_steps`` (MSFS-Net: halved every 500 epochs); it is converted
      with `steps_per_epoch`, which is then required.
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
    if kind == "ExponentialDecay":
        if "decay_epochs" in spec:
            epochs = spec.pop("decay_epochs")
            if steps_per_epoch is None or int(steps_per_epoch) < 1:
                raise ValueError(
                    f"steps_per_epoch (a positive integer) is needed to convert the recipe's "
                    f"decay_epochs={epochs} into steps; got {steps_per_epoch!r}"
                )
            spec["decay_steps"] = int(epochs) * int(steps_per_epoch)
        return keras.optimizers.schedules.ExponentialDecay(lr, **spec)
    if kind == "WarmupCosine":
        from tfdeblur.schedules import WarmupCosine

        # a run shorter than twice the warm-up warms up over its first half
        spec["warmup_steps"] = min(int(spec.get("warmup_steps", 0)), int(total_steps) // 2)
        return WarmupCosine(lr, decay_steps=int(total_steps), **spec)
    raise ValueError(f"recipe schedule class must be PolynomialDecay, ExponentialDecay, WarmupCosine or absent; got {kind!r}")


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
