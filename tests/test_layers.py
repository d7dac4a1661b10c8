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
