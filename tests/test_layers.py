"""Shared layers: serialization, odd sizes, and closed-form references."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import random_images, run_layer_serialization_test
from tfdeblur.layers import CropToMatch, PadToMultiple, UpsampleBilinear2x, apply_residual_block


@pytest.mark.parametrize("h,w", [(37, 53), (16, 16), (15, 1 + 16)])
def test_pad_to_multiple_is_symmetric_and_crops_back(h, w):
    x = random_images(2, h, w)
    pad = PadToMultiple(16)
    y = run_layer_serialization_test(pad, x)
    assert y.shape[1] % 16 == 0 and y.shape[2] % 16 == 0
    assert y.shape[1] - h < 16 and y.shape[2] - w < 16
    ph, pw = y.shape[1] - h, y.shape[2] - w
    expected = np.pad(x, [(0, 0), (0, ph), (0, pw), (0, 0)], mode="symmetric")
    np.testing.assert_array_equal(y, expected)
    back = CropToMatch()([y, x])
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(back), x)


def test_pad_to_multiple_in_a_traced_function_with_unknown_size():
    pad = PadToMultiple(8)
    fn = tf.function(pad, input_signature=[tf.TensorSpec([None, None, None, 3])])
    assert fn(random_images(1, 9, 20)).shape == (1, 16, 24, 3)


def test_pad_to_multiple_rejects_bad_arguments():
    with pytest.raises(ValueError, match="multiple must be a positive integer; got 0"):
        PadToMultiple(0)
    with pytest.raises(ValueError, match="mode must be"):
        PadToMultiple(4, mode="wrap")


@pytest.mark.parametrize("h,w", [(5, 7), (1, 1), (8, 3)])
def test_upsample_bilinear_matches_tf_image_resize(h, w):
    x = random_images(2, h, w, seed=3)
    y = run_layer_serialization_test(UpsampleBilinear2x(), x)
    expected = tf.image.resize(x, (2 * h, 2 * w), method="bilinear").numpy()
    np.testing.assert_allclose(y, expected, atol=1e-6)


def test_upsample_bilinear_traces_unknown_sizes():
    fn = tf.function(UpsampleBilinear2x(), input_signature=[tf.TensorSpec([None, None, None, 3])])
    assert fn(random_images(1, 3, 4)).shape == (1, 6, 8, 3)
    assert fn(random_images(2, 5, 1)).shape == (2, 10, 2, 3)


def test_residual_block_is_identity_plus_two_convolutions():
    inp = keras.Input((None, None, 4))
    model = keras.Model(inp, apply_residual_block(inp, 4, name="rb"))
    x = random_images(1, 6, 5)[..., :3]
    x = np.concatenate([x, x[..., :1]], -1)
    c1, c2 = model.get_layer("rb_conv1"), model.get_layer("rb_conv2")
    expected = x + c2(keras.ops.relu(c1(x)))
    np.testing.assert_allclose(model(x), expected, atol=1e-5)
    assert [l.name for l in model.layers[1:]] == ["rb_conv1", "rb_conv2", "rb_add"]


@pytest.mark.parametrize("slope", [0.0, 0.05, 0.1, 0.2, 1.0])
def test_leaky_relu_matches_numpy_and_survives_graph_fusion(slope):
    from tfdeblur.layers import LeakyReLU

    x = np.random.default_rng(0).standard_normal((1, 8, 8, 4)).astype("float32")
    out = run_layer_serialization_test(LeakyReLU(slope), x)
    np.testing.assert_allclose(out, np.where(x > 0, x, slope * x), rtol=1e-6)
    # conv + add + leaky ReLU: the pattern TF's remapper fuses with slope 0.2
    # whatever the layer says (see tfdeblur/layers/activation.py)
    inp = keras.Input((None, None, 4))
    y = LeakyReLU(slope)(keras.layers.Add()([keras.layers.Conv2D(4, 3, padding="same")(inp), inp]))
    model = keras.Model(inp, y)
    graph = tf.function(lambda t: model(t))(tf.constant(x)).numpy()
    np.testing.assert_allclose(graph, model(x).numpy(), atol=1e-5)


def test_leaky_relu_rejects_a_slope_outside_0_1():
    from tfdeblur.layers import LeakyReLU

    with pytest.raises(ValueError, match="negative_slope must be in \\[0, 1\\]; got 1.5"):
        LeakyReLU(1.5)


def _init_probe_model():
    """Convolutions of every kind torch_default_init meets: a 7x7 Conv2D, a
    Conv2DTranspose, an OctaveConv's four inner convolutions inside a nested
    model, a Dense, and a zero-initialized output head."""
    from tfdeblur.layers import OctaveConv, apply_residual_image

    inner_in = keras.Input((None, None, 64))
    high, low = OctaveConv(64, 3, alpha_in=0.0, alpha_out=0.5, name="oct_split")(inner_in)
    merged = OctaveConv(64, 3, alpha_in=0.5, alpha_out=0.0, name="oct_merge")([high, low])
    inner = keras.Model(inner_in, merged, name="inner")
    x_in = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(64, 7, padding="same", name="c7")(x_in)
    x = inner(x)
    x = keras.layers.Conv2DTranspose(32, 4, strides=2, padding="same", name="up")(x)
    x = keras.layers.Conv2D(64, 3, strides=2, padding="same", name="down")(x)
    pooled = keras.layers.Dense(48, name="fc")(keras.layers.GlobalAveragePooling2D()(x))
    image = apply_residual_image(x, x_in, name="head")
    return keras.Model(x_in, [image, pooled])


def test_torch_default_init_draws_each_weight_from_pytorchs_bound():
    """PyTorch's nn.Conv2d / nn.ConvTranspose2d / nn.Linear reset_parameters
    (kaiming_uniform_(a=sqrt(5)), then a uniform bias) give U(-b, b) with
    b = 1/sqrt(fan_in) for weight and bias: a uniform's max is b and its
    standard deviation b/sqrt(3). fan_in: kh*kw*C_in; for the transposed
    convolution PyTorch's weight (C_in, C_out, kh, kw) gives kh*kw*C_out."""
    from tfdeblur.layers import torch_default_init

    keras.utils.set_random_seed(0)
    model = _init_probe_model()
    count = torch_default_init(model)
    layers = {l.name: l for l in [*model.layers, *model.get_layer("inner").layers]}
    fan_in = {"c7": 7 * 7 * 3, "up": 4 * 4 * 32, "down": 3 * 3 * 32, "fc": 64}
    convs = {"c7": layers["c7"], "up": layers["up"], "down": layers["down"], "fc": layers["fc"],
             "h2h_split": layers["oct_split"].conv_h2h, "h2l_split": layers["oct_split"].conv_h2l,
             "h2h_merge": layers["oct_merge"].conv_h2h, "l2h_merge": layers["oct_merge"].conv_l2h}
    fan_in.update({"h2h_split": 9 * 64, "h2l_split": 9 * 64, "h2h_merge": 9 * 32, "l2h_merge": 9 * 32})
    assert count == len(convs)  # the head is skipped
    for name, layer in convs.items():
        bound = 1 / np.sqrt(fan_in[name])
        for w in (layer.kernel.numpy(), layer.bias.numpy()):
            assert np.abs(w).max() <= bound, name
            assert np.abs(w).max() > 0.9 * bound, name  # the whole interval is used
        std = layer.kernel.numpy().std()
        assert abs(std - bound / np.sqrt(3)) < 0.06 * bound / np.sqrt(3), (name, std, bound / np.sqrt(3))
    head = layers["head"]
    assert not np.any(head.kernel.numpy()) and not np.any(head.bias.numpy())  # the identity head stays zero


def test_torch_default_init_follows_the_global_seed_and_differs_per_layer():
    from tfdeblur.layers import torch_default_init

    draws = []
    for seed in (1, 1, 2):
        keras.utils.set_random_seed(seed)
        model = _init_probe_model()
        torch_default_init(model)
        draws.append(model.get_layer("down").kernel.numpy())
    np.testing.assert_array_equal(draws[0], draws[1])
    assert not np.allclose(draws[0], draws[2])
    oct_merge = model.get_layer("inner").get_layer("oct_merge")
    assert not np.allclose(oct_merge.conv_h2h.kernel.numpy()[..., :32], oct_merge.conv_l2h.kernel.numpy()[..., :32])
