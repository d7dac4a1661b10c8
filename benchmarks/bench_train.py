"""Training throughput per network on this machine: img/s, FLOPs, conv-ceiling fraction.

    python benchmarks/bench_train.py [NET ...] [--sizes 128 256] [--batch 4] [--bf16]
        [--repeats 3] [--data live|cached] [--no-metrics] [--steps-per-execution N]
        [--compare DATA:METRICS:SPE ... [--rounds R]]
        [--threads INTRA,INTER] [--onednn 0|1] [--label TEXT] [--json FILE]

For each network (default: mtwdn fddn lmfn msfs glbdn), crop size and
precision (fp32; bf16 too with `--bf16`, opt-in because without AMX it is
~10x slower), in a fresh process (Keras' dtype policy, thread counts and
`TF_ENABLE_ONEDNN_OPTS` are per process), the training step that
`python cli.py train` runs: the network compiled with `compile_args` (its
recipe's optimizer and loss, PSNR/SSIM metrics unless `--no-metrics`),
Keras' own train function (`model.train_function`, what `fit` calls per
step) on an iterator of

- `live`: the training stream `train` reads (`datasets.stream.train_stream`,
  synthetic data generated on the same cores while the step runs), or
- `cached`: one batch of it held in memory and repeated (no data work).

Step time: `tfdeblur.bench.median_seconds` over `--repeats` calls after
one warm-up call (tracing); with `--steps-per-execution N` one call runs N
steps. `--compare` measures several settings (data, metrics on/off,
steps per execution) in one process, each with its own model, in blocks
that alternate for `--rounds` rounds (the median over blocks), so the
load of other jobs hits every setting alike; thread counts and oneDNN
need a process each (`--threads`, `--onednn`). Printed per row:

- img/s = batch / step time;
- GFLOP per step = 3 x the forward FLOPs of the batch counted by
  `tfdeblur.bench.count_flops` (TensorFlow's profiler, a multiply-add = 2
  FLOPs). 3x is the usual estimate (backward = input gradients + weight
  gradients, each about one forward); it ignores the optimizer and the loss;
- achieved GFLOP/s and its fraction of the **training conv ceiling**: the
  GFLOP/s of a plain stack of four 3x3 'same' convolutions width->width
  (`precision.conv_step`, forward + backward, the same batch and crop
  size), `width` being the network's typical conv width
  (`bench.conv_width`), measured in the same process and precision, as one
  more block alternating with the settings' blocks.

Timings on a shared machine are noisy: run it more than once, report the
load average (printed with each row). Nothing here is a test.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

NETS = ("mtwdn", "fddn", "lmfn", "msfs", "glbdn")
CEILING_LAYERS = 4


def _setting_runner(net, size, batch, setting):
    """A fresh model compiled as `setting` says, and a callable running one
    call of its train function (`steps_per_execution` steps) to completion."""
    import keras
    import numpy as np
    import tensorflow as tf

    from tfdeblur.models import build
    from tfdeblur.training import compile_args
    from tfdeblur.datasets.stream import train_stream

    keras.utils.set_random_seed(0)
    model = build(net)
    model.compile(**compile_args(net, total_steps=1000, learning_rate=3e-4, metrics=setting["metrics"]),
                  steps_per_execution=setting["spe"], jit_compile=False)
    ds = train_stream("synthetic", size, 0, batch, min_size=model.min_size)
    if setting["data"] == "cached":
        ds = tf.data.Dataset.from_tensors(next(iter(ds))).repeat()
    iterator = iter(ds)
    model.make_train_function()

    def step():
        logs = model.train_function(iterator)
        keras.tree.map_structure(np.asarray, logs)  # blocks until the step is done

    return model, step


def worker(opts):
    """One network, size and precision, in this (fresh) process: every
    setting of `opts["settings"]` gets its own model; their blocks of
    `repeats` timed calls alternate for `rounds` rounds, so a change of load
    hits them all. Each block first runs untimed calls (tracing; live blocks
    two, to drain batches prefetched while another setting ran). Returns a
    list of dicts, one per setting (the median over its blocks)."""
    import tensorflow as tf

    if opts["threads"]:
        intra, inter = (int(v) for v in opts["threads"].split(","))
        tf.config.threading.set_intra_op_parallelism_threads(intra)
        tf.config.threading.set_inter_op_parallelism_threads(inter)
    from tfdeblur import bench
    from tfdeblur.training.precision import apply_precision, choose_precision, conv_step

    net, size, batch, precision = opts["net"], opts["size"], opts["batch"], opts["precision"]
    apply_precision(choose_precision(precision))
    runners = [_setting_runner(net, size, batch, s) for s in opts["settings"]]
    model = runners[0][0]
    width = bench.conv_width(model)
    ceiling_run, ceiling_flops = conv_step(width, precision, size, batch, CEILING_LAYERS)
    blocks = [[] for _ in runners]
    ceiling_blocks, loads = [], []

    for _ in range(opts["rounds"]):
        for i, ((_, step), setting) in enumerate(zip(runners, opts["settings"])):
            warmup = 2 if setting["data"] == "live" else 1
            blocks[i].append(bench.median_seconds(step, opts["repeats"], warmup=warmup) / setting["spe"])
            loads.append(os.getloadavg()[0])
        # The ceiling is one more alternating block: the same load as the steps.
        ceiling_blocks.append(ceiling_flops / bench.median_seconds(ceiling_run, opts["repeats"]) / 1e9)
    step_gflop = 3 * bench.count_flops(model, size, size) * batch / 1e9
    ceiling = statistics.median(ceiling_blocks)
    results = []
    for setting, times in zip(opts["settings"], blocks):
        seconds = statistics.median(times)
        results.append({
            "net": net, "size": size, "batch": batch, "precision": precision, "data": setting["data"],
            "metrics": setting["metrics"], "steps_per_execution": setting["spe"],
            "threads": opts["threads"] or "default", "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default"),
            "label": opts["label"], "seconds_per_step": seconds, "blocks": times, "img_per_s": batch / seconds,
            "step_gflop": step_gflop, "achieved_gflops": step_gflop / seconds, "ceiling_gflops": ceiling,
            "conv_width": width, "fraction": step_gflop / seconds / ceiling,
            "load": statistics.median(loads),
        })
    return results


def run_worker(opts):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    if opts["onednn"] is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = opts["onednn"]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", json.dumps(opts)],
                          capture_output=True, text=True, env=env)
    if proc.returncode:
        tail = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit code {proc.returncode}"
        raise SystemExit(f"error: bench_train {opts['net']} {opts['size']} {opts['precision']}: {tail}")
    return json.loads(proc.stdout.strip().splitlines()[-1])  # a list, one dict per setting


HEADER = ("| network | crop | batch | precision | setting | s/step | img/s | GFLOP/step (3x fwd) "
          "| achieved GFLOP/s | train conv ceiling GFLOP/s (width) | fraction | load (1 min) |\n"
          "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")


def setting(r):
    parts = [r["data"], "metrics" if r["metrics"] else "no metrics"]
    if r["steps_per_execution"] != 1:
        parts.append(f"spe {r['steps_per_execution']}")
    if r["threads"] != "default":
        parts.append(f"threads {r['threads']}")
    if r["onednn"] != "default":
        parts.append(f"oneDNN {r['onednn']}")
    if r["label"]:
        parts.append(r["label"])
    return ", ".join(parts)


def row(r):
    return (f"| {r['net']} | {r['size']} | {r['batch']} | {r['precision']} | {setting(r)} | {r['seconds_per_step']:.2f} "
            f"| {r['img_per_s']:.2f} | {r['step_gflop']:.0f} | {r['achieved_gflops']:.0f} "
            f"| {r['ceiling_gflops']:.0f} ({r['conv_width']}) | {r['fraction']:.2f} | {r['load']:.2f} |")


def _parse_setting(text):
    parts = text.split(":")
    if len(parts) != 3 or parts[0] not in ("live", "cached") or parts[1] not in ("0", "1") or not parts[2].isdigit() \
            or int(parts[2]) < 1:
        raise SystemExit(f"error: --compare settings must be DATA:METRICS:SPE (live|cached, 0|1, a positive integer); "
                         f"got {text!r}")
    return {"data": parts[0], "metrics": parts[1] == "1", "spe": int(parts[2])}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("nets", nargs="*", default=list(NETS))
    p.add_argument("--sizes", nargs="+", type=int, default=[128, 256])
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--bf16", action="store_true", help="measure bf16 too (slow without AMX)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--data", choices=["live", "cached"], default="live")
    p.add_argument("--no-metrics", action="store_true", help="compile without PSNR/SSIM metrics")
    p.add_argument("--steps-per-execution", type=int, default=1)
    p.add_argument("--compare", nargs="+", metavar="DATA:METRICS:SPE",
                   help="settings measured in one process, alternating (e.g. live:1:1 cached:1:1 cached:0:1); "
                        "replaces --data/--no-metrics/--steps-per-execution")
    p.add_argument("--rounds", type=int, default=1, help="alternating rounds of --repeats timed calls per setting")
    p.add_argument("--threads", default=None, help="INTRA,INTER for tf.config.threading (default: TF's)")
    p.add_argument("--onednn", choices=["0", "1"], default=None, help="TF_ENABLE_ONEDNN_OPTS for the measuring process")
    p.add_argument("--label", default="", help="a note for the setting column")
    p.add_argument("--json", default=None, help="append each row's dict to this JSON-lines file")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0
    from tfdeblur.models import get_preset

    for net in args.nets:
        get_preset(net)  # unknown names fail before any measuring
    for name in ("batch", "repeats", "steps_per_execution"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be a positive integer; got {getattr(args, name)}")
    settings = [{"data": args.data, "metrics": not args.no_metrics, "spe": args.steps_per_execution}]
    if args.compare:
        settings = [_parse_setting(text) for text in args.compare]
    if args.rounds < 1:
        p.error(f"--rounds must be a positive integer; got {args.rounds}")
    if args.threads is not None:
        parts = args.threads.split(",")
        if len(parts) != 2 or not all(v.isdigit() for v in parts):
            p.error(f"--threads must be INTRA,INTER (two integers, 0 = TF's choice); got {args.threads!r}")
    from tfdeblur.bench import machine

    print(f"{machine()}; load average {', '.join(f'{v:.2f}' for v in os.getloadavg())} at start")
    print(HEADER, flush=True)
    for net in args.nets:
        for size in args.sizes:
            for precision in ["fp32", "bf16"] if args.bf16 else ["fp32"]:
                opts = {"net": net, "size": size, "batch": args.batch, "precision": precision,
                        "repeats": args.repeats, "rounds": args.rounds, "settings": settings,
                        "threads": args.threads, "onednn": args.onednn, "label": args.label}
                for r in run_worker(opts):
                    print(row(r), flush=True)
                    if args.json:
                        with open(args.json, "a") as f:
                            f.write(json.dumps(r) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
