"""Image quality metrics: PSNR and SSIM, for evaluation and for training.

Three faces of the same two numbers:

- `psnr`, `ssim` (and `ssim_matlab_rgb`): numpy, on whole uint8 images, for
  evaluation tables. Float images in [0, 1] are quantised to uint8 first
  (`tfdeblur.io.to_uint8`), so a network output is scored as the PNG it would
  be saved as, which is how deblurring papers report GoPro numbers.
- `psnr_tf`, `ssim_tf`: batched, per-image vectors, usable inside
  `tf.function`; no quantisation.
- `PSNR`, `SSIM`: Keras metrics for `model.compile(metrics=...)`, the mean of
  the per-image values over everything seen since the last reset.

Conventions (README of `../shared`, "golden values"):

- PSNR is `10 * log10(peak**2 / MSE)` over all pixels and channels, no border
  crop. Identical images give `inf` (MSE 0), as in BasicSR and
  `tf.image.psnr`; averaging an `inf` into a table is the caller's decision.
- SSIM is `SSIM_CONVENTION`: each channel filtered with an 11x11 Gaussian
  (sigma 1.5), constants K1 = 0.01, K2 = 0.03, population (biased)
  covariance, averaged over the 'valid' region (no padding) and then over
  channels. This is `tf.image.ssim`, and it is also exactly
  `skimage.metrics.structural_similarity(..., gaussian_weights=True,
  sigma=1.5, use_sample_covariance=False, data_range=255)`: skimage filters
  with reflect padding but then drops a border of (11 - 1) // 2 = 5 pixels,
  which leaves precisely the pixels whose window lies inside the image.
- MATLAB's `ssim` on an RGB array, which most published GoPro tables use,
  is a different number; see `ssim_matlab_rgb`.

Wang et al., "Image quality assessment: from error visibility to structural
similarity", IEEE TIP 2004, eq. (13).
"""
import math

import cv2
import keras
import numpy as np
import tensorflow as tf

from tfdeblur.io import to_uint8
from tfdeblur.serialization import public

SSIM_CONVENTION = (
    "per-channel Gaussian SSIM (sigma=1.5, 11x11, K=(0.01,0.03), valid region, "
    "like tf.image.ssim / skimage gaussian_weights=True use_sample_covariance=False)"
)
MATLAB_SSIM_CONVENTION = (
    "MATLAB ssim(A, ref) on an RGB array: one 3-D volume filtered with an "
    "11x11x11 Gaussian (sigma=1.5), replicate padding, mean over the full map"
)

_PEAK = 255.0
_SIGMA = 1.5
_WINDOW = 11
_K1, _K2 = 0.01, 0.03


def _as_uint8_pair(a, b):
    a = _as_uint8(a, "a")
    b = _as_uint8(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape; got {a.shape} and {b.shape}")
    if a.ndim not in (2, 3):
        raise ValueError(f"images must be HxW or HxWxC; got shape {a.shape}")
    return a, b


def _as_uint8(x, arg):
    x = np.asarray(x)
    if x.dtype == np.uint8:
        return x
    if np.issubdtype(x.dtype, np.floating):
        return to_uint8(x)
    raise ValueError(f"{arg} must be uint8 or float in [0, 1]; got dtype {x.dtype}")


def psnr(a, b):
    """PSNR in dB between two uint8 (or [0, 1] float) images.

    `10 * log10(255**2 / MSE)` with the MSE over all pixels and channels;
    returns `inf` for identical images.
    """
    a, b = _as_uint8_pair(a, b)
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    if mse == 0:
        return math.inf
    return float(10.0 * np.log10(_PEAK**2 / mse))


def _gaussian_1d(size=_WINDOW, sigma=_SIGMA):
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def _ssim_map(x, y, blur):
    """SSIM map of two float64 arrays; `blur` is the local-mean operator."""
    c1 = (_K1 * _PEAK) ** 2
    c2 = (_K2 * _PEAK) ** 2
    mu_x, mu_y = blur(x), blur(y)
    # Population (biased) moments: E[xy] - E[x]E[y], the tf.image.ssim choice.
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    num = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
    den = (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    return num / den


def ssim(a, b):
    """Mean SSIM between two uint8 (or [0, 1] float) images; see `SSIM_CONVENTION`.

    HxWxC images are scored per channel and the channel values averaged;
    both sides must be at least 11x11. Identical images give exactly 1.
    """
    a, b = _as_uint8_pair(a, b)
    h, w = a.shape[:2]
    if h < _WINDOW or w < _WINDOW:
        raise ValueError(f"images must be at least {_WINDOW}x{_WINDOW} for SSIM; got {h}x{w}")
    g = _gaussian_1d()
    half = _WINDOW // 2

    def blur(z):
        # Any border mode will do: the crop keeps only windows inside the image.
        return cv2.sepFilter2D(z, cv2.CV_64F, g, g, borderType=cv2.BORDER_REFLECT)[
            half : h - half, half : w - half
        ]

    a = a.reshape(h, w, -1).astype(np.float64)
    b = b.reshape(h, w, -1).astype(np.float64)
    per_channel = [
        _ssim_map(a[..., c], b[..., c], blur).mean() for c in range(a.shape[-1])
    ]
    return float(np.mean(per_channel))


def ssim_matlab_rgb(a, b):
    """SSIM as MATLAB's `ssim(A, ref)` reports it for RGB arrays (R2014a+).

    MATLAB treats an HxWx3 array as a 3-D volume: `imgaussfilt3` with sigma
    1.5 and an 11x11x11 kernel, 'replicate' padding in all three dimensions
    (so each channel's local statistics also mix in the other two channels),
    and the mean over the whole SSIM map with no crop. Published GoPro tables
    mostly use this; it reads about 0.02-0.09 higher than `ssim`. Implemented
    here from that description, not checked against MATLAB itself.
    """
    a, b = _as_uint8_pair(a, b)
    h, w = a.shape[:2]
    g = _gaussian_1d()
    a = a.reshape(h, w, -1).astype(np.float64)
    b = b.reshape(h, w, -1).astype(np.float64)
    depth = a.shape[-1]
    # The depth axis is far shorter than the kernel: filtering it with
    # replicate padding is a fixed depth x depth mixing matrix.
    half = _WINDOW // 2
    mix = np.zeros((depth, depth))
    for out in range(depth):
        for tap, weight in enumerate(g):
            mix[out, min(max(out + tap - half, 0), depth - 1)] += weight

    def blur(z):
        planes = [
            cv2.sepFilter2D(z[..., c], cv2.CV_64F, g, g, borderType=cv2.BORDER_REPLICATE)
            for c in range(depth)
        ]
        return np.stack(planes, axis=-1) @ mix.T

    return float(_ssim_map(a, b, blur).mean())


# --------------------------------------------------------------------------
# TensorFlow: batched, differentiable, no quantisation.


def psnr_tf(a, b, max_val=1.0):
    """Per-image PSNR of (B, H, W, C) batches, shape (B,); float32 throughout."""
    return tf.image.psnr(tf.cast(a, tf.float32), tf.cast(b, tf.float32), max_val=max_val)


def ssim_tf(a, b, max_val=1.0):
    """Per-image SSIM (`SSIM_CONVENTION`) of (B, H, W, C) batches, shape (B,)."""
    return tf.image.ssim(
        tf.cast(a, tf.float32),
        tf.cast(b, tf.float32),
        max_val=max_val,
        filter_size=_WINDOW,
        filter_sigma=_SIGMA,
        k1=_K1,
        k2=_K2,
    )


class _PerImageMean(keras.metrics.MeanMetricWrapper):
    """Mean over images of a per-image score.

    `MeanMetricWrapper` keeps a sum and a count in sum-aggregated on-read
    variables, so replicas under `tf.distribute` combine exactly, and it
    applies `sample_weight` per image.
    """

    def __init__(self, fn, max_val=1.0, name=None, dtype=None):
        super().__init__(fn=fn, name=name, dtype=dtype, max_val=max_val)
        self.max_val = max_val
        # Higher is better: lets ModelCheckpoint/EarlyStopping(mode="auto")
        # maximise "val_psnr" instead of failing to infer a direction.
        self._direction = "up"

    def get_config(self):
        # Constructor arguments only: the wrapped function is fixed per class.
        return {"max_val": self.max_val, "name": self.name, "dtype": self.dtype}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@public
class PSNR(_PerImageMean):
    """Mean per-image PSNR (dB) of float batches in [0, max_val]."""

    def __init__(self, max_val=1.0, name="psnr", dtype=None):
        super().__init__(psnr_tf, max_val=max_val, name=name, dtype=dtype)


@public
class SSIM(_PerImageMean):
    """Mean per-image SSIM (`SSIM_CONVENTION`) of float batches in [0, max_val]."""

    def __init__(self, max_val=1.0, name="ssim", dtype=None):
        super().__init__(ssim_tf, max_val=max_val, name=name, dtype=dtype)
