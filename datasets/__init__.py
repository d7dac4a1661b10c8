"""Datasets for tfdeblur: synthetic uniform blur on procedural scenes."""
from tfdeblur.datasets.kernels import (
    defocus_kernel,
    gaussian_kernel,
    linear_motion_kernel,
    load_kernels,
    random_kernel,
    trajectory_kernel,
)
from tfdeblur.datasets.synthetic import (
    blur_image,
    dead_leaves,
    make_pair,
    synthetic_dataset,
)
