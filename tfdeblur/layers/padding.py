"""Pad-to-multiple and crop-back, so a network accepts images of any size.

BasicSR/NAFNet convention: an encoder-decoder that halves the resolution n
times needs H and W divisible by 2**n. The input is padded (symmetric mirror,
which keeps image statistics at the border better than zeros) and the output
cropped back to the input size, both inside the graph so exported models take
any size too.
"""
import keras
from keras import ops

from tfdeblur.serialization import public


@public
class PadToMultiple(keras.layers.Layer):
    """Pads H and W at the bottom/right up to the next multiple of `multiple`.

    Symmetric padding needs the pad to be at most the image size, so inputs
    must be at least `multiple - 1` pixels on each side; callers check this
    with a readable error (see `tfdeblur.models.base.DeblurModel.min_size`).
    """

    def __init__(self, multiple, mode="symmetric", **kwargs):
        super().__init__(**kwargs)
        if int(multiple) < 1:
            raise ValueError(f"multiple must be a positive integer; got {multiple}")
        if mode not in ("symmetric", "reflect", "constant"):
            raise ValueError(f"mode must be 'symmetric', 'reflect' or 'constant'; got {mode!r}")
        self.multiple = int(multiple)
        self.mode = mode

    def call(self, x):
        if self.multiple == 1:
            return x
        shape = ops.shape(x)
        m = self.multiple
        pad_h = (m - shape[1] % m) % m
        pad_w = (m - shape[2] % m) % m
        if isinstance(pad_h, int) and isinstance(pad_w, int) and pad_h == pad_w == 0:
            # A static size that is a multiple already (`export --input-size`):
            # no pad op at all, so the graph has no dynamic-shape padding.
            return x
        y = ops.pad(x, [[0, 0], [0, pad_h], [0, pad_w], [0, 0]], mode=self.mode)
        if x.shape[-1] is None:
            return y
        # Paddings computed from the dynamic shape leave every traced dimension
        # unknown, channels included; TFLite's CONV_2D needs a static channel
        # count (else the convolution converts only as a Select TF op).
        return ops.reshape(y, (shape[0], shape[1] + pad_h, shape[2] + pad_w, x.shape[-1]))

    def compute_output_shape(self, input_shape):
        def up(d):
            return None if d is None else -(-d // self.multiple) * self.multiple

        return (input_shape[0], up(input_shape[1]), up(input_shape[2]), input_shape[3])

    def get_config(self):
        config = super().get_config()
        config.update({"multiple": self.multiple, "mode": self.mode})
        return config


@public
class CropToMatch(keras.layers.Layer):
    """Crops `inputs[0]` to the height and width of `inputs[1]` (top-left anchored)."""

    def call(self, inputs):
        x, reference = inputs
        shape = ops.shape(reference)
        return x[:, : shape[1], : shape[2], :]

    def compute_output_shape(self, input_shapes):
        x_shape, ref_shape = input_shapes
        return (x_shape[0], ref_shape[1], ref_shape[2], x_shape[3])
