"""One line out of a TensorFlow runtime error, for `error: ...` messages.

TensorFlow's messages carry graph plumbing around the part a user needs:
`{{function_node __wrapped__SaveV2_...}} /run/checkpoints/ckpt-1_temp/part-...;
No space left on device [Op:SaveV2]`. Imports nothing heavy: callers pass
the exception.
"""
import re

_PLUMBING = re.compile(r"\{\{[^}]*\}\}\s*|\s*\[Op:[^\]]*\].*$|\s*name:\s*$")
# Reasons meaning the disk (or a file-size limit) is full, as the OS words them.
DISK_FULL = ("No space left on device", "File too large", "Disk quota exceeded")


def first_line(e):
    """The first line of an exception's message; its class name when it has none."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def tf_error_reason(e):
    """The first line of a `tf.errors.OpError`'s message, without the graph
    plumbing; the class name when nothing is left."""
    text = getattr(e, "message", None) or str(e)
    line = text.strip().splitlines()[0] if text.strip() else ""
    line = _PLUMBING.sub("", line).strip()
    return line or type(e).__name__


def disk_full(e):
    """True when an OSError or TensorFlow error says the disk is full."""
    import errno

    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        return True
    return any(reason in str(e) for reason in DISK_FULL)
