"""The training run behind `python cli.py train NET`.

A run folder holds: `config.json` (the resolved configuration),
`checkpoints/` (model + optimizer + epoch, `tf.train.CheckpointManager`,
which writes each checkpoint before it updates its index, so a crash leaves
the previous one intact), `logs/` (TensorBoard scalars and before/after
images), `model.keras` (the trained model, written atomically),
`samples.png` (blurry | output | sharp sheet) and `results.json` (validation
PSNR/SSIM of the output and of the blurry input).
"""
import dataclasses
import json
import math
import os
import sys
import time

import keras
import numpy as np
import tensorflow as tf

from tfdeblur import io as tio
from tfdeblur.evaluate import evaluate_pairs
from tfdeblur.perceptual import recipe_with_vgg_weights
from tfdeblur.training.precision import set_precision
from tfdeblur.training.recipes import compile_args


class RunError(ValueError):
    """A training request that cannot run as asked (bad argument, bad folder)."""


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


# `python cli.py train NET` with no options is a quick run that must finish
# within 15 minutes on a 2-core CPU: 1000 steps of 128x128 crops, batch 4
# (0.39 s/step in bf16 on a quiet CPU, 0.6-0.9 under load: 7 to 15 minutes). The papers'
# learning rates are meant for runs of 10^5-10^6 steps; for this budget,
# MTWDN measured +0.51 dB over the input at the paper's 1e-4 and +0.95 dB at
# 3e-4 (README, "Measured"). `--paper` takes the recipe's crop, batch size
# and learning rate instead, for full-length runs.
QUICK_DEFAULTS = {"steps": 1000, "crop": 128, "batch_size": 4, "learning_rate": 3e-4}
DEFAULT_STEPS = QUICK_DEFAULTS["steps"]


def resolve_defaults(cfg, recipe):
    """Fills crop, batch size and learning rate: the user's value, else the
    recipe's (paper=True) or the quick run's."""
    source = recipe if cfg.paper else QUICK_DEFAULTS
    for key in ("crop", "batch_size", "learning_rate"):
        if getattr(cfg, key) is None:
            setattr(cfg, key, source[key])
    return cfg


def choose_strategy(devices=None):
    """MirroredStrategy over `devices`, or over all GPUs when more than one is
    visible; otherwise the default (single-device) strategy."""
    if devices:
        return tf.distribute.MirroredStrategy(devices=list(devices))
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def _check_config(cfg):
    from tfdeblur.models import get_preset, get_recipe

    get_preset(cfg.net)  # raises with the known names
    resolve_defaults(cfg, get_recipe(cfg.net))
    for arg in ("batch_size", "crop", "steps_per_epoch"):
        value = getattr(cfg, arg)
        if not isinstance(value, int) or value < 1:
            raise RunError(f"--{arg.replace('_', '-')} must be a positive integer; got {value!r}")
    for arg in ("steps", "epochs"):
        value = getattr(cfg, arg)
        if value is not None and (not isinstance(value, int) or value < 1):
            raise RunError(f"--{arg} must be a positive integer; got {value!r}")
    if not isinstance(cfg.learning_rate, (int, float)) or not cfg.learning_rate > 0:
        raise RunError(f"--learning-rate must be a positive number; got {cfg.learning_rate!r}")
    if cfg.steps is not None and cfg.epochs is not None:
        raise RunError("--steps and --epochs are exclusive; got both")


def _prepare_out(cfg):
    out = cfg.out
    if os.path.exists(out) and not os.path.isdir(out):
        raise RunError(f"--out {out}: exists and is not a directory")
    has_run = os.path.isdir(out) and any(
        os.path.exists(os.path.join(out, f)) for f in ("config.json", "model.keras", "checkpoints")
    )
    if cfg.resume:
        if not os.path.exists(os.path.join(out, "config.json")):
            raise RunError(f"--resume: {out} holds no run to resume (no config.json)")
        with open(os.path.join(out, "config.json")) as f:
            previous = json.load(f)
        if previous.get("net") != cfg.net:
            raise RunError(
                f"--resume: {out} holds a run of {previous.get('net')!r}, not {cfg.net!r}"
            )
    elif has_run:
        raise RunError(
            f"--out {out}: already holds a run; pass --resume to continue it or choose another --out"
        )
    os.makedirs(out, exist_ok=True)


def _write_json(path, obj):
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, default=str)
    os.replace(tmp, path)


def save_model_atomic(model, path):
    """`model.save(path)` through a temporary file in the same folder."""
    tmp = os.path.join(os.path.dirname(os.path.abspath(path)), f".tmp-{os.getpid()}-{os.path.basename(path)}")
    try:
        model.save(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


class _CheckpointEachEpoch(keras.callbacks.Callback):
    def __init__(self, manager, epoch_var):
        super().__init__()
        self.manager = manager
        self.epoch_var = epoch_var

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_var.assign(epoch + 1)
        self.manager.save(checkpoint_number=epoch + 1)


class _ImageSummaries(keras.callbacks.Callback):
    """Before/after/ground-truth images of a few validation pairs in TensorBoard."""

    def __init__(self, log_dir, blur, sharp):
        super().__init__()
        self.writer = tf.summary.create_file_writer(os.path.join(log_dir, "images"))
        self.blur = blur
        self.sharp = sharp

    def on_epoch_end(self, epoch, logs=None):
        out = tf.clip_by_value(self.model(self.blur, training=False), 0.0, 1.0)
        sheet = tf.concat([self.blur, out, self.sharp], axis=2)  # side by side
        with self.writer.as_default():
            tf.summary.image("blur|output|sharp", sheet, step=epoch + 1, max_outputs=len(sheet))
        self.writer.flush()


def run_training(cfg, log=print):
    """Trains `cfg.net` as configured; returns the results dict."""
    from tfdeblur.datasets import spec as data_spec
    from tfdeblur.models import build, get_preset, get_recipe

    _check_config(cfg)
    cfg.out = cfg.out or os.path.join("runs", cfg.net)
    spec = data_spec.parse_spec(cfg.data)
    _prepare_out(cfg)

    precision = set_precision(cfg.precision)
    strategy = choose_strategy(cfg.devices)
    replicas = strategy.num_replicas_in_sync
    if cfg.batch_size % replicas:
        raise RunError(
            f"--batch-size must be a multiple of the {replicas} replicas; got {cfg.batch_size}"
        )

    if cfg.epochs is not None:
        total_steps = cfg.epochs * cfg.steps_per_epoch
    else:
        total_steps = cfg.steps or DEFAULT_STEPS
    steps_per_epoch = min(cfg.steps_per_epoch, total_steps)
    epochs = math.ceil(total_steps / steps_per_epoch)
    total_steps = epochs * steps_per_epoch

    recipe = recipe_with_vgg_weights(get_recipe(cfg.net), cfg.vgg_weights, required=cfg.paper)
    with strategy.scope():
        model = build(cfg.net)
        model.compile(**compile_args(recipe, total_steps, cfg.learning_rate, steps_per_epoch=steps_per_epoch))
        model.optimizer.build(model.trainable_variables)
        epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
    if cfg.crop < model.min_size:
        raise RunError(f"--crop must be at least {model.min_size} for {cfg.net}; got {cfg.crop}")

    checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer, epoch=epoch_var)
    manager = tf.train.CheckpointManager(checkpoint, os.path.join(cfg.out, "checkpoints"), max_to_keep=3)
    initial_epoch = 0
    if cfg.resume:
        if manager.latest_checkpoint is None:
            raise RunError(f"--resume: {cfg.out}/checkpoints holds no checkpoint")
        checkpoint.restore(manager.latest_checkpoint).expect_partial()
        initial_epoch = int(epoch_var.numpy())
        log(f"resumed from {manager.latest_checkpoint} (epoch {initial_epoch}/{epochs})")

    resolved = dataclasses.asdict(cfg)
    resolved.update(
        precision_resolved=precision,
        replicas=replicas,
        total_steps=total_steps,
        epochs_resolved=epochs,
        steps_per_epoch_resolved=steps_per_epoch,
        recipe=recipe,
        preset=dataclasses.asdict(get_preset(cfg.net), dict_factory=lambda kv: {k: v for k, v in kv if k != "cls"}),
        parameters=int(model.count_params()),
        tensorflow=tf.__version__,
        keras=keras.__version__,
    )
    _write_json(os.path.join(cfg.out, "config.json"), resolved)

    # A resumed run continues with a fresh stream (seed + epoch), so it does
    # not replay the samples it has already seen.
    train, val = data_spec.train_val(spec, cfg.crop, seed=cfg.seed + initial_epoch, min_size=model.min_size)
    train = train.batch(cfg.batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
    if cfg.val_images:
        val = val.take(cfg.val_images)
    val_pairs = list(val.take(3).batch(3))[0] if spec.kind == "synthetic" else None

    if getattr(model.loss, "perceptual_active", True) is False:
        log("no --vgg-weights: training on the loss's MSE term alone (the perceptual term is off)")
    log(
        f"training {cfg.net} ({model.count_params():,} parameters) on {spec}: "
        f"{total_steps} steps x batch {cfg.batch_size}, crop {cfg.crop}, {precision}, "
        f"{replicas} replica(s) -> {cfg.out}"
    )
    callbacks = [
        _CheckpointEachEpoch(manager, epoch_var),
        keras.callbacks.TensorBoard(os.path.join(cfg.out, "logs"), update_freq=max(1, steps_per_epoch // 4)),
        keras.callbacks.TerminateOnNaN(),
    ]
    if val_pairs is not None:
        callbacks.append(_ImageSummaries(os.path.join(cfg.out, "logs"), *val_pairs))
    start = time.perf_counter()
    history = None
    if initial_epoch < epochs:
        history = model.fit(
            train,
            epochs=epochs,
            initial_epoch=initial_epoch,
            steps_per_epoch=steps_per_epoch,
            callbacks=callbacks,
            shuffle=False,  # the datasets shuffle themselves
            verbose=1 if sys.stdout.isatty() else 2,
        )
    train_seconds = time.perf_counter() - start
    if history is not None and any(not np.isfinite(v) for v in history.history.get("loss", [])):
        raise RunError("training diverged (NaN/Inf loss); the last good checkpoint is kept in checkpoints/")

    save_model_atomic(model, os.path.join(cfg.out, "model.keras"))

    log("validating ...")
    summary, rows, kept = evaluate_pairs(model, val, keep=4)
    sheet = tio.contact_sheet([list(t) for t in kept], labels=["blurry", "output", "sharp"])
    tio.write_image(os.path.join(cfg.out, "samples.png"), sheet)
    results = dict(summary, train_seconds=train_seconds, steps=total_steps, net=cfg.net, data=str(spec))
    _write_json(os.path.join(cfg.out, "results.json"), results)
    log(
        f"validation ({summary['images']} images, 8-bit): "
        f"output PSNR {summary['psnr']:.2f} dB SSIM {summary['ssim']:.4f} | "
        f"blurry input PSNR {summary['input_psnr']:.2f} dB SSIM {summary['input_ssim']:.4f} | "
        f"gain {summary['psnr'] - summary['input_psnr']:+.2f} dB"
    )
    log(f"SSIM: {summary['ssim_convention']}")
    return results
