"""What every executor runs: tasks, their outcomes, and the worker side that holds the sessions.

A :class:`Task` is one unit of work (one video of ``vostool batch``, one sequence of ``vostool
bench``): a name, the :class:`~vostool.options.RunOptions` of the session it needs, and a payload
that only the work function reads. A work function ``work(session, task) -> dict`` is a
module-level function (it is sent to worker processes and Ray actors by reference).

A :class:`WorkerState` lives once per worker (the calling process, a local worker process, a Ray
actor). It builds a session the first time a task asks for its options and reuses it for later
tasks with the same options (:meth:`~vostool.inference.session.Session.reset` between videos), so
a model is loaded once per worker, not once per video.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import socket
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import VostoolError
from ..options import RunOptions

if TYPE_CHECKING:
    from ..inference.session import Session


@dataclass(frozen=True)
class Task:
    """One unit of work.

    Attributes:
        name: unique within a run (a video's output folder name, a sequence name).
        run: the options of the session the task runs in.
        payload: what the work function reads (picklable).
    """

    name: str
    run: RunOptions
    payload: Any = None


Work = Callable[["Session", Task], dict[str, Any]]
"""``work(session, task) -> result``: runs a task in a session reset for it; raises on failure."""


@dataclass
class Outcome:
    """How a task ended.

    Attributes:
        name: the task's name.
        ok: it finished without an error.
        result: what the work function returned (None on failure).
        error: one line saying what went wrong (None on success).
        seconds: wall-clock seconds of the task in its worker, session build included.
        setup_seconds: seconds spent building the session for this task (0 when reused).
        worker: which worker ran it (``host:pid``).
        attempts: how many times it was started (more than 1 after a worker died).
    """

    name: str
    ok: bool
    result: dict[str, Any] | None = None
    error: str | None = None
    seconds: float = 0.0
    setup_seconds: float = 0.0
    worker: str = ""
    attempts: int = 1


@dataclass
class Event:
    """What an executor reports while it runs: ``kind`` is ``"start"`` (a task was handed to a
    worker; ``outcome`` is None) or ``"done"`` (``outcome`` says how it ended)."""

    kind: str
    name: str
    worker: str = ""
    outcome: Outcome | None = None
    pid: int | None = None


OnEvent = Callable[[Event], None]


def one_line(exc: BaseException) -> str:
    """A user-facing one-line description of ``exc`` (vostool's own message, else type + first line)."""
    if isinstance(exc, VostoolError):
        return str(exc)
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def options_key(run: RunOptions) -> str:
    """A stable key of a :class:`RunOptions` (sessions are shared between tasks with equal keys)."""
    return hashlib.sha256(json.dumps(dataclasses.asdict(run), sort_keys=True, default=str).encode()).hexdigest()[:16]


def worker_label() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def limit_threads(threads: int | None) -> None:
    """Give this worker ``threads`` PyTorch threads (None: leave torch's choice). OpenCV already
    runs single-threaded in vostool (:mod:`vostool.io.video`), so workers never compete through it."""
    if not threads:
        return
    import cv2
    import torch

    torch.set_num_threads(max(1, int(threads)))
    cv2.setNumThreads(1)


def threads_per_worker(workers: int, cores: int | None = None) -> int:
    """CPU threads each of ``workers`` parallel workers gets so that together they fit the cores."""
    return max(1, (cores or os.cpu_count() or 1) // max(1, workers))


@dataclass
class WorkerState:
    """The sessions of one worker, built on first use and reused (at most ``keep`` option sets).

    Args:
        sessions: sessions built already (``options_key(run) -> session``), e.g. the one a
            command built in its own process.
        keep: how many differently-configured sessions stay loaded (least recently used dropped).
    """

    sessions: dict[str, Session] = field(default_factory=dict)
    keep: int = 2

    def __post_init__(self) -> None:
        self.sessions = OrderedDict(self.sessions)

    def session(self, run: RunOptions) -> tuple[Session, float]:
        """``(session for run, seconds spent building it now)``."""
        key = options_key(run)
        if key in self.sessions:
            self.sessions.move_to_end(key)  # type: ignore[attr-defined]
            return self.sessions[key], 0.0
        from ..inference.builder import create_session

        t0 = time.perf_counter()
        session = create_session(run)
        self.sessions[key] = session
        while len(self.sessions) > max(1, self.keep):
            self.sessions.popitem(last=False)  # type: ignore[call-arg]
        return session, time.perf_counter() - t0

    def execute(self, task: Task, work: Work, *, catch: bool = True) -> Outcome:
        """Run ``task`` with ``work`` in a fresh (reset) session; errors become a failed outcome
        (``catch=False``: they propagate). Ctrl-C always propagates."""
        t0 = time.perf_counter()
        setup = 0.0
        try:
            session, setup = self.session(task.run)
            session.reset()
            result = work(session, task)
        except KeyboardInterrupt:
            raise
        except Exception as exc:
            if isinstance(exc, VostoolError) and exc.exit_code == 130:  # an interrupted run (Ctrl-C) is not a failed task
                raise KeyboardInterrupt from exc
            if not catch:
                raise
            return Outcome(
                task.name, False, error=one_line(exc), seconds=time.perf_counter() - t0, setup_seconds=setup, worker=worker_label()
            )
        return Outcome(task.name, True, result=result, seconds=time.perf_counter() - t0, setup_seconds=setup, worker=worker_label())
