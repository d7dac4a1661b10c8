"""The CLI contract: train -> eval -> deblur on a tiny budget, and bad input.

The commands run in this process (`tfdeblur.cli.main`, stdout and stderr
captured): a fresh Python + TensorFlow start costs ~10 s a command. The
script itself (`python cli.py`, the `tfdeblur` console script) is started
as a process by the last two tests; a training process exiting cleanly
after its tf.data threads is checked by tests/test_resume.py (kill -9)."""
import contextlib
import dataclasses
import io
import json
import os
import subprocess
import sys
import types

import cv2
import numpy as np
import pytest

from tests.helpers import REPO, run_cli_error, shared_path
from tfdeblur.weights import sha256_of

ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
TINY = ["--steps", "2", "--steps-per-epoch", "1", "--crop", "32", "--batch-size", "1",
        "--val-images", "2", "--precision", "bf16"]
# `mtwdn` as this module trains it: the paper's three scales and two-way
# decoder at one width of a few channels (no encoder levels). What the CLI
# does is the same at every width; the full network's first training step
# alone traces for ~40 s (it is built and trained in tests/test_models.py).
TINY_NET = {"widths": (4,), "blocks_per_level": 1}


@pytest.fixture(scope="module", autouse=True)
def tiny_mtwdn():
    from tfdeblur.models import registry

    preset = registry.get_preset("mtwdn")
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(registry._PRESETS, "mtwdn", dataclasses.replace(preset, kwargs={**preset.kwargs, **TINY_NET}))
        yield


def cli(*args):
    """`tfdeblur ARGS...` in this process: returncode, stdout and stderr as
    a finished process would give them."""
    from tfdeblur.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in args])
        except SystemExit as e:  # argparse
            code = e.code
    return types.SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())


def cli_process(*args):
    return subprocess.run([sys.executable, str(REPO / "cli.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=600, env=ENV)


def _png(path, img):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    assert cv2.imwrite(str(path), img)


def _pairs_dir(root, n=3, size=(40, 48), seed=0):
    rng = np.random.default_rng(seed)
    for i in range(n):
        sharp = (rng.random((*size, 3)) * 255).astype(np.uint8)
        blur = cv2.GaussianBlur(sharp, (5, 5), 1.5)
        _png(root / "blur" / f"{i:03d}.png", blur)
        _png(root / "sharp" / f"{i:03d}.png", sharp)
    return root / "blur", root / "sharp"


def _sidecar_digest(path):
    return (path.parent / (path.name + ".sha256")).read_text().split()[0]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "mtwdn"
    proc = cli("train", "mtwdn", *TINY, "--out", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc


def test_train_writes_the_run_folder(trained_run):
    out, proc = trained_run
    for name in ("model.keras", "config.json", "samples.png", "results.json", "checkpoints", "logs"):
        assert (out / name).exists(), name
    config = json.loads((out / "config.json").read_text())
    assert config["net"] == "mtwdn" and config["total_steps"] == 2 and config["precision_resolved"] == "bf16"
    results = json.loads((out / "results.json").read_text())
    assert {"psnr", "ssim", "input_psnr", "input_ssim"} <= set(results)
    assert "output PSNR" in proc.stdout and "blurry input PSNR" in proc.stdout
    sheet = cv2.imread(str(out / "samples.png"))
    assert sheet is not None and sheet.shape[1] > 3 * 256  # blurry | output | sharp
    assert any(f.startswith("events") for f in os.listdir(out / "logs" / "train"))
    assert _sidecar_digest(out / "model.keras") == sha256_of(out / "model.keras")  # checked on load


def _event_tags(folder):
    import tensorflow as tf

    tags = {}
    for name in os.listdir(folder):
        for event in tf.compat.v1.train.summary_iterator(str(folder / name)):
            for value in event.summary.value:
                tags.setdefault(value.tag, []).append(event.step)
    return tags


def test_train_validates_every_epoch_and_keeps_the_best(trained_run):
    out, proc = trained_run
    epoch_lines = [line for line in proc.stdout.splitlines() if "val_psnr:" in line]  # the epoch lines, not "best val_psnr ..."
    assert len(epoch_lines) == 2 and all("val_ssim" in line for line in epoch_lines), proc.stdout[-2000:]
    best = json.loads((out / "best.json").read_text())
    assert best["monitor"] == "val_psnr" and best["epoch"] in (1, 2) and (out / "best.keras").is_file()
    assert _sidecar_digest(out / "best.keras") == sha256_of(out / "best.keras")  # checked on load
    import keras

    assert keras.saving.load_model(out / "best.keras", safe_mode=True, compile=False).count_params() > 0
    scalars = _event_tags(out / "logs" / "validation")
    assert {"epoch_psnr", "epoch_ssim", "epoch_loss"} <= set(scalars), sorted(scalars)
    images = _event_tags(out / "logs" / "images")
    assert sorted(images) == [f"blur|output|sharp/{i}" for i in range(2)]  # --val-images 2
    assert images["blur|output|sharp/0"] == [1, 2]


def test_train_refuses_to_overwrite_and_resumes(trained_run):
    out, _ = trained_run
    proc = cli("train", "mtwdn", *TINY, "--out", out)
    assert proc.returncode == 2
    # TensorFlow's C++ logger may print its own lines first; ours is one line.
    errors = [l for l in proc.stderr.splitlines() if l.startswith("error: ")]
    assert len(errors) == 1 and "already holds a run" in errors[0] and "Traceback" not in proc.stderr
    proc = cli("train", "mtwdn_oneway", *TINY, "--out", out, "--resume")
    assert proc.returncode == 2 and "holds a run of 'mtwdn'" in proc.stderr
    before = (out / "model.keras").stat().st_mtime_ns
    best_before = json.loads((out / "best.json").read_text())["value"]
    proc = cli("train", "mtwdn", "--steps", "4", *TINY[2:], "--out", out, "--resume")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resumed from" in proc.stdout
    assert (out / "model.keras").stat().st_mtime_ns != before
    assert json.loads((out / "best.json").read_text())["value"] >= best_before  # the resumed run had to beat it
    assert _sidecar_digest(out / "model.keras") == sha256_of(out / "model.keras")


def test_eval_json_and_deblur(trained_run, tmp_path):
    out, _ = trained_run
    blur_dir, sharp_dir = _pairs_dir(tmp_path / "pairs", n=2, size=(37, 53))
    report = tmp_path / "eval.json"
    proc = cli("eval", "--model", out / "model.keras", "--data", f"pairs:{blur_dir},{sharp_dir}", "--json", report)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(report.read_text())
    assert set(summary) >= {"psnr", "ssim", "input_psnr", "input_ssim", "images", "ssim_convention"}
    assert summary["images"] == 2
    proc = cli("deblur", "--model", out / "model.keras", blur_dir / "000.png", blur_dir / "001.png",
               "--out", tmp_path / "restored")
    assert proc.returncode == 0, proc.stderr[-3000:]
    restored = cv2.imread(str(tmp_path / "restored" / "000.png"))
    assert restored.shape == (37, 53, 3)
    proc = cli("deblur", "--model", out / "model.keras", blur_dir / "000.png", "--out", tmp_path / "restored")
    assert proc.returncode == 2 and "already exists" in proc.stderr


def test_deblur_a_real_photo_full_size(trained_run, tmp_path):
    out, _ = trained_run
    photo = shared_path("data", "gopro_pair")
    blur = sorted(photo.glob("*_blur.png"))[0]
    proc = cli("deblur", "--model", out / "model.keras", blur, "--out", tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert cv2.imread(str(tmp_path / blur.name)).shape == (720, 1280, 3)


# -- bad input: one line on stderr, exit code 2, no traceback ----------------

_error = run_cli_error


def test_unknown_network(capsys, tmp_path):
    err = _error(capsys, ["train", "mtwdx", "--out", str(tmp_path / "r")])
    assert "unknown network 'mtwdx'" in err and "mtwdn" in err


def test_unknown_data_spec(capsys, tmp_path):
    err = _error(capsys, ["train", "mtwdn", "--data", "gopro2:/x", "--out", str(tmp_path / "r")])
    assert "--data must be one of" in err and "gopro2:/x" in err


def test_pairs_spec_with_missing_folder(capsys, tmp_path):
    err = _error(capsys, ["train", "mtwdn", "--data", f"pairs:{tmp_path}/nope,{tmp_path}", "--out", str(tmp_path / "r"), "--precision", "fp32"])
    assert f"{tmp_path}/nope" in err


def test_pairs_with_unmatched_names(capsys, tmp_path):
    blur_dir, sharp_dir = _pairs_dir(tmp_path, n=2)
    os.rename(sharp_dir / "001.png", sharp_dir / "999.png")
    err = _error(capsys, ["train", "mtwdn", "--data", f"pairs:{blur_dir},{sharp_dir}", "--out", str(tmp_path / "r"), "--precision", "fp32"])
    assert "001" in err and "no sharp partner" in err


def test_pair_of_different_sizes(capsys, tmp_path):
    blur_dir, sharp_dir = _pairs_dir(tmp_path, n=2, size=(40, 48))
    _png(sharp_dir / "001.png", np.zeros((40, 50, 3), np.uint8))
    err = _error(capsys, ["eval", "--model", str(tmp_path / "m.keras"), "--data", f"pairs:{blur_dir},{sharp_dir}"])
    # the model is checked after the data spec parses; a missing model is named
    assert "m.keras" in err
    err = _error(capsys, ["train", "mtwdn", "--data", f"pairs:{blur_dir},{sharp_dir}", "--out", str(tmp_path / "r"), "--precision", "fp32", "--crop", "32"])
    assert "001.png" in err and "40" in err and "50" in err


@pytest.mark.parametrize("kind", ["truncated", "not-an-image"])
def test_unusable_images_in_pairs(capsys, tmp_path, kind):
    # Grayscale, RGBA and 16-bit pairs are converted, not refused (tests/test_datasets.py).
    blur_dir, sharp_dir = _pairs_dir(tmp_path, n=2)
    data = (blur_dir / "000.png").read_bytes()
    (blur_dir / "000.png").write_bytes(data[: len(data) // 2] if kind == "truncated" else b"hello")
    err = _error(capsys, ["train", "mtwdn", "--data", f"pairs:{blur_dir},{sharp_dir}", "--out", str(tmp_path / "r"), "--precision", "fp32", "--crop", "32"])
    assert "000.png" in err


def test_directory_with_no_images(capsys, tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "s").mkdir()
    err = _error(capsys, ["train", "mtwdn", "--data", f"pairs:{tmp_path}/b,{tmp_path}/s", "--out", str(tmp_path / "r"), "--precision", "fp32"])
    assert "no image files" in err


def test_deblur_bad_inputs(capsys, tmp_path, trained_run):
    out, _ = trained_run
    model = str(out / "model.keras")
    err = _error(capsys, ["deblur", "--model", model, str(tmp_path / "missing.png"), "--out", str(tmp_path / "o")])
    assert "missing.png" in err
    # grayscale is restored via RGB now (tests/test_deblur_cli.py); a float TIFF is not an image we read
    assert cv2.imwrite(str(tmp_path / "float.tif"), np.zeros((40, 40, 3), np.float32))
    err = _error(capsys, ["deblur", "--model", model, str(tmp_path / "float.tif"), "--out", str(tmp_path / "o")])
    assert "float.tif" in err and "unsupported image" in err
    _png(tmp_path / "tiny.png", np.zeros((2, 40, 3), np.uint8))  # TINY_NET takes 3 px and up
    err = _error(capsys, ["deblur", "--model", model, str(tmp_path / "tiny.png"), "--out", str(tmp_path / "o")])
    assert "tiny.png" in err and "smaller than the network's minimum" in err
    (tmp_path / "broken.png").write_bytes(b"not a png")
    err = _error(capsys, ["deblur", "--model", model, str(tmp_path / "broken.png"), "--out", str(tmp_path / "o")])
    assert "broken.png" in err
    assert not (tmp_path / "o").exists() or not os.listdir(tmp_path / "o")


def test_model_file_that_is_not_a_model(capsys, tmp_path):
    (tmp_path / "x.keras").write_bytes(b"junk")
    err = _error(capsys, ["deblur", "--model", str(tmp_path / "x.keras"), str(tmp_path / "x.keras"), "--out", str(tmp_path / "o")])
    assert "x.keras" in err and "not a loadable" in err


def test_cli_usage_errors_exit_2():
    proc = cli_process("train", "mtwdn", "--steps", "0")
    assert proc.returncode == 2 and "positive integer" in proc.stderr
    proc = cli_process("frobnicate")
    assert proc.returncode == 2


def test_console_script_is_the_same_cli():
    import shutil

    exe = shutil.which("tfdeblur")
    if exe is None:
        pytest.skip("the tfdeblur console script is not on PATH (package not installed with pip)")
    proc = subprocess.run([exe, "list"], capture_output=True, text=True, timeout=120, env=ENV)
    assert proc.returncode == 0 and "mtwdn_oneway" in proc.stdout
