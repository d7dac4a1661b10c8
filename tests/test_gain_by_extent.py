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
    got_input = float(row.split()[4])
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
    assert len(levin_rows) == 8 and all(np.isfinite(float(r.split()[3])) for r in levin_rows)
