"""Every registered network, parametrized over the registry (timm style):
a new preset is tested without new test code. Every preset's parameter
count is checked at full size (its whole functional graph built, weights
left uninitialized: `helpers.preset_param_count`); shapes and finiteness run
on every distinct network (presets that differ only in their loss build the
same one: `distinct_network_presets`) with fewer repeated blocks
(`build_for_expensive_tests`), and the expensive checks (a fit, graph vs
eager, `.keras` round trips) on one preset per network class, since ablation
presets run the same code with other arguments. The SavedModel round trip
of each of those networks is tests/test_export.py's (in a fresh process,
both signatures, two sizes)."""
import keras
import numpy as np
import pytest
import tensorflow as tf

import tfdeblur.models as models
from tests.helpers import (EXPENSIVE_TEST_OVERRIDES, build_for_expensive_tests, distinct_network_presets,
                           overrides_for_expensive_tests, preset_param_count, random_images, representative_presets,
                           run_model_saving_test)
from tfdeblur.training import compile_args

NAMES = models.available()
DISTINCT = distinct_network_presets()  # loss-only ablations build the same network as their base preset
NETWORKS = representative_presets()


@pytest.fixture(scope="module")
def built():
    """name -> its preset with fewer repeated blocks, built once per module
    (tests that change weights build their own)."""
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = build_for_expensive_tests(name)
        return cache[name]

    return get


def test_registry_lists_and_rejects_unknown_names():
    assert "mtwdn" in NAMES and "mtwdn_oneway" in NAMES
    with pytest.raises(ValueError, match=r"unknown network 'mtwdm' \(did you mean 'mtwdn'\?\); known: .*mtwdn"):
        models.build("mtwdm")


def test_registry_refuses_duplicate_names():
    with pytest.raises(ValueError, match="already registered"):
        models.register_preset("mtwdn", object, {}, "dup")


def test_expensive_checks_get_the_shallower_stacks():
    """Every representative preset gets its overrides, also one that spells
    out the arguments they replace (`msfs`: the authors' block counts)."""
    assert sorted(EXPENSIVE_TEST_OVERRIDES) == NETWORKS
    for name in NETWORKS:
        assert overrides_for_expensive_tests(name) == EXPENSIVE_TEST_OVERRIDES[name], name
    assert overrides_for_expensive_tests("lmfn_rfdb6") == {}  # an ablation's own argument wins


@pytest.mark.parametrize("name", NAMES)
def test_parameter_count_matches_preset_record(name):
    preset = models.get_preset(name)
    assert preset.params is not None, f"{name}: record the parameter count in its preset"
    assert preset_param_count(name) == preset.params


@pytest.mark.parametrize("name", DISTINCT)
@pytest.mark.parametrize("h,w", [(37, 53), (32, 17)])
def test_output_shape_equals_input_shape_for_odd_sizes(name, h, w, built):
    model = built(name)
    x = random_images(1, max(h, model.min_size), max(w, model.min_size))
    y = model(x).numpy()
    assert y.shape == x.shape and y.dtype == np.float32
    assert np.isfinite(y).all()


@pytest.mark.parametrize("name", DISTINCT)
def test_untrained_network_is_the_identity_at_odd_sizes(name, built):
    """Every network ends in the zero-initialized output head
    (`tfdeblur.layers.output_head`): before training it returns its input,
    padding and cropping included."""
    model = built(name)
    x = random_images(2, max(37, model.min_size), max(53, model.min_size), seed=1)
    np.testing.assert_allclose(model(x).numpy(), x, atol=1e-5)


@pytest.mark.parametrize("name", NETWORKS)
def test_traced_graph_computes_the_same_network_as_eager(name):
    """model.predict, validation, SavedModel and TF Serving run Grappler-optimized
    graphs; TF 2.21's remapper has fused ops wrongly before (LeakyReLU's slope,
    see tfdeblur/layers/activation.py). Every zero-initialized weight (output
    heads, attention scalars) gets a random value so that every path counts."""
    keras.utils.set_random_seed(0)
    model = build_for_expensive_tests(name)  # the remapper's fusions are per block, not per depth
    rng = np.random.default_rng(0)
    for w in model.weights:
        value = w.numpy()
        if not value.any():
            w.assign(rng.normal(0.0, 0.02, value.shape).astype(value.dtype))
    x = random_images(1, 37, 53)
    eager = model(x).numpy()
    graph = tf.function(lambda t: model(t))(tf.constant(x)).numpy()
    assert np.abs(eager - x).max() > 1e-3  # the perturbed network does something
    np.testing.assert_allclose(graph, eager, atol=1e-4)


@pytest.mark.parametrize("name", NETWORKS)
def test_one_fit_step_changes_weights_and_lowers_loss(name):
    keras.utils.set_random_seed(0)
    model = build_for_expensive_tests(name)
    model.compile(**compile_args(name, total_steps=100, learning_rate=1e-4, metrics=False))
    # As `fit` does before its first step (its symbolic build): the
    # optimizer's slots created here, not inside the traced step, where
    # each is lifted out of the graph (~0.15 s apiece) and the step traced
    # twice: fddn's first step 97 s -> 33 s, the same losses.
    model.optimizer.build(model.trainable_variables)
    sharp = random_images(2, 32, 32, seed=2)
    blur = (0.8 * sharp + 0.1).astype("float32")  # a contrast loss: learnable in a few steps
    before = [w.copy() for w in model.get_weights()]
    # Each call returns the loss on the batch before its update: the first is
    # the untrained loss, the last the loss after three steps, and only the
    # training step is traced (evaluate would trace a second graph).
    # (networks with several loss terms, MSFS-Net's, return [total, terms...])
    losses = [float(np.ravel(model.train_on_batch(blur, sharp))[0]) for _ in range(4)]
    changed = sum(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    assert changed > 0
    assert np.isfinite(losses).all() and losses[-1] < losses[0], losses


@pytest.mark.parametrize("name", NETWORKS)
def test_keras_file_round_trip_under_safe_mode(name, built, tmp_path):
    run_model_saving_test(built(name), random_images(1, 20, 23), tmp_path / f"{name}.keras")


@pytest.mark.parametrize("name", NETWORKS)
def test_training_outputs_include_full_resolution_image(name, built):
    model = built(name)
    x = random_images(1, 35, 30)
    # networks whose losses need the sharp image's features (msfs) take it too
    outs = model.training_outputs(x, random_images(1, 35, 30, seed=1)) if model.needs_target else model.training_outputs(x)
    np.testing.assert_allclose(outs["image"].numpy(), model(x).numpy(), atol=1e-6)
