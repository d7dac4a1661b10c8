"""Scoring a model on (blur, sharp) pairs with the field's conventions.

PSNR and SSIM are computed on 8-bit images: the model's output is rounded
to uint8 first, as saved PNGs would be (the GoPro protocol scores saved
images). Both are averaged per image. SSIM is per-channel Gaussian SSIM
(`tfdeblur.metrics.SSIM_CONVENTION`).
"""
import time

import numpy as np
import tensorflow as tf

from tfdeblur import metrics
from tfdeblur.io import to_uint8


def inference_fn(model):
    """One traced function for every input size (no retracing per size)."""

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
    def run(x):
        return model(x, training=False)

    return run


def evaluate_pairs(model, dataset, names=None, keep=0, progress=None):
    """Scores `model` on an unbatched dataset of (blur, sharp) float images.

    Returns a dict with the means ("psnr", "ssim", "input_psnr",
    "input_ssim", "images", "ssim_convention", "seconds_per_image"), the
    per-image rows, and the first `keep` (blur, output, sharp) uint8 triples.
    """
    fn = inference_fn(model)
    rows, kept = [], []
    start = time.perf_counter()
    for i, (blur, sharp) in enumerate(dataset):
        out = fn(blur[None])[0].numpy()
        b8, o8, s8 = to_uint8(blur.numpy()), to_uint8(out), to_uint8(sharp.numpy())
        rows.append(
            {
                "name": names[i] if names else str(i),
                "psnr": metrics.psnr(o8, s8),
                "ssim": metrics.ssim(o8, s8),
                "input_psnr": metrics.psnr(b8, s8),
                "input_ssim": metrics.ssim(b8, s8),
            }
        )
        if len(kept) < keep:
            kept.append((b8, o8, s8))
        if progress is not None:
            progress(i + 1)
    if not rows:
        raise ValueError("dataset must hold at least one (blur, sharp) pair; got none")
    elapsed = time.perf_counter() - start
    summary = {k: float(np.mean([r[k] for r in rows])) for k in ("psnr", "ssim", "input_psnr", "input_ssim")}
    summary.update(
        images=len(rows),
        ssim_convention=metrics.SSIM_CONVENTION,
        seconds_per_image=elapsed / len(rows),
    )
    return summary, rows, kept
