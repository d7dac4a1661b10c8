"""Deployment: SavedModel for TF Serving, LiteRT (TFLite) for devices.

Both formats carry the same two signatures; each takes a batch of any
height and width (padding to the network's multiple and cropping back happen
inside the graph, as in the Keras model):

- ``serving_default``: ``images`` uint8 ``[N, H, W, 3]`` -> ``deblurred``
  uint8 ``[N, H, W, 3]``, i.e. ``rint(255 * y)`` clipped to [0, 255] (half to
  even, like `tfdeblur.io.to_uint8`), so it equals what `deblur` saves.
- ``deblur_float``: ``images`` float32 in [0, 1] -> ``deblurred`` float32, the
  network's output as Keras returns it (not clipped).

SavedModel inputs are declared with unknown rank: a wrong rank, channel
count or an image smaller than the network's minimum then reaches checks
inside the graph, which raise an `InvalidArgumentError` naming the input and
what it must be (TF Serving returns that message to the client). A wrong
dtype is refused by TensorFlow itself before the graph runs.

TFLite models are converted by TF's converter from a SavedModel written for
it (rank-4 inputs, no checks: TFLite has no kernels for them) with builtin
ops only; the conversion fails rather than emit Select TF ops. Run them with
`ai_edge_litert` (`load_tflite`, `run_tflite`); a signature runner resizes the
inputs to each image's size.

Every export is written to a temporary path beside the target and renamed
into place, so a crash never leaves a half-written model at the target.
"""
import contextlib
import json
import logging
import os
import tempfile
import warnings
import weakref

import keras
import numpy as np
import tensorflow as tf

from tfdeblur import quantization
from tfdeblur.io import atomic_path, atomic_write
from tfdeblur.deblur_model import DeblurModel

SIGNATURE_UINT8 = "serving_default"
SIGNATURE_FLOAT = "deblur_float"
SIGNATURES = (SIGNATURE_UINT8, SIGNATURE_FLOAT)
# SavedModel only (TFLite has no builtin image codecs): encoded images in and
# out, so a REST client sends {"b64": ...} instead of nested lists. TF
# Serving's REST API returns a string output as {"b64": ...} when its name
# ends in "_bytes".
SIGNATURE_ENCODED = "deblur_encoded"
ENCODED_INPUT_KEY = "image_bytes"
ENCODED_OUTPUT_KEY = "deblurred_bytes"
INPUT_KEY = "images"
OUTPUT_KEY = "deblurred"
FORMATS = ("saved_model", "tflite")
QUANTIZE_MODES = ("none", "fp16", "dynamic", "int8")
# `--integer-io`: the int8 model's deblur_float signature takes and returns
# quantized integers (scale and zero point in its tensor details) instead of
# float32, for accelerators that run integer tensors only.
INTEGER_IO_TYPES = ("uint8", "int8")
# Fewer calibration images than this let one or two scenes set every
# activation range of an int8 model.
MIN_CALIBRATION_IMAGES = 8


# Written with every export: what `tfdeblur.inference` needs to tile and
# check an exported model as it does the Keras network (SavedModel:
# assets.extra/tfdeblur.json; TFLite: the flatbuffer's metadata entry).
INFO_NAME = "tfdeblur.json"
INFO_METADATA = "tfdeblur"


# -- helpers ------------------------------------------------------------------
def check_options(out, format, overwrite=False, quantize="none", calibration_images=None, calibration_data=None,
                  input_size=None, integer_io=None, keep_float=None):
    """`export`'s checks before a model loads: the quantization options go
    together, `input_size` parses, `out` may be written (`check_target`).
    Returns the number of int8 calibration images (default 16)."""
    if format == "saved_model" and quantize != "none":
        raise ValueError(f"`quantize` applies to `format` tflite only; got `quantize` {quantize}")
    if calibration_images is not None and quantize != "int8":
        raise ValueError(f"`calibration_images` applies to `quantize` int8 only; got `quantize` {quantize}")
    if calibration_data is not None and quantize != "int8":
        raise ValueError(f"`calibration_data` applies to `quantize` int8 only; got `quantize` {quantize}")
    if integer_io is not None and quantize != "int8":
        raise ValueError(f"`integer_io` applies to `format` tflite `quantize` int8 only; got `format` {format} "
                         f"`quantize` {quantize}")
    _check_integer_io(integer_io)
    if keep_float is not None and quantize != "int8":
        raise ValueError(f"`keep_float` applies to `format` tflite `quantize` int8 only; got `format` {format} "
                         f"`quantize` {quantize}")
    count = calibration_images or 16
    if quantize == "int8" and count < MIN_CALIBRATION_IMAGES:
        raise ValueError(f"`calibration_images` must be at least {MIN_CALIBRATION_IMAGES} for int8; got {count}")
    parse_input_size(input_size)
    check_target(out, overwrite, kind="dir" if format == "saved_model" else "file")
    return count


def parse_input_size(text, model=None, arg="`input_size`"):
    """(H, W) from "HxW" (or a pair); with `model`, H and W must be multiples
    of its size multiple (a static graph then needs no padding) and at least
    its minimum size. None stays None (dynamic shape)."""
    if text is None:
        return None
    if isinstance(text, str):
        parts = text.lower().split("x")
        try:
            h, w = (int(p) for p in parts) if len(parts) == 2 else (None, None)
        except ValueError:
            h = w = None
    else:
        h, w = (tuple(text) + (None, None))[:2] if len(tuple(text)) == 2 else (None, None)
    if not isinstance(h, int) or not isinstance(w, int) or h < 1 or w < 1:
        raise ValueError(f"{arg} must be HxW, two positive integers (e.g. 720x1280); got {text!r}")
    if model is not None:
        m = model.size_multiple
        if h % m or w % m or min(h, w) < model.min_size:
            raise ValueError(f"{arg} must be HxW with H and W multiples of {m} (the network's size multiple, "
                             f"no padding in a static graph); got {h}x{w}")
    return h, w


def model_info(model, input_size=None):
    """The tfdeblur facts stored with an export (JSON-able dict)."""
    return {
        "format": "tfdeblur-export", "version": 1, "network": model.name,
        "size_multiple": int(model.size_multiple), "min_size": int(model.min_size),
        "input_size": None if input_size is None else [int(v) for v in input_size],
    }


def _check_model(model):
    if not isinstance(model, DeblurModel):
        raise ValueError(f"model must be a tfdeblur network (DeblurModel); got {type(model).__name__}")


@contextlib.contextmanager
def _float32_policy():
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def _float32_model(model):
    """`model`, or a float32 copy of it when it computes in a mixed policy.

    A network built under `--precision bf16` (the global policy when it was
    constructed) computes in bfloat16, which TFLite's builtin kernels do not
    take; its variables are float32 already. `get_config` holds only
    constructor arguments, so the rebuild takes the float32 policy. (A
    `.keras` file loaded under the default policy is float32 already.)
    """
    if model.compute_dtype == "float32":
        return model
    with _float32_policy():
        clone = type(model).from_config(model.get_config())
    clone.set_weights(model.get_weights())
    return clone


def _to_uint8(y):
    return tf.cast(tf.clip_by_value(tf.round(y * 255.0), 0.0, 255.0), tf.uint8)


def _checked(images, min_size):
    """`images` with static rank 4 and 3 channels, after in-graph checks."""
    what = f"input tensor {INPUT_KEY} must be [N, H, W, 3] (a batch of RGB images)"
    rank_ok = tf.debugging.assert_rank(images, 4, message=f"{what}; got another rank")
    with tf.control_dependencies([rank_ok]):
        shape = tf.shape(images)
    checks = [
        tf.debugging.assert_equal(shape[3], 3, message=f"{what}; got another channel count"),
        tf.debugging.assert_greater_equal(
            tf.minimum(shape[1], shape[2]), min_size,
            message=f"input tensor {INPUT_KEY} must be at least {min_size}x{min_size} pixels (H, W); got smaller",
        ),
    ]
    with tf.control_dependencies(checks):
        # Reshape, not ensure_shape: it gives the graph the static channel
        # count the convolutions need and converts to a TFLite builtin.
        return tf.reshape(images, tf.concat([shape[:3], [3]], axis=0))


_TRACES = weakref.WeakKeyDictionary()


def _restore_fn(model, input_size=None):
    """The network's float32 forward pass as one concrete function per model
    and input size (None: any size).

    Both signatures of both formats call it, so a model is traced once (a
    tf.function called from two outer graphs would trace twice; a trace of
    the full MTWDN takes seconds). A static size is traced for that size, so
    the padding to the network's multiple vanishes from the graph.
    """
    traces = _TRACES.setdefault(model, {})
    key = None if input_size is None else tuple(input_size)
    if key not in traces:
        ref = weakref.ref(model)  # a strong one would keep the cache's key alive
        shape = [None, None, None, 3] if key is None else [None, *key, 3]
        traces[key] = tf.function(
            lambda x: ref()(x, training=False), input_signature=[tf.TensorSpec(shape, tf.float32)]
        ).get_concrete_function()
    return traces[key]


def _archive(model, checked, input_size=None):
    """An ExportArchive with the two signatures; `checked`: unknown-rank inputs
    checked inside the graph (SavedModel) or plain rank-4 inputs (TFLite).
    `input_size` (H, W): a static graph for that size; the SavedModel then
    takes a batch [N, H, W, 3], the TFLite model one image [1, H, W, 3] (what
    delegates and the LiteRT benchmark need)."""
    # No `archive.track(model)`: the endpoints' variables are saved without
    # it, and tracking walks the whole layer tree (twice the write time and
    # every weight stored twice).
    archive = keras.export.ExportArchive()
    serving = checked  # the SavedModel also gets the encoded-image signature
    if input_size is not None:
        spec_shape = [None if checked else 1, *input_size, 3]
        checked = False  # the signature's static shape is the check: TF refuses any other
    else:
        spec_shape = None if checked else [None, None, None, 3]
    restore = _restore_fn(model, input_size)

    def prepare(images):
        return _checked(images, model.min_size) if checked else images

    def uint8_fn(images):
        x = tf.cast(prepare(images), tf.float32) / 255.0
        return {OUTPUT_KEY: _to_uint8(restore(x))}

    def float_fn(images):
        return {OUTPUT_KEY: restore(prepare(images))}

    archive.add_endpoint(
        SIGNATURE_UINT8, uint8_fn, input_signature=[tf.TensorSpec(spec_shape, tf.uint8, name=INPUT_KEY)]
    )
    archive.add_endpoint(
        SIGNATURE_FLOAT, float_fn, input_signature=[tf.TensorSpec(spec_shape, tf.float32, name=INPUT_KEY)]
    )
    if serving:
        archive.add_endpoint(
            SIGNATURE_ENCODED, _encoded_fn(restore, model.min_size, input_size),
            input_signature=[tf.TensorSpec([None], tf.string, name=ENCODED_INPUT_KEY)],
        )
    return archive


def _encoded_fn(restore, min_size, input_size):
    """PNG/JPEG/BMP/GIF bytes [N] -> PNG bytes [N] (8-bit RGB; images of a
    batch may differ in size: each is decoded and restored on its own)."""
    def one(data):
        image = tf.io.decode_image(data, channels=3, dtype=tf.uint8, expand_animations=False)[None]
        if input_size is None:
            image = _checked(image, min_size)
        else:
            h, w = input_size
            ok = tf.debugging.assert_equal(
                tf.shape(image)[1:3], tf.constant([h, w]),
                message=f"input {ENCODED_INPUT_KEY}: this static export takes {w}x{h} images (H={h}, W={w}); got another size",
            )
            with tf.control_dependencies([ok]):
                image = tf.ensure_shape(tf.identity(image), [1, h, w, 3])
        y = _to_uint8(restore(tf.cast(image, tf.float32) / 255.0))
        return tf.io.encode_png(y[0])

    def encoded_fn(image_bytes):
        return {ENCODED_OUTPUT_KEY: tf.map_fn(one, image_bytes, fn_output_signature=tf.string)}

    return encoded_fn


def check_target(path, overwrite=False, kind="file"):
    """Raises ValueError unless `path` may be written (`kind`: "file" or "dir")."""
    path = os.fspath(path)
    if not path:
        raise ValueError("out must be a path; got an empty string")
    if os.path.lexists(path):
        if not overwrite:
            raise ValueError(f"{path}: already exists; pass `overwrite` to replace it")
        if kind == "dir" and not os.path.isdir(path):
            raise ValueError(f"{path}: exists and is not a directory (a SavedModel is one)")
        if kind == "file" and os.path.isdir(path):
            raise ValueError(f"{path}: exists and is a directory (a .tflite model is one file)")
    parent = os.path.dirname(os.path.abspath(path))
    if os.path.exists(parent) and not os.path.isdir(parent):
        raise ValueError(f"{path}: its parent {parent} is not a directory")
    return path


# -- SavedModel ---------------------------------------------------------------
def export_saved_model(model, path, overwrite=False, input_size=None):
    """Writes `model` as a SavedModel for TF Serving at `path` (a directory).

    For TF Serving, `path` is a numbered version folder, e.g.
    `models/mtwdn/1`. `input_size` (H, W or "HxW"): a static graph for
    that size (multiples of the network's size multiple). Returns `path`.
    """
    _check_model(model)
    input_size = parse_input_size(input_size, model)
    path = check_target(path, overwrite, kind="dir")
    try:  # an old SavedModel folder is swapped out only once the new one is whole
        with atomic_path(path) as tmp:
            _archive(_float32_model(model), checked=True, input_size=input_size).write_out(tmp, verbose=False)
            extra = os.path.join(tmp, "assets.extra")
            os.makedirs(extra, exist_ok=True)
            with open(os.path.join(extra, INFO_NAME), "w") as f:
                json.dump(model_info(model, input_size), f)
            with tf.io.TFRecordWriter(os.path.join(extra, WARMUP_FILE)) as writer:
                for record in warmup_requests(model, input_size):
                    writer.write(record)
    except (OSError, tf.errors.OpError) as e:
        raise _write_error(path, e) from e
    return path


# -- TF Serving warm-up ---------------------------------------------------------
# TF Serving replays the records of assets.extra/tf_serving_warmup_requests
# (TFRecord, one serialized tensorflow.serving.PredictionLog each) when it
# loads a version, so the first client request does not pay the graph's
# initialization.
WARMUP_FILE = "tf_serving_warmup_requests"


def _varint(n):
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _message_field(number, payload):
    """A length-delimited protobuf field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def prediction_log(signature, inputs):
    """One serialized `tensorflow.serving.PredictionLog` holding a
    PredictRequest for `signature` with `inputs` (name -> numpy array).

    With tensorflow-serving-api installed its protos build it; otherwise the
    same bytes are written here from the .proto field numbers
    (PredictionLog.predict_log = 6, PredictLog.request = 1,
    PredictRequest.model_spec = 1 and inputs = 2 (a map: key 1, value 2),
    ModelSpec.signature_name = 3), as protobuf serializes them: fields in
    number order, empty ones left out. tests/test_serving.py checks both agree.
    """
    tensors = {k: tf.make_tensor_proto(v) for k, v in inputs.items()}
    try:
        from tensorflow_serving.apis import predict_pb2, prediction_log_pb2
    except ImportError:
        spec = _message_field(3, signature.encode())
        entries = b"".join(
            _message_field(2, _message_field(1, k.encode()) + _message_field(2, t.SerializeToString()))
            for k, t in sorted(tensors.items())
        )
        return _message_field(6, _message_field(1, _message_field(1, spec) + entries))
    request = predict_pb2.PredictRequest()
    request.model_spec.signature_name = signature
    for k, t in tensors.items():
        request.inputs[k].CopyFrom(t)
    log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
    return log.SerializeToString(deterministic=True)


def warmup_requests(model, input_size=None):
    """The warm-up records written with a SavedModel: one request per
    signature on a mid-grey image (the static size, else 64x64 rounded up
    to the network's multiple)."""
    import io as _io

    from PIL import Image

    if input_size is None:
        side = -(-64 // model.size_multiple) * model.size_multiple
        input_size = (side, side)
    image = np.full((1, *input_size, 3), 128, np.uint8)
    png = _io.BytesIO()
    Image.fromarray(image[0]).save(png, format="PNG")
    return [
        prediction_log(SIGNATURE_UINT8, {INPUT_KEY: image}),
        prediction_log(SIGNATURE_FLOAT, {INPUT_KEY: image.astype(np.float32) / 255.0}),
        prediction_log(SIGNATURE_ENCODED, {ENCODED_INPUT_KEY: np.array([png.getvalue()], dtype=object)}),
    ]


def _write_error(path, e):
    """A failed write as one line naming the target (the temporary beside
    it is removed by the caller): disk full, permission, ..."""
    from tfdeblur.errors import disk_full, tf_error_reason

    reason = e.strerror if isinstance(e, OSError) and e.strerror else tf_error_reason(e).split("; ")[-1]
    hint = "; the disk is full: free space and export again" if disk_full(e) else ""
    return ValueError(f"{path}: cannot write ({reason}){hint}; nothing was written")


# -- TFLite -------------------------------------------------------------------
def representative_images(count=16, size=128, seed=0):
    """`count` blurry synthetic images (float32 [size, size, 3]) for int8 calibration."""
    from tfdeblur.datasets import synthetic_dataset

    ds = synthetic_dataset("train", crop=size, seed=seed, num_images=count)
    return [blur.numpy() for blur, _ in ds]


def calibration_images(folder, count=None, size=256, arg="`folder`"):
    """Up to `count` float32 [size, size, 3] crops (the centre of each image,
    mirror-padded when smaller) of the photos in `folder`, for int8
    calibration: the user's own pictures set the activation ranges.
    A missing, empty or unreadable folder, or an unreadable image in it, is
    a one-line `ValueError` naming it."""
    from tfdeblur import io as tio

    try:
        paths = tio.list_images(folder)
    except (tio.ImageError, OSError) as e:
        raise ValueError(f"{arg} {e}") from e
    if not paths:
        raise ValueError(f"{arg} {folder}: no image files ({', '.join(tio.IMAGE_EXTENSIONS)})")
    if len(paths) < MIN_CALIBRATION_IMAGES:
        raise ValueError(f"{arg} {folder}: must hold at least {MIN_CALIBRATION_IMAGES} images for int8; "
                         f"got {len(paths)}")
    images = []
    for path in paths[:count]:
        try:
            image = tio.read_image(path, allow_conversion=True)
        except (ValueError, OSError) as e:
            message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ValueError(f"{arg} {message if path in message else f'{path}: {message}'}") from e
        images.append(fit_to_size(image, (size, size)))
    return images


def fit_to_size(image, size):
    """An [H, W, C] image cropped (centre) and mirror-padded (bottom/right,
    as the networks pad) to `size` (H, W)."""
    h, w = size
    y, x = max(0, (image.shape[0] - h) // 2), max(0, (image.shape[1] - w) // 2)
    image = image[y : y + h, x : x + w]
    pad = [(0, h - image.shape[0]), (0, w - image.shape[1])] + [(0, 0)] * (image.ndim - 2)
    while any(p[1] for p in pad):  # symmetric padding reaches one image length per round
        step = [(0, min(p[1], n)) for p, n in zip(pad, image.shape)]
        image = np.pad(image, step, mode="symmetric")
        pad = [(0, p[1] - s[1]) for p, s in zip(pad, step)]
    return image


def _check_integer_io(integer_io, quantize="int8"):
    if integer_io is not None and integer_io not in INTEGER_IO_TYPES:
        raise ValueError(f"`integer_io` must be one of {', '.join(INTEGER_IO_TYPES)}; got {integer_io!r}")
    if integer_io is not None and quantize != "int8":
        raise ValueError(f"integer_io applies to quantize='int8' only; got quantize={quantize!r}")


def _layer_names(model):
    names = set()
    for layer in model.layers:
        names.add(layer.name)
        if hasattr(layer, "layers"):
            names |= _layer_names(layer)
    return names


def resolve_keep_float(keep_float, model, quantize="int8", integer_io=None):
    """The (op types, layer-name prefixes) an int8 conversion keeps in
    float32: `keep_float` None takes the network's own list
    (`model.int8_keep_float`: what its measured int8 error needs,
    docs/serving.md), an empty sequence none. Upper-case entries are TFLite
    op types ("ADD"), the others prefixes of Keras layer names ("enc2_down"
    keeps `enc2_down` and `enc2_down_lrelu`); each must name something the
    network has. "none" is the empty list."""
    if keep_float is None:  # the network's list; a layer its variant lacks is skipped
        keep_float = tuple(getattr(model, "int8_keep_float", ())) if quantize == "int8" else ()
        names = _layer_names(model)
        keep_float = tuple(k for k in keep_float if k.isupper() or any(n.startswith(k) for n in names))
    elif isinstance(keep_float, str):
        if keep_float.lower() != "none":
            raise ValueError(f"`keep_float` must be a list of op types and layer-name prefixes, or 'none'; got "
                             f"{keep_float!r}")
        keep_float = ()
    keep_float = tuple(keep_float)
    if keep_float and quantize != "int8":
        raise ValueError(f"`keep_float` applies to quantize='int8' only; got quantize={quantize!r}")
    if not keep_float:
        return (), ()
    if integer_io is not None:
        raise ValueError(
            f"`integer_io` needs every op in int8, but {model.name} keeps {', '.join(keep_float)} in float32 "
            "(its int8 error without them: docs/serving.md); `keep_float` none gives a fully integer model")
    ops = tuple(k for k in keep_float if k.isupper())
    layers = tuple(k for k in keep_float if not k.isupper())
    unknown = sorted(set(ops) - quantization.op_type_names())
    if unknown:
        raise ValueError(f"`keep_float`: {unknown[0]!r} is no TFLite op type (e.g. ADD, MUL, CONV_2D)")
    names = _layer_names(model)
    for prefix in layers:
        if not any(n.startswith(prefix) for n in names):
            raise ValueError(f"`keep_float`: no layer of {model.name} has a name starting with {prefix!r}")
    return ops, layers


def _calibration(quantize, representative, min_size, input_size=None):
    """Checks `quantize`/`representative`; the int8 calibration generator or None."""
    if quantize not in QUANTIZE_MODES:
        raise ValueError(f"quantize must be one of {', '.join(QUANTIZE_MODES)}; got {quantize!r}")
    if quantize != "int8":
        if representative is not None:
            raise ValueError(f"representative data is for quantize='int8' only; got quantize={quantize!r}")
        return None
    if representative is None:
        representative = representative_images()
    images = [np.asarray(x, dtype=np.float32) for x in representative]
    if len(images) < MIN_CALIBRATION_IMAGES:
        raise ValueError(
            f"representative data must hold at least {MIN_CALIBRATION_IMAGES} images for int8; got {len(images)}"
        )
    for i, x in enumerate(images):
        if x.ndim != 3 or x.shape[-1] != 3 or min(x.shape[:2]) < min_size:
            raise ValueError(
                f"representative image {i} must be float [H, W, 3] with H, W >= {min_size}; got shape {x.shape}"
            )

    if input_size is not None:
        images = [fit_to_size(x, input_size) for x in images]

    def generate():
        # Samples name their signature: the converter calibrates each
        # signature's subgraph on its own samples.
        for x in images:
            yield SIGNATURE_FLOAT, {INPUT_KEY: x[None]}
            yield SIGNATURE_UINT8, {INPUT_KEY: np.rint(np.clip(x, 0.0, 1.0)[None] * 255.0).astype(np.uint8)}

    return generate


@contextlib.contextmanager
def _int8_calibration(quantize, keep_float=((), ())):
    """For int8, TF's calibration with dead ranges widened
    (`tfdeblur.quantization`); yields the widened tensors' names."""
    if quantize != "int8":
        yield []
        return
    with quantization.calibration_hook(quantization.widen_dead_ranges) as widened, \
            quantization.keep_float_hook(*keep_float):
        yield widened


def _check_requantization(flatbuffer, widened):
    """Raises if XNNPACK would refuse the int8 model; logs widened ranges."""
    problems = quantization.requantization_problems(flatbuffer)
    if problems:
        name, low, high = problems[0]
        raise ValueError(
            f"int8 conversion gives {len(problems)} convolution(s) a requantization scale XNNPACK refuses "
            f"(outside [2**-32, 256)), e.g. {name.split(';')[0]}: {low:.3g}..{high:.3g}; the file would not run "
            "under LiteRT's default delegate: calibrate on other images or use --quantize dynamic"
        )
    names = sorted({n.split(";")[0] for n in widened})  # both signatures' subgraphs hold each tensor
    if names:
        logging.getLogger("tfdeblur").warning(
            "int8: widened the calibrated range of %d convolution output(s) too narrow for XNNPACK (dead on the "
            "calibration images?): %s", len(names), ", ".join(names[:5]) + (", ..." if len(names) > 5 else ""))


class TFLiteExport:
    """A network traced once into a SavedModel for TF's TFLite converter.

    `convert()` may then run once per quantization mode without tracing the
    network again (tests and benchmarks convert each network four ways)::

        with TFLiteExport(model) as source:
            fp32, int8 = source.convert("none"), source.convert("int8")
    """

    def __init__(self, model, input_size=None):
        _check_model(model)
        self.input_size = parse_input_size(input_size, model)
        self.min_size = model.min_size
        self.info = model_info(model, self.input_size)
        self._model = model  # for `keep_float` (layer names); the trace below does not need it
        self._workdir = tempfile.TemporaryDirectory(prefix="tfdeblur-tflite-")
        self.saved_model = os.path.join(self._workdir.name, "saved_model")
        try:
            _archive(_float32_model(model), checked=False, input_size=self.input_size).write_out(
                self.saved_model, verbose=False)
        except BaseException:
            self.close()
            raise

    def convert(self, quantize="none", representative=None, integer_io=None, keep_float=None):
        """The TFLite flatbuffer (bytes), builtin ops only (see `convert_tflite`)."""
        _check_integer_io(integer_io, quantize)
        keep_float = resolve_keep_float(keep_float, self._model, quantize, integer_io)
        calibration = _calibration(quantize, representative, self.min_size, self.input_size)
        converter = tf.lite.TFLiteConverter.from_saved_model(self.saved_model, signature_keys=list(SIGNATURES))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if quantize != "none":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantize == "fp16":
            converter.target_spec.supported_types = [tf.float16]
        elif quantize == "int8":
            converter.representative_dataset = calibration
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            if integer_io is not None:
                # Changes only float32 edges: serving_default is uint8 already.
                converter.inference_input_type = converter.inference_output_type = tf.as_dtype(integer_io)
        with warnings.catch_warnings(), _int8_calibration(quantize, keep_float) as widened:
            # TF's int8 calibrator runs the deprecated tf.lite.Interpreter
            # internally; that warning is not about anything of ours.
            warnings.filterwarnings("ignore", message=r"(?s).*tf\.lite\.Interpreter is deprecated")
            flatbuffer = converter.convert()
        if quantize == "int8":
            _check_requantization(flatbuffer, widened)
        info = dict(self.info, integer_io=integer_io) if integer_io is not None else dict(self.info)
        if any(keep_float):
            info["int8_keep_float"] = list(keep_float[0] + keep_float[1])
        return add_tflite_metadata(flatbuffer, INFO_METADATA, json.dumps(info).encode())

    def close(self):
        self._workdir.cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _tflite_schema():
    """The TFLite flatbuffer schema's Python classes: TensorFlow's copy (the
    converter's own), so conversion needs no ai-edge-litert (an extra)."""
    from tensorflow.lite.python import schema_py_generated

    return schema_py_generated


def add_tflite_metadata(flatbuffer, name, data):
    """`flatbuffer` with a metadata entry `name` holding `data` (bytes), as
    the TFLite schema stores them (a named buffer; runtimes ignore names
    they do not know)."""
    import flatbuffers

    schema = _tflite_schema()
    model = schema.ModelT.InitFromPackedBuf(bytearray(flatbuffer), 0)
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(data, np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name, entry.buffer = name, len(model.buffers) - 1
    model.metadata = [m for m in (model.metadata or []) if m.name != name.encode()] + [entry]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def read_tflite_metadata(flatbuffer, name):
    """The bytes of metadata entry `name` of a TFLite flatbuffer, or None."""
    model = _tflite_schema().Model.GetRootAs(flatbuffer, 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if entry.Name() == name.encode():
            return model.Buffers(entry.Buffer()).DataAsNumpy().tobytes()
    return None


def convert_tflite(model, quantize="none", representative=None, input_size=None, integer_io=None, keep_float=None):
    """The TFLite flatbuffer (bytes) of `model`, builtin ops only.

    quantize: "none" (float32), "fp16" (float16 weights), "dynamic" (int8
    weights, float activations) or "int8" (int8 weights and activations,
    integer kernels only, calibrated on `representative`: at least
    `MIN_CALIBRATION_IMAGES` float images [H, W, 3] in [0, 1]; default
    `representative_images()`). Inputs and outputs stay uint8 / float32
    unless `integer_io`.
    `input_size` (H, W or "HxW"): a static graph taking one [1, H, W, 3]
    image (see `export_saved_model`). `integer_io` ("uint8" or "int8",
    int8 only): `deblur_float` then takes and returns that integer type,
    quantized with the scale and zero point in its tensor details
    (`run_tflite` converts); `serving_default` stays uint8.
    `keep_float` (int8 only; see `resolve_keep_float`): op types and layers
    left in float32; default the network's own (`msfs`: its residual adds
    and the second encoder scale's input, docs/serving.md), [] for none.
    """
    _check_model(model)
    _check_integer_io(integer_io, quantize)
    resolve_keep_float(keep_float, model, quantize, integer_io)
    input_size = parse_input_size(input_size, model)
    if quantize == "int8" and representative is None:
        representative = representative_images()
    if representative is not None:
        representative = list(representative)
    _calibration(quantize, representative, model.min_size)  # bad arguments fail before the trace
    with TFLiteExport(model, input_size) as source:
        return source.convert(quantize, representative, integer_io, keep_float)


def export_tflite(model, path, quantize="none", representative=None, overwrite=False, input_size=None,
                  integer_io=None, keep_float=None):
    """Converts `model` (see `convert_tflite`) and writes it to `path`; returns `path`."""
    path = check_target(path, overwrite, kind="file")
    try:  # the converter writes a SavedModel under the temporary folder first
        flatbuffer = convert_tflite(model, quantize=quantize, representative=representative, input_size=input_size,
                                    integer_io=integer_io, keep_float=keep_float)
    except (OSError, tf.errors.OpError) as e:
        from tfdeblur.errors import disk_full

        if not disk_full(e):
            raise
        raise _write_error(path, e) from e
    try:
        atomic_write(path, flatbuffer)
    except OSError as e:
        raise _write_error(path, e) from e
    return path


def load_tflite(path_or_bytes, num_threads=None, builtin_only=False):
    """An `ai_edge_litert` Interpreter for a .tflite file or flatbuffer bytes
    (`pip install tfdeblur[litert]`). `builtin_only`: LiteRT's built-in
    kernels without its default XNNPACK delegate (slower; runs files the
    delegate refuses, e.g. int8 files exported before
    `tfdeblur.quantization`)."""
    try:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType
    except ImportError:
        raise ImportError("running .tflite files needs ai-edge-litert; pip install 'tfdeblur[litert]'") from None

    kwargs = dict(num_threads=num_threads)
    if builtin_only:
        kwargs["experimental_op_resolver_type"] = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    if isinstance(path_or_bytes, (bytes, bytearray)):
        return Interpreter(model_content=bytes(path_or_bytes), **kwargs)
    if not os.path.isfile(path_or_bytes):
        raise ValueError(f"{path_or_bytes}: no such .tflite file")
    return Interpreter(model_path=os.fspath(path_or_bytes), **kwargs)


def run_tflite(interpreter, images, signature=None):
    """Runs one signature on a batch `images` [N, H, W, 3] of any H, W.

    uint8 images go to "serving_default", float32 ones to "deblur_float"
    unless `signature` says otherwise. The signature runner resizes the
    input tensor to the batch's shape (ResizeInputTensor) before each run.
    A quantized integer input (an `--integer-io` export's `deblur_float`)
    takes float32 images too: they are quantized with the tensor's scale and
    zero point, and its output dequantized back to float32.
    """
    images = np.asarray(images)
    if signature is None:
        signature = SIGNATURE_UINT8 if images.dtype == np.uint8 else SIGNATURE_FLOAT
    runner = interpreter.get_signature_runner(signature)
    details = runner.get_input_details()[INPUT_KEY]
    expected = details["dtype"]
    scale, zero_point = details["quantization"]
    quantize = bool(scale) and images.dtype == np.float32 and np.issubdtype(expected, np.integer)
    if quantize:  # integer tensors given as integers pass as they are, both ways
        limits = np.iinfo(expected)
        images = np.clip(np.rint(images / scale) + zero_point, limits.min, limits.max).astype(expected)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != expected:
        raise ValueError(
            f"images must be {np.dtype(expected).name} [N, H, W, 3] for signature {signature!r}; "
            f"got {images.dtype.name} {list(images.shape)}"
        )
    out = runner(**{INPUT_KEY: images})[OUTPUT_KEY]
    scale, zero_point = runner.get_output_details()[OUTPUT_KEY]["quantization"]
    if quantize and scale:
        return (out.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)
    return out


# -- one entry point for the CLI ----------------------------------------------
def export(model, path, format="saved_model", quantize="none", overwrite=False, representative=None, input_size=None,
           integer_io=None, keep_float=None):
    """`export_saved_model` or `export_tflite`, by `format` (what `cli.py export` runs)."""
    if format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}; got {format!r}")
    if format == "saved_model":
        if quantize != "none" or integer_io is not None or keep_float:
            raise ValueError(f"quantize, integer_io and keep_float apply to format 'tflite' only; got "
                             f"quantize={quantize!r}, integer_io={integer_io!r}, keep_float={keep_float!r} for "
                             "'saved_model'")
        return export_saved_model(model, path, overwrite=overwrite, input_size=input_size)
    return export_tflite(model, path, quantize=quantize, representative=representative, overwrite=overwrite,
                         input_size=input_size, integer_io=integer_io, keep_float=keep_float)
