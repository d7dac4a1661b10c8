"""benchmarks/model_card.py end to end on a tiny untrained network (its
output head starts at zero, so it returns its input): the card's input
scores must equal the shared folder's golden values and its gains be 0;
the CBSD68 blur must match an independent linear-light convolution."""
import json

import numpy as np
import pytest
from scipy import ndimage

from tests.helpers import load_benchmark, save_tiny_model, shared_path


@pytest.fixture(scope="module")
def card():
    return load_benchmark("model_card")


def test_cbsd68_blur_is_a_linear_light_convolution(card):
    shared = shared_path()
    pairs, names = card.cbsd68_pairs(str(shared), limit=9)
    assert len(names) == 9 and names[0].endswith("_k1") and names[8].endswith("_k1")
    kernels = np.load(shared / "data" / "kernels" / "levin09.npz")
    k = kernels["k4"] / kernels["k4"].sum()
    for i, (blur, sharp) in enumerate(pairs):
        if i == 3:
            break
    lin = np.stack([ndimage.convolve(sharp[..., c].astype(np.float64) ** 2.2, k, mode="reflect") for c in range(3)], -1)
    want = np.round(np.clip(lin, 0, 1) ** (1 / 2.2) * 255)
    got = blur.astype(np.float64) * 255
    assert np.abs(got - np.round(got)).max() < 1e-3  # 8-bit levels
    got = np.round(got)
    m = 20  # away from the border, where cv2 and scipy agree on reflection anyway
    assert np.abs(got - want)[m:-m, m:-m].max() <= 1
    assert np.mean(got != want) < 0.02


def test_card_runs_end_to_end_on_a_tiny_model(card, tmp_path):
    shared = shared_path()
    model = save_tiny_model(tmp_path / "tiny.keras")
    out = tmp_path / "card"
    code = card.main(["--model", model, "--limit", "1", "--repeats", "1", "--data", "gopro_pair", "levin", "cbsd68",
                      "--auto", "gopro_pair", "--shared", str(shared), "--out-dir", str(out)])
    assert code == 0
    result = json.loads((out / "tiny.json").read_text())
    frame = result["sets"]["gopro_pair"]
    # Golden values of ../shared/README.md: blurry input 24.050 dB / 0.717; DMPHN 30.823; HINet 33.190.
    assert frame["input_psnr"] == pytest.approx(24.050, abs=0.005)
    assert frame["input_ssim"] == pytest.approx(0.717, abs=0.0015)
    assert frame["published"]["DMPHN (1-2-4-8)"]["psnr"] == pytest.approx(30.823, abs=0.005)
    assert frame["published"]["HINet"]["psnr"] == pytest.approx(33.190, abs=0.005)
    assert frame["gain_db"] == 0.0 and result["sets"]["levin"]["gain_db"] == 0.0
    assert result["sets"]["levin"]["protocol"] == "levin" and result["params"] > 0 and result["cpu"]["seconds"] > 0
    # CBSD68 x Levin kernels: Levin's shift search, the whole-image score beside it
    cbsd = result["sets"]["cbsd68"]
    assert cbsd["protocol"] == "levin" and cbsd["also"]["whole"]["input_psnr"] < cbsd["input_psnr"]
    text = (out / "tiny.md").read_text()
    assert "| GoPro test frame GOPR0384_11_00-000001 | 1 | 24.05 dB / 0.7170 | 24.05 dB / 0.7170 | **+0.00 dB** |" in text
    # --scales auto on the 1280x720 frame restores at 1 and 0.5; the identity-like
    # tiny network gives the input back at both (the detail add-back is exact)
    assert frame["auto"]["gain_db"] == pytest.approx(0.0, abs=0.01) and frame["auto"]["images"] == 1
    assert "the same, `--scales auto`" in text and "the same, `whole` protocol (no shift search)" in text and "restored as `deblur` does" in text
    assert (out / "tiny-real_blur_only.jpg").stat().st_size > 10_000


def test_sheet_limit_sets_the_sheet_apart_from_the_sets(card, tmp_path):
    """`--sheet-limit N` puts N photos on the sheet whatever `--limit` says
    (0: every photo of real_blur_only); a negative one is refused;
    `--precision bf16` is recorded and said on the card."""
    from tfdeblur import io as tio

    shared = shared_path()
    photos = tio.list_images(str(shared / "data" / "real_blur_only"))
    assert len(photos) >= 3
    model = save_tiny_model(tmp_path / "tiny.keras")
    out = tmp_path / "card"
    code = card.main(["--model", model, "--limit", "1", "--sheet-limit", "3", "--repeats", "0", "--data", "synthetic",
                      "--shared", str(shared), "--out-dir", str(out)])
    assert code == 0
    result = json.loads((out / "tiny.json").read_text())
    assert result["sheet_photos"] == 3 and result["sets"]["synthetic"]["images"] == 1
    sheet = tio.read_image(str(out / "tiny-real_blur_only.jpg"))
    assert sheet.shape[0] >= 3 * card.SHEET_HEIGHT  # one row of at most SHEET_HEIGHT per photo, three rows
    code = card.main(["--model", model, "--limit", "1", "--repeats", "0", "--data", "synthetic", "--no-sheet",
                      "--precision", "bf16", "--shared", str(shared), "--out-dir", str(tmp_path / "bf16")])
    assert code == 0 and json.loads((tmp_path / "bf16" / "tiny.json").read_text())["precision"] == "bf16"
    assert "**Restored with `--precision bf16`**" in (tmp_path / "bf16" / "tiny.md").read_text()
    with pytest.raises(SystemExit) as e:
        card.main(["--model", model, "--sheet-limit", "-1", "--out-dir", str(out)])
    assert e.value.code == 2


def test_linear_data_encodes_for_the_network_and_decodes_after(card):
    seen = {}

    class Recorder:
        def restore_rgb(self, rgb, progress=None):
            seen["input"] = rgb.copy()
            return np.clip(rgb * 0.5, 0, 1)  # a network that halves the encoded values

    x = np.linspace(0, 1, 2 * 5 * 3, dtype=np.float32).reshape(2, 5, 3)
    out = card.LinearData(Recorder()).restore_rgb(x)
    np.testing.assert_allclose(seen["input"], x.astype(np.float64) ** (1 / 2.2), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out, (0.5 * x.astype(np.float64) ** (1 / 2.2)) ** 2.2, rtol=1e-5, atol=1e-6)


def test_levin_pairs_are_blurred_in_their_stored_values(capsys):
    """The reason the card gamma-encodes Levin's pairs: re-blurring the sharp
    image by the recorded kernel fits the blurry one best in the stored values."""
    shared = shared_path()
    load_benchmark("levin_space").main(["--shared", str(shared)])
    lines = capsys.readouterr().out.splitlines()
    mean = [float(v) for v in next(l for l in lines if l.startswith("mean")).split()[1:]]
    assert mean[0] > mean[1] + 5 and mean[0] > mean[2] + 3
    assert lines[-1] == "best fit: stored values (linear data)"


def test_card_of_weights_trained_in_legs_sums_the_legs(card):
    """Hardware, wall time and one line per leg come from the leg log
    (docs/legs/NAME.jsonl); the wall time is the sum over the legs."""
    machine = {"cpu": "AMD EPYC", "cores": 2, "amx": False, "gpus": [], "load_average": [3.5, 3, 3]}
    legs = [{"leg": i, "steps_done": steps, "init_from": "scratch" if i == 1 else "previous leg's shipped weights",
             "seed": i, "crop": 128, "batch_size": 8, "learning_rate": 3e-4, "schedule": {"class": "WarmupCosine"},
             "precision": "fp32", "wall_seconds": secs, "machine": machine,
             "val": {"psnr": 23.0 + i / 4, "input_psnr": 22.5}}
            for i, steps, secs in ((1, 1000, 2800.0), (2, 700, 2000.0))]
    result = {"label": "x-photos", "class": "LMFN", "preset": "lmfn", "params": 1_205_875, "sets": {},
              "summary": {"legs": 2, "steps": 1700, "recipe": "r", "data": "d", "last_leg": legs[-1]}, "legs": legs}
    text = card.card_markdown(result)
    assert "| hardware | 2-core AMD EPYC (no AMX, no GPU) |" in text
    assert "| wall time | 1.3 h (4,800 s) in 2 leg(s) |" in text
    assert "| leg 2 | 700 steps from previous leg's shipped weights, seed 2, crop 128, batch 8, lr 0.0003 WarmupCosine" in text
    assert "held-out photos 23.50 dB (+1.00)" in text
    assert "last leg" not in text  # the raw record is not dumped


def test_card_names_the_gpu_of_a_gpu_leg(card):
    """A leg trained by jax_leg on a GPU machine: the card names the GPU and
    the backend, not a load average nobody recorded."""
    cpu = {"cpu": "AMD EPYC", "cores": 2, "amx": False, "gpus": [], "load_average": [1.5, 1, 1]}
    gpu = {"cpu": "x86-64 (model not recorded)", "cores": 16, "amx": None, "gpus": ["NVIDIA H100 80GB HBM3"],
           "host": None, "load_average": None}
    legs = [{"leg": i, "steps_done": 100, "init_from": "scratch", "seed": i, "crop": 128, "batch_size": 8,
             "learning_rate": 3e-4, "schedule": {"class": "WarmupCosine"}, "precision": "fp32", "wall_seconds": 60.0,
             "machine": m, **extra}
            for i, m, extra in ((1, cpu, {}), (2, gpu, {"backend": "keras 3.15.1 on jax 0.11.2"}))]
    result = {"label": "x-photos", "class": "LMFN", "preset": "lmfn", "params": 1, "sets": {},
              "summary": {"legs": 2, "steps": 200}, "legs": legs}
    text = card.card_markdown(result)
    assert "| hardware | 2-core AMD EPYC (no AMX, no GPU); NVIDIA H100 80GB HBM3 (16 CPU cores) |" in text
    assert "1.0 min (60 s), load average 1.5 |" in text
    assert "1.0 min (60 s), NVIDIA H100 80GB HBM3 (16 CPU cores), keras 3.15.1 on jax 0.11.2 |" in text
    assert "load average ?" not in text and "None" not in text


def _card_of_a_perturbed_tiny_model(card, tmp_path, seed, extra):
    """(model, result JSON, card text) of a tiny network whose weights are
    perturbed (neither the identity nor flip-equivariant), carded on one
    synthetic pair with the `extra` options."""
    import keras

    path = save_tiny_model(tmp_path / "tiny.keras")
    model = keras.saving.load_model(path)
    rng = np.random.default_rng(seed)
    model.set_weights([w + 0.05 * rng.standard_normal(w.shape).astype(w.dtype) for w in model.get_weights()])
    model.save(tmp_path / "perturbed.keras")
    out = tmp_path / "card"
    code = card.main(["--model", str(tmp_path / "perturbed.keras"), "--limit", "1", "--repeats", "0", "--no-sheet",
                      "--data", "synthetic", "--out-dir", str(out)] + extra)
    assert code == 0
    return model, json.loads((out / "perturbed.json").read_text()), (out / "perturbed.md").read_text()


def test_ensemble_row_is_the_mean_of_the_eight_flips_and_rotations(card, tmp_path):
    """`--ensemble synthetic` adds a row scored on the mean of the model's
    outputs over the 8 dihedral transforms: recomputed here with numpy's own
    rot90/flip and scikit-image's PSNR, on a tiny network whose weights are
    perturbed so that it is neither the identity nor flip-equivariant."""
    from skimage.metrics import peak_signal_noise_ratio

    from tfdeblur.datasets import spec as data_spec

    model, result, text = _card_of_a_perturbed_tiny_model(card, tmp_path, 0, ["--ensemble", "synthetic"])
    plain, ens = result["sets"]["synthetic"], result["sets"]["synthetic"]["ensemble"]

    blur, sharp = next(iter(data_spec.evaluation("synthetic")[0]))
    blur, sharp = np.asarray(blur, np.float32), np.asarray(sharp, np.float32)
    outputs = []
    for flip in (False, True):
        for k in range(4):
            x = np.rot90(blur[:, ::-1] if flip else blur, k)
            y = np.asarray(model(x[None].copy()))[0]
            y = np.rot90(y, -k)
            outputs.append(y[:, ::-1] if flip else y)
    eight_bit = lambda x: np.clip(np.rint(x * 255), 0, 255).astype(np.uint8)  # noqa: E731
    want = peak_signal_noise_ratio(eight_bit(sharp), eight_bit(np.clip(np.mean(outputs, 0), 0, 1)), data_range=255)
    single = peak_signal_noise_ratio(eight_bit(sharp), eight_bit(np.clip(outputs[0], 0, 1)), data_range=255)
    assert plain["psnr"] == pytest.approx(single, abs=0.02)
    assert ens["psnr"] == pytest.approx(want, abs=0.02)
    assert abs(want - single) > 0.05  # the ensemble changed the output: the row can tell them apart
    assert ens["gain_db"] == pytest.approx(ens["psnr"] - plain["input_psnr"])
    assert f"self-ensemble (mean of 8 flips/rotations, `--ensemble`, 8x time) | 1 | | {ens['psnr']:.2f} dB" in text


def test_an_averaged_leg_is_one_line_of_the_card(card):
    """A `legs average` record (no steps, seed or learning rate) renders as
    the legs it averaged."""
    leg = {"leg": 14, "steps_done": 0, "seed": None, "learning_rate": None, "init_from": "the weight average",
           "averaged_from": [{"weights": "old.json", "leg": 9}, {"weights": "mtwdn-photos", "leg": 13}],
           "wall_seconds": 8.0, "machine": {"load_average": [1.0]},
           "val": {"psnr": 25.51, "input_psnr": 22.92}}
    text = card._leg_text(leg)
    assert text.startswith("no training: the weight average of legs 9, 13") and "held-out photos 25.51 dB (+2.59)" in text


def test_uniform_blur_row_is_kernel_refine_of_the_network_output(card, tmp_path, monkeypatch):
    """`--uniform-blur synthetic` adds a row scored on `kernel_refine.refine`
    of the model's output, recomputed here from the model directly and
    scikit-image's PSNR. The guard is opened (it keeps this tiny model's
    output on this pair, and the row could not be told from the plain one)."""
    from skimage.metrics import peak_signal_noise_ratio

    from tfdeblur import kernel_refine
    from tfdeblur.datasets import spec as data_spec

    monkeypatch.setattr(kernel_refine, "NOISE_LIMIT", float("inf"))
    monkeypatch.setattr(kernel_refine, "MIN_AWAY", 0.0)
    monkeypatch.setattr(kernel_refine, "LOCAL_FIT_MAX", float("inf"))
    monkeypatch.setattr(kernel_refine, "LOCAL_FIT_FIRST", float("inf"))
    monkeypatch.setattr(kernel_refine, "PROBE_AWAY", 0.0)

    model, result, text = _card_of_a_perturbed_tiny_model(card, tmp_path, 1, ["--uniform-blur", "synthetic"])
    plain, uni = result["sets"]["synthetic"], result["sets"]["synthetic"]["uniform_blur"]

    blur, sharp = next(iter(data_spec.evaluation("synthetic")[0]))
    blur, sharp = np.asarray(blur, np.float32), np.asarray(sharp, np.float32)
    net = np.clip(np.asarray(model(blur[None]))[0], 0, 1)
    refined = kernel_refine.refine(blur, net)
    eight_bit = lambda x: np.clip(np.rint(x * 255), 0, 255).astype(np.uint8)  # noqa: E731
    want = peak_signal_noise_ratio(eight_bit(sharp), eight_bit(refined), data_range=255)
    single = peak_signal_noise_ratio(eight_bit(sharp), eight_bit(net), data_range=255)
    assert plain["psnr"] == pytest.approx(single, abs=0.02)
    assert uni["psnr"] == pytest.approx(want, abs=0.02)
    assert abs(want - single) > 0.05  # the refinement changed the output: the row can tell them apart
    assert (f"as `deblur` restores by default (`--scales auto` and kernel refinement: a kernel estimated from the output, "
            f"then deconvolution, guarded) | 1 | | {uni['psnr']:.2f} dB") in text
