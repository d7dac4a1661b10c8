"""int8 TFLite models that XNNPACK, LiteRT's default CPU delegate, accepts.

An integer convolution rescales its int32 accumulator to the output's int8
grid by ``input_scale * weight_scale / output_scale``; XNNPACK refuses to
build a runtime when that factor of any output channel lies outside
[2**-32, 256), and the whole model then fails to run ("failed to create
XNNPACK runtime ... failed to prepare"). Calibration sets that factor too
high when a convolution's output is dead on every calibration image: a
ReLU after a channel-attention bottleneck whose pre-activations are all
negative records the range [0, 0], and TF's quantizer gives it a scale of
~1e-8 (full-size `msfs`, `latent_rcab9_ca_down`: 7.8e-9, a factor of 1.5e4).

`widen_dead_ranges` edits the calibrated model between TF's calibration
and quantization steps: an output range narrower than about four steps of
its convolution's accumulator (nothing the int8 kernel can resolve) is
widened to that when XNNPACK's bound is near; other ranges stay as
calibrated. The network is
unchanged and keeps its integer kernels; values that were dead stay zero.
`requantization_problems` reads a converted int8 model and names every
convolution whose factor XNNPACK would refuse, so an export fails with a
clear error instead of writing a file the default interpreter cannot run.

TF's converter has no public step between calibration and quantization:
`calibration_hook` wraps its calibrator (`tensorflow.lite.python.lite`'s
`_calibrator.Calibrator`, TensorFlow 2.21) for the length of a conversion.
"""
import contextlib
import re
import threading

import numpy as np

# XNNPACK's bounds on a quantized convolution's requantization scale.
REQUANTIZATION_BOUNDS = (2.0**-32, 256.0)
# A range whose estimated factor exceeds WIDEN_ABOVE (half XNNPACK's bound:
# the estimate from calibrated ranges ignores the quantizer's nudging of
# ranges to grids) is widened to WIDENED_FACTOR; others stay as calibrated.
WIDEN_ABOVE = 128.0
WIDENED_FACTOR = 64.0
# Ops whose int8 kernels requantize input_scale * weight_scale / output_scale,
# with the positions of their data input and weights.
CONV_OPERANDS = {
    "CONV_2D": (0, 1),
    "DEPTHWISE_CONV_2D": (0, 1),
    "FULLY_CONNECTED": (0, 1),
    "TRANSPOSE_CONV": (2, 1),  # inputs: output shape, weights, data[, bias]
}
_INT8_STEPS = 255.0  # an int8 activation spans 255 steps of its scale
_WEIGHT_STEPS = 127.0  # symmetric weights: max |w| is 127 steps


def _schema():
    from tensorflow.lite.python import schema_py_generated

    return schema_py_generated


def _op_names(schema):
    return {code: name for name, code in vars(schema.BuiltinOperator).items() if not name.startswith("_")}


def _unpack(flatbuffer):
    schema = _schema()
    return schema, schema.ModelT.InitFromPackedBuf(bytearray(flatbuffer), 0)


def _pack(model):
    import flatbuffers

    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _conv_ops(schema, model):
    """(subgraph, data input, weights, output) tensors of each conv-like op."""
    names = _op_names(schema)
    for graph in model.subgraphs or []:
        for op in graph.operators or []:
            code = model.operatorCodes[op.opcodeIndex]
            name = names.get(max(code.builtinCode, code.deprecatedBuiltinCode))
            if name in CONV_OPERANDS:
                data, weights = CONV_OPERANDS[name]
                yield graph, graph.tensors[op.inputs[data]], graph.tensors[op.inputs[weights]], graph.tensors[op.outputs[0]]


def _calibrated_range(tensor):
    q = tensor.quantization
    if q is None or q.min is None or q.max is None or len(q.min) != 1 or len(q.max) != 1:
        return None
    return float(q.min[0]), float(q.max[0])


def _weights_max(model, tensor):
    """max |w| of a float32 constant tensor, or None for any other tensor."""
    data = model.buffers[tensor.buffer].data if 0 <= tensor.buffer < len(model.buffers) else None
    if data is None or len(data) == 0 or tensor.type != _schema().TensorType.FLOAT32:
        return None
    return float(np.abs(np.frombuffer(np.asarray(data, np.uint8).tobytes(), np.float32)).max())


def widen_dead_ranges(calibrated):
    """`calibrated` (a float TFLite model carrying calibration min/max, what
    TF's calibrator returns) with each conv-like op's output range that
    would give a requantization factor above `WIDEN_ABOVE` widened to
    ``255 * input_scale * max_weight_scale / WIDENED_FACTOR``; returns
    (flatbuffer, names of the widened tensors). The range keeps its lower
    end (zero for a ReLU output) and grows upwards."""
    schema, model = _unpack(calibrated)
    widened = []
    for _, data, weights, output in _conv_ops(schema, model):
        data_range, out_range, w_max = _calibrated_range(data), _calibrated_range(output), _weights_max(model, weights)
        if data_range is None or out_range is None or not w_max:
            continue
        input_scale = (max(data_range[1], 0.0) - min(data_range[0], 0.0)) / _INT8_STEPS
        product_scale = input_scale * w_max / _WEIGHT_STEPS
        low, high = min(out_range[0], 0.0), max(out_range[1], 0.0)
        if (high - low) * WIDEN_ABOVE >= _INT8_STEPS * product_scale:
            continue
        needed = _INT8_STEPS * product_scale / WIDENED_FACTOR
        if high == 0.0 and low < 0.0:  # a negative range grows downwards
            low = high - needed
        else:
            high = low + needed
        output.quantization.min = np.array([low], np.float32)
        output.quantization.max = np.array([high], np.float32)
        widened.append(output.name.decode())
    return (_pack(model) if widened else calibrated), widened


def requantization_problems(flatbuffer):
    """[(output tensor name, lowest factor, highest factor)] of every int8
    conv-like op of a converted model whose requantization factor
    ``input_scale * weight_scale / output_scale`` (per output channel, zero
    weight channels aside) leaves `REQUANTIZATION_BOUNDS`."""
    schema, model = _unpack(flatbuffer)
    problems = []
    for _, data, weights, output in _conv_ops(schema, model):
        if schema.TensorType.INT8 not in (data.type, output.type):
            continue
        scales = [t.quantization.scale if t.quantization is not None else None for t in (data, weights, output)]
        if any(s is None or len(s) == 0 for s in scales):
            continue
        s_in, s_w, s_out = (np.asarray(s, np.float64) for s in scales)
        factor = s_in[0] * s_w[s_w > 0] / s_out[0]
        if factor.size and (factor.min() < REQUANTIZATION_BOUNDS[0] or factor.max() >= REQUANTIZATION_BOUNDS[1]):
            problems.append((output.name.decode(), float(factor.min()), float(factor.max())))
    return problems


_HOOK_LOCK = threading.Lock()


@contextlib.contextmanager
def calibration_hook(transform):
    """Within the block, TF's TFLite converter passes each calibrated model
    through `transform` (bytes -> (bytes, names)) before quantizing it;
    yields the list that collects the names."""
    from tensorflow.lite.python import lite

    calibrator_module = getattr(lite, "_calibrator", None)
    base = getattr(calibrator_module, "Calibrator", None)
    if base is None or not hasattr(base, "calibrate"):
        raise RuntimeError(
            "this TensorFlow's TFLite converter has no calibrator to hook (tensorflow.lite.python.lite._calibrator."
            "Calibrator.calibrate); tfdeblur.quantization needs updating for it"
        )
    names = []

    class Hooked(base):
        def calibrate(self, dataset_gen):
            result, changed = transform(super().calibrate(dataset_gen))
            names.extend(changed)
            return result

    with _HOOK_LOCK:
        calibrator_module.Calibrator = Hooked
        try:
            yield names
        finally:
            calibrator_module.Calibrator = base


# --- int8 with some ops kept in float ---------------------------------------

_QUANTIZE_HOOK_LOCK = threading.Lock()  # apart from _HOOK_LOCK: both hooks nest


def op_type_names():
    """The TFLite builtin op names (``ADD``, ``CONV_2D``, ...)."""
    return set(_op_names(_schema()).values())


def _layer_path(tensor_name):
    """Keras layer names along a TFLite tensor name: "msfs_1/encoder_1/
    enc2_down_1/convolution1;..." -> ["msfs", "encoder", "enc2_down"] (the
    first fused name; Keras' "_N" call suffixes dropped; the last part, the
    TF op, left out)."""
    parts = tensor_name.split(";")[0].split("/")[:-1]
    return [re.sub(r"_\d+$", "", p) for p in parts]


def float_nodes(calibrated, layers):
    """Output tensor names of the ops of `calibrated` (a TFLite model) that
    belong to a Keras layer whose name starts with one of `layers`."""
    if not layers:
        return []
    schema, model = _unpack(calibrated)
    names = _op_names(schema)
    found = set()
    for graph in model.subgraphs or []:
        for op in graph.operators or []:
            code = model.operatorCodes[op.opcodeIndex]
            if names.get(max(code.builtinCode, code.deprecatedBuiltinCode)) in ("QUANTIZE", "DEQUANTIZE"):
                continue
            for index in op.outputs if op.outputs is not None else []:
                name = graph.tensors[index].name.decode()
                if any(part.startswith(prefix) for part in _layer_path(name) for prefix in layers):
                    found.add(name)
    return sorted(found)


@contextlib.contextmanager
def keep_float_hook(ops=(), layers=()):
    """Within the block, TF's TFLite converter leaves the ops of the types in
    `ops` (e.g. "ADD") and of the Keras layers whose names start with one of
    `layers` in float32 when it quantizes a calibrated model (its own
    `mlir_quantize` step, given TF's denylists); yields the list that
    collects the names of the tensors kept in float."""
    from tensorflow.lite.python import lite

    base = getattr(lite, "_mlir_quantize", None)
    if base is None:
        raise RuntimeError(
            "this TensorFlow's TFLite converter has no quantization step to hook "
            "(tensorflow.lite.python.lite._mlir_quantize); tfdeblur.quantization needs updating for it")
    kept = []
    if not ops and not layers:
        yield kept
        return

    def quantize(calibrated, *args, **kwargs):
        nodes = float_nodes(calibrated, layers)
        kept.extend(nodes)
        kwargs["denylisted_ops"] = list(ops)
        kwargs["denylisted_nodes"] = nodes
        return base(calibrated, *args, **kwargs)

    with _QUANTIZE_HOOK_LOCK:
        lite._mlir_quantize = quantize
        try:
            yield kept
        finally:
            lite._mlir_quantize = base
