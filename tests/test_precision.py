"""--precision: auto (the decision, its micro-benchmark and cache, its record in
the run), fp16 (loss scaling, float32 output and loss); --jit, --devices."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import run_cli_error
from tfdeblur.models import build
from tfdeblur.training import compile_args
from tfdeblur.training.precision import set_precision
from tfdeblur.training.state import RunState

TINY = {"widths": [4], "blocks_per_level": 1}  # one width: precision, not the network, is checked


def test_fp16_scales_the_loss_and_keeps_output_and_loss_float32(tmp_path):
    assert set_precision("fp16") == "fp16"
    model = build("mtwdn", **TINY)
    model.compile(**compile_args("mtwdn", total_steps=2, learning_rate=1e-3), jit_compile=False)
    assert model.compute_dtype == "float16"
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    rng = np.random.default_rng(0)
    sharp = rng.random((2, 32, 32, 3), dtype=np.float32)
    blur = 0.8 * sharp + 0.1
    outputs = model.training_outputs(blur)
    assert all(v.dtype == "float32" for v in outputs.values()), {k: v.dtype for k, v in outputs.items()}
    assert model.loss(sharp, outputs).dtype == "float32"
    before = [w.copy() for w in model.get_weights()]
    model.fit(blur, sharp, batch_size=2, epochs=1, verbose=0)
    after = model.get_weights()
    assert all(np.isfinite(w).all() for w in after)
    assert any(not np.array_equal(a, b) for a, b in zip(before, after))
    # The loss scale is optimizer state: it goes into the checkpoint.
    state = RunState(model, str(tmp_path / "ckpt"))
    path = state.save(1, 2)
    names = tf.train.load_checkpoint(path).get_variable_to_shape_map()
    assert any("dynamic_scale" in n for n in names), sorted(names)[:20]


def test_jit_is_off_unless_asked(monkeypatch, tmp_path):
    """Keras' default jit_compile="auto" turns XLA on on GPUs; a run
    compiles with exactly what --jit says."""
    import pytest

    from tfdeblur.cli import _parser
    from tfdeblur.training import run as run_module

    assert _parser().parse_args(["train", "mtwdn"]).jit is False
    args = _parser().parse_args(["train", "mtwdn", "--jit", "--devices", "/gpu:0,/gpu:1"])
    assert args.jit is True and args.devices == "/gpu:0,/gpu:1"

    class Compiled(Exception):
        pass

    class Probe:
        def __init__(self, model, *args, **kwargs):
            raise Compiled(model.jit_compile)

    monkeypatch.setattr(run_module.run_state, "RunState", Probe)
    for jit in (False, True):
        cfg = run_module.TrainConfig(net="mtwdn", out=str(tmp_path / f"run{jit}"), jit=jit, precision="fp32",
                                     model_overrides=dict(TINY))
        with pytest.raises(Compiled) as info:
            run_module.run_training(cfg, log=lambda *a: None)
        assert info.value.args[0] is jit


def test_unknown_device_is_named(capsys, tmp_path):
    err = run_cli_error(capsys, ["train", "mtwdn", "--devices", "/gpu:7", "--out", str(tmp_path / "run")])
    assert err.startswith("error: --devices: no device '/gpu:7' here; visible: /device:cpu:0")


# --- `--precision auto`: the decision, the micro-benchmark and its cache -------

def _cpuinfo(model, *flags):
    return f"processor\t: 0\nmodel name\t: {model}\nflags\t\t: fpu sse2 {' '.join(flags)}\n\n"


AMD = _cpuinfo("AMD EPYC 7B13", "avx", "avx2", "fma")
SAPPHIRE = _cpuinfo("Intel Xeon Platinum 8481C", "avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "amx_int8")
COOPER = _cpuinfo("Intel Xeon Platinum 8373C", "avx2", "avx512f", "avx512_bf16", "avx512_vnni")


def _never():
    raise AssertionError("the micro-benchmark ran where the flags decide")


def test_auto_picks_bf16_with_amx_and_fp32_without_a_bf16_unit_without_measuring():
    from tfdeblur.training.precision import decide_precision

    amx = decide_precision(SAPPHIRE, None, _never)
    assert (amx.precision, amx.reason) == ("bf16", "CPU has AMX-BF16 tiles (Intel Xeon Platinum 8481C)")
    amd = decide_precision(AMD, None, _never)
    assert (amd.precision, amd.reason) == ("fp32", "CPU has no AMX/AVX512-BF16 (AMD EPYC 7B13)")
    assert str(amd) == "fp32: CPU has no AMX/AVX512-BF16 (AMD EPYC 7B13)"
    # amx_bf16 without the tile flag (a kernel that has not enabled AMX state) is no AMX.
    half = _cpuinfo("X", "avx512_bf16", "amx_bf16")
    assert decide_precision(half, None, lambda: {"fp32": 1.0, "bf16": 2.0}).precision == "fp32"


def test_auto_measures_on_avx512_bf16_without_amx():
    from tfdeblur.training.precision import decide_precision

    calls = []

    def bench(fp32, bf16, cached=False):
        def run():
            calls.append(1)
            return {"fp32": fp32, "bf16": bf16, "cached": cached, "width": 112}
        return run

    slower = decide_precision(COOPER, None, bench(0.10, 0.18))  # the Xeon: bf16 1.8x slower
    assert slower.precision == "fp32"
    assert slower.reason == ("AVX512-BF16 without AMX, bf16 not faster here (conv step at width 112 bf16 180 ms "
                             "vs fp32 100 ms, measured; Intel Xeon Platinum 8373C)")
    faster = decide_precision(COOPER, None, bench(0.10, 0.05, cached=True))
    assert faster.precision == "bf16" and "cached measurement" in faster.reason
    # Within the noise margin: bf16 is not worth its rounding.
    assert decide_precision(COOPER, None, bench(0.10, 0.095)).precision == "fp32"
    assert len(calls) == 3
    with pytest.raises(ValueError, match="^benchmark must be a callable"):
        decide_precision(COOPER, None, None)


def test_auto_on_gpus_follows_compute_capability_whatever_the_cpu():
    from tfdeblur.training.precision import decide_precision

    assert str(decide_precision(AMD, (8, 0), _never)) == "bf16: GPU compute capability 8.0 >= 8.0 (native bf16)"
    assert decide_precision(SAPPHIRE, (7, 5), _never).reason == "GPU compute capability 7.5 < 8.0 (no native bf16)"
    assert decide_precision(SAPPHIRE, (7, 5), _never).precision == "fp32"


def test_explicit_precision_is_kept_and_a_bad_one_is_named():
    from tfdeblur.training.precision import choose_precision

    assert str(choose_precision("fp16", cpuinfo=AMD)) == "fp16: `precision` fp16 given"
    with pytest.raises(ValueError, match=r"^`precision` must be one of auto, fp32, bf16, fp16; got 'int8'$"):
        choose_precision("int8")


def test_micro_benchmark_runs_and_its_cache_round_trips(tmp_path, monkeypatch):
    """The real measuring path at tiny shapes; the cache file is written,
    read back instead of measuring, keyed by width, and rewritten when corrupt."""
    import json

    from tfdeblur import precision as p

    monkeypatch.setattr(p, "_gpu_capability", lambda: None)
    monkeypatch.setattr(p, "_load_per_core", lambda: 0.0)  # a quiet machine (the suite may not be)
    measured = []

    def tiny(width, prec):
        measured.append((width, prec))
        return p.measure_conv_step(width, prec, size=16, batch=1, layers=2, seconds=0.05)

    def refuse(width, prec):
        raise AssertionError("measured although the cache holds the answer")

    cache = tmp_path / "cache" / "precision.json"
    first = p.choose_precision("auto", width=lambda: 8, cache=str(cache), cpuinfo=COOPER, measure=tiny)
    assert measured == [(8, "fp32"), (8, "bf16")]
    assert first.precision in ("fp32", "bf16") and ", measured;" in first.reason, first.reason
    entries = json.loads(cache.read_text())["entries"]
    key = p.cache_key(COOPER, 8)
    assert list(entries) == [key] and "Intel Xeon Platinum 8373C" in key and "avx512_bf16" in key
    assert entries[key]["fp32"] > 0 and entries[key]["bf16"] > 0
    assert list(cache.parent.iterdir()) == [cache]  # no temporary file left behind

    again = p.choose_precision("auto", width=8, cache=str(cache), cpuinfo=COOPER, measure=refuse)
    assert again.precision == first.precision and "cached measurement" in again.reason
    # Another width is another entry; the first stays.
    p.choose_precision("auto", width=16, cache=str(cache), cpuinfo=COOPER, measure=lambda w, prec: 0.01)
    assert sorted(json.loads(cache.read_text())["entries"]) == sorted([key, p.cache_key(COOPER, 16)])

    cache.write_text('{"version": 1, "entries": {')  # corrupt: ignored, measured, rewritten
    fixed = p.choose_precision("auto", width=8, cache=str(cache), cpuinfo=COOPER,
                               measure=lambda w, prec: {"fp32": 0.2, "bf16": 0.1}[prec])
    assert fixed.precision == "bf16" and ", measured;" in fixed.reason
    assert json.loads(cache.read_text())["entries"][key] | {"measured_at": None} == {
        "fp32": 0.2, "bf16": 0.1, "width": 8, "measured_at": None}

    # The environment switch turns the cache off: nothing read, nothing written.
    monkeypatch.setenv(p.CACHE_ENV, "off")
    off = tmp_path / "xdg"
    monkeypatch.setenv("XDG_CACHE_HOME", str(off))
    p.choose_precision("auto", width=8, cpuinfo=COOPER, measure=lambda w, prec: 0.01)
    assert not off.exists()
    monkeypatch.delenv(p.CACHE_ENV)
    p.choose_precision("auto", width=8, cpuinfo=COOPER, measure=lambda w, prec: 0.01)
    assert (off / "tfdeblur" / "precision.json").exists()


def test_train_logs_the_decision_first_and_writes_it_into_config_json(tmp_path, monkeypatch):
    import json

    from tfdeblur import precision as p
    from tfdeblur.training import run as run_module

    monkeypatch.setattr(p, "_read_cpuinfo", lambda: AMD)
    monkeypatch.setattr(p, "_gpu_capability", lambda: None)
    lines = []
    cfg = run_module.TrainConfig(net="mtwdn", steps=1, steps_per_epoch=1, batch_size=1, crop=32,
                                 out=str(tmp_path / "run"), precision="auto", val_images=1,
                                 model_overrides=dict(TINY))
    run_module.run_training(cfg, log=lines.append)
    assert lines[0] == "precision fp32: CPU has no AMX/AVX512-BF16 (AMD EPYC 7B13)"
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["precision_resolved"] == "fp32"
    assert config["precision_reason"] == "CPU has no AMX/AVX512-BF16 (AMD EPYC 7B13)"


def test_bench_table_says_what_auto_picks_per_network():
    from tfdeblur import bench

    row = {"net": "mtwdn", "params": 1, "gflops_per_mp": 1.0, "seconds_256x256": 0.1, "seconds_1280x720": 1.0,
           "peak_rss_mb": 1.0, "achieved_gflops": 1.0, "ceiling_gflops": 1.0, "conv_width": 112, "efficiency": 1.0,
           "auto": "fp32: CPU has no AMX/AVX512-BF16 (AMD EPYC)"}
    text = bench.table([dict(row, precision="fp32"), dict(row, precision="bf16")])
    assert text.splitlines()[-1] == "`--precision auto` for mtwdn here: fp32: CPU has no AMX/AVX512-BF16 (AMD EPYC)"
    assert text.count("--precision auto") == 1


def test_a_measurement_on_a_busy_machine_is_used_but_not_cached(tmp_path, monkeypatch):
    import json

    from tfdeblur import precision as p

    monkeypatch.setattr(p, "_gpu_capability", lambda: None)
    monkeypatch.setattr(p, "_BUSY_RESULTS", {})
    cache = tmp_path / "precision.json"
    times = {"fp32": 0.2, "bf16": 0.1}
    monkeypatch.setattr(p, "_load_per_core", lambda: p.BUSY_LOAD + 0.5)
    busy = p.choose_precision("auto", width=8, cache=str(cache), cpuinfo=COOPER, measure=lambda w, prec: times[prec])
    assert busy.precision == "bf16" and "measured on a busy machine (load 1.0 per core; not cached)" in busy.reason
    assert not cache.exists()
    # The same process decides the same way again without measuring (two
    # restorations in one run must agree), still nothing on disk
    again = p.choose_precision("auto", width=8, cache=str(cache), cpuinfo=COOPER, measure=None)
    assert again.precision == "bf16" and "busy machine" in again.reason and not cache.exists()
    monkeypatch.setattr(p, "_BUSY_RESULTS", {})  # a new process
    times = {"fp32": 0.1, "bf16": 0.2}  # measured again: the busy one was not kept
    monkeypatch.setattr(p, "_load_per_core", lambda: p.BUSY_LOAD)
    quiet = p.choose_precision("auto", width=8, cache=str(cache), cpuinfo=COOPER, measure=lambda w, prec: times[prec])
    assert quiet.precision == "fp32" and ", measured;" in quiet.reason
    assert json.loads(cache.read_text())["entries"][p.cache_key(COOPER, 8)]["fp32"] == 0.1
    # A cached entry is read whatever the load
    monkeypatch.setattr(p, "_load_per_core", lambda: 10.0)
    again = p.choose_precision("auto", width=8, cache=str(cache), cpuinfo=COOPER, measure=None)
    assert again.precision == "fp32" and "cached measurement" in again.reason
