"""benchmarks/photo_stream.py: the photos stream's cost per sample, per mode."""
import cv2
import numpy as np
import pytest

from tests.helpers import load_benchmark


def test_times_every_mode_and_the_mix_and_rejects_bad_arguments(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for i in range(4):
        img = cv2.GaussianBlur(rng.random((70 + 9 * i, 90, 3)).astype(np.float32), (0, 0), 1.5)
        cv2.imwrite(str(tmp_path / f"p{i}.png"), np.round(img * 255).astype(np.uint8))
    bench = load_benchmark("photo_stream")
    bench.main(["--photos", str(tmp_path), "--size", "40", "--samples", "1", "--rounds", "1", "--mix", "wide=0.6"])
    out = capsys.readouterr().out
    from tfdeblur.datasets import photos

    rows = {line.split("|")[1].strip(): line for line in out.splitlines() if line.startswith("| ")}
    for mode in photos.MODES + ("mix wide=0.6",):
        ms, rate = (float(v) for v in rows[mode].split("|")[2:4])
        assert ms > 0 and abs(rate * ms - 1000) <= 0.05 * (rate + ms) + 1e-9  # both printed to 0.1
    with pytest.raises(SystemExit, match="--mix: unknown mode 'bogus'"):
        bench.main(["--photos", str(tmp_path), "--mix", "bogus=1"])
    with pytest.raises(SystemExit, match="--photos: no such folder"):
        bench.main(["--photos", str(tmp_path / "missing")])
