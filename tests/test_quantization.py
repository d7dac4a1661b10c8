"""int8 exports that LiteRT's default delegate (XNNPACK) can run.

A narrow MSFS-Net with one channel-attention bottleneck made dead (its ReLU
is zero on every image: kernel scaled up, bias far below zero) reproduces
what the full-size `msfs` showed after training (docs/serving.md): TF's
quantizer gives the dead output a scale of ~1e-8, its convolution's
requantization factor leaves XNNPACK's [2**-32, 256), and the default
interpreter fails to prepare the model. Two conversions of the same traced
network, without and with `tfdeblur.quantization`'s widening, are the
control and the fix.
"""
import logging

import keras
import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter, OpResolverType

import tfdeblur.models as models
from tests.helpers import random_images
from tfdeblur import export, quantization

DEAD = "latent_rcab1_ca_down"


def _psnr(a, b):
    return 10 * np.log10(1.0 / np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))


def _scales(flatbuffer):
    """tensor name -> quantization scales, first subgraph."""
    schema, model = quantization._unpack(flatbuffer)
    out = {}
    for t in model.subgraphs[0].tensors:
        q = t.quantization
        if q is not None and q.scale is not None and len(q.scale):
            out[t.name.decode()] = np.asarray(q.scale)
    return out


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.fixture(scope="module")
def converted():
    keras.utils.set_random_seed(1)
    model = models.build("msfs", channels=16, latent_blocks=1, decoder_blocks=1, init="torch")
    model(np.zeros((1, 32, 32, 3), np.float32))
    rng = np.random.default_rng(0)
    for w in model.weights:
        if w.path.endswith("_out/kernel"):  # zero-init heads: an untrained network is the identity
            w.assign(rng.normal(0.0, 1e-2, w.shape).astype("float32"))
    layer = next(l for l in model._flatten_layers() if l.name == DEAD)
    layer.kernel.assign(layer.kernel.numpy() * 30.0)
    layer.bias.assign(np.full(layer.bias.shape, -3000.0, np.float32))
    representative = export.representative_images(8, 32)
    records = _Records()
    logger = logging.getLogger("tfdeblur")
    with export.TFLiteExport(model) as source, pytest.MonkeyPatch.context() as mp:
        logger.addHandler(records)
        try:
            widened = source.convert("int8", representative)
        finally:
            logger.removeHandler(records)
        # The control: TF's calibration as it is, and no check after it.
        mp.setattr(quantization, "widen_dead_ranges", lambda calibrated: (calibrated, []))
        mp.setattr(export, "_check_requantization", lambda flatbuffer, widened: None)
        plain = source.convert("int8", representative)
    return dict(model=model, widened=widened, plain=plain, warnings=records.messages)


def test_the_dead_bottleneck_breaks_xnnpack_and_the_check_names_it(converted):
    problems = quantization.requantization_problems(converted["plain"])
    assert problems and all(DEAD in name and high >= 256 for name, _, high in problems), problems
    with pytest.raises(RuntimeError, match="XNNPACK"):
        export.run_tflite(Interpreter(model_content=converted["plain"]), random_images(1, 32, 32))
    with pytest.raises(ValueError, match=rf"requantization scale XNNPACK refuses .*{DEAD}.*--quantize dynamic"):
        export._check_requantization(converted["plain"], [])
    # The same file runs on the builtin kernels: only the delegate refuses it.
    builtin = Interpreter(model_content=converted["plain"],
                          experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    assert np.isfinite(export.run_tflite(builtin, random_images(1, 32, 32))).all()


def test_widened_int8_runs_under_xnnpack_and_matches_float(converted):
    assert quantization.requantization_problems(converted["widened"]) == []
    x = random_images(1, 40, 48, seed=3)
    xnnpack = export.run_tflite(Interpreter(model_content=converted["widened"]), x)
    builtin = export.run_tflite(Interpreter(
        model_content=converted["widened"], experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    ), x)
    expected = converted["model"](x).numpy()
    assert _psnr(xnnpack, builtin) >= 45, _psnr(xnnpack, builtin)
    assert _psnr(xnnpack, expected) >= 35, _psnr(xnnpack, expected)
    assert len(converted["warnings"]) == 1 and DEAD in converted["warnings"][0], converted["warnings"]


def test_only_the_dead_ranges_and_their_consumers_change(converted):
    plain, widened = _scales(converted["plain"]), _scales(converted["widened"])
    assert plain.keys() == widened.keys()
    changed = [n for n in plain if plain[n].shape != widened[n].shape or not np.allclose(plain[n], widened[n])]
    dead_out = [n for n in changed if n.startswith(f"msfs_1/{DEAD}_1/Relu")]
    assert dead_out and widened[dead_out[0]][0] > 10 * plain[dead_out[0]][0]
    # Besides the widened outputs: the next convolution's weights and bias
    # (its bias scale is input scale x weight scale). Nothing else moved.
    assert all("_ca_down_1/" in n or "_ca_up_1/" in n for n in changed), changed


def test_calibration_hook_restores_tfs_calibrator():
    from tensorflow.lite.python import lite

    original = lite._calibrator.Calibrator
    with pytest.raises(KeyError):
        with quantization.calibration_hook(lambda b: (b, [])):
            assert lite._calibrator.Calibrator is not original
            raise KeyError("inside")
    assert lite._calibrator.Calibrator is original


def test_calibration_hook_says_when_tf_has_no_calibrator(monkeypatch):
    from tensorflow.lite.python import lite

    monkeypatch.setattr(lite, "_calibrator", None)
    with pytest.raises(RuntimeError, match=r"no calibrator to hook .*tfdeblur.quantization needs updating"):
        with quantization.calibration_hook(lambda b: (b, [])):
            pass


def test_a_file_xnnpack_refuses_runs_on_the_builtin_kernels(converted, tmp_path, caplog):
    """An int8 file from before the widening (the control) still deblurs:
    `deblur`/`eval` fall back to LiteRT's built-in kernels, with a warning."""
    from tfdeblur.inference import load_artifact

    path = tmp_path / "old_int8.tflite"
    path.write_bytes(converted["plain"])
    x = random_images(1, 32, 40, seed=4)
    expected = export.run_tflite(export.load_tflite(converted["plain"], builtin_only=True), x)
    with caplog.at_level(logging.WARNING, logger="tfdeblur"):
        got = load_artifact(str(path))(x)
    np.testing.assert_array_equal(got, expected)
    assert any("XNNPACK delegate cannot run this file" in r.getMessage() for r in caplog.records), caplog.text
