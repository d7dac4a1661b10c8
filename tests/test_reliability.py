"""Hostile but realistic input (issue #16): each case planted, then the one
`error: ...` line, exit code 2, no traceback, and the files left checked."""
import json
import re
import os
import struct
import subprocess
import sys
import zlib

import cv2
import numpy as np
import pytest

from tests.helpers import REPO, follow_stdout, run_cli_error, save_tiny_model
from tfdeblur import io as tio
from tfdeblur.cli import main


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("model") / "tiny.keras")


def _rgb(h=24, w=30, seed=0):
    return (np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8)


def _jpeg_bytes(img):
    ok, enc = cv2.imencode(".jpg", img)
    assert ok
    return enc.tobytes()


def _forged_jpeg(width, height, seed=0):
    """A small valid JPEG whose frame header (SOF0) is rewritten to claim
    width x height: the decompression bomb of the issue (1.9 KB, 20000x20000)."""
    data = bytearray(_jpeg_bytes(_rgb(16, 16, seed)))
    sof = data.find(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def _forged_png(width, height):
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 1000)) + chunk(b"IEND", b"")


def _files(directory):
    return sorted(os.listdir(directory)) if os.path.isdir(directory) else []


# --- 1. decompression bombs, header/data mismatch, trailing data ----------

_BOUNDED_READ = r"""
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
from tfdeblur import io as tio
try:
    tio.read_image(sys.argv[1])
    print("decoded")
except tio.ImageError as e:
    print(e)
# VmHWM is this process's own peak RSS; ru_maxrss would carry the parent's
# peak across fork/exec (Linux keeps it in the signal struct), and the
# parent is a pytest process grown to gigabytes by earlier tests.
print(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:")))
"""


@pytest.mark.parametrize("kind", ["jpg", "png"])
def test_bomb_refused_from_header_under_2gb(tmp_path, kind):
    bomb = tmp_path / f"bomb.{kind}"
    bomb.write_bytes(_forged_jpeg(20000, 20000) if kind == "jpg" else _forged_png(20000, 20000))
    assert bomb.stat().st_size < 4000
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", _BOUNDED_READ, str(bomb)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    message, peak_kb = proc.stdout.strip().splitlines()
    assert message.startswith(f"{bomb}: header declares 20000x20000 = 400.0 MP, over the 100 MP decode limit")
    assert int(peak_kb) < 2 << 20  # KiB: the address-space limit held and nothing big was touched


def test_deblur_bomb_is_one_file_error_and_the_batch_goes_on(tiny_model, tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    (src / "bomb.jpg").write_bytes(_forged_jpeg(20000, 20000))
    cv2.imwrite(str(src / "good.png"), _rgb())
    out = tmp_path / "out"
    err = run_cli_error(capsys, ["deblur", "--model", tiny_model, str(src), "--out", str(out)])
    assert err.startswith(f"error: {src / 'bomb.jpg'}: header declares 20000x20000")
    assert _files(out) == ["good.png"]


def test_max_decode_pixels_lowers_the_budget(tiny_model, tmp_path, capsys):
    path = tmp_path / "a.png"
    cv2.imwrite(str(path), _rgb(24, 30))
    out = tmp_path / "out"
    err = run_cli_error(capsys, ["deblur", "--model", tiny_model, str(path), "--out", str(out),
                                 "--max-decode-pixels", "700"])
    assert err == f"error: {path}: header declares 30x24 = 0.0 MP, over the 0.0007 MP decode limit " \
                  "(--max-decode-pixels / max_pixels to raise it)"
    assert _files(out) == []
    assert tio.max_decode_pixels() == tio.DEFAULT_MAX_DECODE_PIXELS  # restored after the command
    assert main(["deblur", "--model", tiny_model, str(path), "--out", str(out), "--max-decode-pixels", "720"]) == 0


def test_python_api_applies_the_budget(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(_forged_png(20000, 20000))
    for read in (tio.read_image, tio.read_image_raw):
        with pytest.raises(tio.ImageError, match="header declares 20000x20000"):
            read(path)
    small = tmp_path / "small.png"
    cv2.imwrite(str(small), _rgb())
    with pytest.raises(tio.ImageError, match="over the 0.0001 MP"):
        tio.read_image(small, max_pixels=100)
    assert tio.read_image(small, max_pixels=720).shape == (24, 30, 3)


@pytest.mark.parametrize("case", ["forged_4000", "cut_in_scan", "forged_and_cut"])
def test_jpeg_header_data_mismatch_is_an_error_not_grey(tiny_model, tmp_path, capsys, case):
    path = tmp_path / "x.jpg"
    data = _forged_jpeg(4000, 4000) if case != "cut_in_scan" else _jpeg_bytes(_rgb(64, 64))
    if case != "forged_4000":
        data = data[:-40]  # inside the entropy-coded data: no end marker
    path.write_bytes(data)
    out = tmp_path / "out"
    err = run_cli_error(capsys, ["deblur", "--model", tiny_model, str(path), "--out", str(out)])
    assert err.startswith(f"error: {path}: cannot decode image: ")
    assert ("4000x4000" in err) == (case != "cut_in_scan")
    assert _files(out) == []


def test_jpeg_with_data_after_end_marker_is_accepted(tiny_model, tmp_path, capsys):
    from tfdeblur.datasets.pairs import check_pairs

    img = _rgb(32, 32, seed=3)
    motion = _jpeg_bytes(img) + b"\x00\x00\x00\x18ftypmp42" + os.urandom(3000)  # a phone's "motion photo"
    for side in ("blur", "sharp"):
        (tmp_path / side).mkdir()
        (tmp_path / side / "a.jpg").write_bytes(motion)
    pair = (str(tmp_path / "blur" / "a.jpg"), str(tmp_path / "sharp" / "a.jpg"))
    assert check_pairs([pair]) == [(32, 32)]
    np.testing.assert_array_equal(tio.read_image(pair[0]), tio.read_image_samples(pair[0]) / np.float32(255))
    assert main(["deblur", "--model", tiny_model, pair[0], "--out", str(tmp_path / "out")]) == 0
    assert _files(tmp_path / "out") == ["a.jpg"]


def test_eval_refuses_a_bomb_pair_by_name(tiny_model, tmp_path, capsys):
    for side in ("blur", "sharp"):
        (tmp_path / side).mkdir()
        cv2.imwrite(str(tmp_path / side / "a.png"), _rgb())
    (tmp_path / "sharp" / "b.jpg").write_bytes(_forged_jpeg(20000, 20000))
    (tmp_path / "blur" / "b.jpg").write_bytes(_forged_jpeg(20000, 20000, seed=1))
    report = tmp_path / "r.json"
    err = run_cli_error(capsys, ["eval", "--model", tiny_model, "--data", f"pairs:{tmp_path / 'blur'},{tmp_path / 'sharp'}",
                                 "--json", str(report)])
    assert "b.jpg: header declares 20000x20000" in err
    assert not report.exists()


# --- 2. one run per --out: the lock; a run that died before its first checkpoint

# One width (no encoder levels): these runs check the run's life (lock,
# restart, Ctrl-C, disk full, resume), not the network, and trace in about
# half the time of three widths.
TINY_MTWDN = {"widths": [4], "blocks_per_level": 1}

_HOLD_LOCK = r"""
import fcntl, json, os, socket, sys, time
fd = os.open(os.path.join(sys.argv[1], "train.lock"), os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": "now"}).encode())
print("locked", flush=True)
time.sleep(120)
"""


def _tiny_train_cfg(out, **kw):
    from tfdeblur.training.run import TrainConfig

    base = dict(net="mtwdn", steps=1, steps_per_epoch=1, batch_size=2, crop=32, out=str(out), precision="fp32",
                val_images=1, model_overrides=dict(TINY_MTWDN), seed=3)
    base.update(kw)
    return TrainConfig(**base)


def test_second_train_on_a_locked_out_refuses_at_once(tmp_path, capsys):
    import time

    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = (out / "train.lock").read_bytes()
        start = time.perf_counter()
        err = run_cli_error(capsys, ["train", "mtwdn", "--steps", "1", "--out", str(out)])
        assert time.perf_counter() - start < 20  # refused before any model is built
        assert err.startswith(f"error: --out {out}: in use by another train (pid {holder.pid} on ")
        assert os.listdir(out) == ["train.lock"] and (out / "train.lock").read_bytes() == before
        err = run_cli_error(capsys, ["train", "mtwdn", "--steps", "1", "--out", str(out), "--resume"])
        assert "no config.json" in err  # nothing to resume: refused before the lock is even tried
    finally:
        holder.kill()
        holder.wait()


def test_stale_locks(tmp_path):
    import socket

    from tfdeblur.training import runlock
    from tfdeblur.training.errors import RunError

    out = tmp_path / "run"
    out.mkdir()
    lock_file = out / "train.lock"
    lock_file.write_text(json.dumps({"pid": 999999, "host": "elsewhere", "started": "t"}))
    with pytest.raises(RunError, match=r"locked by pid 999999 on elsewhere, started t .*pass `take_over_lock`$"):
        runlock.acquire(str(out))
    assert "elsewhere" in lock_file.read_text()  # left as it was
    lines = []
    lock = runlock.acquire(str(out), take_over=True, log=lines.append)
    assert lines == [f"`out` {out}: taking over the stale lock of pid 999999 on elsewhere, started t: that process is gone"]
    assert json.loads(lock_file.read_text())["pid"] == os.getpid()
    with pytest.raises(RunError, match="in use by another train"):  # a second holder, even in this process
        runlock.acquire(str(out))
    lock.release()
    assert not lock_file.exists()
    # Same host, no flock held: the holder is provably dead (kill -9): taken over, with a notice.
    lock_file.write_text(json.dumps({"pid": 999999, "host": socket.gethostname(), "started": "t"}))
    lines = []
    runlock.acquire(str(out), log=lines.append).release()
    assert "taking over the stale lock of pid 999999" in lines[0]


class _Crash(Exception):
    pass


def _crash_at_fit(message):
    if message.startswith("training "):  # logged after config.json, just before the first step
        raise _Crash()


@pytest.mark.slow  # trains a tiny network
def test_run_that_died_before_its_first_checkpoint_can_be_restarted(tmp_path):
    from tfdeblur.training.run import RunError, run_training

    out = tmp_path / "run"
    with pytest.raises(_Crash):
        run_training(_tiny_train_cfg(out), log=_crash_at_fit)
    assert os.listdir(out) == ["config.json"]  # the lock went with the run
    # What a kill -9 in the middle of atomic writes leaves: removed by the next run.
    for name in (".tmp-123-model.keras", "results.json.tmp", ".samples.png.0123456789ab.tmp.png"):
        (out / name).write_bytes(b"partial")
    (out / "checkpoints" / "ckpt-7_temp").mkdir(parents=True)
    with pytest.raises(RunError, match=r"holds no checkpoint \(the run ended before its first one\); "
                                       r"run without `resume` to start it afresh$"):
        run_training(_tiny_train_cfg(out, resume=True), log=lambda m: None)
    lines = []
    run_training(_tiny_train_cfg(out), log=lines.append)
    assert f"`out` {out}: holds a run that ended before its first checkpoint; starting afresh" in lines
    assert (out / "model.keras").exists() and not (out / "train.lock").exists()
    assert _leftovers(out) == []


# --- 3. Ctrl-C, disk full, damaged TFRecord shards ------------------------

_TINY_CLI = r"""
import sys
import tfdeblur.training.run as run

_check = run._check_config
def tiny(cfg):  # the CLI, with a tiny network
    cfg.model_overrides = {"widths": [4], "blocks_per_level": 1}  # TINY_MTWDN
    return _check(cfg)
run._check_config = tiny
from tfdeblur.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _tiny_cli(monkeypatch):
    from tfdeblur.training import run

    check = run._check_config

    def tiny(cfg):
        cfg.model_overrides = dict(TINY_MTWDN)
        return check(cfg)

    monkeypatch.setattr(run, "_check_config", tiny)


def _leftovers(out):
    return sorted(os.path.relpath(os.path.join(d, n), out) for d, dirs, files in os.walk(out) for n in dirs + files
                  if n.endswith("_temp") or "tmp" in n or n == "train.lock")


@pytest.mark.slow  # trains a tiny network
def test_ctrl_c_during_train(tmp_path):
    import signal

    out = tmp_path / "run"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.Popen([sys.executable, "-c", _TINY_CLI, "train", "mtwdn", "--steps", "1000", "--steps-per-epoch", "1",
                             "--batch-size", "2", "--crop", "32", "--precision", "fp32", "--out", str(out)],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines, saved, _ = follow_stdout(proc, "checkpoint ")
    try:
        assert saved.wait(timeout=240), "".join(lines[-20:])
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert proc.returncode == 2 and "Traceback" not in err, err[-3000:]
    assert len(errors) == 1 and re.fullmatch(r"error: interrupted at step \d+; resume with --resume \(from ckpt-\d+\)",
                                             errors[0]), errors
    assert _leftovers(out) == []


@pytest.mark.slow  # trains a tiny network
def test_disk_full_during_train_checkpoint(tmp_path, capsys, monkeypatch):
    import tensorflow as tf

    from tfdeblur.training import state

    _tiny_cli(monkeypatch)

    def full(self, step, data_position):  # as a full disk fails TensorFlow's checkpoint writer
        os.makedirs(os.path.join(self.directory, f"ckpt-{step}_temp"))
        raise tf.errors.ResourceExhaustedError(None, None, f"{{{{function_node __wrapped__SaveV2}}}} {self.directory}/"
                                               f"ckpt-{step}_temp/part-0.data; No space left on device [Op:SaveV2]")

    monkeypatch.setattr(state.RunState, "save", full)
    out = tmp_path / "run"
    err = run_cli_error(capsys, ["train", "mtwdn", "--steps", "2", "--steps-per-epoch", "1", "--batch-size", "2",
                                 "--crop", "32", "--precision", "fp32", "--out", str(out)])
    assert err == (f"error: --out {out}: disk full (No space left on device); no checkpoint was written; "
                   "free space and resume with --resume")
    assert _leftovers(out) == [] and not (out / "model.keras").exists()


def _file_size_limit(limit):
    """RLIMIT_FSIZE in this process: writes past `limit` bytes fail with
    EFBIG ("File too large"), as on a full disk, without filling one."""
    import contextlib
    import resource
    import signal

    @contextlib.contextmanager
    def limited():
        old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        old = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, old[1]))
        try:
            yield
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, old)
            signal.signal(signal.SIGXFSZ, old_handler)

    return limited()


def test_disk_full_during_prepare(tmp_path, capsys):
    out = tmp_path / "prepared"
    with _file_size_limit(20_000):
        err = run_cli_error(capsys, ["prepare", "synthetic", "--count", "4", "--size", "64", "--out", str(out)])
    assert err == f"error: --out {out}: disk full (File too large); nothing was written"
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("fmt", ["tflite", "saved_model"])
def test_disk_full_during_export(tiny_model, tmp_path, capsys, fmt):
    out = tmp_path / ("m.tflite" if fmt == "tflite" else "sm")
    with _file_size_limit(20_000):
        err = run_cli_error(capsys, ["export", "--model", tiny_model, "--format", fmt, "--out", str(out)])
    assert err.startswith(f"error: {out}: cannot write (") and "File too large" in err
    assert err.endswith("the disk is full: free space and export again; nothing was written")
    assert os.listdir(tmp_path) == []


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    out = tmp_path_factory.mktemp("rec") / "prepared"
    assert main(["prepare", "synthetic", "--count", "4", "--size", "48", "--shards", "2", "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize("damage", ["truncated", "flipped"])
def test_damaged_tfrecord_shard_named(tiny_model, prepared, tmp_path, capsys, damage):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(prepared, data)
    shard = data / json.loads((data / "meta.json").read_text())["shards"][1]
    raw = bytearray(shard.read_bytes())
    if damage == "truncated":
        raw = raw[: len(raw) // 2]
    else:
        raw[len(raw) // 2] ^= 0xFF  # same size: only the checksums tell
    shard.write_bytes(bytes(raw))
    err = run_cli_error(capsys, ["eval", "--model", tiny_model, "--data", f"tfrecord:{data}"])
    assert err.startswith(f"error: {shard}: damaged TFRecord shard (") and err.endswith("; prepare it again")


# --- 4. deblur's --out, non-finite outputs, odd-but-valid files, arguments --


def test_deblur_out_in_input_folder(tiny_model, tmp_path, capsys):
    src = tmp_path / "photos"
    src.mkdir()
    cv2.imwrite(str(src / "a.png"), _rgb())
    before = (src / "a.png").read_bytes()
    for out, what in ((src, "is the input folder"), (src / "restored", "is inside the input folder")):
        err = run_cli_error(capsys, ["deblur", "--model", tiny_model, str(src), "--out", str(out), "--overwrite"])
        assert err == f"error: --out {out}: {what} {src}; choose another --out or pass --out-in-input"
    # Even when asked, an input is never replaced.
    err = run_cli_error(capsys, ["deblur", "--model", tiny_model, str(src), "--out", str(src), "--overwrite", "--out-in-input"])
    assert err == f"error: --out {src}: would replace the input {src / 'a.png'}; choose another --out"
    assert sorted(os.listdir(src)) == ["a.png"] and (src / "a.png").read_bytes() == before
    assert main(["deblur", "--model", tiny_model, str(src), "--out", str(src / "restored"), "--out-in-input"]) == 0
    assert os.listdir(src / "restored") == ["a.png"]
    err = run_cli_error(capsys, ["deblur", "--model", tiny_model, str(src / "a.png"), "--out", ""])
    assert err == "error: --out must be a folder; got '' (use . for the current folder)"


def test_non_finite_model_output_is_an_error_not_a_black_image(tmp_path, capsys):
    import keras

    import tfdeblur.models as models

    model = models.build("lmfn", levels=2, channels=16, mffd_channels=16, num_rfdb=1)
    kernel = model.trainable_weights[0]
    kernel.assign(np.full(kernel.shape, np.nan, np.float32))
    path = tmp_path / "nan.keras"
    model.save(path)
    src = tmp_path / "in"
    src.mkdir()
    cv2.imwrite(str(src / "a.png"), _rgb())
    err = run_cli_error(capsys, ["deblur", "--model", str(path), str(src), "--out", str(tmp_path / "out")])
    assert err == f"error: {src / 'a.png'}: the model's output holds NaN or infinite values (damaged or diverged weights); nothing written"
    assert _files(tmp_path / "out") == []
    del keras


def test_gray_alpha_stays_gray_alpha(tiny_model, tmp_path, capsys):
    from PIL import Image

    for depth in (8, 16):
        la = np.stack([np.arange(24 * 30).reshape(24, 30) % 251, np.full((24, 30), 77)], axis=2)
        la = la.astype(np.uint8 if depth == 8 else np.uint16) * (1 if depth == 8 else 257)
        path = tmp_path / f"la{depth}.png"
        if depth == 8:
            Image.fromarray(la, "LA").save(path)
        else:
            path.write_bytes(tio._png_gray_alpha(la))
        raw = tio.read_image_raw(path)
        assert raw.shape == (24, 30, 2) and raw.dtype == la.dtype
        np.testing.assert_array_equal(raw, la)
        out = tmp_path / "out"
        assert main(["deblur", "--model", tiny_model, str(path), "--out", str(out)]) == 0
        back = tio.read_image_raw(out / path.name)
        assert back.shape == (24, 30, 2) and back.dtype == la.dtype
        np.testing.assert_array_equal(back[..., 1], la[..., 1])  # alpha passes through
        if depth == 8:
            assert Image.open(out / path.name).mode == "LA"


def test_float_images_outside_unit_range_refused_by_the_api(tiny_model):
    import keras

    from tfdeblur.inference import Deblurrer

    deblurrer = Deblurrer(keras.saving.load_model(tiny_model, safe_mode=True, compile=False))
    with pytest.raises(ValueError, match=r"^image: float image values must be in \[0, 1\]; got \[0, 255\]"):
        deblurrer(np.linspace(0, 255, 24 * 30 * 3, dtype=np.float32).reshape(24, 30, 3))
    with pytest.raises(ValueError, match=r"got \[-0.5, 0.5\]"):
        deblurrer(np.full((24, 30, 3), 0.5, np.float32) - np.eye(24, 30, dtype=np.float32)[..., None])
    assert deblurrer(np.full((24, 30, 3), 0.5, np.float32)).shape == (24, 30, 3)


def test_negative_seed_names_the_argument(capsys, tmp_path):
    err = run_cli_error(capsys, ["train", "mtwdn", "--seed", "-1", "--out", str(tmp_path / "r")])
    assert err == "error: --seed must be a non-negative integer; got -1"
    err = run_cli_error(capsys, ["prepare", "synthetic", "--count", "2", "--seed", "-1", "--out", str(tmp_path / "p")])
    assert err == "error: --seed must be a non-negative integer; got -1"
    assert os.listdir(tmp_path) == []


@pytest.mark.slow  # trains a tiny network twice
def test_short_run_extended_with_resume_keeps_its_interval(tmp_path):
    from tfdeblur.training.run import run_training

    out = tmp_path / "run"
    run_training(_tiny_train_cfg(out, steps=3, steps_per_epoch=100), log=lambda m: None)
    lines = []
    run_training(_tiny_train_cfg(out, steps=6, steps_per_epoch=100, resume=True), log=lines.append)
    assert any(line.startswith(f"resumed from {out}/checkpoints/ckpt-3 (step 3/6)") for line in lines)
    assert json.loads((out / "config.json").read_text())["steps_per_epoch_resolved"] == 3
    assert os.path.exists(f"{out}/checkpoints/ckpt-6.index")


# --- 5. an impossible batch, refused before anything is allocated -----------

def test_impossible_batch_size_refused_before_allocating(tmp_path, capsys):
    import resource

    from tfdeblur.training import run

    out = tmp_path / "r"
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    err = run_cli_error(capsys, ["train", "mtwdn", "--batch-size", "100000", "--out", str(out)])
    gib = run._machine_memory() / 2**30
    assert err == ("error: --batch-size 100000: one batch of 128x128 crops needs at least 73.2 GiB (blurry, sharp, output "
                   f"and its gradient, before any activation), more than this machine's {gib:.1f} GiB; "
                   "use a smaller --batch-size or --crop")
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200 << 10  # KiB: nothing big allocated
    assert not out.exists()
    # The bound is a lower one: what the quick run and the paper recipes ask fits in 1 GiB with room to spare.
    cfg = _tiny_train_cfg(out, batch_size=16, crop=256)
    run._check_batch_memory(cfg, memory=1 << 30)
    with pytest.raises(run.RunError, match="`batch_size` 300: one batch of 256x256 crops needs at least 0.9 GiB"):
        run._check_batch_memory(_tiny_train_cfg(out, batch_size=300, crop=256), memory=1 << 29)


# --- 5. integrity of .keras files, temporaries of a killed deblur ---------


def test_keras_files_written_by_train_carry_a_checked_checksum(tmp_path, capsys):
    import tfdeblur.models as models
    from tfdeblur.inference import load_model
    from tfdeblur.training.run import save_model_atomic
    from tfdeblur.weights import sha256_of

    small = dict(levels=2, channels=16, mffd_channels=16, num_rfdb=1)
    path = tmp_path / "model.keras"
    save_model_atomic(models.build("lmfn", **small), path)  # how train writes model.keras and best.keras
    assert _files(tmp_path) == ["model.keras", "model.keras.sha256"]
    assert (tmp_path / "model.keras.sha256").read_text() == f"{sha256_of(path)}  model.keras\n"  # sha256sum -c format
    load_model(path)
    # Another valid model in its place: it would load, but the digest is not its own.
    models.build("lmfn", **small).save(path)
    src = tmp_path / "in"
    src.mkdir()
    cv2.imwrite(str(src / "a.png"), _rgb())
    for argv in (["deblur", "--model", str(path), str(src), "--out", str(tmp_path / "out")],
                 ["export", "--model", str(path), "--format", "tflite", "--out", str(tmp_path / "m.tflite")]):
        err = run_cli_error(capsys, argv)
        assert err.startswith(f"error: --model {path}: checksum mismatch (sha256 "), err
        assert err.endswith("the file is damaged or was changed")
    assert _files(tmp_path) == ["in", "model.keras", "model.keras.sha256"]
    (tmp_path / "model.keras.sha256").unlink()
    load_model(path)  # a .keras file from elsewhere has no sidecar: loads unchecked


_KILLED_MID_WRITE = r"""
import os, signal, sys
from tfdeblur import io as tio
from tfdeblur.cli import main

def killed(src, dst):  # kill -9 after the temporary is written, before it is renamed
    os.kill(os.getpid(), signal.SIGKILL)
tio.os.replace = killed
main(sys.argv[1:])
"""


def test_deblur_killed_mid_write_leaves_no_temporary_after_the_next_run(tiny_model, tmp_path, capsys):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    cv2.imwrite(str(src / "a.png"), _rgb())
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([sys.executable, "-c", _KILLED_MID_WRITE, "deblur", "--model", tiny_model, str(src),
                           "--out", str(out)], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]
    stale = os.listdir(out)
    assert len(stale) == 1 and stale[0].startswith(".a.png.") and stale[0].endswith(".tmp.png"), stale
    live = f".b.png.{os.getpid()}-0123abcd.tmp.png"  # a writer still running (this process) keeps its file
    (out / live).write_bytes(b"in flight")
    assert main(["deblur", "--model", tiny_model, str(src), "--out", str(out)]) == 0
    assert _files(out) == sorted([live, "a.png"])
