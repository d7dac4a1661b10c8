"""Restoring at a smaller scale: the model card's sets under `Deblurrer(scales=...)`.

    python benchmarks/scale_inference.py mtwdn-photos [--scales 1 0.75 0.5 1,0.5]
        [--data synthetic levin cbsd68 gopro_pair gopro_dev] [--limit 16] [--ensemble N] [--json OUT.json]

A network trained on blur of up to ~30 px restores wider blur poorly; at
half the size that blur is half as wide. `Deblurrer(scales=(0.5,))`
restores the image downscaled (area), upscales the result (bicubic) and adds
back the detail the downscaling removed; `(1.0, 0.5)` averages that with
the full-size output (`deblur --scales 1,0.5`). This scores each setting
given to `--scales` (each one comma-separated list, or `auto`: `inference.auto_scales`) on the card's sets with
the card's loaders and protocols (`benchmarks/model_card.py`), and prints
the gain over the blurry input and the median restoring time per image.
`--ensemble N` restores every scale with N flips/rotations (`deblur
--ensemble N`).
"""
import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import model_card  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("name", help="shipped weights name or .keras file")
    p.add_argument("--scales", nargs="+", default=["1", "0.75", "0.5", "1,0.5"], metavar="S[,S...]",
                   help="settings to compare, each a comma-separated list of scales or auto")
    p.add_argument("--data", nargs="+", default=list(model_card.SETS), choices=model_card.SETS)
    p.add_argument("--limit", type=int, default=16, help="at most N images per set (default 16)")
    p.add_argument("--shared", default=os.path.join(REPO, "..", "shared"))
    p.add_argument("--ensemble", type=int, default=1, choices=(1, 2, 4, 8), help="flips/rotations per scale")
    p.add_argument("--json", help="write every number here")
    args = p.parse_args(argv)
    if args.limit < 1:
        p.error(f"--limit must be a positive integer; got {args.limit}")

    from tfdeblur.inference import Deblurrer, check_scales, load_model

    try:
        settings = [check_scales(text if text == "auto" else text.split(",")) for text in args.scales]
    except ValueError as e:
        p.error(f"--scales: {e}")
    model = load_model(args.name, arg="name")
    labels = [s if s == "auto" else ",".join(f"{v:g}" for v in s) for s in settings]
    result = {"model": args.name, "limit": args.limit, "ensemble": args.ensemble, "sets": {}}
    print("| set | images | input | " + " | ".join(f"scales {label}" for label in labels) + " |")
    print("| --- | ---: | ---: |" + " ---: |" * len(labels))
    for name in args.data:
        rows = {}
        for label, scales in zip(labels, settings):
            summary, _ = model_card.evaluate_set(name, model, Deblurrer(model, scales=scales, ensemble=args.ensemble),
                                                 args.shared,
                                                 args.limit, fed_as_stored=False)
            rows[label] = {k: summary[k] for k in ("psnr", "ssim", "gain_db", "restore_seconds_median")}
        result["sets"][name] = {"images": summary["images"], "input_psnr": summary["input_psnr"], "scales": rows}
        cells = " | ".join(f"{r['gain_db']:+.2f} ({r['restore_seconds_median']:.2f} s)" for r in rows.values())
        print(f"| {name} | {summary['images']} | {summary['input_psnr']:.2f} | {cells} |", flush=True)
    if args.json:
        from tfdeblur.io import atomic_write

        atomic_write(args.json, json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
