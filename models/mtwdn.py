"""MTWDN: Multi-scale Two-Way Deblurring Network.

Cheng et al., "Multi-scale Two-Way Deblurring Network for Non-uniform Single
Image Deblurring". Each block below cites the paper's section or equation.

Structure (one scale, sec. 3.1 / Fig. 2)::

    B^i, up(I^{i+1}) --concat--> encoder --+--> "up" decoder (with skips)  --> I^i_up
                                           +--> "down" decoder (no skips) --> I^i_down
    I^i = I^i_up + I^i_down

- Three scales, 1/4, 1/2, 1, coarse to fine (eq. 1: I^i, I^i_up, I^i_down =
  Net(B^i, I^{i+1}; theta)). At the coarsest scale there is no previous
  output: the blurry image stands in for it, as in SRN-DeblurNet.
- Encoder: per level a 3x3 convolution (stride 1, then 2, 2) and three
  residual blocks; decoder: per level three residual blocks and a 3x3
  transposed convolution (x2) between levels; 3x3 kernels, Xavier/Glorot
  init (sec. 3). Widths 32/64/128 per level follow SRN-DeblurNet (Tao et al.
  2018), which MTWDN builds on; MTWDN does not list widths itself.
- Two-way decoder (sec. 3.2): the "up" branch receives the encoder's skip
  connections and restores the image content; the "down" branch has no skip
  connection and restores the remaining edge/structure information "from a
  blank image". `two_way=False` is the paper's "w/o TWNNet" ablation.
- `global_residual` (ours, default on): the up branch adds its output to the
  blurry input of its scale. The paper does not say whether the up branch
  predicts the image or a residual; with the input itself as the outermost
  "skip connection" the up branch still restores image content (Fig. 3 shows
  an image-like up-net output) and training converges far faster, which
  matters for short budgets (BasicSR/NAFNet predict residuals too).
- `share_weights` (default True): the paper writes one parameter set theta
  for every scale in eq. (1) and does not say otherwise; SRN-DeblurNet shares
  weights across scales, Gao et al. (2019) share selectively. Sharing also
  keeps the model 3x smaller; `share_weights=False` gives one network per
  scale.

Calling the model returns the full-resolution restored image. Training
outputs (`model.training_outputs(x)`): "image" (full resolution), "scale_2"
(1/2), "scale_3" (1/4), and "up"/"down", the two branches at full resolution
(sum == "image"), which reproduce the paper's Fig. 3.
"""
import keras

from tfdeblur.layers import (
    PadToMultiple,
    apply_conv,
    apply_deconv,
    apply_downsample_image,
    apply_float32_crop,
    apply_residual_image,
    apply_residual_stack,
    apply_upsample_image,
)
from tfdeblur.deblur_model import DeblurModel
from tfdeblur.serialization import public


def _build_scale_network(widths, blocks_per_level, two_way, global_residual, name):
    """The per-scale encoder-decoder as a nested functional model (shared or not)."""
    blur = keras.Input((None, None, 3), name=f"{name}_blur")
    prev = keras.Input((None, None, 3), name=f"{name}_previous")
    x = keras.layers.Concatenate(name=f"{name}_concat")([blur, prev])

    skips = []
    for level, filters in enumerate(widths):
        x = apply_conv(x, filters, strides=1 if level == 0 else 2, name=f"{name}_enc{level + 1}_conv")
        x = apply_residual_stack(x, filters, blocks_per_level, name=f"{name}_enc{level + 1}_res")
        skips.append(x)
    latent = x

    def decoder(branch, use_skips):
        y = latent
        for level in reversed(range(len(widths))):
            if level < len(widths) - 1:
                y = apply_deconv(y, widths[level], name=f"{name}_{branch}{level + 1}_deconv")
                if use_skips:
                    y = keras.layers.Add(name=f"{name}_{branch}{level + 1}_skip")([y, skips[level]])
            y = apply_residual_stack(y, widths[level], blocks_per_level, name=f"{name}_{branch}{level + 1}_res")
        return y

    # Zero-initialized output convolutions (ours; the paper says only
    # "Xavier"): the untrained network is then exactly the identity
    # (global residual) plus a blank down branch, as the paper describes
    # it starting "from a blank image". With Glorot here, 36 stacked
    # residual blocks start at outputs ~10x the image range (loss ~400)
    # and short runs never recover.
    up = apply_residual_image(decoder("up", use_skips=True), blur, global_residual=global_residual,
                              name=f"{name}_up_out", residual_name=f"{name}_up_residual")
    outputs = [up]
    if two_way:
        outputs.append(apply_residual_image(decoder("down", use_skips=False), None, global_residual=False,
                                            name=f"{name}_down_out"))
    return keras.Model([blur, prev], outputs, name=name)


@public
class MTWDN(DeblurModel):
    """Multi-scale Two-Way Deblurring Network (see the module docstring).

    Args:
        widths: channels of the three encoder/decoder levels.
        blocks_per_level: residual blocks per level (paper: 3).
        num_scales: image scales (paper: 3, i.e. 1/4, 1/2, 1).
        two_way: both decoder branches (paper) or the up branch only.
        share_weights: one network for every scale (default) or one per scale.
        global_residual: the up branch predicts a residual over its blurry input.
    """

    def __init__(
        self,
        widths=(32, 64, 128),
        blocks_per_level=3,
        num_scales=3,
        two_way=True,
        share_weights=True,
        global_residual=True,
        **kwargs,
    ):
        widths = tuple(int(w) for w in widths)
        if len(widths) < 1 or min(widths) < 1:
            raise ValueError(f"widths must be positive channel counts; got {widths}")
        if int(num_scales) < 1:
            raise ValueError(f"num_scales must be >= 1; got {num_scales}")
        if int(blocks_per_level) < 0:
            raise ValueError(f"blocks_per_level must be >= 0; got {blocks_per_level}")
        num_scales = int(num_scales)
        size_multiple = 2 ** (num_scales - 1 + len(widths) - 1)

        image = keras.Input((None, None, 3), name="blur")
        padded = PadToMultiple(size_multiple, name="pad")(image)

        pyramid = [padded]  # pyramid[s] is at 1 / 2**s
        for s in range(1, num_scales):
            pyramid.append(apply_downsample_image(pyramid[-1], name=f"blur_down{2 ** s}"))

        shared = None
        if share_weights:
            shared = _build_scale_network(widths, blocks_per_level, two_way, global_residual, "net")

        train_outputs = {}
        previous = None
        for s in reversed(range(num_scales)):
            net = shared or _build_scale_network(
                widths, blocks_per_level, two_way, global_residual, f"net_scale{s + 1}"
            )
            prev = pyramid[s] if previous is None else apply_upsample_image(
                previous, name=f"scale{s + 1}_prev_up"
            )
            branches = net([pyramid[s], prev])
            branches = branches if isinstance(branches, (list, tuple)) else [branches]
            if two_way:
                restored = keras.layers.Add(name=f"scale{s + 1}_two_way_sum")(branches)
            else:
                restored = branches[0]
            previous = restored
            if s > 0:
                train_outputs[f"scale_{s + 1}"] = keras.layers.Activation(
                    "linear", dtype="float32", name=f"scale{s + 1}_float32"
                )(restored)

        output = apply_float32_crop(previous, image)
        train_outputs["image"] = output
        train_outputs["up"] = apply_float32_crop(branches[0], image, "crop_up")
        if two_way:
            train_outputs["down"] = apply_float32_crop(branches[1], image, "crop_down")

        super().__init__(
            inputs=image, outputs=output, train_outputs=train_outputs,
            size_multiple=size_multiple, **kwargs,
        )
        self.widths = widths
        self.blocks_per_level = int(blocks_per_level)
        self.num_scales = num_scales
        self.two_way = bool(two_way)
        self.share_weights = bool(share_weights)
        self.global_residual = bool(global_residual)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "widths": list(self.widths),
                "blocks_per_level": self.blocks_per_level,
                "num_scales": self.num_scales,
                "two_way": self.two_way,
                "share_weights": self.share_weights,
                "global_residual": self.global_residual,
            }
        )
        return config


# Presets: data, not classes. `params` is our count, asserted by the tests.
PRESETS = {
    "mtwdn": dict(
        kwargs=dict(),
        description="MTWDN as in the paper: 3 scales, shared weights, two-way decoder.",
        params=3_768_038,  # the paper gives no count; ours, checked by a closed form in tests
        recipe="mtwdn",
    ),
    "mtwdn_oneway": dict(
        kwargs=dict(two_way=False),
        description="Paper ablation 'w/o TWNNet': the up branch only (single decoder).",
        params=2_512_355,
        recipe="mtwdn",
    ),
}


# Training recipe (STYLE practice 6): the paper's values, each with its source.
RECIPES = {
    "mtwdn": {
        "optimizer": {
            "class": "Adam",
            "beta_1": 0.9,  # sec. 4
            "beta_2": 0.999,  # sec. 4
            "epsilon": 1e-8,  # sec. 4
        },
        "learning_rate": 1e-4,  # sec. 4: initial learning rate
        "schedule": {
            # sec. 4: "exponentially decayed ... using power 0.3" (to 0): SRN's
            # wording, whose code decays as (1 - step/total)^0.3, a polynomial
            # decay; we follow the code: (1 - t/T)^0.3 over the run.
            "class": "PolynomialDecay",
            "end_learning_rate": 0.0,  # sec. 4: to 0
            "power": 0.3,  # sec. 4
        },
        "loss": {
            "class": "MultiScaleLoss",
            # eq. (2): alpha = (1, 1, 5) from coarse (1/4) to fine (1/1)
            "weights": {"scale_3": 1.0, "scale_2": 1.0, "image": 5.0},
            "kind": "mse",  # eq. (2): squared L2 norm over T_i pixels
        },
        "crop": 256,  # sec. 4: random 256x256 crops
        "batch_size": 16,  # not stated by MTWDN; SRN-DeblurNet's batch size
        # MTWDN's paper names no augmentation; flips and rot90 are ours (the
        # common GoPro practice since Nah et al. 2017)
        "augment": ["flip", "rot90"],
        # The paper trains 4000 epochs. Not encoded as "epochs" yet: the
        # recipe's values stay fixed while `mtwdn` weights are being trained
        # (a `--paper` run without --steps would change its length).
    },
}

# The released model's recipe (`train mtwdn --recipe mtwdn_photos`), ours, not
# the paper's: chosen for training on 2-core CPUs in legs of a few hours that
# continue with `--from` (docs/models.md logs each leg).
RECIPES["mtwdn_photos"] = {
    "optimizer": {"class": "Adam", "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-8},
    # 3e-4: at 1000 steps MTWDN gained +0.95 dB at 3e-4 vs +0.51 dB at the
    # paper's 1e-4 (docs/networks/mtwdn.md, "Measured"); with batch 4 a higher rate was not tried.
    "learning_rate": 3e-4,
    # Warm-up then cosine annealing over each leg (warm restarts: a leg
    # continues from the previous leg's weights with fresh Adam moments).
    "schedule": {"class": "WarmupCosine", "warmup_steps": 100, "final_fraction": 0.05},
    "loss": {
        "class": "MultiScaleLoss",
        "weights": {"scale_3": 1.0, "scale_2": 1.0, "image": 5.0},  # the paper's eq. (2) weights
        # Charbonnier (L1-like): PSNR-oriented restoration nets (MPRNet,
        # MIMO-UNet's L1) train faster and sharper than with MSE, which
        # over-weights the few large errors of a blurry start.
        "kind": "charbonnier",
    },
    "crop": 128,  # 128 px: ~5-8 s a step on a 2-core AVX2 CPU at batch 4 (fp32)
    "batch_size": 4,
    "augment": ["flip", "rot90"],
    "data": "photos:../shared/data/sharp",  # datasets/photos.py, default mix
}

