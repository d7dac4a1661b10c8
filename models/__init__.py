"""The networks, one file each, and the registry that names their presets.

    import tfdeblur.models
    model = tfdeblur.models.build("mtwdn")
    tfdeblur.models.available()  # ['mtwdn', 'mtwdn_oneway', ...]
    model = tfdeblur.models.from_preset("mtwdn-photos")  # shipped weights (tfdeblur/weights/)
    tfdeblur.models.available_weights()

Adding a network: write `models/<net>.py` with its class and a `PRESETS`
dict, then add one line below.
"""
from tfdeblur import schedules  # noqa: F401  (registers the schedules a released recipe's .keras holds)
from tfdeblur.models import fddn, glbdn, lmfn, msfs, mtwdn
from tfdeblur.models.registry import (
    Preset,
    available,
    available_weights,
    build,
    catalogue,
    from_preset,
    get_preset,
    get_recipe,
    register_preset,
    register_recipe,
)

for _module, _cls in ((mtwdn, mtwdn.MTWDN), (fddn, fddn.FDDN), (lmfn, lmfn.LMFN), (glbdn, glbdn.GLBDN), (msfs, msfs.MSFSNet)):
    for _name, _p in _module.PRESETS.items():
        register_preset(_name, _cls, **_p)
    for _name, _r in _module.RECIPES.items():
        register_recipe(_name, _r)

__all__ = ["available", "available_weights", "build", "from_preset", "get_preset", "get_recipe", "register_preset", "register_recipe", "Preset"]
