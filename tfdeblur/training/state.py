"""Run state for exact resume: what a checkpoint holds, when it is written,
and which runs `--resume` accepts.

A checkpoint (`tf.train.Checkpoint`, in `checkpoints/ckpt-<step>`) holds:

- `model`: every weight;
- `optimizer`: its slots (Adam's moments), its `iterations` (the step the
  learning-rate schedule reads) and, in fp16, the loss scale;
- `step`: optimizer steps done;
- `data_position`: index of the next training sample, i.e. the data
  pipeline's position (`tfdeblur.datasets.stream`: samples are a pure
  function of (seed, index), so the position is all the pipeline state).

RNG state: the networks hold no random layers (no dropout); all training
randomness is the data's (scene, kernel, noise, crop, flip/rotation), drawn
from stateless seeds (seed, sample index). The seed is in `config.json`, the
index in the checkpoint. Weight initialization is seeded with
`keras.utils.set_random_seed(seed)` and only matters for a fresh run.

Atomicity: `tf.train.CheckpointManager` writes a checkpoint's files under
temporary names, renames them, and only then rewrites the `checkpoint`
index file (itself through a temporary file and a rename), so a crash at
any moment leaves the index pointing at a complete checkpoint: the
previous one, or the new one. It keeps the last `keep` checkpoints.

A resumed run is the same run: `--resume` refuses a folder whose
`config.json` differs from the request in anything that changes the
training trajectory (network, preset arguments, data, seed, crop, batch,
learning rate, checkpoint interval, precision), naming the first
difference. A different step budget (`--steps`/`--epochs`) is accepted, to
extend a run, with a notice: the learning-rate schedule then spans the new
total, so the continuation is no longer the run it would have been.
"""
import json
import logging
import math
import os

import keras
import numpy as np
import tensorflow as tf

from tfdeblur.io import read_json
from tfdeblur.training.errors import RunError

logger = logging.getLogger(__name__)


class ResumeError(RunError):
    """`resume` on a folder that holds no run, or a different run."""


# config.json key -> the `TrainConfig` argument that sets it (for the error
# message; `arg` form, which the command line shows as the flag).
TRAJECTORY_KEYS = {
    "net": "`net`",
    "preset": "the preset's arguments",
    "model_overrides": "`model_overrides`",
    "data": "`data`",
    "seed": "`seed`",
    "crop": "`crop`",
    "batch_size": "`batch_size`",
    "learning_rate": "`learning_rate`",
    "steps_per_epoch_resolved": "`steps_per_epoch`",
    "precision_resolved": "`precision`",
    "phase": "`phase`",
    "jitter": "`jitter`",
    "recipe_name": "`recipe_name`",
}
# Value of a key that configs written before it existed lack.
_ABSENT = {"jitter": 0.0, "recipe_name": None}


def _same(a, b):
    if isinstance(a, float) or isinstance(b, float):
        try:
            return math.isclose(float(a), float(b), rel_tol=1e-12)
        except (TypeError, ValueError):
            return False
    return json.loads(json.dumps(a, default=str)) == json.loads(json.dumps(b, default=str))


def resume_mismatch(previous, current):
    """First trajectory setting in which two resolved configs differ, as a
    message, or None when `current` continues `previous`."""
    for key, option in TRAJECTORY_KEYS.items():
        if key not in previous and key not in current:
            continue
        old, new = previous.get(key, _ABSENT.get(key)), current.get(key, _ABSENT.get(key))
        if not _same(old, new):
            return f"{option} is {new!r} but the run being resumed has {old!r}"
    return None


def resume_notice(previous, current):
    """A notice for accepted changes (the step budget; bf16 bias gradients
    summed in float32 since a run began without it), or None."""
    notices = []
    old, new = previous.get("total_steps"), current.get("total_steps")
    if old is not None and old != new:
        notices.append(f"the step budget changed from {old} to {new} steps: the learning-rate schedule "
                       f"now spans {new} steps (an extended run, not an exact continuation)")
    bf16 = previous.get("precision_resolved") == current.get("precision_resolved") == "bf16"
    if bf16 and previous.get("bias_gradients") != current.get("bias_gradients"):
        notices.append(f"bias gradients were {previous.get('bias_gradients') or 'summed in bf16 (TensorFlow)'} "
                       f"and are now {current.get('bias_gradients') or 'summed in bf16'} (tfdeblur.bias_grad): "
                       "not an exact continuation")
    return "; ".join(notices) or None


def read_previous_config(out):
    path = os.path.join(out, "config.json")
    if not os.path.exists(path):
        raise ResumeError(f"`resume`: {out} holds no run to resume (no config.json)")
    return read_json(path, f"`resume`: {path}", ResumeError)


class RunState:
    """The checkpointed state of a run and its manager (`keep` last ones)."""

    def __init__(self, model, directory, keep=3):
        self.model = model
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.data_position = tf.Variable(0, dtype=tf.int64, trainable=False, name="data_position")
        self.checkpoint = tf.train.Checkpoint(
            model=model, optimizer=model.optimizer, step=self.step, data_position=self.data_position
        )
        self.directory = directory
        self.manager = tf.train.CheckpointManager(self.checkpoint, directory, max_to_keep=keep)

    @property
    def latest(self):
        return self.manager.latest_checkpoint

    def restore(self, net, path=None):
        """Restores the latest (or `path`) checkpoint; returns its step."""
        path = path or self.latest
        if path is None:
            raise ResumeError(f"`resume`: {self.directory} holds no checkpoint")
        try:
            status = self.checkpoint.restore(path)
            status.assert_existing_objects_matched()
        except (AssertionError, ValueError, tf.errors.OpError) as e:
            first = str(e).strip().splitlines()[0][:200] if str(e).strip() else e.__class__.__name__
            raise ResumeError(f"`resume`: checkpoint {path} does not fit {net} ({first})") from e
        status.expect_partial()
        return int(self.step.numpy())

    def save(self, step, data_position):
        self.step.assign(step)
        self.data_position.assign(data_position)
        return self.manager.save(checkpoint_number=step)


def weights_finite(model):
    return all(bool(np.isfinite(keras.ops.convert_to_numpy(w)).all()) for w in model.trainable_weights)


class Divergence:
    """Where a run's loss or weights stopped being finite."""

    def __init__(self):
        self.step = None
        self.what = None

    def __bool__(self):
        return self.step is not None

    def record(self, step, what):
        if self.step is None:
            self.step, self.what = int(step), what


class CheckpointAndGuard(keras.callbacks.Callback):
    """Checkpoints every epoch (`steps_per_epoch` steps) unless the loss or
    the weights went NaN/Inf, in which case it stops training and keeps the
    last good checkpoint (Keras' `TerminateOnNaN` would let the epoch end,
    and a checkpoint of NaN weights be written)."""

    def __init__(self, state, steps_per_epoch, batch_size, divergence, log=None):
        super().__init__()
        self.state = state
        self.steps_per_epoch = steps_per_epoch
        self.batch_size = batch_size
        self.divergence = divergence
        self.log = log or logger.info

    def _step(self):
        return int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(float(loss)):
            self.divergence.record(self._step(), f"loss is {float(loss)}")
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        if self.divergence:
            return
        if not weights_finite(self.model):
            self.divergence.record(self._step(), "weights hold NaN/Inf")
            self.model.stop_training = True
            return
        step = (epoch + 1) * self.steps_per_epoch
        path = self.state.save(step, step * self.batch_size)
        self.log(f"checkpoint {path} (step {step})")
