"""Octave convolution (OctConv).

Chen et al., "Drop an Octave: Reducing Spatial Redundancy in Convolutional
Neural Networks with Octave Convolution" (ICCV 2019), eqs. (1)-(2), as MSFS-Net
(Zhang, Li et al., "Multi-scale frequency separation network for image
deblurring") writes them::

    Y^H = f(X^H; W^{H->H}) + up(f(X^L; W^{L->H}), 2)
    Y^L = f(X^L; W^{L->L}) + f(pool(X^H, 2); W^{H->L})

X^H is at full resolution, X^L at half resolution; `pool` is 2x2 average
pooling with stride 2 and `up` nearest-neighbour 2x up-sampling (OctConv's
choice). `alpha_in` / `alpha_out` are the low-frequency shares of the input
and output channels (low = int(alpha * channels), the rest high, as the
OctConv reference code rounds). The ends:

- alpha_in = 0: the input is one full-resolution tensor (X^L absent); the
  layer *splits* it into (Y^H, Y^L).
- alpha_out = 0: the output is Y^H alone (the layer *fuses* H and L).
- alpha_in = alpha_out = 0: an ordinary convolution.

Inputs are a tensor (alpha_in = 0) or `[X^H, X^L]`; outputs are a tensor
(alpha_out = 0) or `[Y^H, Y^L]`. X^H needs even H and W (the networks pad
their input to a multiple that guarantees it).
"""
import keras
from keras import ops

from tfdeblur.serialization import public


def octave_split(channels, alpha, arg="alpha"):
    """(high, low) channel counts of `channels` with low-frequency share `alpha`."""
    alpha = float(alpha)
    if not 0.0 <= alpha < 1.0:
        raise ValueError(f"{arg} must be in [0, 1); got {alpha}")
    low = int(alpha * channels)
    return channels - low, low


def upsample_nearest_2x(x):
    """Nearest-neighbour 2x up-sampling (any, even unknown, H and W)."""
    return ops.repeat(ops.repeat(x, 2, axis=1), 2, axis=2)


@public
class OctaveConv(keras.layers.Layer):
    """Octave convolution, eqs. (1)-(2) of OctConv (see the module docstring).

    Args:
        filters: output channels (high + low).
        kernel_size: odd kernel size of all four convolutions ("same" padding).
        alpha_in: low-frequency share of the input channels, in [0, 1).
        alpha_out: low-frequency share of the output channels, in [0, 1).
        use_bias: biases on the convolutions (two paths add: one bias each).
    """

    def __init__(self, filters, kernel_size=3, alpha_in=0.5, alpha_out=0.5, use_bias=True, **kwargs):
        super().__init__(**kwargs)
        if int(filters) < 1:
            raise ValueError(f"filters must be a positive integer; got {filters}")
        if int(kernel_size) < 1 or int(kernel_size) % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd integer; got {kernel_size}")
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)
        self.alpha_in = float(alpha_in)
        self.alpha_out = float(alpha_out)
        self.use_bias = bool(use_bias)
        self.high_out, self.low_out = octave_split(self.filters, self.alpha_out, "alpha_out")
        octave_split(1, self.alpha_in, "alpha_in")  # range check
        if self.alpha_out > 0 and self.low_out < 1:
            raise ValueError(f"alpha_out * filters must give at least one channel; got {self.alpha_out} * {self.filters}")

        def conv(out, tag):
            return keras.layers.Conv2D(
                out, self.kernel_size, padding="same", use_bias=self.use_bias,
                name=f"{tag}", dtype=self.dtype_policy,
            )

        self.conv_h2h = conv(self.high_out, "h2h")
        self.conv_h2l = conv(self.low_out, "h2l") if self.low_out else None
        self.conv_l2h = conv(self.high_out, "l2h") if self.alpha_in > 0 else None
        self.conv_l2l = conv(self.low_out, "l2l") if self.alpha_in > 0 and self.low_out else None

    def _split_shapes(self, input_shape):
        if self.alpha_in > 0:
            if not (isinstance(input_shape, (list, tuple)) and len(input_shape) == 2
                    and isinstance(input_shape[0], (list, tuple))):
                raise ValueError(f"alpha_in = {self.alpha_in} > 0: inputs must be [X_high, X_low]; got shape {input_shape}")
            return tuple(input_shape[0]), tuple(input_shape[1])
        return tuple(input_shape), None

    def build(self, input_shape):
        high, low = self._split_shapes(input_shape)
        self.conv_h2h.build(high)
        half = (high[0], None, None, high[3])
        if self.conv_h2l is not None:
            self.conv_h2l.build(half)
        if low is not None:
            if low[-1] is not None and high[-1] is not None:
                expected = octave_split(high[-1] + low[-1], self.alpha_in)
                if expected != (high[-1], low[-1]):
                    raise ValueError(
                        f"input channels (high {high[-1]}, low {low[-1]}) do not match alpha_in {self.alpha_in}"
                    )
            self.conv_l2h.build(low)
            if self.conv_l2l is not None:
                self.conv_l2l.build(low)

    def call(self, inputs):
        if self.alpha_in > 0:
            x_high, x_low = inputs
        else:
            x_high, x_low = inputs, None
        y_high = self.conv_h2h(x_high)
        if x_low is not None:
            y_high = y_high + upsample_nearest_2x(self.conv_l2h(x_low))
        if not self.low_out:
            return y_high
        y_low = self.conv_h2l(ops.average_pool(x_high, 2, 2, padding="valid"))
        if self.conv_l2l is not None:
            y_low = y_low + self.conv_l2l(x_low)
        return [y_high, y_low]

    def compute_output_shape(self, input_shape):
        high, _ = self._split_shapes(input_shape)
        b, h, w, _ = high
        y_high = (b, h, w, self.high_out)
        if not self.low_out:
            return y_high
        return [y_high, (b, None if h is None else h // 2, None if w is None else w // 2, self.low_out)]

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "kernel_size": self.kernel_size,
                "alpha_in": self.alpha_in,
                "alpha_out": self.alpha_out,
                "use_bias": self.use_bias,
            }
        )
        return config
