"""MTWDN numbers for docs/networks/mtwdn.md: parameters, training throughput, inference time.

    python benchmarks/bench_mtwdn.py [--nets mtwdn mtwdn_oneway] [--repeats 5]

Each (precision, size) runs in its own process, because Keras' dtype policy
is global. Prints a markdown table; nothing here is a test.
"""
import argparse
import json
import os
import subprocess
import sys
import time

WORKER = r"""
import json, os, sys, time
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import numpy as np, tensorflow as tf, keras
net, precision, mode, size, batch, repeats = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6])
keras.mixed_precision.set_global_policy({"fp32": "float32", "bf16": "mixed_bfloat16"}[precision])
import tfdeblur.models as models
from tfdeblur.training import compile_args
from tfdeblur.inference import inference_fn
model = models.build(net)
h, w = (int(v) for v in size.split("x"))
x = np.random.default_rng(0).random((batch, h, w, 3), dtype=np.float32)
if mode == "train":
    model.compile(**compile_args(net, total_steps=1000, metrics=False))
    ds = tf.data.Dataset.from_tensors((x, x)).repeat()
    model.fit(ds, steps_per_epoch=2, epochs=1, verbose=0)
    t = time.perf_counter()
    model.fit(ds, steps_per_epoch=repeats, epochs=1, verbose=0)
    sec = (time.perf_counter() - t) / repeats
    print(json.dumps({"seconds_per_step": sec, "images_per_second": batch / sec}))
else:
    from tfdeblur.bench import median_seconds
    fn = inference_fn(model)
    print(json.dumps({"median_seconds": median_seconds(lambda: fn(x).numpy(), repeats)}))
"""


def run(*args):
    proc = subprocess.run([sys.executable, "-c", WORKER, *map(str, args)], capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(proc.stderr[-2000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--nets", nargs="+", default=["mtwdn", "mtwdn_oneway"])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--batch", type=int, default=4)
    args = p.parse_args()
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import tfdeblur.models as models

    print(f"# MTWDN benchmark, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPU cores\n")
    print("| network | parameters |")
    print("| --- | --- |")
    for net in args.nets:
        print(f"| {net} | {models.build(net).count_params():,} |")
    print(f"\n| network | precision | training 128x128 (img/s, batch {args.batch}) | training 256x256 (img/s) | inference 1280x720 (s) |")
    print("| --- | --- | --- | --- | --- |")
    for net in args.nets:
        for precision in ("fp32", "bf16"):
            t128 = run(net, precision, "train", "128x128", args.batch, args.repeats)
            t256 = run(net, precision, "train", "256x256", args.batch, args.repeats)
            inf = run(net, precision, "infer", "720x1280", 1, args.repeats)
            print(
                f"| {net} | {precision} | {t128['images_per_second']:.2f} | {t256['images_per_second']:.2f} "
                f"| {inf['median_seconds']:.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
