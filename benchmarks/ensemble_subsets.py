"""How much of self-ensemble's gain do fewer flips/rotations keep? And a second pass?

    python benchmarks/ensemble_subsets.py mtwdn-photos [--data synthetic levin gopro_dev gopro_pair cbsd68]
        [--limit 16] [--sizes 1 2 4 8] [--twice] [--json OUT.json]

Self-ensemble (`deblur --ensemble`) restores the 8 flips/rotations of the
dihedral group and averages them: +0.2-0.3 dB on every set of the card for
8x the time (docs/models.md). This restores every image of the card's sets
(`benchmarks/model_card.py`'s loaders, protocols and input handling: Levin
gamma-encoded and gray via RGB) once per transform
(`Deblurrer.restore_transforms`, the raw outputs mapped back), and then
scores, from those 8 outputs, the clipped mean of *every* subset of each
size in `--sizes`: per size, the mean gain over its subsets and the best
and worst subset, each subset named by its transforms (`r1` = one
quarter-turn, `f` = then flipped left-right; `r0` the identity). The size-8
row is what `deblur --ensemble` scores; size 1's `r0` the plain output.

`--twice` also scores the network applied to its own (plain) output: a
second pass, for blur the first left.

PSNR only (8-bit outputs, the card's protocols); timing is not measured (a
subset of size n costs n passes).
"""
import argparse
import hashlib
import itertools
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import model_card  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def transform_name(k, flip):
    return f"r{k}" + ("f" if flip else "")


class Recorder:
    """Deblurrer-like (`restore_rgb`): restores each distinct input once per
    dihedral transform (cached by content) and returns the clipped mean of
    the outputs in `subset` (indices into `DIHEDRAL`); with `twice`, the
    plain output restored again."""

    def __init__(self, deblurrer):
        from tfdeblur.inference import DIHEDRAL

        self.deblurrer = deblurrer
        self.transforms = DIHEDRAL
        self.subset = (0,)
        self.twice = False
        self._cache = {}

    def outputs(self, rgb):
        rgb = np.ascontiguousarray(rgb, np.float32)
        key = (rgb.shape, hashlib.sha1(rgb.tobytes()).hexdigest())
        if key not in self._cache:
            outs = list(self.deblurrer.restore_transforms(rgb, self.transforms))
            self._cache[key] = {"outs": outs}
        return self._cache[key]

    def restore_rgb(self, rgb, progress=None):
        entry = self.outputs(rgb)
        if self.twice:
            if "twice" not in entry:
                first = np.clip(entry["outs"][0], 0.0, 1.0)
                entry["twice"] = np.clip(next(self.deblurrer.restore_transforms(first, self.transforms[:1])), 0.0, 1.0)
            return entry["twice"]
        acc = None
        for i in self.subset:
            acc = entry["outs"][i] if acc is None else acc + entry["outs"][i]
        return np.clip(acc / len(self.subset), 0.0, 1.0)


def score_set(name, model, recorder, shared, limit):
    """Mean PSNR of `recorder`'s current setting and of the inputs on one set."""
    from tfdeblur import metrics, protocols
    from tfdeblur.io import to_uint8

    dataset, names, protocol, deblurrer, _ = model_card.load_set(name, model, recorder, shared, limit,
                                                                  fed_as_stored=False)
    got, base = [], []
    for blur, sharp in dataset:
        out = deblurrer.restore_rgb(np.asarray(blur, np.float32))
        o8, b8, s8 = (to_uint8(np.asarray(a)) for a in (out, blur, sharp))
        if protocol == "whole":
            got.append(metrics.psnr(o8, s8))
            base.append(metrics.psnr(b8, s8))
        else:
            got.append(protocols.score(protocol, o8, s8)["psnr"])
            base.append(protocols.score(protocol, b8, s8)["psnr"])
    return float(np.mean(got)), float(np.mean(base)), len(names)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("name", help="shipped weights name or .keras file")
    p.add_argument("--data", nargs="+", default=list(model_card.SETS), choices=model_card.SETS)
    p.add_argument("--limit", type=int, default=16, help="at most N images per set (default 16)")
    p.add_argument("--sizes", nargs="+", type=int, default=[1, 2, 4, 8], help="subset sizes (1-8)")
    p.add_argument("--twice", action="store_true", help="also score a second pass over the plain output")
    p.add_argument("--shared", default=os.path.join(REPO, "..", "shared"))
    p.add_argument("--json", help="write every number here")
    args = p.parse_args(argv)
    if any(not 1 <= n <= 8 for n in args.sizes):
        p.error(f"--sizes must be from 1 to 8; got {args.sizes}")
    if args.limit < 1:
        p.error(f"--limit must be a positive integer; got {args.limit}")

    from tfdeblur.inference import Deblurrer, load_model

    model = load_model(args.name, arg="name")
    recorder = Recorder(Deblurrer(model))
    names = [transform_name(k, f) for k, f in recorder.transforms]
    result = {"model": args.name, "limit": args.limit, "transforms": names, "sets": {}}
    for set_name in args.data:
        recorder._cache.clear()
        rows = {}
        for size in sorted(set(args.sizes)):
            for subset in itertools.combinations(range(8), size):
                recorder.subset, recorder.twice = subset, False
                psnr, base, n = score_set(set_name, model, recorder, args.shared, args.limit)
                rows["+".join(names[i] for i in subset)] = psnr
        entry = {"images": n, "input_psnr": base, "subsets": rows}
        if args.twice:
            recorder.twice = True
            entry["twice"], _, _ = score_set(set_name, model, recorder, args.shared, args.limit)
            recorder.twice = False
        result["sets"][set_name] = entry
        plain = rows.get("r0")
        print(f"\n{set_name}: {n} images, input {base:.2f} dB" + (f", plain {plain:.2f} (+{plain - base:.2f})"
                                                                 if plain is not None else ""))
        print("| size | subsets | mean gain | best | worst |")
        print("| ---: | ---: | ---: | --- | --- |")
        for size in sorted(set(args.sizes)):
            these = {k: v for k, v in rows.items() if k.count("+") == size - 1}
            best, worst = max(these, key=these.get), min(these, key=these.get)
            mean = float(np.mean(list(these.values())))
            print(f"| {size} | {len(these)} | {mean - base:+.3f} | {best} {these[best] - base:+.3f} "
                  f"| {worst} {these[worst] - base:+.3f} |")
        if args.twice:
            print(f"second pass over the plain output: {entry['twice']:.2f} dB ({entry['twice'] - base:+.3f})")
        sys.stdout.flush()
    if args.json:
        from tfdeblur.io import atomic_write

        atomic_write(args.json, json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
