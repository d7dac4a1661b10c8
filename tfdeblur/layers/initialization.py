"""Initializing a built network as its reference code's framework does.

Keras initializes convolution kernels with Glorot-uniform and biases with
zeros; PyTorch's `nn.Conv2d`, `nn.ConvTranspose2d` and `nn.Linear`
(`reset_parameters`: `kaiming_uniform_(a=sqrt(5))` and a uniform bias)
draw both from U(-1/sqrt(fan_in), 1/sqrt(fan_in)). For a 3x3 convolution
from 128 to 128 channels that is a kernel variance of 1/(3 * 1152) against
Glorot's 2/2304, three times smaller, and it compounds through a residual
stack: the authors' MSFS-Net (30 RCABs per decoder module) keeps its
decoder features at unit scale under PyTorch's initialization and grows
them about a thousandfold under Keras' (docs/networks/msfs.md). A network
whose paper trains from PyTorch's defaults uses `torch_default_init`.

Zero-initialized kernels (the identity output heads of
`tfdeblur.layers.output_head`, ours in every network) keep their zeros, and
so do their biases; normalization layers start as in both frameworks
(scale 1, offset 0).
"""
import math

import keras
import numpy as np

from tfdeblur import keras_private

INITS = ("keras", "torch")
_KERNEL_LAYERS = (keras.layers.Conv2D, keras.layers.Conv2DTranspose, keras.layers.Dense)


def torch_fan_in(layer):
    """fan_in as PyTorch computes it for the layer's weight: kernel height x
    width x input channels (Conv2D, Dense); for a transposed convolution
    PyTorch's weight is (in, out, kh, kw) and its dimension 1 is the output
    channels, which is also what Keras' (kh, kw, out, in) kernel gives."""
    return math.prod(layer.kernel.shape[:-1])


def torch_default_init(model):
    """Re-draw every convolution and dense kernel and bias of `model`
    (nested models and custom layers included) from U(-b, b), b =
    1/sqrt(fan_in), as PyTorch initializes them; zero-initialized kernels
    are left at zero. Returns the number of layers re-drawn. Draws come from
    numpy's global generator, which `keras.utils.set_random_seed` seeds (a
    few hundred eager Keras draws cost seconds; numpy's, milliseconds)."""
    count = 0
    for layer in keras_private.all_sublayers(model):
        if not isinstance(layer, _KERNEL_LAYERS) or isinstance(layer.kernel_initializer, keras.initializers.Zeros):
            continue
        bound = 1.0 / math.sqrt(torch_fan_in(layer))
        layer.kernel.assign(np.random.uniform(-bound, bound, layer.kernel.shape).astype(layer.kernel.dtype))
        if layer.use_bias:
            layer.bias.assign(np.random.uniform(-bound, bound, layer.bias.shape).astype(layer.bias.dtype))
        count += 1
    return count
