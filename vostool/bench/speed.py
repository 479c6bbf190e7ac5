"""Throughput against the number of objects: frames per second and per-stage time of a session.

Clips are synthetic (:func:`vostool.datasets.synthetic.speed_clip`: K textured objects moving
over a panning textured background) or real (a benchmark sequence's frames, its first mask
split into K objects by vertical strips of the foreground), so the same measurement runs with
and without a dataset.
"""

from __future__ import annotations

import statistics as st
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from ..datasets import Dataset, SequenceInfo, read_annotation
from ..errors import InputError

if TYPE_CHECKING:
    from ..inference.session import Session

SpeedClip = tuple[list[np.ndarray], np.ndarray]
"""``(frames, first_mask)``: ``(H, W, 3)`` uint8 RGB frames and the ``(H, W)`` uint8 ids of frame 0."""


def real_clip(dataset: Dataset, seq: SequenceInfo, num_objects: int, height: int = 480, frames: int = 30) -> SpeedClip:
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


def measure(session: Session, clip: SpeedClip, *, warmup: int = 3) -> dict[str, Any]:
    """Run ``session`` over ``clip`` (after a reset) and time it.

    Returns:
        ``frames`` (timed), ``fps`` (timed frames / their seconds), ``ms_per_frame`` (median),
        ``stages`` (stage -> median ms over all frames), ``size`` ``[W, H]`` and ``device``.
    """
    frames, mask = clip
    if len(frames) <= warmup:
        raise InputError(f"--frames must be more than the {warmup} warm-up frames")
    session.reset()
    times = []
    t0 = time.perf_counter()
    for res in session.propagate(frames, {0: mask}):
        res.ids  # noqa: B018  (waits for a CUDA result: frames are timed until their masks are on the host)
        t1 = time.perf_counter()
        times.append(t1 - t0)
        t0 = t1
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
    sessions: Sequence[tuple[str, Callable[[], Session]]],
    objects: Sequence[int],
    clip_for: Callable[[int], SpeedClip],
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
