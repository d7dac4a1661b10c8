"""LMFN's attention fusion modules: ALFM (layers) and ACFM (channels).

Zhang, Liu et al., "Image Deblurring Based on Lightweight Multi-Information
Fusion Network" (ICIP 2021), Figs. 2-3. Both follow HAN's layer attention and
channel-spatial attention (Niu et al., ECCV 2020) and start as the identity
(learned scales initialized to 0, as HAN's gamma).
"""
import keras
from keras import ops

from tfdeblur.serialization import public


@public
class ALFM(keras.layers.Layer):
    """Attention-based layer fusion module, LMFN Fig. 2, eqs. (1)-(2).

    Input: the N RFDB outputs, a list of (B, H, W, C) tensors. They are
    stacked to F of shape NC x HW (channels of each layer kept separate),
    w = softmax(F F^T) over the NC channels, and the output is
    theta * (w F) + F, returned as (B, H, W, N*C) (layer-major channels).
    theta is one learned scalar initialized to 0, so the untrained module is
    the identity (concatenation). The attention is computed in float32.
    """

    def build(self, input_shapes):
        if not isinstance(input_shapes, (list, tuple)) or not input_shapes:
            raise ValueError(f"ALFM takes a list of feature maps; got {input_shapes}")
        channels = [s[-1] for s in input_shapes]
        if None in channels:
            raise ValueError(f"ALFM needs static channel counts; got {channels}")
        self.theta = self.add_weight(name="theta", shape=(), initializer="zeros")

    def call(self, inputs):
        x = ops.concatenate(list(inputs), axis=-1)
        nc = x.shape[-1]
        shape = ops.shape(x)
        f = ops.cast(ops.reshape(x, (shape[0], -1, nc)), "float32")  # (B, HW, NC)
        energy = ops.matmul(ops.transpose(f, (0, 2, 1)), f)  # (B, NC, NC) = F F^T
        weights = ops.softmax(energy, axis=-1)
        attended = ops.matmul(f, ops.transpose(weights, (0, 2, 1)))  # (w F)^T
        attended = ops.reshape(ops.cast(attended, x.dtype), (shape[0], shape[1], shape[2], nc))
        return ops.cast(self.theta, x.dtype) * attended + x

    def compute_output_shape(self, input_shapes):
        b, h, w, _ = input_shapes[0]
        return (b, h, w, sum(s[-1] for s in input_shapes))


@public
class ACFM(keras.layers.Layer):
    """Attention-based channel fusion module, LMFN Fig. 3, eq. (3).

    A pseudo-3D convolution over the (channel, H, W) volume of one feature
    map (a single 3D channel, as HAN's CSAM): a 1x3x3 convolution (one 3x3
    kernel shared by every channel) then a 3x1x1 convolution along the
    channel axis (zero padded), each with a bias; then
    f_c = f + alpha * sigmoid(...) * f, alpha a learned scalar initialized
    to 0 (identity at start). 15 parameters in all.
    """

    def build(self, input_shape):
        if input_shape[-1] is None:
            raise ValueError(f"ACFM needs a static channel count; got {input_shape}")
        self.spatial_kernel = self.add_weight(name="spatial_kernel", shape=(3, 3), initializer="glorot_uniform")
        self.spatial_bias = self.add_weight(name="spatial_bias", shape=(), initializer="zeros")
        self.channel_kernel = self.add_weight(name="channel_kernel", shape=(3,), initializer="glorot_uniform")
        self.channel_bias = self.add_weight(name="channel_bias", shape=(), initializer="zeros")
        self.alpha = self.add_weight(name="alpha", shape=(), initializer="zeros")

    def call(self, x):
        channels = x.shape[-1]
        kernel = ops.tile(ops.reshape(self.spatial_kernel, (3, 3, 1, 1)), (1, 1, channels, 1))
        y = ops.depthwise_conv(x, ops.cast(kernel, x.dtype), strides=1, padding="same")
        y = y + ops.cast(self.spatial_bias, x.dtype)
        p = ops.pad(y, [[0, 0], [0, 0], [0, 0], [1, 1]])
        k = ops.cast(self.channel_kernel, x.dtype)
        y = k[0] * p[..., :-2] + k[1] * p[..., 1:-1] + k[2] * p[..., 2:] + ops.cast(self.channel_bias, x.dtype)
        return x + ops.cast(self.alpha, x.dtype) * ops.sigmoid(y) * x

    def compute_output_shape(self, input_shape):
        return input_shape
