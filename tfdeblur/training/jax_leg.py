"""A training leg under Keras' JAX backend, for a GPU machine without TensorFlow.

The networks are backend-neutral Keras, so a machine that has JAX with CUDA
but no TensorFlow (the GPU machines lent to this project now and then: no
network, no room to carry a TensorFlow wheel) can still train them. This
module runs one leg of one or more released models there, on the photos
stream of `tfdeblur.datasets.photos` (the same synthesis, made by a pool of
CPU worker processes), and writes each model's weights as a float32 npz
keyed by weight path, plus a JSON record of the leg (docs/models.md has
the whole procedure and its measured speed). Back on a TensorFlow
machine, `adopt` turns that into an ordinary leg run folder (`model.keras`
+ `config.json`), which `python -m tfdeblur.training.legs finish` scores,
packs and logs like any other leg:

    # here: the training photos + setup.sh (+ Keras' wheels by hand), carried
    python -m tfdeblur.training.jax_leg bundle --photos ../shared/data/sharp --out .gpuleg
    # on the GPU machine (setup.sh sets KERAS_BACKEND=jax; run from outside the repo)
    source .gpuleg/setup.sh && R=$PWD && cd /tmp && python3 -m tfdeblur.training.jax_leg run \\
        --model mtwdn-photos:mtwdn:mtwdn_photos --model lmfn-photos:lmfn:lmfn_photos \\
        --photos $R/.gpuleg/photos --seconds 900 --end-by 520 --out OUT
    # back here
    python -m tfdeblur.training.jax_leg adopt OUT/mtwdn-photos.npz --runs /work/runs
    python -m tfdeblur.training.legs finish mtwdn-photos --run /work/runs/mtwdn-photos-legK

All models of a `run` see the same batches (one data stream feeds them
all: the synthesis costs the same however many models train; on one H100
with 15 workers the data waited under 2 % of the time). The leg is bounded
by wall time, not steps: the learning rate follows the recipe's WarmupCosine
(linear warm-up over its warm-up steps, then a half cosine to
`final_fraction`), with the cosine's progress measured in the fraction of
the time budget spent, so a leg always ends at the bottom of its cosine
however fast the machine turns out to be. Weights are saved every
`--save-every` seconds (atomically), so a leg cut off by its machine still
leaves its latest weights.
"""
import argparse
import json
import logging
import math
import os
import sys
import time
import types

SPLIT_TAG = 31  # photos.SPLIT_TAGS["train"]
logger = logging.getLogger(__name__)


# -- data: CPU worker processes ------------------------------------------------
_BANK = None


def _init_worker(photos_dir):
    global _BANK
    import cv2

    cv2.setNumThreads(1)
    from tfdeblur.datasets import photos

    bank = photos.PhotoBank(photos_dir)
    # Every photo of the folder trains: the folder holds only photos of the
    # training split (the held-out split stays on the TensorFlow machine).
    bank.splits["train"] = photos.list_photos(photos_dir)
    _BANK = bank


def _make_batch(args):
    """One batch of (blur, sharp) uint8 pairs with random D4 augmentation."""
    import numpy as np

    from tfdeblur.datasets import photos

    seed, index, batch, crop, mix = args
    blurs, sharps = [], []
    for j in range(batch):
        i = index * batch + j
        blur, sharp = photos.make_photo_pair(_BANK, (SPLIT_TAG, seed, i), crop, split="train", mix=mix)
        rng = np.random.default_rng((SPLIT_TAG, seed, i, 7))
        k, flip = int(rng.integers(4)), bool(rng.integers(2))
        pair = [np.rot90(a, k) for a in (blur, sharp)]
        if flip:
            pair = [a[:, ::-1] for a in pair]
        blurs.append(np.round(pair[0] * 255.0).astype(np.uint8))
        sharps.append(np.round(pair[1] * 255.0).astype(np.uint8))
    return np.stack(blurs), np.stack(sharps)


def learning_rate(step, progress, peak, warmup_steps, final_fraction):
    """WarmupCosine with the cosine's progress given (fraction of the leg done)."""
    if step < warmup_steps:
        return peak * (step + 1) / max(warmup_steps, 1)
    low = peak * final_fraction
    return low + 0.5 * (peak - low) * (1.0 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))


def _save_npz(path, arrays):
    import numpy as np

    from tfdeblur.io import atomic_path

    with atomic_path(path) as tmp, open(tmp, "wb") as f:  # a file object: savez adds no suffix
        np.savez(f, **arrays)


def _write_json(path, obj):
    from tfdeblur.io import atomic_write

    atomic_write(path, json.dumps(obj, indent=1))


class _Trainee:
    """One model, its optimizer and its jitted step (stateless Keras on JAX)."""

    def __init__(self, spec, peak_lr):
        import jax
        import keras

        import tfdeblur.models as models
        from tfdeblur import losses

        self.name, self.net, self.recipe_name = spec
        self.recipe = models.get_recipe(self.recipe_name)
        weights = self.name if self.name in models.available_weights() else None
        self.model = models.from_preset(weights) if weights else models.build(self.net)
        self.init_from = weights
        loss_cfg = dict(self.recipe["loss"])
        loss_cls = getattr(losses, loss_cfg.pop("class"))
        self.loss = loss_cls(**loss_cfg)
        sched = self.recipe.get("schedule") or {}
        if sched.get("class") != "WarmupCosine":
            raise ValueError(f"recipe {self.recipe_name}: jax_leg runs WarmupCosine recipes only; got {sched!r}")
        self.warmup = int(sched.get("warmup_steps", 0))
        self.final_fraction = float(sched.get("final_fraction", 0.0))
        self.peak = float(peak_lr or self.recipe["learning_rate"])
        opt_cfg = dict(self.recipe["optimizer"])
        if opt_cfg.pop("class") != "Adam":
            raise ValueError(f"recipe {self.recipe_name}: jax_leg runs Adam recipes only")
        self.optimizer = keras.optimizers.Adam(learning_rate=self.peak, **opt_cfg)
        graph = self.model._train_graph
        self.graph = graph
        self.tv = graph.trainable_variables
        self.ntv = graph.non_trainable_variables
        self.optimizer.build(self.tv)
        self.ov = self.optimizer.variables
        lr_var = self.optimizer._learning_rate
        self.lr_index = next(i for i, v in enumerate(self.ov) if v is lr_var)
        self.state = (
            [v.value for v in self.tv],
            [v.value for v in self.ntv],
            [v.value for v in self.ov],
        )
        loss_obj, optimizer = self.loss, self.optimizer

        def compute(tvals, ntvals, x, y):
            out, ntvals = graph.stateless_call(tvals, ntvals, x, training=True)
            return loss_obj(y, out), ntvals

        grad_fn = jax.value_and_grad(compute, has_aux=True)

        def step(state, x, y):
            tvals, ntvals, ovals = state
            (loss, ntvals), grads = grad_fn(tvals, ntvals, x, y)
            tvals, ovals = optimizer.stateless_apply(ovals, grads, tvals)
            return loss, (tvals, ntvals, ovals)

        self.step = jax.jit(step, donate_argnums=0)
        self.steps = 0
        self.losses = []

    def train(self, x, y, lr):
        import jax.numpy as jnp

        tvals, ntvals, ovals = self.state
        ovals = list(ovals)
        ovals[self.lr_index] = jnp.asarray(lr, dtype=ovals[self.lr_index].dtype)
        loss, self.state = self.step((tvals, ntvals, ovals), x, y)
        self.steps += 1
        return loss

    def arrays(self):
        """float32 numpy weights keyed by path (tfdeblur.weights' keys)."""
        import numpy as np

        tvals, ntvals, _ = self.state
        for v, val in zip(self.tv, tvals):
            v.assign(val)
        for v, val in zip(self.ntv, ntvals):
            v.assign(val)
        return {v.path: np.asarray(v.numpy(), dtype=np.float32) for v in self.model.weights}


def parse_mix(text):
    """`--mix MODE=W[,MODE=W...]` -> the photos stream's mix (`DEFAULT_MIX`
    with these weights replaced), or None (the default mix) for ''/None."""
    from tfdeblur.datasets import photos

    if not text:
        return None
    mix = dict(photos.DEFAULT_MIX)
    for field in text.split(","):
        key, eq, value = field.strip().partition("=")
        try:
            weight = float(value) if eq and key in photos.MODES else -1.0
        except ValueError:
            weight = -1.0
        if not weight >= 0:
            raise SystemExit(f"--mix: expected MODE=WEIGHT (MODE in {', '.join(photos.MODES)}, WEIGHT >= 0); "
                             f"got {field!r}")
        mix[key] = weight
    if not sum(mix.values()) > 0:
        raise SystemExit(f"--mix: the weights must have a positive sum; got {text!r}")
    return mix


def mix_spec(mix, root="../shared/data/sharp"):
    """The `photos:` data spec of a mix (only the weights that differ from the default)."""
    from tfdeblur.datasets import photos

    changed = [f"{m}={mix[m]:g}" for m in photos.MODES if mix and mix.get(m, 0.0) != photos.DEFAULT_MIX[m]]
    return ",".join([f"photos:{root}"] + changed)


def run(specs, photos_dir, out, seconds, crop=256, batch=16, seed=5, workers=None, peak_lr=None,
        save_every=90.0, end_by=None, log=None, mix=None):
    """Trains each (name, net, recipe) in `specs` for `seconds` of wall time
    after set-up, or less so as to end `end_by` seconds after the call (a
    machine lent for a fixed time: set-up and compile times vary); writes
    OUT/NAME.npz and OUT/NAME.json; returns the records. `mix`: the photos
    stream's mode weights (`parse_mix`; None: the default mix)."""
    import multiprocessing as mp

    log = log or logger.info
    t0 = time.time()
    keras_mod = sys.modules.get("keras")
    backend = keras_mod.backend.backend() if keras_mod else os.environ.get("KERAS_BACKEND")
    if backend != "jax":
        raise SystemExit(f"jax_leg runs under KERAS_BACKEND=jax; this process has {backend or 'tensorflow'}")
    if not os.path.isdir(photos_dir):
        raise SystemExit(f"--photos {photos_dir}: not a directory")
    os.makedirs(out, exist_ok=True)
    workers = workers or max(1, (os.cpu_count() or 2) - 1)
    # Workers fork before JAX starts (forking a process that runs JAX's
    # threads can deadlock).
    pool = mp.get_context("fork").Pool(workers, initializer=_init_worker, initargs=(photos_dir,))
    import jax
    import jax.numpy as jnp
    import keras

    devices = [str(d) for d in jax.devices()]
    log(f"jax {jax.__version__}, keras {keras.__version__}, devices {devices}, {workers} data workers")
    trainees = [_Trainee(s, peak_lr) for s in specs]
    for t in trainees:
        log(f"{t.name}: {t.net} from {t.init_from or 'scratch'}, recipe {t.recipe_name}, "
            f"{t.model.count_params():,} parameters, peak lr {t.peak}")
    batches = pool.imap(_make_batch, ((seed, i, batch, crop, mix) for i in range(10 ** 9)), chunksize=1)
    history, last_save, start, step = [], time.time(), None, 0
    wait = 0.0

    def save(final=False):
        for t in trainees:
            _save_npz(os.path.join(out, f"{t.name}.npz"), t.arrays())
            _write_json(os.path.join(out, f"{t.name}.json"), record(t, final))

    def record(t, final):
        now = time.time()
        return {
            "name": t.name, "net": t.net, "recipe_name": t.recipe_name, "recipe": t.recipe,
            "init_from": t.init_from, "model_config": t.model.get_config(), "steps_done": t.steps, "crop": crop, "batch_size": batch,
            "learning_rate": t.peak, "seed": seed, "final": final,
            "data": f"photos (jax_leg: the training split of {mix_spec(mix)}, every other photo, JPEG q95)",
            "data_spec": mix_spec(mix), "mix": mix,
            "schedule_note": "WarmupCosine over the leg's wall time (jax_leg)",
            "started_unix": t0, "ended_unix": now, "train_seconds": (now - start) if start else 0.0,
            "loss_history": t.losses[-200:], "machine": _machine(devices),
            "backend": f"keras {keras.__version__} on jax {jax.__version__}", "precision": "fp32 (JAX default precision: XLA may use TF32 on the GPU)",
        }

    while True:
        tw = time.time()
        blur, sharp = next(batches)
        wait += time.time() - tw
        x = jnp.asarray(blur, dtype=jnp.float32) / 255.0
        y = jnp.asarray(sharp, dtype=jnp.float32) / 255.0
        if start is None:
            # The first step compiles; the leg's clock starts after it.
            for t in trainees:
                t.train(x, y, 0.0).block_until_ready()
                t.steps = 0
                # Undo nothing: the compile step ran with lr 0 (Adam moments see one batch).
            start = time.time()
            if end_by is not None:
                seconds = min(seconds, t0 + end_by - start)
                if seconds <= 0:
                    raise SystemExit(f"--end-by {end_by}: set-up took {start - t0:.0f} s; no time left to train")
            log(f"compiled in {start - t0:.0f} s; training for {seconds:.0f} s")
            continue
        progress = (time.time() - start) / seconds
        if progress >= 1.0:
            break
        losses = []
        for t in trainees:
            lr = learning_rate(t.steps, progress, t.peak, t.warmup, t.final_fraction)
            losses.append(t.train(x, y, lr))
        step += 1
        if step % 50 == 0:
            vals = [float(v) for v in losses]
            for t, v in zip(trainees, vals):
                t.losses.append(round(v, 6))
            el = time.time() - start
            log(f"step {step} {el:.0f} s ({step / el:.2f} steps/s, data wait {wait / el:.0%}) lr "
                f"{learning_rate(trainees[0].steps, progress, trainees[0].peak, trainees[0].warmup, trainees[0].final_fraction):.2e} "
                + " ".join(f"{t.name} {v:.4f}" for t, v in zip(trainees, vals)))
            sys.stdout.flush()
        if time.time() - last_save > save_every:
            save()
            last_save = time.time()
    save(final=True)
    pool.terminate()
    log(f"done: {step} steps in {time.time() - start:.0f} s (+{start - t0:.0f} s set-up)")
    return [record(t, True) for t in trainees]


def _machine(devices):
    """legs.machine(), with the GPU names nvidia-smi gives (no TensorFlow here)."""
    import subprocess

    from tfdeblur.training.legs import machine

    try:
        names = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                               text=True, timeout=20).stdout.split("\n")
        gpus = [n.strip() for n in names if n.strip()]
    except (OSError, subprocess.SubprocessError):  # no nvidia-smi: JAX's device list says enough
        gpus = []
    return machine(gpus=gpus or [d for d in devices if not d.startswith("cpu")])


# -- what the GPU machine needs --------------------------------------------------
SETUP_SH = """# Sourced on the GPU machine from the repository root: Keras from the
# carried wheels, tfdeblur importable without installing it (models/ and
# datasets/ linked into a copy of the package, as the install maps them).
# Then run jax_leg from outside the repository (cd /tmp): with `python -m`
# the current folder comes first on sys.path.
REPO=$PWD
BUNDLE=${BUNDLE:-$(dirname "${BASH_SOURCE[0]}")}
export KERAS_BACKEND=jax
if [ -d "$BUNDLE/whl" ] && ls "$BUNDLE"/whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$BUNDLE"/whl/*.whl || return 1
fi
rm -rf /tmp/pkg && mkdir -p /tmp/pkg && cp -r "$REPO/tfdeblur" /tmp/pkg/ \\
  && ln -s "$REPO/models" /tmp/pkg/tfdeblur/models && ln -s "$REPO/datasets" /tmp/pkg/tfdeblur/datasets
export PYTHONPATH=/tmp/pkg:/tmp/site PYTHONUNBUFFERED=1
"""


def bundle(photos_root, out, every=2, quality=95, max_mb=None, log=None):
    """Writes what a GPU machine needs besides the repository into `out`:
    OUT/photos/ (the *training* split of `photos_root`'s photos, every
    `every`-th one, re-encoded as JPEG `quality`, with MANIFEST.txt naming
    each source; the held-out split never leaves this machine) and
    OUT/setup.sh. Keras' wheels go in OUT/whl/ by hand (see docs/models.md):
    nothing here downloads. Returns (photos written, bytes)."""
    import cv2

    from tfdeblur.datasets import photos
    from tfdeblur.io import atomic_write

    log = log or logger.info
    if int(every) < 1:
        raise ValueError(f"every must be >= 1; got {every!r}")
    if not 1 <= int(quality) <= 100:
        raise ValueError(f"quality must be in 1..100; got {quality!r}")
    bank = photos.PhotoBank(photos_root)
    dest = os.path.join(out, "photos")
    os.makedirs(dest, exist_ok=True)
    for old in os.listdir(dest):
        os.remove(os.path.join(dest, old))
    written, total, manifest = 0, 0, []
    for i, path in enumerate(bank.splits["train"]):
        if i % int(every):
            continue
        img = cv2.imread(path, cv2.IMREAD_COLOR)
        if img is None:
            raise ValueError(f"photos_root: cannot decode {path}")
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
        if max_mb is not None and total + len(buf) > max_mb * 1e6:
            log(f"stopped at {max_mb} MB")
            break
        name = f"{i:05d}.jpg"
        atomic_write(os.path.join(dest, name), buf.tobytes())
        manifest.append(f"{name}\t{os.path.relpath(path, photos_root)}")
        written, total = written + 1, total + len(buf)
    atomic_write(os.path.join(dest, "MANIFEST.txt"), "\n".join(manifest) + "\n")
    atomic_write(os.path.join(out, "setup.sh"), SETUP_SH)
    log(f"{written} training photos ({total / 1e6:.1f} MB) and setup.sh in {out}")
    return written, total


# -- back on a TensorFlow machine ----------------------------------------------
def adopt(npz_path, runs, log_dir=None, log=None):
    """Makes a leg run folder (`model.keras`, `config.json`) of jax_leg's
    output `npz_path` (+ its JSON beside it) under `runs`; returns its path,
    ready for `legs finish`."""
    import numpy as np

    import tfdeblur.models as models
    from tfdeblur import weights as W
    from tfdeblur.training import legs
    from tfdeblur.training.run import save_model_atomic

    log = log or logger.info
    meta_path = os.path.splitext(npz_path)[0] + ".json"
    for p in (npz_path, meta_path):
        if not os.path.isfile(p):
            raise SystemExit(f"adopt: {p} does not exist")
    with open(meta_path) as f:
        meta = json.load(f)
    with np.load(npz_path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    name = meta["name"]
    if meta.get("model_config"):  # the network exactly as it trained
        model = models.get_preset(meta["net"]).cls.from_config(meta["model_config"])
    else:
        model = models.from_preset(name) if meta.get("init_from") else models.build(meta["net"])
    where = types.SimpleNamespace(name=name, preset=meta["net"], weights_path=npz_path)  # for assign's errors
    W.assign(model, where, arrays)
    leg = len(legs.read_legs(name, log_dir)) + 1
    out = os.path.join(runs, f"{name}-leg{leg}")
    if os.path.exists(out):
        raise SystemExit(f"adopt: {out} exists already")
    os.makedirs(out)
    config = {
        "net": meta["net"], "data": meta.get("data_spec") or meta["recipe"].get("data", "photos:../shared/data/sharp"),
        "data_note": meta["data"], "seed": meta["seed"], "total_steps": meta["steps_done"],
        "crop": meta["crop"], "batch_size": meta["batch_size"], "learning_rate": meta["learning_rate"],
        "recipe_name": meta["recipe_name"], "recipe": meta["recipe"], "precision_resolved": meta["precision"],
        "init_from": meta.get("init_from"), "machine": meta["machine"], "backend": meta["backend"],
        "schedule_note": meta["schedule_note"], "wall_seconds": meta["ended_unix"] - meta["started_unix"],
        "train_seconds": meta["train_seconds"], "loss_history": meta["loss_history"], "adopted_from": os.path.abspath(npz_path),
    }
    config_path = os.path.join(out, "config.json")
    with open(config_path, "w") as f:
        json.dump(config, f, indent=1)
    os.utime(config_path, (meta["started_unix"], meta["started_unix"]))
    model_path = os.path.join(out, "model.keras")
    save_model_atomic(model, model_path)
    os.utime(model_path, (meta["ended_unix"], meta["ended_unix"]))
    log(f"adopted {npz_path} ({meta['steps_done']} steps) as {out}")
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tfdeblur.training.jax_leg", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="train a leg under KERAS_BACKEND=jax")
    r.add_argument("--model", action="append", required=True, metavar="NAME:NET:RECIPE",
                   help="weights name, network, recipe (repeatable: all train on the same batches)")
    r.add_argument("--photos", required=True, help="folder of training photos (the training split only)")
    r.add_argument("--seconds", type=float, required=True, help="training wall time after set-up")
    r.add_argument("--out", required=True)
    r.add_argument("--crop", type=int, default=256)
    r.add_argument("--batch-size", type=int, default=16)
    r.add_argument("--seed", type=int, default=5)
    r.add_argument("--workers", type=int, default=None)
    r.add_argument("--learning-rate", type=float, default=None)
    r.add_argument("--save-every", type=float, default=90.0)
    r.add_argument("--mix", default=None, metavar="MODE=W[,MODE=W...]",
                   help="reweight the photos stream's modes, e.g. shake=0.35 (default: its default mix)")
    r.add_argument("--end-by", type=float, default=None,
                   help="end at most this many seconds after the start, set-up included (shortens --seconds)")
    b = sub.add_parser("bundle", help="write the training photos and setup.sh a GPU machine needs")
    b.add_argument("--photos", required=True, help="the photos folder of the leg's data (e.g. ../shared/data/sharp)")
    b.add_argument("--out", required=True, help="a folder .git/info/exclude ignores (e.g. .gpuleg), carried to the machine")
    b.add_argument("--every", type=int, default=2, help="every N-th training photo (the carried tree is limited)")
    b.add_argument("--quality", type=int, default=95)
    b.add_argument("--max-mb", type=float, default=None)
    a = sub.add_parser("adopt", help="turn run's NAME.npz into a leg run folder for `legs finish`")
    a.add_argument("npz")
    a.add_argument("--runs", required=True)
    args = parser.parse_args(argv)
    if args.cmd == "run":
        specs = []
        for m in args.model:
            parts = m.split(":")
            if len(parts) != 3:
                parser.error(f"--model {m!r}: expected NAME:NET:RECIPE")
            specs.append(tuple(parts))
        run(specs, args.photos, args.out, args.seconds, crop=args.crop, batch=args.batch_size, seed=args.seed,
            workers=args.workers, peak_lr=args.learning_rate, save_every=args.save_every, end_by=args.end_by,
            mix=parse_mix(args.mix),
            log=lambda m: print(f"[{time.strftime('%H:%M:%S')}] {m}", flush=True))
    elif args.cmd == "bundle":
        bundle(args.photos, args.out, every=args.every, quality=args.quality, max_mb=args.max_mb, log=print)
    else:
        adopt(args.npz, args.runs, log=print)


if __name__ == "__main__":
    main()
