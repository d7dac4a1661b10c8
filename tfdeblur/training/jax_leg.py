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
    if photos_dir is None:  # the procedural `synthetic` stream needs no photos
        return
    from tfdeblur.datasets import photos

    bank = photos.PhotoBank(photos_dir)
    # Every photo of the folder trains: the folder holds only photos of the
    # training split (the held-out split stays on the TensorFlow machine).
    bank.splits["train"] = photos.list_photos(photos_dir)
    _BANK = bank


def _make_batch(args):
    """One batch of (blur, sharp) uint8 pairs: element i of the photos stream
    (`mix`), or of the procedural `synthetic` stream (`mix` == "synthetic":
    `synthetic.make_pair` of the training split's seed, as `train` makes
    it), with random D4 augmentation (`augment` "d4"), horizontal flips
    ("hflip") or none ("none")."""
    import numpy as np

    seed, index, batch, crop, mix, augment = args
    blurs, sharps = [], []
    for j in range(batch):
        i = index * batch + j
        if mix == "synthetic":
            from tfdeblur.datasets import synthetic

            blur, sharp = synthetic.make_pair((synthetic.SPLIT_TAGS["train"], seed, i), crop)
        else:
            from tfdeblur.datasets import photos

            blur, sharp = photos.make_photo_pair(_BANK, (SPLIT_TAG, seed, i), crop, split="train", mix=mix)
        rng = np.random.default_rng((SPLIT_TAG, seed, i, 7))
        k, flip = int(rng.integers(4)), bool(rng.integers(2))
        k = k if augment == "d4" else 0
        flip = flip and augment != "none"
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


GOPRO_TRAIN_PAIRS = 2103  # recipes.GOPRO_TRAIN_PAIRS (that module needs TensorFlow): a generated stream's epoch


def recipe_rate(recipe, step, total_steps, peak, batch):
    """The recipe's learning rate at `step` of a run of `total_steps` (as
    `recipes.make_schedule` builds it, without TensorFlow): constant (no
    schedule), ExponentialDecay (epochs of GoPro's pairs at `batch`) or
    WarmupCosine over `total_steps`; other schedules raise ValueError."""
    spec = dict(recipe.get("schedule") or {})
    kind = spec.pop("class", None)
    if kind is None:
        return peak
    if kind == "ExponentialDecay":
        decay = spec.get("decay_steps") or int(spec["decay_epochs"]) * math.ceil(GOPRO_TRAIN_PAIRS / batch)
        power = step / decay
        return peak * float(spec["decay_rate"]) ** (math.floor(power) if spec.get("staircase") else power)
    if kind == "WarmupCosine":
        warmup = min(int(spec.get("warmup_steps", 0)), int(total_steps) // 2)
        progress = (step - warmup) / max(int(total_steps) - warmup, 1)  # as tfdeblur.schedules.WarmupCosine
        return learning_rate(step, progress, peak, warmup, float(spec.get("final_fraction", 0.0)))
    raise ValueError(f"jax_leg --steps runs constant, ExponentialDecay or WarmupCosine schedules; got {kind!r}")


def _save_npz(path, arrays, dtype="float32", part_mb=None):
    """Writes `arrays` (cast to `dtype`) as the npz `path`, atomically; with
    `part_mb`, a file larger than that is written as PATH.part00, .part01,
    ... of at most `part_mb` MiB each instead (a GPU call brings back files
    of at most 16 MiB), and PATH itself is removed. `load_npz` reads both."""
    import io

    import numpy as np

    from tfdeblur.io import atomic_path, atomic_write

    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v).astype(dtype) for k, v in arrays.items()})
    data = buf.getvalue()
    folder, base = os.path.split(path)
    stale = [n for n in os.listdir(folder or ".") if n.startswith(base + ".part")]
    size = int(part_mb * 2 ** 20) if part_mb else None
    if size is None or len(data) <= size:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            f.write(data)
        written = []
    else:
        written = [f"{base}.part{i:02d}" for i in range(math.ceil(len(data) / size))]
        for i, name in enumerate(written):
            atomic_write(os.path.join(folder, name), data[i * size:(i + 1) * size])
        if os.path.exists(path):
            os.remove(path)
    for name in stale:
        if name not in written:
            os.remove(os.path.join(folder, name))


def load_npz(path):
    """{name: float32 array} of `_save_npz`'s output: PATH, or its parts
    PATH.part00, .part01, ... joined in order."""
    import io
    import zipfile

    import numpy as np

    if os.path.isfile(path):
        source = path
    else:
        folder, base = os.path.split(path)
        parts = sorted(n for n in os.listdir(folder or ".") if n.startswith(base + ".part")) if os.path.isdir(folder or ".") else []
        want = [f"{base}.part{i:02d}" for i in range(len(parts))]
        if not parts:
            raise SystemExit(f"adopt: {path} does not exist (nor its parts {base}.part00, ...)")
        if parts != want:
            raise SystemExit(f"adopt: the parts of {path} are not numbered 00..{len(parts) - 1:02d}: {', '.join(parts)}")
        source = io.BytesIO(b"".join(open(os.path.join(folder, n), "rb").read() for n in parts))
    try:
        with np.load(source, allow_pickle=False) as z:
            return {k: z[k].astype(np.float32) for k in z.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise SystemExit(f"adopt: {path} is damaged ({type(e).__name__}: {e})") from e


def _write_json(path, obj):
    from tfdeblur.io import atomic_write

    atomic_write(path, json.dumps(obj, indent=1))


class _Trainee:
    """One model, its optimizer and its jitted step (stateless Keras on JAX)."""

    def __init__(self, spec, peak_lr, total_steps=None):
        import jax
        import keras

        import tfdeblur.models as models
        from tfdeblur import losses

        self.name, self.net, self.recipe_name = spec[:3]
        peak_lr = float(spec[3]) if len(spec) > 3 else peak_lr  # a model's own learning rate
        self.recipe = models.get_recipe(self.recipe_name)
        weights = self.name if self.name in models.available_weights() else None
        self.model = models.from_preset(weights) if weights else models.build(self.net)
        self.init_from = weights
        loss_cfg = dict(self.recipe["loss"])
        loss_cls = getattr(losses, loss_cfg.pop("class"))
        self.loss = loss_cls(**loss_cfg)
        sched = self.recipe.get("schedule") or {}
        self.total_steps = total_steps
        if total_steps is None and sched.get("class") != "WarmupCosine":
            raise ValueError(f"recipe {self.recipe_name}: a leg bounded by time runs WarmupCosine recipes only "
                             f"(bound it by --steps for others); got {sched!r}")
        self.warmup = int(sched.get("warmup_steps", 0))
        self.final_fraction = float(sched.get("final_fraction", 0.0))
        self.peak = float(peak_lr or self.recipe["learning_rate"])
        if total_steps is not None:
            recipe_rate(self.recipe, 0, total_steps, self.peak, 1)  # refuses an unknown schedule now
        opt_cfg = dict(self.recipe["optimizer"])
        opt_cls = opt_cfg.pop("class")
        if opt_cls not in ("Adam", "AdamW"):
            raise ValueError(f"recipe {self.recipe_name}: jax_leg runs Adam and AdamW recipes; got {opt_cls!r}")
        self.optimizer = getattr(keras.optimizers, opt_cls)(learning_rate=self.peak, **opt_cfg)
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
        needs_target = bool(getattr(self.model, "needs_target", False))  # e.g. msfs: the encoder sees the sharp image

        # A multi-term loss (MSFSLoss: content, high, low) is also tracked
        # term by term, as `train` logs it (loss_<term>).
        self.term_names = tuple(getattr(loss_obj, "term_names", ()) or ())

        def compute(tvals, ntvals, x, y):
            out, ntvals = graph.stateless_call(tvals, ntvals, [x, y] if needs_target else x, training=True)
            terms = {k: jax.numpy.mean(v) for k, v in loss_obj.terms(y, out).items()} if self.term_names else {}
            return loss_obj(y, out), (ntvals, terms)

        grad_fn = jax.value_and_grad(compute, has_aux=True)

        def step(state, x, y):
            tvals, ntvals, ovals = state
            (loss, (ntvals, terms)), grads = grad_fn(tvals, ntvals, x, y)
            tvals, ovals = optimizer.stateless_apply(ovals, grads, tvals)
            return (loss, terms), (tvals, ntvals, ovals)

        self.step = jax.jit(step, donate_argnums=0)
        self.steps = 0
        self.losses = []
        self.step_losses = []  # every step's (loss, terms), on the device until a record needs them
        self.term_history = []  # the terms at each logged step (every 50)
        self.val_history = []  # (step, synthetic validation) with --val-every

    def compile(self, x, y):
        """Compiles the step for batches shaped like (x, y) (threads may run
        several models' compiles at once: XLA releases the GIL)."""
        self.step = self.step.lower(self._with_lr(0.0), x, y).compile()

    def _with_lr(self, lr):
        import jax.numpy as jnp

        tvals, ntvals, ovals = self.state
        ovals = list(ovals)
        ovals[self.lr_index] = jnp.asarray(lr, dtype=ovals[self.lr_index].dtype)
        return tvals, ntvals, ovals

    def loss_summary(self, n=100):
        """Mean loss (and of each term of a multi-term loss) over the first
        and the last `n` steps (None before any)."""
        import numpy as np

        if not self.step_losses:
            return None
        values = np.asarray([float(v) for v, _ in self.step_losses], np.float64)
        out = {"steps": len(values), f"first_{n}": float(values[:n].mean()), f"last_{n}": float(values[-n:].mean())}
        for name in self.term_names:
            term = np.asarray([float(t[name]) for _, t in self.step_losses], np.float64)
            out[name] = {f"first_{n}": float(term[:n].mean()), f"last_{n}": float(term[-n:].mean())}
        return out

    def validate_synthetic(self, images=16, size=256):
        """PSNR (8-bit output) of this model and of the input on the first
        `images` pairs of the synthetic validation set (`--data synthetic`'s:
        `synthetic.make_pair((SPLIT_TAGS["val"], 0, i), 256)`)."""
        import numpy as np

        from tfdeblur.datasets import synthetic

        self.arrays()  # the trained values into the model's variables
        psnr = lambda a, b: 10 * np.log10(1.0 / max(float(np.mean((a - b) ** 2)), 1e-12))  # noqa: E731
        import jax

        if getattr(self, "_infer", None) is None:  # jitted once; donates nothing (Keras' predict would)
            model = self.model
            self._infer = jax.jit(lambda tv, ntv, x: model.stateless_call(tv, ntv, x, training=False)[0])
        pairs = [synthetic.make_pair((synthetic.SPLIT_TAGS["val"], 0, i), size) for i in range(int(images))]
        restored = np.asarray(self._infer([v.value for v in self.model.trainable_variables],
                                          [v.value for v in self.model.non_trainable_variables],
                                          np.stack([b for b, _ in pairs])), np.float64)
        ins, outs = [], []
        for (blur, sharp), out in zip(pairs, restored):
            out = np.round(np.clip(out, 0.0, 1.0) * 255.0) / 255.0
            ins.append(psnr(blur.astype(np.float64), sharp))
            outs.append(psnr(out, sharp))
        return {"images": int(images), "size": size, "input_psnr": float(np.mean(ins)), "psnr": float(np.mean(outs)),
                "gain": float(np.mean(outs) - np.mean(ins))}

    def rate(self, progress, batch):
        """The learning rate of the next step: the recipe's schedule over
        `total_steps` (a leg bounded by steps), else WarmupCosine over the
        fraction `progress` of the leg's time."""
        if self.total_steps is not None:
            return recipe_rate(self.recipe, self.steps, self.total_steps, self.peak, batch)
        return learning_rate(self.steps, progress, self.peak, self.warmup, self.final_fraction)

    def train(self, x, y, lr):
        (loss, terms), self.state = self.step(self._with_lr(lr), x, y)
        self.steps += 1
        self.step_losses.append((loss, terms))
        self.last_terms = terms
        return loss

    def arrays(self):
        """float32 numpy weights keyed by path (tfdeblur.weights' keys)."""
        import numpy as np

        import jax.numpy as jnp

        # Copies: the next step donates the state's buffers, which the
        # variables must not share.
        tvals, ntvals, _ = self.state
        for v, val in zip(self.tv, tvals):
            v.assign(jnp.array(val, copy=True))
        for v, val in zip(self.ntv, ntvals):
            v.assign(jnp.array(val, copy=True))
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
            weight = float(value) if eq and key in photos.MODES + (photos.CLEAN_KEY,) else -1.0
        except ValueError:
            weight = -1.0
        if not weight >= 0 or (key == photos.CLEAN_KEY and weight > 1):
            raise SystemExit(f"--mix: expected MODE=WEIGHT (MODE in {', '.join(photos.MODES)}, WEIGHT >= 0) or "
                             f"{photos.CLEAN_KEY}=P (0 <= P <= 1); got {field!r}")
        mix[key] = weight
    if not sum(v for k, v in mix.items() if k in photos.MODES) > 0:
        raise SystemExit(f"--mix: the weights must have a positive sum; got {text!r}")
    return mix


def mix_spec(mix, root="../shared/data/sharp"):
    """The `photos:` data spec of a mix (only the weights that differ from the default)."""
    from tfdeblur.datasets import photos

    changed = [f"{m}={mix[m]:g}" for m in photos.MODES if mix and mix.get(m, 0.0) != photos.DEFAULT_MIX[m]]
    if mix and mix.get(photos.CLEAN_KEY, 0.0):
        changed.append(f"{photos.CLEAN_KEY}={mix[photos.CLEAN_KEY]:g}")
    return ",".join([f"photos:{root}"] + changed)


def run(specs, photos_dir, out, seconds, crop=256, batch=16, seed=5, workers=None, peak_lr=None,
        save_every=90.0, end_by=None, log=None, mix=None, steps=None, data="photos", augment="d4",
        val_images=0, save_weights=True, weights_dtype="float32", part_mb=None, val_every=None):
    """Trains each (name, net, recipe) in `specs` for `seconds` of wall time
    after set-up (or for `steps` steps on the recipe's own schedule, e.g.
    the CLI's quick run: `steps=1000, crop=128, batch=4, peak_lr=3e-4`),
    or less so as to end `end_by` seconds after the call (a machine lent
    for a fixed time: set-up and compile times vary); writes OUT/NAME.npz
    and OUT/NAME.json; returns the records. `data`: "photos" (the photos
    stream of `photos_dir`, `mix` its mode weights: `parse_mix`, None the
    default mix) or "synthetic" (the procedural stream, `train`'s default
    data; no photos needed). `augment`: "d4", "hflip" or "none".
    `val_images`: after training, score each model on that many synthetic
    validation images (logged and in its record); `val_every`: also every
    that many steps (time spent there counts in the leg's time). `save_weights=False`
    writes the records only. `weights_dtype` "float16" halves the weights
    file; `part_mb` splits a larger one into parts (`_save_npz`): a 21 M
    parameter model's weights are 43 MB in float16, over the 16 MiB a GPU
    call brings back per file."""
    import multiprocessing as mp

    log = log or logger.info
    t0 = time.time()
    keras_mod = sys.modules.get("keras")
    backend = keras_mod.backend.backend() if keras_mod else os.environ.get("KERAS_BACKEND")
    if data not in ("photos", "synthetic"):
        raise SystemExit(f"--data: expected photos or synthetic; got {data!r}")
    if augment not in ("d4", "hflip", "none"):
        raise SystemExit(f"--augment: expected d4, hflip or none; got {augment!r}")
    if data == "synthetic" and mix:
        raise SystemExit("--mix reweights the photos stream; --data synthetic has no modes")
    if (seconds is None) == (steps is None):
        raise SystemExit("give one of --seconds (a leg bounded by time) and --steps (bounded by steps)")
    if steps is not None and (int(steps) != steps or steps < 1):
        raise SystemExit(f"--steps: expected a positive integer; got {steps!r}")
    if weights_dtype not in ("float32", "float16"):
        raise SystemExit(f"--weights-dtype: expected float32 or float16; got {weights_dtype!r}")
    if val_every is not None and (int(val_every) != val_every or val_every < 1):
        raise SystemExit(f"--val-every: expected a positive integer; got {val_every!r}")
    if part_mb is not None and not part_mb > 0:
        raise SystemExit(f"--part-mb: expected a positive number; got {part_mb!r}")
    if data == "photos" and not (photos_dir and os.path.isdir(photos_dir)):
        raise SystemExit(f"--photos {photos_dir}: not a directory")
    stream = "synthetic" if data == "synthetic" else mix
    data_note = ("synthetic (jax_leg: the procedural training stream, synthetic.make_pair)" if data == "synthetic"
                 else f"photos (jax_leg: the training split of {mix_spec(mix)}, every other photo, JPEG q95)")
    data_spec = "synthetic" if data == "synthetic" else mix_spec(mix)
    if backend != "jax":
        raise SystemExit(f"jax_leg runs under KERAS_BACKEND=jax; this process has {backend or 'tensorflow'}")
    os.makedirs(out, exist_ok=True)
    workers = workers or max(1, (os.cpu_count() or 2) - 1)
    # Workers fork before JAX starts (forking a process that runs JAX's
    # threads can deadlock).
    pool = mp.get_context("fork").Pool(workers, initializer=_init_worker,
                                       initargs=(photos_dir if data == "photos" else None,))
    import jax
    import jax.numpy as jnp
    import keras

    devices = [str(d) for d in jax.devices()]
    log(f"jax {jax.__version__}, keras {keras.__version__}, devices {devices}, {workers} data workers")
    trainees = [_Trainee(s, peak_lr, steps) for s in specs]
    for t in trainees:
        log(f"{t.name}: {t.net} from {t.init_from or 'scratch'}, recipe {t.recipe_name}, "
            f"{t.model.count_params():,} parameters, peak lr {t.peak}")
    batches = pool.imap(_make_batch, ((seed, i, batch, crop, stream, augment) for i in range(10 ** 9)), chunksize=1)
    history, last_save, start, step = [], time.time(), None, 0
    wait = 0.0

    def save(final=False):
        for t in trainees:
            if save_weights:
                _save_npz(os.path.join(out, f"{t.name}.npz"), t.arrays(), weights_dtype, part_mb)
            _write_json(os.path.join(out, f"{t.name}.json"), record(t, final))

    def record(t, final):
        now = time.time()
        return {
            "name": t.name, "net": t.net, "recipe_name": t.recipe_name, "recipe": t.recipe,
            "init_from": t.init_from, "model_config": t.model.get_config(), "steps_done": t.steps, "crop": crop, "batch_size": batch,
            "learning_rate": t.peak, "seed": seed, "final": final, "steps_planned": steps,
            "data": data_note, "data_spec": data_spec, "mix": mix, "augment": augment,
            "weights_dtype": weights_dtype if save_weights else None,
            "schedule_note": ("the recipe's schedule over --steps (jax_leg)" if steps is not None
                              else "WarmupCosine over the leg's wall time (jax_leg)"),
            "started_unix": t0, "ended_unix": now, "train_seconds": (now - start) if start else 0.0,
            "loss_history": t.losses[-200:], "loss_summary": t.loss_summary() if final else None,
            "term_history": t.term_history[-200:] or None, "val_history": t.val_history or None,
            "val_synthetic": getattr(t, "val_synthetic", None), "machine": _machine(devices),
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
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(len(trainees)) as ex:
                list(ex.map(lambda t: t.compile(x, y), trainees))
            for t in trainees:
                t.train(x, y, 0.0).block_until_ready()
                t.steps = 0
                t.step_losses = []
                # Undo nothing: the compile step ran with lr 0 (Adam moments see one batch).
            start = time.time()
            limit = seconds if seconds is not None else float("inf")
            if end_by is not None:
                limit = min(limit, t0 + end_by - start)
                if limit <= 0:
                    raise SystemExit(f"--end-by {end_by}: set-up took {start - t0:.0f} s; no time left to train")
            if steps is None:
                seconds = limit
                log(f"compiled in {start - t0:.0f} s; training for {seconds:.0f} s")
            else:
                log(f"compiled in {start - t0:.0f} s; training {steps} steps"
                    + (f" (cut at {limit:.0f} s)" if limit < float("inf") else ""))
            continue
        elapsed = time.time() - start
        if steps is not None:
            if step >= steps or elapsed >= limit:
                break
            progress = step / steps
        else:
            progress = elapsed / seconds
            if progress >= 1.0:
                break
        losses = []
        for t in trainees:
            losses.append(t.train(x, y, t.rate(progress, batch)))
        step += 1
        if step % 50 == 0:
            vals = [float(v) for v in losses]
            for t, v in zip(trainees, vals):
                t.losses.append(round(v, 6))
                if t.term_names:
                    t.term_history.append({k: round(float(t.last_terms[k]), 6) for k in t.term_names})
            el = time.time() - start
            log(f"step {step} {el:.0f} s ({step / el:.2f} steps/s, data wait {wait / el:.0%}) lr "
                f"{trainees[0].rate(progress, batch):.2e} "
                + " ".join(f"{t.name} {v:.4f}" + (" (" + ", ".join(f"{k} {t.term_history[-1][k]:.4g}" for k in t.term_names)
                                                  + ")" if t.term_names else "") for t, v in zip(trainees, vals)))
            sys.stdout.flush()
        if val_every and step % val_every == 0 and step < (steps or float("inf")):
            for t in trainees:
                v = t.validate_synthetic(val_images or 16)
                t.val_history.append({"step": t.steps, **v})
                log(f"{t.name}: step {t.steps}: synthetic validation {v['input_psnr']:.2f} -> {v['psnr']:.2f} dB "
                    f"({v['gain']:+.2f})")
        if time.time() - last_save > save_every:
            save()
            last_save = time.time()
    pool.terminate()
    for t in trainees:
        if val_images:
            t.val_synthetic = t.validate_synthetic(val_images)
            v = t.val_synthetic
            log(f"{t.name}: synthetic validation ({v['images']} images, {v['size']} px, 8-bit): "
                f"{v['input_psnr']:.2f} -> {v['psnr']:.2f} dB ({v['gain']:+.2f})")
        summary = t.loss_summary()
        if summary:
            log(f"{t.name}: loss {summary['first_100']:.4f} (mean of the first 100 steps) -> "
                f"{summary['last_100']:.4f} (the last 100), {summary['steps']} steps")
    save(final=True)
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
    import tfdeblur.models as models
    from tfdeblur import weights as W
    from tfdeblur.training import legs
    from tfdeblur.training.run import save_model_atomic

    log = log or logger.info
    meta_path = os.path.splitext(npz_path)[0] + ".json"
    if not os.path.isfile(meta_path):
        raise SystemExit(f"adopt: {meta_path} does not exist")
    with open(meta_path) as f:
        meta = json.load(f)
    arrays = load_npz(npz_path)
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
    r.add_argument("--model", action="append", required=True, metavar="NAME:NET:RECIPE[:LR]",
                   help="weights name, network, recipe, optionally its own peak learning rate "
                        "(repeatable: all train on the same batches)")
    r.add_argument("--photos", default=None, help="folder of training photos (the training split only)")
    r.add_argument("--data", default="photos", choices=("photos", "synthetic"),
                   help="photos (--photos' stream) or synthetic (the procedural stream, train's default data)")
    r.add_argument("--seconds", type=float, default=None, help="training wall time after set-up")
    r.add_argument("--steps", type=int, default=None,
                   help="train this many steps on the recipe's own schedule instead (e.g. the CLI's quick run: "
                        "--steps 1000 --crop 128 --batch-size 4 --learning-rate 3e-4)")
    r.add_argument("--augment", default="d4", choices=("d4", "hflip", "none"))
    r.add_argument("--val-images", type=int, default=0,
                   help="after training, score each model on this many synthetic validation images (256 px)")
    r.add_argument("--val-every", type=int, default=None,
                   help="also score on the synthetic validation images every N steps (--val-images of them, default 16)")
    r.add_argument("--no-weights", action="store_true", help="write each model's record only, not its weights")
    r.add_argument("--weights-dtype", default="float32", choices=("float32", "float16"))
    r.add_argument("--part-mb", type=float, default=None,
                   help="split a weights file larger than this many MiB into NAME.npz.part00, ... (adopt joins them)")
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
            if len(parts) not in (3, 4):
                parser.error(f"--model {m!r}: expected NAME:NET:RECIPE[:LR]")
            if len(parts) == 4:
                try:
                    ok = float(parts[3]) > 0
                except ValueError:
                    ok = False
                if not ok:
                    parser.error(f"--model {m!r}: LR must be a positive number; got {parts[3]!r}")
            specs.append(tuple(parts))
        run(specs, args.photos, args.out, args.seconds, crop=args.crop, batch=args.batch_size, seed=args.seed,
            workers=args.workers, peak_lr=args.learning_rate, save_every=args.save_every, end_by=args.end_by,
            mix=parse_mix(args.mix), steps=args.steps, data=args.data, augment=args.augment,
            val_images=args.val_images, save_weights=not args.no_weights, weights_dtype=args.weights_dtype,
            part_mb=args.part_mb, val_every=args.val_every,
            log=lambda m: print(f"[{time.strftime('%H:%M:%S')}] {m}", flush=True))
    elif args.cmd == "bundle":
        bundle(args.photos, args.out, every=args.every, quality=args.quality, max_mb=args.max_mb, log=print)
    else:
        adopt(args.npz, args.runs, log=print)


if __name__ == "__main__":
    main()
