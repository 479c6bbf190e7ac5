"""Segmenting a video into an output folder (``vostool segment``): reader thread -> the
session's frame loop (:meth:`~vostool.inference.session.Session.propagate`) -> writer thread.

Decoding runs one frame ahead in a reader thread and all encoding (PNG, H.264) runs in a writer
thread, so on a 2-core machine the three overlap. Every ``checkpoint_every`` frames (and on
Ctrl-C) the session state is saved after the masks up to that frame are on disk, so ``--resume``
continues an interrupted run and produces exactly the masks an uninterrupted run would.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import itertools
import json
import logging
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..errors import InputError, OutputError, VostoolError
from ..io.checkpoint import load_state, save_state
from ..io.masks import DAVIS_PALETTE, IndexMask, read_index_png
from ..io.outputs import RESUME_DIR, BackgroundWriter, FrameOutputs, OutputFolder, now_iso, output_error
from ..io.video import VideoFrame, VideoSource
from ..options import OutputOptions
from ..version import __version__
from .ahead import Ahead
from .device import device_type
from .session import Session, StepResult, internal_size

log = logging.getLogger(__name__)


def _timed_decode(frames: Iterator[VideoFrame], timer_add: Callable[[int, str, float], None], timed_from: int) -> Iterator[VideoFrame]:
    """``frames``, each decode timed as the ``decode`` stage from frame ``timed_from`` on."""
    while True:
        t0 = time.perf_counter()
        try:
            f = next(frames)
        except StopIteration:
            return
        if f.index >= timed_from:
            timer_add(f.index, "decode", (time.perf_counter() - t0) * 1000.0)
        yield f


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _save_checkpoint(folder: OutputFolder, state: dict[str, Any], timer_state: dict[str, Any], fingerprint: str) -> None:
    d = folder.out / RESUME_DIR
    d.mkdir(exist_ok=True)
    folder.record(d / "state.pt", d / "state.npz")  # a torch session's checkpoint, or a numpy session's
    try:
        save_state(d / "state", {"session": state, "timer": timer_state, "fingerprint": fingerprint})
    except RuntimeError as exc:  # torch's file writer reports a failed write (a full disk) as RuntimeError
        full = shutil.disk_usage(d).free < (1 << 20)
        err = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)) if full else OSError(errno.EIO, str(exc).splitlines()[0][:160])
        raise output_error(err, f"the resume checkpoint {d / 'state'}") from None


def _load_checkpoint(out: Path, fingerprint: str) -> dict[str, Any] | None:
    ck = load_state(out / RESUME_DIR / "state")
    if ck is None:
        return None
    if ck.get("fingerprint") != fingerprint:
        raise InputError(
            f"--resume: {out} was made by a run with other inputs or options; rerun without --resume (with --overwrite) or use the same options"
        )
    return ck


class _CtrlC:
    """Ctrl-C (SIGINT) during the frame loop, taken at a frame boundary: the first one is noted
    and :meth:`check` raises ``KeyboardInterrupt`` where every finished step's outputs are queued,
    so the checkpoint written then holds a whole step; a second one interrupts at once (``forced``).
    Installed only in the main thread over Python's default handler (elsewhere an interrupt
    arrives as it would without it)."""

    def __init__(self) -> None:
        self.requested = self.forced = False
        self._previous: Any = None

    def __enter__(self) -> _CtrlC:
        if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            self.forced = True
            raise KeyboardInterrupt
        self.requested = True

    def check(self) -> None:
        if self.requested:
            raise KeyboardInterrupt


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


def check_masks(masks: dict[int, IndexMask], source: VideoSource, *, resize_mask: bool = False) -> None:
    """Check the given masks against the video before any frame is processed.

    Raises:
        InputError: no mask on frame 0, a mask of another size (naming the file; the rotation
            advice for a rotated video; fine with ``resize_mask``), or a mask for a frame past
            the end of the video (exact for frame folders; for video files past the frame
            count the container declares, with the truncation margin; later ones fail when the
            video ends).
    """
    if 0 not in masks:
        raise InputError("no mask for frame 0: the first frame needs a mask (--mask FILE or --mask 0:FILE)")
    total = source.num_frames
    exact = source.frame_names is not None
    for idx, m in sorted(masks.items()):
        label = m.source or f"for frame {idx}"
        if total is not None and idx >= (total if exact else total + max(3, int(0.05 * total))):
            raise InputError(
                f"mask {label} is given for frame {idx} but the video has {'' if exact else 'about '}{total} frames "
                f"(0..{total - 1}, counted from 0)"
            )
        if m.size != tuple(source.size):
            hint = source.rotation_hint(m.size)
            if hint is not None:
                raise InputError(f"mask {label}: {hint}")
            if not resize_mask:
                raise InputError(
                    f"mask {label} is {m.size[0]}x{m.size[1]} but the video is {source.size[0]}x{source.size[1]}; "
                    "pass --resize-mask to scale the mask to the video (nearest neighbour)"
                )


def _fingerprint(session: Session, source: VideoSource, masks: dict[int, IndexMask], options: OutputOptions) -> dict[str, Any]:
    """What must match for ``--resume`` and for "already complete": the video, the masks, the
    method, the run's options and what it writes."""
    opts = session.options
    return {
        "video": str(Path(source.path).resolve()),
        "size_in": list(source.size),
        "frames": source.num_frames,
        "fps": source.fps,
        "masks": {k: hashlib.sha256(v.ids.tobytes()).hexdigest()[:16] for k, v in masks.items()},
        "method": session.method.name,
        "flow": session.flow_estimator.name if session.flow_estimator is not None else None,
        "weights": session.weights.get("sha256") if session.weights else None,
        "size": opts.size,
        "precision": opts.precision,
        "resize_mask": opts.resize_mask,
        "device": device_type(session.device),
        "method_kwargs": dict(opts.method_kwargs),
        **({"scales": list(opts.scales)} if opts.scales else {}),
        "outputs": [options.overlay, options.overlay_frames, options.soft, options.mattes],
    }


def _refusal(out: Path, previous: dict[str, Any], resume: bool) -> OutputError:
    state = previous.get("status", "unknown")
    if resume:
        return OutputError(
            f"--resume: {out} holds a run (status: {state}) made with other inputs or options; use the same command and options, "
            "or --overwrite to replace it"
        )
    if state == "complete":
        return OutputError(f"output folder {out} holds a complete run with other inputs or options; use --overwrite to replace it")
    return OutputError(
        f"output folder {out} holds an unfinished run (status: {state}); use --resume to finish it or --overwrite to replace it"
    )


def segment_to_folder(
    session: Session, source: VideoSource, masks: dict[int, IndexMask], out: Path, options: OutputOptions, *, progress: bool = False
) -> dict[str, Any]:
    """Segment a whole video into the folder ``out`` and return the timing summary.

    A folder that already holds a complete run of the same inputs and options is left as it
    is: its summary is returned with ``"already_complete": True``.

    Args:
        session: a fresh session (method, flow, device, internal size).
        source: the opened video.
        masks: frame index -> masks given on that frame (index 0 required).
        out: the output folder.
        options: what to write; resume / overwrite and the checkpoint policy.
        progress: show a progress bar on stderr.

    Raises:
        VostoolError: bad input, unwritable output, a folder another run is writing, or an
            interrupted run (exit code 130).
    """
    check_masks(masks, source, resize_mask=session.options.resize_mask)
    if options.resume and options.overwrite:
        raise InputError("--resume finishes the run in the folder and --overwrite replaces it: give one of them")
    fp = _digest(_fingerprint(session, source, masks, options))
    folder = OutputFolder(out, [source.path, *(m.source for m in masks.values() if m.source)])
    try:
        done = folder.completed_summary(fp)
        if done is not None and not options.overwrite:
            log.info("%s is already complete (same inputs and options); --overwrite redoes it", out)
            return {**done, "already_complete": True}
        previous = folder.previous
        if previous is not None and options.resume and previous.get("fingerprint") != fp:
            raise _refusal(out, previous, resume=True)
        if options.resume:
            folder.remove_partials()
        elif previous is not None:
            if not options.overwrite:
                raise _refusal(out, previous, resume=False)
            folder.clear()
        return _run(session, source, masks, folder, options, fp, progress)
    finally:
        folder.close()


def _run(
    session: Session,
    source: VideoSource,
    masks: dict[int, IndexMask],
    folder: OutputFolder,
    options: OutputOptions,
    fp: str,
    progress_bar: bool,
) -> dict[str, Any]:
    """The run itself, in a locked and prepared folder."""
    out = folder.out
    w, h = source.size
    if session.size and session.size > min(w, h):
        if "size" in (session.weights or {}).get("defaults_used", []):  # not asked for: a note
            log.info(
                "the weights' size %d is above the video's shorter side (%d); running at the input size %dx%d",
                session.size,
                min(w, h),
                w,
                h,
            )
        else:
            log.warning("--size %d is above the video's shorter side (%d); running at the input size %dx%d", session.size, min(w, h), w, h)
    for idx, m in sorted(masks.items()):
        log.info("mask for frame %d: %s", idx, m.summary())
    palette = next((m.palette for _, m in sorted(masks.items()) if m.palette is not None), None)
    palette = DAVIS_PALETTE if palette is None else palette
    timer = session.timer
    start = 0
    ck = _load_checkpoint(out, fp) if options.resume else None
    if ck is not None:
        session.load_state_dict(ck["session"])
        timer.load_state(ck["timer"])
        start = session.index
    info = {
        "status": "running",
        "fingerprint": fp,
        "pid": os.getpid(),
        "started": now_iso(),
        "vostool": __version__,
        "input": str(source.path),
        "masks": {str(k): {"file": m.source, "kind": m.kind, "num_objects": m.num_objects, "ids": m.object_ids} for k, m in masks.items()},
        "resumed_from_frame": start if options.resume else None,
    }
    try:
        folder.write_run(info)
        outputs = FrameOutputs(out, source.size, source.fps, palette, options, record=folder.record)
    except OSError as exc:  # e.g. a disk already full
        info.update(status="failed", finished=now_iso(), frames_done=start)
        with contextlib.suppress(OSError):
            folder.write_run(info)
        raise output_error(exc, f"the outputs in {out}") from None
    writer = BackgroundWriter()
    need_rgb = options.overlay or options.overlay_frames
    want_soft = options.soft
    # Frames before `start` are only re-read to rebuild the overlay video.
    first = 0 if (start and options.overlay) else start
    frames = Ahead(_timed_decode(iter(source.frames(first)), timer.add, start), depth=4, name="vostool-reader")
    progress = _Progress(progress_bar, source.num_frames, start)
    last_ck_frame, last_ck_time = start - 1, time.perf_counter()
    done = start
    status = "failed"
    ctrl_c = _CtrlC()
    try:
        stream = iter(frames)
        with ctrl_c:
            for f in itertools.islice(stream, start - first):
                ids = read_index_png(out / "masks" / f"{f.name}.png")
                writer.submit(lambda f=f, ids=ids: outputs.write(f.name, f.rgb, ids, [], masks=False, pts=f.pts))
                ctrl_c.check()
            for res in session.propagate(stream, masks):
                soft = None
                if want_soft:
                    soft = session.arrays.scores_u8(res.prob[1:])

                def job(res: StepResult = res, soft: Any = soft, rgb: Any = res.frame if need_rgb else None) -> None:
                    t0 = time.perf_counter()
                    outputs.write(str(res.name), rgb, res.ids, res.object_ids, soft, pts=res.pts)
                    timer.add(res.index, "write", (time.perf_counter() - t0) * 1000.0)

                writer.submit(job)
                if res.pts is not None:
                    timer.pts[res.index] = res.pts
                done = res.index + 1
                progress.advance()
                if done - 1 - last_ck_frame >= options.checkpoint_every or time.perf_counter() - last_ck_time >= options.checkpoint_seconds:
                    snap, tstate = session.state_dict(), timer.state()
                    writer.submit(lambda snap=snap, tstate=tstate: _save_checkpoint(folder, snap, tstate, fp))
                    last_ck_frame, last_ck_time = done - 1, time.perf_counter()
                ctrl_c.check()
        for idx in masks:
            if idx >= done:
                raise InputError(f"mask {masks[idx].source or ''} is given for frame {idx} but the video has only {done} frames")
        writer.close()
        outputs.close()
        timer.stop()
        summary = timer.summary()
        summary.update(
            {
                "resolution": [w, h],
                "internal_resolution": list(internal_size(w, h, session.size)),
                "objects": session.objects.ids,
                "input_fps": source.fps,
                "rotation": source.rotation,
                "device": str(session.device),
                "precision": session.precision,
                **session.describe(),
            }
        )
        if start:
            summary["resumed_from_frame"] = start
        try:
            folder.write_text("timing.csv", timer.to_csv())
            folder.write_text("timing.json", json.dumps({"summary": summary, "frames": timer.table()}, indent=1) + "\n")
            shutil.rmtree(out / RESUME_DIR, ignore_errors=True)
        except OSError as exc:
            raise output_error(exc, f"the reports in {out}") from None
        status = "complete"
    except KeyboardInterrupt:
        status = "interrupted"
        frames.close()
        try:
            # A forced Ctrl-C (or one outside the main thread's default handler) may land inside a
            # step: the session already counts the frame, its mask is not queued; then the last
            # periodic checkpoint stays the one to resume from.
            if session.index == done and not ctrl_c.forced:
                snap, tstate = session.state_dict(), timer.state()
                writer.submit(lambda: _save_checkpoint(folder, snap, tstate, fp))
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
        info.update(status=status, finished=now_iso(), frames_done=done)
        try:
            folder.write_run(info)
        except OSError as exc:
            if status == "complete":
                raise output_error(exc, f"{out / 'run.json'}") from None
    return summary
