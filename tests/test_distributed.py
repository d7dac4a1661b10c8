"""MultiWorkerMirroredStrategy from TF_CONFIG: two worker processes on
127.0.0.1 train one model; bad TF_CONFIG values and an unreachable chief."""
import json
import os
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from tests.helpers import REPO, run_cli_error
from tfdeblur.training.cluster import ClusterError, parse_tf_config

NET, TINY = "mtwdn", {"widths": [4, 8, 16], "blocks_per_level": 1}
# The loop-vs-fit comparison checks the hooks and the arithmetic, not the
# network: one width (no encoder levels) traces each of its four graphs in
# a fraction of TINY's time.
SMALLEST = {"widths": [4], "blocks_per_level": 1}

_WORKER = textwrap.dedent(
    """
    import sys
    import numpy as np
    import tfdeblur.training.loop as loop
    from tfdeblur.training.run import TrainConfig, run_training

    real_fit = loop.distributed_fit

    def fit_and_dump(model, *args, **kwargs):
        real_fit(model, *args, **kwargs)
        np.savez(sys.argv[1], *[np.asarray(w) for w in model.get_weights()])

    loop.distributed_fit = fit_and_dump
    run_training(TrainConfig(**__CFG__), log=lambda m: print(m, flush=True))
    """
)


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _cfg(out, **kw):
    cfg = dict(net=NET, steps=2, steps_per_epoch=1, batch_size=4, crop=32, out=str(out), precision="fp32",
               val_images=2, model_overrides=dict(TINY), learning_rate=1e-3, seed=1, cluster_timeout=60.0)
    cfg.update(kw)
    return cfg


def _launch(cfg, tf_config, dump):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", TF_CONFIG=json.dumps(tf_config))
    code = _WORKER.replace("__CFG__", repr(cfg))
    return subprocess.Popen([sys.executable, "-c", code, str(dump)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, cwd=REPO, env=env)


@pytest.mark.slow
def test_two_workers_train_one_model(tmp_path):
    import keras

    from tfdeblur.models import build
    from tfdeblur.training.recipes import compile_args
    from tfdeblur.training.state import RunState

    addresses = [f"127.0.0.1:{p}" for p in _free_ports(2)]
    out = tmp_path / "run"
    procs = [
        _launch(_cfg(out), {"cluster": {"worker": addresses}, "task": {"type": "worker", "index": i}},
                tmp_path / f"w{i}.npz")
        for i in range(2)
    ]
    logs = []
    try:
        for p in procs:
            logs.append(p.communicate(timeout=600)[0])  # two TensorFlow processes on a loaded 2-core machine
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, text in zip(procs, logs):
        assert p.returncode == 0, text[-3000:]
    assert "2 replica(s)" in logs[0] and "checkpoint " in logs[0]
    assert "done; the chief writes" in logs[1] and "checkpoint " not in logs[1]
    # The end of epoch `fit` has (_epoch_callbacks): validation in the epoch line, best.keras, TensorBoard
    # training and validation scalars and images.
    epoch_lines = [line for line in logs[0].splitlines() if "val_psnr:" in line]
    assert len(epoch_lines) == 2 and all("val_ssim:" in line for line in epoch_lines), logs[0]
    assert "val_psnr" not in logs[1] and "best val_psnr" not in logs[1]
    best = json.loads((out / "best.json").read_text())
    assert best["monitor"] == "val_psnr" and best["epoch"] in (1, 2)
    assert f"best val_psnr {best['value']:.4f} (epoch {best['epoch']})" in logs[0]
    assert {"epoch_psnr", "epoch_ssim", "epoch_loss"} <= set(_event_tags(out / "logs" / "validation"))
    assert {"epoch_loss", "epoch_psnr", "epoch_learning_rate"} <= set(_event_tags(out / "logs" / "train"))
    assert _event_tags(out / "logs" / "images") == {f"blur|output|sharp/{i}": [1, 2] for i in range(2)}
    w0, w1 = (np.load(tmp_path / f"w{i}.npz") for i in range(2))
    assert len(w0.files) == len(w1.files) > 0
    for k in w0.files:
        assert np.array_equal(w0[k], w1[k]), k
    # Only the chief wrote the run folder; its checkpoint restores the weights it trained.
    assert sorted(os.listdir(out)) == ["best.json", "best.keras", "best.keras.sha256", "checkpoints", "config.json",
                                      "logs", "model.keras", "model.keras.sha256",
                                      "results.json", "samples.png"]
    model = build(NET, **TINY)
    model.compile(**compile_args(NET, total_steps=2, learning_rate=1e-3))
    model.optimizer.build(model.trainable_variables)
    state = RunState(model, str(out / "checkpoints"))
    assert state.restore(NET) == 2
    trained = model.get_weights()
    for k, w in zip(w0.files, trained):
        assert np.array_equal(w0[k], w), k
    keras.mixed_precision.set_global_policy("float32")


def _event_tags(folder):
    import tensorflow as tf

    tags = {}
    for name in sorted(os.listdir(folder)):
        for event in tf.compat.v1.train.summary_iterator(str(folder / name)):
            for value in event.summary.value:
                tags.setdefault(value.tag, []).append(event.step)
    return tags


@pytest.mark.parametrize("text, message", [
    ("{not json", "TF_CONFIG is not valid JSON"),
    ('{"task": {"type": "worker", "index": 0}}', "TF_CONFIG cluster must be an object"),
    ('{"cluster": {"ps": ["a:1"]}, "task": {"type": "ps", "index": 0}}', "TF_CONFIG cluster.ps: unsupported job"),
    ('{"cluster": {"worker": ["a:1", "b"]}, "task": {"type": "worker", "index": 0}}', 'TF_CONFIG cluster.worker[1] must be "host:port"; got \'b\''),
    ('{"cluster": {"worker": ["a:1", "b:2"]}}', "TF_CONFIG task must be an object"),
    ('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "chief", "index": 0}}', "TF_CONFIG task.type must be one of the cluster's jobs (worker); got 'chief'"),
    ('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 2}}', "TF_CONFIG task.index must be an integer in [0, 2) for cluster.worker; got 2"),
])
def test_malformed_tf_config_names_the_field(text, message):
    with pytest.raises(ClusterError) as info:
        parse_tf_config(text)
    assert str(info.value).startswith(message), str(info.value)


def test_tf_config_roles():
    one = parse_tf_config('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 0}}')
    assert one is None  # a single task trains as a single worker
    c = parse_tf_config('{"cluster": {"chief": ["c:1"], "worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 0}}')
    assert not c.is_chief and c.chief_address == "c:1" and c.chief_field == "cluster.chief[0]" and c.num_workers == 3


def test_cli_malformed_tf_config(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 5}}')
    err = run_cli_error(capsys, ["train", "mtwdn", "--out", str(tmp_path / "run")])
    assert err == "error: TF_CONFIG task.index must be an integer in [0, 2) for cluster.worker; got 5"


def test_unreachable_chief_fails_in_bounded_time(tmp_path):
    chief, me = (f"127.0.0.1:{p}" for p in _free_ports(2))  # nobody listens on `chief`
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3",
               TF_CONFIG=json.dumps({"cluster": {"worker": [chief, me]}, "task": {"type": "worker", "index": 1}}))
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
        import sys
        from tfdeblur.training.run import TrainConfig, run_training, RunError
        try:
            run_training(TrainConfig(**{_cfg(tmp_path / 'run', cluster_timeout=3.0)!r}))
        except RunError as e:
            print(f"error: {{e}}", file=sys.stderr)
            sys.exit(2)
        """)], capture_output=True, text=True, timeout=120, env=env, cwd=REPO)
    elapsed = time.monotonic() - start
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"error: cannot reach the chief at {chief} (TF_CONFIG cluster.worker[0]) within 3 s" in proc.stderr
    assert elapsed < 60


HOOKS = ("on_train_begin", "on_epoch_begin", "on_train_batch_begin", "on_train_batch_end", "on_test_begin",
         "on_test_batch_begin", "on_test_batch_end", "on_test_end", "on_epoch_end", "on_train_end")


class _Calls:
    """A callback recording which hooks run, in which order, with which epoch or batch and log names."""

    def __new__(cls):
        import keras

        callback = keras.callbacks.Callback()
        callback.calls = []
        for hook in HOOKS:
            def record(*args, logs=None, hook=hook):
                # log names, not values (the loop's validation sums in another order: ~1e-7 apart)
                args = [tuple(sorted(a)) if isinstance(a, dict) else a for a in args]
                callback.calls.append((hook, *args, tuple(sorted(logs or {}))))
            setattr(callback, hook, record)
        return callback


def test_the_multi_worker_loop_drives_the_callbacks_as_fit_does():
    """`loop.distributed_fit` (run here under the default strategy) calls the
    same hooks in the same order with the same epoch logs as `model.fit`, and
    trains to the same weights: any callback (checkpoint guard, TensorBoard,
    best.keras, images, loss terms) sees one end-of-epoch path."""
    import keras
    import tensorflow as tf

    from tests.helpers import random_images
    from tfdeblur.models import build
    from tfdeblur.training.callbacks import validation_batches
    from tfdeblur.training.loop import distributed_fit
    from tfdeblur.training.recipes import compile_args

    blur, sharp = random_images(8, 16, 16), random_images(8, 16, 16, seed=1)
    train = tf.data.Dataset.from_tensor_slices((blur, sharp)).batch(2)
    val = validation_batches(tf.data.Dataset.from_tensor_slices((blur[:2], sharp[:2])))
    runs = {}
    for how in ("fit", "loop"):
        keras.utils.set_random_seed(0)
        model = build(NET, **SMALLEST)
        model.compile(**compile_args(NET, total_steps=4, learning_rate=1e-3))
        calls = _Calls()
        if how == "fit":
            model.fit(train.repeat(), epochs=2, steps_per_epoch=2, validation_data=val, callbacks=[calls],
                      shuffle=False, verbose=0)
        else:
            distributed_fit(model, tf.distribute.get_strategy(), lambda context: train.repeat(), epochs=2,
                            steps_per_epoch=2, callbacks=[calls], validation_data=val)
        runs[how] = calls.calls, model.get_weights()
    (fit_calls, fit_weights), (loop_calls, loop_weights) = runs["fit"], runs["loop"]
    assert loop_calls == fit_calls
    assert ("on_epoch_end", 1, ("loss", "psnr", "ssim", "val_loss", "val_psnr", "val_ssim"), ()) in loop_calls
    for a, b in zip(loop_weights, fit_weights):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
