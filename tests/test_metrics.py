"""Metrics against closed forms, scikit-image, tf.image and the GoPro golden pair."""
import math
import os
import pathlib
import subprocess
import sys
import textwrap

import cv2
import keras
import numpy as np
import pytest
import tensorflow as tf
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from tfdeblur import io, metrics

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = pathlib.Path(os.environ.get("TFDEBLUR_SHARED", REPO.parent / "shared"))
GOPRO = SHARED / "data" / "gopro_pair"
FRAME = "GOPR0384_11_00-000001"

# ../shared/README.md, "Golden values for data/gopro_pair/": PSNR (dB) and
# per-channel SSIM as tf.image.ssim reads it, both to 3 decimals.
GOLDEN = {
    "blur": (24.050, 0.717),
    "out_dmphn1248": (30.823, 0.899),
    "out_sdnet4": (31.610, 0.909),
    "out_hinet": (33.190, 0.930),
}
# Same README: MATLAB's RGB ssim reads "roughly 0.80" (blur) and "0.95" (HINet).
GOLDEN_MATLAB = {"blur": 0.80, "out_hinet": 0.95}


def _skimage_ssim(a, b):
    return structural_similarity(
        a,
        b,
        channel_axis=-1 if a.ndim == 3 else None,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=255,
    )


def _random_pair(rng, shape=(37, 45, 3), noise=20.0):
    a = rng.integers(0, 256, shape).astype(np.uint8)
    b = np.clip(a + rng.normal(0, noise, shape), 0, 255).astype(np.uint8)
    return a, b


def _smooth_pair(rng, shape=(64, 80, 3)):
    base = cv2.GaussianBlur(rng.random(shape), (0, 0), 6)
    base = (base - base.min()) / (base.max() - base.min())
    other = base + 0.03 * cv2.GaussianBlur(rng.normal(size=shape), (0, 0), 2)
    return io.to_uint8(base), io.to_uint8(np.clip(other, 0, 1))


def _quantized_batch(rng, n=4, size=(24, 28)):
    """Float batches on the k/255 grid, so numpy's uint8 view is lossless."""
    a, b = zip(*(_random_pair(rng, size + (3,)) for _ in range(n)))
    return np.stack(a).astype(np.float32) / 255, np.stack(b).astype(np.float32) / 255


# --------------------------------------------------------------------- numpy


@pytest.mark.parametrize("d", [1, 5, 50])
def test_psnr_constant_offset_closed_form(d):
    a = np.full((10, 12, 3), 100, np.uint8)
    b = a + np.uint8(d)
    assert metrics.psnr(a, b) == pytest.approx(10 * math.log10(255**2 / d**2), abs=1e-9)


def test_psnr_matches_skimage_on_random_images():
    a, b = _random_pair(np.random.default_rng(0))
    assert metrics.psnr(a, b) == pytest.approx(peak_signal_noise_ratio(a, b, data_range=255), abs=1e-9)


def test_psnr_of_identical_images_is_inf():
    a, _ = _random_pair(np.random.default_rng(1))
    assert metrics.psnr(a, a) == math.inf


def test_float_inputs_are_scored_as_rounded_uint8():
    rng = np.random.default_rng(2)
    a, b = _random_pair(rng)
    # Off-grid floats within half a gray level of a and b round back to them.
    fa = (a + rng.uniform(-0.49, 0.49, a.shape)) / 255
    fb = (b + rng.uniform(-0.49, 0.49, b.shape)) / 255
    assert metrics.psnr(fa, fb) == metrics.psnr(a, b)
    assert metrics.ssim(fa, fb) == metrics.ssim(a, b)


@pytest.mark.parametrize("make", [_random_pair, _smooth_pair], ids=["random", "smooth"])
def test_ssim_matches_skimage(make):
    # skimage filters with reflect padding, then averages after cropping
    # (win_size - 1) // 2 = 5 pixels per side: exactly the 'valid' windows of
    # tf.image.ssim, so the two conventions coincide.
    a, b = make(np.random.default_rng(3))
    assert metrics.ssim(a, b) == pytest.approx(_skimage_ssim(a, b), abs=1e-4)


def test_ssim_grayscale_matches_skimage():
    a, b = _random_pair(np.random.default_rng(4), shape=(30, 33))
    assert metrics.ssim(a, b) == pytest.approx(_skimage_ssim(a, b), abs=1e-4)


def test_ssim_is_not_the_full_image_reflect_padded_mean():
    # The 'valid' convention is a real choice: averaging skimage's uncropped
    # map (reflect-padded border included) gives a different number.
    a, b = _random_pair(np.random.default_rng(5), shape=(24, 24, 3), noise=60.0)
    b[:, 8:] = a[:, 8:]  # the border carries a larger share of the damage
    _, full_map = structural_similarity(
        a, b, channel_axis=-1, gaussian_weights=True, sigma=1.5,
        use_sample_covariance=False, data_range=255, full=True,
    )
    assert abs(metrics.ssim(a, b) - full_map.mean()) > 0.01
    assert metrics.ssim(a, b) == pytest.approx(full_map[5:-5, 5:-5].mean(), abs=1e-9)


def test_ssim_matches_tf_image_ssim():
    rng = np.random.default_rng(6)
    a, b = _quantized_batch(rng)
    expected = tf.image.ssim(a, b, max_val=1.0).numpy()
    got = [metrics.ssim(x, y) for x, y in zip(a, b)]
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_ssim_of_identical_images_is_one():
    a, _ = _random_pair(np.random.default_rng(7))
    assert metrics.ssim(a, a) == pytest.approx(1.0, abs=1e-12)
    assert metrics.ssim_matlab_rgb(a, a) == pytest.approx(1.0, abs=1e-12)


def test_ssim_matlab_rgb_single_channel_is_replicate_padded_2d_ssim():
    # With one channel the 3-D filter reduces to the 2-D one, so this is plain
    # Gaussian SSIM with replicate padding and no crop, from skimage's pieces.
    a, b = _random_pair(np.random.default_rng(8), shape=(40, 40))
    _, full_map = structural_similarity(
        np.pad(a, 5, mode="edge"), np.pad(b, 5, mode="edge"), gaussian_weights=True,
        sigma=1.5, use_sample_covariance=False, data_range=255, full=True,
    )
    assert metrics.ssim_matlab_rgb(a, b) == pytest.approx(full_map[5:-5, 5:-5].mean(), abs=1e-9)


@pytest.mark.parametrize(
    "a, b, match",
    [
        (np.zeros((20, 20, 3), np.uint8), np.zeros((20, 21, 3), np.uint8), "same shape"),
        (np.zeros((10, 20, 3), np.uint8), np.zeros((10, 20, 3), np.uint8), "at least 11x11"),
        (np.zeros((20, 20, 3), np.int32), np.zeros((20, 20, 3), np.int32), "uint8 or float"),
    ],
)
def test_ssim_rejects_bad_inputs(a, b, match):
    with pytest.raises(ValueError, match=match):
        metrics.ssim(a, b)


# ---------------------------------------------------------------- tf / Keras


def test_tf_helpers_are_per_image_and_match_numpy():
    a, b = _quantized_batch(np.random.default_rng(9))
    psnr = tf.function(metrics.psnr_tf)(a, b).numpy()
    ssim = tf.function(metrics.ssim_tf)(a, b).numpy()
    assert psnr.shape == ssim.shape == (len(a),)
    np.testing.assert_allclose(psnr, [metrics.psnr(x, y) for x, y in zip(a, b)], atol=1e-3)
    np.testing.assert_allclose(ssim, [metrics.ssim(x, y) for x, y in zip(a, b)], atol=1e-4)


@pytest.mark.parametrize(
    "cls, fn, tol", [(metrics.PSNR, metrics.psnr, 1e-3), (metrics.SSIM, metrics.ssim, 1e-4)]
)
def test_keras_metric_is_the_mean_over_all_images_seen(cls, fn, tol):
    rng = np.random.default_rng(10)
    a1, b1 = _quantized_batch(rng, n=3)
    a2, b2 = _quantized_batch(rng, n=2)
    m = cls()
    m.update_state(b1, a1)
    m.update_state(b2, a2)
    expected = np.mean([fn(x, y) for x, y in zip(np.concatenate([a1, a2]), np.concatenate([b1, b2]))])
    assert float(m.result()) == pytest.approx(expected, abs=tol)
    m.reset_state()
    assert float(m.result()) == 0.0
    m.update_state(b2, a2)
    assert float(m.result()) == pytest.approx(np.mean([fn(x, y) for x, y in zip(a2, b2)]), abs=tol)


@pytest.mark.parametrize("cls", [metrics.PSNR, metrics.SSIM])
def test_keras_metric_accepts_bfloat16_predictions_and_sample_weight(cls):
    a, b = _quantized_batch(np.random.default_rng(11), n=2)
    per_image = (metrics.psnr_tf if cls is metrics.PSNR else metrics.ssim_tf)(a, b).numpy()
    m = cls()
    m.update_state(tf.constant(a), tf.cast(b, tf.bfloat16), sample_weight=[1.0, 0.0])
    assert m.result().dtype == "float32"
    # bfloat16 keeps 8 bits of mantissa: values move by up to ~1/256.
    tol = 0.5 if cls is metrics.PSNR else 0.02
    assert float(m.result()) == pytest.approx(per_image[0], abs=tol)


def test_keras_metric_max_val_scales_the_range():
    a, b = _quantized_batch(np.random.default_rng(12), n=2)
    m1, m255 = metrics.SSIM(), metrics.SSIM(max_val=255.0)
    m1.update_state(a, b)
    m255.update_state(a * 255, b * 255)
    assert float(m255.result()) == pytest.approx(float(m1.result()), abs=1e-5)


@pytest.mark.parametrize("cls", [metrics.PSNR, metrics.SSIM])
def test_keras_metric_config_round_trip(cls):
    m = cls(max_val=255.0, name="val_quality")
    config = m.get_config()
    assert config == {"max_val": 255.0, "name": "val_quality", "dtype": "float32"}
    clone = cls.from_config(config)
    assert (clone.max_val, clone.name) == (255.0, "val_quality")
    serialized = keras.saving.serialize_keras_object(m)
    assert serialized["registered_name"] == f"tfdeblur>{cls.__name__}"
    restored = keras.saving.deserialize_keras_object(serialized)
    assert type(restored) is cls and restored.get_config() == config


def test_compiled_model_with_metrics_saves_and_loads(tmp_path):
    a, b = _quantized_batch(np.random.default_rng(13), n=4, size=(16, 16))
    inputs = keras.Input((16, 16, 3))
    model = keras.Model(inputs, keras.layers.Identity()(inputs))
    model.compile(loss="mae", metrics=[metrics.PSNR(), metrics.SSIM()])
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    scores = loaded.evaluate(a, b, batch_size=2, verbose=0, return_dict=True)
    assert scores["psnr"] == pytest.approx(np.mean([metrics.psnr(x, y) for x, y in zip(a, b)]), abs=1e-3)
    assert scores["ssim"] == pytest.approx(np.mean([metrics.ssim(x, y) for x, y in zip(a, b)]), abs=1e-4)


def test_keras_metric_sums_across_replicas():
    # Needs two logical CPUs, which must be configured before TensorFlow
    # initialises its devices: hence a fresh interpreter. The replicas see 3
    # and 2 images, so averaging per-replica means would give a wrong answer.
    script = textwrap.dedent(
        """
        import numpy as np, tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from tfdeblur import metrics
        rng = np.random.default_rng(0)
        a = rng.random((5, 16, 16, 3)).astype(np.float32)
        b = np.clip(a + rng.normal(0, 0.1 * np.arange(1, 6)[:, None, None, None], a.shape), 0, 1).astype(np.float32)
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        with strategy.scope():
            m = metrics.PSNR()
        parts = [(a[:3], b[:3]), (a[3:], b[3:])]
        values = strategy.experimental_distribute_values_from_function(
            lambda ctx: parts[ctx.replica_id_in_sync_group])
        tf.function(lambda v: strategy.run(lambda p: m.update_state(p[0], p[1]), args=(v,)))(values)
        print("RESULT", float(m.result()), float(np.mean(metrics.psnr_tf(a, b))))
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(l for l in proc.stdout.splitlines() if l.startswith("RESULT"))
    got, expected = map(float, line.split()[1:])
    assert got == pytest.approx(expected, abs=1e-4)


# -------------------------------------------------------------------- golden


def _gopro(name):
    path = GOPRO / f"{FRAME}_{name}.png"
    if not path.exists():
        pytest.skip(f"golden GoPro pair not found at {GOPRO} (set TFDEBLUR_SHARED to the shared folder)")
    return io.to_uint8(io.read_image(path))


@pytest.fixture(scope="module")
def gopro_sharp():
    return _gopro("sharp")


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_gopro_golden_psnr_and_ssim(name, gopro_sharp):
    img = _gopro(name)
    want_psnr, want_ssim = GOLDEN[name]
    assert metrics.psnr(img, gopro_sharp) == pytest.approx(want_psnr, abs=0.005)
    # tf.image.ssim, which the README's column names, reads up to 5e-4 above
    # the float64 value (it computes in float32); 0.0015 covers both.
    assert metrics.ssim(img, gopro_sharp) == pytest.approx(want_ssim, abs=0.0015)
    got_tf = float(metrics.ssim_tf(img[None] / 255, gopro_sharp[None] / 255)[0])
    assert got_tf == pytest.approx(want_ssim, abs=0.0015)


@pytest.mark.parametrize("name", sorted(GOLDEN_MATLAB))
def test_gopro_golden_matlab_ssim(name, gopro_sharp):
    # The README gives two decimals ("roughly"): allow 0.01.
    assert metrics.ssim_matlab_rgb(_gopro(name), gopro_sharp) == pytest.approx(
        GOLDEN_MATLAB[name], abs=0.01
    )
