"""What one sample of the `photos:` stream costs, per mode and for a mix.

    python benchmarks/photo_stream.py [--photos ../shared/data/sharp] [--size 256]
        [--samples 24] [--rounds 3] [--mix shake=0.35,wide=0.6]

Times `datasets.photos.make_photo_pair` on one thread (OpenCV set to one
thread, as in `jax_leg`'s data worker processes), for each mode forced and
for `--mix` drawn as a training leg draws it (the training split, seeds
(SEED, round, i)); prints milliseconds per sample, the median over
`--rounds` rounds of `--samples` samples, and the samples per second one
worker makes. On a GPU leg, a network that trains faster than
workers x that rate waits for data (`jax_leg`'s "data wait").

Needs the sharp photos (`../shared/data/sharp` or `--photos`). Prints a
markdown table; nothing here is a test.
"""
import argparse
import os
import platform
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

SEED = 20261128


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--photos", default=os.path.join(REPO, "..", "shared", "data", "sharp"))
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--samples", type=int, default=24)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--mix", default="shake=0.35,wide=0.6", help="MODE=W[,MODE=W...] added to the default mix")
    args = ap.parse_args(argv)
    if not os.path.isdir(args.photos):
        raise SystemExit(f"--photos: no such folder {args.photos!r} (the sharp photos of ../shared/data/sharp)")
    if args.samples < 1 or args.rounds < 1:
        raise SystemExit("--samples and --rounds must be at least 1")
    import cv2

    from tfdeblur.datasets import photos

    cv2.setNumThreads(1)
    mix = dict(photos.DEFAULT_MIX)
    for item in filter(None, args.mix.split(",")):
        mode, _, weight = item.partition("=")
        if mode not in photos.MODES:
            raise SystemExit(f"--mix: unknown mode {mode!r}; modes are {list(photos.MODES)}")
        try:
            mix[mode] = float(weight)
        except ValueError:
            raise SystemExit(f"--mix: {item!r} is not MODE=WEIGHT") from None
    bank = photos.PhotoBank(args.photos)
    photos.make_photo_pair(bank, (SEED, 99999), args.size, mode="camera")  # warm-up (imports, first reads)
    rows = [(mode, dict(mode=mode)) for mode in photos.MODES] + [(f"mix {args.mix}", dict(mix=mix))]
    times = {name: [] for name, _ in rows}
    for r in range(args.rounds):  # rounds interleave the modes, so a load change hits all of them
        for name, kw in rows:
            t = time.perf_counter()
            for i in range(args.samples):
                photos.make_photo_pair(bank, (SEED, r, i), args.size, **kw)
            times[name].append((time.perf_counter() - t) / args.samples * 1000)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"photos stream, {args.size} px, {args.samples} samples x {args.rounds} rounds, one thread; "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, load average {load:.2f}\n")
    print("| mode | ms / sample (median of rounds) | samples / s, one worker |")
    print("| --- | --- | --- |")
    for name, _ in rows:
        ms = float(np.median(times[name]))
        print(f"| {name} | {ms:.1f} | {1000 / ms:.1f} |")


if __name__ == "__main__":
    main()
