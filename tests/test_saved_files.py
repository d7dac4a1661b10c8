"""`.keras` files saved before a refactoring still load and give the same
outputs: tests/data/pre_head/ holds one tiny file per network class, saved
(with random weights) by the code before the five networks shared one output
head (`tfdeblur/layers/output_head.py`, #18), and the outputs they gave then
(`tests/data/make_pre_head.py` wrote them; SOURCE.json names the commit)."""
import pathlib

import keras
import numpy as np
import pytest

import tfdeblur  # noqa: F401  (every public class loads, safe_mode, no custom_objects)

DATA = pathlib.Path(__file__).resolve().parent / "data" / "pre_head"
NETWORKS = ("mtwdn", "fddn", "lmfn", "glbdn", "msfs")


@pytest.fixture(scope="module")
def expected():
    with np.load(DATA / "expected.npz") as f:
        return {k: f[k] for k in f.files}


def test_every_network_class_has_a_file():
    import tfdeblur.models as models

    classes = {models.get_preset(name).cls.__name__ for name in models.available()}
    saved = {keras.saving.load_model(DATA / f"{net}.keras", compile=False).__class__.__name__ for net in NETWORKS}
    assert classes == saved


@pytest.mark.parametrize("net", NETWORKS)
def test_a_file_saved_before_the_shared_head_loads_and_gives_the_same_output(net, expected):
    model = keras.saving.load_model(DATA / f"{net}.keras", compile=False, safe_mode=True)
    got = np.asarray(model(expected["probe"], training=False))
    # Same weights, same graph: equal up to float32 rounding of the kernels chosen.
    np.testing.assert_allclose(got, expected[net], rtol=0, atol=1e-5)
    assert np.abs(expected[net] - expected["probe"]).max() > 0.1  # the weights do change the image
