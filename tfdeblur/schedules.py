"""Learning-rate schedules beyond Keras' own (registered: `.keras` files load them)."""
import math

import keras
from keras import ops

from tfdeblur.serialization import public


@public
class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from 0 over `warmup_steps`, then a half cosine from
    `learning_rate` to `learning_rate * final_fraction` at `decay_steps`,
    constant after (Loshchilov & Hutter, SGDR, ICLR 2017; the warm-up of
    Goyal et al. 2017). NAFNet and Restormer train with cosine annealing.

    Runs that continue in legs (`train --from`) restart it each leg: cosine
    annealing with warm restarts; the warm-up also lets the fresh Adam
    moments settle before the full rate.
    """

    def __init__(self, learning_rate, decay_steps, warmup_steps=0, final_fraction=0.0, name="warmup_cosine"):
        if not decay_steps >= 1:
            raise ValueError(f"decay_steps must be >= 1; got {decay_steps!r}")
        if not 0 <= warmup_steps < decay_steps:
            raise ValueError(f"warmup_steps must be in [0, decay_steps); got {warmup_steps!r}")
        if not 0 <= final_fraction <= 1:
            raise ValueError(f"final_fraction must be in [0, 1]; got {final_fraction!r}")
        self.learning_rate = float(learning_rate)
        self.decay_steps = int(decay_steps)
        self.warmup_steps = int(warmup_steps)
        self.final_fraction = float(final_fraction)
        self.name = name

    def __call__(self, step):
        step = ops.cast(step, "float32")
        warm = float(max(self.warmup_steps, 1))
        warmup = self.learning_rate * ops.minimum(step + 1.0, warm) / warm
        span = float(self.decay_steps - self.warmup_steps)
        progress = ops.clip((step - self.warmup_steps) / span, 0.0, 1.0)
        low = self.learning_rate * self.final_fraction
        cosine = low + 0.5 * (self.learning_rate - low) * (1.0 + ops.cos(math.pi * progress))
        return ops.where(step < self.warmup_steps, warmup, cosine)

    def get_config(self):
        return {"learning_rate": self.learning_rate, "decay_steps": self.decay_steps,
                "warmup_steps": self.warmup_steps, "final_fraction": self.final_fraction, "name": self.name}


@public
class HoldThenLinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """`initial_learning_rate` until step `hold_steps`, then linear down to
    `end_learning_rate` at step `end_steps`, constant after (FDDN's schedule,
    see `models/fddn.py`)."""

    def __init__(self, initial_learning_rate, hold_steps, end_steps, end_learning_rate=0.0, name="hold_then_linear"):
        if not 0 <= int(hold_steps) < int(end_steps):
            raise ValueError(f"hold_steps must be in [0, end_steps={end_steps}); got {hold_steps}")
        self.initial_learning_rate = float(initial_learning_rate)
        self.hold_steps = int(hold_steps)
        self.end_steps = int(end_steps)
        self.end_learning_rate = float(end_learning_rate)
        self.name = name

    def __call__(self, step):
        t = (ops.cast(step, "float32") - self.hold_steps) / float(self.end_steps - self.hold_steps)
        t = ops.clip(t, 0.0, 1.0)
        return self.initial_learning_rate + t * (self.end_learning_rate - self.initial_learning_rate)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate, "hold_steps": self.hold_steps,
                "end_steps": self.end_steps, "end_learning_rate": self.end_learning_rate, "name": self.name}
