"""GLBDN numbers only GLBDN has: PSNR of each output of a phased run, and its feature picture.

    python benchmarks/bench_glbdn.py phases RUN_DIR [LB_RUN_DIR]
    python benchmarks/bench_glbdn.py features MODEL.keras OUT.png

`phases` scores, for each phase model of a `train glbdn --phase all` run
folder, its global-branch image Psi_G(x), local-branch image Psi_L(x) and
final image on both synthetic validation sets (globalblur: uniform blur;
dynamic: camera + moving objects), 8-bit PSNR over the blurry input's;
LB_RUN_DIR adds an LB-Net run (`train glbdn_lb`) for comparison.

Parameters and 1280x720 inference time, as for every network:
`python cli.py bench glbdn glbdn_db glbdn_lb glbdn_gao` (tfdeblur.bench).
"""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402


def phases(run_dir, lb_dir=None):
    from tfdeblur import io as tio
    from tfdeblur import metrics
    from tfdeblur.inference import load_model
    from tfdeblur.datasets import spec as data_spec

    sets = {}
    for kind in ("globalblur", "dynamic"):
        ds, _, _ = data_spec.evaluation(kind)
        sets[kind] = [(b.numpy(), s.numpy()) for b, s in ds]
    models = [(f"phase {p}", os.path.join(run_dir, f"phase{p}", "model.keras")) for p in (1, 2, 3)]
    if lb_dir:
        models.append(("LB-Net", os.path.join(lb_dir, "model.keras")))
    print("| model | output | globalblur val: PSNR (input) gain | dynamic val: PSNR (input) gain |")
    print("| --- | --- | --- | --- |")
    for label, path in models:
        if not os.path.isfile(path):
            print(f"| {label} | missing {path} | | |")
            continue
        model = load_model(path)
        graph = tf.function(lambda x: model.training_outputs(x))  # every output in one pass
        scores = {}  # (key, kind) -> (output PSNRs, input PSNRs)
        for kind, pairs in sets.items():
            for blur, sharp in pairs:
                outs = graph(tf.constant(blur[None]))
                s8 = tio.to_uint8(sharp)
                p_in = metrics.psnr(tio.to_uint8(blur), s8)
                for key, y in outs.items():
                    out_p, in_p = scores.setdefault((key, kind), ([], []))
                    out_p.append(metrics.psnr(tio.to_uint8(np.clip(y[0].numpy(), 0, 1)), s8))
                    in_p.append(p_in)
        for key in model.train_output_names:
            cells = []
            for kind in sets:
                out_p, in_p = scores[(key, kind)]
                cells.append(f"{np.mean(out_p):.2f} ({np.mean(in_p):.2f}) {np.mean(out_p) - np.mean(in_p):+.2f}")
            print(f"| {label} | {key} | {cells[0]} | {cells[1]} |", flush=True)


def features(model_path, out_png):
    """The Fig. 1-style picture (see tfdeblur.training.phased_run) for the first dynamic val image."""
    from tfdeblur.inference import load_model
    from tfdeblur.datasets import spec as data_spec
    from tfdeblur.training.phased_run import _feature_picture

    ds, _, _ = data_spec.evaluation("dynamic")
    blur, sharp = next(iter(ds))
    print(_feature_picture(load_model(model_path), blur.numpy(), sharp.numpy(), out_png), "->", out_png)


if __name__ == "__main__":
    cmd, *rest = sys.argv[1:]
    {"phases": phases, "features": features}[cmd](*rest)
