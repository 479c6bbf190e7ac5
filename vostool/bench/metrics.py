"""Region similarity J, boundary measure F and their statistics, as the DAVIS evaluation defines them.

Definitions (numbers equal the official semi-supervised evaluation bit for bit):

* J of one object on one frame: ``|P & G| / |P | G|``, 1 when both masks are empty.
* F of one object on one frame: boundary maps of P and G (:func:`boundary_map`), each dilated
  by a Euclidean disk of radius ``ceil(0.008 * image diagonal)`` (:func:`boundary_radius`,
  :func:`disk`); precision = pred boundary pixels inside the dilated ground-truth boundary
  over pred boundary pixels, recall the other way round; both boundaries empty -> 1, one
  empty -> 0, otherwise ``2PR / (P + R)`` (0 when ``P + R = 0``).
* Per object over its scored frames (:func:`statistics`): Mean, Recall = fraction of frames
  with a value strictly greater than 0.5, Decay = mean of the first quarter-bin minus mean of
  the last (:func:`decay_bins`; the bins share their edge frames). Unlike the official code the
  bin edges never wrap around, so Decay stays right for sequences longer than 256 frames.

Speed: per object, every operation runs on bounding-box crops (see :func:`_object_scores`);
boundaries are one OpenCV morphological gradient, the disk dilation is an exact union of a
few rectangle dilations (:func:`dilate_disk`), counting is ``cv2.countNonZero``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

BOUNDARY_FRACTION = 0.008
"""Boundary tolerance as a fraction of the image diagonal (DAVIS ``bound_th``)."""


def boundary_radius(height: int, width: int, fraction: float = BOUNDARY_FRACTION) -> int:
    """Tolerance in pixels: ``ceil(fraction * sqrt(H^2 + W^2))`` (854x480 -> 8, 1920x1080 -> 18)."""
    return int(np.ceil(fraction * np.linalg.norm((height, width))))


def disk(radius: int) -> np.ndarray:
    """``(2r + 1, 2r + 1)`` uint8 kernel, 1 where ``x^2 + y^2 <= r^2`` (``disk(8)`` has 197 ones)."""
    r = np.arange(-radius, radius + 1)
    return ((r[None, :] ** 2 + r[:, None] ** 2) <= radius * radius).astype(np.uint8)


_NEIGHBOURS = np.ones((2, 2), np.uint8)


def boundary_map(mask: np.ndarray) -> np.ndarray:
    """Boundary pixels of a binary mask, DAVIS ``seg2bmap`` rule (no thinning).

    A pixel is boundary when it differs from its right, lower or lower-right neighbour; the
    last row compares only with the right neighbour, the last column only with the lower one,
    and the bottom-right pixel is never boundary (so image borders are never boundary).
    Computed as the morphological gradient (max - min) over the 2x2 window whose top-left is
    the pixel, with pixels outside the image ignored, which is exactly that rule.

    Args:
        mask: ``(H, W)`` bool or 0/1 integer array.

    Returns:
        ``(H, W)`` uint8 array of 0/1.
    """
    s = np.asarray(mask)
    if s.dtype != np.uint8 or s.max(initial=0) > 1:
        s = s.astype(bool).view(np.uint8)
    return cv2.morphologyEx(s, cv2.MORPH_GRADIENT, _NEIGHBOURS, anchor=(0, 0))


@functools.cache
def disk_rectangles(radius: int) -> tuple[np.ndarray, ...]:
    """Rectangular kernels whose union is :func:`disk` (``radius``), for a faster exact dilation.

    Row ``dy`` of the disk spans ``|dx| <= w(dy) = isqrt(r^2 - dy^2)``; one rectangle
    ``|dx| <= w(j), |dy| <= j`` per ``j`` where ``w`` drops after ``j`` (6 for ``r = 8``).
    """
    w = [math.isqrt(radius * radius - j * j) for j in range(radius + 1)]
    return tuple(
        cv2.getStructuringElement(cv2.MORPH_RECT, (2 * w[j] + 1, 2 * j + 1)) for j in range(radius + 1) if j == radius or w[j] > w[j + 1]
    )


def dilate_disk(image: np.ndarray, radius: int) -> np.ndarray:
    """``cv2.dilate(image, disk(radius))``, computed as the union of rectangle dilations.

    Args:
        image: ``(H, W)`` or ``(H, W, C)`` uint8 (channels are dilated independently).
    """
    rects = disk_rectangles(radius)
    out = cv2.dilate(image, rects[0])
    for k in rects[1:]:
        cv2.bitwise_or(out, cv2.dilate(image, k), dst=out)
    return out


def f_from_counts(n_pred: int, n_gt: int, pred_matched: int, gt_matched: int) -> float:
    """F from boundary pixel counts (both empty -> 1, one empty -> 0)."""
    if n_pred == 0 and n_gt > 0:
        precision, recall = 1.0, 0.0
    elif n_pred > 0 and n_gt == 0:
        precision, recall = 0.0, 1.0
    elif n_pred == 0 and n_gt == 0:
        precision, recall = 1.0, 1.0
    else:
        precision = pred_matched / float(n_pred)
        recall = gt_matched / float(n_gt)
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


Rect = tuple[int, int, int, int]
"""``(x0, y0, x1, y1)`` with exclusive ends."""


def _grow(r: Rect, m: int, h: int, w: int) -> Rect:
    return max(r[0] - m, 0), max(r[1] - m, 0), min(r[2] + m, w), min(r[3] + m, h)


def _meet(a: Rect, b: Rect) -> Rect | None:
    r = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    return r if r[0] < r[2] and r[1] < r[3] else None


def _bbox(mask: np.ndarray) -> Rect | None:
    x, y, w, h = cv2.boundingRect(mask)
    return (x, y, x + w, y + h) if w else None


def _crop(a: np.ndarray, r: Rect) -> np.ndarray:
    return a[r[1] : r[3], r[0] : r[2]]


def _paste(b: np.ndarray, at: Rect, region: Rect) -> np.ndarray:
    """``b`` (covering ``at``) placed in a zero array covering ``region``."""
    out = np.zeros((region[3] - region[1], region[2] - region[0]), np.uint8)
    o = _meet(at, region)
    if o is not None:
        out[o[1] - region[1] : o[3] - region[1], o[0] - region[0] : o[2] - region[0]] = b[
            o[1] - at[1] : o[3] - at[1], o[0] - at[0] : o[2] - at[0]
        ]
    return out


def _boundary_in(mask: np.ndarray, box: Rect | None) -> tuple[np.ndarray | None, Rect | None, int]:
    """Boundary map of ``mask`` on its bounding box grown by one pixel, where all of it lies."""
    if box is None:
        return None, None, 0
    h, w = mask.shape
    at = _grow(box, 1, h, w)
    b = cv2.morphologyEx(_crop(mask, at), cv2.MORPH_GRADIENT, _NEIGHBOURS, anchor=(0, 0))
    return b, at, cv2.countNonZero(b)


def _object_scores(gt: np.ndarray, pred: np.ndarray, radius: int) -> tuple[float, float]:
    """J and F of one object; ``gt``/``pred`` are ``(H, W)`` uint8 0/1 (C-contiguous).

    Work is confined to bounding boxes: areas on each mask's box, the intersection on the
    boxes' overlap, each boundary on its mask's box grown by one pixel (the boundary never
    leaves it), and the dilations on the overlap of the two boundary boxes grown by the
    radius (a boundary pixel can only match inside it), so stray pixels far from the object
    cost one boundary pass, not a dilation of the whole frame. Both boundaries are dilated in
    one call as the two channels of one image.
    """
    h, w = gt.shape
    box_g, box_p = _bbox(gt), _bbox(pred)
    if box_g is None and box_p is None:
        return 1.0, 1.0
    area_g = cv2.countNonZero(_crop(gt, box_g)) if box_g else 0
    area_p = cv2.countNonZero(_crop(pred, box_p)) if box_p else 0
    both = _meet(box_g, box_p) if box_g and box_p else None
    inter = cv2.countNonZero(cv2.bitwise_and(_crop(gt, both), _crop(pred, both))) if both else 0
    j = inter / (area_g + area_p - inter)

    bg, at_g, n_g = _boundary_in(gt, box_g)
    bp, at_p, n_p = _boundary_in(pred, box_p)
    p_match = g_match = 0
    if n_g and n_p:
        region = _meet(_grow(at_g, radius, h, w), _grow(at_p, radius, h, w))
        if region is not None:
            g = _paste(bg, at_g, region)
            p = _paste(bp, at_p, region)
            dilated = dilate_disk(cv2.merge([g, p]), radius)
            # channel 0: pred boundary inside the dilated gt boundary; channel 1: the reverse.
            p_sum, g_sum = cv2.sumElems(cv2.bitwise_and(cv2.merge([p, g]), dilated))[:2]
            p_match, g_match = int(p_sum), int(g_sum)
    return j, f_from_counts(n_p, n_g, p_match, g_match)


def frame_scores(gt: np.ndarray, pred: np.ndarray, object_ids: Sequence[int], radius: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """J and F of every object on one frame.

    Args:
        gt: ``(H, W)`` uint8 ground-truth ids (void already set to 0).
        pred: ``(H, W)`` uint8 predicted ids, same size.
        object_ids: the ids to score (an id absent from a mask is an empty mask).
        radius: boundary tolerance in pixels; :func:`boundary_radius` of the frame when None.

    Returns:
        ``(J, F)``, each ``(K,)`` float64 in the order of ``object_ids``.
    """
    if gt.shape != pred.shape:
        raise ValueError(f"ground truth {gt.shape} and prediction {pred.shape} differ in size")
    if radius is None:
        radius = boundary_radius(*gt.shape)
    j = np.empty(len(object_ids), np.float64)
    f = np.empty(len(object_ids), np.float64)
    for i, k in enumerate(object_ids):
        j[i], f[i] = _object_scores(_object_mask(gt, k), _object_mask(pred, k), radius)
    return j, f


def _object_mask(ids: np.ndarray, k: int) -> np.ndarray:
    """``(H, W)`` uint8 0/1 mask of id ``k``; a 0/1 mask of object 1 (DAVIS 2016) is used as it is
    (a maximum is a fraction of the cost of a comparison and its new array)."""
    if k == 1 and ids.dtype == np.uint8 and ids.flags.c_contiguous and ids.max(initial=0) <= 1:
        return ids
    return (ids == k).view(np.uint8)


def decay_bins(n: int) -> list[tuple[int, int]]:
    """The four Decay bins of ``n`` per-frame values as ``[start, stop)`` index pairs.

    Edges are ``round(linspace(1, n, 5)) - 1`` with halves rounded up; bin ``i`` runs from
    edge ``i`` to edge ``i + 1`` inclusive, so neighbouring bins share a frame. For ``n = 5``:
    ``[(0, 2), (1, 3), (2, 4), (3, 5)]``.
    """
    edges = (np.round(np.linspace(1, n, 5) + 1e-10) - 1).astype(np.int64).tolist()
    return [(edges[i], edges[i + 1] + 1) for i in range(4)]


@dataclass(frozen=True)
class Stats:
    """Mean, Recall and Decay of one object's per-frame values (fractions in [0, 1])."""

    mean: float
    recall: float
    decay: float


def statistics(values: np.ndarray) -> Stats:
    """Mean / Recall (> 0.5) / Decay of ``(n,)`` float64 per-frame values (n >= 1)."""
    v = np.ascontiguousarray(values, dtype=np.float64)
    bins = decay_bins(len(v))
    first, last = bins[0], bins[-1]
    return Stats(
        mean=float(np.mean(v)),
        recall=float(np.mean(v > 0.5)),
        decay=float(np.mean(v[first[0] : first[1]]) - np.mean(v[last[0] : last[1]])),
    )
