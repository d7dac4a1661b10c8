"""Frequency separation module (FSM) of MSFS-Net.

Zhang, Li et al., "Multi-scale frequency separation network for image
deblurring", Fig. 3(b)::

    (X^H, X^L) = act(OctConv 1x1, alpha 0 -> 0.5 (x))       split
    (Y^H, Y^L) = act(OctConv 3x3, alpha 0.5 -> 0.5 (X^H, X^L))
    y          = act(OctConv 1x1, alpha 0.5 -> 0 (Y^H, Y^L)) + res(x)   fuse

Y^H (full resolution) and Y^L (half resolution) are the module's high- and
low-frequency features; MSFS-Net's losses (eqs. 5-7) compare them, so the
block returns them beside its output.

Readings: the activation is ReLU, as in the authors' code. Their OctConv
blocks are conv (no bias) - BatchNorm - ReLU (`Conv_BN_ACT` in their
octconv.py; PyTorch's BatchNorm2d defaults: momentum 0.1, eps 1e-5, i.e.
Keras momentum 0.9); the paper's Fig. 3b shows no normalization.
`batchnorm=True` builds the authors' version (the `msfs` preset), False
the figure's (biased convolutions, no normalization: `msfs_small`, and
every file saved before the option existed). `res` is the identity when
the widths match and a 1x1 convolution otherwise; `projection=True` always
uses the 1x1 convolution, as the authors' code does.

Compare FDDN's FSB (`tfdeblur.layers.frequency_split`): the same high/low
split, built from plain convolutions with average pooling and bilinear
resampling, returning both halves at full resolution and supervised by no
loss of its own.
"""
import keras

from tfdeblur.layers.octave_conv import OctaveConv


def apply_frequency_separation(x, filters, alpha=0.5, projection=False, batchnorm=False, name="fsm"):
    """FSM: returns (Y_high, Y_low, output); output has `filters` channels."""
    channels = x.shape[-1]

    def norm_relu(t, stage, tag):
        if batchnorm:
            t = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=f"{name}_{stage}_bn{tag}")(t)
        return keras.layers.ReLU(name=f"{name}_{stage}_relu{tag}")(t)

    bias = not batchnorm
    split = OctaveConv(channels, 1, alpha_in=0.0, alpha_out=alpha, use_bias=bias, name=f"{name}_split")(x)
    split = [norm_relu(t, "split", f"_{tag}") for tag, t in zip("hl", split)]
    y = OctaveConv(channels, 3, alpha_in=alpha, alpha_out=alpha, use_bias=bias, name=f"{name}_octconv")(split)
    y_high, y_low = [norm_relu(t, "octconv", f"_{tag}") for tag, t in zip("hl", y)]
    fused = OctaveConv(filters, 1, alpha_in=alpha, alpha_out=0.0, use_bias=bias, name=f"{name}_fuse")([y_high, y_low])
    fused = norm_relu(fused, "fuse", "")
    if projection or channels != filters:
        x = keras.layers.Conv2D(filters, 1, name=f"{name}_res")(x)
    out = keras.layers.Add(name=f"{name}_add")([fused, x])
    return y_high, y_low, out
