"""Restoring at a smaller scale: the model card's sets under `Deblurrer(scales=...)`.

    python benchmarks/scale_inference.py mtwdn-photos [--scales 1 0.75 0.5 1,0.5 auto auto:mean]
        [--data synthetic levin cbsd68 gopro_pair gopro_dev] [--limit 16] [--ensemble N] [--json OUT.json]

A network trained on blur of up to ~30 px restores wider blur poorly; at
half the size that blur is half as wide. `Deblurrer(scales=(0.5,))`
restores the image downscaled (area), upscales the result (bicubic) and adds
back the detail the downscaling removed; `(1.0, 0.5)` averages that with
the full-size output (`deblur --scales 1,0.5`), weighted by how sharp each
came out (`Deblurrer(scale_fusion="sharpness")`, the default since
2026-11-28; a setting ending in `:mean` averages plainly, as before). This
scores each setting given to `--scales` (each one comma-separated list, or
`auto`: `inference.auto_scales`, then optionally `:mean` or `:sharpness`) on the card's sets with
the card's loaders and protocols (`benchmarks/model_card.py`), and prints
the gain over the blurry input and the median restoring time per image.
`--ensemble N` restores every scale with N flips/rotations (`deblur
--ensemble N`). `--per-image` also prints, per image, each setting's PSNR
minus the first setting's. `--data train_crops` adds a set none of the
card's: `TRAIN_CROPS` crops of 384 px from the *training* photos, blurred
by the photos stream's four photo modes in turn (the set `auto_scales`'s
size threshold was set on, beside the GoPro frames' size). `--data
gopro_dev_x2` adds the GoPro dev pairs upscaled 2x (bicubic, blurry and
sharp alike: 2560x1440 with blur twice as wide), a stand-in for photos
above the GoPro size, which the shared data has no pairs of; upscaled
content is smoother than a real photo of that size. `--data val_large`
(`val_large`): held-out validation photos of 600 px and more, blurred four
ways from small to wide (the set the sharpness weighting of the scales was
chosen on, with the GoPro dev pairs).
"""
import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import model_card  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_CROPS = 24
TRAIN_CROP_SIZE = 384
TRAIN_CROP_MODES = ("uniform", "camera", "wide", "shake")
EXTRA_SETS = ("train_crops", "gopro_dev_x2", "val_large")
VAL_LARGE_SIDE = 600  # inference.AUTO_MIN_SIDE: the smallest image `auto` restores at two scales
VAL_LARGE_KINDS = ("small_shake", "shake", "levin", "line")


def line_kernel(length, angle):
    """Straight motion of `length` px at `angle` (radians): points along the
    segment between the first and last of `length` pixel centres, each
    counted at its nearest pixel; an odd square array summing to 1."""
    import numpy as np

    n = length + 2 + (length + 1) % 2
    k = np.zeros((n, n), np.float32)
    c = (n - 1) / 2
    for t in np.linspace(-(length - 1) / 2, (length - 1) / 2, 4 * length):
        k[int(round(c + t * np.sin(angle))), int(round(c + t * np.cos(angle)))] += 1
    return k / k.sum()


def val_large(shared, limit=None):
    """(pairs, names): the held-out validation photos (the `photos:`
    stream's val split, never trained on) of at least `VAL_LARGE_SIDE` px on
    the shorter side, centre `VAL_LARGE_SIDE` px, each blurred in turn by
    `VAL_LARGE_KINDS` (camera shake up to 15 px, up to 31 px, one of
    Levin's kernels, straight motion of 3-32 px) in linear light, noise
    sigma 0.003, 8 bits; seed (11, photo, kind). Large photos with blur of
    every width: where `auto`'s second scale may only smooth."""
    import numpy as np

    from tfdeblur import io as tio
    from tfdeblur.datasets import blur_image, load_kernels
    from tfdeblur.datasets.kernels import random_kernel
    from tfdeblur.datasets.photos import PhotoBank

    levin = load_kernels(os.path.join(shared, "data", "kernels", "levin09.npz"))
    pairs, names = [], []
    for i, path in enumerate(PhotoBank(os.path.join(shared, "data", "sharp")).splits["val"]):
        img = tio.read_image(path, allow_conversion=True)
        if min(img.shape[:2]) < VAL_LARGE_SIDE:
            continue
        t, l = (img.shape[0] - VAL_LARGE_SIDE) // 2, (img.shape[1] - VAL_LARGE_SIDE) // 2
        sharp = np.ascontiguousarray(img[t:t + VAL_LARGE_SIDE, l:l + VAL_LARGE_SIDE])
        for j, kind in enumerate(VAL_LARGE_KINDS):
            if limit is not None and len(pairs) >= limit:
                return pairs, names
            rng = np.random.default_rng((11, i, j))
            if kind == "levin":
                kernel = levin[(3 * len(pairs) // len(VAL_LARGE_KINDS)) % len(levin)]
            elif kind == "line":
                kernel = line_kernel(int(rng.integers(3, 33)), rng.uniform(0, np.pi))
            else:
                kernel = random_kernel(rng, max_size=15 if kind == "small_shake" else 31, probs={"trajectory": 1.0},
                                       size_bias=1.0)
            blurry = blur_image(sharp, np.asarray(kernel, np.float32), rng=rng, noise_sigma=0.003, gamma=2.2,
                                quantize=True)
            pairs.append((blurry, sharp))
            names.append(f"{kind}_{os.path.splitext(os.path.basename(path))[0]}")
    return pairs, names


def train_crops(shared, limit=None):
    """(pairs, names): crops of the training split of shared/data/sharp,
    blurred by `TRAIN_CROP_MODES` in turn (photos stream seed (31, 777, i))."""
    from tfdeblur.datasets import photos

    bank = photos.photo_bank(os.path.join(shared, "data", "sharp"))
    n = TRAIN_CROPS if limit is None else min(limit, TRAIN_CROPS)
    modes = [TRAIN_CROP_MODES[i % len(TRAIN_CROP_MODES)] for i in range(n)]
    pairs = [photos.make_photo_pair(bank, (31, 777, i), TRAIN_CROP_SIZE, split="train", mode=m)
             for i, m in enumerate(modes)]
    return pairs, [f"{m}{i}" for i, m in enumerate(modes)]


def upscaled(pairs, factor=2):
    """The (blur, sharp) pairs upscaled `factor` times (bicubic, clipped to [0, 1])."""
    import cv2
    import numpy as np

    def up(img):
        img = np.asarray(img, np.float32)
        h, w = img.shape[:2]
        return np.clip(cv2.resize(img, (w * factor, h * factor), interpolation=cv2.INTER_CUBIC), 0.0, 1.0)

    for blur, sharp in pairs:
        yield up(blur), up(sharp)


def score(name, model, deblurrer, shared, limit):
    """(summary, rows) of one set: the card's, `train_crops` or `gopro_dev_x2`."""
    if name not in EXTRA_SETS:
        return model_card.evaluate_set(name, model, deblurrer, shared, limit, fed_as_stored=False)
    from tfdeblur.evaluate import evaluate_pairs

    if name == "gopro_dev_x2":
        dataset, names, _, _, _ = model_card.load_set("gopro_dev", model, deblurrer, shared, limit)
        pairs = upscaled(dataset)
    elif name == "val_large":
        pairs, names = val_large(shared, limit)
    else:
        pairs, names = train_crops(shared, limit)
    summary, rows, _ = evaluate_pairs(model, pairs, names=names, protocol="whole", deblurrer=deblurrer)
    summary = dict(summary, gain_db=summary["psnr"] - summary["input_psnr"])
    return summary, rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("name", help="shipped weights name or .keras file")
    p.add_argument("--scales", nargs="+", default=["1", "0.75", "0.5", "1,0.5"], metavar="S[,S...]",
                   help="settings to compare, each a comma-separated list of scales or auto")
    p.add_argument("--data", nargs="+", default=list(model_card.SETS), choices=model_card.SETS + EXTRA_SETS)
    p.add_argument("--per-image", action="store_true", help="also print each image's PSNR difference to the first setting")
    p.add_argument("--limit", type=int, default=16, help="at most N images per set (default 16)")
    p.add_argument("--shared", default=os.path.join(REPO, "..", "shared"))
    p.add_argument("--ensemble", type=int, default=1, choices=(1, 2, 4, 8), help="flips/rotations per scale")
    p.add_argument("--json", help="write every number here")
    args = p.parse_args(argv)
    if args.limit < 1:
        p.error(f"--limit must be a positive integer; got {args.limit}")

    from tfdeblur.inference import SCALE_FUSIONS, Deblurrer, check_scales, load_model

    settings, fusions, labels = [], [], []
    for text in args.scales:
        scales_text, _, fusion = text.partition(":")
        if fusion and fusion not in SCALE_FUSIONS:
            p.error(f"--scales: the fusion after ':' must be one of {', '.join(SCALE_FUSIONS)}; got {text!r}")
        try:
            scales = check_scales(scales_text if scales_text == "auto" else scales_text.split(","))
        except ValueError as e:
            p.error(f"--scales: {e}")
        settings.append(scales)
        fusions.append(fusion or "sharpness")
        labels.append((scales if scales == "auto" else ",".join(f"{v:g}" for v in scales)) + (f":{fusion}" if fusion else ""))
    model = load_model(args.name, arg="name")
    result = {"model": args.name, "limit": args.limit, "ensemble": args.ensemble, "sets": {}}
    print("| set | images | input | " + " | ".join(f"scales {label}" for label in labels) + " |")
    print("| --- | ---: | ---: |" + " ---: |" * len(labels))
    for name in args.data:
        rows, images = {}, {}
        for label, scales, fusion in zip(labels, settings, fusions):
            summary, per = score(name, model, Deblurrer(model, scales=scales, ensemble=args.ensemble,
                                                        scale_fusion=fusion), args.shared, args.limit)
            rows[label] = {k: summary[k] for k in ("psnr", "ssim", "gain_db", "restore_seconds_median")}
            images[label] = [(r["name"], r["psnr"]) for r in per]
        result["sets"][name] = {"images": summary["images"], "input_psnr": summary["input_psnr"], "scales": rows,
                                "per_image_psnr": {label: dict(v) for label, v in images.items()}}
        cells = " | ".join(f"{r['gain_db']:+.2f} ({r['restore_seconds_median']:.2f} s)" for r in rows.values())
        print(f"| {name} | {summary['images']} | {summary['input_psnr']:.2f} | {cells} |", flush=True)
        if args.per_image:
            first = images[labels[0]]
            for i, (image, base) in enumerate(first):
                diffs = " ".join(f"{label} {images[label][i][1] - base:+.2f}" for label in labels[1:])
                print(f"    {name} {image}: {labels[0]} {base:.2f} dB; {diffs}", flush=True)
    if args.json:
        from tfdeblur.io import atomic_write

        atomic_write(args.json, json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
