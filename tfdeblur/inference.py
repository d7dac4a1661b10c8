"""Deblurring real photos: any size, any common file kind, tiles, self-ensemble.

    import tfdeblur
    sharp = tfdeblur.deblur("photo.jpg")                             # the default shipped weights
    sharp = tfdeblur.deblur("photo.jpg", "mtwdn-photos")             # shipped weights by name
    sharp = tfdeblur.deblur("photo.jpg", "runs/mtwdn/model.keras")   # uint8 RGB array
    sharp = tfdeblur.deblur(array, model, ensemble=True, tile=512)   # same dtype/shape as array
    sharp = tfdeblur.deblur("photo.jpg", "export/mtwdn.tflite")      # an export: SavedModel folder or .tflite

`deblur` and `Deblurrer` return an array of the input's dtype and shape:

- uint8 / uint16 in, uint8 / uint16 out (`rint`, clipped); float in [0, 1]
  in, float32 out (clipped to [0, 1]). A path is read with its own bit depth
  and turned upright by its EXIF orientation (`tfdeblur.io.read_photo`), so
  16-bit PNGs stay 16-bit and a phone's portrait JPEG comes back upright;
  `tfdeblur.io.write_photo` writes the result with the photo's EXIF and ICC
  profile.
- RGB (H, W, 3) is restored as is. RGBA (H, W, 4) and gray+alpha (H, W, 2):
  the colour part is restored and the alpha channel passed through
  untouched. Grayscale (H, W) or (H, W, 1) is restored **via RGB**: the gray
  plane is replicated to three channels (the networks are trained on RGB
  only), restored, and the three output channels averaged back to one.
- Images smaller than the network's minimum side (`model.min_size`) are
  refused with a one-line `ValueError` naming the image; padding them up
  would mostly restore padding.

**Tiling.** An image with more than `max_pixels` pixels (or any image when
`tile` is given and it exceeds the tile) is restored in overlapping
`tile` x `tile` tiles, which bounds the memory of one forward pass whatever
the photo's size. Each tile's output is weighted by a separable window that
is 1 in its interior, 0 within `margin = overlap // 4` pixels of an edge it
shares with another tile (there the network saw the tile's artificial border
instead of the real neighbourhood) and a raised-cosine ramp (sin^2) over the
`overlap - 2 * margin` pixels between; the outputs are summed with these
weights and divided by the summed weights, so no seam is left. Image borders
are not ramped: there the whole-image run sees the same border. Tiles are
spread evenly, so neighbours overlap by at least `overlap` pixels, and start
on multiples of the network's size multiple, so every tile sees the same
stride-2 sampling grid as the whole image.

The margin should cover the network's receptive field; for these multi-scale
networks the theoretical field is larger than any practical tile, so the
default overlap (`DEFAULT_OVERLAP`) is set by the *effective* receptive field
(Luo et al., "Understanding the Effective Receptive Field in Deep
Convolutional Neural Networks", NeurIPS 2016) and checked end to end: tiled
vs whole-image output PSNR, per network, in docs/benchmarks.md
(`receptive_radius` measures the effective field of a model).

**Self-ensemble** (`ensemble=True`): the 8 flips/rotations of the dihedral
group are each restored, mapped back and averaged (Lim et al., "Enhanced Deep
Residual Networks for Single Image Super-Resolution" (EDSR), CVPRW 2017,
Sec. 4 "geometric self-ensemble"; used for deblurring by MIMO-UNet++, Cho et
al., ICCV 2021). It costs 8 forward passes. `ensemble=4` averages the four
quarter-turn rotations only (4 passes; 75-100 % of the 8-way gain on the
shipped models), `ensemble=2` the image and one quarter turn (`ENSEMBLES`).

**Scales** (`scales=(1.0, 0.5)`): the image is also restored at a smaller
scale, where blur wider than the network learned is within its reach: the
image is resized down (area), restored, resized back up (bicubic), and the
detail the downscaling removed is added back from the input (input minus
its own down-up copy); the outputs of all scales are then averaged,
weighted by how sharp each came out (`scale_fusion="sharpness"`, the
default: weights proportional to the output's mean squared luma gradient
to the power `SHARPNESS_POWER`, `scale_weights`), so a scale that only
smoothed the image (small blur restored at a smaller scale) counts for
little and one that removed blur the others left counts for more;
`scale_fusion="mean"` is the plain average (the behaviour before
2026-11-28). On the real
1280x720 GoPro dev pairs `mtwdn-photos` gains +0.86 dB plain, +1.26 at
`(0.5,)` alone and +1.28 with `(1.0, 0.5)`; small, mildly blurred images
lose (the procedural 256 px set: +2.47 -> +2.00): docs/models.md,
"Restoring at a smaller scale". `scales="auto"` picks by image size
(`auto_scales`: (1.0, 0.5) from `AUTO_MIN_SIDE` = 600 px on the shorter
side, (1.0, 0.5, 0.25) from twice that, else (1.0,)); it is the default of `deblur` (the function and the
command), while `Deblurrer` and `eval` default to (1.0,).

**Precision** (`precision="fp32"`, the default of `Deblurrer` and `eval`;
`"bf16"`; `"auto"`, the default of `deblur`, the function and the
command): bf16 runs the network in Keras' mixed_bfloat16 policy (a twin
of the model built in that policy, with the same weights; the output
head stays float32), where the CPU multiplies bf16 natively:
`tfdeblur.precision.choose_precision` decides for "auto" as training's
`--precision auto` does (AMX or a GPU of compute capability 8+: bf16; a
CPU with AVX512-BF16 and no AMX: a cached micro-benchmark; else fp32).
On the 2-core Zen 4 (AVX512-BF16, no AMX) mtwdn-photos restores a
1280x720 frame in 1.4 s instead of 2.8 s; the card's sets move by -0.02
to +0.02 dB (docs/benchmarks.md, "Restoring in bf16"). bf16 keeps 8
bits of mantissa, an 8-bit image's precision, so under "auto" 16-bit
images (uint16 arrays and files) still run in fp32. Exports run as they
were exported (fp32 here).

**Model transforms** (the `--tlc` hook): `Deblurrer(model, transform=f)`
runs `f(model)` once before tracing and restores with what it returns (any
callable taking and returning a float32 (N, H, W, 3) batch, e.g. a Keras
model). The test-time local converter (`tfdeblur.tlc`) plugs in there.

One `tf.function` with an (N, None, None, 3) signature serves every tile,
rotation and image size, so a folder of photos is traced once
(`Deblurrer.tracing_count`).
"""
import logging
import math
import os

import numpy as np

from tfdeblur import io as tio

DEFAULT_MAX_PIXELS = 1920 * 1088  # above this, tile (about 2 MP: Full HD is restored whole)
DEFAULT_TILE = 512
# 128 until 2026-11-28: 64 restores a 12 MP photo in 70 tiles instead of 88
# (1.24x faster), tiled vs whole still >= 48 dB for the shipped models and
# >= 64 dB for every network at random weights (docs/benchmarks.md).
DEFAULT_OVERLAP = 64


def inference_fn(model):
    """One traced function for every input size (no retracing per size)."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
    def run(x):
        return model(x, training=False)

    return run


def load_model(path=None, arg="`path`"):
    """A tfdeblur model from a `.keras` file, a shipped weights name (e.g.
    "mtwdn-photos", `tfdeblur.models.available_weights()`) or a weights
    manifest `NAME.json`; None means the default shipped weights
    (`tfdeblur.weights.DEFAULT_WEIGHTS`). `.keras` files load in safe mode,
    without custom_objects. Anything else is a one-line `ValueError` naming
    `arg` and the file or name."""
    import keras

    import tfdeblur.models as models
    from tfdeblur import checksum
    from tfdeblur import weights as W
    from tfdeblur.deblur_model import DeblurModel

    if path is None:
        return models.from_preset(default_weights(arg))
    path = os.fspath(path)
    # A shipped name wins over a folder of that name in the working directory
    # (`deblur --model mtwdn-photos` run where an output folder is so named).
    if W.looks_like_name(path) and not os.path.isfile(path) and path in W.available():
        return models.from_preset(path)
    if not os.path.exists(path):
        raise W.unknown_name_error(path, arg, what="no such file, nor a shipped weights name")
    kind = artifact_kind(path)
    if kind in ("saved_model", "tflite"):
        raise ValueError(f"{arg} {path}: a {'SavedModel' if kind == 'saved_model' else 'TFLite'} export; this needs "
                         "the Keras network (a .keras file or shipped weights name)")
    if not os.path.isfile(path):
        raise ValueError(f"{arg} {path}: not a file")
    if path.endswith(W.MANIFEST_SUFFIX):
        return models.from_preset(path)
    checksum.verify(path, arg)
    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as e:  # zip/h5/config errors all mean "not a model file"
        first = str(e).strip().splitlines()[0] if str(e).strip() else e.__class__.__name__
        raise ValueError(f"{arg} {path}: not a loadable .keras model ({first[:200]})") from e
    if not isinstance(model, DeblurModel):
        raise ValueError(f"{arg} {path}: a Keras model, but not a tfdeblur network ({type(model).__name__})")
    return model


# ------------------------------------------------------- exported models

ARTIFACT_KINDS = ("keras", "saved_model", "tflite")


def artifact_kind(path):
    """"saved_model", "tflite" or "keras" for an existing path (by content:
    a folder with saved_model.pb, a TFLite flatbuffer), else None."""
    path = os.fspath(path)
    if os.path.isdir(path):
        return "saved_model" if os.path.isfile(os.path.join(path, "saved_model.pb")) else None
    if not os.path.isfile(path):
        return None
    with open(path, "rb") as f:
        head = f.read(8)
    if head[4:8] == b"TFL3":
        return "tflite"
    return "keras" if path.endswith(".keras") or head[:2] == b"PK" else None


class ExportedModel:
    """A SavedModel folder or `.tflite` file written by `tfdeblur.export`,
    run like the Keras network: calling it maps a float32 [N, H, W, 3] batch
    in [0, 1] to the network's float32 output (signature "deblur_float").

    `min_size`, `size_multiple` and `input_size` come from the facts written
    with the export (`tfdeblur.export.model_info`). A static export
    (`input_size` (H, W)) takes any batch of at most H x W: it is
    mirror-padded at the bottom/right to H x W, as the network pads to its
    multiple, and cropped back; `Deblurrer` tiles larger images.
    """

    def __init__(self, path, kind, info, run):
        self.path, self.kind, self.info, self._run = path, kind, info, run
        self.name = info.get("network") or os.path.basename(os.path.normpath(path))
        self.size_multiple = int(info.get("size_multiple") or 1)
        self.min_size = int(info.get("min_size") or 1)
        size = info.get("input_size")
        self.input_size = None if size is None else (int(size[0]), int(size[1]))

    def __call__(self, batch, training=False):
        from tfdeblur.export import fit_to_size

        batch = np.asarray(batch, np.float32)
        if self.input_size is None:
            return self._run(batch)
        h, w = batch.shape[1:3]
        if h > self.input_size[0] or w > self.input_size[1]:
            raise ValueError(f"{self.path}: a static {self.input_size[0]}x{self.input_size[1]} export; got a "
                             f"{h}x{w} image (tile it: Deblurrer does)")
        outs = [self._run(fit_to_size(x, self.input_size)[None])[0, :h, :w] for x in batch]
        return np.stack(outs)


def _info_or_default(info, path):
    import json

    if info is None:  # an export of an older tfdeblur: dynamic shape, no multiple known
        return {}
    try:
        return json.loads(info)
    except ValueError as e:
        raise ValueError(f"{path}: damaged tfdeblur export facts ({e})") from e


def load_saved_model(path, arg="`path`"):
    """An `ExportedModel` of a SavedModel folder written by `tfdeblur.export`."""
    import tensorflow as tf

    from tfdeblur import export

    try:
        loaded = tf.saved_model.load(os.fspath(path))
    except Exception as e:  # noqa: BLE001  (a damaged .pb, missing variables...)
        first = str(e).strip().splitlines()[0] if str(e).strip() else e.__class__.__name__
        raise ValueError(f"{arg} {path}: not a loadable SavedModel ({first[:200]})") from e
    if export.SIGNATURE_FLOAT not in loaded.signatures:
        raise ValueError(f"{arg} {path}: a SavedModel, but not a tfdeblur export (no {export.SIGNATURE_FLOAT!r} "
                         f"signature; has {', '.join(sorted(loaded.signatures)) or 'none'})")
    info_path = os.path.join(path, "assets.extra", export.INFO_NAME)
    info = open(info_path).read() if os.path.isfile(info_path) else None
    fn = loaded.signatures[export.SIGNATURE_FLOAT]

    def run(batch):
        return fn(**{export.INPUT_KEY: tf.constant(batch)})[export.OUTPUT_KEY].numpy()

    model = ExportedModel(os.fspath(path), "saved_model", _info_or_default(info, path), run)
    model.loaded = loaded  # the signatures hold weak references to it
    return model


def load_tflite_model(path, arg="`path`", num_threads=None):
    """An `ExportedModel` of a `.tflite` file written by `tfdeblur.export`
    (any quantization; an `--integer-io` model's quantized `deblur_float`
    is fed and read through its scale and zero point by `run_tflite`)."""
    from tfdeblur import export

    with open(path, "rb") as f:
        flatbuffer = f.read()
    try:
        import ai_edge_litert  # noqa: F401
    except ImportError as e:
        raise ValueError(f"{arg} {path}: running a .tflite model needs ai-edge-litert "
                         "(pip install 'tfdeblur[litert]')") from e
    try:
        interpreter = export.load_tflite(flatbuffer, num_threads=num_threads)
        signatures = interpreter.get_signature_list()
    except Exception as e:  # noqa: BLE001  (the runtime's own error for a damaged file)
        first = str(e).strip().splitlines()[0] if str(e).strip() else e.__class__.__name__
        raise ValueError(f"{arg} {path}: not a loadable .tflite model ({first[:200]})") from e
    if export.SIGNATURE_FLOAT not in signatures:
        raise ValueError(f"{arg} {path}: a TFLite model, but not a tfdeblur export (no {export.SIGNATURE_FLOAT!r} "
                         f"signature; has {', '.join(sorted(signatures)) or 'none'})")
    info = export.read_tflite_metadata(flatbuffer, export.INFO_METADATA)
    state = {"interpreter": interpreter, "builtin_only": False}

    def run(batch):
        try:
            out = export.run_tflite(state["interpreter"], batch, signature=export.SIGNATURE_FLOAT)
        except RuntimeError as e:
            # LiteRT's default delegate prepares the graph on the first run:
            # a file it refuses runs on the built-in kernels instead.
            if state["builtin_only"] or "XNNPACK" not in str(e):
                raise
            logging.getLogger("tfdeblur").warning(
                "%s: LiteRT's XNNPACK delegate cannot run this file; running it on the built-in kernels (slower; an "
                "int8 file with a dead calibration range runs under XNNPACK once exported again)", path)
            state.update(interpreter=export.load_tflite(flatbuffer, num_threads=num_threads, builtin_only=True),
                         builtin_only=True)
            out = export.run_tflite(state["interpreter"], batch, signature=export.SIGNATURE_FLOAT)
        return np.asarray(out, np.float32)

    return ExportedModel(os.fspath(path), "tflite", _info_or_default(info, path), run)


def load_artifact(path=None, arg="`path`"):
    """What `deblur` and `eval` run: a Keras network (a `.keras` file, a
    shipped weights name, a manifest; None: the default weights) or an
    `ExportedModel` (a SavedModel folder or `.tflite` file from `export`)."""
    if path is not None and not isinstance(path, (str, os.PathLike)):
        return path
    kind = None if path is None else artifact_kind(path)
    if kind == "saved_model":
        return load_saved_model(path, arg)
    if kind == "tflite":
        return load_tflite_model(path, arg)
    if path is not None and os.path.isdir(path):
        from tfdeblur import weights as W

        if not (W.looks_like_name(os.fspath(path)) and os.fspath(path) in W.available()):
            raise ValueError(f"{arg} {path}: a folder, but not a SavedModel (no saved_model.pb in it)")
    return load_model(path, arg)


def default_weights(arg="`model`"):
    """The name of the default shipped weights, or a one-line `ValueError`
    saying none are shipped (then a model must be given as `arg`)."""
    from tfdeblur import weights as W

    shipped = W.available()
    if W.DEFAULT_WEIGHTS in shipped:
        return W.DEFAULT_WEIGHTS
    if not shipped:
        raise ValueError(f"no trained weights are shipped with this tfdeblur yet (none in {W.weights_dir()}); "
                         f"give {arg} FILE.keras (a model written by `train`)")
    raise ValueError(f"the default weights {W.DEFAULT_WEIGHTS!r} are not installed; give {arg} NAME "
                     f"(shipped: {', '.join(shipped)}) or {arg} FILE.keras")


# ----------------------------------------------------------------- tiling


def tile_starts(size, tile, overlap, align=1):
    """Start offsets of tiles of `tile` pixels covering `size` pixels, spread
    evenly so that neighbours overlap by at least `overlap`. Starts are
    multiples of `align` (the network's size multiple: a tile then sees the
    same stride-2 grid as the whole image); the last tile runs to the end,
    up to `align - 1` pixels longer than `tile`."""
    if size <= tile:
        return [0]
    if tile - overlap - (align - 1) < 1:
        align = 1  # tiles too small to honour both the overlap and the grid: keep the overlap
    step = max(1, tile - overlap - (align - 1))  # rounding starts down costs up to align - 1
    n = max(2, math.ceil((size - tile) / step) + 1)
    last = (size - tile) // align * align
    return sorted({round(i * last / (n - 1)) // align * align for i in range(n)})


def edge_weights(length, ramp_start, ramp_end, overlap):
    """1-D blending window of one tile side (see the module docstring)."""
    w = np.ones(length, np.float64)
    margin = overlap // 4
    blend = max(1, overlap - 2 * margin)
    ramp = np.sin(0.5 * np.pi * (np.arange(blend) + 0.5) / blend) ** 2
    if ramp_start:
        head = np.concatenate([np.zeros(margin), ramp])[:length]
        w[: len(head)] = np.minimum(w[: len(head)], head)
    if ramp_end:
        tail = np.concatenate([ramp[::-1], np.zeros(margin)])[-length:]
        w[length - len(tail):] = np.minimum(w[length - len(tail):], tail)
    return w


def tiled(predict, image, tile, overlap, progress=None, align=1):
    """Restores an (H, W, 3) float32 image tile by tile; `predict` maps a
    (1, h, w, 3) batch to one of the same shape."""
    h, w = image.shape[:2]
    ys, xs = tile_starts(h, tile, overlap, align), tile_starts(w, tile, overlap, align)
    acc = np.zeros((h, w, 3), np.float32)
    total = np.zeros((h, w, 1), np.float32)
    done = 0
    for i, y in enumerate(ys):
        th = h - y if i == len(ys) - 1 else tile
        wy = edge_weights(th, y > 0, y + th < h, overlap)
        for j, x in enumerate(xs):
            tw = w - x if j == len(xs) - 1 else tile
            wx = edge_weights(tw, x > 0, x + tw < w, overlap)
            weight = (wy[:, None] * wx[None, :]).astype(np.float32)[..., None]
            out = np.asarray(predict(image[None, y : y + th, x : x + tw]))[0]
            acc[y : y + th, x : x + tw] += out * weight
            total[y : y + th, x : x + tw] += weight
            done += 1
            if progress is not None:
                progress(done, len(ys) * len(xs))
    return acc / total


# ----------------------------------------------------------- self-ensemble


def _forward(x, k, flip):
    x = np.rot90(x, k, axes=(0, 1))
    return x[:, ::-1] if flip else x


def _inverse(x, k, flip):
    if flip:
        x = x[:, ::-1]
    return np.rot90(x, -k, axes=(0, 1))


DIHEDRAL = [(k, flip) for flip in (False, True) for k in range(4)]

# `ensemble=n`: the transforms averaged. The quarter-turn rotations (4)
# keep 75-100 % of the 8-way gain, one quarter turn (2) 35-85 %
# (benchmarks/ensemble_subsets.py; docs/models.md "Self-ensemble").
ENSEMBLES = {1: DIHEDRAL[:1], 2: DIHEDRAL[:2], 4: DIHEDRAL[:4], 8: DIHEDRAL}


AUTO = "auto"
# `scales="auto"`: images whose shorter side has at least this many pixels are
# restored at (1.0, 0.5), smaller ones at (1.0,). Blur in pixels grows with
# the resolution (the same shake spans twice the pixels at twice the size),
# and the shipped networks learned blur of up to ~30-48 px on 256 px crops
# of photos downscaled 0.5-1x. Measured 2026-11-27 (docs/models.md,
# "Restoring at a smaller scale"): every 1280x720 set gains with (1.0, 0.5)
# (GoPro dev: mtwdn-photos +0.98 -> +1.28 dB, 10 of 11 frames up, one down
# by 0.04), the 256-384 px synthetic sets lose (-0.3 to -0.5 dB).
# A level is added for each doubling of the size: (1.0, 0.5, 0.25) from
# 2 x AUTO_MIN_SIDE on, so the smallest level's shorter side stays at
# 300-600 px. Measured on the GoPro dev pairs upscaled 2x (2560x1440, blur
# twice as wide: `scale_inference.py --data gopro_dev_x2`, no larger real
# pairs exist here): (1.0, 0.5, 0.25) +1.35 dB against (1.0, 0.5) +0.99,
# all 11 frames up (+0.09 to +1.02), 3 % more time. Deeper levels (an
# eighth from 2400 px) were not measured: AUTO_MAX_LEVELS stops at 0.25.
AUTO_MIN_SIDE = 600
AUTO_MAX_LEVELS = 2  # halvings below scale 1


def auto_scales(height, width):
    """The scales `scales="auto"` restores an image of this size at: 1.0,
    and a halving for each time the shorter side reaches `AUTO_MIN_SIDE`
    times a power of two (at most `AUTO_MAX_LEVELS`)."""
    side, scales = min(height, width), [1.0]
    while len(scales) <= AUTO_MAX_LEVELS and side >= AUTO_MIN_SIDE * 2 ** (len(scales) - 1):
        scales.append(scales[-1] / 2)
    return tuple(scales)


# `scale_fusion="sharpness"`: each scale's output weighs sharpness ** POWER
# (`sharpness`: mean squared Sobel gradient of the luma), normalized. Chosen
# 2026-11-28 against the plain mean (docs/models.md, "Restoring at a smaller
# scale": `benchmarks/scale_inference.py --scales 1 auto:mean auto --data
# val_large gopro_dev gopro_pair`): the mean lost to scale 1 alone on large
# photos with small blur, where the smaller scale only smooths (val_large,
# 600 px, mtwdn-photos: shake up to 15 px -0.26 dB, up to 31 px -0.15);
# weighted, -0.12 and -0.08, the set +1.76 against the mean's +1.70 (scale 1
# +1.77), while the GoPro dev pairs keep +1.31 (= the mean) and the frame
# +1.42 (+1.43). lmfn-photos: +0.96 / +0.93 / +0.95 and +1.09 = +1.09.
# Power 2 of 1, 2, 3, 4, 8 tried on a first draw of these pairs: higher
# powers protected the small blur more and cost the upscaled GoPro pairs
# (three scales) more: power 4 -0.07 dB against the mean there, 2 -0.02.
SCALE_FUSIONS = ("sharpness", "mean")
SHARPNESS_POWER = 2.0
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def sharpness(rgb):
    """The mean squared gradient (3x3 Sobel) of an (H, W, 3) or (H, W)
    image's luma: larger for a sharper image of the same scene."""
    import cv2

    rgb = np.asarray(rgb, np.float32)
    luma = rgb[..., :3] @ _LUMA if rgb.ndim == 3 else rgb
    gx = cv2.Sobel(luma, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(luma, cv2.CV_32F, 0, 1, ksize=3)
    return float(np.mean(np.square(gx, dtype=np.float64) + np.square(gy, dtype=np.float64)))


def scale_weights(values, power=SHARPNESS_POWER):
    """Weights of the scales' outputs from their `sharpness` values:
    proportional to value ** power, summing to 1 (equal when all are 0)."""
    values = np.asarray(values, np.float64)
    if values.ndim != 1 or values.size == 0 or np.any(values < 0) or not np.all(np.isfinite(values)):
        raise ValueError(f"values must be a non-empty list of non-negative numbers; got {values!r}")
    top = values.max()
    if top == 0:
        return np.full(values.size, 1.0 / values.size)
    w = (values / top) ** power
    return w / w.sum()


INFERENCE_PRECISIONS = ("fp32", "bf16", "auto")


def resolve_inference_precision(model, precision="auto"):
    """(precision, reason) a `Deblurrer` runs `model` in: "fp32" or "bf16".
    An export runs as exported (fp32; asking it for bf16 is an error)."""
    from tfdeblur.precision import choose_precision

    if precision not in INFERENCE_PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(INFERENCE_PRECISIONS)}; got {precision!r}")
    if isinstance(model, ExportedModel):
        if precision == "bf16":
            raise ValueError(f"precision bf16 needs the Keras network; got a {model.kind} export ({model.path}), "
                             "which runs as it was exported")
        return "fp32", f"a {model.kind} export runs as exported"
    if precision != "auto":
        return precision, f"`precision` {precision} given"
    from tfdeblur.timing import conv_width

    decision = choose_precision("auto", width=lambda: conv_width(model))
    return decision.precision, decision.reason


def in_precision(model, precision):
    """`model` itself for "fp32" (or a model already in a mixed policy); for
    "bf16" a twin built from its config in Keras' mixed_bfloat16 policy
    (layers built as float32 on purpose, the output head, stay so) and
    given its weights. The model passed in is not changed."""
    import keras

    if precision == "fp32" or getattr(model, "dtype_policy", None) is not None and model.dtype_policy.name != "float32":
        return model
    if precision != "bf16":
        raise ValueError(f"precision must be fp32 or bf16; got {precision!r}")
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        twin = type(model).from_config(model.get_config())
    finally:
        keras.mixed_precision.set_global_policy(previous)
    twin.set_weights(model.get_weights())
    for attr in ("min_size", "size_multiple"):
        if hasattr(model, attr) and not hasattr(twin, attr):
            setattr(twin, attr, getattr(model, attr))
    return twin


def check_scales(scales):
    """`Deblurrer`'s `scales` -> a tuple of distinct floats in (0, 1], or
    "auto" (`auto_scales`: by image size)."""
    if isinstance(scales, str) and scales.strip().lower() == AUTO:
        return AUTO
    try:
        values = tuple(float(v) for v in scales)
    except (TypeError, ValueError):
        values = ()
    if not values or any(not 0 < v <= 1 for v in values) or len(set(values)) != len(values):
        raise ValueError(f"scales must be distinct numbers in (0, 1], e.g. (1.0, 0.5), or 'auto'; got {scales!r}")
    return values


def ensemble_transforms(ensemble):
    """`Deblurrer`'s `ensemble` (False/True or 1, 2, 4, 8) -> its transforms."""
    if isinstance(ensemble, (bool, np.bool_)):
        return ENSEMBLES[8 if ensemble else 1]
    if isinstance(ensemble, (int, np.integer)) and int(ensemble) in ENSEMBLES:
        return ENSEMBLES[int(ensemble)]
    raise ValueError(f"ensemble must be True, False or one of {sorted(ENSEMBLES)} (transforms averaged); got {ensemble!r}")


# ----------------------------------------------------------------- the API


class Deblurrer:
    """A model ready to restore images of any size (see the module docstring).

    `model`: a tfdeblur model, a `.keras` path, a shipped weights name (e.g.
    "mtwdn-photos"), None for the default shipped weights, or an export:
    a SavedModel folder or `.tflite` file (`load_artifact`; tiled, ensembled
    and scored the same way; a static-size export tiles every larger image).
    `tile` forces tiling with that tile side; otherwise images above
    `max_pixels` are tiled with `DEFAULT_TILE`. `overlap` is the minimum
    overlap of neighbouring tiles, pixels (default `DEFAULT_OVERLAP`, at
    most a quarter of the tile). `transform` is the model-transform
    hook (e.g. TLC); `progress(done, total)` is called after every tile
    (and every transform of the ensemble). `ensemble`: True for the 8
    flips/rotations, or how many to average (1, 2, 4, 8: `ENSEMBLES`).
    `precision`: "fp32", "bf16" or "auto" (module docstring; `precision`
    and `precision_reason` say what was chosen and why).
    `scales`: restore at each of these scales and average (module docstring),
    weighted by sharpness (`scale_fusion="sharpness"`) or not ("mean");
    `last_scale_weights` holds the last multi-scale image's weights;
    "auto": (1.0, 0.5) for images of at least `AUTO_MIN_SIDE` px on the
    shorter side, (1.0, 0.5, 0.25) from twice that, (1.0,) below
    (`auto_scales`). `kernel_refine` (True, False or "auto": True for
    images of at least `kernel_refine.MIN_SIDE` px a side, False below):
    for uniform blur (camera shake of a still scene): estimate one blur
    kernel from the network's output and deconvolve the image with it
    (`tfdeblur.kernel_refine.refine`); wrong for moving objects and other
    non-uniform blur, so guarded (the network's output is kept for noisy
    photos, where one kernel does not explain the blur everywhere and where
    the refinement undoes it; `last_refine` says which, and why; None for
    an image not refined at all).
    """

    def __init__(self, model=None, *, tile=None, overlap=None, max_pixels=DEFAULT_MAX_PIXELS,
                 ensemble=False, transform=None, scales=(1.0,), kernel_refine=False, scale_fusion="sharpness",
                 precision="fp32"):
        if precision not in INFERENCE_PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(INFERENCE_PRECISIONS)}; got {precision!r}")
        if scale_fusion not in SCALE_FUSIONS:
            raise ValueError(f"scale_fusion must be one of {', '.join(SCALE_FUSIONS)}; got {scale_fusion!r}")
        self.scale_fusion = scale_fusion
        # the weights of the scales for the last image restored at several (None otherwise)
        self.last_scale_weights = None
        if not (isinstance(kernel_refine, (bool, np.bool_)) or kernel_refine == AUTO):
            raise ValueError(f"kernel_refine must be True, False or \"auto\"; got {kernel_refine!r}")
        # True, False or "auto" (True where the image is large enough: `refines`)
        self.kernel_refine = AUTO if kernel_refine == AUTO else bool(kernel_refine)
        # `kernel_refine.refine`'s info on the last image restored (None without
        # kernel_refine): `applied`, and why not (`reason`) where the guard kept
        # the network's output.
        self.last_refine = None
        self.transforms = ensemble_transforms(ensemble)
        self.ensemble = len(self.transforms)
        self.scales = check_scales(scales)
        if model is None or isinstance(model, (str, os.PathLike)):
            model = load_artifact(model, arg="`model`")
        self.model = model
        # the precision the network runs in, and why (`tfdeblur.precision.Decision`)
        self.precision, self.precision_reason = resolve_inference_precision(model, precision)
        self.min_size = int(getattr(model, "min_size", 1))
        multiple = int(getattr(model, "size_multiple", 1))
        static = getattr(model, "input_size", None)
        # A static export runs tiles of at most its size: the last tile of a
        # row may be up to multiple - 1 longer than `tile` (tile_starts).
        largest = None if static is None else min(static) - (multiple - 1)
        if tile is not None:
            if int(tile) != tile or tile < max(16, self.min_size):
                raise ValueError(f"tile must be an integer of at least {max(16, self.min_size)} pixels; got {tile}")
            if largest is not None and tile > largest:
                raise ValueError(f"tile must be at most {largest} pixels for this static {static[0]}x{static[1]} "
                                 f"export; got {tile}")
        side = (DEFAULT_TILE if largest is None else min(DEFAULT_TILE, largest)) if tile is None else int(tile)
        if overlap is None:
            overlap = min(DEFAULT_OVERLAP, side // 4)
        if int(overlap) != overlap or not 0 <= overlap <= side // 2:
            raise ValueError(f"overlap must be an integer from 0 to half the tile ({side // 2}); got {overlap}")
        if int(max_pixels) != max_pixels or max_pixels < 1:
            raise ValueError(f"max_pixels must be a positive integer; got {max_pixels}")
        self.tile = None if tile is None else int(tile)
        self.static = static
        self._static_tile = side if static is not None else None
        self.overlap = int(overlap)
        self.max_pixels = int(max_pixels)
        self.size_multiple = multiple
        if isinstance(model, ExportedModel):
            if transform is not None:
                raise ValueError(f"`transform` (a model transform) needs the Keras network; got a {model.kind} export "
                                 f"({model.path})")
            self._fn = None
        else:
            net = in_precision(model, self.precision)
            net = transform(net) if transform is not None else net
            self._fn = inference_fn(net)
        # "auto" chose bf16: 16-bit images still run in fp32 (bf16 keeps 8 bits
        # of mantissa, about an 8-bit image's precision; `_full_fn`)
        self._transform = transform
        self._fp32_fn = None
        self._default_fn = self._fn
        self.full_precision_for_16_bit = precision == "auto" and self.precision == "bf16"
        if self.full_precision_for_16_bit:
            self.precision_reason += "; 16-bit images in fp32"

    def _full_fn(self):
        """The fp32 inference function (built on first use)."""
        if self._fp32_fn is None:
            net = self._transform(self.model) if self._transform is not None else self.model
            self._fp32_fn = inference_fn(net)
        return self._fp32_fn

    @property
    def tracing_count(self):
        """How often the inference function was traced (1 after any number of
        images; 0 for an exported model, which is not traced here; the fp32
        function of 16-bit images under "auto" counts too)."""
        if self._default_fn is None:
            return 0
        count = self._default_fn.experimental_get_tracing_count()
        return count + (self._fp32_fn.experimental_get_tracing_count() if self._fp32_fn is not None else 0)

    def _predict(self, batch):
        batch = np.ascontiguousarray(batch, np.float32)
        if self._fn is None:
            return self.model(batch)
        return self._fn(batch).numpy()

    def tile_for(self, height, width):
        """The tile side used for an image of this size, or None for a whole-image pass."""
        if self.static is not None and (height > self.static[0] or width > self.static[1]):
            return self._static_tile
        if self.tile is not None:
            return self.tile if max(height, width) > self.tile else None
        if height * width > self.max_pixels:
            return DEFAULT_TILE if self.static is None else self._static_tile
        return None

    def restore_rgb(self, rgb, progress=None):
        """(H, W, 3) float32 in [0, 1] -> restored (H, W, 3) float32, clipped to [0, 1]."""
        rgb = np.asarray(rgb, np.float32)
        self.last_refine = None
        if self.refines(*rgb.shape[:2]):
            from tfdeblur import kernel_refine

            restored = self._restore_scales(rgb, progress)
            out, self.last_refine = kernel_refine.refine(rgb, restored, return_info=True)
            return out.astype(np.float32)
        return self._restore_scales(rgb, progress)

    def refines(self, h, w):
        """Whether an h x w image gets kernel refinement: always with
        `kernel_refine=True` (an error under `kernel_refine.MIN_SIDE` px a
        side), from that size with "auto", never with False."""
        if not self.kernel_refine:
            return False
        from tfdeblur import kernel_refine

        if min(h, w) >= kernel_refine.MIN_SIDE:
            return True
        if self.kernel_refine == AUTO:
            return False
        raise ValueError(f"kernel refinement (kernel_refine, --uniform-blur) needs images of at least "
                         f"{kernel_refine.MIN_SIDE} px a side; got {w}x{h}")

    def _restore_scales(self, rgb, progress=None):
        h, w = rgb.shape[:2]
        scales = self.scales_for(h, w)
        self.last_scale_weights = None
        if scales == (1.0,):
            return self._restore_one_scale(rgb, progress)
        import cv2

        outs = []
        for j, scale in enumerate(scales):
            part = None if progress is None else (
                lambda done, total, j=j: progress(j * total + done, len(scales) * total))
            if scale == 1.0:
                out = self._restore_one_scale(rgb, part)
            else:
                sw, sh = max(1, round(w * scale)), max(1, round(h * scale))
                if min(sw, sh) < self.min_size:
                    raise ValueError(f"{w}x{h} at scale {scale:g} is {sw}x{sh}, smaller than the network's "
                                     f"minimum {self.min_size}x{self.min_size}")
                small = cv2.resize(rgb, (sw, sh), interpolation=cv2.INTER_AREA)
                detail = rgb - cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
                up = cv2.resize(self._restore_one_scale(small, part), (w, h), interpolation=cv2.INTER_CUBIC)
                out = np.clip(up + detail, 0.0, 1.0)
            outs.append(out)
        if self.scale_fusion == "mean":
            weights = np.full(len(outs), 1.0 / len(outs))
        else:
            weights = scale_weights([sharpness(out) for out in outs])
        self.last_scale_weights = dict(zip(scales, (float(w) for w in weights)))
        acc = sum(np.float32(w) * out for w, out in zip(weights, outs))
        return np.clip(acc, 0.0, 1.0)

    def scales_for(self, height, width):
        """The scales an image of this size is restored at (`scales="auto"`: `auto_scales`)."""
        return auto_scales(height, width) if self.scales == AUTO else self.scales

    def _restore_one_scale(self, rgb, progress=None):
        transforms = self.transforms
        acc = None
        for y in self.restore_transforms(rgb, transforms, progress):
            acc = y if acc is None else acc + y
        return np.clip(acc / len(transforms), 0.0, 1.0)

    def restore_transforms(self, rgb, transforms=DIHEDRAL, progress=None):
        """Yields, for each (k, flip) of `transforms` (`DIHEDRAL`'s entries),
        the network's output on `rgb` rotated k quarter turns (then flipped
        left-right), mapped back to `rgb`'s orientation: float32, not clipped.
        `restore_rgb` clips their mean."""
        rgb = np.asarray(rgb, np.float32)
        transforms = list(transforms)
        for i, (k, flip) in enumerate(transforms):
            x = np.ascontiguousarray(_forward(rgb, k, flip))
            tile = self.tile_for(*x.shape[:2])
            if tile is None:
                y = self._predict(x[None])[0]
            else:
                # Tiles of every transform count as one sequence: (done, total) over all of them.
                per_tile = None if progress is None else (
                    lambda done, total, i=i: progress(i * total + done, len(transforms) * total))
                y = tiled(self._predict, x, tile, self.overlap, progress=per_tile, align=self.size_multiple)
            yield np.asarray(_inverse(y, k, flip), np.float32)
            if progress is not None:
                progress(i + 1, len(transforms))

    def __call__(self, image, name="image", progress=None):
        """Restores an image array or file (see the module docstring); returns
        an array of the input's dtype and shape. `name` labels errors."""
        if isinstance(image, (str, os.PathLike)):
            name = os.fspath(image)
            image, _ = tio.read_photo(image)
        arr = np.asarray(image)
        if arr.dtype == np.uint8:
            scale = 255.0
        elif arr.dtype == np.uint16:
            scale = 65535.0
        elif np.issubdtype(arr.dtype, np.floating):
            scale = None
            if arr.size and not np.isfinite(arr).all():
                raise ValueError(f"{name}: image has NaN or infinite values")
            if arr.size and (arr.min() < 0 or arr.max() > 1):
                raise ValueError(f"{name}: float image values must be in [0, 1]; got [{float(arr.min()):g}, "
                                 f"{float(arr.max()):g}] (divide 8-bit values by 255, or pass the uint8 array)")
        else:
            raise ValueError(f"{name}: image must be uint8, uint16 or float in [0, 1]; got dtype {arr.dtype}")
        squeeze = arr.ndim == 3 and arr.shape[2] == 1
        if squeeze:
            arr = arr[..., 0]
        if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (2, 3, 4))):
            raise ValueError(f"{name}: image must be HxW, HxWx1 (gray), HxWx2 (gray+alpha), HxWx3 (RGB) or HxWx4 (RGBA); got shape {np.shape(image)}")
        h, w = arr.shape[:2]
        if h == 0 or w == 0:
            raise ValueError(f"{name}: image is empty ({w}x{h} pixels)")
        if min(h, w) < self.min_size:
            raise ValueError(f"{name}: {w}x{h} is smaller than the network's minimum {self.min_size}x{self.min_size}")

        channels = 1 if arr.ndim == 2 else arr.shape[2]
        color = arr if channels == 1 else arr[..., : 1 if channels == 2 else 3]
        color = color.astype(np.float32) / np.float32(scale) if scale else color.astype(np.float32)
        if arr.dtype == np.uint16 and self.full_precision_for_16_bit:
            self._fn = self._full_fn()
        try:
            if channels in (1, 2):
                gray = color if channels == 1 else color[..., 0]
                restored = self.restore_rgb(np.repeat(gray[..., None], 3, axis=2), progress)
                restored = restored.mean(axis=2, keepdims=channels == 2)
            else:
                restored = self.restore_rgb(color, progress)
        finally:
            self._fn = self._default_fn
        if not np.isfinite(restored).all():  # rint(NaN) would become 0: a black image
            raise ValueError(f"{name}: the model's output holds NaN or infinite values (damaged or diverged "
                             "weights); nothing written")
        if scale:
            restored = np.clip(np.rint(restored.astype(np.float64) * scale), 0, scale).astype(arr.dtype)
        else:
            restored = restored.astype(np.float32)
        if channels in (2, 4):  # alpha passes through untouched
            alpha = arr[..., -1:] if scale else arr[..., -1:].astype(np.float32)
            restored = np.concatenate([restored, alpha], axis=2)
        return restored[..., None] if squeeze else restored


def deblur(image, model=None, **options):
    """Restores one image (array or file path) with `model` (a tfdeblur
    model, a `.keras` path, a shipped weights name such as "mtwdn-photos",
    a SavedModel folder or `.tflite` file from `export`; None: the default
    shipped weights); returns a numpy array of the input's dtype
    and shape. `options` are `Deblurrer`'s: tile, overlap, max_pixels,
    ensemble, transform, scales, kernel_refine, scale_fusion, precision --
    scales', precision's and kernel_refine's defaults here, as in `deblur`
    on the command line, are "auto" (`auto_scales`; bf16 where this machine
    runs it faster; guarded kernel refinement for images of at least
    `kernel_refine.MIN_SIDE` px a side; `Deblurrer`'s are (1.0,), "fp32" and
    False). For many images build one `Deblurrer` and call it: it traces
    once."""
    options.setdefault("scales", AUTO)
    options.setdefault("precision", "auto")
    options.setdefault("kernel_refine", AUTO)
    return Deblurrer(model, **options)(image)


def receptive_radius(model, size=256, mass=0.99):
    """Effective receptive-field radius (pixels) of `model` at its current
    weights: the half-width of the centred square holding `mass` of the
    absolute gradient of the centre output pixel w.r.t. the input (Luo et al.
    2016). Measured on a random image of `size` x `size`."""
    import tensorflow as tf

    x = tf.constant(np.random.default_rng(0).random((1, size, size, 3), np.float32))
    c = size // 2
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = model(x, training=False)
        target = tf.reduce_sum(tf.cast(y[0, c, c, :], tf.float32))
    g = tf.reduce_sum(tf.abs(tape.gradient(target, x)), axis=-1)[0].numpy().astype(np.float64)
    total = g.sum()
    # The window's sum and the total add the same non-zero values in another
    # order: allow that rounding, or mass=1.0 is missed by an ulp.
    need = mass * total * (1 - 1e-9)
    for r in range(size // 2 + 1):
        if g[max(0, c - r) : c + r + 1, max(0, c - r) : c + r + 1].sum() >= need:
            return r
    return size // 2
