"""The contract between a segmentation method and the inference session.

A *method* pairs a stateless network (an ``nn.Module``) with the per-frame rule of its paper.
It never owns per-video state: the session creates a state dict with :meth:`VOSMethod.init_state`,
keeps it, and hands it back on every call. State values are tensors, lists of tensors, ints,
floats or strings (so the session can checkpoint them for ``--resume``).

Conventions for every method (all tensors on the session's device):

* ``image``: ``(1, 3, H, W)`` float32 RGB in [0, 1] at the internal resolution; methods
  normalise and pad it themselves (:func:`vostool.models.blocks.pad_to_multiple`).
* ``prob``: ``(K + 1, H, W)`` float32 probabilities over [background, object slot 1..K]
  summing to 1 at every pixel.
* ``warped``: ``(K, H, W)`` float32, the previous frame's object probabilities
  backward-warped to the current frame with optical flow (all zeros on the first frame).
* Object slots are 1..K in the order objects were first given; an object added mid-video gets
  the next slot, and ``memorize`` tells the method which slots are new.
* ``stage(name)`` is a context manager the method wraps around each of its stages (names from
  :attr:`VOSMethod.stages`), so timing is reported in the paper's own terms.
"""

from __future__ import annotations

import abc
import contextlib
from typing import Any, Callable, ClassVar, ContextManager

import torch
from torch import nn

State = dict[str, Any]
StageFn = Callable[[str], ContextManager[Any]]


def no_stage(name: str) -> ContextManager[Any]:
    """A ``stage`` argument that times nothing."""
    return contextlib.nullcontext()


class VOSMethod(abc.ABC):
    """A segmentation method: a stateless network plus its per-frame rule.

    Subclasses set :attr:`name`, :attr:`stages`, and implement :meth:`memorize` and
    :meth:`predict`. ``net`` is None for weightless methods.
    """

    name: ClassVar[str] = ""
    stages: ClassVar[tuple[str, ...]] = ("network", "aggregate")
    uses_flow: ClassVar[bool] = True
    """Whether the session should compute flow and pass warped probabilities."""

    def __init__(self, net: nn.Module | None = None) -> None:
        self.net = net

    # --- lifecycle -----------------------------------------------------------------------
    def to(self, device: torch.device | str, *, channels_last: bool = False) -> "VOSMethod":
        """Move the network to ``device`` (optionally channels_last memory format)."""
        if self.net is not None:
            self.net.to(device)
            if channels_last:
                self.net.to(memory_format=torch.channels_last)
        return self

    def eval(self) -> "VOSMethod":
        if self.net is not None:
            self.net.eval()
        return self

    def init_state(self) -> State:
        """A fresh per-video state (kept by the session)."""
        return {}

    # --- per frame -----------------------------------------------------------------------
    @abc.abstractmethod
    def memorize(self, state: State, image: torch.Tensor, prob: torch.Tensor, new_slots: list[int]) -> None:
        """Take in a frame whose masks were given (first frame, or objects added later).

        Args:
            state: the per-video state to update in place.
            image: ``(1, 3, H, W)`` in [0, 1].
            prob: ``(K + 1, H, W)`` the given masks as probabilities (one-hot where given).
            new_slots: slots (1..K) first given on this frame.
        """

    @abc.abstractmethod
    def predict(self, state: State, image: torch.Tensor, warped: torch.Tensor, *, stage: StageFn = no_stage) -> torch.Tensor:
        """Segment one frame.

        Args:
            state: the per-video state (may be updated, e.g. memory of past frames).
            image: ``(1, 3, H, W)`` in [0, 1].
            warped: ``(K, H, W)`` previous object probabilities warped to this frame.
            stage: context-manager factory for per-stage timing.

        Returns:
            ``(K + 1, H, W)`` float32 probabilities over [background, objects].
        """

    def update(self, state: State, image: torch.Tensor, prob: torch.Tensor) -> None:
        """Called after :meth:`predict` with the frame's final probabilities (for memories)."""

    @property
    def num_parameters(self) -> int:
        return 0 if self.net is None else sum(p.numel() for p in self.net.parameters())
