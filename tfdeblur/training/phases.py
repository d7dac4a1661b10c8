"""Phased training (GLBDN, Li et al., Appl. Sci. 2021, sec. 3.2): `train NET --phase 1|2|3|all`.

A recipe with a "phases" entry (see `models/glbdn.py`) says, per phase,
which training output the loss supervises, which sublayers train (the rest
frozen) or which are frozen, and the default `--data`:

    phase 1: the global branch alone, L_G = ||Psi_G(x) - G_GT||^2, uniform blur (globalblur)
    phase 2: the local branch alone,  L_L = ||Psi_L(x) - X_GT||^2, dynamic scenes (dynamic)
    phase 3: global branch frozen, the rest end to end, L_phi on the final image (dynamic)

Phase P writes its own run folder OUT/phaseP (OUT = --out, default runs/NET)
and starts from OUT/phase{P-1}/model.keras, or from `--from FILE.keras`.
Frozen means `trainable = False` before compiling: the optimizer never sees
those weights (tests check they stay bit-identical). Each phase also scores
the output it trained (the branch image for phases 1-2) against the blurry
input on its validation set: OUT/phaseP/phase_results.json. After phase 3,
OUT/phase3/features.png shows the branch features of one validation image
(mean |Psi_G|, mean |Psi_L|, the attention mask), as the paper's Fig. 1.
"""
import copy
import dataclasses
import os

import numpy as np

from tfdeblur.training.errors import RunError

PHASES = (1, 2, 3)
UNIFORM_KINDS = ("globalblur", "synthetic")  # --data kinds known to be uniform blur


def phases_of(net):
    """The recipe's phases of preset `net` (dict phase -> spec), or a RunError."""
    from tfdeblur.models import get_recipe

    phases = get_recipe(net).get("phases")
    if not phases:
        raise RunError(f"--phase: {net} has no phased training (its recipe defines no phases)")
    return phases


def phase_recipe(recipe, phase):
    """`recipe` with the loss of `phase`."""
    spec = recipe["phases"][phase]
    out = copy.deepcopy({k: v for k, v in recipe.items() if k != "phases"})
    out["loss"] = copy.deepcopy(spec["loss"])
    out["phase"] = {"phase": phase, **{k: v for k, v in spec.items() if k != "loss"}}
    return out


def prepare_model(model, cfg, log=print):
    """Loads `cfg.init_from` (if any) and sets the trainable parts of `cfg.phase`.
    Call before compiling."""
    if cfg.init_from:
        from tfdeblur import checksum

        try:
            checksum.verify(cfg.init_from, "--from")
        except ValueError as e:
            raise RunError(str(e)) from e
        try:
            model.load_weights(cfg.init_from)
        except Exception as e:  # Keras raises several types for a mismatch
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            raise RunError(f"--from {cfg.init_from}: its weights do not fit {cfg.net} ({first})") from e
        log(f"phase {cfg.phase}: starting from {cfg.init_from}")
    if cfg.phase is None:
        return
    spec = phases_of(cfg.net)[cfg.phase]

    def layer(name):
        try:
            return model.get_layer(name)
        except ValueError:
            raise RunError(f"--phase {cfg.phase}: {cfg.net} has no layer {name!r} (phased training needs both branches)") from None

    if "train" in spec:
        keep = [layer(n) for n in spec["train"]]
        for sub in model.layers:
            sub.trainable = False
        for sub in keep:
            sub.trainable = True
    for name in spec.get("freeze", ()):
        layer(name).trainable = False


def check_phase_data(phase, spec, log=print):
    """Warns (does not stop) when phase 1's data is not known to be uniform blur."""
    if phase == 1 and spec.kind not in UNIFORM_KINDS:
        log(f"warning: phase 1 trains the global branch on uniform (global) blur; --data {spec} "
            f"is not known to be uniform ({' or '.join(UNIFORM_KINDS)} are)")
        return False
    return True


def _first_weights(out, phase):
    return os.path.join(out, f"phase{phase - 1}", "model.keras")


class _Output:
    """Callable model view returning one training output (for `evaluate_pairs`)."""

    def __init__(self, model, key):
        self.model, self.key = model, key

    def __call__(self, x, training=False):
        return self.model.training_outputs(x, training=training)[self.key]


def _feature_picture(model, blur, sharp, path):
    """blurry | output | sharp over mean |Psi_G| | mean |Psi_L| | mask (Fig. 1 of the paper);
    each map scaled to its own min-max range."""
    import keras

    from tfdeblur import io as tio

    x = blur[None]
    psi_g = model.get_layer("global_branch")(x)[0][0].numpy()
    psi_l = model.get_layer("local_branch")(x)[0][0].numpy()
    maps = [np.abs(psi_g).mean(-1), np.abs(psi_l).mean(-1)]
    labels = ["mean |Psi_G|", "mean |Psi_L|"]
    try:
        mask = keras.Model(model.input, model.get_layer("branch_attention_mask").output)(x)[0].numpy()
        maps.append(mask.mean(-1))
        labels.append("mask M (mean)")
    except ValueError:  # DB-Net: no attention
        pass
    h, w = blur.shape[:2]

    def grey(m):
        m = m[:h, :w]
        m = (m - m.min()) / max(1e-8, float(m.max() - m.min()))
        return np.repeat(m[..., None], 3, axis=-1)

    out = np.clip(model(x)[0].numpy(), 0, 1)
    rows = [[blur, out, sharp], [grey(m) for m in maps]]
    sheet = tio.contact_sheet(rows, labels=[["blurry", "output", "sharp"], labels])
    tio.write_image(path, sheet)
    return labels


def run_phases(cfg, phase, from_path=None, log=print):
    """Runs `phase` (1, 2, 3 or "all") of `cfg.net`; returns {phase: results}.

    `cfg.data` None takes each phase's default; `from_path` replaces the
    previous phase's weights of the first phase run.
    """
    from tfdeblur.datasets import spec as data_spec
    from tfdeblur.evaluate import evaluate_pairs
    from tfdeblur.models import get_preset
    from tfdeblur.training.run import _write_json, run_training

    get_preset(cfg.net)  # unknown preset: the registry's error
    phases = phases_of(cfg.net)
    if str(phase) == "all":
        todo = list(PHASES)
    elif str(phase) in ("1", "2", "3"):
        todo = [int(phase)]
    else:
        raise RunError(f"--phase must be 1, 2, 3 or all; got {phase!r}")
    base = cfg.out or os.path.join("runs", cfg.net)
    init = from_path
    if init is not None and not os.path.isfile(init):
        raise RunError(f"--from {init}: no such file")
    if init is None and todo[0] > 1:
        init = _first_weights(base, todo[0])
        if not os.path.isfile(init) and not cfg.resume:
            raise RunError(
                f"--phase {todo[0]}: no phase-{todo[0] - 1} weights at {init}; run --phase {todo[0] - 1} "
                f"with the same --out first, or pass --from FILE.keras"
            )
    results = {}
    for p in todo:
        data = cfg.data or phases[p]["data"]
        spec = data_spec.parse_spec(data)
        check_phase_data(p, spec, log)
        out = os.path.join(base, f"phase{p}")
        # --resume continues the phases already started and starts the others.
        resume = cfg.resume and os.path.exists(os.path.join(out, "config.json"))
        sub = dataclasses.replace(cfg, data=data, out=out, phase=p, init_from=init, resume=resume)
        log(f"--- phase {p} of {cfg.net}: data {spec} -> {sub.out}")
        result = run_training(sub, log=log)
        model_path = os.path.join(sub.out, "model.keras")
        key = phases[p]["loss"]["weights"]
        key = next(iter(key)) if len(key) == 1 else "image"
        if os.path.isfile(model_path) and "stopped_at" not in result:
            from tfdeblur.inference import load_model

            model = load_model(model_path)  # checks the sidecar run_training just wrote
            _, val = data_spec.train_val(spec, sub.crop, seed=sub.seed, min_size=model.min_size)
            if sub.val_images:
                val = val.take(sub.val_images)
            summary, _, _ = evaluate_pairs(_Output(model, key), val)
            phase_result = {"phase": p, "output": key, "data": str(spec), **summary}
            _write_json(os.path.join(sub.out, "phase_results.json"), phase_result)
            log(f"phase {p}: output {key!r} PSNR {summary['psnr']:.2f} dB vs blurry input "
                f"{summary['input_psnr']:.2f} dB ({summary['psnr'] - summary['input_psnr']:+.2f} dB)")
            if p == 3:
                blur, sharp = next(iter(val.take(1)))
                _feature_picture(model, blur.numpy(), sharp.numpy(), os.path.join(sub.out, "features.png"))
                log(f"branch features: {os.path.join(sub.out, 'features.png')}")
            result = dict(result, phase_result=phase_result)
        results[p] = result
        init = model_path
    return results
