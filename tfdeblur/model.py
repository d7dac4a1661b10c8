"""`DeblurModel`: the base class of every tfdeblur network.

Each network is a functional graph built inside a `keras.Model` subclass
(keras-hub style) whose `get_config` returns only its constructor arguments.

Calling the model returns the restored full-resolution image, float32, the
same size as the input: that is what `predict`, SavedModel and TFLite export
see. Losses of multi-scale or multi-branch networks need more than that
(coarse-scale outputs, branch outputs, features), so every network also
declares a dict of *training outputs* (always containing "image"). The
model's `train_step`/`test_step` run that graph, which shares every layer and
weight with the inference graph, and hand the dict to the loss:

- a tfdeblur loss (`tfdeblur.losses.DeblurLoss`) receives the whole dict;
- any other compiled loss (e.g. `loss="mae"`) receives only "image".

So `model.compile(...)` and `model.fit(ds)` on `(blur, sharp)` pairs work as
in any Keras model, under `tf.distribute` too.
"""
import collections.abc

import keras
import tensorflow as tf
from keras.src.losses import loss as _keras_loss

from tfdeblur.serialization import public


def _unpack(data):
    return keras.utils.unpack_x_y_sample_weight(data)


@public
class DeblurModel(keras.Model):
    """Functional model with a second, training-time output dict.

    Subclasses build their graph and call
    `super().__init__(inputs=..., outputs=..., train_outputs=..., size_multiple=...)`.
    """

    def __init__(self, inputs, outputs, train_outputs=None, size_multiple=1, **kwargs):
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        train_outputs = dict(train_outputs or {})
        train_outputs.setdefault("image", outputs)
        # Not tracked as a sublayer: it shares every layer with `self`, and the
        # weights are saved once, through `self`.
        object.__setattr__(
            self, "_train_graph", keras.Model(inputs=inputs, outputs=train_outputs)
        )
        object.__setattr__(self, "size_multiple", int(size_multiple))

    @property
    def train_output_names(self):
        return sorted(self._train_graph.output.keys())

    @property
    def min_size(self):
        """Smallest H and W the model accepts (symmetric padding needs pad <= size)."""
        return max(1, self.size_multiple - 1)

    def training_outputs(self, x, training=False):
        """All training outputs (dict) for a batch of blurry images."""
        return self._train_graph(x, training=training)

    # -- Keras training hooks -------------------------------------------------
    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        from tfdeblur.losses import DeblurLoss

        # A Mapping, not a dict: under tf.distribute the outputs come back
        # wrapped in a trackable dict type.
        is_dict = isinstance(y_pred, collections.abc.Mapping)
        if isinstance(self.loss, DeblurLoss):
            if not is_dict:
                # Keras' symbolic build (it runs under tf.distribute) passes
                # `model(x)`; a tfdeblur loss needs the training outputs.
                y_pred = self._train_graph(x, training=training)
            total = self.loss(y, y_pred, sample_weight)
            for extra in self.losses:  # add_loss / regularizers
                total = total + self._aggregate_additional_loss(extra)
            return total
        if is_dict:
            y_pred = y_pred["image"]
        return super().compute_loss(x, y, y_pred, sample_weight, training=training)

    def _loss_of(self, x, y, y_pred, sample_weight, training):
        """The loss, also recorded (unscaled) in the loss tracker."""
        loss = self._compute_loss(
            x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training
        )
        self._loss_tracker.update_state(
            _keras_loss.unscale_loss_for_distribution(loss),
            sample_weight=tf.shape(x)[0],
        )
        return loss

    def train_step(self, data):
        x, y, sample_weight = _unpack(data)
        with tf.GradientTape() as tape:
            y_pred = self._train_graph(x, training=True)
            loss = self._loss_of(x, y, y_pred, sample_weight, training=True)
            loss = self.optimizer.scale_loss(loss)
        weights = self.trainable_weights
        grads = tape.gradient(loss, weights)
        self.optimizer.apply_gradients(zip(grads, weights))
        return self.compute_metrics(x, y, y_pred["image"], sample_weight=sample_weight)

    def test_step(self, data):
        x, y, sample_weight = _unpack(data)
        y_pred = self._train_graph(x, training=False)
        self._loss_of(x, y, y_pred, sample_weight, training=False)
        return self.compute_metrics(x, y, y_pred["image"], sample_weight=sample_weight)

    # -- serialization ---------------------------------------------------------
    def get_config(self):
        return {"name": self.name, "trainable": self.trainable}

    @classmethod
    def from_config(cls, config):
        return cls(**config)
