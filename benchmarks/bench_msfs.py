"""MSFS-Net numbers: parameters of every preset, and 1280x720 CPU inference
(fp32, bf16) with and without the Test-time Local Converter.

    python benchmarks/bench_msfs.py [--repeats 3] [--train-size 256] [--net msfs_small]

Prints a markdown table. Inference: one warm-up, then the median of
`--repeats` timed calls of the traced inference function
(`tfdeblur.inference.inference_fn`) on one 1280x720 image. TLC: window 1.5x
`--train-size` (default 256, the paper's crop). Also prints how far the
TLC output moves from the global one (mean absolute difference) as a
sanity check that the conversion acts at this size.
"""
import argparse

import keras
import numpy as np


def _time(fn, x, repeats):
    """(median seconds of `fn(x)`, its output)."""
    from tfdeblur.bench import median_seconds

    out = {}
    seconds = median_seconds(lambda: out.update(y=fn(x).numpy()), repeats)
    return seconds, out["y"]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--train-size", type=int, default=256)
    p.add_argument("--net", default="msfs_small")
    p.add_argument("--skip-params", action="store_true")
    args = p.parse_args()

    import tfdeblur.models as models
    from tfdeblur import tlc
    from tfdeblur.inference import inference_fn

    if not args.skip_params:
        print("| preset | parameters |\n| --- | --- |")
        for name in models.available():
            if name.startswith("msfs"):
                print(f"| `{name}` | {models.get_preset(name).params:,} |")

    x = np.random.default_rng(0).random((1, 720, 1280, 3), dtype=np.float32)
    print(f"\n| {args.net} 1280x720 | global pooling (s) | TLC, window {round(1.5 * args.train_size)} (s) | mean |TLC - global| |")
    print("| --- | --- | --- | --- |")
    for precision, policy in (("fp32", "float32"), ("bf16", "mixed_bfloat16")):
        keras.mixed_precision.set_global_policy(policy)
        keras.utils.set_random_seed(0)
        model = models.build(args.net)
        for w in model.weights:  # the untrained output conv is zero: make the body visible
            if "image_out" in w.path:
                w.assign(0.01 * np.random.default_rng(1).standard_normal(w.shape).astype("float32"))
        t_global, y_global = _time(inference_fn(model), x, args.repeats)
        local = tlc.to_local(model, args.train_size)
        t_local, y_local = _time(inference_fn(local), x, args.repeats)
        print(f"| {precision} | {t_global:.2f} | {t_local:.2f} | {np.abs(y_local - y_global).mean():.2e} |", flush=True)
    keras.mixed_precision.set_global_policy("float32")


if __name__ == "__main__":
    main()
