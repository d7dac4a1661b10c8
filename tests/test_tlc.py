"""Test-time Local Converter: local pooling against a brute-force numpy
window mean (TLC's shifted-window semantics), and `to_local` on FDDN and
MSFS-Net: equal to the original at the training size, different on larger
inputs, the same weight objects; bad input and the no-pooling notice."""
import keras
import numpy as np
import pytest

import tfdeblur.models as models
from tests.helpers import random_images, run_cli_error, run_layer_serialization_test
from tfdeblur.layers.local_pooling import LocalAveragePooling2D, LocalContrastPooling
from tfdeblur.models.fddn import FDDN
from tfdeblur.models.msfs import MSFSNet
from tfdeblur.tlc import NoPoolingError, apply_tlc_option, check_window_fits, poolable_layers, to_local


def brute_box(x, k, reduce=np.mean):
    """Each position: `reduce` over the k x k window shifted to lie inside the map."""
    b, h, w, c = x.shape
    out = np.empty_like(x)
    kh, kw = min(k, h), min(k, w)
    for i in range(h):
        top = min(max(i - (kh - 1) // 2, 0), h - kh)
        for j in range(w):
            left = min(max(j - (kw - 1) // 2, 0), w - kw)
            out[:, i, j] = reduce(x[:, top:top + kh, left:left + kw], axis=(1, 2))
    return out


@pytest.mark.parametrize("k", [1, 3, 4, 7, 50])
def test_local_average_pooling_is_the_shifted_window_mean(k):
    x = random_images(2, 9, 13, seed=k)
    np.testing.assert_allclose(LocalAveragePooling2D(k)(x).numpy(), brute_box(x, k), atol=1e-6)


def test_window_covering_the_map_is_global_pooling_and_contrast_pooling_matches():
    x = random_images(1, 6, 5, seed=1)
    y = LocalAveragePooling2D(8)(x).numpy()
    np.testing.assert_allclose(y, np.broadcast_to(x.mean(axis=(1, 2), keepdims=True), x.shape), atol=1e-6)
    contrast = LocalContrastPooling(3)(x).numpy()
    np.testing.assert_allclose(contrast, brute_box(x, 3, np.std) + brute_box(x, 3), atol=1e-5)
    run_layer_serialization_test(LocalContrastPooling(3), x)
    with pytest.raises(ValueError, match="window must be a positive integer; got 0"):
        LocalAveragePooling2D(0)


def _randomize_outputs(model):
    """Non-zero output convolutions: the untrained networks are the identity."""
    rng = np.random.default_rng(0)
    for w in model.weights:
        if "image_out" in w.path:
            w.assign(0.1 * rng.standard_normal(w.shape).astype("float32"))
    return model


@pytest.mark.parametrize("build", [
    lambda: MSFSNet(channels=8, latent_blocks=2, reduction=4),
    lambda: FDDN(encoder_channels=(8, 8), latent_channels=8, num_blocks=1, reduction=4),
], ids=["msfs", "fddn"])
def test_local_model_equals_at_training_size_differs_beyond_and_shares_weights(build):
    keras.utils.set_random_seed(0)
    model = _randomize_outputs(build())
    local = to_local(model, train_size=32)
    assert local.tlc == {"train_size": 32, "window": 48, "layers": len(poolable_layers(model))} and local.tlc["layers"] >= 4
    x = random_images(1, 32, 32, seed=2)
    np.testing.assert_allclose(local(x).numpy(), model(x).numpy(), atol=1e-5)
    big = random_images(1, 104, 88, seed=3)
    assert np.abs(local(big).numpy() - model(big).numpy()).max() > 1e-5
    # shared, not copied: the same variable objects, so updates show in both
    assert len(local.weights) == len(model.weights)
    assert all(any(a is b for b in model.weights) for a in local.weights)
    model.weights[0].assign(model.weights[0] * 0.5)
    np.testing.assert_allclose(local(x).numpy(), model(x).numpy(), atol=1e-5)


def test_window_scales_with_the_pooling_layers_resolution():
    model = MSFSNet(channels=8, latent_blocks=1, decoder_blocks=1, reduction=4)
    local = to_local(model, train_size=64, window=80)
    windows = sorted(layer.window for layer in local.layers if isinstance(layer, LocalAveragePooling2D))
    assert windows == [20, 20, 40]  # latent and 1/4 up module at 1/4 (80 / 4); 1/2 up module (80 / 2)


def test_no_pooling_layer_is_a_notice_not_a_silent_no_op():
    model = models.build("mtwdn", widths=(4, 8, 16), blocks_per_level=1)
    with pytest.raises(NoPoolingError, match="has no global pooling layer"):
        to_local(model, 256)
    messages = []
    same, window = apply_tlc_option(model, 256, log=messages.append)
    assert same is model and window is None and messages[0].startswith("notice: ")


def test_bad_windows_are_refused():
    model = MSFSNet(channels=8, latent_blocks=1, reduction=4)
    with pytest.raises(ValueError, match="window must be a positive integer \\(pixels\\); got 0"):
        to_local(model, 32, window=0)
    with pytest.raises(ValueError, match="train_size must be a positive integer"):
        to_local(model, 0)
    with pytest.raises(ValueError, match="a.png: 300x200 is not larger than the TLC window 384"):
        check_window_fits(384, 200, 300, "a.png")


def test_cli_deblur_with_tlc(tmp_path, capsys):
    from tfdeblur import io as tio
    from tfdeblur.cli import main

    model = _randomize_outputs(MSFSNet(channels=8, latent_blocks=1, reduction=4))
    model.save(tmp_path / "m.keras")
    image = tmp_path / "in.png"
    tio.write_image(image, random_images(1, 72, 80)[0])
    assert main(["deblur", "--model", str(tmp_path / "m.keras"), str(image), "--out", str(tmp_path / "out"), "--tlc", "16"]) == 0
    assert "TLC: 3 global pooling layer(s)" in capsys.readouterr().out
    assert tio.read_image(tmp_path / "out" / "in.png").shape == (72, 80, 3)
    base = ["deblur", "--model", str(tmp_path / "m.keras"), str(image), "--out", str(tmp_path / "o2")]
    assert "not larger than the TLC window 96" in run_cli_error(capsys, base + ["--tlc", "64"])
    assert "--tlc-window must be a positive integer" in run_cli_error(capsys, base + ["--tlc", "16", "--tlc-window", "0"])
    assert "--tlc-window needs --tlc" in run_cli_error(capsys, base + ["--tlc-window", "20"])
