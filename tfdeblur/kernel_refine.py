"""Kernel refinement: a network's restoration turned into a blur kernel, then
non-blind deconvolution with it (for uniform blur: camera shake of a still
scene).

A blind network trained for a few thousand steps removes part of a large
camera-shake blur and loses texture. Where the blur is *uniform* (one kernel
for the whole image: the Levin pairs, CBSD68 x Levin kernels, a tripod-free
photo of a still scene), the network's output is sharp enough at strong
edges to *estimate* that kernel, and Richardson-Lucy with the estimated
kernel then restores from the blurry photo itself what the network could
not (texture at all orientations). The steps, in linear light (the photo's
values ** `gamma`, where blur happens):

1. `estimate_kernel(latent, blurry)`: least squares in the gradient domain,
   min_k sum_d ||(d latent) * k - d blurry||^2 + reg ||k||^2, solved in the
   Fourier domain, using only the strongest `edges` share of the latent's
   gradients (strong edges are what a partly restored image gets right: the
   edge selection of Cho & Lee, "Fast motion deblurring", SIGGRAPH Asia
   2009); then the `size` x `size` centre, negatives and values under
   `floor` x the peak set to 0, only the heaviest 8-connected component
   kept, normalized to sum 1.
2. `richardson_lucy(blurry, kernel, iters, start=restored)` per channel,
   reflected borders: started from the network's output, not from the
   blurry image, so the iterations add to the network's restoration what
   the kernel says is missing rather than rebuild it (tuning set, MTWDN:
   +2.29 dB against +1.85 started from the blurry image, the network alone
   +1.60).
3. `rounds` > 1 re-estimates the kernel from that result (sharper than
   the network's output, so a better estimate) and runs step 2 again, still
   from the network's output.

Each Richardson-Lucy run stops early once the estimate re-blurred matches
the photo to within `DISCREPANCY` x its noise variance (`noise_sigma`,
Immerkaer's estimator, at least the 8-bit quantization step): past that it
only fits noise, which on a nearly sharp photo costs more than the
deconvolution gains.

Not for non-uniform blur (moving objects, rotation, depth-dependent shake:
GoPro-style dynamic scenes), where one kernel is wrong almost everywhere,
nor for noisy photos, whose noise Richardson-Lucy fits, so guarded
(`refine(guard=True)`, the default; `deblur` and `tfdeblur.deblur` refine
by default since 2026-11-28, `Deblurrer(kernel_refine="auto")`; `eval`
and `Deblurrer` only when asked): the network's output comes back
unchanged when the photo's noise is at least `NOISE_LIMIT`, when the
estimated kernel makes part of the photo fit worse than no blur at all
(`local_fit` over `LOCAL_FIT_MAX`: non-uniform blur), or when the refined
image is closer to the blurry photo than the network's output was
(`MIN_AWAY`: a kernel estimated too small, which undoes the network's
work). Measured in `benchmarks/kernel_refine.py` (docs/benchmarks.md).

numpy and OpenCV only.
"""
import cv2
import numpy as np

KERNEL_SIZE = 41  # odd; the largest blur it can estimate, pixels
EDGES = 0.05  # share of the latent's pixels (strongest gradients) the estimate uses
REG = 0.1  # Tikhonov weight, relative to the mean gradient power
FLOOR = 0.05  # kernel values under this fraction of the peak are set to 0
ITERS = 20  # Richardson-Lucy iterations
# Chosen on the tuning set only (benchmarks/kernel_refine.py `tune`, MTWDN,
# network alone +1.60 dB): edges 15 % / reg 0.01: 1 round +2.29, 2 rounds
# +2.55; edges 5 % / reg 0.1: 2 rounds +2.94, 3 rounds +3.06, 4 +3.11,
# 5 +3.10 (each round costs one more deconvolution).
ROUNDS = 3
GAMMA = 2.2
BORDER = 20  # pixels of each side the kernel estimate ignores (reflected borders)
MIN_SIDE = 2 * KERNEL_SIZE + 2 * BORDER  # the smallest image side `refine` takes at the default size
# RL stops when the re-blur residual's mean square is under DISCREPANCY x the
# noise variance (Morozov's discrepancy principle; > 1 for the estimate's
# uncertainty). Without it a nearly sharp noisy image lost 12-15 dB to the
# noise RL fitted (the card's synthetic val_010: network 42.4 dB, refined
# 27.3; with 1.0 30.1, 1.5 34.4, 2.0 40.3); the tuning set, which holds
# no nearly sharp image, pays for it: 3 rounds +3.06 dB without, +2.98 at
# 1.0, +2.95 at 1.5, +2.87 at 2.0, +2.70 at 3.0.
DISCREPANCY = 2.0
QUANT_SIGMA = 1.0 / 255.0 / np.sqrt(12.0)  # 8-bit quantization noise, the floor of the noise estimate
# The guard (`refine(guard=True)`, the default): the network's output is kept
# unchanged when the photo is noisier than NOISE_LIMIT (display values,
# `noise_sigma`) or when the refinement ends closer to the blurry photo than
# the network's output was (rms distance ratio under MIN_AWAY). Measured on
# pairs with a camera pipeline (benchmarks/kernel_refine.py `photos_uniform`,
# `photos_shake`: Poisson-Gaussian noise, JPEG, clipped highlights; MTWDN,
# 32 pairs each): unguarded, refinement lost 1.1 and 0.7 dB to the network
# (22 and 25 of 32 pairs worse; up to -9 dB), noise of 3-6/255 being
# fitted; with the guard -0.05 and +0.01. A kernel estimated too small
# (the network's output still blurry, as on GoPro frames, or a delta:
# Richardson-Lucy with a delta returns the blurry photo) pulls the result
# back towards the blurry photo: the GoPro dev pairs all end there (ratio
# 0.20-0.96), the Levin pairs never (1.02-1.84).
NOISE_LIMIT = 2.0 / 255.0
MIN_AWAY = 1.0
# The guard's third test (`local_fit`): one kernel must explain the blur in
# every part of the photo. The restoration re-blurred by the estimated kernel
# must not fit any cell of a LOCAL_FIT_TILES x LOCAL_FIT_TILES grid more than
# LOCAL_FIT_MAX times worse than the restoration itself (no blur at all)
# fits it: a moving object or a rotating camera leaves cells the kernel makes
# worse. Checked on each round's kernel before its deconvolution (a kernel
# estimate costs little; a deconvolution of a 1280x720 frame about a second).
# MTWDN, bf16 (deblur's default), 2026-11-28: the first two tests let 1 of
# the 11 GoPro dev pairs through (distance ratio 1.05, -2.9 dB; 0 of 11 in
# fp32) and 2-7 of 32 on the photos_* sets (-0.03 to -0.10 dB a set); with
# this test added, measured on the final kernel: 0 of 11, and -0.03..+0.01
# dB on the photos_* sets. The 1.2 was read off the tuning set and the
# photos_* sets (tune: 1.0 +0.82 dB over the network, 1.2 +1.08, 1.5 +1.08,
# none +1.04; photos_uniform 1.0 -0.02, 1.2 -0.01, 1.5 -0.06).
LOCAL_FIT_MAX = 1.2
LOCAL_FIT_TILES = 3


def _check_plane(arr, name):
    arr = np.asarray(arr, np.float64)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (gray) array; got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} has NaN or infinite values")
    return arr


def _gradients(img):
    gx = np.zeros_like(img)
    gy = np.zeros_like(img)
    gx[:, :-1] = img[:, 1:] - img[:, :-1]
    gy[:-1, :] = img[1:, :] - img[:-1, :]
    return gx, gy


def estimate_kernel(latent, blurry, size=KERNEL_SIZE, edges=EDGES, reg=REG, floor=FLOOR, border=BORDER):
    """The uniform blur kernel that takes `latent` (a sharp or partly
    restored image) to `blurry`: gray 2-D float arrays of one shape, linear
    light. Returns a (size, size) float64 kernel, non-negative, summing to 1,
    centred as `convolve` applies it (module docstring, step 1)."""
    latent = _check_plane(latent, "latent")
    blurry = _check_plane(blurry, "blurry")
    if latent.shape != blurry.shape:
        raise ValueError(f"latent and blurry must have the same shape; got {latent.shape} and {blurry.shape}")
    if int(size) != size or size < 3 or size % 2 == 0:
        raise ValueError(f"size must be an odd integer >= 3; got {size}")
    if not 0 < edges <= 1:
        raise ValueError(f"edges must be in (0, 1]; got {edges}")
    h, w = latent.shape
    if min(h, w) - 2 * border < 2 * size:
        raise ValueError(f"a {w}x{h} image is too small to estimate a {size}x{size} kernel "
                         f"(needs at least {2 * size + 2 * border} px a side)")
    inner = (slice(border, h - border), slice(border, w - border))
    grads = [g[inner] for g in _gradients(latent)]
    if edges < 1:
        magnitude = np.hypot(*grads)
        keep = magnitude >= np.quantile(magnitude, 1.0 - edges)
        grads = [g * keep for g in grads]
    num = 0.0
    den = 0.0
    for gl, gb in zip(grads, (g[inner] for g in _gradients(blurry))):
        fl, fb = np.fft.rfft2(gl), np.fft.rfft2(gb)
        num = num + np.conj(fl) * fb
        den = den + np.abs(fl) ** 2
    if not np.any(den > 0):
        raise ValueError("latent is flat: no gradients to estimate a kernel from")
    full = np.fft.irfft2(num / (den + reg * den.mean()), s=grads[0].shape)
    full = np.fft.fftshift(full)
    cy, cx, r = full.shape[0] // 2, full.shape[1] // 2, size // 2
    k = np.maximum(full[cy - r: cy + r + 1, cx - r: cx + r + 1], 0.0)
    if k.max() <= 0:
        k = np.zeros((size, size))
        k[r, r] = 1.0
        return k
    k[k < floor * k.max()] = 0.0
    count, labels, _, _ = cv2.connectedComponentsWithStats((k > 0).astype(np.uint8), connectivity=8)
    if count > 2:
        mass = np.bincount(labels.ravel(), weights=k.ravel(), minlength=count)
        mass[0] = 0.0
        k[labels != int(np.argmax(mass))] = 0.0
    # The estimate relates latent to blurry by correlation of gradients: the
    # kernel as `convolve` applies it.
    return k / k.sum()


def trim(kernel):
    """`kernel` without the rows and columns of zeros at its edges, cut
    symmetrically about its middle element so that `convolve` gives the same
    image (the estimates are 41x41 with most of the frame 0; a smaller kernel
    convolves faster)."""
    kernel = np.asarray(kernel, np.float64)
    rows, cols = np.nonzero(kernel)
    if rows.size == 0:
        return kernel
    cy, cx = kernel.shape[0] // 2, kernel.shape[1] // 2
    ry = max(cy - rows.min(), rows.max() - cy)
    rx = max(cx - cols.min(), cols.max() - cx)
    return kernel[cy - ry: cy + ry + 1, cx - rx: cx + rx + 1]


def convolve(img, kernel):
    """True 2-D convolution of a (H, W) or (H, W, C) float image, centred on
    the kernel's middle element, reflected borders (as
    `tfdeblur.datasets.blur_image` blurs)."""
    flipped = np.ascontiguousarray(np.asarray(kernel, np.float64)[::-1, ::-1])
    return cv2.filter2D(np.asarray(img, np.float64), -1, flipped, borderType=cv2.BORDER_REFLECT)


def richardson_lucy(blurry, kernel, iters=ITERS, start=None, stop=None):
    """`iters` Richardson-Lucy iterations, x <- x * K^T(y / K x), from
    `start` (default: the blurry image); (H, W) or (H, W, C) float,
    non-negative. `stop(K x)`, if given, is asked before each iteration and
    ends them when it returns True (`refine`: the discrepancy principle)."""
    if int(iters) != iters or iters < 0:
        raise ValueError(f"iters must be a non-negative integer; got {iters}")
    y = np.maximum(np.asarray(blurry, np.float64), 0.0)
    kernel = trim(kernel) if np.asarray(kernel).shape[0] % 2 and np.asarray(kernel).shape[1] % 2 else kernel
    adjoint = np.asarray(kernel, np.float64)[::-1, ::-1]
    if start is None:
        x = y.copy()
    else:
        x = np.maximum(np.asarray(start, np.float64), 1e-4)  # RL cannot leave an exact 0
        if x.shape != y.shape:
            raise ValueError(f"start must have the blurry image's shape {y.shape}; got {x.shape}")
    for _ in range(int(iters)):
        blurred = convolve(x, kernel)
        if stop is not None and stop(blurred):
            break
        x = x * convolve(y / np.maximum(blurred, 1e-6), adjoint)
    return x


def noise_sigma(img):
    """Standard deviation of white Gaussian noise in a gray image, by
    Immerkaer's estimator ("Fast noise variance estimation", CVIU 1996): the
    mean absolute response to the difference of two Laplacians, which
    cancels smooth content, times sqrt(pi / 2) / 6."""
    img = _check_plane(img, "img")
    if min(img.shape) < 3:
        raise ValueError(f"img must be at least 3x3 to estimate its noise; got {img.shape}")
    mask = np.array([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]])
    response = cv2.filter2D(img, -1, mask, borderType=cv2.BORDER_REFLECT)[1:-1, 1:-1]
    return float(np.sqrt(np.pi / 2) * np.mean(np.abs(response)) / 6.0)


def _luma(rgb):
    return rgb @ np.array([0.299, 0.587, 0.114]) if rgb.ndim == 3 else rgb


def refine(blurry, restored, size=KERNEL_SIZE, iters=ITERS, rounds=ROUNDS, gamma=GAMMA, edges=EDGES,
           reg=REG, floor=FLOOR, discrepancy=True, guard=True, return_kernel=False, return_info=False):
    """Kernel refinement of a restoration (module docstring): `blurry` and
    `restored` are (H, W, 3) or (H, W) floats in [0, 1], display-encoded
    (`gamma`: the encoding's exponent; 1 for linear data). Returns the
    refined image, same shape, clipped to [0, 1] (and the last kernel with
    `return_kernel`: None when none was estimated).

    `guard` (default): return `restored` unchanged where refinement is
    likely to hurt (`NOISE_LIMIT`, `LOCAL_FIT_MAX`, `MIN_AWAY`, `accepts`).
    `return_info` adds a dict: `applied` (bool), `reason` (why not, or ""),
    `noise` (the photo's noise sigma, display values), `local_fit` (the
    worst `local_fit` of the kernels estimated; None when none was),
    `away` (rms distance of the refined image to the blurry photo over the
    restoration's; None when not computed) and `kernel`."""
    blurry = np.asarray(blurry, np.float64)
    restored = np.asarray(restored, np.float64)
    if blurry.shape != restored.shape:
        raise ValueError(f"blurry and restored must have the same shape; got {blurry.shape} and {restored.shape}")
    if int(rounds) != rounds or rounds < 1:
        raise ValueError(f"rounds must be a positive integer; got {rounds}")
    y = np.power(np.clip(blurry, 0.0, 1.0), gamma)
    latent = np.power(np.clip(restored, 0.0, 1.0), gamma)
    start = latent
    # The discrepancy principle: once the estimate re-blurred matches the
    # photo to within its noise (display values, where the noise is; the
    # quantization step at least), further iterations fit the noise.
    noise = noise_sigma(_luma(np.clip(blurry, 0.0, 1.0)))
    info = {"applied": False, "reason": "", "noise": noise, "away": None, "local_fit": None, "kernel": None}

    def result(image):
        image = np.clip(image, 0.0, 1.0)
        extra = ((info["kernel"],) if return_kernel else ()) + ((info,) if return_info else ())
        return (image,) + extra if extra else image

    if guard and noise >= NOISE_LIMIT:
        info["reason"] = f"noise sigma {noise * 255:.1f}/255 is at least {NOISE_LIMIT * 255:.1f}/255"
        return result(restored)
    sigma = max(noise, QUANT_SIGMA)
    threshold = DISCREPANCY * sigma ** 2
    inner = (slice(BORDER, -BORDER), slice(BORDER, -BORDER))

    def fits(reblurred):
        encoded = np.power(np.clip(reblurred[inner], 0.0, 1.0), 1.0 / gamma)
        return float(np.mean((encoded - blurry[inner]) ** 2)) <= threshold

    for i in range(int(rounds)):
        kernel = estimate_kernel(_luma(latent), _luma(y), size=size, edges=edges, reg=reg, floor=floor)
        fit = local_fit(_luma(start), _luma(y), kernel)
        info["local_fit"] = max(info["local_fit"] or 0.0, fit)
        if guard and fit > LOCAL_FIT_MAX:
            info["kernel"] = kernel
            info["reason"] = (f"one kernel does not explain the blur everywhere (non-uniform blur: re-blurred by it, "
                              f"the restoration fits part of the photo {fit:.2f}x worse than unblurred; limit "
                              f"{LOCAL_FIT_MAX}" + (f", round {i + 1} of {rounds})" if rounds > 1 else ")"))
            return result(restored)
        latent = np.clip(richardson_lucy(y, kernel, iters, start=start, stop=fits if discrepancy else None), 0.0, 1.0)
        out = np.power(latent, 1.0 / gamma)
        info["kernel"] = kernel
        info["away"] = away_ratio(blurry, restored, out)
        # Under MIN_AWAY after round 1, the last round was too on every
        # benchmark pair measured (GoPro dev, photos_wide/objects: the later
        # rounds move further back; 2 of the 23 real_blur_only photos came
        # back over it): stop there and save the other rounds' time.
        if guard and (i == 0 or i == rounds - 1) and not accepts(noise, info["away"]):
            info["reason"] = (f"the refinement ends closer to the blurry photo than the restoration "
                              f"(distance ratio {info['away']:.2f} < {MIN_AWAY}"
                              + (f", after round 1 of {rounds})" if i < rounds - 1 else ")"))
            return result(restored)
    info["applied"] = True
    return result(out)


def away_ratio(blurry, restored, refined):
    """rms(refined - blurry) / rms(restored - blurry): under 1 when the
    refinement undid part of the restoration (`MIN_AWAY`); inf when the
    restoration equals the blurry photo and the refinement does not."""
    blurry = np.asarray(blurry, np.float64)
    num = float(np.sqrt(np.mean((np.asarray(refined, np.float64) - blurry) ** 2)))
    den = float(np.sqrt(np.mean((np.asarray(restored, np.float64) - blurry) ** 2)))
    if den > 0:
        return num / den
    return float("inf") if num > 0 else 1.0


def local_fit(latent, blurry, kernel, tiles=LOCAL_FIT_TILES, border=BORDER):
    """How well one kernel explains the blur everywhere: over a `tiles` x
    `tiles` grid of the interior (`border` px of each side left out), the
    worst cell's ratio mean((latent * kernel - blurry)^2) / mean((latent -
    blurry)^2), each with the 8-bit quantization variance added (a cell
    with nothing to fit reads 1). Gray 2-D float arrays of one shape, linear
    light. Under 1 everywhere for uniform blur and a good estimate; over 1
    in a cell the kernel makes worse (`LOCAL_FIT_MAX`)."""
    latent = _check_plane(latent, "latent")
    blurry = _check_plane(blurry, "blurry")
    if latent.shape != blurry.shape:
        raise ValueError(f"latent and blurry must have the same shape; got {latent.shape} and {blurry.shape}")
    if int(tiles) != tiles or tiles < 1:
        raise ValueError(f"tiles must be a positive integer; got {tiles}")
    h, w = latent.shape
    if min(h, w) - 2 * border < tiles:
        raise ValueError(f"a {w}x{h} image is too small for a {tiles}x{tiles} grid inside a {border} px border")
    inner = (slice(border, h - border), slice(border, w - border))
    before = (latent - blurry)[inner] ** 2
    after = (convolve(latent, trim(kernel)) - blurry)[inner] ** 2
    ih, iw = before.shape
    floor = QUANT_SIGMA ** 2
    worst = 0.0
    for i in range(int(tiles)):
        for j in range(int(tiles)):
            cell = (slice(i * ih // tiles, (i + 1) * ih // tiles), slice(j * iw // tiles, (j + 1) * iw // tiles))
            worst = max(worst, (float(after[cell].mean()) + floor) / (float(before[cell].mean()) + floor))
    return worst


def accepts(noise, away):
    """The guard's decision (`NOISE_LIMIT`, `MIN_AWAY`): keep a refinement
    of a photo with this noise sigma (display values) and `away_ratio`."""
    return noise < NOISE_LIMIT and away >= MIN_AWAY
