"""vostool: semi-supervised video object segmentation from the command line and from Python.

import vostool
vostool.segment("clip.mp4", "first_frame_mask.png", "out/", method="flow")
session = vostool.create_session("flow", flow="dis")   # per-video state
for result in session.propagate(frames, {0: first_mask}): ...   # the frame loop
"""

from __future__ import annotations

import os
from typing import Any

# PyTorch's OpenMP workers spin while waiting by default; on a small machine whose cores are
# shared with vostool's reader/writer threads (and other programs) that made the frame loop
# up to 20x slower. Passive waiting costs little when the cores are free. Set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .options import OutputOptions, RunOptions, WorkerOptions  # noqa: E402  (plain data, no torch)
from .version import __version__  # noqa: E402

_API = ("segment", "segment_batch", "create_session", "collect_masks", "load_method", "resolve_device", "Session", "StepResult")


def __getattr__(name: str) -> Any:
    # The API imports torch; keep `import vostool` (and `vostool --help`) light until it is used.
    if name in _API:
        from . import api

        return getattr(api, name)
    if name in ("create_method", "available_methods"):
        from . import models

        return getattr(models, name)
    raise AttributeError(f"module 'vostool' has no attribute {name!r}")


__all__ = ["__version__", *_API, "RunOptions", "OutputOptions", "WorkerOptions", "create_method", "available_methods"]
