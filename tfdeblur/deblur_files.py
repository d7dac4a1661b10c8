"""Restoring image files into a folder (`tfdeblur deblur INPUT... --out DIR`):
which input goes to which output, and the input | output | truth sheets.

Every check runs before the model loads, so a bad command line costs no
time; errors are one line naming the option or file.
"""
import logging
import os

from tfdeblur import io as tio

logger = logging.getLogger(__name__)


def output_plan(inputs, out, overwrite=False, out_in_input=False, compare=False, gt=None, fmt="same"):
    """[(input path, output path, sheet path or None)] for `inputs` (files,
    folders, globs; `tio.expand_inputs`) restored into folder `out` as
    `output_name(input, fmt)` (`compare`: also `out/compare/NAME.png`; `gt`: a ground-truth folder for
    those sheets). Refuses an `out` that is not a folder, one that is or is
    inside a folder of inputs (unless `out_in_input`), an output replacing an
    input, two inputs writing one output, and existing outputs (unless
    `overwrite`)."""
    if not out.strip():
        raise ValueError(f"`out` must be a folder; got {out!r} (use . for the current folder)")
    if os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"`out` {out}: exists and is not a directory")
    if gt is not None and not os.path.isdir(gt):
        raise ValueError(f"`gt` {gt}: not a directory")
    if gt is not None and not compare:
        raise ValueError("`gt` applies to `compare` only; pass `compare`")
    paths = tio.expand_inputs(inputs)
    _check_out_apart(inputs, paths, out, out_in_input, fmt)
    targets, seen = [], {}
    for path in paths:
        stem = os.path.splitext(os.path.basename(path))[0]
        target = os.path.join(out, output_name(path, fmt))
        if target in seen:
            raise ValueError(f"{path}: writes the same output {target} as {seen[target]}")
        seen[target] = path
        sheet = os.path.join(out, "compare", stem + ".png") if compare else None
        for t in (target, sheet):
            if t and os.path.exists(t) and not overwrite:
                raise ValueError(f"{t}: already exists; pass `overwrite` to replace it")
        targets.append((path, target, sheet))
    return targets


def photo_options(format, quality):
    """Checks `--format` and `--quality` (as typed); returns the JPEG quality."""
    fmt = format
    if fmt not in (*tio.PHOTO_FORMATS, "same"):
        raise ValueError(f"`format` must be png, jpg or same; got {fmt!r}")
    if quality is None:
        return tio.DEFAULT_JPEG_QUALITY
    try:
        value = int(quality)
    except ValueError:
        value = None
    if value is None or not 1 <= value <= 100:
        raise ValueError(f"`quality` must be an integer from 1 to 100; got {quality!r}")
    if fmt == "png":
        raise ValueError("`quality` applies to JPEG output; got `format` png (lossless)")
    return value


def output_name(path, fmt):
    """The output file name of input `path` for `--format` `fmt`: the stem
    and ".png" or ".jpg". `same` keeps JPEGs JPEG and writes the others
    (BMP, TIFF, WebP) as PNG, which holds all they hold (16 bits, alpha) and
    carries EXIF and ICC."""
    stem, ext = os.path.splitext(os.path.basename(path))
    if fmt == "same":
        fmt = "jpg" if ext.lower() in (".jpg", ".jpeg") else "png"
    return stem + tio.PHOTO_FORMATS[fmt]


def check_fits_format(path, image, target):
    """Refuses, before restoring it, an image with alpha bound for a JPEG."""
    if target.endswith(".jpg") and image.ndim == 3 and image.shape[2] in (2, 4):
        raise ValueError(f"{path}: has an alpha channel, which JPEG cannot hold (`format` png keeps it)")


def _check_out_apart(inputs, paths, out_arg, out_in_input, fmt):
    """Refuses an --out that is, or is inside, a folder of inputs (unless
    --out-in-input), and any output that would replace an input file."""
    out = os.path.realpath(out_arg)
    real_inputs = {os.path.realpath(p) for p in paths}
    if not out_in_input:
        # A folder given as input: --out neither it nor below it. The folder of
        # an input file: not --out itself (outputs beside the photos), though a
        # subfolder is fine (`deblur a.jpg --out restored` from the photos' folder).
        folders = [(item, True) for item in inputs if os.path.isdir(item)]
        folders += [(os.path.dirname(p) or ".", False) for p in paths]
        for folder, below in dict.fromkeys(folders):
            real = os.path.realpath(folder)
            if out == real or (below and out.startswith(real.rstrip(os.sep) + os.sep)):
                raise ValueError(f"`out` {out_arg}: is {'' if out == real else 'inside '}the input folder {folder}; "
                                 "choose another `out` or pass `out_in_input`")
    for path in paths:
        target = os.path.realpath(os.path.join(out_arg, output_name(path, fmt)))
        if target in real_inputs:
            raise ValueError(f"`out` {out_arg}: would replace the input {path}; choose another `out`")


def remove_stale_temps(out):
    """Deletes the hidden temporaries a deblur killed mid-write (kill -9) left
    in `out` and `out/compare` (`tio.remove_stale_temps`: a live writer's stay)."""
    for folder in (out, os.path.join(out, "compare")):
        tio.remove_stale_temps(folder)


def restore_files(deblurrer, targets, truths=None, window=None, quality=None, progress=None, log=None):
    """Restores every (input, output, sheet or None) of `output_plan` with
    `deblurrer`, writing each output (and its input | output | truth sheet)
    atomically and logging `input -> output`. An input that fails (unreadable,
    too small for the TLC `window`, out of memory) is skipped; returns the
    one-line messages of those failures, each naming its file. `progress`: a
    `tfdeblur.console.Progress` over the files, moved tile by tile."""
    log = log or logger.info
    import tensorflow as tf

    from tfdeblur import tlc
    from tfdeblur.errors import first_line

    failures = []
    for i, (path, target, sheet) in enumerate(targets):
        try:
            image, metadata = tio.read_photo(path)
            check_fits_format(path, image, target)
            tlc.check_tile_fits(window, deblurrer, image.shape[0], image.shape[1], path)
            out = deblurrer(image, name=path, progress=progress.part(i) if progress else None)
            sheet_image = compare_sheet(path, image, out, truths or {}) if sheet else None
            left_out = tio.write_photo(target, out, metadata, quality=quality)
            if sheet:
                tio.write_image(sheet, sheet_image)
        except (ValueError, OSError, MemoryError, tf.errors.OpError) as e:  # OpError: e.g. out of memory
            message = first_line(e)
            failures.append(message if path in message else f"{path}: {message}")
            continue
        finally:
            if progress:
                progress.update(i + 1)
        refined = getattr(deblurrer, "last_refine", None)
        log(f"{path} -> {target}" + (f" (+ {sheet})" if sheet else "")
            + (f" ({', '.join(left_out)} left out)" if left_out else "")
            + (f" (not refined, the network's output kept: {refined['reason']})"
               if refined and not refined["applied"] else ""))
    return failures


def truth_index(folder):
    """{file stem: path} of the images in a ground-truth folder (None: {})."""
    if not folder:
        return {}
    return {os.path.splitext(os.path.basename(p))[0]: p for p in tio.list_images(folder)}


def compare_sheet(path, image, out, truths):
    """input | output (| ground truth, when `truths` has an image of the same name)."""
    row, labels = [tio.sheet_rgb(image), tio.sheet_rgb(out)], ["input", "output"]
    stem = os.path.splitext(os.path.basename(path))[0]
    if stem in truths:
        truth = tio.sheet_rgb(tio.read_photo(truths[stem])[0])
        if truth.shape[:2] != row[0].shape[:2]:
            raise ValueError(f"{truths[stem]}: ground truth is {truth.shape[1]}x{truth.shape[0]}, "
                             f"the input {path} is {row[0].shape[1]}x{row[0].shape[0]}")
        row.append(truth)
        labels.append("ground truth")
    return tio.contact_sheet([row], labels=labels)
