"""`python cli.py bench NET...`: cost and speed of each network on this machine.

For every network, in fp32 and bf16 (mixed_bfloat16), each in its own
process (Keras' dtype policy is global, and peak memory is per process):

- parameters;
- FLOPs per megapixel, counted by TensorFlow's profiler
  (`tf.compat.v1.profiler`, float_operation) on the frozen traced graph of a
  256x256 forward pass; a multiply-add counts as 2 FLOPs (TF's convention);
- latency at 256x256 and 1280x720, batch 1: median of `repeats` runs after
  one warm-up (tracing) run, through `tfdeblur.inference.inference_fn`;
- peak resident memory of the process (ru_maxrss) after the 1280x720 runs;
- achieved GFLOP/s at 1280x720 and its ratio to the machine's **conv
  ceiling**: the GFLOP/s of a plain stack of eight 3x3 'same' convolutions of
  the network's typical convolution width (`conv_width`), at 256x256, measured in the
  same process and precision. A ratio near 1 means the network runs as fast
  as its FLOPs allow on this machine; the issue's goal is >= 0.6.

Below the table: the precision `--precision auto` picks for each network
here and why (`tfdeblur.precision.choose_precision`); the machine
line says whether the CPU has AMX and AVX512-BF16.
"""
import json
import logging
import os
import subprocess
import sys

from tfdeblur.timing import conv_width, median, median_seconds, seconds_each  # noqa: F401  (bench.* is the harness benchmarks/ use)

logger = logging.getLogger(__name__)

SIZES = {"256x256": (256, 256), "1280x720": (720, 1280)}
CEILING_LAYERS = 8
CEILING_SIZE = (256, 256)  # large enough to keep the cores busy, small enough to be quick at width 150


def count_flops(model, height=256, width=256):
    """FLOPs of one (1, height, width, 3) forward pass, from the traced graph."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    fn = tf.function(lambda x: model(x, training=False))
    concrete = fn.get_concrete_function(tf.TensorSpec([1, height, width, 3], tf.float32))
    frozen = convert_variables_to_constants_v2(concrete)
    opts = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    opts["output"] = "none"
    info = tf.compat.v1.profiler.profile(graph=frozen.graph, run_meta=tf.compat.v1.RunMetadata(), cmd="op", options=opts)
    return int(info.total_float_ops)


def conv_ceiling(width, height, img_width, repeats):
    """GFLOP/s of eight 3x3 convolutions width->width at (height, img_width)."""
    import keras
    import numpy as np
    import tensorflow as tf

    inputs = keras.Input((None, None, width))
    x = inputs
    for i in range(CEILING_LAYERS):
        x = keras.layers.Conv2D(width, 3, padding="same", name=f"ceiling_{i}")(x)
    stack = keras.Model(inputs, x)
    fn = tf.function(lambda t: stack(t, training=False), input_signature=[tf.TensorSpec([None, None, None, width], tf.float32)])
    data = np.random.default_rng(0).random((1, height, img_width, width), dtype=np.float32)
    seconds = median_seconds(lambda: fn(data).numpy(), repeats)
    flops = 2 * height * img_width * 9 * width * width * CEILING_LAYERS
    return flops / seconds / 1e9


def worker(net, precision, repeats):
    """Measures one network in one precision; returns a dict (run in a fresh process)."""
    import resource

    import keras
    import numpy as np

    keras.mixed_precision.set_global_policy({"fp32": "float32", "bf16": "mixed_bfloat16"}[precision])
    import tfdeblur.models as models
    from tfdeblur.inference import inference_fn

    model = models.build(net)
    result = {"net": net, "precision": precision, "params": int(model.count_params())}
    flops = count_flops(model)
    result["gflops_per_mp"] = flops / (256 * 256) * 1e6 / 1e9
    fn = inference_fn(model)
    rng = np.random.default_rng(0)
    for label, (h, w) in SIZES.items():
        x = rng.random((1, h, w, 3), dtype=np.float32)
        result[f"seconds_{label}"] = median_seconds(lambda: fn(x).numpy(), repeats)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    width = conv_width(model)
    result["conv_width"] = width
    result["ceiling_gflops"] = conv_ceiling(width, *CEILING_SIZE, repeats)
    achieved = result["gflops_per_mp"] * (1280 * 720 / 1e6) / result["seconds_1280x720"]
    result["achieved_gflops"] = achieved
    result["efficiency"] = achieved / result["ceiling_gflops"]
    from tfdeblur.precision import choose_precision

    result["auto"] = str(choose_precision("auto", width=width))
    return result


def run_worker(net, precision, repeats):
    cmd = [sys.executable, "-m", "tfdeblur.bench", net, precision, str(repeats)]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode:
        tail = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit code {proc.returncode}"
        raise ValueError(f"bench {net} {precision}: the measuring process failed ({tail})")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def report(nets, precisions, repeats, out=None, log=None):
    """Measures every network in every precision (`run_worker`, one process
    each; `log` says when each is done); returns the dated markdown table,
    also written to `out` (atomically) when given."""
    log = log or logger.info
    import time

    from tfdeblur.io import write_text
    from tfdeblur.models import get_preset

    for net in nets:
        get_preset(net)  # unknown names fail before any measuring
    if out and os.path.isdir(out):
        raise ValueError(f"`out` {out}: is a directory")
    results = []
    for net in nets:
        for precision in precisions:
            results.append(run_worker(net, precision, repeats))
            log(f"measured {net} {precision}")
    text = (f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {machine()}; "
            f"batch 1, median of {repeats} after a warm-up.\n\n{table(results)}\n")
    if out:
        write_text(out, text)
    return text


def table(results):
    lines = [
        "| network | precision | params | GFLOPs/MP | 256x256 (ms) | 1280x720 (s) | peak RSS (MB) | achieved GFLOP/s | conv ceiling GFLOP/s (width) | efficiency |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        lines.append(
            f"| {r['net']} | {r['precision']} | {r['params']:,} | {r['gflops_per_mp']:.1f} | {r['seconds_256x256'] * 1e3:.0f} "
            f"| {r['seconds_1280x720']:.2f} | {r['peak_rss_mb']:.0f} | {r['achieved_gflops']:.1f} "
            f"| {r['ceiling_gflops']:.1f} ({r['conv_width']}) | {r['efficiency']:.2f} |"
        )
    autos = {}
    for r in results:
        if r.get("auto"):
            autos.setdefault(r["net"], r["auto"])
    if autos:
        lines.append("")
        lines += [f"`--precision auto` for {net} here: {auto}" for net, auto in autos.items()]
    return "\n".join(lines)


def machine():
    import platform

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    from tfdeblur.precision import _read_cpuinfo, cpu_flags

    flags = cpu_flags(_read_cpuinfo())
    units = f"AMX {'yes' if {'amx_bf16', 'amx_tile'} <= flags else 'no'}, AVX512-BF16 {'yes' if 'avx512_bf16' in flags else 'no'}"
    return f"{cpu}, {os.cpu_count()} logical CPUs ({units})"


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    print(json.dumps(worker(sys.argv[1], sys.argv[2], int(sys.argv[3]))))
