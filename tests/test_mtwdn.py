"""What is special about MTWDN: branches, scales, sharing, the paper's ablation."""
import keras
import numpy as np
import pytest

import tfdeblur.models as models
from tests.helpers import random_images
from tfdeblur.models.mtwdn import MTWDN


def _conv(k, cin, cout):
    return k * k * cin * cout + cout


def closed_form_params(widths=(32, 64, 128), blocks=3, two_way=True, shared=True, scales=3):
    """Parameter count written out from the architecture description."""
    enc = _conv(3, 6, widths[0])
    for level, w in enumerate(widths):
        if level:
            enc += _conv(3, widths[level - 1], w)
        enc += blocks * 2 * _conv(3, w, w)
    dec = _conv(3, widths[0], 3)
    for level, w in enumerate(widths):
        dec += blocks * 2 * _conv(3, w, w)
        if level < len(widths) - 1:
            dec += _conv(3, widths[level + 1], w)  # transposed conv, same count
    per_scale = enc + dec * (2 if two_way else 1)
    return per_scale * (1 if shared else scales)


def test_parameter_counts_match_the_closed_form():
    assert models.build("mtwdn").count_params() == closed_form_params()
    assert models.build("mtwdn_oneway").count_params() == closed_form_params(two_way=False)
    small = dict(widths=(4, 8, 16), blocks_per_level=1)
    unshared = MTWDN(share_weights=False, **small)
    assert unshared.count_params() == closed_form_params((4, 8, 16), 1, shared=False)


def test_branch_outputs_sum_to_the_output():
    """Fig. 3 of the paper: blurry / down-net / up-net / result."""
    keras.utils.set_random_seed(1)
    model = MTWDN(widths=(4, 8, 16), blocks_per_level=1)
    # Non-zero output convolutions so both branches contribute.
    for layer in model.get_layer("net").layers:
        if layer.name.endswith("_out"):
            layer.kernel.assign(np.random.default_rng(0).normal(0, 0.1, layer.kernel.shape))
    x = random_images(1, 37, 53)
    outs = model.training_outputs(x)
    assert np.abs(outs["down"].numpy()).max() > 1e-3
    np.testing.assert_allclose(outs["up"] + outs["down"], outs["image"], atol=1e-5)
    np.testing.assert_allclose(outs["image"], model(x), atol=1e-6)


def test_coarse_outputs_have_the_pyramid_sizes():
    outs = models.build("mtwdn_oneway").training_outputs(random_images(2, 37, 53))
    assert outs["scale_2"].shape == (2, 24, 32, 3)  # padded 48x64, halved
    assert outs["scale_3"].shape == (2, 12, 16, 3)
    assert "down" not in outs


def test_unshared_weights_build_one_network_per_scale():
    model = MTWDN(widths=(4, 8, 16), blocks_per_level=1, share_weights=False)
    names = {l.name for l in model.layers}
    assert {"net_scale1", "net_scale2", "net_scale3"} <= names


@pytest.mark.parametrize("kwargs,message", [
    (dict(widths=()), "widths must be positive"),
    (dict(num_scales=0), "num_scales must be >= 1"),
    (dict(blocks_per_level=-1), "blocks_per_level must be >= 0"),
])
def test_bad_constructor_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MTWDN(**kwargs)
