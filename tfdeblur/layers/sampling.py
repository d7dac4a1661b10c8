"""Down- and up-sampling blocks shared by the encoder-decoder networks."""
import keras


def apply_conv(x, filters, kernel_size=3, strides=1, activation="relu", name="conv"):
    """A 3x3 (by default) convolution with Glorot/Xavier init, as MTWDN sec. 3 states."""
    return keras.layers.Conv2D(
        filters, kernel_size, strides=strides, padding="same", activation=activation,
        kernel_initializer="glorot_uniform", name=name,
    )(x)


def apply_deconv(x, filters, kernel_size=3, strides=2, activation="relu", name="deconv"):
    """Transposed convolution ("deconvolution") that doubles H and W."""
    return keras.layers.Conv2DTranspose(
        filters, kernel_size, strides=strides, padding="same", activation=activation,
        kernel_initializer="glorot_uniform", name=name,
    )(x)


def apply_downsample_image(x, factor=2, name="down"):
    """Box-filter (area) downsampling of an image by an integer factor.

    An exact 2x2 mean: the image pyramid of multi-scale networks stays
    aligned with pixel centres, and sizes divisible by the factor stay exact.
    """
    return keras.layers.AveragePooling2D(factor, name=name)(x)


def apply_upsample_image(x, factor=2, name="up"):
    """Bilinear upsampling of an image (SRN feeds the coarser result this way)."""
    return keras.layers.UpSampling2D(factor, interpolation="bilinear", name=name)(x)
