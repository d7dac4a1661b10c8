"""Test-time Local Converter (TLC): the "-Local" form of any tfdeblur network.

Chu et al., "Improving Image Restoration by Revisiting Global Information
Aggregation" (ECCV 2022). A network trained on crops of `train_size` pools
its channel-attention statistics over a crop; on a full test image a global
pooling sees other statistics. TLC replaces every global pooling by a local
one over a window of about 1.5x the training size, without retraining
(MSFS-Net-Local: +0.73 dB on GoPro in the MSFS-Net paper).

    local = tfdeblur.tlc.to_local(model, train_size=256)   # window 384
    restored = local(blur)                                 # same weights

Converted layers (`POOLINGS`): `GlobalAveragePooling2D(keepdims=True)` (RCAB's
channel attention: FDDN's decoder, MSFS-Net's latent space and decoder) and
IMDN's `ContrastPooling` (CCA in FDDN's FDBs). ESA (RFDN, LMFN) pools
locally already (7x7 max pooling) and LMFN's ALFM/ACFM attend over a
global Gram matrix, which is no pooling: none of them changes. MTWDN has no
global pooling at all: `to_local` raises `NoPoolingError` for it.

The window is given in image pixels; a pooling layer at 1/s of the input
resolution gets a window of window / s feature pixels (found once by running
the model on a probe image). The local model shares every other layer, and
so every weight, with the original: a later `set_weights` on either shows
in both.
"""
import logging

import keras
import numpy as np

from tfdeblur.layers.channel_attention import ContrastPooling
from tfdeblur.layers.local_pooling import LocalAveragePooling2D, LocalContrastPooling
from tfdeblur.deblur_model import DeblurModel

logger = logging.getLogger(__name__)

# TLC's window: 1.5x the training size (Chu et al. 2022, sec. 4: "1.5x").
WINDOW_FACTOR = 1.5


class NoPoolingError(ValueError):
    """The model has no global pooling layer: TLC would change nothing."""


def _local_for(layer, window):
    if isinstance(layer, keras.layers.GlobalAveragePooling2D) and layer.keepdims:
        return LocalAveragePooling2D(window, name=f"{layer.name}_local", dtype=layer.dtype_policy)
    if isinstance(layer, ContrastPooling):
        return LocalContrastPooling(window, name=f"{layer.name}_local", dtype=layer.dtype_policy)
    return None


def _walk(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _walk(layer)


def poolable_layers(model):
    """The global pooling layers TLC converts, nested models included."""
    return [layer for layer in _walk(model) if _local_for(layer, 1) is not None]


def _probe_scales(model, layers):
    """{id(layer): input downscale factor} from one eager run on a probe image.

    Walks the functional graph (Keras' own `clone_model` uses the same
    `_run_through_graph`) so pooling layers inside nested models are seen.
    """
    multiple = getattr(model, "size_multiple", 1)
    size = multiple * max(1, -(-64 // multiple))
    targets = {id(layer) for layer in layers}
    seen = {}

    def run(functional, inputs):
        def operation_fn(op):
            if isinstance(op, keras.Model):
                return lambda *args, **kwargs: run(op, args[0] if len(args) == 1 else list(args))
            if id(op) in targets:
                def record(x, *args, **kwargs):
                    seen[id(op)] = size / int(x.shape[1])
                    return op(x, *args, **kwargs)
                return record
            return op

        return functional._run_through_graph(inputs, operation_fn=operation_fn)

    run(model, np.zeros((1, size, size, 3), "float32"))
    missing = [layer.name for layer in layers if id(layer) not in seen]
    if missing:
        raise ValueError(f"TLC could not place pooling layer(s) {missing} in the graph of {model.name}")
    return seen


def to_local(model, train_size, window=None):
    """The "-Local" model of `model` (TLC), sharing its weights.

    Args:
        model: a tfdeblur network (`DeblurModel`) or any functional Keras model.
        train_size: the training crop size, pixels.
        window: the local pooling window in image pixels (default
            round(1.5 * train_size)).

    Raises `NoPoolingError` when the model has no global pooling layer.
    """
    if isinstance(train_size, bool) or not isinstance(train_size, (int, np.integer)) or train_size < 1:
        raise ValueError(f"train_size must be a positive integer (pixels); got {train_size!r}")
    if window is None:
        window = int(round(WINDOW_FACTOR * train_size))
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 1:
        raise ValueError(f"window must be a positive integer (pixels); got {window!r}")
    layers = poolable_layers(model)
    if not layers:
        raise NoPoolingError(
            f"{model.name} has no global pooling layer (channel attention): TLC does not apply to it"
        )
    scales = _probe_scales(model, layers)
    replacements = {
        id(layer): _local_for(layer, max(1, int(round(window / scales[id(layer)])))) for layer in layers
    }

    def clone_function(layer):
        return replacements.get(id(layer), layer)  # every other layer is shared, not copied

    graph = keras.models.clone_model(model, clone_function=clone_function, recursive=True)
    local = DeblurModel(
        inputs=graph.inputs[0], outputs=graph.outputs[0],
        size_multiple=getattr(model, "size_multiple", 1), name=f"{model.name}_local",
    )
    object.__setattr__(local, "tlc", {"train_size": int(train_size), "window": int(window), "layers": len(layers)})
    return local


def check_window_fits(window, height, width, source="image"):
    """A TLC window as large as the image makes every pooling global again:
    TLC would silently change nothing, so that is refused."""
    if window >= min(height, width):
        raise ValueError(
            f"{source}: {width}x{height} is not larger than the TLC window {window}; "
            f"TLC would change nothing (use a smaller window or omit `tlc`)"
        )


def apply_tlc_option(model, train_size, window=None, log=None, notice=None):
    """The CLI's `--tlc TRAIN_SIZE [--tlc-window W]`: the local model and its
    window, or the original model and None, with a notice (to `notice`, else
    `log`) when it has no global pooling."""
    log = log or logger.info
    try:
        local = to_local(model, train_size, window)
    except NoPoolingError as e:
        (notice or log)(f"notice: {e}; running the unconverted model")
        return model, None
    info = local.tlc
    log(
        f"TLC: {info['layers']} global pooling layer(s) of {model.name} now pool locally "
        f"over {info['window']} px (training size {info['train_size']})"
    )
    return local, info["window"]



def option_window(tlc, tlc_window=None):
    """The window (image pixels) of `--tlc TRAIN_SIZE [--tlc-window W]`
    (`tlc`, `tlc_window`), or None without `tlc`; checks both."""
    if tlc is None:
        if tlc_window is not None:
            raise ValueError("`tlc_window` needs `tlc` TRAIN_SIZE")
        return None
    if tlc < 1:
        raise ValueError(f"`tlc` must be a positive training size in pixels; got {tlc}")
    if tlc_window is not None and tlc_window < 1:
        raise ValueError(f"`tlc_window` must be a positive integer (pixels); got {tlc_window}")
    return tlc_window if tlc_window is not None else int(round(WINDOW_FACTOR * tlc))


def option_transform(tlc, tlc_window=None, notice=None):
    """The `Deblurrer` model transform of `--tlc` (`tlc`, `tlc_window`), or
    None without it (`apply_tlc_option`: the conversion line to stdout,
    `notice` for a network without global pooling)."""
    window = option_window(tlc, tlc_window)
    if window is None:
        return None
    return lambda model: apply_tlc_option(model, tlc, window, notice=notice)[0]


def checked_pairs(window, deblurrer, pairs, names=None):
    """`pairs` (blur, sharp), refusing a blurry image (or its tiles) not
    larger than the TLC `window` (`check_tile_fits`) as it is reached."""
    for i, (blur, sharp) in enumerate(pairs):
        check_tile_fits(window, deblurrer, int(blur.shape[0]), int(blur.shape[1]), names[i] if names else f"pair {i}")
        yield blur, sharp


def check_tile_fits(window, deblurrer, height, width, source="image"):
    """`check_window_fits` for what `deblurrer` feeds the network: the image,
    or its tiles when it tiles; nothing to check when `window` is None."""
    if window is None:
        return
    tile = deblurrer.tile_for(height, width)
    check_window_fits(window, height if tile is None else min(tile, height),
                      width if tile is None else min(tile, width), source)
