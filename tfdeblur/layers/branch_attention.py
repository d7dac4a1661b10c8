"""Branch attention of GLBDN (Li, Yang, Huang, Zhuo, "A Global-Local Blur
Disentangling Network for Dynamic Scene Deblurring", Appl. Sci. 2021, eq. 1).

    Psi_B = Psi_L (.) M(x, Psi_L, Psi_G) + Psi_G

M is two convolutional layers on the concatenation of the blurry image x,
the local-branch feature Psi_L and the global-branch feature Psi_G; the
second ends in a sigmoid and gives the local weight mask. The paper does
not give M's widths or kernel sizes: here both are 3x3 with the features'
channel count C, and the mask has C channels (one weight per feature and
pixel; a one-channel mask would be the special case of equal weights).
Every operation is local (3x3 receptive fields, elementwise products), so
the block is safe under tiled inference.
"""
import keras


def apply_branch_attention(blur, psi_local, psi_global, filters, name="branch_attention"):
    """Fuses the two branch features by eq. 1; returns Psi_B (same shape as Psi_L).

    Parameters: 3x3 convs (3 + 2C) -> C (ReLU) -> C (sigmoid), i.e.
    9 (3 + 2C) C + C + 9 C^2 + C.
    """
    z = keras.layers.Concatenate(name=f"{name}_concat")([blur, psi_local, psi_global])
    z = keras.layers.Conv2D(
        filters, 3, padding="same", activation="relu",
        kernel_initializer="glorot_uniform", name=f"{name}_conv1",
    )(z)
    mask = keras.layers.Conv2D(
        filters, 3, padding="same", activation="sigmoid",
        kernel_initializer="glorot_uniform", name=f"{name}_mask",
    )(z)
    weighted = keras.layers.Multiply(name=f"{name}_weight_local")([psi_local, mask])
    return keras.layers.Add(name=f"{name}_add_global")([weighted, psi_global])
