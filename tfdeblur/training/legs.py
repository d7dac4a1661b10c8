"""Long training in legs: a released model trained over many short sessions.

Our machines are 2-core CPUs used in stretches of a few hours that can end
at any moment (a GPU now and then). A released model therefore trains in
*legs*: each leg starts from the weights the previous leg shipped, trains
`--steps` steps of the release's recipe (a warm-up and a cosine over the leg:
warm restarts), and ends by packing its weights into the package
(`tfdeblur/weights/`, fp16) and appending one record to the release's leg
log (JSON lines), so whatever the next session finds committed is enough to
go on:

    python -m tfdeblur.training.legs start mtwdn-photos --net mtwdn --recipe mtwdn_photos --steps 600
    python -m tfdeblur.training.legs finish mtwdn-photos --run /work/runs/mtwdn-photos-leg1

`start` runs the leg into `--runs/NAME-legK` (checkpoints every
`--steps-per-epoch` steps; on the same machine an interrupted leg continues
exactly with `python cli.py train NET --resume --out RUN` and its options
from the run's `config.json`). `finish` takes the leg's `model.keras`, or,
for a leg cut short, the weights of its last checkpoint ("salvage"), packs
them, scores the validation set of the leg's data and logs the leg: steps
done, data, recipe, learning rate, seed, wall time, machine, metrics.

Each leg draws fresh samples (its seed is the leg number), so no leg
repeats another's batches.

`average` makes a leg without training: the element-wise mean of two or
more weight files of the same network (a "model soup", Wortsman et al.,
ICML 2022; here legs of one lineage that learned different things, e.g.
before and after a change of the data mix), written as a run folder that
`finish` scores, gates and ships like any leg:

    python -m tfdeblur.training.legs average mtwdn-photos --from OLD.json --from mtwdn-photos --runs /work/runs
"""
import argparse
import datetime
import json
import logging
import os
import platform
import sys
import time

logger = logging.getLogger(__name__)

DEFAULT_LOG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs", "legs")


def log_path(name, log_dir=None):
    return os.path.abspath(os.path.join(log_dir or DEFAULT_LOG_DIR, f"{name}.jsonl"))


def read_legs(name, log_dir=None):
    """The leg records of release `name` (oldest first); [] before the first."""
    path = log_path(name, log_dir)
    if not os.path.exists(path):
        return []
    legs = []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                try:
                    legs.append(json.loads(line))
                except ValueError as e:
                    raise ValueError(f"{path}: line {number} is not JSON ({e})") from e
    return legs


def append_leg(name, record, log_dir=None):
    """Appends `record` to the leg log, atomically (the whole file rewritten)."""
    from tfdeblur.io import atomic_write

    path = log_path(name, log_dir)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    old = open(path).read() if os.path.exists(path) else ""
    if old and not old.endswith("\n"):
        old += "\n"
    atomic_write(path, old + json.dumps(record, sort_keys=True) + "\n")


def machine(gpus=None):
    """What the leg ran on (timings differ several-fold between machines);
    `gpus`: the GPU names, when the caller knows them (else TensorFlow's)."""
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
        cpu = next((ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("model name")), "")
        amx = "amx_bf16" in text
    except OSError:
        amx = False
    try:
        if gpus is not None:
            gpus = list(gpus)
        else:
            import tensorflow as tf

            gpus = [tf.config.experimental.get_device_details(g).get("device_name", g.name)
                    for g in tf.config.list_physical_devices("GPU")]
    except Exception:  # noqa: BLE001 - best effort description
        gpus = []
    return {"cpu": cpu, "cores": os.cpu_count(), "amx": amx, "gpus": gpus, "host": platform.node(),
            "load_average": [round(x, 2) for x in os.getloadavg()]}


def _now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def start(name, net, recipe, steps, runs, data=None, steps_per_epoch=50, log_dir=None, from_weights=None,
          model_overrides=None, crop=None, batch_size=None, learning_rate=None, stop_at=None, log=None,
          progress=False, precision="auto"):
    """Runs the next leg of release `name`; returns its run folder.

    `crop`, `batch_size`, `learning_rate` replace the recipe's (a GPU leg
    affords larger crops and batches; the log records what each leg used);
    `precision` is `train --precision` (auto, fp32, bf16, fp16).
    `stop_at`: as `TrainConfig.stop_at`, a leg that ends after the checkpoint
    of that step, as a session cut short does (`finish` salvages it).
    `log`, `progress`: as `tfdeblur.training.run.run_training`'s."""
    log = log or logger.info
    import tempfile

    import tfdeblur.models as models
    from tfdeblur.training.run import TrainConfig, run_training

    legs = read_legs(name, log_dir)
    leg = len(legs) + 1
    out = os.path.join(runs, f"{name}-leg{leg}")
    init = None
    source = from_weights or (name if name in models.available_weights() else None)
    tmp = None
    if source:
        # The previous leg's shipped weights (fp16) seed this leg, as fp32.
        model = models.from_preset(source)
        tmp = tempfile.mkdtemp(prefix="tfdeblur-leg-")
        init = os.path.join(tmp, "init.weights.h5")
        model.save_weights(init)
        del model
    cfg = TrainConfig(net=net, recipe_name=recipe, data=data, steps=steps, steps_per_epoch=steps_per_epoch,
                      seed=leg, out=out, init_from=init, keep_checkpoints=2, model_overrides=model_overrides,
                      crop=crop, batch_size=batch_size, learning_rate=learning_rate, stop_at=stop_at,
                      precision=precision)
    log(f"leg {leg} of {name}: {steps} steps from {source or 'scratch'} -> {out}")
    try:
        run_training(cfg, log=log, progress=progress)
    finally:
        if tmp:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
    return out


def _salvage(run):
    """model.keras of an unfinished leg from its last checkpoint; returns (path, step)."""
    import tensorflow as tf

    import tfdeblur.models as models
    from tfdeblur.training import state as run_state
    from tfdeblur.training.recipes import compile_args
    from tfdeblur.training.run import save_model_atomic

    config = run_state.read_previous_config(run)
    latest = tf.train.latest_checkpoint(os.path.join(run, "checkpoints"))
    if latest is None:
        raise ValueError(f"`run` {run}: no model.keras and no checkpoint to salvage")
    model = models.build(config["net"], **(config.get("model_overrides") or {}))
    model.compile(**compile_args(config["recipe"], config["total_steps"], config["learning_rate"]))
    model.optimizer.build(model.trainable_variables)
    step = run_state.RunState(model, os.path.join(run, "checkpoints"), keep=100).restore(config["net"], path=latest)
    path = os.path.join(run, "model.keras")
    save_model_atomic(model, path)
    return path, int(step)


GATE_TOLERANCE_DB = 0.05  # a gate set may lose this much (measurement noise of a few images)


def _gate_scores(model, current, spec, images):
    """(the leg's, the shipped weights') summary on the evaluation data
    `spec` (its first `images` pairs), scored as `eval` scores that kind."""
    import itertools

    from tfdeblur import protocols
    from tfdeblur.datasets import spec as data_spec
    from tfdeblur.evaluate import evaluate_pairs

    parsed = data_spec.parse_spec(spec)
    protocol = protocols.for_data(parsed.kind)
    out = []
    for m in (model, current):
        dataset, count, names = data_spec.evaluation(parsed, min_size=m.min_size)
        n = min(count, images) if images else count
        summary, _, _ = evaluate_pairs(m, itertools.islice(iter(dataset), n), names=names[:n], protocol=protocol)
        out.append(summary)
    return out


def finish(name, run, log_dir=None, weights_out=None, val_images=None, log=None, ship_anyway=False, gate=(),
           gate_images=None, gate_tolerance=GATE_TOLERANCE_DB):
    """Scores the leg in `run`, packs it as weights `name` unless it scores
    below the weights shipped now, logs it; returns the record.

    `gate`: evaluation data specs (e.g. the real GoPro dev pairs,
    `pairs:BLUR,SHARP`) on which the leg must also hold: the leg and the
    weights shipped now are both scored there (the first `gate_images`
    pairs), and a leg that keeps the held-out PSNR but loses more than
    `gate_tolerance` dB on a gate set is not shipped either (a mix of
    training data can help its own validation and hurt real photos).

    A leg cut short in the middle of its cosine (a session that ended early)
    can score below its start: shipping it would replace better weights, so
    it is logged with ``"shipped": false`` and the next leg starts again from
    the shipped ones (`ship_anyway` overrides). Legs that were not shipped do
    not count in ``total_steps_all_legs``, the training behind the shipped
    weights.
    """
    log = log or logger.info
    from tfdeblur.datasets import spec as data_spec
    from tfdeblur.errors import first_line
    from tfdeblur.evaluate import evaluate_pairs
    from tfdeblur.inference import load_model
    from tfdeblur.training import state as run_state
    from tfdeblur.weights.pack import pack

    if not os.path.isfile(os.path.join(run, "config.json")):
        raise run_state.ResumeError(f"`run` {run}: holds no training run (no config.json)")
    for spec in gate:  # a bad gate fails now, not after the held-out scoring
        try:
            data_spec.parse_spec(spec)
        except ValueError as e:
            raise ValueError(f"`gate` {spec}: {first_line(e)}") from e
    if gate_images is not None and (not isinstance(gate_images, int) or gate_images < 1):
        raise ValueError(f"`gate_images` must be a positive integer; got {gate_images!r}")
    if not gate_tolerance >= 0:
        raise ValueError(f"`gate_tolerance` must be >= 0 dB; got {gate_tolerance!r}")
    config = run_state.read_previous_config(run)
    model_path = os.path.join(run, "model.keras")
    config_time = os.path.getmtime(os.path.join(run, "config.json"))
    if os.path.exists(model_path):
        steps_done, salvaged = int(config["total_steps"]), False
        end_time = os.path.getmtime(model_path)
    else:
        model_path, steps_done = _salvage(run)
        salvaged = True
        ckpts = os.path.join(run, "checkpoints")
        end_time = max(os.path.getmtime(os.path.join(ckpts, f)) for f in os.listdir(ckpts))
    model = load_model(model_path)
    val, _, _ = data_spec.evaluation(config["data"], min_size=model.min_size)
    if val_images:
        val = val.take(val_images)
    summary, _, _ = evaluate_pairs(model, val)
    legs = read_legs(name, log_dir)
    lineage = [leg for leg in legs if leg.get("shipped", True)]
    best_before = lineage[-1]["val"]["psnr"] if lineage and "val" in lineage[-1] else None
    shipped = ship_anyway or best_before is None or summary["psnr"] >= best_before
    gates, because = [], None
    if not shipped:
        because = f"held-out PSNR {summary['psnr']:.2f} dB is below the shipped weights' {best_before:.2f} dB"
    elif gate and not ship_anyway and best_before is not None:
        from tfdeblur import weights as W

        manifest = os.path.join(weights_out or W.weights_dir(), name + W.MANIFEST_SUFFIX)
        current = load_model(manifest, arg="`name`")  # the weights shipped now
        for spec in gate:
            new, old = _gate_scores(model, current, spec, gate_images)
            gates.append({"data": spec, "images": new["images"], "psnr": new["psnr"], "ssim": new["ssim"],
                          "shipped_psnr": old["psnr"], "input_psnr": new["input_psnr"]})
            log(f"gate {spec}: {new['psnr']:.2f} dB (the shipped weights {old['psnr']:.2f}, the input "
                f"{new['input_psnr']:.2f}; {new['images']} images)")
        lost = [g for g in gates if g["psnr"] < g["shipped_psnr"] - gate_tolerance]
        if lost:
            shipped = False
            because = "; ".join(f"on {g['data']} {g['psnr']:.2f} dB is below the shipped weights' "
                                f"{g['shipped_psnr']:.2f} dB (tolerance {gate_tolerance} dB)" for g in lost)
    record = {
        "leg": len(legs) + 1,
        "run": os.path.abspath(run),
        "net": config["net"],
        "recipe_name": config.get("recipe_name"),
        "data": config["data"],
        "seed": config["seed"],
        "init_from": "previous leg's shipped weights" if config.get("init_from") else "scratch",
        "steps_planned": config["total_steps"],
        "steps_done": steps_done,
        "salvaged_from_checkpoint": salvaged,
        "crop": config["crop"],
        "batch_size": config["batch_size"],
        "learning_rate": config["learning_rate"],
        "schedule": config["recipe"].get("schedule"),
        "loss": config["recipe"].get("loss"),
        "precision": config.get("precision_resolved"),
        "started": datetime.datetime.fromtimestamp(config_time, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "ended": datetime.datetime.fromtimestamp(end_time, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "wall_seconds": round(end_time - config_time, 1),
        # A leg trained elsewhere (tfdeblur.training.jax_leg on a GPU
        # machine, adopted here) records that machine in its config.
        "machine": config.get("machine") or machine(),
        "val": {k: summary[k] for k in ("images", "psnr", "ssim", "input_psnr", "input_ssim")},
        "total_steps_all_legs": sum(int(leg.get("steps_done", 0)) for leg in lineage) + (steps_done if shipped else 0),
        "shipped": bool(shipped),
        "logged": _now(),
    }
    if gates:
        record["gate"] = gates
    if because:
        record["not_shipped_because"] = because
    if config.get("averaged_from"):
        record["init_from"] = "the weight average of the legs in averaged_from (no training)"
    for key in ("backend", "schedule_note", "data_note", "train_seconds", "bias_gradients", "averaged_from"):
        if config.get(key) is not None:
            record[key] = config[key]
    if shipped:
        pack(model_path, name, dtype="fp16", out=weights_out, overwrite=True,
             summary={"legs": record["leg"], "steps": record["total_steps_all_legs"], "recipe": record["recipe_name"],
                      "data": record["data"], "last_leg": record}, log=log)
    else:
        log(f"not shipped: {because} (`ship_anyway` to ship it); the next leg starts from the shipped weights")
    append_leg(name, record, log_dir)
    log(f"leg {record['leg']} of {name}: {steps_done} steps ({record['wall_seconds'] / 3600:.2f} h), "
        f"val PSNR {summary['psnr']:.2f} dB (input {summary['input_psnr']:.2f} dB, "
        f"gain {summary['psnr'] - summary['input_psnr']:+.2f} dB); total {record['total_steps_all_legs']} steps")
    return record


def average(name, sources, runs, log_dir=None, log=None):
    """A run folder `runs/NAME-legK` (K: the next leg) whose `model.keras` is
    the element-wise mean of `sources` (two or more shipped weights names or
    manifest paths of one network), with a `config.json` for `finish`: the
    data and recipe of release `name`'s newest shipped leg, no steps, and
    `averaged_from` (each source's manifest, sha256 and leg). Returns the
    folder."""
    import numpy as np

    from tfdeblur import weights as W
    from tfdeblur.inference import load_model
    from tfdeblur.training.run import save_model_atomic

    log = log or logger.info
    if len(sources) < 2:
        raise ValueError(f"`from`: averaging needs at least two weight files; got {len(sources)}")
    shipped = [leg for leg in read_legs(name, log_dir) if leg.get("shipped", True)]
    if not shipped:
        raise ValueError(f"`name` {name}: no shipped leg in {log_path(name, log_dir)} to take the data and recipe from")
    models, about = [], []
    for src in sources:
        manifest = W.read_manifest(src)
        models.append(load_model(src, arg="`from`"))
        last = manifest.summary.get("last_leg") or {}
        about.append({"weights": src, "sha256": manifest.data["sha256"], "leg": last.get("leg"),
                      "steps": manifest.summary.get("steps")})
    first = models[0]
    for src, model in zip(sources[1:], models[1:]):
        if type(model) is not type(first) or model.get_config() != first.get_config():
            raise ValueError(f"`from` {src}: a different network from {sources[0]} ({type(model).__name__} "
                             f"{model.get_config()} vs {type(first).__name__} {first.get_config()})")
    for i, variable in enumerate(first.weights):
        values = [np.asarray(m.weights[i].numpy(), np.float64) for m in models]
        variable.assign(np.mean(values, axis=0).astype(variable.dtype))
    leg = len(read_legs(name, log_dir)) + 1
    out = os.path.join(runs, f"{name}-leg{leg}")
    if os.path.exists(out):
        raise ValueError(f"`runs`: {out} exists already")
    os.makedirs(out)
    newest = shipped[-1]
    config = {
        "net": newest["net"], "data": newest["data"], "seed": None, "total_steps": 0,
        "crop": newest["crop"], "batch_size": newest["batch_size"], "learning_rate": None,
        "recipe_name": newest.get("recipe_name"), "recipe": {"schedule": None, "loss": newest.get("loss")},
        "precision_resolved": "float64 mean of the sources' weights", "init_from": None,
        "data_note": "no training: the weight average of " + ", ".join(
            f"leg {a['leg']}" if a["leg"] is not None else a["weights"] for a in about),
        "averaged_from": about,
    }
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config, f, indent=1)
    save_model_atomic(first, os.path.join(out, "model.keras"))
    log(f"averaged {len(sources)} weight files ({', '.join(map(str, sources))}) into {out}")
    return out


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m tfdeblur.training.legs", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("start", help="train the next leg")
    s.add_argument("name", help="release (shipped weights) name, e.g. mtwdn-photos")
    s.add_argument("--net", required=True)
    s.add_argument("--recipe", required=True)
    s.add_argument("--steps", type=int, required=True)
    s.add_argument("--data", help="default: the recipe's data")
    s.add_argument("--runs", default="runs", help="folder of the legs' run folders (default runs/)")
    s.add_argument("--steps-per-epoch", type=int, default=50, help="checkpoint interval (default 50)")
    s.add_argument("--from-weights", help="shipped weights name or manifest to start from (default: NAME's, if shipped)")
    s.add_argument("--log-dir", help="leg logs folder (default docs/legs)")
    s.add_argument("--crop", type=int, help="default: the recipe's")
    s.add_argument("--batch-size", type=int, help="default: the recipe's")
    s.add_argument("--learning-rate", type=float, help="default: the recipe's")
    s.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"),
                   help="as train's (default auto)")
    f = sub.add_parser("finish", help="pack, score and log a leg (salvages an unfinished one)")
    f.add_argument("name")
    f.add_argument("--run", required=True, help="the leg's run folder")
    f.add_argument("--weights-out", help="default: the package's weights folder")
    f.add_argument("--val-images", type=int)
    f.add_argument("--log-dir")
    f.add_argument("--ship-anyway", action="store_true", help="ship the leg even if it scores below the shipped weights")
    f.add_argument("--gate", action="append", default=[], metavar="DATA",
                   help="evaluation data the leg must also hold on against the shipped weights (repeatable), e.g. "
                        "pairs:../shared/data/gopro_dev_pairs/blur,../shared/data/gopro_dev_pairs/sharp")
    f.add_argument("--gate-images", type=int, help="score the first N pairs of each gate set (default: all)")
    f.add_argument("--gate-tolerance", type=float, default=GATE_TOLERANCE_DB,
                   help=f"dB a gate set may lose (default {GATE_TOLERANCE_DB})")
    a = sub.add_parser("average", help="a leg without training: the mean of two or more weight files (then `finish` it)")
    a.add_argument("name", help="release name, e.g. mtwdn-photos (its newest shipped leg gives the data and recipe)")
    a.add_argument("--from", dest="sources", action="append", required=True, metavar="WEIGHTS",
                   help="shipped weights name or manifest (.json) path; repeat, at least twice")
    a.add_argument("--runs", default="runs", help="folder of the legs' run folders (default runs/)")
    a.add_argument("--log-dir")
    args = p.parse_args(argv)
    from tfdeblur import console
    from tfdeblur.errors import first_line, flags, print_error

    names = flags(p, args.command)
    console.configure_logging(names=names)  # the library's progress lines (the 'tfdeblur' logger) on stdout, as the CLI
    started = time.perf_counter()
    try:
        if args.command == "start":
            start(args.name, args.net, args.recipe, args.steps, args.runs, data=args.data,
                  steps_per_epoch=args.steps_per_epoch, log_dir=args.log_dir, from_weights=args.from_weights,
                  crop=args.crop, batch_size=args.batch_size, learning_rate=args.learning_rate, progress=True,
                  precision=args.precision)
        elif args.command == "average":
            average(args.name, args.sources, args.runs, log_dir=args.log_dir)
        else:
            finish(args.name, args.run, log_dir=args.log_dir, weights_out=args.weights_out,
                   val_images=args.val_images, ship_anyway=args.ship_anyway, gate=args.gate,
                   gate_images=args.gate_images, gate_tolerance=args.gate_tolerance)
    except (ValueError, OSError) as e:
        return print_error(first_line(e), names)
    print(f"done in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
