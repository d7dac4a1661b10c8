"""Losses against closed forms."""
import numpy as np
import pytest

from tests.helpers import random_images
from tfdeblur.losses import MultiScaleLoss, downsample_target


def test_multiscale_loss_closed_form_for_a_constant_error():
    """alpha_i / T_i * ||d||^2 with d constant is alpha_i * d^2 per scale."""
    y = random_images(2, 16, 16)
    d = 0.1
    preds = {
        "image": y + d,
        "scale_2": downsample_target(y, np.zeros((2, 8, 8, 3)), 2).numpy() + d,
        "scale_3": downsample_target(y, np.zeros((2, 4, 4, 3)), 4).numpy() - d,
    }
    loss = MultiScaleLoss({"scale_3": 1.0, "scale_2": 1.0, "image": 5.0})(y, preds)
    np.testing.assert_allclose(float(loss), (1 + 1 + 5) * d * d, rtol=1e-5)


def test_downsample_target_is_a_box_filter_of_the_padded_image():
    y = random_images(1, 7, 10)  # padded to 8x12 for a 4x6 coarse output
    got = downsample_target(y, np.zeros((1, 4, 6, 3)), 2).numpy()
    padded = np.pad(y, [(0, 0), (0, 1), (0, 2), (0, 0)], mode="symmetric")
    expected = padded.reshape(1, 4, 2, 6, 2, 3).mean(axis=(2, 4))
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_l1_and_charbonnier_kinds():
    y = random_images(1, 8, 8)
    assert float(MultiScaleLoss(kind="l1")(y, {"image": y - 0.2})) == pytest.approx(0.2, rel=1e-5)
    charb = float(MultiScaleLoss(kind="charbonnier")(y, {"image": y}))
    assert charb == pytest.approx(1e-3, rel=1e-3)


def test_loss_names_a_missing_output():
    with pytest.raises(KeyError, match="scale_2"):
        MultiScaleLoss({"scale_2": 1.0})(random_images(1, 8, 8), {"image": random_images(1, 8, 8)})


@pytest.mark.parametrize("kwargs,message", [
    (dict(kind="l3"), "kind must be one of"),
    (dict(weights={"scale_x": 1.0}), "weights keys must be 'image' or 'scale_<k>'"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MultiScaleLoss(**kwargs)


def test_serialization_round_trip():
    import keras

    loss = MultiScaleLoss({"image": 5.0, "scale_2": 1.0}, kind="l1")
    revived = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert revived.get_config() == loss.get_config()
