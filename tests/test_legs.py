"""Training in legs (tfdeblur/training/legs.py): each leg ships its weights and
a log record; the next leg starts from them; an interrupted leg is salvaged
from its last checkpoint."""
import json
import os

import keras
import numpy as np
import pytest

from tfdeblur.training import legs

TINY = {"widths": [4, 8, 8], "blocks_per_level": 1}


def _quiet(*_):
    pass


def _dirs(root):
    weights = root / "weights"
    weights.mkdir()
    return {"runs": str(root / "runs"), "log": str(root / "legs"), "weights": str(weights)}


@pytest.fixture(autouse=True)
def small_precision_check(monkeypatch):
    """`finish` packs; packing's fp32-vs-packed check (tested in
    test_weights at full size) on one 64 px image here, for time."""
    from tfdeblur.weights import pack

    monkeypatch.setattr(pack, "CHECK_IMAGES", 1)
    monkeypatch.setattr(pack, "CHECK_SIZE", 64)


@pytest.fixture()
def dirs(tmp_path, monkeypatch):
    dirs = _dirs(tmp_path)
    monkeypatch.setenv("TFDEBLUR_WEIGHTS_DIR", dirs["weights"])
    return dirs


def _start(dirs, steps, **kw):
    return legs.start("mtwdn-legtest", "mtwdn", "mtwdn_photos", steps, dirs["runs"], data="synthetic",
                      steps_per_epoch=2, log_dir=dirs["log"], model_overrides=dict(TINY), crop=32, batch_size=2,
                      log=_quiet, **kw)


@pytest.fixture(scope="module")
def leg1(tmp_path_factory):
    """Leg 1 of a release, trained from scratch and not finished yet: its
    dirs and run folder. `finish` only reads the run folder, so the tests
    that finish it (each into its own log and weights) share one training."""
    dirs = _dirs(tmp_path_factory.mktemp("leg1"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TFDEBLUR_WEIGHTS_DIR", dirs["weights"])
        run = _start(dirs, 2)
    return dirs, run


def test_two_legs_ship_log_and_continue_and_an_interrupted_leg_is_salvaged(leg1, monkeypatch):
    import tfdeblur.models as models

    dirs, run1 = leg1
    monkeypatch.setenv("TFDEBLUR_WEIGHTS_DIR", dirs["weights"])
    rec1 = legs.finish("mtwdn-legtest", run1, log_dir=dirs["log"], val_images=1, log=_quiet)
    assert rec1["leg"] == 1 and rec1["steps_done"] == 2 and not rec1["salvaged_from_checkpoint"]
    assert rec1["seed"] == 1 and rec1["init_from"] == "scratch" and rec1["data"] == "synthetic"
    assert rec1["recipe_name"] == "mtwdn_photos" and rec1["schedule"]["class"] == "WarmupCosine"
    assert "mtwdn-legtest" in models.available_weights()
    shipped = models.from_preset("mtwdn-legtest")
    trained = keras.saving.load_model(f"{run1}/model.keras", compile=False)
    for a, b in zip(shipped.get_weights(), trained.get_weights()):
        np.testing.assert_allclose(a, b, rtol=2e-3, atol=1e-4)  # fp16 storage

    # Leg 2 is interrupted (a session cut short after its step-2 checkpoint
    # of 4): `finish` salvages it from that checkpoint.
    # In bf16 (`--precision`), which the record says, with the bias fix.
    run2 = _start(dirs, 4, stop_at=2, precision="bf16")
    assert run2.endswith("mtwdn-legtest-leg2")
    config = json.load(open(f"{run2}/config.json"))
    assert config["seed"] == 2 and config["init_from"]  # fresh samples, from leg 1's weights
    assert config["precision_resolved"] == "bf16" and config["bias_gradients"] == "float32 sums"
    assert not os.path.exists(f"{run2}/model.keras")
    rec2 = legs.finish("mtwdn-legtest", run2, log_dir=dirs["log"], val_images=1, log=_quiet, ship_anyway=True)
    assert rec2["salvaged_from_checkpoint"] and rec2["steps_done"] == 2 and rec2["steps_planned"] == 4
    assert rec2["val"]["images"] == 1 and np.isfinite(rec2["val"]["psnr"])
    assert [r["leg"] for r in legs.read_legs("mtwdn-legtest", dirs["log"])] == [1, 2]
    assert rec2["total_steps_all_legs"] == 4 and rec2["init_from"] != "scratch"  # steps done, not planned
    assert rec2["precision"] == "bf16" and rec2["bias_gradients"] == "float32 sums"


def test_a_leg_scoring_below_the_shipped_weights_is_logged_not_shipped(dirs, leg1):
    import tfdeblur.models as models

    # The weights shipped now scored 99 dB: no real leg beats that.
    legs.append_leg("mtwdn-legtest", {"leg": 1, "steps_done": 7, "val": {"psnr": 99.0}}, dirs["log"])
    _, run = leg1  # a trained leg (2 steps), finished here as this release's leg 2
    rec = legs.finish("mtwdn-legtest", run, log_dir=dirs["log"], val_images=1, log=_quiet)
    assert rec["shipped"] is False and rec["leg"] == 2
    assert rec["total_steps_all_legs"] == 7  # the shipped weights' training, not this leg's
    assert "mtwdn-legtest" not in models.available_weights()
    rec = legs.finish("mtwdn-legtest", run, log_dir=dirs["log"], val_images=1, log=_quiet, ship_anyway=True)
    assert rec["shipped"] is True and rec["total_steps_all_legs"] == 7 + 2
    assert "mtwdn-legtest" in models.available_weights()
    assert [r.get("shipped", True) for r in legs.read_legs("mtwdn-legtest", dirs["log"])] == [True, False, True]


def test_a_damaged_log_is_one_clear_error(dirs):
    path = legs.log_path("mtwdn-legtest", dirs["log"])
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write('{"leg": 1}\nnot json\n')
    with pytest.raises(ValueError, match="line 2 is not JSON"):
        legs.read_legs("mtwdn-legtest", dirs["log"])


def test_finishing_a_folder_without_a_run_names_run(tmp_path, capsys):
    """`legs finish` on a folder that holds no run: one line naming its own
    `--run` flag (the library says `run`), not `resume`, exit 2."""
    assert legs.main(["finish", "mtwdn-legtest", "--run", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: --run {tmp_path}: holds no training run (no config.json)"], err


def _pairs_folder(root, n=2, size=48):
    """n (blur, sharp) PNG pairs: smooth random photos, box-blurred."""
    import cv2

    rng = np.random.default_rng(5)
    for sub in ("blur", "sharp"):
        (root / sub).mkdir(parents=True)
    for i in range(n):
        sharp = cv2.GaussianBlur((rng.random((size, size, 3)) * 255).astype(np.uint8), (0, 0), 2.0)
        cv2.imwrite(str(root / "sharp" / f"{i}.png"), sharp)
        cv2.imwrite(str(root / "blur" / f"{i}.png"), cv2.blur(sharp, (5, 1)))
    return f"pairs:{root / 'blur'},{root / 'sharp'}"


def test_a_leg_that_holds_the_held_out_photos_but_loses_a_gate_set_is_not_shipped(dirs, leg1, tmp_path):
    """--gate: the leg and the weights shipped now are scored on each gate
    set; a loss beyond the tolerance stops the shipping (with the reason in
    the record) even when the held-out PSNR holds; equal scores ship."""
    import os
    import shutil

    import tfdeblur.models as models
    from tfdeblur import weights as W

    _, run1 = leg1
    gate = _pairs_folder(tmp_path / "gate")
    rec = legs.finish("mtwdn-legtest", run1, log_dir=dirs["log"], val_images=1, log=_quiet, gate=[gate])
    assert rec["shipped"] and "gate" not in rec  # the first leg: nothing shipped to compare with
    manifest = os.path.join(dirs["weights"], "mtwdn-legtest.json")
    sha_before = W.read_manifest(manifest).data["sha256"]

    # Leg 2: leg 1's network with noise on every weight (far worse everywhere);
    # a logged bar of -99 dB lets it pass the held-out check, so only the gate can stop it.
    legs.append_leg("mtwdn-legtest", {"leg": 2, "steps_done": 1, "val": {"psnr": -99.0}}, dirs["log"])
    run2 = tmp_path / "runs" / "noisy"
    shutil.copytree(run1, run2, ignore=shutil.ignore_patterns("checkpoints"))
    model = keras.saving.load_model(f"{run2}/model.keras", compile=False)
    rng = np.random.default_rng(0)
    model.set_weights([w + rng.normal(0, 0.3, w.shape).astype(w.dtype) for w in model.get_weights()])
    from tfdeblur.training.run import save_model_atomic

    save_model_atomic(model, f"{run2}/model.keras")  # with its checksum sidecar
    rec = legs.finish("mtwdn-legtest", str(run2), log_dir=dirs["log"], val_images=1, log=_quiet,
                      gate=[gate], gate_images=1)
    assert rec["shipped"] is False
    (g,) = rec["gate"]
    assert g["data"] == gate and g["images"] == 1 and g["psnr"] < g["shipped_psnr"] - 1.0
    assert "is below the shipped weights'" in rec["not_shipped_because"] and gate in rec["not_shipped_because"]
    assert W.read_manifest(manifest).data["sha256"] == sha_before  # the shipped file is untouched

    # Leg 1's own network again: equal on the gate set, so it ships.
    rec = legs.finish("mtwdn-legtest", run1, log_dir=dirs["log"], val_images=1, log=_quiet, gate=[gate])
    assert rec["shipped"] and abs(rec["gate"][0]["psnr"] - rec["gate"][0]["shipped_psnr"]) < 0.02
    assert "mtwdn-legtest" in models.available_weights()

    with pytest.raises(ValueError, match=r"^`gate` nonsense:/x: "):
        legs.finish("mtwdn-legtest", run1, log_dir=dirs["log"], gate=["nonsense:/x"], log=_quiet)
    with pytest.raises(ValueError, match="`gate_images` must be a positive integer"):
        legs.finish("mtwdn-legtest", run1, log_dir=dirs["log"], gate=[gate], gate_images=0, log=_quiet)


def test_average_makes_a_leg_of_the_mean_of_weight_files(leg1, tmp_path, monkeypatch):
    """`average`: the run's weights are the mean of the sources' (checked
    against numpy on the loaded files), `finish` ships it as a leg of no
    steps that records its sources; one source, or two different networks,
    are one clear error."""
    from tfdeblur import weights as W
    from tfdeblur.inference import load_model
    from tfdeblur.training.run import save_model_atomic
    from tfdeblur.weights.pack import pack

    dirs, run1 = leg1
    monkeypatch.setenv("TFDEBLUR_WEIGHTS_DIR", dirs["weights"])
    log = str(tmp_path / "legs")
    rec1 = legs.finish("mtwdn-legtest", run1, log_dir=log, val_images=1, log=_quiet)
    a = os.path.join(dirs["weights"], "mtwdn-legtest.json")
    other = keras.saving.load_model(f"{run1}/model.keras", compile=False)
    rng = np.random.default_rng(0)
    other.set_weights([w + rng.normal(0, 0.05, w.shape).astype(w.dtype) for w in other.get_weights()])
    save_model_atomic(other, str(tmp_path / "other.keras"))
    (tmp_path / "b").mkdir()
    pack(str(tmp_path / "other.keras"), "mtwdn-legtest", out=str(tmp_path / "b"), log=_quiet)
    b = str(tmp_path / "b" / "mtwdn-legtest.json")

    shas = [W.read_manifest(p).data["sha256"] for p in (a, b)]  # `finish` below replaces a
    run = legs.average("mtwdn-legtest", [a, b], str(tmp_path / "runs"), log_dir=log, log=_quiet)
    assert run.endswith("mtwdn-legtest-leg2")
    got = keras.saving.load_model(f"{run}/model.keras", compile=False).get_weights()
    want = [(x.astype(np.float64) + y) / 2 for x, y in zip(load_model(a).get_weights(), load_model(b).get_weights())]
    assert len(got) == len(want)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-7)
    assert max(np.abs(g - x).max() for g, x in zip(got, load_model(a).get_weights())) > 1e-3  # not a copy of one

    rec = legs.finish("mtwdn-legtest", run, log_dir=log, val_images=1, log=_quiet, ship_anyway=True)
    assert rec["leg"] == 2 and rec["steps_done"] == 0 and rec["shipped"]
    assert rec["total_steps_all_legs"] == rec1["steps_done"]  # averaging trains nothing
    assert "weight average" in rec["init_from"]
    assert [s["sha256"] for s in rec["averaged_from"]] == shas
    assert W.read_manifest(a).data["sha256"] not in shas  # the average shipped
    assert rec["averaged_from"][0]["leg"] == 1

    with pytest.raises(ValueError, match="at least two weight files"):
        legs.average("mtwdn-legtest", [a], str(tmp_path / "runs"), log_dir=log, log=_quiet)
    import tfdeblur.models as models

    wider = models.build("mtwdn", widths=[4, 8, 16], blocks_per_level=1)
    wider(np.zeros((1, 32, 32, 3), np.float32))
    save_model_atomic(wider, str(tmp_path / "wider.keras"))
    (tmp_path / "c").mkdir()
    pack(str(tmp_path / "wider.keras"), "mtwdn-other", out=str(tmp_path / "c"), log=_quiet)
    with pytest.raises(ValueError, match="`from` .*mtwdn-other.json: a different network"):
        legs.average("mtwdn-legtest", [a, str(tmp_path / "c" / "mtwdn-other.json")], str(tmp_path / "runs"),
                     log_dir=log, log=_quiet)
