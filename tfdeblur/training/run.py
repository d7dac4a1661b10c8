"""The training run behind `python cli.py train NET`.

A run folder holds: `config.json` (the resolved configuration),
`checkpoints/` (model, optimizer, step and data position for an exact
resume, written atomically, the last `keep_checkpoints` kept: see
`tfdeblur/training/state.py`), `logs/` (TensorBoard scalars and before/after
images), `model.keras` (the trained model, written atomically),
`best.keras` (the model of the epoch with the best `val_psnr`, written
atomically; `best.json` says which), `samples.png` (blurry | output | sharp
sheet) and `results.json` (validation PSNR/SSIM of the output and of the
blurry input).

Every epoch (`--steps-per-epoch` steps) validates on a small fixed set
(`callbacks.validation_batches`): `val_loss`, `val_psnr`, `val_ssim` in the
epoch line and in TensorBoard (`logs/validation`), blurry | output | sharp
images in `logs/images`. The multi-worker loop does not validate yet.
"""
import dataclasses
import json
import logging
import math
import os
import shutil
import sys
import tempfile
import time

import keras
import tensorflow as tf

from tfdeblur import checksum
from tfdeblur import io as tio
from tfdeblur.evaluate import evaluate_pairs
from tfdeblur.perceptual import recipe_with_vgg_weights
from tfdeblur.training import callbacks as callbacks_lib
from tfdeblur.training import state as run_state
from tfdeblur.training.cluster import create_strategy, parse_tf_config
from tfdeblur.training.errors import RunError  # noqa: F401  (re-exported: run.RunError)
from tfdeblur.training.precision import apply_precision, choose_precision, network_width
from tfdeblur.datasets.stream import FILE_KINDS, replica_dataset_fn, train_stream
from tfdeblur.training import phases
from tfdeblur.training import runlock
from tfdeblur.training import loss_terms
from tfdeblur.training.recipes import GOPRO_TRAIN_PAIRS, augmentation, compile_args, paper_steps

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class TrainConfig:
    net: str = "mtwdn"
    data: str = "synthetic"
    steps: int = None  # total optimizer steps; default QUICK_DEFAULTS
    epochs: int = None  # alternative to steps: passes of `steps_per_epoch`
    batch_size: int = None  # default: QUICK_DEFAULTS, or the recipe's with paper=True
    crop: int = None  # likewise
    out: str = None  # default runs/<net>
    resume: bool = False
    precision: str = "auto"
    learning_rate: float = None  # likewise
    paper: bool = False  # the recipe's crop, batch size and learning rate
    seed: int = 0
    steps_per_epoch: int = 100  # checkpoint/validation interval
    devices: list = None  # MirroredStrategy devices; default: all GPUs if > 1
    val_images: int = None  # limit validation images (None: all)
    vgg_weights: str = None  # VGG16(include_top=False) weights for perceptual losses (FDDN)
    keep_checkpoints: int = 3  # checkpoints kept in checkpoints/ (the newest ones)
    model_overrides: dict = None  # constructor kwargs replacing the preset's (tests: tiny models)
    stop_at: int = None  # end this session after the checkpoint of this step; --resume continues
    phase: int = None  # phased training (GLBDN sec. 3.2): the recipe's phase 1, 2 or 3 (training/phases.py)
    init_from: str = None  # a .keras file whose weights the run starts from (phases)
    cluster_timeout: float = 300.0  # seconds for a TF_CONFIG cluster to form (and per collective)
    jitter: float = 0.0  # brightness/colour gain range on the training stream (stream.py); 0: none
    recipe_name: str = None  # --recipe: a named recipe instead of the preset's (a released model's); its crop, batch and lr are the defaults
    jit: bool = False  # XLA-compile the train step (off by default: slower on CPU; Keras' "auto" would turn it on on GPUs)
    take_over_lock: bool = False  # take over a lock on --out whose holder cannot be checked (another host)


# Session flags, not part of a run: `train --config` never takes them from the file.
SESSION_FIELDS = ("resume", "take_over_lock", "stop_at")


def config_from_file(path, **overrides):
    """A `TrainConfig` repeating the run whose `config.json` is `path`
    (`train --config`): its request's fields (the resolved values a run
    records), then `overrides` (options given beside it). A missing or
    unreadable file is one error naming it."""
    data = tio.read_json(path, f"`config` {path}", RunError)
    if not isinstance(data, dict) or not isinstance(data.get("net"), str):
        raise RunError(f"`config` {path}: not a run's config.json (no \"net\" name in it)")
    names = {f.name for f in dataclasses.fields(TrainConfig)} - set(SESSION_FIELDS)
    fields = {k: v for k, v in data.items() if k in names}
    return TrainConfig(**{**fields, **overrides})


def request_from_options(options):
    """The `TrainConfig` of `train`'s options (option name -> value; None,
    or False for a flag, where not given): the run `options["config"]`
    records when given, the options given replacing its values."""
    names = {f.name for f in dataclasses.fields(TrainConfig)} - {"phase", "init_from", "devices"}
    given = {k: v for k, v in options.items() if k in names and v is not None and v is not False}
    if options.get("devices"):
        given["devices"] = [d.strip() for d in options["devices"].split(",") if d.strip()]
    if options.get("init_from") and not options.get("phase"):  # phases take --from as the first phase's start
        given["init_from"] = options["init_from"]
    if options.get("config"):
        return config_from_file(options["config"], **given)
    if not given.get("net"):
        raise RunError("train: give NET (e.g. mtwdn) or `config` RUN/config.json")
    if options.get("phase") or options.get("recipe_name"):
        given.setdefault("data", None)  # the phase's or the recipe's data
    return TrainConfig(**given)


# `python cli.py train NET` with no options is a quick run that must finish
# within 15 minutes on a 2-core CPU: 1000 steps of 128x128 crops, batch 4
# (0.39 s/step in bf16 on a quiet CPU, 0.6-0.9 under load: 7 to 15 minutes). The papers'
# learning rates are meant for runs of 10^5-10^6 steps; for this budget,
# MTWDN measured +0.51 dB over the input at the paper's 1e-4 and +0.95 dB at
# 3e-4 (docs/networks/mtwdn.md, "Measured"). `--paper` takes the recipe's crop, batch size
# and learning rate instead, for full-length runs.
# A recipe may replace some of these for its network's quick run with a
# "quick" entry (e.g. `glbdn`'s 21 M parameters lose at 3e-4 and gain at 1e-4;
# docs/networks/glbdn.md): `quick_defaults(recipe)`.
QUICK_DEFAULTS = {"steps": 1000, "crop": 128, "batch_size": 4, "learning_rate": 3e-4}
DEFAULT_STEPS = QUICK_DEFAULTS["steps"]
QUICK_KEYS = ("crop", "batch_size", "learning_rate")


def quick_defaults(recipe):
    """The quick run's crop, batch size and learning rate for `recipe`:
    QUICK_DEFAULTS, with the recipe's "quick" entries in their place."""
    quick = recipe.get("quick") or {}
    unknown = sorted(set(quick) - set(QUICK_KEYS))
    if unknown:
        raise RunError(f"recipe \"quick\" entry: unknown key(s) {', '.join(unknown)}; known: {', '.join(QUICK_KEYS)}")
    return {**QUICK_DEFAULTS, **quick}


def resolve_defaults(cfg, recipe):
    """`cfg` with crop, batch size and learning rate filled (a copy): the
    user's value, else the recipe's (paper=True, or a recipe named by
    `cfg.recipe_name`) or the quick run's (`quick_defaults`)."""
    source = recipe if (cfg.paper or cfg.recipe_name) else quick_defaults(recipe)
    return dataclasses.replace(cfg, **{key: source[key] for key in ("crop", "batch_size", "learning_rate")
                                       if getattr(cfg, key) is None})


def choose_strategy(devices=None):
    """MirroredStrategy over `devices`, or over all GPUs when more than one is
    visible; otherwise the default (single-device) strategy."""
    if devices:
        visible = {d.name.lower().replace("/job:localhost/replica:0/task:0", "") for d in tf.config.list_logical_devices()}
        for d in devices:
            name = d.lower().replace("/device:", "/")
            if name not in {v.replace("/device:", "/") for v in visible}:
                raise RunError(f"`devices`: no device {d!r} here; visible: {', '.join(sorted(visible))}")
        return tf.distribute.MirroredStrategy(devices=list(devices))
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def _check_config(cfg):
    """Checks the request `cfg`; returns it with its defaults filled (a copy)."""
    from tfdeblur.models import get_preset, get_recipe

    if cfg.init_from is not None and not os.path.isfile(cfg.init_from):
        raise RunError(f"`init_from` {cfg.init_from}: no such file")
    get_preset(cfg.net)  # raises with the known names
    try:
        recipe = get_recipe(cfg.recipe_name or cfg.net)
    except ValueError as e:
        raise RunError(f"`recipe_name`: {e}") from e
    cfg = resolve_defaults(cfg, recipe)
    # A named recipe may name its data (the released models' do).
    cfg = dataclasses.replace(cfg, data=cfg.data if cfg.data is not None else recipe.get("data", "synthetic"),
                              out=cfg.out or os.path.join("runs", cfg.net))
    for arg in ("batch_size", "crop", "steps_per_epoch", "keep_checkpoints"):
        value = getattr(cfg, arg)
        if not isinstance(value, int) or value < 1:
            raise RunError(f"`{arg}` must be a positive integer; got {value!r}")
    for arg in ("steps", "epochs"):
        value = getattr(cfg, arg)
        if value is not None and (not isinstance(value, int) or value < 1):
            raise RunError(f"`{arg}` must be a positive integer; got {value!r}")
    if not isinstance(cfg.learning_rate, (int, float)) or not cfg.learning_rate > 0:
        raise RunError(f"`learning_rate` must be a positive number; got {cfg.learning_rate!r}")
    if cfg.stop_at is not None and (not isinstance(cfg.stop_at, int) or cfg.stop_at < 1
                                    or cfg.stop_at % cfg.steps_per_epoch):
        raise RunError(f"`stop_at` must be a positive multiple of `steps_per_epoch` {cfg.steps_per_epoch}; got {cfg.stop_at!r}")
    if cfg.steps is not None and cfg.epochs is not None:
        raise RunError("`steps` and `epochs` are exclusive; got both")
    _check_batch_memory(cfg)
    if not isinstance(cfg.seed, int) or cfg.seed < 0:
        raise RunError(f"`seed` must be a non-negative integer; got {cfg.seed!r}")
    if not isinstance(cfg.jitter, (int, float)) or not 0 <= cfg.jitter <= 1:
        raise RunError(f"`jitter` must be a number in [0, 1]; got {cfg.jitter!r}")
    return cfg


# The request's fields, frozen: a `Plan` holds them so that nothing changes them mid-run.
Settings = dataclasses.make_dataclass(
    "Settings", [(f.name, f.type, dataclasses.field(default=f.default)) for f in dataclasses.fields(TrainConfig)],
    frozen=True)


@dataclasses.dataclass(frozen=True)
class Plan:
    """What a run does, resolved once from a `TrainConfig` before any
    TensorFlow op runs (MultiWorkerMirroredStrategy must come first) and
    never changed: `resolve` makes it, the steps of `run_training` read it."""

    settings: Settings  # the request, defaults filled: config.json's first keys
    spec: object  # the parsed --data
    recipe: dict  # the recipe (the phase's loss, the VGG weights file set)
    cluster: object  # TF_CONFIG's `cluster.Cluster`, or None: one worker
    data_epoch_steps: int  # steps in one pass over the training set (what the recipe's epochs count)
    total_steps: int  # a whole number of epochs
    steps_per_epoch: int  # the checkpoint/validation interval as resolved (at most total_steps)
    epochs: int
    end_epoch: int  # where this session stops: epochs, or --stop-at's epoch

    @property
    def out(self):
        return self.settings.out

    @property
    def writer(self):
        """Whether this task writes the run folder (the chief, or the only worker)."""
        return self.cluster is None or self.cluster.is_chief


def resolve(cfg, log=None):
    """The `Plan` of request `cfg` (not changed): checks every value, fills
    the defaults, parses --data and TF_CONFIG, and sizes the run. `log`:
    where its notes go (default: this module's logger, INFO)."""
    log = log or logger.info
    from tfdeblur.datasets import spec as data_spec
    from tfdeblur.models import get_recipe

    settings = Settings(**dataclasses.asdict(_check_config(cfg)))
    spec = data_spec.parse_spec(settings.data)
    cluster = parse_tf_config(os.environ.get("TF_CONFIG"))
    if cluster is not None and settings.devices:
        raise RunError("`devices` applies to single-worker runs; with TF_CONFIG each worker uses its local devices")
    recipe = recipe_with_vgg_weights(get_recipe(settings.recipe_name or settings.net), settings.vgg_weights,
                                     required=settings.paper)
    if settings.phase is not None:
        recipe = phases.phase_recipe(recipe, settings.phase)
    # One pass over the training set, in steps: what the recipe's epochs
    # (run length, schedules) count. Generated data has no finite set: the
    # papers' GoPro train split (GOPRO_TRAIN_PAIRS) stands in for it.
    train_pairs = (len(data_spec.train_val_pairs(spec, settings.crop)[0]) if spec.kind in FILE_KINDS
                   else GOPRO_TRAIN_PAIRS)
    batch = settings.batch_size
    if settings.epochs is not None:
        total_steps = settings.epochs * settings.steps_per_epoch
    elif settings.steps is None and settings.paper and paper_steps(recipe, train_pairs, batch):
        total_steps = paper_steps(recipe, train_pairs, batch)
        log(f"`paper`: {recipe['epochs']} epochs of {train_pairs} training pairs at batch {batch}: {total_steps} steps")
    else:
        total_steps = settings.steps or DEFAULT_STEPS
    steps_per_epoch = min(settings.steps_per_epoch, total_steps)
    if settings.resume:
        # A short run's interval was capped at its --steps (3 of 100): an
        # extension (--steps 6 --resume) keeps the interval it resolved to.
        previous = run_state.read_previous_config(settings.out)
        if previous.get("steps_per_epoch") == settings.steps_per_epoch and previous.get("steps_per_epoch_resolved"):
            steps_per_epoch = int(previous["steps_per_epoch_resolved"])
    epochs = math.ceil(total_steps / steps_per_epoch)
    return Plan(settings=settings, spec=spec, recipe=recipe, cluster=cluster,
                data_epoch_steps=math.ceil(train_pairs / batch), total_steps=epochs * steps_per_epoch,
                steps_per_epoch=steps_per_epoch, epochs=epochs,
                end_epoch=epochs if settings.stop_at is None else min(epochs, settings.stop_at // steps_per_epoch))


def _machine_memory():
    """Physical memory in bytes, or None where the OS does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def _check_batch_memory(cfg, memory=None):
    """Refuses a batch whose images alone cannot fit in this machine's
    memory, before anything is allocated (tf.data would otherwise grow
    until the OOM killer ends the run with no message). A lower bound, so
    it never refuses a batch that fits: per sample the blurry and sharp
    crops, the output and its gradient (float32, 3 channels), none of the
    network's activations (which need several times more)."""
    memory = memory or _machine_memory()
    need = 4 * cfg.batch_size * cfg.crop * cfg.crop * 3 * 4
    if memory and need > memory:
        raise RunError(f"`batch_size` {cfg.batch_size}: one batch of {cfg.crop}x{cfg.crop} crops needs at least "
                       f"{need / 2**30:.1f} GiB (blurry, sharp, output and its gradient, before any activation), more "
                       f"than this machine's {memory / 2**30:.1f} GiB; use a smaller `batch_size` or `crop`")


def _prepare_out(cfg, writer=True, log=None):
    """Checks --out against --resume and locks it (`runlock`); returns the
    lock, or None on a non-chief worker."""
    log = log or logger.info
    out = cfg.out
    if not writer:  # a non-chief worker writes nothing here; the chief checks the folder
        if cfg.resume:
            run_state.read_previous_config(out)
        return None
    if os.path.exists(out) and not os.path.isdir(out):
        raise RunError(f"`out` {out}: exists and is not a directory")
    if cfg.resume:
        run_state.read_previous_config(out)  # before creating anything
    created = not os.path.isdir(out)
    os.makedirs(out, exist_ok=True)
    # Locked before the folder is judged, so a run starting beside another
    # is told who holds the folder, whatever that run has written yet.
    try:
        lock = runlock.acquire(out, take_over=cfg.take_over_lock, log=log)
    except RunError:
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise
    try:
        _check_out(cfg, out, log)
        _remove_leftovers(out)  # of a run killed here before
    except RunError:
        lock.release()
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise
    return lock


def _check_out(cfg, out, log):
    has_run = any(os.path.exists(os.path.join(out, f)) for f in ("config.json", "model.keras", "checkpoints"))
    if cfg.resume:
        previous = run_state.read_previous_config(out)
        if previous.get("net") != cfg.net:
            raise RunError(
                f"`resume`: {out} holds a run of {previous.get('net')!r}, not {cfg.net!r}"
            )
    elif has_run:
        # A run that ended before its first checkpoint left nothing to keep:
        # start it afresh rather than refuse both with and without --resume.
        if not os.path.exists(os.path.join(out, "model.keras")) and \
                tf.train.latest_checkpoint(os.path.join(out, "checkpoints")) is None:
            log(f"`out` {out}: holds a run that ended before its first checkpoint; starting afresh")
            return
        raise RunError(
            f"`out` {out}: already holds a run; pass `resume` to continue it or choose another `out`"
        )


def _write_json(path, obj):
    tio.atomic_write(path, json.dumps(obj, indent=2, default=str))


def save_model_atomic(model, path):
    """`model.save(path)` through a temporary file in the same folder, with a
    SHA-256 sidecar (`tfdeblur/checksum.py`) checked by the loaders."""
    with checksum.atomic_path(path) as tmp:
        model.save(tmp)


def _fit_multi_worker(cfg, model, strategy, spec, callbacks, val_batches, initial_epoch, end_epoch,
                      steps_per_epoch, log, augment):
    """The custom loop (tfdeblur/training/loop.py) in place of `fit`, with
    the callbacks `fit` would get (`_epoch_callbacks`)."""
    from tfdeblur.training.loop import distributed_fit

    dataset_fn = replica_dataset_fn(spec, cfg.crop, cfg.seed, cfg.batch_size,
                                    start_step=initial_epoch * steps_per_epoch,
                                    min_size=model.min_size, jitter=cfg.jitter, **augment)
    if initial_epoch < end_epoch:
        distributed_fit(model, strategy, dataset_fn, epochs=end_epoch, initial_epoch=initial_epoch,
                        steps_per_epoch=steps_per_epoch, callbacks=callbacks, validation_data=val_batches, log=log)


def _epoch_callbacks(cfg, model, state, divergence, val_batches, steps_per_epoch, writer, log):
    """The end of every epoch, the same under `fit` and the multi-worker
    loop: checkpoint unless diverged (every task: saving is a collective),
    then on the chief alone TensorBoard scalars, `best.keras` by `val_psnr`,
    validation images and a multi-term loss's record. Returns (callbacks,
    the loss-terms recorder or None)."""
    callbacks = [run_state.CheckpointAndGuard(state, steps_per_epoch, cfg.batch_size, divergence,
                                              log=log if writer else _quiet)]
    if not writer:
        return callbacks, None
    best_json = os.path.join(cfg.out, "best.json")  # what best.keras scored: a resumed run must beat it

    def save_best(model, path):
        save_model_atomic(model, path)
        _write_json(best_json, {"monitor": best.monitor, "value": best.best, "epoch": best.best_epoch,
                                "step": best.best_epoch * steps_per_epoch})

    previous = None
    if cfg.resume and os.path.exists(best_json):
        with open(best_json) as f:
            previous = json.load(f).get("value")
    best = callbacks_lib.BestModel(os.path.join(cfg.out, "best.keras"), save=save_best, best=previous, log=log)
    callbacks += [
        keras.callbacks.TensorBoard(os.path.join(cfg.out, "logs"), update_freq=max(1, steps_per_epoch // 4)),
        best,
        callbacks_lib.ValidationImages(os.path.join(cfg.out, "logs"), val_batches),
    ]
    terms = loss_terms.recorder_for(model, cfg.out, steps_per_epoch)  # multi-term losses (MSFS-Net)
    if terms is not None:
        callbacks.append(terms)
    return callbacks, terms


def _quiet(*args):
    pass


class _EpochLine(keras.callbacks.Callback):
    """The epoch line (`loop.epoch_line`, as the multi-worker loop logs it) to `log`."""

    def __init__(self, plan, log):
        super().__init__()
        self.plan, self.log = plan, log

    def on_epoch_end(self, epoch, logs=None):
        from tfdeblur.training.loop import epoch_line

        steps = self.plan.steps_per_epoch
        self.log(epoch_line((epoch + 1) * steps, self.plan.end_epoch * steps, logs or {}))


class _StopOnInterrupt(keras.callbacks.Callback):
    """Ctrl-C ends training after the current step instead of wherever
    Python happens to be (a KeyboardInterrupt thrown into Keras' loop, with
    tf.data threads running Python, could crash the interpreter on exit).
    Recorded as a divergence so that no checkpoint is written for the cut
    epoch; a second Ctrl-C interrupts at once."""

    WHAT = "interrupted"

    def __init__(self, divergence):
        super().__init__()
        self.divergence, self.pending, self._previous = divergence, False, None

    def __enter__(self):
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc):
        import signal

        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)

    def _handle(self, signum, frame):
        if self.pending:
            raise KeyboardInterrupt
        self.pending = True

    def on_train_batch_end(self, batch, logs=None):
        if self.pending:
            self.divergence.record(int(keras.ops.convert_to_numpy(self.model.optimizer.iterations)), self.WHAT)
            self.model.stop_training = True


def run_training(cfg, log=None, progress=False):
    """Trains `cfg.net` as configured (`cfg` is not changed); returns the
    results dict. The run folder is locked for the run (`runlock`) and
    unlocked however it ends. Progress lines go to `log` (a callable taking
    one line), by default to `logging.getLogger("tfdeblur.training.run")` at
    INFO: silent until the application configures logging (the CLI does),
    the epoch lines included. `progress`: Keras' own display on stdout
    instead of the epoch lines (a bar on a terminal, one line per epoch
    otherwise), as `tfdeblur train` shows it."""
    log = log or logger.info
    session = {}

    def out():  # the resolved --out, once known
        return session["plan"].out if "plan" in session else cfg.out

    try:
        return _run_training(cfg, log, session, progress)
    except KeyboardInterrupt:
        raise RunError(_interrupted(out(), session)) from None
    except (OSError, tf.errors.OpError) as e:
        from tfdeblur.errors import disk_full, tf_error_reason

        if not disk_full(e):
            raise
        reason = e.strerror if isinstance(e, OSError) and e.strerror else tf_error_reason(e)
        raise RunError(f"`out` {out()}: disk full ({reason.split('; ')[-1]}); "
                       f"{_kept(out())}; free space and resume with `resume`") from e
    finally:
        if session.get("lock") is not None:
            _remove_leftovers(out())
            session["lock"].release()


def _remove_leftovers(out):
    """Deletes what a write cut short leaves in a run folder: `ckpt-N_temp/`
    (a checkpoint interrupted by Ctrl-C or a full disk) and the hidden or
    `.tmp` files of the atomic writes (after a kill -9). Only called while
    this process holds the folder's lock: no other run is writing there."""
    checkpoints = os.path.join(out, "checkpoints")
    for name in os.listdir(checkpoints) if os.path.isdir(checkpoints) else ():
        if name.endswith("_temp"):
            shutil.rmtree(os.path.join(checkpoints, name), ignore_errors=True)
    for name in os.listdir(out) if os.path.isdir(out) else ():
        if name.startswith(".tmp-") or name.endswith(".json.tmp") or (name.startswith(".") and ".tmp" in name):
            path = os.path.join(out, name)
            shutil.rmtree(path, ignore_errors=True) if os.path.isdir(path) else os.remove(path)


def _kept(out):
    latest = tf.train.latest_checkpoint(os.path.join(out, "checkpoints"))
    return f"last complete checkpoint {latest}" if latest else "no checkpoint was written"


def _interrupted(out, session):
    """The Ctrl-C line: where the run stood and how to go on."""
    model = session.get("model")
    step = int(keras.ops.convert_to_numpy(model.optimizer.iterations)) if model is not None else 0
    latest = tf.train.latest_checkpoint(os.path.join(out, "checkpoints")) if out else None
    if latest is None:
        return f"interrupted at step {step}, before the first checkpoint; run it again (without `resume`) to start afresh"
    return f"interrupted at step {step}; resume with `resume` (from {os.path.basename(latest)})"


def _run_training(cfg, log, session, progress=False):
    """The run, step by step; each step reads the plan and what the steps
    before it made."""
    plan = session["plan"] = resolve(cfg, log)
    session["lock"] = _prepare_out(plan.settings, plan.writer, log)
    strategy, decision = _start_devices(plan, log)
    model, state = _build_model(plan, strategy, log)
    session["model"] = model
    record = _run_record(plan, decision, strategy, model)
    initial_epoch = _resume_point(plan, state, record, log) if plan.settings.resume else 0
    if plan.writer:
        _write_json(os.path.join(plan.out, "config.json"), record)
    train, val, val_batches, augment = _data(plan, model, initial_epoch, log)
    if getattr(model.loss, "perceptual_active", True) is False:
        log("no `vgg_weights`: training on the loss's MSE term alone (the perceptual term is off)")
    log(f"training {plan.settings.net} ({model.count_params():,} parameters) on {plan.spec}: "
        f"{plan.total_steps} steps x batch {plan.settings.batch_size}, crop {plan.settings.crop}, "
        f"{decision.precision}, {strategy.num_replicas_in_sync} replica(s) -> {plan.out}")
    divergence = run_state.Divergence()
    callbacks, terms = _epoch_callbacks(plan.settings, model, state, divergence, val_batches, plan.steps_per_epoch,
                                        plan.writer, log)
    start = time.perf_counter()
    if plan.cluster is not None:
        _fit_multi_worker(plan.settings, model, strategy, plan.spec, callbacks, val_batches, initial_epoch,
                          plan.end_epoch, plan.steps_per_epoch, log if plan.writer else None, augment)
    elif initial_epoch < plan.end_epoch:
        _fit(plan, model, train, val_batches, callbacks, divergence, initial_epoch, None if progress else log)
    train_seconds = time.perf_counter() - start
    del train  # its tf.data threads run Python code: end them before exit
    stopped = _session_end(plan, state, divergence, train_seconds, log)
    if stopped is not None:
        return stopped
    return _finish(plan, model, val, terms, train_seconds, log)


def _start_devices(plan, log):
    """The distribution strategy, then the precision policy; returns
    (strategy, the precision decision)."""
    settings = plan.settings
    strategy = (choose_strategy(settings.devices) if plan.cluster is None
                else create_strategy(plan.cluster, settings.cluster_timeout))
    # After the strategy: on an AVX512-BF16 CPU without AMX the choice runs a
    # micro-benchmark (TF ops; then cached per machine).
    decision = apply_precision(choose_precision(
        settings.precision, width=lambda: network_width(settings.net, **(settings.model_overrides or {}))))
    log(f"precision {decision}")
    replicas = strategy.num_replicas_in_sync
    if settings.batch_size % replicas:
        raise RunError(f"`batch_size` must be a multiple of the {replicas} replicas; got {settings.batch_size}")
    return strategy, decision


def _build_model(plan, strategy, log):
    """The compiled model (its starting weights and frozen parts set) and
    its checkpoint state, under the strategy; returns (model, state)."""
    from tfdeblur.models import build

    settings = plan.settings
    # Seeds weight initialization; the data draws from its own stateless
    # seeds (datasets/stream.py).
    keras.utils.set_random_seed(settings.seed)
    with strategy.scope():
        model = build(settings.net, **(settings.model_overrides or {}))
        if settings.phase is not None or settings.init_from:
            phases.prepare_model(model, settings, log)  # weights to start from, frozen parts
        model.compile(**compile_args(plan.recipe, plan.total_steps, settings.learning_rate,
                                     steps_per_epoch=plan.data_epoch_steps),
                      jit_compile=bool(settings.jit))
        model.optimizer.build(model.trainable_variables)
        # Non-chief workers save too (saving reads distributed variables
        # through collectives), into a temporary folder they delete.
        ckpt_dir = os.path.join(plan.out, "checkpoints") if plan.writer else tempfile.mkdtemp(prefix="tfdeblur-worker-")
        state = run_state.RunState(model, ckpt_dir, keep=settings.keep_checkpoints if plan.writer else 1)
    if settings.crop < model.min_size:
        raise RunError(f"`crop` must be at least {model.min_size} for {settings.net}; got {settings.crop}")
    return model, state


def _run_record(plan, decision, strategy, model):
    """config.json: the request as resolved, then what it resolved to."""
    from tfdeblur.models import get_preset

    record = dataclasses.asdict(plan.settings)
    record.update(
        precision_resolved=decision.precision,
        precision_reason=decision.reason,
        # bf16 bias gradients summed in float32 (tfdeblur.bias_grad; before
        # 2026-11-27 TensorFlow's CPU kernel summed them in bf16).
        bias_gradients="float32 sums" if decision.precision == "bf16" else None,
        replicas=strategy.num_replicas_in_sync,
        total_steps=plan.total_steps,
        epochs_resolved=plan.epochs,
        steps_per_epoch_resolved=plan.steps_per_epoch,
        recipe=plan.recipe,
        preset=dataclasses.asdict(get_preset(plan.settings.net),
                                  dict_factory=lambda kv: {k: v for k, v in kv if k != "cls"}),
        parameters=int(model.count_params()),
        tensorflow=tf.__version__,
        keras=keras.__version__,
    )
    return record


def _resume_point(plan, state, record, log):
    """--resume: checks that `record` continues the run in --out, restores
    its last checkpoint (every task reads the chief's: a shared folder on a
    cluster); returns the epoch to start from."""
    out = plan.out
    previous = run_state.read_previous_config(out)
    mismatch = run_state.resume_mismatch(previous, record)
    if mismatch:
        raise RunError(f"`resume`: {out} holds a different run: {mismatch}")
    notice = run_state.resume_notice(previous, record)
    if notice:
        log(f"`resume`: {notice}")
    latest = tf.train.latest_checkpoint(os.path.join(out, "checkpoints"))
    if latest is None:
        raise RunError(f"`resume`: {os.path.join(out, 'checkpoints')} holds no checkpoint (the run ended "
                       "before its first one); run without `resume` to start it afresh")
    step = state.restore(plan.settings.net, path=latest)
    if step % plan.steps_per_epoch:
        raise RunError(f"`resume`: checkpoint {latest} is at step {step}, not a multiple of `steps_per_epoch` "
                       f"{plan.steps_per_epoch}")
    log(f"resumed from {latest} (step {step}/{plan.total_steps})")
    return step // plan.steps_per_epoch


def _data(plan, model, initial_epoch, log):
    """(train stream, validation pairs, the small fixed set validated every
    epoch, the stream's augmentation arguments). The stream starts at the
    checkpoint's data position: a resumed run sees exactly the batches the
    uninterrupted run would have seen."""
    from tfdeblur.datasets import spec as data_spec

    settings = plan.settings
    d4, extra, skipped = augmentation(plan.recipe)  # the recipe's "augment" entry
    augment = dict(augment=d4, extra_augment=extra)
    if skipped:
        log(f"notice: the recipe's augmentations {', '.join(skipped)} are not implemented (tfdeblur/training/recipes.py)")
    train = train_stream(plan.spec, settings.crop, settings.seed, settings.batch_size,
                         start_step=initial_epoch * plan.steps_per_epoch, min_size=model.min_size,
                         jitter=settings.jitter, **augment)
    _, val = data_spec.train_val(plan.spec, settings.crop, seed=settings.seed, min_size=model.min_size)
    if settings.val_images:
        val = val.take(settings.val_images)
    # Validated every epoch (val_loss/val_psnr/val_ssim, best.keras, images):
    # a small fixed set; the whole validation set is evaluated at the end.
    return train, val, callbacks_lib.validation_batches(val), augment


def _fit(plan, model, train, val_batches, callbacks, divergence, initial_epoch, log=None):
    """`model.fit` from `initial_epoch` to the plan's end, Ctrl-C ending it after a step.
    With `log`, the epoch lines go to it and Keras prints nothing; without,
    Keras shows its own (a progress bar on a terminal, a line per epoch otherwise)."""
    if log is not None:
        callbacks, verbose = [_EpochLine(plan, log)] + callbacks, 0
    else:
        verbose = 1 if sys.stdout.isatty() else 2
    with _StopOnInterrupt(divergence) as stop:
        model.fit(
            train,
            epochs=plan.end_epoch,
            initial_epoch=initial_epoch,
            steps_per_epoch=plan.steps_per_epoch,
            callbacks=[stop] + callbacks,
            validation_data=val_batches,
            shuffle=False,  # the datasets shuffle themselves
            verbose=verbose,
        )


def _session_end(plan, state, divergence, train_seconds, log):
    """How this session's training ended: raises for Ctrl-C or a divergence,
    returns the results of a session that stops early (--stop-at, a
    non-chief worker), None when the chief goes on to finish the run."""
    if divergence.what == _StopOnInterrupt.WHAT:
        raise KeyboardInterrupt  # after the stream is gone: run_training words it
    if not plan.writer:
        shutil.rmtree(state.directory, ignore_errors=True)
    if divergence:
        kept = tf.train.latest_checkpoint(os.path.join(plan.out, "checkpoints")) or "none (no epoch finished)"
        raise RunError(
            f"training diverged at step {divergence.step} ({divergence.what}); stopped. "
            f"Last good checkpoint kept: {kept}"
        )
    if plan.end_epoch < plan.epochs:
        log(f"stopped at step {plan.end_epoch * plan.steps_per_epoch} (`stop_at`); continue with `resume`")
        return {"stopped_at": plan.end_epoch * plan.steps_per_epoch, "train_seconds": train_seconds}
    if not plan.writer:
        cluster = plan.cluster
        log(f"worker {cluster.task_type}:{cluster.task_index} done; the chief writes {plan.out}")
        return {"worker": f"{cluster.task_type}:{cluster.task_index}", "train_seconds": train_seconds}
    return None


def _finish(plan, model, val, terms, train_seconds, log):
    """The chief's end of a finished run: model.keras, the validation scores
    (results.json) and the samples sheet; returns the results."""
    out = plan.out
    save_model_atomic(model, os.path.join(out, "model.keras"))
    if terms is not None and terms.record["epoch_step"]:
        last = ", ".join(f"{n} {terms.record[f'epoch_{n}'][-1]:.4g}" for n in terms.names)
        log(f"loss terms, last epoch: {last} (per step: {terms.json_path}, plot: {terms.png_path})")

    log("validating ...")
    summary, rows, kept = evaluate_pairs(model, val, keep=4)
    sheet = tio.contact_sheet([list(t) for t in kept], labels=["blurry", "output", "sharp"])
    tio.write_image(os.path.join(out, "samples.png"), sheet)
    results = dict(summary, train_seconds=train_seconds, steps=plan.total_steps, net=plan.settings.net,
                   data=str(plan.spec))
    _write_json(os.path.join(out, "results.json"), results)
    log(
        f"validation ({summary['images']} images, 8-bit): "
        f"output PSNR {summary['psnr']:.2f} dB SSIM {summary['ssim']:.4f} | "
        f"blurry input PSNR {summary['input_psnr']:.2f} dB SSIM {summary['input_ssim']:.4f} | "
        f"gain {summary['psnr'] - summary['input_psnr']:+.2f} dB"
    )
    log(f"SSIM: {summary['ssim_convention']}")
    return results
