"""The output folder of a run: masks, overlays, soft scores, mattes, timing reports, run state.

Layout of ``OUT/``::

    masks/<frame>.png          index PNG per frame (input size, input palette or DAVIS palette)
    overlay.mp4                H.264 overlay with the input's frame timing (appears when the run completes)
    overlays/<frame>.png       optional per-frame overlays
    soft/<id>/<frame>.png      optional soft scores (probability x 255) per object
    mattes/<id>/<frame>.png    optional black/white matte per object
    timing.json, timing.csv    per-frame stage times and summary (written when the run completes)
    run.json                   run status: "running", "interrupted", "failed" or "complete"
    .vostool-files             every file the run wrote (what --overwrite may delete), one per line
    .resume/state.pt or .npz   session checkpoint for --resume (.npz: a numpy session's, without
                               torch; removed when the run completes)

:class:`OutputFolder` owns the folder for one run: it refuses a folder that holds the run's
inputs or files vostool did not write, locks it against a second run, records every file the
run writes, and deletes nothing else. Every file is written atomically, and
:class:`BackgroundWriter` does the encoding in a thread so PNG/H.264 encoding overlaps with the
frame loop.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import OutputError
from ..options import OutputOptions
from .atomic import write_text_atomic
from .masks import write_gray_png, write_index_png
from .overlay import render_overlay
from .video import VideoWriter

try:  # POSIX: an advisory lock on the output folder itself (no lock file left behind)
    import fcntl
except ImportError:  # Windows: no lock (documented)
    fcntl = None  # type: ignore[assignment]

RUN_FILE = "run.json"
RESUME_DIR = ".resume"
MANIFEST = ".vostool-files"
OUTPUT_PARTS = ("masks", "overlays", "soft", "mattes", "overlay.mp4", "timing.json", "timing.csv", RESUME_DIR)
"""What a run writes besides ``run.json`` and the manifest."""

_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def output_error(exc: OSError, what: str) -> OutputError:
    """One line for an OS error while writing ``what``: the reason, and what to do when the disk is full."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    name = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
    hint = "; free some disk space or choose another -o" if exc.errno in _DISK_FULL else ""
    return OutputError(f"cannot write {what}: {reason}{name}{hint}")


def _within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


class OutputFolder:
    """The output folder of one run, locked while the run writes it.

    Args:
        out: the folder (created if missing).
        inputs: the run's input files and folders (video, frame folder, mask files); a folder
            that equals or contains one of them is refused.

    Raises:
        OutputError: the folder holds an input, cannot be created or written, holds outputs
            vostool did not write, or another vostool run is writing it.
    """

    def __init__(self, out: Path, inputs: Iterable[str | os.PathLike[str]] = ()) -> None:
        self.out = out
        self._fd: int | None = None
        self._manifest: Any = None
        self._recorded: set[str] = set()
        self._lock = threading.Lock()
        resolved = out.resolve()
        for item in inputs:
            p = Path(item).resolve()
            if _within(p, resolved):
                raise OutputError(
                    f"output folder {out} holds the input {item}; choose an -o outside the inputs (vostool never writes over its inputs)"
                )
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create output folder {out}: {exc.strerror or exc}") from None
        if not out.is_dir():
            raise OutputError(f"output path {out} exists and is not a folder")
        if not os.access(out, os.W_OK | os.X_OK):
            raise OutputError(f"output folder {out} is not writable; choose another -o")
        self._take_lock()
        try:
            self.previous = self._read_previous()
            if self.previous is None:
                foreign = [p for p in OUTPUT_PARTS if self._holds_files(out / p)]
                if foreign:
                    raise OutputError(
                        f"output folder {out} already holds {foreign[0]} that no vostool run wrote; vostool never replaces files "
                        "it did not write: choose another -o"
                    )
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ lock
    def _take_lock(self) -> None:
        if fcntl is None:
            return
        fd = os.open(self.out, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            pid = None
            with contextlib.suppress(OSError, ValueError, AttributeError):
                pid = json.loads((self.out / RUN_FILE).read_text()).get("pid")
            raise OutputError(
                f"{self.out} is being written by another vostool run (pid {pid or 'unknown'}); wait for it to finish or choose another -o"
            ) from None
        self._fd = fd

    def close(self) -> None:
        """Close the manifest and release the lock (safe to call twice)."""
        if self._manifest is not None:
            with contextlib.suppress(OSError):
                self._manifest.close()
            self._manifest = None
        if self._fd is not None:
            os.close(self._fd)  # releases the flock
            self._fd = None

    # ------------------------------------------------------------------ state of the folder
    @staticmethod
    def _holds_files(p: Path) -> bool:
        if p.is_dir():
            return any(q.is_file() for q in p.rglob("*"))
        return p.exists()

    def _read_previous(self) -> dict[str, Any] | None:
        run_file = self.out / RUN_FILE
        if not run_file.exists():
            return None
        try:
            previous = json.loads(run_file.read_text())
            return previous if isinstance(previous, dict) else {"status": "unknown"}
        except (OSError, ValueError):
            return {"status": "unknown"}

    def completed_summary(self, fingerprint: str) -> dict[str, Any] | None:
        """The timing summary of a complete run made with ``fingerprint``, else None."""
        prev = self.previous or {}
        if prev.get("status") != "complete" or prev.get("fingerprint") != fingerprint:
            return None
        try:
            summary = json.loads((self.out / "timing.json").read_text())["summary"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return summary if isinstance(summary, dict) else None

    def recorded(self) -> list[str]:
        """The files the earlier runs in this folder recorded in the manifest (relative paths)."""
        try:
            lines = (self.out / MANIFEST).read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        return list(dict.fromkeys(ln for ln in lines if ln.strip()))

    def remove_partials(self) -> None:
        """Delete the temporary files a killed run left (``.NAME.partial-*``) in the output parts."""
        dirs = [self.out, *(self.out / p for p in OUTPUT_PARTS if (self.out / p).is_dir())]
        for d in dirs:
            pattern = ".*.partial*" if d == self.out else "**/.*.partial*"
            for stale in d.glob(pattern):
                if stale.is_file():
                    stale.unlink(missing_ok=True)

    def clear(self) -> None:
        """Delete what earlier runs wrote here: the files in the manifest, nothing else.

        Raises:
            OutputError: an output part holds a file no vostool run recorded (checked before
                anything is deleted).
        """
        self.remove_partials()
        recorded = set(self.recorded())
        for part in (*OUTPUT_PARTS, RUN_FILE):
            p = self.out / part
            files = [q for q in p.rglob("*") if q.is_file()] if p.is_dir() else [p] if p.exists() else []
            foreign = [q for q in files if q.relative_to(self.out).as_posix() not in recorded]
            if foreign:
                raise OutputError(
                    f"output folder {self.out} holds {foreign[0].relative_to(self.out).as_posix()}, which no vostool run recorded "
                    f"(in {MANIFEST}); vostool deletes only what it wrote: move it away or choose another -o"
                )
        root = self.out.resolve()
        for rel in recorded:
            p = (self.out / rel).resolve()
            if root in p.parents and p.is_file():
                p.unlink()
        for part in OUTPUT_PARTS:
            d = self.out / part
            if d.is_dir():
                for sub in [*sorted((q for q in d.rglob("*") if q.is_dir()), key=lambda q: -len(q.parts)), d]:
                    with contextlib.suppress(OSError):  # not empty: something appeared meanwhile; keep it
                        sub.rmdir()
        (self.out / MANIFEST).unlink(missing_ok=True)
        self.previous = None

    # ------------------------------------------------------------------ writing
    def record(self, *paths: Path) -> None:
        """Add files to the manifest before they are written (thread-safe)."""
        with self._lock:
            if self._manifest is None:
                self._recorded = set(self.recorded())
                self._manifest = open(self.out / MANIFEST, "a", encoding="utf-8")  # held open for the run
            new = [p.relative_to(self.out).as_posix() for p in paths]
            new = [r for r in new if r not in self._recorded]
            if new:
                self._manifest.write("".join(f"{r}\n" for r in new))
                self._manifest.flush()
                self._recorded.update(new)

    def write_run(self, info: dict[str, Any]) -> None:
        """Write ``run.json`` atomically; when the disk is full, over the old one in place."""
        text = json.dumps(info, indent=2, sort_keys=True) + "\n"
        path = self.out / RUN_FILE
        self.record(path)
        try:
            write_text_atomic(path, text)
        except OSError:
            if not path.exists():
                raise
            with open(path, "r+b") as f:  # the old file's blocks hold the new status without new space
                f.write(text.encode("utf-8"))
                f.truncate()

    def write_text(self, name: str, text: str) -> None:
        """Write a report file atomically and record it."""
        self.record(self.out / name)
        write_text_atomic(self.out / name, text)


class BackgroundWriter:
    """Runs write jobs in order in one thread; the first error is re-raised in the caller.

    Args:
        max_pending: queue bound (keeps memory bounded on long videos).
    """

    def __init__(self, max_pending: int = 8) -> None:
        self._q: queue.Queue[Callable[[], None] | None] = queue.Queue(max_pending)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="vostool-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            job = self._q.get()
            if job is None:
                return
            if self._error is None:
                try:
                    job()
                except BaseException as exc:  # re-raised in the main thread
                    self._error = exc

    def check(self) -> None:
        if self._error is not None:
            err, self._error = self._error, None
            if isinstance(err, OSError):
                raise output_error(err, "output") from None
            raise err

    def submit(self, job: Callable[[], None]) -> None:
        self.check()
        self._q.put(job)

    def close(self) -> None:
        """Finish every queued job, then re-raise the first error, if any."""
        self._q.put(None)
        self._thread.join()
        self.check()


class FrameOutputs:
    """Writes everything of one frame (called in the writer thread).

    Args:
        out: the output folder.
        size: ``(W, H)`` of the input.
        fps: nominal frame rate for the overlay video (frames carry their own timestamps).
        palette: ``(256, 3)`` uint8 colours for masks and overlays.
        options: what to write.
        record: called with the paths of files before they are written (the run's manifest).
    """

    def __init__(
        self,
        out: Path,
        size: tuple[int, int],
        fps: float,
        palette: np.ndarray,
        options: OutputOptions,
        record: Callable[..., None] | None = None,
    ) -> None:
        self.out = out
        self.palette = palette
        self.options = options
        self.record = record or (lambda *paths: None)
        (out / "masks").mkdir(exist_ok=True)
        if options.overlay_frames:
            (out / "overlays").mkdir(exist_ok=True)
        self.video = None
        if options.overlay:
            self.record(out / "overlay.mp4")
            self.video = VideoWriter(out / "overlay.mp4", size, fps)

    def write(
        self,
        name: str,
        rgb: np.ndarray | None,
        ids: np.ndarray,
        object_ids: list[int],
        soft: np.ndarray | None = None,
        *,
        masks: bool = True,
        pts: float | None = None,
    ) -> None:
        """Write one frame's outputs.

        Args:
            name: frame name (file stem).
            rgb: ``(H, W, 3)`` uint8 frame for overlays (None: no overlay for this frame).
            ids: ``(H, W)`` uint8 object ids.
            object_ids: the ids of every tracked object (for soft scores and mattes).
            soft: ``(K, H, W)`` uint8 soft scores (probability x 255) in ``object_ids`` order.
            masks: False when only the overlay is re-rendered (resume).
            pts: the frame's presentation time in seconds (the overlay video keeps it).
        """
        level = self.options.png_compression
        if masks:
            path = self.out / "masks" / f"{name}.png"
            self.record(path)
            write_index_png(path, ids, self.palette, compress_level=level)
        if rgb is not None and (self.video is not None or self.options.overlay_frames):
            ov = render_overlay(rgb, ids, self.palette)
            if self.video is not None:
                self.video.write(ov, pts)
            if self.options.overlay_frames and masks:
                path = self.out / "overlays" / f"{name}.png"
                self.record(path)
                write_rgb_png(path, ov, level)
        if not masks:
            return
        for k, oid in enumerate(object_ids):
            if self.options.soft and soft is not None:
                path = self.out / "soft" / str(oid) / f"{name}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                self.record(path)
                write_gray_png(path, soft[k], compress_level=level)
            if self.options.mattes:
                path = self.out / "mattes" / str(oid) / f"{name}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                self.record(path)
                write_gray_png(path, np.where(ids == oid, 255, 0).astype(np.uint8), compress_level=level)

    def close(self) -> None:
        if self.video is not None:
            self.video.close()

    def abort(self) -> None:
        if self.video is not None:
            self.video.abort()


def write_rgb_png(path: Path, rgb: np.ndarray, level: int) -> None:
    """Atomically write an ``(H, W, 3)`` uint8 RGB PNG."""
    from PIL import Image

    from .atomic import atomic_path

    with atomic_path(path) as tmp:
        Image.fromarray(rgb, mode="RGB").save(tmp, format="PNG", compress_level=level)


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
