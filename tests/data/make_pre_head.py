"""Writes tests/data/pre_head/: one tiny `.keras` file per network class,
saved by the code before the networks shared one output head (#18), with
random weights, a probe input and the outputs it gave then
(`tests/test_saved_files.py` loads them with today's code).

Run once from the repository root: `python tests/data/make_pre_head.py`.
"""
import json
import os
import subprocess
import sys
import zipfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "pre_head")
# The smallest configurations that still hold every layer of each head.
TINY = {
    "mtwdn": {"widths": (4, 8), "blocks_per_level": 1, "num_scales": 2},
    "fddn": {"encoder_channels": (4, 8), "latent_channels": 8, "num_blocks": 1, "reduction": 4},
    "lmfn": {"levels": 2, "channels": 8, "mffd_channels": 8, "num_rfdb": 1},
    "glbdn": {"widths": (4, 8), "blocks_per_scale": 1},
    "msfs": {"channels": 4, "latent_blocks": 1, "decoder_blocks": 1, "reduction": 4, "multi_scale_outputs": True},
}
PROBE_SHAPE = (1, 21, 19, 3)  # odd sides: padding and the crop are exercised


def _deflate(path):
    """Keras stores the zip's members uncompressed; it reads deflated ones too."""
    with zipfile.ZipFile(path) as z:
        members = {name: z.read(name) for name in z.namelist()}
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        for name, data in members.items():
            z.writestr(name, data)


def main():
    import tfdeblur.models as models

    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(18)
    probe = rng.random(PROBE_SHAPE, dtype=np.float32)
    expected = {"probe": probe}
    for net, overrides in TINY.items():
        model = models.build(net, **overrides)
        # Weights on a 1/16 grid: random enough to make every layer count,
        # few distinct values so the file compresses to a few KB.
        model.set_weights([(rng.integers(-3, 4, w.shape) / 16).astype(w.dtype) for w in model.get_weights()])
        path = os.path.join(OUT, f"{net}.keras")
        model.save(path)
        _deflate(path)
        expected[net] = np.asarray(model(probe, training=False))
    np.savez_compressed(os.path.join(OUT, "expected.npz"), **expected)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=HERE).stdout.strip()
    with open(os.path.join(OUT, "SOURCE.json"), "w") as f:
        json.dump({"saved_by_commit": commit, "tiny": {k: {a: list(v) if isinstance(v, tuple) else v for a, v in o.items()}
                                                      for k, o in TINY.items()}}, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    sys.exit(main())
