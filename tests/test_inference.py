"""tfdeblur.deblur / Deblurrer: tiling against whole-image runs, self-ensemble
against a closed form, file kinds and bit depths, tracing once."""
import cv2
import keras
import numpy as np
import pytest

import tfdeblur
from tfdeblur import inference


def _conv_stack(kernels, seed=0):
    """A linear, translation-equivariant model: bias-free 'same' convolutions."""
    rng = np.random.default_rng(seed)
    inputs = keras.Input((None, None, 3))
    x = inputs
    for i, k in enumerate(kernels):
        layer = keras.layers.Conv2D(3, k, padding="same", use_bias=False, name=f"c{i}")
        x = layer(x)
        layer.set_weights([rng.normal(0, 0.2, (k, k, 3, 3)).astype(np.float32)])
    return keras.Model(inputs, x)


def _identity():
    inputs = keras.Input((None, None, 3))
    return keras.Model(inputs, keras.layers.Identity()(inputs))


@pytest.fixture(scope="module")
def identity():
    return _identity()


def _rng_image(h, w, seed=0):
    return np.random.default_rng(seed).random((h, w, 3)).astype(np.float32)


# ------------------------------------------------------------------ tiling


@pytest.mark.parametrize("size, tile, overlap", [(37, 16, 8), (100, 32, 12), (64, 64, 16), (65, 64, 16), (130, 48, 24), (1000, 512, 128)])
@pytest.mark.parametrize("align", [1, 4, 16])
def test_tile_starts_cover_the_image_with_the_overlap(size, tile, overlap, align):
    starts = inference.tile_starts(size, tile, overlap, align)
    if tile - overlap >= align:
        assert all(s % align == 0 for s in starts)
    assert starts[0] == 0
    last = size - starts[-1]  # the last tile runs to the end
    assert min(tile, size) <= last < tile + align
    gaps = np.diff(starts)
    assert np.all(tile - gaps >= overlap)


@pytest.mark.parametrize("overlap", [8, 16, 21])
def test_edge_weights_of_neighbours_sum_to_one_at_exact_overlap(overlap):
    tile = 40
    a = inference.edge_weights(tile, False, True, overlap)
    b = inference.edge_weights(tile, True, False, overlap)
    # Tile b starts `overlap` pixels before tile a ends: sin^2 + cos^2 = 1.
    total = np.zeros(2 * tile - overlap)
    total[:tile] += a
    total[tile - overlap :] += b
    np.testing.assert_allclose(total, 1.0, atol=1e-12)
    margin = overlap // 4
    assert np.all(a[tile - margin :] == 0) and np.all(b[:margin] == 0)


@pytest.mark.parametrize("shape", [(70, 90), (33, 129), (128, 40)])
def test_tiled_identity_is_exact(identity, shape):
    img = _rng_image(*shape)
    out = inference.Deblurrer(identity, tile=32, overlap=12).restore_rgb(img)
    np.testing.assert_allclose(out, img, atol=1e-6)


def test_tiled_equals_whole_when_the_margin_covers_the_receptive_field():
    # Two 3x3 convolutions see 2 pixels each way; margin = overlap // 4 = 4.
    model = _conv_stack([3, 3])
    img = _rng_image(70, 93, seed=1)
    whole = model(img[None]).numpy()[0]
    tiled = inference.tiled(lambda b: model(b).numpy(), img, tile=32, overlap=16)
    np.testing.assert_allclose(tiled, whole, atol=1e-5)
    aligned = inference.tiled(lambda b: model(b).numpy(), img, tile=32, overlap=16, align=8)
    np.testing.assert_allclose(aligned, whole, atol=1e-5)
    # ...and the margin matters: without it tile borders leak into the result.
    seams = inference.tiled(lambda b: model(b).numpy(), img, tile=32, overlap=2)
    assert np.abs(seams - whole).max() > 1e-3


def test_progress_is_reported_per_tile_across_the_ensemble(identity):
    calls = []
    img = _rng_image(70, 90)  # 32px tiles, overlap 12: 3 rows x 4 columns
    inference.Deblurrer(identity, tile=32, overlap=12).restore_rgb(img, progress=lambda *a: calls.append(a))
    assert calls == [(i, 12) for i in range(1, 13)] + [(1, 1)]
    calls.clear()
    inference.Deblurrer(identity, tile=32, overlap=12, ensemble=True).restore_rgb(img, progress=lambda *a: calls.append(a))
    fractions = [done / total for done, total in calls]
    assert len(calls) == 8 * 12 + 8 and fractions == sorted(fractions) and fractions[-1] == 1.0
    calls.clear()
    inference.Deblurrer(identity).restore_rgb(img, progress=lambda *a: calls.append(a))  # untiled: one step
    assert calls == [(1, 1)]


def test_max_pixels_switches_tiling_on(identity):
    d = inference.Deblurrer(identity, max_pixels=100 * 100)
    assert d.tile_for(100, 100) is None and d.tile_for(100, 101) == inference.DEFAULT_TILE
    d = inference.Deblurrer(identity, tile=64)
    assert d.tile_for(64, 64) is None and d.tile_for(30, 65) == 64


def test_receptive_radius_of_a_conv_stack():
    # Three 3x3 convolutions: a 7x7 field, radius 3 (all of the mass inside).
    assert inference.receptive_radius(_conv_stack([3, 3, 3]), size=32, mass=1.0) == 3


# ----------------------------------------------------------- self-ensemble


def test_ensemble_equals_the_dihedral_average_kernel():
    # A linear conv under the 8 flips/rotations, mapped back, is the conv
    # with the correspondingly transformed kernel; zero padding commutes too.
    model = _conv_stack([5], seed=3)
    kernel = model.get_layer("c0").get_weights()[0]  # (kh, kw, in, out)
    img = _rng_image(23, 31, seed=2)
    got = inference.Deblurrer(model, ensemble=True).restore_rgb(img)
    avg = np.zeros_like(kernel)
    for k, flip in inference.DIHEDRAL:
        kk = np.rot90(kernel, -k, axes=(0, 1))
        avg += kk[:, ::-1] if flip else kk
    avg /= 8
    expected = np.zeros_like(img)
    for o in range(3):
        for i in range(3):
            expected[..., o] += cv2.filter2D(img[..., i], -1, avg[:, :, i, o], borderType=cv2.BORDER_CONSTANT)
    np.testing.assert_allclose(got, np.clip(expected, 0, 1), atol=1e-5)
    single = inference.Deblurrer(model).restore_rgb(img)
    assert np.abs(single - got).max() > 1e-3


def test_each_transform_is_the_conv_with_its_transformed_kernel():
    # restore_transforms yields, per (k, flip), the output mapped back: for a
    # linear conv, the conv with the kernel transformed the inverse way.
    model = _conv_stack([5], seed=4)
    kernel = model.get_layer("c0").get_weights()[0]
    img = _rng_image(21, 26, seed=5)
    d = inference.Deblurrer(model, ensemble=True)
    outs = list(d.restore_transforms(img))
    assert len(outs) == 8 and all(o.dtype == np.float32 and o.shape == img.shape for o in outs)
    for (k, flip), got in zip(inference.DIHEDRAL, outs):
        # the input was rotated k quarter turns, then flipped: undoing that on
        # the output is conv with the kernel flipped, then rotated back
        kk = np.rot90(kernel, k if flip else -k, axes=(0, 1))
        kk = kk[:, ::-1] if flip else kk
        want = np.zeros_like(img)
        for o in range(3):
            for i in range(3):
                want[..., o] += cv2.filter2D(img[..., i], -1, np.ascontiguousarray(kk[:, :, i, o]),
                                             borderType=cv2.BORDER_CONSTANT)
        np.testing.assert_allclose(got, want, atol=1e-5)  # not clipped: the conv's output leaves [0, 1]
    assert min(o.min() for o in outs) < 0 or max(o.max() for o in outs) > 1
    # restore_rgb is the clipped mean of exactly these
    np.testing.assert_array_equal(d.restore_rgb(img), np.clip(sum(outs[1:], outs[0]) / 8, 0, 1))
    np.testing.assert_array_equal(inference.Deblurrer(model).restore_rgb(img), np.clip(outs[0], 0, 1))



@pytest.mark.parametrize("n", [1, 2, 4, 8])
def test_ensemble_of_n_averages_the_first_n_transforms(n):
    # 4: the quarter-turn rotations; 2: the image and one quarter turn
    model = _conv_stack([3, 5], seed=6)
    img = _rng_image(18, 25, seed=7)
    outs = list(inference.Deblurrer(model).restore_transforms(img))
    d = inference.Deblurrer(model, ensemble=n)
    assert d.ensemble == n and d.transforms == inference.DIHEDRAL[:n]
    np.testing.assert_allclose(d.restore_rgb(img), np.clip(np.mean(outs[:n], axis=0), 0, 1), atol=1e-6)
    assert inference.ENSEMBLES[4] == [(k, False) for k in range(4)]


@pytest.mark.parametrize("bad", [0, 3, 16, "8", 2.0, None])
def test_ensemble_refuses_other_counts(identity, bad):
    with pytest.raises(ValueError, match="ensemble must be True, False or one of \\[1, 2, 4, 8\\]"):
        inference.Deblurrer(identity, ensemble=bad)
    assert inference.Deblurrer(identity, ensemble=True).ensemble == 8
    assert inference.Deblurrer(identity, ensemble=False).ensemble == 1


# ------------------------------------------------------------------ scales


def test_smaller_scale_keeps_the_detail_the_resizing_removed(identity):
    # An identity network restores nothing: down, restore, up, plus the
    # input's own down-up residual gives the input back.
    img = _rng_image(37, 50, seed=8)
    got = inference.Deblurrer(identity, scales=(0.5,)).restore_rgb(img)
    np.testing.assert_allclose(got, img, atol=1e-5)


def test_smaller_scale_is_conv_of_the_downscaled_image_upscaled():
    model = _conv_stack([3], seed=9)
    kernel = model.get_layer("c0").get_weights()[0]
    img = _rng_image(40, 46, seed=10)
    small = cv2.resize(img, (23, 20), interpolation=cv2.INTER_AREA)
    conv = np.zeros_like(small)
    for o in range(3):
        for i in range(3):
            conv[..., o] += cv2.filter2D(small[..., i], -1, np.ascontiguousarray(kernel[:, :, i, o]),
                                         borderType=cv2.BORDER_CONSTANT)
    up = cv2.resize(np.clip(conv, 0, 1), (46, 40), interpolation=cv2.INTER_CUBIC)
    want = np.clip(up + img - cv2.resize(small, (46, 40), interpolation=cv2.INTER_CUBIC), 0, 1)
    half = inference.Deblurrer(model, scales=(0.5,)).restore_rgb(img)
    np.testing.assert_allclose(half, want, atol=1e-5)
    full = inference.Deblurrer(model).restore_rgb(img)
    both = inference.Deblurrer(model, scales=(1.0, 0.5), scale_fusion="mean").restore_rgb(img)
    np.testing.assert_allclose(both, (full + half) / 2, atol=1e-6)
    assert np.abs(half - full).max() > 1e-2


def _sobel_energy(rgb):
    # independent of the library's cv2 version: scipy's Sobel, mirrored borders as cv2's default
    from scipy import ndimage

    luma = rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    return float(np.mean(ndimage.sobel(luma, axis=1, mode="mirror") ** 2 + ndimage.sobel(luma, axis=0, mode="mirror") ** 2))


def test_sharpness_is_the_mean_squared_sobel_gradient_of_the_luma():
    # a horizontal ramp of slope a per pixel: the 3x3 Sobel reads 8a inside,
    # 0 on the two mirrored border columns
    a, h, w = 0.01, 12, 30
    ramp = np.repeat((a * np.arange(w, dtype=np.float32))[None, :, None], h, axis=0).repeat(3, axis=2)
    assert inference.sharpness(ramp) == pytest.approx((8 * a) ** 2 * (w - 2) / w, rel=1e-5)
    assert inference.sharpness(ramp[..., 0]) == pytest.approx(inference.sharpness(ramp), rel=1e-6)
    img = _rng_image(33, 41, seed=21)
    assert inference.sharpness(img) == pytest.approx(_sobel_energy(img), rel=1e-4)
    assert inference.sharpness(np.full((8, 8, 3), 0.3, np.float32)) == 0.0


def test_scale_weights_follow_the_power_of_the_sharpness():
    np.testing.assert_allclose(inference.scale_weights([1.0, 2.0], power=4), [1 / 17, 16 / 17])
    np.testing.assert_allclose(inference.scale_weights([3.0, 3.0, 3.0]), [1 / 3] * 3)
    np.testing.assert_allclose(inference.scale_weights([0.0, 0.0]), [0.5, 0.5])
    np.testing.assert_allclose(inference.scale_weights([1e-30, 2e-30], power=1), [1 / 3, 2 / 3])
    for bad in ([], [-1.0, 1.0], [np.nan, 1.0]):
        with pytest.raises(ValueError, match="values must be a non-empty list of non-negative numbers"):
            inference.scale_weights(bad)


def test_scales_are_weighted_by_the_sharpness_of_their_outputs():
    """The default fusion: each scale's output weighs (its Sobel energy) **
    SHARPNESS_POWER; recomputed here from the single-scale outputs with
    scipy's Sobel, on a network whose two scales' outputs differ in
    sharpness (so the weights are not the plain mean's)."""
    model = _conv_stack([3], seed=9)
    img = _rng_image(40, 46, seed=10)
    full = inference.Deblurrer(model).restore_rgb(img)
    half = inference.Deblurrer(model, scales=(0.5,)).restore_rgb(img)
    d = inference.Deblurrer(model, scales=(1.0, 0.5))
    assert d.scale_fusion == "sharpness"
    both = d.restore_rgb(img)
    e = np.array([_sobel_energy(full), _sobel_energy(half)])
    w = (e / e.max()) ** inference.SHARPNESS_POWER
    w /= w.sum()
    np.testing.assert_allclose(both, np.clip(w[0] * full + w[1] * half, 0, 1), atol=2e-5)
    assert d.last_scale_weights[1.0] == pytest.approx(w[0], rel=1e-3) and d.last_scale_weights[0.5] == pytest.approx(w[1], rel=1e-3)
    assert abs(w[0] - 0.5) > 0.05  # not the plain mean
    assert np.abs(both - (full + half) / 2).max() > 1e-3
    d.restore_rgb(_rng_image(39, 46, seed=10))
    assert d.last_scale_weights != {1.0: pytest.approx(w[0]), 0.5: pytest.approx(w[1])}  # per image
    with pytest.raises(ValueError, match="scale_fusion must be one of sharpness, mean; got 'max'"):
        inference.Deblurrer(model, scale_fusion="max")


def test_auto_scales_pick_by_the_shorter_side(monkeypatch):
    """`scales="auto"`: (1.0, 0.5) from AUTO_MIN_SIDE px on the shorter side,
    (1.0, 0.5, 0.25) from twice that (the same output as asking for them),
    the plain pass below it; never deeper than AUTO_MAX_LEVELS."""
    monkeypatch.setattr(inference, "AUTO_MIN_SIDE", 40)
    model = _conv_stack([3], seed=11)
    auto = inference.Deblurrer(model, scales="auto")
    assert auto.scales == "auto" and inference.Deblurrer(model, scales=" Auto ").scales == "auto"
    for h, w, want in ((40, 46, (1.0, 0.5)), (46, 40, (1.0, 0.5)), (39, 80, (1.0,)), (80, 39, (1.0,)),
                       (79, 96, (1.0, 0.5)), (80, 88, (1.0, 0.5, 0.25)), (96, 80, (1.0, 0.5, 0.25))):
        assert auto.scales_for(h, w) == want == inference.auto_scales(h, w)
        img = _rng_image(h, w, seed=h + w)
        np.testing.assert_array_equal(auto.restore_rgb(img), inference.Deblurrer(model, scales=want).restore_rgb(img))
    big, small = _rng_image(40, 46, seed=12), _rng_image(39, 46, seed=12)
    assert np.abs(auto.restore_rgb(big) - inference.Deblurrer(model).restore_rgb(big)).max() > 1e-2
    np.testing.assert_array_equal(auto.restore_rgb(small), inference.Deblurrer(model).restore_rgb(small))
    assert inference.auto_scales(4000, 6000) == (1.0, 0.5, 0.25)
    monkeypatch.setattr(inference, "AUTO_MAX_LEVELS", 3)
    assert inference.auto_scales(160, 200) == (1.0, 0.5, 0.25, 0.125) and inference.auto_scales(159, 200) == (1.0, 0.5, 0.25)


def test_the_deblur_function_defaults_to_auto_scales(monkeypatch):
    """`tfdeblur.deblur` (the one-line API, like the `deblur` command)
    restores at "auto" scales unless told; `Deblurrer` stays at scale 1."""
    monkeypatch.setattr(inference, "AUTO_MIN_SIDE", 40)
    model = _conv_stack([3], seed=13)
    img = _rng_image(40, 46, seed=14)
    both = inference.Deblurrer(model, scales=(1.0, 0.5)).restore_rgb(img)
    np.testing.assert_allclose(inference.deblur(img, model), both, atol=1e-6)
    np.testing.assert_allclose(inference.deblur(img, model, scales=(1.0,)), inference.Deblurrer(model).restore_rgb(img),
                               atol=1e-6)
    assert inference.Deblurrer(model).scales == (1.0,)


@pytest.mark.parametrize("bad", [(), (0.0,), (1.5,), (0.5, 0.5), ("x",), "0.5", "automatic", None])
def test_scales_are_checked(identity, bad):
    with pytest.raises(ValueError, match="scales must be distinct numbers in \\(0, 1\\]"):
        inference.Deblurrer(identity, scales=bad)


def test_an_image_too_small_at_a_scale_is_one_clear_error():
    model = keras.Model(inputs := keras.Input((None, None, 3)), keras.layers.Identity()(inputs))
    model.min_size = 16
    d = inference.Deblurrer(model, scales=(1.0, 0.25))
    with pytest.raises(ValueError, match="40x30 at scale 0.25 is 10x8, smaller than the network's minimum 16x16"):
        d.restore_rgb(_rng_image(30, 40))

# ---------------------------------------------------- dtypes and channels


@pytest.mark.parametrize(
    "make",
    [
        lambda r: (r.random((20, 30, 3)) * 255).astype(np.uint8),
        lambda r: (r.random((20, 30, 3)) * 65535).astype(np.uint16),
        lambda r: (r.random((20, 30)) * 255).astype(np.uint8),
        lambda r: (r.random((20, 30, 1)) * 65535).astype(np.uint16),
        lambda r: (r.random((20, 30, 4)) * 255).astype(np.uint8),
        lambda r: (r.random((20, 30, 2)) * 65535).astype(np.uint16),
        lambda r: r.random((20, 30, 3)).astype(np.float64),
    ],
    ids=["rgb8", "rgb16", "gray8", "gray16x1", "rgba8", "grayalpha16", "float64"],
)
def test_identity_model_returns_the_input_in_its_dtype_and_shape(identity, make):
    img = make(np.random.default_rng(4))
    out = tfdeblur.deblur(img, identity)
    assert out.shape == img.shape
    assert out.dtype == (np.float32 if img.dtype == np.float64 else img.dtype)
    np.testing.assert_allclose(out, img, atol=1e-6)


def test_alpha_passes_through_and_gray_is_restored_via_rgb():
    model = _conv_stack([3], seed=5)
    rng = np.random.default_rng(6)
    rgba = (rng.random((24, 24, 4)) * 255).astype(np.uint8)
    out = tfdeblur.deblur(rgba, model)
    np.testing.assert_array_equal(out[..., 3], rgba[..., 3])
    np.testing.assert_array_equal(out[..., :3], tfdeblur.deblur(rgba[..., :3], model))
    gray = (rng.random((24, 24)) * 255).astype(np.uint8)
    via_rgb = tfdeblur.deblur(np.repeat(gray[..., None], 3, axis=2), model).astype(np.float64)
    # the mean of the rounded channels is within one level of the rounded mean
    assert np.abs(tfdeblur.deblur(gray, model) - via_rgb.mean(axis=2)).max() <= 1.0


def test_path_input_keeps_16_bits(identity, tmp_path):
    img = (np.random.default_rng(7).random((20, 22, 3)) * 65535).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "x.png"), img[..., ::-1])
    out = tfdeblur.deblur(tmp_path / "x.png", identity)
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, img)


def test_one_trace_for_all_sizes_tiles_and_rotations(identity):
    d = inference.Deblurrer(_identity(), tile=32, overlap=8, ensemble=True)
    for shape in [(20, 30), (20, 30), (41, 50), (70, 20)]:
        d(_rng_image(*shape))
    assert d.tracing_count == 1


# ------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "img, match",
    [
        (np.zeros((0, 5, 3), np.uint8), "empty"),
        (np.zeros((20, 20, 5), np.uint8), "HxWx3"),
        (np.zeros((20, 20, 3), np.int32), "uint8, uint16 or float"),
        (np.full((20, 20, 3), np.nan, np.float32), "NaN"),
        (np.zeros((20,), np.uint8), "HxW"),
    ],
    ids=["zero-size", "5-channels", "int32", "nan", "1-d"],
)
def test_bad_arrays_are_one_line_errors(identity, img, match):
    with pytest.raises(ValueError, match=match) as e:
        inference.Deblurrer(identity)(img, name="photo.png")
    assert str(e.value).startswith("photo.png: ") and "\n" not in str(e.value)


@pytest.mark.parametrize(
    "options, match",
    [(dict(tile=8), "tile must be"), (dict(tile=64, overlap=40), "overlap must be"),
     (dict(overlap=-1), "overlap must be"), (dict(max_pixels=0), "max_pixels must be")],
)
def test_bad_options(identity, options, match):
    with pytest.raises(ValueError, match=match):
        inference.Deblurrer(identity, **options)


# ------------------------------------------------------------ precision


def _perturbed_lmfn(seed=0):
    import tfdeblur.models as models

    model = models.build("lmfn", levels=2, channels=16, mffd_channels=16, num_rfdb=1)
    rng = np.random.default_rng(seed)
    model.set_weights([w + 0.05 * rng.standard_normal(w.shape).astype(w.dtype) for w in model.get_weights()])
    return model


def test_bf16_runs_a_mixed_bfloat16_twin_close_to_fp32():
    """precision="bf16": a twin of the network in Keras' mixed_bfloat16
    policy with the same weights (the output head float32); the model given
    is left as it was; the output differs from fp32's by bf16 rounding only."""
    model = _perturbed_lmfn()
    twin = inference.in_precision(model, "bf16")
    assert twin is not model and inference.in_precision(model, "fp32") is model
    convs = [l for l in twin._flatten_layers() if isinstance(l, keras.layers.Conv2D)]
    assert convs and all(l.compute_dtype == "bfloat16" for l in convs)
    assert all(l.compute_dtype == "float32" for l in model._flatten_layers() if isinstance(l, keras.layers.Conv2D))
    assert inference.in_precision(twin, "bf16") is twin  # already mixed: not twinned again
    for a, b in zip(twin.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    img = _rng_image(40, 44, seed=3)
    full = inference.Deblurrer(model).restore_rgb(img)
    d = inference.Deblurrer(model, precision="bf16")
    half = d.restore_rgb(img)
    assert d.precision == "bf16" and half.dtype == np.float32
    diff = np.abs(half - full)
    assert 0 < diff.max() < 0.05 and diff.mean() < 0.01


def test_auto_precision_follows_the_machine(monkeypatch):
    from tfdeblur import precision as p

    monkeypatch.setattr(p, "_gpu_capability", lambda: None)
    model = _perturbed_lmfn(1)
    monkeypatch.setattr(p, "_read_cpuinfo", lambda: "model name\t: Xeon 8481C\nflags\t\t: avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n")
    d = inference.Deblurrer(model, precision="auto")
    assert d.precision == "bf16" and "AMX" in d.precision_reason
    monkeypatch.setattr(p, "_read_cpuinfo", lambda: "model name\t: AMD EPYC 7B13\nflags\t\t: avx2 fma\n")
    d = inference.Deblurrer(model, precision="auto")
    assert d.precision == "fp32" and d.precision_reason == "CPU has no AMX/AVX512-BF16 (AMD EPYC 7B13)"
    assert inference.Deblurrer(model).precision == "fp32"  # Deblurrer's default
    with pytest.raises(ValueError, match="precision must be one of fp32, bf16, auto; got 'fp16'"):
        inference.Deblurrer(model, precision="fp16")


def test_an_export_runs_as_exported():
    export = inference.ExportedModel("m.tflite", "tflite", {"network": "m"}, run=lambda batch: batch)
    assert inference.resolve_inference_precision(export, "auto") == ("fp32", "a tflite export runs as exported")
    with pytest.raises(ValueError, match="precision bf16 needs the Keras network; got a tflite export \\(m.tflite\\)"):
        inference.resolve_inference_precision(export, "bf16")


def test_the_deblur_function_defaults_to_auto_precision(monkeypatch):
    seen = []
    real = inference.Deblurrer.__init__

    def spy(self, *args, **kwargs):
        seen.append(kwargs.get("precision"))
        real(self, *args, **kwargs)

    monkeypatch.setattr(inference.Deblurrer, "__init__", spy)
    model = _perturbed_lmfn(2)
    img = _rng_image(24, 28, seed=5)
    inference.deblur(img, model)
    inference.deblur(img, model, precision="fp32")
    assert seen == ["auto", "fp32"]


def test_auto_bf16_keeps_sixteen_bit_images_in_fp32(monkeypatch):
    """Under "auto" a bf16 choice covers 8-bit and float images; 16-bit ones
    run in fp32 (bf16's 8-bit mantissa would throw their precision away)."""
    from tfdeblur import precision as p

    monkeypatch.setattr(p, "_gpu_capability", lambda: None)
    monkeypatch.setattr(p, "_read_cpuinfo", lambda: "model name\t: Xeon 8481C\nflags\t\t: avx512_bf16 amx_bf16 amx_tile\n")
    model = _perturbed_lmfn(3)
    auto = inference.Deblurrer(model, precision="auto")
    assert auto.precision == "bf16" and auto.precision_reason.endswith("; 16-bit images in fp32")
    fp32, bf16 = inference.Deblurrer(model, precision="fp32"), inference.Deblurrer(model, precision="bf16")
    rng = np.random.default_rng(4)
    img16 = (rng.random((36, 40, 3)) * 65535).astype(np.uint16)
    img8 = (rng.random((36, 40, 3)) * 255).astype(np.uint8)
    np.testing.assert_array_equal(auto(img16), fp32(img16))
    assert np.abs(bf16(img16).astype(int) - fp32(img16).astype(int)).max() > 16  # what bf16 would have cost
    np.testing.assert_array_equal(auto(img8), bf16(img8))
    np.testing.assert_array_equal(auto(img16), fp32(img16))  # and back again
    assert not inference.Deblurrer(model, precision="bf16").full_precision_for_16_bit  # asked for: bf16 throughout
