"""Scoring a results folder against a benchmark: per-frame J and F, per-object statistics, global means.

Results folder layout (what the official evaluation reads): ``<results>/<seq>/<frame>.png``,
an index PNG (palette, grayscale or RGB in DAVIS colours) per annotated frame.

Rules (the official semi-supervised evaluation, with its gaps filled):

* DAVIS: the first and last annotated frames are not scored; objects are ids 1..N, N the
  largest id of the first ground-truth frame (1 for DAVIS 2016). YouTube-VOS (local ground
  truth): each object is scored on the annotated frames after its first one, the video's last
  annotated frame excluded.
* A predicted id above N is an error naming the sequence and frame; a missing object is an
  empty mask. With one object, a prediction stored as 0/255 is read as object 1.
* A prediction of another size is an error, or with ``resize=True`` it is scaled to the
  ground truth with nearest neighbour (pixel-centre sampling, like PIL's NEAREST).
* Every PNG is read once; sequences are scored in parallel; nothing is cached.

Workers: with a method running in this process (``vostool bench`` without ``--eval-only``)
sequences are scored in threads beside it: the work of a frame (PNG inflation and row
unfiltering, :func:`vostool.io.masks.decode_plane_png_boxed`; OpenCV's counting and XORs,
numpy's bit-packed dilations) mostly runs with the GIL released. Scoring alone (:func:`evaluate`) uses processes
forked from this one on Linux: they start in milliseconds with numpy and OpenCV already
imported, and the Python glue between those calls no longer queues on one GIL (1.5x -> 1.9x
on two cores). Elsewhere (no safe ``fork``) it uses threads.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..datasets import Dataset, SequenceInfo, binary_ids, read_annotation_boxed
from ..errors import InputError
from ..io.masks import VOID_ID, BoxedPlane, read_index_png_boxed
from .metrics import ObjectPair, Stats, boundary_radius, object_pairs, score_pairs, statistics

log = logging.getLogger(__name__)

GLOBAL_COLUMNS = ("J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay")
"""Columns of ``global_results-<split>.csv``, in the official order."""


@dataclass
class ObjectResult:
    """Per-frame scores of one object of one sequence.

    Attributes:
        object_id: the object's id in the masks.
        frames: stems of its scored frames.
        j: ``(n,)`` float64 region similarity per scored frame.
        f: ``(n,)`` float64 boundary measure per scored frame.
    """

    object_id: int
    frames: list[str]
    j: np.ndarray
    f: np.ndarray

    @functools.cached_property
    def j_stats(self) -> Stats:
        return statistics(self.j)

    @functools.cached_property
    def f_stats(self) -> Stats:
        return statistics(self.f)


@dataclass
class MethodRun:
    """How a method ran on one sequence: frames segmented, seconds inside the session, stage timings."""

    frames: int
    seconds: float
    timer: dict[str, Any] = field(default_factory=dict)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else float("nan")


@dataclass
class SequenceResult:
    """Scores of one sequence and how long scoring (and the method, when run) took."""

    name: str
    objects: list[ObjectResult]
    frames_read: int
    score_seconds: float
    score_cpu_seconds: float = 0.0
    method: MethodRun | None = None
    missing_ground_truth: list[str] = field(default_factory=list)

    @property
    def score_fps(self) -> float:
        return self.frames_read / self.score_seconds if self.score_seconds > 0 else float("nan")


@dataclass
class BenchResult:
    """Scores of a whole split, in sequence order."""

    dataset: str
    split: str
    sequences: list[SequenceResult]
    wall_seconds: float = 0.0
    workers: int = 1
    session: dict[str, Any] = field(default_factory=dict)
    """What the method ran with (:meth:`~vostool.inference.session.Session.describe` and device), when run."""

    def object_rows(self) -> list[tuple[str, ObjectResult]]:
        """``(<seq>_<id>, object)`` for every (sequence, object) pair, the official row order."""
        return [(f"{s.name}_{o.object_id}", o) for s in self.sequences for o in s.objects]

    def global_metrics(self) -> dict[str, float]:
        """The official global numbers (fractions in [0, 1]): plain means over (sequence, object) pairs."""
        rows = [o for _, o in self.object_rows()]
        if not rows:
            return {c: float("nan") for c in GLOBAL_COLUMNS}
        js = [o.j_stats for o in rows]
        fs = [o.f_stats for o in rows]
        j_mean = np.mean([s.mean for s in js])
        f_mean = np.mean([s.mean for s in fs])
        return {
            "J&F-Mean": float((j_mean + f_mean) / 2.0),
            "J-Mean": float(j_mean),
            "J-Recall": float(np.mean([s.recall for s in js])),
            "J-Decay": float(np.mean([s.decay for s in js])),
            "F-Mean": float(f_mean),
            "F-Recall": float(np.mean([s.recall for s in fs])),
            "F-Decay": float(np.mean([s.decay for s in fs])),
        }

    @property
    def frames_read(self) -> int:
        return sum(s.frames_read for s in self.sequences)

    @property
    def score_cpu_seconds(self) -> float:
        """CPU time spent scoring, summed over sequences (independent of other load on the machine)."""
        return sum(s.score_cpu_seconds for s in self.sequences)


@dataclass(frozen=True)
class ScoreTask:
    """Everything one worker needs to score one sequence (picklable)."""

    name: str
    annotation_dir: str
    annotated: tuple[str, ...]
    results_dir: str
    binary: bool
    resize: bool
    objects: tuple[tuple[int, str], ...] | None = None
    """YouTube-VOS: (object id, first frame stem); None for DAVIS (ids of the first frame)."""
    missing: tuple[str, ...] = ()
    """Frames without a ground-truth PNG (not scored; reported)."""


def _read_prediction(file: str, task: ScoreTask, shape: tuple[int, int], num_objects: int) -> BoxedPlane:
    # ``file`` a string: pathlib's parsing cost more than reading a small PNG
    if not os.path.isfile(file):
        raise InputError(
            f"prediction missing for sequence {task.name} frame {Path(file).stem}: {file} "
            "(results need <results>/<sequence>/<frame>.png for every annotated frame)"
        )
    pred = read_index_png_boxed(file)
    if pred.shape != shape:
        if not task.resize:
            raise InputError(
                f"sequence {task.name}: prediction {Path(file).name} is {pred.shape[1]}x{pred.shape[0]} but the ground truth "
                f"is {shape[1]}x{shape[0]}; write masks at the annotation size or pass --resize"
            )
        pred = BoxedPlane.of(cv2.resize(pred.dense(), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST_EXACT))
    if pred.top <= 1:
        return pred
    ids, top = pred.crop, pred.top
    if task.binary:
        return BoxedPlane(binary_ids(ids), pred.box, shape)
    if top > num_objects:
        if num_objects == 1 and top == VOID_ID and not cv2.countNonZero(cv2.inRange(ids, 2, VOID_ID - 1)):
            return BoxedPlane((ids != 0).view(np.uint8), pred.box, shape)
        raise InputError(
            f"sequence {task.name} frame {Path(file).stem}: prediction has object id {top} but the ground truth has "
            f"{num_objects} object(s) (ids 1..{num_objects}); fix the ids in {file}"
        )
    return pred


_PIXELS_PER_CALL = 8 * 854 * 480
"""Frame pixels whose boundaries are matched in one call (8 DAVIS 480p frames, measured best: numpy's
per-call cost shared, the bit planes still in cache; a 4K frame alone)."""


def score_sequence(task: ScoreTask) -> SequenceResult:
    """Score one sequence: read each ground-truth and prediction PNG once, J and F per object per frame."""
    start, cpu = time.perf_counter(), time.thread_time()
    ann = Path(task.annotation_dir)
    res = Path(task.results_dir) / task.name
    if not res.is_dir():
        raise InputError(f"no predictions for sequence {task.name}: folder {res} not found (score a subset with --sequences)")
    stems = list(task.annotated)
    if task.objects is None:
        n = 1 if task.binary else read_annotation_boxed(ann / f"{stems[0]}.png", False).top
        objects = [(k, stems[0]) for k in range(1, n + 1)]
        scored = stems[1:-1]
    else:
        objects = list(task.objects)
        scored = [s for s in stems[:-1] if any(s > f for _, f in objects)]
    max_id = max((k for k, _ in objects), default=0)
    frames: dict[int, list[str]] = {k: [] for k, _ in objects}
    js: dict[int, list[float]] = {k: [] for k, _ in objects}
    fs: dict[int, list[float]] = {k: [] for k, _ in objects}
    radius = 0
    pairs: list[ObjectPair] = []
    owners: list[tuple[int, str]] = []

    def flush() -> None:  # J and F of the frames read so far, in one call (one bit-packed dilation)
        j, f = score_pairs(pairs, radius)
        for (k, stem), jv, fv in zip(owners, j.tolist(), f.tolist()):
            frames[k].append(stem)
            js[k].append(jv)
            fs[k].append(fv)
        pairs.clear()
        owners.clear()

    pixels = 0
    for stem in scored:
        live = [k for k, f in objects if stem > f]
        gt = read_annotation_boxed(os.path.join(ann, stem + ".png"), task.binary)
        pred = _read_prediction(os.path.join(res, stem + ".png"), task, gt.shape, max_id)
        radius = radius or boundary_radius(*gt.shape)
        pairs += object_pairs(gt, pred, live)
        owners += [(k, stem) for k in live]
        pixels += gt.shape[0] * gt.shape[1]
        if pixels >= _PIXELS_PER_CALL:
            flush()
            pixels = 0
    flush()
    results = [ObjectResult(k, frames[k], np.array(js[k], np.float64), np.array(fs[k], np.float64)) for k, _ in objects if frames[k]]
    return SequenceResult(
        task.name, results, len(scored), time.perf_counter() - start, time.thread_time() - cpu, missing_ground_truth=list(task.missing)
    )


def make_tasks(dataset: Dataset, results_dir: str | os.PathLike[str], *, resize: bool = False, strict: bool = False) -> list[ScoreTask]:
    """One :class:`ScoreTask` per scorable sequence; sequences with too few annotations are skipped with a warning.

    DAVIS frames without a ground-truth PNG are not scored: a warning per sequence gives their
    count (and the report lists them), or with ``strict`` they are an :class:`InputError`.
    """
    tasks = []
    for seq in dataset.sequences:
        if not _scorable(seq):
            continue
        missing = seq.missing_annotations()
        if missing:
            what = f"{len(missing)} of the {len(missing) + len(seq.annotated)} frames of sequence {seq.name} have no ground truth"
            example = f"{seq.annotation_path(missing[0])}"
            if strict:
                raise InputError(f"{what} (e.g. {example}); complete the annotations, or drop --strict to score the others")
            log.warning("%s (e.g. %s): scoring the other %d (--strict makes this an error)", what, example, len(seq.annotated))
        objects = None if seq.objects is None else tuple(seq.objects.items())
        tasks.append(
            ScoreTask(
                seq.name, str(seq.annotation_dir), tuple(seq.annotated), str(results_dir), dataset.binary, resize, objects, tuple(missing)
            )
        )
    return tasks


def has_ground_truth(seq: SequenceInfo) -> bool:
    """Whether ``seq`` has annotated frames to score (beyond the first and before the last)."""
    if seq.objects is None:
        return len(seq.annotated) >= 3
    return any(s > f for s in seq.annotated[:-1] for f in seq.objects.values())


def _scorable(seq: SequenceInfo) -> bool:
    if not has_ground_truth(seq):
        log.warning(
            "sequence %s has no ground truth to score (%d annotated frame(s); the first frame of each object "
            "and the last frame are not scored); skipped",
            seq.name,
            len(seq.annotated),
        )
        return False
    return True


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters
_PR_SET_PDEATHSIG = 1  # Linux prctl option


def _init_worker() -> None:
    """Set up a scoring process: Ctrl-C is left to the parent, which stops the workers (no
    tracebacks from them); the worker ends with the parent, however that exits; glibc serves
    the frame-sized arrays (~0.4 MB at 480p, several per frame) from the heap instead of a
    fresh ``mmap`` each, whose page faults took a third of the workers' CPU time."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() == 1:
            os._exit(1)
        libc.mallopt(_M_MMAP_THRESHOLD, 32 << 20)
        libc.mallopt(_M_TRIM_THRESHOLD, 128 << 20)
    except (OSError, AttributeError):  # not glibc: its defaults stay
        pass


class Scorer:
    """Scores sequences in workers as they are submitted; use as a context manager.

    ``submit(task)`` returns at once (the sequence is scored in the background, so a method can
    run on the next sequence meanwhile); ``results()`` waits for all and returns them in
    submission order. With ``workers <= 1`` scoring runs in the calling thread. With
    ``processes`` (only where nothing else runs in this process) the workers are forked
    processes on Linux, threads elsewhere; leaving the block with an exception (Ctrl-C)
    terminates them.
    """

    def __init__(self, workers: int = 1, *, processes: bool = False) -> None:
        self.workers = max(1, int(workers))
        self.processes = processes and sys.platform.startswith("linux") and self.workers > 1
        self._threads: ThreadPoolExecutor | None = None
        self._procs: Any = None  # multiprocessing.pool.Pool
        self._pending: list[Callable[[], SequenceResult]] = []

    def __enter__(self) -> Scorer:
        if self.workers > 1 and not self.processes:
            self._threads = ThreadPoolExecutor(self.workers, thread_name_prefix="vostool-score")
        return self

    def _start_processes(self) -> None:
        """Fork the workers, inside the ``with`` block (a Ctrl-C from here on reaches
        ``__exit__``), with Ctrl-C held back while they are forked: a worker cannot be stopped
        half-started and the pool is never left half-built; a Ctrl-C that came meanwhile is
        raised once the pool exists. (Blocking SIGINT in this thread would not do: another
        thread, e.g. a progress bar's, may take it.)"""
        main = threading.current_thread() is threading.main_thread()  # handlers: main thread only
        held: list[int] = []
        handler = signal.signal(signal.SIGINT, lambda signum, frame: held.append(signum)) if main else None
        try:
            self._procs = multiprocessing.get_context("fork").Pool(self.workers, initializer=_init_worker)
        finally:
            if main:
                signal.signal(signal.SIGINT, handler)
        if held:
            raise KeyboardInterrupt

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if self._procs is not None:
            if exc_type is None:
                self._procs.close()
            else:
                self._procs.terminate()
            self._procs.join()
        if self._threads is not None:
            self._threads.shutdown(wait=True, cancel_futures=True)

    def submit(self, task: ScoreTask) -> None:
        if self.processes:
            if self._procs is None:
                self._start_processes()
            self._pending.append(self._procs.apply_async(score_sequence, (task,)).get)
        elif self._threads is not None:
            self._pending.append(self._threads.submit(score_sequence, task).result)
        else:
            r = score_sequence(task)
            self._pending.append(lambda: r)

    def results(self, on_done: Callable[[SequenceResult], None] | None = None) -> list[SequenceResult]:
        out = []
        for wait in self._pending:
            r = wait()
            if on_done is not None:
                on_done(r)
            out.append(r)
        return out


def evaluate(
    dataset: Dataset,
    results_dir: str | os.PathLike[str],
    *,
    workers: int = 1,
    resize: bool = False,
    strict: bool = False,
    on_sequence: Callable[[SequenceResult], None] | None = None,
) -> BenchResult:
    """Score the predictions in ``results_dir`` against ``dataset``.

    Args:
        dataset: the benchmark split (:func:`vostool.datasets.open_dataset`).
        results_dir: folder with ``<seq>/<frame>.png`` predictions.
        workers: parallel workers, forked processes on Linux (1 = in the calling thread).
        resize: scale predictions of another size to the ground truth (nearest neighbour).
        strict: frames without ground truth are an error instead of a warning.
        on_sequence: called with each :class:`SequenceResult` as it is collected (progress).

    Raises:
        InputError: missing predictions, a size mismatch without ``resize``, an unknown object id,
            frames without ground truth with ``strict``.
    """
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise InputError(f"results folder not found: {results_dir}")
    tasks = make_tasks(dataset, results_dir, resize=resize, strict=strict)
    if not tasks:
        raise InputError(f"nothing to score in {dataset.kind} {dataset.split}: no sequence has ground truth beyond its first frame")
    start = time.perf_counter()
    with Scorer(min(workers, len(tasks)), processes=True) as scorer:
        # Longest first, so the workers finish together; results keep the dataset order.
        for t in sorted(tasks, key=lambda t: -len(t.annotated)):
            scorer.submit(t)
        by_name = {r.name: r for r in scorer.results(on_sequence)}
    seqs = [by_name[t.name] for t in tasks]
    return BenchResult(dataset.kind, dataset.split, seqs, time.perf_counter() - start, max(1, min(workers, len(tasks))))
