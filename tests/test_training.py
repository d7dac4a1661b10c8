"""Recipes, the README's Python snippet, precision choice, MirroredStrategy."""
import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfdeblur.models as models
from tests.helpers import REPO
from tfdeblur.training import compile_args
from tfdeblur.training.precision import resolve_precision


def test_mtwdn_recipe_is_the_papers():
    args = compile_args("mtwdn", total_steps=1000)
    opt = args["optimizer"]
    assert isinstance(opt, keras.optimizers.Adam)
    assert (opt.beta_1, opt.beta_2, opt.epsilon) == (0.9, 0.999, 1e-8)
    schedule = opt.learning_rate if callable(opt.learning_rate) else opt._learning_rate
    # Polynomial decay to 0 with power 0.3: lr(t) = 1e-4 * (1 - t / T) ** 0.3.
    for t in (0, 500, 900, 1000):
        assert float(schedule(t)) == pytest.approx(1e-4 * (1 - t / 1000) ** 0.3, rel=1e-5)
    assert args["loss"].weights == {"scale_3": 1.0, "scale_2": 1.0, "image": 5.0}


def test_readme_python_snippet_trains_with_model_fit():
    """The README's snippet, verbatim between its markers, on tiny crops and
    a one-width, shallow MTWDN (the full network's training graph alone traces
    for ~40 s; each network trains in tests/test_models.py)."""
    readme = (REPO / "README.md").read_text()
    snippet = readme.split("<!-- snippet:start -->")[1].split("<!-- snippet:end -->")[0]
    code = snippet.split("```python")[1].split("```")[0]
    replacements = {
        'build("mtwdn")': 'build("mtwdn", widths=(4,), blocks_per_level=1)',
        "crop=256": "crop=32", "steps_per_epoch=1000": "steps_per_epoch=2",
        "batch(4)": "batch(2)", "epochs=1": "epochs=1, verbose=0",
    }
    for old, new in replacements.items():
        assert old in code, f"README snippet: {old!r} not found; update this test"
        code = code.replace(old, new)
    namespace = {}
    exec(compile(code, "README snippet", "exec"), namespace)
    assert isinstance(namespace["model"], keras.Model)
    assert np.isfinite(namespace["history"].history["loss"]).all()


def test_precision_auto_never_picks_fp16_on_cpu():
    assert resolve_precision("auto") in ("bf16", "fp32")
    assert resolve_precision("fp32") == "fp32"
    with pytest.raises(ValueError, match="`precision` must be one of"):
        resolve_precision("int4")


def test_fit_under_mirrored_strategy_on_two_logical_cpus(tmp_path):
    """Two CPU replicas split the global batch; both see the same weights.
    The same process (one start of TensorFlow and of the strategy) fits
    MSFS-Net too: the encoder's second pass and its loss terms work under
    tf.distribute (moved here from tests/test_msfs.py)."""
    script = textwrap.dedent(
        """
        import json, sys
        import numpy as np, tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        import keras
        from tfdeblur.models.msfs import MSFSNet
        from tfdeblur.models.mtwdn import MTWDN
        from tfdeblur.training import compile_args
        from tfdeblur.training.run import choose_strategy
        strategy = choose_strategy(["/cpu:0", "/cpu:1"])
        with strategy.scope():
            model = MTWDN(widths=(4,), blocks_per_level=1)  # one width: the replicas, not the network, are checked
            model.compile(**compile_args("mtwdn", total_steps=4, learning_rate=1e-3))
        rng = np.random.default_rng(0)
        sharp = rng.random((4, 32, 32, 3), dtype=np.float32)
        ds = tf.data.Dataset.from_tensor_slices((0.8 * sharp + 0.1, sharp)).batch(4).repeat()
        hist = model.fit(ds, steps_per_epoch=3, epochs=1, verbose=0)
        var = model.trainable_variables[0]
        print(json.dumps({"replicas": strategy.num_replicas_in_sync,
                          "loss": hist.history["loss"],
                          "mirrored": type(var).__name__}))
        with strategy.scope():
            model = MSFSNet(channels=8, latent_blocks=0, decoder_blocks=0)
            model.compile(**compile_args("msfs", total_steps=2, learning_rate=1e-3, metrics=False), jit_compile=False)
        sharp = np.random.default_rng(0).random((4, 32, 32, 3), dtype=np.float32)
        ds = tf.data.Dataset.from_tensor_slices((0.8 * sharp + 0.1, sharp)).batch(4).repeat()
        hist = model.fit(ds, steps_per_epoch=2, epochs=1, verbose=0).history
        print(json.dumps({"replicas": strategy.num_replicas_in_sync, **{k: v[-1] for k, v in hist.items()}}))
        """
    )
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    # timeout: the two fits' former limits (300 + 600 s) for the one process
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=900, env=env, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    mtwdn, msfs = (json.loads(line) for line in proc.stdout.strip().splitlines()[-2:])
    assert mtwdn["replicas"] == 2
    assert all(np.isfinite(mtwdn["loss"]))
    # MSFS-Net: the three terms logged, their weighted sum the loss
    assert msfs["replicas"] == 2
    assert np.isfinite([msfs[k] for k in ("loss", "loss_content", "loss_high", "loss_low")]).all()
    assert msfs["loss"] == pytest.approx(msfs["loss_content"] + 0.05 * (msfs["loss_high"] + msfs["loss_low"]), rel=0.05)


def test_quick_run_defaults_and_paper_flag():
    from tfdeblur.training.run import QUICK_DEFAULTS, TrainConfig, resolve_defaults

    recipe = models.get_recipe("mtwdn")
    quick = resolve_defaults(TrainConfig(net="mtwdn"), recipe)
    assert (quick.crop, quick.batch_size, quick.learning_rate) == (128, 4, QUICK_DEFAULTS["learning_rate"])
    paper = resolve_defaults(TrainConfig(net="mtwdn", paper=True), recipe)
    assert (paper.crop, paper.batch_size, paper.learning_rate) == (256, 16, 1e-4)
    mine = resolve_defaults(TrainConfig(net="mtwdn", paper=True, crop=64), recipe)
    assert mine.crop == 64 and mine.batch_size == 16


def test_recipe_quick_entry_replaces_quick_defaults():
    from tfdeblur.training.run import QUICK_DEFAULTS, RunError, TrainConfig, resolve_defaults

    recipe = {**models.get_recipe("mtwdn"), "quick": {"learning_rate": 5e-5}}
    quick = resolve_defaults(TrainConfig(net="mtwdn"), recipe)
    assert (quick.crop, quick.batch_size, quick.learning_rate) == (QUICK_DEFAULTS["crop"], QUICK_DEFAULTS["batch_size"], 5e-5)
    assert resolve_defaults(TrainConfig(net="mtwdn", learning_rate=2e-4), recipe).learning_rate == 2e-4
    assert resolve_defaults(TrainConfig(net="mtwdn", paper=True), recipe).learning_rate == recipe["learning_rate"]
    with pytest.raises(RunError, match='recipe "quick" entry: unknown key\\(s\\) lr; known: crop, batch_size, learning_rate'):
        resolve_defaults(TrainConfig(net="mtwdn"), {**recipe, "quick": {"lr": 1e-4}})


def test_glbdn_quick_run_takes_its_recipes_learning_rate():
    from tfdeblur.training.run import QUICK_DEFAULTS, TrainConfig, resolve_defaults

    def quick_lr(net):
        return resolve_defaults(TrainConfig(net=net), models.get_recipe(net)).learning_rate

    assert quick_lr("glbdn") == quick_lr("glbdn_db") == quick_lr("glbdn_lb") == 1e-4
    assert quick_lr("glbdn_gao") == quick_lr("mtwdn") == QUICK_DEFAULTS["learning_rate"]


def test_bad_learning_rate_is_named():
    from tfdeblur.training.run import RunError, TrainConfig, _check_config

    with pytest.raises(RunError, match="`learning_rate` must be a positive number; got -1"):
        _check_config(TrainConfig(net="mtwdn", learning_rate=-1.0))


def test_step_decay_given_in_epochs_converts_with_steps_per_epoch():
    from tfdeblur.training import make_schedule

    recipe = {"learning_rate": 1e-4, "schedule": {"class": "ExponentialDecay", "decay_epochs": 500,
                                                   "decay_rate": 0.5, "staircase": True}}
    schedule = make_schedule(recipe, total_steps=10, steps_per_epoch=3)
    assert [float(schedule(s)) for s in (0, 1499, 1500, 3000)] == pytest.approx([1e-4, 1e-4, 5e-5, 2.5e-5])
    with pytest.raises(ValueError, match="steps_per_epoch .* decay_epochs=500"):
        make_schedule(recipe, total_steps=10)
