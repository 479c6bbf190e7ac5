"""The optical-flow estimator contract.

Flow is *backward*: for every pixel ``x`` of the current frame, ``flow[:, y, x]`` is the
displacement ``(dx, dy)`` in pixels to where that point was in the previous frame, so the
previous frame's probabilities are brought forward by sampling them at ``x + flow(x)``
(:func:`vostool.flow.warp.backward_warp`).

An estimator first *prepares* each frame once (e.g. the grayscale image for OpenCV), and the
session keeps the previous frame's prepared form, so no frame is converted twice.
"""

from __future__ import annotations

import abc

import torch


class FlowEstimator(abc.ABC):
    """Computes backward flow between consecutive frames."""

    name: str = ""
    weights: dict | None = None
    """What weights were loaded (name, path, sha256, source) for learned estimators."""

    device: torch.device = torch.device("cpu")

    @property
    def prep_device(self) -> torch.device:
        """Where :meth:`prepare` puts its output (kept by the session between frames)."""
        return self.device

    def to(self, device: torch.device) -> FlowEstimator:
        """Move any network to ``device``; results come back on the session's device."""
        self.device = device
        return self

    @abc.abstractmethod
    def prepare(self, image: torch.Tensor) -> torch.Tensor:
        """``(1, 3, H, W)`` float RGB in [0, 1] -> this estimator's per-frame input (cached by the session)."""

    @abc.abstractmethod
    def flow(self, current: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        """Backward flow from ``current`` to ``previous`` (both from :meth:`prepare`).

        Returns:
            ``(2, H, W)`` float32 on the session device, channel 0 = dx, 1 = dy, in pixels.
        """
