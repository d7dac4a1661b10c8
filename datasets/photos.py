"""Realistic blur of sharp photographs, made on the fly: `--data photos:DIR`.

The networks must restore real photos, and procedural scenes alone do not
transfer (a model trained on dead leaves lost 0.3 dB on real GoPro frames,
issue #15). This module blurs real sharp photographs the way exposures blur
them, as a pure function of (seed, sample index), so `--resume` stays exact.

A sample draws one *mode* from `DEFAULT_MIX` (the spec may reweight it,
`photos:DIR,uniform=1,camera=2`):

* ``uniform``: a random kernel of the kernel library
  (`kernels.random_kernel`: camera-shake trajectories, linear motion,
  Gaussian, defocus), larger on average than the synthetic default
  (`UNIFORM_SIZE_BIAS`), convolved in linear light;
* ``camera``: non-uniform camera motion. The photo is warped along a
  sub-frame path of homographies -- translation with acceleration, in-plane
  rotation, zoom and a small perspective tilt, all centred on the crop --
  and the sub-frames are averaged in linear light, as an exposure
  integrates; the blur then varies across the frame (rotation and zoom blur
  grow with the distance from the centre);
* ``objects``: the ``camera`` path (or a still camera) plus 1-3 layers cut
  from *other* photos (anti-aliased ellipse/star masks, `dynamic._mask`)
  moving on their own paths over the same sub-frames, composited with
  premultiplied alpha: local blur on top of global blur, like GoPro;
* ``shake``: off by default (weight 0), switched on by the spec
  (`photos:DIR,shake=0.35`): a camera-shake trajectory only
  (`kernels.trajectory_kernel` through `random_kernel`) of any size up to
  `MAX_KERNEL` (`SHAKE_SIZE_BIAS`: extents uniform, not favouring small
  ones), convolved in linear light as ``uniform``. Added when
  `benchmarks/gain_by_extent.py` found the shipped models gaining +1.5 to
  +2.3 dB on straight motion of 5-31 px but +0.1 to +1.4 dB on Levin's
  real shake kernels of 9-22 px (2026-11-26): curly, uneven shake paths of
  more than a few pixels are rare in the default mix (a ``uniform`` sample
  is a trajectory 60 % of the time, with a median extent near 10 px before
  the path curls up). Appended last with weight 0, it leaves the default
  stream sample for sample as it was;
* ``wide``: off by default (weight 0; `photos:DIR,wide=0.6`): the
  ``camera`` exposure with a translation of `WIDE_SHIFT` px (uniform in
  18-48 px where ``camera`` draws up to 18, most of them short), and with
  probability `WIDE_OBJECTS_PROB` 1-3 object layers moving as far. Added
  when restoring GoPro dev frames at half size gained 0.4 dB
  (`Deblurrer(scales=...)`, 2026-11-27): the 1280x720 frames blur wider
  than anything the default mix draws (kernels <= 31 px, camera paths <=
  18 px); `gain_by_extent` showed straight blur past ~15 px holding up
  only at the smaller scale. Appended last with weight 0 as ``shake``;
* ``synthetic`` / ``dynamic``: a pair of the procedural streams
  (`synthetic.make_pair`, `dynamic.make_dynamic_pair`), kept in the mix so
  that thin structures and text, rare in photos, stay in the diet.

The sharp target of the sub-frame modes is the middle sub-frame (t = 0,
the identity warp), as GoPro takes the middle frame.

The camera pipeline follows Rim et al., "Realistic Blur Synthesis for
Learning Image Deblurring" (ECCV 2022), who found each step matters for
transfer to real blur:

1. linearize (8-bit values ** 2.2);
2. with probability `SATURATION_PROB`, an exposure gain in [1, 2.5] before
   blurring, so highlights exceed 1 and are clipped *after* blurring (real
   light streaks of saturated lamps stay bright); the sharp target is
   clipped likewise;
3. Poisson-Gaussian noise on the blurry image in linear light,
   sigma^2 = a * x + b (shot and read noise);
4. gamma-encode, quantize to 8 bits; with probability `JPEG_PROB` the
   blurry image is JPEG-compressed (quality 60-95).

Photos are downscaled by a random factor in `SCALE_RANGE` before cropping:
web photos carry some softness and compression that downscaling removes
(`../shared/README.md`), and it varies the scale of the content.

Splits: the photos (sorted path order, recursively) are split by index:
every `VAL_EVERY`-th photo is held out for validation (`val`), the rest
train. Validation pairs are deterministic (`make_photo_pair` with the val
tag), `VAL_IMAGES` of them at `VAL_SIZE` px.
"""
import math
import os
import threading
from types import MappingProxyType

import cv2
import numpy as np

from tfdeblur.datasets import kernels
from tfdeblur.datasets.synthetic import check_split, quantize8, seeded_pairs

SPLIT_TAGS = {"train": 31, "val": 32}
# New modes go at the end with weight 0 in DEFAULT_MIX: the mode draw then
# picks exactly what it picked before, so the default stream is unchanged.
MODES = ("uniform", "camera", "objects", "synthetic", "dynamic", "shake", "wide")
DEFAULT_MIX = MappingProxyType(
    {"uniform": 0.35, "camera": 0.3, "objects": 0.25, "synthetic": 0.05, "dynamic": 0.05, "shake": 0.0, "wide": 0.0}
)
GAMMA = 2.2
VAL_EVERY = 10
VAL_IMAGES = 16
VAL_SIZE = 256
SCALE_RANGE = (0.5, 1.0)
MAX_KERNEL = 31
UNIFORM_SIZE_BIAS = 2.0  # kernels.random_kernel: median extent ~10 px (synthetic default: 6.5)
SHAKE_SIZE_BIAS = 1.0  # "shake": the kernel's size parameter uniform in [3, MAX_KERNEL]
MAX_SHIFT = 18.0  # px of camera translation over the exposure
MAX_ROTATION = 2.0  # degrees of in-plane rotation over the exposure
MAX_ZOOM = 0.06  # relative scale change over the exposure
MAX_TILT = 4e-5  # perspective terms (1/px) of the homography at the end of the exposure
MAX_OBJECT_SHIFT = 24.0
WIDE_SHIFT = (18.0, 48.0)  # "wide": px of translation over the exposure, uniform in this range
WIDE_OBJECTS_PROB = 0.5  # "wide": chance of 1-3 object layers, moving as far as the camera
WIDE_MAX_SUBFRAMES = 121  # "wide": up to 48 px and more at MAX_STEP_PX a sub-frame
STILL_CAMERA_PROB = 0.3  # in the "objects" mode
MAX_STEP_PX = 0.75  # sub-frames close enough that the average is a smear, not ghosts
MIN_SUBFRAMES, MAX_SUBFRAMES = 7, 61
SATURATION_PROB = 0.25
SHOT_NOISE = (0.0, 4e-3)  # a in sigma^2 = a x + b (linear light)
READ_NOISE = (0.0, 0.01)  # sqrt(b)
JPEG_PROB = 0.3
JPEG_QUALITY = (60, 95)
# Not a mode: `clean=P` in the mix (`photos:DIR,clean=0.5`) is the chance
# that a photo sample's camera pipeline adds no noise and no JPEG (default 0).
CLEAN_KEY = "clean"
_CACHE_LIMIT = 256  # decoded photos kept in memory (an LRU would not change any sample)


class PhotoError(ValueError):
    """A photos folder that cannot serve as training data."""


def list_photos(root):
    """Sorted image paths under `root`, recursively (hidden files skipped)."""
    from tfdeblur.io import IMAGE_EXTENSIONS

    root = os.fspath(root)
    if not os.path.isdir(root):
        raise PhotoError(f"`data` photos: {root} is not a directory")
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in files:
            if not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS):
                found.append(os.path.join(folder, name))
    return sorted(found)


class PhotoBank:
    """The photos of a folder, split into train/val, decoded on demand.

    Decoded photos are cached (at most `_CACHE_LIMIT`); the cache changes no
    sample, only the time to make it.
    """

    def __init__(self, root, min_side=64):
        self.root = os.fspath(root)
        paths = list_photos(self.root)
        if len(paths) < 2:
            raise PhotoError(f"`data` photos: {self.root} holds {len(paths)} image(s); at least 2 are needed")
        self.min_side = int(min_side)
        self.splits = {
            "train": [p for i, p in enumerate(paths) if i % VAL_EVERY != VAL_EVERY - 1],
            "val": [p for i, p in enumerate(paths) if i % VAL_EVERY == VAL_EVERY - 1] or paths[-1:],
        }
        self._cache = {}
        self._lock = threading.Lock()

    def __len__(self):
        return len(self.splits["train"]) + len(self.splits["val"])

    def photo(self, path):
        """float32 RGB in [0, 1] (gamma-encoded, as stored)."""
        with self._lock:
            img = self._cache.get(path)
        if img is None:
            raw = cv2.imread(path, cv2.IMREAD_COLOR)
            if raw is None:
                raise PhotoError(f"`data` photos: cannot decode {path}")
            img = cv2.cvtColor(raw, cv2.COLOR_BGR2RGB)
            with self._lock:
                if len(self._cache) >= _CACHE_LIMIT:
                    self._cache.pop(next(iter(self._cache)))
                self._cache[path] = img
        return img.astype(np.float32) / 255.0

    def pick(self, rng, split):
        items = self.splits[split]
        return self.photo(items[int(rng.integers(len(items)))])


def _window(rng, img, side):
    """A random `side` x `side` window of `img` after a random downscale
    (reflect-padded when the photo is smaller than the window)."""
    h, w = img.shape[:2]
    lo, hi = SCALE_RANGE
    scale = rng.uniform(lo, hi)
    scale = max(scale, side / min(h, w))  # do not shrink below the window
    if scale < 1.0:
        img = cv2.resize(img, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        h, w = img.shape[:2]
    if h < side or w < side:
        ph, pw = max(0, side - h), max(0, side - w)
        img = cv2.copyMakeBorder(img, ph // 2, ph - ph // 2, pw // 2, pw - pw // 2, cv2.BORDER_REFLECT)
        h, w = img.shape[:2]
    y = int(rng.integers(h - side + 1))
    x = int(rng.integers(w - side + 1))
    return np.ascontiguousarray(img[y:y + side, x:x + side])


def _path(rng, max_shift):
    """(velocity, acceleration) in px over the exposure t in [-1/2, 1/2];
    `max_shift` a number (lengths up to it, most short) or a (lo, hi) range
    (lengths uniform in it)."""
    if isinstance(max_shift, tuple):
        length = rng.uniform(*max_shift)
    else:
        length = max_shift * (0.1 + 0.9 * rng.random() ** 1.5)
    heading = rng.uniform(0, 2 * np.pi)
    velocity = length * np.array([math.cos(heading), math.sin(heading)])
    return velocity, rng.normal(0.0, 0.5 * length, 2)


class CameraPath:
    """Homographies H(t), t in [-1/2, 1/2], H(0) = identity, about centre `c`:
    translation d(t) = v t + a t^2 / 2, rotation by r t degrees, zoom
    1 + z t, perspective terms p t (screen -> scene coordinates)."""

    def __init__(self, rng, size, still=False, shift=None):
        self.c = np.array([(size - 1) / 2, (size - 1) / 2])
        if still:
            self.v = self.a = np.zeros(2)
            self.rot = self.zoom = 0.0
            self.tilt = np.zeros(2)
            return
        self.v, self.a = _path(rng, MAX_SHIFT if shift is None else shift)
        self.rot = rng.uniform(-MAX_ROTATION, MAX_ROTATION) * rng.random()
        self.zoom = rng.uniform(-MAX_ZOOM, MAX_ZOOM) * rng.random()
        self.tilt = rng.uniform(-MAX_TILT, MAX_TILT, 2) * rng.random()

    def matrix(self, t):
        ang = math.radians(self.rot * t)
        s = 1.0 + self.zoom * t
        a = s * np.array([[math.cos(ang), -math.sin(ang)], [math.sin(ang), math.cos(ang)]])
        d = self.v * t + self.a * t * t / 2
        m = np.eye(3)
        m[:2, :2] = a
        m[:2, 2] = self.c + d - a @ self.c
        # the perspective tilt acts about the centre (conjugated by the shift to it)
        to_centre = np.array([[1, 0, -self.c[0]], [0, 1, -self.c[1]], [0, 0, 1.0]])
        persp = np.eye(3)
        persp[2, :2] = self.tilt * t
        return m @ np.linalg.inv(to_centre) @ persp @ to_centre

    def reach(self, size):
        """An upper bound (px) of how far a point of a `size` crop moves."""
        r = math.hypot(size, size) / 2
        return float(np.linalg.norm(self.v) + np.linalg.norm(self.a) / 4 + math.radians(abs(self.rot)) * r
                     + abs(self.zoom) * r + float(np.abs(self.tilt).sum()) * r * r)


def _subframes(reach, most=None):
    n = int(math.ceil(reach / MAX_STEP_PX)) + 1
    n = min(MAX_SUBFRAMES if most is None else most, max(MIN_SUBFRAMES, n))
    return n + 1 - n % 2


def _times(n):
    return [i / (n - 1) - 0.5 for i in range(n)]


def _warp(img, m, size, margin, border=cv2.BORDER_REFLECT):
    """Screen pixel p of the `size` crop shows scene point m p (scene = `img`
    with `margin` px around the crop)."""
    to_src = np.array([[1, 0, margin], [0, 1, margin], [0, 0, 1.0]]) @ m
    return cv2.warpPerspective(img, to_src, (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                               borderMode=border)


def _object_layers(rng, bank, split, size, count, shift=MAX_OBJECT_SHIFT):
    from tfdeblur.datasets.dynamic import _mask

    layers = []
    for _ in range(count):
        p = int(max(16, size * rng.uniform(0.2, 0.55)))
        alpha = _mask(rng, p)
        tex = np.power(_window(rng, bank.pick(rng, split), p), GAMMA)
        v, a = _path(rng, shift)
        layers.append(dict(color=(tex * alpha[..., None]).astype(np.float32), alpha=alpha,
                           pos=np.array([rng.uniform(0, size - 1), rng.uniform(0, size - 1)]),
                           v=v, a=a, angle=rng.uniform(0, 360), spin=rng.uniform(-10, 10)))
    return layers


def _layer_matrix(layer, cam, t):
    """Screen -> patch coordinates of a moving layer (it moves in scene space)."""
    p = layer["alpha"].shape[0]
    pc = (p - 1) / 2
    o = layer["pos"] + layer["v"] * t + layer["a"] * t * t / 2
    ang = math.radians(-(layer["angle"] + layer["spin"] * t))
    back = np.array([[math.cos(ang), -math.sin(ang), 0], [math.sin(ang), math.cos(ang), 0], [0, 0, 1.0]])
    to_local = np.array([[1, 0, -o[0]], [0, 1, -o[1]], [0, 0, 1.0]])
    to_patch = np.array([[1, 0, pc], [0, 1, pc], [0, 0, 1.0]])
    return to_patch @ back @ to_local @ cam


def _layer_box(layer, to_patch, size):
    """The screen rectangle (x0, y0, x1, y1) a layer's patch covers under
    `to_patch` (screen -> patch), clipped to the crop, 1 px of slack for
    bilinear sampling; None when it covers none of it."""
    p = layer["alpha"].shape[0]
    corners = np.array([[-1.0, -1.0, 1.0], [p, -1.0, 1.0], [-1.0, p, 1.0], [p, p, 1.0]]).T
    screen = np.linalg.solve(to_patch, corners)
    if np.any(screen[2] <= 1e-9):  # a corner behind the camera: the whole crop
        return 0, 0, size, size
    xy = screen[:2] / screen[2]
    x0, y0 = (max(0, int(math.floor(v)) - 1) for v in xy.min(axis=1))
    x1, y1 = (min(size, int(math.ceil(v)) + 2) for v in xy.max(axis=1))
    return (x0, y0, x1, y1) if x0 < x1 and y0 < y1 else None


def _render(linear, size, margin, cam, layers, most=None):
    """(blur, sharp) in linear light, unclipped: the mean of the sub-frames and the middle one.

    Each layer is warped into the rectangle it covers only and composited
    there with OpenCV (2026-11-28: the whole-crop warps and numpy's
    broadcast of the alpha were half of a `wide` sample's time)."""
    reach = cam.reach(size)
    for layer in layers:
        reach = max(reach, cam.reach(size) + np.linalg.norm(layer["v"]) + np.linalg.norm(layer["a"]) / 4
                    + math.radians(abs(layer["spin"])) * layer["alpha"].shape[0] / math.sqrt(2))
    n = _subframes(reach, most)
    acc = np.zeros((size, size, 3), np.float64)
    sharp = None
    for t in _times(n):
        m = cam.matrix(t)
        frame = _warp(linear, m, size, margin)
        for layer in layers:
            to_patch = _layer_matrix(layer, m, t)
            box = _layer_box(layer, to_patch, size)
            if box is None:
                continue
            x0, y0, x1, y1 = box
            shifted = to_patch @ np.array([[1, 0, x0], [0, 1, y0], [0, 0, 1.0]])
            flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
            col = cv2.warpPerspective(layer["color"], shifted, (x1 - x0, y1 - y0), flags=flags,
                                      borderMode=cv2.BORDER_CONSTANT)
            alpha = cv2.warpPerspective(layer["alpha"], shifted, (x1 - x0, y1 - y0), flags=flags,
                                        borderMode=cv2.BORDER_CONSTANT)
            # frame * (1 - alpha) + col with OpenCV on operands of one shape: the same
            # float32 products and sums as numpy's, ~10x faster than broadcasting alpha
            transparency = 1 - alpha
            over = cv2.multiply(frame[y0:y1, x0:x1], cv2.merge([transparency] * 3))
            frame[y0:y1, x0:x1] = cv2.add(over, col, dst=over)
        cv2.accumulate(frame, acc)
        if t == 0.0:
            sharp = frame
    return (acc / n).astype(np.float32), sharp.astype(np.float32)


def _camera_pipeline(rng, blur_lin, sharp_lin, clean=0.0):
    """Clip after blurring, Poisson-Gaussian noise, gamma, 8 bits, maybe JPEG
    (blurry image only); with probability `clean` no noise and no JPEG (the
    draw is skipped when `clean` is 0, so such streams stay as they were)."""
    blur_lin = np.clip(blur_lin, 0.0, 1.0)
    sharp_lin = np.clip(sharp_lin, 0.0, 1.0)
    if clean > 0 and rng.random() < clean:
        return (quantize8(np.power(blur_lin, 1.0 / GAMMA)).astype(np.float32),
                quantize8(np.power(sharp_lin, 1.0 / GAMMA)).astype(np.float32))
    a = rng.uniform(*SHOT_NOISE)
    b = rng.uniform(*READ_NOISE) ** 2
    noise = rng.standard_normal(blur_lin.shape).astype(np.float32)
    blur_lin = np.clip(blur_lin + np.sqrt(a * blur_lin + b) * noise, 0.0, 1.0)
    blur = quantize8(np.power(blur_lin, 1.0 / GAMMA))
    sharp = quantize8(np.power(sharp_lin, 1.0 / GAMMA))
    if rng.random() < JPEG_PROB:
        q = int(rng.integers(JPEG_QUALITY[0], JPEG_QUALITY[1] + 1))
        ok, buf = cv2.imencode(".jpg", np.round(blur * 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, q])
        blur = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED).astype(np.float32) / 255.0
    return blur.astype(np.float32), sharp.astype(np.float32)


def _mix_probs(mix):
    weights = dict(DEFAULT_MIX if mix is None else mix)
    clean = weights.pop(CLEAN_KEY, 0.0)
    if not 0.0 <= float(clean) <= 1.0:
        raise PhotoError(f"`data` photos {CLEAN_KEY} must be a probability from 0 to 1; got {clean!r}")
    return kernels.choice_probs(weights, MODES, "`data` photos mix", PhotoError)


def _clean_prob(mix):
    return 0.0 if mix is None else float(mix.get(CLEAN_KEY, 0.0))


def make_photo_pair(bank, seed, size=128, split="train", mix=None, mode=None):
    """One (blur, sharp) pair, float32 (size, size, 3) in [0, 1] (multiples of
    1/255), fully determined by `seed` (int or tuple) and the bank's photos.

    `mode` forces one of `MODES`; otherwise it is drawn from `mix`
    (default `DEFAULT_MIX`), whose `CLEAN_KEY` entry, if any, is the chance
    of a sample without noise or JPEG.
    """
    size = int(size)
    rng = np.random.default_rng(seed)
    probs = _mix_probs(mix)
    chosen = MODES[int(rng.choice(len(MODES), p=probs))] if mode is None else mode
    if chosen not in MODES:
        raise PhotoError(f"mode must be one of {list(MODES)}; got {mode!r}")
    sub_seed = [int(v) for v in rng.integers(0, 2 ** 31, 2)]
    if chosen == "synthetic":
        from tfdeblur.datasets.synthetic import make_pair

        return make_pair(tuple(sub_seed), size)
    if chosen == "dynamic":
        from tfdeblur.datasets.dynamic import make_dynamic_pair

        return make_dynamic_pair(tuple(sub_seed), size)
    gain = rng.uniform(1.0, 2.5) if rng.random() < SATURATION_PROB else 1.0
    if chosen in ("uniform", "shake"):
        if chosen == "uniform":
            k = kernels.random_kernel(rng, max_size=MAX_KERNEL, size_bias=UNIFORM_SIZE_BIAS)
        else:
            k = kernels.random_kernel(rng, max_size=MAX_KERNEL, probs={"trajectory": 1.0}, size_bias=SHAKE_SIZE_BIAS)
        margin = k.shape[0] // 2 + 1
        linear = np.power(_window(rng, bank.pick(rng, split), size + 2 * margin), GAMMA) * gain
        blurred = cv2.filter2D(linear, -1, np.ascontiguousarray(k[::-1, ::-1]), borderType=cv2.BORDER_REFLECT)
        crop = slice(margin, margin + size)
        return _camera_pipeline(rng, blurred[crop, crop], linear[crop, crop], _clean_prob(mix))
    wide = chosen == "wide"
    cam = CameraPath(rng, size, still=(chosen == "objects" and rng.random() < STILL_CAMERA_PROB),
                     shift=WIDE_SHIFT if wide else None)
    margin = int(math.ceil(cam.reach(size))) + 2
    linear = np.power(_window(rng, bank.pick(rng, split), size + 2 * margin), GAMMA) * gain
    layers = []
    if chosen == "objects" or (wide and rng.random() < WIDE_OBJECTS_PROB):
        layers = _object_layers(rng, bank, split, size, int(rng.integers(1, 4)),
                                shift=WIDE_SHIFT if wide else MAX_OBJECT_SHIFT)
        for layer in layers:
            layer["color"] = layer["color"] * gain
    blur_lin, sharp_lin = _render(linear, size, margin, cam, layers, WIDE_MAX_SUBFRAMES if wide else None)
    return _camera_pipeline(rng, blur_lin, sharp_lin, _clean_prob(mix))


_BANKS = {}
_BANKS_LOCK = threading.Lock()


def photo_bank(root):
    """One `PhotoBank` per folder per process (its decode cache is shared)."""
    key = os.path.abspath(os.fspath(root))
    with _BANKS_LOCK:
        if key not in _BANKS:
            _BANKS[key] = PhotoBank(key)
        return _BANKS[key]


def photos_dataset(root, split="train", crop=128, seed=0, num_images=None, mix=None, indices=None):
    """Unbatched tf.data of (blur, sharp) pairs of `crop` x `crop` px.

    Element i is `make_photo_pair(bank, (SPLIT_TAGS[split], seed, i), crop)`;
    "train" is infinite unless `num_images` (or `indices`, a dataset of
    int64 sample indices, as the training stream passes), "val" has
    `VAL_IMAGES` pairs of `VAL_SIZE` px unless told otherwise.
    """
    check_split(split, seed, SPLIT_TAGS)
    bank = photo_bank(root)
    _mix_probs(mix)  # fail now, not inside tf.data
    mix = None if mix is None else dict(mix)
    return seeded_pairs(lambda sample_seed, size: make_photo_pair(bank, sample_seed, size, split=split, mix=mix),
                        SPLIT_TAGS[split], seed, crop, VAL_IMAGES if split == "val" and num_images is None else num_images,
                        indices)
