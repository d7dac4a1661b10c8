"""`bench`: the FLOP count against the closed form of a conv stack; bad names."""
import keras
import pytest

from tests.helpers import run_cli_error
from tfdeblur import bench


def test_flops_of_a_conv_stack_are_the_closed_form():
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(16, 3, padding="same", use_bias=False)(inputs)
    x = keras.layers.Conv2D(8, 5, padding="same", use_bias=False)(x)
    model = keras.Model(inputs, x)
    # TF's convention: one multiply-add = 2 FLOPs.
    expected = 2 * 32 * 40 * (9 * 3 * 16 + 25 * 16 * 8)
    assert bench.count_flops(model, 32, 40) == expected
    # kernel-size weighted width: (432 * 16 + 3200 * 8) / 3632 = 8.95 -> 8
    assert bench.conv_width(model) == 8


def test_bench_refuses_unknown_networks(capsys):
    err = run_cli_error(capsys, ["bench", "mtwdx"])
    assert "unknown network 'mtwdx'" in err
