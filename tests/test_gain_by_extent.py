"""benchmarks/gain_by_extent.py: gain by blur extent, whole image or Levin's shift search."""
import numpy as np
import pytest

from tests.helpers import load_benchmark, save_tiny_model, shared_path


@pytest.mark.parametrize("protocol", ["whole", "levin"])
def test_input_column_is_the_protocols_score_of_the_blurred_crop(protocol, tmp_path, capsys):
    shared = shared_path("data", "cbsd68")
    bench = load_benchmark("gain_by_extent")
    model = save_tiny_model(tmp_path / "tiny.keras")
    bench.main([model, "--shared", str(shared.parent.parent), "--photos", "1", "--lengths", "7", "--angles", "1",
                "--protocol", protocol])
    out = capsys.readouterr().out
    assert f"protocol {protocol}" in out
    row = next(line for line in out.splitlines() if line.startswith("line 7 px"))
    got_input = float(row.split()[5])
    # independently: the first CBSD68 photo's centre 256 px, straight 7 px at 10 degrees
    from tfdeblur import io as tio
    from tfdeblur import protocols
    from tfdeblur.datasets import blur_image
    from tfdeblur.datasets import kernels as K

    img = tio.read_image(tio.list_images(str(shared))[0], allow_conversion=True)
    h, w = img.shape[:2]
    y, x = (h - 256) // 2, (w - 256) // 2
    crop = img[y:y + 256, x:x + 256]
    blurry = blur_image(crop, K.linear_motion_kernel(7.0, 10.0), noise_sigma=0, gamma=2.2, quantize=True)
    assert got_input == pytest.approx(protocols.score(protocol, blurry, crop)["psnr"], abs=0.005)
    assert "Levin k6" in out
    levin_rows = [line for line in out.splitlines() if line.startswith("Levin k")]
    assert len(levin_rows) == 8 and all(np.isfinite(float(r.split()[4])) for r in levin_rows)
    # A symmetric straight kernel moves nothing: a perfect restoration is exact.
    assert row.split()[4] == "inf"
    ceiling_k6, input_k6 = (float(v) for v in levin_rows[5].split()[3:5])
    if protocol == "whole":  # k6's mass sits 4.3 px off its array's centre
        assert ceiling_k6 < input_k6
    else:  # the shift search finds it again
        assert ceiling_k6 > input_k6 + 10


def test_mass_offset_and_move_agree_with_a_blurred_point():
    # Closed form: blur_image moves a point's mass by the kernel's mass offset.
    from tfdeblur.datasets import blur_image

    bench = load_benchmark("gain_by_extent")
    k = np.zeros((9, 9))
    k[4, 4], k[1, 8] = 0.5, 0.5  # mass at (+-0, centre) and (-3, +4): offset (-1.5, +2)
    assert bench.mass_offset(k) == pytest.approx((-1.5, 2.0))
    point = np.zeros((21, 21))
    point[10, 10] = 1.0
    out = blur_image(point, k, noise_sigma=0, gamma=1, quantize=False)
    ys, xs = np.mgrid[:21, :21]
    assert (float((out * ys).sum()) - 10, float((out * xs).sum()) - 10) == pytest.approx((-1.5, 2.0), abs=1e-5)
    img = np.zeros((21, 21, 3), np.float32)
    img[10, 10] = 1.0
    m = bench.moved(cv2_blur(img), -1.5, 2.0)
    assert (float((m[..., 0] * ys).sum() / m[..., 0].sum()) - 10, float((m[..., 0] * xs).sum() / m[..., 0].sum()) - 10) \
        == pytest.approx((-1.5, 2.0), abs=0.05)


def cv2_blur(img):
    import cv2

    return cv2.GaussianBlur(img, (0, 0), 2.0)
