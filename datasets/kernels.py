"""Blur kernels for synthesizing uniformly blurred images.

Every function returns a 2-D float32 numpy array with an odd square support,
non-negative entries summing to 1, and the blur "centred" on the middle pixel
(the exact centring rule is stated per kernel type).

Coordinates and angles: kernels are indexed ``k[row, col]`` with rows going
down the image. Angles are in degrees, counter-clockwise as seen on screen,
0 = horizontal (pointing right), 90 = vertical (pointing up).

Kernel types:

* `trajectory_kernel`: random camera-shake trajectory after Boracchi & Foi,
  "Modeling the performance of image restoration from motion blur", IEEE TIP
  21(8), 2012 (Sec. II): a 2-D point moving with inertia, its velocity
  perturbed by Gaussian noise, pulled back towards the start and occasionally
  reversed by an impulsive jerk; rasterized with bilinear splatting.
* `linear_motion_kernel`: a straight motion of a given length and angle.
* `gaussian_kernel`: isotropic or anisotropic Gaussian (out-of-focus /
  atmospheric stand-in).
* `defocus_kernel`: uniform disk (thin-lens defocus), optionally soft-edged.
* `load_kernels`: real kernels from `.npz` / `.png` files, e.g. the eight
  camera-shake kernels of Levin et al. 2009.
* `random_kernel`: one draw from a mixture of the above.
"""
import math
import os
from types import MappingProxyType

import cv2
import numpy as np

# Default mixture of `random_kernel`: camera shake dominates, as in real
# hand-held blur; the other types keep the model from overfitting one shape.
DEFAULT_KERNEL_PROBS = MappingProxyType(
    {"trajectory": 0.6, "linear": 0.15, "gaussian": 0.1, "defocus": 0.15}
)
KERNEL_TYPES = tuple(DEFAULT_KERNEL_PROBS)


def _normalized(k):
    k = np.asarray(k, dtype=np.float64)
    total = k.sum()
    if not total > 0:
        raise ValueError(f"kernel must have a positive sum; got {total}")
    return (k / total).astype(np.float32)


def _delta(size=1):
    k = np.zeros((size, size), np.float32)
    k[size // 2, size // 2] = 1.0
    return k


def _check_size(size):
    if size is not None and (int(size) != size or size < 1 or size % 2 == 0):
        raise ValueError(f"size must be a positive odd integer or None; got {size!r}")


def _fit(k, size):
    """Zero-pads (or centre-crops) odd square `k` to odd `size`, renormalized."""
    if size is None or k.shape[0] == size:
        return _normalized(k)
    n = k.shape[0]
    if n < size:
        p = (size - n) // 2
        return _normalized(np.pad(k, p))
    c = (n - size) // 2
    return _normalized(k[c:c + size, c:c + size])


def _trim(k, eps=1e-7):
    """Strips all-(near-)zero outer rings, keeping the support odd and centred."""
    n = k.shape[0]
    nz = np.argwhere(k > eps * k.max())
    c = n // 2
    r = int(np.max(np.abs(nz - c))) if len(nz) else 0
    return k[c - r:c + r + 1, c - r:c + r + 1]


def _splat(points, size):
    """Bilinear splatting of equally weighted points onto a size x size grid.

    `points` is (N, 2) as (x, y) in pixels relative to the centre pixel, with
    y pointing down. Bilinear weights preserve the points' centroid exactly,
    so the kernel's centre of mass is where the points' mean is.
    """
    c = size // 2
    x = points[:, 0] + c
    y = points[:, 1] + c
    x0 = np.floor(x)
    y0 = np.floor(y)
    fx = x - x0
    fy = y - y0
    x0 = x0.astype(np.int64)
    y0 = y0.astype(np.int64)
    # Pad by one on every side so that a corner with zero weight (a point
    # exactly on the last pixel) never indexes out of bounds.
    p = size + 2
    idx = np.concatenate([
        (y0 + 1) * p + (x0 + 1), (y0 + 1) * p + (x0 + 2),
        (y0 + 2) * p + (x0 + 1), (y0 + 2) * p + (x0 + 2),
    ])
    w = np.concatenate([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy])
    # Callers size the grid to hold every point; a point outside would fail
    # loudly here (negative index, or a grid too large to reshape).
    grid = np.bincount(idx, weights=w, minlength=p * p).reshape(p, p)
    return grid[1:-1, 1:-1]


def _support_for(points):
    """Smallest odd size whose bilinear footprint holds every point."""
    # A point at integer r puts zero weight on pixel r + 1; `_splat` pads.
    r = float(np.max(np.abs(points))) if len(points) else 0.0
    return 2 * int(math.ceil(r - 1e-9)) + 1


def _rasterize_path(points, size, max_size):
    """Rasterizes a polyline-sampled path, shrinking it to fit `max_size`."""
    limit = max_size if size is None else size
    r = float(np.max(np.abs(points)))
    if _support_for(points) > limit:
        # Shrinking keeps the shape and the whole path; cropping would cut
        # off part of the exposure and bias the kernel's centre.
        points = points * (((limit - 1) / 2) / r)
    k = _splat(points, _support_for(points))
    if size is None:
        return _normalized(_trim(k))
    return _fit(k, size)


def trajectory_kernel(
    rng,
    size=None,
    max_size=31,
    length=None,
    anxiety=None,
    jerk_prob=None,
    num_steps=256,
):
    """Random camera-shake kernel (Boracchi & Foi 2012 trajectory model).

    A point starts at the origin with a random heading and moves `num_steps`
    steps. Each step its velocity (momentum) is perturbed by complex Gaussian
    noise and a centripetal pull towards the origin, both scaled by
    `anxiety`; with probability `jerk_prob` an impulsive jerk roughly reverses
    it. As in Boracchi & Foi the direction is renormalized each step; unlike
    their constant speed, the speed follows a mild log-normal random walk, so
    slow passages collect more light, as in real shake kernels. The path is
    scaled to total length `length` (pixels), densely resampled (at least 4
    samples per pixel) and rasterized with bilinear splatting (sub-pixel
    accurate). Samples are equally weighted in time, the kernel's centre of
    mass sits exactly on the centre pixel, and a path too large for
    `max_size` (or `size`) is shrunk to fit rather than cropped.

    Args:
      rng: `np.random.Generator`.
      size: odd output size, or None for the smallest odd square holding the
        path (at most `max_size`).
      max_size: odd upper bound on the size when `size` is None.
      length: path length in pixels; default uniform in [2, 1.5 * max_size].
      anxiety: shake intensity in [0, 1]; default uniform in [0, 1].
      jerk_prob: per-step probability of an impulsive jerk; default uniform in
        [0, 0.012] (so 0 to about 3 jerks per path).
      num_steps: number of simulated steps.

    Returns:
      float32 (n, n) kernel, n odd.
    """
    _check_size(size)
    _check_size(max_size)
    if length is None:
        length = rng.uniform(2.0, 1.5 * max_size)
    if anxiety is None:
        anxiety = rng.uniform(0.0, 1.0)
    if jerk_prob is None:
        jerk_prob = rng.uniform(0.0, 0.012)
    if length < 0:
        raise ValueError(f"length must be >= 0; got {length}")
    n = int(num_steps)
    # Strengths per step, scaled with n so the path's shape does not depend
    # on the number of steps: the noise's total heading diffusion is about
    # 3 * anxiety rad, and the pull (position is in steps, up to n) turns
    # the heading by at most about 6 * anxiety rad over the path.
    turn = 3.0 * anxiety / math.sqrt(n)
    pull = 6.0 * anxiety / n**2
    noise = rng.standard_normal((n, 2)) @ np.array([1.0, 1j])
    jerks = rng.random(n) < jerk_prob
    jerk_turn = rng.uniform(-0.5, 0.5, n)
    log_speed = np.cumsum(rng.normal(0.0, 0.05 * anxiety, n))
    speed = np.exp(log_speed - log_speed.max())
    v = np.exp(1j * rng.uniform(0, 2 * np.pi))
    x = 0j
    path = np.empty(n + 1, np.complex128)
    path[0] = x
    for t in range(n):
        dv = turn * noise[t] - pull * x
        if jerks[t]:
            dv += 2.0 * v * np.exp(1j * (np.pi + jerk_turn[t]))
        v = v + dv
        v = v / (abs(v) + 1e-12)
        x = x + speed[t] * v
        path[t + 1] = x
    seg = np.abs(np.diff(path))
    total = seg.sum()
    if length == 0 or total == 0:
        return _fit(_delta(), size)
    path *= length / total
    seg *= length / total
    # Resample uniformly in time: step t lasts one time unit whatever its
    # length, so each step gets the same number of samples (dense enough for
    # the longest step) and slow steps deposit more light per pixel.
    k_sub = max(1, int(math.ceil(4.0 * seg.max())))
    a = (np.arange(k_sub) + 0.5) / k_sub  # midpoints, as in linear_motion_kernel
    pts = (path[:-1, None] + (path[1:] - path[:-1])[:, None] * a[None, :]).ravel()
    pts = pts - pts.mean()
    # Complex plane has y up; the image has y down.
    points = np.stack([pts.real, -pts.imag], axis=1)
    return _rasterize_path(points, size, max_size)


def linear_motion_kernel(length, angle_deg, size=None):
    """Straight motion blur of `length` pixels at `angle_deg`.

    The segment runs from -(length - 1)/2 to +(length - 1)/2 along the motion
    direction through the centre pixel and is rasterized with bilinear
    splatting of densely and uniformly spaced samples (sub-pixel
    anti-aliasing). So for an odd integer length at 0 degrees the kernel is
    exactly `length` pixels of the centre row: interior ones 1/(length-1),
    the two ends half that (a trapezoid); a length <= 1 is the identity.

    Args:
      length: extent of the blur in pixels (>= 0).
      angle_deg: direction, degrees counter-clockwise from horizontal.
      size: odd output size; default is the smallest one holding the line.
    """
    _check_size(size)
    if length < 0:
        raise ValueError(f"length must be >= 0; got {length}")
    half = max(0.0, (length - 1.0) / 2.0)
    if half == 0:
        return _fit(_delta(), size)
    # Midpoints of 16 equal pieces per pixel: the bilinear weights are linear
    # within each piece, so the midpoint rule integrates them exactly.
    m = int(math.ceil(2 * half * 16))
    t = -half + (np.arange(m) + 0.5) * (2 * half / m)
    a = math.radians(angle_deg)
    points = np.stack([t * math.cos(a), -t * math.sin(a)], axis=1)
    # Round-off below 1e-9 would otherwise spill weight 1e-16 one pixel out.
    points = np.round(points, 9)
    # An explicit `size` smaller than the line crops it (a truncated motion),
    # unlike trajectories, which are shrunk: here the length is the request.
    return _fit(_trim(_splat(points, _support_for(points))), size)


def gaussian_kernel(sigma_x, sigma_y=None, theta=0.0, size=None):
    """Sampled 2-D Gaussian, normalized to sum 1.

    The density exp(-u^2 / 2 sigma_x^2 - w^2 / 2 sigma_y^2) is evaluated at
    pixel centres, with (u, w) the coordinates rotated by `theta` degrees
    counter-clockwise (so `sigma_x` lies along `theta`). For sigma >= 1 and
    a support of at least +-4 sigma the variance along each axis is sigma^2
    to within 1%; the default +-3 sigma support trims it by about 3%.

    Args:
      sigma_x: standard deviation along `theta`, pixels (>= 0; 0 = identity).
      sigma_y: standard deviation across `theta`; default `sigma_x`.
      theta: orientation in degrees.
      size: odd size; default 2 * ceil(3 * max(sigma)) + 1.
    """
    _check_size(size)
    sigma_y = sigma_x if sigma_y is None else sigma_y
    if sigma_x < 0 or sigma_y < 0:
        raise ValueError(f"sigma_x and sigma_y must be >= 0; got {sigma_x}, {sigma_y}")
    smax = max(sigma_x, sigma_y)
    if smax == 0:
        return _fit(_delta(), size)
    if size is None:
        size = 2 * int(math.ceil(3 * smax)) + 1
    # A zero sigma would divide by zero; a tiny one is a line of width 0.
    sx = max(sigma_x, 1e-3)
    sy = max(sigma_y, 1e-3)
    c = size // 2
    yy, xx = np.mgrid[-c:c + 1, -c:c + 1].astype(np.float64)
    a = math.radians(theta)
    u = xx * math.cos(a) - yy * math.sin(a)
    w = xx * math.sin(a) + yy * math.cos(a)
    return _normalized(np.exp(-0.5 * ((u / sx) ** 2 + (w / sy) ** 2)))


def defocus_kernel(radius, soft_edge=0.0, size=None):
    """Uniform disk of `radius` pixels (thin-lens defocus), anti-aliased.

    Each pixel's weight is the fraction of its area inside the disk,
    estimated on an 8 x 8 sub-pixel grid, so the unnormalized kernel sums to
    about pi * radius^2. With `soft_edge` > 0 the disk's edge falls linearly
    from 1 to 0 over that width, centred on `radius` (area still about
    pi * radius^2).

    Args:
      radius: disk radius, pixels (>= 0; below about 0.3 it is the identity).
      soft_edge: width of the linear fall-off, pixels (>= 0).
      size: odd size; default the smallest holding the disk.
    """
    _check_size(size)
    if radius < 0 or soft_edge < 0:
        raise ValueError(f"radius and soft_edge must be >= 0; got {radius}, {soft_edge}")
    outer = radius + soft_edge / 2
    if size is None:
        size = 2 * int(math.ceil(outer - 0.5 + 1e-9)) + 1 if outer > 0.5 else 1
    c = size // 2
    ss = 8
    off = (np.arange(ss) + 0.5) / ss - 0.5
    g = (np.arange(-c, c + 1)[:, None] + off[None, :]).ravel()
    d = np.hypot(g[:, None], g[None, :])
    if soft_edge > 0:
        inside = np.clip((outer - d) / soft_edge, 0.0, 1.0)
    else:
        inside = (d <= radius).astype(np.float64)
    k = inside.reshape(size, ss, size, ss).mean(axis=(1, 3))
    if not k.sum() > 0:
        return _fit(_delta(), size)
    return _normalized(k)


def _pad_odd_square(k):
    h, w = k.shape
    n = max(h, w)
    n += 1 - n % 2
    top = (n - h) // 2
    left = (n - w) // 2
    return np.pad(k, ((top, n - h - top), (left, n - w - left)))


def _checked(k, where):
    k = np.asarray(k, dtype=np.float64)
    if k.ndim == 3 and k.shape[2] in (3, 4):
        k = k[..., :3].mean(axis=2)
    if k.ndim != 2 or k.size == 0:
        raise ValueError(f"{where} must be a non-empty 2-D kernel; got shape {k.shape}")
    if not np.all(np.isfinite(k)):
        raise ValueError(f"{where} must be finite; got NaN or inf values")
    if k.min() < 0:
        raise ValueError(f"{where} must be non-negative; got minimum {k.min():.3g}")
    if not k.sum() > 0:
        raise ValueError(f"{where} must have a positive sum; got {k.sum():.3g}")
    return _normalized(_pad_odd_square(k))


def _read_png(path):
    k = cv2.imread(os.fspath(path), cv2.IMREAD_UNCHANGED)
    if k is None:
        raise ValueError(f"kernel file {os.fspath(path)!r} must be a readable image; got unreadable data")
    return _checked(k, f"kernel file {os.fspath(path)!r}")


def load_kernels(path):
    """Loads real blur kernels as normalized float32 arrays.

    Args:
      path: a `.npz` file (every array in it, in stored order), a `.png` file
        (8- or 16-bit, grey or colour averaged to grey; any scale, e.g.
        peak-normalized), or a folder of `.png` files (sorted by name).

    Returns:
      list of float32 kernels, each padded with zeros to an odd square (an
      even kernel's centre stays half a pixel off) and normalized to sum 1.

    Raises:
      ValueError: one line naming the file, if it is missing, unreadable,
        empty, negative, non-finite or not 2-D.
    """
    p = os.fspath(path)
    if not os.path.exists(p):
        raise ValueError(f"path must be an existing .npz/.png file or folder of .png files; got {p!r} (not found)")
    if os.path.isdir(p):
        names = sorted(f for f in os.listdir(p) if f.lower().endswith(".png"))
        if not names:
            raise ValueError(f"path must hold at least one .png kernel; got folder {p!r} with none")
        return [_read_png(os.path.join(p, f)) for f in names]
    ext = os.path.splitext(p)[1].lower()
    if ext == ".png":
        return [_read_png(p)]
    if ext != ".npz":
        raise ValueError(f"path must end in .npz or .png; got {p!r}")
    try:
        with np.load(p, allow_pickle=False) as data:
            arrays = [(name, data[name]) for name in data.files]
    except Exception as e:  # zip/format errors come in many types
        raise ValueError(f"kernel file {p!r} must be a readable .npz; got {type(e).__name__}") from None
    if not arrays:
        raise ValueError(f"kernel file {p!r} must hold at least one array; got none")
    return [_checked(a, f"kernel {name!r} in {p!r}") for name, a in arrays]


def choice_probs(weights, choices, name, error=ValueError):
    """`weights` (mapping choice -> weight, need not be normalized; absent
    choices weigh 0) as probabilities over `choices`, in their order, for
    `rng.choice`. An unknown key or weights that are negative or sum to 0
    raise `error` naming the argument `name`."""
    unknown = sorted(set(weights) - set(choices))
    if unknown:
        raise error(f"{name} keys must be in {list(choices)}; got {unknown}")
    p = np.array([float(weights.get(c, 0.0)) for c in choices])
    if np.any(p < 0) or not p.sum() > 0:
        raise error(f"{name} must be non-negative weights with a positive sum; got {dict(weights)}")
    return p / p.sum()


def random_kernel(rng, max_size=31, probs=None, size_bias=3.0):
    """One kernel from the default mixture, with random parameters.

    A blur extent s in [3, max_size] is drawn with density falling towards
    large s, s = 3 + (max_size - 3) u^size_bias with u uniform (median
    3 + (max_size - 3) / 2^size_bias: about 6.5 px for the defaults), then a
    type from `probs`, mapped to parameters:

    * trajectory: path length 1.3 s, random shake (`trajectory_kernel`),
      shrunk to fit `max_size`; occasionally a long path is drawn so the
      largest sizes stay covered.
    * linear: length s, uniform angle.
    * gaussian: sigma_x = s / 6, sigma_y = sigma_x * U(0.3, 1), uniform
      orientation (so 3 sigma spans s).
    * defocus: radius s / 2 * U(0.4, 0.7), soft edge U(0, 1) pixel (a disk
      of diameter s is much stronger than a motion of length s, hence the
      smaller scale).

    Args:
      rng: `np.random.Generator`.
      max_size: odd upper bound on the kernel size.
      probs: mapping kernel type -> probability (need not be normalized);
        default `DEFAULT_KERNEL_PROBS`. Types: trajectory, linear, gaussian,
        defocus.
      size_bias: > 0; 1 draws s uniformly, larger values favour small blur.
    """
    _check_size(max_size)
    if not size_bias > 0:
        raise ValueError(f"size_bias must be > 0; got {size_bias!r}")
    if max_size < 3:
        return _delta(max_size)
    p = choice_probs(DEFAULT_KERNEL_PROBS if probs is None else probs, KERNEL_TYPES, "probs")
    kind = KERNEL_TYPES[rng.choice(len(KERNEL_TYPES), p=p)]
    s = 3 + (max_size - 3) * rng.random() ** size_bias
    if kind == "trajectory":
        # Curly paths span less than their length; 1 draw in 8 is a long
        # path so kernels of the full `max_size` keep appearing.
        scale = 2.5 if rng.random() < 0.125 else 1.3
        return trajectory_kernel(rng, max_size=max_size, length=scale * s)
    if kind == "linear":
        k = linear_motion_kernel(min(s, max_size), rng.uniform(0, 180))
    elif kind == "gaussian":
        sx = s / 6
        k = gaussian_kernel(sx, sx * rng.uniform(0.3, 1.0), rng.uniform(0, 180))
    else:
        k = defocus_kernel(s / 2 * rng.uniform(0.4, 0.7), rng.uniform(0.0, 1.0))
    return _fit(k, max_size) if k.shape[0] > max_size else k
