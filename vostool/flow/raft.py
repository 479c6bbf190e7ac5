"""RAFT optical flow (Teed & Deng, ECCV 2020) through torchvision's implementation.

Weights come from :mod:`vostool.weights` (torchvision layout, or the original RAFT layout
``module.fnet.* / module.cnet.* / module.update_block.*`` converted on load).
"""

from __future__ import annotations

import torch

from ..padding import pad_to_multiple, unpad
from .base import FlowEstimator

MIN_SIZE = 128
"""Frames are zero-padded to at least this many pixels a side (smaller ones make RAFT fail)."""


class RAFTFlow(FlowEstimator):
    """RAFT-small or RAFT-large from torchvision.

    Args:
        state_dict: weights in torchvision's layout (see :func:`vostool.weights.convert_raft_original`).
        variant: ``small`` or ``large``.
        iters: recurrent refinement steps (12 as in the RAFT paper's evaluation of the small model).
    """

    def __init__(self, state_dict: dict[str, torch.Tensor] | None, *, variant: str = "small", iters: int = 12) -> None:
        from torchvision.models.optical_flow import raft_large, raft_small

        self.name = f"raft-{variant}"
        self.net = (raft_small if variant == "small" else raft_large)(weights=None, progress=False)
        if state_dict is not None:
            from ..weights import load_into

            load_into(self.net, state_dict)
        self.net.eval()
        self.iters = iters
        self.device = torch.device("cpu")

    def to(self, device: torch.device) -> RAFTFlow:
        self.device = torch.device(device)
        self.net.to(self.device)
        return self

    def prepare(self, image: torch.Tensor) -> torch.Tensor:
        """``(1, 3, H, W)`` in [0, 1] -> the same in [-1, 1] on the estimator's device."""
        return image.to(self.device, torch.float32) * 2.0 - 1.0

    @torch.inference_mode()
    def flow(self, current: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        # RAFT works at 1/8 and its 4-level correlation pyramid needs 16 positions: 128 pixels.
        a, pads = pad_to_multiple(current, 8, MIN_SIZE)
        b, _ = pad_to_multiple(previous, 8, MIN_SIZE)
        out = self.net(a, b, num_flow_updates=self.iters)[-1]
        return unpad(out, pads)[0].float()
