"""Exact resume: interrupted runs end bit-identical to a straight run; kill -9
never leaves a corrupt checkpoint; NaN stops the run; `--resume` refuses
another run's folder.

Every run here trains with `jitter` (`train --jitter`): the colour gain is a
map on top of the plain stream (datasets/stream.py), a function of (seed,
sample), so these runs check that a resumed run sees the same batches with
and without it (one set of runs for both: tests/test_jitter.py checks the
jittered stream itself)."""
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import REPO, follow_stdout, run_cli_error
from tfdeblur.training import run as run_module
from tfdeblur.training.run import RunError, TrainConfig, run_training

TINY = {"widths": [4, 8, 16], "blocks_per_level": 1}
STEPS = 6  # checkpoint after every step (steps_per_epoch=1): more than the 3 kept, 3 kills fit
JITTER = 0.2  # train --jitter: the resumed stream must also resume its gains


def _cfg(out, **kw):
    base = dict(net="mtwdn", steps=STEPS, steps_per_epoch=1, batch_size=2, crop=32, out=str(out),
                precision="fp32", val_images=1, model_overrides=dict(TINY), learning_rate=1e-3, seed=3, jitter=JITTER)
    base.update(kw)
    return TrainConfig(**base)


def _quiet(*_):
    pass


def _weights(path):
    return keras.saving.load_model(path, compile=False).get_weights()


def _assert_bit_identical(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.dtype == y.dtype and x.shape == y.shape
        assert np.array_equal(x, y), f"max |diff| {np.abs(x - y).max()}"


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("straight") / "run"
    run_training(_cfg(out), log=_quiet)
    keras.mixed_precision.set_global_policy("float32")
    return out


# Stop (`stop_at`) and resume in process: test_kill_9_at_random_moments_then_resume
# begins with such a session, then resumes it in killed and finished processes.


def test_checkpoint_holds_step_and_data_position(straight_run):
    reader = tf.train.load_checkpoint(str(straight_run / "checkpoints"))
    names = reader.get_variable_to_shape_map()
    assert int(reader.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE")) == STEPS
    assert int(reader.get_tensor("data_position/.ATTRIBUTES/VARIABLE_VALUE")) == STEPS * 2
    assert any(n.startswith("optimizer/") for n in names)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    real_stream = run_module.train_stream
    bad_step = 3  # 0-based: the 4th step sees NaN inputs

    def poisoned(*args, start_step=0, **kwargs):
        ds = real_stream(*args, start_step=start_step, **kwargs)
        nan = tf.constant(float("nan"))
        return ds.enumerate(start=start_step).map(
            lambda i, pair: (tf.where(i >= bad_step, nan, pair[0]), pair[1])
        )

    monkeypatch.setattr(run_module, "train_stream", poisoned)
    out = tmp_path / "run"
    with pytest.raises(RunError, match=r"training diverged at step 4 \(loss is nan\); stopped\. "
                                       r"Last good checkpoint kept: .*ckpt-3$"):
        run_training(_cfg(out, steps=6), log=_quiet)
    assert not (out / "model.keras").exists()
    index = tf.train.get_checkpoint_state(str(out / "checkpoints"))
    assert os.path.basename(index.model_checkpoint_path) == "ckpt-3"
    reader = tf.train.load_checkpoint(index.model_checkpoint_path)
    for name in reader.get_variable_to_shape_map():
        value = reader.get_tensor(name)
        if np.issubdtype(np.asarray(value).dtype, np.floating):
            assert np.isfinite(value).all(), name


def test_resume_refuses_other_runs(straight_run, tmp_path, capsys):
    # No run at all; a run with no checkpoint.
    with pytest.raises(RunError, match="holds no run to resume"):
        run_training(_cfg(tmp_path / "empty", resume=True), log=_quiet)
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(straight_run / "config.json", bare / "config.json")
    with pytest.raises(RunError, match=f"`resume`: {bare}/checkpoints holds no checkpoint"):
        run_training(_cfg(bare, resume=True), log=_quiet)
    # Another network (CLI: one error line, exit 2).
    err = run_cli_error(capsys, ["train", "mtwdn_oneway", "--out", str(straight_run), "--resume"])
    assert err == f"error: --resume: {straight_run} holds a run of 'mtwdn', not 'mtwdn_oneway'"
    # Other preset arguments, other batch size: named.
    with pytest.raises(RunError, match=r"`model_overrides` is .*'widths': \[8, 8, 16\].* but the run being resumed has"):
        run_training(_cfg(straight_run, resume=True, model_overrides=dict(TINY, widths=[8, 8, 16])), log=_quiet)
    with pytest.raises(RunError, match="`batch_size` is 4 but the run being resumed has 2"):
        run_training(_cfg(straight_run, resume=True, batch_size=4), log=_quiet)
    # A checkpoint that does not fit the network (config edited to agree).
    other = tmp_path / "other"
    shutil.copytree(straight_run, other)
    config = json.loads((other / "config.json").read_text())
    config["model_overrides"]["widths"] = [8, 8, 16]
    (other / "config.json").write_text(json.dumps(config))
    with pytest.raises(RunError, match=rf"checkpoint .*ckpt-{STEPS} does not fit mtwdn"):
        run_training(_cfg(other, resume=True, model_overrides=dict(TINY, widths=[8, 8, 16])), log=_quiet)


_CRASH_SCRIPT = textwrap.dedent(
    """
    import sys
    from tfdeblur.training.run import TrainConfig, run_training
    cfg = TrainConfig(**__CFG__)
    run_training(cfg, log=lambda m: print(m, flush=True))
    """
)


@pytest.mark.slow
def test_kill_9_at_random_moments_then_resume(straight_run, tmp_path):
    """A session stopped by `stop_at` after step 1 (in this process: no
    model.keras yet), then SIGKILL to the resumed training process 3 times at
    random moments (after it has written a checkpoint, 0-0.8 s later: inside
    steps and checkpoint writes). Every time: the latest checkpoint reads
    back whole, and the next session resumes from at least the last
    checkpoint the killed one reported (the first: from step 1, as its log
    says). The finished run equals the straight run to the bit and keeps
    the last 3 checkpoints. (One run for both: the stop-and-resume test had
    its own two sessions.)"""
    out = tmp_path / "run"
    first = run_training(_cfg(out, stop_at=1), log=_quiet)
    assert first["stopped_at"] == 1
    assert not (out / "model.keras").exists()
    keras.mixed_precision.set_global_policy("float32")
    cfg = dict(vars(_cfg(out, resume=True)))
    rng = random.Random(int(time.time()))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    kills = 0
    for session in range(1, 7):
        code = _CRASH_SCRIPT.replace("__CFG__", repr(cfg))
        last_done = _latest_step(out)
        # A kill that landed after the last step's checkpoint (in validation
        # or the model.keras write) leaves no step to checkpoint: this session
        # is killed after it starts validating instead.
        marker = "checkpoint " if last_done < STEPS else "validating"
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, cwd=REPO, env=env)
        lines, saved, reader = follow_stdout(proc, marker)
        if kills < 3:
            if not saved.wait(timeout=240):
                proc.kill()
                pytest.fail(f"no {marker!r} line within 240 s:\n" + "".join(lines[-20:]))
            time.sleep(rng.uniform(0.0, 0.8))
        if proc.poll() is None and kills < 3:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait(timeout=300)
        reader.join(timeout=10)
        text = "".join(lines)
        resumed = [int(s) for s in re.findall(r"resumed from .*ckpt-\d+ \(step (\d+)/", text)]
        assert resumed and resumed[0] >= last_done, text[-2000:]
        if session == 1:
            assert f"(step 1/{STEPS})" in text, text[-2000:]
        reported = [int(s) for s in re.findall(r"^checkpoint .* \(step (\d+)\)$", text, re.M)]
        latest = _latest_step(out)
        assert latest >= max(reported, default=0)  # nothing reported saved was lost
        _read_whole_checkpoint(out, latest)
        if proc.returncode == 0:
            break
        assert proc.returncode == -signal.SIGKILL, text[-2000:]
    assert kills >= 2  # 3 planned; a session may finish before its kill lands
    assert proc.returncode == 0
    # Weights (and so the optimizer's moments and schedule position, which
    # shaped them) and the data stream matched to the last bit: the straight
    # run and the resumed one did the same float operations in the same order.
    _assert_bit_identical(_weights(out / "model.keras"), _weights(straight_run / "model.keras"))
    # keep last 3 (the default)
    index = tf.train.get_checkpoint_state(str(out / "checkpoints"))
    assert [os.path.basename(p) for p in index.all_model_checkpoint_paths] == ["ckpt-4", "ckpt-5", "ckpt-6"]


def _latest_step(out):
    path = tf.train.latest_checkpoint(str(out / "checkpoints"))
    return 0 if path is None else int(path.rsplit("-", 1)[1])


def _read_whole_checkpoint(out, step):
    reader = tf.train.load_checkpoint(str(out / "checkpoints" / f"ckpt-{step}"))
    for name in reader.get_variable_to_shape_map():
        reader.get_tensor(name)  # CRC-checked read of every tensor
    assert int(reader.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE")) == step


def _batches(ds, n):
    return [tuple(t.numpy() for t in batch) for batch in ds.take(n)]


@pytest.mark.parametrize("kind", ["synthetic", "pairs"])
def test_stream_position_and_shards(kind, tmp_path):
    """Step k of a stream started at 0 == step 0 of one started at k; two
    shards' halves make up the single-device global batch."""
    from tfdeblur import io as tio
    from tfdeblur.datasets.stream import train_stream

    spec = "synthetic"
    if kind == "pairs":
        rng = np.random.default_rng(0)
        for d in ("blur", "sharp"):
            (tmp_path / d).mkdir()
        for i in range(4):  # 3 train pairs (every 10th pair is held out)
            img = rng.random((40, 48, 3)).astype(np.float32)
            tio.write_image(str(tmp_path / "blur" / f"{i}.png"), img)
            tio.write_image(str(tmp_path / "sharp" / f"{i}.png"), 1 - img)
        spec = f"pairs:{tmp_path / 'blur'},{tmp_path / 'sharp'}"
    full = _batches(train_stream(spec, 32, seed=5, batch_size=4), 3)
    later = _batches(train_stream(spec, 32, seed=5, batch_size=4, start_step=2), 1)
    for a, b in zip(full[2], later[0]):
        assert np.array_equal(a, b)
    halves = [_batches(train_stream(spec, 32, seed=5, batch_size=4, shard=w, num_shards=2), 3) for w in (0, 1)]
    for step in range(3):
        for part in range(2):  # blur, sharp
            joined = np.concatenate([halves[0][step][part], halves[1][step][part]])
            assert np.array_equal(joined, full[step][part])
    other_seed = _batches(train_stream(spec, 32, seed=6, batch_size=4), 1)
    assert not np.array_equal(other_seed[0][0], full[0][0])
    if kind == "pairs":  # every sample is a crop of one of the 3 training pairs: sharp = 1 - blur
        for blur, sharp in full:
            np.testing.assert_allclose(blur + sharp, 1.0, atol=1e-6)


def test_procedural_kinds_resume_at_their_position():
    """`dynamic` and `globalblur` streams start at step k without generating
    the k * B samples before it: step k of a stream from 0 == step 0 from k."""
    from tfdeblur.datasets.stream import train_stream

    for spec in ("dynamic", "globalblur"):
        full = _batches(train_stream(spec, 32, seed=2, batch_size=2), 2)
        later = _batches(train_stream(spec, 32, seed=2, batch_size=2, start_step=1), 1)
        for a, b in zip(full[1], later[0]):
            assert np.array_equal(a, b), spec
        assert not np.array_equal(full[0][0], full[1][0])
