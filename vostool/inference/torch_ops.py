"""The array operations of a torch session (:class:`vostool.inference.session.Session` with a
network, RAFT, or a CUDA / MPS device); :mod:`vostool.inference.numpy_ops` is their numpy twin."""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..flow.warp import backward_warp
from ..options import PRECISION_NAMES

PRECISIONS = dict(zip(PRECISION_NAMES, (None, torch.bfloat16, torch.float16)))
"""Precision name -> autocast dtype (None: no autocast)."""


def channel_argmax(prob: torch.Tensor) -> torch.Tensor:
    """``(C, H, W)`` -> ``(H, W)`` uint8 index of the largest channel (first one on ties).

    A running comparison over channels: on the CPU it is ~10x faster than ``argmax(0)``,
    whose reduction runs across the strided channel axis.
    """
    best = prob[0].clone()
    idx = torch.zeros(prob.shape[1:], dtype=torch.uint8, device=prob.device)
    for c in range(1, prob.shape[0]):
        better = prob[c] > best
        idx.masked_fill_(better, c)
        torch.maximum(best, prob[c], out=best)
    return idx


class PendingHost:
    """A device-to-host copy in flight: :meth:`get` waits for it, in whichever thread asks (the
    frame loop on CUDA never waits for the GPU; the writer thread does)."""

    def __init__(self, host: torch.Tensor, event: Any, then: Any = None) -> None:
        self._host, self._event, self._then = host, event, then

    def map(self, fn: Any) -> PendingHost:
        """The same copy, with ``fn`` applied to the array when it arrives."""
        return PendingHost(self._host, self._event, fn if self._then is None else (lambda a, f=self._then: fn(f(a))))

    def get(self) -> np.ndarray:
        self._event.synchronize()
        a = self._host.numpy()
        return a if self._then is None else self._then(a)


class TorchOps:
    """Tensors on ``device``: images ``(1, 3, h, w)`` float32 in [0, 1], probabilities ``(C, h, w)``.

    On CUDA, arrays go up from pinned host memory and come back into it asynchronously
    (:meth:`upload`, :meth:`argmax`): the frame loop issues work and never waits for the GPU.
    """

    kind = "torch"

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.cuda = device.type == "cuda"

    def upload(self, a: np.ndarray) -> torch.Tensor:
        """A host array on the device (on CUDA through pinned memory, without waiting; torch's
        caching host allocator keeps the pinned block until the copy has run)."""
        t = torch.from_numpy(np.ascontiguousarray(a))
        if not self.cuda:
            return t.to(self.device)
        staged = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
        staged.copy_(t)
        return staged.to(self.device, non_blocking=True)

    def inference(self) -> contextlib.AbstractContextManager[Any]:
        return torch.inference_mode()

    def autocast(self, precision: str) -> contextlib.AbstractContextManager[Any]:
        dtype = PRECISIONS[precision]
        return contextlib.nullcontext() if dtype is None else torch.autocast(self.device.type, dtype=dtype)

    def image(self, rgb: np.ndarray, hw: tuple[int, int]) -> torch.Tensor:
        """``(H, W, 3)`` uint8 -> ``(1, 3, h, w)`` float32 in [0, 1] (antialiased bilinear resize)."""
        img = self.upload(rgb).permute(2, 0, 1).unsqueeze(0).float().div_(255.0)
        if hw != tuple(img.shape[-2:]):
            img = F.interpolate(img, size=hw, mode="bilinear", align_corners=False, antialias=True).clamp_(0.0, 1.0)
        return img

    def zeros(self, shape: tuple[int, ...]) -> torch.Tensor:
        return torch.zeros(shape, device=self.device)

    def ids(self, ids: np.ndarray, hw: tuple[int, int]) -> torch.Tensor:
        """``(H, W)`` uint8 object ids -> ``(h, w)`` uint8 on the device (nearest neighbour)."""
        t = self.upload(ids)
        if tuple(t.shape) != hw:
            t = F.interpolate(t[None, None].float(), size=hw, mode="nearest")[0, 0].to(torch.uint8)
        return t

    def warp(self, x: torch.Tensor, flow: Any) -> torch.Tensor:
        """Backward warp by ``flow``: ``(2, H, W)`` tensor, or OpenCV's ``(H, W, 2)`` array."""
        if isinstance(flow, np.ndarray):
            flow = self.upload(flow).permute(2, 0, 1)
        return backward_warp(x, flow.to(self.device))

    def float32(self, x: torch.Tensor) -> torch.Tensor:
        return x.float()

    def clip_(self, x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
        return x.clamp_(lo, hi)

    def resize(self, prob: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        """``(C, h, w)`` -> ``(C, H, W)`` bilinear (pixel centres aligned)."""
        return F.interpolate(prob[None], size=hw, mode="bilinear", align_corners=False)[0]

    def argmax(self, prob: torch.Tensor) -> np.ndarray | PendingHost:
        """``(C, H, W)`` -> ``(H, W)`` uint8 channel index on the host (on CUDA: on its way there)."""
        idx = channel_argmax(prob)
        if not self.cuda:
            return idx.cpu().numpy()
        host = torch.empty(idx.shape, dtype=torch.uint8, pin_memory=True)
        host.copy_(idx, non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        return PendingHost(host, event)

    def scores_u8(self, prob: torch.Tensor) -> np.ndarray:
        """Probabilities -> uint8 ``round(p x 255)`` on the host."""
        return (prob.clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).cpu().numpy()

    def to_host(self, v: Any) -> Any:
        """A CPU tensor copy of a tensor or array (checkpoints hold tensors only); anything else unchanged."""
        if isinstance(v, np.ndarray):
            return torch.from_numpy(v.copy())
        return v.detach().cpu().clone() if isinstance(v, torch.Tensor) else v

    def from_host(self, v: Any, device: Any = None) -> Any:
        """A checkpointed array back on the device (or ``device``); numpy arrays become tensors."""
        if isinstance(v, np.ndarray):
            v = torch.from_numpy(v)
        return v.to(self.device if device is None else device) if isinstance(v, torch.Tensor) else v
