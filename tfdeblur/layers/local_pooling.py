"""Local average pooling: the Test-time Local Converter's replacement for
global pooling.

Chu et al., "Improving Image Restoration by Revisiting Global Information
Aggregation" (ECCV 2022), sec. 3.2: a network trained on crops pools
channel-attention statistics over the crop; at test time on a full image a
global pooling sees different statistics. TLC pools over a local window of
about the training size instead: each position takes the mean of the
`window` x `window` box around it. Near the borders the box is shifted to
stay inside the feature map (TLC's "valid" pooling with edge replication),
and a feature map no larger than the window gets the global statistic, so on
inputs of the training size the converted network is the original one.

Box sums come from cumulative sums (an integral image, as in TLC's
implementation), one axis at a time, in float32, so the window may exceed
the (dynamic) feature size.
"""
import keras
from keras import ops

from tfdeblur.serialization import public


def _box_mean_axis(x, window, axis):
    n = ops.shape(x)[axis]
    k = ops.minimum(window, n)
    csum = ops.cumsum(x, axis=axis)
    csum = ops.concatenate([ops.zeros_like(ops.take(csum, [0], axis=axis)), csum], axis=axis)
    start = ops.clip(ops.arange(n) - (k - 1) // 2, 0, n - k)
    total = ops.take(csum, start + k, axis=axis) - ops.take(csum, start, axis=axis)
    return total / ops.cast(k, x.dtype)


def local_box_mean(x, window):
    """Mean over the window x window box around each position (float32)."""
    x = ops.cast(x, "float32")
    return _box_mean_axis(_box_mean_axis(x, window, 1), window, 2)


class _LocalPooling(keras.layers.Layer):
    def __init__(self, window, **kwargs):
        super().__init__(**kwargs)
        if int(window) < 1:
            raise ValueError(f"window must be a positive integer; got {window}")
        self.window = int(window)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"window": self.window})
        return config


@public
class LocalAveragePooling2D(_LocalPooling):
    """TLC's local form of `GlobalAveragePooling2D(keepdims=True)`: a
    (B, H, W, C) map of window means (see the module docstring)."""

    def call(self, x):
        return ops.cast(local_box_mean(x, self.window), x.dtype)


@public
class LocalContrastPooling(_LocalPooling):
    """TLC's local form of IMDN's contrast pooling (`ContrastPooling`):
    local standard deviation + local mean over the window."""

    def call(self, x):
        mean = local_box_mean(x, self.window)
        var = ops.maximum(local_box_mean(ops.square(ops.cast(x, "float32")), self.window) - ops.square(mean), 0.0)
        return ops.cast(ops.sqrt(var) + mean, x.dtype)
