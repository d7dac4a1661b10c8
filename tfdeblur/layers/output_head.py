"""The output head every tfdeblur network ends with: a zero-initialized
convolution to RGB, the global residual, a float32 crop to the input size.

BasicSR/NAFNet convention: the network predicts a residual over its (padded)
blurry input, so with the output convolution at zero the untrained network
is exactly the identity, and training starts from "no change" instead of
from the large random outputs of deep stacks (ours where the papers say only
"Xavier": each network's docstring says so). The crop runs in float32 under
a mixed policy: the image leaves every network in full precision.

Layer names are the caller's, so each network keeps the names its saved
`.keras` files and shipped weights were written with.
"""
import keras

from tfdeblur.layers.padding import CropToMatch


def apply_residual_image(x, residual, kernel_size=3, global_residual=True, name="image_out",
                         residual_name="global_residual"):
    """Zero-initialized `kernel_size` conv of `x` to 3 channels (layer
    `name`), plus `residual` (layer `residual_name`) when `global_residual`."""
    image = keras.layers.Conv2D(
        3, int(kernel_size), padding="same", kernel_initializer="zeros", name=name
    )(x)
    if global_residual:
        image = keras.layers.Add(name=residual_name)([image, residual])
    return image


def apply_output_head(x, padded, image, kernel_size=3, global_residual=True, name="image_out",
                      residual_name="global_residual", crop_name="crop"):
    """`apply_residual_image` over the padded input `padded`, cropped back to
    the size of the network input `image` in float32 (layer `crop_name`)."""
    restored = apply_residual_image(x, padded, kernel_size, global_residual, name, residual_name)
    return apply_float32_crop(restored, image, crop_name)


def apply_float32_crop(x, image, name="crop"):
    """`x` cropped to the size of `image`, computed and returned in float32."""
    return CropToMatch(name=name, dtype="float32")([x, image])
