"""--precision fp16 (loss scaling, float32 output and loss), --jit, --devices."""
import keras
import numpy as np
import tensorflow as tf

from tests.helpers import run_cli_error
from tfdeblur.models import build
from tfdeblur.training import compile_args
from tfdeblur.training.precision import set_precision
from tfdeblur.training.state import RunState

TINY = {"widths": [4, 8, 16], "blocks_per_level": 1}


def test_fp16_scales_the_loss_and_keeps_output_and_loss_float32(tmp_path):
    assert set_precision("fp16") == "fp16"
    model = build("mtwdn", **TINY)
    model.compile(**compile_args("mtwdn", total_steps=2, learning_rate=1e-3), jit_compile=False)
    assert model.compute_dtype == "float16"
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    rng = np.random.default_rng(0)
    sharp = rng.random((2, 32, 32, 3), dtype=np.float32)
    blur = 0.8 * sharp + 0.1
    outputs = model.training_outputs(blur)
    assert all(v.dtype == "float32" for v in outputs.values()), {k: v.dtype for k, v in outputs.items()}
    assert model.loss(sharp, outputs).dtype == "float32"
    before = [w.copy() for w in model.get_weights()]
    model.fit(blur, sharp, batch_size=2, epochs=1, verbose=0)
    after = model.get_weights()
    assert all(np.isfinite(w).all() for w in after)
    assert any(not np.array_equal(a, b) for a, b in zip(before, after))
    # The loss scale is optimizer state: it goes into the checkpoint.
    state = RunState(model, str(tmp_path / "ckpt"))
    path = state.save(1, 2)
    names = tf.train.load_checkpoint(path).get_variable_to_shape_map()
    assert any("dynamic_scale" in n for n in names), sorted(names)[:20]


def test_jit_is_off_unless_asked(monkeypatch, tmp_path):
    """Keras' default jit_compile="auto" turns XLA on on GPUs; a run
    compiles with exactly what --jit says."""
    import pytest

    from tfdeblur.cli import _parser
    from tfdeblur.training import run as run_module

    assert _parser().parse_args(["train", "mtwdn"]).jit is False
    args = _parser().parse_args(["train", "mtwdn", "--jit", "--devices", "/gpu:0,/gpu:1"])
    assert args.jit is True and args.devices == "/gpu:0,/gpu:1"

    class Compiled(Exception):
        pass

    class Probe:
        def __init__(self, model, *args, **kwargs):
            raise Compiled(model.jit_compile)

    monkeypatch.setattr(run_module.run_state, "RunState", Probe)
    for jit in (False, True):
        cfg = run_module.TrainConfig(net="mtwdn", out=str(tmp_path / f"run{jit}"), jit=jit, precision="fp32",
                                     model_overrides=dict(TINY))
        with pytest.raises(Compiled) as info:
            run_module.run_training(cfg, log=lambda *a: None)
        assert info.value.args[0] is jit


def test_unknown_device_is_named(capsys, tmp_path):
    err = run_cli_error(capsys, ["train", "mtwdn", "--devices", "/gpu:7", "--out", str(tmp_path / "run")])
    assert err.startswith("error: --devices: no device '/gpu:7' here; visible: /device:cpu:0")
