"""Synthetic training videos: textured objects moving over textured, panning backgrounds.

Each video has several objects (random blobs, ellipses and polygons, each with its own texture)
that translate along smooth paths, grow and shrink, rotate, and pass in front of each other
(a per-video depth order that may swap halfway), over a large textured background seen through
a camera window that pans. Labels are exact (rendered with the objects), so the videos serve for
pretraining from scratch, as realistic test data that the repository does not have to ship, and
as the clips of speed measurements without a dataset (:func:`speed_clip`).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from ..errors import InputError
from .sequences import VideoSequence


def texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A random colour texture ``(height, width, 3)`` uint8: smooth noise, stripes or checks."""
    kind = int(rng.integers(0, 3))
    c0, c1 = rng.uniform(0, 255, size=(2, 3))
    if kind == 0:  # smooth multi-scale noise
        field = np.zeros((height, width), np.float32)
        for octave in range(4):
            cells = 2 ** (octave + 1) + 1
            small = rng.uniform(-1, 1, size=(cells, cells)).astype(np.float32)
            field += cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC) / (octave + 1)
    else:
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        angle = rng.uniform(0, math.pi)
        period = rng.uniform(6, 30)
        u = (xx * math.cos(angle) + yy * math.sin(angle)) / period
        if kind == 1:  # stripes
            field = np.sin(2 * math.pi * u)
        else:  # checks
            v = (-xx * math.sin(angle) + yy * math.cos(angle)) / period
            field = np.sign(np.sin(math.pi * u) * np.sin(math.pi * v))
    field = (field - field.min()) / max(float(field.max() - field.min()), 1e-6)
    img = c0[None, None] * (1 - field[..., None]) + c1[None, None] * field[..., None]
    img += rng.normal(0, 6, size=img.shape)  # fine grain
    return np.clip(img, 0, 255).astype(np.uint8)


def shape_mask(rng: np.random.Generator, size: int) -> np.ndarray:
    """A random object silhouette in a ``(size, size)`` uint8 {0, 1} image (blob, ellipse or polygon)."""
    m = np.zeros((size, size), np.uint8)
    c = size / 2
    kind = int(rng.integers(0, 3))
    if kind == 0:  # star-shaped blob with a smooth radius function
        n = 64
        ang = np.linspace(0, 2 * math.pi, n, endpoint=False)
        radius = np.ones(n)
        for f in range(1, 5):
            radius += rng.uniform(-0.25, 0.25) / f * np.cos(f * ang + rng.uniform(0, 2 * math.pi))
        radius = np.clip(radius, 0.3, 1.5) / 1.5 * (size * 0.48)
        pts = np.stack([c + radius * np.cos(ang), c + radius * np.sin(ang)], 1)
        cv2.fillPoly(m, [pts.round().astype(np.int32)], 1)
    elif kind == 1:
        axes = (int(size * rng.uniform(0.2, 0.48)), int(size * rng.uniform(0.2, 0.48)))
        cv2.ellipse(m, (int(c), int(c)), axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    else:
        n = int(rng.integers(3, 8))
        ang = np.sort(rng.uniform(0, 2 * math.pi, n))
        radius = size * rng.uniform(0.25, 0.48, n)
        pts = np.stack([c + radius * np.cos(ang), c + radius * np.sin(ang)], 1)
        cv2.fillPoly(m, [pts.round().astype(np.int32)], 1)
    return m


def generate_video(
    rng: np.random.Generator,
    *,
    length: int = 24,
    size: tuple[int, int] = (240, 427),
    num_objects: int | tuple[int, int] = (1, 4),
    object_size: tuple[float, float] = (0.25, 0.55),
    name: str = "synthetic",
) -> VideoSequence:
    """Render one synthetic video.

    Args:
        rng: random generator (the video is a pure function of its state).
        length: number of frames.
        size: ``(H, W)`` of the frames.
        num_objects: an exact count or an inclusive ``(min, max)`` range.
        object_size: range of an object's size as a fraction of ``min(H, W)``.
        name: sequence name.

    Returns:
        A :class:`VideoSequence` with ``images (length, H, W, 3)`` uint8 and ``labels`` ids 1..K
        (an object may be fully occluded or leave the frame in some frames).
    """
    H, W = size
    k = int(num_objects) if isinstance(num_objects, int) else int(rng.integers(num_objects[0], num_objects[1] + 1))
    # Camera: a window panning over a background 1.3x larger than the frame.
    BH, BW = int(H * 1.3) + 2, int(W * 1.3) + 2
    bg = texture(rng, BH, BW)
    cam_start = rng.uniform([0, 0], [BH - H, BW - W])
    cam_end = rng.uniform([0, 0], [BH - H, BW - W])
    objects = []
    base = min(H, W)
    for _ in range(k):
        s = int(base * rng.uniform(*object_size))
        objects.append(
            dict(
                mask=shape_mask(rng, s),
                tex=texture(rng, s, s),
                start=rng.uniform([0.15 * H, 0.15 * W], [0.85 * H, 0.85 * W]),
                velocity=rng.uniform(-1, 1, size=2) * base * 0.35 / max(length, 1),
                wobble=rng.uniform(-1, 1, size=2) * base * 0.05,
                scale=(rng.uniform(0.7, 1.1), rng.uniform(0.7, 1.3)),
                spin=rng.uniform(-60, 60),
            )
        )
    depth = list(rng.permutation(k))
    swap_at = int(rng.integers(length // 3, max(length // 3 + 1, 2 * length // 3))) if k > 1 else length
    swap = tuple(rng.choice(k, size=2, replace=False)) if k > 1 else (0, 0)
    images = np.empty((length, H, W, 3), np.uint8)
    labels = np.zeros((length, H, W), np.uint8)
    for t in range(length):
        f = t / max(length - 1, 1)
        cy, cx = (1 - f) * cam_start + f * cam_end
        frame = bg[int(cy) : int(cy) + H, int(cx) : int(cx) + W].copy()
        lab = np.zeros((H, W), np.uint8)
        order = list(depth)
        if t >= swap_at:  # two objects swap depth: occlusions change during the video
            i, j = order.index(swap[0]), order.index(swap[1])
            order[i], order[j] = order[j], order[i]
        for oi in order:
            o = objects[oi]
            s = o["mask"].shape[0]
            pos = o["start"] + o["velocity"] * t + o["wobble"] * math.sin(2 * math.pi * f)
            scale = o["scale"][0] + (o["scale"][1] - o["scale"][0]) * f
            mat = cv2.getRotationMatrix2D((s / 2, s / 2), float(o["spin"] * f), float(scale))
            mat[:, 2] += (pos[1] - s / 2, pos[0] - s / 2)
            tex = cv2.warpAffine(o["tex"], mat, (W, H), flags=cv2.INTER_LINEAR)
            m = cv2.warpAffine(o["mask"], mat, (W, H), flags=cv2.INTER_NEAREST).astype(bool)
            frame[m] = tex[m]
            lab[m] = oi + 1
        images[t] = cv2.GaussianBlur(frame, (3, 3), 0.6)
        labels[t] = lab
    return VideoSequence(name, images, labels)


def generate_dataset(seed: int, count: int, **kwargs: object) -> list[VideoSequence]:
    """``count`` synthetic videos named ``synthetic-<seed>-<i>`` (kwargs go to :func:`generate_video`)."""
    return [generate_video(np.random.default_rng([seed, i]), name=f"synthetic-{seed}-{i}", **kwargs) for i in range(count)]  # type: ignore[arg-type]


def speed_clip(
    num_objects: int, height: int = 480, frames: int = 30, *, width: int | None = None, seed: int = 0
) -> tuple[list[np.ndarray], np.ndarray]:
    """A clip for speed measurements (16:9 unless ``width`` is given): ``frames`` RGB frames
    ``(H, W, 3)`` uint8 and the ``(H, W)`` uint8 ids of its first frame, on which all
    ``num_objects`` objects are visible.

    Raises:
        InputError: ``num_objects`` outside 1..254, or no placement shows them all (too many
            objects for the frame size).
    """
    if num_objects < 1 or num_objects > 254:
        raise InputError(f"--objects must be between 1 and 254, got {num_objects}")
    width = width or int(round(height * 16 / 9 / 2)) * 2
    for attempt in range(20):
        video = generate_video(
            np.random.default_rng([seed, attempt]), length=frames, size=(height, width), num_objects=num_objects, object_size=(0.12, 0.3)
        )
        if len(np.unique(video.labels[0])) == num_objects + 1:
            return list(video.images), video.labels[0]
    raise InputError(f"cannot place {num_objects} visible objects in a {height}p frame; use fewer --objects")
