"""``flow``: the weightless propagation baseline.

Each frame's object probabilities are the previous frame's soft probabilities backward-warped
with optical flow (the session does the warping, shared by every method), merged into one
distribution by the soft aggregation of AGSS-VOS (eq. 4-5). There is no network: it is the
lower bound the learned methods must beat and the fastest way to propagate a mask.

On the CPU with OpenCV flow the session hands this method numpy arrays (no torch at all, see
:mod:`vostool.inference.session`); the aggregation then runs as :func:`soft_aggregate_numpy`,
the numpy twin of :func:`vostool.models.blocks.soft_aggregate` (``tests/test_models_blocks.py``
checks that they agree).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import MethodState, StageFn, VOSMethod, no_stage
from .registry import register_method


def soft_aggregate_numpy(fg: np.ndarray, eps: float = 1e-7) -> np.ndarray:
    """:func:`vostool.models.blocks.soft_aggregate` on a numpy array, with the same float32
    operations in the same order: background ``1 - max_k p_k``, clamp to ``[eps, 1 - eps]``, odds
    ``p / (1 - p)`` normalised over [background, objects].

    Args:
        fg: ``(K, H, W)`` float32 per-object foreground probabilities in [0, 1].

    Returns:
        ``(K + 1, H, W)`` float32 probabilities summing to 1 over axis 0.
    """
    k = fg.shape[0]
    p = np.empty((k + 1, *fg.shape[1:]), np.float32)
    if k:
        np.max(fg, axis=0, out=p[0])
        np.subtract(1.0, p[0], out=p[0])
        p[1:] = fg
    else:
        p[0] = 1.0
    np.clip(p, eps, 1.0 - eps, out=p)
    np.divide(p, 1.0 - p, out=p)
    np.divide(p, p.sum(0), out=p)
    return p


class FlowPropagation(VOSMethod[MethodState]):
    """Warp-and-aggregate propagation; no learned parameters."""

    name = "flow"
    stages = ("aggregate",)

    def memorize(self, state: MethodState, image: Any, prob: Any, new_slots: list[int]) -> None:
        """Nothing to remember: the session keeps the previous probabilities."""

    def predict(self, state: MethodState, image: Any, warped: Any, *, stage: StageFn = no_stage) -> Any:
        """``warped (K, H, W)`` -> ``(K + 1, H, W)`` by soft aggregation (tensor or numpy array)."""
        with stage("aggregate"):
            if isinstance(warped, np.ndarray):
                return soft_aggregate_numpy(warped)  # its clamp to [eps, 1 - eps] covers [0, 1]
            from .blocks import soft_aggregate

            return soft_aggregate(warped.clamp(0.0, 1.0))


@register_method("flow", FlowPropagation, needs_weights=False, paper="optical-flow propagation baseline (no network)", default_flow="dis")
def build_flow() -> FlowPropagation:
    """The weightless ``flow`` method."""
    return FlowPropagation()
