"""The one shared test helper module (keras-hub's TestCase idea, as functions).

A network's own test only says what is special about it; everything every
network must satisfy is checked by `test_models.py`, parametrized over the
registry.
"""
import os
import pathlib

import keras
import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = pathlib.Path(os.environ.get("TFDEBLUR_SHARED", REPO.parent / "shared"))


def representative_presets():
    """One preset per network class: the shortest name, i.e. the paper's own
    (`mtwdn`, not `mtwdn_oneway`). The expensive registry-wide checks (fit,
    saving, export) run on these; ablation presets share their code and get
    the cheap ones (parameter count, shapes)."""
    import tfdeblur.models as models

    chosen = {}
    for name in models.available():
        cls = models.get_preset(name).cls
        if cls not in chosen or len(name) < len(chosen[cls]):
            chosen[cls] = name
    return sorted(chosen.values())


def distinct_network_presets():
    """One preset per distinct network (class and constructor arguments):
    presets that differ only in their training loss (`msfs_no_clm`,
    `glbdn_content_only`, ...) build the same network, so shape and output
    checks on them would repeat the first one's. The shortest name stands
    for the group."""
    import tfdeblur.models as models

    chosen = {}
    for name in models.available():
        preset = models.get_preset(name)
        key = (preset.cls, repr(sorted(preset.kwargs.items())))
        if key not in chosen or len(name) < len(chosen[key]):
            chosen[key] = name
    return sorted(chosen.values())


# Fewer repeated blocks for the expensive registry-wide checks (a training
# step, SavedModel/TFLite export): the same code, a shallower stack. Full
# FDDN (16 FDBs, 1065 layers, 866 weights) creates ~260k graph ops when a
# training step is traced: 150 s for one fit, alone a quarter of the suite.
# The full presets still get the parameter-count check, which builds their
# whole functional graph (every layer's shapes) without initializing weights
# (`preset_param_count`); shapes, finiteness and graph-vs-eager run on these
# smaller stacks of the same blocks. `msfs` (the authors' 21.6 M model:
# 10 + 2 x 30 RCABs, 16 residual blocks) likewise gets one block of each kind.
EXPENSIVE_TEST_OVERRIDES = {
    "mtwdn": {"blocks_per_level": 1},  # 3 residual blocks per level and scale in the paper
    "lmfn": {"num_rfdb": 1},  # 4 RFDBs per level
    "fddn": {"num_blocks": 2},
    "msfs": {"latent_blocks": 1, "decoder_blocks": 1, "encoder_blocks": 1},
    "glbdn": {"blocks_per_scale": 1},  # GFN branches: 2 x 18 residual blocks at 64-256 channels
}


def build_for_expensive_tests(name):
    """`models.build(name)` with the overrides of its class's representative
    preset (`EXPENSIVE_TEST_OVERRIDES`) applied: `msfs_no_fsm` gets `msfs`'s."""
    import tfdeblur.models as models

    return models.build(name, **overrides_for_expensive_tests(name))


def overrides_for_expensive_tests(name):
    """An argument that a preset sets to another value than its class's
    representative preset is what that ablation is about and wins:
    `lmfn_rfdb6` keeps its six RFDBs. One it shares with it does not:
    `msfs` and its ablations all spell out the authors' block counts
    (`OFFICIAL`), and they are what the overrides replace."""
    import tfdeblur.models as models

    preset = models.get_preset(name)
    missing = object()
    for base, overrides in EXPENSIVE_TEST_OVERRIDES.items():
        representative = models.get_preset(base)
        if representative.cls is preset.cls:
            return {k: v for k, v in overrides.items()
                    if k not in preset.kwargs or preset.kwargs[k] == representative.kwargs.get(k, missing)}
    return {}


_PARAM_COUNTS = {}


def preset_param_count(name):
    """`count_params()` of the full-size preset `name`, its variables created
    without values (Keras defers initialization inside a StatelessScope): the
    functional graph is still built end to end, so every shape is checked, and
    the 21 M-parameter presets cost no random initialization. Presets with
    the same class and arguments (ablations that change only the loss) share
    one build."""
    import tfdeblur.models as models

    preset = models.get_preset(name)
    key = (preset.cls, repr(sorted(preset.kwargs.items())))
    if key not in _PARAM_COUNTS:
        with keras.StatelessScope(initialize_variables=False):
            model = models.build(name)
        _PARAM_COUNTS[key] = model.count_params()
        # Keras queues such variables and gives them values when the next
        # StatelessScope closes (every symbolic layer call opens one): forget
        # them, or a later test pays this model's initialization after all.
        from keras.src.backend.common import global_state

        global_state.set_global_attribute("uninitialized_variables", [])
    return _PARAM_COUNTS[key]


def shared_path(*parts):
    """A path under ../shared, or a visible skip when that folder is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} not found: ../shared data is needed (set TFDEBLUR_SHARED)")
    return path


def random_images(batch, height, width, seed=0):
    return np.random.default_rng(seed).random((batch, height, width, 3), dtype=np.float32)


def run_layer_serialization_test(layer, inputs):
    """get_config -> from_config and serialize -> deserialize give a layer
    with the same config and the same output on `inputs`."""
    expected = keras.ops.convert_to_numpy(layer(inputs))
    config = layer.get_config()
    clone = layer.__class__.from_config(config)
    assert clone.get_config() == config
    revived = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert revived.get_config() == config
    for other in (clone, revived):
        if layer.weights:
            other(inputs)
            other.set_weights(layer.get_weights())
        np.testing.assert_allclose(keras.ops.convert_to_numpy(other(inputs)), expected, atol=1e-6)
    return expected


def run_model_saving_test(model, inputs, path):
    """`.keras` round trip under safe_mode, without custom_objects: same outputs."""
    expected = keras.ops.convert_to_numpy(model(inputs))
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True, compile=False)
    assert type(loaded) is type(model)
    assert loaded.get_config() == model.get_config()
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(inputs)), expected, atol=1e-5)
    return loaded


def follow_stdout(proc, marker):
    """Reads `proc.stdout` (a `subprocess.Popen` in text mode) line by line
    on a daemon thread, so a test can wait for a line while the process
    runs. Returns (lines, seen, thread): the lines read so far, an Event set
    once a line starts with `marker`, and the started thread."""
    import threading

    lines, seen = [], threading.Event()

    def read():
        for line in proc.stdout:
            lines.append(line)
            if line.startswith(marker):
                seen.set()

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return lines, seen, thread


def run_cli_error(capsys, argv):
    """Runs the CLI in-process on bad input: exit code 2 and one `error: ...`
    line on stderr, no traceback. Returns that line."""
    from tfdeblur.cli import main

    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    return err


def load_benchmark(name):
    """The module of `benchmarks/NAME.py` (benchmarks are scripts, not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def save_tiny_model(path):
    """Saves a small untrained LMFN (levels=2: sides padded to a multiple of 4,
    minimum side 3; 30k parameters) for CLI tests that need a `.keras` file."""
    import tfdeblur.models as models

    models.build("lmfn", levels=2, channels=16, mffd_channels=16, num_rfdb=1).save(path)
    return str(path)
