"""Command line: `python cli.py` (from a checkout) or `tfdeblur` (installed):
train, eval, prepare, deblur, export, bench, list (`tfdeblur COMMAND --help`).

Each command parses its options, calls the library function that does the
work, and prints; the work lives in its module (docs/architecture.md).

Bad input ends with a one-line `error: ...` on stderr and exit code 2; the
library's `crop` (`tfdeblur.errors.arg`) shows as --crop (`errors.flags`).
"""
import argparse
import sys

from tfdeblur.console import positive_int as _positive_int
from tfdeblur.errors import EXIT_USAGE, arg


MODEL_HELP = "a .keras file written by `train`, or shipped weights by name, e.g. mtwdn-photos (see `tfdeblur list`)"
ANY_MODEL_HELP = MODEL_HELP + ", or an export: a SavedModel folder or .tflite file"


def _parser():
    from tfdeblur import __version__
    from tfdeblur.datasets.spec import HELP as DATA_HELP

    p = argparse.ArgumentParser(prog="tfdeblur", description="Single-image motion deblurring (TF2/Keras 3).")
    p.add_argument("--version", action="version", version=f"tfdeblur {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    # Train options default to None (flags to False): TrainConfig's defaults
    # apply, and with --config only the options given replace the file's values.
    t = sub.add_parser("train", help="train a network")
    t.add_argument("net", nargs="?", help="network preset, e.g. mtwdn (see `tfdeblur list`); optional with --config")
    t.add_argument("--config", metavar="RUN/config.json", help="repeat or fork the run a config.json records (its values; "
                   "the options given here replace them)")
    t.add_argument("--data", help=DATA_HELP + " (default synthetic; with --phase, the phase's default)")
    t.add_argument("--phase", choices=["1", "2", "3", "all"], help="phased training (glbdn, glbdn_db): phase 1 global branch on "
                   "globalblur, 2 local branch on dynamic, 3 the rest end to end with the global branch frozen; "
                   "each phase in OUT/phaseN, starting from the previous one")
    t.add_argument("--from", dest="init_from", metavar="FILE.keras", help="weights to start from (with --phase: instead of the previous phase's)")
    budget = t.add_mutually_exclusive_group()
    budget.add_argument("--steps", type=_positive_int, help="optimizer steps (default 1000)")
    budget.add_argument("--epochs", type=_positive_int, help="epochs of --steps-per-epoch steps")
    t.add_argument("--steps-per-epoch", type=_positive_int, help="checkpoint/validation interval (default 100)")
    t.add_argument("--batch-size", type=_positive_int, help="global batch (default 4; the recipe's with --paper)")
    t.add_argument("--crop", type=_positive_int, help="square training crop, pixels (default 128; the recipe's with --paper)")
    t.add_argument("--out", help="run folder (default runs/NET)")
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint (give the same options as the run)")
    t.add_argument("--take-over-lock", action="store_true", help="take over --out's train.lock when its holder (on another host) is known to be dead")
    t.add_argument("--keep-checkpoints", type=_positive_int, metavar="K", help="keep the last K checkpoints (default 3)")
    t.add_argument("--stop-at", type=_positive_int, metavar="STEP", help="end this session after the checkpoint of STEP (a multiple of --steps-per-epoch); --resume continues")
    t.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], help="auto (default): bf16 on AMX CPUs and GPUs of compute capability >= 8, measured (cached) on AVX512-BF16 CPUs without AMX, else fp32 (never fp16); fp16: loss scaling, for GPUs")
    t.add_argument("--jit", action="store_true", help="XLA-compile the training step (off by default)")
    t.add_argument("--devices", help="comma-separated devices for MirroredStrategy, e.g. /gpu:0,/gpu:1 (default: all GPUs when more than one)")
    t.add_argument("--learning-rate", type=float, help="initial learning rate (default 3e-4 for the quick run, or the recipe's \"quick\" rate: glbdn 1e-4; the paper's with --paper)")
    t.add_argument("--recipe", dest="recipe_name", metavar="NAME", help="a named recipe instead of the network's (e.g. mtwdn_photos, the released model's); its crop, batch size and learning rate are the defaults")
    t.add_argument("--paper", action="store_true", help="the paper recipe's crop, batch size and learning rate (full-length runs)")
    t.add_argument("--seed", type=int, help="default 0")
    t.add_argument("--jitter", type=float, metavar="S", help="brightness/colour gain exp(U(-S,S)) * exp(U(-S/2,S/2)) per channel, "
                   "the same on blur and sharp, drawn per sample from --seed (resume stays exact); default 0 (off), e.g. 0.1")
    t.add_argument("--val-images", type=_positive_int, help="use only the first N validation images")
    t.add_argument("--vgg-weights", metavar="FILE", help="weights of keras.applications.VGG16(include_top=False) for a perceptual loss (fddn; see tfdeblur/perceptual.py)")

    e = sub.add_parser("eval", help="PSNR/SSIM of a trained model on (blur, sharp) pairs")
    e.add_argument("--model", required=True, help=ANY_MODEL_HELP)
    e.add_argument("--data", required=True, help=DATA_HELP + "; eval reads the test split unless split= is given")
    e.add_argument("--json", dest="json_path", help="write the summary as JSON to this file")
    e.add_argument("--csv", dest="csv_path", help="write the per-image scores as CSV to this file")
    e.add_argument("--protocol", help="scoring protocol: whole (= gopro, hide; default), realblur (aligned, masked), kohler (best sharp frame), "
                   "levin (best integer shift within 3 px); see tfdeblur/protocols.py")
    _add_inference_options(e)

    r = sub.add_parser("prepare", help="write a --data spec as sharded TFRecords (read back with tfrecord:DIR)")
    r.add_argument("data", metavar="SPEC", help=DATA_HELP + "; prepare reads the train split unless split= is given")
    r.add_argument("--out", required=True, help="output folder (written atomically)")
    r.add_argument("--shards", type=_positive_int, default=1, help="number of TFRecord files (default 1)")
    r.add_argument("--crop", type=_positive_int, help="store non-overlapping NxN tiles instead of whole images")
    r.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    r.add_argument("--count", type=_positive_int, help="generated specs (synthetic, globalblur, dynamic): number of pairs to write (required)")
    r.add_argument("--seed", type=int, help="generated specs: the stream's seed (default 0); pair i is the generator's train element i")
    r.add_argument("--size", type=_positive_int, help="synthetic, dynamic: image side, pixels (default 256); globalblur keeps its images' size")

    d = sub.add_parser("deblur", help="restore image files, folders or globs")
    d.add_argument("--model", help=ANY_MODEL_HELP + "; default: the best shipped weights")
    d.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders (their images) or glob patterns")
    d.add_argument("--out", required=True, help="output folder (NAME.png or NAME.jpg per --format; the input's bit depth in PNG)")
    # Checked by deblur_files.photo_options, not by argparse, so a bad value is one `error:` line.
    d.add_argument("--format", default="same", metavar="png|jpg|same", help="output format: png (lossless; 8 or 16 bits, alpha), "
                   "jpg (8-bit), same (default: jpg for JPEG inputs, png for the others); EXIF and the ICC profile are carried")
    d.add_argument("--quality", metavar="Q", help="JPEG quality, 1-100 (default 95: within 0.2 dB of the restored image at half the bytes of 100)")
    d.add_argument("--overwrite", action="store_true", help="replace existing output files")
    d.add_argument("--out-in-input", action="store_true", help="allow an --out that is, or is inside, an input folder "
                   "(an input file is never replaced)")
    _add_inference_options(d, scales="auto", precision="auto", uniform_blur="auto")
    d.add_argument("--compare", action="store_true", help="also write OUT/compare/NAME.png: input | output (| ground truth)")
    d.add_argument("--gt", metavar="DIR", help="ground-truth folder for --compare, matched by file name")

    x = sub.add_parser("export", help="SavedModel for TF Serving or TFLite/LiteRT for devices (docs/serving.md)")
    x.add_argument("--model", required=True, help=MODEL_HELP)
    x.add_argument("--format", required=True, choices=["saved_model", "tflite"])
    x.add_argument("--out", required=True, help="SavedModel folder (for TF Serving a version folder, e.g. models/mtwdn/1) or .tflite file")
    x.add_argument("--quantize", default="none", choices=["none", "fp16", "dynamic", "int8"], help="tflite only")
    x.add_argument("--calibration-images", type=_positive_int, help="int8: images calibrating it (default 16, at least 8)")
    x.add_argument("--calibration-data", metavar="DIR", help="int8: calibrate on your own photos in DIR (centre crops; default: synthetic blurry images)")
    x.add_argument("--input-size", metavar="HxW", help="a static graph for HxW images (multiples of the network's size multiple; "
                   "no padding ops; what GPU/NPU delegates and the LiteRT benchmark need); default: any size")
    x.add_argument("--integer-io", nargs="?", const="uint8", choices=["uint8", "int8"], help="int8: deblur_float takes and returns quantized uint8 (default) or int8 tensors, for accelerators (docs/serving.md)")
    x.add_argument("--keep-float", metavar="LIST", help="int8: ops left in float32, comma-separated TFLite op types "
                   "(ADD) and layer-name prefixes (enc2_down); default: the network's own list (msfs: ADD,enc2_down,"
                   "enc2_res; others none); 'none' for a fully integer model (docs/serving.md)")
    x.add_argument("--overwrite", action="store_true", help="replace an existing --out")

    b = sub.add_parser("bench", help="parameters, FLOPs, latency, memory and conv-ceiling efficiency per network")
    b.add_argument("nets", nargs="+", metavar="NET", help="network presets (see `tfdeblur list`)")
    b.add_argument("--precision", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    b.add_argument("--repeats", type=_positive_int, default=5, help="timed runs after one warm-up (median reported)")
    b.add_argument("--out", help="also write the markdown table to this file")

    sub.add_parser("list", help="list the registered networks and the shipped weights")
    # Accepted before or after the command (`tfdeblur -v list`, `tfdeblur list -v`).
    verbose_help = "show TensorFlow's start-up logs and tfdeblur's debug lines"
    p.add_argument("-v", "--verbose", action="store_true", help=verbose_help)
    for command in sub.choices.values():
        command.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=verbose_help)
    return p


def _ensemble_size(text):
    from tfdeblur.inference import ENSEMBLES

    if text.isdigit() and int(text) in ENSEMBLES:
        return int(text)
    raise argparse.ArgumentTypeError(f"expected the number of flips/rotations to average, one of "
                                     f"{', '.join(map(str, sorted(ENSEMBLES)))}; got {text!r} (a file name? put "
                                     f"it before --ensemble)")


def _scales(text):
    from tfdeblur.inference import check_scales

    try:
        return check_scales(text if text.strip().lower() == "auto" else [v for v in text.split(",")])
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected distinct scales in (0, 1] separated by commas, e.g. 1,0.5, or auto; "
                                         f"got {text!r}") from None


# --uniform-blur's values -> Deblurrer(kernel_refine=...)
UNIFORM_BLUR = {"auto": "auto", "on": True, "off": False}


def _add_inference_options(p, scales=(1.0,), precision="fp32", uniform_blur="off"):
    """Options of `tfdeblur.inference.Deblurrer` (tiling, self-ensemble, scales,
    precision, kernel refinement; `scales`, `precision` and `uniform_blur`:
    the defaults, "auto" for `deblur`, 1, fp32 and off for `eval`, which
    measures the network)."""
    from tfdeblur import inference, kernel_refine

    p.add_argument("--precision", choices=inference.INFERENCE_PRECISIONS, default=precision,
                   help="run the network in fp32 or bf16 (Keras' mixed_bfloat16; about 2x faster on CPUs with "
                        "AVX512-BF16 or AMX, within a few hundredths of a dB); auto: bf16 where this machine runs "
                        f"it faster, as train's --precision auto decides (default {precision}); exports run as exported")

    p.add_argument("--tile", type=_positive_int, help="tile side in pixels; forces tiled inference (default: tile only above --max-pixels)")
    p.add_argument("--overlap", type=int, help=f"minimum overlap of neighbouring tiles, pixels (default {inference.DEFAULT_OVERLAP}, at most a quarter of the tile)")
    p.add_argument("--max-pixels", type=_positive_int, default=inference.DEFAULT_MAX_PIXELS, help=f"tile images with more pixels than this, {inference.DEFAULT_TILE}px tiles (default {inference.DEFAULT_MAX_PIXELS})")
    p.add_argument("--ensemble", nargs="?", type=_ensemble_size, const=8, default=1, metavar="N",
                   help="self-ensemble: average N flips/rotations, N times slower (alone: 8; 4: the quarter turns, "
                        "75-100 %% of the 8-way gain; 2: one quarter turn, 35-85 %%)")
    p.add_argument("--scales", type=_scales, default=scales, metavar="S[,S...]|auto",
                   help="restore at these scales and average (weighted by how sharp each output is), e.g. 1,0.5: "
                        "blur wider than the network learned "
                        f"comes within reach at a smaller scale; auto: 1,0.5 for images of at least "
                        f"{inference.AUTO_MIN_SIDE} px on the shorter side (video frames, photos), 1,0.5,0.25 from "
                        f"{2 * inference.AUTO_MIN_SIDE} px, else 1 "
                        f"(default {'auto' if scales == 'auto' else ','.join(f'{v:g}' for v in scales)})")
    refine = p.add_mutually_exclusive_group()
    refine.add_argument("--uniform-blur", dest="uniform_blur", action="store_const", const="on", default=uniform_blur,
                        help="kernel refinement for uniform blur (camera shake of a still scene): estimate one kernel "
                             "from the network's output and deconvolve with it (Richardson-Lucy; "
                             "tfdeblur/kernel_refine.py), guarded: the network's output is kept (and the log says why) "
                             f"for photos with noise sigma >= {kernel_refine.NOISE_LIMIT * 255:g}/255, where one kernel "
                             "does not explain the blur everywhere (moving objects, rotation) and where the refinement "
                             f"would undo the network's work; images of at least {kernel_refine.MIN_SIDE} px a side "
                             "(smaller ones are an error)"
                             + ("; the default here for those images, the others get the network alone"
                                if uniform_blur == "auto" else ""))
    refine.add_argument("--no-uniform-blur", dest="uniform_blur", action="store_const", const="off",
                        help="the network alone, no kernel refinement" + (" (the default)" if uniform_blur == "off" else ""))
    p.add_argument("--max-decode-pixels", type=_positive_int, default=100_000_000, metavar="N",
                   help="refuse image files whose header declares more pixels than this, before decoding (default 100000000)")
    p.add_argument("--tlc", type=int, metavar="TRAIN_SIZE", help="run the TLC '-Local' model: global pooling becomes local pooling over 1.5x this training crop size (tfdeblur/tlc.py)")
    p.add_argument("--tlc-window", type=int, metavar="PIXELS", help="TLC window in image pixels (default 1.5 x --tlc)")


def _deblurrer(args, model):
    """A `Deblurrer` from the inference options; model transforms (e.g. --tlc) hook in here."""
    from tfdeblur import tlc
    from tfdeblur.inference import Deblurrer, ExportedModel

    if args.tlc is not None and isinstance(model, ExportedModel):  # the library names its `transform`
        raise ValueError(f"`tlc` (a model transform) needs the Keras network; got a {model.kind} export ({model.path})")
    # A model -> callable hook: the test-time local converter; its notices go to stderr.
    transform = tlc.option_transform(args.tlc, args.tlc_window, notice=lambda m: print(m, file=sys.stderr))
    deblurrer = Deblurrer(model, tile=args.tile, overlap=args.overlap, max_pixels=args.max_pixels,
                          ensemble=args.ensemble, transform=transform, scales=args.scales,
                          kernel_refine=UNIFORM_BLUR[args.uniform_blur], precision=args.precision)
    if args.precision != "fp32":
        print(f"precision {deblurrer.precision}: {deblurrer.precision_reason}", flush=True)
    return deblurrer


def _cmd_train(args):
    from tfdeblur.training.phased_run import run_phases
    from tfdeblur.training.run import request_from_options, run_training

    cfg = request_from_options(vars(args))
    run_phases(cfg, args.phase, init_from=args.init_from, progress=True) if args.phase else run_training(cfg, progress=True)
    return 0


def _cmd_eval(args):
    from tfdeblur import protocols, tlc
    from tfdeblur.datasets import spec as data_spec
    from tfdeblur.evaluate import check_report_paths, evaluate_pairs, evaluation_pairs, report_lines, write_reports
    from tfdeblur.inference import load_artifact

    spec = data_spec.parse_spec(args.data)
    protocol = protocols.for_data(spec.kind, args.protocol)
    check_report_paths(args.json_path, args.csv_path)
    model = load_artifact(args.model, arg=arg("model"))
    deblurrer = _deblurrer(args, model)
    dataset, names = evaluation_pairs(spec, protocol, min_size=model.min_size)
    if args.tlc is not None:
        dataset = tlc.checked_pairs(tlc.option_window(args.tlc, args.tlc_window), deblurrer, dataset, names)
    summary, rows, _ = evaluate_pairs(model, dataset, names=names, protocol=protocol, deblurrer=deblurrer)
    print("\n".join(report_lines(summary, rows)))
    write_reports(summary, rows, json_path=args.json_path, csv_path=args.csv_path)
    return 0


def _cmd_prepare(args):
    from tfdeblur.datasets import spec as data_spec

    _, line = data_spec.prepare(args.data, args.out, count=args.count, seed=args.seed, size=args.size,
                                shards=args.shards, crop=args.crop, overwrite=args.overwrite)
    print(line)
    return 0


def _cmd_deblur(args):
    from tfdeblur import deblur_files, tlc
    from tfdeblur.console import Progress
    from tfdeblur.errors import flags, print_error
    from tfdeblur.inference import default_weights, load_artifact

    quality = deblur_files.photo_options(args.format, args.quality)
    targets = deblur_files.output_plan(args.inputs, args.out, overwrite=args.overwrite,
                                       out_in_input=args.out_in_input, compare=args.compare, gt=args.gt,
                                       fmt=args.format)
    truths = deblur_files.truth_index(args.gt)
    deblur_files.remove_stale_temps(args.out)  # a deblur killed mid-write (kill -9) left them
    if args.model is None:
        args.model = default_weights(arg("model"))
        print(f"model: {args.model} (the default shipped weights; --model to choose)", flush=True)
    deblurrer = _deblurrer(args, load_artifact(args.model, arg=arg("model")))
    bar = Progress(len(targets))
    failures = deblur_files.restore_files(deblurrer, targets, truths, tlc.option_window(args.tlc, args.tlc_window),
                                          quality=quality, progress=bar)
    bar.close()
    names = flags(_parser(), "deblur")
    for message in failures:
        print_error(message, names)
    if failures:
        print(f"{len(failures)} of {len(targets)} inputs failed; {len(targets) - len(failures)} restored", flush=True)
        return EXIT_USAGE
    return 0


def _keep_float(text):
    """--keep-float: None (the network's list), [] for "none", else the items."""
    if text is None:
        return None
    if text.strip().lower() == "none":
        return []
    items = [t.strip() for t in text.split(",")]
    if not all(items):
        raise ValueError(f"--keep-float must be comma-separated op types and layer names, or none; got {text!r}")
    return items


def _cmd_export(args):
    from tfdeblur import export
    from tfdeblur.inference import load_model

    keep_float = _keep_float(args.keep_float)
    count = export.check_options(args.out, args.format, args.overwrite, args.quantize, args.calibration_images,
                                 args.calibration_data, args.input_size, args.integer_io, keep_float)
    # Read before the model: a bad folder fails first.
    representative = (export.calibration_images(args.calibration_data, count, arg=arg("calibration_data"))
                      if args.calibration_data else None)
    model = load_model(args.model, arg=arg("model"))
    input_size = export.parse_input_size(args.input_size, model)
    if args.quantize == "int8":  # before the calibration images: a bad list fails first
        keep_float = export.resolve_keep_float(keep_float, model, args.quantize, args.integer_io)
        keep_float = keep_float[0] + keep_float[1]
    if representative is None and args.quantize == "int8":
        representative = export.representative_images(count)
    path = export.export(
        model, args.out, format=args.format, quantize=args.quantize,
        overwrite=args.overwrite, representative=representative, input_size=input_size, integer_io=args.integer_io,
        keep_float=keep_float)
    shape = "any size" if input_size is None else f"static {input_size[0]}x{input_size[1]}"
    kept = f", kept in float32: {','.join(keep_float)}" if keep_float else ""
    print(f"{args.model} -> {path} ({args.format}, quantize {args.quantize}{kept}, {shape}; "
          f"signatures: {', '.join(export.SIGNATURES)})")
    return 0


def _cmd_bench(args):
    from tfdeblur import bench

    text = bench.report(args.nets, args.precision, args.repeats, out=args.out,
                        log=lambda line: print(line, file=sys.stderr, flush=True))
    print(text, end="")
    return 0


def _cmd_list(args):
    from tfdeblur.models import catalogue

    print("\n".join(catalogue()))
    return 0


def main(argv=None):
    from tfdeblur import console

    # before the parser, whose --data help comes from tfdeblur.datasets (TensorFlow)
    verbose = any(a in ("-v", "--verbose") for a in (sys.argv[1:] if argv is None else argv))
    console.import_tensorflow_quietly(verbose)
    parser = _parser()
    args = parser.parse_args(argv)
    commands = {"train": _cmd_train, "eval": _cmd_eval, "deblur": _cmd_deblur, "export": _cmd_export, "list": _cmd_list,
                "prepare": _cmd_prepare, "bench": _cmd_bench}
    from tfdeblur import io as tio
    from tfdeblur.errors import first_line, flags, print_error

    names = flags(parser, args.command)
    console.configure_logging(args.verbose, names)  # the library's `crop` in its lines shows as --crop

    # Process-wide, so the readers inside tf.data pipelines see it too;
    # restored for callers that run main() in-process (tests).
    saved_limit = tio.set_max_decode_pixels(getattr(args, "max_decode_pixels", tio.DEFAULT_MAX_DECODE_PIXELS))
    try:
        return commands[args.command](args)
    except (ValueError, OSError, KeyError) as e:
        return print_error(first_line(e), names)
    except KeyboardInterrupt:  # train says where it stopped (a RunError); the others leave nothing partial
        return print_error(f"{args.command} interrupted", names)
    except Exception as e:  # an image or data error raised inside TensorFlow or Keras
        from tfdeblur.datasets.tfrecord import damaged_data_line

        message = tio.image_error_inside(e) or damaged_data_line(getattr(args, "data", None), e)
        if message is None:
            raise
        return print_error(message, names)
    finally:
        tio.set_max_decode_pixels(saved_limit)


if __name__ == "__main__":
    sys.exit(main())
