"""Validation J&F of a method on in-memory sequences (the bench metrics, DAVIS conventions).

Each sequence is propagated from its first-frame ground truth with a :class:`~vostool.inference.Session`
(at the sequences' own resolution); J and F (:func:`vostool.bench.metrics.frame_scores`) are
computed on every frame but the first and the last (as the DAVIS evaluation does), averaged per
object, then over objects: ``J-Mean``, ``F-Mean`` and ``J&F = (J-Mean + F-Mean) / 2``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..bench.metrics import boundary_radius, frame_scores
from ..datasets import VideoSequence
from ..io.masks import VOID_ID
from ..models.base import VOSMethod


def validation_scores(
    method: str | VOSMethod,
    sequences: Sequence[VideoSequence],
    *,
    flow: str = "dis",
    device: str | torch.device = "cpu",
    weights: str | None = None,
    flow_weights: str | None = None,
) -> dict[str, Any]:
    """Propagate and score ``sequences``.

    Args:
        method: a method name (``"flow"``, or ``"agss"`` with ``weights``) or a built method
            (its network is switched to eval mode).
        sequences: videos with ground truth on every frame (``labels (T, H, W)``, 255 void).
        flow: flow backend for methods that warp.
        device: where to run.
        weights: weights for a named method.
        flow_weights: weights for a learned flow (e.g. a RAFT file), None for the default.

    Returns:
        ``{"J-Mean", "F-Mean", "J&F", "sequences": {name: {"J", "F"}}, "seconds"}``.
    """
    from ..inference.builder import create_session

    start = time.perf_counter()
    per_seq: dict[str, dict[str, float]] = {}
    j_all: list[float] = []
    f_all: list[float] = []
    session = create_session(
        method, flow=flow, device=str(device), weights=weights, flow_weights=flow_weights, offline=True, channels_last=False
    )
    with torch.no_grad():
        for seq in sequences:
            session.reset()
            first = seq.labels[0].copy()
            first[first == VOID_ID] = 0
            object_ids = [int(v) for v in np.unique(first) if v != 0]
            js: dict[int, list[float]] = {k: [] for k in object_ids}
            fs: dict[int, list[float]] = {k: [] for k in object_ids}
            radius = boundary_radius(*first.shape)
            n = len(seq)
            for res in session.propagate(seq.images, {0: first}):
                t = res.index
                if t == 0 or t == n - 1:
                    continue
                gt = seq.labels[t].copy()
                gt[gt == VOID_ID] = 0
                j, f = frame_scores(gt, res.ids.astype(np.uint8), object_ids, radius)
                for i, k in enumerate(object_ids):
                    js[k].append(float(j[i]))
                    fs[k].append(float(f[i]))
            jm = [float(np.mean(v)) for v in js.values() if v]
            fm = [float(np.mean(v)) for v in fs.values() if v]
            per_seq[seq.name] = {"J": float(np.mean(jm)) if jm else 0.0, "F": float(np.mean(fm)) if fm else 0.0}
            j_all += jm
            f_all += fm
    jmean = float(np.mean(j_all)) if j_all else 0.0
    fmean = float(np.mean(f_all)) if f_all else 0.0
    return {
        "J-Mean": jmean,
        "F-Mean": fmean,
        "J&F": (jmean + fmean) / 2,
        "sequences": per_seq,
        "seconds": round(time.perf_counter() - start, 1),
    }
