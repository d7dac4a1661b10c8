"""Enhanced spatial attention (ESA) of RFDN.

Liu, Tang, Wu, "Residual Feature Aggregation Network" (CVPR 2020) sec. 3.2,
used inside RFDN's RFDB (Liu, Tang, Wu, "Residual Feature Distillation
Network", ECCV-W 2020) and so inside LMFN's MFFD decoder::

    c1' = conv1x1(x)            C -> f   (f = C // 4)
    c1  = conv3x3/2(c1')        strided
    v   = maxpool7/3(c1)
    c3  = conv3x3(relu(conv3x3(relu(conv3x3(v)))))
    m   = sigmoid(conv1x1(resize(c3, size of x) + conv1x1(c1')))
    out = x * m

Reading: the strided convolution and the max pooling use "same" padding
(RFDN pads neither), so the block accepts every feature size >= 1 pixel
(deep features of small or odd images are a few pixels wide); they differ
from RFDN's only at the borders. The resize is bilinear with half-pixel
centres, to x's dynamic size (`ResizeBilinearLike`).
"""
import keras
from keras import ops

from tfdeblur.serialization import public


@public
class ResizeBilinearLike(keras.layers.Layer):
    """Bilinear resize of `inputs[0]` to the (dynamic) H, W of `inputs[1]`.

    Works with unknown sizes in traced graphs (the target size is read at
    run time); equal to `tf.image.resize(x, size, "bilinear")`, and it
    converts to TFLite builtins (GATHER, arithmetic).
    """

    @staticmethod
    def _resize_axis(x, size, axis):
        # tf.image.resize(method="bilinear") along one axis: half-pixel
        # centres, source positions clamped at the edges. Written with
        # gathers because keras.ops.image.resize needs a static size.
        n = ops.shape(x)[axis]
        pos = (ops.cast(ops.arange(size), "float32") + 0.5) * (
            ops.cast(n, "float32") / ops.cast(size, "float32")
        ) - 0.5
        pos = ops.maximum(pos, 0.0)
        low = ops.minimum(ops.cast(ops.floor(pos), "int32"), n - 1)
        high = ops.minimum(low + 1, n - 1)
        frac = pos - ops.cast(low, "float32")
        frac = ops.reshape(frac, (1, -1, 1, 1) if axis == 1 else (1, 1, -1, 1))
        frac = ops.cast(frac, x.dtype)
        a = ops.take(x, low, axis=axis)
        b = ops.take(x, high, axis=axis)
        return a + frac * (b - a)

    def call(self, inputs):
        x, reference = inputs
        shape = ops.shape(reference)
        return self._resize_axis(self._resize_axis(x, shape[1], 1), shape[2], 2)

    def compute_output_shape(self, input_shapes):
        x_shape, ref_shape = input_shapes
        return (x_shape[0], ref_shape[1], ref_shape[2], x_shape[3])


def apply_esa(x, esa_channels=None, name="esa"):
    """Enhanced spatial attention; `esa_channels` defaults to C // 4 (RFDN)."""
    channels = x.shape[-1]
    f = int(esa_channels or max(1, channels // 4))

    def conv(t, ch, k, tag, strides=1, activation=None):
        return keras.layers.Conv2D(
            ch, k, strides=strides, padding="same", activation=activation, name=f"{name}_{tag}"
        )(t)

    c1_ = conv(x, f, 1, "conv1")
    c1 = conv(c1_, f, 3, "conv2", strides=2)
    v = keras.layers.MaxPooling2D(7, strides=3, padding="same", name=f"{name}_maxpool")(c1)
    v = conv(v, f, 3, "conv_max", activation="relu")
    c3 = conv(v, f, 3, "conv3", activation="relu")
    c3 = conv(c3, f, 3, "conv3_")
    c3 = ResizeBilinearLike(name=f"{name}_resize")([c3, x])
    cf = conv(c1_, f, 1, "conv_f")
    c4 = conv(keras.layers.Add(name=f"{name}_add")([c3, cf]), channels, 1, "conv4", activation="sigmoid")
    return keras.layers.Multiply(name=f"{name}_scale")([x, c4])
