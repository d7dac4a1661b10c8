"""MSFS-Net's blocks against closed forms: OctConv eqs. (1)-(2) with 1x1
kernels in numpy (pool = 2x2 mean, up = nearest), its alpha = 0 ends
against a plain convolution, the FSM's and OctConv's parameter counts, the
CSFFM mix of eqs. (3)-(4), serialization round trips."""
import keras
import numpy as np
import pytest

from tests.helpers import random_images, run_layer_serialization_test
from tfdeblur.layers.csffm import AdaptiveMix, apply_csffm
from tfdeblur.layers.frequency_separation import apply_frequency_separation
from tfdeblur.layers.octave_conv import OctaveConv


def pool2(x):
    b, h, w, c = x.shape
    return x.reshape(b, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


def up2(x):
    return x.repeat(2, axis=1).repeat(2, axis=2)


def dense(x, conv):
    """A 1x1 Conv2D as a per-pixel matrix product (its own weights)."""
    kernel, bias = (w.numpy() for w in conv.weights)
    return x @ kernel[0, 0] + bias


def test_octconv_equations_1_2_with_1x1_kernels():
    keras.utils.set_random_seed(1)
    layer = OctaveConv(6, 1, alpha_in=0.5, alpha_out=0.5)
    xh, xl = random_images(2, 8, 6, seed=1)[..., :2], random_images(2, 4, 3, seed=2)[..., :2]
    xh = np.concatenate([xh, xh[..., :1] ** 2], axis=-1)  # 3 high channels
    xl = np.concatenate([xl, 1 - xl[..., :1]], axis=-1)  # 3 low channels
    layer([xh, xl])  # builds; random biases make every path visible
    for conv in (layer.conv_h2h, layer.conv_h2l, layer.conv_l2h, layer.conv_l2l):
        bias = conv.weights[1]
        bias.assign(np.random.default_rng(3).normal(size=bias.shape).astype("float32"))
    yh, yl = (t.numpy() for t in layer([xh, xl]))
    expected_h = dense(xh, layer.conv_h2h) + up2(dense(xl, layer.conv_l2h))  # eq. (1)
    expected_l = dense(xl, layer.conv_l2l) + dense(pool2(xh), layer.conv_h2l)  # eq. (2)
    np.testing.assert_allclose(yh, expected_h, atol=1e-5)
    np.testing.assert_allclose(yl, expected_l, atol=1e-5)
    assert yh.shape == (2, 8, 6, 3) and yl.shape == (2, 4, 3, 3)


def test_octconv_split_and_fuse_ends():
    x = random_images(1, 8, 8, seed=4)
    split = OctaveConv(4, 1, alpha_in=0.0, alpha_out=0.5)  # alpha_in = 0: one input, split
    yh, yl = (t.numpy() for t in split(x))
    np.testing.assert_allclose(yh, dense(x, split.conv_h2h), atol=1e-5)
    np.testing.assert_allclose(yl, dense(pool2(x), split.conv_h2l), atol=1e-5)
    assert split.conv_l2h is None and split.conv_l2l is None

    fuse = OctaveConv(5, 1, alpha_in=0.5, alpha_out=0.0)  # alpha_out = 0: one output, fuse
    y = fuse([yh, yl]).numpy()
    np.testing.assert_allclose(y, dense(yh, fuse.conv_h2h) + up2(dense(yl, fuse.conv_l2h)), atol=1e-5)
    assert fuse.conv_h2l is None and fuse.conv_l2l is None and y.shape == (1, 8, 8, 5)


def test_octconv_alpha_zero_both_is_a_plain_convolution():
    x = random_images(1, 10, 7, seed=5)
    oct_ = OctaveConv(4, 3, alpha_in=0.0, alpha_out=0.0)
    plain = keras.layers.Conv2D(4, 3, padding="same")
    y = oct_(x).numpy()
    plain(x)
    plain.set_weights(oct_.get_weights())
    np.testing.assert_allclose(y, plain(x).numpy(), atol=1e-5)


@pytest.mark.parametrize("cin, cout, k, a_in, a_out", [(64, 64, 3, 0.5, 0.5), (64, 32, 1, 0.0, 0.5), (32, 16, 1, 0.5, 0.0), (8, 8, 3, 0.25, 0.75)])
def test_octconv_parameter_count(cin, cout, k, a_in, a_out):
    low_in, low_out = int(a_in * cin), int(a_out * cout)
    high_in, high_out = cin - low_in, cout - low_out
    paths = [(high_in, high_out), (high_in, low_out), (low_in, high_out), (low_in, low_out)]
    expected = sum(k * k * i * o + o for i, o in paths if i and o)
    layer = OctaveConv(cout, k, alpha_in=a_in, alpha_out=a_out)
    inputs = [np.zeros((1, 8, 8, high_in), "float32"), np.zeros((1, 4, 4, low_in), "float32")] if low_in else np.zeros((1, 8, 8, cin), "float32")
    layer(inputs)
    assert layer.count_params() == expected


def test_octconv_bad_arguments_are_named():
    with pytest.raises(ValueError, match=r"alpha_out must be in \[0, 1\); got 1.0"):
        OctaveConv(4, 1, alpha_out=1.0)
    with pytest.raises(ValueError, match=r"alpha_in must be in \[0, 1\); got -0.5"):
        OctaveConv(4, 1, alpha_in=-0.5)
    with pytest.raises(ValueError, match="kernel_size must be a positive odd integer; got 2"):
        OctaveConv(4, 2)
    with pytest.raises(ValueError, match=r"inputs must be \[X_high, X_low\]"):
        OctaveConv(4, 1, alpha_in=0.5)(np.zeros((1, 4, 4, 4), "float32"))


def test_octconv_serialization_round_trip():
    xh, xl = random_images(1, 8, 8, seed=6), random_images(1, 4, 4, seed=7)
    run_layer_serialization_test(OctaveConv(5, 3, alpha_in=0.5, alpha_out=0.0), [xh, xl])
    run_layer_serialization_test(OctaveConv(4, 3, alpha_in=0.0, alpha_out=0.0), xh)


def _fsm_model(cin, filters, projection=False):
    x = keras.Input((None, None, cin))
    high, low, out = apply_frequency_separation(x, filters, projection=projection, name="fsm")
    return keras.Model(x, [high, low, out])


@pytest.mark.parametrize("cin, filters, projection", [(8, 8, False), (16, 8, False), (8, 8, True)])
def test_fsm_parameter_count_and_exposed_features(cin, filters, projection):
    model = _fsm_model(cin, filters, projection)
    split = cin * cin + cin  # 1x1, 0 -> 0.5: two paths, C x C/2 each
    octave = 9 * cin * cin + 2 * cin  # 3x3, 0.5 -> 0.5: four paths
    fuse = cin * filters + 2 * filters  # 1x1, 0.5 -> 0: two paths
    res = cin * filters + filters if projection or cin != filters else 0
    assert model.count_params() == split + octave + fuse + res
    high, low, out = (t.numpy() for t in model(random_images(1, 12, 10)[..., :1].repeat(cin, -1)))
    assert high.shape == (1, 12, 10, cin // 2) and low.shape == (1, 6, 5, cin // 2)
    assert out.shape == (1, 12, 10, filters)


def test_fsm_with_zero_weights_is_its_residual_path():
    model = _fsm_model(6, 6)
    model.set_weights([np.zeros_like(w) for w in model.get_weights()])
    x = random_images(2, 8, 8, seed=8)[..., :2].repeat(3, -1)
    high, low, out = (t.numpy() for t in model(x))
    np.testing.assert_array_equal(out, x)  # fused branch 0, identity residual
    assert not high.any() and not low.any()


def test_adaptive_mix_is_equation_3():
    a, b = random_images(1, 4, 4, seed=9), random_images(1, 4, 4, seed=10)
    mix = AdaptiveMix(-1.0)
    s = 1 / (1 + np.exp(1.0))
    np.testing.assert_allclose(mix([a, b]).numpy(), s * a + (1 - s) * b, atol=1e-6)
    assert len(mix.trainable_weights) == 1
    mix.w.assign(0.3)
    run_layer_serialization_test(mix, [a, b])


def test_csffm_concatenates_mix_and_encoder_feature():
    en, de = keras.Input((None, None, 4)), keras.Input((None, None, 4))
    model = keras.Model([en, de], apply_csffm(en, de, initial=0.0, name="c"))
    a, b = random_images(1, 4, 4, seed=11)[..., :1].repeat(4, -1), random_images(1, 4, 4, seed=12)[..., :1].repeat(4, -1)
    y = model([a, b]).numpy()
    np.testing.assert_allclose(y, np.concatenate([0.5 * a + 0.5 * b, a], -1), atol=1e-6)
    plain = keras.Model([en, de], apply_csffm(en, de, mix=False, name="p"))
    np.testing.assert_allclose(plain([a, b]).numpy(), np.concatenate([b, a], -1))
    assert plain.count_params() == 0 and model.count_params() == 1


def test_fsm_with_batchnorm_is_the_authors_conv_bn_relu():
    """The authors' OctConv blocks: bias-free convs, each output half batch-
    normalized (gamma, beta; Keras also stores the running mean and variance)
    before its ReLU. In training mode the normalized high features are a
    ReLU of zero-mean, unit-variance values: their batch mean is that of
    max(0, N(0, 1)), 1/sqrt(2 pi) = 0.399, whatever the input's scale."""
    cin, filters = 8, 8
    x = keras.Input((None, None, cin))
    high, low, out = apply_frequency_separation(x, filters, batchnorm=True, name="fsm")
    model = keras.Model(x, [high, low, out])
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    convs = cin * cin + 9 * cin * cin + cin * filters
    assert trainable == convs + 2 * (2 * cin + filters)
    assert model.count_params() == convs + 4 * (2 * cin + filters)
    assert all(not layer.use_bias for layer in model.layers if isinstance(layer, OctaveConv))
    rng = np.random.default_rng(3)
    inputs = (100.0 * rng.standard_normal((4, 16, 16, cin)) + 50.0).astype("float32")
    h, l, _ = (t.numpy() for t in model(inputs, training=True))
    assert abs(h.mean() - 1 / np.sqrt(2 * np.pi)) < 0.05 and abs(l.mean() - 1 / np.sqrt(2 * np.pi)) < 0.08
    h_plain, _, _ = (t.numpy() for t in _fsm_model(cin, filters)(inputs))
    assert h_plain.mean() > 2.0  # without normalization the scale carries through
