"""MSFS-Net: multi-scale frequency separation network.

Zhang, Li et al., "Multi-scale frequency separation network for image
deblurring". Each block cites the paper's figure or equation::

    blur -> conv3x3 (C) -> FSM                              scale 1     Fig. 3b
         -> down (conv3x3/2 + LeakyReLU) -> FSM             scale 1/2
         -> down -> FSM                                     scale 1/4
         -> RCAB x N_latent -> FSM                          latent, decoder 1/4
         -> CSFFM(theta) -> up (RCAB x N_dec + pixel shuffle) -> FSM    1/2  eq. (3), Fig. 4
         -> CSFFM(gamma) -> up -> FSM                                   1    eq. (4)
         -> conv3x3 -> + blur                               global residual

- Blocks: `tfdeblur.layers` (OctaveConv eqs. 1-2, FSM, CSFFM, RCAB, pixel
  shuffle); readings of the paper are in their docstrings.
- The FSMs expose their high- and low-frequency features; the losses of
  eqs. (5)-(7) (`tfdeblur.losses.MSFSLoss`; (5) is the low-frequency
  consistency L_low, (6) the contrastive L_high) compare them. For those the
  encoder (shallow conv, down modules, encoder FSMs: one nested
  `keras.Model`, so both uses share its weights) runs a second time, on the
  network's output (`loss_features="output"`, the paper) or on the sharp
  image (`"sharp"`, the authors' code). Training outputs
  (`model.training_outputs(x)`): "image", and per scale k = 1, 2, 3 (1,
  1/2, 1/4) "blur_high_k"/"blur_low_k" (encoder on the blurry input),
  "target_high_k"/"target_low_k" (encoder on the output or sharp image),
  "dec_high_k" (decoder FSMs).
- The decoder FSM at 1/4 (on the latent feature) gives the 1/4-scale
  anchor of eq. (6); the authors' code has it too.
- Widths: C channels at every scale (the authors' code: 64). The CSFFM
  concatenation is 2C wide; the up module's RCABs work on it and its pixel
  shuffle returns C (`wide_decoder=False`) or 2C (`True`, the authors' code,
  whose decoder FSMs then map 2C -> C and whose 2C/2-wide high-frequency
  features go through one shared 1x1 convolution to C/2 for the loss).
- Global residual (the paper) with a zero-initialized output convolution
  (ours, as in every tfdeblur network): the untrained network is the
  identity.

Presets. `msfs` is the model that produced the paper's 32.73 dB on GoPro:
the authors' public PyTorch code (models/freNet.py, layers.py, octconv.py of
LiQiang0307/MSFS-Net), 21.6 M parameters, which differs from the paper's
text:

1. the loss features of the second encoder pass come from the ground-truth
   sharp image, not from the output (`loss_features="sharp"`);
2. 10 RCABs in the latent space and 30 in each decoder up module, on the
   2C = 128-wide concatenation, with up-sampling keeping 2C
   (`wide_decoder=True`);
3. eight residual blocks before each down module (`encoder_blocks=8`; the
   code overwrites the first level's result, so on the blurry path its
   first eight blocks are skipped and train only through the sharp pass: we
   use both, as the structure intends);
4. the CSFFM mixes the down module's output (before the FSM) with the
   decoder feature (`skip_from="down"`);
5. every FSM has a 1x1 convolution on its residual path (`fsm_projection`);
6. 1x1 output convolutions, also at 1/4 and 1/2, where the code predicts
   images too (`multi_scale_outputs`, training outputs "scale_3"/"scale_2";
   the code publishes no training script, so their use in its loss is
   unknown: our recipe leaves them out);
7. each OctConv without bias, followed by BatchNorm (`fsm_batchnorm`).
   Counted parameters: 21.6 M in the authors' code; here 21,586,291
   trainable (PyTorch's count) plus 2,816 BatchNorm running statistics,
   which Keras's `count_params()` (the preset's `params`) includes.
8. PyTorch's default initialization (`init="torch"`): the code sets no
   initializer, so every convolution starts from U(+-1/sqrt(fan_in)).
   Under Keras' Glorot kernels the 30-RCAB decoder modules grow their
   features about a thousandfold (std 960 entering the output convolution
   at init, training mode) and the first optimizer step throws the output
   to L1 errors in the thousands; under PyTorch's the feature stays at
   std 0.6 (docs/networks/msfs.md, "Initialization").

`msfs_small` (2.13 M, ten times smaller) is the paper's *text* at a CPU
size: the paper says "several RCABs" and shows one RCAB per up module, so 8
latent RCABs and 1 per up module at width C; loss features from the output
image; none of 2-6 above. It is not the network of any table.

Table 3 ablations (GoPro PSNR; the full model 32.73 dB) are presets of the
full-size `msfs`: "w/o FSM" (`msfs_no_fsm`, plain residual blocks, content
loss only), "w/o FSM" + CLM (`msfs_no_fsm_clm`, 30.01 dB: the contrastive
loss on the plain blocks' unseparated features), "w/o FSM" + consistency
loss (`msfs_no_fsm_consistency`, 30.13 dB: L_low on unseparated features),
"w/o CSFFM", "w/o CLM", "w/o consistency". The paper gives no parameter
counts for them; the tests check ours against a closed form.

The contrastive loss can be satisfied by reshaping the trainable encoder's
features instead of deblurring; the authors' code has no guard against it
(see `tfdeblur.losses.MSFSLoss`, whose `stop_gradient=True` offers one:
recipe `msfs_stop_gradient`, preset `msfs_small_stop_gradient`).
"""
import keras

from tfdeblur.layers import (
    PadToMultiple,
    PixelShuffle,
    apply_downsample_image,
    apply_float32_crop,
    apply_rcab,
    apply_residual_image,
    apply_residual_stack,
    torch_default_init,
)
from tfdeblur.layers.initialization import INITS
from tfdeblur.layers.csffm import apply_csffm
from tfdeblur.layers.frequency_separation import apply_frequency_separation
from tfdeblur.deblur_model import DeblurModel
from tfdeblur.serialization import public

LOSS_FEATURES = ("output", "sharp")
SKIP_FROM = ("fsm", "down")
# CSFFM initial values of theta (1/4 -> 1/2) and gamma (1/2 -> 1): the authors' code.
CSFFM_INITIAL = (-1.0, -0.6)
SCALES = (1, 2, 3)  # 1, 1/2, 1/4


def _apply_plain_block(x, filters, name):
    """Table 3 'w/o FSM': conv3x3-ReLU-conv3x3 + residual in place of the FSM."""
    y = keras.layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"{name}_conv1")(x)
    y = keras.layers.Conv2D(filters, 3, padding="same", name=f"{name}_conv2")(y)
    if x.shape[-1] != filters:
        x = keras.layers.Conv2D(filters, 1, name=f"{name}_res")(x)
    return keras.layers.Add(name=f"{name}_add")([x, y])


@public
class MSFSNet(DeblurModel):
    """Multi-scale frequency separation network (see the module docstring).

    Args:
        channels: feature width C at every scale.
        latent_blocks: RCABs in the latent space (1/4).
        decoder_blocks: RCABs per up-sampling module.
        encoder_blocks: residual blocks before each down module (paper: 0).
        fsm: FSMs (paper) or plain residual conv blocks (Table 3 "w/o FSM";
            no frequency features, so no frequency losses unless
            `unseparated_losses`).
        unseparated_losses: with `fsm=False`, expose each plain block's whole
            (unseparated) feature as both the "high" and the "low" feature,
            so the losses of eqs. (5)-(6) apply to it (Table 3's "w/o FSM"
            rows with CLM / with the consistency loss).
        csffm: the learned mix of eqs. (3)-(4), or a plain concatenated skip
            (Table 3 "w/o CSFFM").
        wide_decoder: up modules return 2C channels (authors' code) or C.
        fsm_projection: a 1x1 convolution on every FSM's residual path.
        fsm_batchnorm: the FSMs' OctConvs are conv (no bias) - BatchNorm - ReLU,
            as in the authors' code, instead of biased conv - ReLU.
        skip_from: CSFFM encoder feature: "fsm" (after the FSM) or "down".
        multi_scale_outputs: image outputs at 1/4 and 1/2 ("scale_3", "scale_2").
        tail_kernel: kernel size of the output convolution(s).
        loss_features: the second encoder pass sees the "output" or the "sharp" image.
        reduction: channel-attention reduction of the RCABs (RCAN: 16).
        init: "keras" (Glorot-uniform kernels, zero biases) or "torch"
            (PyTorch's defaults, as the authors' code trains from; see
            `tfdeblur.layers.initialization`). The output convolutions stay
            zero either way.
    """

    # int8 export: its residual trunks carry a few channels several times
    # larger than the rest, so the trunk's int8 step is ~20x what an RCAB
    # branch adds to it; keeping the adds and the second encoder scale in
    # float brings the quick-run weights from 36.2 to 41.2 dB of float on the
    # 11 GoPro dev crops, min 30.5 -> 35.6 (docs/serving.md, "msfs").
    int8_keep_float = ("ADD", "enc2_down", "enc2_res")

    def __init__(
        self,
        channels=64,
        latent_blocks=8,
        decoder_blocks=1,
        encoder_blocks=0,
        fsm=True,
        csffm=True,
        wide_decoder=False,
        fsm_projection=False,
        fsm_batchnorm=False,
        skip_from="fsm",
        multi_scale_outputs=False,
        tail_kernel=3,
        loss_features="output",
        reduction=16,
        unseparated_losses=False,
        init="keras",
        **kwargs,
    ):
        channels = int(channels)
        if channels < 2 or channels % 2:
            raise ValueError(f"channels must be a positive even number; got {channels}")
        for arg, value in (("latent_blocks", latent_blocks), ("decoder_blocks", decoder_blocks),
                           ("encoder_blocks", encoder_blocks)):
            if int(value) < 0:
                raise ValueError(f"{arg} must be >= 0; got {value}")
        if skip_from not in SKIP_FROM:
            raise ValueError(f"skip_from must be one of {SKIP_FROM}; got {skip_from!r}")
        if loss_features not in LOSS_FEATURES:
            raise ValueError(f"loss_features must be one of {LOSS_FEATURES}; got {loss_features!r}")
        if int(tail_kernel) < 1 or int(tail_kernel) % 2 == 0:
            raise ValueError(f"tail_kernel must be a positive odd integer; got {tail_kernel}")
        if unseparated_losses and fsm:
            raise ValueError("unseparated_losses must be False when fsm is True (the FSMs separate the features); got True")
        if int(reduction) < 1:
            raise ValueError(f"reduction must be >= 1; got {reduction}")
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}; got {init!r}")
        c = channels
        c_up = 2 * c if wide_decoder else c
        size_multiple = 8  # two down modules, and the 1/4-scale FSM pools once more

        def block(x, filters, name):
            """FSM (high, low, out), or the plain block (None, None, out)."""
            if fsm:
                return apply_frequency_separation(x, filters, projection=fsm_projection, batchnorm=fsm_batchnorm, name=name)
            out = _apply_plain_block(x, filters, name)
            return (out, out, out) if unseparated_losses else (None, None, out)

        # -- encoder: one nested model, run on the blurry and on the output/sharp image
        enc_in = keras.Input((None, None, 3), name="encoder_image")
        e = keras.layers.Conv2D(c, 3, padding="same", activation="relu", name="shallow")(enc_in)
        enc = {}
        enc["high_1"], enc["low_1"], enc["feat_1"] = block(e, c, "enc1_fsm")
        x = enc["feat_1"]
        for k in (2, 3):
            x = apply_residual_stack(x, c, int(encoder_blocks), name=f"enc{k}_res")
            x = keras.layers.Conv2D(c, 3, strides=2, padding="same", use_bias=False, name=f"enc{k}_down")(x)
            x = keras.layers.LeakyReLU(0.2, name=f"enc{k}_down_lrelu")(x)
            enc[f"down_{k}"] = x
            enc[f"high_{k}"], enc[f"low_{k}"], enc[f"feat_{k}"] = block(x, c, f"enc{k}_fsm")
            x = enc[f"feat_{k}"]
        encoder = keras.Model(enc_in, {k: v for k, v in enc.items() if v is not None}, name="encoder")

        image = keras.Input((None, None, 3), name="blur")
        padded = PadToMultiple(size_multiple, name="pad")(image)
        f = encoder(padded)

        # -- latent space and decoder
        y = f["feat_3"]
        for i in range(int(latent_blocks)):
            y = apply_rcab(y, c, reduction, name=f"latent_rcab{i + 1}")
        dec = {}
        dec["high_3"], _, y = block(y, c, "dec3_fsm")
        train_outputs = {}
        blur_small = {1: padded}
        if multi_scale_outputs:
            blur_small[2] = apply_downsample_image(padded, name="blur_down2")
            blur_small[3] = apply_downsample_image(blur_small[2], name="blur_down4")

        def scale_output(t, k):
            t = apply_residual_image(t, blur_small[k], tail_kernel, name=f"scale{k}_out", residual_name=f"scale{k}_residual")
            return keras.layers.Activation("linear", dtype="float32", name=f"scale{k}_float32")(t)

        if multi_scale_outputs:
            train_outputs["scale_3"] = scale_output(y, 3)
        for k, initial in zip((2, 1), CSFFM_INITIAL):
            skip = f[f"down_{k + 1}" if skip_from == "down" else f"feat_{k + 1}"]
            z = apply_csffm(skip, y, initial, mix=csffm, name=f"csffm{k}")
            for j in range(int(decoder_blocks)):
                z = apply_rcab(z, 2 * c, reduction, name=f"dec{k}_rcab{j + 1}")
            z = keras.layers.Conv2D(4 * c_up, 3, padding="same", name=f"dec{k}_up_conv")(z)
            z = PixelShuffle(2, name=f"dec{k}_up_shuffle")(z)
            dec[f"high_{k}"], _, y = block(z, c, f"dec{k}_fsm")
            if multi_scale_outputs and k == 2:
                train_outputs["scale_2"] = scale_output(y, 2)

        # zero-init conv: the untrained network is the identity; the encoder's
        # second pass below reads the uncropped restored image.
        restored = apply_residual_image(y, padded, tail_kernel)
        output = apply_float32_crop(restored, image)

        target_input = None
        if fsm or unseparated_losses:
            if loss_features == "sharp":
                target_input = keras.Input((None, None, 3), name="sharp")
                target = encoder(PadToMultiple(size_multiple, name="pad_sharp")(target_input))
            else:
                target = encoder(restored)
            proj = None
            for k in SCALES:
                train_outputs[f"blur_high_{k}"] = f[f"high_{k}"]
                train_outputs[f"blur_low_{k}"] = f[f"low_{k}"]
                train_outputs[f"target_high_{k}"] = target[f"high_{k}"]
                train_outputs[f"target_low_{k}"] = target[f"low_{k}"]
                d = dec[f"high_{k}"]
                if d.shape[-1] != f[f"high_{k}"].shape[-1]:
                    # the authors' `changeChannel_`: one 1x1 conv shared by the scales
                    proj = proj or keras.layers.Conv2D(f[f"high_{k}"].shape[-1], 1, name="dec_high_proj")
                    d = proj(d)
                train_outputs[f"dec_high_{k}"] = d
        train_outputs["image"] = output

        super().__init__(
            inputs=image, outputs=output, train_outputs=train_outputs,
            size_multiple=size_multiple, target_input=target_input, **kwargs,
        )
        self.channels = c
        self.latent_blocks = int(latent_blocks)
        self.decoder_blocks = int(decoder_blocks)
        self.encoder_blocks = int(encoder_blocks)
        self.fsm = bool(fsm)
        self.csffm = bool(csffm)
        self.wide_decoder = bool(wide_decoder)
        self.fsm_projection = bool(fsm_projection)
        self.fsm_batchnorm = bool(fsm_batchnorm)
        self.skip_from = skip_from
        self.multi_scale_outputs = bool(multi_scale_outputs)
        self.tail_kernel = int(tail_kernel)
        self.loss_features = loss_features
        self.reduction = int(reduction)
        self.unseparated_losses = bool(unseparated_losses)
        self.init = init
        if init == "torch":
            torch_default_init(self)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "channels": self.channels,
                "latent_blocks": self.latent_blocks,
                "decoder_blocks": self.decoder_blocks,
                "encoder_blocks": self.encoder_blocks,
                "fsm": self.fsm,
                "csffm": self.csffm,
                "wide_decoder": self.wide_decoder,
                "fsm_projection": self.fsm_projection,
                "fsm_batchnorm": self.fsm_batchnorm,
                "skip_from": self.skip_from,
                "multi_scale_outputs": self.multi_scale_outputs,
                "tail_kernel": self.tail_kernel,
                "loss_features": self.loss_features,
                "reduction": self.reduction,
                "unseparated_losses": self.unseparated_losses,
                "init": self.init,
            }
        )
        return config


# The authors' code (see the module docstring): what produced Table 2/3.
OFFICIAL = dict(
    latent_blocks=10, decoder_blocks=30, encoder_blocks=8, wide_decoder=True, fsm_projection=True,
    fsm_batchnorm=True, skip_from="down", multi_scale_outputs=True, tail_kernel=1, loss_features="sharp",
    init="torch",
)
# `params` is our count (asserted by tests/test_models.py); tests/test_msfs.py
# checks it against a closed form and `msfs` against the 21.6 M of the code.
PRESETS = {
    "msfs": dict(
        kwargs=dict(OFFICIAL),
        description="MSFS-Net as the authors' code builds it (the 32.73 dB GoPro model): 10 latent / 30 per-up RCABs, "
                    "8 residual blocks before each down module, sharp-image loss features (see models/msfs.py).",
        params=21_589_107,
        paper_params="21.6 M (the authors' code, counted)",
        recipe="msfs",
    ),
    "msfs_small": dict(
        kwargs=dict(),
        description="MSFS-Net's text at CPU size (not a paper table's model): 8 latent RCABs, 1 per up module, "
                    "width 64, loss features from the output image.",
        params=2_130_037,
        recipe="msfs",
    ),
    "msfs_small_stop_gradient": dict(
        kwargs=dict(),
        description="msfs_small trained with L_high's positives/negatives as constants (ours: the collapse guard).",
        params=2_130_037,
        recipe="msfs_stop_gradient",
    ),
    "msfs_no_fsm": dict(
        kwargs=dict(OFFICIAL, fsm=False),
        description="MSFS-Net Table 3 'w/o FSM': plain residual conv blocks in place of the FSMs (content loss only).",
        params=21_557_331,
        recipe="msfs_content_only",
    ),
    "msfs_no_fsm_clm": dict(
        kwargs=dict(OFFICIAL, fsm=False, unseparated_losses=True),
        description="MSFS-Net Table 3 'w/o FSM' + CLM (30.01 dB): the contrastive loss on unseparated features.",
        params=21_557_331,
        recipe="msfs_no_consistency",
    ),
    "msfs_no_fsm_consistency": dict(
        kwargs=dict(OFFICIAL, fsm=False, unseparated_losses=True),
        description="MSFS-Net Table 3 'w/o FSM' + consistency loss (30.13 dB): L_low on unseparated features.",
        params=21_557_331,
        recipe="msfs_no_clm",
    ),
    "msfs_no_csffm": dict(
        kwargs=dict(OFFICIAL, csffm=False),
        description="MSFS-Net Table 3 'w/o CSFFM': concatenated skips without the learned mix of eqs. (3)-(4).",
        params=21_589_105,
        recipe="msfs",
    ),
    "msfs_no_clm": dict(
        kwargs=dict(OFFICIAL),
        description="MSFS-Net Table 3 'w/o CLM': trained without the contrastive high-frequency loss L_high (eq. 6).",
        params=21_589_107,
        recipe="msfs_no_clm",
    ),
    "msfs_no_consistency": dict(
        kwargs=dict(OFFICIAL),
        description="MSFS-Net Table 3 'w/o consistency': trained without the low-frequency loss L_low (eq. 5).",
        params=21_589_107,
        recipe="msfs_no_consistency",
    ),
}


def _msfs_recipe(high_weight=0.05, low_weight=0.05, stop_gradient=False):
    return {
        # paper (implementation details): AdamW, beta1 0.9, beta2 0.9, eps 1e-8
        "optimizer": {
            "class": "AdamW",
            "beta_1": 0.9,
            "beta_2": 0.9,
            "epsilon": 1e-8,
            "weight_decay": 1e-6,  # not in the paper; the authors' main.py default
        },
        "learning_rate": 1e-4,  # paper: initial learning rate
        "schedule": {
            # paper: halved every 500 epochs (the authors' main.py: lr_steps
            # every 500 of 3000 epochs, gamma 0.5). An epoch is a pass over the
            # training set: GoPro's 2103 pairs / batch 4 = 526 steps, so every
            # 263,000 steps there (the quick run of 1000 steps stays at the
            # initial rate).
            "class": "ExponentialDecay",
            "decay_rate": 0.5,
            "staircase": True,
            "decay_epochs": 500,
        },
        "loss": {
            "class": "MSFSLoss",  # eqs. (5)-(7)
            "high_weight": high_weight,  # eq. (7): lambda_1 = 0.05
            "low_weight": low_weight,  # eq. (7): lambda_2 = 0.05
            # the authors' code: no guard on L_high (see MSFSLoss); True is ours
            "stop_gradient": stop_gradient,
        },
        "crop": 256,  # not stated in the paper; the authors' data_load.py: PairRandomCrop(256)
        "batch_size": 4,  # paper
        # not stated in the paper; the authors' data_load.py: a random
        # horizontal flip, nothing else
        "augment": ["hflip"],
        "epochs": 3000,  # paper; the authors' main.py: num_epoch 3000
    }


RECIPES = {
    "msfs": _msfs_recipe(),
    "msfs_content_only": _msfs_recipe(0.0, 0.0),  # Table 3 "w/o FSM": no frequency features
    "msfs_no_clm": _msfs_recipe(high_weight=0.0),  # Table 3 "w/o CLM"
    "msfs_no_consistency": _msfs_recipe(low_weight=0.0),  # Table 3 "w/o consistency"
    "msfs_stop_gradient": _msfs_recipe(stop_gradient=True),  # ours: L_high trains only the decoder's anchors
}
