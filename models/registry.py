"""The model registry: preset name -> (class, constructor kwargs, metadata).

Populated by explicit imports in `tfdeblur/models/__init__.py`, never by
scanning folders (tensorflow/models style: duplicate names raise, a miss
lists the known names).
"""
import dataclasses
import difflib

from tfdeblur import weights as _weights

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
        if _weights.looks_like_name(name) and name in _weights.available():
            raise ValueError(f"{name!r} is shipped weights, not a network preset; use from_preset({name!r})")
        close = difflib.get_close_matches(str(name), _PRESETS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(
            f"unknown network {name!r}{hint}; known: {', '.join(available())}"
        )
    return _PRESETS[name]


def build(name, weights=None, **overrides):
    """Builds the preset `name` as a `keras.Model`; `overrides` replace its kwargs.

    `weights`: a shipped weights name (`available_weights()`, e.g.
    "mtwdn-photos") or a `NAME.json` manifest path. The network is then
    built from the constructor config stored with the weights (`overrides`
    on top of it) and loaded with them; the weights must be of this
    network's class."""
    preset = get_preset(name)
    if weights is None:
        kwargs = {**preset.kwargs, **overrides}
        kwargs.setdefault("name", name)
        return preset.cls(**kwargs)
    manifest = _weights.read_manifest(weights)
    stored = get_preset(manifest.preset)
    if stored.cls is not preset.cls:
        raise ValueError(
            f"weights {manifest.name!r} are for network {manifest.preset!r} ({stored.cls.__name__}); "
            f"got build({name!r}) ({preset.cls.__name__}); use from_preset({manifest.name!r})"
        )
    arrays = _weights.read_arrays(manifest)
    model = preset.cls.from_config({**manifest.config, **overrides})
    return _weights.assign(model, manifest, arrays)


def from_preset(weights, **overrides):
    """The network of shipped weights `weights` (a name from
    `available_weights()`, or a `NAME.json` manifest path), built and loaded
    (keras-hub's `from_preset`)."""
    manifest = _weights.read_manifest(weights)
    return build(manifest.preset, weights=manifest.path, **overrides)


def available_weights():
    """Names of the shipped weights (`tfdeblur/weights/`, or `$TFDEBLUR_WEIGHTS_DIR`), sorted."""
    return _weights.available()


def catalogue():
    """The lines of `tfdeblur list`: every preset and its description, then
    the shipped weights, each summarised by its manifest."""
    lines = ["networks (train NET, bench NET):"]
    lines += [f"  {name:<20} {get_preset(name).description}" for name in available()]
    shipped = available_weights()
    if not shipped:
        return lines + [f"shipped weights (--model NAME): none yet (folder {_weights.weights_dir()}; see docs/models.md)"]
    lines.append(f"shipped weights (--model NAME; default {_weights.DEFAULT_WEIGHTS}):")
    return lines + [f"  {name:<20} {_weights.read_manifest(name).describe()}" for name in shipped]


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
