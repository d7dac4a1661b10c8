"""Timing and cost primitives shared by `tfdeblur.bench`, `--precision auto`
(`tfdeblur.precision`) and `benchmarks/`.

Imports nothing of tfdeblur, so any layer may time itself with it.
"""
import math
import time


def seconds_each(run, repeats, warmup=1):
    """Wall seconds of each of `repeats` calls of `run()`, in call order,
    after `warmup` untimed ones (tracing, oneDNN primitive creation). `run`
    must block until its work is done (e.g. end in `.numpy()`)."""
    if not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive integer; got {repeats!r}")
    if not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup must be a non-negative integer; got {warmup!r}")
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    return times


def median(times):
    """The median of measured times; for an even count the upper middle one,
    so that it is always a time that was measured."""
    return sorted(times)[len(times) // 2]


def median_seconds(run, repeats, warmup=1):
    """The median of `seconds_each`."""
    return median(seconds_each(run, repeats, warmup))


def conv_width(model):
    """The network's typical convolution width: the mean output width of its
    Conv2D layers weighted by their kernel sizes (kh*kw*cin*cout, i.e. by
    their share of the FLOPs at equal resolution), rounded to a multiple of 8."""
    import keras

    total, weighted = 0, 0.0

    def visit(layer):
        nonlocal total, weighted
        if isinstance(layer, keras.layers.Conv2D) and layer.built:
            size = math.prod(int(d) for d in layer.kernel.shape)
            total += size
            weighted += size * layer.filters
        for sub in getattr(layer, "_layers", None) or []:
            visit(sub)

    for layer in model.layers:
        visit(layer)
    return max(8, int(round(weighted / total / 8)) * 8) if total else 64
