"""Throughput against the number of objects: frames per second and per-stage time of a session.

Clips are synthetic (a textured background panning under K textured ellipses that move and
overlap) or real (a benchmark sequence's frames, its first mask split into K objects by
vertical strips of the foreground), so the same measurement runs with and without a dataset.
"""

from __future__ import annotations

import statistics as st
from typing import TYPE_CHECKING, Any, Callable, Sequence

import cv2
import numpy as np

from ..errors import InputError
from .datasets import Dataset, SequenceInfo, read_annotation

if TYPE_CHECKING:
    from ..inference.session import Session

Clip = tuple[list[np.ndarray], np.ndarray]
"""``(frames, first_mask)``: ``(H, W, 3)`` uint8 RGB frames and the ``(H, W)`` uint8 ids of frame 0."""


def _noise(rng: np.random.Generator, h: int, w: int, cell: int) -> np.ndarray:
    small = rng.integers(0, 256, (h // cell + 2, w // cell + 2, 3), dtype=np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def synthetic_clip(num_objects: int, height: int = 480, frames: int = 30, seed: int = 0) -> Clip:
    """A 16:9 clip of ``frames`` frames with ``num_objects`` moving textured ellipses.

    Returns:
        ``(frames, mask)``: ``(H, W, 3)`` uint8 RGB frames and ``(H, W)`` uint8 ids of frame 0
        (1..K, every id visible; later objects are drawn over earlier ones).
    """
    if num_objects < 1 or num_objects > 254:
        raise InputError(f"--objects must be between 1 and 254, got {num_objects}")
    for attempt in range(20):
        clip = _draw_clip(num_objects, height, frames, np.random.default_rng(seed + attempt))
        if len(np.unique(clip[1])) == num_objects + 1:
            return clip
    raise InputError(f"cannot place {num_objects} visible objects in a {height}p frame; use fewer --objects")


def _draw_clip(num_objects: int, height: int, frames: int, rng: np.random.Generator) -> Clip:
    w = int(round(height * 16 / 9 / 2)) * 2
    pan = 2
    bg = _noise(rng, height, w + pan * frames, 24)
    bg = cv2.add(bg, rng.integers(0, 32, bg.shape, dtype=np.uint8))
    objs = []
    for k in range(num_objects):
        a = int(rng.integers(height // 12, height // 5))
        b = int(rng.integers(height // 12, height // 5))
        tex = cv2.addWeighted(_noise(rng, 2 * b + 1, 2 * a + 1, 6), 0.6, np.full((2 * b + 1, 2 * a + 1, 3), rng.integers(0, 256, 3), np.uint8), 0.4, 0)
        shape = np.zeros((2 * b + 1, 2 * a + 1), np.uint8)
        cv2.ellipse(shape, (a, b), (a, b), float(rng.uniform(0, 180)), 0, 360, 1, -1)
        pos = np.array([rng.uniform(a, w - a), rng.uniform(b, height - b)])
        vel = rng.uniform(-6, 6, 2)
        objs.append((k + 1, a, b, tex, shape.astype(bool), pos, vel))
    out: list[np.ndarray] = []
    first = np.zeros((height, w), np.uint8)
    for t in range(frames):
        img = np.ascontiguousarray(bg[:, t * pan : t * pan + w])
        ids = np.zeros((height, w), np.uint8)
        for oid, a, b, tex, shape, pos, vel in objs:
            cx, cy = (pos + vel * t).astype(int)
            cx = int(np.clip(cx, a, w - a - 1))
            cy = int(np.clip(cy, b, height - b - 1))
            ys, xs = slice(cy - b, cy + b + 1), slice(cx - a, cx + a + 1)
            img[ys, xs][shape] = tex[shape]
            ids[ys, xs][shape] = oid
        out.append(img)
        if t == 0:
            first = ids
    return out, first


def real_clip(dataset: Dataset, seq: SequenceInfo, num_objects: int, height: int = 480, frames: int = 30) -> Clip:
    """The first ``frames`` frames of ``seq`` scaled to ``height``, its first mask split into ``num_objects``."""
    from ..io.video import open_video

    if seq.image_dir is None or not seq.annotated:
        raise InputError(f"sequence {seq.name} has no frames or no first mask under {dataset.root}")
    imgs: list[np.ndarray] = []
    source = open_video(seq.image_dir)
    try:
        for f in source:
            if len(imgs) == frames:
                break
            h, w = f.rgb.shape[:2]
            size = (int(round(w * height / h)), height)
            imgs.append(cv2.resize(f.rgb, size, interpolation=cv2.INTER_AREA) if h != height else f.rgb)
    finally:
        source.close()
    first = read_annotation(seq.annotation_path(seq.annotated[0]), dataset.binary)
    fg = cv2.resize(first, (imgs[0].shape[1], height), interpolation=cv2.INTER_NEAREST) > 0
    ys, xs = np.nonzero(fg)
    if xs.size == 0:
        raise InputError(f"the first mask of {seq.name} is empty; choose another sequence with --sequences")
    edges = np.quantile(xs, np.linspace(0, 1, num_objects + 1)[1:-1])
    mask = np.zeros(fg.shape, np.uint8)
    mask[ys, xs] = (1 + np.searchsorted(edges, xs, side="right")).astype(np.uint8)
    return imgs, mask


def measure(session: "Session", clip: Clip, *, warmup: int = 3) -> dict[str, Any]:
    """Run ``session`` over ``clip`` (after a reset) and time it.

    Returns:
        ``frames`` (timed), ``fps`` (timed frames / their seconds), ``ms_per_frame`` (median),
        ``stages`` (stage -> median ms over all frames), ``size`` ``[W, H]`` and ``device``.
    """
    frames, mask = clip
    if len(frames) <= warmup:
        raise InputError(f"--frames must be more than the {warmup} warm-up frames")
    session.reset()
    times = [res.seconds for res in session.propagate(frames, {0: mask})]
    timed = times[warmup:]
    summary = session.timer.summary()
    return {
        "frames": len(timed),
        "fps": len(timed) / sum(timed),
        "ms_per_frame": st.median(timed) * 1000.0,
        "stages": {k: v["median_ms"] for k, v in summary.get("stages", {}).items()},
        "size": [int(frames[0].shape[1]), int(frames[0].shape[0])],
        "device": str(session.device),
    }


def speed_table(
    sessions: Sequence[tuple[str, Callable[[], "Session"]]],
    objects: Sequence[int],
    clip_for: Callable[[int], Clip],
    *,
    warmup: int = 3,
    on_row: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """FPS and per-stage time for every (method, object count).

    Args:
        sessions: ``(label, factory)`` per method; each factory is called once.
        objects: object counts to measure.
        clip_for: object count -> clip (the same clip is reused across methods).
        on_row: called with each row as it is measured.

    Returns:
        Rows ``{"method", "objects", "frames", "fps", "ms_per_frame", "stages", "size"}``.
    """
    clips = {k: clip_for(k) for k in objects}
    rows = []
    for label, factory in sessions:
        session = factory()
        for k in objects:
            row = {"method": label, "objects": k, **measure(session, clips[k], warmup=warmup)}
            rows.append(row)
            if on_row is not None:
                on_row(row)
    return rows
