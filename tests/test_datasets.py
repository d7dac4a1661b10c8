"""Benchmark loaders on miniature copies of each dataset's real layout,
their bad-input errors, the training pipeline and the TFRecord round trip.

Every fixture tree mirrors the distributed layout exactly (folder and file
names as in `tfdeblur/datasets/layouts.py`), with 16x24 images; values are
checked against the pixels the test itself wrote (an independent cv2
read), not only shapes.
"""
import os

import cv2
import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import run_cli_error
from tfdeblur.datasets import layouts, pairs, spec, tfrecord
from tfdeblur.io import ImageError

H, W = 16, 24


def _write(path, img):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    assert cv2.imwrite(str(path), img)
    return str(path)


def _rgb(seed):
    return np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)


def _pair(root, blur_rel, sharp_rel, seed):
    """Writes a pair whose sharp image is rgb(seed) and blur image its
    inverse, both BGR on disk; returns the RGB arrays expected on reading."""
    rgb = _rgb(seed)
    _write(root / sharp_rel, rgb[..., ::-1])
    _write(root / blur_rel, (255 - rgb)[..., ::-1])
    return 255 - rgb, rgb


def _as_u8(x):
    return np.rint(np.asarray(x) * 255).astype(np.uint8)


def _check(dataset, expected):
    got = list(dataset.as_numpy_iterator())
    assert len(got) == len(expected)
    for (b, s), (eb, es) in zip(got, expected):
        assert b.dtype == np.float32 and b.shape == (H, W, 3)
        np.testing.assert_array_equal(_as_u8(b), eb)
        np.testing.assert_array_equal(_as_u8(s), es)


def gopro_tree(root, flat=False):
    """GOPRO_Large: {train,test}/<seq>/{blur,blur_gamma,sharp}/NNNNNN.png."""
    expected = {}
    seqs = {"train": ["GOPR0372_07_00", "GOPR0374_11_00"], "test": ["GOPR0384_11_00"]}
    for split, names in seqs.items():
        for k, seq in enumerate(names):
            for j, frame in enumerate(["000047", "000048"]):
                seed = 100 * len(split) + 10 * k + j
                if flat:
                    b, s = _pair(root, f"{split}/blur/{seq}-{frame}.png", f"{split}/sharp/{seq}-{frame}.png", seed)
                else:
                    b, s = _pair(root, f"{split}/{seq}/blur/{frame}.png", f"{split}/{seq}/sharp/{frame}.png", seed)
                    _write(root / split / seq / "blur_gamma" / f"{frame}.png", np.full((H, W, 3), 7, np.uint8))
                expected.setdefault(split, []).append((b, s))
    return expected


def test_gopro_sequence_layout_and_variants(tmp_path):
    expected = gopro_tree(tmp_path)
    got, names = layouts.gopro_pairs(str(tmp_path), "train")
    assert names == ["GOPR0372_07_00/000047", "GOPR0372_07_00/000048",
                     "GOPR0374_11_00/000047", "GOPR0374_11_00/000048"]
    _check(pairs.pairs_dataset(got), expected["train"])
    ds, count, names = spec.evaluation(f"gopro:{tmp_path}")  # eval reads the test split
    assert count == 2 and names[0] == "GOPR0384_11_00/000047"
    _check(ds, expected["test"])
    train, val = spec.train_val(f"gopro:{tmp_path}", crop=8)  # validates on the test split
    _check(val, expected["test"])
    assert next(iter(train))[0].shape == (8, 8, 3)
    import shutil

    shutil.copytree(tmp_path / "train", tmp_path / "only" / "train")  # no test split: hold out
    train, val = spec.train_val(f"gopro:{tmp_path / 'only'}", crop=8)
    _check(val, expected["train"][:1])
    gamma, _ = layouts.gopro_pairs(str(tmp_path), "test", "blur_gamma")
    assert all(p[0].split(os.sep)[-2] == "blur_gamma" for p in gamma)
    ds, _, _ = spec.evaluation(f"gopro:{tmp_path},variant=blur_gamma,split=train")
    b, s = next(iter(ds))
    np.testing.assert_array_equal(_as_u8(b), 7)
    np.testing.assert_array_equal(_as_u8(s), expected["train"][0][1])


def test_gopro_flattened_layout(tmp_path):
    expected = gopro_tree(tmp_path, flat=True)
    got, names = layouts.gopro_pairs(str(tmp_path), "train")
    assert names[0] == "GOPR0372_07_00-000047"
    _check(pairs.pairs_dataset(got), expected["train"])
    with pytest.raises(layouts.LayoutError, match="without a blur_gamma/ folder"):
        layouts.gopro_pairs(str(tmp_path), "train", "blur_gamma")


def test_gopro_wrong_root_says_expected_and_found(capsys, tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "readme.txt").write_text("x")
    err = run_cli_error(capsys, ["prepare", f"gopro:{tmp_path}", "--out", str(tmp_path / "o")])
    assert "not a GoPro root" in err and "expected train/<sequence>/{blur,blur_gamma,sharp}" in err
    assert "found images/, readme.txt" in err


def test_gopro_unmatched_names_listed(capsys, tmp_path):
    gopro_tree(tmp_path)
    for k in range(5):
        _write(tmp_path / "train" / "GOPR0372_07_00" / "blur" / f"00010{k}.png", _rgb(k))
    err = run_cli_error(capsys, ["prepare", f"gopro:{tmp_path}", "--out", str(tmp_path / "o")])
    assert "5 blur image(s) have no sharp partner (000100, 000101, 000102, ...)" in err


def hide_tree(root):
    """HIDE_dataset: GT/, train/, test/test-close-ups/, test/test-long-shot/, train.txt, test.txt."""
    expected = {"train": [], "test": []}
    train = ["10fromGOPR0950", "11fromGOPR1096"]
    test = [("test-close-ups", "1fromGOPR0960"), ("test-long-shot", "3fromGOPR1086")]
    for k, name in enumerate(train):
        expected["train"].append(_pair(root, f"train/{name}.png", f"GT/{name}.png", k))
    for k, (sub, name) in enumerate(test):
        expected["test"].append(_pair(root, f"test/{sub}/{name}.png", f"GT/{name}.png", 10 + k))
    (root / "train.txt").write_text("".join(f"{n}.png\n" for n in train))
    (root / "test.txt").write_text("".join(f"{n}.png\n" for _, n in test))
    return expected


def test_hide_splits(tmp_path):
    expected = hide_tree(tmp_path)
    got, names = layouts.hide_pairs(str(tmp_path), "train")
    _check(pairs.pairs_dataset(got), expected["train"])
    ds, count, names = spec.evaluation(f"hide:{tmp_path}")
    assert names == ["test-close-ups/1fromGOPR0960", "test-long-shot/3fromGOPR1086"]
    _check(ds, expected["test"])
    _write(tmp_path / "train" / "99fromGOPR0000.png", _rgb(0))  # not in train.txt: not read
    assert len(layouts.hide_pairs(str(tmp_path), "train")[0]) == 2
    with open(tmp_path / "train.txt", "a") as f:
        f.write("98fromGOPR0000.png\n")
    with pytest.raises(layouts.LayoutError, match=r"train.txt: 1 listed image\(s\) not found in train/ \(98fromGOPR0000.png\)"):
        layouts.hide_pairs(str(tmp_path), "train")
    os.remove(tmp_path / "train.txt")  # without the lists: every image in the folders
    with pytest.raises(layouts.LayoutError, match=r"1 blur image\(s\) have no partner in GT/ \(99fromGOPR0000.png\)"):
        layouts.hide_pairs(str(tmp_path), "train")
    os.rename(tmp_path / "GT", tmp_path / "gt_old")
    with pytest.raises(layouts.LayoutError, match="not a HIDE root.*missing GT/"):
        layouts.hide_pairs(str(tmp_path), "test")


def realblur_tree(root, camera="J"):
    """RealBlur: list files in ROOT, `<gt> <blur>` per line."""
    folder = {"J": "RealBlur-J_ECC_IMCORR_centroid_itensity_ref", "R": "RealBlur-R_BM3D_ECC_IMCORR_centroid_itensity_ref"}[camera]
    expected = {}
    for split, scenes in (("train", ["scene003", "scene004"]), ("test", ["scene001"])):
        lines = []
        for k, scene in enumerate(scenes):
            gt, blur = f"{folder}/{scene}/gt/gt_{k + 1}.png", f"{folder}/{scene}/blur/blur_{k + 1}.png"
            expected.setdefault(split, []).append(_pair(root, blur, gt, k + len(split)))
            lines.append(f"{gt} {blur}")
        (root / f"RealBlur_{camera}_{split}_list.txt").write_text("\n".join(lines) + "\n")
    return expected


def test_realblur_from_list_files(tmp_path):
    expected = realblur_tree(tmp_path, "J")
    ds, count, names = spec.evaluation(f"realblur:{tmp_path},J")
    assert names == ["scene001/blur_1"]
    _check(ds, expected["test"])
    got, _ = layouts.realblur_pairs(str(tmp_path), "J", "train")
    _check(pairs.pairs_dataset(got), expected["train"])
    with pytest.raises(layouts.LayoutError, match="expected the list file RealBlur_R_test_list.txt"):
        spec.evaluation(f"realblur:{tmp_path},camera=R")
    with pytest.raises(spec.DataSpecError, match="needs the camera"):
        spec.parse_spec(f"realblur:{tmp_path}")


def kohler_tree(root, frames=3):
    """Köhler: Blurry<i>_<j>.png and Image<i>/Kernel<j>/GroundTruth<i>_<j>_<k>.png."""
    for i in range(1, 5):
        for j in range(1, 13):
            _write(root / f"Blurry{i}_{j}.png", np.full((H, W, 3), i * 16 + j, np.uint8))
            for k in range(1, frames + 1):
                _write(root / f"Image{i}" / f"Kernel{j}" / f"GroundTruth{i}_{j}_{k}.png",
                       np.full((H, W, 3), 100 + k, np.uint8))


def test_kohler_items_and_middle_frame(tmp_path):
    kohler_tree(tmp_path, frames=3)
    items = layouts.kohler_items(str(tmp_path))
    assert len(items) == 48 and items[0].name == "Blurry1_1" and items[-1].name == "Blurry4_12"
    assert [os.path.basename(f) for f in items[13].frames] == [f"GroundTruth2_2_{k}.png" for k in (1, 2, 3)]
    ds, count, names = spec.evaluation(f"kohler:{tmp_path}")
    b, s = next(iter(ds))
    assert count == 48 and names[1] == "Blurry1_2"
    np.testing.assert_array_equal(_as_u8(b), 17)
    np.testing.assert_array_equal(_as_u8(s), 102)  # the middle of 3 frames
    with pytest.raises(spec.DataSpecError, match="evaluation benchmark"):
        spec.train_val(f"kohler:{tmp_path}", crop=8)
    os.remove(tmp_path / "Image3" / "Kernel5" / "GroundTruth3_5_1.png")
    assert len(layouts.kohler_items(str(tmp_path))[2 * 12 + 4].frames) == 2


def test_list_file_csv_and_whitespace(tmp_path):
    expected = [_pair(tmp_path, f"data/b{k}.png", f"data/s{k}.png", k) for k in range(3)]
    (tmp_path / "pairs.csv").write_text("blur,sharp\ndata/b0.png,data/s0.png\n\n# comment\ndata/b1.png , data/s1.png\n")
    (tmp_path / "more.txt").write_text("data/b2.png data/s2.png\n")
    got, names = layouts.list_pairs(str(tmp_path / "pairs.csv"))
    assert names == ["data/b0", "data/b1"]
    _check(pairs.pairs_dataset(got), expected[:2])
    ds, count, _ = spec.evaluation(f"list:{tmp_path / 'more.txt'}")
    _check(ds, expected[2:])


@pytest.mark.parametrize("content, message", [
    ("", "empty list file"),
    ("# only a comment\n", "empty list file"),
    ("../outside.png,data/s0.png\n", "leaves the list file's folder"),
    ("/etc/passwd,data/s0.png\n", "leaves the list file's folder"),
    ("data/b0.png\n", "a line must hold two paths"),
    ("data/nope.png,data/s0.png\n", "1 listed file(s) do not exist (data/nope.png)"),
])
def test_list_file_errors(capsys, tmp_path, content, message):
    _pair(tmp_path, "data/b0.png", "data/s0.png", 0)
    (tmp_path / "l.txt").write_text(content)
    err = run_cli_error(capsys, ["prepare", f"list:{tmp_path / 'l.txt'}", "--out", str(tmp_path / "o")])
    assert message in err and "l.txt" in err


def test_bad_images_in_pairs(capsys, tmp_path):
    _pair(tmp_path, "blur/a.png", "sharp/a.png", 0)
    _write(tmp_path / "blur" / "b.png", np.zeros((H, W + 2, 3), np.uint8))
    _write(tmp_path / "sharp" / "b.png", np.zeros((H, W, 3), np.uint8))
    argv = ["prepare", f"pairs:{tmp_path}/blur,{tmp_path}/sharp", "--out", str(tmp_path / "o")]
    err = run_cli_error(capsys, argv)
    assert "b.png is 26x16 but its sharp partner" in err and "sharp/b.png is 24x16" in err
    _write(tmp_path / "blur" / "b.png", np.zeros((H, W, 3), np.uint8))
    data = (tmp_path / "sharp" / "b.png").read_bytes()
    (tmp_path / "sharp" / "b.png").write_bytes(data[: len(data) // 2])
    err = run_cli_error(capsys, argv)
    assert "sharp/b.png: truncated image file" in err or "sharp/b.png: not a readable image" in err
    (tmp_path / "sharp" / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    err = run_cli_error(capsys, argv)
    assert "sharp/b.png: not a readable image" in err


def test_gray_rgba_16bit_are_converted(tmp_path):
    rgb = _rgb(3)
    gray = rgb[..., 0]
    _write(tmp_path / "blur" / "g.png", gray)
    _write(tmp_path / "sharp" / "g.png", np.dstack([rgb[..., ::-1], np.full((H, W), 9, np.uint8)]))  # BGRA
    wide = rgb.astype(np.uint16) * 257 + 1  # 16-bit samples, not multiples of 257
    _write(tmp_path / "blur" / "w.png", wide[..., ::-1])
    _write(tmp_path / "sharp" / "w.png", rgb[..., ::-1])
    ds, _, names = spec.evaluation(f"pairs:{tmp_path}/blur,{tmp_path}/sharp")
    (gb, gs), (wb, ws) = list(ds.as_numpy_iterator())
    np.testing.assert_array_equal(_as_u8(gb), np.repeat(gray[..., None], 3, 2))
    np.testing.assert_array_equal(_as_u8(gs), rgb)  # alpha dropped
    np.testing.assert_allclose(wb, wide / 65535.0, atol=1e-7)


def test_spec_parsing_errors():
    assert str(spec.parse_spec("gopro:/d,variant=blur_gamma,split=test")) == "gopro:/d,split=test,variant=blur_gamma"
    assert spec.parse_spec("realblur:/d,R").option("camera") == "R"
    for bad, message in [
        ("gopro:", "needs a path"),
        ("gopro:/d,variant=gamma", "variant must be one of blur, blur_gamma; got 'gamma'"),
        ("hide:/d,variant=blur", "option 'variant' is unknown"),
        ("gopro:/d,test", "options are key=value"),
        ("imagenet:/d", "^`data` must be one of"),
    ]:
        with pytest.raises(spec.DataSpecError, match=message):
            spec.parse_spec(bad)


def test_training_pipeline_crops_pairs_identically(tmp_path):
    """Blur = 255 - sharp on disk, so after the random crop, flips,
    rotations and jitter-free pipeline the identity must still hold
    pixel for pixel: the same window and transform on both."""
    expected = [_pair(tmp_path, f"blur/{k}.png", f"sharp/{k}.png", k) for k in range(4)]
    got = pairs.folder_pairs(str(tmp_path / "blur"), str(tmp_path / "sharp"))
    for cache in (True, False):
        ds = pairs.pairs_dataset(got, crop=8, training=True, seed=1, cache=cache)
        for b, s in ds.take(12).as_numpy_iterator():
            assert b.shape == (8, 8, 3)
            np.testing.assert_array_equal(_as_u8(b), 255 - _as_u8(s))
    sharps = {e[1].tobytes() for e in expected}
    # the full-size crop of an untransformed pass is one of the written images (D4 off)
    ds = pairs.pairs_dataset(got, crop=None, training=True, seed=1, augment=False)
    assert all(_as_u8(s).tobytes() in sharps for _, s in ds.take(6).as_numpy_iterator())


def test_color_jitter_is_the_same_gain_on_both():
    from tfdeblur.datasets.augment import paired_color_jitter

    sharp = tf.random.uniform([8, 8, 3], 0.2, 0.6, seed=0)
    blur = sharp * 0.5
    b, s = paired_color_jitter(blur, sharp, 0.2)
    np.testing.assert_allclose(b.numpy(), 0.5 * s.numpy(), rtol=1e-6)
    gain = (s / sharp).numpy().reshape(-1, 3)
    assert np.ptp(gain, axis=0).max() < 1e-5 and (np.abs(np.log(gain)) <= 0.3 + 1e-6).all()


def test_shards_partition_the_pairs(tmp_path):
    for k in range(5):
        _pair(tmp_path, f"blur/{k}.png", f"sharp/{k}.png", k)
    got = pairs.folder_pairs(str(tmp_path / "blur"), str(tmp_path / "sharp"))
    seen = []
    for index in range(2):
        ds = pairs.pairs_dataset(got, training=False, shard=(2, index))
        seen += [_as_u8(s).tobytes() for _, s in ds.as_numpy_iterator()]
    assert sorted(seen) == sorted(_rgb(k).tobytes() for k in range(5))
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    from tfdeblur.datasets.stream import distributed_train_dataset, train_stream

    dist = distributed_train_dataset(strategy, f"pairs:{tmp_path}/blur,{tmp_path}/sharp", 8, 4)
    b, s = next(iter(dist))
    assert b.shape == (4, 8, 8, 3)
    # the same stream `train` reads (one definition: datasets/stream.py)

    b2, s2 = next(iter(train_stream(f"pairs:{tmp_path}/blur,{tmp_path}/sharp", 8, 0, 4)))
    np.testing.assert_array_equal(b.numpy(), b2.numpy())
    np.testing.assert_array_equal(s.numpy(), s2.numpy())


def test_tfrecord_round_trip_is_bit_exact(capsys, tmp_path):
    gopro_tree(tmp_path / "g")
    rgb = _rgb(5)
    _write(tmp_path / "g" / "train" / "GOPR0372_07_00" / "blur" / "000047.png", rgb[..., 0])  # gray
    _write(tmp_path / "g" / "train" / "GOPR0372_07_00" / "sharp" / "000047.png",
           (rgb.astype(np.uint16) * 250)[..., ::-1])  # 16-bit beside an 8-bit partner
    from tfdeblur.cli import main

    assert main(["prepare", f"gopro:{tmp_path / 'g'}", "--out", str(tmp_path / "rec"), "--shards", "3"]) == 0
    assert sorted(os.listdir(tmp_path / "rec")) == ["meta.json"] + [tfrecord.shard_name(i, 3) for i in range(3)]
    source, names = spec.spec_pairs(f"gopro:{tmp_path / 'g'}", "train")
    reference = dict(zip(names, pairs.pairs_dataset(source).as_numpy_iterator()))
    ds, count, rec_names = spec.evaluation(f"tfrecord:{tmp_path / 'rec'}")
    assert count == 4 and sorted(rec_names) == sorted(names)
    for name, (b, s) in zip(rec_names, ds.as_numpy_iterator()):
        assert b.dtype == np.float32
        assert b.tobytes() == reference[name][0].tobytes() and s.tobytes() == reference[name][1].tobytes()
    # pre-cut crops: 8x8 tiles of 16x24 images -> 6 per pair, same pixels
    assert main(["prepare", f"gopro:{tmp_path / 'g'}", "--out", str(tmp_path / "crops"), "--crop", "8"]) == 0
    ds, count, rec_names = spec.evaluation(f"tfrecord:{tmp_path / 'crops'}")
    assert count == 24 and rec_names[1] == "GOPR0372_07_00/000047@0,8"
    b, s = list(ds.take(2).as_numpy_iterator())[1]
    assert s.tobytes() == reference["GOPR0372_07_00/000047"][1][0:8, 8:16].tobytes()
    train, val = spec.train_val(f"tfrecord:{tmp_path / 'crops'}", crop=8)
    assert len(list(val)) == 3 and next(iter(train))[0].shape == (8, 8, 3)  # records 0, 10, 20 held out
    err = run_cli_error(capsys, ["prepare", f"gopro:{tmp_path / 'g'}", "--out", str(tmp_path / "rec")])
    assert "already exists" in err
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]


def test_decode_failure_inside_tf_data_becomes_one_line(tmp_path):
    """A file that passes the header checks but fails to decode mid-run
    surfaces as a TensorFlow error; the CLI turns it back into the
    ImageError's line (tfdeblur.io.image_error_inside)."""
    from tfdeblur.io import image_error_inside

    _pair(tmp_path, "blur/a.png", "sharp/a.png", 0)
    data = bytearray((tmp_path / "blur" / "a.png").read_bytes())
    for i in range(60, 200):  # corrupt the image data, keep header and end marker
        data[i] ^= 0x55
    (tmp_path / "blur" / "a.png").write_bytes(bytes(data))
    got = pairs.folder_pairs(str(tmp_path / "blur"), str(tmp_path / "sharp"))  # headers pass
    with pytest.raises(tf.errors.OpError) as info:
        list(pairs.pairs_dataset(got))
    message = image_error_inside(info.value)
    assert message == f"{tmp_path / 'blur' / 'a.png'}: cannot decode image (corrupt, truncated or not an image file)"
    assert image_error_inside(RuntimeError("ImageError: x")) is None
