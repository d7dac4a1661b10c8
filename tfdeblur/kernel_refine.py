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
   kept, normalized to sum 1. The first estimate is from the network's
   output.
2. `rounds` - 1 times: `l0_latent(blurry, kernel)`, the image of flat
   regions and sharp steps that the current kernel and an L0 prior on the
   gradients explain the photo with (Xu, Zheng & Jia, "Unnatural L0 sparse
   representation for natural image deblurring", CVPR 2013), then step 1
   again from it. The network's output mixes the true kernel with ghosts
   (its residual blur and its mirror image: a streak estimated as an X);
   each L0 round sharpens the edges the next estimate reads, and the
   ghosts fade (tuning set, MTWDN leg 16, kernel similarity 0.83 from the
   network's output with 3 rounds of the former Richardson-Lucy
   re-estimation, 0.91 after 16 L0 rounds). The rounds work on the luma
   of at most an `ESTIMATE_SIDE` square, the one with the most edges, and
   each round's kernel is kept (`anchored`) within `ANCHOR_SLACK` px of
   the first kernel's `centroid`: a kernel and a latent drifting together
   explain the photo as well, and unanchored some drifted 5-8 px. The
   rounds run twice (`l0_rounds`; `pyramid_rounds`, coarse to fine: half
   of them at half size): at full size alone a long kernel the network's
   output reads poorly can shrink towards a dot. Both run from the
   network's output and, as `RESTARTS`, from copies of it with a little
   seeded noise (the rounds are bistable: a start that differs by the
   network's rounding can end on the true kernel or on a dot). The
   candidates are ranked by `l0_energy` (how well their L0 latent explains
   the square), the single-scale kernel of the output itself first unless
   another's energy is clearly lower (`energy_draw`); the first the guard
   accepts is used.
3. `richardson_lucy(blurry, kernel, iters, start=restored)` per channel,
   reflected borders: started from the network's output, not from the
   blurry image, so the iterations add to the network's restoration what
   the kernel says is missing rather than rebuild it (tuning set, MTWDN:
   +2.29 dB against +1.85 started from the blurry image, the network alone
   +1.60).
4. Alignment (`align`, since 2026-11-28): the L0 rounds can move the
   kernel (a latent shifted by d and a kernel shifted by -d explain the
   photo equally well), and the deconvolution then moves the image by as
   much. The deconvolved image's offset from the network's output
   (`image_offset`, to a fraction of a pixel) moves the kernel back
   (`shift_kernel`) before the photo is deconvolved (tuning set, MTWDN
   leg 16, unguarded: +3.24 -> +3.75 dB; 11 of 32 pairs were off by half a
   pixel or more, 5 by a pixel or more, one by 4 px). The offset is read
   on a deconvolution of the estimation square alone; the whole photo is
   deconvolved once, with the kernel in place.

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
unchanged when the photo's noise is at least `NOISE_LIMIT`, when it
shows JPEG's 8x8 blocks (`blockiness` at least `JPEG_LIMIT`: compression
error, which the noise estimate does not see and deconvolution
amplifies), when the first or the last estimated kernel makes part of the photo fit worse than
no blur at all (`local_fit` over `LOCAL_FIT_FIRST` for the first kernel,
`LOCAL_FIT_MAX` for the last: non-uniform blur), or
when the refined image is closer to the blurry photo than the network's
output was (`MIN_AWAY`: a kernel estimated too small, which undoes the
network's work); the last two are checked for each candidate kernel in
turn (step 2). Measured in `benchmarks/kernel_refine.py`
(docs/benchmarks.md).

numpy and OpenCV only.
"""
import os
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np

KERNEL_SIZE = 41  # odd; the largest blur it can estimate, pixels
EDGES = 0.05  # share of the latent's pixels (strongest gradients) the estimate uses
REG = 0.1  # Tikhonov weight, relative to the mean gradient power
FLOOR = 0.05  # kernel values under this fraction of the peak are set to 0
ITERS = 40  # Richardson-Lucy iterations (at most: the discrepancy stop below may end them sooner)
# The guard's distance ratio (MIN_AWAY) and alignment's offset are read
# after this many iterations, where they were set; more iterations move any
# deconvolution further from the blurry photo, a wrong kernel's too (a real
# JPEG photo at 900 px, nafnet_blurry, read 0.89 at 20 and 1.11 at 40, and
# its refinement at 40 showed ringing and noise).
AWAY_ITERS = 20
# 20 until 2026-11-28's fourth change; with the L0 rounds and alignment the
# kernels are good enough for more (tuning set, MTWDN
# leg 16 bf16 outputs, guarded, before anchoring: 20 +3.34 dB, 30 +3.47, 40
# +3.50, 60 +3.52, 100 +3.42; LMFN 20 +1.92, 40 +2.10, 60 +2.10; the
# photos_* sets within 0.01 dB at 40).
# Chosen on the tuning set only (benchmarks/kernel_refine.py `tune`, MTWDN,
# network alone +1.60 dB): edges 15 % / reg 0.01: 1 round +2.29, 2 rounds
# +2.55; edges 5 % / reg 0.1: 2 rounds +2.94, 3 rounds +3.06, 4 +3.11,
# 5 +3.10 (rounds then re-estimated from each round's Richardson-Lucy
# result and deconvolved again). Since 2026-11-28 the rounds re-estimate
# from `l0_latent` and Richardson-Lucy runs once, at the end (tuning set,
# 32 pairs, MTWDN leg 16, unguarded; the former 3 rounds +2.91 dB,
# similarity 0.833): L0 weight 5e-4 on unscaled luma, 3 L0 rounds (beta
# x2 a step) +2.97 (0.854), 6 +3.11 (0.880), 10 (x3) +3.20 (0.894), 16
# (x4) +3.30 (0.903), 24 (x4) +3.22 (0.903). ROUNDS counts the first
# estimate too: 16 L0 rounds.
ROUNDS = 17
# The L0 latent (`l0_latent`): weight of the gradients' L0 norm, for the
# photo's luma in linear light scaled so that its 99th percentile is 1
# (`refine`; tuning set, 16 rounds, guarded in (): 3e-4 +3.08 (+2.81),
# 5e-4 +3.21 (+2.98), 8e-4 +3.24 (+3.03), 1.2e-3 +3.24 (+3.02); unscaled,
# the weights above) and the half-quadratic splitting's schedule (beta from
# 2 x weight, times L0_KAPPA a step, to L0_BETA_MAX: 13 steps of two FFTs).
L0_WEIGHT = 8e-4
L0_KAPPA = 4.0
L0_BETA_MAX = 1e5
# The L0 rounds work on at most this square of the photo (the one with the
# most gradient energy in the network's output): an `l0_latent` costs ~0.04
# s on 320x320 and ~0.7 s on 1280x720 (2-core Zen 4); the kernel is the
# same everywhere under uniform blur, and the first estimate and the
# guard's `local_fit` read the whole photo.
ESTIMATE_SIDE = 512
# Coarse to fine (`refine(pyramid=True)`, 2026-11-28): the L0 rounds run
# twice, at one scale and at two (`pyramid_rounds`: half the rounds at
# half size), and the kernel whose L0 latent explains the square with the
# lower `l0_energy` is kept. At full size alone a long kernel that the
# network's output reads poorly can shrink round after round towards a dot
# (CBSD68 x Levin 101085_k4, 27 px, and _k7: 5 px blobs, refinement then
# turned down); at half size it is half as long and keeps its length. But
# alone the pyramid loses elsewhere: every other pair of the tuning set
# (16, MTWDN leg 16 bf16, unguarded) single scale +3.93 dB, pyramid +3.77,
# the lower energy's +4.07 (best of the two per pair +4.09); every other
# CBSD68 x Levin pair: +3.72, +4.43, +4.02 (+4.53). A gradient counts in
# the energy where |dx| + |dy| > L0_GRADIENT (the latent's values about
# [0, 1]).
L0_GRADIENT = 1e-4
# Two energies closer than PYRAMID_DRAW standard deviations of what the
# photo's noise alone makes the fit term vary by (`energy_draw`: sqrt(2 n)
# sigma^2 over n pixels of noise sigma) are a draw, and a draw keeps the
# single-scale kernel: on a barely blurred test scene with noise 0.02 the
# two read 12.69 and 12.75 (draw: 0.14), and the pyramid's kernel cost 1.9
# dB; on clean photos the draw is under 0.01 and the energies differ by
# 0.1-3. (A fixed 1 % margin instead: tuning set +3.79, the same; CBSD68
# x Levin +3.67 against +4.01.)
PYRAMID_DRAW = 2.0
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
# The discrepancy is read on at most this many pixels (a regular
# subsample of a larger photo's interior, `discrepancy_grid`; the mean square of ~1 M residuals
# is known to a fraction of a percent): on a 12 MP photo reading all of them
# cost 17 of refinement's 66 s.
DISCREPANCY_PIXELS = 2 ** 20
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
# A photo larger than the estimation square (ESTIMATE_SIDE) is deconvolved
# first on that square (alignment's offset is read there); a candidate
# whose distance ratio there is under PROBE_AWAY is turned down without the
# whole photo's deconvolution (2026-11-29). Measured on the 11 GoPro dev
# frames and the 23 real_blur_only photos at full size (MTWDN outputs; 88
# candidates deconvolved both ways): the square's ratio 0.08-1.57, the
# photo's 0.08-1.47; every candidate the photo's ratio let through (>= 1)
# read at least 1.04 on the square, and the highest photo ratio of one
# under 0.8 on the square was 0.95 (srn_08: 0.77 -> 0.95; the square reads
# high or low by up to 0.4: srn_08 0.34 -> 0.74, a GoPro frame 1.03 ->
# 0.72); 56 of the 88 read under 0.8. The decisions on those 34 photos are
# unchanged; the time spent turning candidates down is not.
PROBE_AWAY = 0.8
# The guard's third test (`local_fit`): one kernel must explain the blur in
# every part of the photo. The restoration re-blurred by the estimated kernel
# must not fit any cell of a LOCAL_FIT_TILES x LOCAL_FIT_TILES grid more than
# LOCAL_FIT_MAX times worse than the restoration itself (no blur at all)
# fits it: a moving object or a rotating camera leaves cells the kernel makes
# worse. Checked on the first kernel (the network's output's: a non-uniform
# blur stops before the L0 rounds) and on the last (since alignment, after
# the first deconvolution has put it in place).
# MTWDN, bf16 (deblur's default), 2026-11-28: the first two tests let 1 of
# the 11 GoPro dev pairs through (distance ratio 1.05, -2.9 dB; 0 of 11 in
# fp32) and 2-7 of 32 on the photos_* sets (-0.03 to -0.10 dB a set); with
# this test added, measured on the final kernel: 0 of 11, and -0.03..+0.01
# dB on the photos_* sets. The 1.2 was read off the tuning set and the
# photos_* sets (tune: 1.0 +0.82 dB over the network, 1.2 +1.08, 1.5 +1.08,
# none +1.04; photos_uniform 1.0 -0.02, 1.2 -0.01, 1.5 -0.06).
LOCAL_FIT_MAX = 1.2
# The first kernel's limit (and each restart's first kernel's), checked
# before the L0 rounds: LOCAL_FIT_FIRST (2026-11-29; LOCAL_FIT_MAX before).
# The first kernel is read off the network's output, ghosts and all, and
# the last kernel's check, the distance ratio and its pre-check on the
# square come after it. Tuning set (MTWDN fp32 outputs, guarded): 3 of 32
# pairs were turned down at the first kernel at 1.24-1.28 and gained 1-4
# dB without the local fit; at 1.3 (or 1.5) +3.74 -> +3.94 dB (108041
# +0.45 -> +2.45, 176019 +0.46 -> +4.75; 15088 turned down later). Levin,
# CBSD68 x Levin (first 32), the synthetic set, the GoPro dev frames and
# the five photos_* sets: the same at 1.3 and 1.5 as at 1.2 (a GoPro
# frame at 1.23, a Levin pair at 1.26 and a CBSD68 pair at 1.28 are
# turned down later); the 23 real_blur_only photos at full size: the same
# decisions. 1.3, the nearer to 1.2 of the two.
LOCAL_FIT_FIRST = 1.3
# The same limit for the last kernel (after the L0 rounds, `refine`), read
# off the tuning set and the GoPro dev pairs (MTWDN leg 16, bf16): a last
# kernel's limit of 1.5 instead gained the tuning set +0.05 dB (+3.08
# against +3.03: one pair +3.6, one -2.0 between the two) and let a GoPro
# dev frame through (GOPR0477 frame 659, 1.25, -1.7 dB).
LOCAL_FIT_TILES = 3
# The guard's fourth test (2026-11-28, checked first with the noise):
# JPEG. Compression error is structured (8x8 blocks, ringing at edges) and
# lowers the noise estimate instead of raising it, and Richardson-Lucy
# amplifies it: on the photos_* sets (30 % of pairs JPEG, quality 60-95)
# the refinements that passed the other tests were nearly all of JPEG
# pairs and lost up to 2.7 dB (photos_uniform's uniform_031, quality 80:
# -2.66; MTWDN, 13 JPEG pairs kept over the five sets, 9.5 dB lost in
# all). `blockiness` of the blurry photos: JPEG pairs 1.12-1.94, others
# 0.96-1.06 (the tuning set, Levin, CBSD68 x Levin, the synthetic set);
# GoPro frames (video compression) 1.02-1.13; of the 23 real_blur_only
# photos only nafnet_blurry.jpg (2.04) reaches the limit. With it, MTWDN
# (bf16 outputs, guarded): photos_uniform +2.38 -> +2.50 dB, camera +2.48
# -> +2.60, objects +2.03 -> +2.08, shake and wide within 0.01 (no pair
# now below the network on average); LMFN within 0.02 (its few JPEG pairs
# gained a little); the tuning set, Levin, CBSD68 and the synthetic set
# unchanged (no pair reaches it).
JPEG_LIMIT = 1.1
# Alignment (`refine(align=True)`, `image_offset`, `shift_kernel`): how far
# the deconvolved image may be found off the network's output (px) and the
# smallest offset that is corrected.
ALIGN_RADIUS = 4
ALIGN_MIN = 0.05
# Each L0 round's kernel is moved back (`anchored`) when its centroid is more
# than ANCHOR_SLACK px (per axis) from the first kernel's (2026-11-28): the
# first kernel is read off the network's output, which is where the photo's
# content is; unanchored, a round's kernel and latent can drift together
# (the photo is explained as well), and over 16 rounds some drifted 5-8 px
# (CBSD68 x Levin 101085_k7: past ALIGN_RADIUS, and a 27 px kernel pushed
# against the 41 px window's edge). The slack lets the rounds correct the
# first kernel's own bias (a ghost pulls its centroid). Tuning set, MTWDN
# leg 16 bf16 outputs, guarded, 40 iterations: unanchored +3.50 dB; slack
# 2 +3.57, 1 +3.59, 0.5 +3.60, 0.25 +3.58; whole-pixel moves to the anchor
# +3.59; every round moved exactly onto the anchor (bilinear) +3.76, but
# that also smooths every round's kernel, and on a test scene whose start
# carries a ghost it locked the ghost's pull in (kernel further from the
# truth after 4 rounds than after 1) and on a noisy one (sigma 0.02,
# unguarded) cost 2.6 dB against 0.3: not adopted. The photos_* sets
# within 0.01 dB.
ANCHOR_SLACK = 1.0
# Restarts (`refine(restarts=...)`): the L0 rounds (single scale and coarse
# to fine) run from the restoration and from RESTARTS - 1 copies of it with
# Gaussian noise of RESTART_NOISE (display values; seeds 1, 2, ...) added,
# and the candidates are ranked by their energy.
RESTARTS = 4
RESTART_NOISE = 0.5 / 255.0


def _check_plane(arr, name):
    arr = np.asarray(arr, np.float64)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (gray) array; got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} has NaN or infinite values")
    return arr


def _check_planes(a, a_name, b, b_name):
    """Two `_check_plane` arrays of one shape."""
    a, b = _check_plane(a, a_name), _check_plane(b, b_name)
    if a.shape != b.shape:
        raise ValueError(f"{a_name} and {b_name} must have the same shape; got {a.shape} and {b.shape}")
    return a, b


def _check_count(value, name):
    if int(value) != value or value < 1:
        raise ValueError(f"{name} must be a positive integer; got {value}")
    return int(value)


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
    latent, blurry = _check_planes(latent, "latent", blurry, "blurry")
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
    `tfdeblur.datasets.blur_image` blurs). float32 stays float32 (half the
    time and memory: `richardson_lucy(dtype=np.float32)`); anything else is
    computed in float64."""
    img = np.asarray(img)
    dtype = np.float32 if img.dtype == np.float32 else np.float64
    flipped = np.ascontiguousarray(np.asarray(kernel, dtype)[::-1, ::-1])
    return cv2.filter2D(np.asarray(img, dtype), -1, flipped, borderType=cv2.BORDER_REFLECT)


def _difference_power(shape):
    """|F(forward difference)|^2 summed over x and y, on the rfft2 grid of `shape`."""
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.rfftfreq(shape[1])[None, :]
    return (2.0 - 2.0 * np.cos(2.0 * np.pi * fx)) + (2.0 - 2.0 * np.cos(2.0 * np.pi * fy))


def l0_latent(blurry, kernel, weight=L0_WEIGHT, kappa=L0_KAPPA, beta_max=L0_BETA_MAX):
    """The image x that minimizes ||kernel * x - blurry||^2 + weight x
    #{pixels with a non-zero gradient}: flat regions and sharp steps, the
    edges a kernel estimate reads without texture or ringing (Xu, Zheng &
    Jia, CVPR 2013). Half-quadratic splitting: auxiliary gradients g, hard
    thresholded (|grad x|^2 < weight / beta -> 0), and x in closed form in
    the Fourier domain, beta growing `kappa`-fold from 2 x weight to
    `beta_max`. Gray 2-D float `blurry` (linear light), padded by reflection
    by the kernel's size against the FFT's wrap-around; returns its shape."""
    y = _check_plane(blurry, "blurry")
    if not weight > 0:
        raise ValueError(f"weight must be positive; got {weight}")
    if not kappa > 1:
        raise ValueError(f"kappa must be greater than 1; got {kappa}")
    k = trim(kernel)
    pad = max(k.shape)
    h, w = y.shape
    H, W = cv2.getOptimalDFTSize(h + 2 * pad), cv2.getOptimalDFTSize(w + 2 * pad)
    x = cv2.copyMakeBorder(y, pad, H - h - pad, pad, W - w - pad, cv2.BORDER_REFLECT)
    psf = np.zeros((H, W))
    psf[:k.shape[0], :k.shape[1]] = k
    otf = np.fft.rfft2(np.roll(psf, (-(k.shape[0] // 2), -(k.shape[1] // 2)), axis=(0, 1)))
    kty = np.conj(otf) * np.fft.rfft2(x)
    ktk = np.abs(otf) ** 2
    dtd = _difference_power((H, W))
    beta = 2.0 * weight
    while beta < beta_max:
        gx = np.roll(x, -1, axis=1) - x
        gy = np.roll(x, -1, axis=0) - x
        flat = gx * gx + gy * gy < weight / beta
        gx[flat] = 0.0
        gy[flat] = 0.0
        dtg = (np.roll(gx, 1, axis=1) - gx) + (np.roll(gy, 1, axis=0) - gy)  # the differences' adjoint
        x = np.fft.irfft2((kty + beta * np.fft.rfft2(dtg)) / (ktk + beta * dtd), s=(H, W))
        beta *= kappa
    return x[pad:pad + h, pad:pad + w]


def estimation_window(latent, side=ESTIMATE_SIDE, border=BORDER):
    """(rows, cols) slices of the `side` x `side` square of `latent` (gray
    2-D) with the most gradient magnitude, on a grid of `side` / 8 steps and
    `border` px from the edges when the image allows; the whole image when
    it is no larger."""
    latent = _check_plane(latent, "latent")
    h, w = latent.shape
    if h <= side and w <= side:
        return slice(0, h), slice(0, w)
    magnitude = np.hypot(*_gradients(latent))
    total = cv2.integral(magnitude)
    sh, sw = min(side, h), min(side, w)

    def starts(n, s):
        lo, hi = (border, n - s - border) if n - s >= 2 * border else (0, n - s)
        return sorted(set(range(lo, hi + 1, max(1, side // 8))) | {hi})

    best = max((total[t + sh, l + sw] - total[t, l + sw] - total[t + sh, l] + total[t, l], t, l)
               for t in starts(h, sh) for l in starts(w, sw))
    return slice(best[1], best[1] + sh), slice(best[2], best[2] + sw)


def richardson_lucy(blurry, kernel, iters=ITERS, start=None, stop=None, dtype=np.float64):
    """`iters` Richardson-Lucy iterations, x <- x * K^T(y / K x), from
    `start` (default: the blurry image); (H, W) or (H, W, C) float,
    non-negative. `stop(K x)`, if given, is asked before each iteration and
    ends them when it returns True (`refine`: the discrepancy principle).
    Computed and returned in `dtype` (np.float64 or np.float32: `refine`
    deconvolves in float32, within 1e-6 of float64 and with the
    discrepancy's subsample, `discrepancy_grid`, 1.8x faster on a 12 MP
    photo)."""
    if int(iters) != iters or iters < 0:
        raise ValueError(f"iters must be a non-negative integer; got {iters}")
    if np.dtype(dtype) not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"dtype must be np.float32 or np.float64; got {dtype}")
    y = np.maximum(np.asarray(blurry, dtype), 0.0)
    kernel = trim(kernel) if np.asarray(kernel).shape[0] % 2 and np.asarray(kernel).shape[1] % 2 else kernel
    adjoint = np.asarray(kernel, np.float64)[::-1, ::-1]
    if start is None:
        x = y.copy()
    else:
        x = np.maximum(np.asarray(start, dtype), 1e-4).astype(dtype, copy=False)  # RL cannot leave an exact 0
        if x.shape != y.shape:
            raise ValueError(f"start must have the blurry image's shape {y.shape}; got {x.shape}")
    for _ in range(int(iters)):
        blurred = convolve(x, kernel)
        if stop is not None and stop(blurred):
            break
        ratio = np.divide(y, np.maximum(blurred, 1e-6, out=blurred), out=blurred)
        x *= convolve(ratio, adjoint)
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


def blockiness(img):
    """How strongly `img` (a (H, W) or (H, W, 3) display-encoded image, at
    least 16 px a side) shows JPEG's 8x8 block grid: the mean absolute
    difference between neighbouring pixels across the block boundaries
    (between columns 7 and 8, 15 and 16, ..., and rows alike: the grid of a
    decoded file, anchored at the top-left corner) over the mean at the
    other seven offsets, on the luma. About 1 for an image without blocks;
    above 1 for a JPEG (`JPEG_LIMIT`). A crop at an offset that is not a
    multiple of 8, or any resize, moves or erases the grid (then about 1)."""
    img = np.asarray(img, np.float64)
    if img.ndim not in (2, 3) or min(img.shape[:2]) < 16:
        raise ValueError(f"blockiness needs an (H, W) or (H, W, 3) image of at least 16 px a side; got {img.shape}")
    luma = _luma(img)
    per_offset = 0.0
    for diff in (np.abs(np.diff(luma, axis=1)), np.abs(np.diff(luma, axis=0)).T):
        means = diff.mean(axis=0)
        n = (means.size // 8) * 8
        per_offset = per_offset + means[:n].reshape(-1, 8).mean(axis=0)
    inside = float(per_offset[:7].mean())
    if inside <= 0:
        return 1.0 if per_offset[7] <= 0 else float("inf")
    return float(per_offset[7] / inside)


def _luma(rgb):
    return rgb @ np.array([0.299, 0.587, 0.114]) if rgb.ndim == 3 else rgb


def refine(blurry, restored, size=KERNEL_SIZE, iters=ITERS, rounds=ROUNDS, gamma=GAMMA, edges=EDGES,
           reg=REG, floor=FLOOR, weight=L0_WEIGHT, discrepancy=True, guard=True, align=True, pyramid=True,
           restarts=RESTARTS, return_kernel=False, return_info=False):
    """Kernel refinement of a restoration (module docstring): `blurry` and
    `restored` are (H, W, 3) or (H, W) floats in [0, 1], display-encoded
    (`gamma`: the encoding's exponent; 1 for linear data). `rounds` kernel
    estimates, the first from `restored`, the others from `l0_latent` (of
    `weight`); then one Richardson-Lucy deconvolution. Returns the refined
    image, same shape, clipped to [0, 1] (and the last kernel with
    `return_kernel`: None when none was estimated).

    `pyramid` (default): also run the rounds coarse to fine
    (`pyramid_rounds`, where `pyramid_fits`) and deconvolve with that kernel
    where its `l0_energy` is lower by more than `energy_draw`; where the
    guard turns the chosen kernel down, the other is tried.

    `align` (default): move the kernel by the deconvolved image's offset
    from `restored` (`image_offset`; at least `ALIGN_MIN` px) and deconvolve
    again, so the refinement stays where the restoration is.

    `guard` (default): return `restored` unchanged where refinement is
    likely to hurt (`NOISE_LIMIT`, `JPEG_LIMIT`, `LOCAL_FIT_FIRST`, `LOCAL_FIT_MAX`, `MIN_AWAY`, `PROBE_AWAY`,
    `accepts`).
    `return_info` adds a dict: `applied` (bool), `reason` (why not, or ""),
    `noise` (the photo's noise sigma, display values), `blockiness`
    (`blockiness` of the blurry photo), `local_fit` (the
    worst `local_fit` of the kernels checked: the first and the last; None
    when none was), `away` (rms distance of the refined image to the blurry
    photo over the restoration's; None when not computed), `offset`,
    `energies` (`l0_energy` of the single-scale and the coarse-to-fine
    kernels; None when the pyramid did not run), `turn` (which candidate
    was deconvolved with: 0 the lower energy's, 1 the other, tried where
    the guard turned the first down; None when none was), `probe_away`
    (the distance ratio on the estimation square of the last candidate
    read there, `PROBE_AWAY`; None for a photo no larger than it or
    unguarded) and `kernel`."""
    blurry = np.asarray(blurry, np.float64)
    restored = np.asarray(restored, np.float64)
    if blurry.shape != restored.shape:
        raise ValueError(f"blurry and restored must have the same shape; got {blurry.shape} and {restored.shape}")
    _check_count(rounds, "rounds")
    _check_count(restarts, "restarts")
    y = np.power(np.clip(blurry, 0.0, 1.0), gamma)
    start = np.power(np.clip(restored, 0.0, 1.0), gamma)
    # The discrepancy principle: once the estimate re-blurred matches the
    # photo to within its noise (display values, where the noise is; the
    # quantization step at least), further iterations fit the noise.
    noise = noise_sigma(_luma(np.clip(blurry, 0.0, 1.0)))
    blocks = blockiness(np.clip(blurry, 0.0, 1.0)) if min(blurry.shape[:2]) >= 16 else 1.0
    info = {"applied": False, "reason": "", "noise": noise, "blockiness": blocks, "away": None, "local_fit": None,
            "offset": None, "kernel": None, "energies": None, "turn": None, "probe_away": None}

    def result(image):
        image = np.clip(image, 0.0, 1.0)
        extra = ((info["kernel"],) if return_kernel else ()) + ((info,) if return_info else ())
        return (image,) + extra if extra else image

    if guard and noise >= NOISE_LIMIT:
        info["reason"] = f"noise sigma {noise * 255:.1f}/255 is at least {NOISE_LIMIT * 255:.1f}/255"
        return result(restored)
    if guard and blocks >= JPEG_LIMIT:
        info["reason"] = (f"the photo shows JPEG blocks (blockiness {blocks:.2f}, limit {JPEG_LIMIT}): compression "
                          f"error, which deconvolution amplifies")
        return result(restored)
    sigma = max(noise, QUANT_SIGMA)
    threshold = DISCREPANCY * sigma ** 2
    inner = (slice(BORDER, -BORDER), slice(BORDER, -BORDER))

    def fits_to(photo):
        sub = discrepancy_grid(photo.shape)
        target = photo[sub]

        def fits(reblurred):
            encoded = np.power(np.clip(reblurred[sub], 0.0, 1.0), 1.0 / gamma)
            return float(np.mean((encoded - target) ** 2)) <= threshold
        return fits

    y_luma, start_luma = _luma(y), _luma(start)

    def check(kernel, which, limit=LOCAL_FIT_MAX):
        # One kernel must explain the blur everywhere: checked on the first
        # estimate (a non-uniform blur stops before the L0 rounds' cost) and
        # on the last (the one the deconvolution uses).
        fit = local_fit(start_luma, y_luma, kernel)
        info["local_fit"] = max(info["local_fit"] or 0.0, fit)
        info["kernel"] = kernel
        if guard and fit > limit:
            info["reason"] = (f"one kernel does not explain the blur everywhere (non-uniform blur: re-blurred by it, "
                              f"the restoration fits part of the photo {fit:.2f}x worse than unblurred; limit "
                              f"{limit}; {which})")
            return False
        return True

    # The first estimate reads the whole photo: under non-uniform blur it is
    # a compromise that fits no part well, which is what the local fit sees
    # (one from the edge-richest square alone fitted a GoPro dev frame,
    # GOPR0477 frame 178, everywhere at 0.58, and the refinement lost 3.3 dB;
    # from the whole frame 1.70). The L0 rounds then work on that square.
    if not any(np.abs(g[inner]).max() > 0 for g in _gradients(start_luma)):
        info["reason"] = "the restoration is flat: no edges to estimate a kernel from"
        return result(restored)
    kernel = estimate_kernel(start_luma, y_luma, size=size, edges=edges, reg=reg, floor=floor)
    if not check(kernel, f"the first kernel of {rounds}" if rounds > 1 else "the kernel",
                 LOCAL_FIT_FIRST if rounds > 1 else LOCAL_FIT_MAX):
        return result(restored)
    window = estimation_window(start_luma)
    if rounds > 1:
        # The L0 weight is for values in [0, 1]: a dark photo is brought up to
        # them (its 99th percentile to 1; the kernel estimate is scale-free),
        # or its latent collapses to flat.
        top = float(np.percentile(y_luma[window], 99))
        y_part = y_luma[window] / max(top, 1e-6)
        opts = dict(size=size, edges=edges, reg=reg, floor=floor, weight=weight)
        chains = []
        for seed in range(int(restarts)):
            # Restarts: the rounds are bistable (docs/benchmarks.md, "How
            # fragile the estimate is": the network's output in fp32 or bf16,
            # within 0.03 dB of each other, and a kernel found on one shrinks
            # to a dot from the other), so they also run from the
            # restoration with a little noise added (RESTART_NOISE, seeded:
            # the same photo refines the same way every time); every
            # candidate is ranked by its energy below. Only the kernel's
            # estimate sees the noise; the deconvolution starts from the
            # restoration itself.
            begin, luma = kernel, start_luma
            if seed:
                noisy = np.clip(restored + RESTART_NOISE * np.random.default_rng(seed).standard_normal(
                    restored.shape), 0.0, 1.0)
                luma = _luma(np.power(noisy, gamma))
                begin = estimate_kernel(luma, y_luma, size=size, edges=edges, reg=reg, floor=floor)
                if guard and local_fit(start_luma, y_luma, begin) > LOCAL_FIT_FIRST:
                    continue
            chains.append(lambda begin=begin: l0_rounds(y_part, begin, int(rounds) - 1, **opts))
            if pyramid and pyramid_fits(y_part.shape, size) and int(rounds) > 2:
                chains.append(lambda luma=luma: pyramid_rounds(y_part, luma[window] / max(top, 1e-6),
                                                               int(rounds) - 1, **opts))
        # The chains are independent (numpy's FFTs release the GIL): run on
        # the machine's cores, each the same as run alone.
        candidates = _in_threads(lambda chain: chain(), chains)
        # Ranked by energy (`l0_energy`: the objective the rounds descend),
        # the single-scale kernel of the restoration itself first unless
        # another explains the square with a clearly lower energy (more than
        # the noise could make, `energy_draw`). The others are fallbacks:
        # where the guard turns a kernel down (its last local fit, or the
        # distance ratio: a kernel shrunk towards a dot), the next is tried
        # before the restoration is kept; the energy can prefer a shrunk
        # kernel.
        order = [0]
        if len(candidates) > 1:
            energies = info["energies"] = _in_threads(lambda k: l0_energy(y_part, k, weight=weight), candidates)
            draw = energy_draw(y_part)
            ranked = sorted(range(1, len(candidates)), key=lambda i: energies[i])
            order = ([i for i in ranked if energies[i] < energies[0] - draw] + [0]
                     + [i for i in ranked if energies[i] >= energies[0] - draw])
        kernels = [candidates[i] for i in order]
    else:
        kernels = [kernel]
    whole = all(part == slice(0, n) for part, n in zip(window, start_luma.shape))
    full = (slice(None), slice(None))

    def deconvolve(kernel, rows_cols, n, begin=None):
        # Unclipped (a continuation starts from it), `n` iterations from
        # `begin` (default: the restoration).
        stop = fits_to(blurry[rows_cols]) if discrepancy else None
        begin = start[rows_cols] if begin is None else begin
        return richardson_lucy(y[rows_cols], kernel, n, start=begin, stop=stop, dtype=np.float32)

    # The offset and the guard's distance ratio are read after AWAY_ITERS
    # iterations (what they were set at); the rest of the iterations run
    # only for a photo that passes.
    first = min(int(iters), AWAY_ITERS)
    for turn, kernel in enumerate(kernels):
        info["kernel"] = kernel
        latent = None
        if align:
            # The rounds can move the kernel: (x shifted by d, k by -d) explains
            # the photo as well, and the deconvolution then shifts the image.
            # The network's output is where the photo's content is: the kernel
            # is moved by the deconvolved image's offset from it. The offset is
            # read on the estimation square (on the 11 GoPro dev frames within
            # 0.15 px, median, of the whole frame's, at a third of the time), so
            # a photo the last kernel's check turns down pays no full
            # deconvolution.
            probe = deconvolve(kernel, window, first)
            if whole:
                latent = probe
            elif guard:
                # The distance ratio on the square first (PROBE_AWAY): a
                # candidate far under it there is turned down without the
                # whole photo's deconvolution.
                info["probe_away"] = away_ratio(blurry[window], restored[window],
                                                np.power(np.clip(probe, 0.0, 1.0), 1.0 / gamma))
                if info["probe_away"] < PROBE_AWAY:
                    info["reason"] = (f"the refinement ends closer to the blurry photo than the restoration on "
                                      f"the estimation square (distance ratio {info['probe_away']:.3f} < "
                                      f"{PROBE_AWAY})")
                    continue
            dy, dx = image_offset(_luma(np.clip(probe, 0.0, 1.0)), start_luma[window])
            info["offset"] = (dy, dx)
            if max(abs(dy), abs(dx)) >= ALIGN_MIN:
                kernel = shift_kernel(kernel, dy, dx)
                info["kernel"] = kernel
                latent = None
        # The last kernel's local fit, once it is in place (a kernel off by a
        # pixel or two re-blurs the restoration off the photo everywhere).
        if rounds > 1 and not check(kernel, f"the last kernel of {rounds}"):
            continue
        if latent is None:
            latent = deconvolve(kernel, full, first)
        info["away"] = away_ratio(blurry, restored, np.power(np.clip(latent, 0.0, 1.0), 1.0 / gamma))
        if guard and not accepts(noise, info["away"]):
            info["reason"] = (f"the refinement ends closer to the blurry photo than the restoration "
                              f"(distance ratio {info['away']:.2f} < {MIN_AWAY})")
            continue
        info["reason"] = ""
        info["turn"] = turn
        break
    else:
        return result(restored)
    if int(iters) > first:
        latent = deconvolve(kernel, full, int(iters) - first, begin=latent)
    out = np.power(np.clip(latent, 0.0, 1.0), 1.0 / gamma).astype(np.float64)
    info["applied"] = True
    return result(out)


def _in_threads(fn, items):
    """[fn(item) for item in items], on up to os.cpu_count() threads (in
    order; each call as it would run alone)."""
    items = list(items)
    workers = min(len(items), os.cpu_count() or 1)
    if workers <= 1:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(fn, items))


def discrepancy_grid(shape, border=BORDER, pixels=DISCREPANCY_PIXELS):
    """(rows, cols) slices of the pixels `refine`'s discrepancy stop reads in
    an image of `shape`: the interior (`border` px of each side left out),
    every `step`-th row and column, `step` the smallest whole number with
    interior pixels / step^2 <= `pixels` (1 up to about 1280x720; a 12 MP
    photo, 4)."""
    h, w = int(shape[0]), int(shape[1])
    step = max(1, int(np.ceil(np.sqrt(max(h - 2 * border, 0) * max(w - 2 * border, 0) / pixels) - 1e-9)))
    return slice(border, h - border, step), slice(border, w - border, step)


def l0_rounds(blurry, kernel, rounds, size=KERNEL_SIZE, edges=EDGES, reg=REG, floor=FLOOR, weight=L0_WEIGHT):
    """`rounds` L0 rounds (module docstring, step 2) from `kernel` on
    `blurry` (gray, linear light, values about [0, 1]): each an `l0_latent`
    and an `estimate_kernel` from it, the kernel kept `anchored` near
    `kernel`'s `centroid`. Returns the last kernel (`size` x `size`)."""
    blurry = _check_plane(blurry, "blurry")
    anchor = centroid(kernel)
    for _ in range(_check_count(rounds, "rounds")):
        sharp = np.clip(l0_latent(blurry, kernel, weight=weight), 0.0, blurry.max())
        if not any(np.abs(g[BORDER:-BORDER, BORDER:-BORDER]).max() > 1e-9 for g in _gradients(sharp)):
            break  # nothing left to estimate from (a flat photo): keep the kernel
        kernel = estimate_kernel(sharp, blurry, size=size, edges=edges, reg=reg, floor=floor)
        # Kept near the first kernel (ANCHOR_SLACK): a kernel and its
        # latent drifting together explain the photo as well.
        kernel = anchored(kernel, anchor)
    return kernel


def scale_kernel(kernel, scale, size):
    """`kernel` (odd square) enlarged `scale` (>= 1) times about its middle
    element into an odd `size` x `size` window (bilinear), non-negative,
    summing to 1 (`pyramid_rounds`: a half-size kernel to full size)."""
    kernel = _check_plane(kernel, "kernel")
    if not scale >= 1:
        raise ValueError(f"scale must be at least 1; got {scale}")
    c, m = (kernel.shape[0] - 1) / 2.0, (int(size) - 1) / 2.0
    warp = np.float64([[scale, 0, m - scale * c], [0, scale, m - scale * c]])
    out = np.maximum(cv2.warpAffine(kernel, warp, (int(size), int(size)), flags=cv2.INTER_LINEAR,
                                    borderMode=cv2.BORDER_CONSTANT, borderValue=0), 0.0)
    total = out.sum()
    if not total > 0:
        raise ValueError(f"kernel has no mass inside a {size}x{size} window at scale {scale}")
    return out / total


def pyramid_rounds(blurry, restored, rounds, size=KERNEL_SIZE, edges=EDGES, reg=REG, floor=FLOOR,
                   weight=L0_WEIGHT):
    """The L0 rounds coarse to fine (`PYRAMID`): half of `rounds` on
    `blurry` at half size, from the kernel `estimate_kernel` reads off
    `restored` (same shape, same scale) at that size, the rest at full size
    from that kernel enlarged. At half size a long kernel is half as long,
    and one the full-size rounds would shrink towards a dot keeps its
    length. Returns the last kernel (`size` x `size`)."""
    blurry, restored = _check_planes(blurry, "blurry", restored, "restored")
    small = 2 * (size // 4) + 1
    y_half = cv2.resize(blurry, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
    r_half = cv2.resize(restored, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
    coarse = int(rounds) // 2
    half = estimate_kernel(r_half, y_half, size=small, edges=edges, reg=reg, floor=floor)
    half = l0_rounds(y_half, half, coarse, size=small, edges=edges, reg=reg, floor=floor, weight=weight)
    return l0_rounds(blurry, scale_kernel(half, 2.0, size), int(rounds) - coarse, size=size, edges=edges, reg=reg,
                     floor=floor, weight=weight)


def pyramid_fits(shape, size=KERNEL_SIZE):
    """Whether an image of `shape` (rows, cols) is large enough for
    `pyramid_rounds` with a `size` kernel: its half must hold the coarse
    kernel's estimate (`estimate_kernel`'s minimum)."""
    small = 2 * (int(size) // 4) + 1
    return min(int(shape[0]), int(shape[1])) // 2 >= 2 * small + 2 * BORDER


def l0_energy(blurry, kernel, weight=L0_WEIGHT, border=BORDER):
    """The L0 objective at `l0_latent(blurry, kernel, weight)` = x:
    sum((x * kernel - blurry)^2) + weight x (pixels where x has a gradient,
    |dx| + |dy| > `L0_GRADIENT`), over the interior (`border` px of each
    side left out). Of two kernels, the lower energy's latent explains the
    photo with fewer edges and a closer fit: how `refine` chooses between
    the single-scale and the coarse-to-fine rounds."""
    blurry = _check_plane(blurry, "blurry")
    x = l0_latent(blurry, kernel, weight=weight)
    inner = (slice(border, -border), slice(border, -border))
    fit = float(np.sum((convolve(x, trim(kernel)) - blurry)[inner] ** 2))
    gx, gy = _gradients(x)
    edges = int(np.count_nonzero((np.abs(gx) + np.abs(gy))[inner] > L0_GRADIENT))
    return fit + weight * edges


def energy_draw(blurry, border=BORDER):
    """How far apart two `l0_energy` values of `blurry` must be to count
    (`PYRAMID_DRAW` standard deviations of the fit term's sum of n squared
    noise values, sqrt(2 n) sigma^2; sigma by `noise_sigma`, n the
    interior's pixels)."""
    blurry = _check_plane(blurry, "blurry")
    n = max(blurry.shape[0] - 2 * border, 0) * max(blurry.shape[1] - 2 * border, 0)
    return PYRAMID_DRAW * float(np.sqrt(2.0 * n)) * noise_sigma(blurry) ** 2


def image_offset(moved, reference, radius=ALIGN_RADIUS, border=BORDER):
    """(dy, dx), floats: the shift d for which moved(p + d) best matches
    reference(p) (gray 2-D arrays of one shape; least squares over the
    interior, `border` + `radius` px of each side left out): the best whole
    shift within `radius` px, then to a fraction of a pixel by a parabola
    through the squared error at it and its neighbours on each axis."""
    moved, reference = _check_planes(moved, "moved", reference, "reference")
    radius = _check_count(radius, "radius")
    h, w = moved.shape
    m = border + radius
    if min(h, w) <= 2 * m:
        raise ValueError(f"a {w}x{h} image is too small for a {radius} px search inside a {border} px border")
    ref = reference[m:h - m, m:w - m]
    err = np.empty((2 * radius + 1, 2 * radius + 1))
    for i, dy in enumerate(range(-radius, radius + 1)):
        for j, dx in enumerate(range(-radius, radius + 1)):
            err[i, j] = np.mean((moved[m + dy:h - m + dy, m + dx:w - m + dx] - ref) ** 2)
    i, j = np.unravel_index(int(np.argmin(err)), err.shape)
    out = []
    for axis, (a, b) in ((0, (i, j)), (1, (j, i))):
        line = err[:, b] if axis == 0 else err[b, :]
        frac = 0.0
        if 0 < a < 2 * radius:
            lo, mid, hi = line[a - 1], line[a], line[a + 1]
            curve = lo - 2.0 * mid + hi
            if curve > 0:
                frac = float(np.clip(0.5 * (lo - hi) / curve, -0.5, 0.5))
        out.append(a - radius + frac)
    return out[0], out[1]


def centroid(kernel):
    """(row, col) of `kernel`'s centre of mass (non-negative 2-D array with a
    positive sum), from its centre: (0, 0) for a kernel centred in its
    window."""
    kernel = _check_plane(kernel, "kernel")
    total = float(kernel.sum())
    if not total > 0 or kernel.min() < 0:
        raise ValueError("kernel must be non-negative with a positive sum")
    rows, cols = np.mgrid[:kernel.shape[0], :kernel.shape[1]]
    return (float((rows * kernel).sum()) / total - (kernel.shape[0] - 1) / 2,
            float((cols * kernel).sum()) / total - (kernel.shape[1] - 1) / 2)


def anchored(kernel, anchor, slack=ANCHOR_SLACK):
    """`kernel` moved (`shift_kernel`) just enough that its `centroid` is
    within `slack` px of `anchor` (row, col) on each axis; unchanged when it
    already is."""
    at = centroid(kernel)
    move = [float(np.sign(a - b)) * max(abs(a - b) - slack, 0.0) for a, b in zip(anchor, at)]
    return shift_kernel(kernel, *move) if any(move) else np.asarray(kernel, np.float64)


def shift_kernel(kernel, dy, dx):
    """`kernel` moved by (dy, dx) px (fractions by bilinear interpolation),
    same size, renormalized to sum 1: `convolve` with it shifts the result
    by (dy, dx) against `convolve` with `kernel`."""
    kernel = np.asarray(kernel, np.float64)
    moved = cv2.warpAffine(kernel, np.float64([[1, 0, dx], [0, 1, dy]]), kernel.shape[::-1], flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    moved = np.maximum(moved, 0.0)
    total = moved.sum()
    return moved / total if total > 0 else kernel


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
    latent, blurry = _check_planes(latent, "latent", blurry, "blurry")
    tiles = _check_count(tiles, "tiles")
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
