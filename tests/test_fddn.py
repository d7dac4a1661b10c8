"""FDDN: parameter count in closed form, argument errors, the size
multiple (identity at initialization: tests/test_models.py), and the VGG-16
perceptual loss of eq. (14) (randomly initialized VGG weights: nothing is
downloaded)."""
import keras
import numpy as np
import pytest

import tfdeblur.models as models
from tests.helpers import random_images
from tfdeblur.models.fddn import FDDN
from tfdeblur.perceptual import PerceptualLoss, load_vgg16_features, recipe_with_vgg_weights
from tfdeblur.training import compile_args
from tfdeblur.training.recipes import make_loss, make_optimizer

TINY = dict(encoder_channels=(8, 8), latent_channels=8, num_blocks=1, reduction=4)


def conv(k, cin, cout):
    return k * k * cin * cout + cout


def fddn_closed_form(c0=32, c1=44, c=44, blocks=16):
    h = c // 2  # FSB ratio 0.5

    def inception(cin, f):
        return conv(3, cin, f) + 4 * conv(1, f, f // 4) + 3 * conv(3, f // 4, f // 4)

    def rcab(ch):
        return 2 * conv(3, ch, ch) + conv(1, ch, ch // 16) + conv(1, ch // 16, ch)

    fsb = 2 * conv(3, c, h) + 4 * conv(1, h, h)
    fdb = (
        conv(3, c, c) + 2 * conv(3, h, c) + conv(3, h, h)  # L1..L4, eqs. (6)-(9)
        + 3 * fsb
        + conv(1, 4 * h, 4 * h // 16) + conv(1, 4 * h // 16, 4 * h)  # CCA, eq. (11)
        + conv(1, 4 * h, c)
    )
    return (
        conv(3, 3, c0) + inception(c0, c1) + inception(c1, c)  # encoder, Fig. 2
        + blocks * fdb + conv(3, c, c)  # latent space
        + rcab(c) + conv(3, c, 4 * c1) + rcab(c1) + conv(3, c1, 4 * c0) + rcab(c0)  # decoder
        + conv(3, c0, 3)
    )


def ablation_closed_form(block, c, c0=32, c1=64, blocks=16):
    """FDDN with Table 5's replacement for the FDB (closed forms of the blocks)."""
    h, d, f = c // 2, c // 2, c // 4
    fsb = 2 * conv(3, c, h) + 4 * conv(1, h, h)
    esa = conv(1, c, f) + 4 * conv(3, f, f) + conv(1, f, f) + conv(1, f, c)
    per_block = {
        "fsb_resblock": 2 * conv(3, c, c) + fsb,
        "rfdb": 3 * conv(1, c, d) + 3 * conv(3, c, c) + conv(3, c, d) + conv(1, 4 * d, c) + esa,
        "resblock": 2 * conv(3, c, c),
    }[block]
    without = fddn_closed_form(c0, c1, c, blocks=0)
    return without + blocks * per_block


def test_parameter_count_closed_form_and_paper_size():
    """'8.08 MB' read as millions of parameters (`fddn`, models/fddn.py says
    why) and as fp32 bytes (`fddn_small`): each within 10 % of its reading."""
    preset = models.get_preset("fddn")
    assert fddn_closed_form(32, 64, 92) == preset.params == 7_880_030
    assert abs(preset.params / 8.08e6 - 1) < 0.10
    small = models.get_preset("fddn_small")
    assert fddn_closed_form() == small.params == 1_913_205
    assert abs(small.params / (8.08e6 / 4) - 1) < 0.10


@pytest.mark.parametrize("name, block, width", [
    ("fddn_no_distillation", "fsb_resblock", 128), ("fddn_no_fsb", "rfdb", 112), ("fddn_no_fdb", "resblock", 156),
])
def test_table5_ablations_are_sized_as_the_table(name, block, width):
    """Table 5 gives the ablations 7.89-9.05 M against 8.08 M: each of ours is
    within 10 % of every value in that range (8.23-8.77 M)."""
    preset = models.get_preset(name)
    assert preset.kwargs == {"encoder_channels": (32, 64), "latent_channels": width, "block": block}
    assert preset.params == ablation_closed_form(block, width)
    for row in (7.89e6, 9.05e6):
        assert abs(preset.params / row - 1) < 0.10
    # the closed form itself, on the widths of `fddn_small` (the counts built before)
    assert ablation_closed_form(block, 44, c1=44) == {"fsb_resblock": 1_140_485, "rfdb": 1_446_901, "resblock": 828_613}[block]


def test_size_multiple_follows_the_block():
    # (identity at init: tests/test_models.py, for every preset)
    assert FDDN(**TINY).size_multiple == 8
    assert FDDN(**TINY, block="resblock").size_multiple == 4


@pytest.mark.parametrize("kwargs, message", [
    (dict(ratio=1.2), r"ratio must be in \(0, 1\); got 1.2"),
    (dict(latent_channels=12, ratio=0.3), r"ratio \* filters must be a whole number"),
    (dict(latent_channels=6), "latent_channels must be a positive multiple of 4; got 6"),
    (dict(encoder_channels=(8, 6)), r"encoder_channels\[1\] must be a multiple of 4"),
    (dict(block="fsb"), "block must be one of .*; got 'fsb'"),
    (dict(num_blocks=-1), "num_blocks must be >= 0; got -1"),
])
def test_inconsistent_arguments_raise_naming_the_argument(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FDDN(**{**TINY, **kwargs})


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown network 'fdnn' \(did you mean 'fddn'\?\)"):
        models.build("fdnn")


def test_recipe_values():
    assert models.get_recipe("fddn")["learning_rate"] == 1e-3
    assert models.get_recipe("fddn")["epochs"] == 2500
    loss = make_loss("fddn")  # no weights file: the quick run's MSE-only fallback
    assert isinstance(loss, PerceptualLoss) and loss.weight == 0.1 and not loss.perceptual_active
    assert isinstance(make_optimizer("fddn", 10), keras.optimizers.Adam)


# -- perceptual loss -------------------------------------------------------------

@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory):
    """A randomly initialized VGG16(include_top=False) weights file."""
    keras.utils.set_random_seed(0)
    path = tmp_path_factory.mktemp("vgg") / "vgg16_random.weights.h5"
    keras.applications.VGG16(weights=None, include_top=False, input_shape=(None, None, 3)).save_weights(path)
    return path


def test_zero_weight_is_the_mse_and_needs_no_file():
    y = random_images(2, 16, 16)
    pred = y + 0.1
    loss = PerceptualLoss(weight=0.0)
    np.testing.assert_allclose(float(loss(y, {"image": pred})), 0.01, rtol=1e-4)


def test_perceptual_term_is_added_with_the_given_weights(vgg_file):
    y, pred = random_images(2, 32, 32, seed=1), random_images(2, 32, 32, seed=2)
    loss = PerceptualLoss(weight=0.1, vgg_weights=vgg_file)
    assert loss.perceptual_active
    assert float(loss(y, {"image": y})) == pytest.approx(0.0, abs=1e-6)
    features = load_vgg16_features(vgg_file)
    prep = lambda t: t[..., ::-1] * 255.0 - np.array([103.939, 116.779, 123.68], "float32")  # noqa: E731
    percep = np.mean((features(prep(pred)).numpy() - features(prep(y)).numpy()) ** 2)
    expected = np.mean((pred - y) ** 2) + 0.1 * percep
    np.testing.assert_allclose(float(loss(y, {"image": pred})), expected, rtol=1e-4)
    assert PerceptualLoss.from_config(loss.get_config()).get_config() == loss.get_config()


def test_fit_with_the_perceptual_loss_lowers_it(vgg_file):
    keras.utils.set_random_seed(0)
    model = FDDN(**TINY)
    recipe = recipe_with_vgg_weights(models.get_recipe("fddn"), vgg_file)
    model.compile(**compile_args(recipe, total_steps=10, learning_rate=1e-3, metrics=False))
    assert model.loss.perceptual_active
    model.optimizer.build(model.trainable_variables)  # as `fit` does first (tests/test_models.py: for time)
    sharp = random_images(2, 32, 32, seed=3)
    blur = (0.8 * sharp + 0.1).astype("float32")
    # Each call returns the batch's loss before its update (the first: the
    # untrained loss); one traced graph, the training step (model.fit's),
    # where evaluate would trace a second one, VGG16 included.
    losses = [float(model.train_on_batch(blur, sharp)) for _ in range(4)]
    assert np.isfinite(losses).all() and losses[-1] < losses[0], losses


def test_missing_or_wrong_vgg_weights_give_one_line_errors(tmp_path):
    with pytest.raises(ValueError, match=r"vgg_weights must name a weights file of .*VGG16\(include_top=False\); got None"):
        PerceptualLoss(weight=0.1)
    with pytest.raises(ValueError, match=r"vgg_weights .*nope.weights.h5: file not found"):
        PerceptualLoss(weight=0.1, vgg_weights=tmp_path / "nope.weights.h5")
    other = keras.Sequential([keras.Input((None, None, 3)), keras.layers.Conv2D(4, 3)])
    other.save_weights(tmp_path / "other.weights.h5")
    with pytest.raises(ValueError, match=r"vgg_weights .*other.weights.h5: not the weights of keras.applications.VGG16"):
        PerceptualLoss(weight=0.1, vgg_weights=tmp_path / "other.weights.h5")
    with pytest.raises(ValueError, match="`vgg_weights` FILE is required"):
        recipe_with_vgg_weights(models.get_recipe("fddn"), None, required=True)
    with pytest.raises(ValueError, match="`vgg_weights` is used only by a perceptual loss"):
        recipe_with_vgg_weights(models.get_recipe("lmfn"), tmp_path / "x.weights.h5")
    with pytest.raises(ValueError, match="missing_weights must be one of"):
        PerceptualLoss(weight=0.0, missing_weights="skip")
