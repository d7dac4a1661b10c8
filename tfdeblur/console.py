"""What the command line shows: its own lines, TensorFlow's real warnings,
and, with `--verbose`, everything.

The library logs to `logging.getLogger("tfdeblur")` (INFO: progress lines,
WARNING: things a user should act on) and never configures logging itself;
`configure_logging` is the CLI's choice: INFO lines on stdout as plain
text, warnings on stderr as `warning: ...`.

TensorFlow 2.21 prints its start-up lines before `TF_CPP_MIN_LOG_LEVEL` can
act: abseil writes everything logged before `absl::InitializeLog()` to
stderr (its banner, `cudart_stub` INFO lines), and `failed call to cuInit`
is an ERROR line on every machine without an NVIDIA GPU. So
`import_tensorflow_quietly` imports TensorFlow and initialises its devices
with stderr (fd 2) going to a temporary file, then writes back every line
except those known start-up lines.
"""
import contextlib
import glob
import logging
import os
import re
import sys
import tempfile

from tfdeblur.errors import flags_for

LOGGER = "tfdeblur"

# Start-up lines that say nothing a user can act on.
_STARTUP_NOISE = re.compile(
    r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR$"
    r"|I\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [\w.]+:\d+\] "  # absl INFO lines (cudart_stub, cpu_feature_guard, oneDNN)
    r"|To enable the following instructions: .* rebuild TensorFlow with the appropriate compiler flags\.$"
)
# What TensorFlow's CUDA build says on a machine without an NVIDIA GPU;
# kept where a GPU device node exists, since there it is a real problem.
_NO_GPU_NOISE = re.compile(
    r"[EW]\d{4} .*(failed call to cuInit|Could not find cuda drivers|Unable to register cu(DNN|FFT|BLAS) factory"
    r"|computation placer already registered)"
)


def _has_nvidia_device():
    return bool(glob.glob("/dev/nvidia[0-9]*"))


def startup_lines_to_keep(text, gpu_present=None):
    """The lines of captured start-up stderr `text` worth showing."""
    gpu_present = _has_nvidia_device() if gpu_present is None else gpu_present
    kept = []
    for line in text.splitlines():
        if _STARTUP_NOISE.match(line) or (not gpu_present and _NO_GPU_NOISE.match(line)):
            continue
        kept.append(line)
    return kept


def import_tensorflow_quietly(verbose=False):
    """Imports TensorFlow (and finds its devices) for the CLI: quiet unless
    `verbose`. Must run before anything else imports TensorFlow; later calls
    do nothing."""
    if verbose:
        import tensorflow  # noqa: F401

        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # C++ INFO and WARNING after abseil's start
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()  # cuInit and its complaint happen here, not at the first op
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = startup_lines_to_keep(captured.read().decode("utf-8", "replace"))
            if kept:
                print("\n".join(kept), file=sys.stderr, flush=True)


class _StdoutHandler(logging.Handler):
    """INFO as plain lines on the current `sys.stdout`, WARNING and above as
    `warning: ...` / `error: ...` on the current `sys.stderr` (looked up at
    each record, so callers that swap the streams, such as tests, see them).
    The library's argument names (`out`) show as the command's flags
    (--out) where `names` (`tfdeblur.errors.flags`) holds them."""

    names = {}

    def emit(self, record):
        try:
            message = flags_for(self.format(record), self.names)
            if record.levelno >= logging.WARNING:
                print(f"{record.levelname.lower()}: {message}", file=sys.stderr, flush=True)
            else:
                print(message, file=sys.stdout, flush=True)
        except Exception:
            self.handleError(record)


def configure_logging(verbose=False, names=None):
    """The CLI's logging: tfdeblur's INFO lines on stdout (DEBUG too with
    `verbose`), warnings on stderr, argument names written as the flags
    `names` maps them to (`tfdeblur.errors.flags`). Idempotent; the last
    call's `names` hold."""
    logger = logging.getLogger(LOGGER)
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    handler = next((h for h in logger.handlers if isinstance(h, _StdoutHandler)), None)
    if handler is None:
        handler = _StdoutHandler()
        logger.addHandler(handler)
    handler.names = dict(names or {})
    logger.propagate = False
    return logger


class Progress:
    """The CLI's one progress display: `keras.utils.Progbar` (bar, count,
    ETA) drawn on a terminal's stderr, since stdout carries the result lines;
    silent when the stream is not a terminal (a log or a pipe gets only the
    results). `update` takes fractions: `part(i)` is a `Deblurrer`
    `progress(done, total)` callback moving the bar through item `i`'s share
    tile by tile."""

    def __init__(self, total, unit="file", stream=None):
        self.total, self.stream = total, stream or sys.stderr
        self.enabled = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._bar = None
        if self.enabled:
            import keras

            self._bar = keras.utils.Progbar(total, unit_name=unit)

    def update(self, done):
        if self._bar is not None:
            with contextlib.redirect_stdout(self.stream):  # Progbar writes to sys.stdout
                self._bar.update(done)
            self.stream.flush()

    def part(self, index):
        return lambda done, total: self.update(index + done / max(1, total))

    def close(self):
        """Draws the finished bar and ends its line."""
        self.update(self.total)


def positive_int(text):
    """argparse `type=` of the CLI's counts: an int >= 1, else argparse's own error."""
    import argparse

    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer; got {text!r}")
    return value
