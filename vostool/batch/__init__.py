"""Many videos: one job runner for ``vostool batch`` and ``vostool bench --method``.

* :mod:`.tasks` — :class:`Task`, :class:`Outcome`, and :class:`WorkerState`, the worker side that
  loads a model once and reuses its session for every task with the same options;
* :mod:`.local` — executors on this machine: in this process, or long-lived worker processes;
* :mod:`.cluster` — the Ray executor (``--ray``; Ray is the optional extra ``vostool[ray]``);
* :mod:`.jobs` — the jobs of ``vostool batch``: a folder of clips or a CSV / JSONL manifest;
* :mod:`.driver` — a batch into one folder: resume rules, ``batch.json``, progress, timing.

    executor = make_executor(WorkerOptions(workers=2))
    report = run_batch(find_jobs("clips/"), "out/", run_segment_task, executor)
"""

from __future__ import annotations

import os

from ..options import WorkerOptions
from .driver import BATCH_FILE, Executor, SegmentPayload, output_for, plan_job, run_batch
from .jobs import SegmentJob, find_jobs
from .local import InlineExecutor, ProcessExecutor
from .tasks import Event, Outcome, Task, Work, WorkerState, limit_threads


def visible_gpus() -> list[str]:
    """The CUDA devices this process may use (``CUDA_VISIBLE_DEVICES`` values), none without CUDA."""
    import torch

    if not torch.cuda.is_available():
        return []
    listed = [d for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    return listed[: torch.cuda.device_count()] if listed else [str(i) for i in range(torch.cuda.device_count())]


def default_workers(gpus: int = 0) -> int:
    """Local worker processes when ``--workers`` is not given: one per GPU, else one per core."""
    return gpus or max(1, os.cpu_count() or 1)


def make_executor(options: WorkerOptions | None = None, *, state: WorkerState | None = None, catch: bool = True) -> Executor:
    """The executor ``options`` ask for: Ray actors (``ray`` set), worker processes (``workers`` > 1;
    on a machine with several GPUs spread over them), or this process (``workers`` 1, with
    ``state``'s sessions if given).

    Raises:
        InputError: ``ray`` is asked for but Ray is not installed.
    """
    o = options or WorkerOptions()
    if o.ray is not None:
        from .cluster import RayExecutor

        return RayExecutor(o.ray, workers=o.workers, cpus_per_worker=o.cpus_per_worker, gpus_per_worker=o.gpus_per_worker)
    gpus = visible_gpus()
    workers = o.workers if o.workers is not None else default_workers(len(gpus))
    if workers <= 1:
        limit_threads(o.cpus_per_worker)
        return InlineExecutor(state, catch=catch)
    return ProcessExecutor(workers, threads=o.cpus_per_worker, gpus=gpus)


__all__ = [
    "BATCH_FILE",
    "Event",
    "Executor",
    "InlineExecutor",
    "Outcome",
    "ProcessExecutor",
    "SegmentJob",
    "SegmentPayload",
    "Task",
    "Work",
    "WorkerState",
    "default_workers",
    "visible_gpus",
    "find_jobs",
    "make_executor",
    "output_for",
    "plan_job",
    "run_batch",
]
