"""GLBDN: the Global-Local Blur Disentangling Network.

Li, Yang, Huang, Zhuo, "A Global-Local Blur Disentangling Network for
Dynamic Scene Deblurring", Applied Sciences 11, 2021. Each block below cites
the paper's section or equation.

Structure (sec. 3.1, Fig. 2)::

    x --> global branch --> Psi_G --+                     (+ its own image Psi_G(x))
    x --> local  branch --> Psi_L --+--> branch attention --> Psi_B --> 2 convs --> image
                                          (eq. 1)                     (reconstruction)

- Two branches with the same architecture, a *global* (uniform, camera
  shake) and a *local* (moving objects) blur branch. Sec. 3.1: each branch
  "refers to Reference [37]", GFN's deblurring module (Zhang et al., "Gated
  Fusion Network for Joint Image Deblurring and Super-Resolution", BMVC
  2018; its public code, jacquelinelala/GFN, `_DeblurringMoudle`, read for
  the details below). `reference="gfn"`, the paper's:
    encoder: 7x7 conv (64, LeakyReLU 0.2), then 3x3 stride-2 convs (128,
      256, ReLU); at each of the 3 scales 6 residual blocks (3x3 conv, ReLU,
      3x3 conv, + input) with the scale's input added to their output;
    decoder: two 4x4 stride-2 transposed convs (128, 64, ReLU), then three
      convolutions: a 7x7 (64, linear) whose output is the branch feature
      Psi ("the output of the first convolutional layer of the decoder"),
      then, after the single long skip (Psi + the first encoder conv's
      output), a 3x3 (64, ReLU) and a 3x3 (3) giving the branch's own image
      Psi_G(x) / Psi_L(x), which the phase losses of sec. 3.2 supervise.
  Widths 64/128/256; 10,568,579 parameters per branch (GFN's module, with
  biases). `reference="gao"` (preset `glbdn_gao`) is this library's earlier
  reading, Gao et al.'s encoder-decoder ("Dynamic scene deblurring with
  parameter selective sharing and nested skip connections", CVPR 2019, the
  paper's [38]) at one scale: 3x3 convs at 32/64/128, 3x3 transposed convs
  with a skip at every scale, three 3x3 decoder convs (Psi = the first);
  2.5 M parameters per branch, a quarter of GFN's, which makes it the one to
  try on a CPU. It is not the paper's network.
- Branch attention (eq. 1, `tfdeblur.layers.branch_attention`):
  Psi_B = Psi_L (.) M(x, Psi_L, Psi_G) + Psi_G.
- Reconstruction: two 3x3 convolutions from Psi_B to the restored image.
- Ablations (Table 1) as presets: `glbdn_lb` (LB-Net, the local branch
  alone; its own image is the output), `glbdn_db` (DB-Net, Psi_B = Psi_L +
  Psi_G, no attention) and `glbdn` (DBAF-Net, the full network).
- Ours, where the paper is silent: `global_residual` (default on) -- every
  image output (both branches' and the final one) is a residual added to
  the blurry input, with its last convolution zero-initialized, so the
  untrained network is exactly the identity (as in `models/mtwdn.py`; BasicSR
  and NAFNet predict residuals too). Convolutions use ReLU, Glorot init.

Tiled inference (large images): every operation is local -- 3x3
convolutions, two stride-2 convolutions, two x2 transposed convolutions,
additions and the elementwise attention -- with no global pooling,
normalization over the image or attention across positions. The receptive
field is finite (a few hundred pixels), so a tile whose
offset is a multiple of 4 (the stride-2 grid) gives the whole-image result
everywhere farther than that from its border, and blended overlapping tiles
(`tfdeblur.inference`) differ from it only there; the paper's own advice
for 4K images (sec. 4) is to process sub-images.
Inputs are padded to a multiple of 4 (two stride-2 levels) and cropped back.

Training outputs (`model.training_outputs(x)`): "image" (the final output),
"local" (Psi_L(x), the local branch's image) and, with both branches,
"global" (Psi_G(x)), all full resolution, float32. Phased training (sec.
3.2) is in `tfdeblur/training/phases.py`: phase 1 trains the global branch
alone on uniform blur with L_G = ||Psi_G(x) - G_GT||^2; phase 2 the local
branch on dynamic scenes with L_L = ||Psi_L(x) - X_GT||^2; phase 3 freezes
the global branch and trains the rest end to end with
the dual-branch loss + content loss (the paper's words; recipe `glbdn`),
or L_phi = ||phi(x) - X_GT||^2 alone (recipe and preset `glbdn_content_only`).
"""
import copy

import keras

from tfdeblur.layers import (
    LeakyReLU,
    PadToMultiple,
    apply_branch_attention,
    apply_conv,
    apply_deconv,
    apply_float32_crop,
    apply_residual_image,
    apply_residual_stack,
)
from tfdeblur.deblur_model import DeblurModel
from tfdeblur.serialization import public

GLOBAL_BRANCH = "global_branch"
LOCAL_BRANCH = "local_branch"


REFERENCES = ("gfn", "gao")


def _build_gfn_branch(widths, blocks_per_scale, global_residual, name):
    """One branch, GFN's deblurring module (see the module docstring), as a nested model: x -> [Psi, image]."""
    blur = keras.Input((None, None, 3), name=f"{name}_blur")
    x = keras.layers.Conv2D(widths[0], 7, padding="same", kernel_initializer="glorot_uniform", name=f"{name}_enc1_conv")(blur)
    x = LeakyReLU(0.2, name=f"{name}_enc1_lrelu")(x)
    first = x
    for level, filters in enumerate(widths):
        if level:
            x = apply_conv(x, filters, strides=2, name=f"{name}_enc{level + 1}_conv")
        y = apply_residual_stack(x, filters, blocks_per_scale, name=f"{name}_enc{level + 1}_res")
        x = keras.layers.Add(name=f"{name}_enc{level + 1}_scale_skip")([x, y])
    for level in reversed(range(len(widths) - 1)):
        x = apply_deconv(x, widths[level], kernel_size=4, name=f"{name}_dec{level + 1}_deconv")
    psi = apply_conv(x, widths[0], kernel_size=7, activation=None, name=f"{name}_dec_conv1")  # the branch feature Psi
    z = keras.layers.Add(name=f"{name}_long_skip")([psi, first])  # GFN's one encoder-decoder skip
    z = apply_conv(z, widths[0], name=f"{name}_dec_conv2")
    # The third decoder conv; zero init (ours): with the global residual the image starts as the input.
    image = apply_residual_image(z, blur, global_residual=global_residual, name=f"{name}_out", residual_name=f"{name}_residual")
    return keras.Model(blur, [psi, image], name=name)


def _build_gao_branch(widths, blocks_per_scale, global_residual, name):
    """One branch (Gao et al.-style encoder-decoder) as a nested model: x -> [Psi, image]."""
    blur = keras.Input((None, None, 3), name=f"{name}_blur")
    x = blur
    skips = []
    for level, filters in enumerate(widths):
        x = apply_conv(x, filters, strides=1 if level == 0 else 2, name=f"{name}_enc{level + 1}_conv")
        # Short skips: inside each residual module; long skip: across the scale.
        y = apply_residual_stack(x, filters, blocks_per_scale, name=f"{name}_enc{level + 1}_res")
        x = keras.layers.Add(name=f"{name}_enc{level + 1}_long_skip")([x, y])
        skips.append(x)
    y = x
    for level in reversed(range(len(widths) - 1)):
        y = apply_deconv(y, widths[level], name=f"{name}_dec{level + 1}_deconv")
        y = keras.layers.Add(name=f"{name}_dec{level + 1}_skip")([y, skips[level]])
    psi = apply_conv(y, widths[0], name=f"{name}_dec_conv1")  # the branch feature Psi
    z = apply_conv(psi, widths[0], name=f"{name}_dec_conv2")
    image = apply_residual_image(z, blur, global_residual=global_residual, name=f"{name}_out",
                                 residual_name=f"{name}_residual")  # the third decoder conv
    return keras.Model(blur, [psi, image], name=name)


@public
class GLBDN(DeblurModel):
    """Global-Local Blur Disentangling Network (see the module docstring).

    Args:
        widths: channels of the three encoder scales (GFN: 64, 128, 256; Gao et al.: 32, 64, 128).
        blocks_per_scale: residual modules per encoder scale (paper: 6).
        dual_branch: both branches (DB-Net, DBAF-Net) or the local one alone (LB-Net).
        attention: fuse by the branch attention of eq. 1 (DBAF-Net) or by
            addition (DB-Net); needs `dual_branch`.
        global_residual: image outputs are residuals over the blurry input.
        reference: the branches follow "gfn" (the paper's reference [37]) or "gao" (our earlier reading).
    """

    def __init__(
        self,
        widths=(64, 128, 256),
        blocks_per_scale=6,
        dual_branch=True,
        attention=True,
        global_residual=True,
        reference="gfn",
        **kwargs,
    ):
        widths = tuple(int(w) for w in widths)
        if len(widths) < 1 or min(widths) < 1:
            raise ValueError(f"widths must be positive channel counts; got {widths}")
        if int(blocks_per_scale) < 0:
            raise ValueError(f"blocks_per_scale must be >= 0; got {blocks_per_scale}")
        if reference not in REFERENCES:
            raise ValueError(f"reference must be one of {REFERENCES}; got {reference!r}")
        _build_branch = _build_gfn_branch if reference == "gfn" else _build_gao_branch
        if attention and not dual_branch:
            raise ValueError("attention must be False when dual_branch is False (LB-Net has one branch); got True")
        size_multiple = 2 ** (len(widths) - 1)

        image = keras.Input((None, None, 3), name="blur")
        padded = PadToMultiple(size_multiple, name="pad")(image)
        local = _build_branch(widths, blocks_per_scale, global_residual, LOCAL_BRANCH)
        psi_local, local_image = local(padded)
        train_outputs = {
            "local": apply_float32_crop(local_image, image, "crop_local"),
        }
        if dual_branch:
            glob = _build_branch(widths, blocks_per_scale, global_residual, GLOBAL_BRANCH)
            psi_global, global_image = glob(padded)
            train_outputs["global"] = apply_float32_crop(global_image, image, "crop_global")
            if attention:
                psi_b = apply_branch_attention(padded, psi_local, psi_global, widths[0])
            else:
                psi_b = keras.layers.Add(name="branch_sum")([psi_local, psi_global])
            z = apply_conv(psi_b, widths[0], name="reconstruction_conv1")
            restored = apply_residual_image(z, padded, global_residual=global_residual, name="reconstruction_out",
                                            residual_name="reconstruction_residual")
        else:
            restored = local_image
        output = apply_float32_crop(restored, image)
        train_outputs["image"] = output

        super().__init__(
            inputs=image, outputs=output, train_outputs=train_outputs,
            size_multiple=size_multiple, **kwargs,
        )
        self.widths = widths
        self.blocks_per_scale = int(blocks_per_scale)
        self.dual_branch = bool(dual_branch)
        self.attention = bool(attention)
        self.global_residual = bool(global_residual)
        self.reference = reference

    @classmethod
    def from_config(cls, config):
        # Files saved before `reference` existed hold Gao-style branches
        # (widths 32/64/128, no "reference" in their config): they load as such.
        config = dict(config)
        config.setdefault("reference", "gao")
        return super().from_config(config)

    def branch(self, which):
        """The nested branch model, "global" or "local" (for freezing and features)."""
        names = {"global": GLOBAL_BRANCH, "local": LOCAL_BRANCH}
        if which not in names:
            raise ValueError(f"branch must be 'global' or 'local'; got {which!r}")
        if which == "global" and not self.dual_branch:
            raise ValueError(f"{self.name} has no global branch (dual_branch=False)")
        return self.get_layer(names[which])

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "widths": list(self.widths),
                "blocks_per_scale": self.blocks_per_scale,
                "dual_branch": self.dual_branch,
                "attention": self.attention,
                "global_residual": self.global_residual,
                "reference": self.reference,
            }
        )
        return config


# Presets: the paper's network and its Table 1 ablations, GFN branches;
# `glbdn_gao` the earlier Gao-style reading. `params` is our count, asserted
# by the tests against a closed form (tests/test_glbdn.py); the paper gives none.
PRESETS = {
    "glbdn": dict(
        kwargs=dict(),
        description="GLBDN (DBAF-Net): two GFN deblurring-module branches (sec. 3.1, ref. [37]) fused by branch attention (eq. 1).",
        params=21_288_265,
        recipe="glbdn",
    ),
    "glbdn_db": dict(
        kwargs=dict(attention=False),
        description="GLBDN ablation DB-Net (Table 1): both GFN branches fused by addition, no attention.",
        params=21_175_817,
        recipe="glbdn",
    ),
    "glbdn_lb": dict(
        kwargs=dict(dual_branch=False, attention=False),
        description="GLBDN ablation LB-Net (Table 1): the local blur branch (GFN's module) alone.",
        params=10_568_579,
        recipe="glbdn_lb",
    ),
    "glbdn_content_only": dict(
        kwargs=dict(),
        description="GLBDN trained with phase 3's content loss alone (the paper's phase 3 adds the dual-branch loss).",
        params=21_288_265,
        recipe="glbdn_content_only",
    ),
    "glbdn_gao": dict(
        kwargs=dict(widths=(32, 64, 128), reference="gao"),
        description="GLBDN with Gao et al.-style branches (32/64/128, a skip per scale): our earlier reading, "
                    "not the paper's network; a quarter of its size, for CPUs.",
        params=5_098_665,
        recipe="glbdn_gao",
    ),
}


_MSE_ON = lambda *outputs: {"class": "MultiScaleLoss", "weights": {o: 1.0 for o in outputs}, "kind": "mse"}  # noqa: E731

# Sec. 3.2, phase 3: "the dual-branch loss + content loss": L_G + L_L on the
# branch images plus L_phi on the final image, each an MSE against the sharp
# image with weight 1 (the paper gives no weights). The global branch is
# frozen in phase 3, so its term is logged but moves nothing.
_PHASE3_LOSS = _MSE_ON("image", "global", "local")

# Training recipe (STYLE practice 6): the paper's values, each with its source.
RECIPES = {
    "glbdn": {
        "optimizer": {"class": "Adam"},  # sec. 3.2: Adam with its default parameters
        # sec. 3.2 gives no learning rate in the text we follow; Adam's default.
        "learning_rate": 1e-3,
        # no schedule stated
        # Without --phase: end to end with phase 3's loss.
        "loss": _PHASE3_LOSS,
        "crop": 256,  # training crops (size not stated; the GoPro convention of MTWDN/SRN)
        "batch_size": 16,  # not stated; as MTWDN's recipe
        "augment": ["flip", "rot90"],  # sec. 3.2: flips and rotations
        # Ours, for `train glbdn` without --paper (1000 steps of 128 px,
        # batch 4): the 21 M-parameter network lost 0.59 dB in 407 steps at
        # the quick run's usual 3e-4 and gains at GFN's 1e-4
        # (docs/networks/glbdn.md, "Measured").
        "quick": {"learning_rate": 1e-4},
        # Sec. 3.2, phased training (`train glbdn --phase 1|2|3|all`):
        # which part trains, on which loss and which default data.
        "phases": {
            1: {  # L_G = ||Psi_G(x) - G_GT||^2 on the global-blur dataset (BSD68 x 56 kernels)
                "loss": _MSE_ON("global"),
                "train": ["global_branch"],
                "data": "globalblur",
            },
            2: {  # L_L = ||Psi_L(x) - X_GT||^2 on dynamic scenes (GoPro in the paper)
                "loss": _MSE_ON("local"),
                "train": ["local_branch"],
                "data": "dynamic",
            },
            3: {  # global branch frozen; dual-branch loss + content loss L_phi = ||phi(x) - X_GT||^2
                "loss": _PHASE3_LOSS,
                "freeze": ["global_branch"],
                "data": "dynamic",
            },
        },
    },
}
# The option: phase 3 (and the end-to-end run) on the content loss alone.
RECIPES["glbdn_content_only"] = copy.deepcopy(RECIPES["glbdn"])
RECIPES["glbdn_content_only"]["loss"] = _MSE_ON("image")
RECIPES["glbdn_content_only"]["phases"][3]["loss"] = _MSE_ON("image")
# LB-Net has no global branch, hence no phases: it trains end to end (as in
# phase 2, its output is the local branch's image).
RECIPES["glbdn_lb"] = {k: v for k, v in RECIPES["glbdn"].items() if k != "phases"}
RECIPES["glbdn_lb"]["loss"] = _MSE_ON("image")
# The Gao-style branches (5.1 M) trained and gained at the quick run's 3e-4
# (docs/networks/glbdn.md, "Earlier measurements"): the paper's recipe
# without the 21 M network's quick learning rate.
RECIPES["glbdn_gao"] = {k: v for k, v in copy.deepcopy(RECIPES["glbdn"]).items() if k != "quick"}
