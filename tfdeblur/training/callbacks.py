"""Keras callbacks `train` uses, public for your own `model.fit`:

    from tfdeblur.training.callbacks import BestModel, ValidationImages, validation_batches

    val = validation_batches(val_pairs)          # a small fixed set, batches of 1
    model.fit(train, validation_data=val, steps_per_epoch=100, epochs=10,
              callbacks=[BestModel("run/best.keras", save=my_atomic_save),
                         ValidationImages("run/logs", val)])

With `validation_data` and tfdeblur's PSNR/SSIM metrics compiled in
(`tfdeblur.training.compile_args`), every epoch line and the TensorBoard
callback carry `val_psnr` and `val_ssim`.
"""
import logging

import keras
import tensorflow as tf

logger = logging.getLogger(__name__)

VAL_PAIRS = 8  # validated every epoch: small and fixed, so epochs stay comparable
VAL_CROP = 256  # centre crop of larger validation images, pixels


def _centre_crop(blur, sharp, size):
    shape = tf.shape(blur)
    h, w = tf.minimum(shape[0], size), tf.minimum(shape[1], size)
    top, left = (shape[0] - h) // 2, (shape[1] - w) // 2
    return blur[top:top + h, left:left + w], sharp[top:top + h, left:left + w]


def validation_batches(pairs, count=VAL_PAIRS, crop=VAL_CROP):
    """The first `count` (blur, sharp) pairs of the unbatched dataset
    `pairs`, centre-cropped to at most `crop` pixels a side, in batches of
    one (validation images differ in size), cached: the same set every epoch."""
    return pairs.take(count).map(lambda b, s: _centre_crop(b, s, crop)).batch(1).cache()


class BestModel(keras.callbacks.Callback):
    """Keeps `path` (a `.keras` file) holding the model of the best epoch by
    `monitor` (default `val_psnr`, higher is better).

    save(model, path): writes the file; pass an atomic writer (the `train`
    command passes its own) so that a kill mid-save leaves the previous best.
    best: the value to beat (a resumed run's best so far), None: any.
    log(line): where the new-best line goes (default: this module's logger, INFO).
    """

    def __init__(self, path, monitor="val_psnr", mode="max", save=None, best=None, log=None):
        super().__init__()
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min'; got {mode!r}")
        self.path, self.monitor, self.mode = path, monitor, mode
        self.save = save or (lambda model, p: model.save(p))
        self.log = log or logger.info
        self.best = None if best is None else float(best)
        self.best_epoch = None

    def _better(self, value):
        return self.best is None or (value > self.best if self.mode == "max" else value < self.best)

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None:
            return
        value = float(value)
        if value == value and self._better(value):  # NaN never wins
            self.best, self.best_epoch = value, epoch + 1
            self.save(self.model, self.path)
            self.log(f"best {self.monitor} {value:.4f} (epoch {epoch + 1}) -> {self.path}")


class ValidationImages(keras.callbacks.Callback):
    """blurry | output | sharp sheets of the first `count` pairs of `batches`
    (batched (blur, sharp)) in TensorBoard, under `log_dir/images`, each epoch."""

    def __init__(self, log_dir, batches, count=3):
        super().__init__()
        import os

        self.writer = tf.summary.create_file_writer(os.path.join(log_dir, "images"))
        self.pairs = [(b[:1], s[:1]) for b, s in batches.take(count)]

    def on_epoch_end(self, epoch, logs=None):
        with self.writer.as_default():
            for i, (blur, sharp) in enumerate(self.pairs):
                out = tf.clip_by_value(tf.cast(self.model(blur, training=False), blur.dtype), 0.0, 1.0)
                sheet = tf.concat([blur, out, sharp], axis=2)  # side by side
                tf.summary.image(f"blur|output|sharp/{i}", sheet, step=epoch + 1)
        self.writer.flush()
