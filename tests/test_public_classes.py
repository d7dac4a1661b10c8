"""Every public class (`tfdeblur.lazy_registry.PUBLIC`, what a `.keras` file
may name) survives serialize -> deserialize under its registered name and
computes the same thing afterwards. Parametrized over the registry: a new
public class fails here until it has an entry in `SAMPLES`."""
import keras
import numpy as np
import pytest

from tests.helpers import build_for_expensive_tests, random_images, run_layer_serialization_test
from tfdeblur import lazy_registry


def _x(channels=4, size=8, seed=0):
    return np.random.default_rng(seed).random((1, size, size, channels), dtype=np.float32)


def _layer(module, name, *args, **kwargs):
    import importlib

    return getattr(importlib.import_module(module), name)(*args, **kwargs)


def _deblur_model():
    from tfdeblur.deblur_model import DeblurModel

    inputs = keras.Input((None, None, 3))
    return DeblurModel(inputs, keras.layers.Conv2D(3, 3, padding="same", name="conv")(inputs), size_multiple=2)


def _pair():
    return random_images(2, 16, 16, seed=1), random_images(2, 16, 16, seed=2)


# registered name -> (kind, factory of a small instance, its sample inputs).
# Kinds: "layer" (inputs for `__call__`), "model" (an image batch),
# "loss" / "metric" (y_true, y_pred), "schedule" (steps), "abstract" (a base
# class: its config round trip, and `call` left to the subclasses), "base
# model" (the networks' base class: registered, and every network is one;
# a bare functional DeblurModel has no constructor config to rebuild from).
SAMPLES = {
    "tfdeblur>ACFM": ("layer", lambda: _layer("tfdeblur.layers.fusion", "ACFM"), lambda: _x()),
    "tfdeblur>ALFM": ("layer", lambda: _layer("tfdeblur.layers.fusion", "ALFM"), lambda: [_x(seed=1), _x(seed=2)]),
    "tfdeblur>AdaptiveMix": ("layer", lambda: _layer("tfdeblur.layers.csffm", "AdaptiveMix", initial=0.3),
                             lambda: [_x(seed=1), _x(seed=2)]),
    "tfdeblur>ContrastPooling": ("layer", lambda: _layer("tfdeblur.layers.channel_attention", "ContrastPooling"),
                                 lambda: _x()),
    "tfdeblur>CropToMatch": ("layer", lambda: _layer("tfdeblur.layers.padding", "CropToMatch"),
                             lambda: [_x(size=12), _x(size=8)]),
    "tfdeblur>PadToMultiple": ("layer", lambda: _layer("tfdeblur.layers.padding", "PadToMultiple", 8), lambda: _x(size=10)),
    "tfdeblur>LeakyReLU": ("layer", lambda: _layer("tfdeblur.layers.activation", "LeakyReLU", 0.1), lambda: _x() - 0.5),
    "tfdeblur>LocalAveragePooling2D": ("layer", lambda: _layer("tfdeblur.layers.local_pooling", "LocalAveragePooling2D", 3),
                                       lambda: _x()),
    "tfdeblur>LocalContrastPooling": ("layer", lambda: _layer("tfdeblur.layers.local_pooling", "LocalContrastPooling", 3),
                                      lambda: _x()),
    "tfdeblur>OctaveConv": ("layer", lambda: _layer("tfdeblur.layers.octave_conv", "OctaveConv", 8, alpha_in=0.5, alpha_out=0.0),
                            lambda: [_x(seed=1), _x(size=4, seed=2)]),
    "tfdeblur>PixelShuffle": ("layer", lambda: _layer("tfdeblur.layers.pixel_shuffle", "PixelShuffle", 2), lambda: _x()),
    "tfdeblur>ResizeBilinearLike": ("layer", lambda: _layer("tfdeblur.layers.esa", "ResizeBilinearLike"),
                                    lambda: [_x(size=5), _x(size=11)]),
    "tfdeblur>UpsampleBilinear2x": ("layer", lambda: _layer("tfdeblur.layers.sampling", "UpsampleBilinear2x"),
                                    lambda: _x(size=5)),
    "tfdeblur>DeblurModel": ("base model", _deblur_model, lambda: random_images(1, 16, 16)),
    "tfdeblur>MTWDN": ("model", lambda: build_for_expensive_tests("mtwdn"), lambda: random_images(1, 32, 32)),
    "tfdeblur>LMFN": ("model", lambda: build_for_expensive_tests("lmfn"), lambda: random_images(1, 32, 32)),
    "tfdeblur>FDDN": ("model", lambda: build_for_expensive_tests("fddn_small"), lambda: random_images(1, 32, 32)),
    "tfdeblur>GLBDN": ("model", lambda: build_for_expensive_tests("glbdn"), lambda: random_images(1, 32, 32)),
    "tfdeblur>MSFSNet": ("model", lambda: build_for_expensive_tests("msfs_small"), lambda: random_images(1, 32, 32)),
    "tfdeblur>DeblurLoss": ("abstract", lambda: _layer("tfdeblur.losses", "DeblurLoss"), _pair),
    "tfdeblur>MultiScaleLoss": ("loss", lambda: _layer("tfdeblur.losses", "MultiScaleLoss",
                                                       weights={"image": 1.0, "scale_2": 0.5}, kind="charbonnier"),
                                lambda: (_pair()[0], {"image": _pair()[1], "scale_2": _pair()[1][:, ::2, ::2]})),
    "tfdeblur>MSFSLoss": ("loss", lambda: _layer("tfdeblur.losses", "MSFSLoss", high_weight=0.0, low_weight=0.0),
                          lambda: (_pair()[0], {"image": _pair()[1]})),
    "tfdeblur>PerceptualLoss": ("loss", lambda: _layer("tfdeblur.perceptual", "PerceptualLoss", weight=0.0),
                                lambda: (_pair()[0], {"image": _pair()[1]})),
    "tfdeblur>PSNR": ("metric", lambda: _layer("tfdeblur.metrics", "PSNR"), _pair),
    "tfdeblur>SSIM": ("metric", lambda: _layer("tfdeblur.metrics", "SSIM"), _pair),
    "tfdeblur>WarmupCosine": ("schedule", lambda: _layer("tfdeblur.schedules", "WarmupCosine", 1e-3, 100, warmup_steps=10,
                                                        final_fraction=0.1), lambda: [0, 5, 10, 55, 100, 150]),
    "tfdeblur>HoldThenLinearDecay": ("schedule", lambda: _layer("tfdeblur.schedules", "HoldThenLinearDecay", 1e-3, 20, 100,
                                                               end_learning_rate=1e-5), lambda: [0, 20, 60, 100, 150]),
}


def _revived(obj, registered_name):
    serialized = keras.saving.serialize_keras_object(obj)
    assert serialized["registered_name"] == registered_name, serialized.get("registered_name")
    revived = keras.saving.deserialize_keras_object(serialized)
    assert type(revived) is type(obj) and revived.get_config() == obj.get_config()
    return revived


def _randomize(model, seed=0):
    # Random weights everywhere, so that the zero-initialized output head
    # does not make every rebuilt graph look like the identity.
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0, 0.05, w.shape).astype(w.dtype) for w in model.get_weights()])


@pytest.mark.parametrize("registered_name", sorted(lazy_registry.PUBLIC))
def test_public_class_round_trip(registered_name):
    if registered_name not in SAMPLES:
        pytest.fail(f"{registered_name}: public (tfdeblur/lazy_registry.py) but no entry in "
                    "tests/test_public_classes.py SAMPLES; add a small instance and its inputs")
    kind, make, inputs = SAMPLES[registered_name]
    obj, x = make(), inputs()
    if kind == "layer":
        run_layer_serialization_test(obj, x)
        assert keras.saving.serialize_keras_object(obj)["registered_name"] == registered_name
        return
    if kind == "base model":
        import tfdeblur.models as models

        assert keras.saving.serialize_keras_object(obj)["registered_name"] == registered_name
        assert all(issubclass(models.get_preset(name).cls, type(obj)) for name in models.available())
        assert tuple(obj(x).shape) == x.shape
        return
    revived = _revived(obj, registered_name)
    if kind == "abstract":
        with pytest.raises(NotImplementedError):
            revived.call(*x)
    elif kind == "model":
        _randomize(obj)
        revived.set_weights(obj.get_weights())
        expected = keras.ops.convert_to_numpy(obj(x))
        assert np.abs(expected - x).max() > 1e-4  # not the identity: the weights are in use
        np.testing.assert_allclose(keras.ops.convert_to_numpy(revived(x)), expected, atol=1e-5)
    elif kind == "loss":
        y_true, y_pred = x
        value = float(obj(y_true, y_pred))
        assert np.isfinite(value) and value > 0
        assert float(revived(y_true, y_pred)) == pytest.approx(value, rel=1e-6)
    elif kind == "metric":
        obj.update_state(*x)
        revived.update_state(*x)
        value = float(obj.result())
        assert np.isfinite(value) and value > 0
        assert float(revived.result()) == pytest.approx(value, rel=1e-6)
    elif kind == "schedule":
        values = [float(obj(step)) for step in x]
        assert len(set(values)) > 2  # the schedule moves over these steps
        np.testing.assert_allclose([float(revived(step)) for step in x], values, rtol=1e-6)
    else:
        pytest.fail(f"{registered_name}: unknown sample kind {kind!r}")
