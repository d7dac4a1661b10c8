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
import json
import logging
import os

import keras
import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter, OpResolverType

import tfdeblur.models as models
from tests.helpers import random_images, run_cli_error
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
    model = models.build("msfs", channels=16, latent_blocks=1, decoder_blocks=1, encoder_blocks=1, init="torch")
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
        try:  # the network's float-kept ops (`int8_keep_float`) left out: the widening alone
            widened = source.convert("int8", representative, keep_float="none")
        finally:
            logger.removeHandler(records)
        # The control: TF's calibration as it is, and no check after it.
        mp.setattr(quantization, "widen_dead_ranges", lambda calibrated: (calibrated, []))
        mp.setattr(export, "_check_requantization", lambda flatbuffer, widened: None)
        plain = source.convert("int8", representative, keep_float="none")
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


# -- ops kept in float (`keep_float`, MSFS's `int8_keep_float`) ---------------

def _op_outputs(flatbuffer):
    """(op type, output tensor name, output type name) of every op, all subgraphs."""
    schema, model = quantization._unpack(flatbuffer)
    names = quantization._op_names(schema)
    types = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    rows = []
    for graph in model.subgraphs:
        for op in graph.operators:
            code = model.operatorCodes[op.opcodeIndex]
            kind = names[max(code.builtinCode, code.deprecatedBuiltinCode)]
            for i in op.outputs:
                rows.append((kind, graph.tensors[i].name.decode(), types[graph.tensors[i].type]))
    return rows


def test_msfs_int8_keeps_its_adds_and_second_encoder_scale_in_float(converted):
    """The network's default list: every ADD and the enc2_down / enc2_res
    layers compute in float32 (their outputs are FLOAT32 tensors), every
    other convolution stays int8; XNNPACK runs the file, it is closer to
    the float network than the fully integer one (`converted["widened"]`:
    same calibration images and widening), and its metadata says what was
    kept."""
    model = converted["model"]
    assert type(model).int8_keep_float == ("ADD", "enc2_down", "enc2_res")
    assert export.resolve_keep_float(None, model) == (("ADD",), ("enc2_down", "enc2_res"))
    with export.TFLiteExport(model) as source:
        mixed = source.convert("int8", export.representative_images(8, 32))
    rows = _op_outputs(mixed)
    adds = {t for kind, _, t in rows if kind == "ADD"}  # INT32 ones: the padding's shape arithmetic
    assert "FLOAT32" in adds and "INT8" not in adds, adds
    kept = [(n, t) for kind, n, t in rows if kind == "CONV_2D" and ("/enc2_down_" in n or "/enc2_res_" in n)]
    assert kept and {t for _, t in kept} == {"FLOAT32"}, kept
    others = {t for kind, n, t in rows if kind == "CONV_2D" and "/enc2_" not in n and "/dec1_rcab" in n}
    assert others == {"INT8"}, others
    assert "INT8" in {t for kind, _, t in _op_outputs(converted["widened"]) if kind == "ADD"}  # the control
    x = random_images(1, 40, 48, seed=3)
    expected = model(x).numpy()
    got = export.run_tflite(Interpreter(model_content=mixed), x)
    full = export.run_tflite(Interpreter(model_content=converted["widened"]), x)
    assert _psnr(got, expected) > _psnr(full, expected), (_psnr(got, expected), _psnr(full, expected))
    info = json.loads(export.read_tflite_metadata(mixed, export.INFO_METADATA))
    assert info["int8_keep_float"] == ["ADD", "enc2_down", "enc2_res"]


def test_keep_float_bad_lists_fail_before_the_trace(converted, tmp_path, capsys):
    model = converted["model"]
    rep = export.representative_images(8, 32)
    with pytest.raises(ValueError, match="`keep_float`: 'RESHAPE_2' is no TFLite op type"):
        export.convert_tflite(model, "int8", rep, keep_float=["RESHAPE_2"])
    with pytest.raises(ValueError, match="`keep_float`: no layer of msfs has a name starting with 'enc9'"):
        export.convert_tflite(model, "int8", rep, keep_float=["ADD", "enc9"])
    with pytest.raises(ValueError, match="`keep_float` applies to quantize='int8' only; got quantize='dynamic'"):
        export.convert_tflite(model, "dynamic", keep_float=["ADD"])
    with pytest.raises(ValueError, match=r"`integer_io` needs every op in int8, but msfs keeps ADD, enc2_down, "
                                         r"enc2_res in float32 .*`keep_float` none gives a fully integer model"):
        export.convert_tflite(model, "int8", rep, integer_io="uint8")
    with pytest.raises(ValueError, match="or 'none'; got 'ADD'"):
        export.resolve_keep_float("ADD", model)
    assert export.resolve_keep_float("none", model) == ((), ())
    # The CLI: one line, exit 2, nothing written.
    model.save(tmp_path / "m.keras")
    base = ["export", "--model", str(tmp_path / "m.keras"), "--format", "tflite", "--out", str(tmp_path / "q.tflite")]
    err = run_cli_error(capsys, base + ["--quantize", "fp16", "--keep-float", "ADD"])
    assert err == "error: --keep-float applies to --format tflite --quantize int8 only; got --format tflite --quantize fp16"
    err = run_cli_error(capsys, base + ["--quantize", "int8", "--keep-float", "ADD,,MUL"])
    assert err == "error: --keep-float must be comma-separated op types and layer names, or none; got 'ADD,,MUL'"
    err = run_cli_error(capsys, base + ["--quantize", "int8", "--keep-float", "ADD,dec9"])
    assert err == "error: --keep-float: no layer of msfs has a name starting with 'dec9'"
    err = run_cli_error(capsys, base + ["--quantize", "int8", "--integer-io"])
    assert err.startswith("error: --integer-io needs every op in int8, but msfs keeps ADD, enc2_down, enc2_res in float32")
    assert sorted(os.listdir(tmp_path)) == ["m.keras"]


def test_networks_without_a_list_keep_nothing_in_float():
    for name in ("mtwdn", "lmfn", "fddn", "glbdn"):
        assert models.get_preset(name).cls.int8_keep_float == (), name


def test_keep_float_hook_restores_tfs_quantizer():
    from tensorflow.lite.python import lite

    original = lite._mlir_quantize
    with pytest.raises(KeyError):
        with quantization.keep_float_hook(("ADD",)):
            assert lite._mlir_quantize is not original
            raise KeyError("inside")
    assert lite._mlir_quantize is original


def test_layer_path_reads_keras_names_from_tflite_tensor_names():
    assert quantization._layer_path("msfs_1/encoder_1/enc2_down_1/convolution1;msfs_1/x") == [
        "msfs", "encoder", "enc2_down"]
    assert quantization._layer_path("serving_default_images:0") == []
