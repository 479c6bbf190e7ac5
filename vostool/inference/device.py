"""Which torch device a run uses, and torch's CPU set-up for vostool's work."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import InputError

if TYPE_CHECKING:
    import torch


def device_type(device: Any) -> str:
    """``"cpu"``, ``"cuda"``, ... of a ``torch.device`` or a device name (``"cuda:1"`` -> ``"cuda"``)."""
    return str(getattr(device, "type", device)).split(":")[0]


def flush_denormals() -> None:
    """Make the CPU treat subnormal floats (below 1.2e-38 in float32) as zero (FTZ/DAZ).

    Softmax affinities and sigmoid tails underflow into subnormals, on which x86 arithmetic is
    up to ~100x slower: a profile of one 5-object frame of the embedding method at 480p took 63 s
    with them and 15 s without (``benchmarks/denormal_speed.py`` measures every method with and
    without; how many subnormals appear depends on the frames and weights). Values that small carry nothing a
    probability or an activation needs. The setting is per thread and torch's worker threads
    copy it when they start, so it is made once for the process, before torch runs anything
    (:func:`resolve_device` does it; a program that already ran torch work in parallel should
    call this before that), and never undone.
    """
    import torch

    torch.set_flush_denormal(True)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` -> CUDA if available, else MPS, else CPU; checks that the asked device exists.
    Sets up torch's CPU side for the run (:func:`flush_denormals`)."""
    import torch

    flush_denormals()
    name = str(device)
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise InputError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"device {name} asked for but CUDA is not available here; use --device cpu or auto")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InputError(f"device {name} does not exist: {torch.cuda.device_count()} CUDA device(s) found")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise InputError("device mps asked for but MPS is not available here; use --device cpu or auto")
    return dev
