"""Backward warping of soft masks, shared by every method."""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F


def pixel_grid(h: int, w: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """``(2, H, W)`` float32 pixel coordinates: channel 0 = x, 1 = y."""
    ys, xs = torch.meshgrid(
        torch.arange(h, device=device, dtype=torch.float32), torch.arange(w, device=device, dtype=torch.float32), indexing="ij"
    )
    return torch.stack([xs, ys])


@functools.lru_cache(maxsize=8)
def _normalised_base(h: int, w: int, device: torch.device) -> torch.Tensor:
    """``(1, H, W, 2)`` grid_sample coordinates of every pixel (align_corners=True)."""
    g = pixel_grid(h, w, device)
    g[0].mul_(2.0 / max(w - 1, 1)).sub_(1.0)
    g[1].mul_(2.0 / max(h - 1, 1)).sub_(1.0)
    return g.permute(1, 2, 0).unsqueeze(0).contiguous()


def backward_warp(x: torch.Tensor, flow: torch.Tensor, *, mode: str = "bilinear") -> torch.Tensor:
    """Sample ``x`` at ``p + flow(p)`` for every pixel ``p`` (zeros outside the image).

    Args:
        x: ``(C, H, W)`` or ``(N, C, H, W)`` values on the *previous* frame (e.g. soft masks).
        flow: ``(2, H, W)`` or ``(N, 2, H, W)`` backward flow from the current frame to the
            previous one, in pixels (channel 0 = dx, 1 = dy).
        mode: ``bilinear`` (soft masks) or ``nearest``.

    Returns:
        ``x`` brought to the current frame, same shape as ``x``.
    """
    squeeze = x.dim() == 3
    xb = x.unsqueeze(0) if squeeze else x
    fb = flow.unsqueeze(0) if flow.dim() == 3 else flow
    n, _, h, w = xb.shape
    scale = fb.new_tensor([2.0 / max(w - 1, 1), 2.0 / max(h - 1, 1)]).view(1, 1, 1, 2)
    with torch.inference_mode(False), torch.no_grad():
        base = _normalised_base(h, w, fb.device)
    g = (base + fb.float().permute(0, 2, 3, 1) * scale).to(xb.dtype)
    if g.shape[0] != n:
        g = g.expand(n, -1, -1, -1)
    out = F.grid_sample(xb, g, mode=mode, padding_mode="zeros", align_corners=True)
    return out[0] if squeeze else out
