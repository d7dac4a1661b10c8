"""Shared blocks, one concept per file, re-exported flat (timm style).

A reader holding a paper finds each block in one hop: the file names follow
the papers' own names.
"""
from tfdeblur.layers.activation import LeakyReLU
from tfdeblur.layers.padding import CropToMatch, PadToMultiple
from tfdeblur.layers.output_head import apply_float32_crop, apply_output_head, apply_residual_image
from tfdeblur.layers.residual_block import apply_residual_block, apply_residual_stack
from tfdeblur.layers.sampling import (
    UpsampleBilinear2x,
    apply_conv,
    apply_deconv,
    apply_downsample_image,
    apply_upsample_image,
)
from tfdeblur.layers.channel_attention import ContrastPooling, apply_channel_attention, apply_rcab
from tfdeblur.layers.distillation import (
    apply_frequency_distillation_block,
    apply_residual_feature_distillation_block,
)
from tfdeblur.layers.esa import ResizeBilinearLike, apply_esa
from tfdeblur.layers.frequency_split import apply_frequency_split, split_channels
from tfdeblur.layers.fusion import ACFM, ALFM
from tfdeblur.layers.inception_down import apply_inception_down
from tfdeblur.layers.pixel_shuffle import PixelShuffle, apply_pixel_shuffle_upsample
from tfdeblur.layers.branch_attention import apply_branch_attention
from tfdeblur.layers.octave_conv import OctaveConv
from tfdeblur.layers.frequency_separation import apply_frequency_separation
from tfdeblur.layers.csffm import AdaptiveMix, apply_csffm
from tfdeblur.layers.local_pooling import LocalAveragePooling2D, LocalContrastPooling
from tfdeblur.layers.initialization import torch_default_init
