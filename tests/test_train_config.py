"""`train --config RUN/config.json`: a run repeated or forked from the
config.json it wrote, the options given replacing the file's values."""
import json

from tests.helpers import run_cli_error
from tfdeblur.training.run import TrainConfig, request_from_options

TINY = {"widths": [4, 8, 16], "blocks_per_level": 1}


def _config(path, **kw):
    # What a run writes: the request's fields, resolved, then what they resolved to.
    record = dict(net="mtwdn", data="synthetic", steps=1, epochs=None, batch_size=1, crop=32, out=str(path.parent / "a"),
                  resume=True, precision="fp32", learning_rate=1e-3, paper=True, seed=7, steps_per_epoch=1,
                  val_images=1, model_overrides=TINY, stop_at=1, jitter=0.1, take_over_lock=True,
                  precision_resolved="fp32", total_steps=1, recipe={"loss": {}}, parameters=1)
    record.update(kw)
    path.write_text(json.dumps(record))
    return path


def test_config_values_then_the_options_given(tmp_path):
    path = _config(tmp_path / "config.json")
    cfg = request_from_options({"config": str(path), "net": None, "seed": 3, "out": "b", "paper": False,
                                "resume": False, "crop": None, "devices": None, "init_from": None, "phase": None})
    assert cfg == TrainConfig(net="mtwdn", data="synthetic", steps=1, batch_size=1, crop=32, out="b", precision="fp32",
                              learning_rate=1e-3, paper=True, seed=3, steps_per_epoch=1, val_images=1,
                              model_overrides=TINY, jitter=0.1)  # resume, stop_at, take_over_lock: this session's own


def test_without_net_or_config_the_error_says_which(capsys):
    assert run_cli_error(capsys, ["train"]) == "error: train: give NET (e.g. mtwdn) or --config RUN/config.json"


def test_a_missing_or_bad_config_is_one_line_naming_the_file(capsys, tmp_path):
    missing = tmp_path / "nowhere" / "config.json"
    assert run_cli_error(capsys, ["train", "--config", str(missing)]) == f"error: --config {missing}: no such file"
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    err = run_cli_error(capsys, ["train", "--config", str(bad)])
    assert err.startswith(f"error: --config {bad}: not a readable JSON file (JSONDecodeError: Expecting property name")
    other = tmp_path / "other.json"
    other.write_text("[1, 2]")
    err = run_cli_error(capsys, ["train", "--config", str(other)])
    assert err == f'error: --config {other}: not a run\'s config.json (no "net" name in it)'
    typo = _config(tmp_path / "typo.json", crop="big")
    err = run_cli_error(capsys, ["train", "--config", str(typo), "--out", str(tmp_path / "run")])
    assert err == "error: --crop must be a positive integer; got 'big'"


def test_train_config_forks_a_run(tmp_path, capsys):
    from tfdeblur.cli import main

    path = _config(tmp_path / "config.json")
    out = tmp_path / "fork"
    assert main(["train", "--config", str(path), "--out", str(out), "--seed", "3"]) == 0, capsys.readouterr().err
    fork = json.loads((out / "config.json").read_text())
    assert (fork["net"], fork["seed"], fork["crop"], fork["model_overrides"], fork["jitter"]) == ("mtwdn", 3, 32, TINY, 0.1)
    assert fork["out"] == str(out) and fork["resume"] is False and fork["paper"] is True
