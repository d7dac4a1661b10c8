"""`python -m tfdeblur.weights pack ...` (see `tfdeblur/weights/pack.py`)."""
import argparse
import os
import sys


def _parser():
    p = argparse.ArgumentParser(prog="python -m tfdeblur.weights", description="Pack trained weights for shipping.")
    sub = p.add_subparsers(dest="command", required=True)
    k = sub.add_parser("pack", help="a .keras model -> NAME.weights.npz + NAME.json (weights only, fp16 by default)")
    k.add_argument("--model", required=True, help="a .keras file written by `train` (or shipped weights to repack)")
    k.add_argument("--name", required=True, help="weights name, '<network preset>-<data>[-<variant>]', e.g. mtwdn-photos")
    k.add_argument("--dtype", default="fp16", choices=["fp16", "bf16", "fp32"], help="stored precision (default fp16)")
    k.add_argument("--summary", metavar="FILE.json", help="training summary for the model card (data, recipe, steps, hardware, wall time, metrics)")
    k.add_argument("--out", metavar="DIR", help="output folder (default: the package's weights folder, or $TFDEBLUR_WEIGHTS_DIR)")
    k.add_argument("--preset", metavar="NET", help="network preset, when the model's name is not one (default: the model's name)")
    k.add_argument("--overwrite", action="store_true", help="replace existing files of that name")
    return p


def main(argv=None):
    parser = _parser()
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from tfdeblur.errors import first_line, flags, flags_for, print_error
    from tfdeblur.weights.pack import pack

    names = flags(parser, "pack")
    names["model_path"] = names["model"]  # pack(model_path=...) is the --model option
    try:
        pack(args.model, args.name, dtype=args.dtype, summary=args.summary, out=args.out,
             overwrite=args.overwrite, preset=args.preset, log=lambda line: print(flags_for(line, names)))
    except (ValueError, OSError) as e:
        return print_error(first_line(e), names)
    return 0


if __name__ == "__main__":
    sys.exit(main())
