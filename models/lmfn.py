"""LMFN: lightweight multi-information fusion network.

Zhang, Liu et al., "Image Deblurring Based on Lightweight Multi-Information
Fusion Network" (ICIP 2021). Each block cites the paper's figure or equation::

    blur -> conv3x3 (64)                                        shallow feature
         -> MSHF: 4 x [strided conv -> residual block]
            (1/2 .. 1/16), fused bottom-up: f_k + up(f_{k+1})  -> f_M_out (1/2)
         -> MFFD: N x RFDB -> ALFM(all RFDB outputs) || ACFM(last)  Figs. 2-3
            -> conv1x1 -> + f_M_out
         -> pixel shuffle (x2) -> conv3x3 -> + blur               reconstruction

- Down-blocks: a 3x3 stride-2 convolution with leaky ReLU 0.1 (EDVR's
  pyramid, Wang et al. 2019; EDVR adds a second 3x3 convolution per level,
  the paper names only the strided one) and a residual block
  (conv-ReLU-conv + identity), 64 channels throughout. The small-scale
  feature is up-sampled by pixel shuffle (conv to 4x64, depth-to-space: the
  paper's up-sampling operator elsewhere) and added to the next finer one;
  the fusion ends at 1/2, the finest down-sampled scale ("fine-grained
  small-scale feature f_M_out"), so the MFFD runs at 1/2 and the
  reconstruction up-samples once more the same way.
- RFDB width: a 64-channel RFDB (RFDN's) has 155 k parameters, five times
  the paper's step of ~0.03 M per RFDB (Table 4: 1.15 .. 1.31 M for 1..6);
  a 32-channel RFDB has 39 k, which matches, so the MFFD works at 32
  channels (a 1x1 convolution from 64 in, and out after the fusion).
- ALFM takes the N RFDB outputs, ACFM the last; their outputs are
  concatenated ((N + 1) * 32 channels) and fused by a 1x1 convolution back
  to 64, then added to f_M_out (RFDN's fusion + long skip). Both start as
  the identity (theta = alpha = 0).
- Global residual and zero-initialized output conv as in every tfdeblur
  network (the untrained network is the identity).
- Parameter counts (PRESETS) against the paper (Table 4, 1..6 RFDB):
  1,082,755 / 1,123,795 / 1,164,835 / 1,205,875 / 1,246,915 / 1,287,955
  vs 1.15 / 1.18 / 1.22 / 1.25 / 1.28 / 1.31 M: -6 % to -2 %; 41,040 per
  RFDB (32-channel RFDB + its share of the 1x1 fusion) vs the paper's ~0.03 M.
"""
import keras

from tfdeblur.layers import (
    ACFM,
    ALFM,
    LeakyReLU,
    PadToMultiple,
    apply_output_head,
    apply_pixel_shuffle_upsample,
    apply_residual_block,
    apply_residual_feature_distillation_block,
)
from tfdeblur.deblur_model import DeblurModel
from tfdeblur.serialization import public

BLOCKS = ("rfdb", "resblock")


def _apply_down_block(x, filters, name, blocks=1):
    """Down-block: strided conv3x3 -> lrelu (EDVR's pyramid) -> residual block(s)."""
    x = keras.layers.Conv2D(filters, 3, strides=2, padding="same", name=f"{name}_conv_s2")(x)
    x = LeakyReLU(0.1, name=f"{name}_conv_s2_lrelu")(x)
    x = apply_residual_block(x, filters, name=f"{name}_res")
    for j in range(2, blocks + 1):  # the first keeps its name: saved `lmfn` weights load
        x = apply_residual_block(x, filters, name=f"{name}_res{j}")
    return x


@public
class LMFN(DeblurModel):
    """Lightweight multi-information fusion network (see the module docstring).

    Args:
        channels: width of the shallow feature and the MSHF (paper: 64).
        mffd_channels: width of the RFDBs (32: see the module docstring).
        num_rfdb: RFDBs in the MFFD (paper: 4; Table 4: 1..6).
        levels: MSHF down-blocks (paper: 4; 1 is the "w/o MSHF" ablation:
            one down-block, no multi-scale fusion).
        down_blocks: residual blocks after each down-block's strided conv
            (paper: 1; Table 3's "w/o MSHF" has two after its one).
        block: "rfdb" (paper) or "resblock" ("w/o distillation").
        alfm, acfm: use the fusion modules (Table 3 ablations switch them off).
    """

    def __init__(
        self,
        channels=64,
        mffd_channels=32,
        num_rfdb=4,
        levels=4,
        down_blocks=1,
        block="rfdb",
        alfm=True,
        acfm=True,
        **kwargs,
    ):
        channels, mffd_channels = int(channels), int(mffd_channels)
        for arg, value in (("channels", channels), ("mffd_channels", mffd_channels)):
            if value < 1:
                raise ValueError(f"{arg} must be a positive channel count; got {value}")
        if int(num_rfdb) < 1:
            raise ValueError(f"num_rfdb must be >= 1; got {num_rfdb}")
        if int(levels) < 1:
            raise ValueError(f"levels must be >= 1; got {levels}")
        if int(down_blocks) < 1:
            raise ValueError(f"down_blocks must be >= 1; got {down_blocks}")
        if block not in BLOCKS:
            raise ValueError(f"block must be one of {BLOCKS}; got {block!r}")
        num_rfdb, levels = int(num_rfdb), int(levels)
        size_multiple = 2**levels

        image = keras.Input((None, None, 3), name="blur")
        padded = PadToMultiple(size_multiple, name="pad")(image)
        x = keras.layers.Conv2D(channels, 3, padding="same", name="shallow")(padded)

        # MSHF
        scales = []
        for k in range(levels):
            x = _apply_down_block(x, channels, name=f"mshf_down{k + 1}", blocks=int(down_blocks))
            scales.append(x)
        fused = scales[-1]
        for k in reversed(range(levels - 1)):
            up = apply_pixel_shuffle_upsample(fused, channels, name=f"mshf_up{k + 2}")
            fused = keras.layers.Add(name=f"mshf_fuse{k + 1}")([scales[k], up])
        f_m_out = fused

        # MFFD
        y = keras.layers.Conv2D(mffd_channels, 1, name="mffd_in")(f_m_out)
        outs = []
        for i in range(num_rfdb):
            if block == "rfdb":
                y = apply_residual_feature_distillation_block(y, mffd_channels, name=f"rfdb{i + 1}")
            else:
                y = apply_residual_block(y, mffd_channels, name=f"resblock{i + 1}")
            outs.append(y)
        if alfm:
            layer_feature = ALFM(name="alfm")(outs)
        elif len(outs) > 1:  # RFDN's plain aggregation
            layer_feature = keras.layers.Concatenate(name="layers_concat")(outs)
        else:
            layer_feature = outs[0]
        channel_feature = ACFM(name="acfm")(outs[-1]) if acfm else outs[-1]
        y = keras.layers.Concatenate(name="mffd_concat")([layer_feature, channel_feature])
        y = keras.layers.Conv2D(channels, 1, name="mffd_fuse")(y)
        y = keras.layers.Add(name="mffd_skip")([y, f_m_out])

        # reconstruction
        y = apply_pixel_shuffle_upsample(y, channels, name="recon_up")
        output = apply_output_head(y, padded, image)

        super().__init__(inputs=image, outputs=output, size_multiple=size_multiple, **kwargs)
        self.channels = channels
        self.mffd_channels = mffd_channels
        self.num_rfdb = num_rfdb
        self.levels = levels
        self.down_blocks = int(down_blocks)
        self.block = block
        self.alfm = bool(alfm)
        self.acfm = bool(acfm)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "channels": self.channels,
                "mffd_channels": self.mffd_channels,
                "num_rfdb": self.num_rfdb,
                "levels": self.levels,
                "down_blocks": self.down_blocks,
                "block": self.block,
                "alfm": self.alfm,
                "acfm": self.acfm,
            }
        )
        return config


# Presets: data, not classes. `params` is our count, asserted by the tests;
# `paper_params` the paper's (Table 4 for the RFDB counts).
PRESETS = {
    "lmfn": dict(
        kwargs=dict(),
        description="LMFN as in the paper: 4-level MSHF, 4 RFDB, ALFM + ACFM.",
        params=1_205_875,
        paper_params="1.25 M",
        recipe="lmfn",
    ),
}
for _n, _paper in ((1, "1.15 M"), (2, "1.18 M"), (3, "1.22 M"), (5, "1.28 M"), (6, "1.31 M")):
    PRESETS[f"lmfn_rfdb{_n}"] = dict(
        kwargs=dict(num_rfdb=_n),
        description=f"LMFN Table 4: {_n} RFDB in the MFFD.",
        params=1_205_875 + (_n - 4) * 41_040,  # each RFDB: 38,992 + its 32 inputs to the 1x1 fusion (2,048)
        paper_params=_paper,
        recipe="lmfn",
    )
PRESETS.update(
    {
        # Table 3 states 1.8 M (more than the full 1.25 M): removing the MSHF
        # for "two residual blocks after a stride-2 conv" cannot add size with
        # the widths the paper gives (two 64-channel residual blocks are
        # 148 k), and the paper does not say what grew; ours is the stated
        # structure at the paper's widths, 0.50 M (-72 %).
        "lmfn_no_mshf": dict(
            kwargs=dict(levels=1, down_blocks=2),
            description="LMFN Table 3 'w/o MSHF': a stride-2 conv and two residual blocks, no multi-scale fusion "
                        "(0.50 M; the table's 1.8 M is not reachable at the paper's widths: see models/lmfn.py).",
            params=504_243,
            paper_params="1.8 M (Table 3)",
            recipe="lmfn",
        ),
        # Table 3 states 2.9 M: plain residual blocks in place of the four
        # 32-channel RFDBs are smaller, not 1.7 M larger, unless they are much
        # wider, which the paper does not say; ours keeps the MFFD's width
        # (-61 %).
        "lmfn_no_distillation": dict(
            kwargs=dict(block="resblock"),
            description="LMFN Table 3 'w/o distillation': residual blocks in place of RFDBs "
                        "(1.12 M; the table's 2.9 M is not reachable at the MFFD's width: see models/lmfn.py).",
            params=1_123_891,
            paper_params="2.9 M (Table 3)",
            recipe="lmfn",
        ),
        "lmfn_no_fusion": dict(
            kwargs=dict(alfm=False, acfm=False),
            description="LMFN Table 3 'w/o ALFM/ACFM' (one row): plain concatenation, no layer or channel attention.",
            params=1_205_859,
            paper_params="1.20 M (Table 3)",
            recipe="lmfn",
        ),
        # The two modules removed one at a time: ours, not rows of Table 3.
        "lmfn_no_alfm": dict(
            kwargs=dict(alfm=False),
            description="LMFN without ALFM only (ours; Table 3 removes ALFM and ACFM together: lmfn_no_fusion).",
            params=1_205_874,
            recipe="lmfn",
        ),
        "lmfn_no_acfm": dict(
            kwargs=dict(acfm=False),
            description="LMFN without ACFM only (ours; Table 3 removes ALFM and ACFM together: lmfn_no_fusion).",
            params=1_205_860,
            recipe="lmfn",
        ),
    }
)


# Training recipe (STYLE practice 6): the paper's values, each with its source.
RECIPES = {
    "lmfn": {
        # paper (training details): Adam with weight decay 1e-4. Keras' Adam applies weight
        # decay decoupled (w -= lr * wd * w, as AdamW); PyTorch's Adam, which
        # the paper most likely used, adds wd * w to the gradient instead.
        "optimizer": {"class": "Adam", "weight_decay": 1e-4},
        "learning_rate": 1e-4,  # paper (training details)
        # paper (training details): divided by 10 every 5e5 iterations (a staircase
        # exponential decay is exactly that step schedule).
        "schedule": {"class": "ExponentialDecay", "decay_steps": 500_000, "decay_rate": 0.1, "staircase": True},
        "loss": {"class": "MultiScaleLoss", "weights": {"image": 1.0}, "kind": "mse"},  # eq. (4)
        "crop": 256,  # not stated in the paper; the GoPro convention
        "batch_size": 16,  # not stated in the paper; as MTWDN's recipe
        "augment": [],  # paper (training details): trained "without augmentation"
    },
}

# The lightweight released model's recipe (`legs start lmfn-photos --net lmfn
# --recipe lmfn_photos`), ours, not the paper's: mtwdn_photos's choices
# (docs/models.md) at LMFN's size.
RECIPES["lmfn_photos"] = {
    # no weight decay: the paper's 1e-4 is PyTorch's coupled L2, which Keras'
    # Adam does not reproduce (see above), and legs of a few thousand steps
    # are far from where it matters
    "optimizer": {"class": "Adam", "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-8},
    # 3e-4: the rate measured better than 1e-4 for MTWDN at 1000 steps and
    # batch 4 (docs/networks/mtwdn.md); not tuned for LMFN
    "learning_rate": 3e-4,
    "schedule": {"class": "WarmupCosine", "warmup_steps": 100, "final_fraction": 0.05},
    # Charbonnier, as mtwdn_photos (L1-like; MSE over-weights the few large
    # errors of a blurry start); LMFN has one output scale
    "loss": {"class": "MultiScaleLoss", "weights": {"image": 1.0}, "kind": "charbonnier"},
    "crop": 128,
    # batch 8: LMFN (1.2 M parameters) costs about a third of MTWDN per pixel
    # (1280x720 inference, docs/benchmarks.md), so a step of 8 crops takes
    # about what MTWDN's step of 4 does
    "batch_size": 8,
    "augment": ["flip", "rot90"],  # ours; the paper trains without augmentation
    "data": "photos:../shared/data/sharp",
}
