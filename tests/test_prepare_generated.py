"""`prepare` on generated specs (synthetic, dynamic, globalblur): `--count`
pairs, deterministic from `--seed`, read back by `tfrecord:DIR` bit-exactly
equal to the generators' own (8-bit) samples."""
import json

import numpy as np

from tests.helpers import run_cli_error
from tfdeblur.cli import main
from tfdeblur.datasets import spec
from tfdeblur.datasets.dynamic import dynamic_dataset
from tfdeblur.datasets.globalblur import globalblur_dataset
from tfdeblur.datasets.synthetic import synthetic_dataset


def _records(directory):
    ds, count, names = spec.evaluation(f"tfrecord:{directory}")
    return dict(zip(names, ds.as_numpy_iterator())), count


def test_synthetic_and_dynamic_round_trip_bit_exact(tmp_path):
    for kind, dataset in (("synthetic", synthetic_dataset), ("dynamic", dynamic_dataset)):
        out = tmp_path / kind
        assert main(["prepare", kind, "--out", str(out), "--count", "3", "--size", "32", "--seed", "7",
                     "--shards", "2"]) == 0
        records, count = _records(out)
        assert count == 3 and sorted(records) == [f"{kind}_{i:06d}" for i in range(3)]
        # The generator's train elements 0, 1, 2 of seed 7 (independent code path: tf.data).
        reference = list(dataset("train", crop=32, seed=7, num_images=3).as_numpy_iterator())
        for i, (b, s) in enumerate(reference):
            rb, rs = records[f"{kind}_{i:06d}"]
            assert rb.dtype == np.float32 and rb.shape == (32, 32, 3)
            assert rb.tobytes() == b.tobytes() and rs.tobytes() == s.tobytes(), (kind, i)
        meta = json.loads((out / "meta.json").read_text())
        assert (meta["seed"], meta["size"], meta["counts"]) == (7, 32, [2, 1])
    # --crop pre-cuts: 16 px tiles of the 32 px pairs, row-major; another seed, other pairs.
    assert main(["prepare", "synthetic", "--out", str(tmp_path / "tiles"), "--count", "1", "--size", "32",
                 "--crop", "16", "--seed", "7"]) == 0
    tiles, count = _records(tmp_path / "tiles")
    b, s = next(synthetic_dataset("train", crop=32, seed=7).as_numpy_iterator())
    assert count == 4 and tiles["synthetic_000000@16,0"][1].tobytes() == s[16:, :16].tobytes()
    assert main(["prepare", "synthetic", "--out", str(tmp_path / "other"), "--count", "1", "--size", "32"]) == 0
    assert not np.array_equal(_records(tmp_path / "other")[0]["synthetic_000000"][1], s)


def test_globalblur_writes_the_whole_pairs_its_train_stream_crops(tmp_path):
    assert main(["prepare", "globalblur", "--out", str(tmp_path / "gb"), "--count", "2", "--seed", "4"]) == 0
    records, count = _records(tmp_path / "gb")
    assert count == 2
    crops = list(globalblur_dataset("train", crop=24, seed=4).take(2).as_numpy_iterator())
    for (name, (rb, rs)), (cb, cs) in zip(sorted(records.items(), key=lambda kv: kv[0][-6:]), crops):
        assert rb.shape == (321, 481, 3)  # the synthetic sharp images' size (BSD68's)
        # the stream's crop is a window of the written pair, in both images
        ys, xs = np.nonzero(np.all(rs[:-23, :-23] == cs[0, 0], axis=-1))
        assert any(np.array_equal(rs[y:y + 24, x:x + 24], cs) and np.array_equal(rb[y:y + 24, x:x + 24], cb)
                   for y, x in zip(ys, xs)), name


def test_prepare_generated_bad_input(capsys, tmp_path):
    out = str(tmp_path / "o")
    assert run_cli_error(capsys, ["prepare", "dynamic", "--out", out]) == (
        "error: prepare dynamic: generated data needs --count N (the number of pairs to write)")
    assert run_cli_error(capsys, ["prepare", "globalblur", "--out", out, "--count", "1", "--size", "8"]) == (
        "error: --size applies to synthetic and dynamic; globalblur pairs have their images' size")
    assert "--count applies to generated specs" in run_cli_error(
        capsys, ["prepare", f"pairs:{tmp_path},{tmp_path}", "--out", out, "--count", "2"])
    assert "already TFRecords" in run_cli_error(capsys, ["prepare", f"tfrecord:{tmp_path}", "--out", out])
    assert "--shards must be at most the 1 pairs" in run_cli_error(
        capsys, ["prepare", "synthetic", "--out", out, "--count", "1", "--shards", "2"])
    assert "smaller than --crop 64" in run_cli_error(
        capsys, ["prepare", "synthetic", "--out", out, "--count", "1", "--size", "32", "--crop", "64"])
    assert not list(tmp_path.iterdir())  # nothing left behind
