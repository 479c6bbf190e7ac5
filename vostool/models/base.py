"""The contract between a segmentation method and the inference session.

A *method* pairs a stateless network (an ``nn.Module``) with the per-frame rule of its paper.
It never owns per-video state: the session creates the method's typed state (a
:class:`MethodState` dataclass) with :meth:`VOSMethod.init_state`, keeps it, and hands it back on
every call. State fields are tensors, lists of tensors, ints, floats, bools or None, so the
session can checkpoint them as a plain dict (:meth:`MethodState.to_dict`, loadable with
``torch.load(weights_only=True)``) for ``--resume``.

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
  :attr:`VOSMethod.stages`), so timing is reported in the paper's own terms. A stage whose work
  grows with the objects it handles says how many with ``stage(name, objects=n)``; the timing
  report then also gives its cost per object.
* A network may name *entry points* (``entry_points``, a class attribute): methods that take
  only tensors, positionally (plus an optional ``stage`` keyword), and return a tensor or a
  tuple of tensors, e.g. all of one frame's network work. The session's accelerator may run
  each as one exported graph (:mod:`vostool.inference.blocks`), its time then reported as one
  stage, ``network``.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar

if TYPE_CHECKING:  # torch loads with the first network: the weightless method runs without it
    import torch
    from torch import nn


class StageFn(Protocol):
    """``stage(name, objects=None)``: a context manager timing the enclosed block as stage
    ``name`` (``objects``: how many objects the block handled, for a per-object cost)."""

    def __call__(self, name: str, /, *, objects: int | None = None) -> contextlib.AbstractContextManager[Any]: ...


@dataclasses.dataclass
class MethodState:
    """Per-video state of a method (subclasses declare their fields; this one has none).

    Fields are read as attributes (``state.ref``) or, for inspection, by name (``state["ref"]``).
    """

    def __getitem__(self, name: str) -> Any:
        if name not in self.__dataclass_fields__:
            raise KeyError(name)
        return getattr(self, name)

    def to_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (for checkpoints; tensors are not copied)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MethodState:
        """The inverse of :meth:`to_dict` (fields missing from ``data`` take their defaults)."""
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})


S = TypeVar("S", bound=MethodState)


def no_stage(name: str, /, *, objects: int | None = None) -> contextlib.AbstractContextManager[Any]:
    """A ``stage`` argument that times nothing."""
    return contextlib.nullcontext()


class VOSMethod(abc.ABC, Generic[S]):
    """A segmentation method: a stateless network plus its per-frame rule.

    Subclasses set :attr:`name`, :attr:`stages`, :attr:`uses_flow`, :attr:`state_type` (their
    :class:`MethodState` dataclass), and implement :meth:`memorize` and :meth:`predict`. ``net``
    is None for weightless methods.
    """

    name: ClassVar[str] = ""
    stages: ClassVar[tuple[str, ...]] = ("network", "aggregate")
    uses_flow: ClassVar[bool] = True
    """Whether the session should compute flow and pass warped probabilities."""
    state_type: ClassVar[type[MethodState]] = MethodState
    """The per-video state this method keeps."""

    def __init__(self, net: nn.Module | None = None) -> None:
        self.net = net

    # --- lifecycle -----------------------------------------------------------------------
    def to(self, device: torch.device | str, *, channels_last: bool = False) -> VOSMethod:
        """Move the network to ``device`` (optionally channels_last memory format)."""
        if self.net is not None:
            import torch

            self.net.to(device)
            if channels_last:
                self.net.to(memory_format=torch.channels_last)
        return self

    def eval(self) -> VOSMethod:
        if self.net is not None:
            self.net.eval()
        return self

    def init_state(self) -> S:
        """A fresh per-video state (kept by the session)."""
        return self.state_type()  # type: ignore[return-value]

    def load_state(self, data: dict[str, Any]) -> S:
        """A state from :meth:`MethodState.to_dict` (a session checkpoint)."""
        return self.state_type.from_dict(data)  # type: ignore[return-value]

    # --- per frame -----------------------------------------------------------------------
    @abc.abstractmethod
    def memorize(self, state: S, image: torch.Tensor, prob: torch.Tensor, new_slots: list[int]) -> None:
        """Take in a frame whose masks were given (first frame, or objects added later).

        Args:
            state: the per-video state to update in place.
            image: ``(1, 3, H, W)`` in [0, 1].
            prob: ``(K + 1, H, W)`` the given masks as probabilities (one-hot where given).
            new_slots: slots (1..K) first given on this frame.
        """

    @abc.abstractmethod
    def predict(self, state: S, image: torch.Tensor, warped: torch.Tensor, *, stage: StageFn = no_stage) -> torch.Tensor:
        """Segment one frame.

        Args:
            state: the per-video state (may be updated, e.g. memory of past frames).
            image: ``(1, 3, H, W)`` in [0, 1].
            warped: ``(K, H, W)`` previous object probabilities warped to this frame.
            stage: context-manager factory for per-stage timing.

        Returns:
            ``(K + 1, H, W)`` float32 probabilities over [background, objects].
        """

    def update(self, state: S, image: torch.Tensor, prob: torch.Tensor) -> None:
        """Called after :meth:`predict` with the frame's final probabilities (for memories)."""

    @property
    def num_parameters(self) -> int:
        return 0 if self.net is None else sum(p.numel() for p in self.net.parameters())
