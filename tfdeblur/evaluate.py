"""Scoring a model on (blur, sharp) pairs with the field's conventions.

PSNR and SSIM are computed on 8-bit images: the model's output is rounded
to uint8 first, as saved PNGs would be (the GoPro protocol scores saved
images). Both are averaged per image. "ssim" is per-channel Gaussian SSIM
(`tfdeblur.metrics.SSIM_CONVENTION`), "ssim_matlab" MATLAB's RGB `ssim`
(`MATLAB_SSIM_CONVENTION`). Alignment and masking per benchmark:
`tfdeblur.protocols`.
"""
import time

import numpy as np

from tfdeblur import metrics, protocols
from tfdeblur.inference import Deblurrer
from tfdeblur.io import to_uint8


def evaluate_pairs(model, dataset, names=None, keep=0, progress=None, protocol="whole", deblurrer=None):
    """Scores `model` on an unbatched dataset of (blur, sharp) float images.

    `protocol` is one of `tfdeblur.protocols.PROTOCOLS` (for "kohler" the
    sharp side may be a stack of frames or a `protocols.Frames`); `deblurrer` a
    `tfdeblur.inference.Deblurrer` (tiling, self-ensemble; default: whole
    image, plain). Returns a dict with the means ("psnr", "ssim",
    "ssim_matlab", "input_psnr", "input_ssim", "input_ssim_matlab",
    "images", "ssim_convention", "ssim_conventions", "protocol",
    "seconds_per_image"), the per-image rows (with "seconds", the restoring
    time of that image; the first includes tracing), and the first `keep`
    (blur, output, sharp) uint8 triples.
    """
    protocols.check_protocol(protocol)
    if deblurrer is None:
        deblurrer = Deblurrer(model, max_pixels=2**62)
    rows, kept = [], []
    start = time.perf_counter()
    for i, (blur, sharp) in enumerate(dataset):
        frames = sharp if isinstance(sharp, protocols.Frames) else None
        blur = np.asarray(blur)
        sharp = frames.middle() if frames is not None else np.asarray(sharp)
        t = time.perf_counter()
        out = deblurrer.restore_rgb(blur)
        seconds = time.perf_counter() - t
        b8, o8, s8 = to_uint8(blur), to_uint8(out), to_uint8(sharp)
        truth = frames if frames is not None else s8
        got = protocols.score(protocol, o8, truth)
        base = protocols.score(protocol, b8, truth)
        row = {"name": names[i] if names else str(i)}
        row.update({k: got[k] for k in ("psnr", "ssim", "ssim_matlab")})
        row.update({f"input_{k}": base[k] for k in ("psnr", "ssim", "ssim_matlab")})
        row["seconds"] = seconds
        rows.append(row)
        if len(kept) < keep:
            kept.append((b8, o8, s8 if s8.ndim == 3 else s8[0]))
        if progress is not None:
            progress(i + 1)
    if not rows:
        raise ValueError("dataset must hold at least one (blur, sharp) pair; got none")
    elapsed = time.perf_counter() - start
    keys = ("psnr", "ssim", "ssim_matlab", "input_psnr", "input_ssim", "input_ssim_matlab")
    summary = {k: float(np.mean([r[k] for r in rows])) for k in keys}
    summary.update(
        images=len(rows),
        protocol=protocol,
        ssim_convention=metrics.SSIM_CONVENTION,
        ssim_conventions={"ssim": metrics.SSIM_CONVENTION, "ssim_matlab": metrics.MATLAB_SSIM_CONVENTION},
        seconds_per_image=elapsed / len(rows),
        restore_seconds_median=float(np.median([r["seconds"] for r in rows])),
    )
    return summary, rows, kept
