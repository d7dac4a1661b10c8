"""What a photo carries besides its pixels: EXIF (with its Orientation) and
the ICC colour profile; read from a file's bytes and put back into encoded
PNG or JPEG bytes.

Pixels are still encoded by OpenCV (`tfdeblur.io`), which writes 16-bit
PNGs; Pillow's PNG writer cannot write 16-bit RGB. So the metadata goes in
at the container level: `eXIf` and `iCCP` chunks after a PNG's IHDR, APP1
"Exif" and APP2 "ICC_PROFILE" segments after a JPEG's SOI (and JFIF APP0).

The EXIF block is carried byte for byte but for three edits made in place:
Orientation becomes 1 (the pixels were turned upright on reading), the
PixelX/YDimension tags take the output's size, and the link to IFD1 (the
embedded thumbnail: the blurry photo, in the old orientation) is cut.
Everything else, maker notes included, keeps its offsets and bytes.
"""
import dataclasses
import io as _io
import struct
import zlib

ORIENTATION = 0x0112
EXIF_IFD = 0x8769
PIXEL_X_DIMENSION = 0xA002
PIXEL_Y_DIMENSION = 0xA003
_EXIF_HEADER = b"Exif\x00\x00"
_ICC_HEADER = b"ICC_PROFILE\x00"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_SEGMENT_MAX = 65533  # a segment's length field counts itself: 2 + 65533 = 0xFFFF
_ICC_CHUNK = _JPEG_SEGMENT_MAX - len(_ICC_HEADER) - 2  # 2: sequence number and count


@dataclasses.dataclass(frozen=True)
class PhotoMetadata:
    """`exif`: the TIFF-structured EXIF block ("II*\\0..." or "MM\\0*...",
    without the "Exif\\0\\0" prefix) or None; `icc_profile`: the ICC profile's
    bytes or None; `orientation`: the EXIF Orientation as stored, 1-8 (1
    when absent or invalid)."""

    exif: bytes = None
    icc_profile: bytes = None
    orientation: int = 1


def read_metadata(data):
    """`PhotoMetadata` of an encoded image (bytes). PNG chunks are read here,
    wherever the eXIf chunk sits (Pillow finds one after IDAT only by decoding
    the pixels); other formats through Pillow's header parsing. Damaged or
    unknown metadata reads as none: a photo is never refused for it."""
    if data[:8] == _PNG_SIGNATURE:
        exif, icc = _png_metadata(data)
    else:
        exif, icc = _pillow_metadata(data)
    exif = _tiff_block(exif)
    orientation = 1
    if exif is not None:
        try:
            value = _read_ifd0_tag(exif, ORIENTATION)
        except (struct.error, IndexError, ValueError):
            exif, value = None, None
        orientation = value if value in range(1, 9) else 1
    return PhotoMetadata(exif=exif, icc_profile=icc or None, orientation=orientation)


def apply_orientation(img, orientation):
    """`img` (H, W, ...) turned as EXIF `orientation` (1-8) says, so that it
    stands upright: the transposes of Pillow's `ImageOps.exif_transpose`."""
    if orientation == 2:
        return img[:, ::-1]
    if orientation == 3:
        return img[::-1, ::-1]
    if orientation == 4:
        return img[::-1]
    if orientation == 5:
        return img.swapaxes(0, 1)
    if orientation == 6:
        return img.swapaxes(0, 1)[:, ::-1]  # 90 degrees clockwise
    if orientation == 7:
        return img.swapaxes(0, 1)[::-1, ::-1]
    if orientation == 8:
        return img.swapaxes(0, 1)[::-1]  # 90 degrees counter-clockwise
    return img


def upright_exif(exif, width, height):
    """The EXIF block for an upright `width` x `height` output: Orientation 1,
    PixelX/YDimension set where present, no IFD1 (thumbnail). None when the
    block cannot be parsed (then it is better left out than written broken)."""
    if exif is None:
        return None
    buf = bytearray(exif)
    try:
        order = _byte_order(buf)
        ifd0 = struct.unpack_from(order + "I", buf, 4)[0]
        _set_tag(buf, order, ifd0, ORIENTATION, 1)
        count = struct.unpack_from(order + "H", buf, ifd0)[0]
        struct.pack_into(order + "I", buf, ifd0 + 2 + 12 * count, 0)  # no next IFD (IFD1)
        sub = _tag_value(buf, order, ifd0, EXIF_IFD)
        if sub:
            _set_tag(buf, order, sub, PIXEL_X_DIMENSION, width)
            _set_tag(buf, order, sub, PIXEL_Y_DIMENSION, height)
    except (struct.error, IndexError, ValueError):
        return None
    return bytes(buf)


def embed(encoded, kind, exif=None, icc_profile=None):
    """`encoded` PNG or JPEG bytes (`kind` "png" or "jpeg") with `exif` (a
    TIFF block) and `icc_profile` added. A JPEG holds at most 64 KiB of EXIF
    (one APP1 segment); a larger block is left out and reported by
    returning it in the second element: (bytes, [what was left out])."""
    left_out = []
    if kind == "png":
        chunks = b""
        if icc_profile:
            chunks += _png_chunk(b"iCCP", b"ICC Profile\x00\x00" + zlib.compress(icc_profile))
        if exif:
            chunks += _png_chunk(b"eXIf", exif)
        ihdr_end = 8 + 8 + struct.unpack(">I", encoded[8:12])[0] + 4
        return encoded[:ihdr_end] + chunks + encoded[ihdr_end:], left_out
    if kind != "jpeg":
        raise ValueError(f"kind must be 'png' or 'jpeg'; got {kind!r}")
    segments = b""
    if exif:
        if len(_EXIF_HEADER) + len(exif) <= _JPEG_SEGMENT_MAX:
            segments += _jpeg_segment(0xE1, _EXIF_HEADER + exif)
        else:
            left_out.append(f"EXIF ({len(exif)} bytes; a JPEG holds 64 KiB)")
    if icc_profile:
        parts = [icc_profile[i:i + _ICC_CHUNK] for i in range(0, len(icc_profile), _ICC_CHUNK)]
        if len(parts) <= 255:
            for i, part in enumerate(parts):
                segments += _jpeg_segment(0xE2, _ICC_HEADER + bytes([i + 1, len(parts)]) + part)
        else:
            left_out.append(f"ICC profile ({len(icc_profile)} bytes)")
    pos = 2
    if encoded[2:4] == b"\xff\xe0":  # JFIF APP0 stays first, as its spec wants
        pos = 4 + struct.unpack(">H", encoded[4:6])[0]
    return encoded[:pos] + segments + encoded[pos:], left_out


# ------------------------------------------------------------------ reading


def _png_metadata(data):
    exif = icc = None
    pos = 8
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"iCCP" and icc is None:
            name_end = body.find(b"\x00")
            if 0 < name_end and body[name_end + 1:name_end + 2] == b"\x00":
                try:
                    icc = zlib.decompress(body[name_end + 2:])
                except zlib.error:
                    pass
        elif kind == b"eXIf" and exif is None:
            exif = body
        elif kind == b"IEND":
            break
        pos += 12 + length
    return exif, icc


def _pillow_metadata(data):
    from PIL import Image

    try:
        with Image.open(_io.BytesIO(data)) as im:
            return im.info.get("exif"), im.info.get("icc_profile")
    except Exception:  # noqa: BLE001  (the pixel decoder reports unreadable files)
        return None, None


def _tiff_block(exif):
    if not exif:
        return None
    exif = bytes(exif)
    if exif.startswith(_EXIF_HEADER):
        exif = exif[len(_EXIF_HEADER):]
    return exif if exif[:4] in (b"II*\x00", b"MM\x00*") else None


def _byte_order(buf):
    return "<" if bytes(buf[:2]) == b"II" else ">"


def _entries(buf, order, ifd):
    count = struct.unpack_from(order + "H", buf, ifd)[0]
    for i in range(count):
        at = ifd + 2 + 12 * i
        tag, kind, n = struct.unpack_from(order + "HHI", buf, at)
        yield at, tag, kind, n


def _tag_value(buf, order, ifd, tag):
    """A SHORT or LONG tag's single value, or None."""
    for at, t, kind, n in _entries(buf, order, ifd):
        if t == tag and n == 1 and kind in (3, 4):
            return struct.unpack_from(order + ("H" if kind == 3 else "I"), buf, at + 8)[0]
    return None


def _read_ifd0_tag(exif, tag):
    order = _byte_order(exif)
    return _tag_value(exif, order, struct.unpack_from(order + "I", exif, 4)[0], tag)


def _set_tag(buf, order, ifd, tag, value):
    """Sets a single SHORT or LONG tag in place (the value fits the entry);
    an absent tag stays absent."""
    for at, t, kind, n in _entries(buf, order, ifd):
        if t == tag and n == 1 and kind in (3, 4):
            if kind == 3 and value > 0xFFFF:
                struct.pack_into(order + "HI", buf, at + 2, 4, 1)  # widen SHORT to LONG: same 4-byte slot
                kind = 4
            struct.pack_into(order + ("H" if kind == 3 else "I"), buf, at + 8, value)
            return


# ------------------------------------------------------------------ writing


def _png_chunk(kind, body):
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _jpeg_segment(marker, body):
    return bytes([0xFF, marker]) + struct.pack(">H", len(body) + 2) + body
