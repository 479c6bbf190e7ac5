"""Weightless flow from OpenCV: DIS (Kroeger et al., ECCV 2016) and Farneback (SCIA 2003)."""

from __future__ import annotations

import cv2
import numpy as np
import torch

from .base import FlowEstimator

cv2.setNumThreads(1)  # see vostool.io.video: OpenCV and PyTorch thread pools must not compete

DIS_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}


class _OpenCVFlow(FlowEstimator):
    @property
    def prep_device(self) -> torch.device:
        return torch.device("cpu")

    def prepare(self, image: torch.Tensor) -> torch.Tensor:
        """``(1, 3, H, W)`` in [0, 1] -> ``(H, W)`` uint8 grayscale on the CPU (BT.601 luma)."""
        rgb = image[0].detach().float().cpu()
        gray = (0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]) * 255.0 + 0.5
        return gray.clamp_(0, 255).to(torch.uint8)

    def _calc(self, cur: np.ndarray, prev: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def flow(self, current: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        f = self._calc(current.numpy(), previous.numpy())  # (H, W, 2), cur(x) ~ prev(x + f(x))
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
