"""WarmupCosine (tfdeblur/schedules.py) against its closed form; recipes that use it."""
import math

import keras
import numpy as np
import pytest

from tfdeblur.schedules import WarmupCosine
from tfdeblur.training.recipes import make_schedule


def _closed_form(step, lr, total, warmup, final):
    if step < warmup:
        return lr * (step + 1) / warmup
    p = min(max((step - warmup) / (total - warmup), 0.0), 1.0)
    return lr * final + 0.5 * (lr - lr * final) * (1 + math.cos(math.pi * p))


def test_matches_the_closed_form():
    s = WarmupCosine(3e-4, decay_steps=1000, warmup_steps=100, final_fraction=0.05)
    for step in (0, 1, 50, 99, 100, 101, 400, 550, 999, 1000, 5000):
        assert float(s(step)) == pytest.approx(_closed_form(step, 3e-4, 1000, 100, 0.05), rel=1e-5)
    assert float(s(99)) == pytest.approx(3e-4) and float(s(1000)) == pytest.approx(1.5e-5)


def test_round_trips_through_keras_serialization():
    s = WarmupCosine(1e-3, decay_steps=20, warmup_steps=5, final_fraction=0.1)
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(s))
    assert isinstance(again, WarmupCosine)
    np.testing.assert_allclose([float(again(i)) for i in range(25)], [float(s(i)) for i in range(25)])


def test_recipe_warmup_is_clamped_for_short_runs():
    recipe = {"learning_rate": 1e-3, "schedule": {"class": "WarmupCosine", "warmup_steps": 100}}
    s = make_schedule(recipe, total_steps=10)
    assert s.warmup_steps == 5 and s.decay_steps == 10


@pytest.mark.parametrize("kw, words", [(dict(decay_steps=0), "decay_steps"),
                                       (dict(decay_steps=10, warmup_steps=10), "warmup_steps"),
                                       (dict(decay_steps=10, final_fraction=2), "final_fraction")])
def test_bad_arguments_name_themselves(kw, words):
    with pytest.raises(ValueError, match=words):
        WarmupCosine(1e-3, **kw)


def test_train_recipe_flag(capsys):
    from tests.helpers import run_cli_error

    err = run_cli_error(capsys, ["train", "mtwdn", "--recipe", "nope", "--steps", "1"])
    assert "--recipe" in err and "mtwdn_photos" in err
