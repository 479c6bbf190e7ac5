"""Weightless flow from OpenCV: DIS (Kroeger et al., ECCV 2016) and Farneback (SCIA 2003).

Both work on numpy arrays (a weightless method's numpy session: no torch at all) and on torch
tensors (the learned methods' sessions), with the same OpenCV call in between.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from .base import FlowEstimator

cv2.setNumThreads(1)  # see vostool.io.video: OpenCV and PyTorch thread pools must not compete

DIS_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}


class _OpenCVFlow(FlowEstimator):
    host_arrays = True

    @property
    def prep_device(self) -> str:
        return "cpu"

    def prepare(self, image: Any) -> Any:
        """-> ``(H, W)`` uint8 grayscale on the CPU (BT.601 luma), from an ``(H, W, 3)`` uint8 RGB
        array (a numpy array back) or a ``(1, 3, H, W)`` tensor in [0, 1] (a tensor back)."""
        if isinstance(image, np.ndarray):
            return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        import torch

        rgb = image[0].detach().float().cpu()
        gray = (0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]) * 255.0 + 0.5
        return gray.clamp_(0, 255).to(torch.uint8)

    def _calc(self, cur: np.ndarray, prev: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def flow(self, current: Any, previous: Any) -> Any:
        """``(H, W, 2)`` float32 for prepared arrays; ``(2, H, W)`` on :attr:`device` for tensors."""
        if isinstance(current, np.ndarray):
            return self._calc(current, previous)  # cur(x) ~ prev(x + f(x))
        import torch

        f = self._calc(current.numpy(), previous.numpy())
        return torch.from_numpy(f).permute(2, 0, 1).contiguous().to(self.device)


class DISFlow(_OpenCVFlow):
    """OpenCV's Dense Inverse Search flow.

    Args:
        preset: ``ultrafast`` (default: on the six DAVIS 2016 480p sequences it gave a higher
            J-mean than ``fast``, 0.561 vs 0.524, at lower cost), ``fast`` or ``medium``.
    """

    name = "dis"

    def __init__(self, preset: str = "ultrafast") -> None:
        self.preset = preset

    def _calc(self, cur: np.ndarray, prev: np.ndarray) -> np.ndarray:
        # A fresh DIS object per pair (~8 us): a reused one carries state between calls (its
        # output on a 48x85 pair changed by up to 8e-4 px after other calls), which would make
        # a resumed run differ from an uninterrupted one.
        return cv2.DISOpticalFlow_create(DIS_PRESETS[self.preset]).calc(cur, prev, None)


class FarnebackFlow(_OpenCVFlow):
    """OpenCV's Farneback polynomial-expansion flow (pyramid 0.5 x 3, window 15)."""

    name = "farneback"

    def _calc(self, cur: np.ndarray, prev: np.ndarray) -> np.ndarray:
        return cv2.calcOpticalFlowFarneback(cur, prev, None, 0.5, 3, 15, 3, 5, 1.2, 0)
