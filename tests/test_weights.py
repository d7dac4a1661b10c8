"""Shipped weights (tfdeblur/weights): pack -> load round trip, precision,
damage and code-change errors, and preset names wherever a `.keras` file is
accepted (deblur CLI, eval, tfdeblur.deblur, list). Every test packs a tiny
LMFN into a temporary weights folder ($TFDEBLUR_WEIGHTS_DIR)."""
import configparser
import json
import os
import shutil

import cv2
import keras
import numpy as np
import pytest
import tensorflow as tf

import tfdeblur
import tfdeblur.models as models
from tests.helpers import (
    REPO, build_for_expensive_tests, random_images, representative_presets, run_cli_error, save_tiny_model, shared_path,
)
from tfdeblur import weights as W
from tfdeblur.cli import main
from tfdeblur.weights.__main__ import main as weights_main

NAME = "lmfn-tiny"


@pytest.fixture(scope="module")
def keras_file(tmp_path_factory):
    """A tiny LMFN whose every weight matters: the zero-initialized ones
    (output head, attention scales) get random values, as in test_models,
    so an untrained identity network cannot pass the round trip by accident."""
    path = save_tiny_model(tmp_path_factory.mktemp("model") / "tiny.keras")
    model = keras.saving.load_model(path, compile=False)
    rng = np.random.default_rng(0)
    for w in model.weights:
        value = w.numpy()
        if not value.any():
            w.assign(rng.normal(0.0, 0.05, value.shape).astype(value.dtype))
    model.save(path)
    return str(path)


@pytest.fixture(scope="module")
def packed(keras_file, tmp_path_factory):
    """A weights folder holding `lmfn-tiny` (fp16) with a training summary."""
    folder = tmp_path_factory.mktemp("weights")
    summary = tmp_path_factory.mktemp("summary") / "summary.json"
    summary.write_text(json.dumps({"data": "photos:../shared/data/sharp", "steps": 1234, "metrics": {"gopro_dev_gain_db": 1.5}}))
    assert weights_main(["pack", "--model", keras_file, "--name", NAME, "--summary", str(summary), "--out", str(folder)]) == 0
    return folder


@pytest.fixture(autouse=True)
def _weights_dir(packed, monkeypatch):
    monkeypatch.setenv(W.ENV_DIR, str(packed))


def _copy(packed, tmp_path):
    folder = tmp_path / "weights"
    shutil.copytree(packed, folder)
    return folder


def test_round_trip_gives_the_keras_outputs_within_fp16_and_stores_numpys_fp16(keras_file):
    original = keras.saving.load_model(keras_file, compile=False)
    loaded = models.from_preset(NAME)
    assert type(loaded) is type(original) and loaded.count_params() == original.count_params()
    for a, b in zip(original.weights, loaded.weights):
        assert a.path == b.path
        np.testing.assert_array_equal(b.numpy(), a.numpy().astype(np.float16).astype(np.float32))
    x = random_images(2, 40, 52, seed=3)
    want, got = original(x).numpy(), loaded(x).numpy()
    assert np.abs(want - x).max() > 0.05  # the network is not the identity: weights matter
    np.testing.assert_allclose(got, want, atol=3e-3)
    same = models.build("lmfn", weights=NAME)(x).numpy()
    np.testing.assert_array_equal(same, got)


def test_bf16_stores_tensorflows_bfloat16_rounding(keras_file, tmp_path):
    assert weights_main(["pack", "--model", keras_file, "--name", "lmfn-tiny-bf16", "--dtype", "bf16", "--out", str(tmp_path)]) == 0
    original = keras.saving.load_model(keras_file, compile=False)
    loaded = models.from_preset(str(tmp_path / "lmfn-tiny-bf16.json"))
    for a, b in zip(original.weights, loaded.weights):
        want = tf.cast(tf.cast(a.value, tf.bfloat16), tf.float32).numpy()
        np.testing.assert_array_equal(b.numpy(), want)
    assert os.path.getsize(tmp_path / "lmfn-tiny-bf16.weights.npz") < 0.6 * 4 * original.count_params()


def test_manifest_records_what_the_model_card_needs(packed, keras_file):
    m = W.read_manifest(NAME)
    assert m.preset == "lmfn" and m.dtype == "fp16" and m.data["class"] == "LMFN"
    assert m.config["channels"] == 16 and m.data["params"] == keras.saving.load_model(keras_file).count_params()
    assert m.summary["steps"] == 1234
    assert m.data["sha256"] == W.sha256_of(packed / f"{NAME}.weights.npz")
    check = m.data["precision_check"]
    assert abs(check["loss_db"]) < 0.05 and check["max_abs_output_diff"] > 0
    assert not [f for f in os.listdir(packed) if f.startswith(".")]  # no temporary files left


def test_flipped_byte_is_a_one_line_checksum_error(packed, tmp_path, monkeypatch, capsys):
    folder = _copy(packed, tmp_path)
    path = folder / f"{NAME}.weights.npz"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    monkeypatch.setenv(W.ENV_DIR, str(folder))
    with pytest.raises(ValueError) as e:
        models.from_preset(NAME)
    assert str(e.value) == f"weights file {path} is damaged (checksum mismatch); reinstall tfdeblur"
    img = tmp_path / "a.png"
    cv2.imwrite(str(img), (random_images(1, 20, 24)[0] * 255).astype(np.uint8))
    err = run_cli_error(capsys, ["deblur", str(img), "--model", NAME, "--out", str(tmp_path / "out")])
    assert err == f"error: weights file {path} is damaged (checksum mismatch); reinstall tfdeblur"


def test_missing_file_and_broken_manifest_are_one_line_errors(packed, tmp_path, monkeypatch):
    folder = _copy(packed, tmp_path)
    monkeypatch.setenv(W.ENV_DIR, str(folder))
    (folder / f"{NAME}.weights.npz").unlink()
    with pytest.raises(ValueError, match=r"weights file .*lmfn-tiny.weights.npz is missing; reinstall tfdeblur$"):
        models.from_preset(NAME)
    (folder / f"{NAME}.json").write_text('{"format": "tfdeblur-weights", ')
    with pytest.raises(ValueError, match=r"weights manifest .*lmfn-tiny.json is damaged \(JSONDecodeError\); reinstall"):
        models.from_preset(NAME)


def _rewrite(folder, rename=None, config=None):
    """Simulates weights packed by another version of the code: a stored
    weight under an old name, or another constructor config."""
    npz, manifest = folder / f"{NAME}.weights.npz", folder / f"{NAME}.json"
    data = json.loads(manifest.read_text())
    if rename:
        with np.load(npz) as f:
            arrays = {rename.get(k, k): f[k] for k in f.files}
        np.savez(npz, **arrays)
        data["sha256"] = W.sha256_of(npz)
        for w in data["weights"]:
            w["name"] = rename.get(w["name"], w["name"])
    if config:
        data["config"].update(config)
    manifest.write_text(json.dumps(data))


def test_renamed_layer_names_the_preset_and_the_missing_weight(packed, tmp_path, monkeypatch, capsys):
    folder = _copy(packed, tmp_path)
    _rewrite(folder, rename={"image_out/kernel": "old_head/kernel"})
    monkeypatch.setenv(W.ENV_DIR, str(folder))
    with pytest.raises(ValueError) as e:
        models.from_preset(NAME)
    message = str(e.value)
    assert "\n" not in message
    assert message.startswith(f"weights {NAME}: the network 'lmfn' has a weight 'image_out/kernel' that ")
    err = run_cli_error(capsys, ["eval", "--model", NAME, "--data", "synthetic"])
    assert "'image_out/kernel'" in err


def test_other_config_is_a_shape_error_naming_the_weight(packed, tmp_path, monkeypatch):
    folder = _copy(packed, tmp_path)
    _rewrite(folder, config={"channels": 24})
    monkeypatch.setenv(W.ENV_DIR, str(folder))
    with pytest.raises(ValueError, match=r"weights lmfn-tiny: weight 'shallow/kernel' has shape \(3, 3, 3, 16\) in .* needs \(3, 3, 3, 24\)"):
        models.from_preset(NAME)


def test_build_refuses_weights_of_another_network():
    with pytest.raises(ValueError, match=r"weights 'lmfn-tiny' are for network 'lmfn' \(LMFN\); got build\('mtwdn'\)"):
        models.build("mtwdn", weights=NAME)
    with pytest.raises(ValueError, match=r"'lmfn-tiny' is shipped weights, not a network preset; use from_preset\('lmfn-tiny'\)"):
        models.build(NAME)


def test_available_weights_and_list(capsys):
    assert models.available_weights() == [NAME]
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    line = next(l for l in out.splitlines() if l.strip().startswith(NAME))
    assert "lmfn" in line and "fp16" in line and "steps 1234" in line and "gopro_dev_gain_db 1.5" in line


def test_deblur_cli_and_api_take_a_weights_name(keras_file, tmp_path, capsys):
    rgb = (random_images(1, 30, 36, seed=5)[0] * 255).astype(np.uint8)
    src = tmp_path / "photo.png"
    cv2.imwrite(str(src), rgb[..., ::-1])
    assert main(["deblur", str(src), "--model", NAME, "--out", str(tmp_path / "out"), "--precision", "fp32"]) == 0
    got = cv2.imread(str(tmp_path / "out" / "photo.png"))[..., ::-1]
    api = tfdeblur.deblur(rgb, model=NAME, precision="fp32")
    np.testing.assert_array_equal(got, api)
    # the fp32 .keras: fp16 storage moves a few pixels by one level at most
    full = tfdeblur.deblur(rgb, model=keras_file, precision="fp32")
    assert np.abs(full.astype(int) - api.astype(int)).max() <= 1
    assert np.abs(full.astype(int) - rgb.astype(int)).mean() > 3  # not the identity


def test_deblur_without_model_uses_default_weights(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(W, "DEFAULT_WEIGHTS", NAME)
    rgb = (random_images(1, 24, 28, seed=6)[0] * 255).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "p.png"), rgb[..., ::-1])
    assert main(["deblur", str(tmp_path / "p.png"), "--out", str(tmp_path / "out")]) == 0
    assert f"model: {NAME} (the default shipped weights" in capsys.readouterr().out
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / "out" / "p.png"))[..., ::-1], tfdeblur.deblur(rgb))


def test_deblur_without_model_and_no_shipped_weights_is_one_clear_line(tmp_path, monkeypatch, capsys):
    empty = tmp_path / "none"
    empty.mkdir()
    monkeypatch.setenv(W.ENV_DIR, str(empty))
    cv2.imwrite(str(tmp_path / "p.png"), np.zeros((20, 20, 3), np.uint8))
    err = run_cli_error(capsys, ["deblur", str(tmp_path / "p.png"), "--out", str(tmp_path / "out")])
    assert err == (f"error: no trained weights are shipped with this tfdeblur yet (none in {empty}); "
                   "give --model FILE.keras (a model written by `train`)")
    assert not (tmp_path / "out").exists()
    with pytest.raises(ValueError, match="no trained weights are shipped"):
        tfdeblur.deblur(np.zeros((20, 20, 3), np.uint8))


def test_unknown_name_lists_the_shipped_ones(tmp_path, capsys):
    cv2.imwrite(str(tmp_path / "p.png"), np.zeros((20, 20, 3), np.uint8))
    err = run_cli_error(capsys, ["deblur", str(tmp_path / "p.png"), "--model", "lmfn-tinyy", "--out", str(tmp_path / "o")])
    assert err == ("error: --model lmfn-tinyy: no such file, nor a shipped weights name (did you mean 'lmfn-tiny'?); "
                   "shipped weights: lmfn-tiny")
    err = run_cli_error(capsys, ["eval", "--model", "missing.keras", "--data", "synthetic"])
    assert err.startswith("error: --model missing.keras: no such file")


def test_eval_takes_a_weights_name(tmp_path, capsys):
    for side in ("blur", "sharp"):
        (tmp_path / side).mkdir()
        for i in range(2):
            img = (random_images(1, 24, 32, seed=i + (side == "sharp") * 10)[0] * 255).astype(np.uint8)
            cv2.imwrite(str(tmp_path / side / f"{i}.png"), img)
    out = tmp_path / "r.json"
    assert main(["eval", "--model", NAME, "--data", f"pairs:{tmp_path / 'blur'},{tmp_path / 'sharp'}", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["images"] == 2


@pytest.mark.parametrize("argv, match", [
    (["--name", "MTWDN photos"], "weights name must be '<network preset>-<data>"),
    (["--name", "mtwdn-photos"], "--name must start with the network preset and a hyphen, 'lmfn-...'"),
    (["--name", NAME], "already exists; pass --overwrite"),
    (["--name", "lmfn-x", "--summary", "/nonexistent.json"], "--summary /nonexistent.json: cannot read"),
])
def test_pack_bad_input_is_one_line(keras_file, packed, argv, match, capsys):
    code = weights_main(["pack", "--model", keras_file, "--out", str(packed)] + argv)
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: ") and "\n" not in err and match in err, err


def test_setup_cfg_ships_the_weight_files_as_package_data():
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    assert "tfdeblur.weights" in cfg["options"]["packages"].split()
    patterns = [p.strip() for p in cfg["options.package_data"]["tfdeblur.weights"].split(",")]
    assert "*.json" in patterns and "*.weights.npz" in patterns


def _package_weights():
    folder = os.path.join(REPO, "tfdeblur", "weights")
    return W.available(folder)


@pytest.mark.parametrize("name", _package_weights())
def test_every_shipped_model_loads_and_matches_its_manifest(name, monkeypatch):
    monkeypatch.delenv(W.ENV_DIR)
    m = W.read_manifest(name)
    model = models.from_preset(name)
    assert model.count_params() == m.data["params"]
    assert abs(m.data["precision_check"]["loss_db"]) < 0.05, f"{name}: the stored precision costs too much; pack as fp32"
    assert os.path.getsize(m.weights_path) < 20e6


@pytest.mark.parametrize("name", representative_presets())
def test_weight_names_are_unique_and_the_same_in_every_build(name):
    """Shipped weights are matched by `variable.path`: a layer left to Keras'
    automatic naming (`conv2d_7`) would get another name when other models
    were built first in the process, and loading would fail."""
    keras.backend.clear_session()
    first = [w.path for w in build_for_expensive_tests(name).weights]
    models.build("lmfn", levels=2, channels=8, mffd_channels=8, num_rfdb=1)  # shifts Keras' name counters
    second = [w.path for w in build_for_expensive_tests(name).weights]
    assert len(set(first)) == len(first) and first == second


@pytest.mark.parametrize("name", _package_weights())
def test_every_shipped_model_restores_the_real_gopro_frame(name, monkeypatch):
    """A guard on the shipped weights' quality, on real blur they never
    trained on: the centre 256x256 of the GoPro test frame (input 21.55 dB).
    The weights shipped now gain +0.36 (mtwdn-photos) and +0.34 dB
    (lmfn-photos) there; the CPU-only mtwdn-photos of before the GPU legs
    gained +0.02 and would fail."""
    from tfdeblur import metrics
    from tfdeblur.io import read_image, to_uint8

    monkeypatch.delenv(W.ENV_DIR)
    pair = shared_path("data", "gopro_pair")
    blur, sharp = (read_image(pair / f"GOPR0384_11_00-000001_{k}.png")[232:488, 512:768] for k in ("blur", "sharp"))
    out = models.from_preset(name)(blur[None]).numpy()[0]
    before = metrics.psnr(to_uint8(blur), to_uint8(sharp))
    after = metrics.psnr(to_uint8(np.clip(out, 0, 1)), to_uint8(sharp))
    assert before == pytest.approx(21.55, abs=0.01)
    assert after - before >= 0.2, f"{name}: {after - before:+.2f} dB on the GoPro frame's centre"
