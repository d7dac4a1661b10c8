"""Tests of the blur kernels, the blur model and the embedded synthetic dataset.

Expected values come from closed forms (moments of a Gaussian, area of a
disk, a trapezoid line, a brute-force convolution, a linear-light edge),
from the 16-bit PNG copies of the Levin kernels, or from documented
contracts (seeds, splits), never from the code's own earlier output.
"""
import math
import os
from pathlib import Path

import numpy as np
import pytest

from tfdeblur.datasets import kernels
from tfdeblur.datasets import synthetic

SHARED = Path(os.environ.get("TFDEBLUR_SHARED", Path(__file__).resolve().parents[1] / ".." / "shared"))
LEVIN_NPZ = SHARED / "data" / "kernels" / "levin09.npz"
LEVIN_PNG = SHARED / "data" / "kernels" / "levin09"
needs_levin = pytest.mark.skipif(
    not LEVIN_NPZ.exists(), reason=f"shared data not found at {SHARED} (set TFDEBLUR_SHARED)"
)


def moments(k):
    """Centroid (x, y_up) and covariance of a kernel, y pointing up."""
    c = k.shape[0] // 2
    yy, xx = np.mgrid[-c:c + 1, -c:c + 1].astype(np.float64)
    yy = -yy
    k = k.astype(np.float64)
    mx, my = (k * xx).sum(), (k * yy).sum()
    dx, dy = xx - mx, yy - my
    cov = np.array([[(k * dx * dx).sum(), (k * dx * dy).sum()],
                    [(k * dx * dy).sum(), (k * dy * dy).sum()]])
    return np.array([mx, my]), cov


def rotated_cov(sx, sy, theta_deg):
    t = math.radians(theta_deg)
    r = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    return r @ np.diag([sx * sx, sy * sy]) @ r.T


def seeded_kernels():
    rng = np.random.default_rng(0)
    out = [("trajectory", kernels.trajectory_kernel(rng)) for _ in range(20)]
    out += [("trajectory_size", kernels.trajectory_kernel(rng, size=15, length=40))]
    out += [("random", kernels.random_kernel(rng)) for _ in range(40)]
    out += [
        ("linear", kernels.linear_motion_kernel(12.3, 17)),
        ("linear_short", kernels.linear_motion_kernel(0.5, 0)),
        ("gaussian", kernels.gaussian_kernel(2.0)),
        ("gaussian_aniso", kernels.gaussian_kernel(3.0, 0.7, 40)),
        ("gaussian_zero", kernels.gaussian_kernel(0.0)),
        ("defocus", kernels.defocus_kernel(4.5)),
        ("defocus_soft", kernels.defocus_kernel(3.0, soft_edge=1.5)),
        ("defocus_tiny", kernels.defocus_kernel(0.2)),
    ]
    return out


@pytest.mark.parametrize("name,k", seeded_kernels(), ids=lambda v: v if isinstance(v, str) else "")
def test_kernel_is_normalized_odd_square(name, k):
    assert k.dtype == np.float32
    assert k.ndim == 2 and k.shape[0] == k.shape[1] and k.shape[0] % 2 == 1, k.shape
    assert k.min() >= 0
    assert abs(float(k.sum(dtype=np.float64)) - 1.0) < 1e-5


def test_blurring_a_delta_gives_the_unflipped_kernel_centred_on_it():
    # True convolution: out[y + i - c, x + j - c] = k[i, j] for a unit
    # impulse at (y, x). An L-shaped kernel tells this apart from the
    # flipped kernel that cv2.filter2D's correlation would give.
    k = np.zeros((5, 5), np.float32)
    k[0, 2], k[1, 2], k[2, 2], k[2, 3], k[2, 4] = 0.4, 0.2, 0.1, 0.2, 0.1
    img = np.zeros((21, 23, 3), np.float32)
    img[9, 12] = 1.0
    out = synthetic.blur_image(img, k, None, noise_sigma=0, gamma=1, quantize=False)
    expected = np.zeros_like(img)
    expected[7:12, 10:15] = k[..., None]
    np.testing.assert_allclose(out, expected, atol=1e-6)
    assert not np.allclose(out[7:12, 10:15, 0], k[::-1, ::-1])


def test_blur_matches_brute_force_convolution_with_symmetric_border():
    rng = np.random.default_rng(3)
    img = rng.random((17, 19)).astype(np.float32)
    k = kernels.trajectory_kernel(rng, size=9, length=12)
    out = synthetic.blur_image(img, k, None, noise_sigma=0, gamma=1, quantize=False)
    c = k.shape[0] // 2
    # cv2.BORDER_REFLECT repeats the edge pixel: numpy's "symmetric".
    pad = np.pad(img.astype(np.float64), c, mode="symmetric")
    ref = np.zeros(img.shape)
    for i in range(k.shape[0]):
        for j in range(k.shape[1]):
            # sum_ij k[i, j] * img[y - (i - c), x - (j - c)]
            ref += k[i, j] * pad[2 * c - i:2 * c - i + img.shape[0], 2 * c - j:2 * c - j + img.shape[1]]
    np.testing.assert_allclose(out, ref, atol=1e-5)


def test_blur_is_done_in_linear_light():
    img = np.zeros((5, 8, 3), np.float32)
    img[:, 4:] = 1.0
    k = np.zeros((3, 3), np.float32)
    k[1] = 1 / 3
    out = synthetic.blur_image(img, k, None, noise_sigma=0, gamma=2.2, quantize=False)
    # The dark pixel next to the edge averages {0, 0, 1} in linear light.
    np.testing.assert_allclose(out[:, 3], (1 / 3) ** (1 / 2.2), rtol=1e-5)
    np.testing.assert_allclose(out[:, 4], (2 / 3) ** (1 / 2.2), rtol=1e-5)
    np.testing.assert_allclose(out[:, :3], 0, atol=1e-6)


def test_noise_sigma_and_quantization():
    img = np.full((64, 64, 3), 0.5, np.float32)
    delta = kernels.gaussian_kernel(0.0)
    noisy = synthetic.blur_image(img, delta, np.random.default_rng(0), noise_sigma=0.05,
                                 gamma=1, quantize=False)
    assert abs(noisy.std() - 0.05) < 0.003
    q = synthetic.blur_image(img, delta, np.random.default_rng(0), noise_sigma=0.05, gamma=1)
    np.testing.assert_allclose(q * 255, np.round(q * 255), atol=1e-3)
    np.testing.assert_allclose(q, np.round(noisy * 255) / 255, atol=1e-6)


@pytest.mark.parametrize("length", [5, 9, 15])
def test_linear_motion_at_zero_degrees_is_a_horizontal_trapezoid(length):
    k = kernels.linear_motion_kernel(length, 0)
    c = length // 2
    assert k.shape == (length, length)
    expected = np.zeros((length, length))
    expected[c] = 1.0 / (length - 1)
    expected[c, [0, -1]] = 0.5 / (length - 1)
    np.testing.assert_allclose(k, expected, atol=1e-4)


@pytest.mark.parametrize("angle", [0, 30, 45, 90, 135, 170])
def test_linear_motion_orientation(angle):
    k = kernels.linear_motion_kernel(15, angle)
    centre, cov = moments(k)
    np.testing.assert_allclose(centre, 0, atol=1e-6)
    found = math.degrees(0.5 * math.atan2(2 * cov[0, 1], cov[0, 0] - cov[1, 1])) % 180
    assert min(abs(found - angle), 180 - abs(found - angle)) < 1.0
    # Along the line: uniform on +-(L-1)/2 (variance h^2/3) plus the
    # bilinear splat's own 1/6 per axis at most.
    along = np.linalg.eigvalsh(cov)[-1]
    assert 49 / 3 <= along <= 49 / 3 + 1 / 3


def test_linear_motion_vertical_column():
    k = kernels.linear_motion_kernel(7, 90)
    assert np.count_nonzero(k[:, 3]) == 7
    assert np.count_nonzero(np.delete(k, 3, axis=1)) == 0


@pytest.mark.parametrize("sx,sy,theta", [(2.5, None, 0), (3.0, 1.5, 30), (1.2, 2.0, 100)])
def test_gaussian_second_moments(sx, sy, theta):
    s = max(sx, sy or sx)
    k = kernels.gaussian_kernel(sx, sy, theta, size=2 * math.ceil(5 * s) + 1)
    centre, cov = moments(k)
    np.testing.assert_allclose(centre, 0, atol=1e-6)
    np.testing.assert_allclose(cov, rotated_cov(sx, sy or sx, theta), rtol=0.01, atol=0.01 * s * s)


def test_gaussian_default_support_is_three_sigma():
    k = kernels.gaussian_kernel(2.0)
    assert k.shape == (13, 13)


@pytest.mark.parametrize("radius", [4.0, 6.5, 10.0])
def test_defocus_disk_area(radius):
    k = kernels.defocus_kernel(radius)
    area = math.pi * radius ** 2
    # Interior pixels are fully covered, so each holds 1 / (disk area).
    assert abs(float(k.max()) * area - 1) < 0.01
    # Pixels at least half covered approximate the disk's area.
    assert abs(np.count_nonzero(k >= 0.5 * k.max()) - area) < 0.05 * area
    centre, cov = moments(k)
    np.testing.assert_allclose(centre, 0, atol=1e-6)
    # A uniform disk has variance r^2 / 4 per axis; area sampling (a box
    # the size of a pixel) adds 1 / 12.
    np.testing.assert_allclose(np.diag(cov), radius ** 2 / 4 + 1 / 12, rtol=0.015)


def test_defocus_soft_edge_keeps_area():
    r, s = 6.0, 2.0
    k = kernels.defocus_kernel(r, soft_edge=s)
    # A linear ramp of width s centred on r: area pi (r^2 + s^2 / 12).
    assert abs(float(k.max()) * math.pi * (r * r + s * s / 12) - 1) < 0.01
    assert k.shape == (15, 15)


def test_trajectory_kernel_is_centred_and_deterministic():
    for seed in range(10):
        k = kernels.trajectory_kernel(np.random.default_rng(seed))
        centre, _ = moments(k)
        np.testing.assert_allclose(centre, 0, atol=1e-3)
        np.testing.assert_array_equal(k, kernels.trajectory_kernel(np.random.default_rng(seed)))
    assert not np.array_equal(kernels.trajectory_kernel(np.random.default_rng(0)),
                              kernels.trajectory_kernel(np.random.default_rng(1)))


def test_trajectory_kernel_sizes_cover_small_to_max():
    rng = np.random.default_rng(0)
    sizes = [kernels.trajectory_kernel(rng).shape[0] for _ in range(100)]
    assert min(sizes) <= 7 and max(sizes) == 31
    assert kernels.trajectory_kernel(rng, size=21, length=80).shape == (21, 21)
    assert max(kernels.trajectory_kernel(rng, max_size=11).shape[0] for _ in range(20)) <= 11


def test_random_kernel_size_distribution():
    rng = np.random.default_rng(0)
    sizes = np.array([kernels.random_kernel(rng).shape[0] for _ in range(200)])
    assert sizes.min() <= 7 and sizes.max() >= 31
    assert sizes.max() <= 31
    # Biased to small kernels: extent median 3 + 28 / 2^3 = 6.5 px.
    assert 5 <= np.median(sizes) <= 11
    uniform = [kernels.random_kernel(rng, size_bias=1.0).shape[0] for _ in range(200)]
    assert np.median(uniform) > np.median(sizes) + 4
    assert max(kernels.random_kernel(rng, max_size=15).shape[0] for _ in range(50)) <= 15


def test_random_kernel_probs():
    rng = np.random.default_rng(0)
    k = kernels.random_kernel(rng, probs={"defocus": 1.0})
    # A disk: flat top, rotationally symmetric.
    np.testing.assert_allclose(k, k.T, atol=1e-7)
    with pytest.raises(ValueError, match="blur"):
        kernels.random_kernel(rng, probs={"blur": 1.0})


@needs_levin
def test_levin_kernels_load_from_npz_and_png():
    from_npz = kernels.load_kernels(LEVIN_NPZ)
    from_png = kernels.load_kernels(LEVIN_PNG)
    assert len(from_npz) == 8 and len(from_png) == 8
    # The published sizes, all odd already.
    assert [k.shape[0] for k in from_npz] == [19, 17, 15, 27, 13, 21, 23, 23]
    for a, b in zip(from_npz, from_png):
        assert a.dtype == np.float32 and abs(float(a.sum()) - 1) < 1e-5
        # The PNGs are 16-bit, peak-normalized copies of the same kernels.
        np.testing.assert_allclose(b, a, atol=1e-4 * float(a.max()))
    single = kernels.load_kernels(LEVIN_PNG / "k1.png")
    np.testing.assert_allclose(single[0], from_png[0])


def test_load_kernels_pads_to_odd_square(tmp_path):
    path = tmp_path / "k.npz"
    np.savez(path, a=np.ones((2, 4)), b=np.array([[0.0, 2.0, 0.0]]))
    a, b = kernels.load_kernels(path)
    assert a.shape == (5, 5) and b.shape == (3, 3)
    np.testing.assert_allclose(a.sum(), 1, atol=1e-6)
    np.testing.assert_allclose(b[1, 1], 1)


def write_bytes(path, data):
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("make", [
    lambda d: d / "missing.npz",
    lambda d: write_bytes(d / "garbage.npz", b"not a zip file"),
    lambda d: write_bytes(d / "garbage.png", b"not a png"),
    lambda d: write_bytes(d / "kernel.txt", b"1 2 3"),
    lambda d: (np.savez(d / "empty.npz"), d / "empty.npz")[1],
    lambda d: (np.savez(d / "neg.npz", k=-np.ones((3, 3))), d / "neg.npz")[1],
    lambda d: (np.savez(d / "zero.npz", k=np.zeros((3, 3))), d / "zero.npz")[1],
    lambda d: (np.savez(d / "nan.npz", k=np.full((3, 3), np.nan)), d / "nan.npz")[1],
    lambda d: (np.savez(d / "cube.npz", k=np.ones((3, 3, 2))), d / "cube.npz")[1],
    lambda d: (d / "no_pngs").mkdir() or d / "no_pngs",
], ids=["missing", "bad_npz", "bad_png", "bad_ext", "empty", "negative", "zero", "nan", "3d",
        "empty_dir"])
def test_load_kernels_errors_are_one_line_and_name_the_file(tmp_path, make):
    path = make(tmp_path)
    with pytest.raises(ValueError) as info:
        kernels.load_kernels(path)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message


def test_power_law_radii_follow_r_to_the_minus_3():
    rng = np.random.default_rng(0)
    r = synthetic._power_law_radii(rng, 200_000, 2.0, 100.0)
    assert r.min() >= 2.0 and r.max() <= 100.0
    # Closed-form tail: P(r > t) = (t^-2 - R^-2) / (r0^-2 - R^-2).
    for t in (3.0, 6.0, 20.0):
        tail = (t ** -2 - 100.0 ** -2) / (2.0 ** -2 - 100.0 ** -2)
        assert abs((r > t).mean() - tail) < 0.005


def test_dead_leaves_scene():
    img = synthetic.dead_leaves(np.random.default_rng(0), 96, 80)
    assert img.shape == (96, 80, 3) and img.dtype == np.float32
    assert img.min() >= 0 and img.max() <= 1
    np.testing.assert_allclose(img * 255, np.round(img * 255), atol=1e-3)
    # Occluding leaves: many distinct colours, mostly flat regions with
    # sharp edges, i.e. heavy-tailed (high-kurtosis) gradients.
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 100
    dx = np.diff(img.mean(axis=2), axis=1).ravel()
    assert np.mean(np.abs(dx) < 1e-6) > 0.3
    assert np.mean(dx ** 4) / np.mean(dx ** 2) ** 2 > 6
    np.testing.assert_array_equal(img, synthetic.dead_leaves(np.random.default_rng(0), 96, 80))


def test_make_pair_is_determined_by_seed():
    blur, sharp = synthetic.make_pair(5, 48)
    assert blur.shape == sharp.shape == (48, 48, 3)
    assert blur.dtype == sharp.dtype == np.float32
    for x in (blur, sharp):
        assert x.min() >= 0 and x.max() <= 1
        np.testing.assert_allclose(x * 255, np.round(x * 255), atol=1e-3)
    again = synthetic.make_pair(5, 48)
    np.testing.assert_array_equal(blur, again[0])
    np.testing.assert_array_equal(sharp, again[1])
    other = synthetic.make_pair(6, 48)
    assert not np.array_equal(sharp, other[0]) and not np.array_equal(blur, other[0])
    assert synthetic.make_pair(7, (40, 56))[0].shape == (40, 56, 3)


def test_make_pair_blur_is_the_sharp_scene_blurred():
    # With no noise, an identity kernel leaves the sharp image unchanged.
    blur, sharp = synthetic.make_pair(3, 32, kernel_probs={"gaussian": 1.0}, noise_range=(0, 0),
                                      max_kernel_size=1)
    np.testing.assert_allclose(blur, sharp, atol=1e-6)


def test_synthetic_dataset_val_and_train():
    import tensorflow as tf

    val = synthetic.synthetic_dataset("val", crop=32)
    assert val.element_spec == (tf.TensorSpec((32, 32, 3), tf.float32),) * 2
    first = [(b.numpy(), s.numpy()) for b, s in val]
    assert len(first) == 16
    second = [(b.numpy(), s.numpy()) for b, s in synthetic.synthetic_dataset("val", crop=32)]
    for (b1, s1), (b2, s2) in zip(first, second):
        np.testing.assert_array_equal(b1, b2)
        np.testing.assert_array_equal(s1, s2)
    for b, s in first:
        assert b.shape == s.shape == (32, 32, 3)
        assert b.min() >= 0 and b.max() <= 1 and s.min() >= 0 and s.max() <= 1
    # Element i is make_pair((split tag, seed, i)), as documented.
    np.testing.assert_array_equal(first[3][1], synthetic.make_pair((synthetic.SPLIT_TAGS["val"], 0, 3), 32)[1])

    train = synthetic.synthetic_dataset("train", crop=32)
    assert train.cardinality().numpy() == tf.data.INFINITE_CARDINALITY
    train_sharp = [s.numpy() for _, s in train.take(4)]
    for t in train_sharp:
        assert all(not np.array_equal(t, s) for _, s in first)
    assert not np.array_equal(train_sharp[0], train_sharp[1])
    other_seed = [s.numpy() for _, s in synthetic.synthetic_dataset("train", crop=32, seed=1).take(1)]
    assert not np.array_equal(other_seed[0], train_sharp[0])
    assert synthetic.synthetic_dataset("train", crop=32, num_images=3).cardinality().numpy() == 3
    assert synthetic.synthetic_dataset("val", crop=32, num_images=4).cardinality().numpy() == 4


def test_synthetic_dataset_rejects_unknown_split():
    with pytest.raises(ValueError, match="split must be one of"):
        synthetic.synthetic_dataset("test")
