"""The library logs to `logging.getLogger("tfdeblur")` and never prints: a
caller that configures no logging sees nothing on stdout, one that does gets
the records; the entry points (the CLI, `python -m tfdeblur.training.legs`)
configure it and show the lines (tfdeblur.console.configure_logging)."""
import json
import logging
import socket

import pytest

LOGGER = "tfdeblur"


@pytest.fixture()
def unconfigured():
    """The 'tfdeblur' logger as a program that never configured logging
    has it (an in-process CLI run earlier in this worker may have given it
    the CLI's stdout handler); restored afterwards."""
    logger = logging.getLogger(LOGGER)
    saved = logger.handlers[:], logger.level, logger.propagate
    logger.handlers.clear()
    logger.setLevel(logging.NOTSET)
    logger.propagate = True
    yield logger
    logger.handlers[:], logger.level, logger.propagate = saved[0], saved[1], saved[2]


def _stale_lock(folder):
    """A run folder whose train.lock names a dead process of this host:
    `runlock.acquire` takes it over and says so."""
    folder.mkdir()
    (folder / "train.lock").write_text(json.dumps({"pid": 999999, "host": socket.gethostname(), "started": "t"}))
    return str(folder)


def test_a_library_notice_is_a_log_record_not_a_print(tmp_path, capsys, caplog, unconfigured):
    from tfdeblur.training import runlock

    runlock.acquire(_stale_lock(tmp_path / "a")).release()
    assert capsys.readouterr() == ("", "")  # nothing configured: nothing shown
    caplog.set_level(logging.INFO, logger=LOGGER)
    runlock.acquire(_stale_lock(tmp_path / "b")).release()
    assert capsys.readouterr().out == ""
    [record] = [r for r in caplog.records if "taking over the stale lock" in r.getMessage()]
    assert record.name == "tfdeblur.training.runlock" and record.levelno == logging.INFO
    # An explicit `log` callable still replaces the logger.
    lines = []
    runlock.acquire(_stale_lock(tmp_path / "c"), log=lines.append).release()
    assert len(lines) == 1 and "taking over the stale lock" in lines[0]


def test_a_training_run_prints_nothing_and_logs_its_lines(tmp_path, capsys, caplog, unconfigured):
    from tfdeblur.training.run import TrainConfig, run_training

    caplog.set_level(logging.INFO, logger=LOGGER)
    cfg = TrainConfig(net="mtwdn", steps=1, steps_per_epoch=1, batch_size=1, crop=32, out=str(tmp_path / "run"),
                      precision="fp32", val_images=1, model_overrides={"widths": [4, 8, 8], "blocks_per_level": 1})
    run_training(cfg)
    out, err = capsys.readouterr()
    assert out == ""
    messages = [r.getMessage() for r in caplog.records if r.name == "tfdeblur.training.run"]
    # the epoch line too: Keras' own display is the CLI's (progress=True), not the library's
    for start in ("training mtwdn", "step 1/1: loss: ", "checkpoint ", "validating ...", "SSIM: "):
        assert any(m.startswith(start) for m in messages), (start, messages)
        assert start not in err


def test_legs_entry_point_shows_the_library_lines(tmp_path, capsys, monkeypatch, unconfigured):
    from tfdeblur.training import legs

    def finish(name, run, **_):
        legs.logger.info(f"leg 1 of {name}: finished {run}")

    monkeypatch.setattr(legs, "finish", finish)
    assert legs.main(["finish", "mtwdn-x", "--run", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"leg 1 of mtwdn-x: finished {tmp_path}" and lines[1].startswith("done in ")
