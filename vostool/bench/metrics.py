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

Speed: per object, every operation runs on bounding-box crops (masks arrive as
:class:`~vostool.io.masks.BoxedPlane`, see :func:`score_pairs`); boundaries are XORs of
shifted views, counting is ``cv2.countNonZero``; the boundary matching of several frames is
one bit-packed disk dilation (:func:`boundary_matches`, :func:`dilate_disk_bits`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from ..io.masks import Box, BoxedPlane

BOUNDARY_FRACTION = 0.008
"""Boundary tolerance as a fraction of the image diagonal (DAVIS ``bound_th``)."""


def boundary_radius(height: int, width: int, fraction: float = BOUNDARY_FRACTION) -> int:
    """Tolerance in pixels: ``ceil(fraction * sqrt(H^2 + W^2))`` (854x480 -> 8, 1920x1080 -> 18)."""
    return int(np.ceil(fraction * np.linalg.norm((height, width))))


def disk(radius: int) -> np.ndarray:
    """``(2r + 1, 2r + 1)`` uint8 kernel, 1 where ``x^2 + y^2 <= r^2`` (``disk(8)`` has 197 ones)."""
    r = np.arange(-radius, radius + 1)
    return ((r[None, :] ** 2 + r[:, None] ** 2) <= radius * radius).astype(np.uint8)


def boundary_map(mask: np.ndarray) -> np.ndarray:
    """Boundary pixels of a binary mask, DAVIS ``seg2bmap`` rule (no thinning).

    A pixel is boundary when it differs from its right, lower or lower-right neighbour; the
    last row compares only with the right neighbour, the last column only with the lower one,
    and the bottom-right pixel is never boundary (so image borders are never boundary).
    Computed by the scorer's own code (on the mask's box, :func:`score_pairs`).

    Args:
        mask: ``(H, W)`` bool or integer array (nonzero = object).

    Returns:
        ``(H, W)`` uint8 array of 0/1.
    """
    m = BoxedPlane.of(np.asarray(mask).astype(bool).view(np.uint8))
    out = np.zeros(m.shape, np.uint8)
    if m.box is not None:
        b, at, _ = _boundary(m.crop, m.box, *m.shape)
        out[at[1] : at[3], at[0] : at[2]] = b
    return out


@functools.cache
def disk_half_widths(radius: int) -> tuple[int, ...]:
    """Half-width of each row of :func:`disk`: row ``dy`` spans ``|dx| <= isqrt(r^2 - dy^2)``, ``dy = 0..r``."""
    return tuple(math.isqrt(radius * radius - dy * dy) for dy in range(radius + 1))


_WORD = 64


def _shift_right(x: np.ndarray, s: int) -> np.ndarray:
    """Bit rows ``(..., words)`` (bit ``i`` of a row: bit ``i % 64`` of word ``i // 64``) moved ``s`` columns
    right (towards higher bits), 0 < s < 64, zeros coming in."""
    y = x << np.uint64(s)
    y[..., 1:] |= x[..., :-1] >> np.uint64(_WORD - s)
    return y


def _shift_left(x: np.ndarray, s: int) -> np.ndarray:
    y = x >> np.uint64(s)
    y[..., :-1] |= x[..., 1:] << np.uint64(_WORD - s)
    return y


def dilate_disk_bits(rows: np.ndarray, radius: int) -> np.ndarray:
    """``cv2.dilate(image, disk(radius))`` of bit-packed rows, zeros outside the array.

    The disk is the union over ``dy`` of horizontal segments of half-width ``w(dy)``
    (:func:`disk_half_widths`): each distinct ``w`` is one horizontal dilation, grown from
    the previous (``x | x << s | x >> s`` widens by ``s <= 2w + 1`` without gaps), and the
    rows are OR-ed at their ``dy``. On bits, 64 pixels per operation: 3x faster than OpenCV's
    dilation of the same pixels by the disk's rectangles.

    Args:
        rows: ``(C, H, words)`` uint64, bit ``i`` of a row is pixel column ``i`` (little-endian
            words); channels are dilated independently.

    Returns:
        ``(C, H, words)`` uint64.
    """
    widths = disk_half_widths(radius)
    grown = {0: rows}
    cur, w = rows, 0
    for target in sorted(set(widths) - {0}):
        while w < target:
            s = min(target - w, 2 * w + 1, _WORD - 1)
            nxt = _shift_right(cur, s)
            nxt |= cur
            nxt |= _shift_left(cur, s)
            cur, w = nxt, w + s
        grown[w] = cur
    out = grown[widths[0]].copy()
    for dy in range(1, radius + 1):
        h = grown[widths[dy]]
        out[:, dy:] |= h[:, :-dy]
        out[:, :-dy] |= h[:, dy:]
    return out


_POPCOUNT8 = np.array([bin(i).count("1") for i in range(256)], np.uint8)


def _row_popcounts(x: np.ndarray) -> np.ndarray:
    """``(H, words)`` uint64 -> ``(H,)`` int64 set bits per row."""
    if hasattr(np, "bitwise_count"):  # numpy >= 2
        return np.bitwise_count(x).sum(axis=-1, dtype=np.int64)
    return _POPCOUNT8[x.view(np.uint8)].reshape(len(x), -1).sum(axis=-1, dtype=np.int64)


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


def _grow(r: Box, m: int, h: int, w: int) -> Box:
    return max(r[0] - m, 0), max(r[1] - m, 0), min(r[2] + m, w), min(r[3] + m, h)


def _meet(a: Box, b: Box) -> Box | None:
    r = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    return r if r[0] < r[2] and r[1] < r[3] else None


def _part(a: np.ndarray, at: Box, r: Box) -> np.ndarray:
    """The part of ``a`` (covering ``at``) that covers ``r`` (inside ``at``)."""
    return a[r[1] - at[1] : r[3] - at[1], r[0] - at[0] : r[2] - at[0]]


def _boundary(m: np.ndarray, box: Box, h: int, w: int) -> tuple[np.ndarray, Box, int]:
    """Boundary map of the 0/1 mask ``m`` (covering ``box``, 0 elsewhere) on ``box`` grown by one
    pixel, where all of it lies; with its box and count.

    A pixel differs from its right, lower or lower-right neighbour (XORs of shifted views, half
    the time of OpenCV's morphological gradient). The neighbours past the grown box are 0
    inside the image, and copies of the edge at the image's right and bottom edges (so the
    edge never differs from the outside: the DAVIS rule).
    """
    at = _grow(box, 1, h, w)
    bottom, right = at[3] - box[3], at[2] - box[2]
    m = cv2.copyMakeBorder(m, box[1] - at[1], bottom + 1, box[0] - at[0], right + 1, cv2.BORDER_CONSTANT, value=0)
    if not bottom:
        m[-1] = m[-2]
    if not right:
        m[:, -1] = m[:, -2]
    here = m[:-1, :-1]
    b = cv2.bitwise_xor(here, m[:-1, 1:])
    cv2.bitwise_or(b, cv2.bitwise_xor(here, m[1:, :-1]), dst=b)
    cv2.bitwise_or(b, cv2.bitwise_xor(here, m[1:, 1:]), dst=b)
    return b, at, cv2.countNonZero(b)


ObjectPair = tuple[np.ndarray | None, Box | None, np.ndarray | None, Box | None, tuple[int, int]]
"""One object on one frame: ``(g, box_g, p, box_p, (H, W))``, ground truth and prediction as
``(y1 - y0, x1 - x0)`` uint8 0/1 masks covering their boxes (0 outside; None, None when empty)."""


def score_pairs(pairs: Sequence[ObjectPair], radius: int) -> tuple[np.ndarray, np.ndarray]:
    """J and F of objects on frames (of one sequence, or any frames sharing ``radius``).

    Work is confined to the boxes: areas on each mask, the intersection on the boxes' overlap,
    each boundary on its box grown by one pixel (the boundary never leaves it), and the boundary
    matching on the overlap of the two boundary boxes grown by the radius (a boundary pixel can
    only match inside it), so stray pixels far from the object cost one boundary pass, not a
    dilation of the whole frame. The matching of all pairs is one bit-packed dilation
    (:func:`boundary_matches`): many frames per call keep numpy's per-call cost small.

    Returns:
        ``(J, F)``, each ``(len(pairs),)`` float64.
    """
    n = len(pairs)
    j = np.ones(n, np.float64)
    counts = np.zeros((n, 2), np.int64)  # boundary pixels (pred, gt)
    jobs, slots = [], []
    for i, (g, box_g, p, box_p, (h, w)) in enumerate(pairs):
        area_g = cv2.countNonZero(g) if box_g else 0
        area_p = cv2.countNonZero(p) if box_p else 0
        if area_g == 0 and area_p == 0:
            continue
        both = _meet(box_g, box_p) if area_g and area_p else None
        inter = cv2.countNonZero(cv2.bitwise_and(_part(g, box_g, both), _part(p, box_p, both))) if both else 0
        j[i] = inter / (area_g + area_p - inter)
        if area_g:
            bg, at_g, counts[i, 1] = _boundary(g, box_g, h, w)
        if area_p:
            bp, at_p, counts[i, 0] = _boundary(p, box_p, h, w)
        if counts[i, 0] and counts[i, 1]:
            region = _meet(_grow(at_g, radius, h, w), _grow(at_p, radius, h, w))
            if region is not None:
                jobs.append((bg, at_g, bp, at_p, region))
                slots.append(i)
    matched = np.zeros((n, 2), np.int64)
    if jobs:
        matched[slots] = boundary_matches(jobs, radius)
    f = np.array([f_from_counts(int(c[0]), int(c[1]), int(m[0]), int(m[1])) for c, m in zip(counts, matched)], np.float64)
    return j, f


def boundary_matches(jobs: Sequence[tuple[np.ndarray, Box, np.ndarray, Box, Box]], radius: int) -> np.ndarray:
    """Matched boundary pixels of boundary map pairs, all in one bit-packed dilation.

    Args:
        jobs: ``(bg, at_g, bp, at_p, region)``: ground-truth and predicted boundary maps (uint8,
            nonzero = boundary) covering boxes ``at_g`` and ``at_p``, and the box where matches
            can lie.
        radius: the disk radius.

    Returns:
        ``(len(jobs), 2)`` int64: predicted boundary pixels within ``radius`` of a ground-truth
        boundary pixel, and ground-truth ones within ``radius`` of a predicted one.
    """
    words = max((rg[2] - rg[0] + _WORD - 1) // _WORD for *_, rg in jobs)
    starts, y = [], radius
    for *_, rg in jobs:  # regions stacked, ``radius`` zero rows around each: no dilation reaches the next
        starts.append(y)
        y += rg[3] - rg[1] + radius
    planes = np.zeros((2, y, words * _WORD), np.uint8)
    for (bg, at_g, bp, at_p, rg), y0 in zip(jobs, starts):
        for c, (b, at) in enumerate(((bg, at_g), (bp, at_p))):
            o = _meet(at, rg)
            if o is not None:
                planes[c, y0 + o[1] - rg[1] : y0 + o[3] - rg[1], o[0] - rg[0] : o[2] - rg[0]] = _part(b, at, o)
    bits = np.packbits(planes, axis=-1, bitorder="little").view("<u8")
    grown = dilate_disk_bits(bits, radius)
    rows = np.stack([_row_popcounts(grown[0] & bits[1]), _row_popcounts(grown[1] & bits[0])], axis=1)
    return np.add.reduceat(rows, starts, axis=0)


def frame_scores(
    gt: np.ndarray | BoxedPlane, pred: np.ndarray | BoxedPlane, object_ids: Sequence[int], radius: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """J and F of every object on one frame.

    Args:
        gt: ``(H, W)`` uint8 ground-truth ids (void already set to 0), or the same as a
            :class:`~vostool.io.masks.BoxedPlane`.
        pred: ``(H, W)`` uint8 predicted ids, same size (array or boxed).
        object_ids: the ids to score (an id absent from a mask is an empty mask).
        radius: boundary tolerance in pixels; :func:`boundary_radius` of the frame when None.

    Returns:
        ``(J, F)``, each ``(K,)`` float64 in the order of ``object_ids``.
    """
    g = gt if isinstance(gt, BoxedPlane) else BoxedPlane.of(np.ascontiguousarray(gt, dtype=np.uint8))
    p = pred if isinstance(pred, BoxedPlane) else BoxedPlane.of(np.ascontiguousarray(pred, dtype=np.uint8))
    if radius is None:
        radius = boundary_radius(*g.shape)
    return score_pairs(object_pairs(g, p, object_ids), radius)


def object_pairs(gt: BoxedPlane, pred: BoxedPlane, object_ids: Sequence[int]) -> list[ObjectPair]:
    """The :data:`ObjectPair` of each id in ``object_ids`` on one frame (ground truth and prediction ids, boxed)."""
    if gt.shape != pred.shape:
        raise ValueError(f"ground truth {gt.shape} and prediction {pred.shape} differ in size")
    return [(*_object_mask(gt, k), *_object_mask(pred, k), gt.shape) for k in object_ids]


def _object_mask(ids: BoxedPlane, k: int) -> tuple[np.ndarray | None, Box | None]:
    """0/1 uint8 mask of id ``k`` on its tight box (None, None when absent); a 0/1 plane's
    object 1 is its crop as it is."""
    if ids.box is None or k > ids.top:
        return None, None
    if k == 1 and ids.top == 1:
        return ids.crop, ids.box
    m = (ids.crop == k).view(np.uint8)
    x, y, w, h = cv2.boundingRect(m)
    if not w:
        return None, None
    x0, y0 = ids.box[0] + x, ids.box[1] + y
    return m[y : y + h, x : x + w], (x0, y0, x0 + w, y0 + h)


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
