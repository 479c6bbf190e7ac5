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
    fg = ids > 0
    out = rgb.copy()
    if not fg.any():
        return out
    colours = pal[ids]
    blended = cv2.addWeighted(rgb, 1.0 - alpha, colours, alpha, 0.0)
    out[fg] = blended[fg]
    # Outline: pixels whose 3x3 neighbourhood holds another id, drawn in the object's full colour.
    kernel = np.ones((3, 3), np.uint8)
    edge = (cv2.dilate(ids, kernel) != cv2.erode(ids, kernel)) & fg
    out[edge] = colours[edge]
    return out
