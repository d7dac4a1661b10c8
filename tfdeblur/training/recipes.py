"""Recipe (data, see each model's `RECIPES`) -> optimizer, schedule, loss.

One documented line compiles any network with its paper's recipe:

    model.compile(**tfdeblur.training.compile_args("mtwdn", total_steps=10_000))
"""
import keras

from tfdeblur import losses as _losses
from tfdeblur import perceptual as _perceptual
from tfdeblur.metrics import PSNR, SSIM

_OPTIMIZERS = {"Adam": keras.optimizers.Adam, "AdamW": keras.optimizers.AdamW}
_LOSSES = {"MultiScaleLoss": _losses.MultiScaleLoss, "PerceptualLoss": _perceptual.PerceptualLoss}


def _recipe(recipe):
    if isinstance(recipe, dict):
        return recipe
    from tfdeblur.models import get_recipe

    return get_recipe(recipe)


def make_schedule(recipe, total_steps, learning_rate=None):
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
    raise ValueError(f"recipe schedule class must be PolynomialDecay or absent; got {kind!r}")


def make_optimizer(recipe, total_steps, learning_rate=None):
    recipe = _recipe(recipe)
    spec = dict(recipe["optimizer"])
    cls = _OPTIMIZERS[spec.pop("class")]
    return cls(learning_rate=make_schedule(recipe, total_steps, learning_rate), **spec)


def make_loss(recipe):
    spec = dict(_recipe(recipe)["loss"])
    return _LOSSES[spec.pop("class")](**spec)


def compile_args(recipe, total_steps, learning_rate=None, metrics=True):
    """kwargs for `model.compile`: the recipe's optimizer (its schedule over
    `total_steps`), its loss, and PSNR/SSIM metrics."""
    return {
        "optimizer": make_optimizer(recipe, total_steps, learning_rate),
        "loss": make_loss(recipe),
        "metrics": [PSNR(), SSIM()] if metrics else None,
    }
