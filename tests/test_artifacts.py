"""Any artifact, same tools: a `.keras` file, shipped weights by name, a
SavedModel folder and a `.tflite` file restore, tile, ensemble and score the
same way (`Deblurrer`, `tfdeblur.deblur`, `cli deblur`, `cli eval`).

One tiny LMFN (random weights where it starts at zero, so it is no
identity) is packed as fp32 shipped weights in a temporary weights folder,
saved as `.keras` and exported both ways, once per module.
"""
import json

import keras
import numpy as np
import pytest

import tfdeblur
import tfdeblur.models as models
from tests.helpers import run_cli_error, save_tiny_model, shared_path
from tfdeblur import export, inference
from tfdeblur import weights as W
from tfdeblur.cli import main
from tfdeblur.io import read_image, to_uint8, write_image
from tfdeblur.weights.__main__ import main as weights_main

NAME = "lmfn-artifacts"


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    root = tmp_path_factory.mktemp("artifacts")
    keras_path = save_tiny_model(root / "tiny.keras")
    model = keras.saving.load_model(keras_path, compile=False)
    rng = np.random.default_rng(0)
    for w in model.weights:
        if not w.numpy().any():
            w.assign(rng.normal(0.0, 0.05, w.shape).astype("float32"))
    model.save(keras_path)
    folder = root / "weights"
    assert weights_main(["pack", "--model", keras_path, "--name", NAME, "--dtype", "fp32", "--out", str(folder)]) == 0
    saved = export.export_saved_model(model, root / "saved" / "1")
    tflite = export.export_tflite(model, root / "tiny.tflite")
    return {"model": model, "keras": keras_path, "weights": folder, "saved_model": str(saved), "tflite": str(tflite),
            "root": root}


@pytest.fixture(autouse=True)
def _weights_dir(artifacts, monkeypatch):
    monkeypatch.setenv(W.ENV_DIR, str(artifacts["weights"]))


@pytest.fixture(scope="module")
def photo():
    """A crop of a real blurry photo (uint8): odd sides, so the network pads."""
    path = sorted(shared_path("data", "real_blur_only").glob("*.png"))[0]
    return to_uint8(read_image(path, allow_conversion=True)[100:171, 200:297])


# uint8 outputs: levels of difference allowed against the Keras network
# (SavedModel: the same float32 kernels up to graph rewrites; TFLite: its
# own kernels, ~1e-5 apart, so an occasional rint flips).
TOLERANCE = {"keras": 0, "preset": 0, "saved_model": 1, "tflite": 1}


@pytest.fixture(scope="module")
def loaded(artifacts):
    """Each artifact loaded once, as `Deblurrer` loads a path."""
    sources = {"keras": artifacts["keras"], "preset": NAME, "saved_model": artifacts["saved_model"],
               "tflite": artifacts["tflite"]}
    with pytest.MonkeyPatch.context() as mp:  # module scope: the autouse fixture is not set up yet
        mp.setenv(W.ENV_DIR, str(artifacts["weights"]))
        return {kind: inference.load_artifact(source) for kind, source in sources.items()}


@pytest.mark.parametrize("options", [{}, {"tile": 48, "overlap": 12}, {"ensemble": True}, {"scales": (1.0, 0.5)}],
                         ids=["whole", "tiled", "ensemble", "scales"])
def test_every_artifact_gives_the_keras_output_on_a_real_photo(artifacts, loaded, photo, options):
    expected = tfdeblur.deblur(photo, artifacts["model"], precision="fp32", **options)
    for kind, model in loaded.items():
        got = inference.Deblurrer(model, **options)(photo)
        assert got.shape == photo.shape and got.dtype == np.uint8, kind
        diff = np.abs(got.astype(int) - expected)
        assert diff.max() <= TOLERANCE[kind] and (diff > 0).mean() < 1e-2, (kind, options, diff.max())
    if not options:  # the test can fail: another network's output is far off
        other = models.build("lmfn", levels=2, channels=16, mffd_channels=16, num_rfdb=1)
        assert np.abs(tfdeblur.deblur(photo, other, precision="fp32").astype(int) - expected).max() > 1


def test_deblur_takes_an_export_path(artifacts, photo):
    diff = np.abs(tfdeblur.deblur(photo, artifacts["tflite"]).astype(int)
                  - tfdeblur.deblur(photo, artifacts["model"], precision="fp32"))
    assert diff.max() <= TOLERANCE["tflite"]


def test_exports_carry_what_tiling_needs(artifacts):
    model = artifacts["model"]
    for path in (artifacts["saved_model"], artifacts["tflite"]):
        loaded = inference.load_artifact(path)
        assert isinstance(loaded, inference.ExportedModel)
        assert (loaded.size_multiple, loaded.min_size, loaded.input_size) == (model.size_multiple, model.min_size, None)


def test_a_static_export_tiles_larger_images(artifacts, photo, tmp_path):
    model = artifacts["model"]
    path = export.export_tflite(model, tmp_path / "static.tflite", input_size="48x64")
    loaded = inference.load_artifact(path)
    assert loaded.input_size == (48, 64)
    deblurrer = inference.Deblurrer(str(path))
    assert deblurrer.tile_for(*photo.shape[:2]) == 48 - (model.size_multiple - 1)
    got = deblurrer(photo)
    # The reference: the Keras network behind the same static wrapper
    # (every tile mirror-padded to 48x64 and cropped back).
    info = {"size_multiple": model.size_multiple, "min_size": model.min_size, "input_size": [48, 64]}
    keras_static = inference.ExportedModel("keras", "keras", info, lambda batch: model(batch).numpy())
    expected = inference.Deblurrer(keras_static)(photo)
    diff = np.abs(got.astype(int) - expected)
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-2
    # ...and the static padding is visible: the whole-image Keras output differs.
    assert np.abs(tfdeblur.deblur(photo, model).astype(int) - expected).max() > 1


def test_cli_deblur_and_eval_take_every_artifact(artifacts, photo, tmp_path, capsys):
    blur_dir, sharp_dir = tmp_path / "blur", tmp_path / "sharp"
    blur_dir.mkdir(), sharp_dir.mkdir()
    write_image(blur_dir / "a.png", photo)
    write_image(sharp_dir / "a.png", photo[::-1, ::-1].copy())
    scores = {}
    for kind in ("keras", "saved_model", "tflite"):
        out = tmp_path / f"out_{kind}"
        assert main(["deblur", "--model", artifacts[kind], str(blur_dir / "a.png"), "--out", str(out)]) == 0
        assert (out / "a.png").exists()
        summary = tmp_path / f"{kind}.json"
        assert main(["eval", "--model", artifacts[kind], "--data", f"pairs:{blur_dir},{sharp_dir}", "--json", str(summary)]) == 0
        scores[kind] = json.loads(summary.read_text())["psnr"]
    capsys.readouterr()
    assert abs(scores["saved_model"] - scores["keras"]) < 0.01 and abs(scores["tflite"] - scores["keras"]) < 0.01, scores


def test_artifacts_of_the_wrong_kind_are_one_line_errors(artifacts, photo, tmp_path, capsys):
    write_image(tmp_path / "a.png", photo)
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.tflite").write_text("not a model")
    out = str(tmp_path / "out")
    err = run_cli_error(capsys, ["deblur", "--model", str(tmp_path / "empty"), str(tmp_path / "a.png"), "--out", out])
    assert err == f"error: --model {tmp_path / 'empty'}: a folder, but not a SavedModel (no saved_model.pb in it)"
    err = run_cli_error(capsys, ["deblur", "--model", str(tmp_path / "notes.tflite"), str(tmp_path / "a.png"), "--out", out])
    assert "notes.tflite: not a loadable .keras model" in err
    err = run_cli_error(capsys, ["export", "--model", artifacts["saved_model"], "--format", "tflite", "--out", str(tmp_path / "m.tflite")])
    assert "a SavedModel export; this needs the Keras network" in err
    err = run_cli_error(capsys, ["deblur", "--model", artifacts["tflite"], "--tlc", "64", str(tmp_path / "a.png"), "--out", out])
    assert "--tlc (a model transform) needs the Keras network; got a tflite export" in err
    assert not (tmp_path / "out").exists() and not (tmp_path / "m.tflite").exists()
