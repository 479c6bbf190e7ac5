"""Executors on this machine: in this process (:class:`InlineExecutor`) or in long-lived worker
processes fed from one queue (:class:`ProcessExecutor`).

Each worker process starts once, sets its thread count so that the workers together fit the
cores, builds a session the first time a task needs its options (:class:`~.tasks.WorkerState`)
and then takes task after task. The parent keeps the queue and hands the next task to whichever
worker reports back first; it talks to each worker over its own pipe (no lock shared between
processes, so a worker killed at any moment cannot block the others). A worker that dies is
replaced and its task is started again (``max_attempts`` times in all); a worker whose parent
dies exits at once, so a killed batch leaves no process writing into its output folders.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
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


def _exit_with_parent(parent: int) -> None:
    """Exit this worker as soon as its parent is gone (killed batch: no orphan keeps writing)."""

    def watch() -> None:
        while True:
            if os.getppid() != parent:
                os._exit(1)
            time.sleep(0.2)

    threading.Thread(target=watch, name="vostool-parent-watch", daemon=True).start()


def _worker_main(conn: Connection, work: Work, threads: int | None, parent: int, spawned: float) -> None:
    """A worker process: report ready (with its start-up seconds), then run tasks until told to stop."""
    _exit_with_parent(parent)
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
    """

    kind = "local"

    def __init__(self, workers: int, *, threads: int | None = None, max_attempts: int = 2) -> None:
        self.workers = max(1, int(workers))
        self.threads = threads or threads_per_worker(self.workers)
        self.max_attempts = max(1, int(max_attempts))
        self.startup_seconds: list[float] = []

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "workers": self.workers, "threads_per_worker": self.threads}
        if self.startup_seconds:
            out["worker_startup_seconds"] = [round(s, 2) for s in self.startup_seconds]
        return out

    def run(self, tasks: list[Task], work: Work, on_event: OnEvent) -> None:
        ctx = multiprocessing.get_context("spawn")  # fork would copy torch's thread pools in an unusable state
        pending: deque[tuple[Task, int]] = deque((t, 1) for t in tasks)
        slots: list[_Slot] = []
        boot_failures = 0

        def start_worker() -> None:
            here, there = ctx.Pipe()
            proc = ctx.Process(
                target=_worker_main, args=(there, work, self.threads, os.getpid(), time.time()), name="vostool-worker", daemon=True
            )
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
                how = f"signal {signal.Signals(-code).name}" if code is not None and code < 0 else f"exit code {code}"
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
                by_handle = {id(s.conn): s for s in slots} | {id(s.proc.sentinel): s for s in slots}
                for handle in wait([s.conn for s in slots] + [s.proc.sentinel for s in slots]):
                    slot = by_handle[id(handle)]
                    if slot not in slots:
                        continue
                    try:
                        kind, value = slot.conn.recv() if handle is slot.conn else (None, None)
                    except (EOFError, OSError):
                        kind = None
                    if kind == "ready":
                        slot.ready = True
                        self.startup_seconds.append(float(value))
                    elif kind == "done":
                        assert slot.task is not None
                        value.attempts = slot.attempts
                        slot.task = None
                        on_event(Event("done", value.name, value.worker, value))
                    elif kind == "interrupted":
                        raise KeyboardInterrupt
                    else:
                        lost(slot)
        finally:
            self._stop(slots)

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
