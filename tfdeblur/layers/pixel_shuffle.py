"""Pixel shuffle (sub-pixel convolution) up-sampling.

Shi et al., "Real-Time Single Image and Video Super-Resolution Using an
Efficient Sub-Pixel Convolutional Neural Network" (CVPR 2016); FDDN's decoder
(Liu et al. 2021) and LMFN's reconstruction up-sample this way: a
convolution to `scale**2` times the channels, then depth-to-space.
"""
import keras
from keras import ops

from tfdeblur.serialization import public


@public
class PixelShuffle(keras.layers.Layer):
    """Depth-to-space: (B, H, W, r*r*C) -> (B, r*H, r*W, C), TF's channel order.

    Output pixel (r*h + i, r*w + j, c) is input channel (i*r + j)*C + c, as
    `tf.nn.depth_to_space` (TFLite DEPTH_TO_SPACE builtin).
    """

    def __init__(self, scale=2, **kwargs):
        super().__init__(**kwargs)
        if int(scale) < 1:
            raise ValueError(f"scale must be a positive integer; got {scale}")
        self.scale = int(scale)

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None or channels % (self.scale**2):
            raise ValueError(
                f"input channels must be a multiple of scale**2 = {self.scale**2}; got {channels}"
            )

    def call(self, x):
        return ops.depth_to_space(x, self.scale)

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape
        r = self.scale
        return (b, None if h is None else r * h, None if w is None else r * w, c // (r * r))

    def get_config(self):
        config = super().get_config()
        config.update({"scale": self.scale})
        return config


def apply_pixel_shuffle_upsample(x, filters, scale=2, kernel_size=3, name="pixel_shuffle"):
    """conv(filters * scale**2) -> PixelShuffle(scale): H, W times `scale`."""
    x = keras.layers.Conv2D(
        filters * scale * scale, kernel_size, padding="same", name=f"{name}_conv"
    )(x)
    return PixelShuffle(scale, name=f"{name}_shuffle")(x)
