"""Inception down-sampling block of FDDN's encoder.

Liu et al., "Frequency Disentanglement Distillation Image Deblurring
Network" (Sensors 2021), Fig. 2: a 3x3 stride-1 convolution
resamples the feature (size kept), parallel inception-style branches
(Szegedy et al. 2015: 1x1; 1x1 -> 3x3; 1x1 -> 3x3 -> 3x3; 3x3 max-pool ->
1x1, each `filters / 4` channels) are concatenated, and a 2x2 max pooling
halves H and W. The paper gives the pooling "a stride of 1", which cannot
halve the size; stride 2 is used here.
"""
import keras


def apply_inception_down(x, filters, name="inception_down"):
    """Inception down-sampling: (B, H, W, C) -> (B, H/2, W/2, filters)."""
    if int(filters) < 4 or int(filters) % 4:
        raise ValueError(f"filters must be a positive multiple of 4 (four branches); got {filters}")
    branch = int(filters) // 4

    def conv(t, ch, k, tag):
        return keras.layers.Conv2D(ch, k, padding="same", activation="relu", name=f"{name}_{tag}")(t)

    x = conv(x, filters, 3, "resample")
    b1 = conv(x, branch, 1, "b1_1x1")
    b2 = conv(conv(x, branch, 1, "b2_1x1"), branch, 3, "b2_3x3")
    b3 = conv(conv(conv(x, branch, 1, "b3_1x1"), branch, 3, "b3_3x3a"), branch, 3, "b3_3x3b")
    b4 = keras.layers.MaxPooling2D(3, strides=1, padding="same", name=f"{name}_b4_pool")(x)
    b4 = conv(b4, branch, 1, "b4_1x1")
    y = keras.layers.Concatenate(name=f"{name}_concat")([b1, b2, b3, b4])
    return keras.layers.MaxPooling2D(2, strides=2, name=f"{name}_pool")(y)
