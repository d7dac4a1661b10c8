"""Channel attention: RCAN's CA and RCAB, and IMDN's contrast-aware CCA.

- CA / RCAB: Zhang et al., "Image Super-Resolution Using Very Deep Residual
  Channel Attention Networks" (ECCV 2018), sec. 3.3-3.4: global average
  pooling, 1x1 conv down by `reduction`, ReLU, 1x1 conv up, sigmoid, rescale.
  RCAB = conv-ReLU-conv-CA + identity. FDDN's decoder uses RCABs.
- CCA: Hui et al., "Lightweight Image Super-Resolution with Information
  Multi-distillation Network" (IMDN, ACM MM 2019), eq. (4): the pooled
  statistic is the channel's standard deviation plus its mean (contrast)
  instead of the mean alone. FDDN's FDB ends with CCA (eq. 11).
"""
import keras
from keras import ops

from tfdeblur.serialization import public


@public
class ContrastPooling(keras.layers.Layer):
    """Per-channel std + mean over H, W (IMDN eq. 4), keeping dims: (B, 1, 1, C)."""

    def call(self, x):
        mean = ops.mean(x, axis=(1, 2), keepdims=True)
        var = ops.mean(ops.square(x - mean), axis=(1, 2), keepdims=True)
        return ops.sqrt(var) + mean

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 1, 1, input_shape[-1])


def apply_channel_attention(x, reduction=16, contrast=False, name="ca"):
    """Rescales channels by sigmoid(conv(relu(conv(pool(x))))); CCA if `contrast`."""
    channels = x.shape[-1]
    hidden = max(1, channels // int(reduction))
    if contrast:
        s = ContrastPooling(name=f"{name}_contrast")(x)
    else:
        s = keras.layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_pool")(x)
    s = keras.layers.Conv2D(hidden, 1, activation="relu", name=f"{name}_down")(s)
    s = keras.layers.Conv2D(channels, 1, activation="sigmoid", name=f"{name}_up")(s)
    return keras.layers.Multiply(name=f"{name}_scale")([x, s])


def apply_rcab(x, filters, reduction=16, kernel_size=3, name="rcab"):
    """Residual channel attention block (RCAN Fig. 4): x + CA(conv(relu(conv(x))))."""
    y = keras.layers.Conv2D(filters, kernel_size, padding="same", activation="relu", name=f"{name}_conv1")(x)
    y = keras.layers.Conv2D(filters, kernel_size, padding="same", name=f"{name}_conv2")(y)
    y = apply_channel_attention(y, reduction, name=f"{name}_ca")
    return keras.layers.Add(name=f"{name}_add")([x, y])
