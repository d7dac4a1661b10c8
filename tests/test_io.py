"""Image reading, writing, pairing and contact sheets; fixtures are made with cv2."""
import os

import cv2
import numpy as np
import pytest

from tfdeblur import io
from tfdeblur.io import ImageError


def _rgb(seed=0, shape=(17, 23, 3)):
    return np.random.default_rng(seed).integers(0, 256, shape).astype(np.uint8)


def _write_raw(path, arr):
    """Writes with cv2 directly (arr in OpenCV's channel order)."""
    assert cv2.imwrite(str(path), arr)
    return path


def _assert_one_line_error(excinfo, path, *fragments):
    message = str(excinfo.value)
    assert str(path) in message
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message


# ------------------------------------------------------------------ reading


def test_read_image_returns_rgb_float32_in_unit_range(tmp_path):
    rgb = _rgb()
    path = _write_raw(tmp_path / "x.png", rgb[..., ::-1])  # cv2 stores BGR
    img = io.read_image(path)
    assert img.dtype == np.float32 and img.shape == rgb.shape
    np.testing.assert_array_equal(np.rint(img * 255).astype(np.uint8), rgb)


def test_write_then_read_uint8_png_is_exact(tmp_path):
    rgb = _rgb(1)
    io.write_image(tmp_path / "x.png", rgb)
    np.testing.assert_array_equal(io.to_uint8(io.read_image(tmp_path / "x.png")), rgb)


def test_write_float_image_rounds_and_clips(tmp_path):
    x = np.array([[[-0.2, 0.4 / 255, 1.6 / 255], [0.499, 1.0, 7.0]]], np.float32)
    io.write_image(tmp_path / "x.png", x)
    got = io.to_uint8(io.read_image(tmp_path / "x.png"))
    np.testing.assert_array_equal(got, [[[0, 0, 2], [127, 255, 255]]])


def test_write_then_read_jpeg_is_close(tmp_path):
    smooth = cv2.GaussianBlur(_rgb(2, (64, 64, 3)), (0, 0), 3)
    io.write_image(tmp_path / "x.JPG", smooth)
    back = io.to_uint8(io.read_image(tmp_path / "x.JPG"))
    assert np.abs(back.astype(int) - smooth).mean() < 2.0


def test_to_uint8_rounds_to_nearest_and_clips():
    x = np.array([-1.0, 0.0, 0.4 / 255, 0.6 / 255, 254.5 / 255 + 1e-4, 1.0, 2.0])
    np.testing.assert_array_equal(io.to_uint8(x), [0, 0, 0, 1, 255, 255, 255])
    u = _rgb()
    assert io.to_uint8(u) is u
    with pytest.raises(ValueError, match="NaN"):
        io.to_uint8(np.array([np.nan], np.float32))


def _grayscale(path):
    return _write_raw(path, _rgb()[..., 0])


def _rgba(path):
    return _write_raw(path, np.dstack([_rgb(), np.full((17, 23), 200, np.uint8)]))


def _rgb16(path):
    return _write_raw(path, _rgb().astype(np.uint16) * 257)


def _gray16(path):
    return _write_raw(path, _rgb()[..., 0].astype(np.uint16) * 257)


def _truncated(path):
    _write_raw(path, _rgb(3, (64, 64, 3)))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _text(path):
    path.write_text("this is not an image\n")
    return path


def _empty(path):
    path.write_bytes(b"")
    return path


@pytest.mark.parametrize(
    "make, fragments",
    [
        (lambda p: p, ["no such file"]),
        (_empty, ["empty file"]),
        (_truncated, ["cannot decode"]),
        (_text, ["cannot decode"]),
        (_grayscale, ["grayscale image", "allow_conversion=True"]),
        (_rgba, ["RGBA image", "allow_conversion=True"]),
        (_rgb16, ["16-bit image; tfdeblur expects 8-bit RGB (pass allow_conversion=True to convert)"]),
        (_gray16, ["16-bit grayscale image", "allow_conversion=True"]),
    ],
    ids=["missing", "empty", "truncated", "text", "grayscale", "rgba", "16bit", "16bit-gray"],
)
def test_read_image_errors_name_the_file_on_one_line(tmp_path, make, fragments):
    path = make(tmp_path / "bad image.png")
    with pytest.raises(ImageError) as excinfo:
        io.read_image(path)
    _assert_one_line_error(excinfo, path, *fragments)


def test_read_image_rejects_a_directory(tmp_path):
    with pytest.raises(ImageError) as excinfo:
        io.read_image(tmp_path)
    _assert_one_line_error(excinfo, tmp_path, "not a regular file")


def test_image_error_is_a_value_error():
    assert issubclass(ImageError, ValueError)


def test_allow_conversion_grayscale_replicates(tmp_path):
    gray = _rgb()[..., 0]
    img = io.read_image(_grayscale(tmp_path / "g.png"), allow_conversion=True)
    assert img.shape == gray.shape + (3,)
    for c in range(3):
        np.testing.assert_array_equal(io.to_uint8(img[..., c]), gray)


def test_allow_conversion_rgba_drops_alpha(tmp_path):
    img = io.read_image(_rgba(tmp_path / "a.png"), allow_conversion=True)
    np.testing.assert_array_equal(io.to_uint8(img), _rgb()[..., ::-1])  # fixture is BGR(A)


def test_allow_conversion_16bit_divides_by_65535(tmp_path):
    bgr16 = np.random.default_rng(4).integers(0, 65536, (9, 11, 3)).astype(np.uint16)
    img = io.read_image(_write_raw(tmp_path / "d.png", bgr16), allow_conversion=True)
    assert img.dtype == np.float32
    np.testing.assert_allclose(img, bgr16[..., ::-1] / 65535.0, atol=1e-7)


# ------------------------------------------------------------------ writing


def _leftovers(directory):
    return sorted(os.listdir(directory))


def test_write_image_creates_parents_and_leaves_no_temp_file(tmp_path):
    target = tmp_path / "a" / "b" / "out.png"
    io.write_image(target, _rgb())
    assert _leftovers(target.parent) == ["out.png"]


def test_write_image_replaces_an_existing_file(tmp_path):
    target = tmp_path / "out.png"
    io.write_image(target, _rgb(0))
    io.write_image(target, _rgb(1))
    np.testing.assert_array_equal(io.to_uint8(io.read_image(target)), _rgb(1))
    assert _leftovers(tmp_path) == ["out.png"]


@pytest.mark.parametrize(
    "name, img, fragment",
    [
        ("out.xyz", _rgb(), "cannot encode"),
        ("noext", _rgb(), "extension"),
        ("out.png", np.zeros((4, 4, 5), np.uint8), "shape"),
        ("out.png", np.full((4, 4, 3), np.nan, np.float32), "NaN"),
    ],
)
def test_failed_write_creates_nothing(tmp_path, name, img, fragment):
    target = tmp_path / name
    with pytest.raises(ImageError) as excinfo:
        io.write_image(target, img)
    _assert_one_line_error(excinfo, target, fragment)
    assert _leftovers(tmp_path) == []


def test_failed_write_keeps_the_previous_file(tmp_path, monkeypatch):
    target = tmp_path / "out.png"
    io.write_image(target, _rgb(0))

    def fail(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(io.os, "replace", fail)
    with pytest.raises(ImageError) as excinfo:
        io.write_image(target, _rgb(1))
    _assert_one_line_error(excinfo, target, "cannot write")
    assert _leftovers(tmp_path) == ["out.png"]
    np.testing.assert_array_equal(io.to_uint8(io.read_image(target)), _rgb(0))


# ------------------------------------------------------ listing and pairing


def _touch_images(directory, names):
    directory.mkdir(parents=True, exist_ok=True)
    for name in names:
        _write_raw(directory / name, _rgb(shape=(4, 4, 3)))


def test_list_images_filters_and_sorts(tmp_path):
    _touch_images(tmp_path, ["b.PNG", "a.jpg", "c.JpEg", "d.bmp", "e.tif", "f.webp"])
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / ".hidden.png").write_bytes(b"")
    (tmp_path / "sub.png").mkdir()
    got = [os.path.basename(p) for p in io.list_images(tmp_path)]
    assert got == ["a.jpg", "b.PNG", "c.JpEg", "d.bmp", "e.tif", "f.webp"]


@pytest.mark.parametrize("kind", ["missing", "file"])
def test_list_images_rejects_non_directories(tmp_path, kind):
    path = tmp_path / "x"
    if kind == "file":
        path.write_text("x")
    with pytest.raises(ImageError) as excinfo:
        io.list_images(path)
    _assert_one_line_error(excinfo, path)


def test_match_pairs_by_stem(tmp_path):
    _touch_images(tmp_path / "blur", ["b.png", "a.png"])
    _touch_images(tmp_path / "sharp", ["a.png", "b.jpg"])
    pairs = io.match_pairs(tmp_path / "blur", tmp_path / "sharp")
    assert [(os.path.basename(x), os.path.basename(y)) for x, y in pairs] == [
        ("a.png", "a.png"),
        ("b.png", "b.jpg"),
    ]


def test_match_pairs_reports_unmatched_names_and_counts(tmp_path):
    _touch_images(tmp_path / "blur", ["a.png", "b.png", "c.png", "d.png", "e.png", "x.png"])
    _touch_images(tmp_path / "sharp", ["x.png", "y.png"])
    with pytest.raises(ImageError) as excinfo:
        io.match_pairs(tmp_path / "blur", tmp_path / "sharp")
    _assert_one_line_error(
        excinfo,
        tmp_path / "blur",
        "5 blur image(s) have no sharp partner (a, b, c, ...)",
        "1 sharp image(s) have no blur partner (y)",
    )


def test_match_pairs_empty_directory(tmp_path):
    _touch_images(tmp_path / "blur", ["a.png"])
    (tmp_path / "sharp").mkdir()
    with pytest.raises(ImageError) as excinfo:
        io.match_pairs(tmp_path / "blur", tmp_path / "sharp")
    _assert_one_line_error(excinfo, tmp_path / "sharp", "no image files")


def test_match_pairs_missing_directory(tmp_path):
    _touch_images(tmp_path / "blur", ["a.png"])
    with pytest.raises(ImageError) as excinfo:
        io.match_pairs(tmp_path / "blur", tmp_path / "nope")
    _assert_one_line_error(excinfo, tmp_path / "nope", "no such directory")


def test_match_pairs_rejects_ambiguous_stems(tmp_path):
    _touch_images(tmp_path / "blur", ["a.png", "a.jpg"])
    _touch_images(tmp_path / "sharp", ["a.png"])
    with pytest.raises(ImageError) as excinfo:
        io.match_pairs(tmp_path / "blur", tmp_path / "sharp")
    _assert_one_line_error(excinfo, tmp_path / "blur", "'a'")


# ----------------------------------------------------------- contact sheet


def test_contact_sheet_layout_and_content():
    gap = 4
    row1 = [_rgb(0, (10, 12, 3)), _rgb(1, (10, 8, 3)), _rgb(2, (10, 5, 3))]
    row2 = [np.ones((6, 7, 3), np.float32), _rgb(3, (6, 9))]  # float and gray tiles
    sheet = io.contact_sheet([row1, row2], gap=gap)
    assert sheet.dtype == np.uint8
    assert sheet.shape == (10 + gap + 6, 12 + 8 + 5 + 2 * gap, 3)
    np.testing.assert_array_equal(sheet[:10, :12], row1[0])
    np.testing.assert_array_equal(sheet[:10, 12 + gap : 20 + gap], row1[1])
    np.testing.assert_array_equal(sheet[10 + gap :, 7 + gap : 16 + gap, 1], row2[1])
    assert (sheet[10 : 10 + gap] == 255).all()  # separator
    assert (sheet[10 + gap :, 16 + gap :] == 255).all()  # short row padded


def test_contact_sheet_labels_draw_on_the_tiles():
    tiles = [np.zeros((60, 80, 3), np.uint8)] * 3
    plain = io.contact_sheet([tiles, tiles])
    labelled = io.contact_sheet([tiles, tiles], labels=["blur", "output", "sharp"])
    assert labelled.shape == plain.shape
    assert (labelled != plain).any()
    per_row = io.contact_sheet([tiles, tiles], labels=[["a", "", ""], ["", "", ""]])
    assert (per_row[:60, :80] != plain[:60, :80]).any()
    np.testing.assert_array_equal(per_row[60:], plain[60:])


@pytest.mark.parametrize(
    "rows, labels, match",
    [
        ([], None, "non-empty"),
        ([[_rgb(0, (10, 10, 3)), _rgb(0, (11, 10, 3))]], None, "share a height"),
        ([[_rgb(0, (10, 10, 3))]], ["a", "b"], "one string per"),
    ],
)
def test_contact_sheet_rejects_bad_input(rows, labels, match):
    with pytest.raises(ValueError, match=match):
        io.contact_sheet(rows, labels=labels)


# ------------------------------------------------------ the one atomic writer


def test_atomic_write_replaces_a_file_and_leaves_nothing_else(tmp_path):
    target = tmp_path / "sub" / "results.json"  # the parent is created
    io.atomic_write(target, "old")
    io.atomic_write(target, "new\n")
    io.atomic_write(tmp_path / "blob.bin", b"\x00\x01")
    assert target.read_text() == "new\n"
    assert (tmp_path / "blob.bin").read_bytes() == b"\x00\x01"
    assert sorted(os.listdir(target.parent)) == ["results.json"]


def test_atomic_path_keeps_the_old_file_when_the_writer_fails(tmp_path):
    target = tmp_path / "model.keras"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="half way"):
        with io.atomic_path(target) as tmp:
            with open(tmp, "w") as f:
                f.write("half")
            raise RuntimeError("half way")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["model.keras"]


def test_temporary_names_are_hidden_and_keep_the_extensions(tmp_path):
    # model.save wants ".keras", np.savez ".npz", save_weights ".weights.h5"
    for name, ext in (("model.keras", ".keras"), ("a.weights.h5", ".weights.h5"), ("folder", "")):
        tmp = os.path.basename(io.temporary_beside(tmp_path / name))
        assert tmp.startswith(f".{name}.") and ".tmp" in tmp and tmp.endswith(ext)
        assert os.path.dirname(io.temporary_beside(tmp_path / name)) == str(tmp_path)


def test_atomic_path_swaps_a_whole_folder(tmp_path):
    target = tmp_path / "export"
    for version in ("1", "2"):
        with io.atomic_path(target) as tmp:
            os.makedirs(tmp)
            with open(os.path.join(tmp, "version"), "w") as f:
                f.write(version)
    assert (target / "version").read_text() == "2"
    assert os.listdir(tmp_path) == ["export"]
    with pytest.raises(OSError):
        with io.atomic_path(target) as tmp:
            os.makedirs(tmp)
            raise OSError(28, "No space left on device")
    assert (target / "version").read_text() == "2"
    assert os.listdir(tmp_path) == ["export"]
