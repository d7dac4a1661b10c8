"""tfdeblur/training/jax_leg.py: a leg trained under Keras' JAX backend on a
GPU machine without TensorFlow, adopted here as an ordinary leg. The JAX
training loop itself runs only where JAX is installed (skipped otherwise);
its schedule, data and the adoption run everywhere."""
import importlib.util
import json
import os
import subprocess
import sys

import cv2
import keras
import numpy as np
import pytest

from tfdeblur.datasets import photos, synthetic
from tfdeblur.schedules import WarmupCosine
from tfdeblur.training import jax_leg, legs


def test_learning_rate_is_warmup_cosine_with_progress_in_place_of_steps():
    """At the progress a step-counted leg of `decay` steps would have made,
    the time-driven rate equals WarmupCosine's (tfdeblur/schedules.py)."""
    peak, warmup, decay, final = 3e-4, 100, 1000, 0.05
    sched = WarmupCosine(peak, decay, warmup_steps=warmup, final_fraction=final)
    for step in (0, 1, 50, 99, 100, 101, 400, 777, 999, 1000):
        progress = (step - warmup) / (decay - warmup)
        got = jax_leg.learning_rate(step, progress, peak, warmup, final)
        np.testing.assert_allclose(got, float(sched(step)), rtol=1e-5, err_msg=f"step {step}")
    # Past the end of the time budget: the floor, never below it.
    assert jax_leg.learning_rate(5000, 1.7, peak, warmup, final) == pytest.approx(peak * final)


@pytest.mark.parametrize("recipe_name", ["msfs", "glbdn", "mtwdn_photos"])
def test_recipe_rate_is_the_recipes_schedule(recipe_name):
    """A leg bounded by --steps follows the recipe's own schedule as `train`
    builds it (recipes.make_schedule, Keras' schedules): MSFS's staircase
    ExponentialDecay in epochs of GoPro's pairs, GLBDN's constant rate,
    the released recipes' WarmupCosine over the run."""
    import math

    import tfdeblur.models as models
    from tfdeblur.training import recipes

    recipe = models.get_recipe(recipe_name)
    total, batch, peak = 1000, 4, 3e-4
    per_epoch = math.ceil(recipes.GOPRO_TRAIN_PAIRS / batch)
    sched = recipes.make_schedule(recipe, total, peak, steps_per_epoch=per_epoch)
    steps = [0, 1, 99, 100, 500, 999] + [k * 500 * per_epoch + d for k in (1, 2) for d in (-1, 0, 1)]
    for step in steps:
        want = float(sched(step)) if callable(sched) else sched
        got = jax_leg.recipe_rate(recipe, step, total, peak, batch)
        np.testing.assert_allclose(got, want, rtol=1e-5, err_msg=f"{recipe_name} step {step}")
    if recipe_name == "msfs":  # the decay is real, not a constant by accident
        assert jax_leg.recipe_rate(recipe, 500 * per_epoch, total, peak, batch) == pytest.approx(peak / 2)
    with pytest.raises(ValueError, match="PolynomialDecay"):
        jax_leg.recipe_rate({"schedule": {"class": "PolynomialDecay"}}, 0, total, peak, batch)


def test_synthetic_batches_are_the_training_stream_under_the_asked_augmentation():
    """--data synthetic: pair i of a batch is element i of `train`'s
    procedural stream (synthetic.make_pair of the training split's seed);
    --augment none leaves it as made, hflip only mirrors it."""
    jax_leg._init_worker(None)  # no photos needed
    raw = [synthetic.make_pair((synthetic.SPLIT_TAGS["train"], 3, 2 + j), 32) for j in range(2)]
    raw8 = [[np.round(a * 255).astype(np.uint8) for a in pair] for pair in raw]
    blur, sharp = jax_leg._make_batch((3, 1, 2, 32, "synthetic", "none"))
    for j in range(2):
        np.testing.assert_array_equal(blur[j], raw8[j][0])
        np.testing.assert_array_equal(sharp[j], raw8[j][1])
    flipped, _ = jax_leg._make_batch((3, 1, 2, 32, "synthetic", "hflip"))
    for j in range(2):
        assert np.array_equal(flipped[j], raw8[j][0]) or np.array_equal(flipped[j], raw8[j][0][:, ::-1])
    seen = {np.array_equal(jax_leg._make_batch((3, i, 1, 32, "synthetic", "hflip"))[0][0],
                           np.round(synthetic.make_pair((synthetic.SPLIT_TAGS["train"], 3, i), 32)[0] * 255)
                           .astype(np.uint8)) for i in range(12)}
    assert seen == {True, False}  # some pairs mirrored, some not


def test_loss_summary_means_the_first_and_last_steps_of_the_loss_and_each_term():
    """What a leg's record says of its loss: the means of the first and the
    last 100 steps, for the whole loss and each term of a multi-term loss
    (MSFSLoss's content/high/low), from every step's values."""
    t = jax_leg._Trainee.__new__(jax_leg._Trainee)  # the bookkeeping only: no network, no JAX
    t.term_names, t.step_losses = (), []
    assert t.loss_summary() is None
    t.term_names = ("content", "high")
    t.step_losses = [(np.float32(i), {"content": np.float32(2 * i), "high": np.float32(-i)}) for i in range(250)]
    got = t.loss_summary()
    assert got["steps"] == 250
    assert got["first_100"] == pytest.approx(49.5) and got["last_100"] == pytest.approx(199.5)
    assert got["content"] == {"first_100": pytest.approx(99.0), "last_100": pytest.approx(399.0)}
    assert got["high"] == {"first_100": pytest.approx(-49.5), "last_100": pytest.approx(-199.5)}


@pytest.mark.parametrize("kwargs, message", [
    ({"seconds": 10, "steps": 5}, "one of --seconds"),
    ({"seconds": None}, "one of --seconds"),
    ({"seconds": None, "steps": 0}, "--steps: expected a positive integer"),
    ({"data": "gopro"}, "--data: expected photos or synthetic"),
    ({"augment": "rot"}, "--augment: expected d4, hflip or none"),
    ({"data": "synthetic", "mix": {"shake": 1.0}}, "--mix reweights the photos stream"),
    ({"photos_dir": "/nonexistent/photos"}, "--photos /nonexistent/photos: not a directory"),
    ({"val_every": 0}, "--val-every: expected a positive integer"),
    ({"part_mb": -1}, "--part-mb: expected a positive number"),
    ({"weights_dtype": "bfloat16"}, "--weights-dtype: expected float32 or float16"),
])
def test_run_names_each_bad_argument_before_it_starts(tmp_path, kwargs, message):
    args = {"photos_dir": str(tmp_path), "seconds": 10, **kwargs}
    with pytest.raises(SystemExit, match=message):
        jax_leg.run([("x", "lmfn", "lmfn")], args.pop("photos_dir"), str(tmp_path / "out"), args.pop("seconds"),
                    **args)
    assert not (tmp_path / "out").exists()


def test_model_with_a_bad_learning_rate_is_one_parser_line(capsys):
    with pytest.raises(SystemExit) as e:
        jax_leg.main(["run", "--model", "a:lmfn:lmfn:fast", "--steps", "3", "--data", "synthetic", "--out", "x"])
    assert e.value.code == 2
    assert "--model 'a:lmfn:lmfn:fast': LR must be a positive number" in capsys.readouterr().err


@pytest.fixture()
def photo_dir(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    for i in range(3):
        img = cv2.GaussianBlur((rng.random((80, 96, 3)) * 255).astype(np.uint8), (0, 0), 1.5)
        cv2.imwrite(str(tmp_path / f"p{i}.png"), img)
    monkeypatch.setattr(jax_leg, "_BANK", None)
    return str(tmp_path)


def test_batches_are_the_photos_stream_under_one_d4_transform_per_pair(photo_dir):
    jax_leg._init_worker(photo_dir)
    assert len(jax_leg._BANK.splits["train"]) == 3  # every photo of the folder trains
    blur, sharp = jax_leg._make_batch((4, 1, 2, 32, None, "d4"))
    assert blur.shape == sharp.shape == (2, 32, 32, 3) and blur.dtype == np.uint8
    again = jax_leg._make_batch((4, 1, 2, 32, None, "d4"))
    np.testing.assert_array_equal(blur, again[0])  # a batch is fixed by (seed, index)
    assert not np.array_equal(blur, jax_leg._make_batch((4, 2, 2, 32, None, "d4"))[0])
    for j in range(2):
        b, s = photos.make_photo_pair(jax_leg._BANK, (jax_leg.SPLIT_TAG, 4, 2 + j), 32, split="train")
        b8, s8 = (np.round(a * 255).astype(np.uint8) for a in (b, s))
        d4 = [lambda a, k=k, f=f: (np.rot90(a, k)[:, ::-1] if f else np.rot90(a, k)) for k in range(4) for f in (0, 1)]
        matches = [t for t in d4 if np.array_equal(t(b8), blur[j])]
        assert matches, f"pair {j}: not a D4 transform of the stream's pair"
        assert any(np.array_equal(t(s8), sharp[j]) for t in matches)  # the same transform on both


def test_mix_reweights_the_stream_and_names_its_spec(photo_dir):
    """`--mix shake=1,uniform=0,...`: the batches are the stream under that mix
    (here shake only), the record's data spec says
    which weights changed, and bad fields are one line naming `--mix`."""
    only_shake = ",".join(f"{m}=0" for m in photos.MODES if m != "shake") + ",shake=1"
    mix = jax_leg.parse_mix(only_shake)
    assert mix["shake"] == 1.0 and mix["uniform"] == 0.0
    assert jax_leg.parse_mix("") is None and jax_leg.mix_spec(None) == "photos:../shared/data/sharp"
    assert jax_leg.mix_spec(jax_leg.parse_mix("shake=0.35")) == "photos:../shared/data/sharp,shake=0.35"
    jax_leg._init_worker(photo_dir)
    blur, _ = jax_leg._make_batch((4, 1, 2, 32, mix, "d4"))
    b, _ = photos.make_photo_pair(jax_leg._BANK, (jax_leg.SPLIT_TAG, 4, 2), 32, split="train", mix=mix)
    plain = photos.make_photo_pair(jax_leg._BANK, (jax_leg.SPLIT_TAG, 4, 2), 32, split="train")[0]
    assert not np.array_equal(b, plain)  # the mix reached the worker
    b8 = np.round(b * 255).astype(np.uint8)
    assert any(np.array_equal(np.rot90(b8, k)[:, ::-1] if f else np.rot90(b8, k), blur[0])
               for k in range(4) for f in (0, 1))
    clean = jax_leg.parse_mix("shake=0.35,clean=0.5")
    assert clean["clean"] == 0.5 and jax_leg.mix_spec(clean) == "photos:../shared/data/sharp,shake=0.35,clean=0.5"
    for bad in ("zoom=1", "shake", "shake=-1", "shake=x", "clean=1.5", "clean=-1"):
        with pytest.raises(SystemExit, match="--mix"):
            jax_leg.parse_mix(bad)
    with pytest.raises(SystemExit, match="--mix: .*positive sum"):
        jax_leg.parse_mix(",".join(f"{m}=0" for m in photos.MODES))


def test_run_refuses_the_tensorflow_backend(photo_dir, tmp_path):
    with pytest.raises(SystemExit, match="KERAS_BACKEND=jax"):
        jax_leg.run([("lmfn-photos", "lmfn", "lmfn_photos")], photo_dir, str(tmp_path / "out"), 10)


TINY = {"widths": [4, 8, 8], "blocks_per_level": 1}


def _fake_leg_output(tmp_path, name="mtwdn-jaxtest"):
    """What `run` writes for one model: NAME.npz (weights by path) + NAME.json."""
    import tfdeblur.models as models

    model = models.build("mtwdn", **TINY)
    rng = np.random.default_rng(0)
    arrays = {v.path: (v.numpy() + rng.normal(0, 0.01, v.shape)).astype(np.float32) for v in model.weights}
    npz = tmp_path / f"{name}.npz"
    np.savez(npz, **arrays)
    meta = {
        "name": name, "net": "mtwdn", "recipe_name": "mtwdn_photos",
        "recipe": {**models.get_recipe("mtwdn_photos"), "data": "synthetic"},
        "init_from": None, "model_config": model.get_config(), "steps_done": 123, "crop": 256, "batch_size": 16,
        "learning_rate": 3e-4, "seed": 9,
        "final": True, "data": "photos (test)", "schedule_note": "WarmupCosine over the leg's wall time (jax_leg)",
        "started_unix": 1_700_000_000.0, "ended_unix": 1_700_000_500.0, "train_seconds": 440.0,
        "loss_history": [0.05, 0.04], "precision": "fp32",
        "machine": {"cpu": "x", "cores": 16, "amx": None, "gpus": ["Some GPU"], "host": None, "load_average": None},
        "backend": "keras 3.15.1 on jax 0.11.2",
    }
    (tmp_path / f"{name}.json").write_text(json.dumps(meta))
    return str(npz), arrays, meta


def test_adopted_leg_finishes_like_any_leg(tmp_path, monkeypatch):
    from tfdeblur.weights import pack as pack_module

    packed = []  # packing is tested in test_weights/test_legs; here: what finish hands it
    monkeypatch.setattr(pack_module, "pack", lambda model_path, name, **kw: packed.append((model_path, name, kw)))
    npz, arrays, meta = _fake_leg_output(tmp_path)
    log_dir, weights_out = str(tmp_path / "legs"), str(tmp_path / "weights")
    os.makedirs(weights_out)
    run = jax_leg.adopt(npz, str(tmp_path / "runs"), log_dir=log_dir, log=lambda *_: None)
    assert run.endswith("mtwdn-jaxtest-leg1")
    model = keras.saving.load_model(os.path.join(run, "model.keras"), compile=False)
    got = {v.path: v.numpy() for v in model.weights}
    assert set(got) == set(arrays)
    for key, value in arrays.items():
        np.testing.assert_array_equal(got[key], value)
    assert os.path.getmtime(os.path.join(run, "config.json")) == meta["started_unix"]
    assert os.path.getmtime(os.path.join(run, "model.keras")) == meta["ended_unix"]
    rec = legs.finish("mtwdn-jaxtest", run, log_dir=log_dir, weights_out=weights_out, val_images=1, log=lambda *_: None)
    assert rec["steps_done"] == 123 and rec["crop"] == 256 and rec["seed"] == 9 and rec["wall_seconds"] == 500.0
    assert rec["machine"] == meta["machine"] and rec["backend"] == meta["backend"]
    assert rec["init_from"] == "scratch" and rec["shipped"] and rec["val"]["images"] == 1
    assert [(p, n, kw["out"]) for p, n, kw in packed] == [(os.path.join(run, "model.keras"), "mtwdn-jaxtest", weights_out)]
    assert packed[0][2]["summary"]["last_leg"]["machine"]["gpus"] == ["Some GPU"]
    with pytest.raises(SystemExit, match="exists already"):
        jax_leg.adopt(npz, str(tmp_path / "runs"), log_dir=str(tmp_path / "other-legs"), log=lambda *_: None)


def test_weights_split_into_parts_and_float16_come_back_whole(tmp_path):
    """--part-mb: a weights file over the size is written as parts (none
    over it), which adopt joins; float16 halves it; a rewrite leaves no
    stale part; a missing or damaged part is one line naming the file."""
    rng = np.random.default_rng(0)
    arrays = {"a/kernel": rng.normal(size=(64, 1024)).astype(np.float32),
              "b/bias": rng.normal(size=(300,)).astype(np.float32)}
    path = str(tmp_path / "m.npz")
    jax_leg._save_npz(path, arrays, part_mb=0.1)  # ~0.26 MB -> 3 parts
    parts = sorted(p.name for p in tmp_path.iterdir())
    assert parts == ["m.npz.part00", "m.npz.part01", "m.npz.part02"]
    assert all((tmp_path / p).stat().st_size <= 0.1 * 2 ** 20 for p in parts)
    got = jax_leg.load_npz(path)
    assert set(got) == set(arrays)
    for k in arrays:
        np.testing.assert_array_equal(got[k], arrays[k])
    jax_leg._save_npz(path, arrays, dtype="float16", part_mb=0.1)  # ~0.13 MB -> 2 parts, the third removed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npz.part00", "m.npz.part01"]
    half = jax_leg.load_npz(path)
    assert half["a/kernel"].dtype == np.float32
    np.testing.assert_array_equal(half["a/kernel"], arrays["a/kernel"].astype(np.float16).astype(np.float32))
    jax_leg._save_npz(path, arrays, dtype="float16")  # no split: one file, the parts gone
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npz"]
    jax_leg._save_npz(path, arrays, part_mb=0.1)
    os.remove(tmp_path / "m.npz.part01")
    with pytest.raises(SystemExit, match=r"parts of .*m\.npz are not numbered 00\.\.01: m\.npz\.part00, m\.npz\.part02"):
        jax_leg.load_npz(path)
    os.remove(tmp_path / "m.npz.part02")
    with pytest.raises(SystemExit, match=r"m\.npz is damaged"):
        jax_leg.load_npz(path)  # part00 alone: a truncated zip
    with pytest.raises(SystemExit, match=r"other\.npz does not exist"):
        jax_leg.load_npz(str(tmp_path / "other.npz"))


def test_adopt_names_a_missing_record(tmp_path):
    npz, _, _ = _fake_leg_output(tmp_path)
    os.remove(os.path.splitext(npz)[0] + ".json")
    with pytest.raises(SystemExit, match=r"mtwdn-jaxtest\.json does not exist"):
        jax_leg.adopt(npz, str(tmp_path / "runs"))


@pytest.mark.skipif(importlib.util.find_spec("jax") is None,
                    reason="jax is not installed: the JAX-backend training loop is not rehearsed here")
def test_jax_run_trains_and_writes_weights(photo_dir, tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    cmd = [sys.executable, "-m", "tfdeblur.training.jax_leg", "run", "--model", "lmfn-photos:lmfn:lmfn_photos",
           "--photos", photo_dir, "--seconds", "3", "--out", str(out), "--crop", "32", "--batch-size", "2",
           "--workers", "1"]
    subprocess.run(cmd, check=True, env=env, cwd=str(tmp_path), timeout=600)
    meta = json.loads((out / "lmfn-photos.json").read_text())
    assert meta["final"] and meta["steps_done"] >= 1
    with np.load(out / "lmfn-photos.npz") as z:
        assert len(z.files) == 166


def test_bundle_carries_only_the_training_split(tmp_path):
    root = tmp_path / "photos"
    (root / "sub").mkdir(parents=True)
    rng = np.random.default_rng(1)
    for i in range(23):
        folder = root / "sub" if i % 2 else root
        cv2.imwrite(str(folder / f"img{i:02d}.png"), (rng.random((70, 70, 3)) * 255).astype(np.uint8))
    bank = photos.PhotoBank(str(root))
    rel = lambda paths: {os.path.relpath(p, root) for p in paths}  # noqa: E731
    out = tmp_path / "bundle"
    n, size = jax_leg.bundle(str(root), str(out), every=1, log=lambda *_: None)
    carried = dict(line.split("\t") for line in (out / "photos" / "MANIFEST.txt").read_text().splitlines())
    assert n == len(carried) == len(bank.splits["train"]) == 21
    assert set(carried.values()) == rel(bank.splits["train"]) and not set(carried.values()) & rel(bank.splits["val"])
    assert size == sum(os.path.getsize(out / "photos" / k) for k in carried)
    assert "KERAS_BACKEND=jax" in (out / "setup.sh").read_text()
    n2, _ = jax_leg.bundle(str(root), str(out), every=2, log=lambda *_: None)
    assert n2 == 11 and len(os.listdir(out / "photos")) == 12  # the earlier photos are gone (+ MANIFEST.txt)
    with pytest.raises(ValueError, match="every must be >= 1"):
        jax_leg.bundle(str(root), str(out), every=0)
