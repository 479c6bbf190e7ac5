"""``flow``: the weightless propagation baseline.

Each frame's object probabilities are the previous frame's soft probabilities backward-warped
with optical flow (the session does the warping, shared by every method), merged into one
distribution by the soft aggregation of AGSS-VOS (eq. 4-5). There is no network: it is the
lower bound the learned methods must beat and the fastest way to propagate a mask.
"""

from __future__ import annotations

import torch

from .base import MethodState, StageFn, VOSMethod, no_stage
from .blocks import soft_aggregate
from .registry import register_method


class FlowPropagation(VOSMethod[MethodState]):
    """Warp-and-aggregate propagation; no learned parameters."""

    name = "flow"
    stages = ("aggregate",)

    def memorize(self, state: MethodState, image: torch.Tensor, prob: torch.Tensor, new_slots: list[int]) -> None:
        """Nothing to remember: the session keeps the previous probabilities."""

    def predict(self, state: MethodState, image: torch.Tensor, warped: torch.Tensor, *, stage: StageFn = no_stage) -> torch.Tensor:
        """``warped (K, H, W)`` -> ``(K + 1, H, W)`` by soft aggregation."""
        with stage("aggregate"):
            return soft_aggregate(warped.clamp(0.0, 1.0))


@register_method("flow", FlowPropagation, needs_weights=False, paper="optical-flow propagation baseline (no network)", default_flow="dis")
def build_flow() -> FlowPropagation:
    """The weightless ``flow`` method."""
    return FlowPropagation()
