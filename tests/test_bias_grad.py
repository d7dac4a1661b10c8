"""bf16 bias gradients (tfdeblur/bias_grad.py) against float64 numpy sums."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from tfdeblur import bias_grad


@pytest.fixture
def fixed():
    was = bias_grad.installed()
    bias_grad.install()
    yield
    if not was:
        bias_grad.uninstall()


def _bias_add_grad(upstream, data_format="NHWC"):
    x = tf.zeros_like(upstream)
    bias = tf.zeros([upstream.shape[-1 if data_format == "NHWC" else 1]], upstream.dtype)
    with tf.GradientTape() as tape:
        tape.watch(bias)
        y = tf.nn.bias_add(x, bias, data_format=data_format)
        loss = tf.reduce_sum(y * upstream)  # d loss / d y = upstream
    return tape.gradient(loss, bias)


def _upstream(shape, seed=0):
    rng = np.random.default_rng(seed)
    # Same sign, small: the case where a bf16 running sum stalls.
    return (1e-3 + 1e-3 * rng.random(shape)).astype(np.float32)


@pytest.mark.parametrize("traced", [False, True], ids=["eager", "tf.function"])
def test_bf16_bias_gradient_is_the_float64_sum_of_its_inputs(fixed, traced):
    up = tf.cast(_upstream((4, 128, 128, 8)), tf.bfloat16)
    want = up.numpy().astype(np.float64).sum(axis=(0, 1, 2))  # the bf16 values, summed exactly
    grad = tf.function(_bias_add_grad) if traced else _bias_add_grad
    got = tf.cast(grad(up), tf.float64).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-2)  # bf16 has 8 bits: one rounding at the end


@pytest.mark.parametrize("data_format", ["NHWC", "NCHW"])
def test_float32_bias_gradient_is_tensorflows_own(data_format):
    shape = (2, 8, 16, 16) if data_format == "NCHW" else (2, 16, 16, 8)
    up = tf.constant(_upstream(shape, seed=1))
    bias_grad.uninstall()
    try:
        theirs = _bias_add_grad(up, data_format).numpy()
    except tf.errors.InvalidArgumentError as e:  # a CPU build without NCHW BiasAdd
        pytest.skip(f"BiasAdd {data_format} unavailable on this device: {str(e).splitlines()[0]}")
    bias_grad.install()
    try:
        ours = _bias_add_grad(up, data_format).numpy()
    finally:
        bias_grad.uninstall()
    np.testing.assert_array_equal(ours, theirs)
    channel_axes = (0, 2, 3) if data_format == "NCHW" else (0, 1, 2)
    np.testing.assert_allclose(ours, up.numpy().astype(np.float64).sum(axis=channel_axes), rtol=1e-5)


def test_bf16_nchw_reduces_over_all_axes_but_the_channel(fixed):
    up = tf.cast(_upstream((2, 6, 64, 64), seed=2), tf.bfloat16)
    try:
        got = tf.cast(_bias_add_grad(up, "NCHW"), tf.float64).numpy()
    except tf.errors.InvalidArgumentError as e:
        pytest.skip(f"BiasAdd NCHW unavailable on this device: {str(e).splitlines()[0]}")
    np.testing.assert_allclose(got, up.numpy().astype(np.float64).sum(axis=(0, 2, 3)), rtol=1e-2)


def test_mixed_bf16_train_step_gets_float32_bias_gradients():
    """A DeblurModel under mixed_bfloat16: train_step installs the fix, and a
    conv bias's gradient then matches the float32 model's (same weights)."""
    import tfdeblur.models as models

    was = bias_grad.installed()
    bias_grad.uninstall()
    rng = np.random.default_rng(3)
    x = rng.random((4, 96, 96, 3)).astype(np.float32)
    y = np.clip(x + 0.05, 0, 1).astype(np.float32)
    grads = {}
    try:
        for policy in ("float32", "mixed_bfloat16"):
            keras.mixed_precision.set_global_policy(policy)
            keras.utils.set_random_seed(0)
            m = models.build("lmfn", levels=2, channels=16, mffd_channels=16, num_rfdb=1)
            if policy == "float32":  # perturbed: the output head starts at zero, so would every gradient
                weights = [w + 0.05 * rng.standard_normal(w.shape).astype(w.dtype) for w in m.get_weights()]
                m.set_weights(weights)
            else:
                m.set_weights(weights)
            m.compile(optimizer=keras.optimizers.SGD(0.0), loss="mae")
            m.train_step((tf.constant(x), tf.constant(y)))  # installs the fix under bf16
            biases = [v for v in m.trainable_variables if v.path.endswith("bias")]
            with tf.GradientTape() as tape:
                out = m(x, training=True)
                out = out[-1] if isinstance(out, (list, tuple)) else out
                loss = tf.reduce_mean(tf.abs(tf.cast(out, tf.float32) - y))
            grads[policy] = np.concatenate([tf.cast(g, tf.float32).numpy().ravel()
                                            for g in tape.gradient(loss, biases)])
    finally:
        keras.mixed_precision.set_global_policy("float32")
        if not was:
            bias_grad.uninstall()
    a, b = grads["float32"], grads["mixed_bfloat16"]
    cos = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
    assert cos > 0.98, cos
    assert 0.8 < np.linalg.norm(b) / np.linalg.norm(a) < 1.25


def test_resuming_a_bf16_run_begun_with_tensorflows_bias_sums_says_so():
    from tfdeblur.training.state import resume_notice

    old = {"total_steps": 100, "precision_resolved": "bf16"}  # a config.json from before the fix
    new = {"total_steps": 100, "precision_resolved": "bf16", "bias_gradients": "float32 sums"}
    notice = resume_notice(old, new)
    assert "bias gradients" in notice and "not an exact continuation" in notice
    assert resume_notice(new, dict(new)) is None
    fp32 = {"total_steps": 100, "precision_resolved": "fp32", "bias_gradients": None}
    assert resume_notice({"total_steps": 100, "precision_resolved": "fp32"}, fp32) is None
    both = resume_notice(old, dict(new, total_steps=200))
    assert "step budget" in both and "bias gradients" in both
