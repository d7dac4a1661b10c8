"""Phased training (GLBDN, Li et al., Appl. Sci. 2021, sec. 3.2): `train NET --phase 1|2|3|all`.

A recipe with a "phases" entry (see `models/glbdn.py`) says, per phase,
which training output the loss supervises, which sublayers train (the rest
frozen) or which are frozen, and the default `--data`:

    phase 1: the global branch alone, L_G = ||Psi_G(x) - G_GT||^2, uniform blur (globalblur)
    phase 2: the local branch alone,  L_L = ||Psi_L(x) - X_GT||^2, dynamic scenes (dynamic)
    phase 3: global branch frozen, the rest end to end, L_phi on the final image (dynamic)

`run_phases` (`tfdeblur.training.phased_run`) runs them in turn: phase P
writes its own run folder OUT/phaseP (OUT = --out, default runs/NET) and
starts from OUT/phase{P-1}/model.keras, or from `--from FILE.keras`.
Frozen means `trainable = False` before compiling: the optimizer never sees
those weights (tests check they stay bit-identical). Each phase also scores
the output it trained (the branch image for phases 1-2) against the blurry
input on its validation set: OUT/phaseP/phase_results.json. After phase 3,
OUT/phase3/features.png shows the branch features of one validation image
(mean |Psi_G|, mean |Psi_L|, the attention mask), as the paper's Fig. 1.
"""
import copy
import logging

from tfdeblur.training.errors import RunError

logger = logging.getLogger(__name__)

PHASES = (1, 2, 3)
UNIFORM_KINDS = ("globalblur", "synthetic")  # --data kinds known to be uniform blur


def phases_of(net):
    """The recipe's phases of preset `net` (dict phase -> spec), or a RunError."""
    from tfdeblur.models import get_recipe

    phases = get_recipe(net).get("phases")
    if not phases:
        raise RunError(f"`phase`: {net} has no phased training (its recipe defines no phases)")
    return phases


def phase_recipe(recipe, phase):
    """`recipe` with the loss of `phase`."""
    spec = recipe["phases"][phase]
    out = copy.deepcopy({k: v for k, v in recipe.items() if k != "phases"})
    out["loss"] = copy.deepcopy(spec["loss"])
    out["phase"] = {"phase": phase, **{k: v for k, v in spec.items() if k != "loss"}}
    return out


def prepare_model(model, cfg, log=None):
    """Loads `cfg.init_from` (if any) and sets the trainable parts of `cfg.phase`.
    Call before compiling."""
    log = log or logger.info
    if cfg.init_from:
        from tfdeblur import checksum

        try:
            checksum.verify(cfg.init_from, "`init_from`")
        except ValueError as e:
            raise RunError(str(e)) from e
        try:
            model.load_weights(cfg.init_from)
        except Exception as e:  # Keras raises several types for a mismatch
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            raise RunError(f"`init_from` {cfg.init_from}: its weights do not fit {cfg.net} ({first})") from e
        log(f"phase {cfg.phase}: starting from {cfg.init_from}")
    if cfg.phase is None:
        return
    spec = phases_of(cfg.net)[cfg.phase]

    def layer(name):
        try:
            return model.get_layer(name)
        except ValueError:
            raise RunError(f"`phase` {cfg.phase}: {cfg.net} has no layer {name!r} (phased training needs both branches)") from None

    if "train" in spec:
        keep = [layer(n) for n in spec["train"]]
        for sub in model.layers:
            sub.trainable = False
        for sub in keep:
            sub.trainable = True
    for name in spec.get("freeze", ()):
        layer(name).trainable = False


def check_phase_data(phase, spec, log=None):
    """Warns (does not stop) when phase 1's data is not known to be uniform blur."""
    log = log or logger.info
    if phase == 1 and spec.kind not in UNIFORM_KINDS:
        log(f"warning: phase 1 trains the global branch on uniform (global) blur; `data` {spec} "
            f"is not known to be uniform ({' or '.join(UNIFORM_KINDS)} are)")
        return False
    return True
