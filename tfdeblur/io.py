"""Image files in and out: 8-bit RGB, float32 [0, 1] in memory; and the one
atomic writer every tfdeblur file goes through (`atomic_path`, `atomic_write`).

Every failure is an `ImageError` with a one-line message that starts with
the file or directory it is about, so a CLI can print it as it stands.
Arrays are RGB; OpenCV's BGR stays inside this module.
"""
import contextlib
import os
import re
import shutil
import threading
import uuid
import warnings

import cv2
import numpy as np

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
_CONVERT_HINT = "tfdeblur expects 8-bit RGB (pass allow_conversion=True to convert)"

# The pixel budget: a file whose header declares more pixels is refused
# before anything is decoded (a 2 KB JPEG can declare 20000x20000, 1.2 GB
# as uint8 RGB and 4.8 GB as float32). 100 MP is above every phone and most
# medium-format cameras; `--max-decode-pixels` or `max_pixels=` raise it.
DEFAULT_MAX_DECODE_PIXELS = 100_000_000
_max_decode_pixels = DEFAULT_MAX_DECODE_PIXELS


def set_max_decode_pixels(value):
    """Sets the pixel budget used when a reader gets no `max_pixels`
    (`read_image` inside a tf.data pipeline, `check_pairs`); returns the
    previous one. Process-wide, like Pillow's `Image.MAX_IMAGE_PIXELS`: the
    CLI sets it once from `--max-decode-pixels`."""
    global _max_decode_pixels
    if int(value) != value or value < 1:
        raise ValueError(f"max_decode_pixels must be a positive integer; got {value}")
    previous, _max_decode_pixels = _max_decode_pixels, int(value)
    return previous


def max_decode_pixels():
    """The pixel budget in force (see `set_max_decode_pixels`)."""
    return _max_decode_pixels


class ImageError(ValueError):
    """An image file or directory that cannot be used; the message names it."""


def to_uint8(x):
    """Float image in [0, 1] to uint8: `rint(x * 255)` clipped to [0, 255].

    `np.rint` rounds halves to even, like OpenCV's `saturate_cast` and
    BasicSR's `tensor2img`. uint8 input is returned unchanged.
    """
    x = np.asarray(x)
    if x.dtype == np.uint8:
        return x
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"x must be float in [0, 1] or uint8; got dtype {x.dtype}")
    if np.isnan(x).any():
        raise ValueError("x must not contain NaN; got NaN values")
    return np.clip(np.rint(x.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)


def read_image(path, *, allow_conversion=False, max_pixels=None):
    """Reads an image file as float32 RGB in [0, 1], shape (H, W, 3).

    Only 8-bit RGB is accepted unless `allow_conversion=True`, which
    replicates grayscale to three channels, drops an alpha channel and scales
    16-bit samples by 1/65535. EXIF orientation is not applied (OpenCV's
    IMREAD_UNCHANGED), so pixels line up with the file as datasets store it.
    A file declaring more than `max_pixels` pixels (default
    `max_decode_pixels()`, 100 MP) is refused from its header.
    """
    rgb = read_image_samples(path, allow_conversion=allow_conversion, max_pixels=max_pixels)
    scale = 65535.0 if rgb.dtype == np.uint16 else 255.0
    return rgb.astype(np.float32) / np.float32(scale)


def read_image_samples(path, *, allow_conversion=False, max_pixels=None):
    """`read_image` before the scaling: uint8 or uint16 RGB samples, (H, W, 3).

    `read_image(p) == read_image_samples(p) / (255 or 65535)` in float32,
    so integer samples stored elsewhere (TFRecords) give the same floats.
    """
    path = os.fspath(path)
    img = _decode(path, max_pixels)
    channels = 1 if img.ndim == 2 else img.shape[2]
    kind = {1: "grayscale", 2: "grayscale+alpha", 3: "", 4: "RGBA"}[channels]
    depth = "16-bit" if img.dtype == np.uint16 else ""
    if (kind or depth) and not allow_conversion:
        what = " ".join(part for part in (depth, kind) if part)
        raise ImageError(f"{path}: {what} image; {_CONVERT_HINT}")

    if channels <= 2:
        gray = img if channels == 1 else img[..., 0]
        rgb = np.repeat(gray[..., None], 3, axis=2)
    else:
        rgb = cv2.cvtColor(img[..., :3], cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(rgb)


def write_image(path, img, *, jpeg_quality=95):
    """Writes an RGB image (uint8, or float in [0, 1]) to PNG, JPEG, ...

    The format follows the extension. The file appears atomically: the image
    is encoded in memory, written to a temporary file beside the target and
    renamed over it, so a reader (or a crash) never sees half a file, and a
    failure leaves no file behind. Parent directories are created.
    """
    path = os.fspath(path)
    arr = np.asarray(img)
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (1, 3))):
        raise ImageError(f"{path}: image must be HxW or HxWx3 RGB; got shape {arr.shape}")
    try:
        arr = to_uint8(arr)
    except ValueError as e:
        raise ImageError(f"{path}: {e}") from e
    if arr.ndim == 3 and arr.shape[2] == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)
    _encode_and_write(path, arr, jpeg_quality)


def list_images(directory):
    """Sorted paths of the image files directly inside `directory`.

    Extensions in `IMAGE_EXTENSIONS`, any case. Hidden files are skipped:
    macOS '._name.png' forks and write_image's temporary files are not images.
    """
    directory = os.fspath(directory)
    if not os.path.exists(directory):
        raise ImageError(f"{directory}: no such directory")
    if not os.path.isdir(directory):
        raise ImageError(f"{directory}: not a directory")
    names = sorted(
        name
        for name in os.listdir(directory)
        if not name.startswith(".")
        and name.lower().endswith(IMAGE_EXTENSIONS)
        and os.path.isfile(os.path.join(directory, name))
    )
    return [os.path.join(directory, name) for name in names]


def expand_inputs(inputs):
    """Files, folders (their images, sorted) and glob patterns -> paths, in
    order, without repeats. A folder without images or a pattern matching
    nothing is a `ValueError` naming it; a missing file is passed on, for the
    reader to name with the others."""
    import glob

    paths = []
    for item in inputs:
        if os.path.isdir(item):
            found = list_images(item)
            if not found:
                raise ValueError(f"{item}: folder holds no image files ({', '.join(IMAGE_EXTENSIONS)})")
            paths += found
        elif not os.path.exists(item) and glob.has_magic(item):
            found = sorted(p for p in glob.glob(item) if os.path.isfile(p))
            if not found:
                raise ValueError(f"{item}: pattern matches no files")
            paths += found
        else:
            paths.append(item)
    return list(dict.fromkeys(paths))


def image_error_inside(e):
    """The `ImageError` line of a TensorFlow error raised by an input
    pipeline (a file that passed the header checks but fails to decode
    mid-run), or None for any other error."""
    if not type(e).__module__.startswith("tensorflow"):
        return None
    for line in str(e).splitlines():
        head, sep, rest = line.strip().partition("ImageError: ")
        if sep and rest:
            return rest
    return None


def _by_stem(directory):
    paths = list_images(directory)
    if not paths:
        raise ImageError(f"{directory}: no image files ({', '.join(IMAGE_EXTENSIONS)})")
    stems = {}
    for p in paths:
        stem = os.path.splitext(os.path.basename(p))[0]
        if stem in stems:
            raise ImageError(
                f"{directory}: two images share the name {stem!r} "
                f"({os.path.basename(stems[stem])}, {os.path.basename(p)})"
            )
        stems[stem] = p
    return stems


def _unmatched(names, side, other):
    shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
    return f"{len(names)} {side} image(s) have no {other} partner ({shown})"


def match_pairs(blur_dir, sharp_dir):
    """(blur_path, sharp_path) pairs matched by file name without extension.

    The GoPro / HIDE / RealBlur layout: `blur/x.png` pairs with `sharp/x.png`
    (or `sharp/x.jpg`). Sorted by name. Every image must have a partner.
    """
    blur = _by_stem(blur_dir)
    sharp = _by_stem(sharp_dir)
    only_blur = sorted(blur.keys() - sharp.keys())
    only_sharp = sorted(sharp.keys() - blur.keys())
    if only_blur or only_sharp:
        problems = []
        if only_blur:
            problems.append(_unmatched(only_blur, "blur", "sharp"))
        if only_sharp:
            problems.append(_unmatched(only_sharp, "sharp", "blur"))
        raise ImageError(f"{os.fspath(blur_dir)} vs {os.fspath(sharp_dir)}: " + "; ".join(problems))
    return [(blur[s], sharp[s]) for s in sorted(blur)]


def contact_sheet(rows, labels=None, *, gap=4):
    """Tiles images into one uint8 RGB sheet, e.g. `[blur, output, sharp]` per row.

    Images in a row must share a height; rows narrower than the widest are
    padded on the right. `labels` is one list of strings for the columns
    (repeated on every row) or one list per row; each label is drawn in the
    top-left corner of its tile. `gap` pixels of white separate the tiles.
    """
    if not rows or any(len(row) == 0 for row in rows):
        raise ValueError("rows must be a non-empty list of non-empty image lists")
    if labels is not None:
        if all(isinstance(item, str) for item in labels):
            labels = [list(labels)] * len(rows)
        if len(labels) != len(rows) or any(len(l) != len(r) for l, r in zip(labels, rows)):
            raise ValueError("labels must have one string per column or per image")

    strips = []
    for i, row in enumerate(rows):
        tiles = [_rgb_uint8(img) for img in row]
        heights = {t.shape[0] for t in tiles}
        if len(heights) != 1:
            raise ValueError(f"images in row {i} must share a height; got {sorted(heights)}")
        if labels is not None:
            tiles = [_put_label(t, text) for t, text in zip(tiles, labels[i])]
        sep = np.full((tiles[0].shape[0], gap, 3), 255, np.uint8)
        parts = [tiles[0]]
        for t in tiles[1:]:
            parts += [sep, t]
        strips.append(np.concatenate(parts, axis=1))

    width = max(s.shape[1] for s in strips)
    out = []
    for i, s in enumerate(strips):
        if i:
            out.append(np.full((gap, width, 3), 255, np.uint8))
        pad = np.full((s.shape[0], width - s.shape[1], 3), 255, np.uint8)
        out.append(np.concatenate([s, pad], axis=1))
    return np.concatenate(out, axis=0)


def sheet_rgb(img):
    """An image as `read_image_raw` returns it (gray, gray+alpha, RGB, RGBA;
    8 or 16 bits), made fit for `contact_sheet`: alpha dropped, 16-bit
    scaled to [0, 1]."""
    img = np.asarray(img)
    if img.dtype == np.uint16:
        img = (img.astype(np.float32) / 65535.0)
    if img.ndim == 3 and img.shape[2] in (2, 4):
        img = img[..., :-1]
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    return img


def _rgb_uint8(img):
    img = to_uint8(img)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"images must be HxW or HxWx3; got shape {img.shape}")
    return img


def _put_label(tile, text):
    if not text:
        return tile
    tile = tile.copy()
    h = tile.shape[0]
    font = cv2.FONT_HERSHEY_SIMPLEX
    scale = max(0.35, h / 720.0)
    thickness = max(1, int(round(scale * 1.5)))
    (tw, th), base = cv2.getTextSize(text, font, scale, thickness)
    pad = max(2, th // 3)
    # Dark box under white text: readable on any image.
    cv2.rectangle(tile, (0, 0), (tw + 2 * pad, th + base + 2 * pad), (0, 0, 0), thickness=-1)
    cv2.putText(tile, text, (pad, pad + th), font, scale, (255, 255, 255), thickness, cv2.LINE_AA)
    return tile


def _decode(path, max_pixels=None):
    """The file's samples as OpenCV decodes them (BGR order), checked:
    uint8/uint16, 1-4 channels, a (H, W) array for one channel. The header
    is checked against the pixel budget and, for a JPEG, against the data
    that follows it, before anything is decoded."""
    return _decode_file(path, max_pixels)[0]


def _decode_file(path, max_pixels=None):
    """`_decode`, and the file's bytes."""
    if not os.path.exists(path):
        raise ImageError(f"{path}: no such file")
    if not os.path.isfile(path):
        raise ImageError(f"{path}: not a regular file")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ImageError(f"{path}: cannot read file ({e.strerror})") from e
    if not data:
        raise ImageError(f"{path}: empty file (0 bytes)")
    try:
        check_header(path, data, max_pixels)
    except _Unidentified:
        # Pillow reads the headers of every format we list, but not every
        # sample type (a float TIFF): OpenCV decides, and the budget is
        # checked on what it decoded (OpenCV's own limit is 2^30 pixels).
        header_checked = False
    else:
        header_checked = True
    # imdecode on bytes we read ourselves is cv2.imread's decoder, minus its
    # trouble with non-ASCII paths on Windows.
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0:
        raise ImageError(f"{path}: cannot decode image (corrupt, truncated or not an image file)")

    if not header_checked:
        _check_budget(path, img.shape[1], img.shape[0], max_pixels)
    if img.ndim == 3 and img.shape[2] == 4 and data[:8] == _PNG_SIGNATURE and data[25:26] == b"\x04":
        img = np.ascontiguousarray(img[..., [0, 3]])  # libpng expands gray+alpha (colour type 4) to BGRA
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    channels = 1 if img.ndim == 2 else img.shape[2]
    if img.dtype not in (np.uint8, np.uint16) or channels not in (1, 2, 3, 4):
        raise ImageError(
            f"{path}: unsupported image ({channels} channels, {img.dtype} samples); "
            "tfdeblur reads 8- or 16-bit grayscale, RGB or RGBA"
        )
    return img, data


_UNDECODABLE = "cannot decode image (corrupt, truncated or not an image file)"
_PIL_LIMIT_LOCK = threading.Lock()


class _Unidentified(ImageError):
    """No Pillow decoder recognises the file's header."""


def header_size(path, data=None):
    """(width, height) declared by an image file's header, read by Pillow
    without decoding pixels; `ImageError` when no decoder recognises it."""
    import io as _io

    from PIL import Image, UnidentifiedImageError

    source = _io.BytesIO(data) if data is not None else path
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            try:
                with Image.open(source) as im:
                    return im.size
            except Image.DecompressionBombError:
                # Pillow's own limit (179 MP) refused it; we want the size
                # to judge it against ours, which may be set higher.
                with _PIL_LIMIT_LOCK:
                    saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
                    try:
                        if data is not None:
                            source.seek(0)
                        with Image.open(source) as im:
                            return im.size
                    finally:
                        Image.MAX_IMAGE_PIXELS = saved
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise _Unidentified(f"{path}: {_UNDECODABLE}") from e


def _check_budget(path, width, height, max_pixels):
    limit = _max_decode_pixels if max_pixels is None else int(max_pixels)
    if width * height > limit:
        raise ImageError(
            f"{path}: header declares {width}x{height} = {width * height / 1e6:.1f} MP, over the "
            f"{limit / 1e6:g} MP decode limit (`max_decode_pixels` / max_pixels to raise it)"
        )


def check_header(path, data=None, max_pixels=None):
    """Refuses, from the header alone, a file declaring more than
    `max_pixels` pixels (default `max_decode_pixels()`) and a JPEG whose
    data cannot hold the picture its header declares (truncated, or a
    forged header). Returns the declared (width, height)."""
    width, height = header_size(path, data)
    _check_budget(path, width, height, max_pixels)
    if data is None:
        with open(path, "rb") as f:
            head = f.read(2)
        if head == b"\xff\xd8":
            with open(path, "rb") as f:
                data = f.read()
    if data is not None and data[:2] == b"\xff\xd8":
        problem = _jpeg_problem(data, width, height)
        if problem:
            raise ImageError(f"{path}: cannot decode image: {problem}")
    return width, height


# A marker in entropy-coded data: 0xFF followed by neither a stuffed 0x00,
# a restart marker (RST0-7) nor another fill 0xFF.
_ENTROPY_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
_HUFFMAN_FRAMES = {0xC0, 0xC1, 0xC2, 0xC3}  # baseline, extended, progressive, lossless


def _jpeg_problem(data, width, height):
    """Why a JPEG cannot hold the picture its header declares, or None.

    Walks the markers from SOI to the first EOI (bytes after it, like a
    phone's "motion photo" video, are not looked at). Missing EOI: the file
    was cut. Too little entropy-coded data: with Huffman coding every 8x8
    block costs at least one bit (a DC code is never shorter), so a
    picture of W x H pixels needs at least W*H/512 bytes; we ask for half
    that. libjpeg would fill the missing blocks with grey and only warn.
    Arithmetic-coded frames (rare) can be smaller and skip that bound."""
    pos, n, frame, scan_start = 2, len(data), None, None
    while pos + 1 < n:
        if data[pos] != 0xFF:  # stray bytes between segments: libjpeg skips them too
            pos = data.find(b"\xff", pos)
            if pos < 0:
                break
            continue
        marker = data[pos + 1]
        if marker == 0xFF:
            pos += 1
            continue
        if marker == 0xD9:  # EOI
            if frame in _HUFFMAN_FRAMES and scan_start is not None:
                need = width * height // 1024
                have = pos - scan_start
                if have < need:
                    return (f"its header declares {width}x{height} but it holds {have} bytes of picture "
                            f"data, fewer than such a picture needs (truncated or forged header)")
            return None
        if marker in (0x01, *range(0xD0, 0xD8)):
            pos += 2
            continue
        if pos + 4 > n:
            break
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            frame = marker
        pos += 2 + length
        if marker == 0xDA:  # SOS: entropy-coded data up to the next marker
            if scan_start is None:
                scan_start = pos
            found = _ENTROPY_MARKER.search(data, pos)
            if found is None:
                break
            pos = found.start()
    return f"truncated JPEG (no end-of-image marker; its header declares {width}x{height})"


def read_image_raw(path, *, max_pixels=None):
    """Reads an image file keeping its samples: uint8 or uint16, shape (H, W)
    for grayscale, (H, W, 2) grayscale+alpha, (H, W, 3) RGB or (H, W, 4) RGBA
    (RGB order, alpha last). Same one-line `ImageError`s and pixel budget
    as `read_image`."""
    path = os.fspath(path)
    img = _decode(path, max_pixels)
    if img.ndim == 3 and img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    elif img.ndim == 3 and img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA)
    return img


def write_image_raw(path, img, *, jpeg_quality=95, finish=None):
    """Writes a uint8 or uint16 array as `read_image_raw` returns it (gray,
    gray+alpha, RGB or RGBA), atomically like `write_image`. 16-bit needs a
    format that holds it (.png, .tif). `finish` maps the encoded bytes (a
    uint8 array) to the bytes written (`write_photo` adds metadata)."""
    path = os.fspath(path)
    arr = np.asarray(img)
    if arr.dtype not in (np.uint8, np.uint16) or not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (1, 2, 3, 4))):
        raise ImageError(f"{path}: image must be uint8/uint16 HxW or HxWx(1-4); got {arr.dtype} shape {arr.shape}")
    if arr.ndim == 3 and arr.shape[2] == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGBA2BGRA)
    ext = os.path.splitext(path)[1]
    if arr.dtype == np.uint16 and ext.lower() not in (".png", ".tif", ".tiff"):
        raise ImageError(f"{path}: 16-bit images need .png or .tif; got {ext!r}")
    _encode_and_write(path, arr, jpeg_quality, finish)


# ------------------------------------------------------------------ photos

# The formats `write_photo` writes, by extension (`PHOTO_FORMATS` names them
# for `deblur --format`).
PHOTO_FORMATS = {"png": ".png", "jpg": ".jpg"}
# JPEG quality when none is given (also OpenCV's and `write_image`'s).
# Measured on GoPro GOPR0384_11_00-000001, a restored 1280x720 frame (HINet's
# output, 33.19 dB against sharp): as JPEG it scores 32.65 dB at quality 75,
# 32.93 at 90, 33.02 at 95 (217 KB), 33.08 at 100 (458 KB; the PNG is
# 1.2 MB). 95 keeps all but 0.17 dB of the restoration at half the bytes of 100.
DEFAULT_JPEG_QUALITY = 95


def read_photo(path, *, max_pixels=None):
    """Reads a photo for restoring: `(samples, metadata)`, the samples as
    `read_image_raw` returns them but turned upright by the EXIF Orientation
    (all 8 values, as Pillow's `ImageOps.exif_transpose`), and the file's
    `PhotoMetadata` (EXIF, ICC profile, the orientation it had) for
    `write_photo`. (OpenCV turns TIFFs upright itself.) Datasets use
    `read_image`, which keeps pixels as stored."""
    from tfdeblur import photo_metadata

    path = os.fspath(path)
    img, data = _decode_file(path, max_pixels)
    meta = photo_metadata.read_metadata(data)
    img = np.ascontiguousarray(photo_metadata.apply_orientation(img, meta.orientation))
    if img.ndim == 3 and img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    elif img.ndim == 3 and img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA)
    return img, meta


def write_photo(path, img, metadata=None, *, quality=DEFAULT_JPEG_QUALITY):
    """Writes a restored photo (an array as `read_photo` returns it) as PNG
    or JPEG by the extension, atomically, with `metadata`'s ICC profile and
    EXIF (Orientation 1, since the pixels are upright; `photo_metadata.upright_exif`).
    PNG keeps 8 or 16 bits and alpha; JPEG is 8-bit (16-bit samples are
    rounded to 8) and refuses alpha. Returns what could not be carried (a
    JPEG holds at most 64 KiB of EXIF), as short phrases; usually []."""
    from tfdeblur import photo_metadata

    path = os.fspath(path)
    arr = np.asarray(img)
    ext = os.path.splitext(path)[1].lower()
    kind = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg"}.get(ext)
    if kind is None:
        raise ImageError(f"{path}: photos are written as .png or .jpg; got {ext or 'no extension'!r}")
    if int(quality) != quality or not 1 <= quality <= 100:
        raise ValueError(f"quality must be an integer from 1 to 100; got {quality}")
    if kind == "jpeg":
        if arr.ndim == 3 and arr.shape[2] in (2, 4):
            raise ImageError(f"{path}: the image has an alpha channel, which JPEG cannot hold (write .png)")
        if arr.dtype == np.uint16:
            arr = np.rint(arr / 257.0).astype(np.uint8)
    left_out = []

    def add_metadata(encoded):
        if metadata is None:
            return encoded
        exif = photo_metadata.upright_exif(metadata.exif, arr.shape[1], arr.shape[0])
        if metadata.exif is not None and exif is None:
            left_out.append("EXIF (unreadable)")
        data, dropped = photo_metadata.embed(encoded.tobytes(), kind, exif, metadata.icc_profile)
        left_out.extend(dropped)
        return np.frombuffer(data, np.uint8)

    write_image_raw(path, arr, jpeg_quality=int(quality), finish=add_metadata)
    return left_out


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_gray_alpha(arr):
    """PNG colour type 4 (gray+alpha, 8 or 16 bits), which OpenCV cannot
    write: IHDR, one IDAT of filter-0 rows, IEND."""
    import struct
    import zlib

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    h, w = arr.shape[:2]
    depth = 16 if arr.dtype == np.uint16 else 8
    rows = arr.astype(">u2" if depth == 16 else np.uint8).reshape(h, -1).view(np.uint8)
    raw = np.concatenate([np.zeros((h, 1), np.uint8), rows], axis=1).tobytes()
    ihdr = struct.pack(">IIBBBBB", w, h, depth, 4, 0, 0, 0)
    return _PNG_SIGNATURE + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")


def _encode_and_write(path, arr, jpeg_quality=95, finish=None):
    """Encodes a BGR(A) array by the extension and writes it atomically;
    `finish` maps the encoded bytes to the bytes written."""
    ext = os.path.splitext(path)[1]
    if not ext:
        raise ImageError(f"{path}: file name needs an image extension (.png, .jpg, ...)")
    params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)] if ext.lower() in (".jpg", ".jpeg") else []
    if arr.ndim == 3 and arr.shape[2] == 2:
        if ext.lower() != ".png":
            raise ImageError(f"{path}: gray+alpha images need .png; got {ext!r}")
        ok, encoded = True, np.frombuffer(_png_gray_alpha(arr), np.uint8)
    else:
        try:
            ok, encoded = cv2.imencode(ext, arr, params)
        except cv2.error:  # OpenCV raises for an unknown extension
            ok = False
    if not ok:
        raise ImageError(f"{path}: cannot encode image as {ext!r}")
    if finish is not None:
        encoded = finish(encoded)

    directory = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as e:
        raise ImageError(f"{path}: cannot create directory {directory} ({e.strerror})") from e
    try:
        atomic_write(path, encoded.tobytes())
    except OSError as e:
        raise ImageError(f"{path}: cannot write file ({e.strerror})") from e


# -- atomic writes -------------------------------------------------------------


def temporary_beside(path):
    """A fresh temporary name in `path`'s folder: the same filesystem, so the
    final rename is atomic; hidden (a dot prefix), so `list_images` and a
    folder scan skip a file in flight; with ".tmp" and the writer's pid in
    it, so a kill -9's leftovers are recognised and `remove_stale_temps`
    tells them from a live writer's; ending in `path`'s own extensions, so
    writers that go by the name (`model.save` wants ".keras", `np.savez`
    ".npz") write the right format."""
    directory, name = os.path.split(os.path.abspath(os.fspath(path)))
    stem = name.lstrip(".")
    extensions = stem[stem.index("."):] if "." in stem else ""
    return os.path.join(directory, f".{name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp{extensions}")


def _remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.remove(path)


@contextlib.contextmanager
def atomic_path(path):
    """`with atomic_path(path) as tmp:` write a file or a folder at `tmp`;
    when the block ends it takes `path`'s place at once, so a reader (or a
    crash) never sees it half written. If the block raises, `tmp` is removed
    and `path` is left as it was. The parent folder is created.

    A folder replacing a folder is swapped in two renames (POSIX cannot
    replace a non-empty folder in one): the old one moves aside, the new one
    in, then the old one is deleted; `path` is whole at every moment it exists.
    """
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = temporary_beside(path)
    try:
        yield tmp
        if os.path.isdir(tmp) and os.path.isdir(path) and not os.path.islink(path):
            old = temporary_beside(path) + ".old"
            os.rename(path, old)
            os.rename(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise


def atomic_write(path, data):
    """Writes `data` (bytes, or str as UTF-8 text) to `path` atomically
    (`atomic_path`), flushed to disk before it takes the name. Errors are the
    `OSError` of the write, naming the temporary file; callers word them."""
    with atomic_path(path) as tmp:
        if isinstance(data, str):
            f = open(tmp, "x", encoding="utf-8", newline="")
        else:
            f = open(tmp, "xb")
        with f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def write_text(path, text):
    """`atomic_write` of a text file a user asked for (a report, a table): a
    failed write is a one-line `ValueError` naming `path`."""
    try:
        atomic_write(path, text)
    except OSError as e:
        raise ValueError(f"{path}: cannot write file ({e.strerror})") from e


def read_json(path, name=None, error=ValueError):
    """The JSON value in file `path`, or one `error` naming it as `name`
    (default: the path): "<name>: no such file", or "<name>: not a readable
    JSON file (<exception>: <its first line>)" for any other failure to
    read or parse it."""
    import json

    name = path if name is None else name
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise error(f"{name}: no such file") from None
    except (OSError, ValueError) as e:
        raise error(f"{name}: not a readable JSON file ({e.__class__.__name__}: "
                    f"{str(e).splitlines()[0] if str(e) else ''})") from None


# `temporary_beside`'s names: hidden, the writer's pid, ".tmp", then the
# target's own extensions (".png", ".keras.sha256") and, for a folder moved
# aside by `atomic_path`, ".old".
_TEMP_NAME = re.compile(r"^\..+\.(\d+)-[0-9a-f]{8}\.tmp(\.[^/]*)?$")


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale_temps(directory):
    """Deletes the temporary files that writers killed mid-write (kill -9,
    power loss) left in `directory`: named by `temporary_beside` (every
    `atomic_path` / `atomic_write`, so every image write) and owned by a process that no longer exists. A live writer's files stay.
    Returns the paths removed; a missing folder is nothing to clean."""
    directory = os.fspath(directory)
    removed = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        match = _TEMP_NAME.match(name)
        if not match or _alive(int(match.group(1))):
            continue
        path = os.path.join(directory, name)
        try:
            _remove(path)
            removed.append(path)
        except OSError:  # gone already, or not ours to remove: nothing a user sees changes
            pass
    return removed
