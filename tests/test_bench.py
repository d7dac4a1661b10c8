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


def test_timing_harness_times_only_the_calls_after_the_warmup(monkeypatch):
    from tfdeblur import timing

    clock = iter([0.0, 1.0, 10.0, 13.0, 20.0, 22.0])  # the three timed calls take 1, 3 and 2 s
    calls = []
    monkeypatch.setattr(timing.time, "perf_counter", lambda: next(clock))
    times = bench.seconds_each(lambda: calls.append(1), 3, warmup=2)
    assert len(calls) == 5 and times == [1.0, 3.0, 2.0]
    assert bench.median(times) == 2.0 and bench.median([4.0, 1.0, 3.0, 2.0]) == 3.0  # a measured time, never a mean
    for bad, message in (((0,), "repeats must be a positive integer; got 0"), ((2, -1), "warmup must be a non-negative")):
        with pytest.raises(ValueError, match=message):
            bench.seconds_each(lambda: None, *bad)
