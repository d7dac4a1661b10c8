"""Down- and up-sampling blocks shared by the encoder-decoder networks."""
import keras
from keras import ops

from tfdeblur.serialization import public


@public
class UpsampleBilinear2x(keras.layers.Layer):
    """2x bilinear upsampling (half-pixel centres, edges clamped), any input size.

    Equal to `tf.image.resize(x, 2 * size, "bilinear")`: output pixel 2i is
    0.75 x[i] + 0.25 x[i-1] and 2i+1 is 0.75 x[i] + 0.25 x[i+1]. Written with
    elementwise `keras.ops` because Keras' `UpSampling2D(interpolation=
    "bilinear")` cannot trace inputs whose height and width are unknown
    (`None`), which every tfdeblur model has; it also converts to TFLite
    builtins only.
    """

    def _upsample_axis(self, x, axis):
        n = ops.shape(x)[axis]
        before = ops.concatenate([ops.take(x, [0], axis=axis), ops.take(x, ops.arange(0, n - 1), axis=axis)], axis=axis)
        after = ops.concatenate([ops.take(x, ops.arange(1, n), axis=axis), ops.take(x, [n - 1], axis=axis)], axis=axis)
        even = 0.75 * x + 0.25 * before
        odd = 0.75 * x + 0.25 * after
        both = ops.stack([even, odd], axis=axis + 1)
        shape = ops.shape(x)
        # Static dimensions stay static (TFLite's CONV_2D after this layer
        # needs a known channel count); only unknown ones are read at run time.
        new_shape = [shape[i] if x.shape[i] is None else x.shape[i] for i in range(4)]
        new_shape[axis] = shape[axis] * 2
        return ops.reshape(both, new_shape)

    def call(self, x):
        return self._upsample_axis(self._upsample_axis(x, 1), 2)

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape
        return (b, None if h is None else 2 * h, None if w is None else 2 * w, c)


def apply_conv(x, filters, kernel_size=3, strides=1, activation="relu", name="conv"):
    """A 3x3 (by default) convolution with Glorot/Xavier init, as MTWDN sec. 3 states."""
    return keras.layers.Conv2D(
        filters, kernel_size, strides=strides, padding="same", activation=activation,
        kernel_initializer="glorot_uniform", name=name,
    )(x)


def apply_deconv(x, filters, kernel_size=3, strides=2, activation="relu", name="deconv"):
    """Transposed convolution ("deconvolution") that doubles H and W."""
    return keras.layers.Conv2DTranspose(
        filters, kernel_size, strides=strides, padding="same", activation=activation,
        kernel_initializer="glorot_uniform", name=name,
    )(x)


def apply_downsample_image(x, factor=2, name="down"):
    """Box-filter (area) downsampling of an image by an integer factor.

    An exact 2x2 mean: the image pyramid of multi-scale networks stays
    aligned with pixel centres, and sizes divisible by the factor stay exact.
    """
    return keras.layers.AveragePooling2D(factor, name=name)(x)


def apply_upsample_image(x, factor=2, name="up"):
    """Bilinear upsampling of an image (SRN feeds the coarser result this way)."""
    if factor != 2:
        raise ValueError(f"factor must be 2; got {factor}")
    return UpsampleBilinear2x(name=name)(x)
