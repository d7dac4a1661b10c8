"""Scoring a model on (blur, sharp) pairs with the field's conventions.

PSNR and SSIM are computed on 8-bit images: the model's output is rounded
to uint8 first, as saved PNGs would be (the GoPro protocol scores saved
images). Both are averaged per image. "ssim" is per-channel Gaussian SSIM
(`tfdeblur.metrics.SSIM_CONVENTION`), "ssim_matlab" MATLAB's RGB `ssim`
(`MATLAB_SSIM_CONVENTION`). Alignment and masking per benchmark:
`tfdeblur.protocols`.
"""
import csv
import io
import json
import os
import time

import numpy as np

from tfdeblur import metrics, protocols
from tfdeblur.inference import Deblurrer
from tfdeblur.io import read_image, to_uint8, write_text


def evaluate_pairs(model, dataset, names=None, keep=0, progress=None, protocol="whole", deblurrer=None, also=()):
    """Scores `model` on an unbatched dataset of (blur, sharp) float images.

    `protocol` is one of `tfdeblur.protocols.PROTOCOLS` (for "kohler" the
    sharp side may be a stack of frames or a `protocols.Frames`); `deblurrer` a
    `tfdeblur.inference.Deblurrer` (tiling, self-ensemble; default: whole
    image, plain). Returns a dict with the means ("psnr", "ssim",
    "ssim_matlab", "input_psnr", "input_ssim", "input_ssim_matlab",
    "images", "ssim_convention", "ssim_conventions", "protocol",
    "seconds_per_image"), the per-image rows (with "seconds", the restoring
    time of that image; the first includes tracing), and the first `keep`
    (blur, output, sharp) uint8 triples. `also`: more protocols to score
    the same outputs with (no second restore), as the summary's and each
    row's "also" {protocol: {"psnr", "ssim", "input_psnr", "input_ssim"}}
    (the summary's with "gain_db").
    """
    protocols.check_protocol(protocol)
    also = tuple(also)
    for extra in also:
        protocols.check_protocol(extra)
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
        if also:
            row["also"] = {}
            for extra in also:
                e_got, e_base = protocols.score(extra, o8, truth), protocols.score(extra, b8, truth)
                row["also"][extra] = {"psnr": e_got["psnr"], "ssim": e_got["ssim"],
                                      "input_psnr": e_base["psnr"], "input_ssim": e_base["ssim"]}
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
    if also:
        summary["also"] = {}
        for extra in also:
            means = {k: float(np.mean([r["also"][extra][k] for r in rows])) for k in ("psnr", "ssim", "input_psnr", "input_ssim")}
            means["gain_db"] = means["psnr"] - means["input_psnr"]
            summary["also"][extra] = means
    return summary, rows, kept


def check_report_paths(json_path=None, csv_path=None):
    """Refuses report files that are folders, before anything is scored."""
    for name, path in (("json_path", json_path), ("csv_path", csv_path)):
        if path and os.path.isdir(path):
            raise ValueError(f"`{name}` {path}: is a directory")


def evaluation_pairs(spec, protocol, min_size=1):
    """(lazy (blur, sharp) pairs, names) that `protocol` scores on the parsed
    --data `spec`: the Köhler benchmark's frame stacks under its own
    protocol, else the spec's evaluation split (`datasets.spec.evaluation`)."""
    from tfdeblur.datasets import spec as data_spec

    if spec.kind == "kohler" and protocol == "kohler":
        return kohler_pairs(spec.paths[0], min_size)
    dataset, _, names = data_spec.evaluation(spec, min_size=min_size)
    return dataset, names


def kohler_pairs(root, min_size=1):
    """(lazy (blur, `protocols.Frames`) pairs, names) of the Köhler benchmark
    at `root`: every recorded sharp frame is a ground truth
    (`tfdeblur.protocols.kohler`)."""
    from tfdeblur.datasets import layouts

    items = layouts.kohler_items(root)

    def pairs():
        for item in items:
            blur = read_image(item.blur, allow_conversion=True)
            if min(blur.shape[:2]) < min_size:
                raise ValueError(f"{item.blur}: smaller than the network's minimum {min_size}x{min_size}")
            yield blur, protocols.Frames(item.frames)

    return pairs(), [item.name for item in items]


# The summary fields a JSON report holds (with the per-image rows).
REPORT_KEYS = ("psnr", "ssim", "input_psnr", "input_ssim", "images", "ssim_convention", "ssim_matlab",
               "input_ssim_matlab", "ssim_conventions", "protocol", "seconds_per_image", "restore_seconds_median")


def report_lines(summary, rows):
    """`evaluate_pairs`' results as the lines `tfdeblur eval` prints: the
    conventions, one row per image, the means."""
    lines = [
        f"protocol: {summary['protocol']}; SSIM = {summary['ssim_conventions']['ssim']}; "
        f"SSIM-M = {summary['ssim_conventions']['ssim_matlab']}",
        f"{'image':<32} {'PSNR':>7} {'SSIM':>7} {'SSIM-M':>7} {'in PSNR':>7} {'in SSIM':>7} {'in SSIM-M':>9} {'sec':>6}",
    ]
    for r in rows:
        lines.append(f"{r['name'][:32]:<32} {r['psnr']:7.2f} {r['ssim']:7.4f} {r['ssim_matlab']:7.4f} {r['input_psnr']:7.2f} "
                     f"{r['input_ssim']:7.4f} {r['input_ssim_matlab']:9.4f} {r['seconds']:6.2f}")
    lines.append(
        f"mean over {summary['images']} images: output PSNR {summary['psnr']:.2f} dB, SSIM {summary['ssim']:.4f} "
        f"(MATLAB RGB {summary['ssim_matlab']:.4f}); input PSNR {summary['input_psnr']:.2f} dB, "
        f"SSIM {summary['input_ssim']:.4f} (MATLAB RGB {summary['input_ssim_matlab']:.4f}); "
        f"{summary['seconds_per_image']:.2f} s/image"
    )
    lines.append(f"SSIM: {summary['ssim_convention']}")
    return lines


def write_reports(summary, rows, json_path=None, csv_path=None):
    """Writes the per-image rows as CSV and/or the summary (`REPORT_KEYS`)
    with the rows as JSON, each atomically; a failed write is a one-line
    `ValueError` naming the file."""
    texts = []
    if csv_path:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
        texts.append((csv_path, buf.getvalue()))
    if json_path:
        texts.append((json_path, json.dumps({k: summary[k] for k in REPORT_KEYS} | {"per_image": rows}, indent=2)))
    for path, text in texts:
        write_text(path, text)
