"""Running a method over a benchmark: frames -> session -> ``<results>/<seq>/<frame>.png`` -> scoring.

Each sequence gets a fresh session state (``session.reset()``) and a fresh stage timer. The
masks given to the session are the benchmark's (:meth:`vostool.datasets.Dataset.given_masks`).
Sequences are tasks of the job runner (:mod:`vostool.batch`): in this process by default, or
spread over worker processes or a Ray cluster (``vostool bench --run-workers N`` / ``--ray``).
As each sequence is segmented, it is scored in a worker thread while the method goes on.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..batch import Event, Executor, InlineExecutor, Task, WorkerState
from ..batch.tasks import options_key
from ..datasets import Dataset, SequenceInfo
from ..errors import InputError
from ..inference.device import device_type
from ..inference.session import Session
from ..io.masks import write_index_png
from ..options import RunOptions
from .scoring import BenchResult, MethodRun, Scorer, SequenceResult, make_tasks


def run_sequence(session: Session, dataset: Dataset, seq: SequenceInfo, out_dir: Path) -> MethodRun:
    """Segment every frame of ``seq`` with ``session`` into ``out_dir/<seq>/<frame>.png``."""
    from ..io.video import open_video

    if seq.image_dir is None:
        raise InputError(f"no frames for sequence {seq.name}: its JPEGImages folder is missing under {dataset.root}")
    masks = dataset.given_masks(seq)
    first = seq.frames[0] if seq.frames else None
    if first not in masks:
        raise InputError(f"sequence {seq.name}: the first frame {first} has no given mask (first mask is on {min(masks)})")
    missing = sorted(set(masks) - set(seq.frames))
    if missing:
        raise InputError(f"sequence {seq.name}: masks are given on frames {missing} that are not among its images in {seq.image_dir}")
    source = open_video(seq.image_dir)
    try:
        names = source.frame_names or []
        given = {names.index(stem): ids for stem, ids in masks.items()}
        session.reset()
        folder = out_dir / seq.name
        folder.mkdir(parents=True, exist_ok=True)
        seconds = 0.0
        n = 0
        for res in session.propagate(source, given):
            seconds += res.seconds
            write_index_png(folder / f"{res.name}.png", res.ids)
            n += 1
    finally:
        source.close()
    session.timer.stop()
    return MethodRun(n, seconds, session.timer.summary())


@dataclass(frozen=True)
class SequencePayload:
    """What a benchmark task carries: the dataset, the sequence, the results folder."""

    dataset: Dataset
    seq: SequenceInfo
    out_dir: Path


def run_sequence_task(session: Session, task: Task) -> dict[str, Any]:
    """The work of one benchmark sequence (a :data:`vostool.batch.Work` function)."""
    p: SequencePayload = task.payload
    return {
        "method_run": run_sequence(session, p.dataset, p.seq, p.out_dir),
        "session": {**session.describe(), "device": device_type(session.device)},
    }


def run_benchmark(
    session: Session | RunOptions,
    dataset: Dataset,
    results_dir: str | os.PathLike[str],
    *,
    workers: int = 1,
    score: bool = True,
    strict: bool = False,
    on_sequence: Callable[[str, MethodRun], None] | None = None,
    executor: Executor | None = None,
) -> BenchResult:
    """Run the method on every sequence, write the masks, and score them.

    Args:
        session: a session from :func:`vostool.api.create_session` (reset per sequence), or the
            options the executor's workers build their sessions from.
        dataset: the benchmark split.
        results_dir: where ``<seq>/<frame>.png`` are written.
        workers: scoring processes.
        score: False to only write masks (e.g. a split without ground truth).
        strict: frames without ground truth are an error (before anything runs), not a warning.
        on_sequence: progress callback after each sequence is segmented.
        executor: where the sequences run (default: in this process, in ``session``).

    Returns:
        The scores (empty when ``score`` is False), each sequence carrying its :class:`MethodRun`,
        and what the method ran with (``session``).

    Raises:
        InputError: a sequence cannot be segmented (the first such error stops the run).
    """
    out = Path(results_dir)
    out.mkdir(parents=True, exist_ok=True)
    if executor is None:
        if not isinstance(session, Session):
            raise TypeError("run_benchmark() needs a Session, or RunOptions together with an executor")
        executor = InlineExecutor(WorkerState({options_key(session.options): session}), catch=False)
    run = session.options if isinstance(session, Session) else session
    tasks = {t.name: t for t in make_tasks(dataset, out, strict=strict)} if score else {}
    runs: dict[str, MethodRun] = {}
    described: list[dict[str, Any]] = []
    start = time.perf_counter()
    with Scorer(min(workers, max(1, len(tasks)))) as scorer:

        def done(event: Event) -> None:
            o = event.outcome
            if o is None:
                return
            if not o.ok or o.result is None:
                raise InputError(f"sequence {o.name}: {o.error}")
            runs[o.name] = o.result["method_run"]
            described.append(o.result["session"])
            if on_sequence is not None:
                on_sequence(o.name, runs[o.name])
            if o.name in tasks:
                scorer.submit(tasks[o.name])

        executor.run([Task(seq.name, run, SequencePayload(dataset, seq, out)) for seq in dataset.sequences], run_sequence_task, done)
        scored = {r.name: r for r in scorer.results()}
    seqs = []
    for seq in dataset.sequences:
        r = scored.get(seq.name) or SequenceResult(seq.name, [], 0, 0.0)
        r.method = runs[seq.name]
        seqs.append(r)
    return BenchResult(dataset.kind, dataset.split, seqs, time.perf_counter() - start, scorer.workers, described[0] if described else {})
