"""Backward warping of numpy arrays with OpenCV (the numpy twin of :mod:`vostool.flow.warp`).

:func:`remap_warp` samples every plane at ``p + flow(p)`` with ``cv2.remap`` (bilinear, zeros
outside the image), exactly the sampling rule of :func:`vostool.flow.warp.backward_warp`
(``grid_sample`` with ``align_corners=True`` and zero padding); ``tests/test_flow.py`` checks
that the two agree. Each plane is remapped with the float coordinates: converting them once to
OpenCV's fixed-point maps (1/32 pixel) was both slower and less exact.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np


@functools.lru_cache(maxsize=8)
def _pixel_coords(h: int, w: int) -> np.ndarray:
    """``(H, W, 2)`` float32 ``(x, y)`` of every pixel (read-only, shared)."""
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    grid = np.stack([xs, ys], -1)
    grid.flags.writeable = False
    return grid


def remap_warp(x: np.ndarray, flow: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Sample ``x`` at ``p + flow(p)`` for every pixel ``p`` (zeros outside the image).

    Args:
        x: ``(K, H, W)`` float32 planes on the *previous* frame (e.g. soft masks).
        flow: ``(H, W, 2)`` float32 backward flow from the current frame to the previous one, in
            pixels (OpenCV's layout: ``[..., 0]`` = dx, ``[..., 1]`` = dy).
        out: optional ``(K, H, W)`` float32 array to write into.

    Returns:
        ``(K, H, W)`` float32: ``x`` brought to the current frame.
    """
    h, w = flow.shape[:2]
    coords = np.add(flow, _pixel_coords(h, w))
    if out is None:
        out = np.empty(x.shape, np.float32)
    for src, dst in zip(x, out):
        cv2.remap(src, coords, None, cv2.INTER_LINEAR, dst=dst, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return out
