"""Frequency split block (FSB) of FDDN.

Liu et al., "Frequency Disentanglement Distillation Image Deblurring
Network" (Sensors 2021), Tables 1-2 (an octave-convolution-like
split of a feature into a full-resolution high-frequency part and a
half-resolution low-frequency part)::

    h   = lrelu(Conv_coarse2h 3x3 (x))             in -> H   (full res)
    l   = lrelu(Conv_coarse2l 3x3 (down(x)))       in -> L   (1/2)
    F_h = Conv_h2h 1x1 (h) + lrelu(Conv_l2h 1x1 (up(l)))          H
    F_l = up(Conv_l2l 1x1 (l) + lrelu(Conv_h2l 1x1 (down(h))))    L (full res)

with H = ratio * out and L = (1 - ratio) * out (Table 1, ratio 0.5).

Readings: "down" is 2x2 average pooling with stride 2 (the paper's
"stride-2 down-sampling"), "up" is bilinear 2x (`UpsampleBilinear2x`), the
leaky-ReLU slope is 0.2. Table 2 lists Conv_h2l as Lchannel -> Lchannel; it
acts on the high-frequency map, so it maps Hchannel -> Lchannel here (the
two are equal at the paper's ratio 0.5). F_l is returned at full resolution
(the paper up-samples it before it feeds the next stage).

Compare MSFS-Net's FSM (`tfdeblur.layers.frequency_separation`): the same
idea of a high/low-frequency split built on octave convolutions, but the FSM
keeps its low-frequency half at half resolution (Y^L), is trained with
losses on the two halves, and adds a residual path; the FSB uses plain
convolutions and returns both halves at full resolution.
"""
import keras

from tfdeblur.layers.activation import LeakyReLU

from tfdeblur.layers.sampling import UpsampleBilinear2x


def split_channels(filters, ratio):
    """(H, L) channel counts of an FSB with `filters` outputs, checked."""
    ratio = float(ratio)
    if not 0.0 < ratio < 1.0:
        raise ValueError(f"ratio must be in (0, 1); got {ratio}")
    high = ratio * filters
    if abs(high - round(high)) > 1e-9 or round(high) < 1 or filters - round(high) < 1:
        raise ValueError(
            f"ratio * filters must be a whole number of channels in [1, filters - 1]; "
            f"got ratio {ratio} * filters {filters} = {high}"
        )
    return int(round(high)), filters - int(round(high))


def apply_frequency_split(x, filters, ratio=0.5, negative_slope=0.2, name="fsb"):
    """FSB: returns (F_high, F_low), both at x's resolution. Needs even H, W."""
    high_ch, low_ch = split_channels(filters, ratio)

    def lrelu(t, tag):
        return LeakyReLU(negative_slope, name=f"{name}_{tag}_lrelu")(t)

    def conv(t, ch, k, tag):
        return keras.layers.Conv2D(ch, k, padding="same", name=f"{name}_{tag}")(t)

    h = lrelu(conv(x, high_ch, 3, "coarse2h"), "coarse2h")
    x_down = keras.layers.AveragePooling2D(2, name=f"{name}_down_in")(x)
    l = lrelu(conv(x_down, low_ch, 3, "coarse2l"), "coarse2l")

    h2h = conv(h, high_ch, 1, "h2h")
    l2h = lrelu(conv(UpsampleBilinear2x(name=f"{name}_up_l")(l), high_ch, 1, "l2h"), "l2h")
    f_high = keras.layers.Add(name=f"{name}_high")([h2h, l2h])

    l2l = conv(l, low_ch, 1, "l2l")
    h_down = keras.layers.AveragePooling2D(2, name=f"{name}_down_h")(h)
    h2l = lrelu(conv(h_down, low_ch, 1, "h2l"), "h2l")
    f_low = keras.layers.Add(name=f"{name}_low_sum")([l2l, h2l])
    f_low = UpsampleBilinear2x(name=f"{name}_low")(f_low)
    return f_high, f_low
