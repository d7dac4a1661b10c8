"""Makes every public tfdeblur class loadable from a `.keras` file after a
bare `import tfdeblur`, without importing TensorFlow or any network first.

Keras resolves `"registered_name": "tfdeblur>MTWDN"` only from its global
custom-object dict, which `keras.saving.register_keras_serializable` fills
when the defining module is imported; unlike keras-hub's, our module paths are
never imported by Keras itself. So `import tfdeblur` puts a small stand-in
under each public name (as soon as Keras is imported, before or after
tfdeblur); the first `from_config` (or call) of a stand-in imports the real
module, whose decorator then replaces every stand-in of that module with the
real class. Nothing is built and TensorFlow is not imported by
`import tfdeblur`.

`PUBLIC` is the explicit list (no folder scans); `serialization.public`
refuses a class that is missing from it or listed under another module, and
tests/test_lazy_registry.py checks the list against what the modules
register.
"""
import importlib
import importlib.util
import sys

PACKAGE = "tfdeblur"

# registered name -> the module that defines (and registers) the class.
PUBLIC = {
    "tfdeblur>ACFM": "tfdeblur.layers.fusion",
    "tfdeblur>ALFM": "tfdeblur.layers.fusion",
    "tfdeblur>AdaptiveMix": "tfdeblur.layers.csffm",
    "tfdeblur>ContrastPooling": "tfdeblur.layers.channel_attention",
    "tfdeblur>CropToMatch": "tfdeblur.layers.padding",
    "tfdeblur>DeblurLoss": "tfdeblur.losses",
    "tfdeblur>DeblurModel": "tfdeblur.deblur_model",
    "tfdeblur>FDDN": "tfdeblur.models.fddn",
    "tfdeblur>GLBDN": "tfdeblur.models.glbdn",
    "tfdeblur>HoldThenLinearDecay": "tfdeblur.schedules",
    "tfdeblur>LMFN": "tfdeblur.models.lmfn",
    "tfdeblur>LeakyReLU": "tfdeblur.layers.activation",
    "tfdeblur>LocalAveragePooling2D": "tfdeblur.layers.local_pooling",
    "tfdeblur>LocalContrastPooling": "tfdeblur.layers.local_pooling",
    "tfdeblur>MSFSLoss": "tfdeblur.losses",
    "tfdeblur>MSFSNet": "tfdeblur.models.msfs",
    "tfdeblur>MTWDN": "tfdeblur.models.mtwdn",
    "tfdeblur>MultiScaleLoss": "tfdeblur.losses",
    "tfdeblur>OctaveConv": "tfdeblur.layers.octave_conv",
    "tfdeblur>PSNR": "tfdeblur.metrics",
    "tfdeblur>PadToMultiple": "tfdeblur.layers.padding",
    "tfdeblur>PerceptualLoss": "tfdeblur.perceptual",
    "tfdeblur>PixelShuffle": "tfdeblur.layers.pixel_shuffle",
    "tfdeblur>ResizeBilinearLike": "tfdeblur.layers.esa",
    "tfdeblur>SSIM": "tfdeblur.metrics",
    "tfdeblur>UpsampleBilinear2x": "tfdeblur.layers.sampling",
    "tfdeblur>WarmupCosine": "tfdeblur.schedules",
}


def _real(stand_in):
    importlib.import_module(stand_in.module)
    # The global dict, not keras.saving.get_registered_object: inside a load,
    # Keras' custom-object scope still maps the name to this stand-in.
    real = sys.modules["keras"].saving.get_custom_objects()[stand_in.registered_name]
    if getattr(real, "_tfdeblur_stand_in", False):
        raise ImportError(
            f"{stand_in.module} did not register {stand_in.registered_name}; "
            f"fix PUBLIC in {__name__}"
        )
    return real


class _StandIn:
    """Resolves to the real class on first use (a load or an instantiation)."""

    _tfdeblur_stand_in = True
    registered_name = None
    module = None

    def __new__(cls, *args, **kwargs):
        return _real(cls)(*args, **kwargs)

    @classmethod
    def from_config(cls, config, *args, **kwargs):
        return _real(cls).from_config(config, *args, **kwargs)


def register_stand_ins():
    """Puts a stand-in under every public name not registered yet (Keras
    must be imported)."""
    objects = sys.modules["keras"].saving.get_custom_objects()
    for registered_name, module in PUBLIC.items():
        if registered_name not in objects:
            class_name = registered_name.split(">", 1)[1]
            objects[registered_name] = type(
                class_name, (_StandIn,), {"registered_name": registered_name, "module": module}
            )


class _AfterKerasImport:
    """A one-shot `sys.meta_path` finder: lets Keras' own loader import
    `keras`, then registers the stand-ins. Used when tfdeblur is imported
    first; importing Keras here would import TensorFlow, which the CLI must
    configure first."""

    def __init__(self):
        self._finding = False

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "keras" or self._finding:
            return None
        self._finding = True
        try:
            spec = importlib.util.find_spec("keras")  # asks the finders after this one
        finally:
            self._finding = False
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return None
        exec_module = spec.loader.exec_module

        def exec_then_register(module):
            exec_module(module)
            self.remove()
            register_stand_ins()

        spec.loader.exec_module = exec_then_register
        return spec

    def remove(self):
        if self in sys.meta_path:
            sys.meta_path.remove(self)


def install():
    """Called by `import tfdeblur`."""
    if "keras" in sys.modules:
        register_stand_ins()
    elif not any(isinstance(f, _AfterKerasImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterKerasImport())
