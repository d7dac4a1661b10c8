"""Non-uniform (dynamic-scene) blur like GoPro's, rendered from sub-frames.

The GoPro dataset (Nah, Kim, Lee, CVPR 2017) averages 7-13 consecutive
frames of a 240 fps camera and takes the middle frame as the sharp target;
the camera shake blurs the whole frame (global blur) while independently
moving objects blur only where they are (local blur). This module renders
that process procedurally, so GLBDN's phases 2-3 (and any network) can
train on global + local blur without downloading GoPro:

* a static background: a dead-leaves scene (`synthetic.dead_leaves`),
  drawn with a margin so the camera never sees past its border;
* 0-4 object layers: dead-leaves textures cut out by an anti-aliased
  ellipse or star polygon (alpha), each moving on its own path (velocity,
  acceleration, rotation) in front of the background, later ones in front;
* a camera path over the exposure t in [-1/2, 1/2]: translation
  d(t) = v t + a t^2 / 2 and a small rotation about the frame centre,
  theta(t) = omega t (a rotation makes the blur vary across the frame);
  with probability `STILL_CAMERA_PROB` the camera is still (local blur only),
  and each object is still with probability `STILL_OBJECT_PROB`;
* every sub-frame is composited in linear light (sRGB-like values ** 2.2,
  premultiplied alpha, bilinear warps), the N sub-frames (N odd, t_i evenly
  spaced from -1/2 to 1/2) are averaged in linear light and gamma-encoded
  again; the sharp target is the middle sub-frame (t = 0), gamma-encoded.
  N defaults to enough sub-frames that no point moves more than
  `MAX_STEP_PX` between two of them (at least 7, as GoPro), so the average
  is a continuous smear rather than ghosts;
* then Gaussian noise (sigma uniform in [0, 0.01], like the synthetic
  default) on the blurry image, and both images quantized to 8 bits.

A static scene (no camera or object motion) gives blur == sharp exactly,
since every sub-frame is the middle one. Each pair is fully determined by
its seed (`make_dynamic_pair`); `dynamic_dataset` numbers pairs like
`synthetic.synthetic_dataset` (train/val streams never share a pair).
"""
import dataclasses
import math

import cv2
import numpy as np

from tfdeblur.datasets.synthetic import DEFAULT_NOISE_RANGE, check_split, dead_leaves, quantize8, seeded_pairs

SPLIT_TAGS = {"train": 21, "val": 22}
DEFAULT_VAL_IMAGES = 16
GAMMA = 2.2
MAX_STEP_PX = 0.75
MIN_SUBFRAMES = 7
MAX_SUBFRAMES = 61
STILL_CAMERA_PROB = 0.25
STILL_OBJECT_PROB = 0.2
MAX_CAMERA_SHIFT = 16.0  # px of camera translation over the exposure
MAX_CAMERA_ROTATION = 1.0  # degrees over the exposure
MAX_OBJECT_SHIFT = 24.0  # px of object motion over the exposure (relative to the scene)


def _rot(deg):
    a = math.radians(deg)
    return np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])


@dataclasses.dataclass
class Layer:
    """A moving object: premultiplied linear colour and alpha on a square patch."""

    color: np.ndarray  # (P, P, 3) linear RGB * alpha
    alpha: np.ndarray  # (P, P)
    position: np.ndarray  # (x, y) of the patch centre at t = 0, screen pixels
    velocity: np.ndarray  # px over the exposure
    acceleration: np.ndarray  # px / exposure^2
    angle: float  # degrees at t = 0
    spin: float  # degrees over the exposure


@dataclasses.dataclass
class DynamicScene:
    """Background (linear RGB, with `margin` px on every side), layers, camera path."""

    background: np.ndarray
    margin: int
    height: int
    width: int
    layers: list
    camera_velocity: np.ndarray
    camera_acceleration: np.ndarray
    camera_spin: float  # degrees over the exposure

    def max_displacement(self):
        """An upper bound (px) on how far any screen point moves over the exposure."""
        radius = math.hypot(self.height, self.width) / 2
        cam = (np.linalg.norm(self.camera_velocity) + np.linalg.norm(self.camera_acceleration) / 4
               + math.radians(abs(self.camera_spin)) * radius)
        obj = 0.0
        for layer in self.layers:
            r = layer.alpha.shape[0] / math.sqrt(2)
            obj = max(obj, np.linalg.norm(layer.velocity) + np.linalg.norm(layer.acceleration) / 4
                      + math.radians(abs(layer.spin)) * r)
        return float(cam + obj)

    def auto_subframes(self):
        n = int(math.ceil(self.max_displacement() / MAX_STEP_PX)) + 1
        n = min(MAX_SUBFRAMES, max(MIN_SUBFRAMES, n))
        return n + 1 - n % 2  # odd: the middle sub-frame is t = 0


def _camera(scene, t):
    """Screen -> world (2x2, 2): world = A p + b; world = background pixels - margin."""
    c = np.array([(scene.width - 1) / 2, (scene.height - 1) / 2])
    rot = _rot(scene.camera_spin * t)
    shift = scene.camera_velocity * t + scene.camera_acceleration * t * t / 2
    return rot, c + shift - rot @ c


def render_frame(scene, t):
    """The linear-light sub-frame at time t in [-1/2, 1/2], float32 (H, W, 3)."""
    h, w, m = scene.height, scene.width, scene.margin
    a, b = _camera(scene, t)
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    to_bg = np.hstack([a, (b + m)[:, None]]).astype(np.float64)
    frame = cv2.warpAffine(scene.background, to_bg, (w, h), flags=flags, borderMode=cv2.BORDER_REFLECT)
    for layer in scene.layers:
        p = layer.alpha.shape[0]
        pc = np.array([(p - 1) / 2, (p - 1) / 2])
        o = layer.position + layer.velocity * t + layer.acceleration * t * t / 2
        back = _rot(-(layer.angle + layer.spin * t))
        # patch = back (world - o) + pc, world = a screen + b
        to_patch = np.hstack([back @ a, (back @ (b - o) + pc)[:, None]])
        col = cv2.warpAffine(layer.color, to_patch, (w, h), flags=flags, borderMode=cv2.BORDER_CONSTANT)
        alpha = cv2.warpAffine(layer.alpha, to_patch, (w, h), flags=flags, borderMode=cv2.BORDER_CONSTANT)
        frame = frame * (1 - alpha[..., None]) + col
    return frame.astype(np.float32)


def render_subframes(scene, num_subframes):
    """The N linear sub-frames at t_i = i / (N - 1) - 1/2 (N odd: the middle one is t = 0)."""
    n = int(num_subframes)
    if n < 1 or n % 2 == 0:
        raise ValueError(f"num_subframes must be a positive odd int; got {num_subframes!r}")
    times = [0.0] if n == 1 else [i / (n - 1) - 0.5 for i in range(n)]
    return [render_frame(scene, t) for t in times]


def _encode(linear):
    return np.power(np.clip(linear, 0.0, 1.0), 1.0 / GAMMA).astype(np.float32)


def _mask(rng, p):
    """An anti-aliased ellipse or star polygon filling most of a p x p patch, float32 [0, 1]."""
    mask = np.zeros((p, p), np.uint8)
    c = (p - 1) / 2
    one = 16
    if rng.random() < 0.5:
        axes = (max(1, int(c * rng.uniform(0.5, 0.95) * one)), max(1, int(c * rng.uniform(0.3, 0.95) * one)))
        cv2.ellipse(mask, (int(c * one), int(c * one)), axes, rng.uniform(0, 180), 0, 360, 255, -1,
                    cv2.LINE_AA, 4)
    else:
        n = int(rng.integers(3, 9))
        ang = np.sort(rng.uniform(0, 2 * np.pi, n))
        rad = c * rng.uniform(0.5, 0.95, n)
        pts = np.stack([c + rad * np.cos(ang), c + rad * np.sin(ang)], axis=1) * one
        cv2.fillPoly(mask, [pts.astype(np.int32)], 255, cv2.LINE_AA, 4)
    return mask.astype(np.float32) / 255


def _motion(rng, still_prob, max_shift):
    """(velocity, acceleration) over the exposure: still, or a random path."""
    if rng.random() < still_prob:
        return np.zeros(2), np.zeros(2)
    length = max_shift * (0.15 + 0.85 * rng.random() ** 1.5)
    heading = rng.uniform(0, 2 * np.pi)
    velocity = length * np.array([math.cos(heading), math.sin(heading)])
    acceleration = rng.normal(0.0, 0.5 * length, 2)  # curved paths
    return velocity, acceleration


def random_scene(rng, height, width, num_objects=None, static=False,
                 max_camera_shift=MAX_CAMERA_SHIFT, max_object_shift=MAX_OBJECT_SHIFT,
                 max_camera_rotation=MAX_CAMERA_ROTATION):
    """A random `DynamicScene` (see the module docstring); `static=True` keeps
    the same scene but with no motion at all."""
    h, w = int(height), int(width)
    cam_v, cam_a = _motion(rng, STILL_CAMERA_PROB, max_camera_shift)
    spin = 0.0 if not cam_v.any() else rng.uniform(-max_camera_rotation, max_camera_rotation)
    reach = (np.linalg.norm(cam_v) + np.linalg.norm(cam_a) / 4
             + math.radians(abs(spin)) * math.hypot(h, w) / 2)
    margin = int(math.ceil(reach)) + 2
    background = np.power(dead_leaves(rng, h + 2 * margin, w + 2 * margin), GAMMA).astype(np.float32)
    n = int(rng.integers(0, 5)) if num_objects is None else int(num_objects)
    layers = []
    for _ in range(n):
        p = int(max(8, min(h, w) * rng.uniform(0.15, 0.5)))
        alpha = _mask(rng, p)
        texture = np.power(dead_leaves(rng, p, p), GAMMA).astype(np.float32)
        v, a = _motion(rng, STILL_OBJECT_PROB, max_object_shift)
        layers.append(Layer(
            color=texture * alpha[..., None], alpha=alpha,
            position=np.array([rng.uniform(0, w - 1), rng.uniform(0, h - 1)]),
            velocity=v, acceleration=a, angle=rng.uniform(0, 360),
            spin=0.0 if not v.any() else rng.uniform(-10, 10),
        ))
    scene = DynamicScene(background, margin, h, w, layers, cam_v, cam_a, spin)
    if static:
        scene.camera_velocity = np.zeros(2)
        scene.camera_acceleration = np.zeros(2)
        scene.camera_spin = 0.0
        for layer in layers:
            layer.velocity, layer.acceleration, layer.spin = np.zeros(2), np.zeros(2), 0.0
    return scene


def _hw(size):
    h, w = (size, size) if np.isscalar(size) else size
    if int(h) < 1 or int(w) < 1:
        raise ValueError(f"size must be a positive int or (height, width); got {size!r}")
    return int(h), int(w)


def make_dynamic_pair(seed, size=256, num_subframes=None, noise_range=DEFAULT_NOISE_RANGE,
                      static=False, **scene_options):
    """One (blur, sharp) pair of a random dynamic scene, determined by `seed`.

    Args:
      seed: int or tuple of ints for `np.random.default_rng`.
      size: int or (height, width).
      num_subframes: odd number of sub-frames; None chooses it from the
        motion (`DynamicScene.auto_subframes`).
      noise_range: (low, high) of the noise sigma; (0, 0) for none.
      static: no motion (then blur == sharp up to the noise).
      scene_options: `random_scene` options (num_objects, max_camera_shift, ...).

    Returns:
      (blur, sharp) float32 (H, W, 3) in [0, 1], multiples of 1/255.
    """
    h, w = _hw(size)
    rng = np.random.default_rng(seed)
    scene = random_scene(rng, h, w, static=static, **scene_options)
    n = scene.auto_subframes() if num_subframes is None else int(num_subframes)
    frames = render_subframes(scene, n)
    sharp = _encode(frames[len(frames) // 2])
    blur = _encode(np.mean(frames, axis=0))
    sigma = rng.uniform(*noise_range)
    if sigma > 0:
        blur = blur + rng.normal(0.0, sigma, blur.shape).astype(np.float32)
    return quantize8(blur), quantize8(sharp)


def dynamic_dataset(split="train", crop=256, seed=0, num_images=None, **options):
    """Unbatched tf.data of dynamic-scene (blur, sharp) pairs of `crop` x `crop` px.

    Element i is `make_dynamic_pair((SPLIT_TAGS[split], seed, i), crop, **options)`;
    "train" is infinite unless `num_images`, "val" has 16 images.
    """
    check_split(split, seed, SPLIT_TAGS)
    options = dict(options)
    return seeded_pairs(lambda sample_seed, size: make_dynamic_pair(sample_seed, size, **options), SPLIT_TAGS[split],
                        seed, crop, DEFAULT_VAL_IMAGES if split == "val" and num_images is None else num_images)
