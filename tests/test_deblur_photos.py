"""Photos as people take them (#19): `deblur` turns a photo upright by its
EXIF orientation, carries its EXIF (Orientation reset to 1) and ICC profile
to the output, and writes `--format png|jpg|same` at `--quality Q`.

The tiny untrained model returns its input exactly (zero-initialised output
head over a global residual), so output pixels can be compared exactly with
the input turned by hand. Metadata is read back with Pillow, not with the
code under test.
"""
import io
import os
import struct

import cv2
import numpy as np
import pytest
from PIL import Image, ImageCms, ImageOps

from tests.helpers import run_cli_error, save_tiny_model
from tfdeblur import io as tio
from tfdeblur import photo_metadata
from tfdeblur.cli import main

MAKE, MODEL, ORIENTATION = 0x010F, 0x0110, 0x0112
SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("model") / "tiny.keras")


def _rgb(h, w, seed=0):
    # Smooth, so a JPEG of it stays close to it.
    small = np.random.default_rng(seed).random((h // 8 + 2, w // 8 + 2, 3))
    return np.clip(cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC) * 255, 0, 255).astype(np.uint8)


def _exif(orientation):
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    exif[MAKE] = "Acme"
    exif[MODEL] = "Phone 7"
    return exif


def _phone_jpeg(path, pixels, orientation=6):
    """A phone's portrait photo: landscape pixels, EXIF orientation, sRGB profile."""
    Image.fromarray(pixels).save(path, quality=95, exif=_exif(orientation).tobytes(), icc_profile=SRGB)
    return str(path)


def _pillow(path):
    im = Image.open(path)
    im.load()  # a PNG's eXIf may follow IDAT
    return im, im.getexif()


def _decode_as_stored(path):
    """The file's pixels in storage order (no orientation), RGB."""
    return cv2.cvtColor(cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_UNCHANGED), cv2.COLOR_BGR2RGB)


def test_exif_rotated_jpeg_comes_out_upright_with_its_exif_and_profile(tiny_model, tmp_path, capsys):
    src = _phone_jpeg(tmp_path / "IMG_1.jpg", _rgb(48, 80))
    stored = _decode_as_stored(src)  # 48 x 80, sideways
    upright = np.rot90(stored, -1)  # orientation 6: turn 90 degrees clockwise
    out = tmp_path / "out"
    assert main(["deblur", "--model", tiny_model, src, "--out", str(out)]) == 0
    assert sorted(os.listdir(out)) == ["IMG_1.jpg"]  # --format same: JPEG in, JPEG out
    im, exif = _pillow(out / "IMG_1.jpg")
    assert im.format == "JPEG" and im.size == (48, 80)  # width x height: upright
    assert exif.get(ORIENTATION) == 1
    assert (exif.get(MAKE), exif.get(MODEL)) == ("Acme", "Phone 7")
    assert im.info["icc_profile"] == SRGB
    # Re-encoded at quality 95 (4:2:0 chroma): close to upright, far from the other 90-degree turn.
    error = lambda ref: np.abs(np.asarray(im).astype(int) - ref).mean()  # noqa: E731
    assert error(upright) < 5 < 5 * error(upright) < error(np.rot90(stored, 1))

    # As PNG the pixels are exact: the stored pixels turned upright.
    assert main(["deblur", "--model", tiny_model, src, "--out", str(out), "--format", "png"]) == 0
    im, exif = _pillow(out / "IMG_1.png")
    assert im.format == "PNG" and exif.get(ORIENTATION) == 1 and exif.get(MAKE) == "Acme"
    assert im.info["icc_profile"] == SRGB
    np.testing.assert_array_equal(np.asarray(im), upright)
    # A viewer applying EXIF orientation shows what we wrote.
    np.testing.assert_array_equal(np.asarray(ImageOps.exif_transpose(im)), upright)


def test_png_with_an_icc_profile_keeps_it_in_png_and_jpeg(tiny_model, tmp_path):
    pixels = _rgb(30, 36, seed=1)
    src = tmp_path / "scan.png"
    Image.fromarray(pixels).save(src, icc_profile=SRGB)
    out = tmp_path / "out"
    assert main(["deblur", "--model", tiny_model, str(src), "--out", str(out)]) == 0
    im, exif = _pillow(out / "scan.png")
    assert im.format == "PNG" and im.info["icc_profile"] == SRGB and ORIENTATION not in exif
    np.testing.assert_array_equal(np.asarray(im), pixels)
    assert main(["deblur", "--model", tiny_model, str(src), "--out", str(out), "--format", "jpg"]) == 0
    im, _ = _pillow(out / "scan.jpg")
    assert im.format == "JPEG" and im.info["icc_profile"] == SRGB


def test_sixteen_bit_png_stays_sixteen_bit_with_its_metadata(tiny_model, tmp_path):
    pixels = (np.random.default_rng(2).random((20, 28, 3)) * 65535).astype(np.uint16)
    plain = tmp_path / "plain.png"
    assert cv2.imwrite(str(plain), pixels[..., ::-1])
    # OpenCV cannot write metadata and Pillow cannot write 16-bit RGB: add
    # the chunks by hand (they precede IDAT, after IHDR).
    src = tmp_path / "raw16.png"
    block = _exif(8).tobytes().removeprefix(b"Exif\x00\x00")
    src.write_bytes(photo_metadata.embed(plain.read_bytes(), "png", block, SRGB)[0])
    out = tmp_path / "out"
    assert main(["deblur", "--model", tiny_model, str(src), "--out", str(out)]) == 0
    back = cv2.imread(str(out / "raw16.png"), cv2.IMREAD_UNCHANGED)[..., ::-1]
    assert back.dtype == np.uint16
    np.testing.assert_array_equal(back, np.rot90(pixels, 1))  # orientation 8: 90 degrees counter-clockwise
    im, exif = _pillow(out / "raw16.png")
    assert im.info["icc_profile"] == SRGB and exif.get(ORIENTATION) == 1 and exif.get(MODEL) == "Phone 7"


@pytest.mark.parametrize("orientation", range(1, 9))
def test_read_photo_turns_every_orientation_as_pillow_does(tmp_path, orientation):
    pixels = _rgb(6, 10, seed=orientation)
    path = tmp_path / "o.png"
    Image.fromarray(pixels).save(path, exif=_exif(orientation).tobytes())
    got, meta = tio.read_photo(path)
    assert meta.orientation == orientation
    np.testing.assert_array_equal(got, np.asarray(ImageOps.exif_transpose(Image.open(path))))


def test_api_deblur_of_a_path_is_upright(tiny_model, tmp_path):
    import tfdeblur

    src = _phone_jpeg(tmp_path / "p.jpg", _rgb(24, 40))
    got = tfdeblur.deblur(src, tiny_model)
    np.testing.assert_array_equal(got, np.rot90(_decode_as_stored(src), -1))


def test_jpeg_quality_sets_the_size_and_names_follow_the_format(tiny_model, tmp_path):
    src = tmp_path / "a.png"
    Image.fromarray((np.random.default_rng(3).random((48, 48, 3)) * 255).astype(np.uint8)).save(src)
    sizes = {}
    for q in ("40", "95"):
        out = tmp_path / f"q{q}"
        assert main(["deblur", "--model", tiny_model, str(src), "--out", str(out), "--format", "jpg", "--quality", q]) == 0
        assert os.listdir(out) == ["a.jpg"]
        sizes[q] = os.path.getsize(out / "a.jpg")
    assert sizes["40"] < 0.7 * sizes["95"]
    out = tmp_path / "default"
    assert main(["deblur", "--model", tiny_model, str(src), "--out", str(out), "--format", "jpg"]) == 0
    assert os.path.getsize(out / "a.jpg") == sizes["95"]  # the default quality is 95


def test_bad_format_and_quality_are_one_error_line(tiny_model, tmp_path, capsys):
    src = _phone_jpeg(tmp_path / "a.jpg", _rgb(24, 40))
    out = tmp_path / "out"
    cases = [
        (["--format", "gif"], "--format must be png, jpg or same; got 'gif'"),
        (["--quality", "0"], "--quality must be an integer from 1 to 100; got '0'"),
        (["--quality", "101"], "--quality must be an integer from 1 to 100; got '101'"),
        (["--quality", "high"], "--quality must be an integer from 1 to 100; got 'high'"),
        (["--format", "png", "--quality", "80"], "--quality applies to JPEG output"),
    ]
    for extra, message in cases:
        err = run_cli_error(capsys, ["deblur", "--model", tiny_model, src, "--out", str(out), *extra])
        assert err.startswith(f"error: {message}"), (extra, err)
    assert not out.exists()


def test_alpha_cannot_go_to_jpeg(tiny_model, tmp_path, capsys):
    src = tmp_path / "logo.png"
    Image.fromarray(np.dstack([_rgb(24, 24), np.full((24, 24), 128, np.uint8)]), "RGBA").save(src)
    assert main(["deblur", "--model", tiny_model, str(src), "--out", str(tmp_path / "out"), "--format", "jpg"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {src}: has an alpha channel, which JPEG cannot hold (--format png keeps it)"
    assert not os.path.exists(tmp_path / "out" / "logo.jpg")


# ------------------------------------------------------ the EXIF edits alone


def _big_endian_exif(orientation, width, height, thumbnail_at=0):
    """A hand-made big-endian ("MM") EXIF block: IFD0 with Orientation and a
    pointer to an Exif IFD holding PixelX/YDimension (SHORT), then IFD1's offset."""
    ifd0 = struct.pack(">H", 2) + struct.pack(">HHIHH", ORIENTATION, 3, 1, orientation, 0)
    exif_ifd_at = 8 + len(ifd0) + 12 + 4
    ifd0 += struct.pack(">HHII", photo_metadata.EXIF_IFD, 4, 1, exif_ifd_at) + struct.pack(">I", thumbnail_at)
    sub = struct.pack(">H", 2) + struct.pack(">HHIHH", photo_metadata.PIXEL_X_DIMENSION, 3, 1, width, 0)
    sub += struct.pack(">HHIHH", photo_metadata.PIXEL_Y_DIMENSION, 3, 1, height, 0) + struct.pack(">I", 0)
    return b"MM\x00*" + struct.pack(">I", 8) + ifd0 + sub


def test_upright_exif_resets_orientation_sizes_and_drops_the_thumbnail():
    block = _big_endian_exif(6, 40, 24, thumbnail_at=999)
    assert photo_metadata.read_metadata(_png_with_exif(block)).orientation == 6
    fixed = photo_metadata.upright_exif(block, 24, 40)
    assert len(fixed) == len(block)
    exif = Image.Exif()
    exif.load(fixed)
    assert exif[ORIENTATION] == 1
    assert dict(exif.get_ifd(photo_metadata.EXIF_IFD)) == {photo_metadata.PIXEL_X_DIMENSION: 24,
                                                            photo_metadata.PIXEL_Y_DIMENSION: 40}
    assert fixed[8 + 2 + 2 * 12:8 + 2 + 2 * 12 + 4] == b"\x00\x00\x00\x00"  # no IFD1
    assert photo_metadata.upright_exif(b"MM\x00*\x00\x00\xff\xff", 1, 1) is None  # IFD0 past the end


def _png_with_exif(block):
    buf = io.BytesIO()
    Image.new("RGB", (2, 2)).save(buf, "PNG")
    return photo_metadata.embed(buf.getvalue(), "png", block)[0]
