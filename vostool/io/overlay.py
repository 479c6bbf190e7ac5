"""Overlays people can watch: object colours blended over the frame, with outlines that show on
any object (a dark palette colour such as DAVIS's object 1, (128, 0, 0), is invisible on a red
object by colour alone)."""

from __future__ import annotations

import cv2
import numpy as np

from .masks import DAVIS_PALETTE

OUTLINE_PX = 2
"""Width of the outline drawn inside each object's border."""
FILL_ALPHA = 0.6
"""Colour weight inside objects: DAVIS object 1 on a red object still changes it by ~50 levels."""
_KERNEL = np.ones((2 * OUTLINE_PX + 1, 2 * OUTLINE_PX + 1), np.uint8)


def outline_colours(palette: np.ndarray) -> np.ndarray:
    """``(256,)`` uint8 outline level per id: white (255) for dark colours, black (0) for light ones."""
    luma = palette.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    return np.where(luma < 140.0, 255, 0).astype(np.uint8)


def render_overlay(rgb: np.ndarray, ids: np.ndarray, palette: np.ndarray | None = None, *, alpha: float = FILL_ALPHA) -> np.ndarray:
    """Blend object colours over a frame and outline each object in a contrasting colour.

    Args:
        rgb: ``(H, W, 3)`` uint8 frame.
        ids: ``(H, W)`` uint8 object ids.
        palette: ``(256, 3)`` uint8 colours (DAVIS palette if None).
        alpha: colour weight inside objects.

    Returns:
        ``(H, W, 3)`` uint8 RGB: background untouched; inside objects the blend; on the
        :data:`OUTLINE_PX` pixels inside each border (to the background or another object)
        white, or black for light palette colours.
    """
    pal = np.ascontiguousarray(DAVIS_PALETTE if palette is None else palette, dtype=np.uint8)
    ids = np.ascontiguousarray(ids, dtype=np.uint8)
    fg = cv2.compare(ids, 0, cv2.CMP_GT)  # 255 inside objects
    out = np.ascontiguousarray(rgb).copy()
    if not cv2.countNonZero(fg):
        return out
    # Only the objects' bounding box (grown by the outline) needs work.
    x, y, w, h = cv2.boundingRect(fg)
    h_img, w_img = ids.shape
    x0, y0 = max(x - OUTLINE_PX, 0), max(y - OUTLINE_PX, 0)
    x1, y1 = min(x + w + OUTLINE_PX, w_img), min(y + h + OUTLINE_PX, h_img)
    box_ids, box_fg, box = ids[y0:y1, x0:x1], fg[y0:y1, x0:x1], out[y0:y1, x0:x1]
    colours = cv2.LUT(cv2.merge([box_ids, box_ids, box_ids]), pal.reshape(1, 256, 3))
    cv2.copyTo(cv2.addWeighted(box, 1.0 - alpha, colours, alpha, 0.0), box_fg, box)
    # Object pixels whose neighbourhood holds another id: the outline, one grey level per object.
    grad = cv2.morphologyEx(box_ids, cv2.MORPH_GRADIENT, _KERNEL, borderType=cv2.BORDER_REPLICATE)
    edge = cv2.bitwise_and(cv2.compare(grad, 0, cv2.CMP_GT), box_fg)
    level = cv2.LUT(box_ids, outline_colours(pal))
    cv2.copyTo(cv2.merge([level, level, level]), edge, box)
    return out
