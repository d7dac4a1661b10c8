"""Scoring protocols (tfdeblur/protocols.py) and `eval` against independent
references: scipy's 3-D Gaussian filter, scikit-image, the GoPro golden
values, known warps and shifts."""
import csv
import json
import math

import cv2
import numpy as np
import pytest
from scipy import ndimage
from skimage.metrics import structural_similarity

from tests.helpers import run_cli_error, save_tiny_model, shared_path
from tfdeblur import metrics, protocols
from tfdeblur.cli import main


def _texture(h, w, seed=0):
    """A smooth colour texture (ECC and phase correlation need structure)."""
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.random((h, w, 3)), (0, 0), 2.0)
    img = (img - img.min()) / (img.max() - img.min())
    return (0.1 + 0.8 * img * 255).astype(np.float64)


def _u8(x):
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def test_matlab_ssim_against_scipy_3d_gaussian():
    # A second implementation of MATLAB's RGB ssim: scipy's 3-D Gaussian
    # (sigma 1.5, radius 5 = 11 taps, 'nearest' = replicate) on the volume.
    rng = np.random.default_rng(0)
    a = _u8(_texture(40, 50, seed=1))
    b = _u8(a + rng.normal(0, 12, a.shape))

    def blur(z):
        return ndimage.gaussian_filter(z, 1.5, mode="nearest", truncate=5 / 1.5)

    x, y = a.astype(np.float64), b.astype(np.float64)
    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    expected = np.mean((2 * mx * my + c1) * (2 * cxy + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
    assert metrics.ssim_matlab_rgb(a, b) == pytest.approx(expected, abs=1e-9)


def test_whole_protocol_on_the_gopro_golden_pair():
    # ../shared/README.md golden values: PSNR to 3 decimals (tolerance 0.005),
    # per-channel SSIM to 3 decimals (0.0015: rounding plus tf.image.ssim's
    # float32 reading of the same number), MATLAB RGB SSIM "roughly 0.95"
    # (two decimals: 0.01).
    from tfdeblur import io as tio

    folder = shared_path("data", "gopro_pair")
    sharp = tio.read_image_raw(folder / "GOPR0384_11_00-000001_sharp.png")
    hinet = tio.read_image_raw(folder / "GOPR0384_11_00-000001_out_hinet.png")
    got = protocols.score("gopro", hinet, sharp)
    assert got["psnr"] == pytest.approx(33.190, abs=0.005)
    assert got["ssim"] == pytest.approx(0.930, abs=0.0015)
    assert got["ssim_matlab"] == pytest.approx(0.95, abs=0.01)


def test_masked_ssim_with_a_full_mask_is_scikit_images():
    rng = np.random.default_rng(2)
    a = _texture(36, 44, seed=3) / 255
    b = np.clip(a + rng.normal(0, 0.05, a.shape), 0, 1)
    _, full = structural_similarity(a, b, channel_axis=-1, gaussian_weights=True, sigma=1.5,
                                    use_sample_covariance=False, data_range=1.0, full=True)
    expected = full[5:-5, 5:-5].mean()
    assert protocols.masked_ssim(b, a, np.ones_like(a)) == pytest.approx(expected, abs=1e-9)
    assert protocols.masked_psnr(a, b, np.ones_like(a)) == pytest.approx(10 * np.log10(1 / np.mean((a - b) ** 2)))


def test_realblur_undoes_a_known_homography_and_gain():
    sharp = _u8(_texture(120, 160, seed=4))
    warp = np.float32([[1.0, 0.01, 2.5], [-0.008, 1.0, -1.5], [0.0, 0.0, 1.0]])
    moved = cv2.warpPerspective(sharp.astype(np.float32), warp, (160, 120), flags=cv2.INTER_CUBIC,
                                borderMode=cv2.BORDER_REFLECT)
    output = _u8(moved * 0.85)
    plain = protocols.score("whole", output, sharp)
    got = protocols.score("realblur", output, sharp)
    assert got["aligned"] and plain["psnr"] < 25
    assert got["psnr"] > 38 and got["ssim"] > 0.98
    _, _, mask, found, _ = protocols.realblur_align(output, sharp)
    np.testing.assert_allclose(found / found[2, 2], warp, atol=0.05)
    assert 0.9 < mask.mean() < 1.0  # the warp's border is masked out


def test_kohler_finds_the_frame_shift_and_gain():
    frames = np.stack([_u8(_texture(80, 96, seed=s)) for s in (5, 6, 7)])
    output = _u8(np.roll(frames[1].astype(np.float64), (3, -2), axis=(0, 1)) * 0.8)
    got = protocols.score("kohler", output, frames)
    assert got["frame"] == 1
    np.testing.assert_allclose(got["shift"], [-2, 3], atol=0.1)
    assert got["psnr"] > 40  # only 8-bit rounding of the 0.8 gain is left
    assert protocols.score("kohler", output, frames[0])["psnr"] < 25


def test_protocol_errors():
    with pytest.raises(ValueError, match="`protocol` must be one of"):
        protocols.score("dpdd", np.zeros((20, 20, 3), np.uint8), np.zeros((20, 20, 3), np.uint8))
    with pytest.raises(ValueError, match="same shape"):
        protocols.score("realblur", np.zeros((20, 20, 3), np.uint8), np.zeros((20, 21, 3), np.uint8))
    with pytest.raises(ValueError, match="larger than 31"):
        protocols.score("kohler", np.zeros((20, 40, 3), np.uint8), np.zeros((20, 40, 3), np.uint8))


# ------------------------------------------------------------------- eval


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("model") / "tiny.keras")


def _pairs(root, n=2, size=(48, 64)):
    for i in range(n):
        sharp = _u8(_texture(*size, seed=10 + i))
        blur = cv2.GaussianBlur(sharp, (5, 5), 1.2)
        for kind, img in (("blur", blur), ("sharp", sharp)):
            (root / kind).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / kind / f"{i:02d}.png"), img[..., ::-1])
    return f"pairs:{root / 'blur'},{root / 'sharp'}"


def test_eval_table_csv_json_match_the_api_and_metrics(tiny_model, tmp_path, capsys):
    import tfdeblur
    from tfdeblur import io as tio

    data = _pairs(tmp_path)
    argv = ["eval", "--model", tiny_model, "--data", data, "--csv", str(tmp_path / "s.csv"), "--json", str(tmp_path / "s.json")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "SSIM-M" in out and "protocol: whole" in out and "MATLAB" in out
    rows = list(csv.DictReader(open(tmp_path / "s.csv")))
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["images"] == 2 and summary["protocol"] == "whole"
    assert set(summary["ssim_conventions"]) == {"ssim", "ssim_matlab"}
    for row in rows:
        blur = tmp_path / "blur" / row["name"]
        sharp = tio.read_image_raw(tmp_path / "sharp" / row["name"])
        restored = tfdeblur.deblur(blur, tiny_model)
        assert float(row["psnr"]) == pytest.approx(metrics.psnr(restored, sharp), abs=1e-9)
        assert float(row["ssim_matlab"]) == pytest.approx(metrics.ssim_matlab_rgb(restored, sharp), abs=1e-9)
        assert float(row["seconds"]) > 0
    assert summary["psnr"] == pytest.approx(np.mean([float(r["psnr"]) for r in rows]))
    assert main(argv[:5] + ["--protocol", "realblur", "--tile", "32", "--overlap", "8"]) == 0
    assert "protocol: realblur" in capsys.readouterr().out


def test_eval_bad_arguments(tiny_model, tmp_path, capsys):
    data = _pairs(tmp_path, n=1)
    err = run_cli_error(capsys, ["eval", "--model", tiny_model, "--data", data, "--protocol", "dpdd"])
    assert "--protocol must be one of" in err and "dpdd" in err
    err = run_cli_error(capsys, ["eval", "--model", tiny_model, "--data", data, "--csv", str(tmp_path)])
    assert f"--csv {tmp_path}: is a directory" in err
    cv2.imwrite(str(tmp_path / "sharp" / "00.png"), np.zeros((48, 60, 3), np.uint8))
    err = run_cli_error(capsys, ["eval", "--model", tiny_model, "--data", data])
    assert "00.png" in err and "60" in err


def test_eval_kohler_layout_scores_against_every_frame(tiny_model, tmp_path, capsys):
    # Köhler layout: Blurry<i>_<j>.png and Image<i>/Kernel<j>/GroundTruth<i>_<j>_<k>.png
    frames = [_u8(_texture(48, 64, seed=20 + k)) for k in range(3)]
    for k, frame in enumerate(frames, 1):
        (tmp_path / "Image1" / "Kernel1").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(tmp_path / "Image1" / "Kernel1" / f"GroundTruth1_1_{k}.png"), frame[..., ::-1])
    blur = cv2.GaussianBlur(frames[2], (5, 5), 1.0)
    cv2.imwrite(str(tmp_path / "Blurry1_1.png"), blur[..., ::-1])
    report = tmp_path / "k.json"
    assert main(["eval", "--model", tiny_model, "--data", f"kohler:{tmp_path}", "--json", str(report)]) == 0
    assert "protocol: kohler" in capsys.readouterr().out
    summary = json.loads(report.read_text())
    expected = protocols.score("kohler", blur, np.stack(frames))
    assert expected["frame"] == 2
    assert summary["input_psnr"] == pytest.approx(expected["psnr"], abs=1e-9)


def test_levin_finds_a_known_integer_shift_and_scores_the_interior():
    # Closed form: a shifted copy of the truth is found at its shift with an
    # exact match; PSNR over the interior (15 px border, as Levin's
    # comp_upto_shift.m) equals skimage's.
    truth = _u8(_texture(60, 70, seed=4))
    shifted = np.roll(truth, (2, -1), axis=(0, 1))  # output[y + 2, x - 1] = truth[y, x]
    got = protocols.score("levin", shifted, truth)
    assert got["shift"] == [-1, 2] and got["ssim"] == pytest.approx(1.0) and got["psnr"] == math.inf
    noisy = _u8(shifted + np.random.default_rng(0).normal(0, 6, shifted.shape))
    on_grid = protocols.levin(noisy, truth, step=1.0)
    assert on_grid["shift"] == [-1, 2]
    from skimage.metrics import peak_signal_noise_ratio

    want = peak_signal_noise_ratio(truth[15:-15, 15:-15], noisy[17:-13, 14:-16], data_range=255)
    assert on_grid["psnr"] == pytest.approx(want, abs=1e-4)
    # On the quarter-pixel grid, interpolation averages some noise away:
    # the best shift stays within half a pixel and scores at least as well.
    got = protocols.score("levin", noisy, truth)
    assert abs(got["shift"][0] + 1) <= 0.5 and abs(got["shift"][1] - 2) <= 0.5 and got["psnr"] >= want
    # Levin's search reaches +-5 px (k6's centre of mass is 4.3 px off its
    # array's centre); beyond that the score stays low.
    assert protocols.score("levin", np.roll(truth, (5, -4), axis=(0, 1)), truth)["shift"] == [-4, 5]
    far = np.roll(truth, (7, 0), axis=(0, 1))
    assert protocols.score("levin", far, truth)["psnr"] < protocols.score("levin", shifted, truth)["psnr"] - 20


def test_levin_finds_a_quarter_pixel_shift_as_scipy_interpolates_it():
    # An independent bilinear shift (scipy.ndimage.shift, order 1) of a smooth
    # truth by (-1.25, +2.5) px is found at the opposite quarter-pixel shift,
    # and the PSNR equals scipy's own re-shift of the output scored by skimage.
    from skimage.metrics import peak_signal_noise_ratio

    truth = _u8(cv2.GaussianBlur(_texture(72, 80, seed=9), (0, 0), 1.5))
    t = truth.astype(np.float64)
    output = _u8(ndimage.shift(t, (-1.25, 2.5, 0), order=1, mode="nearest"))  # output[y, x] = truth[y + 1.25, x - 2.5]
    got = protocols.score("levin", output, truth)
    assert got["shift"] == [2.5, -1.25]
    back = ndimage.shift(output.astype(np.float64) / 255.0, (1.25, -2.5, 0), order=1, mode="nearest")
    want = peak_signal_noise_ratio(t[15:-15, 15:-15] / 255.0, np.clip(back[15:-15, 15:-15], 0, 1), data_range=1.0)
    assert got["psnr"] == pytest.approx(want, abs=1e-3)
    # The integer-only search of before 2026-11-27 would have scored lower.
    assert got["psnr"] > protocols.levin(output, truth, step=1.0)["psnr"] + 1.0


def test_evaluate_pairs_scores_the_same_outputs_with_more_protocols():
    # `also` scores each output a second way without restoring again; its
    # numbers equal a separate run with that protocol, and the shift search
    # of `levin` lifts a shifted output that `whole` punishes.
    from tfdeblur.evaluate import evaluate_pairs

    class Shifter:  # a stand-in restorer: returns its input moved by (2, -1) px
        calls = 0

        def restore_rgb(self, rgb, progress=None):
            Shifter.calls += 1
            return np.roll(rgb, (2, -1), axis=(0, 1))

    sharp = [_texture(64, 72, seed=s) / 255.0 for s in (1, 2)]
    pairs = [(cv2.GaussianBlur(x, (0, 0), 1.2), x) for x in sharp]
    both, rows, _ = evaluate_pairs(None, pairs, protocol="levin", deblurrer=Shifter(), also=("whole",))
    assert Shifter.calls == 2
    alone, _, _ = evaluate_pairs(None, pairs, protocol="whole", deblurrer=Shifter())
    for key in ("psnr", "ssim", "input_psnr", "input_ssim"):
        assert both["also"]["whole"][key] == pytest.approx(alone[key], abs=1e-12)
    assert both["also"]["whole"]["gain_db"] == pytest.approx(alone["psnr"] - alone["input_psnr"])
    assert rows[0]["also"]["whole"]["psnr"] == pytest.approx(protocols.score("whole", np.roll(pairs[0][0], (2, -1), axis=(0, 1)), pairs[0][1])["psnr"])
    assert both["psnr"] > both["also"]["whole"]["psnr"] + 3
    with pytest.raises(ValueError, match="protocol"):
        evaluate_pairs(None, pairs, deblurrer=Shifter(), also=("nope",))
