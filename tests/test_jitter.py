"""`train --jitter`: a brightness/colour gain on the training stream, the
same on blur and sharp, a function of (seed, sample) so resume stays exact."""
import numpy as np

from tests.helpers import run_cli_error
from tfdeblur.training.state import resume_mismatch
from tfdeblur.datasets.stream import train_stream

JITTER = 0.2


def _batches(ds, n):
    return [tuple(t.numpy() for t in batch) for batch in ds.take(n)]


def _gains(jittered, plain):
    """Per-sample, per-channel gain jittered / plain over pixels neither clipped
    nor dark (where the ratio is well defined), with its spread."""
    ok = (plain > 0.1) & (jittered < 0.999) & (jittered > 0.001)
    ratio = np.where(ok, jittered / np.where(ok, plain, 1.0), np.nan)
    return np.nanmedian(ratio, axis=(1, 2)), np.nanmax(np.abs(ratio - np.nanmedian(ratio, axis=(1, 2), keepdims=True)))


def test_jitter_is_one_gain_per_sample_on_both_images_and_resumes_exactly():
    plain = _batches(train_stream("synthetic", 32, seed=5, batch_size=4), 2)
    full = _batches(train_stream("synthetic", 32, seed=5, batch_size=4, jitter=JITTER), 2)
    # Against the un-jittered stream: blur and sharp of a sample got one and
    # the same gain per channel (up to float32 rounding), within the range.
    for (jb, js), (pb, ps) in zip(full, plain):
        gb, spread_b = _gains(jb, pb)
        gs, spread_s = _gains(js, ps)
        assert spread_b < 1e-5 and spread_s < 1e-5
        np.testing.assert_allclose(gb, gs, rtol=1e-5)
        assert np.all(np.abs(np.log(gb)) <= 1.5 * JITTER + 1e-6)
        assert np.ptp(np.log(gb[:, 0])) > 0.01  # not one gain for every sample
        # clipping to [0, 1] after the gain
        np.testing.assert_array_equal(jb, np.clip(jb, 0, 1))
        np.testing.assert_allclose(jb, np.clip(pb * gb[:, None, None, :], 0, 1), atol=2e-7)
    # Position: step 1 of a stream started at 0 == step 0 of one started at 1;
    # two shards' halves make up the global batch.
    later = _batches(train_stream("synthetic", 32, seed=5, batch_size=4, start_step=1, jitter=JITTER), 1)
    for a, b in zip(full[1], later[0]):
        np.testing.assert_array_equal(a, b)
    halves = [_batches(train_stream("synthetic", 32, seed=5, batch_size=4, shard=w, num_shards=2, jitter=JITTER), 1)
              for w in (0, 1)]
    for part in range(2):
        np.testing.assert_array_equal(np.concatenate([halves[0][0][part], halves[1][0][part]]), full[0][part])


# A jittered run stopped and resumed ends bit-identical to a straight one:
# tests/test_resume.py, whose runs all train with --jitter (one set of runs
# for exact resume with and without it: the jitter is a map on the plain stream).


def test_jitter_is_part_of_the_trajectory(capsys):
    # A resume with another --jitter is refused; configs from before --jitter mean 0.
    assert resume_mismatch({"jitter": 0.2}, {"jitter": 0.1}) == "`jitter` is 0.1 but the run being resumed has 0.2"
    assert resume_mismatch({}, {"jitter": 0.0}) is None
    assert resume_mismatch({}, {"jitter": 0.1}) == "`jitter` is 0.1 but the run being resumed has 0.0"
    err = run_cli_error(capsys, ["train", "mtwdn", "--jitter", "1.5", "--out", "/nonexistent/run"])
    assert err == "error: --jitter must be a number in [0, 1]; got 1.5"
