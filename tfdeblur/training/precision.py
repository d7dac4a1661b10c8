"""Training's precision: `tfdeblur.precision` (the choice of bf16 or fp32 on
this machine, also used by restoring) and the width of a network by name."""
import keras

from tfdeblur.precision import (  # noqa: F401  (the names training and its callers use)
    BF16_MARGIN,
    CACHE_ENV,
    CACHE_VERSION,
    FLAGS_THAT_MATTER,
    PRECISIONS,
    Decision,
    apply_precision,
    cache_file,
    cache_key,
    cached_benchmark,
    choose_precision,
    conv_step,
    cpu_flags,
    cpu_model,
    decide_precision,
    measure_conv_step,
    resolve_precision,
    set_precision,
)
from tfdeblur.timing import conv_width


def network_width(net, **overrides):
    """The network's typical conv width (`tfdeblur.timing.conv_width`), from a
    float32 build that is thrown away."""
    from tfdeblur.models import build

    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")
    try:
        return conv_width(build(net, **overrides))
    finally:
        keras.mixed_precision.set_global_policy(previous)
