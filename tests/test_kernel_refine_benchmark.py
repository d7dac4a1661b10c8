"""benchmarks/kernel_refine.py: its sets, the kernel similarity, the printout."""
import re

import numpy as np
import pytest

from tests.helpers import load_benchmark, shared_path


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("kernel_refine")


def test_kernel_similarity_ignores_shifts_and_sees_turns(bench):
    k = np.zeros((9, 9))
    k[4, 1:8] = 1.0
    k[1:4, 7] = 1.0
    k /= k.sum()
    moved = np.roll(np.pad(k, 4), (2, -3), (0, 1))
    assert bench.kernel_similarity(k, k) == pytest.approx(1.0, abs=1e-5)
    assert bench.kernel_similarity(moved, k) == pytest.approx(1.0, abs=1e-5)
    assert bench.kernel_similarity(k, k[::-1, ::-1]) < 0.8


def test_tuning_set_is_held_out_photos_blurred_by_the_kernel_it_names(bench):
    from tfdeblur.datasets import blur_image
    from tfdeblur.datasets.photos import PhotoBank

    shared = shared_path()
    first = bench.tune_pairs(str(shared), 2)
    again = bench.tune_pairs(str(shared), 2)
    val = {p.rsplit("/", 1)[-1] for p in PhotoBank(shared / "data" / "sharp").splits["val"]}
    for (blurry, sharp, kernel, name), (b2, _, k2, _) in zip(first, again):
        assert name in val and sharp.shape == (bench.TUNE_SIDE, bench.TUNE_SIDE, 3)
        np.testing.assert_array_equal(blurry, b2)
        np.testing.assert_array_equal(kernel, k2)
        # re-blurred without noise, the pair differs only by the noise (sigma 0.003) and 8 bits
        clean = blur_image(sharp, kernel.astype(np.float32), noise_sigma=0, gamma=2.2, quantize=False)
        assert np.std(blurry - clean) < 0.006


def test_prints_each_set(bench, capsys):
    shared = shared_path()
    bench.main(["--model", "lmfn-photos", "--data", "levin", "--limit", "2", "--shared", str(shared), "--rounds", "1"])
    out = capsys.readouterr().out
    line = next(l for l in out.splitlines() if l.startswith("levin (2 pairs): input"))
    assert "| net +" in line and "| refined " in line and "true kernel +" in line
    assert re.search(r"\| guarded [+-]\d+\.\d\d \([012]/2 kept\)", line), line


def test_bad_arguments(bench, tmp_path):
    with pytest.raises(SystemExit, match="--limit"):
        bench.main(["--limit", "0"])
    with pytest.raises(SystemExit, match="not found"):
        bench.main(["--shared", str(tmp_path)])


def test_sheet_rows_are_blurry_network_refined(bench, tmp_path, monkeypatch):
    import cv2

    from tfdeblur import kernel_refine

    # The guard opened: it keeps lmfn-photos' output on this photo, and the
    # refined column could not be told from the network's
    monkeypatch.setattr(kernel_refine, "NOISE_LIMIT", float("inf"))
    monkeypatch.setattr(kernel_refine, "MIN_AWAY", 0.0)
    monkeypatch.setattr(kernel_refine, "LOCAL_FIT_MAX", float("inf"))
    monkeypatch.setattr(kernel_refine, "LOCAL_FIT_FIRST", float("inf"))
    monkeypatch.setattr(kernel_refine, "PROBE_AWAY", 0.0)
    shared = shared_path()
    path = tmp_path / "sheet.png"
    bench.real_sheet("lmfn-photos", str(shared), str(path), photos=("srn_01.png",))
    sheet = cv2.imread(str(path))[..., ::-1]
    c = bench.SHEET_CROP
    assert sheet.shape == (c + 4, 3 * c + 8, 3)
    from tfdeblur import io as tio

    img, _ = tio.read_photo(str(shared / "data" / "real_blur_only" / "srn_01.png"))
    h, w = img.shape[:2]
    img = cv2.resize(img, (round(w * 900 / max(h, w)), round(h * 900 / max(h, w))), interpolation=cv2.INTER_AREA)
    t, l = (img.shape[0] - c) // 2, (img.shape[1] - c) // 2
    np.testing.assert_array_equal(sheet[:c, :c], img[t:t + c, l:l + c])  # the blurry photo, untouched
    assert np.abs(sheet[:c, c + 4:2 * c + 4].astype(int) - sheet[:c, 2 * c + 8:].astype(int)).mean() > 0.5


def test_synthetic_set_is_the_cards(bench):
    import itertools

    from tfdeblur.datasets import spec as data_spec

    got = bench.synthetic_pairs(None, 2)
    want = list(itertools.islice(iter(data_spec.evaluation("synthetic")[0]), 2))
    assert [n for *_, n in got] == ["synthetic_val_000", "synthetic_val_001"]
    for (blurry, sharp, kernel, _), (b, s) in zip(got, want):
        assert kernel is None
        np.testing.assert_array_equal(blurry, np.asarray(b))
        np.testing.assert_array_equal(sharp, np.asarray(s))


def test_photo_sets_are_the_streams_modes_on_validation_photos(bench):
    from tfdeblur.datasets.photos import PhotoBank, make_photo_pair

    shared = shared_path()
    bank = PhotoBank(shared / "data" / "sharp")
    for mode in ("uniform", "wide"):
        got = bench.photo_pairs(str(shared), 2, mode)
        assert [n for *_, n in got] == [f"{mode}_000", f"{mode}_001"]
        for i, (blurry, sharp, kernel, _) in enumerate(got):
            want_b, want_s = make_photo_pair(bank, bench.PHOTOS_SEED + i, size=bench.PHOTOS_SIDE, split="val", mode=mode)
            np.testing.assert_array_equal(blurry, want_b)
            np.testing.assert_array_equal(sharp, want_s)
            assert kernel is None and blurry.shape == (bench.PHOTOS_SIDE, bench.PHOTOS_SIDE, 3)
    train = make_photo_pair(bank, bench.PHOTOS_SEED, size=bench.PHOTOS_SIDE, split="train", mode="uniform")
    assert not np.array_equal(train[1], bench.photo_pairs(str(shared), 1, "uniform")[0][1])  # the split matters
