"""The output folder of a run: masks, overlays, soft scores, mattes, timing reports, run state.

Layout of ``OUT/``::

    masks/<frame>.png          index PNG per frame (input size, input palette or DAVIS palette)
    overlay.mp4                H.264 overlay at the input frame rate (appears when the run completes)
    overlays/<frame>.png       optional per-frame overlays
    soft/<id>/<frame>.png      optional soft scores (probability x 255) per object
    mattes/<id>/<frame>.png    optional black/white matte per object
    timing.json, timing.csv    per-frame stage times and summary (written when the run completes)
    run.json                   run status: "running", "interrupted", "failed" or "complete"
    .resume/state.pt or .npz   session checkpoint for --resume (.npz: a numpy session's, without torch)

Every file is written atomically, and :class:`BackgroundWriter` does the encoding in a thread so
PNG/H.264 encoding overlaps with the frame loop.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import OutputError
from ..options import OutputOptions
from .atomic import write_text_atomic
from .masks import write_gray_png, write_index_png
from .overlay import render_overlay
from .video import VideoWriter

RUN_FILE = "run.json"
RESUME_DIR = ".resume"
OUTPUT_PARTS = ("masks", "overlays", "soft", "mattes", "overlay.mp4", "timing.json", "timing.csv", RUN_FILE, RESUME_DIR)


def prepare_out_dir(out: Path, *, resume: bool, overwrite: bool) -> dict[str, Any] | None:
    """Create ``out`` (or check it) and return the previous run's ``run.json`` when resuming.

    Raises:
        OutputError: ``out`` cannot be created or written, or holds results and neither
            ``resume`` nor ``overwrite`` was asked for.
    """
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create output folder {out}: {exc.strerror or exc}") from None
    if not out.is_dir():
        raise OutputError(f"output path {out} exists and is not a folder")
    if not os.access(out, os.W_OK | os.X_OK):
        raise OutputError(f"output folder {out} is not writable; choose another -o")
    run_file = out / RUN_FILE
    previous = None
    if run_file.exists():
        try:
            previous = json.loads(run_file.read_text())
        except (OSError, ValueError):
            previous = {"status": "unknown"}
    has_masks = (out / "masks").is_dir() and any((out / "masks").iterdir())
    if resume:
        for stale in out.rglob(".*.partial*"):  # temporary files of a killed run
            stale.unlink(missing_ok=True)
        return previous
    if previous is not None or has_masks:
        if not overwrite:
            state = (previous or {}).get("status", "unknown")
            raise OutputError(
                f"output folder {out} already holds a run (status: {state}); use --resume to finish it or --overwrite to replace it"
            )
        for part in OUTPUT_PARTS:
            p = out / part
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
    return None


def write_run_file(out: Path, info: dict[str, Any]) -> None:
    """Atomically write ``run.json``."""
    write_text_atomic(out / RUN_FILE, json.dumps(info, indent=2, sort_keys=True) + "\n")


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
            if isinstance(err, OSError) and not isinstance(err, OutputError):
                raise OutputError(f"cannot write output: {err.strerror or err} ({getattr(err, 'filename', '')})") from None
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
        fps: frame rate for the overlay video.
        palette: ``(256, 3)`` uint8 colours for masks and overlays.
        options: what to write.
    """

    def __init__(self, out: Path, size: tuple[int, int], fps: float, palette: np.ndarray, options: OutputOptions) -> None:
        self.out = out
        self.palette = palette
        self.options = options
        (out / "masks").mkdir(exist_ok=True)
        if options.overlay_frames:
            (out / "overlays").mkdir(exist_ok=True)
        self.video = VideoWriter(out / "overlay.mp4", size, fps) if options.overlay else None

    def write(
        self,
        name: str,
        rgb: np.ndarray | None,
        ids: np.ndarray,
        object_ids: list[int],
        soft: np.ndarray | None = None,
        *,
        masks: bool = True,
    ) -> None:
        """Write one frame's outputs.

        Args:
            name: frame name (file stem).
            rgb: ``(H, W, 3)`` uint8 frame for overlays (None: no overlay for this frame).
            ids: ``(H, W)`` uint8 object ids.
            object_ids: the ids of every tracked object (for soft scores and mattes).
            soft: ``(K, H, W)`` uint8 soft scores (probability x 255) in ``object_ids`` order.
            masks: False when only the overlay is re-rendered (resume).
        """
        level = self.options.png_compression
        if masks:
            write_index_png(self.out / "masks" / f"{name}.png", ids, self.palette, compress_level=level)
        if rgb is not None and (self.video is not None or self.options.overlay_frames):
            ov = render_overlay(rgb, ids, self.palette)
            if self.video is not None:
                self.video.write(ov)
            if self.options.overlay_frames and masks:
                write_rgb_png(self.out / "overlays" / f"{name}.png", ov, level)
        if not masks:
            return
        for k, oid in enumerate(object_ids):
            if self.options.soft and soft is not None:
                d = self.out / "soft" / str(oid)
                d.mkdir(parents=True, exist_ok=True)
                write_gray_png(d / f"{name}.png", soft[k], compress_level=level)
            if self.options.mattes:
                d = self.out / "mattes" / str(oid)
                d.mkdir(parents=True, exist_ok=True)
                write_gray_png(d / f"{name}.png", np.where(ids == oid, 255, 0).astype(np.uint8), compress_level=level)

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
