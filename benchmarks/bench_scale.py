"""Resume overhead (checkpoint save/restore of a full network with Adam
state) and training step time in fp32 vs bf16, on this machine.

    python benchmarks/bench_scale.py [--net mtwdn] [--crop 128] [--batch 4] [--steps 8]

Prints one line per figure. Timings on a shared machine vary: report the
load with them.
"""
import argparse
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfdeblur.models import build  # noqa: E402
from tfdeblur.training import compile_args  # noqa: E402
from tfdeblur.training.precision import set_precision  # noqa: E402
from tfdeblur.training.state import RunState  # noqa: E402


def _model(net, precision, steps):
    set_precision(precision)
    keras.utils.set_random_seed(0)
    model = build(net)
    model.compile(**compile_args(net, total_steps=1000), jit_compile=False)
    return model


def _data(crop, batch):
    rng = np.random.default_rng(0)
    sharp = rng.random((batch, crop, crop, 3), dtype=np.float32)
    return tf.data.Dataset.from_tensors((0.8 * sharp + 0.1, sharp)).repeat()


def step_time(net, precision, crop, batch, steps):
    model = _model(net, precision, steps)
    ds = _data(crop, batch)
    model.fit(ds, steps_per_epoch=2, epochs=1, verbose=0)  # trace and warm up
    start = time.perf_counter()
    model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0)
    return (time.perf_counter() - start) / steps, model


def checkpoint_times(model, repeats=3):
    with tempfile.TemporaryDirectory() as d:
        state = RunState(model, d, keep=2)
        saves, restores = [], []
        for i in range(repeats):
            t = time.perf_counter()
            path = state.save(i + 1, 0)
            saves.append(time.perf_counter() - t)
        size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d) if f.startswith(os.path.basename(path)))
        for _ in range(repeats):
            t = time.perf_counter()
            state.restore("bench", path)
            restores.append(time.perf_counter() - t)
    return float(np.median(saves)), float(np.median(restores)), size


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--net", default="mtwdn")
    p.add_argument("--crop", type=int, default=128)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--steps", type=int, default=8)
    args = p.parse_args()
    print(f"load average at start: {os.getloadavg()}")
    for precision in ("fp32", "bf16"):
        seconds, model = step_time(args.net, precision, args.crop, args.batch, args.steps)
        print(f"{args.net} {precision}: {seconds:.3f} s/step ({args.batch / seconds:.2f} img/s) at "
              f"{args.crop}x{args.crop}, batch {args.batch}, mean of {args.steps} steps")
        if precision == "fp32":
            save, restore, size = checkpoint_times(model)
            print(f"{args.net} checkpoint (weights + Adam, {size / 1e6:.1f} MB): save {save:.3f} s, "
                  f"restore {restore:.3f} s (median of 3)")
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
