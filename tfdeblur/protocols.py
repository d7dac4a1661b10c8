"""How each deblurring benchmark scores a restored image against its ground truth.

Every protocol takes the restored image and the ground truth as 8-bit RGB
(the output is rounded to uint8 first, as the saved PNG would be) and returns
a dict with "psnr", "ssim" (per-channel Gaussian SSIM,
`tfdeblur.metrics.SSIM_CONVENTION`) and "ssim_matlab" (MATLAB's RGB `ssim`,
`tfdeblur.metrics.MATLAB_SSIM_CONVENTION`), plus protocol details.

- `whole` (alias `gopro`, `hide`): PSNR/SSIM over the whole image, no crop,
  no alignment. GoPro: Nah et al., "Deep Multi-scale Convolutional Neural
  Network for Dynamic Scene Deblurring", CVPR 2017; HIDE: Shen et al.,
  "Human-Aware Motion Deblurring", ICCV 2019. Both are scored like this in
  the tables of MPRNet/MIMO-UNet/NAFNet (SSIM there is usually MATLAB's).
- `realblur`: Rim et al., "Real-World Blur Dataset for Learning and
  Benchmarking Deblurring Algorithms", ECCV 2020, Sec. 5 and their released
  evaluation script: the output is first scaled by the least-squares
  intensity gain `sum(x*z) / sum(z*z)`, then aligned to the ground truth by a
  homography found with ECC (`cv2.findTransformECC` on grayscale, 100
  iterations, Gaussian pre-filter 5, bicubic warp with reflected borders);
  the pixels the warp brings in from outside are masked out, and PSNR (data
  range 1) and per-channel SSIM are averaged over the mask only. RealBlur
  computes these on float images in [0, 1]; "ssim_matlab" is reported on the
  aligned, masked images for reference.
- `kohler`: Köhler et al., "Recording and Playback of Camera Shake:
  Benchmarking Blind Deconvolution with a Real-World Database", ECCV 2012,
  Sec. 5: a restored image is compared with every sharp frame recorded along
  the camera's trajectory, each after intensity scaling and a translation,
  and the best frame's PSNR counts. The translation follows Levin et al.
  (CVPR 2009, `comp_upto_shift`) in spirit but is estimated by phase
  correlation (sub-pixel) instead of their exhaustive quarter-pixel search,
  and scores are taken inside a border of `max_shift` pixels. The ground
  truth is then a stack (N, H, W, 3) of frames (a single image works too).
- `levin`: Levin et al., "Understanding and evaluating blind deconvolution
  algorithms", CVPR 2009, as their released `comp_upto_shift.m` scores: a
  blind method may return the image shifted (a kernel's centre is
  ambiguous), so the output is compared with the ground truth at every
  shift of -`LEVIN_MAX_SHIFT`..+`LEVIN_MAX_SHIFT` px in steps of
  `LEVIN_SHIFT_STEP` px on both axes (bilinear interpolation, MATLAB
  `interp2`'s default), over the ground truth without a border of
  `LEVIN_BORDER` px; the shift with the lowest sum of squared differences
  counts. No intensity gain. PSNR on the interpolated float output (data
  range 1), SSIMs on it rounded to 8 bits. The same protocol scores the
  blurry input, so the gain compares like with like. (Before 2026-11-27
  this was the best *integer* shift within +-3 px over a 3 px border:
  Levin's kernels are centred by their support, not their mass -- k6's
  centre of mass sits 4.3 px off its array's centre -- and a network that
  restores to the blur's centre of mass was cut off at 3 px.)
"""
import math

import cv2
import numpy as np

from tfdeblur import metrics
from tfdeblur.io import to_uint8

PROTOCOLS = ("whole", "gopro", "hide", "realblur", "kohler", "levin")
DEFAULT_PROTOCOL = "whole"
KOHLER_MAX_SHIFT = 10  # pixels; Levin et al.'s comp_upto_shift uses a similar bound
LEVIN_MAX_SHIFT = 5  # pixels, comp_upto_shift.m's maxshift
LEVIN_SHIFT_STEP = 0.25  # pixels, its shift grid -5:0.25:5
LEVIN_BORDER = 15  # pixels, its I2(16:end-15, 16:end-15)


class Frames:
    """Köhler's sharp frames as file paths, read one at a time (a photo has
    about 199 of them: too many to hold as floats)."""

    def __init__(self, paths):
        self.paths = tuple(paths)

    def __len__(self):
        return len(self.paths)

    def __iter__(self):
        from tfdeblur.io import read_image

        for path in self.paths:
            yield to_uint8(read_image(path, allow_conversion=True))

    def middle(self):
        from tfdeblur.io import read_image

        return to_uint8(read_image(self.paths[(len(self.paths) + 1) // 2 - 1], allow_conversion=True))


def for_data(kind, protocol=None):
    """`protocol`, checked; without one, the protocol of a benchmark's own
    --data kind (realblur:, kohler:, ...), else `DEFAULT_PROTOCOL`."""
    protocol = protocol or (kind if kind in PROTOCOLS else DEFAULT_PROTOCOL)
    check_protocol(protocol)
    return protocol


def check_protocol(name):
    if name not in PROTOCOLS:
        raise ValueError(f"`protocol` must be one of {', '.join(PROTOCOLS)}; got {name!r}")
    return name


def score(protocol, output, truth):
    """Scores one restored image (uint8 or float in [0, 1], HxWx3) against its
    ground truth under `protocol` (see the module docstring)."""
    check_protocol(protocol)
    output = to_uint8(np.asarray(output))
    if protocol == "kohler":
        if isinstance(truth, Frames):
            return kohler(output, truth)
        truth = np.asarray(truth)
        frames = truth if truth.ndim == 4 else truth[None]
        return kohler(output, [to_uint8(f) for f in frames])
    truth = np.asarray(truth)
    truth = to_uint8(truth)
    if output.shape != truth.shape:
        raise ValueError(f"output and ground truth must have the same shape; got {output.shape} and {truth.shape}")
    if protocol == "realblur":
        return realblur(output, truth)
    if protocol == "levin":
        return levin(output, truth)
    return whole(output, truth)


def whole(output, truth):
    return {
        "psnr": metrics.psnr(output, truth),
        "ssim": metrics.ssim(output, truth),
        "ssim_matlab": metrics.ssim_matlab_rgb(output, truth),
    }


# ------------------------------------------------------------------ RealBlur


def _gray(img):
    return cv2.cvtColor(img.astype(np.float32), cv2.COLOR_RGB2GRAY)


def intensity_scaled(z, x):
    """`z` times the least-squares gain that best matches it to `x`."""
    zz = float(np.sum(z * z))
    return z * (float(np.sum(x * z)) / zz) if zz > 0 else z


def realblur_align(output, truth):
    """(aligned output, masked truth, mask, homography, converged) as RealBlur
    aligns them; float64 in [0, 1], the mask HxWx3 of 0/1."""
    z = output.astype(np.float64) / 255.0
    x = truth.astype(np.float64) / 255.0
    zs = intensity_scaled(z, x)
    h, w = x.shape[:2]
    warp = np.eye(3, dtype=np.float32)
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 100, 0)
    try:
        _, warp = cv2.findTransformECC(_gray(x), _gray(zs), warp, cv2.MOTION_HOMOGRAPHY, criteria, None, 5)
        converged = True
    except cv2.error:  # ECC diverged (flat or unrelated images): score unaligned
        warp, converged = np.eye(3, dtype=np.float32), False
    flags = cv2.WARP_INVERSE_MAP
    zr = cv2.warpPerspective(zs.astype(np.float32), warp, (w, h), flags=cv2.INTER_CUBIC | flags,
                             borderMode=cv2.BORDER_REFLECT).astype(np.float64)
    mask = cv2.warpPerspective(np.ones((h, w, 3), np.float32), warp, (w, h), flags=cv2.INTER_NEAREST | flags,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=0).astype(np.float64)
    return zr * mask, x * mask, mask, warp, converged


def masked_psnr(a, b, mask, peak=1.0):
    err = float(np.sum((a - b) ** 2)) / float(np.sum(mask))
    return math.inf if err == 0 else 10.0 * math.log10(peak**2 / err)


def masked_ssim(a, b, mask, peak=1.0):
    """Per-channel Gaussian SSIM whose map (reflect-padded, as scikit-image
    computes it) is averaged over the mask, after dropping a 5-pixel border."""
    g = metrics._gaussian_1d()
    half = len(g) // 2
    scale = 255.0 / peak  # metrics' constants are for 8-bit ranges

    def blur(z):
        return cv2.sepFilter2D(z, cv2.CV_64F, g, g, borderType=cv2.BORDER_REFLECT)

    values = []
    for c in range(a.shape[2]):
        m = metrics._ssim_map(a[..., c] * scale, b[..., c] * scale, blur)[half:-half, half:-half]
        weight = mask[half:-half, half:-half, c]
        values.append(float(np.sum(m * weight) / np.sum(weight)))
    return float(np.mean(values))


def realblur(output, truth):
    zr, xr, mask, warp, converged = realblur_align(output, truth)
    return {
        "psnr": masked_psnr(zr, xr, mask),
        "ssim": masked_ssim(zr, xr, mask),
        "ssim_matlab": metrics.ssim_matlab_rgb(to_uint8(np.clip(zr, 0, 1)), to_uint8(xr)),
        "aligned": converged,
    }


# -------------------------------------------------------------------- Köhler


def kohler(output, frames, max_shift=KOHLER_MAX_SHIFT):
    """Best PSNR over the sharp `frames` after intensity scaling and a
    translation (see the module docstring); SSIMs at the best frame."""
    z = output.astype(np.float64) / 255.0
    h, w = z.shape[:2]
    b = int(max_shift)
    if h <= 2 * b + 11 or w <= 2 * b + 11:
        raise ValueError(f"images must be larger than {2 * b + 11} pixels a side for the Köhler protocol; got {w}x{h}")
    best = None
    for i, frame in enumerate(frames):
        if frame.shape != output.shape:
            raise ValueError(f"sharp frame {i} must have the output's shape {output.shape}; got {frame.shape}")
        x = frame.astype(np.float64) / 255.0
        (dx, dy), _ = cv2.phaseCorrelate(_gray(x).astype(np.float64), _gray(z).astype(np.float64))
        dx, dy = float(np.clip(dx, -b, b)), float(np.clip(dy, -b, b))
        shift = np.float32([[1, 0, -dx], [0, 1, -dy]])
        moved = cv2.warpAffine(z.astype(np.float32), shift, (w, h), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REFLECT).astype(np.float64)
        zc, xc = moved[b : h - b, b : w - b], x[b : h - b, b : w - b]
        zc = np.clip(intensity_scaled(zc, xc), 0.0, 1.0)
        psnr = masked_psnr(zc, xc, np.ones_like(xc))  # float, data range 1, as Köhler's MATLAB code
        if best is None or psnr > best[0]:
            best = (psnr, i, (dx, dy), zc, xc)
    psnr, index, (dx, dy), zc, xc = best
    z8, x8 = to_uint8(zc), to_uint8(xc)
    return {
        "psnr": psnr,
        "ssim": metrics.ssim(z8, x8),
        "ssim_matlab": metrics.ssim_matlab_rgb(z8, x8),
        "frame": index,
        "shift": [dx, dy],
    }


# -------------------------------------------------------------------- Levin


def _levin_shifted(img, start, n, shift, axis):
    """`img` sampled at `start + k + shift` for k < n along `axis`, linearly
    interpolated between the two neighbouring pixels (exact at integers)."""
    i = math.floor(shift)
    f = shift - i
    a = np.take(img, np.arange(start + i, start + i + n), axis=axis)
    if f == 0:
        return a
    b = np.take(img, np.arange(start + i + 1, start + i + 1 + n), axis=axis)
    return (1.0 - f) * a + f * b


def levin(output, truth, max_shift=LEVIN_MAX_SHIFT, step=LEVIN_SHIFT_STEP, border=LEVIN_BORDER):
    """PSNR/SSIM of `output` at the shift (|dx|, |dy| <= max_shift, on a grid
    of `step` px) that best matches `truth` (lowest SSD), over `truth`
    without a border of `border` pixels (see the module docstring). "shift"
    is [dx, dy]: output at (x + dx, y + dy) is compared with truth at (x, y)."""
    b, m = int(border), float(max_shift)
    if b < math.ceil(m) + 1:
        raise ValueError(f"border must exceed max_shift by a pixel; got border {border}, max_shift {max_shift}")
    h, w = truth.shape[:2]
    if h <= 2 * b + 11 or w <= 2 * b + 11:
        raise ValueError(f"images must be larger than {2 * b + 11} pixels a side for the Levin protocol; got {w}x{h}")
    x = truth[b : h - b, b : w - b].astype(np.float32) / 255.0
    z = output.astype(np.float32) / 255.0
    n_y, n_x = x.shape[:2]
    shifts = np.linspace(-m, m, int(round(2 * m / step)) + 1)
    best = None
    for dy in shifts:
        rows = _levin_shifted(z, b, n_y, float(dy), axis=0)
        for dx in shifts:
            moved = _levin_shifted(rows, b, n_x, float(dx), axis=1)
            ssd = float(np.sum(np.square(moved - x), dtype=np.float64))
            if best is None or ssd < best[0]:
                best = (ssd, float(dx), float(dy))
    _, dx, dy = best
    # the search runs in float32 for speed; the score in float64
    z64 = output.astype(np.float64) / 255.0
    moved = _levin_shifted(_levin_shifted(z64, b, n_y, dy, axis=0), b, n_x, dx, axis=1)
    moved = np.clip(moved, 0.0, 1.0)
    x8 = np.ascontiguousarray(truth[b : h - b, b : w - b])
    xf = x8.astype(np.float64) / 255.0
    z8 = to_uint8(moved)
    return {
        "psnr": masked_psnr(moved, xf, np.ones_like(xf)),
        "ssim": metrics.ssim(z8, x8),
        "ssim_matlab": metrics.ssim_matlab_rgb(z8, x8),
        "shift": [dx, dy],
    }
