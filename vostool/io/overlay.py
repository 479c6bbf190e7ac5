"""Overlays people can watch: object colours blended over the frame, with outlines."""

from __future__ import annotations

import cv2
import numpy as np

from .masks import DAVIS_PALETTE


def render_overlay(rgb: np.ndarray, ids: np.ndarray, palette: np.ndarray | None = None, *, alpha: float = 0.5) -> np.ndarray:
    """Blend object colours over a frame and draw each object's outline.

    Args:
        rgb: ``(H, W, 3)`` uint8 frame.
        ids: ``(H, W)`` uint8 object ids.
        palette: ``(256, 3)`` uint8 colours (DAVIS palette if None).
        alpha: colour weight inside objects.

    Returns:
        ``(H, W, 3)`` uint8 RGB.
    """
    pal = DAVIS_PALETTE if palette is None else palette
    ids = np.ascontiguousarray(ids, dtype=np.uint8)
    fg = cv2.compare(ids, 0, cv2.CMP_GT)  # 255 inside objects
    out = np.ascontiguousarray(rgb).copy()
    if not cv2.countNonZero(fg):
        return out
    colours = cv2.LUT(cv2.merge([ids, ids, ids]), np.ascontiguousarray(pal, dtype=np.uint8).reshape(1, 256, 3))
    cv2.copyTo(cv2.addWeighted(out, 1.0 - alpha, colours, alpha, 0.0), fg, out)
    # Outline: object pixels whose 3x3 neighbourhood holds another id, in the object's full colour.
    edge = cv2.compare(cv2.morphologyEx(ids, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)), 0, cv2.CMP_GT)
    cv2.copyTo(colours, cv2.bitwise_and(edge, fg), out)
    return out
