"""Phased training driver: `train NET --phase 1|2|3|all` runs one
`run_training` per phase, then scores the output each phase trained.

What the phases are (the recipe's "phases" entry), how a phase's model is
prepared and its loss chosen: `tfdeblur.training.phases`, which
`run_training` uses; this module sits above both.
"""
import dataclasses
import logging
import os

import keras
import numpy as np

from tfdeblur import io as tio
from tfdeblur.datasets import spec as data_spec
from tfdeblur.evaluate import evaluate_pairs
from tfdeblur.inference import load_model
from tfdeblur.models import get_preset  # also registers every class a phase's model.keras names
from tfdeblur.training.errors import RunError
from tfdeblur.training.phases import PHASES, check_phase_data, phases_of
from tfdeblur.training.run import _write_json, run_training
from tfdeblur.training.state import read_previous_config

logger = logging.getLogger(__name__)


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


def run_phases(cfg, phase, init_from=None, log=None, progress=False):
    """Runs `phase` (1, 2, 3 or "all") of `cfg.net`; returns {phase: results}.

    `cfg.data` None takes each phase's default; `init_from` replaces the
    previous phase's weights of the first phase run. `log`, `progress`: as
    `run_training`'s.
    """
    log = log or logger.info
    get_preset(cfg.net)  # unknown preset: the registry's error
    phases = phases_of(cfg.net)
    if str(phase) == "all":
        todo = list(PHASES)
    elif str(phase) in ("1", "2", "3"):
        todo = [int(phase)]
    else:
        raise RunError(f"`phase` must be 1, 2, 3 or all; got {phase!r}")
    base = cfg.out or os.path.join("runs", cfg.net)
    init = init_from
    if init is not None and not os.path.isfile(init):
        raise RunError(f"`init_from` {init}: no such file")
    if init is None and todo[0] > 1:
        init = _first_weights(base, todo[0])
        if not os.path.isfile(init) and not cfg.resume:
            raise RunError(
                f"`phase` {todo[0]}: no phase-{todo[0] - 1} weights at {init}; run `phase` {todo[0] - 1} "
                f"with the same `out` first, or pass `init_from` FILE.keras"
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
        result = run_training(sub, log=log, progress=progress)
        model_path = os.path.join(sub.out, "model.keras")
        key = phases[p]["loss"]["weights"]
        key = next(iter(key)) if len(key) == 1 else "image"
        if os.path.isfile(model_path) and "stopped_at" not in result:
            model = load_model(model_path)  # checks the sidecar run_training just wrote
            crop = read_previous_config(sub.out)["crop"]  # as the run resolved it
            _, val = data_spec.train_val(spec, crop, seed=sub.seed, min_size=model.min_size)
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
