"""Optical flow estimators and backward warping. Knows nothing of models or files.

``create_flow(name)`` builds ``dis`` / ``farneback`` (OpenCV, weightless) or ``raft-small`` /
``raft-large`` (torchvision; weights resolved by :mod:`vostool.weights`). The OpenCV estimators
and :func:`remap_warp` need no torch; :func:`backward_warp` and RAFT load it when first used.
"""

from __future__ import annotations

from typing import Any

from ..errors import InputError
from ..options import FLOW_NAMES
from .base import FlowEstimator
from .opencv import DISFlow, FarnebackFlow
from .remap import remap_warp

OPENCV_FLOWS = ("dis", "farneback")
"""Weightless OpenCV estimators: they run on the CPU whatever the session's device."""


def create_flow(
    name: str, *, device: Any = "cpu", weights: str | None = None, offline: bool | None = None, dis_preset: str = "ultrafast"
) -> FlowEstimator:
    """Build a flow estimator by name.

    Args:
        name: one of :data:`FLOW_NAMES`.
        device: where results (and RAFT) live (a ``torch.device`` or its name).
        weights: for RAFT, a file path or weights entry name (default: the manifest's entry).
        offline: never download (default: ``HF_HUB_OFFLINE``).
        dis_preset: DIS preset (``ultrafast``, ``fast``, ``medium``).
    """
    if name == "dis":
        est: FlowEstimator = DISFlow(dis_preset)
    elif name == "farneback":
        est = FarnebackFlow()
    elif name in ("raft-small", "raft-large"):
        from ..weights import resolve_weights
        from .raft import RAFTFlow

        resolved = resolve_weights(name, weights, offline=offline)
        est = RAFTFlow(resolved.state_dict(), variant=name.split("-")[1])
        est.weights = resolved.describe()
    else:
        raise InputError(f"unknown flow {name!r}; choose one of: {', '.join(FLOW_NAMES)}")
    if not est.host_arrays:  # OpenCV keeps the device as given: "cpu" needs no torch
        import torch

        device = torch.device(device)
    return est.to(device)


def __getattr__(name: str) -> Any:
    if name in ("backward_warp", "pixel_grid"):  # torch's grid_sample: loaded on first use
        from . import warp

        return getattr(warp, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "FLOW_NAMES",
    "OPENCV_FLOWS",
    "FlowEstimator",
    "DISFlow",
    "FarnebackFlow",
    "create_flow",
    "backward_warp",
    "pixel_grid",
    "remap_warp",
]
