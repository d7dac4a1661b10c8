"""A custom distributed training loop, for `MultiWorkerMirroredStrategy`.

Keras 3's `model.fit` fails under MultiWorkerMirroredStrategy
(keras-team/keras#20585); single-worker runs keep `model.fit`. This loop
does what `fit` does, with the same pieces, so a run's end of epoch is one
path whichever loop drives it:

- per step, the model's own `train_step` (so the compiled loss, metrics,
  optimizer, learning-rate schedule and loss scaling are the ones `fit`
  uses, defined once) inside `strategy.run`, on the per-replica batches of
  `strategy.distribute_datasets_from_function` (each worker builds only its
  own part of every global batch: `tfdeblur.datasets.stream`);
- per epoch, validation through the model's own `test_step`, logged as
  `val_<metric>` beside the training metrics, as `fit(validation_data=...)`
  logs it;
- the callbacks `fit` would be given, driven through a
  `keras.callbacks.CallbackList` in `fit`'s order (train begin, epoch
  begin, batch begin/end, test begin/batch/end, epoch end, train end), and
  `model.stop_training` honoured after each step as `fit` does.

Every task runs the same Python: metric reads (all-reduced) and checkpoint
saves are collectives, so they happen on every task at the same steps;
which callbacks a task is given decides who writes what (the chief only).
"""
import keras
import tensorflow as tf

from tfdeblur import keras_private


def epoch_line(step, total_steps, logs):
    """The epoch line: `step S/T: loss: ... - val_psnr: ...`."""
    return f"step {step}/{total_steps}: " + " - ".join(f"{k}: {float(v):.4f}" for k, v in logs.items())


def distributed_fit(model, strategy, dataset_fn, *, epochs, steps_per_epoch, initial_epoch=0, callbacks=(),
                    validation_data=None, log=None):
    """Trains epochs `initial_epoch` .. `epochs - 1` of `steps_per_epoch`
    steps, as `model.fit` would; returns the last epoch's logs.

    dataset_fn: `tf.distribute.InputContext -> tf.data.Dataset` of
      per-replica batches.
    callbacks: `keras.callbacks.Callback`s, as `fit` takes them.
    validation_data: a finite `tf.data.Dataset` of batched (blur, sharp),
      evaluated at the end of every epoch; every replica evaluates every
      batch (validation batches hold one image each), so the all-reduced
      means are the single-model values.
    log(line): the epoch line (`fit`'s verbose=2 line), or None.
    """
    dist = strategy.distribute_datasets_from_function(dataset_fn)
    with strategy.scope():
        # The symbolic build `fit` does: creates the metrics' variables
        # under the strategy before the first step.
        local = tf.nest.map_structure(_local_spec, dist.element_spec)
        keras_private.symbolic_build(model, local)
    iterator = iter(dist)
    validate = _validation(model, strategy, validation_data) if validation_data is not None else None

    # As `fit` does: XLA (when compiled with jit_compile=True) on the
    # per-replica step, the strategy's collectives outside it.
    step_fn = tf.function(model.train_step, jit_compile=True) if model.jit_compile else model.train_step

    @tf.function
    def train_one(it):
        strategy.run(step_fn, args=(next(it),))

    callbacks = keras.callbacks.CallbackList(list(callbacks), model=model, epochs=epochs, steps=steps_per_epoch,
                                             verbose=0)
    model.stop_training = False
    callbacks.on_train_begin()
    logs, epoch_logs = {}, {}
    for epoch in range(initial_epoch, epochs):
        model.reset_metrics()
        callbacks.on_epoch_begin(epoch)
        for batch in range(steps_per_epoch):
            callbacks.on_train_batch_begin(batch)
            train_one(iterator)
            logs = _metric_results(model)
            callbacks.on_train_batch_end(batch, logs)
            if model.stop_training:
                break
        epoch_logs = dict(logs)
        if validate is not None:
            epoch_logs.update({f"val_{k}": v for k, v in validate(callbacks).items()})
        if log is not None:
            log(epoch_line(epoch * steps_per_epoch + batch + 1, epochs * steps_per_epoch, epoch_logs))
        callbacks.on_epoch_end(epoch, epoch_logs)
        if model.stop_training:
            break
    callbacks.on_train_end(epoch_logs)
    del iterator
    return epoch_logs


def _validation(model, strategy, batches):
    """A function running `evaluate`'s loop over `batches` on every replica;
    returns the metrics' results. The iterator is made once (the batches
    repeat), as `fit` caches its validation iterator."""
    count = sum(1 for _ in batches)
    dist = strategy.distribute_datasets_from_function(lambda context: batches.repeat())
    iterator = iter(dist)

    @tf.function
    def test_one(it):
        strategy.run(model.test_step, args=(next(it),))

    def validate(callbacks):
        model.reset_metrics()
        callbacks.on_test_begin()
        for batch in range(count):
            callbacks.on_test_batch_begin(batch)
            test_one(iterator)
            callbacks.on_test_batch_end(batch, _metric_results(model))
        logs = _metric_results(model)
        callbacks.on_test_end(logs)
        return logs

    return validate


def _metric_results(model):
    # All-reduced reads: every task makes them, at the same steps.
    return {k: float(v) for k, v in model.get_metrics_result().items()}


def _local_spec(spec):
    # The per-replica spec of a distributed dataset's element.
    return getattr(spec, "_value_specs", [spec])[0] if not isinstance(spec, tf.TensorSpec) else spec
