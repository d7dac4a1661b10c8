"""Feature distillation blocks: FDDN's FDB and RFDN's RFDB.

Both follow IMDN's information multi-distillation idea (Hui et al. 2019):
each stage keeps ("distils") part of its channels for a final concatenation
and refines the rest.

- FDB, frequency distillation block: Liu et al., "Frequency Disentanglement
  Distillation Image Deblurring Network" (Sensors 2021), eqs. (6)-(11)::

      F_high_n, F_low_n = FSB(lrelu(L_n(F_low_{n-1})))   n = 1, 2, 3  (F_low_0 = x)
      F_high_4 = lrelu(L_4(F_low_3))
      out = x + conv1x1(CCA(concat(F_high_1..F_high_4)))

  L_1..L_3 are 3x3 convolutions to `filters` channels, L_4 a 3x3 convolution
  to the high-frequency width. Eq. (10) lists F_high4 twice; the intended
  F_high1..F_high4 is used. The 1x1 fusion back to `filters` and the
  residual are IMDN's (FDDN stacks 16 FDBs at one width, so the block must
  map `filters` to `filters`).

- RFDB, residual feature distillation block: Liu, Tang, Wu, "Residual
  Feature Distillation Network for Lightweight Image Super-Resolution"
  (ECCV-W 2020), Fig. 2: three stages of a 1x1 distillation conv (C -> C/2)
  and a shallow residual block (3x3 conv + identity), a last 3x3 conv to
  C/2, concatenation, 1x1 fusion to C and ESA; leaky ReLU slope 0.05 as the
  official code. LMFN's MFFD stacks these.
"""
import keras

from tfdeblur.layers.activation import LeakyReLU

from tfdeblur.layers.channel_attention import apply_channel_attention
from tfdeblur.layers.esa import apply_esa
from tfdeblur.layers.frequency_split import apply_frequency_split, split_channels


def apply_frequency_distillation_block(x, filters, ratio=0.5, reduction=16, negative_slope=0.2, name="fdb"):
    """FDB (FDDN eqs. 6-11): `filters` -> `filters` channels, x's size (even H, W)."""
    high_ch, _ = split_channels(filters, ratio)
    if x.shape[-1] != filters:
        raise ValueError(f"FDB input channels must equal filters {filters}; got {x.shape[-1]}")

    def conv_lrelu(t, ch, tag):
        t = keras.layers.Conv2D(ch, 3, padding="same", name=f"{name}_{tag}")(t)
        return LeakyReLU(negative_slope, name=f"{name}_{tag}_lrelu")(t)

    highs = []
    low = x
    for n in (1, 2, 3):
        t = conv_lrelu(low, filters, f"L{n}")
        high, low = apply_frequency_split(t, filters, ratio, negative_slope, name=f"{name}_fsb{n}")
        highs.append(high)
    highs.append(conv_lrelu(low, high_ch, "L4"))
    y = keras.layers.Concatenate(name=f"{name}_concat")(highs)
    y = apply_channel_attention(y, reduction, contrast=True, name=f"{name}_cca")
    y = keras.layers.Conv2D(filters, 1, name=f"{name}_fuse")(y)
    return keras.layers.Add(name=f"{name}_add")([x, y])


def apply_residual_feature_distillation_block(x, filters, esa_channels=None, negative_slope=0.05, name="rfdb"):
    """RFDB (RFDN Fig. 2): `filters` -> `filters` channels, x's size."""
    if x.shape[-1] != filters:
        raise ValueError(f"RFDB input channels must equal filters {filters}; got {x.shape[-1]}")
    distilled = max(1, filters // 2)

    def lrelu(t, tag):
        return LeakyReLU(negative_slope, name=f"{name}_{tag}_lrelu")(t)

    kept = []
    r = x
    for n in (1, 2, 3):
        d = keras.layers.Conv2D(distilled, 1, name=f"{name}_c{n}_d")(r)
        kept.append(lrelu(d, f"c{n}_d"))
        s = keras.layers.Conv2D(filters, 3, padding="same", name=f"{name}_c{n}_r")(r)
        r = lrelu(keras.layers.Add(name=f"{name}_c{n}_srb")([s, r]), f"c{n}_r")
    r4 = keras.layers.Conv2D(distilled, 3, padding="same", name=f"{name}_c4")(r)
    kept.append(lrelu(r4, "c4"))
    y = keras.layers.Concatenate(name=f"{name}_concat")(kept)
    y = keras.layers.Conv2D(filters, 1, name=f"{name}_c5")(y)
    return apply_esa(y, esa_channels, name=f"{name}_esa")
