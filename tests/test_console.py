"""Quiet start: the CLI's stderr holds its own lines only; real warnings and
`--verbose` still get through."""
import logging
import os
import subprocess
import sys

from tests.helpers import REPO
from tfdeblur import console

# TensorFlow 2.21's start-up stderr on a CPU machine with the CUDA build, as
# recorded with TF_CPP_MIN_LOG_LEVEL=2, plus lines that must survive.
STARTUP = """\
WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
I0000 00:00:1795665288.343413   10735 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.
I0000 00:00:1795665288.536388   10735 cpu_feature_guard.cc:227] This TensorFlow binary is optimized to use available CPU instructions in performance-critical operations.
To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow with the appropriate compiler flags.
W0000 00:00:1795665290.000001   10735 some_op.cc:12] a real warning
E0000 00:00:1795665299.579235   10735 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)
/x/site-packages/y.py:3: UserWarning: a Python warning
"""


def test_startup_noise_is_dropped_and_real_lines_kept():
    assert console.startup_lines_to_keep(STARTUP, gpu_present=False) == [
        "W0000 00:00:1795665290.000001   10735 some_op.cc:12] a real warning",
        "/x/site-packages/y.py:3: UserWarning: a Python warning",
    ]
    # With a GPU device node, a failed cuInit is a real problem: shown.
    kept = console.startup_lines_to_keep(STARTUP, gpu_present=True)
    assert len(kept) == 3 and "failed call to cuInit" in kept[1]


def _cli(*args):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_CPP")}
    return subprocess.run([sys.executable, str(REPO / "cli.py"), *args], capture_output=True, text=True,
                          timeout=300, env=env, cwd=REPO)


def test_list_and_a_failing_deblur_print_only_their_own_lines(tmp_path):
    proc = _cli("list")
    assert proc.returncode == 0 and proc.stdout.startswith("networks")
    assert proc.stderr == ""
    proc = _cli("deblur", "--model", "missing", str(tmp_path / "in.png"), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --model missing: no such file"), proc.stderr


def test_logging_info_on_stdout_warnings_on_stderr(capsys):
    logger = console.configure_logging(verbose=False)
    try:
        logger.debug("hidden")
        logger.info("step 1")
        logger.warning("look at this")
        out, err = capsys.readouterr()
        assert out == "step 1\n" and err == "warning: look at this\n"
        console.configure_logging(verbose=True)
        logger.debug("shown")
        assert capsys.readouterr().out == "shown\n"
    finally:
        logger.setLevel(logging.NOTSET)
        logger.propagate = True
        logger.handlers.clear()


def test_logged_argument_names_show_as_the_commands_flags(capsys):
    """The library logs `out`; the command line shows its flag, --out."""
    logger = console.configure_logging(names={"out": "--out"})
    try:
        logger.info("`out` runs/x: taking over the stale lock; `crop` stays")
        logger.warning("`out` is full")
        out, err = capsys.readouterr()
        assert out == "--out runs/x: taking over the stale lock; `crop` stays\n" and err == "warning: --out is full\n"
    finally:
        logger.setLevel(logging.NOTSET)
        logger.propagate = True
        logger.handlers.clear()
