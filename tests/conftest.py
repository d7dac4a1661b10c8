import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _float32_policy():
    """Tests that train through the CLI code set a global mixed policy; reset it."""
    keras.mixed_precision.set_global_policy("float32")
    yield
    keras.mixed_precision.set_global_policy("float32")


# The slowest test files first (measured 2026-11-26: `pytest --durations`).
# With `--dist loadfile` (setup.cfg) each of the two workers takes the next
# file when it is free; longest-first leaves short files to even out the
# end instead of one worker finishing a 3-minute file alone. Files not named
# keep their order, after these.
SLOW_FILES_FIRST = (
    "test_resume.py", "test_export.py", "test_training.py", "test_distributed.py", "test_legs.py",
    "test_models.py", "test_reliability.py", "test_glbdn.py", "test_msfs.py", "test_cli.py",
    "test_precision.py", "test_fddn.py", "test_weights.py",
)


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(SLOW_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order
