"""`photos:DIR`: realistic blur of sharp photos (datasets/photos.py)."""
import os

import cv2
import numpy as np
import pytest

from tfdeblur.datasets import photos
from tfdeblur.datasets import spec as data_spec


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory):
    """Twelve small textured 'photos' in two sub-folders (recursion)."""
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for i in range(12):
        sub = root / ("a" if i % 2 else "b")
        sub.mkdir(exist_ok=True)
        h, w = 90 + 7 * i, 120 - 3 * i
        smooth = cv2.GaussianBlur(rng.random((h, w, 3)).astype(np.float32), (0, 0), 2.0)
        img = np.clip((smooth - smooth.mean()) * 6 + 0.5, 0, 1)
        cv2.imwrite(str(sub / f"p{i:02d}.png"), np.round(img * 255).astype(np.uint8))
    (root / ".hidden.png").write_bytes(b"not an image")
    return str(root)


def test_bank_splits_every_tenth_photo_and_skips_hidden(photo_dir):
    bank = photos.PhotoBank(photo_dir)
    assert len(bank) == 12
    assert not set(bank.splits["train"]) & set(bank.splits["val"])
    assert len(bank.splits["val"]) == 1  # index 9 of the 12 sorted paths
    assert bank.splits["val"][0] == photos.list_photos(photo_dir)[9]


@pytest.mark.parametrize("mode", photos.MODES)
def test_pairs_are_a_function_of_the_seed(photo_dir, mode):
    bank = photos.PhotoBank(photo_dir)
    a = photos.make_photo_pair(bank, (31, 0, 5), 48, mode=mode)
    b = photos.make_photo_pair(photos.PhotoBank(photo_dir), (31, 0, 5), 48, mode=mode)
    c = photos.make_photo_pair(bank, (31, 0, 6), 48, mode=mode)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[1], c[1])
    for x in a:
        assert x.shape == (48, 48, 3) and x.dtype == np.float32
        assert x.min() >= 0 and x.max() <= 1
    np.testing.assert_allclose(a[1] * 255, np.round(a[1] * 255), atol=1e-4)  # 8-bit sharp target


def test_camera_path_is_identity_at_mid_exposure_and_fixes_the_centre():
    rng = np.random.default_rng(3)
    cam = photos.CameraPath(rng, 65)
    np.testing.assert_allclose(cam.matrix(0.0), np.eye(3), atol=1e-12)
    cam.v = cam.a = np.zeros(2)
    cam.tilt = np.zeros(2)
    cam.rot, cam.zoom = 1.5, 0.05
    m = cam.matrix(0.5)
    centre = np.array([32.0, 32.0, 1.0])
    np.testing.assert_allclose(m @ centre, centre, atol=1e-9)
    corner = m @ np.array([0.0, 0.0, 1.0])
    assert np.linalg.norm(corner[:2] / corner[2]) > 0.5  # the corner moves


def test_still_camera_gives_blur_equal_to_sharp():
    rng = np.random.default_rng(0)
    linear = rng.random((40 + 8, 40 + 8, 3)).astype(np.float32)
    cam = photos.CameraPath(rng, 40, still=True)
    blur, sharp = photos._render(linear, 40, 4, cam, [])
    np.testing.assert_array_equal(blur, sharp)
    np.testing.assert_allclose(sharp, linear[4:44, 4:44], atol=1e-6)


def test_translating_camera_is_the_mean_of_shifted_crops(monkeypatch):
    """Independent reference: 7 sub-frames with integer shifts -3..3 px."""
    monkeypatch.setattr(photos, "MAX_STEP_PX", 1.0)  # 6 px of motion -> 7 sub-frames, 1 px apart
    rng = np.random.default_rng(1)
    size, margin = 32, 6
    linear = rng.random((size + 2 * margin, size + 2 * margin, 3)).astype(np.float32)
    cam = photos.CameraPath(rng, size, still=True)
    cam.v = np.array([6.0, 0.0])  # x(t) = 6 t, t = -1/2 .. 1/2
    blur, sharp = photos._render(linear, size, margin, cam, [])
    assert photos._subframes(cam.reach(size)) == 7
    expected = np.mean([linear[margin:margin + size, margin + s:margin + s + size] for s in range(-3, 4)], axis=0)
    np.testing.assert_allclose(blur, expected, atol=1e-5)
    np.testing.assert_allclose(sharp, linear[margin:margin + size, margin:margin + size], atol=1e-6)


def test_moving_object_blurs_only_near_its_path(photo_dir):
    bank = photos.PhotoBank(photo_dir)
    rng = np.random.default_rng(2)
    size, margin = 64, 2
    linear = np.full((size + 2 * margin, size + 2 * margin, 3), 0.25, np.float32)
    cam = photos.CameraPath(rng, size, still=True)
    layers = photos._object_layers(rng, bank, "train", size, 1)
    layer = layers[0]
    layer["pos"] = np.array([16.0, 16.0])
    layer["v"], layer["a"], layer["spin"] = np.array([8.0, 0.0]), np.zeros(2), 0.0
    blur, sharp = photos._render(linear, size, margin, cam, layers)
    assert np.abs(blur - sharp)[:28, :40].max() > 0.01  # around the object: blurred
    np.testing.assert_allclose(blur[48:, 48:], sharp[48:, 48:], atol=1e-6)  # far from it: untouched
    np.testing.assert_allclose(sharp[48:, 48:], 0.25, atol=1e-6)


def test_layers_warped_into_their_box_match_whole_crop_warps(photo_dir):
    """`_render` warps each moving layer only into the rectangle it covers;
    the result must be the plain composite of whole-crop warps (computed
    here), with a rotating, zooming, tilting camera, spinning layers and a
    layer half off the crop: the same up to OpenCV's 1/32-px rounding of
    sampling positions."""
    bank = photos.PhotoBank(photo_dir)
    rng = np.random.default_rng(5)
    size = 72
    cam = photos.CameraPath(rng, size)
    cam.rot, cam.zoom, cam.tilt = 2.0, 0.05, np.array([3e-5, -2e-5])
    margin = int(np.ceil(cam.reach(size))) + 2
    linear = np.power(rng.random((size + 2 * margin, size + 2 * margin, 3)).astype(np.float32), 2.2)
    layers = photos._object_layers(rng, bank, "train", size, 3)
    layers[0]["pos"] = np.array([-10.0, 30.0])  # half off the left edge
    layers[1]["spin"] = 9.0
    blur, sharp = photos._render(linear, size, margin, cam, layers)

    n = photos._subframes(max(cam.reach(size) + np.linalg.norm(layer["v"]) + np.linalg.norm(layer["a"]) / 4
                              + np.radians(abs(layer["spin"])) * layer["alpha"].shape[0] / np.sqrt(2)
                              for layer in layers))
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    frames = []
    for t in photos._times(n):
        m = cam.matrix(t)
        frame = photos._warp(linear, m, size, margin).astype(np.float64)
        for layer in layers:
            to_patch = photos._layer_matrix(layer, m, t)
            col = cv2.warpPerspective(layer["color"], to_patch, (size, size), flags=flags)
            alpha = cv2.warpPerspective(layer["alpha"], to_patch, (size, size), flags=flags)
            frame = frame * (1 - alpha[..., None]) + col
        frames.append(frame)
    assert np.abs(frames[n // 2] - frames[0]).max() > 0.1  # the layers and camera moved
    np.testing.assert_allclose(blur, np.mean(frames, axis=0), atol=2e-3)
    np.testing.assert_allclose(sharp, frames[n // 2], atol=2e-2)
    assert np.abs(sharp - frames[n // 2]).mean() < 1e-4


def test_saturated_highlights_clip_after_blurring():
    rng = np.random.default_rng(0)
    blur_lin = np.full((8, 8, 3), 1.7, np.float32)
    sharp_lin = np.full((8, 8, 3), 1.7, np.float32)
    import tfdeblur.datasets.photos as ph

    old = ph.JPEG_PROB
    ph.JPEG_PROB = 0.0
    try:
        blur, sharp = photos._camera_pipeline(rng, blur_lin, sharp_lin)
    finally:
        ph.JPEG_PROB = old
    np.testing.assert_array_equal(sharp, 1.0)
    assert np.median(blur) >= 0.98 and blur.min() > 0.8  # clipped at 1 before the noise, not wrapped


def test_spec_parsing_and_errors(photo_dir):
    spec = data_spec.parse_spec(f"photos:{photo_dir},camera=2,uniform=0")
    assert spec.kind == "photos" and spec.paths == (photo_dir,)
    mix = data_spec.photos_mix(spec)
    assert mix["camera"] == 2.0 and mix["uniform"] == 0.0 and mix["objects"] == photos.DEFAULT_MIX["objects"]
    for bad, words in [("photos:", "needs a folder"), (f"photos:{photo_dir}/nope", "is not a directory"),
                       (f"photos:{photo_dir},zoom=1", "MODE=WEIGHT"), (f"photos:{photo_dir},camera=-1", "non-negative"),
                       (f"photos:{photo_dir},camera=x", "non-negative")]:
        with pytest.raises(data_spec.DataSpecError, match=words):
            data_spec.parse_spec(bad)
    with pytest.raises(photos.PhotoError, match="positive sum"):
        photos.make_photo_pair(photos.PhotoBank(photo_dir), 0, 32, mix={"uniform": 0})


def test_clean_samples_have_no_noise_or_jpeg(photo_dir, monkeypatch):
    """`clean=P`: with P = 1 the blurry image is exactly what the pipeline
    makes with zero noise and no JPEG; P = 0 (or absent) leaves the stream
    sample for sample as it was; about P of the samples are clean."""
    bank = photos.PhotoBank(photo_dir)
    only = {m: 0.0 for m in photos.MODES}
    for mode in ("uniform", "camera", "objects", "shake"):
        mix = dict(only, **{mode: 1.0})
        noisy = photos.make_photo_pair(bank, (31, 0, 3), 40, mix=mix)
        clean = photos.make_photo_pair(bank, (31, 0, 3), 40, mix=dict(mix, clean=1.0))
        np.testing.assert_array_equal(clean[1], noisy[1])  # the same scene and target
        assert not np.array_equal(clean[0], noisy[0])
        assert clean[0].dtype == np.float32 and clean[1].dtype == np.float32
        with monkeypatch.context() as m:
            m.setattr(photos, "SHOT_NOISE", (0.0, 0.0))
            m.setattr(photos, "READ_NOISE", (0.0, 0.0))
            m.setattr(photos, "JPEG_PROB", 0.0)
            silent = photos.make_photo_pair(bank, (31, 0, 3), 40, mix=mix)
        np.testing.assert_array_equal(clean[0], silent[0])
    for i in range(4):  # absent or 0: the default stream
        a = photos.make_photo_pair(bank, (31, 1, i), 32)
        b = photos.make_photo_pair(bank, (31, 1, i), 32, mix=dict(photos.DEFAULT_MIX, clean=0.0))
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)
    half = dict(only, uniform=1.0)
    same = sum(np.array_equal(photos.make_photo_pair(bank, (31, 2, i), 24, mix=dict(half, clean=0.5))[0],
                              photos.make_photo_pair(bank, (31, 2, i), 24, mix=dict(half, clean=1.0))[0])
               for i in range(60))
    assert 15 <= same <= 45  # binomial(60, 0.5): 30 +- 7.5 at 2 sigma
    with pytest.raises(photos.PhotoError, match="clean must be a probability"):
        photos.make_photo_pair(bank, 0, 32, mix=dict(half, clean=1.5))
    spec = data_spec.parse_spec(f"photos:{photo_dir},shake=0.35,clean=0.5")
    assert data_spec.photos_mix(spec)["clean"] == 0.5 and data_spec.photos_mix(spec)["shake"] == 0.35
    for bad in ("clean=1.5", "clean=-0.1", "clean=x"):
        with pytest.raises(data_spec.DataSpecError, match="clean"):
            data_spec.parse_spec(f"photos:{photo_dir},{bad}")


def test_empty_folder_is_one_clear_error(tmp_path):
    with pytest.raises(photos.PhotoError, match="holds 0 image"):
        photos.PhotoBank(str(tmp_path))


def test_training_stream_resumes_exactly(photo_dir):
    from tfdeblur.datasets.stream import train_stream

    spec = f"photos:{photo_dir}"
    whole = list(train_stream(spec, 32, seed=4, batch_size=2, start_step=0).take(3))
    resumed = list(train_stream(spec, 32, seed=4, batch_size=2, start_step=2).take(1))
    np.testing.assert_array_equal(whole[2][0].numpy(), resumed[0][0].numpy())
    np.testing.assert_array_equal(whole[2][1].numpy(), resumed[0][1].numpy())
    assert not np.array_equal(whole[0][1].numpy(), whole[1][1].numpy())


def test_validation_set_is_fixed_and_full_size(photo_dir):
    ds, count, names = data_spec.evaluation(f"photos:{photo_dir}")
    first = [b.numpy() for b, _ in ds.take(2)]
    again = [b.numpy() for b, _ in ds.take(2)]
    assert count == photos.VAL_IMAGES == len(names)
    assert first[0].shape == (photos.VAL_SIZE, photos.VAL_SIZE, 3)
    np.testing.assert_array_equal(first[1], again[1])


@pytest.mark.skipif(not os.path.isdir(os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "sharp")),
                    reason="../shared/data/sharp is absent (the shared photos)")
def test_shared_photos_make_pairs_of_every_mode():
    root = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "sharp")
    bank = photos.photo_bank(root)
    assert len(bank) >= 1000
    for i, mode in enumerate(photos.MODES):
        blur, sharp = photos.make_photo_pair(bank, (31, 0, i), 96, mode=mode)
        assert blur.shape == sharp.shape == (96, 96, 3)
        assert np.abs(blur - sharp).mean() > 0  # something was blurred


def test_shake_mode_leaves_the_default_stream_as_it_was(photo_dir):
    """`shake` was appended to MODES with weight 0: the mode draw of the
    default mix (and so every default sample, the rest of the draw being the
    same code) equals the draw over the five modes before it existed."""
    old_modes = ("uniform", "camera", "objects", "synthetic", "dynamic")
    assert photos.MODES[:5] == old_modes and photos.DEFAULT_MIX["shake"] == photos.DEFAULT_MIX["wide"] == 0.0
    old_p = np.array([photos.DEFAULT_MIX[m] for m in old_modes])
    new_p = photos._mix_probs(None)
    for i in range(500):
        seed = (31, 0, i)
        old = old_modes[int(np.random.default_rng(seed).choice(5, p=old_p / old_p.sum()))]
        new = photos.MODES[int(np.random.default_rng(seed).choice(len(photos.MODES), p=new_p))]
        assert old == new, f"sample {i}: {old} before, {new} now"
    bank = photos.PhotoBank(photo_dir)
    for i in range(8):
        a = photos.make_photo_pair(bank, (31, 0, i), 40)
        b = photos.make_photo_pair(bank, (31, 0, i), 40, mix={m: photos.DEFAULT_MIX[m] for m in old_modes})
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)


def test_shake_pairs_are_a_trajectory_kernel_of_the_sharp_target(photo_dir, monkeypatch):
    """A shake pair is the sharp crop convolved (in linear light) with a
    `trajectory` kernel of `random_kernel` at SHAKE_SIZE_BIAS: with the
    camera pipeline's noise, gain and JPEG off, re-blurring the target with
    the kernel the stream drew gives the blurry image to 8-bit rounding."""
    from tfdeblur.datasets import kernels

    drawn = []
    real = kernels.random_kernel

    def spy(rng, **kw):
        k = real(rng, **kw)
        drawn.append((kw, k))
        return k

    monkeypatch.setattr(kernels, "random_kernel", spy)
    for name, value in [("SATURATION_PROB", 0.0), ("SHOT_NOISE", (0.0, 0.0)), ("READ_NOISE", (0.0, 0.0)),
                        ("JPEG_PROB", 0.0)]:
        monkeypatch.setattr(photos, name, value)
    bank = photos.PhotoBank(photo_dir)
    blur, sharp = photos.make_photo_pair(bank, (31, 0, 2), 48, mode="shake")
    (kw, k), = drawn
    assert kw["probs"] == {"trajectory": 1.0} and kw["size_bias"] == photos.SHAKE_SIZE_BIAS
    lin = np.power(sharp.astype(np.float64), photos.GAMMA)
    again = cv2.filter2D(lin, -1, np.ascontiguousarray(k[::-1, ::-1].astype(np.float64)), borderType=cv2.BORDER_REFLECT)
    again = np.power(np.clip(again, 0, 1), 1 / photos.GAMMA)
    r = k.shape[0] // 2 + 1  # the stream blurred a larger window: compare away from the border
    assert np.abs(again - blur)[r:-r, r:-r].max() < 3 / 255
    assert np.abs(blur - sharp).mean() > 1e-3


def test_wide_pairs_are_the_sharp_target_averaged_along_a_long_path(photo_dir, monkeypatch):
    """A `wide` pair with rotation, zoom, tilt, objects, gain, noise and JPEG
    off is the sharp target convolved with its path: the sub-frame offsets
    d(t) = v t + a t^2 / 2 splatted bilinearly into a kernel (what a
    bilinear warp by each offset averages to), the translation's length in
    WIDE_SHIFT, far past what `camera` draws (MAX_SHIFT)."""
    for name, value in [("SATURATION_PROB", 0.0), ("SHOT_NOISE", (0.0, 0.0)), ("READ_NOISE", (0.0, 0.0)),
                        ("JPEG_PROB", 0.0), ("MAX_ROTATION", 0.0), ("MAX_ZOOM", 0.0), ("MAX_TILT", 0.0),
                        ("WIDE_OBJECTS_PROB", 0.0)]:
        monkeypatch.setattr(photos, name, value)
    paths = []
    real = photos.CameraPath

    class Spy(real):
        def __init__(self, *args, **kw):
            super().__init__(*args, **kw)
            paths.append(self)

    monkeypatch.setattr(photos, "CameraPath", Spy)
    bank = photos.PhotoBank(photo_dir)
    size = 200
    for i in range(3):
        paths.clear()
        blur, sharp = photos.make_photo_pair(bank, (31, 7, i), size, mode="wide")
        (cam,) = paths
        assert photos.WIDE_SHIFT[0] - 1e-9 <= np.linalg.norm(cam.v) <= photos.WIDE_SHIFT[1] + 1e-9
        assert photos.WIDE_SHIFT[0] >= photos.MAX_SHIFT
        n = photos._subframes(cam.reach(size), photos.WIDE_MAX_SUBFRAMES)
        offsets = [cam.v * t + cam.a * t * t / 2 for t in photos._times(n)]
        r = int(np.ceil(max(np.abs(o).max() for o in offsets))) + 1
        k = np.zeros((2 * r + 1, 2 * r + 1))
        for dx, dy in offsets:  # frame(p) = sharp(p + d): weight at kernel cell (r + d)
            x0, y0 = int(np.floor(dx)), int(np.floor(dy))
            fx, fy = dx - x0, dy - y0
            for (yy, xx, w) in [(y0, x0, (1 - fx) * (1 - fy)), (y0, x0 + 1, fx * (1 - fy)),
                                (y0 + 1, x0, (1 - fx) * fy), (y0 + 1, x0 + 1, fx * fy)]:
                k[r + yy, r + xx] += w / n
        lin = np.power(sharp.astype(np.float64), photos.GAMMA)
        # filter2D correlates: out(p) = sum_d k[r + d] lin(p + d)
        again = np.power(np.clip(cv2.filter2D(lin, -1, k, borderType=cv2.BORDER_REFLECT), 0, 1), 1 / photos.GAMMA)
        inner = (slice(r, size - r), slice(r, size - r))
        assert size - 2 * r >= 40, r
        assert np.abs(again - blur)[inner].max() < 3 / 255, (i, np.abs(again - blur)[inner].max())
        assert np.abs(blur - sharp)[inner].mean() > 0.01


def test_validation_pairs_ignore_the_spec_mix(photo_dir):
    """A reweighted spec trains on its mix but validates on the default
    mix's held-out pairs, so legs on different mixes share one yardstick."""
    plain, _, _ = data_spec.evaluation(f"photos:{photo_dir}")
    shaken, _, _ = data_spec.evaluation(f"photos:{photo_dir},shake=5,uniform=0")
    for (a, _), (b, _) in zip(plain.take(3), shaken.take(3)):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
