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

A network whose training outputs also depend on the sharp target (e.g.
features of the ground truth, as MSFS-Net's official code computes) passes
`target_input=`: its training graph then takes `[blur, sharp]`, and the
train/test steps feed it both.
"""
import collections.abc

import keras
from tfdeblur import keras_private
from tfdeblur.serialization import public


def _unpack(data):
    return keras.utils.unpack_x_y_sample_weight(data)


@public
class DeblurModel(keras.Model):
    """Functional model with a second, training-time output dict.

    Subclasses build their graph and call
    `super().__init__(inputs=..., outputs=..., train_outputs=..., size_multiple=...)`.
    """

    # What an int8 TFLite export keeps in float32 unless told otherwise: TFLite
    # op types ("ADD") and Keras layer-name prefixes (`export.resolve_keep_float`).
    # A network sets it where its measured int8 error needs it (docs/serving.md).
    int8_keep_float = ()

    def __init__(self, inputs, outputs, train_outputs=None, size_multiple=1, target_input=None, **kwargs):
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        train_outputs = dict(train_outputs or {})
        train_outputs.setdefault("image", outputs)
        train_inputs = inputs if target_input is None else [inputs, target_input]
        # Not tracked as a sublayer: it shares every layer with `self`, and the
        # weights are saved once, through `self`.
        object.__setattr__(
            self, "_train_graph", keras.Model(inputs=train_inputs, outputs=train_outputs)
        )
        object.__setattr__(self, "needs_target", target_input is not None)
        # Layers only the training outputs use (e.g. side outputs at coarse
        # scales) are no part of the inference graph: tracked here, so their
        # weights train, count, save and checkpoint with the model's.
        known = {id(layer) for layer in self.layers}
        extra = [
            layer for layer in self._train_graph.layers
            if id(layer) not in known and not isinstance(layer, keras.layers.InputLayer)
        ]
        object.__setattr__(self, "train_only_layers", extra)
        for layer in extra:
            # One attribute each: both Keras and tf.train.Checkpoint track a
            # layer attribute (a Keras-tracked list is invisible to the latter).
            setattr(self, f"_train_only_{layer.name}", layer)
        object.__setattr__(self, "size_multiple", int(size_multiple))

    @property
    def train_output_names(self):
        return sorted(self._train_graph.output.keys())

    @property
    def min_size(self):
        """Smallest H and W the model accepts (symmetric padding needs pad <= size)."""
        return max(1, self.size_multiple - 1)

    def training_outputs(self, x, y=None, training=False):
        """All training outputs (dict) for a batch of blurry images `x`
        (and sharp images `y` for a network with `needs_target`)."""
        if self.needs_target:
            if y is None:
                raise ValueError(f"{self.name}: training_outputs needs the sharp images y; got None")
            return self._train_graph([x, y], training=training)
        return self._train_graph(x, training=training)

    # -- Keras training hooks -------------------------------------------------
    def compile(self, *args, **kwargs):
        """`keras.Model.compile`; a tfdeblur loss with `term_names` (e.g.
        `MSFSLoss`) also gets one mean tracker per term, logged as
        "loss_<term>" (and "val_loss_<term>") beside "loss"."""
        from tfdeblur.losses import DeblurLoss

        super().compile(*args, **kwargs)
        names = getattr(self.loss, "term_names", ()) if isinstance(self.loss, DeblurLoss) else ()
        # Not tracked as attributes: metric state is no model weight (nor in
        # checkpoints); `metrics` below lists them, so Keras resets and logs them.
        object.__setattr__(
            self, "_term_trackers", {n: keras.metrics.Mean(name=f"loss_{n}") for n in names}
        )

    @property
    def metrics(self):
        return super().metrics + list(getattr(self, "_term_trackers", {}).values())

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        from tfdeblur.losses import DeblurLoss

        # A Mapping, not a dict: under tf.distribute the outputs come back
        # wrapped in a trackable dict type.
        is_dict = isinstance(y_pred, collections.abc.Mapping)
        if isinstance(self.loss, DeblurLoss):
            if not is_dict:
                # Keras' symbolic build (it runs under tf.distribute) passes
                # `model(x)`; a tfdeblur loss needs the training outputs.
                y_pred = self.training_outputs(x, y, training=training)
            total = self.loss(y, y_pred, sample_weight)
            for extra in self.losses:  # add_loss / regularizers
                total = total + keras_private.aggregate_additional_loss(self, extra)
            return total
        if is_dict:
            y_pred = y_pred["image"]
        return super().compute_loss(x, y, y_pred, sample_weight, training=training)

    def _loss_of(self, x, y, y_pred, sample_weight, training):
        """The loss, also recorded (unscaled) in the loss tracker."""
        loss = keras_private.compute_loss(
            self, x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training
        )
        keras_private.loss_tracker(self).update_state(
            keras_private.unscale_loss_for_distribution(loss),
            sample_weight=keras.ops.shape(x)[0],
        )
        trackers = getattr(self, "_term_trackers", None)
        if trackers and isinstance(y_pred, collections.abc.Mapping):
            for name, value in self.loss.terms(y, y_pred).items():
                trackers[name].update_state(value)
        return loss

    def train_step(self, data):
        # TensorFlow here only: the networks themselves are backend-neutral
        # Keras (tfdeblur.training.jax_leg trains them under JAX).
        import tensorflow as tf

        if self.compute_dtype == "bfloat16":
            from tfdeblur import bias_grad

            bias_grad.install()  # TensorFlow's CPU BiasAddGrad sums bf16 in bf16
        x, y, sample_weight = _unpack(data)
        with tf.GradientTape() as tape:
            y_pred = self.training_outputs(x, y, training=True)
            loss = self._loss_of(x, y, y_pred, sample_weight, training=True)
            loss = self.optimizer.scale_loss(loss)
        weights = self.trainable_weights
        grads = tape.gradient(loss, weights)
        self.optimizer.apply_gradients(zip(grads, weights))
        return self.compute_metrics(x, y, y_pred["image"], sample_weight=sample_weight)

    def test_step(self, data):
        x, y, sample_weight = _unpack(data)
        y_pred = self.training_outputs(x, y, training=False)
        self._loss_of(x, y, y_pred, sample_weight, training=False)
        return self.compute_metrics(x, y, y_pred["image"], sample_weight=sample_weight)

    # -- serialization ---------------------------------------------------------
    def get_config(self):
        return {"name": self.name, "trainable": self.trainable}

    @classmethod
    def from_config(cls, config):
        return cls(**config)
