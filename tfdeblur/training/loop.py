"""A custom distributed training loop, for `MultiWorkerMirroredStrategy`.

Keras 3's `model.fit` fails under MultiWorkerMirroredStrategy
(keras-team/keras#20585); single-worker runs keep `model.fit`. This loop
does what `fit` does per step, with the same pieces: it calls the model's
own `train_step` (so the compiled loss, metrics, optimizer, learning-rate
schedule and loss scaling are the ones `fit` uses, defined once) inside
`strategy.run`, on the per-replica batches of
`strategy.distribute_datasets_from_function` (each worker builds only its
own part of every global batch: `tfdeblur.datasets.stream`).

Every task runs the same Python: metric reads (all-reduced) and checkpoint
saves are collectives, so they happen on every task at the same steps;
the `on_epoch_end` hook decides who writes what (the chief only).
"""
import math

import tensorflow as tf

from tfdeblur import keras_private


def distributed_fit(model, strategy, dataset_fn, start_step, end_step, steps_per_epoch,
                    on_epoch_end, divergence, log=print, verbose=True):
    """Trains from `start_step` to `end_step`.

    dataset_fn: `tf.distribute.InputContext -> tf.data.Dataset` of
      per-replica batches.
    on_epoch_end(step, logs): called every `steps_per_epoch` steps, on every
      task, unless training diverged.
    divergence: a `state.Divergence`, recorded (and training stopped) when
      the all-reduced mean loss of the epoch so far is not finite.
    """
    dist = strategy.distribute_datasets_from_function(dataset_fn)
    spec = dist.element_spec
    with strategy.scope():
        # The symbolic build `fit` does: creates the metrics' variables
        # under the strategy before the first step.
        local = tf.nest.map_structure(_local_spec, spec)
        keras_private.symbolic_build(model, local)
    iterator = iter(dist)

    # As `fit` does: XLA (when compiled with jit_compile=True) on the
    # per-replica step, the strategy's collectives outside it.
    step_fn = tf.function(model.train_step, jit_compile=True) if model.jit_compile else model.train_step

    @tf.function
    def train_one(it):
        strategy.run(step_fn, args=(next(it),))

    loss_tracker = keras_private.loss_tracker(model)
    for epoch_start in range(start_step, end_step, steps_per_epoch):
        for metric in model.metrics:
            metric.reset_state()
        for step in range(epoch_start, min(epoch_start + steps_per_epoch, end_step)):
            train_one(iterator)
            loss = float(loss_tracker.result())
            if not math.isfinite(loss):
                divergence.record(step + 1, f"loss is {loss}")
                return
        logs = {k: float(v) for k, v in model.get_metrics_result().items()}
        if verbose:
            log(f"step {step + 1}/{end_step}: " + " - ".join(f"{k}: {v:.4f}" for k, v in logs.items()))
        on_epoch_end(step + 1, logs)
    del iterator


def _local_spec(spec):
    # The per-replica spec of a distributed dataset's element.
    return getattr(spec, "_value_specs", [spec])[0] if not isinstance(spec, tf.TensorSpec) else spec

