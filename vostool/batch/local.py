"""Executors on this machine: in this process (:class:`InlineExecutor`) or in long-lived worker
processes fed from one queue (:class:`ProcessExecutor`).

Each worker process starts once, sets its thread count so that the workers together fit the
cores, builds a session the first time a task needs its options (:class:`~.tasks.WorkerState`)
and then takes task after task. The parent keeps the queue and hands the next task to whichever
worker reports back first; it talks to each worker over its own pipe (no lock shared between
processes, so a worker killed at any moment cannot block the others). A worker that dies is
replaced and its task is started again (``max_attempts`` times in all); a worker whose batch
process dies exits at once, so a killed batch leaves no process writing into its output folders. On a
machine with several GPUs, worker ``k`` sees GPU ``k mod G`` only (``CUDA_VISIBLE_DEVICES``).
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

from .tasks import Event, OnEvent, Outcome, Task, Work, WorkerState, limit_threads, threads_per_worker, worker_label

BOOT_FAILURES = 3
"""Workers that die before taking a task, in a row, after which the remaining tasks fail."""


class InlineExecutor:
    """Runs the tasks one after another in this process.

    Args:
        state: the sessions to use (e.g. one the command built already); a new one if None.
        catch: turn a task's error into a failed outcome (False: the error propagates).
    """

    kind = "inline"
    workers = 1

    def __init__(self, state: WorkerState | None = None, *, catch: bool = True) -> None:
        self.state = state if state is not None else WorkerState()
        self.catch = catch

    def describe(self) -> dict[str, Any]:
        import torch

        return {"kind": self.kind, "workers": 1, "threads_per_worker": torch.get_num_threads()}

    def run(self, tasks: list[Task], work: Work, on_event: OnEvent) -> None:
        for task in tasks:
            on_event(Event("start", task.name, worker_label(), pid=os.getpid()))
            outcome = self.state.execute(task, work, catch=self.catch)
            on_event(Event("done", task.name, outcome.worker, outcome))


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, killed but not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def _exit_with_batch(batch: int) -> None:
    """Exit this worker as soon as the batch process is gone (a killed batch leaves no worker
    writing into its folders while it is run again)."""

    def watch() -> None:
        while _alive(batch):
            time.sleep(0.1)
        os._exit(1)

    threading.Thread(target=watch, name="vostool-batch-watch", daemon=True).start()


def _worker_main(conn: Connection, work: Work, threads: int | None, batch: int, spawned: float, gpu: str | None) -> None:
    """A worker process: report ready (with its start-up seconds), then run tasks until told to stop."""
    _exit_with_batch(batch)
    if gpu is not None:  # before CUDA starts in this process: the worker's one GPU is its cuda:0
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    task: Task | None = None
    try:
        limit_threads(threads)
        from ..inference import builder  # noqa: F401  (torch and the models: the start-up paid once per worker)

        state = WorkerState()
        conn.send(("ready", time.time() - spawned))
        while (task := conn.recv()) is not None:
            outcome = state.execute(task, work)
            task = None
            conn.send(("done", outcome))
    except KeyboardInterrupt:  # Ctrl-C reaches every process of the terminal: the parent decides
        if task is not None:
            conn.send(("interrupted", task.name))
    except (EOFError, OSError):  # the parent is gone
        pass


def _context(work: Work) -> Any:
    """Where worker processes come from: a fork server that imported torch and the models once
    (workers start in a fraction of a second), or fresh interpreters where there is no fork server.
    Never a fork of this process, whose threads (and maybe CUDA) a child must not inherit."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["vostool.inference.builder", work.__module__])
    return ctx


@dataclass
class _Slot:
    proc: Any
    conn: Connection
    task: Task | None = None
    attempts: int = 0
    ready: bool = False


class ProcessExecutor:
    """Runs tasks in ``workers`` long-lived processes on this machine.

    Args:
        workers: worker processes.
        threads: PyTorch threads per worker (None: the cores divided among the workers).
        max_attempts: how many times a task is started when its worker dies under it.
        gpus: the GPUs to spread the workers over (``CUDA_VISIBLE_DEVICES`` values); with fewer
            than two, workers see every GPU.
    """

    kind = "local"

    def __init__(self, workers: int, *, threads: int | None = None, max_attempts: int = 2, gpus: list[str] | None = None) -> None:
        self.workers = max(1, int(workers))
        self.gpus = list(gpus or []) if len(gpus or []) > 1 else []
        self._started = 0
        self.threads = threads or threads_per_worker(self.workers)
        self.max_attempts = max(1, int(max_attempts))
        self.startup_seconds: list[float] = []

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "workers": self.workers, "threads_per_worker": self.threads}
        if self.gpus:
            out["gpus"] = self.gpus
        if self.startup_seconds:
            out["worker_startup_seconds"] = [round(s, 2) for s in self.startup_seconds]
        return out

    def run(self, tasks: list[Task], work: Work, on_event: OnEvent) -> None:
        ctx = _context(work)
        pending: deque[tuple[Task, int]] = deque((t, 1) for t in tasks)
        slots: list[_Slot] = []
        boot_failures = 0

        def start_worker() -> None:
            here, there = ctx.Pipe()
            gpu = self.gpus[self._started % len(self.gpus)] if self.gpus else None
            self._started += 1
            args = (there, work, self.threads, os.getpid(), time.time(), gpu)
            proc = ctx.Process(target=_worker_main, args=args, name="vostool-worker", daemon=True)
            proc.start()
            there.close()
            slots.append(_Slot(proc, here))

        def hand_out() -> None:
            for slot in slots:
                if slot.task is None and pending:
                    slot.task, slot.attempts = pending.popleft()
                    slot.conn.send(slot.task)
                    on_event(Event("start", slot.task.name, f"{worker_label().split(':')[0]}:{slot.proc.pid}", pid=slot.proc.pid))

        def lost(slot: _Slot) -> None:
            nonlocal boot_failures
            slots.remove(slot)
            slot.proc.join(timeout=5)
            code = slot.proc.exitcode
            boot_failures = 0 if slot.ready else boot_failures + 1
            task = slot.task
            if task is not None:
                how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
                if slot.attempts < self.max_attempts:
                    pending.appendleft((task, slot.attempts + 1))
                else:
                    error = f"the worker process died while running it ({how}), {slot.attempts} time(s)"
                    on_event(Event("done", task.name, outcome=Outcome(task.name, False, error=error, attempts=slot.attempts)))
            if boot_failures >= BOOT_FAILURES:
                while pending:
                    t, n = pending.popleft()
                    error = f"worker processes keep dying before taking a task (last: exit code {code})"
                    on_event(Event("done", t.name, outcome=Outcome(t.name, False, error=error, attempts=n)))

        for _ in range(min(self.workers, len(pending))):
            start_worker()
        try:
            while pending or any(s.task is not None for s in slots):
                while len(pending) > sum(s.task is None for s in slots) and len(slots) < self.workers:
                    start_worker()  # a replacement for a worker that died
                hand_out()
                by_handle: dict[Any, _Slot] = {s.conn: s for s in slots} | {s.proc.sentinel: s for s in slots}
                for handle in wait(list(by_handle)):
                    slot = by_handle[handle]
                    if slot in slots and not self._receive(slot, on_event):
                        lost(slot)
        finally:
            self._stop(slots)

    def _receive(self, slot: _Slot, on_event: OnEvent) -> bool:
        """Handle every message the worker has sent; False once it is gone (EOF or exited)."""
        try:
            while slot.conn.poll():
                kind, value = slot.conn.recv()
                if kind == "ready":
                    slot.ready = True
                    self.startup_seconds.append(float(value))
                elif kind == "done":
                    value.attempts = slot.attempts
                    slot.task = None
                    on_event(Event("done", value.name, value.worker, value))
                elif kind == "interrupted":
                    raise KeyboardInterrupt
        except (EOFError, OSError):
            return False
        return slot.proc.is_alive()

    @staticmethod
    def _stop(slots: list[_Slot]) -> None:
        """Tell idle workers to exit; give busy ones (interrupted: saving their resume state) time to finish."""
        for slot in slots:
            try:
                slot.conn.send(None)
            except OSError:
                pass
        deadline = time.monotonic() + 30.0
        for slot in slots:
            slot.proc.join(timeout=max(0.0, deadline - time.monotonic()))
            if slot.proc.is_alive():
                slot.proc.terminate()
                slot.proc.join(timeout=5)
