"""The distillation networks' shared blocks (FDDN, LMFN): closed forms,
serialization round trips, shapes and argument errors. Tiny inputs only."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import run_layer_serialization_test
from tfdeblur.layers import (
    ACFM,
    ALFM,
    ContrastPooling,
    PixelShuffle,
    ResizeBilinearLike,
    apply_channel_attention,
    apply_esa,
    apply_frequency_distillation_block,
    apply_frequency_split,
    apply_inception_down,
    apply_rcab,
    apply_residual_feature_distillation_block,
    split_channels,
)

RNG = np.random.default_rng(0)


def feat(h, w, c, b=2):
    return RNG.standard_normal((b, h, w, c)).astype("float32")


def conv(k, cin, cout):
    return k * k * cin * cout + cout


def count(fn, channels, *args, **kwargs):
    x = keras.Input((None, None, channels))
    out = fn(x, *args, **kwargs)
    return keras.Model(x, out).count_params()


# -- pixel shuffle -------------------------------------------------------------

def test_pixel_shuffle_matches_a_numpy_depth_to_space():
    x = feat(3, 5, 12)
    r, c = 2, 3
    y = run_layer_serialization_test(PixelShuffle(r), x)
    # out[b, r*h + i, r*w + j, k] = in[b, h, w, (i*r + j)*c + k]
    expected = x.reshape(2, 3, 5, r, r, c).transpose(0, 1, 3, 2, 4, 5).reshape(2, 6, 10, c)
    np.testing.assert_array_equal(y, expected)


def test_pixel_shuffle_rejects_indivisible_channels():
    with pytest.raises(ValueError, match="input channels must be a multiple of scale\\*\\*2 = 4; got 6"):
        PixelShuffle(2)(feat(2, 2, 6))
    with pytest.raises(ValueError, match="scale must be a positive integer; got 0"):
        PixelShuffle(0)


# -- attention ---------------------------------------------------------------

def test_contrast_pooling_is_std_plus_mean():
    x = feat(4, 6, 5)
    y = run_layer_serialization_test(ContrastPooling(), x)
    np.testing.assert_allclose(y, x.std(axis=(1, 2), keepdims=True) + x.mean(axis=(1, 2), keepdims=True), atol=1e-5)


def test_channel_attention_and_rcab_keep_shape_and_count():
    assert count(apply_channel_attention, 32, 16) == conv(1, 32, 2) + conv(1, 2, 32)
    assert count(apply_channel_attention, 32, 16, contrast=True) == conv(1, 32, 2) + conv(1, 2, 32)
    assert count(apply_rcab, 32, 32, 16) == 2 * conv(3, 32, 32) + conv(1, 32, 2) + conv(1, 2, 32)
    x = keras.Input((None, None, 8))
    m = keras.Model(x, apply_rcab(x, 8, reduction=4))
    assert m(feat(5, 7, 8)).shape == (2, 5, 7, 8)


def test_resize_bilinear_like_equals_tf_image_resize_at_any_size():
    x = feat(3, 4, 2)
    ref = np.zeros((2, 13, 9, 1), "float32")
    y = ResizeBilinearLike()([x, ref]).numpy()
    np.testing.assert_allclose(y, tf.image.resize(x, (13, 9), "bilinear").numpy(), atol=1e-5)


def test_esa_counts_and_accepts_small_features():
    # RFDN's ESA, f = C // 4 = 4: conv1, conv_f, conv_max, conv2, conv3, conv3_, conv4
    assert count(apply_esa, 16) == conv(1, 16, 4) + conv(1, 4, 4) + 4 * conv(3, 4, 4) + conv(1, 4, 16)
    x = keras.Input((None, None, 16))
    m = keras.Model(x, apply_esa(x))
    for h, w in ((1, 1), (5, 7), (37, 53)):
        y = m(feat(h, w, 16)).numpy()
        assert y.shape == (2, h, w, 16) and np.isfinite(y).all()


# -- FSB / FDB / RFDB ----------------------------------------------------------

def test_frequency_split_channels_and_resolution():
    assert split_channels(64, 0.5) == (32, 32)
    assert split_channels(8, 0.25) == (2, 6)
    x = keras.Input((None, None, 6))
    high, low = apply_frequency_split(x, 8, ratio=0.25)
    out = keras.Model(x, [high, low])(feat(6, 10, 6))
    assert out[0].shape == (2, 6, 10, 2) and out[1].shape == (2, 6, 10, 6)


def test_frequency_split_parameter_count_is_tables_1_2():
    # coarse2h 3x3 in->H, coarse2l 3x3 in->L, h2h H->H, l2l L->L, h2l H->L, l2h L->H (1x1)
    h, l, cin = 2, 6, 6
    expected = conv(3, cin, h) + conv(3, cin, l) + conv(1, h, h) + conv(1, l, l) + conv(1, h, l) + conv(1, l, h)
    assert count(lambda x: apply_frequency_split(x, 8, 0.25), cin) == expected


@pytest.mark.parametrize("ratio, filters, message", [
    (0.0, 8, r"ratio must be in \(0, 1\); got 0.0"),
    (1.5, 8, r"ratio must be in \(0, 1\); got 1.5"),
    (0.5, 7, r"ratio \* filters must be a whole number of channels .*got ratio 0.5 \* filters 7 = 3.5"),
])
def test_frequency_split_rejects_bad_ratios(ratio, filters, message):
    with pytest.raises(ValueError, match=message):
        apply_frequency_split(keras.Input((None, None, 4)), filters, ratio)


def test_fdb_parameter_count_and_shape():
    c, h = 8, 4  # ratio 0.5
    fsb = conv(3, c, h) * 2 + conv(1, h, h) * 4
    expected = (
        conv(3, c, c) + 2 * conv(3, h, c) + conv(3, h, h)  # L1..L4
        + 3 * fsb
        + conv(1, 4 * h, 2) + conv(1, 2, 4 * h)  # CCA on 16 channels, reduction 8
        + conv(1, 4 * h, c)  # fusion
    )
    assert count(apply_frequency_distillation_block, c, c, reduction=8) == expected
    x = keras.Input((None, None, c))
    assert keras.Model(x, apply_frequency_distillation_block(x, c))(feat(6, 10, c)).shape == (2, 6, 10, c)
    with pytest.raises(ValueError, match="FDB input channels must equal filters 16; got 8"):
        apply_frequency_distillation_block(x, 16)


def test_rfdb_parameter_count_and_shape():
    c, d = 32, 16
    esa = conv(1, c, 8) + conv(1, 8, 8) + 4 * conv(3, 8, 8) + conv(1, 8, c)
    expected = 3 * (conv(1, c, d) + conv(3, c, c)) + conv(3, c, d) + conv(1, 4 * d, c) + esa
    assert expected == 38_992
    assert count(apply_residual_feature_distillation_block, c, c) == expected
    x = keras.Input((None, None, 8))
    assert keras.Model(x, apply_residual_feature_distillation_block(x, 8))(feat(5, 9, 8)).shape == (2, 5, 9, 8)


def test_inception_down_halves_and_rejects_bad_widths():
    x = keras.Input((None, None, 3))
    m = keras.Model(x, apply_inception_down(x, 8))
    assert m(feat(6, 10, 3)).shape == (2, 3, 5, 8)
    assert m.count_params() == conv(3, 3, 8) + 4 * conv(1, 8, 2) + 3 * conv(3, 2, 2)
    with pytest.raises(ValueError, match="filters must be a positive multiple of 4 .*; got 6"):
        apply_inception_down(x, 6)


# -- ALFM / ACFM ---------------------------------------------------------------

def test_alfm_with_theta_zero_is_the_concatenation():
    a, b = feat(3, 4, 2), feat(3, 4, 3)
    y = run_layer_serialization_test(ALFM(), [a, b])
    np.testing.assert_array_equal(y, np.concatenate([a, b], axis=-1))


def test_alfm_matches_eqs_1_2_by_hand():
    a, b = feat(3, 4, 2, b=1) * 0.3, feat(3, 4, 2, b=1) * 0.3
    layer = ALFM()
    layer([a, b])
    layer.theta.assign(0.7)
    f = np.concatenate([a, b], -1).reshape(12, 4).T  # NC x HW
    e = f @ f.T
    w = np.exp(e - e.max(1, keepdims=True))
    w /= w.sum(1, keepdims=True)
    expected = (0.7 * (w @ f) + f).T.reshape(1, 3, 4, 4)
    np.testing.assert_allclose(layer([a, b]).numpy(), expected, atol=1e-5)


def test_acfm_is_identity_at_alpha_zero_and_eq_3_by_hand():
    x = feat(4, 5, 3, b=1)
    layer = ACFM()
    np.testing.assert_array_equal(run_layer_serialization_test(layer, x), x)
    ks = RNG.standard_normal((3, 3)).astype("float32")
    kc = np.array([0.2, -0.5, 0.3], "float32")
    layer.set_weights([ks, np.float32(0.1), kc, np.float32(-0.2), np.float32(0.8)])
    assert layer.count_params() == 15
    pad = np.pad(x[0], [(1, 1), (1, 1), (0, 0)])
    s = np.zeros_like(x[0])
    for i in range(3):
        for j in range(3):
            s += ks[i, j] * pad[i:i + 4, j:j + 5]
    s += 0.1
    sp = np.pad(s, [(0, 0), (0, 0), (1, 1)])
    t = kc[0] * sp[..., :-2] + kc[1] * sp[..., 1:-1] + kc[2] * sp[..., 2:] - 0.2
    expected = x[0] + 0.8 / (1 + np.exp(-t)) * x[0]
    np.testing.assert_allclose(layer(x).numpy()[0], expected, atol=1e-5)
