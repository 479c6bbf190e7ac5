"""The Ray executor: the same tasks on a Ray cluster (``--ray``), with Ray as the engine.

``ray.init`` connects to the cluster (or starts a local instance); each worker is a Ray actor
that holds a :class:`~.tasks.WorkerState` (models loaded once per actor) and asks for
``cpus_per_worker`` CPUs and ``gpus_per_worker`` GPUs (fractional: several actors share a GPU).
Each actor gets one task at a time, so fast workers take more. An actor whose process dies is
restarted by Ray, which runs its task again (``max_retries``); outputs go to the paths in the
tasks, which must be on a file system every node shares. vostool must be installed on every node.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from typing import Any

from ..errors import InputError
from .tasks import Event, OnEvent, Outcome, Task, Work, WorkerState, limit_threads, one_line, worker_label

RAY_MISSING = "--ray needs Ray, which is not installed: pip install 'vostool[ray]' (or pip install ray)"


def import_ray() -> Any:
    """The ``ray`` module, or a one-line :class:`InputError` saying what to install."""
    try:
        import ray
    except ImportError:
        raise InputError(RAY_MISSING) from None
    return ray


class _Actor:
    """A Ray actor: one worker with its sessions."""

    def __init__(self, work: Work, threads: int | None, created: float) -> None:
        limit_threads(threads)
        from ..inference import builder  # noqa: F401  (the start-up paid once per actor)

        self.work = work
        self.state = WorkerState()
        self.startup_seconds = time.time() - created  # scheduling, process start, imports

    def info(self) -> tuple[str, int, float]:
        return worker_label(), os.getpid(), self.startup_seconds

    def run(self, task: Task) -> Outcome:
        return self.state.execute(task, self.work)


class RayExecutor:
    """Runs tasks on Ray actors.

    Args:
        address: ``None`` or ``""`` (``ray.init()``'s default: the running cluster, else a local
            instance), ``"local"`` (a new local instance), ``"auto"`` (the running cluster), or a
            cluster address (``HOST:PORT``, ``ray://HOST:PORT``). Ignored when Ray is already
            initialised in this process.
        workers: actors (None: one per GPU when the cluster has GPUs, else one per CPU).
        cpus_per_worker: CPUs per actor, also its PyTorch threads (None: the CPUs divided among the actors).
        gpus_per_worker: GPUs per actor, fractional allowed (None: 1 on a cluster with GPUs, else 0).
        max_retries: how many times Ray restarts a dead actor and runs its task again.
    """

    kind = "ray"

    def __init__(
        self,
        address: str | None = None,
        *,
        workers: int | None = None,
        cpus_per_worker: float | None = None,
        gpus_per_worker: float | None = None,
        max_retries: int = 2,
    ) -> None:
        import_ray()
        self.address = address
        self.workers = workers
        self.cpus_per_worker = cpus_per_worker
        self.gpus_per_worker = gpus_per_worker
        self.max_retries = max_retries
        self.startup_seconds: list[float] = []

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": self.kind,
            "address": self.address,
            "workers": self.workers,
            "cpus_per_worker": self.cpus_per_worker,
            "gpus_per_worker": self.gpus_per_worker,
        }
        if self.startup_seconds:
            out["worker_startup_seconds"] = [round(s, 2) for s in self.startup_seconds]
        return out

    def _plan(self, ray: Any) -> tuple[int, float, float]:
        """``(actors, CPUs each, GPUs each)`` for the cluster's resources."""
        res = ray.cluster_resources()
        cpus, gpus = float(res.get("CPU", 1.0)), float(res.get("GPU", 0.0))
        gpw = self.gpus_per_worker if self.gpus_per_worker is not None else (1.0 if gpus >= 1 else 0.0)
        if gpw > gpus:
            raise InputError(
                f"--gpus-per-worker {gpw:g} but the Ray cluster has {gpus:g} GPU(s); use --gpus-per-worker 0 or a cluster with GPUs"
            )
        if self.workers:
            n = self.workers
        elif gpw:
            n = max(1, int(gpus // gpw))
        else:
            n = max(1, int(cpus // (self.cpus_per_worker or 1.0)))
        cpw = self.cpus_per_worker if self.cpus_per_worker is not None else max(1.0, float(int(cpus // n)))
        if n * cpw > cpus + 1e-9 or n * gpw > gpus + 1e-9:
            raise InputError(
                f"{n} Ray workers x ({cpw:g} CPU, {gpw:g} GPU) do not fit the cluster ({cpus:g} CPU, {gpus:g} GPU); use fewer --workers"
            )
        return n, cpw, gpw

    def run(self, tasks: list[Task], work: Work, on_event: OnEvent) -> None:
        ray = import_ray()
        started_here = not ray.is_initialized()
        if started_here:
            ray.init(address=self.address or None, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
        actors: list[Any] = []
        try:
            n, cpw, gpw = self._plan(ray)
            self.workers, self.cpus_per_worker, self.gpus_per_worker = n, cpw, gpw
            n = min(n, len(tasks))
            cls = ray.remote(_Actor).options(num_cpus=cpw, num_gpus=gpw, max_restarts=self.max_retries, max_task_retries=self.max_retries)
            actors = [cls.remote(work, max(1, int(cpw)), time.time()) for _ in range(n)]
            info = ray.get([a.info.remote() for a in actors])
            labels = [i[0] for i in info]
            self.startup_seconds = [i[2] for i in info]
            self._dispatch(ray, actors, labels, deque(tasks), on_event)
        finally:
            for a in actors:
                ray.kill(a)
            if started_here:
                ray.shutdown()

    def _dispatch(self, ray: Any, actors: list[Any], labels: list[str], pending: deque[Task], on_event: OnEvent) -> None:
        idle = deque(range(len(actors)))
        inflight: dict[Any, tuple[int, Task]] = {}
        while pending or inflight:
            while idle and pending:
                i, task = idle.popleft(), pending.popleft()
                inflight[actors[i].run.remote(task)] = (i, task)
                on_event(Event("start", task.name, labels[i], pid=int(labels[i].rsplit(":", 1)[1])))
            if not inflight:  # every actor is gone for good
                for task in pending:
                    on_event(Event("done", task.name, outcome=Outcome(task.name, False, error="no Ray worker is left to run it")))
                return
            done, _ = ray.wait(list(inflight), num_returns=1)
            for ref in done:
                i, task = inflight.pop(ref)
                try:
                    outcome = ray.get(ref)
                except ray.exceptions.RayActorError as exc:  # died more often than Ray restarts it
                    error = f"the Ray worker died while running it, {self.max_retries + 1} time(s): {one_line(exc)[:200]}"
                    outcome = Outcome(task.name, False, error=error, worker=labels[i], attempts=self.max_retries + 1)
                except ray.exceptions.RayError as exc:
                    outcome = Outcome(task.name, False, error=one_line(exc)[:300], worker=labels[i])
                    idle.append(i)
                else:
                    labels[i] = outcome.worker or labels[i]  # a restarted actor has a new process
                    idle.append(i)
                on_event(Event("done", task.name, outcome.worker, outcome))
