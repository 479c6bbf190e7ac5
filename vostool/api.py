"""The public Python API; the CLI is a thin shell over it.

import vostool
summary = vostool.segment("clip.mp4", "f0.png", "out/", method="flow")
summary = vostool.segment("clip.mp4", "f0.png", "out/", run=RunOptions(method="agss"), output=OutputOptions(soft=True))

session = vostool.create_session("flow", flow="dis")
for result in session.propagate(frames, {0: first_mask}):   # (H, W, 3) uint8 RGB frames
    result.ids                                              # (H, W) uint8 object ids

report = vostool.segment_batch("clips/", "out/", workers=2)  # every clip of a folder, OUT/<name>/ each
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .batch import SegmentPayload, Task, find_jobs, make_executor, output_for, plan_job, run_batch
from .batch.driver import Say, finished_summary
from .batch.jobs import SegmentJob
from .errors import InputError
from .inference.builder import create_session, load_method
from .inference.device import resolve_device
from .inference.session import Session, StepResult
from .inference.video_to_folder import check_masks, segment_to_folder
from .io.masks import IndexMask, ids_from_array, read_mask
from .io.video import IMAGE_SUFFIXES, VideoSource, natural_key, open_video
from .options import OutputOptions, RunOptions, WorkerOptions, with_fields

MaskSpec = str | os.PathLike[str] | IndexMask | np.ndarray
"""A mask given for a video: a file (frame 0), ``"N:FILE"`` (frame N, 0-based), an IndexMask or
an ``(H, W)`` integer array of object ids (frame 0)."""

_LAST_NUMBER = re.compile(r"(\d+)(?!.*\d)")


def _last_number(name: str) -> int | None:
    m = _LAST_NUMBER.search(name)
    return None if m is None else int(m.group(1))


def _mask_frame_index(stem: str, frame_names: list[str] | None) -> int:
    """The frame a ``--masks`` file belongs to: the frame of the same name; else, in a frame
    folder, the frame whose name carries the same number (``0001.png`` -> ``img_0001.jpg``,
    wherever the folder starts counting); else (a video file) the number as 0-based index."""
    number = _last_number(stem)
    if frame_names is None:
        if number is None:
            raise InputError(f"cannot tell which frame mask {stem!r} belongs to: name masks by 0-based frame number (00030.png)")
        return number
    if stem in frame_names:
        return frame_names.index(stem)
    matches = [i for i, name in enumerate(frame_names) if number is not None and _last_number(name) == number]
    if len(matches) != 1:
        why = "matches no frame" if not matches else f"matches {len(matches)} frames"
        raise InputError(
            f"mask {stem!r} {why} of the folder (frames {frame_names[0]} .. {frame_names[-1]}); name each mask like its frame "
            f"(e.g. {frame_names[0]}.png)"
        )
    return matches[0]


def _parse_spec(text: str) -> tuple[int, str]:
    """``"FILE"`` -> ``(0, FILE)``, ``"N:FILE"`` -> ``(N, FILE)`` (N 0-based); bad specs are an InputError."""
    if ":" not in text or Path(text).exists() or re.match(r"[A-Za-z]:[\\/]", text):
        return 0, text
    n, path = text.split(":", 1)
    if not re.fullmatch(r"\d+", n.strip()):
        raise InputError(
            f"--mask {text!r}: {n!r} is not a frame number (and no such file exists); give FILE for frame 0 or N:FILE with N the "
            "0-based frame index"
        )
    if not path:
        raise InputError(f"--mask {text!r} names no file; give N:FILE")
    return int(n), path


def collect_masks(
    mask: Sequence[MaskSpec] | Mapping[int, MaskSpec] | MaskSpec | None = None,
    masks_dir: str | os.PathLike[str] | None = None,
    *,
    frame_names: list[str] | None = None,
) -> dict[int, IndexMask]:
    """Read the masks given for a video into ``{frame index: IndexMask}``.

    Frames are numbered from 0. ``"N:FILE"`` gives frame N; a ``masks_dir`` file gives the frame
    of the same name, else (a frame folder) the frame whose name carries the same number, else
    (a video file) frame N for ``N.png`` / ``000N.png``.

    Args:
        mask: a path (frame 0), an ``"N:path"`` string, an IndexMask or ``(H, W)`` id array
            (frame 0), a list of them, or a ``{frame index: any of these}`` mapping.
        masks_dir: a folder of frame-numbered PNGs (``00000.png``, ``00030.png``, or named like
            the frames of a frame folder).
        frame_names: the video's frame names (folder input), to match mask names to frames.

    Raises:
        InputError: unreadable mask, a bad ``N:FILE`` spec, an array that is not object ids, a
            mask with no object, two masks for one frame.
    """
    out: dict[int, IndexMask] = {}

    def put(idx: int, m: IndexMask, label: str) -> None:
        if idx in out:
            raise InputError(
                f"two masks given for frame {idx} ({out[idx].source or 'an earlier one'} and {label}); give one mask per frame"
            )
        if not m.object_ids:
            raise InputError(f"mask {label} has no object: every pixel is background (or void); draw at least one object")
        out[idx] = m

    def read(idx: int | None, spec: MaskSpec) -> None:
        if isinstance(spec, IndexMask):
            idx = 0 if idx is None else idx
            put(idx, spec, spec.source or f"given for frame {idx}")
        elif isinstance(spec, np.ndarray):
            idx = 0 if idx is None else idx
            put(idx, ids_from_array(spec, what=f"mask for frame {idx}"), f"given for frame {idx}")
        else:
            n, path = _parse_spec(str(spec)) if idx is None else (idx, str(spec))
            put(n, read_mask(path), path)

    if isinstance(mask, Mapping):
        for idx, spec in mask.items():
            if isinstance(idx, bool) or not isinstance(idx, (int, np.integer)) or idx < 0:
                raise InputError(f"mask frame {idx!r} is not a frame index; use 0-based integers as keys")
            read(int(idx), spec)
    else:
        for spec in [] if mask is None else (list(mask) if isinstance(mask, (list, tuple)) else [mask]):
            read(None, spec)
    if masks_dir is not None:
        d = Path(masks_dir)
        if not d.is_dir():
            raise InputError(f"--masks folder not found: {d}")
        files = sorted((p for p in d.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=lambda p: natural_key(p.name))
        if not files:
            raise InputError(f"no mask PNGs in {d}")
        for p in files:
            put(_mask_frame_index(p.stem, frame_names), read_mask(p), str(p))
    if not out:
        raise InputError("no mask given: pass --mask FILE (frame 0), --mask N:FILE, or --masks DIR")
    return out


def segment(
    video: str | os.PathLike[str],
    mask: Sequence[MaskSpec] | MaskSpec | None,
    out: str | os.PathLike[str],
    *,
    masks_dir: str | os.PathLike[str] | None = None,
    fps: float | None = None,
    run: RunOptions | None = None,
    output: OutputOptions | None = None,
    progress: bool = False,
    session: Session | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """Segment every frame of ``video`` into ``out`` (see :mod:`vostool.io.outputs` for the layout).

    Args:
        video: video file or folder of frames.
        mask: first-frame mask (path, IndexMask or id array), ``"N:path"`` specs, a list of
            them, or a ``{frame index: mask}`` mapping (see :func:`collect_masks`).
        out: output folder.
        masks_dir: folder of frame-numbered masks (objects that appear later).
        fps: frame rate of a folder of frames (default 24).
        run: how to segment (method, flow, device, ...); default :class:`RunOptions`.
        output: what to write; default :class:`OutputOptions`.
        progress: show a progress bar on stderr.
        session: a session to run in instead of building one from ``run`` (reset for this video;
            how ``vostool batch`` workers reuse a loaded model).
        **fields: fields of :class:`RunOptions` or :class:`OutputOptions` (``method="agss"``,
            ``soft=True``, ...) that override those of ``run`` and ``output``.

    Returns:
        The timing summary (also in ``out/timing.json``).
    """
    run, rest = with_fields(run or RunOptions(), fields)
    output, rest = with_fields(output or OutputOptions(), rest)
    if rest:
        raise TypeError(f"segment() got unexpected keyword arguments: {', '.join(sorted(rest))}")
    source: VideoSource = open_video(video, fps=fps)
    try:
        given = collect_masks(mask, masks_dir, frame_names=source.frame_names)
        check_masks(given, source, resize_mask=run.resize_mask)  # before the weights load
        if session is None:
            session = create_session(run)
        else:
            session.reset()
        return segment_to_folder(session, source, given, Path(out), output, progress=progress)
    finally:
        source.close()


def run_segment_task(session: Session, task: Task) -> dict[str, Any]:
    """The work of one ``vostool batch`` job (a :data:`vostool.batch.Work` function): the job's
    folder is skipped, resumed or (over)written as :func:`vostool.batch.plan_job` decides, then
    :func:`segment` runs in the worker's session.

    Returns:
        The timing summary, or ``{"skipped": True, ...}`` for a job already complete.
    """
    payload: SegmentPayload = task.payload
    folder = Path(payload.out)
    plan = plan_job(folder, overwrite=payload.output.overwrite, since=payload.since)
    if plan == "skip":
        return {"skipped": True, **finished_summary(folder)}
    job = payload.job
    return segment(
        job.video,
        list(job.masks) or None,
        folder,
        masks_dir=job.masks_dir,
        fps=job.fps,
        output=output_for(plan, payload.output),
        session=session,
    )


def segment_batch(
    jobs: str | os.PathLike[str] | Sequence[SegmentJob],
    out: str | os.PathLike[str],
    *,
    run: RunOptions | None = None,
    output: OutputOptions | None = None,
    parallel: WorkerOptions | None = None,
    progress: bool = False,
    say: Say | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """Segment many videos, each into ``out/<name>/`` as :func:`segment` does; resumable.

    Args:
        jobs: a folder of clips (``NAME.mp4`` + ``NAME_mask.png``), a CSV / JSONL manifest, or
            :class:`vostool.batch.SegmentJob` items (:mod:`vostool.batch.jobs`).
        out: the batch's folder (``out/batch.json`` lists every job's state and the timing).
        run / output: the options of every job (a manifest row may set its own run options).
        parallel: where the jobs run (:class:`WorkerOptions`: worker processes, Ray).
        progress: a progress bar over jobs and frames on stderr.
        say: where one line per finished job goes.
        **fields: fields of :class:`RunOptions`, :class:`OutputOptions` or :class:`WorkerOptions`
            (``method="agss"``, ``workers=2``, ...).

    Returns:
        The content of ``out/batch.json`` (``counts``, ``failed``, ``jobs``, ``summary``).
    """
    run, rest = with_fields(run or RunOptions(), fields)
    output, rest = with_fields(output or OutputOptions(), rest)
    parallel, rest = with_fields(parallel or WorkerOptions(), rest)
    if rest:
        raise TypeError(f"segment_batch() got unexpected keyword arguments: {', '.join(sorted(rest))}")
    found = find_jobs(jobs) if isinstance(jobs, (str, os.PathLike)) else list(jobs)
    return run_batch(found, out, run_segment_task, make_executor(parallel), run=run, output=output, progress=progress, say=say)


__all__ = [
    "segment",
    "segment_batch",
    "create_session",
    "collect_masks",
    "load_method",
    "resolve_device",
    "Session",
    "StepResult",
    "RunOptions",
    "OutputOptions",
    "WorkerOptions",
]
