"""`deblur` on the command line: folders, globs, bit depths, alpha, --compare,
and bad input (each a one-line `error: ...` naming the file, exit code 2)."""
import os
import re
import struct
import zlib

import cv2
import keras
import numpy as np
import pytest

from tests.helpers import run_cli_error, save_tiny_model
from tfdeblur.cli import main


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("model") / "tiny.keras")


def _rgb(h=24, w=30, seed=0, dtype=np.uint8):
    top = 255 if dtype == np.uint8 else 65535
    return (np.random.default_rng(seed).random((h, w, 3)) * top).astype(dtype)


def _write(path, img):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if img.ndim == 3 and img.shape[2] >= 3:
        img = np.concatenate([img[..., 2::-1], img[..., 3:]], axis=2)
    assert cv2.imwrite(str(path), img)
    return str(path)


def _read(path):
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img.ndim == 3 and img.shape[2] >= 3:
        img = np.concatenate([img[..., 2::-1], img[..., 3:]], axis=2)
    return img


def _files(directory):
    return sorted(os.listdir(directory)) if os.path.isdir(directory) else []


def test_folder_with_every_image_kind(tiny_model, tmp_path, capsys):
    src = tmp_path / "in"
    rgba = np.concatenate([_rgb(seed=1), np.arange(24 * 30, dtype=np.uint8).reshape(24, 30, 1)], axis=2)
    _write(src / "a8.png", _rgb(seed=0))
    _write(src / "b16.png", _rgb(seed=2, dtype=np.uint16))
    _write(src / "c_gray.png", _rgb(seed=3)[..., 0])
    _write(src / "d_rgba.png", rgba)
    _write(src / "e.jpg", _rgb(seed=4))
    out = tmp_path / "out"
    assert main(["deblur", "--model", tiny_model, str(src), "--out", str(out), "--compare"]) == 0
    assert "e.jpg ->" in capsys.readouterr().out
    got = {name: _read(out / name) for name in _files(out) if name.endswith((".png", ".jpg"))}
    assert got["a8.png"].shape == (24, 30, 3) and got["a8.png"].dtype == np.uint8
    assert got["b16.png"].shape == (24, 30, 3) and got["b16.png"].dtype == np.uint16
    assert got["c_gray.png"].shape == (24, 30)
    assert got["d_rgba.png"].shape == (24, 30, 4)
    np.testing.assert_array_equal(got["d_rgba.png"][..., 3], rgba[..., 3])
    assert got["e.jpg"].shape == (24, 30, 3)  # --format same: a JPEG stays JPEG
    sheet = _read(out / "compare" / "a8.png")
    assert sheet.shape == (24, 2 * 30 + 4, 3)  # input | output
    # The API and the CLI give the same pixels.
    import tfdeblur

    np.testing.assert_array_equal(tfdeblur.deblur(str(src / "b16.png"), tiny_model), got["b16.png"])


def test_glob_tiles_ensemble_and_ground_truth_sheet(tiny_model, tmp_path, capsys):
    _write(tmp_path / "in" / "x1.png", _rgb(70, 50, seed=5))
    _write(tmp_path / "in" / "x2.png", _rgb(40, 40, seed=6))
    _write(tmp_path / "gt" / "x1.png", _rgb(70, 50, seed=7))
    out = tmp_path / "out"
    argv = ["deblur", "--model", tiny_model, str(tmp_path / "in" / "x*.png"), "--out", str(out),
            "--tile", "32", "--overlap", "8", "--ensemble", "--compare", "--gt", str(tmp_path / "gt")]
    assert main(argv) == 0
    assert _files(out) == ["compare", "x1.png", "x2.png"]
    assert _read(out / "compare" / "x1.png").shape == (70, 3 * 50 + 8, 3)  # input | output | truth
    assert _read(out / "compare" / "x2.png").shape == (40, 2 * 40 + 4, 3)
    before = os.stat(out / "x1.png").st_mtime_ns
    err = run_cli_error(capsys, argv[:-3])
    assert "x1.png: already exists" in err
    assert main(argv + ["--overwrite"]) == 0 and os.stat(out / "x1.png").st_mtime_ns != before


def test_ensemble_takes_a_count_and_scales_a_list(tiny_model, tmp_path, capsys, monkeypatch):
    from tfdeblur import inference

    seen, scales = [], []
    real = inference.Deblurrer.__init__

    def spy(self, *args, **kwargs):
        real(self, *args, **kwargs)
        seen.append(len(self.transforms))
        scales.append(self.scales)

    monkeypatch.setattr(inference.Deblurrer, "__init__", spy)
    src = _write(tmp_path / "in" / "a.png", _rgb(seed=3))
    for extra, want in (([], 1), (["--ensemble"], 8), (["--ensemble", "4"], 4), (["--ensemble", "2"], 2)):
        assert main(["deblur", src, "--model", tiny_model, "--out", str(tmp_path / f"out{want}")] + extra) == 0
        assert seen[-1] == want and scales[-1] == "auto"  # deblur's default
    assert main(["deblur", src, "--model", tiny_model, "--out", str(tmp_path / "s"), "--scales", "1,0.5"]) == 0
    assert scales[-1] == (1.0, 0.5)
    assert main(["deblur", src, "--model", tiny_model, "--out", str(tmp_path / "a"), "--scales", "1"]) == 0
    assert scales[-1] == (1.0,)
    pairs = tmp_path / "pairs"
    _write(pairs / "blur" / "p.png", _rgb(seed=4))
    _write(pairs / "sharp" / "p.png", _rgb(seed=5))
    assert main(["eval", "--model", tiny_model, "--data", f"pairs:{pairs}/blur,{pairs}/sharp"]) == 0
    assert scales[-1] == (1.0,)  # eval measures the network: scale 1 unless told
    assert main(["eval", "--model", tiny_model, "--data", f"pairs:{pairs}/blur,{pairs}/sharp", "--scales", "auto"]) == 0
    assert scales[-1] == "auto"
    with pytest.raises(SystemExit):
        main(["deblur", src, "--model", tiny_model, "--out", str(tmp_path / "s2"), "--scales", "1,1.5"])
    assert "argument --scales: expected distinct scales in (0, 1]" in capsys.readouterr().err
    for argv, text in ((["--ensemble", src], "a.png' (a file name? put it before --ensemble)"),
                       ([src, "--ensemble", "3"], "got '3'")):
        with pytest.raises(SystemExit) as e:  # argparse: usage, then one error line
            main(["deblur", "--model", tiny_model, "--out", str(tmp_path / "o")] + argv)
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert e.value.code == 2 and "argument --ensemble: expected" in err and "1, 2, 4, 8" in err and text in err


def test_folder_run_continues_past_bad_files(tiny_model, tmp_path, capsys):
    src = tmp_path / "in"
    _write(src / "good1.png", _rgb(seed=8))
    (src / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    _write(src / "small.png", _rgb(2, 40, seed=9))
    _write(src / "good2.png", _rgb(seed=10))
    out = tmp_path / "out"
    code = main(["deblur", "--model", tiny_model, str(src), "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 2
    errors = captured.err.strip().splitlines()
    assert len(errors) == 2 and all(e.startswith("error: ") for e in errors)
    assert "bad.png" in errors[0] and "cannot decode" in errors[0]
    assert "small.png" in errors[1] and "smaller than the network's minimum" in errors[1]
    assert "2 of 4 inputs failed" in captured.out
    assert _files(out) == ["good1.png", "good2.png"]  # nothing partial, no temp files


def _put(path, data):
    path.write_bytes(data)
    return path


def _png_with_size(width, height):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def _truncated_png(path):
    _write(path, _rgb(seed=11))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _truncated_jpeg(path):
    path = path.with_suffix(".jpg")
    _write(path, _rgb(64, 64, seed=12))
    data = path.read_bytes()
    path.write_bytes(data[:200])
    return path


def _float_tiff(path):
    path = path.with_suffix(".tif")
    assert cv2.imwrite(str(path), np.zeros((20, 20, 3), np.float32))
    return path


# Each case: (setup(tmp_path) -> path of the bad input, fragment of the message).
BAD_FILES = {
    "missing": (lambda p: p / "missing.png", "no such file"),
    "empty": (lambda p: _put(p / "empty.png", b""), "empty file"),
    "text": (lambda p: _put(p / "notes.png", b"hello"), "cannot decode"),
    "truncated_png": (lambda p: _truncated_png(p / "cut.png") or p / "cut.png", "cannot decode"),
    "truncated_jpeg": (_truncated_jpeg, "cannot decode"),
    "gif_bytes": (lambda p: _put(p / "anim.gif", b"GIF89a\x01\x00\x01\x00\x00\x00\x00;"), "cannot decode"),
    "float_tiff": (_float_tiff, "unsupported image"),
    "zero_width_png": (lambda p: _put(p / "zero.png", _png_with_size(0, 10)), "cannot decode"),
    "one_pixel": (lambda p: _write(p / "dot.png", _rgb(1, 1)), "smaller than the network's minimum"),
    "too_thin": (lambda p: _write(p / "thin.png", _rgb(2, 50)), "smaller than the network's minimum"),
    "folder_named_png": (lambda p: (p / "dir.png").mkdir() or p / "dir.png", "holds no image files"),
    "glob_matches_nothing": (lambda p: p / "nothing*.png", "pattern matches no files"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_input_file(tiny_model, tmp_path, capsys, case):
    make, fragment = BAD_FILES[case]
    path = str(make(tmp_path))
    out = tmp_path / "out"
    err = run_cli_error(capsys, ["deblur", "--model", tiny_model, path, "--out", str(out)])
    assert path in err and fragment in err
    assert _files(out) == []


@pytest.fixture(scope="module")
def plain_keras_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("plain") / "plain.keras"
    inputs = keras.Input((None, None, 3))
    keras.Model(inputs, keras.layers.Conv2D(3, 3, padding="same")(inputs)).save(path)
    return str(path)


def _model_dir(tmp_path):
    (tmp_path / "m.keras").mkdir()
    return str(tmp_path / "m.keras")


BAD_MODELS = {
    "missing": (lambda p, plain: str(p / "nope.keras"), "no such file"),
    "directory": (lambda p, plain: _model_dir(p), "not a SavedModel"),
    "junk": (lambda p, plain: str(_put(p / "junk.keras", b"junk")), "not a loadable .keras model"),
    "not_tfdeblur": (lambda p, plain: plain, "not a tfdeblur network"),
}


@pytest.mark.parametrize("case", sorted(BAD_MODELS))
def test_bad_model_file(plain_keras_model, tmp_path, capsys, case):
    make, fragment = BAD_MODELS[case]
    model = make(tmp_path, plain_keras_model)
    image = _write(tmp_path / "x.png", _rgb())
    err = run_cli_error(capsys, ["deblur", "--model", model, image, "--out", str(tmp_path / "out")])
    assert f"--model {model}" in err and fragment in err
    assert _files(tmp_path / "out") == []


def test_bad_arguments(tiny_model, tmp_path, capsys):
    image = _write(tmp_path / "a.png", _rgb())
    out = str(tmp_path / "out")
    (tmp_path / "file").write_text("x")
    cases = [
        (["--out", str(tmp_path / "file")], "exists and is not a directory"),
        (["--out", out, "--tile", "8"], "tile must be"),
        (["--out", out, "--tile", "64", "--overlap", "40"], "overlap must be"),
        (["--out", out, "--overlap", "-3"], "overlap must be"),
        (["--out", out, "--compare", "--gt", str(tmp_path / "nogt")], "--gt"),
        (["--out", out, "--gt", str(tmp_path)], "--gt applies to --compare only"),
    ]
    for extra, fragment in cases:
        err = run_cli_error(capsys, ["deblur", "--model", tiny_model, image, *extra])
        assert fragment in err, (extra, err)
    _write(tmp_path / "b" / "a.jpg", _rgb())
    err = run_cli_error(capsys, ["deblur", "--model", tiny_model, image, str(tmp_path / "b" / "a.jpg"), "--out", out, "--format", "png"])
    assert "a.jpg: writes the same output" in err
    _write(tmp_path / "gt" / "a.png", _rgb(30, 30))
    err = run_cli_error(capsys, ["deblur", "--model", tiny_model, image, "--out", out, "--compare", "--gt", str(tmp_path / "gt")])
    assert "gt/a.png: ground truth is 30x30" in err and image in err
    assert _files(tmp_path / "out") == []


def test_progress_bar_only_on_a_terminal(capsys):
    import io

    from tfdeblur.console import Progress

    class Tty(io.StringIO):
        def isatty(self):
            return True

    tty, pipe = Tty(), io.StringIO()
    for stream in (tty, pipe):
        bar = Progress(4, stream=stream)
        bar.part(2)(1, 2)  # half of the third file's tiles
        bar.close()
    first, last = tty.getvalue().split("\r")[1:3]  # each drawing starts with a carriage return
    assert "2/4" in first and "\x1b[32m" + "━" * 12 + "\x1b[0m" in first, first  # 2.5 of 4 files: 12 of 20
    assert re.search(r"\x1b\[1m\d+s\x1b\[0m \d+\w+/file", first), first  # the ETA, the time per file
    assert "4/4" in last and "━" * 20 in last and last.endswith("\n"), last
    assert pipe.getvalue() == "" and capsys.readouterr().out == ""  # nothing on stdout, where the results go


def test_uniform_blur_refines_with_an_estimated_kernel(tiny_model, tmp_path, capsys, monkeypatch):
    from tfdeblur import kernel_refine

    calls = []
    real = kernel_refine.refine

    def spy(blurry, restored, **kwargs):
        result = real(blurry, restored, **kwargs)
        calls.append((blurry.shape, result[0] if isinstance(result, tuple) else result))
        return result

    monkeypatch.setattr(kernel_refine, "refine", spy)
    # The guard opened: this input is noise, and the next test keeps it closed
    monkeypatch.setattr(kernel_refine, "NOISE_LIMIT", float("inf"))
    monkeypatch.setattr(kernel_refine, "MIN_AWAY", 0.0)
    monkeypatch.setattr(kernel_refine, "LOCAL_FIT_MAX", float("inf"))
    monkeypatch.setattr(kernel_refine, "LOCAL_FIT_FIRST", float("inf"))
    monkeypatch.setattr(kernel_refine, "PROBE_AWAY", 0.0)
    side = kernel_refine.MIN_SIDE
    src = _write(tmp_path / "in" / "a.png", _rgb(side, side + 6, seed=7))
    assert main(["deblur", src, "--model", tiny_model, "--out", str(tmp_path / "plain"), "--no-uniform-blur"]) == 0
    assert calls == []
    assert main(["deblur", src, "--model", tiny_model, "--out", str(tmp_path / "u"), "--uniform-blur"]) == 0
    assert len(calls) == 1 and calls[0][0] == (side, side + 6, 3)
    want = np.clip(np.rint(calls[0][1] * 255), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(_read(tmp_path / "u" / "a.png"), want)
    assert not np.array_equal(want, _read(tmp_path / "plain" / "a.png"))
    # deblur's default (auto): refined like --uniform-blur; eval's: the network alone
    assert main(["deblur", src, "--model", tiny_model, "--out", str(tmp_path / "auto")]) == 0
    assert len(calls) == 2
    np.testing.assert_array_equal(_read(tmp_path / "auto" / "a.png"), want)
    small = _write(tmp_path / "in2" / "b.png", _rgb(40, 50, seed=8))
    err = run_cli_error(capsys, ["deblur", small, "--model", tiny_model, "--out", str(tmp_path / "s"), "--uniform-blur"])
    assert f"needs images of at least {side} px a side; got 50x40" in err
    # auto leaves an image too small to refine to the network, without an error
    assert main(["deblur", small, "--model", tiny_model, "--out", str(tmp_path / "s")]) == 0
    assert len(calls) == 2 and (tmp_path / "s" / "b.png").exists()
    with pytest.raises(SystemExit):
        main(["deblur", src, "--model", tiny_model, "--out", str(tmp_path / "x"), "--uniform-blur", "--no-uniform-blur"])
    assert "argument --no-uniform-blur: not allowed with argument --uniform-blur" in capsys.readouterr().err
    _write(tmp_path / "gt" / "a.png", _rgb(side, side + 6, seed=7))
    assert main(["eval", "--model", tiny_model, "--data", f"pairs:{tmp_path / 'in'},{tmp_path / 'gt'}"]) == 0
    assert len(calls) == 2


def test_uniform_blur_on_a_noisy_photo_keeps_the_network_output_and_says_why(tiny_model, tmp_path, capsys, caplog):
    import logging

    from tfdeblur import kernel_refine

    side = kernel_refine.MIN_SIDE
    rng = np.random.default_rng(9)
    smooth = cv2.GaussianBlur(_rgb(side, side, seed=9).astype(np.float64), (0, 0), 3)
    noisy = np.clip(smooth + rng.normal(0, 8, (side, side, 3)), 0, 255)  # sigma 8/255, about 5/255 in luma
    src = _write(tmp_path / "in" / "n.png", np.rint(noisy).astype(np.uint8))
    with caplog.at_level(logging.INFO):
        assert main(["deblur", src, "--model", tiny_model, "--out", str(tmp_path / "plain"), "--no-uniform-blur"]) == 0
        assert main(["deblur", src, "--model", tiny_model, "--out", str(tmp_path / "u"), "--uniform-blur"]) == 0
    np.testing.assert_array_equal(_read(tmp_path / "u" / "n.png"), _read(tmp_path / "plain" / "n.png"))
    logged = caplog.text + capsys.readouterr().out
    assert re.search(r"n\.png -> \S+n\.png \(not refined, the network's output kept: noise sigma [\d.]+/255 is at "
                     r"least 2\.0/255\)", logged), logged


def test_precision_defaults_auto_for_deblur_fp32_for_eval_and_says_so(tiny_model, tmp_path, capsys, monkeypatch):
    """`deblur` runs in the precision `--precision auto` decides on this
    machine and prints the decision; `eval` measures in fp32 unless told;
    a bad value is argparse's error."""
    from tfdeblur import inference
    from tfdeblur import precision as p

    monkeypatch.setattr(p, "_read_cpuinfo", lambda: "model name\t: AMD EPYC 7B13\nflags\t\t: avx2 fma\n")
    monkeypatch.setattr(p, "_gpu_capability", lambda: None)
    chosen = []
    real = inference.Deblurrer.__init__

    def spy(self, *args, **kwargs):
        real(self, *args, **kwargs)
        chosen.append(self.precision)

    monkeypatch.setattr(inference.Deblurrer, "__init__", spy)
    src = _write(tmp_path / "in" / "a.png", _rgb(seed=3))
    assert main(["deblur", src, "--model", tiny_model, "--out", str(tmp_path / "o1")]) == 0
    assert chosen[-1] == "fp32"
    assert "precision fp32: CPU has no AMX/AVX512-BF16 (AMD EPYC 7B13)" in capsys.readouterr().out
    assert main(["deblur", src, "--model", tiny_model, "--out", str(tmp_path / "o2"), "--precision", "bf16"]) == 0
    assert chosen[-1] == "bf16" and "precision bf16: `precision` bf16 given" in capsys.readouterr().out
    plain = _read(tmp_path / "o1" / "a.png").astype(int)
    assert np.abs(_read(tmp_path / "o2" / "a.png").astype(int) - plain).max() <= 4  # bf16: within a few levels
    pairs = tmp_path / "pairs"
    _write(pairs / "blur" / "p.png", _rgb(seed=4))
    _write(pairs / "sharp" / "p.png", _rgb(seed=5))
    assert main(["eval", "--model", tiny_model, "--data", f"pairs:{pairs}/blur,{pairs}/sharp"]) == 0
    assert chosen[-1] == "fp32" and "precision" not in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["deblur", src, "--model", tiny_model, "--out", str(tmp_path / "o3"), "--precision", "fp16"])
    assert "argument --precision: invalid choice: 'fp16'" in capsys.readouterr().err
