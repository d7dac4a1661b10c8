"""Procedural (blurry, sharp) training pairs: the embedded default dataset.

Needs no files: sharp scenes are drawn procedurally and blurred with random
uniform kernels, so a fresh clone can train and validate out of the box.

Sharp scenes (`dead_leaves`) follow the dead-leaves model (G. Matheron,
"Random sets and integral geometry", 1975; A. B. Lee, D. Mumford and
J. Huang, "Occlusion models for natural images: a statistical study of a
scale-invariant dead leaves model", IJCV 41, 2001): opaque shapes with
power-law radii, density proportional to r^-3, fall on top of one another,
which gives the scale invariance and the heavy-tailed gradient statistics of
natural images. Some leaves carry a texture (stripes, noisy gradients) and
some are text glyphs or pen strokes, for the thin structures and corners
that deblurring networks must restore.

Default blur distribution (`make_pair` and `synthetic_dataset` defaults):

* kernel: `kernels.random_kernel(rng, max_size=31)` -- 60% camera-shake
  trajectories (Boracchi & Foi 2012), 15% linear motion, 10% Gaussian, 15%
  defocus disks. Blur extent s = 3 + 28 u^3 (u uniform), so sizes span 3 to
  31 px with median about 7 px and a few percent at the full 31 px. This
  is deliberately moderate: the default short training run must be able to
  improve on the blurry input; lower `kernel_size_bias` towards 1 (uniform
  extents) or raise `max_kernel_size` for harder data;
* blur in linear light: sRGB-like values ** 2.2, convolve, ** (1 / 2.2);
* noise: additive Gaussian, sigma uniform in [0, 0.01] (of the [0, 1] range),
  after the gamma;
* both images quantized to 8 bits, so they are exactly representable as
  uint8 PNGs.

Scenes are drawn `max_kernel_size // 2` pixels larger on every side and
cropped after blurring, so no pixel of a pair sees an artificial border.

Seeds: pair i of split `s` with dataset seed `seed` is
`make_pair((SPLIT_TAGS[s], seed, i))`, i.e. its numpy generator is seeded by
the `SeedSequence` of that tuple. Train and val tuples differ in their first
entry, so the two splits are independent streams and never share a pair,
for any seed and index; each element depends only on its own tuple, so the
parallel `map` is deterministic whatever the scheduling.
"""
import math

import cv2
import numpy as np

from tfdeblur.datasets import kernels

SPLIT_TAGS = {"train": 1, "val": 2}
DEFAULT_VAL_IMAGES = 16
DEFAULT_NOISE_RANGE = (0.0, 0.01)

# Dead-leaves radii in pixels; r_max is also capped at half the image side.
_R_MIN = 3.0
_R_MAX = 200.0
# Mean number of leaves covering a pixel (a Boolean model's coverage):
# about e^-2 = 14% of the background, a smooth gradient, stays uncovered,
# like sky or walls; more leaves would cost time and only add small ones.
_COVERAGE = 2.0
_OVERHANG = 0.1  # leaf centres fall up to this fraction of a side outside
_SHAPES = ("disk", "rect", "poly", "text", "stroke")
_SHAPE_PROBS = np.array([0.35, 0.25, 0.3, 0.05, 0.05])
_TEXTURE_PROB = 0.25
_MAX_VERTICES = 7
_PARENT_MIX = 0.8
_FONTS = (
    cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_COMPLEX,
    cv2.FONT_HERSHEY_TRIPLEX, cv2.FONT_HERSHEY_PLAIN, cv2.FONT_HERSHEY_SCRIPT_SIMPLEX,
)
_GLYPHS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789#%&@?"
_SHIFT = 4  # cv2 drawing with 4 fractional bits: sub-pixel shape positions
_ONE = 1 << _SHIFT


def _power_law_radii(rng, n, r_min, r_max):
    """Radii with density proportional to r^-3 on [r_min, r_max] (inverse CDF)."""
    a, b = r_min ** -2, r_max ** -2
    return (a - rng.random(n) * (a - b)) ** -0.5


def _mean_area(r_min, r_max):
    """E[pi r^2] under the r^-3 law: 2 pi ln(r_max / r_min) / (r_min^-2 - r_max^-2)."""
    return 2 * math.pi * math.log(r_max / r_min) / (r_min ** -2 - r_max ** -2)


def _colors(rng, n):
    """Colours with natural-looking saturation: a grey level plus some chroma."""
    grey = rng.random((n, 1))
    chroma = rng.random((n, 3))
    sat = rng.random((n, 1)) * 0.8
    return np.clip(grey + sat * (chroma - chroma.mean(axis=1, keepdims=True)), 0, 1)


def _vertices(rng, radii, kind_ids):
    """Float vertices, relative to each leaf's centre, of every polygonal leaf.

    Rectangles (rotated, aspect 0.3..1) use 4 of the `_MAX_VERTICES` slots,
    star-shaped polygons 3 to `_MAX_VERTICES`; drawn in bulk, as per-leaf
    numpy calls would dominate the scene's drawing time.
    Returns (vertices (n, _MAX_VERTICES, 2), counts (n,)).
    """
    n = len(radii)
    v = _MAX_VERTICES
    counts = rng.integers(3, v + 1, n)
    ang = np.sort(rng.uniform(0, 2 * np.pi, (n, v)), axis=1)
    rad = rng.uniform(0.5, 1.0, (n, v))
    aspect = rng.uniform(0.3, 1.0, n)
    # Rectangle corners at angles +-atan(aspect) and pi -+ atan(aspect).
    half = np.arctan(aspect)
    rect_ang = np.stack([half, np.pi - half, np.pi + half, -half], axis=1)
    rect_ang = rect_ang + rng.uniform(0, np.pi, (n, 1))
    is_rect = kind_ids == _SHAPES.index("rect")
    ang[is_rect, :4] = rect_ang[is_rect]
    rad[is_rect] = 1.0
    counts[is_rect] = 4
    r = (radii[:, None] * rad)
    return np.stack([r * np.cos(ang), r * np.sin(ang)], axis=2), counts


def _draw(canvas, kind, x, y, r, color, verts, rng):
    """Draws one leaf of `kind` centred at (x, y) with size r onto `canvas`."""
    aa = cv2.LINE_AA
    if kind == "disk":
        cv2.circle(canvas, (round(x * _ONE), round(y * _ONE)), max(1, round(r * _ONE)),
                   color, -1, aa, _SHIFT)
    elif kind in ("rect", "poly"):
        pts = ((verts + (x, y)) * _ONE).astype(np.int32)
        cv2.fillPoly(canvas, [pts], color, aa, _SHIFT)
    elif kind == "text":
        n = int(rng.integers(1, 5))
        text = "".join(_GLYPHS[i] for i in rng.integers(0, len(_GLYPHS), n))
        font = _FONTS[int(rng.integers(len(_FONTS)))]
        # Hershey glyphs are about 22 px tall and 18 px wide at scale 1;
        # cv2.getTextSize would be exact but costs more than the drawing.
        scale = r / 22.0
        thick = max(1, round(scale * rng.uniform(1.0, 3.0)))
        cv2.putText(canvas, text, (round(x - 9 * scale * n), round(y + r / 2)), font, scale,
                    color, thick, aa)
    else:  # stroke
        m = int(rng.integers(2, 6))
        pts = (rng.uniform(-r, r, (m, 2)) + (x, y)) * _ONE
        thick = int(rng.integers(1, 4))
        cv2.polylines(canvas, [np.round(pts).astype(np.int32)], False, color, thick, aa,
                      _SHIFT)


def _texture(rng, h, w, c0, c1):
    """An (h, w, 3) uint8 texture blending colours c0 and c1."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    t = rng.uniform(0, np.pi)
    u = xx * math.cos(t) + yy * math.sin(t)
    if rng.random() < 0.5:  # stripes, hard-edged or smooth
        period = rng.uniform(3.0, 16.0)
        a = np.sin(u * (2 * np.pi / period) + rng.uniform(0, 2 * np.pi))
        a = (a > 0).astype(np.float32) if rng.random() < 0.5 else 0.5 + 0.5 * a
    else:  # gradient with grain
        a = (u - u.min()) / max(1.0, float(u.max() - u.min()))
        a = a + rng.normal(0.0, rng.uniform(0.02, 0.15), (h, w)).astype(np.float32)
    a = np.clip(a, 0, 1)[..., None]
    return (c0 + a * (c1 - c0)).astype(np.uint8)


def dead_leaves(rng, height, width):
    """A procedural sharp RGB scene, float32 in [0, 1], shape (height, width, 3).

    Dead-leaves model (Matheron 1975; Lee, Mumford & Huang 2001): leaves with
    radius density proportional to r^-3 on [3, min(200, side / 2)] px,
    uniform positions (overhanging the borders) and random colours are
    painted in order, each occluding those before it, until every pixel is
    covered about twice on average (some 14% of the smooth background
    gradient stays visible). Each leaf's colour leans towards the colour
    already under its centre (by a weight uniform in [0, 0.8]), which lowers
    local contrast towards that of real scenes. Leaves are disks, rotated
    rectangles and star-shaped polygons; a quarter of those wider than 6 px
    are filled with stripes or a grainy gradient, and one in ten is a short
    string of text glyphs or a pen stroke. Edges are anti-aliased at 8 bits,
    so values are multiples of 1/255.
    """
    h, w = int(height), int(width)
    if h < 1 or w < 1:
        raise ValueError(f"height and width must be >= 1; got {height}, {width}")
    r_max = min(_R_MAX, max(h, w) / 2)
    r_max = max(r_max, _R_MIN * 1.5)
    span = 1 + 2 * _OVERHANG
    n = int(math.ceil(_COVERAGE * span * span * h * w / _mean_area(_R_MIN, r_max)))
    radii = _power_law_radii(rng, n, _R_MIN, r_max)
    xs = rng.uniform(-_OVERHANG * w, (1 + _OVERHANG) * w, n)
    ys = rng.uniform(-_OVERHANG * h, (1 + _OVERHANG) * h, n)
    kinds = rng.choice(len(_SHAPES), n, p=_SHAPE_PROBS)
    cols = np.round(_colors(rng, n) * 255)
    textured = (rng.random(n) < _TEXTURE_PROB) & (radii > 6)
    verts, counts = _vertices(rng, radii, kinds)
    mix = rng.uniform(0.0, _PARENT_MIX, n).tolist()

    # Background: a plain random gradient, visible where no leaf falls.
    c0, c1 = _colors(rng, 2) * 255
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    a = rng.uniform(-1, 1, 2) / max(h, w)
    g = np.clip(0.5 + xx * a[0] + yy * a[1], 0, 1)[..., None]
    canvas = np.round(c0 + g * (c1 - c0)).astype(np.uint8)
    for i, (x, y, r, k, col, tex) in enumerate(zip(
            xs.tolist(), ys.tolist(), radii.tolist(), kinds.tolist(), cols.tolist(),
            textured.tolist())):
        kind = _SHAPES[k]
        xi, yi = int(x), int(y)
        if 0 <= xi < w and 0 <= yi < h:
            # Lean towards the colour already there: neighbouring surfaces
            # in real scenes share illumination and material, so local
            # contrast is lower than between independent random colours.
            t = mix[i]
            col = [col[0] + t * (canvas.item(yi, xi, 0) - col[0]),
                   col[1] + t * (canvas.item(yi, xi, 1) - col[1]),
                   col[2] + t * (canvas.item(yi, xi, 2) - col[2])]
        if kind == "text" and r < 4:
            kind = "disk"  # glyphs below ~8 px are illegible blobs
        v = verts[i, :counts[i]] if kind in ("rect", "poly") else None
        if not tex or kind in ("text", "stroke"):
            _draw(canvas, kind, x, y, r, col, v, rng)
            continue
        # A textured leaf: draw its mask in its bounding box and blend there.
        x0, y0 = max(0, int(x - r) - 1), max(0, int(y - r) - 1)
        x1, y1 = min(w, int(x + r) + 2), min(h, int(y + r) + 2)
        if x1 <= x0 or y1 <= y0:
            continue
        mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
        _draw(mask, kind, x - x0, y - y0, r, 255, v, rng)
        tex_img = _texture(rng, y1 - y0, x1 - x0, np.array(col), _colors(rng, 1)[0] * 255)
        m = mask[..., None].astype(np.float32) * (1 / 255)
        region = canvas[y0:y1, x0:x1]
        region[:] = np.round(region * (1 - m) + tex_img * m).astype(np.uint8)
    return canvas.astype(np.float32) * (1 / 255)


def quantize8(x):
    """Rounds [0, 1] values to the nearest multiple of 1/255 (exact uint8)."""
    return (np.round(np.clip(x, 0.0, 1.0) * 255) / 255).astype(np.float32)


def blur_image(sharp, kernel, rng=None, noise_sigma=None, gamma=2.2, quantize=True,
               noise_range=DEFAULT_NOISE_RANGE):
    """Uniformly blurs `sharp` with `kernel` in linear light, adds noise, quantizes.

    out = q8(clip((sharp^gamma (*) kernel)^(1/gamma) + n)), where (*) is a
    true 2-D convolution with reflected borders (cv2.BORDER_REFLECT), n is
    i.i.d. Gaussian noise and q8 rounds to multiples of 1/255. Being a true
    convolution, a single bright pixel at (y, x) comes out as the kernel
    itself, unflipped, with its centre at (y, x): out[y + i - c, x + j - c] =
    kernel[i, j], c = kernel_size // 2.

    Args:
      sharp: float (H, W) or (H, W, C) image in [0, 1].
      kernel: odd square non-negative kernel (normalized by the caller).
      rng: `np.random.Generator` for the noise; needed unless noise_sigma is 0.
      noise_sigma: noise standard deviation; None draws it uniformly from
        `noise_range`; 0 adds none.
      gamma: 1 blurs the values as given (no linearization).
      quantize: round the output to 8 bits.
      noise_range: (low, high) for drawing noise_sigma.

    Returns:
      float32 array shaped like `sharp`.
    """
    kernel = np.asarray(kernel, np.float32)
    if kernel.ndim != 2 or kernel.shape[0] != kernel.shape[1] or kernel.shape[0] % 2 == 0:
        raise ValueError(f"kernel must be an odd square 2-D array; got shape {kernel.shape}")
    x = np.asarray(sharp, np.float32)
    if gamma != 1:
        x = np.power(np.clip(x, 0.0, 1.0), gamma)
    # filter2D computes a correlation; flipping the kernel makes it a true
    # convolution (an odd kernel's anchor stays at its centre).
    out = cv2.filter2D(x, -1, np.ascontiguousarray(kernel[::-1, ::-1]),
                       borderType=cv2.BORDER_REFLECT)
    if gamma != 1:
        out = np.power(np.clip(out, 0.0, 1.0), 1.0 / gamma)
    if noise_sigma is None:
        if rng is None:
            raise ValueError("rng must be a np.random.Generator when noise_sigma is None; got None")
        noise_sigma = rng.uniform(*noise_range)
    if noise_sigma > 0:
        if rng is None:
            raise ValueError(f"rng must be a np.random.Generator for noise_sigma={noise_sigma}; got None")
        out = out + rng.normal(0.0, noise_sigma, out.shape).astype(np.float32)
    if quantize:
        return quantize8(out)
    return out.astype(np.float32)


def _hw(size):
    h, w = (size, size) if np.isscalar(size) else size
    if int(h) < 1 or int(w) < 1:
        raise ValueError(f"size must be a positive int or (height, width); got {size!r}")
    return int(h), int(w)


def make_pair(seed, size=256, max_kernel_size=31, kernel_probs=None, kernel_size_bias=3.0,
              noise_range=DEFAULT_NOISE_RANGE, gamma=2.2):
    """One (blur, sharp) pair, fully determined by `seed` and the options.

    Args:
      seed: int, or tuple of ints, seeding `np.random.default_rng`.
      size: int or (height, width).
      max_kernel_size: odd upper bound on the kernel size.
      kernel_probs: kernel type probabilities for `kernels.random_kernel`.
      kernel_size_bias: its `size_bias` (larger favours smaller kernels).
      noise_range: (low, high) of the noise sigma, in [0, 1] units.
      gamma: blur in linear light with this gamma (1: blur values as given).

    Returns:
      (blur, sharp) float32 (height, width, 3) arrays in [0, 1], both exact
      multiples of 1/255.
    """
    h, w = _hw(size)
    rng = np.random.default_rng(seed)
    kernel = kernels.random_kernel(rng, max_size=max_kernel_size, probs=kernel_probs,
                                   size_bias=kernel_size_bias)
    margin = max_kernel_size // 2
    scene = dead_leaves(rng, h + 2 * margin, w + 2 * margin)
    m = kernel.shape[0] // 2
    # Blur only what the crop needs: the crop plus the kernel's radius.
    local = scene[margin - m:margin + h + m, margin - m:margin + w + m]
    blur = blur_image(local, kernel, rng, gamma=gamma, noise_range=noise_range)
    return blur[m:m + h, m:m + w], quantize8(scene[margin:margin + h, margin:margin + w])


def synthetic_dataset(split="train", crop=256, seed=0, num_images=None, max_kernel_size=31,
                      kernel_probs=None, kernel_size_bias=3.0, noise_range=DEFAULT_NOISE_RANGE,
                      gamma=2.2, indices=None):
    """Unbatched `tf.data.Dataset` of procedural (blur, sharp) pairs.

    Element i is `make_pair((SPLIT_TAGS[split], seed, i), crop, ...)`, so it
    depends only on (split, seed, i) and the options; train and val never
    share an element (see the module docstring). Generation runs in a
    parallel `map` over `tf.numpy_function`, kept in order.

    Args:
      split: "train" (infinite unless `num_images`) or "val" (fixed,
        `num_images` defaults to 16, the same on every call).
      crop: side of the square images.
      seed: non-negative int selecting the stream.
      num_images: number of elements; None is infinite for train, 16 for val.
      max_kernel_size, kernel_probs, kernel_size_bias, noise_range, gamma:
        as in `make_pair`.
      indices: optional dataset of int64 element indices to generate instead
        of 0, 1, 2, ... (`num_images` is then ignored): resuming a run at
        sample k, or one worker's shard, without generating the others
        (`tfdeblur.datasets.stream`).

    Returns:
      Dataset of (blur, sharp) float32 tensors of shape (crop, crop, 3) in
      [0, 1].

    Elements are made by Python code on tf.data's threads: delete your own
    iterators over the infinite train split before the interpreter exits
    (Keras `fit` does so for its own), or TensorFlow may hang or abort at
    exit while a prefetch thread waits for the Python interpreter.
    """
    check_split(split, seed, SPLIT_TAGS)
    if num_images is not None and (int(num_images) != num_images or num_images < 1):
        raise ValueError(f"num_images must be a positive int or None; got {num_images!r}")
    # Copy so that a caller mutating its dict later cannot change the stream.
    probs = None if kernel_probs is None else dict(kernel_probs)
    noise = tuple(noise_range)
    return seeded_pairs(
        lambda sample_seed, size: make_pair(sample_seed, size, max_kernel_size, probs, kernel_size_bias, noise, gamma),
        SPLIT_TAGS[split], seed, crop, DEFAULT_VAL_IMAGES if split == "val" and num_images is None else num_images,
        indices)


def check_split(split, seed, split_tags):
    """Refuses a `split` that is not a key of `split_tags` and a `seed` that
    is not a non-negative int (a generated stream's two selectors)."""
    if split not in split_tags:
        raise ValueError(f"split must be one of {sorted(split_tags)}; got {split!r}")
    if int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be a non-negative int; got {seed!r}")


def seeded_pairs(make, tag, seed, crop, num_images=None, indices=None):
    """Unbatched tf.data of generated (blur, sharp) pairs, float32 (crop,
    crop, 3): element i is `make((tag, seed, i), crop)`, a numpy function of
    its seed alone, run by `tf.numpy_function` in a parallel, ordered `map`.
    Elements 0, 1, ... (`num_images` of them; None: infinite), or those of
    `indices`, a dataset of int64 sample indices (a resumed run, one
    worker's shard). The one tf.data wrapper of the synthetic, dynamic-scene
    and photo streams."""
    # Imported here so that the numpy side (kernels, scenes, pairs) loads
    # without TensorFlow, e.g. in data-preparation worker processes.
    import tensorflow as tf

    crop, seed = int(crop), int(seed)

    def to_tensors(index):
        blur, sharp = tf.numpy_function(lambda i: make((tag, seed, int(i)), crop), [index],
                                        [tf.float32, tf.float32], stateful=False)
        blur.set_shape((crop, crop, 3))
        sharp.set_shape((crop, crop, 3))
        return blur, sharp

    if indices is None:
        indices = tf.data.Dataset.counter() if num_images is None else tf.data.Dataset.range(num_images)
    return indices.map(to_tensors, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
