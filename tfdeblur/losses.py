"""Losses. BasicSR style: an elementwise core plus a reduction.

`DeblurLoss` subclasses receive the model's whole dict of training outputs
(see `tfdeblur.deblur_model.DeblurModel`) and return one value per image; Keras'
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


@public
class MSFSLoss(DeblurLoss):
    """MSFS-Net's loss, eqs. (5)-(7) of Zhang, Li et al.::

        L_low   = sum_k || f_k^{en,low} - f_k^{low} ||_1                   (5)
        L_high  = sum_k L1(a_k, p_k) / L1(a_k, n_k)                       (6)
        L_total = lambda_1 L_high + lambda_2 L_low + || I - G ||_1          (7)

    over the scales k = 1, 1/2, 1/4 (training outputs "..._1", "_2", "_3"):
    anchor a_k = the decoder's high-frequency feature ("dec_high_k"),
    positive p_k = the high-frequency feature of the sharp image (`msfs`,
    the authors' code) or of the output image (`msfs_small`, the paper's
    text) through the encoder ("target_high_k"), negative n_k = the
    encoder's high-frequency feature of the blurry input ("blur_high_k");
    f^{en,low} = "blur_low_k", f^{low} = "target_low_k". L1 is a mean
    absolute difference; `eps` keeps the ratio finite.

    `stop_gradient` (ours, default off): the positives and negatives of
    eq. (6) are constants for the gradient, so L_high trains only the
    decoder's anchors. Without it the encoder that produces p_k and n_k is
    trained by L_high too and can satisfy it by reshaping its features
    rather than by deblurring (measured on `msfs_small`: L_high 3.0 -> 0.09
    in 200 steps while PSNR fell below the identity's; docs/networks/msfs.md).
    The authors' public code has no guard: its second encoder pass on the
    sharp image is an ordinary forward pass (no `detach`, no frozen copy;
    models/freNet.py), and its training script is unpublished.

    `terms()` returns the three terms (per image) for logging; a zero
    weight skips nothing there, so ablation runs still show the unused term.
    With `high_weight = low_weight = 0` the loss is the content term alone
    and needs no frequency features (Table 3 "w/o FSM").
    """

    term_names = ("content", "high", "low")
    term_titles = {
        "content": "content: ||I - G||_1 (eq. 7)",
        "high": "L_high: contrastive ratio L1(a,p)/L1(a,n), sum of 3 scales (eq. 6)",
        "low": "L_low: low-frequency consistency, sum of 3 scales (eq. 5)",
    }

    def __init__(self, high_weight=0.05, low_weight=0.05, scales=(1, 2, 3), eps=1e-6, stop_gradient=False,
                 name="msfs_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        for arg, value in (("high_weight", high_weight), ("low_weight", low_weight)):
            if float(value) < 0:
                raise ValueError(f"{arg} must be >= 0; got {value}")
        if not isinstance(stop_gradient, bool):
            raise ValueError(f"stop_gradient must be True or False; got {stop_gradient!r}")
        self.high_weight = float(high_weight)
        self.low_weight = float(low_weight)
        self.scales = [int(k) for k in scales]
        self.eps = float(eps)
        self.stop_gradient = stop_gradient

    @staticmethod
    def _l1(a, b):
        return _per_image_mean(ops.abs(ops.cast(a, "float32") - ops.cast(b, "float32")))

    def terms(self, y_true, y_pred):
        """{"content", "high", "low"}: per-image values of eqs. (7), (6), (5)."""
        out = {"content": self._l1(y_pred["image"], y_true)}
        needed = [f"{p}_{k}" for k in self.scales for p in ("dec_high", "target_high", "blur_high", "blur_low", "target_low")]
        missing = [key for key in needed if key not in y_pred]
        if missing:
            if self.high_weight or self.low_weight:
                raise KeyError(
                    f"MSFSLoss with high/low weights needs training output {missing[0]!r}; the model has {sorted(y_pred)}"
                )
            return out
        guard = ops.stop_gradient if self.stop_gradient else (lambda t: t)
        high = low = 0.0
        for k in self.scales:
            anchor = y_pred[f"dec_high_{k}"]
            positive = self._l1(anchor, guard(y_pred[f"target_high_{k}"]))
            negative = self._l1(anchor, guard(y_pred[f"blur_high_{k}"]))
            high = high + positive / (negative + self.eps)
            low = low + self._l1(y_pred[f"blur_low_{k}"], y_pred[f"target_low_{k}"])
        out["high"] = high
        out["low"] = low
        return out

    def call(self, y_true, y_pred):
        t = self.terms(y_true, y_pred)
        total = t["content"]
        if "high" in t:
            total = total + self.high_weight * t["high"] + self.low_weight * t["low"]
        return total

    def get_config(self):
        config = super().get_config()
        config.update(
            {"high_weight": self.high_weight, "low_weight": self.low_weight, "scales": self.scales, "eps": self.eps,
             "stop_gradient": self.stop_gradient}
        )
        return config
