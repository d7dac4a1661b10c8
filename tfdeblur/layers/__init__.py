"""Shared blocks, one concept per file, re-exported flat (timm style).

A reader holding a paper finds each block in one hop: the file names follow
the papers' own names.
"""
from tfdeblur.layers.padding import CropToMatch, PadToMultiple
from tfdeblur.layers.residual_block import apply_residual_block, apply_residual_stack
from tfdeblur.layers.sampling import (
    UpsampleBilinear2x,
    apply_conv,
    apply_deconv,
    apply_downsample_image,
    apply_upsample_image,
)
