"""Segmenting a video into an output folder (``vostool segment``): reader thread -> the
session's frame loop (:meth:`~vostool.inference.session.Session.propagate`) -> writer thread.

Decoding runs one frame ahead in a reader thread and all encoding (PNG, H.264) runs in a writer
thread, so on a 2-core machine the three overlap. Every ``checkpoint_every`` frames (and on
Ctrl-C) the session state is saved after the masks up to that frame are on disk, so ``--resume``
continues an interrupted run and produces exactly the masks an uninterrupted run would.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..errors import InputError, VostoolError
from ..io.atomic import write_text_atomic
from ..io.checkpoint import load_state, remove_state, save_state
from ..io.masks import DAVIS_PALETTE, IndexMask, read_index_png
from ..io.outputs import RESUME_DIR, BackgroundWriter, FrameOutputs, now_iso, prepare_out_dir, write_run_file
from ..io.video import VideoFrame, VideoSource
from ..options import OutputOptions
from ..version import __version__
from .device import device_type
from .session import Session, StepResult, internal_size


class _Prefetch:
    """Iterate ``source`` in a thread, ``depth`` frames ahead, timing each decode."""

    def __init__(self, it: Iterator[VideoFrame], timer_add: Callable[[int, str, float], None], depth: int = 4, timed_from: int = 0) -> None:
        self._timed_from = timed_from
        self._q: queue.Queue[Any] = queue.Queue(depth)
        self._stop = threading.Event()
        self._it = it
        self._add = timer_add
        self._t = threading.Thread(target=self._run, name="vostool-reader", daemon=True)
        self._t.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                t0 = time.perf_counter()
                try:
                    f = next(self._it)
                except StopIteration:
                    break
                if f.index >= self._timed_from:
                    self._add(f.index, "decode", (time.perf_counter() - t0) * 1000.0)
                self._q.put(f)
            self._q.put(StopIteration)
        except BaseException as exc:
            self._q.put(exc)

    def __iter__(self) -> Iterator[VideoFrame]:
        while True:
            item = self._q.get()
            if item is StopIteration:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self._stop.set()
        try:
            while True:
                self._q.get_nowait()
        except queue.Empty:
            pass


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _save_checkpoint(out: Path, state: dict[str, Any], timer_state: dict[str, Any], fingerprint: str) -> None:
    (out / RESUME_DIR).mkdir(exist_ok=True)
    save_state(out / RESUME_DIR / "state", {"session": state, "timer": timer_state, "fingerprint": fingerprint})


def _load_checkpoint(out: Path, fingerprint: str) -> dict[str, Any] | None:
    ck = load_state(out / RESUME_DIR / "state")
    if ck is None:
        return None
    if ck.get("fingerprint") != fingerprint:
        raise InputError(
            f"--resume: {out} was made by a run with other inputs or options; rerun without --resume (with --overwrite) or use the same options"
        )
    return ck


class _Progress:
    def __init__(self, enabled: bool, total: int | None, start: int) -> None:
        self.bar = None
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(
            TextColumn("segment"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[fps]} fps"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self.task = self.bar.add_task("frames", total=total, completed=start, fps="-")
        self.bar.start()
        self.t0 = time.perf_counter()
        self.done = 0

    def advance(self) -> None:
        if self.bar is None:
            return
        self.done += 1
        fps = self.done / max(time.perf_counter() - self.t0, 1e-9)
        self.bar.update(self.task, advance=1, fps=f"{fps:.1f}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def _fingerprint(session: Session, source: VideoSource, masks: dict[int, IndexMask]) -> dict[str, Any]:
    """What must match for ``--resume``: the video, the masks, the method and the options."""
    opts = session.options
    return {
        "video": str(Path(source.path).resolve()),
        "size_in": list(source.size),
        "frames": source.num_frames,
        "masks": {k: hashlib.sha256(v.ids.tobytes()).hexdigest()[:16] for k, v in masks.items()},
        "method": session.method.name,
        "flow": session.flow_estimator.name if session.flow_estimator is not None else None,
        "weights": session.weights.get("sha256") if session.weights else None,
        "size": opts.size,
        "precision": opts.precision,
        "device": device_type(session.device),
        "method_kwargs": dict(opts.method_kwargs),
    }


def segment_to_folder(
    session: Session, source: VideoSource, masks: dict[int, IndexMask], out: Path, options: OutputOptions, *, progress: bool = False
) -> dict[str, Any]:
    """Segment a whole video into the folder ``out`` and return the timing summary.

    Args:
        session: a fresh session (method, flow, device, internal size).
        source: the opened video.
        masks: frame index -> masks given on that frame (index 0 required).
        out: the output folder.
        options: what to write; resume / overwrite and the checkpoint policy.
        progress: show a progress bar on stderr.

    Raises:
        VostoolError: bad input, unwritable output, or an interrupted run (exit code 130).
    """
    if 0 not in masks:
        raise InputError("no mask for frame 0: the first frame needs a mask (--mask FILE or --mask 0:FILE)")
    fp = _digest(_fingerprint(session, source, masks))
    previous = prepare_out_dir(out, resume=options.resume, overwrite=options.overwrite)
    if options.resume and previous is not None and previous.get("status") == "complete" and previous.get("fingerprint") == fp:
        print(f"vostool: {out} is already complete; nothing to resume", file=sys.stderr)
        return json.loads((out / "timing.json").read_text())["summary"]

    palette = next((m.palette for _, m in sorted(masks.items()) if m.palette is not None), None)
    palette = DAVIS_PALETTE if palette is None else palette
    timer = session.timer
    start = 0
    ck = _load_checkpoint(out, fp) if options.resume else None
    if ck is not None:
        session.load_state_dict(ck["session"])
        timer.load_state(ck["timer"])
        start = session.index
    w, h = source.size
    iw, ih = internal_size(w, h, session.size)
    info = {
        "status": "running",
        "fingerprint": fp,
        "started": now_iso(),
        "vostool": __version__,
        "input": str(source.path),
        "resumed_from_frame": start if options.resume else None,
    }
    write_run_file(out, info)

    writer = BackgroundWriter()
    outputs = FrameOutputs(out, source.size, source.fps, palette, options)
    need_rgb = options.overlay or options.overlay_frames
    want_soft = options.soft
    # Frames before `start` are only re-read to rebuild the overlay video.
    first = 0 if (start and options.overlay) else start
    frames = _Prefetch(iter(source.frames(first)), timer.add, timed_from=start)
    progress = _Progress(progress, source.num_frames, start)
    last_ck_frame, last_ck_time = start - 1, time.perf_counter()
    done = start
    status = "failed"
    try:
        stream = iter(frames)
        for f in itertools.islice(stream, start - first):
            ids = read_index_png(out / "masks" / f"{f.name}.png")
            writer.submit(lambda f=f, ids=ids: outputs.write(f.name, f.rgb, ids, [], masks=False))
        for res in session.propagate(stream, masks):
            soft = None
            if want_soft:
                soft = session.arrays.scores_u8(res.prob[1:])

            def job(res: StepResult = res, soft: Any = soft, rgb: Any = res.frame if need_rgb else None) -> None:
                t0 = time.perf_counter()
                outputs.write(str(res.name), rgb, res.ids, res.object_ids, soft)
                timer.add(res.index, "write", (time.perf_counter() - t0) * 1000.0)

            writer.submit(job)
            done = res.index + 1
            progress.advance()
            if done - 1 - last_ck_frame >= options.checkpoint_every or time.perf_counter() - last_ck_time >= options.checkpoint_seconds:
                snap, tstate = session.state_dict(), timer.state()
                writer.submit(lambda snap=snap, tstate=tstate: _save_checkpoint(out, snap, tstate, fp))
                last_ck_frame, last_ck_time = done - 1, time.perf_counter()
        for idx in masks:
            if idx >= done:
                raise InputError(f"a mask is given for frame {idx} but the video has only {done} frames")
        writer.close()
        outputs.close()
        timer.stop()
        status = "written"
    except KeyboardInterrupt:
        status = "interrupted"
        frames.close()
        try:
            snap, tstate = session.state_dict(), timer.state()
            writer.submit(lambda: _save_checkpoint(out, snap, tstate, fp))
            writer.close()
        finally:
            outputs.abort()
        raise VostoolError(f"interrupted after {done} frames; finish the run with the same command plus --resume", exit_code=130) from None
    except BaseException:
        frames.close()
        outputs.abort()
        try:
            writer.close()
        except BaseException:
            pass
        raise
    finally:
        progress.close()
        if status != "written":
            info.update(status=status, finished=now_iso(), frames_done=done)
            write_run_file(out, info)

    summary = timer.summary()
    summary.update(
        {
            "resolution": [w, h],
            "internal_resolution": [iw, ih],
            "objects": session.objects.ids,
            "input_fps": source.fps,
            "device": str(session.device),
            "precision": session.precision,
            **session.describe(),
        }
    )
    if start:
        summary["resumed_from_frame"] = start
    write_text_atomic(out / "timing.csv", timer.to_csv())
    write_text_atomic(out / "timing.json", json.dumps({"summary": summary, "frames": timer.table()}, indent=1) + "\n")
    info.update(status="complete", finished=now_iso(), frames_done=done)
    write_run_file(out, info)
    remove_state(out / RESUME_DIR / "state")
    return summary
