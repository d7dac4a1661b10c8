"""Leaky ReLU that keeps its slope in TensorFlow graphs.

Why not `keras.layers.LeakyReLU`: in TF 2.21 (CPU, oneDNN), Grappler's
remapper fuses Conv2D + BiasAdd + Add + LeakyRelu into one `_FusedConv2D`
and drops the slope: the fused op uses LeakyRelu's default 0.2 whatever the
layer says. Eager calls and training graphs (where the sum has a second
consumer, the gradient) are right; inference graphs -- `model.predict`,
`tf.function`, validation steps, SavedModel, TF Serving -- are wrong. Minimal
case: `LeakyReLU(0.05)(Add()([Conv2D(16, 3, padding="same")(x), x]))`
differs by ~0.8 between eager and `tf.function`. It hit LMFN's RFDB shallow
residual blocks (slope 0.05): a 2e-3 gap between the Keras model and its
SavedModel, and validation PSNR computed with a different network than the
one trained.

This layer computes max(x, slope * x) (equal to leaky ReLU for 0 <= slope <= 1),
a pattern the remapper leaves exact. `tests/test_models.py` checks every
network's graph output against its eager output, so a fusion bug of this
kind in any network fails the suite.
"""
import keras
from keras import ops

from tfdeblur.serialization import public


@public
class LeakyReLU(keras.layers.Layer):
    """max(x, negative_slope * x); `negative_slope` in [0, 1]."""

    def __init__(self, negative_slope=0.2, **kwargs):
        super().__init__(**kwargs)
        negative_slope = float(negative_slope)
        if not 0.0 <= negative_slope <= 1.0:
            raise ValueError(f"negative_slope must be in [0, 1]; got {negative_slope}")
        self.negative_slope = negative_slope

    def call(self, x):
        return ops.maximum(x, ops.cast(self.negative_slope, x.dtype) * x)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "negative_slope": self.negative_slope}
