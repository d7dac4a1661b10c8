"""The benchmarks' folder layouts -> lists of (blur_path, sharp_path).

Each function reads a dataset's folders as its authors distribute them and
returns sorted path pairs plus a short name per pair; `pairs.check_pairs`
then checks the files and `pairs.pairs_dataset` turns them into tf.data.
A root that matches no known layout raises `LayoutError`, one line that
says what was expected and what was found.

Layouts (as distributed; the tests build these trees in miniature):

GoPro (Nah et al., "Deep multi-scale CNN for dynamic scene deblurring",
CVPR 2017; `GOPRO_Large.zip`), 2103 train / 1111 test pairs, 1280x720::

    ROOT/train/GOPR0372_07_00/blur/000047.png        (and test/...)
                             /blur_gamma/000047.png
                             /sharp/000047.png

`blur` averages the high-speed frames in linear light (what modern tables
report), `blur_gamma` averages them after a gamma curve (what the DeepDeblur
paper trained and reported on). Also read: the common flattened copy
`ROOT/train/{blur,sharp}/*.png` (names as the flattening tool left them,
matched by name); `variant=blur_gamma` then needs `ROOT/train/blur_gamma/`.

HIDE (Shen et al., "Human-aware motion deblurring", ICCV 2019;
`HIDE_dataset`), 6397 train / 2025 test pairs::

    ROOT/GT/<name>.png                       sharp images of both splits
    ROOT/train/<name>.png                    blurry, train split
    ROOT/test/test-close-ups/<name>.png      blurry, test split (close-ups)
    ROOT/test/test-long-shot/<name>.png      blurry, test split (long shots)

    ROOT/train.txt, ROOT/test.txt            file names of each split, one per line

A blurry image's sharp partner is the file of the same name in `GT/`. When
`train.txt`/`test.txt` are present the split is the listed names (each
must be found in the split's folders); otherwise every image in them.

RealBlur (Rim et al., "Real-world blur dataset for learning and
benchmarking deblurring algorithms", ECCV 2020), 3758 train / 980 test pairs
per camera; the official list files sit in ROOT, one pair per line,
`<gt path> <blur path>` (ground truth first) relative to ROOT::

    ROOT/RealBlur_J_train_list.txt    RealBlur_J_test_list.txt   (R likewise)
    ROOT/RealBlur-J_ECC_IMCORR_centroid_itensity_ref/scene230/gt/gt_1.png
                                                    /scene230/blur/blur_1.png
    ROOT/RealBlur-R_BM3D_ECC_IMCORR_centroid_itensity_ref/...

Köhler (Köhler et al., "Recording and playback of camera shake:
benchmarking blind deconvolution with a real-world database", ECCV 2012):
4 printed images x 12 recorded camera shakes = 48 blurry photos, each with
the sharp frames recorded along its shake (198 or 199 per image)::

    ROOT/Blurry1_1.png ... ROOT/Blurry4_12.png     (or ROOT/BlurryImages/...)
    ROOT/Image1/Kernel1/GroundTruth1_1_1.png ... GroundTruth1_1_199.png

List files (`list:FILE`): one pair per line, `blur,sharp` (CSV) or
`blur sharp` (whitespace), paths relative to the file's folder; blank lines,
`#` comments and a `blur,sharp` header are skipped. A path that leaves the
file's folder (`..`, absolute paths elsewhere) is refused.
"""
import csv
import dataclasses
import os
import re

from tfdeblur.io import ImageError, list_images, match_pairs

GOPRO_SPLITS = ("train", "test")
GOPRO_VARIANTS = ("blur", "blur_gamma")
HIDE_TEST_FOLDERS = ("test-close-ups", "test-long-shot")
REALBLUR_CAMERAS = ("J", "R")


class LayoutError(ImageError):
    """A dataset root or list file that does not have the expected layout."""


def _found(path, limit=6):
    """`a/, b.png, ... (N entries)` for error messages."""
    try:
        entries = sorted(os.listdir(path))
    except OSError:
        return "nothing (not a readable directory)"
    if not entries:
        return "an empty directory"
    shown = [e + ("/" if os.path.isdir(os.path.join(path, e)) else "") for e in entries[:limit]]
    more = f", ... ({len(entries)} entries)" if len(entries) > limit else ""
    return ", ".join(shown) + more


def _first(names, n=3):
    return ", ".join(names[:n]) + (", ..." if len(names) > n else "")


def _require_dir(path, what):
    if not os.path.isdir(path):
        raise LayoutError(f"{path}: no such directory ({what})")


def _check_choice(name, value, choices):
    if value not in choices:
        raise LayoutError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


def _stem(path):
    return os.path.splitext(os.path.basename(path))[0]


# --------------------------------------------------------------------- GoPro

def gopro_pairs(root, split="train", variant="blur"):
    """(pairs, names) of GoPro's `split` in `variant` (see module docstring).

    Names are `<sequence>/<frame>` in the per-sequence layout and the file
    stem in the flattened one.
    """
    _check_choice("split", split, GOPRO_SPLITS)
    _check_choice("variant", variant, GOPRO_VARIANTS)
    _require_dir(root, "GoPro root")
    base = os.path.join(root, split)
    expected = (
        f"expected {split}/<sequence>/{{blur,blur_gamma,sharp}}/*.png (GOPRO_Large) "
        f"or {split}/{{blur,sharp}}/*.png (flattened)"
    )
    if not os.path.isdir(base):
        raise LayoutError(f"{root}: not a GoPro root, {expected}; found {_found(root)}")
    if os.path.isdir(os.path.join(base, "sharp")):  # flattened
        blur_dir = os.path.join(base, variant)
        if not os.path.isdir(blur_dir):
            raise LayoutError(
                f"{base}: flattened GoPro layout without a {variant}/ folder; found {_found(base)}"
            )
        pairs = match_pairs(blur_dir, os.path.join(base, "sharp"))
        return pairs, [_stem(b) for b, _ in pairs]
    sequences = sorted(
        d for d in os.listdir(base)
        if os.path.isdir(os.path.join(base, d, "sharp")) and not d.startswith(".")
    )
    if not sequences:
        raise LayoutError(f"{root}: not a GoPro root, {expected}; found {split}/ holding {_found(base)}")
    pairs, names = [], []
    for seq in sequences:
        seq_dir = os.path.join(base, seq)
        blur_dir = os.path.join(seq_dir, variant)
        if not os.path.isdir(blur_dir):
            raise LayoutError(f"{seq_dir}: GoPro sequence without a {variant}/ folder; found {_found(seq_dir)}")
        for b, s in match_pairs(blur_dir, os.path.join(seq_dir, "sharp")):
            pairs.append((b, s))
            names.append(f"{seq}/{_stem(b)}")
    return pairs, names


# ---------------------------------------------------------------------- HIDE

def hide_pairs(root, split="train"):
    """(pairs, names) of HIDE's `split`: blurry images of `train/` or of
    `test/test-close-ups` + `test/test-long-shot`, partners in `GT/`.

    Test names keep their subset (`test-long-shot/<name>`), the split
    published tables report separately as well as together.
    """
    _check_choice("split", split, GOPRO_SPLITS)
    _require_dir(root, "HIDE root")
    gt = os.path.join(root, "GT")
    folders = [("", os.path.join(root, "train"))] if split == "train" else [
        (f"{sub}/", os.path.join(root, "test", sub)) for sub in HIDE_TEST_FOLDERS
    ]
    missing = [path for _, path in folders + [("", gt)] if not os.path.isdir(path)]
    if missing:
        raise LayoutError(
            f"{root}: not a HIDE root, expected GT/, train/ and test/{{{','.join(HIDE_TEST_FOLDERS)}}}/; "
            f"missing {os.path.relpath(missing[0], root)}/; found {_found(root)}"
        )
    sharp = {_stem(p): p for p in list_images(gt)}
    listed = _hide_list(root, split)
    pairs, names, unmatched = [], [], []
    for prefix, folder in folders:
        for b in list_images(folder):
            if listed is not None:
                if os.path.basename(b) not in listed:
                    continue
                listed.discard(os.path.basename(b))
            s = sharp.get(_stem(b))
            if s is None:
                unmatched.append(os.path.basename(b))
                continue
            pairs.append((b, s))
            names.append(prefix + _stem(b))
    if listed:
        raise LayoutError(
            f"{os.path.join(root, split + '.txt')}: {len(listed)} listed image(s) not found in "
            f"{split}/ ({_first(sorted(listed))})"
        )
    if unmatched:
        raise LayoutError(
            f"{root}: {len(unmatched)} blur image(s) have no partner in GT/ ({_first(unmatched)})"
        )
    if not pairs:
        raise LayoutError(f"{root}: no blurry images in {', '.join(os.path.relpath(f, root) for _, f in folders)}")
    return pairs, names


def _hide_list(root, split):
    """The set of file names in ROOT/<split>.txt, or None without the file."""
    path = os.path.join(root, f"{split}.txt")
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        names = {os.path.basename(line.strip()) for line in f if line.strip()}
    if not names:
        raise LayoutError(f"{path}: empty list file (no image names)")
    return names


# ------------------------------------------------------------------ RealBlur

def realblur_list_file(root, camera, split):
    return os.path.join(root, f"RealBlur_{camera}_{split}_list.txt")


def realblur_pairs(root, camera, split="train"):
    """(pairs, names) from the official `RealBlur_{J,R}_{train,test}_list.txt`.

    Each line is `<gt> <blur>` relative to ROOT (ground truth first); names
    are `<scene>/<blur stem>`. The test-time alignment step of the RealBlur
    protocol is not here: it belongs to evaluation (tfdeblur/protocols.py).
    """
    _check_choice("camera", camera, REALBLUR_CAMERAS)
    _check_choice("split", split, GOPRO_SPLITS)
    _require_dir(root, "RealBlur root")
    path = realblur_list_file(root, camera, split)
    if not os.path.isfile(path):
        raise LayoutError(
            f"{root}: not a RealBlur root, expected the list file {os.path.basename(path)}; found {_found(root)}"
        )
    rows = _read_rows(path, header=None)
    pairs = [(b, s) for s, b in _resolve_rows(path, rows)]  # the file lists gt first
    names = [f"{os.path.basename(os.path.dirname(os.path.dirname(b)))}/{_stem(b)}" for b, _ in pairs]
    return pairs, names


# -------------------------------------------------------------------- Köhler

@dataclasses.dataclass(frozen=True)
class KohlerItem:
    """One of Köhler's 48 blurry photos and its recorded sharp frames."""

    name: str  # "Blurry<image>_<kernel>"
    image: int  # printed image 1-4
    kernel: int  # recorded camera shake 1-12
    blur: str
    frames: tuple  # sharp frame paths in recording order

    @property
    def middle_frame(self):
        """The frame half-way along the shake (1-based `(n + 1) // 2`)."""
        return self.frames[(len(self.frames) + 1) // 2 - 1]


_KOHLER_BLURRY = re.compile(r"^Blurry(\d+)_(\d+)\.png$", re.IGNORECASE)


def kohler_items(root):
    """The Köhler benchmark's items, sorted by (image, kernel).

    Benchmark protocol (Köhler et al. 2012, sec. 5): a deblurred image is
    not compared with one fixed frame. For each blurry photo, every
    recorded sharp frame is a valid ground truth; the score is the best
    PSNR over those frames, each after the intensity scaling and the
    translation (alignment) that maximise it. `tfdeblur.protocols` (owned
    by the evaluation code) implements that; this loader only exposes the
    frames. `kohler_pairs` pairs each photo with its middle frame, a
    stand-in for quick looks, not the benchmark's number.
    """
    _require_dir(root, "Köhler root")
    folder = root
    if not any(_KOHLER_BLURRY.match(n) for n in os.listdir(root)) and os.path.isdir(
        os.path.join(root, "BlurryImages")
    ):
        folder = os.path.join(root, "BlurryImages")
    blurry = []
    for n in os.listdir(folder):
        m = _KOHLER_BLURRY.match(n)
        if m:
            blurry.append((int(m.group(1)), int(m.group(2)), os.path.join(folder, n)))
    if not blurry:
        raise LayoutError(
            f"{root}: not a Köhler root, expected Blurry<i>_<j>.png and Image<i>/Kernel<j>/GroundTruth<i>_<j>_<k>.png; "
            f"found {_found(root)}"
        )
    items = []
    for i, j, path in sorted(blurry):
        frame_dir = os.path.join(root, f"Image{i}", f"Kernel{j}")
        pattern = re.compile(rf"^GroundTruth{i}_{j}_(\d+)\.png$", re.IGNORECASE)
        frames = []
        if os.path.isdir(frame_dir):
            for n in os.listdir(frame_dir):
                m = pattern.match(n)
                if m:
                    frames.append((int(m.group(1)), os.path.join(frame_dir, n)))
        if not frames:
            raise LayoutError(
                f"{path}: no sharp frames {os.path.relpath(frame_dir, root)}/GroundTruth{i}_{j}_<k>.png"
            )
        items.append(KohlerItem(f"Blurry{i}_{j}", i, j, path, tuple(p for _, p in sorted(frames))))
    return items


def kohler_pairs(root):
    """(pairs, names): each blurry photo with its middle sharp frame (see `kohler_items`)."""
    items = kohler_items(root)
    return [(it.blur, it.middle_frame) for it in items], [it.name for it in items]


# ---------------------------------------------------------------- list files

def _read_rows(path, header=("blur", "sharp")):
    """[(line_number, [fields])] of a list file: CSV if the line has a comma,
    whitespace-separated otherwise; blank and `#` lines skipped."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise LayoutError(f"{path}: cannot read list file ({e.__class__.__name__})") from e
    rows = []
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        fields = next(csv.reader([text])) if "," in text else text.split()
        fields = [x.strip() for x in fields]
        if header and not rows and [x.lower() for x in fields[:2]] == list(header):
            continue
        rows.append((number, fields))
    if not rows:
        raise LayoutError(f"{path}: empty list file (no pairs)")
    return rows


def _resolve_rows(path, rows):
    """Paths of two-column rows, relative to the list file's folder; refuses
    paths that leave it and files that do not exist (first few named)."""
    folder = os.path.dirname(os.path.abspath(path))
    pairs, missing = [], []
    for number, fields in rows:
        if len(fields) < 2 or not fields[0] or not fields[1]:
            raise LayoutError(f"{path}:{number}: a line must hold two paths (blur,sharp); got {','.join(fields)!r}")
        resolved = []
        for field in fields[:2]:
            full = os.path.normpath(os.path.join(folder, os.path.expanduser(field)))
            if os.path.commonpath([folder, full]) != folder:
                raise LayoutError(f"{path}:{number}: path {field!r} leaves the list file's folder {folder}")
            if not os.path.isfile(full):
                missing.append(field)
            resolved.append(full)
        pairs.append(tuple(resolved))
    if missing:
        raise LayoutError(f"{path}: {len(missing)} listed file(s) do not exist ({_first(missing)})")
    return pairs


def list_pairs(path):
    """(pairs, names) of a `list:FILE` (see module docstring); names are the
    blur paths as written, without extension."""
    if not os.path.isfile(path):
        raise LayoutError(f"{path}: no such list file")
    rows = _read_rows(path)
    pairs = _resolve_rows(path, rows)
    names = [os.path.splitext(fields[0])[0] for _, fields in rows]
    return pairs, names
