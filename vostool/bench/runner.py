"""Running a method over a benchmark: frames -> session -> ``<results>/<seq>/<frame>.png`` -> scoring.

Each sequence gets a fresh session state (``session.reset()``) and a fresh stage timer. The
masks given to the session are the benchmark's (:meth:`vostool.datasets.Dataset.given_masks`).
While the method runs on the next sequence, the finished one is scored in a worker thread.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ..datasets import Dataset, SequenceInfo
from ..errors import InputError
from ..io.masks import write_index_png
from .scoring import BenchResult, MethodRun, Scorer, SequenceResult, make_tasks

if TYPE_CHECKING:
    from ..inference.session import Session


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


def run_benchmark(
    session: Session,
    dataset: Dataset,
    results_dir: str | os.PathLike[str],
    *,
    workers: int = 1,
    score: bool = True,
    strict: bool = False,
    on_sequence: Callable[[str, MethodRun], None] | None = None,
) -> BenchResult:
    """Run ``session``'s method on every sequence, write the masks, and score them.

    Args:
        session: a session from :func:`vostool.api.create_session` (reset per sequence).
        dataset: the benchmark split.
        results_dir: where ``<seq>/<frame>.png`` are written.
        workers: scoring processes.
        score: False to only write masks (e.g. a split without ground truth).
        strict: frames without ground truth are an error (before anything runs), not a warning.
        on_sequence: progress callback after each sequence is segmented.

    Returns:
        The scores (empty when ``score`` is False), each sequence carrying its :class:`MethodRun`.
    """
    out = Path(results_dir)
    out.mkdir(parents=True, exist_ok=True)
    tasks = {t.name: t for t in make_tasks(dataset, out, strict=strict)} if score else {}
    runs: dict[str, MethodRun] = {}
    start = time.perf_counter()
    with Scorer(min(workers, max(1, len(tasks)))) as scorer:
        for seq in dataset.sequences:
            runs[seq.name] = run_sequence(session, dataset, seq, out)
            if on_sequence is not None:
                on_sequence(seq.name, runs[seq.name])
            if seq.name in tasks:
                scorer.submit(tasks[seq.name])
        scored = {r.name: r for r in scorer.results()}
    seqs = []
    for seq in dataset.sequences:
        r = scored.get(seq.name) or SequenceResult(seq.name, [], 0, 0.0)
        r.method = runs[seq.name]
        seqs.append(r)
    return BenchResult(dataset.kind, dataset.split, seqs, time.perf_counter() - start, scorer.workers)
