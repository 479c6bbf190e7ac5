"""A batch of segment jobs into one folder: ``OUT/<name>/`` per job, ``OUT/batch.json`` for all.

Resume rules (decided from each job folder's ``run.json``, so they hold however the last batch
ended, and again when a task is retried after its worker died):

* ``complete`` -> skipped (redone with ``overwrite`` only if it was made before this batch);
* ``running`` / ``interrupted`` / ``failed`` -> finished with ``--resume`` (the same masks as an
  uninterrupted run; with ``overwrite`` a run from before this batch is started again instead);
* nothing -> a fresh run.

``batch.json`` is rewritten atomically as jobs finish: every job's status (``pending``,
``running``, ``done``, ``skipped``, ``failed``), the failed ones with their one-line error, and
the aggregate timing (frames/s, per-stage times, per-job overhead, worker start-up).
"""

from __future__ import annotations

import json
import os
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from ..errors import OutputError, VostoolError
from ..io.atomic import write_text_atomic
from ..io.outputs import RUN_FILE, now_iso
from ..options import OutputOptions, RunOptions
from ..version import __version__
from .jobs import SegmentJob, check_names
from .tasks import Event, OnEvent, Task, Work, options_key

BATCH_FILE = "batch.json"
Say = Callable[[str], None]


class Executor(Protocol):
    kind: str

    def describe(self) -> dict[str, Any]: ...

    def run(self, tasks: list[Task], work: Work, on_event: OnEvent) -> None: ...


@dataclass(frozen=True)
class SegmentPayload:
    """What a segment task carries: the job, its output folder, the output options, and when the
    batch started (``since``, seconds since the epoch: runs started before it are not its own)."""

    job: SegmentJob
    out: str
    output: OutputOptions
    since: float


def _started(run_info: dict[str, Any]) -> float:
    try:
        return datetime.strptime(str(run_info.get("started")), "%Y-%m-%dT%H:%M:%S%z").timestamp()
    except ValueError:
        return 0.0


def read_run_info(folder: Path) -> dict[str, Any] | None:
    """The folder's ``run.json`` (``{"status": "unknown"}`` when unreadable), or None."""
    path = folder / RUN_FILE
    if not path.is_file():
        return None
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        return {"status": "unknown"}
    return info if isinstance(info, dict) else {"status": "unknown"}


def plan_job(folder: Path, *, overwrite: bool, since: float) -> str:
    """What to do with a job folder: ``"fresh"``, ``"resume"``, ``"skip"`` or ``"overwrite"`` (module docstring)."""
    info = read_run_info(folder)
    if info is None:
        return "fresh"
    if overwrite and _started(info) < int(since):
        return "overwrite"
    return "skip" if info.get("status") == "complete" else "resume"


def output_for(plan: str, output: OutputOptions) -> OutputOptions:
    """The output options of a job run with ``plan``."""
    import dataclasses

    return dataclasses.replace(output, resume=plan == "resume", overwrite=plan == "overwrite")


def finished_summary(folder: Path) -> dict[str, Any]:
    """The timing summary of a complete job folder (empty if unreadable)."""
    try:
        return dict(json.loads((folder / "timing.json").read_text())["summary"])
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def _masks_written(folder: Path) -> int:
    try:
        return sum(1 for e in os.scandir(folder / "masks") if e.name.endswith(".png") and not e.name.startswith("."))
    except OSError:
        return 0


class BatchReport:
    """``batch.json``: the state of every job and the aggregate timing, written atomically."""

    def __init__(self, out: Path, jobs: list[SegmentJob], executor: Executor, run: RunOptions) -> None:
        self.out = out
        self.path = out / BATCH_FILE
        self.executor = executor
        self.t0 = time.perf_counter()
        self.data: dict[str, Any] = {
            "vostool": __version__,
            "status": "running",
            "started": now_iso(),
            "out": str(out),
            "run": {"method": run.method, "flow": run.flow, "size": run.size, "device": run.device, "precision": run.precision},
            "jobs": {j.name: {"status": "pending", "video": j.video} for j in jobs},
        }
        self._lock = threading.Lock()
        self._last_write = 0.0

    @property
    def jobs(self) -> dict[str, dict[str, Any]]:
        return self.data["jobs"]

    def set(self, name: str, **fields: Any) -> None:
        with self._lock:
            self.jobs[name].update({k: v for k, v in fields.items() if v is not None})
            if fields.get("status") != "failed":
                self.jobs[name].pop("error", None)

    def counts(self) -> dict[str, int]:
        out = {"jobs": len(self.jobs)}
        for status in ("done", "skipped", "failed", "running", "pending"):
            out[status] = sum(1 for j in self.jobs.values() if j["status"] == status)
        return out

    def write(self, *, force: bool = True) -> None:
        """Write ``batch.json`` (``force=False``: at most once a second, and always when a job failed)."""
        now = time.perf_counter()
        if not force and now - self._last_write < 1.0:
            return
        with self._lock:
            self.data["counts"] = self.counts()
            self.data["failed"] = [{"name": n, "error": j.get("error", "")} for n, j in self.jobs.items() if j["status"] == "failed"]
            self.data["executor"] = self.executor.describe()
            self.data["wall_seconds"] = round(now - self.t0, 3)
            self.data["summary"] = self.summary()
            text = json.dumps(self.data, indent=1) + "\n"
        write_text_atomic(self.path, text)
        self._last_write = now

    def summary(self) -> dict[str, Any]:
        """Aggregate timing of the jobs run by this batch: frames/s over the wall time, per-stage
        times, per-job overhead (session build, and job time outside the frame loop)."""
        ran = [j for j in self.jobs.values() if j["status"] == "done" and "frames" in j]
        wall = time.perf_counter() - self.t0
        frames = sum(int(j["frames"]) for j in ran)
        stages: dict[str, dict[str, float]] = {}
        for j in ran:
            for stage, total_ms in j.get("stage_total_ms", {}).items():
                s = stages.setdefault(stage, {"total_seconds": 0.0})
                s["total_seconds"] += total_ms / 1000.0
        for s in stages.values():
            s["ms_per_frame"] = round(1000.0 * s["total_seconds"] / max(frames, 1), 3)
            s["total_seconds"] = round(s["total_seconds"], 3)
        out: dict[str, Any] = {"jobs_run": len(ran), "frames": frames, "wall_seconds": round(wall, 3)}
        out["frames_per_second"] = round(frames / wall, 2) if wall > 0 and frames else None
        if ran:
            out["job_seconds_median"] = round(statistics.median(j["seconds"] for j in ran), 3)
            out["session_setup_seconds_total"] = round(sum(j.get("setup_seconds", 0.0) for j in ran), 3)
            out["job_overhead_seconds_median"] = round(statistics.median(j["seconds"] - j.get("loop_seconds", 0.0) for j in ran), 3)
            out["stages"] = stages
        return out


def _job_fields(result: dict[str, Any]) -> dict[str, Any]:
    """What ``batch.json`` keeps of a job's timing summary."""
    stages = result.get("stages", {})
    return {
        "frames": result.get("frames"),
        "fps": result.get("fps"),
        "loop_seconds": result.get("wall_seconds"),
        "stage_total_ms": {k: v.get("total_ms", 0.0) for k, v in stages.items()},
        "resumed_from_frame": result.get("resumed_from_frame"),
    }


def run_batch(
    jobs: list[SegmentJob],
    out: str | os.PathLike[str],
    work: Work,
    executor: Executor,
    *,
    run: RunOptions | None = None,
    output: OutputOptions | None = None,
    progress: bool = False,
    say: Say | None = None,
) -> dict[str, Any]:
    """Run every job into ``out/<name>/`` with ``executor`` and keep ``out/batch.json``.

    Args:
        jobs: from :func:`~vostool.batch.jobs.find_jobs` (unique names).
        out: the batch's output folder.
        work: runs one segment task (:func:`vostool.api.run_segment_task`).
        executor: where the tasks run (in this process, local worker processes, Ray).
        run / output: the options every job starts from (a job may set its own run options).
        progress: a progress bar over jobs and frames on stderr.
        say: where one line per finished job goes (None: nowhere).

    Returns:
        The content of ``batch.json``.

    Raises:
        OutputError: ``out`` cannot be written.
        VostoolError: interrupted (exit code 130; the same command finishes the batch).
    """
    run = run or RunOptions()
    output = output or OutputOptions()
    out = Path(out)
    check_names(jobs)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create output folder {out}: {exc.strerror or exc}") from None
    since = time.time()
    report = BatchReport(out, jobs, executor, run)
    tasks: list[Task] = []
    for job in jobs:
        folder = out / job.name
        if job.error:
            report.set(job.name, status="failed", error=job.error)
            if say is not None:
                say(f"FAIL {job.name}: {job.error}")
            continue
        if plan_job(folder, overwrite=output.overwrite, since=since) == "skip":
            report.set(job.name, status="skipped", frames=finished_summary(folder).get("frames"))
            continue
        tasks.append(Task(job.name, job.run_options(run), SegmentPayload(job, str(folder), output, since)))
    tasks.sort(key=lambda t: options_key(t.run))  # jobs of one configuration in a row: fewer model loads per worker
    report.write()
    bar = _Progress(report, jobs, out) if progress else None  # lines written to stderr meanwhile appear above it

    def on_event(event: Event) -> None:
        if event.kind == "start":
            report.set(event.name, status="running", worker=event.worker)
            if bar is not None:
                bar.started(event.name)
            report.write(force=False)
            return
        o = event.outcome
        assert o is not None
        common = {
            "seconds": round(o.seconds, 3),
            "setup_seconds": round(o.setup_seconds, 3),
            "worker": o.worker or None,
            "attempts": o.attempts,
        }
        if o.ok and o.result is not None and o.result.get("skipped"):
            report.set(o.name, status="skipped", frames=o.result.get("frames"))
        elif o.ok and o.result is not None:
            report.set(o.name, status="done", **common, **_job_fields(o.result))
            if say is not None:
                say(f"ok   {o.name}: {o.result.get('frames')} frames, {o.result.get('fps')} fps ({o.worker})")
        else:
            report.set(o.name, status="failed", error=o.error or "failed", **common)
            if say is not None:
                say(f"FAIL {o.name}: {o.error}")
        if bar is not None:
            bar.finished(o.name)
        report.write(force=not o.ok)

    try:
        if bar is not None:
            bar.start()
        executor.run(tasks, work, on_event)
    except KeyboardInterrupt:
        for name, j in report.jobs.items():
            if j["status"] == "running":
                report.set(name, status="pending")
        report.data.update(status="interrupted", finished=now_iso())
        report.write()
        raise VostoolError(f"interrupted; run the same command again to finish the batch ({report.path})", exit_code=130) from None
    finally:
        if bar is not None:
            bar.stop()
    report.data.update(status="failed" if report.counts()["failed"] else "complete", finished=now_iso())
    report.write()
    return report.data


class _Progress:
    """A rich progress bar over jobs and frames. Frames on disk are counted in the running jobs'
    ``masks/`` folders (the workers may be other processes or other machines); the frame total
    grows as a background thread opens the videos to read their lengths."""

    def __init__(self, report: BatchReport, jobs: list[SegmentJob], out: Path) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.report, self.jobs, self.out = report, jobs, out
        self.bar = Progress(
            TextColumn("{task.description:>6}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self.console = self.bar.console
        self.running: set[str] = set()
        self.frames_done: dict[str, int] = {n: int(j.get("frames") or 0) for n, j in report.jobs.items() if j["status"] == "skipped"}
        self.first_frames = sum(self.frames_done.values())
        self.total = 0
        self.t0 = time.perf_counter()
        self._stop = threading.Event()
        self.job_task = self.bar.add_task("jobs", total=len(jobs), completed=self._finished(), info="")
        self.frame_task = self.bar.add_task("frames", total=None, completed=self.first_frames, info="")

    def _finished(self) -> int:
        c = self.report.counts()
        return c["done"] + c["skipped"] + c["failed"]

    def start(self) -> None:
        self.bar.start()
        threading.Thread(target=self._lengths, daemon=True, name="vostool-lengths").start()
        threading.Thread(target=self._poll, daemon=True, name="vostool-progress").start()

    def started(self, name: str) -> None:
        self.running.add(name)
        self.bar.update(self.job_task, info=f"{len(self.running)} running")

    def finished(self, name: str) -> None:
        self.running.discard(name)
        self.frames_done[name] = int(self.report.jobs[name].get("frames") or _masks_written(self.out / name))
        self.bar.update(self.job_task, completed=self._finished(), info=f"{len(self.running)} running")

    def _lengths(self) -> None:
        from ..io.video import open_video

        for job in self.jobs:
            if self._stop.is_set():
                return
            try:
                src = open_video(job.video, fps=job.fps)
                n = src.num_frames
                src.close()
            except Exception:  # a broken video fails as its job; the bar just leaves it out
                n = None
            if n:
                self.total += int(n)
                self.bar.update(self.frame_task, total=self.total)

    def _poll(self) -> None:
        while not self._stop.wait(0.5):
            running = sum(_masks_written(self.out / n) for n in list(self.running))
            done = sum(self.frames_done.values()) + running
            fps = (done - self.first_frames) / max(time.perf_counter() - self.t0, 1e-9)
            self.bar.update(self.frame_task, completed=done, info=f"{fps:.1f} fps")

    def stop(self) -> None:
        self._stop.set()
        self.bar.stop()
