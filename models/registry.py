"""The model registry: preset name -> (class, constructor kwargs, metadata).

Populated by explicit imports in `tfdeblur/models/__init__.py`, never by
scanning folders (tensorflow/models style: duplicate names raise, a miss
lists the known names).
"""
import dataclasses
import difflib

_PRESETS = {}
_RECIPES = {}


@dataclasses.dataclass(frozen=True)
class Preset:
    name: str
    cls: type
    kwargs: dict
    description: str
    params: int = None  # our parameter count, asserted by the tests
    paper_params: str = None  # what the paper reports, if it does
    recipe: str = None  # name of the training recipe (see tfdeblur.training.recipes)


def register_preset(name, cls, kwargs, description, params=None, paper_params=None, recipe=None):
    if name in _PRESETS:
        raise ValueError(f"preset {name!r} is already registered")
    _PRESETS[name] = Preset(name, cls, dict(kwargs), description, params, paper_params, recipe)


def available():
    """Names of every registered preset, sorted."""
    return sorted(_PRESETS)


def get_preset(name):
    if name not in _PRESETS:
        close = difflib.get_close_matches(str(name), _PRESETS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(
            f"unknown network {name!r}{hint}; known: {', '.join(available())}"
        )
    return _PRESETS[name]


def build(name, **overrides):
    """Builds the preset `name` as a `keras.Model`; `overrides` replace its kwargs."""
    preset = get_preset(name)
    kwargs = {**preset.kwargs, **overrides}
    kwargs.setdefault("name", name)
    return preset.cls(**kwargs)


def register_recipe(name, recipe):
    if name in _RECIPES:
        raise ValueError(f"recipe {name!r} is already registered")
    _RECIPES[name] = recipe


def get_recipe(name):
    """The training recipe (a dict of the paper's values) of a preset or recipe name."""
    if name in _PRESETS:
        name = _PRESETS[name].recipe
    if name not in _RECIPES:
        raise ValueError(f"unknown recipe {name!r}; known: {', '.join(sorted(_RECIPES))}")
    return _RECIPES[name]
