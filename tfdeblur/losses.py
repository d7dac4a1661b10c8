"""Losses. BasicSR style: an elementwise core plus a reduction.

`DeblurLoss` subclasses receive the model's whole dict of training outputs
(see `tfdeblur.model.DeblurModel`) and return one value per image; Keras'
`Loss.__call__` then averages over the batch and scales for `tf.distribute`.
"""
import keras
from keras import ops

from tfdeblur.serialization import public

_ELEMENTWISE = {
    "mse": lambda d: ops.square(d),
    "l1": lambda d: ops.abs(d),
    "charbonnier": lambda d: ops.sqrt(ops.square(d) + 1e-6),
}


def _per_image_mean(values):
    return ops.mean(values, axis=(1, 2, 3))


def downsample_target(y, like, factor):
    """The sharp target at a coarse scale: the same pyramid the networks use.

    `y` is padded (symmetric, bottom/right, like `PadToMultiple`) to
    `factor` times the size of `like`, then box-filtered by `factor`; so the
    target lines up with coarse outputs of a padded input of any size.
    """
    if factor == 1:
        return y
    shape_y = ops.shape(y)
    shape_p = ops.shape(like)
    pad_h = shape_p[1] * factor - shape_y[1]
    pad_w = shape_p[2] * factor - shape_y[2]
    y = ops.pad(y, [[0, 0], [0, pad_h], [0, pad_w], [0, 0]], mode="symmetric")
    return ops.average_pool(y, factor, factor, padding="valid")


@public
class DeblurLoss(keras.losses.Loss):
    """Base class: `call(y_true, outputs)` gets the dict of training outputs."""

    def call(self, y_true, y_pred):  # pragma: no cover - abstract
        raise NotImplementedError


@public
class MultiScaleLoss(DeblurLoss):
    """Weighted sum of per-scale losses, eq. (2) of MTWDN (and SRN, DeepDeblur).

        L = sum_i alpha_i / T_i * || F_i(B_i) - I_i ||^2

    `weights` maps training-output names to alpha_i: "image" is full
    resolution; "scale_k" is the output at 1/2**(k-1) resolution, compared
    with the sharp image box-downsampled by 2**(k-1); any other name is a
    full-resolution training output (GLBDN's branch images "global" and
    "local", sec. 3.2) compared with the sharp image. T_i is taken as the
    number of values (pixels x channels) at scale i, i.e. a mean; the paper's
    "number of pixels" differs from that by the constant factor 3 (channels),
    which Adam is invariant to.
    """

    def __init__(self, weights=None, kind="mse", name="multiscale_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        if kind not in _ELEMENTWISE:
            raise ValueError(f"kind must be one of {sorted(_ELEMENTWISE)}; got {kind!r}")
        weights = dict(weights or {"image": 1.0})
        for key in weights:
            # Other names are full-resolution training outputs (e.g. GLBDN's
            # "global"/"local" branch images, compared with the sharp image).
            if key.startswith("scale_") and not key[6:].isdigit():
                raise ValueError(
                    f"weights keys must be 'image' or 'scale_<k>' (or a full-resolution output name); got {key!r}"
                )
        self.weights = {k: float(v) for k, v in weights.items()}
        self.kind = kind

    def call(self, y_true, y_pred):
        elementwise = _ELEMENTWISE[self.kind]
        total = 0.0
        for key, alpha in sorted(self.weights.items()):
            if key not in y_pred:
                raise KeyError(
                    f"loss needs training output {key!r}; the model has {sorted(y_pred)}"
                )
            pred = ops.cast(y_pred[key], "float32")
            factor = 2 ** (int(key[6:]) - 1) if key.startswith("scale_") else 1
            target = downsample_target(y_true, pred, factor)
            total = total + alpha * _per_image_mean(elementwise(pred - target))
        return total

    def get_config(self):
        config = super().get_config()
        config.update({"weights": self.weights, "kind": self.kind})
        return config
