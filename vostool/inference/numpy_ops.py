"""The array operations of a numpy session: a weightless method with OpenCV flow on the CPU runs
on the uint8 / float32 arrays OpenCV gives, without torch (:mod:`vostool.inference.torch_ops` is
the torch twin; ``tests/test_session.py`` checks that the two sessions agree)."""

from __future__ import annotations

import contextlib
from typing import Any

import cv2
import numpy as np

from ..flow.remap import remap_warp


def resize_rgb(rgb: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """``(H, W, 3)`` uint8 -> ``(h, w, 3)`` uint8 (area-averaged when smaller; unchanged at ``(H, W)``)."""
    rgb = np.ascontiguousarray(rgb)
    if hw == rgb.shape[:2]:
        return rgb
    smaller = hw[0] * hw[1] < rgb.shape[0] * rgb.shape[1]
    return cv2.resize(rgb, (hw[1], hw[0]), interpolation=cv2.INTER_AREA if smaller else cv2.INTER_LINEAR)


class NumpyOps:
    """Numpy arrays on the host: images ``(h, w, 3)`` uint8 RGB, probabilities ``(C, h, w)`` float32."""

    kind = "numpy"
    device = "cpu"

    def inference(self) -> contextlib.AbstractContextManager[Any]:
        return contextlib.nullcontext()

    def autocast(self, precision: str) -> contextlib.AbstractContextManager[Any]:
        return contextlib.nullcontext()

    def image(self, rgb: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
        """``(H, W, 3)`` uint8 -> ``(h, w, 3)`` uint8 (:func:`resize_rgb`)."""
        return resize_rgb(rgb, hw)

    def zeros(self, shape: tuple[int, ...]) -> np.ndarray:
        return np.zeros(shape, np.float32)

    def ids(self, ids: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
        """``(H, W)`` uint8 object ids -> ``(h, w)`` (nearest neighbour, as torch's ``nearest``)."""
        return ids if ids.shape == hw else cv2.resize(ids, (hw[1], hw[0]), interpolation=cv2.INTER_NEAREST)

    def warp(self, x: np.ndarray, flow: np.ndarray) -> np.ndarray:
        return remap_warp(x, flow)

    def float32(self, x: np.ndarray) -> np.ndarray:
        return x

    def clip_(self, x: np.ndarray, lo: float, hi: float) -> np.ndarray:
        return np.clip(x, lo, hi, out=x)

    def resize(self, prob: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
        """``(C, h, w)`` -> ``(C, H, W)`` bilinear (pixel centres aligned, as torch's ``align_corners=False``)."""
        out = np.empty((prob.shape[0], *hw), np.float32)
        for src, dst in zip(prob, out):
            cv2.resize(src, (hw[1], hw[0]), dst=dst, interpolation=cv2.INTER_LINEAR)
        return out

    def argmax(self, prob: np.ndarray) -> np.ndarray:
        """``(C, H, W)`` -> ``(H, W)`` uint8 index of the largest channel (first one on ties)."""
        if prob.shape[0] == 2:
            return np.greater(prob[1], prob[0]).view(np.uint8)
        best = prob[0].copy()
        idx = np.zeros(prob.shape[1:], np.uint8)
        for c in range(1, prob.shape[0]):
            better = np.greater(prob[c], best)
            idx[better] = c
            np.maximum(best, prob[c], out=best)
        return idx

    def scores_u8(self, prob: np.ndarray) -> np.ndarray:
        """Probabilities -> uint8 ``round(p x 255)``."""
        return (np.clip(prob, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)

    def to_host(self, v: Any) -> Any:
        return v.copy() if isinstance(v, np.ndarray) else v

    def from_host(self, v: Any, device: Any = None) -> Any:
        """A checkpointed array (a CPU tensor from an older checkpoint too) as a numpy array."""
        return np.asarray(v) if hasattr(v, "__array__") else v
