"""Training across processes and GPUs with ``torchrun`` and DistributedDataParallel.

    torchrun --nproc_per_node 4 -m vostool train --method agss --data DAVIS/ --out runs/a --batch 8

``torchrun`` starts the processes and sets ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` /
``MASTER_ADDR``; :func:`from_env` joins the process group (NCCL on CUDA, one GPU per process;
gloo on the CPU). Without those variables everything here is a no-op (one process).

* Data: the global batch of step ``s`` is the same clips as in one process (a pure function of
  ``(seed, s)``); rank ``r`` of ``W`` takes clips ``r * B / W .. (r + 1) * B / W - 1``
  (:meth:`Distributed.shard`), so ``B`` must be a multiple of ``W``.
* Gradients: DDP averages them over the ranks, which equals the gradient of the global batch's
  loss when that loss is a mean over its clips: exactly so for AGSS-VOS's instance IoU loss; the
  pixel-averaged cross-entropy terms match when the clips have equally many non-void pixels
  (e.g. with ``--crop``). Trained BatchNorm normalises over each rank's clips, as in any DDP run
  (frozen BatchNorm, the pretrained-encoder setting, is unaffected).
* Writing: only rank 0 writes the run folder (config, checkpoints, log, validation, export); all
  ranks load the same checkpoint on ``--resume``, so a resumed run continues exactly.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from ..errors import InputError

TIMEOUT = datetime.timedelta(minutes=60)
"""How long a rank waits for the others (rank 0 validates and exports while they wait)."""


@dataclass
class Distributed:
    """This process's place in the run: ``rank`` of ``world`` processes, ``local_rank`` on its machine."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes and reports."""
        return self.rank == 0

    def shard(self, batch: int) -> range:
        """The clip indices of the global batch of ``batch`` clips that this rank trains on."""
        if batch % self.world:
            raise InputError(f"--batch {batch} does not split evenly over {self.world} processes; use a multiple of {self.world}")
        n = batch // self.world
        return range(self.rank * n, (self.rank + 1) * n)

    def wrap(self, net: torch.nn.Module) -> torch.nn.Module:
        """``net`` in DistributedDataParallel (gradients averaged over the ranks), or ``net`` alone."""
        if not self.enabled:
            return net
        device = next(net.parameters()).device
        ids = [device.index] if device.type == "cuda" else None
        return _DDP(net, device_ids=ids)

    def mean(self, stats: Mapping[str, float]) -> dict[str, float]:
        """``stats`` averaged over the ranks (every rank gets the same numbers)."""
        if not self.enabled or not stats:
            return dict(stats)
        keys = list(stats)
        t = torch.tensor([float(stats[k]) for k in keys], dtype=torch.float64, device=self._device())
        dist.all_reduce(t)
        return {k: float(v) / self.world for k, v in zip(keys, t.tolist())}

    def any(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is true on at least one (ranks stop together)."""
        if not self.enabled:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=self._device())
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item() > 0)

    def close(self) -> None:
        """Leave the process group (after the others are done)."""
        if self.enabled and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()

    def _device(self) -> torch.device:
        return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


class _DDP(torch.nn.parallel.DistributedDataParallel):
    """DDP whose wrapped network's own methods stay reachable (the recipes call ``net.reference``);
    every recipe also calls the network itself each step, which is what starts the gradient sync."""

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.module, name)


def from_env(device: str = "auto") -> tuple[Distributed, torch.device | None]:
    """Join the process group ``torchrun`` describes in the environment.

    Returns:
        ``(place, device)``: the device is this rank's GPU (``cuda:LOCAL_RANK``) or the CPU when
        running distributed, None when not (the caller resolves ``device`` as usual).

    Raises:
        InputError: a device that cannot be split over the processes.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Distributed(), None
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if cuda:
        if torch.cuda.device_count() < local_world:
            raise InputError(
                f"{local_world} processes on this machine but {torch.cuda.device_count()} GPU(s); use --nproc_per_node {torch.cuda.device_count()} or --device cpu"
            )
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    elif device in ("auto", "cpu"):
        dev = torch.device("cpu")
    else:
        raise InputError(f"--device {device} cannot be split over processes; use cuda (one GPU per process) or cpu")
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo", timeout=TIMEOUT)
    return Distributed(rank, world, local_rank, local_world), dev


def threads_for(place: Distributed) -> int | None:
    """CPU threads of each process so that the processes of one machine share its cores (None: one process)."""
    if not place.enabled:
        return None
    return max(1, (os.cpu_count() or 1) // place.local_world)
