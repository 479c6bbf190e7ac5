"""Inference: the per-video session and its frame loop, building sessions, timing, writing runs.

from vostool.inference import Session, create_session
session = create_session("flow", device="cpu")
for result in session.propagate(frames, {0: first_mask}):
    result.ids
"""

from .builder import create_session, load_method
from .device import resolve_device
from .session import Session, StepResult

__all__ = ["Session", "StepResult", "create_session", "load_method", "resolve_device"]
