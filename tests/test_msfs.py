"""MSFS-Net: parameter counts in closed form (`msfs` = the authors' code,
`msfs_small`, the Table 3 ablations), files saved before `msfs` changed
still load, the training-output wiring checked through the losses' values at
initialization, eqs. (5)-(7) in numpy, fit with the three terms logged, the
official variant's sharp-image features, recipe, argument errors."""
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfdeblur.models as models
from tests.helpers import random_images
from tfdeblur.losses import MSFSLoss
from tfdeblur.models.msfs import MSFSNet
from tfdeblur.io import read_image
from tfdeblur.training import compile_args
from tfdeblur.training.loss_terms import PANEL, LossTermsRecorder

TINY = dict(channels=8, latent_blocks=1, reduction=4)


def conv(k, cin, cout, bias=True):
    return k * k * cin * cout + (cout if bias else 0)


def rcab(ch, r=16):
    return 2 * conv(3, ch, ch) + conv(1, ch, ch // r) + conv(1, ch // r, ch)


def fsm(cin, f, projection=False, bn=False, running=True):
    """Biased OctConvs (4 convs at 3x3: 2*cin biases; 2 paths into each output
    half at the ends), or bias-free ones each followed by BatchNorm: gamma and
    beta per channel (+ 2 running statistics in Keras's count_params)."""
    res = conv(1, cin, f) if projection or cin != f else 0
    if bn:
        per_channel = 4 if running else 2
        return cin * cin + 9 * cin * cin + cin * f + per_channel * (2 * cin + f) + res
    return (cin * cin + cin) + (9 * cin * cin + 2 * cin) + (cin * f + 2 * f) + res


def plain(cin, f):
    """Table 3 'w/o FSM' block: conv3x3-ReLU-conv3x3 (+ 1x1 on the residual when widths differ)."""
    return conv(3, cin, f) + conv(3, f, f) + (conv(1, cin, f) if cin != f else 0)


def msfs_closed_form(c=64, latent=8, dec=1, enc=0, wide=False, projection=False, official=False, fsm_blocks=True,
                     bn=False, running=True):
    c_up = 2 * c if wide else c
    block = (lambda cin, f: fsm(cin, f, projection, bn, running)) if fsm_blocks else plain
    total = conv(3, 3, c) + 3 * block(c, c)  # shallow conv, encoder FSMs
    total += 2 * (enc * 2 * conv(3, c, c) + conv(3, c, c, bias=False))  # residual blocks, down modules
    total += latent * rcab(c) + block(c, c)  # latent RCABs, decoder FSM at 1/4
    total += 2 * (dec * rcab(2 * c) + conv(3, 2 * c, 4 * c_up) + block(c_up, c) + 1)  # up modules, CSFFM theta/gamma
    if official:
        total += 3 * conv(1, c, 3)  # 1x1 outputs at 1/4, 1/2, 1
        if fsm_blocks and wide:
            total += conv(1, c, c // 2)  # the shared HF projection of the 2C-wide decoder FSMs
    else:
        total += conv(3, c, 3)
    return total


OFFICIAL_FORM = dict(latent=10, dec=30, enc=8, wide=True, projection=True, official=True, bn=True)


def test_msfs_is_the_authors_code_at_its_published_size():
    """`msfs` is the model behind the paper's 32.73 dB: the authors' code, 21.6 M parameters
    (PyTorch counts BatchNorm's gamma and beta, not its running statistics)."""
    preset = models.get_preset("msfs")
    assert preset.params == msfs_closed_form(**OFFICIAL_FORM) == 21_589_107
    pytorch_count = msfs_closed_form(**OFFICIAL_FORM, running=False)
    assert pytorch_count == 21_586_291 and round(pytorch_count / 1e5) == 216
    assert preset.kwargs["fsm_batchnorm"] is True
    assert preset.kwargs["loss_features"] == "sharp" and preset.kwargs["decoder_blocks"] == 30
    # (test_models.py checks that the built model has preset.params)


def test_small_variant_closed_form():
    assert models.get_preset("msfs_small").params == msfs_closed_form() == 2_130_037
    assert models.get_preset("msfs_small").params < 0.1 * models.get_preset("msfs").params


def test_table3_ablation_presets_are_the_full_model_with_one_change():
    """Table 3 ablates the full model; the paper gives no sizes, so closed forms."""
    full = models.get_preset("msfs")
    for name in ("msfs_no_fsm", "msfs_no_fsm_clm", "msfs_no_fsm_consistency"):
        assert models.get_preset(name).params == msfs_closed_form(**dict(OFFICIAL_FORM, bn=False), fsm_blocks=False)
        assert {k: v for k, v in models.get_preset(name).kwargs.items() if k not in ("fsm", "unseparated_losses")} == full.kwargs
    assert models.get_preset("msfs_no_csffm").params == full.params - 2  # theta, gamma
    assert models.get_preset("msfs_no_clm").kwargs == models.get_preset("msfs_no_consistency").kwargs == full.kwargs
    loss = lambda name: models.get_recipe(name)["loss"]  # noqa: E731
    assert (loss("msfs")["high_weight"], loss("msfs")["low_weight"]) == (0.05, 0.05)
    assert (loss("msfs_no_clm")["high_weight"], loss("msfs_no_clm")["low_weight"]) == (0.0, 0.05)
    assert (loss("msfs_no_consistency")["high_weight"], loss("msfs_no_consistency")["low_weight"]) == (0.05, 0.0)
    assert loss("msfs_no_fsm")["high_weight"] == loss("msfs_no_fsm")["low_weight"] == 0.0
    # the two rows "w/o FSM" with CLM (30.01 dB) and with the consistency loss (30.13 dB)
    assert (loss("msfs_no_fsm_clm")["high_weight"], loss("msfs_no_fsm_clm")["low_weight"]) == (0.05, 0.0)
    assert (loss("msfs_no_fsm_consistency")["high_weight"], loss("msfs_no_fsm_consistency")["low_weight"]) == (0.0, 0.05)
    assert loss("msfs")["stop_gradient"] is False and loss("msfs_stop_gradient")["stop_gradient"] is True


def test_without_fsm_the_losses_see_the_unseparated_features():
    """Table 3 'w/o FSM' + CLM / + consistency: the plain blocks' whole features
    are both the 'high' and the 'low' features of eqs. (5)-(6)."""
    model = MSFSNet(**TINY, fsm=False, unseparated_losses=True)
    x = random_images(1, 16, 24)
    outs = model.training_outputs(x)
    for k, (h, w) in zip((1, 2, 3), ((16, 24), (8, 12), (4, 6))):
        assert outs[f"blur_high_{k}"].shape == outs[f"blur_low_{k}"].shape == (1, h, w, 8)
        np.testing.assert_array_equal(outs[f"blur_high_{k}"].numpy(), outs[f"blur_low_{k}"].numpy())
        assert outs[f"dec_high_{k}"].shape == (1, h, w, 8)
    terms = MSFSLoss().terms(random_images(1, 16, 24, seed=1), outs)
    np.testing.assert_allclose(terms["high"].numpy(), 3.0, rtol=1e-4)  # identity at init: p == n
    assert "blur_high_1" not in MSFSNet(**TINY, fsm=False).training_outputs(x)
    with pytest.raises(ValueError, match="unseparated_losses must be False when fsm is True"):
        MSFSNet(**TINY, unseparated_losses=True)


# `msfs` as saved before it became the authors' 21.6 M model (its get_config then).
OLD_MSFS_CONFIG = {
    "name": "msfs", "trainable": True, "channels": 64, "latent_blocks": 8, "decoder_blocks": 1,
    "encoder_blocks": 0, "fsm": True, "csffm": True, "wide_decoder": False, "fsm_projection": False,
    "skip_from": "fsm", "multi_scale_outputs": False, "tail_kernel": 3, "loss_features": "output", "reduction": 16,
}


def test_files_saved_before_msfs_changed_still_build_the_old_network():
    """A `.keras` file carries its constructor config, so an old `msfs` file
    loads as the network it was (today's `msfs_small`), not the new preset."""
    old = MSFSNet.from_config(OLD_MSFS_CONFIG)
    assert old.count_params() == models.get_preset("msfs_small").params
    assert old.get_config() == {**OLD_MSFS_CONFIG, "unseparated_losses": False, "fsm_batchnorm": False,
                                "init": "keras"}


@pytest.mark.parametrize("init", ["torch", "keras"])
def test_authors_network_keeps_its_decoder_at_unit_scale_only_with_pytorchs_init(init):
    """The authors' code sets no initializer (PyTorch's defaults); its 30-RCAB
    up modules then keep the feature entering the output convolution near
    unit scale in training mode. Under Keras' Glorot kernels the same stack
    grows it by orders of magnitude (the first optimizer step then throws
    the output far off: docs/networks/msfs.md). Width 16 for speed: both
    initializations' per-layer gains do not depend on the width."""
    from tfdeblur.models.msfs import OFFICIAL

    assert OFFICIAL["init"] == "torch" and models.get_preset("msfs").kwargs["init"] == "torch"
    keras.utils.set_random_seed(0)
    model = MSFSNet(**dict(OFFICIAL, channels=16, init=init))
    assert model.get_config()["init"] == init
    probe = keras.Model(model.inputs, model.get_layer("dec1_fsm_add").output)
    std = float(np.std(probe(random_images(2, 32, 32), training=True)))
    if init == "torch":
        assert 0.1 < std < 3.0
    else:
        assert std > 30.0
    np.testing.assert_allclose(model(random_images(1, 24, 16)).numpy(), random_images(1, 24, 16), atol=1e-6)


def test_untrained_network_is_identity_and_losses_have_their_closed_form_at_init():
    """At init the output is the input, so the encoder's second pass sees
    the blurry image again: L_low = 0 and each L_high ratio is exactly 1."""
    model = MSFSNet(**TINY)
    assert model.size_multiple == 8
    x = random_images(2, 37, 29)
    np.testing.assert_allclose(model(x).numpy(), x, atol=1e-6)
    outs = model.training_outputs(x)
    for k in (1, 2, 3):
        np.testing.assert_allclose(outs[f"target_high_{k}"].numpy(), outs[f"blur_high_{k}"].numpy(), atol=1e-6)
    sharp = random_images(2, 37, 29, seed=3)
    terms = {k: v.numpy() for k, v in MSFSLoss().terms(sharp, outs).items()}
    np.testing.assert_allclose(terms["low"], 0.0, atol=1e-6)
    np.testing.assert_allclose(terms["high"], 3.0, rtol=1e-4)
    np.testing.assert_allclose(terms["content"], np.abs(x - sharp).mean(axis=(1, 2, 3)), rtol=1e-5)


def test_loss_equations_5_to_7_in_numpy():
    rng = np.random.default_rng(0)
    f = lambda *s: rng.random((2, *s), dtype=np.float32)  # noqa: E731
    outs = {"image": f(8, 8, 3)}
    for k, size in ((1, 8), (2, 4), (3, 2)):
        for key in ("dec_high", "target_high", "blur_high"):
            outs[f"{key}_{k}"] = f(size, size, 4)
        for key in ("blur_low", "target_low"):
            outs[f"{key}_{k}"] = f(size // 2, size // 2, 4)
    sharp = f(8, 8, 3)
    l1 = lambda a, b: np.abs(a - b).mean(axis=(1, 2, 3))  # noqa: E731
    high = sum(l1(outs[f"dec_high_{k}"], outs[f"target_high_{k}"]) / (l1(outs[f"dec_high_{k}"], outs[f"blur_high_{k}"]) + 1e-6) for k in (1, 2, 3))
    low = sum(l1(outs[f"blur_low_{k}"], outs[f"target_low_{k}"]) for k in (1, 2, 3))
    expected = np.mean(0.05 * high + 0.05 * low + l1(outs["image"], sharp))
    loss = MSFSLoss()
    np.testing.assert_allclose(float(loss(sharp, outs)), expected, rtol=1e-5)
    assert MSFSLoss.from_config(loss.get_config()).get_config() == loss.get_config()
    content_only = MSFSLoss(0.0, 0.0)
    assert float(content_only(sharp, {"image": outs["image"]})) == pytest.approx(float(np.mean(l1(outs["image"], sharp))), rel=1e-5)
    with pytest.raises(KeyError, match="needs training output 'dec_high_1'"):
        loss(sharp, {"image": outs["image"]})
    with pytest.raises(ValueError, match="high_weight must be >= 0; got -1"):
        MSFSLoss(high_weight=-1)
    with pytest.raises(ValueError, match="stop_gradient must be True or False; got 'yes'"):
        MSFSLoss(stop_gradient="yes")


@pytest.mark.parametrize("guard", [False, True])
def test_stop_gradient_makes_positives_and_negatives_constants_of_l_high(guard):
    """The collapse guard: with it, L_high's gradient reaches only the anchors."""
    rng = np.random.default_rng(0)
    outs = {key: tf.Variable(rng.random((1, 4, 4, 2), dtype=np.float32))
            for key in ("dec_high_1", "target_high_1", "blur_high_1", "blur_low_1", "target_low_1")}
    outs["image"] = tf.Variable(rng.random((1, 8, 8, 3), dtype=np.float32))
    sharp = rng.random((1, 8, 8, 3), dtype=np.float32)
    loss = MSFSLoss(high_weight=1.0, low_weight=0.0, scales=(1,), stop_gradient=guard)
    with tf.GradientTape() as tape:
        value = loss(sharp, outs)
    grads = dict(zip(outs, tape.gradient(value, list(outs.values()))))
    assert np.abs(grads["dec_high_1"].numpy()).max() > 0
    for key in ("target_high_1", "blur_high_1"):
        assert (grads[key] is None) == guard
    # the guard changes gradients only, never the value
    assert float(value) == pytest.approx(float(MSFSLoss(1.0, 0.0, scales=(1,))(sharp, outs)), rel=1e-6)
    assert MSFSLoss.from_config(loss.get_config()).stop_gradient is guard


def test_fit_logs_the_three_terms_and_lowers_the_loss(tmp_path):
    keras.utils.set_random_seed(0)
    model = MSFSNet(channels=8, latent_blocks=0, decoder_blocks=0)  # fewest variables: tracing dominates
    # jit_compile=False: XLA compiling this graph takes most of a CPU test's time
    model.compile(**compile_args("msfs", total_steps=10, learning_rate=1e-3, metrics=False), jit_compile=False)
    sharp = random_images(2, 32, 32, seed=2)
    blur = (0.8 * sharp + 0.1).astype("float32")
    recorder = LossTermsRecorder(tmp_path, MSFSLoss.term_names, steps_per_epoch=1, titles=MSFSLoss.term_titles)
    history = model.fit(blur, sharp, batch_size=2, epochs=2, verbose=0, validation_data=(blur, sharp), callbacks=[recorder]).history
    for key in ("loss_content", "loss_high", "loss_low", "val_loss_content", "val_loss_high", "val_loss_low"):
        assert len(history[key]) == 2 and np.isfinite(history[key]).all()
    # each epoch's total is the weighted sum of its logged terms (one step per epoch)
    total = np.array(history["loss_content"]) + 0.05 * np.array(history["loss_high"]) + 0.05 * np.array(history["loss_low"])
    np.testing.assert_allclose(history["loss"], total, rtol=1e-4)
    assert history["val_loss"][-1] < history["loss"][0]
    # the run folder's record and plot (one step per epoch: step values = epoch means)
    record = json.loads((tmp_path / "loss_terms.json").read_text())
    assert record["step"] == record["epoch_step"] == [1, 2]
    for name in ("content", "high", "low"):
        np.testing.assert_allclose(record[name], history[f"loss_{name}"], rtol=1e-5)
    plot = read_image(tmp_path / "loss_terms.png")
    assert plot.shape[0] == 3 * PANEL[0] and plot.shape[1] == PANEL[1] and plot.std() > 0


def test_authors_variant_takes_loss_features_from_the_sharp_image():
    model = MSFSNet(**TINY, loss_features="sharp", wide_decoder=True, multi_scale_outputs=True)
    assert model.needs_target
    x, sharp = random_images(1, 16, 24), random_images(1, 16, 24, seed=1)
    with pytest.raises(ValueError, match="training_outputs needs the sharp images y"):
        model.training_outputs(x)
    outs = model.training_outputs(x, sharp)
    again = model.training_outputs(sharp, sharp)  # encoder on the sharp image as input
    np.testing.assert_allclose(outs["target_low_2"].numpy(), again["blur_low_2"].numpy(), atol=1e-6)
    assert not np.allclose(outs["target_low_2"].numpy(), outs["blur_low_2"].numpy())
    assert outs["scale_2"].shape == (1, 8, 12, 3) and outs["scale_3"].shape == (1, 4, 6, 3)
    # a layer only the loss features use (the shared HF projection) gets gradients
    proj = [layer for layer in model.train_only_layers if layer.name == "dec_high_proj"][0]
    assert all(any(w is v for v in model.trainable_weights) for w in proj.trainable_weights)
    with tf.GradientTape() as tape:
        loss = MSFSLoss()(sharp, model.training_outputs(x, sharp, training=True))
    grads = tape.gradient(loss, proj.trainable_weights)
    assert all(g is not None and np.abs(g.numpy()).max() > 0 for g in grads)


def test_recipe_is_the_papers():
    args = compile_args("msfs", total_steps=1000)
    opt = args["optimizer"]
    assert isinstance(opt, keras.optimizers.AdamW)
    assert (opt.beta_1, opt.beta_2, opt.epsilon) == (0.9, 0.9, 1e-8)
    schedule = opt._learning_rate
    step = 500 * 526  # 500 GoPro epochs of batch 4
    assert float(schedule(0)) == float(schedule(step - 1)) == pytest.approx(1e-4)
    assert float(schedule(step)) == pytest.approx(5e-5) and float(schedule(2 * step)) == pytest.approx(2.5e-5)
    assert (args["loss"].high_weight, args["loss"].low_weight) == (0.05, 0.05)
    assert models.get_recipe("msfs")["batch_size"] == 4


@pytest.mark.parametrize("kwargs, message", [
    (dict(channels=7), "channels must be a positive even number; got 7"),
    (dict(skip_from="enc"), "skip_from must be one of"),
    (dict(loss_features="gt"), "loss_features must be one of"),
    (dict(latent_blocks=-1), "latent_blocks must be >= 0; got -1"),
    (dict(tail_kernel=2), "tail_kernel must be a positive odd integer; got 2"),
    (dict(init="he"), r"init must be one of \('keras', 'torch'\); got 'he'"),
])
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MSFSNet(**{**TINY, **kwargs})


def test_unknown_preset_suggests_the_close_name():
    with pytest.raises(ValueError, match=r"unknown network 'msfs_smal' \(did you mean 'msfs_small'\?\)"):
        models.build("msfs_smal")


def test_recorder_recovers_each_steps_value_from_keras_running_means(tmp_path):
    recorder = LossTermsRecorder(tmp_path, ("a",), steps_per_epoch=3)
    values = [3.0, 1.0, 2.0]
    recorder.on_epoch_begin(0)
    for k in range(3):
        recorder.on_train_batch_end(k, {"loss_a": float(np.mean(values[: k + 1]))})
    recorder.on_epoch_end(0, {"loss_a": 2.0})
    np.testing.assert_allclose(recorder.record["a"], values)
    assert recorder.record["step"] == [1, 2, 3] and recorder.record["epoch_a"] == [2.0]
    resumed = LossTermsRecorder(tmp_path, ("a",), steps_per_epoch=3)  # a resumed run appends
    resumed.on_epoch_begin(1)
    assert resumed.record["step"] == [1, 2, 3]


# MSFS-Net under MirroredStrategy (two CPU replicas, the loss terms logged):
# tests/test_training.py fits it in its MirroredStrategy process (one start).
