"""A slow, literal implementation of the DAVIS J and F definitions, to verify the fast scorer.

Everything here works on whole frames with plain numpy (no crops, no OpenCV), written from the
definitions in the module docstring of :mod:`vostool.bench.metrics`: it is what
``tests/test_bench_metrics.py`` and ``benchmarks/score_speed.py`` compare the fast path with,
and its per-object full-frame structure is also what makes the official toolkit slow.
"""

from __future__ import annotations

import numpy as np


def reference_boundary(mask: np.ndarray) -> np.ndarray:
    """``(H, W)`` bool boundary map: compare each pixel with its right, lower, lower-right neighbours."""
    m = np.asarray(mask).astype(bool)
    h, w = m.shape
    padded = np.zeros((h + 1, w + 1), bool)
    padded[:h, :w] = m
    right = padded[:h, 1:]
    down = padded[1:, :w]
    diag = padded[1:, 1:]
    b = (m != right) | (m != down) | (m != diag)
    # The last row only looks right, the last column only looks down, the corner never counts.
    b[h - 1, :] = m[h - 1, :] != right[h - 1, :]
    b[:, w - 1] = m[:, w - 1] != down[:, w - 1]
    b[h - 1, w - 1] = False
    return b


def reference_dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation by the Euclidean disk ``x^2 + y^2 <= r^2``, one shifted OR per offset."""
    m = np.asarray(mask, bool)
    h, w = m.shape
    out = np.zeros_like(m)
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            if dx * dx + dy * dy > radius * radius:
                continue
            ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
            xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
            out[yd, xd] |= m[ys, xs]
    return out


def reference_j(gt: np.ndarray, pred: np.ndarray) -> float:
    """IoU of two ``(H, W)`` binary masks, 1.0 when both are empty."""
    g, p = np.asarray(gt, bool), np.asarray(pred, bool)
    union = int(np.logical_or(g, p).sum())
    return 1.0 if union == 0 else int(np.logical_and(g, p).sum()) / union


def reference_f(gt: np.ndarray, pred: np.ndarray, radius: int | None = None) -> float:
    """Boundary F of two ``(H, W)`` binary masks with the DAVIS tolerance (or ``radius``)."""
    g, p = np.asarray(gt, bool), np.asarray(pred, bool)
    if radius is None:
        radius = int(np.ceil(0.008 * np.sqrt(g.shape[0] ** 2 + g.shape[1] ** 2)))
    bg, bp = reference_boundary(g), reference_boundary(p)
    n_g, n_p = int(bg.sum()), int(bp.sum())
    if n_g == 0 and n_p == 0:
        return 1.0
    if n_g == 0 or n_p == 0:
        return 0.0
    precision = int((bp & reference_dilate(bg, radius)).sum()) / float(n_p)
    recall = int((bg & reference_dilate(bp, radius)).sum()) / float(n_g)
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


def reference_decay(values: list[float]) -> float:
    """Decay by the definition: bin edges round-half-up of linspace(1, n, 5) minus 1, inclusive bins."""
    n = len(values)
    edges = []
    for i in range(5):
        x = 1 + (n - 1) * i / 4
        edges.append(int(x) + (1 if x - int(x) >= 0.5 else 0) - 1)
    first = values[edges[0] : edges[1] + 1]
    last = values[edges[3] : edges[4] + 1]
    return sum(first) / len(first) - sum(last) / len(last)
