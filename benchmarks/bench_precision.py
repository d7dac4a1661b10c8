"""Does bf16 mixed precision cost quality? Same init, same data, same steps.

    python benchmarks/bench_precision.py [--net mtwdn] [--steps 200] [--learning-rate 3e-4]

Trains in fp32 and in bf16 (each in its own process: Keras' dtype policy is
global), then scores both on the synthetic validation split, each model run
in fp32 and in bf16 at inference. Prints a markdown table.
"""
import argparse
import json
import subprocess
import sys

WORKER = r"""
import json, os, sys, time
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import keras, tensorflow as tf
net, precision, steps, lr, path = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
from tfdeblur.training.precision import set_precision
from tfdeblur.training import compile_args
from tfdeblur.datasets import synthetic_dataset
from tfdeblur.evaluate import evaluate_pairs
import tfdeblur.models as models
set_precision(precision)
keras.utils.set_random_seed(0)
model = models.build(net)
model.compile(**compile_args(net, total_steps=steps, learning_rate=lr, metrics=False))
ds = synthetic_dataset("train", crop=128, seed=0).batch(4).prefetch(2)
t = time.perf_counter()
model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0)
seconds = time.perf_counter() - t
model.save(path)
rows = {}
for inf in ("fp32", "bf16"):
    set_precision(inf)
    m = keras.saving.load_model(path, compile=False)
    summary, _, _ = evaluate_pairs(m, synthetic_dataset("val", crop=256))
    rows[inf] = summary
print(json.dumps({"seconds_per_step": seconds / steps, "eval": rows}))
"""


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--net", default="mtwdn")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--learning-rate", type=float, default=3e-4)
    p.add_argument("--workdir", default="/tmp")
    args = p.parse_args()
    print(f"| trained in | s/step (128x128, batch 4) | val PSNR, fp32 inference | val PSNR, bf16 inference | input PSNR |")
    print("| --- | --- | --- | --- | --- |")
    for precision in ("fp32", "bf16"):
        path = f"{args.workdir}/precision_{args.net}_{precision}.keras"
        proc = subprocess.run(
            [sys.executable, "-c", WORKER, args.net, precision, str(args.steps), str(args.learning_rate), path],
            capture_output=True, text=True,
        )
        if proc.returncode:
            raise SystemExit(proc.stderr[-3000:])
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        e = r["eval"]
        print(
            f"| {precision} ({args.steps} steps) | {r['seconds_per_step']:.2f} | {e['fp32']['psnr']:.2f} "
            f"| {e['bf16']['psnr']:.2f} | {e['fp32']['input_psnr']:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
