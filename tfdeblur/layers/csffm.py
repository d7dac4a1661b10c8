"""Cross-scale feature fusion module (CSFFM) of MSFS-Net.

Zhang, Li et al., "Multi-scale frequency separation network for image
deblurring", Fig. 4, eqs. (3)-(4)::

    f_de(1/2) = up([sigma(theta) * f_en(1/4) + (1 - sigma(theta)) * f_de(1/4), f_en(1/4)])   (3)
    f_de(1)   = up([sigma(gamma) * f_en(1/2) + (1 - sigma(gamma)) * f_de(1/2), f_en(1/2)])   (4)

theta and gamma are learned scalars (an adaptive mix-up, as in AECR-Net);
`up` is the decoder's up-sampling module, applied by the network. This file
holds the mix (`AdaptiveMix`) and the fusion before `up` (`apply_csffm`).
The initial values -1 (theta) and -0.6 (gamma) are the authors' code's.
"""
import keras
from keras import ops

from tfdeblur.serialization import public


@public
class AdaptiveMix(keras.layers.Layer):
    """`sigma(w) * a + (1 - sigma(w)) * b` with one learned scalar w (eqs. 3-4).

    Args:
        initial: the initial value of w (sigma(0) = 0.5 weighs both equally).
    """

    def __init__(self, initial=0.0, **kwargs):
        super().__init__(**kwargs)
        self.initial = float(initial)

    def build(self, input_shape):
        self.w = self.add_weight(
            name="w", shape=(), initializer=keras.initializers.Constant(self.initial), trainable=True
        )

    @property
    def mix_factor(self):
        """sigma(w), the weight of the first input."""
        return ops.sigmoid(self.w)

    def call(self, inputs):
        a, b = inputs
        m = ops.cast(ops.sigmoid(self.w), a.dtype)
        return m * a + (1.0 - m) * b

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        config = super().get_config()
        config.update({"initial": self.initial})
        return config


def apply_csffm(encoder_feature, decoder_feature, initial=0.0, mix=True, name="csffm"):
    """[mix(f_en, f_de), f_en] (channels concatenated), the input of `up` in eqs. (3)-(4).

    `mix=False` is the Table 3 "w/o CSFFM" ablation: [f_de, f_en], a plain
    concatenated skip connection.
    """
    if mix:
        fused = AdaptiveMix(initial, name=f"{name}_mix")([encoder_feature, decoder_feature])
    else:
        fused = decoder_feature
    return keras.layers.Concatenate(name=f"{name}_concat")([fused, encoder_feature])
