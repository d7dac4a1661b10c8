"""GLBDN's data: the global blur dataset (sharp x kernel set) and the
dynamic-scene synthesis (camera + moving objects over sub-frames)."""
import numpy as np
import pytest

from tests.helpers import run_cli_error, shared_path
from tfdeblur.datasets import dynamic, globalblur
from tfdeblur.datasets import spec as data_spec
from tfdeblur.datasets.synthetic import blur_image, quantize8
from tfdeblur.io import read_image

TINY = dict(counts={"motion": 2, "gaussian": 1, "defocus": 1}, num_synthetic=3, synthetic_size=(40, 48))


def test_kernel_bank_has_the_papers_counts_and_is_deterministic():
    bank = globalblur.kernel_bank(seed=3)
    kinds = [kind for kind, _ in bank]
    assert (kinds.count("motion"), kinds.count("gaussian"), kinds.count("defocus")) == (32, 16, 8)
    for _, k in bank:
        assert k.min() >= 0 and abs(float(k.sum()) - 1) < 1e-5 and k.shape[0] % 2 == 1 and k.shape[0] <= 31
    again = globalblur.kernel_bank(seed=3)
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(bank, again))
    other = globalblur.kernel_bank(seed=4)
    assert not all(a.shape == b.shape and np.array_equal(a, b) for (_, a), (_, b) in zip(bank, other))
    with pytest.raises(ValueError, match="counts keys must be in"):
        globalblur.kernel_bank(counts={"box": 1})
    with pytest.raises(ValueError, match="at least one kernel"):
        globalblur.kernel_bank(counts={"motion": 0, "gaussian": 0, "defocus": 0})


def test_real_kernel_file_is_appended():
    path = shared_path("data", "kernels", "levin09.npz")
    bank = globalblur.kernel_bank(counts={"motion": 1, "gaussian": 0, "defocus": 0}, kernel_file=str(path))
    assert [kind for kind, _ in bank] == ["motion"] + ["file"] * 8


def test_pairs_are_uniform_blur_in_linear_light_and_crops_are_windows_of_them():
    gb = globalblur.GlobalBlurSet(**TINY)
    s, k = 1, 2
    blur, sharp = gb.pair(s, k)
    # Independent of blur_image: gamma-linearize, direct 2-D convolution with
    # reflected borders, gamma-encode, quantize.
    kernel = gb.bank[k][1].astype(np.float64)
    r = kernel.shape[0] // 2
    lin = np.pad(sharp.astype(np.float64) ** 2.2, ((r, r), (r, r), (0, 0)), mode="symmetric")
    h, w = sharp.shape[:2]
    acc = np.zeros((h, w, 3))
    for i in range(kernel.shape[0]):
        for j in range(kernel.shape[1]):
            # true convolution: out[y, x] = sum k[i, j] in[y - (i - r), x - (j - r)]
            acc += kernel[i, j] * lin[2 * r - i:2 * r - i + h, 2 * r - j:2 * r - j + w]
    expected = quantize8(acc ** (1 / 2.2))
    assert np.abs(blur - expected).max() <= 1 / 255 + 1e-6
    assert np.mean(blur != expected) < 0.01
    np.testing.assert_array_equal(blur, blur_image(sharp, kernel, noise_sigma=0))

    crop_b, crop_s = gb.train_element(5, 16)
    windows = [(t, y, x) for t in gb.train_images for y in range(h - 15) for x in range(w - 15)
               if np.array_equal(crop_s, quantize8(gb.sharp[t])[y:y + 16, x:x + 16])]
    assert len(windows) == 1  # the sharp crop is a window of a training image
    t, y, x = windows[0]
    full_blur = [gb.pair(t, kk)[0][y:y + 16, x:x + 16] for kk in range(len(gb.bank))]
    assert any(np.array_equal(crop_b, fb) for fb in full_blur)  # ... and the blur the same window
    b2, s2 = gb.train_element(5, 16)
    np.testing.assert_array_equal(crop_b, b2)
    assert 0 in gb.val_images and 0 not in gb.train_images


def test_written_dataset_reads_back_bit_exact(tmp_path, capsys):
    out = tmp_path / "gb"
    n = globalblur.write_globalblur(out, **TINY)
    assert n == 3 * 4
    gb = globalblur.GlobalBlurSet(**TINY)
    blur, sharp = gb.pair(2, 3)
    np.testing.assert_array_equal(read_image(out / "blur" / "scene002_k03.png"), blur)
    np.testing.assert_array_equal(read_image(out / "sharp" / "scene002_k03.png"), sharp)
    assert sorted(np.load(out / "kernels.npz").files)[0] == "k00_motion"
    with pytest.raises(ValueError, match="already holds a global blur dataset"):
        globalblur.write_globalblur(out, **TINY)
    assert globalblur.main(["--out", str(out)]) == 2
    assert capsys.readouterr().err.startswith("error: --out")


def test_static_scene_averaged_over_subframes_is_the_sharp_frame():
    blur, sharp = dynamic.make_dynamic_pair(7, (40, 56), static=True, noise_range=(0, 0))
    np.testing.assert_array_equal(blur, sharp)
    scene = dynamic.random_scene(np.random.default_rng(7), 40, 56, static=True)
    frames = dynamic.render_subframes(scene, 9)
    for f in frames:
        np.testing.assert_array_equal(f, frames[4])


def test_dynamic_pairs_are_deterministic_and_the_target_is_the_middle_subframe():
    a = dynamic.make_dynamic_pair((1, 2, 3), 48, num_subframes=7)
    b = dynamic.make_dynamic_pair((1, 2, 3), 48, num_subframes=7)
    c = dynamic.make_dynamic_pair((1, 2, 4), 48, num_subframes=7)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])
    rng = np.random.default_rng((1, 2, 3))
    scene = dynamic.random_scene(rng, 48, 48)
    middle = quantize8(np.clip(dynamic.render_frame(scene, 0.0), 0, 1) ** (1 / 2.2))
    np.testing.assert_array_equal(a[1], middle)


def test_a_moving_object_blurs_only_where_it_moves():
    """Still camera, one moving object: local blur; pixels far from the
    object's path stay sharp (up to noise, here none)."""
    rng = np.random.default_rng(0)
    scene = dynamic.random_scene(rng, 64, 96, num_objects=1)
    scene.camera_velocity[:] = 0
    scene.camera_acceleration[:] = 0
    scene.camera_spin = 0.0
    layer = scene.layers[0]
    layer.position = np.array([20.0, 32.0])
    layer.velocity, layer.acceleration, layer.spin = np.array([12.0, 0.0]), np.zeros(2), 0.0
    frames = dynamic.render_subframes(scene, scene.auto_subframes())
    blur, sharp = np.mean(frames, axis=0), frames[len(frames) // 2]
    reach = layer.alpha.shape[0] / np.sqrt(2) + 8
    far = np.zeros((64, 96), bool)
    far[:, int(20 + reach):] = True
    np.testing.assert_allclose(blur[far], sharp[far], atol=1e-6)
    near = ~far
    assert np.abs(blur - sharp)[near].mean() > 1e-3


def test_data_specs_and_their_errors(capsys):
    assert str(data_spec.parse_spec("globalblur")) == "globalblur"
    assert str(data_spec.parse_spec("dynamic")) == "dynamic"
    train, val = data_spec.train_val("dynamic", 32)
    b, s = next(iter(train))
    assert b.shape == (32, 32, 3) and s.shape == (32, 32, 3)
    del train
    err = run_cli_error(capsys, ["train", "glbdn", "--data", "globalblur:/no/such/dir"])
    assert "sharp image folder /no/such/dir does not exist" in err
    err = run_cli_error(capsys, ["train", "glbdn", "--data", "dynamic:x"])
    assert "--data dynamic takes no path" in err
