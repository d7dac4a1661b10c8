"""Frequency separation module (FSM) of MSFS-Net.

Zhang, Li et al., "Multi-scale frequency separation network for image
deblurring", Fig. 3(b)::

    (X^H, X^L) = act(OctConv 1x1, alpha 0 -> 0.5 (x))       split
    (Y^H, Y^L) = act(OctConv 3x3, alpha 0.5 -> 0.5 (X^H, X^L))
    y          = act(OctConv 1x1, alpha 0.5 -> 0 (Y^H, Y^L)) + res(x)   fuse

Y^H (full resolution) and Y^L (half resolution) are the module's high- and
low-frequency features; MSFS-Net's losses (eqs. 5-7) compare them, so the
block returns them beside its output.

Readings: the activation is ReLU, as in the authors' code (its OctConv
blocks are conv-BatchNorm-ReLU; we leave BatchNorm out: the paper's Fig. 3b
shows none, and batch-4 statistics are noisy). `res` is the identity when
the widths match and a 1x1 convolution otherwise; `projection=True` always
uses the 1x1 convolution, as the authors' code does.
"""
import keras

from tfdeblur.layers.octave_conv import OctaveConv


def apply_frequency_separation(x, filters, alpha=0.5, projection=False, name="fsm"):
    """FSM: returns (Y_high, Y_low, output); output has `filters` channels."""
    channels = x.shape[-1]
    split = OctaveConv(channels, 1, alpha_in=0.0, alpha_out=alpha, name=f"{name}_split")(x)
    split = [keras.layers.ReLU(name=f"{name}_split_relu_{tag}")(t) for tag, t in zip("hl", split)]
    y = OctaveConv(channels, 3, alpha_in=alpha, alpha_out=alpha, name=f"{name}_octconv")(split)
    y_high, y_low = [keras.layers.ReLU(name=f"{name}_octconv_relu_{tag}")(t) for tag, t in zip("hl", y)]
    fused = OctaveConv(filters, 1, alpha_in=alpha, alpha_out=0.0, name=f"{name}_fuse")([y_high, y_low])
    fused = keras.layers.ReLU(name=f"{name}_fuse_relu")(fused)
    if projection or channels != filters:
        x = keras.layers.Conv2D(filters, 1, name=f"{name}_res")(x)
    out = keras.layers.Add(name=f"{name}_add")([fused, x])
    return y_high, y_low, out
