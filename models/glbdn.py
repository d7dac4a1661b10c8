"""GLBDN: the Global-Local Blur Disentangling Network.

Li, Yang, Huang, Zhuo, "A Global-Local Blur Disentangling Network for
Dynamic Scene Deblurring", Applied Sciences 11, 2021. Each block below cites
the paper's section or equation.

Structure (sec. 3.1, Fig. 2)::

    x --> global branch --> Psi_G --+                     (+ its own image Psi_G(x))
    x --> local  branch --> Psi_L --+--> branch attention --> Psi_B --> 2 convs --> image
                                          (eq. 1)                     (reconstruction)

- Two branches with the same architecture, a *global* (uniform, camera
  shake) and a *local* (moving objects) blur branch. Each is the
  encoder-decoder of Gao et al. ("Dynamic scene deblurring with parameter
  selective sharing and nested skip connections", CVPR 2019) at one scale:
  the encoder has 3 scales (a 3x3 convolution, stride 1 then 2, 2, with 32,
  64, 128 channels, Gao's widths) each of 6 residual modules (two 3x3
  convolutions, stride 1, ReLU between) with a short skip around every
  module and a long skip across the scale (the scale's input added to the
  output of its 6 modules); the decoder has two transposed convolutions
  (each x2, plus the encoder's features of that scale) and three 3x3
  convolutional layers that reconstruct an image. The output Psi of the
  decoder's *first* convolution is the branch feature (full resolution, 32
  channels); the other two give the branch's own image Psi_G(x) / Psi_L(x),
  which the phase losses of sec. 3.2 supervise.
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
field is finite (about 200 px for the default preset), so a tile whose
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
L_phi = ||phi(x) - X_GT||^2.
"""
import keras

from tfdeblur.layers import (
    CropToMatch,
    PadToMultiple,
    apply_branch_attention,
    apply_conv,
    apply_deconv,
    apply_residual_stack,
)
from tfdeblur.model import DeblurModel
from tfdeblur.serialization import public

GLOBAL_BRANCH = "global_branch"
LOCAL_BRANCH = "local_branch"


def _zero_conv(x, filters, name):
    # Zero init (ours): with the global residual the image starts as the input.
    return keras.layers.Conv2D(
        filters, 3, padding="same", kernel_initializer="zeros", name=name
    )(x)


def _build_branch(widths, blocks_per_scale, global_residual, name):
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
    image = _zero_conv(z, 3, f"{name}_out")  # the third decoder conv
    if global_residual:
        image = keras.layers.Add(name=f"{name}_residual")([image, blur])
    return keras.Model(blur, [psi, image], name=name)


@public
class GLBDN(DeblurModel):
    """Global-Local Blur Disentangling Network (see the module docstring).

    Args:
        widths: channels of the three encoder scales (Gao et al.: 32, 64, 128).
        blocks_per_scale: residual modules per encoder scale (paper: 6).
        dual_branch: both branches (DB-Net, DBAF-Net) or the local one alone (LB-Net).
        attention: fuse by the branch attention of eq. 1 (DBAF-Net) or by
            addition (DB-Net); needs `dual_branch`.
        global_residual: image outputs are residuals over the blurry input.
    """

    def __init__(
        self,
        widths=(32, 64, 128),
        blocks_per_scale=6,
        dual_branch=True,
        attention=True,
        global_residual=True,
        **kwargs,
    ):
        widths = tuple(int(w) for w in widths)
        if len(widths) < 1 or min(widths) < 1:
            raise ValueError(f"widths must be positive channel counts; got {widths}")
        if int(blocks_per_scale) < 0:
            raise ValueError(f"blocks_per_scale must be >= 0; got {blocks_per_scale}")
        if attention and not dual_branch:
            raise ValueError("attention must be False when dual_branch is False (LB-Net has one branch); got True")
        size_multiple = 2 ** (len(widths) - 1)

        image = keras.Input((None, None, 3), name="blur")
        padded = PadToMultiple(size_multiple, name="pad")(image)
        local = _build_branch(widths, blocks_per_scale, global_residual, LOCAL_BRANCH)
        psi_local, local_image = local(padded)
        train_outputs = {
            "local": CropToMatch(name="crop_local", dtype="float32")([local_image, image]),
        }
        if dual_branch:
            glob = _build_branch(widths, blocks_per_scale, global_residual, GLOBAL_BRANCH)
            psi_global, global_image = glob(padded)
            train_outputs["global"] = CropToMatch(name="crop_global", dtype="float32")([global_image, image])
            if attention:
                psi_b = apply_branch_attention(padded, psi_local, psi_global, widths[0])
            else:
                psi_b = keras.layers.Add(name="branch_sum")([psi_local, psi_global])
            z = apply_conv(psi_b, widths[0], name="reconstruction_conv1")
            restored = _zero_conv(z, 3, "reconstruction_out")
            if global_residual:
                restored = keras.layers.Add(name="reconstruction_residual")([restored, padded])
        else:
            restored = local_image
        output = CropToMatch(name="crop", dtype="float32")([restored, image])
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
            }
        )
        return config


# Presets: the paper's Table 1 ablations. `params` is our count, asserted by
# the tests against a closed form (tests/test_glbdn.py); the paper gives none.
PRESETS = {
    "glbdn": dict(
        kwargs=dict(),
        description="GLBDN (DBAF-Net): global + local branches fused by branch attention (eq. 1).",
        params=5_098_665,
        recipe="glbdn",
    ),
    "glbdn_db": dict(
        kwargs=dict(attention=False),
        description="GLBDN ablation DB-Net (Table 1): both branches fused by addition, no attention.",
        params=5_070_089,
        recipe="glbdn",
    ),
    "glbdn_lb": dict(
        kwargs=dict(dual_branch=False, attention=False),
        description="GLBDN ablation LB-Net (Table 1): the local blur branch alone.",
        params=2_529_987,
        recipe="glbdn_lb",
    ),
}


_MSE_ON = lambda output: {"class": "MultiScaleLoss", "weights": {output: 1.0}, "kind": "mse"}  # noqa: E731

# Training recipe (STYLE practice 6): the paper's values, each with its source.
RECIPES = {
    "glbdn": {
        "optimizer": {"class": "Adam"},  # sec. 3.2: Adam with its default parameters
        # sec. 3.2 gives no learning rate in the text we follow; Adam's default.
        "learning_rate": 1e-3,
        # no schedule stated
        # Without --phase: end to end with the content loss of phase 3.
        "loss": _MSE_ON("image"),
        "crop": 256,  # training crops (size not stated; the GoPro convention of MTWDN/SRN)
        "batch_size": 16,  # not stated; as MTWDN's recipe
        "augment": ["flip", "rot90"],  # sec. 3.2: flips and rotations
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
            3: {  # global branch frozen; L_phi = ||phi(x) - X_GT||^2 end to end
                "loss": _MSE_ON("image"),
                "freeze": ["global_branch"],
                "data": "dynamic",
            },
        },
    },
}
# LB-Net has no global branch, hence no phases: it trains end to end (as in
# phase 2, its output is the local branch's image).
RECIPES["glbdn_lb"] = {k: v for k, v in RECIPES["glbdn"].items() if k != "phases"}
