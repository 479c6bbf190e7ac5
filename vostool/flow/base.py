"""The optical-flow estimator contract.

Flow is *backward*: for every pixel ``x`` of the current frame, the flow at ``x`` is the
displacement ``(dx, dy)`` in pixels to where that point was in the previous frame, so the
previous frame's probabilities are brought forward by sampling them at ``x + flow(x)``
(:func:`vostool.flow.warp.backward_warp` on tensors, :func:`vostool.flow.remap.remap_warp` on
numpy arrays).

An estimator first *prepares* each frame once (e.g. the grayscale image for OpenCV), and the
session keeps the previous frame's prepared form, so no frame is converted twice.

Two kinds of session call an estimator (see :mod:`vostool.inference.session`): a torch session
passes ``(1, 3, H, W)`` float tensors in [0, 1] and gets ``(2, H, W)`` float32 flow on its
device; a numpy session (weightless method, estimator with :attr:`FlowEstimator.host_arrays`)
passes ``(H, W, 3)`` uint8 RGB arrays and gets OpenCV's own ``(H, W, 2)`` float32 array.
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import torch


class FlowEstimator(abc.ABC):
    """Computes backward flow between consecutive frames."""

    name: str = ""
    weights: dict | None = None
    """What weights were loaded (name, path, sha256, source) for learned estimators."""

    host_arrays: ClassVar[bool] = False
    """True when the estimator also works on numpy arrays on the host (OpenCV): a weightless
    method then runs without torch."""

    device: Any = "cpu"
    """Where results (and networks) live: a ``torch.device`` or ``"cpu"``."""

    @property
    def prep_device(self) -> Any:
        """Where :meth:`prepare` puts its output (kept by the session between frames)."""
        return self.device

    def to(self, device: Any) -> FlowEstimator:
        """Move any network to ``device``; results come back on the session's device."""
        self.device = device
        return self

    @abc.abstractmethod
    def prepare(self, image: torch.Tensor) -> torch.Tensor:
        """``(1, 3, H, W)`` float RGB in [0, 1] (or, for :attr:`host_arrays` estimators, an
        ``(H, W, 3)`` uint8 RGB array) -> this estimator's per-frame input (cached by the session)."""

    @abc.abstractmethod
    def flow(self, current: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        """Backward flow from ``current`` to ``previous`` (both from :meth:`prepare`).

        Returns:
            ``(2, H, W)`` float32 on the session device, channel 0 = dx, 1 = dy, in pixels (for
            prepared numpy arrays: an ``(H, W, 2)`` float32 array, OpenCV's layout).
        """
