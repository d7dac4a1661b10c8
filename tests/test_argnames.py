"""Errors name what the caller typed: library errors the Python argument
(`crop`, `tfdeblur.errors.arg`), the command line its flag (--crop), mapped
from the parser's own actions (`tfdeblur.errors.flags`)."""
import argparse

import pytest

from tests.helpers import run_cli_error
from tfdeblur.errors import arg, flags, flags_for


def _train_flags():
    from tfdeblur.cli import _parser

    return flags(_parser(), "train")


def test_flags_come_from_the_parser():
    names = _train_flags()
    assert names["crop"] == "--crop" and names["batch_size"] == "--batch-size"
    assert names["init_from"] == "--from" and names["recipe_name"] == "--recipe"  # dest differs from the flag
    assert names["net"] == "net" and names["verbose"] == "--verbose"  # a positional; the main parser's options
    from tfdeblur.cli import _parser

    assert flags(_parser(), "prepare")["data"] == "SPEC"  # a positional's metavar
    assert "quantize" not in names and flags(_parser(), "export")["quantize"] == "--quantize"
    # A new option maps without a table.
    p = argparse.ArgumentParser()
    p.add_argument("-n", "--new-thing", type=int)
    p.add_argument("--old", dest="renamed")
    assert flags(p) == {"help": "--help", "new_thing": "--new-thing", "renamed": "--old"}


def test_only_whole_marked_names_are_rewritten():
    names = _train_flags()
    assert arg("batch_size") == "`batch_size`"
    message = (f"{arg('batch_size')} 300: /runs/crop/batch_size_crop.keras holds crop {arg('crop')}s; "
               f"`crop_size` `model_overrides` `crop`x crop-batch_size `init_from`")
    assert flags_for(message, names) == (
        "--batch-size 300: /runs/crop/batch_size_crop.keras holds crop --crops; "
        "`crop_size` `model_overrides` --cropx crop-batch_size --from")
    assert flags_for("no names here: /a/`b/c", names) == "no names here: /a/`b/c"


def test_library_errors_name_the_python_argument(tmp_path):
    from tfdeblur import deblur_files, export
    from tfdeblur.datasets import spec
    from tfdeblur.training.run import RunError, TrainConfig, _check_config

    with pytest.raises(RunError) as e:
        _check_config(TrainConfig(net="mtwdn", steps_per_epoch=100, stop_at=150))
    assert str(e.value) == "`stop_at` must be a positive multiple of `steps_per_epoch` 100; got 150"
    with pytest.raises(RunError, match=r"^`init_from` \S*missing.keras: no such file$"):
        _check_config(TrainConfig(net="mtwdn", init_from=str(tmp_path / "missing.keras")))
    with pytest.raises(RunError, match=r"^`crop` must be a positive integer; got 0$"):
        _check_config(TrainConfig(net="mtwdn", crop=0))
    with pytest.raises(ValueError, match=r"^`quantize` applies to `format` tflite only; got `quantize` fp16$"):
        export.check_options(str(tmp_path / "m"), "saved_model", quantize="fp16")
    with pytest.raises(ValueError, match=r"^`format` must be png, jpg or same; got 'gif'$"):
        deblur_files.photo_options("gif", None)
    with pytest.raises(ValueError, match=r"^`seed` must be a non-negative integer; got -1$"):
        spec.prepare("synthetic", str(tmp_path / "p"), count=2, seed=-1)


def test_the_cli_names_the_flag(capsys, tmp_path):
    out = str(tmp_path / "r")
    err = run_cli_error(capsys, ["train", "mtwdn", "--steps-per-epoch", "100", "--stop-at", "150", "--out", out])
    assert err == "error: --stop-at must be a positive multiple of --steps-per-epoch 100; got 150"
    # init_from is --from; the path keeps the words that are also argument names.
    missing = tmp_path / "crop" / "batch_size.keras"
    err = run_cli_error(capsys, ["train", "mtwdn", "--from", str(missing), "--out", out])
    assert err == f"error: --from {missing}: no such file"
    err = run_cli_error(capsys, ["deblur", str(tmp_path / "a.png"), "--out", out, "--format", "gif"])
    assert err == "error: --format must be png, jpg or same; got 'gif'"
    err = run_cli_error(capsys, ["prepare", "synthetic", "--count", "2", "--seed", "-1", "--out", str(tmp_path / "p")])
    assert err == "error: --seed must be a non-negative integer; got -1"
    err = run_cli_error(capsys, ["prepare", "imagenet:/d", "--out", str(tmp_path / "p")])
    assert err.startswith("error: SPEC must be one of ")


def test_pack_names_its_arguments_and_python_m_tfdeblur_weights_its_flags(tmp_path, capsys):
    from tfdeblur.weights.__main__ import main as weights_main
    from tfdeblur.weights.pack import pack

    with pytest.raises(ValueError, match=r"^`dtype` must be one of fp16, bf16, fp32; got 'fp8'$"):
        pack("/nonexistent/model.keras", "mtwdn-x", dtype="fp8")
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    with pytest.raises(ValueError, match=r"^`out` .*file: exists and is not a directory$"):
        pack("/nonexistent/model.keras", "mtwdn-x", out=str(not_a_dir))
    assert weights_main(["pack", "--model", "/nonexistent/model.keras", "--name", "mtwdn-x", "--out", str(not_a_dir)]) == 2
    assert capsys.readouterr().err == f"error: --out {not_a_dir}: exists and is not a directory\n"
    assert weights_main(["pack", "--model", str(tmp_path / "missing.keras"), "--name", "mtwdn-x",
                         "--out", str(tmp_path / "w")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --model ") and "`" not in err  # pack's model_path is the --model option
