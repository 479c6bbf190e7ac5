"""Zero-padding of image tensors to a multiple of a network's stride, and its inverse
(the segmentation networks and RAFT both need sizes divisible by their stride)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def pad_to_multiple(x: torch.Tensor, multiple: int, minimum: int = 0) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """Zero-pad the last two dims of ``x`` up to a multiple of ``multiple`` (split evenly), and
    to at least ``minimum`` pixels.

    Returns:
        ``(padded, pads)`` where ``pads = (left, right, top, bottom)`` for :func:`unpad`.
    """
    h, w = x.shape[-2:]
    up = lambda n: -(-max(n, minimum) // multiple) * multiple  # noqa: E731
    ph, pw = up(h) - h, up(w) - w
    pads = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)
    if ph or pw:
        x = F.pad(x, pads)
    return x, pads


def unpad(x: torch.Tensor, pads: tuple[int, int, int, int]) -> torch.Tensor:
    """Undo :func:`pad_to_multiple` on the last two dims."""
    left, right, top, bottom = pads
    h, w = x.shape[-2:]
    return x[..., top : h - bottom, left : w - right]
