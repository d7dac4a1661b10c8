"""Perceptual loss on VGG-16 features (FDDN eq. 14; Johnson et al. 2016).

    L = L_MSE + lambda * L_percep,   L_percep = MSE(phi(output), phi(target))

phi is VGG-16's relu3_3 (Keras: the output of `block3_conv3`, whose ReLU is
built in), on inputs preprocessed as `keras.applications.vgg16.preprocess_input`
(RGB -> BGR, x 255, ImageNet channel means subtracted).

ImageNet weights are never downloaded here: the user gives a weights file
of `keras.applications.VGG16(include_top=False)`. On a machine with network
access, make one with::

    python -c "import keras; keras.applications.VGG16(weights='imagenet', include_top=False).save_weights('vgg16_notop.weights.h5')"

and pass `--vgg-weights vgg16_notop.weights.h5` on this machine. Keras' own
download, `~/.keras/models/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5`,
which `VGG16(weights="imagenet")` itself loads, and weights saved from
`VGG16(include_top=True)` (the same convolutions) load as well. A file that
leaves any VGG layer unloaded is refused.
"""
import os
import warnings

import keras
from keras import ops

from tfdeblur.losses import DeblurLoss
from tfdeblur.serialization import public

VGG_MEAN_BGR = (103.939, 116.779, 123.68)  # keras.applications.vgg16, caffe mode
MISSING_WEIGHTS = ("error", "pixel_only")


def load_vgg16_features(path, layer="block3_conv3"):
    """A frozen VGG-16 (no top) up to `layer`, with the weights in `path`."""
    if path is None:
        raise ValueError(
            "vgg_weights must name a weights file of keras.applications.VGG16(include_top=False); got None"
        )
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"vgg_weights {path}: file not found")
    vgg = keras.applications.VGG16(weights=None, include_top=False, input_shape=(None, None, 3))
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            vgg.load_weights(path)
        # Keras skips parts of a file that match no layer with only a
        # warning; a partly loaded VGG would train against random features.
        skipped = [str(w.message) for w in caught if "Skipping" in str(w.message)]
        if skipped:
            raise ValueError(skipped[0])
    except Exception as e:  # h5py/Keras raise several types for a wrong file
        detail = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise ValueError(
            f"vgg_weights {path}: not the weights of keras.applications.VGG16(include_top=False) ({detail})"
        ) from e
    try:
        output = vgg.get_layer(layer).output
    except ValueError:
        raise ValueError(f"layer must be a VGG16 layer name such as 'block3_conv3'; got {layer!r}") from None
    features = keras.Model(vgg.input, output, name="vgg16_features")
    features.trainable = False
    return features


def vgg_preprocess(x):
    """[0, 1] RGB -> VGG-16's caffe-style input (BGR, 0..255, mean subtracted)."""
    bgr = ops.flip(x, axis=-1) * 255.0
    return bgr - ops.convert_to_tensor(VGG_MEAN_BGR, dtype=bgr.dtype)


@public
class PerceptualLoss(DeblurLoss):
    """MSE on the image plus `weight` times the MSE of VGG-16 features (FDDN eq. 14).

    Args:
        weight: lambda (FDDN: 0.1). 0 gives the pixel MSE alone.
        layer: the VGG16 layer whose output is phi (relu3_3: "block3_conv3").
        vgg_weights: a weights file of `keras.applications.VGG16(include_top=False)`.
        missing_weights: with weight > 0 and no `vgg_weights`, "error" (raise)
            or "pixel_only" (train on the MSE term alone; `perceptual_active`
            is then False, and the training run says so).
    """

    def __init__(
        self,
        weight=0.1,
        layer="block3_conv3",
        vgg_weights=None,
        missing_weights="error",
        name="perceptual_loss",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        weight = float(weight)
        if not weight >= 0:
            raise ValueError(f"weight must be >= 0; got {weight}")
        if missing_weights not in MISSING_WEIGHTS:
            raise ValueError(f"missing_weights must be one of {MISSING_WEIGHTS}; got {missing_weights!r}")
        self.weight = weight
        self.layer = layer
        self.vgg_weights = None if vgg_weights is None else os.fspath(vgg_weights)
        self.missing_weights = missing_weights
        self._features = None
        if weight > 0 and (self.vgg_weights is not None or missing_weights == "error"):
            self._features = load_vgg16_features(self.vgg_weights, layer)

    @property
    def perceptual_active(self):
        return self._features is not None

    def call(self, y_true, y_pred):
        pred = y_pred["image"] if isinstance(y_pred, dict) or hasattr(y_pred, "keys") else y_pred
        pred = ops.cast(pred, "float32")
        y_true = ops.cast(y_true, "float32")
        total = ops.mean(ops.square(pred - y_true), axis=(1, 2, 3))
        if self._features is not None:
            phi_pred = ops.cast(self._features(vgg_preprocess(pred)), "float32")
            phi_true = ops.stop_gradient(ops.cast(self._features(vgg_preprocess(y_true)), "float32"))
            total = total + self.weight * ops.mean(ops.square(phi_pred - phi_true), axis=(1, 2, 3))
        return total

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "weight": self.weight,
                "layer": self.layer,
                "vgg_weights": self.vgg_weights,
                "missing_weights": self.missing_weights,
            }
        )
        return config


def recipe_with_vgg_weights(recipe, vgg_weights, required=False):
    """`recipe` with `vgg_weights` set on its PerceptualLoss (a copy).

    `required` (the paper recipe, `train --paper`) turns a missing file into
    an error instead of the recipe's pixel-only fallback.
    """
    loss = dict(recipe.get("loss") or {})
    if loss.get("class") != "PerceptualLoss":
        if vgg_weights is not None:
            raise ValueError(
                f"`vgg_weights` is used only by a perceptual loss; this recipe's loss is {loss.get('class')!r}"
            )
        return recipe
    if vgg_weights is not None:
        loss["vgg_weights"] = os.fspath(vgg_weights)
    elif required and float(loss.get("weight", 0.1)) > 0:
        raise ValueError(
            "`vgg_weights` FILE is required: the recipe's loss has a VGG-16 perceptual term "
            f"(weight {loss.get('weight', 0.1)}); see tfdeblur/perceptual.py for how to make the file"
        )
    return dict(recipe, loss=loss)
