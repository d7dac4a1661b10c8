"""tfdeblur.kernel_refine: the kernel estimate, Richardson-Lucy, `refine`,
and `Deblurrer(kernel_refine=True)` / `deblur --uniform-blur`."""
import cv2
import keras
import numpy as np
import pytest

from tfdeblur import inference
from tfdeblur import kernel_refine as kr
from tfdeblur.datasets import blur_image


def _scene(size=160, seed=0):
    """Piecewise-smooth shapes with strong edges and some texture, in [0.05, 0.95]."""
    rng = np.random.default_rng(seed)
    img = np.full((size, size), 0.5)
    for _ in range(40):
        cy, cx = rng.integers(0, size, 2)
        r = int(rng.integers(4, size // 5))
        cv2.circle(img, (int(cx), int(cy)), r, float(rng.random()), -1)
        x0, y0 = rng.integers(0, size, 2)
        cv2.rectangle(img, (int(x0), int(y0)), (int(x0) + r, int(y0) + r // 2), float(rng.random()), -1)
    img += 0.03 * cv2.GaussianBlur(rng.standard_normal((size, size)), (0, 0), 0.7)
    return np.clip(0.05 + 0.9 * img, 0.0, 1.0)


def _kernel():
    k = np.zeros((15, 15))
    k[7, 5:13] = 1.0  # a streak with a long hook: not symmetric, so a turn shows
    k[1:7, 12] = 1.0
    k[1, 9:12] = 0.5
    return k / k.sum()


def _psnr(a, b, border=20):
    inner = (slice(border, -border),) * 2
    return 10 * np.log10(1.0 / np.mean((np.asarray(a, np.float64)[inner] - np.asarray(b, np.float64)[inner]) ** 2))


def _embed(k, size):
    out = np.zeros((size, size))
    o = (size - k.shape[0]) // 2
    out[o:o + k.shape[0], o:o + k.shape[1]] = k
    return out


def test_kernel_from_the_sharp_image_is_the_blur_kernel():
    # Blurred by the library's own convolution (blur_image: linear, no noise,
    # no quantization), the estimate from the sharp image finds the kernel
    # itself, in place and orientation, not its 180-degree turn.
    x, k = _scene(seed=1), _kernel()
    y = blur_image(x.astype(np.float32), k.astype(np.float32), noise_sigma=0, gamma=1, quantize=False)
    est = kr.estimate_kernel(x, y, size=21)
    want = _embed(k, 21)
    assert est.shape == (21, 21) and est.min() >= 0 and abs(est.sum() - 1) < 1e-9
    assert np.abs(est - want).sum() < 0.3  # L1 distance (2 = disjoint; measured 0.12)
    assert np.abs(est - want[::-1, ::-1]).sum() > 1.0  # measured 1.35


def test_kernel_estimate_tolerates_a_softened_latent():
    # A partly restored image (the sharp one softened) still gives a kernel
    # close to the true one from its strongest edges.
    x, k = _scene(seed=2), _kernel()
    y = blur_image(x.astype(np.float32), k.astype(np.float32), noise_sigma=0, gamma=1, quantize=True)
    soft = cv2.GaussianBlur(x, (0, 0), 0.8)
    est = kr.estimate_kernel(soft, y, size=21)
    c = cv2.matchTemplate(np.pad(est, 10).astype(np.float32), _embed(k, 21).astype(np.float32), cv2.TM_CCORR_NORMED)
    assert c.max() > 0.75


def test_richardson_lucy_delta_kernel_is_the_identity_and_true_kernel_restores():
    x = _scene(seed=3)
    delta = np.zeros((5, 5))
    delta[2, 2] = 1.0
    np.testing.assert_allclose(kr.richardson_lucy(x, delta, 7), x, atol=1e-12)
    k = _kernel()
    y = kr.convolve(x, k)
    np.testing.assert_allclose(y, blur_image(x.astype(np.float32), k.astype(np.float32), noise_sigma=0, gamma=1,
                                             quantize=False), atol=1e-5)
    assert _psnr(kr.richardson_lucy(y, k, 20), x) > _psnr(y, x) + 3


def test_richardson_lucy_in_float32_matches_float64():
    # refine deconvolves in float32 (half the memory, 1.8x faster on 12 MP
    # with the discrepancy's subsample): the same iterations to 1e-5, and a
    # float32 start or photo stays float32 through `convolve`.
    x = _scene(seed=4)
    k = _kernel()
    y = kr.convolve(x, k)
    start = np.clip(x + 0.05, 0, 1)
    f64 = kr.richardson_lucy(y, k, 15, start=start)
    f32 = kr.richardson_lucy(y, k, 15, start=start, dtype=np.float32)
    assert f64.dtype == np.float64 and f32.dtype == np.float32
    assert kr.convolve(f32, k).dtype == np.float32
    np.testing.assert_allclose(f32, f64, atol=1e-5)
    assert np.abs(f32 - f64).max() < 1e-3 * np.abs(f64 - start).max()  # far under what the iterations moved
    with pytest.raises(ValueError, match="dtype must be"):
        kr.richardson_lucy(y, k, 1, dtype=np.float16)


def test_discrepancy_grid_closed_forms():
    # Every interior pixel up to 1 M of them (2^20); a 12 MP photo's every
    # fourth row and column (3960 x 2960 interior: 11.2 x 2^20 -> step 4).
    rows, cols = kr.discrepancy_grid((720, 1280))
    assert (rows, cols) == (slice(20, 700, 1), slice(20, 1260, 1))
    rows, cols = kr.discrepancy_grid((3000, 4000))
    assert rows.step == cols.step == 4 and (rows.start, rows.stop) == (20, 2980)
    assert kr.discrepancy_grid((100, 100), pixels=100)[0].step == 6  # 60 x 60 = 3600 -> sqrt(36)
    assert np.zeros((3000, 4000))[kr.discrepancy_grid((3000, 4000))].size <= kr.DISCREPANCY_PIXELS


def test_refine_with_the_estimated_kernel_matches_the_true_kernel_and_beats_a_soft_start():
    # gamma-encoded RGB, blurred in linear light as the photos stream blurs.
    # From the sharp image as the "restoration", refine (kernel estimated)
    # stays near the truth like Richardson-Lucy with the true kernel from the
    # same start (measured 45.8 and 53.3 dB; the kernel turned 180 degrees:
    # 16.9); from a softened restoration it adds > 1 dB (measured +3.1).
    x = np.repeat(_scene(seed=4)[..., None], 3, axis=2) ** (1 / 2.2)
    k = _kernel()
    y = blur_image(x.astype(np.float32), k.astype(np.float32), noise_sigma=0, gamma=2.2, quantize=True)
    y_lin = np.asarray(y, np.float64) ** 2.2
    true = np.clip(kr.richardson_lucy(y_lin, k, kr.ITERS, start=x ** 2.2), 0, 1) ** (1 / 2.2)
    out, est = kr.refine(y, x, size=21, rounds=1, guard=False, return_kernel=True)
    assert out.shape == x.shape and 0 <= out.min() and out.max() <= 1 and est.shape == (21, 21)
    assert _psnr(true, x) > 40 and _psnr(out, x) > 40
    turned = np.clip(kr.richardson_lucy(y_lin, k[::-1, ::-1], kr.ITERS, start=x ** 2.2), 0, 1) ** (1 / 2.2)
    assert _psnr(turned, x) < 30
    soft = cv2.GaussianBlur(x, (0, 0), 0.8)
    refined, info = kr.refine(y, soft, size=21, rounds=1, return_info=True)  # guarded, and kept
    assert info["applied"] and info["away"] > kr.MIN_AWAY and _psnr(refined, x) > _psnr(soft, x) + 1.0
    # RL from the blurry image with the true kernel restores too (the start matters, not the kernel)
    assert _psnr(np.clip(kr.richardson_lucy(y_lin, k, kr.ITERS), 0, 1) ** (1 / 2.2), x) > _psnr(y, x) + 5


def test_identity_network_with_refinement_gives_the_image_back():
    # The network restores nothing: the kernel estimated from (y, y) is a
    # delta, and Richardson-Lucy with a delta changes nothing.
    inputs = keras.Input((None, None, 3))
    identity = keras.Model(inputs, keras.layers.Identity()(inputs))
    img = np.repeat(_scene(size=kr.MIN_SIDE, seed=5)[..., None], 3, axis=2).astype(np.float32)
    got = inference.Deblurrer(identity, kernel_refine=True).restore_rgb(img)
    np.testing.assert_allclose(got, img, atol=1e-4)
    with pytest.raises(ValueError, match=rf"kernel refinement \(kernel_refine, --uniform-blur\) needs images of at least {kr.MIN_SIDE} px a side; got 100x"):
        inference.Deblurrer(identity, kernel_refine=True).restore_rgb(img[:100, :100])
    with pytest.raises(ValueError, match="kernel_refine must be True, False or \"auto\"; got 'yes'"):
        inference.Deblurrer(identity, kernel_refine="yes")


@pytest.mark.parametrize("call, message", [
    (lambda: kr.estimate_kernel(np.zeros((200, 200)), np.zeros((200, 199))), "same shape"),
    (lambda: kr.estimate_kernel(np.zeros((200, 200)), np.zeros((200, 200)), size=20), "size must be an odd integer"),
    (lambda: kr.estimate_kernel(np.zeros((90, 200)), np.zeros((90, 200))), "too small to estimate a 41x41 kernel"),
    (lambda: kr.estimate_kernel(np.zeros((200, 200)), np.zeros((200, 200))), "latent is flat"),
    (lambda: kr.estimate_kernel(np.full((200, 200), np.nan), np.zeros((200, 200))), "latent has NaN"),
    (lambda: kr.estimate_kernel(np.zeros((200, 200, 3)), np.zeros((200, 200, 3))), "2-D"),
    (lambda: kr.estimate_kernel(np.zeros((200, 200)), np.zeros((200, 200)), edges=0), "edges must be in"),
    (lambda: kr.richardson_lucy(np.zeros((9, 9)), np.ones((3, 3)), -1), "iters must be"),
    (lambda: kr.refine(np.zeros((200, 200, 3)), np.zeros((200, 201, 3))), "same shape"),
    (lambda: kr.refine(np.zeros((200, 200, 3)), np.zeros((200, 200, 3)), rounds=0), "rounds must be"),
    (lambda: kr.l0_latent(np.zeros((50, 50)), np.ones((3, 3)) / 9, weight=0), "weight must be positive"),
    (lambda: kr.l0_latent(np.zeros((50, 50)), np.ones((3, 3)) / 9, kappa=1), "kappa must be greater than 1"),
    (lambda: kr.l0_latent(np.zeros((50, 50, 3)), np.ones((3, 3)) / 9), "blurry must be a 2-D"),
])
def test_bad_arguments(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_noise_sigma_reads_white_noise_on_smooth_content():
    rng = np.random.default_rng(11)
    yy, xx = np.mgrid[0:200, 0:200] / 200.0
    smooth = 0.3 + 0.4 * xx * yy + 0.1 * np.sin(6 * xx)
    for sigma in (0.005, 0.02):
        assert kr.noise_sigma(smooth + rng.normal(0, sigma, smooth.shape)) == pytest.approx(sigma, rel=0.1)
    assert kr.noise_sigma(smooth) < 0.001
    with pytest.raises(ValueError, match="at least 3x3"):
        kr.noise_sigma(np.zeros((2, 5)))


def test_discrepancy_stop_keeps_a_nearly_sharp_noisy_photo():
    # Barely blurred (a 2-px streak) and noisy, with a clean restoration: RL
    # run to the end fits the noise; stopped by the discrepancy principle it
    # stays near the restoration.
    rng = np.random.default_rng(12)
    x = np.repeat(_scene(seed=6)[..., None], 3, axis=2) ** (1 / 2.2)
    k = np.zeros((3, 3))
    k[1, 1:] = 0.5
    y = blur_image(x.astype(np.float32), k.astype(np.float32), noise_sigma=0, gamma=2.2, quantize=False)
    y = np.clip(y + rng.normal(0, 0.02, y.shape), 0, 1)
    restored = blur_image(x.astype(np.float32), k.astype(np.float32), noise_sigma=0, gamma=2.2, quantize=False)
    stopped = kr.refine(y, restored, size=21, guard=False)  # sigma 0.02: the guard would keep `restored`
    running = kr.refine(y, restored, size=21, discrepancy=False, guard=False)
    assert _psnr(stopped, x) > _psnr(running, x) + 2  # measured 28.28 against 25.39
    assert _psnr(stopped, x) > _psnr(restored, x) - 0.5


def test_guard_keeps_the_restoration_of_a_noisy_photo():
    # sigma 0.02 (3.4/255 in luma) is over NOISE_LIMIT: the restoration comes back
    # untouched, without estimating a kernel; unguarded it is refined.
    rng = np.random.default_rng(13)
    x = np.repeat(_scene(seed=7)[..., None], 3, axis=2) ** (1 / 2.2)
    y = blur_image(x.astype(np.float32), _kernel().astype(np.float32), noise_sigma=0, gamma=2.2, quantize=False)
    y = np.clip(y + rng.normal(0, 0.02, y.shape), 0, 1)
    soft = cv2.GaussianBlur(x, (0, 0), 0.8)
    out, info = kr.refine(y, soft, size=21, return_info=True)
    np.testing.assert_array_equal(out, soft)
    assert not info["applied"] and info["kernel"] is None and info["away"] is None
    luma_sigma = 0.02 * np.sqrt(0.299 ** 2 + 0.587 ** 2 + 0.114 ** 2)  # independent noise per channel, averaged
    assert info["noise"] == pytest.approx(luma_sigma, rel=0.1) and "noise sigma" in info["reason"]
    unguarded, raw = kr.refine(y, soft, size=21, guard=False, return_info=True)
    assert raw["applied"] and raw["kernel"].shape == (21, 21) and np.abs(unguarded - soft).mean() > 1e-3


def test_blockiness_closed_forms_and_a_jpeg():
    # Closed forms: a ramp has one difference everywhere (1); constant 8x8
    # blocks change only across the grid (inf); steps only at offset 3 never
    # cross it (0).
    i, j = np.mgrid[0:64, 0:64]
    assert kr.blockiness((i + j) / 200.0) == pytest.approx(1.0)
    blocks = np.random.default_rng(0).random((8, 8)).repeat(8, axis=0).repeat(8, axis=1)
    assert kr.blockiness(blocks) == float("inf")
    assert kr.blockiness(((j + 5) // 8 % 2) * 0.5 + ((i + 5) // 8 % 2) * 0.25) == 0.0
    assert kr.blockiness(np.full((32, 32, 3), 0.5)) == 1.0
    # A blurred texture (smooth noise: nothing aligned with the grid) as 8-bit
    # PNG would store it reads about 1, over JPEG_LIMIT once JPEG-compressed,
    # about 1 again once cropped off the grid (measured 1.01, 1.19 at quality
    # 60, 0.97; quality 80 reads 1.11, 95 1.02: light compression passes).
    rng = np.random.default_rng(3)
    texture = cv2.GaussianBlur(rng.standard_normal((160, 160)), (0, 0), 1.5)
    x = np.repeat(np.clip(0.5 + 0.25 * texture / texture.std(), 0, 1)[..., None], 3, axis=2)
    y = blur_image(x.astype(np.float32), _kernel().astype(np.float32), noise_sigma=0, gamma=2.2, quantize=True)
    y8 = np.round(np.asarray(y) * 255).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", y8, [cv2.IMWRITE_JPEG_QUALITY, 60])
    jpeg = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED) / 255.0
    assert abs(kr.blockiness(y8 / 255.0) - 1.0) < 0.03
    assert kr.blockiness(jpeg) > kr.JPEG_LIMIT
    assert kr.blockiness(jpeg[3:, 5:]) < kr.JPEG_LIMIT
    with pytest.raises(ValueError, match="blockiness needs"):
        kr.blockiness(np.zeros((8, 40)))


def test_guard_keeps_the_restoration_of_a_jpeg_photo():
    # The same blurred scene refined as stored losslessly; JPEG-compressed,
    # the guard hands the restoration back before any kernel is estimated;
    # unguarded it is refined.
    x = np.repeat(_scene(seed=4)[..., None], 3, axis=2) ** (1 / 2.2)
    y = blur_image(x.astype(np.float32), _kernel().astype(np.float32), noise_sigma=0, gamma=2.2, quantize=True)
    soft = cv2.GaussianBlur(x, (0, 0), 0.8)
    assert kr.refine(y, soft, size=21, rounds=1, return_info=True)[1]["applied"]
    ok, buf = cv2.imencode(".jpg", np.round(np.asarray(y) * 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 75])
    jpeg = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED) / 255.0
    out, info = kr.refine(jpeg, soft, size=21, rounds=1, return_info=True)
    np.testing.assert_array_equal(out, soft)
    assert not info["applied"] and info["kernel"] is None and info["blockiness"] >= kr.JPEG_LIMIT
    assert "JPEG" in info["reason"]
    unguarded, raw = kr.refine(jpeg, soft, size=21, rounds=1, guard=False, return_info=True)
    assert raw["applied"] and np.abs(unguarded - soft).mean() > 1e-3


def test_image_offset_and_shift_kernel_closed_forms():
    rng = np.random.default_rng(5)
    ref = cv2.GaussianBlur(rng.random((120, 130)), (0, 0), 2.0)
    dy, dx = kr.image_offset(np.roll(ref, (2, -1), axis=(0, 1)), ref)
    assert abs(dy - 2) < 0.05 and abs(dx + 1) < 0.05
    moved = cv2.warpAffine(ref, np.float64([[1, 0, -1.25], [0, 1, 0.5]]), ref.shape[::-1], flags=cv2.INTER_CUBIC,
                           borderMode=cv2.BORDER_REFLECT)
    dy, dx = kr.image_offset(moved, ref)
    assert abs(dy - 0.5) < 0.15 and abs(dx + 1.25) < 0.15
    assert max(map(abs, kr.image_offset(ref, ref))) < 0.01
    # convolving with the moved kernel moves the image by as much (whole
    # pixels: exactly, inside the borders)
    k = _embed(_kernel(), 21)
    a = kr.convolve(ref, kr.shift_kernel(k, 2, -1))
    b = np.roll(kr.convolve(ref, k), (2, -1), axis=(0, 1))
    np.testing.assert_allclose(a[15:-15, 15:-15], b[15:-15, 15:-15], atol=1e-12)
    half = kr.shift_kernel(k, 0, 0.5)
    assert half.min() >= 0 and abs(half.sum() - 1) < 1e-12
    with pytest.raises(ValueError, match="too small"):
        kr.image_offset(ref[:40], ref[:40])


def test_refine_moves_a_drifted_kernel_back_under_the_restoration(monkeypatch):
    # The estimate comes back 2 px off (as the L0 rounds can leave it): the
    # deconvolution is then 2 px off the photo's content; alignment finds
    # the offset (-2) and puts the kernel back where the true one is.
    x = np.repeat(_scene(seed=4)[..., None], 3, axis=2) ** (1 / 2.2)
    k = _kernel()
    y = blur_image(x.astype(np.float32), k.astype(np.float32), noise_sigma=0, gamma=2.2, quantize=True)
    soft = cv2.GaussianBlur(x, (0, 0), 0.8)
    drifted = kr.shift_kernel(_embed(k, 21), 0, 2)
    monkeypatch.setattr(kr, "estimate_kernel", lambda *a, **kw: drifted)
    off, raw = kr.refine(y, soft, size=21, rounds=1, guard=False, align=False, return_info=True)
    on, info = kr.refine(y, soft, size=21, rounds=1, guard=False, return_info=True)
    assert raw["offset"] is None and abs(info["offset"][0]) < 0.2 and abs(info["offset"][1] + 2) < 0.2
    assert np.abs(info["kernel"] - _embed(k, 21)).sum() < 0.25 < 1.0 < np.abs(drifted - _embed(k, 21)).sum()
    # measured: the start 29.1 dB, drifted 22.6, aligned 32.3
    assert _psnr(on, x) > _psnr(off, x) + 3 and _psnr(on, x) > _psnr(soft, x) + 1


def test_centroid_and_anchored_closed_forms():
    k = np.zeros((9, 9))
    k[4, 4] = 1.0
    assert kr.centroid(k) == (0.0, 0.0)
    k = np.zeros((9, 9))
    k[1, 6:8] = 0.5  # row 1 (3 above the centre), columns 6 and 7
    assert kr.centroid(k) == pytest.approx((-3.0, 2.5))
    # 3 px above and 2.5 right of an anchor at the centre: moved to 1 px
    # above and 1 right (the slack), by (2, -1.5) px.
    moved = kr.anchored(k, (0.0, 0.0), slack=1.0)
    assert kr.centroid(moved) == pytest.approx((-1.0, 1.0), abs=1e-9)
    np.testing.assert_allclose(moved, kr.shift_kernel(k, 2.0, -1.5))
    np.testing.assert_array_equal(kr.anchored(k, (-2.5, 2.0), slack=1.0), k)  # within the slack: untouched
    with pytest.raises(ValueError, match="non-negative with a positive sum"):
        kr.centroid(np.zeros((5, 5)))


def test_l0_rounds_keep_the_kernel_near_the_first_one(monkeypatch):
    # A kernel and its latent can drift together round after round: here
    # each estimate after the first comes back 1 px further right. Anchored,
    # the last kernel stays within ANCHOR_SLACK of the first kernel's
    # centroid; unanchored (slack 40) it ends 5 px away.
    x = np.repeat(_scene(seed=4)[..., None], 3, axis=2) ** (1 / 2.2)
    k = _embed(_kernel(), 21)
    y = blur_image(x.astype(np.float32), _kernel().astype(np.float32), noise_sigma=0, gamma=2.2, quantize=True)
    calls = []

    def drifting(*a, **kw):
        calls.append(1)
        return kr.shift_kernel(k, 0, len(calls) - 1)

    ends, original = {}, kr.anchored
    for slack in (kr.ANCHOR_SLACK, 40.0):
        calls.clear()
        monkeypatch.setattr(kr, "estimate_kernel", drifting)
        monkeypatch.setattr(kr, "anchored", lambda kern, anchor, s=slack: original(kern, anchor, slack=s))
        _, last = kr.refine(y, cv2.GaussianBlur(x, (0, 0), 0.8), size=21, rounds=6, guard=False, align=False,
                            pyramid=False, restarts=1, return_kernel=True)
        ends[slack] = kr.centroid(last)[1] - kr.centroid(k)[1]
    assert abs(ends[kr.ANCHOR_SLACK] - kr.ANCHOR_SLACK) < 1e-6 and abs(ends[40.0] - 5) < 1e-6


def test_refine_reads_the_offset_on_the_estimation_square_of_a_large_photo(monkeypatch):
    # 160 x 640: the estimation square (512 wide) is part of the photo. The
    # offset is read from a deconvolution of that square alone; the whole
    # photo is deconvolved once, with the moved kernel, and gains everywhere
    # (outside the square too).
    x = np.concatenate([_scene(seed=s) for s in (4, 5, 6, 7)], axis=1)
    x = np.repeat(x[..., None], 3, axis=2) ** (1 / 2.2)
    k = _kernel()
    y = blur_image(x.astype(np.float32), k.astype(np.float32), noise_sigma=0, gamma=2.2, quantize=True)
    soft = cv2.GaussianBlur(x, (0, 0), 0.8)
    drifted = kr.shift_kernel(_embed(k, 21), 0, 2)
    monkeypatch.setattr(kr, "estimate_kernel", lambda *a, **kw: drifted)
    shapes, rl = [], kr.richardson_lucy
    monkeypatch.setattr(kr, "richardson_lucy", lambda y, *a, **kw: shapes.append(y.shape) or rl(y, *a, **kw))
    on, info = kr.refine(y, soft, size=21, rounds=1, guard=False, return_info=True)
    # the square (AWAY_ITERS iterations), then the whole photo: AWAY_ITERS,
    # the guard's distance ratio read, and the rest continued from there
    assert shapes == [(160, 512, 3), (160, 640, 3), (160, 640, 3)] and kr.ITERS > kr.AWAY_ITERS
    assert abs(info["offset"][0]) < 0.2 and abs(info["offset"][1] + 2) < 0.2
    assert np.abs(info["kernel"] - _embed(k, 21)).sum() < 0.25
    window = kr.estimation_window(kr._luma(soft ** 2.2))
    outside = (slice(None), slice(0, window[1].start)) if window[1].start >= 60 else (slice(None), slice(window[1].stop, None))
    assert _psnr(on[outside], x[outside]) > _psnr(soft[outside], x[outside]) + 1


def test_a_photo_the_last_kernel_check_turns_down_pays_no_full_deconvolution(monkeypatch):
    # The last kernel's local fit is checked before the whole photo is
    # deconvolved: only the estimation square's deconvolution (for the
    # offset) runs.
    x = np.concatenate([_scene(seed=s) for s in (4, 5, 6, 7)], axis=1)
    x = np.repeat(x[..., None], 3, axis=2) ** (1 / 2.2)
    y = blur_image(x.astype(np.float32), _kernel().astype(np.float32), noise_sigma=0, gamma=2.2, quantize=True)
    soft = cv2.GaussianBlur(x, (0, 0), 0.8)
    fits = iter([0.5, 5.0])  # the first kernel passes, the last does not
    monkeypatch.setattr(kr, "local_fit", lambda *a, **kw: next(fits))
    shapes, rl = [], kr.richardson_lucy
    monkeypatch.setattr(kr, "richardson_lucy", lambda y, *a, **kw: shapes.append(y.shape) or rl(y, *a, **kw))
    out, info = kr.refine(y, soft, size=21, rounds=2, restarts=1, return_info=True)
    assert not info["applied"] and "last kernel" in info["reason"] and np.array_equal(out, np.clip(soft, 0, 1))
    assert shapes == [(160, 512, 3)]


def test_a_candidate_far_under_the_distance_ratio_on_the_square_pays_no_full_deconvolution(monkeypatch):
    # A photo larger than the estimation square: the distance ratio is read
    # on the square's deconvolution first (PROBE_AWAY); under it, the
    # candidate is turned down before the whole photo is deconvolved.
    x = np.concatenate([_scene(seed=s) for s in (4, 5, 6, 7)], axis=1)
    x = np.repeat(x[..., None], 3, axis=2) ** (1 / 2.2)
    y = blur_image(x.astype(np.float32), _kernel().astype(np.float32), noise_sigma=0, gamma=2.2, quantize=True)
    soft = cv2.GaussianBlur(x, (0, 0), 0.8)
    shapes, rl = [], kr.richardson_lucy
    monkeypatch.setattr(kr, "richardson_lucy", lambda y, *a, **kw: shapes.append(y.shape) or rl(y, *a, **kw))
    out, info = kr.refine(y, soft, size=21, rounds=1, return_info=True)
    assert info["applied"] and shapes[0] == (160, 512, 3) and (160, 640, 3) in shapes
    # the ratio on the square: the square's deconvolution against the
    # square of the blurry photo and of the restoration
    window = kr.estimation_window(kr._luma(np.clip(soft, 0, 1) ** 2.2))
    # (with the kernel before alignment moves it: the one estimated from the restoration)
    first = kr.estimate_kernel(kr._luma(np.clip(soft, 0, 1) ** 2.2), kr._luma(np.clip(y, 0, 1) ** 2.2), size=21)
    square = rl(np.clip(y, 0, 1)[window] ** 2.2, first, kr.AWAY_ITERS, start=np.clip(soft, 0, 1)[window] ** 2.2,
                dtype=np.float32)
    expected = kr.away_ratio(y[window], soft[window], np.clip(square, 0, 1) ** (1 / 2.2))
    assert info["probe_away"] >= kr.PROBE_AWAY and info["probe_away"] == pytest.approx(expected, rel=1e-3)
    monkeypatch.setattr(kr, "PROBE_AWAY", info["probe_away"] + 0.01)
    shapes.clear()
    kept, turned = kr.refine(y, soft, size=21, rounds=1, return_info=True)
    assert not turned["applied"] and "estimation square" in turned["reason"] and turned["away"] is None
    np.testing.assert_array_equal(kept, np.clip(soft, 0, 1))
    assert shapes == [(160, 512, 3)]
    # unguarded, or a photo no larger than the square: no such test
    assert kr.refine(y, soft, size=21, rounds=1, guard=False, return_info=True)[1]["probe_away"] is None
    small = kr.refine(y[:, :160], soft[:, :160], size=21, rounds=1, return_info=True)[1]
    assert small["probe_away"] is None and small["applied"]


def test_guard_keeps_the_restoration_when_refinement_returns_towards_the_blurry_photo(monkeypatch):
    # Same clean pair both times; only the threshold on away_ratio moves.
    x = np.repeat(_scene(seed=8)[..., None], 3, axis=2) ** (1 / 2.2)
    y = blur_image(x.astype(np.float32), _kernel().astype(np.float32), noise_sigma=0, gamma=2.2, quantize=True)
    soft = cv2.GaussianBlur(x, (0, 0), 0.8)
    refined, info = kr.refine(y, soft, size=21, rounds=1, return_info=True)
    # the ratio is read after AWAY_ITERS iterations, where MIN_AWAY was set
    at_away = kr.refine(y, soft, size=21, rounds=1, iters=kr.AWAY_ITERS)
    assert info["applied"] and info["away"] == pytest.approx(kr.away_ratio(y, soft, at_away))
    assert info["away"] != pytest.approx(kr.away_ratio(y, soft, refined))
    monkeypatch.setattr(kr, "MIN_AWAY", info["away"] + 0.01)
    kept, again = kr.refine(y, soft, size=21, rounds=1, return_info=True)
    np.testing.assert_array_equal(kept, soft)
    assert not again["applied"] and again["kernel"].shape == (21, 21) and "closer to the blurry photo" in again["reason"]
    # With more rounds: every kernel estimated, one deconvolution, the same verdict
    calls, deconvolutions = [], []
    real, real_rl = kr.estimate_kernel, kr.richardson_lucy
    monkeypatch.setattr(kr, "estimate_kernel", lambda *a, **k: calls.append(1) or real(*a, **k))
    monkeypatch.setattr(kr, "richardson_lucy", lambda *a, **k: deconvolutions.append(1) or real_rl(*a, **k))
    # (single scale: the pyramid's rounds would estimate more)
    kept, late = kr.refine(y, soft, size=21, rounds=3, align=False, pyramid=False, restarts=1, return_info=True)
    np.testing.assert_array_equal(kept, soft)
    assert len(calls) == 3 and len(deconvolutions) == 1 and "closer to the blurry photo" in late["reason"]
    monkeypatch.setattr(kr, "MIN_AWAY", 0.0)
    assert kr.refine(y, soft, size=21, rounds=3, pyramid=False, restarts=1, return_info=True)[1]["applied"]
    assert len(calls) == 6


def test_away_ratio_and_accepts():
    blurry = np.zeros((4, 4))
    restored = np.full((4, 4), 0.1)
    assert kr.away_ratio(blurry, restored, np.full((4, 4), 0.05)) == pytest.approx(0.5)
    assert kr.away_ratio(blurry, restored, np.full((4, 4), 0.3)) == pytest.approx(3.0)
    assert kr.away_ratio(blurry, blurry, restored) == float("inf")  # the network did nothing
    assert kr.away_ratio(blurry, blurry, blurry) == 1.0
    assert kr.accepts(kr.NOISE_LIMIT / 2, kr.MIN_AWAY) and not kr.accepts(kr.NOISE_LIMIT, 2.0)
    assert not kr.accepts(0.0, kr.MIN_AWAY - 0.01)


def test_local_fit_reads_uniform_blur_under_one_and_a_half_blurred_photo_far_over():
    # Closed forms: blurred by the kernel itself, re-blurring the sharp image
    # fits every cell exactly (only the quantization floor is left); with the
    # right half unblurred (a still background beside a moving object) the
    # kernel makes those cells worse than no blur at all; a flat image has
    # nothing to fit and reads 1.
    x, k = _scene(size=240, seed=9), _kernel()
    y = kr.convolve(x, k)
    assert kr.local_fit(x, y, k) < 0.01
    half = y.copy()
    half[:, 120:] = x[:, 120:]
    assert kr.local_fit(x, half, k) > 100 * kr.LOCAL_FIT_MAX
    flat = np.full((200, 200), 0.4)
    assert kr.local_fit(flat, flat, k) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="tiles must be a positive integer"):
        kr.local_fit(x, y, k, tiles=0)
    with pytest.raises(ValueError, match="same shape"):
        kr.local_fit(x, y[:, :-1], k)


def test_guard_keeps_the_restoration_when_one_kernel_does_not_explain_the_blur(monkeypatch):
    # Half of the photo blurred, the other half sharp; the restoration is the
    # sharp image. Unguarded, the kernel (estimated from the blurred half)
    # smears the sharp half; guarded, the local fit stops it before any
    # deconvolution (the distance test switched off to isolate this one).
    monkeypatch.setattr(kr, "MIN_AWAY", 0.0)
    x = np.repeat(_scene(size=240, seed=9)[..., None], 3, axis=2) ** (1 / 2.2)
    y = np.array(blur_image(x.astype(np.float32), _kernel().astype(np.float32), noise_sigma=0, gamma=2.2,
                            quantize=True))
    y[:, 120:] = np.round(x[:, 120:] * 255) / 255
    unguarded, raw = kr.refine(y, x, size=21, rounds=1, guard=False, return_info=True)
    assert raw["applied"] and raw["local_fit"] > kr.LOCAL_FIT_MAX and _psnr(unguarded, x) < 35  # measured 29.1
    calls = []
    real, real_l0 = kr.richardson_lucy, kr.l0_latent
    monkeypatch.setattr(kr, "richardson_lucy", lambda *a, **k: calls.append(1) or real(*a, **k))
    monkeypatch.setattr(kr, "l0_latent", lambda *a, **k: calls.append(0) or real_l0(*a, **k))
    kept, info = kr.refine(y, x, size=21, rounds=3, return_info=True)
    np.testing.assert_array_equal(kept, x)
    assert not info["applied"] and not calls and "does not explain the blur everywhere" in info["reason"]
    assert "the first kernel of 3" in info["reason"] and info["local_fit"] > kr.LOCAL_FIT_MAX
    # The last kernel is checked too, after the L0 rounds and the first
    # deconvolution, which places it (`align`), and before the second
    # (the fits stubbed: the first passes, the last does not)
    fits = iter([0.5, kr.LOCAL_FIT_MAX + 0.01])
    monkeypatch.setattr(kr, "local_fit", lambda *a, **k: next(fits))
    calls.clear()
    kept, last = kr.refine(y, x, size=21, rounds=3, pyramid=False, restarts=1, return_info=True)
    np.testing.assert_array_equal(kept, x)
    assert "the last kernel of 3" in last["reason"] and calls == [0, 0, 1]  # two L0 rounds, one deconvolution
    # With the pyramid: its two rounds and the energies' two latents too;
    # the other candidate is then tried (placed by its own deconvolution of
    # the square) and checked in turn
    fits = iter([0.5, kr.LOCAL_FIT_MAX + 0.01, kr.LOCAL_FIT_MAX + 0.02])
    calls.clear()
    kept, last = kr.refine(y, x, size=21, rounds=3, restarts=1, return_info=True)
    np.testing.assert_array_equal(kept, x)
    assert len(last["energies"]) == 2 and calls == [0] * 6 + [1, 1]
    assert f"{kr.LOCAL_FIT_MAX + 0.02:.2f}x worse" in last["reason"]
    # The first kernel has its own limit (LOCAL_FIT_FIRST): a fit between
    # the two limits passes as the first kernel's and not as the last's
    monkeypatch.setattr(kr, "LOCAL_FIT_FIRST", kr.LOCAL_FIT_MAX + 0.1)
    between = kr.LOCAL_FIT_MAX + 0.05
    fits = iter([between, 0.5])
    assert kr.refine(y, x, size=21, rounds=3, pyramid=False, restarts=1, return_info=True)[1]["applied"]
    fits = iter([0.5, between])
    assert "the last kernel of 3" in kr.refine(y, x, size=21, rounds=3, pyramid=False, restarts=1,
                                               return_info=True)[1]["reason"]
    monkeypatch.setattr(kr, "LOCAL_FIT_FIRST", kr.LOCAL_FIT_MAX)
    fits = iter([between])
    assert "the first kernel of 3" in kr.refine(y, x, size=21, rounds=3, pyramid=False, restarts=1,
                                                return_info=True)[1]["reason"]


def test_trim_cuts_the_zero_frame_and_changes_no_convolution():
    # The test kernel's support spans rows 1-7 and columns 5-12 of 15x15
    # (middle 7, 7): cut symmetrically, 2 x 6 + 1 rows and 2 x 5 + 1 columns.
    k = _embed(_kernel(), 41)
    small = kr.trim(k)
    assert small.shape == (13, 11) and small.sum() == pytest.approx(1.0)
    x = np.repeat(_scene(size=120, seed=3)[..., None], 3, axis=2)
    np.testing.assert_allclose(kr.convolve(x, small), kr.convolve(x, k), atol=1e-12)  # rounding only
    y = kr.convolve(x, k)
    np.testing.assert_allclose(kr.richardson_lucy(y, k, 5), kr.richardson_lucy(y, _kernel(), 5), atol=1e-10)
    assert kr.trim(np.zeros((5, 5))).shape == (5, 5)


def test_auto_refines_images_large_enough_and_leaves_smaller_ones_to_the_network(monkeypatch):
    inputs = keras.Input((None, None, 3))
    soft = keras.Model(inputs, keras.layers.AveragePooling2D(3, strides=1, padding="same")(inputs))
    seen = []
    real = kr.refine
    monkeypatch.setattr(kr, "refine", lambda blurry, restored, **k: seen.append(blurry.shape) or real(blurry, restored, **k))
    img = np.repeat(_scene(size=kr.MIN_SIDE, seed=5)[..., None], 3, axis=2).astype(np.float32)
    auto = inference.Deblurrer(soft, kernel_refine="auto")
    small = img[:100, :110]
    np.testing.assert_array_equal(auto.restore_rgb(small), inference.Deblurrer(soft).restore_rgb(small))
    assert auto.last_refine is None and seen == []
    auto.restore_rgb(img)
    assert seen == [img.shape] and isinstance(auto.last_refine, dict)
    assert not inference.Deblurrer(soft).refines(*img.shape[:2]) and auto.refines(*img.shape[:2])
    assert not auto.refines(100, 500)
    # tfdeblur.deblur refines by default, as `deblur` on the command line
    import tfdeblur

    tfdeblur.deblur(img, soft)
    assert len(seen) == 2
    tfdeblur.deblur(img, soft, kernel_refine=False)
    assert len(seen) == 2


def _steps(size=160, seed=0):
    """Flat regions and sharp steps only (what the L0 prior describes)."""
    rng = np.random.default_rng(seed)
    img = np.full((size, size), 0.5)
    for _ in range(12):
        x0, y0 = (int(v) for v in rng.integers(0, size - 20, 2))
        w, h = (int(v) for v in rng.integers(10, size // 3, 2))
        cv2.rectangle(img, (x0, y0), (x0 + w, y0 + h), float(rng.uniform(0.1, 0.9)), -1)
    return img


def test_l0_latent_gives_a_delta_blur_back_and_recovers_steps_from_a_known_blur():
    # Closed form: with a delta kernel and a vanishing weight every gradient
    # is kept and the minimizer is the photo itself.
    y = _scene(seed=10)
    delta = np.zeros((3, 3))
    delta[1, 1] = 1.0
    np.testing.assert_allclose(kr.l0_latent(y, delta, weight=1e-12), y, atol=1e-6)
    # A piecewise-constant image blurred by the kernel: the L0 latent is far
    # closer to it than the blurry image, and its gradients are as sparse as
    # the truth's (measured: 41.5 dB against 23.7 blurry; 4.6 % of pixels
    # with a gradient over 0.01, the truth 5.2 %, the blurry image 24 %, a
    # vanishing weight 98 %).
    x, k = _steps(), _kernel()
    y = kr.convolve(x, k)
    got = kr.l0_latent(y, k)
    assert got.shape == y.shape
    assert _psnr(got, x) > _psnr(y, x) + 12

    def share(img):
        gx, gy = kr._gradients(img)
        return float(np.mean(np.hypot(gx, gy)[20:-20, 20:-20] > 0.01))

    assert share(got) < 1.5 * share(x) and share(y) > 3 * share(x)
    # The weight is what makes it sparse: a tiny one keeps the blur's gradients
    assert share(kr.l0_latent(y, k, weight=1e-9)) > 2 * share(got)


def test_l0_rounds_bring_the_kernel_estimate_closer_to_the_truth():
    # A restoration still soft (Gaussian, sigma 1.5 px) or with a ghost (a
    # shifted, weaker copy: the double edges a network's output leaves)
    # gives a first kernel estimate off the truth; the L0 rounds re-estimate
    # from the photo and bring it close (measured L1 distance to the true
    # kernel, 2 = disjoint: soft 0.54 after 1 round, 0.16 after 4; ghost
    # 0.41, 0.19).
    x = np.repeat(_scene(seed=4)[..., None], 3, axis=2) ** (1 / 2.2)
    k = _kernel()
    y = blur_image(x.astype(np.float32), k.astype(np.float32), noise_sigma=0, gamma=2.2, quantize=True)
    want = _embed(k, 21)
    for start in (cv2.GaussianBlur(x, (0, 0), 1.5), np.clip(0.6 * x + 0.4 * np.roll(x, (3, -2), axis=(0, 1)), 0, 1)):
        # align=False: the kernels as estimated (the ghosted start sits off
        # the photo's content, and alignment would follow it).
        _, one = kr.refine(y, start, size=21, rounds=1, guard=False, align=False, return_kernel=True)
        _, four = kr.refine(y, start, size=21, rounds=4, guard=False, align=False, return_kernel=True)
        assert np.abs(one - want).sum() > 0.35 and np.abs(four - want).sum() < 0.6 * np.abs(one - want).sum()


def test_estimation_window_is_the_square_with_the_most_edges():
    img = np.full((300, 500), 0.5)
    img[150:270, 330:470] = _scene(size=160, seed=3)[:120, :140]  # texture in the lower right only
    rows, cols = kr.estimation_window(img, side=160, border=10)
    assert (rows.stop - rows.start, cols.stop - cols.start) == (160, 160)
    assert rows.start >= 110 and cols.start >= 300 and rows.stop <= 290 and cols.stop <= 490
    assert kr.estimation_window(img, side=600) == (slice(0, 300), slice(0, 500))
    tall = kr.estimation_window(np.repeat(img, 3, axis=0)[:, :200], side=256)
    assert tall[1] == slice(0, 200) and tall[0].stop - tall[0].start == 256


def test_a_dark_photo_refines_like_a_bright_one_and_a_flat_one_comes_back():
    # The L0 weight is for values in [0, 1]: the rounds bring a dark photo
    # up first. The same scene 20x darker in linear light gives the same
    # kernel (L1 distance to the truth measured 0.15 at both exposures, from
    # 0.66 after the first estimate; without the scaling (weight 5e-4) the
    # dark one ended at 1.89, worse than where it started).
    k = _kernel()
    want = _embed(k, 21)
    got = {}
    for scale in (1.0, 0.05):
        x = np.repeat(((_scene(seed=4) ** 2.2 * scale) ** (1 / 2.2))[..., None], 3, axis=2)
        y = blur_image(x.astype(np.float32), k.astype(np.float32), noise_sigma=0, gamma=2.2, quantize=False)
        _, got[scale] = kr.refine(np.asarray(y, np.float64), cv2.GaussianBlur(x, (0, 0), 1.5), size=21, rounds=4,
                                  guard=False, return_kernel=True)
    assert np.abs(got[0.05] - want).sum() < 0.3 and np.abs(got[0.05] - got[1.0]).sum() < 0.05
    flat = np.full((kr.MIN_SIDE, kr.MIN_SIDE, 3), 0.4)
    out, info = kr.refine(flat, flat, return_info=True)
    np.testing.assert_array_equal(out, flat)
    assert not info["applied"] and "flat" in info["reason"]


def test_scale_kernel_closed_forms():
    # An 11 px line enlarged twice: 21 px long (bilinear spreads a pixel at
    # each end and half of each row to the rows beside it: 1/4, 1/2, 1/4),
    # still centred, sum 1; its variance along the line four times the
    # original's ((11^2 - 1) / 12 = 10), within a pixel^2.
    k = np.zeros((21, 21))
    k[10, 5:16] = 1.0 / 11
    big = kr.scale_kernel(k, 2.0, 41)
    assert big.shape == (41, 41) and abs(big.sum() - 1) < 1e-12 and big.min() >= 0
    cols = np.nonzero(big.sum(axis=0) > 1e-12)[0]
    assert (cols[0], cols[-1]) == (9, 31)
    np.testing.assert_allclose(big.sum(axis=1)[19:22], [0.25, 0.5, 0.25], atol=1e-6)
    assert kr.centroid(big) == pytest.approx((0.0, 0.0), abs=1e-9)
    var = float((big.sum(axis=0) * (np.arange(41) - 20.0) ** 2).sum())
    assert abs(var - 40.0) < 1.0
    np.testing.assert_allclose(kr.scale_kernel(k, 1.0, 21), k, atol=1e-12)
    with pytest.raises(ValueError, match="scale must be at least 1"):
        kr.scale_kernel(k, 0.5, 21)


def test_pyramid_fits_closed_form():
    # Half the photo must hold the coarse (21 px for 41) kernel's estimate:
    # 2 x 21 + 2 x BORDER = 82 px a side at half size.
    need = 2 * (2 * 21 + 2 * kr.BORDER)
    assert kr.pyramid_fits((need, need + 300), 41) and not kr.pyramid_fits((need - 2, need + 300), 41)
    assert kr.pyramid_fits((2 * (2 * 11 + 2 * kr.BORDER),) * 2, 21)


def test_l0_energy_closed_forms():
    # A vertical step and no blur: the L0 latent is the photo itself; the
    # energy is the weight times the step's pixels in the interior (160 - 2
    # x BORDER rows, one column); a flat photo has none.
    img = np.full((160, 160), 0.2)
    img[:, 80:] = 0.7
    delta = np.zeros((3, 3))
    delta[1, 1] = 1.0
    assert kr.l0_energy(img, delta, weight=1e-3) == pytest.approx(1e-3 * (160 - 2 * kr.BORDER), rel=1e-6)
    assert kr.l0_energy(np.full((160, 160), 0.4), delta, weight=1e-3) == pytest.approx(0.0, abs=1e-12)


def test_pyramid_rounds_find_a_long_kernel_at_its_length():
    # A 30 px hook; from the sharp image the rounds at half size, then at
    # full size from their kernel enlarged, end near the truth (measured L1
    # distance 0.20-0.31 after 2-8 rounds; 2 = disjoint). The kernel left at
    # half size (not enlarged) would be half as long: far off.
    k = kr.scale_kernel(_kernel(), 2.0, 31)
    x = _scene(size=200, seed=4)
    y = kr.convolve(x, k)
    want = _embed(k, 41)
    got = kr.pyramid_rounds(y, x, 4)
    assert got.shape == (41, 41) and abs(got.sum() - 1) < 1e-9
    assert np.abs(got - want).sum() < 0.4
    assert np.abs(_embed(_kernel(), 41) - want).sum() > 1.0


def test_refine_keeps_the_rounds_with_the_lower_l0_energy(monkeypatch):
    # Both candidates (single scale, coarse to fine) are estimated; the one
    # whose L0 latent has the lower energy is deconvolved with, whichever
    # of the two it is. A photo too small for the pyramid has one.
    x = np.repeat(_scene(seed=4)[..., None], 3, axis=2) ** (1 / 2.2)
    k = _embed(_kernel(), 21)
    y = blur_image(x.astype(np.float32), _kernel().astype(np.float32), noise_sigma=0, gamma=2.2, quantize=True)
    other = kr.shift_kernel(k, 0, 3)
    for single, pyramid in ((k, other), (other, k)):
        monkeypatch.setattr(kr, "l0_rounds", lambda *a, s=single, **kw: s)
        monkeypatch.setattr(kr, "pyramid_rounds", lambda *a, p=pyramid, **kw: p)
        monkeypatch.setattr(kr, "l0_energy", lambda b, kern, **kw: 1.0 if kern is k else 2.0)
        _, info = kr.refine(y, cv2.GaussianBlur(x, (0, 0), 0.8), size=21, rounds=4, guard=False, align=False,
                            restarts=1, return_info=True)
        assert info["energies"] in ([1.0, 2.0], [2.0, 1.0]) and info["kernel"] is k
        _, info = kr.refine(y, cv2.GaussianBlur(x, (0, 0), 0.8), size=21, rounds=4, guard=False, align=False,
                            pyramid=False, restarts=1, return_info=True)
        assert info["energies"] is None and info["kernel"] is single
    # Energies closer than the noise's draw keep the single-scale kernel
    monkeypatch.setattr(kr, "energy_draw", lambda b, **kw: 0.5)
    monkeypatch.setattr(kr, "l0_rounds", lambda *a, **kw: other)
    monkeypatch.setattr(kr, "pyramid_rounds", lambda *a, **kw: k)
    for low, chosen in ((1.6, other), (1.4, k)):
        monkeypatch.setattr(kr, "l0_energy", lambda b, kern, v=low, **kw: v if kern is k else 2.0)
        _, info = kr.refine(y, cv2.GaussianBlur(x, (0, 0), 0.8), size=21, rounds=4, guard=False, align=False,
                            restarts=1, return_info=True)
        assert info["kernel"] is chosen


def _dot_or_true_kernel():
    """A scene, its blurred photo (the test kernel, gamma 2.2, 8 bits), a
    soft restoration, the true kernel and a dot (both 21x21): the two
    candidates of the fallback and restart tests."""
    x = np.repeat(_scene(seed=4)[..., None], 3, axis=2) ** (1 / 2.2)
    y = blur_image(x.astype(np.float32), _kernel().astype(np.float32), noise_sigma=0, gamma=2.2, quantize=True)
    return x, y, cv2.GaussianBlur(x, (0, 0), 0.8), _embed(_kernel(), 21), _embed(np.ones((1, 1)), 21)


def test_refine_falls_back_to_the_other_candidate_when_the_guard_turns_the_first_down(monkeypatch):
    # The lower energy's kernel is a dot (a kernel shrunk by the rounds):
    # deconvolving with it returns the blurry photo, and the distance ratio
    # turns it down. The other candidate, the true kernel, is then tried and
    # used; with the dot as the only candidate the restoration is kept.
    x, y, soft, k, dot = _dot_or_true_kernel()
    monkeypatch.setattr(kr, "l0_rounds", lambda *a, **kw: dot)
    monkeypatch.setattr(kr, "pyramid_rounds", lambda *a, **kw: k)
    monkeypatch.setattr(kr, "l0_energy", lambda b, kern, **kw: 1.0 if kern is dot else 2.0)
    refined, info = kr.refine(y, soft, size=21, rounds=4, align=False, restarts=1, return_info=True)
    assert info["applied"] and info["kernel"] is k and info["turn"] == 1 and info["reason"] == ""
    assert _psnr(refined, x) > _psnr(soft, x) + 3
    kept, alone = kr.refine(y, soft, size=21, rounds=4, align=False, pyramid=False, restarts=1, return_info=True)
    np.testing.assert_array_equal(kept, soft)
    assert not alone["applied"] and alone["kernel"] is dot and "closer to the blurry photo" in alone["reason"]
    # Unguarded, the first candidate is used as it is
    _, raw = kr.refine(y, soft, size=21, rounds=4, align=False, guard=False, restarts=1, return_info=True)
    assert raw["applied"] and raw["kernel"] is dot and raw["turn"] == 0


def test_restarts_rank_every_start_by_energy_and_deconvolve_from_the_restoration(monkeypatch):
    # The rounds from the restoration itself shrink the kernel to a dot; from
    # the noisy copies (a kernel estimated from a perturbed start) they find
    # the true one. Ranked by energy, the true kernel is deconvolved with
    # (first, no fallback needed), and the deconvolution starts from the
    # restoration, not from a noisy copy: the result is the same as with
    # that kernel alone. One start keeps the restoration (the dot turned
    # down). Seeded: the same photo refines the same way twice.
    x, y, soft, k, dot = _dot_or_true_kernel()
    firsts, kernels, real_estimate = [], [], kr.estimate_kernel

    def estimate(*a, **kw):
        firsts.append(a[0])
        kernels.append(real_estimate(*a, **kw))
        return kernels[-1]
    monkeypatch.setattr(kr, "estimate_kernel", estimate)
    monkeypatch.setattr(kr, "l0_rounds", lambda part, begin, *a, **kw: dot if begin is kernels[0] else k)
    monkeypatch.setattr(kr, "l0_energy", lambda b, kern, **kw: 1.0 if kern is k else 2.0)
    refined, info = kr.refine(y, soft, size=21, rounds=4, align=False, pyramid=False, restarts=3, return_info=True)
    assert len(firsts) == 3 and len(info["energies"]) == 3 and info["energies"][0] == 2.0
    # the noisy starts differ from the restoration by about RESTART_NOISE
    assert 0.3 * kr.RESTART_NOISE < np.std(firsts[1] - firsts[0]) < 3 * kr.RESTART_NOISE
    assert info["applied"] and info["kernel"] is k and info["turn"] == 0
    monkeypatch.setattr(kr, "estimate_kernel", lambda *a, **kw: k)
    np.testing.assert_allclose(refined, kr.refine(y, soft, size=21, rounds=1, align=False), atol=1e-6)
    assert _psnr(refined, x) > _psnr(soft, x) + 3
    monkeypatch.setattr(kr, "estimate_kernel", estimate)
    firsts.clear()
    kernels.clear()
    again = kr.refine(y, soft, size=21, rounds=4, align=False, pyramid=False, restarts=3)
    np.testing.assert_array_equal(again, refined)
    firsts.clear()
    kernels.clear()
    kept, one = kr.refine(y, soft, size=21, rounds=4, align=False, pyramid=False, restarts=1, return_info=True)
    np.testing.assert_array_equal(kept, soft)
    assert not one["applied"] and one["kernel"] is dot
    with pytest.raises(ValueError, match="restarts must be a positive integer"):
        kr.refine(y, soft, size=21, rounds=4, restarts=0)


def test_energy_draw_reads_the_noise():
    # White noise of sigma s over n interior pixels: the fit term's sum of
    # squares varies by sqrt(2 n) s^2; the draw is PYRAMID_DRAW of that.
    rng = np.random.default_rng(3)
    for sigma in (0.005, 0.02):
        img = 0.5 + sigma * rng.standard_normal((200, 240))
        want = kr.PYRAMID_DRAW * np.sqrt(2.0 * 160 * 200) * sigma ** 2
        assert kr.energy_draw(img) == pytest.approx(want, rel=0.1)
    assert kr.energy_draw(np.full((100, 100), 0.3)) == 0.0


def test_in_threads_keeps_the_order_and_the_results():
    assert kr._in_threads(lambda v: v * v, range(7)) == [v * v for v in range(7)]
    assert kr._in_threads(lambda v: v, []) == []
