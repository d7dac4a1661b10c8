"""bf16 bias gradients summed in float32 (TensorFlow's CPU kernel sums them in bf16).

Under `mixed_bfloat16` a Keras `Conv2D` or `Dense` adds its bias with
`tf.nn.bias_add` in bf16, and the gradient of that bias is TensorFlow's
`BiasAddGrad`: a sum over every pixel of the batch. Its CPU kernel (TF 2.21)
accumulates bf16 in bf16, which stalls once the running sum is ~256 times
an addend (8 bits of mantissa): on 4 x 256 x 256 x 64 values it returns
about a tenth of the true sum, while `tf.reduce_sum` of the same bf16
tensor is right (it accumulates in float32). On the shipped MTWDN
(`benchmarks/bf16_gradients.py`: 4 photo pairs at 256 px, bf16 against
float32 gradients) the worst bias gradients came out 0.08-0.5 of their
float32 size at cosine 0.59-0.71 and the whole gradient at cosine 0.85;
with this fix 0.986. Every CPU leg trained in bf16 before it
(mtwdn-photos legs 10-11, lmfn-photos leg 8) had TensorFlow's sums.

`install()` replaces the registered gradient of `BiasAdd` by one that sums
bf16 in float32 (`tf.reduce_sum` of the float32 cast) and leaves every
other dtype to TensorFlow's own. There is no public API to replace a
registered gradient (`tf.RegisterGradient` refuses a name that exists), so
this uses TensorFlow's private registry; it is the one place that does.
`DeblurModel.train_step` installs it when the model computes in bf16, so
`fit`, `train` and the multi-worker loop all get it.
"""
import tensorflow as tf
from tensorflow.python.framework import ops as _tf_ops  # private: the gradient registry

_OP = "BiasAdd"


def _axes(rank, data_format):
    channel = 1 if data_format.startswith(b"NC") else rank - 1
    return [a for a in range(rank) if a != channel]


def _make_gradient(original):
    def bias_add_gradient(op, received_grad):
        if received_grad.dtype != tf.bfloat16:
            return original(op, received_grad)
        try:
            data_format = op.get_attr("data_format")
        except ValueError:
            data_format = b"NHWC"
        axes = _axes(received_grad.shape.rank, data_format)
        bias = tf.reduce_sum(tf.cast(received_grad, tf.float32), axis=axes)
        return received_grad, tf.cast(bias, tf.bfloat16)

    bias_add_gradient.tfdeblur_original = original
    return bias_add_gradient


def installed():
    """Whether `BiasAdd`'s registered gradient is ours."""
    return hasattr(_tf_ops._gradient_registry.lookup(_OP), "tfdeblur_original")


def install():
    """Makes bf16 bias gradients sum in float32 (idempotent; process-wide)."""
    registry = _tf_ops._gradient_registry._registry
    if installed():
        return
    entry = registry[_OP]
    registry[_OP] = dict(entry, type=_make_gradient(entry["type"]))


def uninstall():
    """Restores TensorFlow's own gradient (tests compare the two)."""
    registry = _tf_ops._gradient_registry._registry
    if installed():
        entry = registry[_OP]
        registry[_OP] = dict(entry, type=entry["type"].tfdeblur_original)
