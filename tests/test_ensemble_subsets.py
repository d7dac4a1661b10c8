"""benchmarks/ensemble_subsets.py and scale_inference.py. The first's cached per-transform outputs give
exactly what `Deblurrer` gives for the plain output, the 8-way ensemble and a
second pass, and its sweep scores every subset against the card's loaders."""
import json

import keras
import numpy as np
import pytest

from tests.helpers import load_benchmark
from tfdeblur import inference


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("ensemble_subsets")


def _conv(seed=0):
    rng = np.random.default_rng(seed)
    inputs = keras.Input((None, None, 3))
    layer = keras.layers.Conv2D(3, 5, padding="same", use_bias=False)
    out = layer(inputs)
    k = rng.normal(0, 0.05, (5, 5, 3, 3)).astype(np.float32)
    k[2, 2] += np.eye(3, dtype=np.float32)  # near identity: outputs stay near [0, 1]
    layer.set_weights([k])
    return keras.Model(inputs, out)


def test_recorder_reproduces_plain_ensemble_and_second_pass(bench):
    model = _conv(1)
    img = np.random.default_rng(2).random((19, 27, 3)).astype(np.float32)
    rec = bench.Recorder(inference.Deblurrer(model))
    rec.subset = tuple(range(8))
    np.testing.assert_array_equal(rec.restore_rgb(img), inference.Deblurrer(model, ensemble=True).restore_rgb(img))
    rec.subset = (0,)
    plain = inference.Deblurrer(model).restore_rgb(img)
    np.testing.assert_array_equal(rec.restore_rgb(img), plain)
    rec.subset = (0, 5)
    want = np.clip((model(img[None]).numpy()[0] + np.rot90(model(np.rot90(img, 1)[:, ::-1][None]).numpy()[0][:, ::-1], -1)) / 2, 0, 1)
    np.testing.assert_allclose(rec.restore_rgb(img), want, atol=1e-6)
    rec.twice = True
    np.testing.assert_array_equal(rec.restore_rgb(img), inference.Deblurrer(model).restore_rgb(plain))
    assert len(rec._cache) == 1  # one input, restored once per transform


def test_sweep_scores_every_subset(bench, tmp_path, capsys):
    # an untrained tiny network on the synthetic set (no shared folder needed):
    # 8 singles + 28 pairs, and size 8 = the ensemble
    from tests.helpers import save_tiny_model

    path = save_tiny_model(tmp_path / "tiny.keras")
    out = tmp_path / "r.json"
    assert bench.main([str(path), "--data", "synthetic", "--limit", "2", "--sizes", "1", "2", "8",
                       "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    rows = result["sets"]["synthetic"]["subsets"]
    assert len(rows) == 8 + 28 + 1
    assert "r0+r1+r2+r3+r0f+r1f+r2f+r3f" in rows and "r0+r3f" in rows
    assert "| 2 | 28 |" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        bench.main([str(path), "--sizes", "9"])


def test_scale_benchmark_scores_each_setting(tmp_path, capsys):
    # benchmarks/scale_inference.py on an untrained tiny network and the
    # synthetic set: one column per setting, a bad setting is refused
    from tests.helpers import save_tiny_model

    bench = load_benchmark("scale_inference")
    path = save_tiny_model(tmp_path / "tiny.keras")
    out = tmp_path / "s.json"
    assert bench.main([path, "--data", "synthetic", "--limit", "2", "--scales", "1", "1,0.5", "auto",
                       "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["sets"]["synthetic"]["scales"]
    assert list(rows) == ["1", "1,0.5", "auto"]
    assert rows["auto"] == rows["1"] | {"restore_seconds_median": rows["auto"]["restore_seconds_median"]}
    assert "| synthetic | 2 |" in capsys.readouterr().out
    per = json.loads(out.read_text())["sets"]["synthetic"]["per_image_psnr"]
    assert list(per) == ["1", "1,0.5", "auto"] and len(per["1"]) == 2
    assert bench.main([path, "--data", "synthetic", "--limit", "2", "--scales", "1", "1,0.5", "--per-image"]) == 0
    lines = [l for l in capsys.readouterr().out.splitlines() if l.startswith("    synthetic ")]
    first = next(iter(per["1"]))
    assert len(lines) == 2 and first in lines[0]
    assert f"1,0.5 {per['1,0.5'][first] - per['1'][first]:+.2f}" in lines[0]
    with pytest.raises(SystemExit):
        bench.main([path, "--scales", "2"])
    # a setting may name its fusion of the scales (default: sharpness-weighted)
    assert bench.main([path, "--data", "synthetic", "--limit", "1", "--scales", "1,0.5", "1,0.5:mean", "auto:sharpness",
                       "--json", str(out)]) == 0
    assert list(json.loads(out.read_text())["sets"]["synthetic"]["scales"]) == ["1,0.5", "1,0.5:mean", "auto:sharpness"]
    with pytest.raises(SystemExit):
        bench.main([path, "--scales", "1,0.5:max"])
    assert "the fusion after ':' must be one of sharpness, mean; got '1,0.5:max'" in capsys.readouterr().err


def test_scale_benchmark_upscaled_gopro_set(tmp_path):
    # --data gopro_dev_x2: the first dev pair upscaled 2x (bicubic, clipped);
    # its input score equals the whole-image PSNR of that pair made here.
    import cv2
    import numpy as np

    from tests.helpers import save_tiny_model, shared_path
    from tfdeblur import io as tio
    from tfdeblur import protocols

    folder = shared_path("data", "gopro_dev_pairs")
    bench = load_benchmark("scale_inference")
    name = sorted(tio.list_images(str(folder / "blur")))[0]
    blur = tio.read_image(name)
    sharp = tio.read_image(str(folder / "sharp" / name.split("/")[-1]))
    (ub, us), = list(bench.upscaled([(blur, sharp)]))
    h, w = blur.shape[:2]
    assert ub.shape == (2 * h, 2 * w, 3)
    np.testing.assert_allclose(ub, np.clip(cv2.resize(blur, (2 * w, 2 * h), interpolation=cv2.INTER_CUBIC), 0, 1))
    path = save_tiny_model(tmp_path / "tiny.keras")
    out = tmp_path / "x2.json"
    assert bench.main([path, "--data", "gopro_dev_x2", "--limit", "1", "--scales", "1", "--json", str(out)]) == 0
    got = json.loads(out.read_text())["sets"]["gopro_dev_x2"]
    assert got["images"] == 1
    assert got["input_psnr"] == pytest.approx(protocols.score("whole", ub, us)["psnr"], abs=1e-6)


def test_scale_benchmark_large_validation_set():
    """--data val_large: held-out photos of at least 600 px, centre 600 px,
    blurred by each kind in turn; the straight-motion kernel covers a line
    of the given length (horizontal and vertical: exactly those pixels)."""
    import numpy as np

    from tests.helpers import shared_path
    from tfdeblur import io as tio
    from tfdeblur.datasets.photos import PhotoBank

    shared = shared_path()
    bench = load_benchmark("scale_inference")
    k = bench.line_kernel(7, 0.0)
    assert k.shape == (9, 9) and k.sum() == pytest.approx(1.0)
    assert np.count_nonzero(k) == 7 and np.count_nonzero(k[4]) == 7  # one row, 7 px
    vertical = bench.line_kernel(9, np.pi / 2)
    assert vertical.shape == (11, 11) and np.count_nonzero(vertical) == np.count_nonzero(vertical[:, 5]) == 9
    pairs, names = bench.val_large(str(shared), limit=5)
    assert len(pairs) == 5 and [n.split("_")[0] for n in names] == ["small", "shake", "levin", "line", "small"]
    val = [p for p in PhotoBank(str(shared / "data" / "sharp")).splits["val"]
           if min(tio.read_image(p, allow_conversion=True).shape[:2]) >= 600]
    first = tio.read_image(val[0], allow_conversion=True)
    t, l = (first.shape[0] - 600) // 2, (first.shape[1] - 600) // 2
    for blurry, sharp in pairs[:4]:
        assert blurry.shape == sharp.shape == (600, 600, 3)
        np.testing.assert_array_equal(sharp, first[t:t + 600, l:l + 600])
        assert np.abs(blurry - sharp).mean() > 0.005  # blurred
    assert names[4].endswith(val[1].split("/")[-1].rsplit(".", 1)[0])
