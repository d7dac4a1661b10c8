"""Training: recipes -> compile arguments, and the training run behind `cli.py train`.

The recipe helpers load lazily, so `tfdeblur.training.jax_leg` (a leg under
Keras' JAX backend, on machines without TensorFlow) imports without it."""
_RECIPE_HELPERS = ("compile_args", "make_loss", "make_optimizer", "make_schedule")
__all__ = list(_RECIPE_HELPERS)


def __getattr__(name):
    if name in _RECIPE_HELPERS:
        from tfdeblur.training import recipes

        return getattr(recipes, name)
    raise AttributeError(f"module 'tfdeblur.training' has no attribute {name!r}")
