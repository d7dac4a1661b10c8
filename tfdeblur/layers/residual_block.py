"""Residual block of SRN-DeblurNet (Tao et al. 2018), reused by MTWDN.

MTWDN (Cheng et al.) builds every encoder and decoder level from "three
residual blocks"; like SRN it uses the plain form conv-ReLU-conv + identity
with no normalization and no activation after the addition.
"""
import keras


def apply_residual_block(x, filters, kernel_size=3, name="resblock"):
    """conv(kernel_size)-ReLU-conv(kernel_size), added to the input."""
    y = keras.layers.Conv2D(
        filters, kernel_size, padding="same", activation="relu",
        kernel_initializer="glorot_uniform", name=f"{name}_conv1",
    )(x)
    y = keras.layers.Conv2D(
        filters, kernel_size, padding="same",
        kernel_initializer="glorot_uniform", name=f"{name}_conv2",
    )(y)
    return keras.layers.Add(name=f"{name}_add")([x, y])


def apply_residual_stack(x, filters, num_blocks, kernel_size=3, name="resblocks"):
    for i in range(num_blocks):
        x = apply_residual_block(x, filters, kernel_size, name=f"{name}_{i + 1}")
    return x
