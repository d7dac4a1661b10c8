"""`import tfdeblur` alone makes every `.keras` file we write loadable under
safe_mode (tfdeblur.lazy_registry), checked in fresh processes: the pytest
process has imported the networks long ago."""
import importlib
import json
import os
import pkgutil
import subprocess
import sys

import keras
import numpy as np
import pytest

import tfdeblur
from tests.helpers import REPO, random_images, representative_presets
from tfdeblur import lazy_registry

# A few channels and one block of each kind: the same classes and code paths
# as the presets, at a fraction of the build and save time.
TINY = {
    "MTWDN": {"widths": (4, 8), "blocks_per_level": 1, "num_scales": 2},
    "FDDN": {"encoder_channels": (8, 8), "latent_channels": 8, "num_blocks": 1, "reduction": 4},
    "LMFN": {"levels": 2, "channels": 16, "mffd_channels": 16, "num_rfdb": 1},
    "GLBDN": {"widths": (8, 8), "blocks_per_scale": 1},
    "MSFSNet": {"channels": 8, "latent_blocks": 1, "decoder_blocks": 1, "encoder_blocks": 1, "reduction": 4},
}


def _run(code, tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_public_list_is_what_the_modules_register():
    # models/ and datasets/ install into tfdeblur from folders of their own
    # (setup.cfg package_dir), so tfdeblur.__path__ alone does not reach them.
    for package in (tfdeblur, importlib.import_module("tfdeblur.models"), importlib.import_module("tfdeblur.datasets")):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if not info.name.endswith("__main__"):
                importlib.import_module(info.name)
    registered = {k: v for k, v in keras.saving.get_custom_objects().items() if k.startswith("tfdeblur>")}
    assert set(registered) == set(lazy_registry.PUBLIC)
    for name, obj in registered.items():
        # Every module imported: no stand-in may be left.
        assert not getattr(obj, "_tfdeblur_stand_in", False), name
        assert obj.__module__ == lazy_registry.PUBLIC[name], name


def test_public_refuses_a_class_missing_from_the_list():
    from tfdeblur.serialization import public

    with pytest.raises(ValueError, match="tfdeblur>Unlisted must be listed in tfdeblur/lazy_registry.py"):

        @public
        class Unlisted(keras.layers.Layer):
            pass

    assert "tfdeblur>Unlisted" not in keras.saving.get_custom_objects()


def test_fresh_process_loads_every_network_after_a_bare_import(tmp_path):
    import tfdeblur.models as models
    from tfdeblur.training.recipes import compile_args

    x = random_images(1, 17, 22, seed=3)
    expected = {}
    for name in representative_presets():
        cls = models.get_preset(name).cls.__name__
        model = models.build(name, **TINY[cls])
        model.save(tmp_path / f"{name}.keras")
        expected[name] = keras.ops.convert_to_numpy(model(x))
    # What `train` writes: compiled with a recipe (tfdeblur loss, metrics, schedule).
    model = models.build("mtwdn", **TINY["MTWDN"])
    model.compile(**compile_args("mtwdn_photos", total_steps=10))
    model.save(tmp_path / "compiled.keras")
    np.save(tmp_path / "x.npy", x)

    out = _run(
        f"""
import json, sys
import keras, tfdeblur
import numpy as np
assert "tfdeblur.models" not in sys.modules
x = np.load("x.npy")
result = {{}}
for name in {sorted(expected)!r}:
    model = keras.saving.load_model(name + ".keras", safe_mode=True)
    np.save(name + ".out.npy", keras.ops.convert_to_numpy(model(x)))
    result[name] = type(model).__name__
# DeblurModel overrides compile(), so Keras leaves a loaded model
# uncompiled; its compile config must still deserialize after the bare import.
import zipfile
with zipfile.ZipFile("compiled.keras") as z:
    compile_config = json.loads(z.read("config.json"))["compile_config"]
compiled = keras.saving.deserialize_keras_object(compile_config, safe_mode=True)
result["loss"] = type(compiled["loss"]).__name__
result["metrics"] = [type(m).__name__ for m in compiled["metrics"]]
result["schedule"] = type(compiled["optimizer"]._learning_rate).__name__
print(json.dumps(result))
""",
        tmp_path,
    )
    result = json.loads(out.strip().splitlines()[-1])
    for name, want in expected.items():
        assert result[name] == models.get_preset(name).cls.__name__
        np.testing.assert_allclose(np.load(tmp_path / f"{name}.out.npy"), want, atol=1e-5)
    assert result["loss"] == "MultiScaleLoss"
    assert result["metrics"] == ["PSNR", "SSIM"]
    assert result["schedule"] == "WarmupCosine"


def test_import_stays_free_of_tensorflow_and_keras_imported_later_still_loads(tmp_path):
    import tfdeblur.models as models

    x = random_images(1, 9, 10, seed=4)
    model = models.build("lmfn", **TINY["LMFN"])
    model.save(tmp_path / "m.keras")
    np.save(tmp_path / "want.npy", keras.ops.convert_to_numpy(model(x)))
    np.save(tmp_path / "x.npy", x)
    _run(
        """
import sys
import tfdeblur
assert "tensorflow" not in sys.modules and "keras" not in sys.modules
import keras
import numpy as np
got = keras.ops.convert_to_numpy(keras.saving.load_model("m.keras", safe_mode=True)(np.load("x.npy")))
np.testing.assert_allclose(got, np.load("want.npy"), atol=1e-5)
""",
        tmp_path,
    )
