"""Mixed precision choice: `--precision auto` picks bf16 only where it is faster
(training: `tfdeblur.training.precision`; restoring: `Deblurrer(precision=...)`).

bf16 pays off on a CPU only with hardware that multiplies bf16 natively and
wide enough to beat fp32 through oneDNN. Measured (issue 13):

- Intel Xeon with AMX tiles: MTWDN training at 128x128, batch 4, 10.3 img/s
  in bf16 vs 3.95 img/s in fp32 (2.6x); 1280x720 inference 4.3x faster.
- Intel Xeon with AVX512-BF16 but no AMX: 1280x720 inference fp32 4.25 s vs
  bf16 7.72 s (MTWDN), conv ceiling 318 vs 168 GFLOP/s. Slower.
- AMD EPYC (AVX2 only, no bf16 unit): an MTWDN training step 5-8 s in fp32
  vs ~50 s in bf16 (emulated).

So the rule (`decide_precision`, a pure function of its inputs):

- GPU: bf16 on compute capability >= 8.0 (native bf16 tensor cores), else
  fp32. fp16 is never picked automatically (it needs loss scaling and is
  ~100x slower on CPUs); ask for it with `--precision fp16`.
- CPU with AMX (`amx_bf16` and `amx_tile`): bf16.
- CPU without AVX512-BF16: fp32, nothing to measure.
- CPU with AVX512-BF16 but no AMX: a one-off micro-benchmark
  (`measure_conv_step`: a small conv stack of the network's width, forward
  and backward, in both precisions) decides; bf16 must be at least
  `BF16_MARGIN` faster, since it also costs precision. The result is cached
  per machine (`cached_benchmark`), keyed by CPU model, the flags that
  matter, TensorFlow version and width; not when it was measured on a busy
  machine (`BUSY_LOAD`: then kept for the rest of the process only).

The final output layers and the loss stay float32 under every policy.
"""
import dataclasses
import json
import os
import platform
import time

import keras
import tensorflow as tf

from tfdeblur.io import atomic_write
from tfdeblur.timing import median_seconds

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_POLICIES = {"fp32": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}
# The CPU flags that change the answer (and so key the cache).
FLAGS_THAT_MATTER = ("amx_bf16", "amx_tile", "avx512_bf16", "avx512f", "avx512_vnni", "avx2", "fma")
# bf16 must beat fp32 by this factor: the micro-benchmark has a few percent
# of noise, and bf16 rounds activations to 8 bits of mantissa.
BF16_MARGIN = 0.9
CACHE_ENV = "TFDEBLUR_PRECISION_CACHE"  # "off": never read or write the cache; else a file path
CACHE_VERSION = 1


@dataclasses.dataclass(frozen=True)
class Decision:
    """The precision to train in and the one-line reason for it."""

    precision: str
    reason: str

    def __str__(self):
        return f"{self.precision}: {self.reason}"


def cpu_flags(cpuinfo):
    """The set of flags in /proc/cpuinfo text (first `flags` line)."""
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def cpu_model(cpuinfo):
    for line in cpuinfo.splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def decide_precision(cpuinfo, gpu_capability=None, benchmark=None):
    """'fp32' or 'bf16' for `--precision auto`, as a `Decision`.

    cpuinfo: the text of /proc/cpuinfo; gpu_capability: (major, minor) of the
    first GPU, or None for a CPU run; benchmark: a callable returning
    ``{"fp32": seconds, "bf16": seconds, "cached": bool}`` for one training
    step of the conv stack, called only for an AVX512-BF16 CPU without AMX.
    """
    if gpu_capability is not None:
        major, minor = (tuple(gpu_capability) + (0, 0))[:2]
        if major >= 8:
            return Decision("bf16", f"GPU compute capability {major}.{minor} >= 8.0 (native bf16)")
        return Decision("fp32", f"GPU compute capability {major}.{minor} < 8.0 (no native bf16)")
    flags, model = cpu_flags(cpuinfo), cpu_model(cpuinfo)
    if {"amx_bf16", "amx_tile"} <= flags:
        return Decision("bf16", f"CPU has AMX-BF16 tiles ({model})")
    if "avx512_bf16" not in flags:
        return Decision("fp32", f"CPU has no AMX/AVX512-BF16 ({model})")
    if benchmark is None:
        raise ValueError("benchmark must be a callable for an AVX512-BF16 CPU without AMX; got None")
    times = benchmark()
    fp32, bf16 = float(times["fp32"]), float(times["bf16"])
    how = "cached measurement" if times.get("cached") else "measured"
    if "busy_load" in times:
        how += f" on a busy machine (load {times['busy_load']:.1f} per core; not cached)"
    width = f" at width {times['width']}" if "width" in times else ""
    versus = f"conv step{width} bf16 {bf16 * 1e3:.0f} ms vs fp32 {fp32 * 1e3:.0f} ms, {how}"
    if bf16 < BF16_MARGIN * fp32:
        return Decision("bf16", f"AVX512-BF16 without AMX, bf16 faster here ({versus}; {model})")
    return Decision("fp32", f"AVX512-BF16 without AMX, bf16 not faster here ({versus}; {model})")


# -- the micro-benchmark -------------------------------------------------------

def conv_step(width, precision, size, batch, layers):
    """(run, flops): `run()` does one forward+backward pass of `layers` 3x3
    'same' convolutions width->width (ReLU) on (batch, size, size, width) in
    `precision` ('fp32' or 'bf16', a per-layer dtype policy: the global one
    is left alone) and blocks until done; `flops` is its FLOP count (a
    multiply-add = 2: forward and weight gradients of every layer, input
    gradients of all but the first)."""
    import numpy as np

    policy = _POLICIES[precision]
    if precision == "bf16":  # as training runs (DeblurModel.train_step installs it)
        from tfdeblur import bias_grad

        bias_grad.install()
    inputs = keras.Input((size, size, width))
    x = inputs
    for i in range(layers):
        x = keras.layers.Conv2D(width, 3, padding="same", activation="relu", dtype=policy, name=f"probe_{i}")(x)
    stack = keras.Model(inputs, x)
    weights = stack.trainable_variables

    @tf.function
    def step(t):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.cast(stack(t, training=True), tf.float32) ** 2)
        # Every weight gradient in the output: otherwise the graph prunes them.
        return tf.add_n([tf.reduce_sum(tf.cast(g, tf.float32)) for g in tape.gradient(loss, weights)])

    data = tf.constant(np.random.default_rng(0).random((batch, size, size, width), dtype=np.float32))
    flops = 2 * batch * size * size * 9 * width * width * (3 * layers - 1)
    return (lambda: step(data).numpy()), flops


def measure_conv_step(width, precision, size=48, batch=1, layers=3, seconds=1.0):
    """Median seconds of one `conv_step` (forward + backward) in `precision`,
    repeated for about `seconds` after a warm-up. The default shape is
    ~5 GFLOP at width 112: 15 ms fp32 on the issue's AVX512-BF16 Xeon
    (318 GFLOP/s), so both precisions take a second or two."""
    run, _ = conv_step(width, precision, size, batch, layers)
    once = median_seconds(run, repeats=1)  # the warm-up (tracing) inside
    repeats = max(3, min(50, int(seconds / max(once, 1e-4))))
    return median_seconds(run, repeats=repeats, warmup=0)


def cache_file(path=None):
    """The cache file: `path`, else $TFDEBLUR_PRECISION_CACHE, else
    $XDG_CACHE_HOME/tfdeblur/precision.json (~/.cache by default); None when
    the cache is off (`TFDEBLUR_PRECISION_CACHE=off`)."""
    path = path or os.environ.get(CACHE_ENV)
    if path == "off":
        return None
    if path:
        return path
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(root, "tfdeblur", "precision.json")


def cache_key(cpuinfo, width):
    flags = ",".join(f for f in FLAGS_THAT_MATTER if f in cpu_flags(cpuinfo))
    return f"{cpu_model(cpuinfo)}|{flags}|tf {tf.__version__}|width {int(width)}"


def _read_cache(path):
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}  # absent or corrupt: measured again and rewritten
    if not isinstance(data, dict) or data.get("version") != CACHE_VERSION or not isinstance(data.get("entries"), dict):
        return {}
    return data["entries"]


def _write_cache_atomic(path, entries):
    atomic_write(path, json.dumps({"version": CACHE_VERSION, "entries": entries}, indent=1, sort_keys=True))


def cached_benchmark(key, measure, path, store=True):
    """`measure()` (a dict of seconds) through the cache file `path` under
    `key`; `path` None measures every time. A valid entry comes back with
    ``cached=True``; an unreadable cache is ignored and rewritten; a cache
    that cannot be written only costs a measurement next time. `store`
    False: read the cache, but do not write a new measurement to it."""
    entries = _read_cache(path) if path else {}
    entry = entries.get(key)
    if isinstance(entry, dict) and all(isinstance(entry.get(p), (int, float)) and entry[p] > 0 for p in ("fp32", "bf16")):
        return dict(entry, cached=True)
    result = dict(measure())
    if path and store:
        entries[key] = dict(result, measured_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        try:
            _write_cache_atomic(path, entries)
        except OSError:
            pass  # a read-only home: the decision still stands
    return dict(result, cached=False)


# -- this machine ----------------------------------------------------------------

# A measurement taken while the 1-minute load average per core is above this
# is used once but not cached: other work on the cores distorts the two
# precisions unequally (2026-11-28, 2-core Zen 4, width 112: bf16 24 ms vs
# fp32 22 ms measured beside two benchmarks, cached, and `auto` then ran
# MTWDN in fp32; 13 vs 21 ms on the quiet machine, where bf16 restores a
# 1280x720 frame in 4.0 s against 7.9 s).
BUSY_LOAD = 0.5
# Busy measurements, kept for the rest of this process (not on disk), so
# that one process decides once: {cache key: result}.
_BUSY_RESULTS = {}


def _load_per_core():
    try:
        return os.getloadavg()[0] / (os.cpu_count() or 1)
    except (OSError, AttributeError):  # no load average on this platform
        return 0.0

def _read_cpuinfo():
    try:
        with open("/proc/cpuinfo") as f:
            return f.read()
    except OSError:
        return ""


def _gpu_capability():
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return None
    cc = tf.config.experimental.get_device_details(gpus[0]).get("compute_capability")
    return tuple(cc) if cc else (0, 0)


def choose_precision(precision="auto", width=64, cache=None, cpuinfo=None, measure=measure_conv_step):
    """The `Decision` for `--precision PRECISION` on this machine.

    width: the network's conv width, or a callable giving it (only called
    when a measurement is needed); cache: the cache file (default
    `cache_file()`), or "off".
    """
    if precision not in PRECISIONS:
        raise ValueError(f"`precision` must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    if precision != "auto":
        return Decision(precision, f"`precision` {precision} given")
    cpuinfo = _read_cpuinfo() if cpuinfo is None else cpuinfo

    def benchmark():
        w = width() if callable(width) else width
        if not isinstance(w, int) or w < 1:
            raise ValueError(f"width must be a positive integer; got {w!r}")
        key = cache_key(cpuinfo, w)
        if key in _BUSY_RESULTS:
            return dict(_BUSY_RESULTS[key])
        load = _load_per_core()
        result = cached_benchmark(
            key,
            lambda: {"fp32": measure(w, "fp32"), "bf16": measure(w, "bf16"), "width": w},
            cache_file(cache),
            store=load <= BUSY_LOAD,
        )
        if not result.get("cached") and load > BUSY_LOAD:
            result["busy_load"] = load
            _BUSY_RESULTS[key] = dict(result, width=w)
        return dict(result, width=w)

    return decide_precision(cpuinfo, _gpu_capability(), benchmark)


def resolve_precision(precision="auto", **kwargs):
    """The precision name `--precision PRECISION` resolves to on this machine
    (see `choose_precision` for the keyword arguments)."""
    return choose_precision(precision, **kwargs).precision


def set_precision(precision, **kwargs):
    """Sets Keras' global dtype policy; returns the resolved precision name."""
    resolved = resolve_precision(precision, **kwargs)
    keras.mixed_precision.set_global_policy(_POLICIES[resolved])
    return resolved


def apply_precision(decision):
    """Sets Keras' global dtype policy for a `Decision`; returns it."""
    keras.mixed_precision.set_global_policy(_POLICIES[decision.precision])
    return decision
