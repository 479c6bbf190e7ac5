"""The jobs of ``vostool batch``: found in a folder of clips or read from a CSV / JSONL manifest.

Folder (``find_jobs(folder)``), one job per clip, named after it:

* ``NAME.mp4`` (any video suffix) or a ``NAME/`` folder of frames;
* its masks beside it: ``NAME_mask.png`` (frame 0) and / or a ``NAME_masks/`` folder of
  frame-numbered masks (objects that appear later). A clip without either is a failed job.

Manifest (``find_jobs(file.csv | file.jsonl)``), one job per row (relative paths are relative to
the manifest's folder):

* ``video`` (required): a video file or a folder of frames;
* ``mask``: a mask for frame 0 or ``N:FILE`` specs (several separated by ``;`` in a CSV, a list
  in JSONL); ``masks``: a folder of frame-numbered masks (at least one of the two);
* ``name``: the output folder's name (default: the video's name);
* ``fps``: the frame rate of a frame folder;
* ``method``, ``flow``, ``weights``, ``size``, ``precision``: this job's own session options.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..io.video import IMAGE_SUFFIXES, natural_key
from ..options import RunOptions, with_fields

VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".mpg", ".mpeg"})
"""Files of a jobs folder that are videos."""

RUN_COLUMNS: dict[str, type] = {"method": str, "flow": str, "weights": str, "size": int, "precision": str}
"""Manifest columns that set a job's own :class:`~vostool.options.RunOptions` fields, with their types."""

COLUMNS = ("name", "video", "mask", "masks", "fps", *RUN_COLUMNS)


@dataclass(frozen=True)
class SegmentJob:
    """One video to segment into ``OUT/<name>/``.

    Attributes:
        name: the output folder's name (unique in a batch).
        video: a video file or a folder of frames.
        masks: mask specs: a file (frame 0) or ``N:FILE``.
        masks_dir: a folder of frame-numbered masks.
        fps: the frame rate of a frame folder (None: the default).
        run: this job's :class:`~vostool.options.RunOptions` fields (``(name, value)`` pairs).
        error: why the job cannot run (it is reported failed without running), or None.
    """

    name: str
    video: str
    masks: tuple[str, ...] = ()
    masks_dir: str | None = None
    fps: float | None = None
    run: tuple[tuple[str, Any], ...] = ()
    error: str | None = None

    def run_options(self, base: RunOptions) -> RunOptions:
        """``base`` with this job's own fields."""
        return with_fields(base, dict(self.run))[0]


def find_jobs(path: str | Path) -> list[SegmentJob]:
    """The jobs in a folder of clips or in a ``.csv`` / ``.jsonl`` manifest (see the module docstring).

    Raises:
        InputError: the path is missing, a manifest row is malformed, two jobs share a name, or
            there is no job at all.
    """
    p = Path(path)
    if p.is_dir():
        jobs = _folder_jobs(p)
    elif p.is_file() and p.suffix.lower() in (".csv", ".jsonl"):
        jobs = _manifest_jobs(p)
    elif p.exists():
        raise InputError(f"{p} is neither a folder of clips nor a .csv / .jsonl manifest")
    else:
        raise InputError(f"jobs not found: {p} (give a folder of clips or a .csv / .jsonl manifest)")
    if not jobs:
        raise InputError(f"no jobs in {p}: expected NAME.mp4 (or NAME/ frame folders) with NAME_mask.png beside them, or manifest rows")
    check_names(jobs)
    return jobs


def check_names(jobs: Iterable[SegmentJob]) -> None:
    """Job names must be unique and usable as one folder name."""
    seen: dict[str, str] = {}
    for job in jobs:
        if not job.name or job.name in (".", "..") or "/" in job.name or "\\" in job.name:
            raise InputError(f"job name {job.name!r} (video {job.video}) cannot be a folder name; give a plain name")
        if job.name in seen:
            raise InputError(f"two jobs are named {job.name!r} ({seen[job.name]} and {job.video}); give each a unique name")
        seen[job.name] = job.video


def _folder_jobs(folder: Path) -> list[SegmentJob]:
    entries = sorted((e for e in folder.iterdir() if not e.name.startswith(".")), key=lambda e: natural_key(e.name))
    stems = {e.name if e.is_dir() else e.stem for e in entries}
    jobs = []
    for e in entries:
        if e.is_dir():
            if e.name.endswith("_masks") and e.name[: -len("_masks")] in stems:  # the masks of clip NAME
                continue
            if not any(c.suffix.lower() in IMAGE_SUFFIXES for c in e.iterdir()):
                continue
            stem = e.name
        elif e.suffix.lower() in VIDEO_SUFFIXES:
            stem = e.stem
        else:
            continue
        mask, masks_dir = folder / f"{stem}_mask.png", folder / f"{stem}_masks"
        error = None
        if not mask.is_file() and not masks_dir.is_dir():
            error = f"no mask for {e.name}: put {mask.name} (frame 0) or a {masks_dir.name}/ folder beside it"
        jobs.append(
            SegmentJob(
                stem,
                str(e),
                (str(mask),) if mask.is_file() else (),
                str(masks_dir) if masks_dir.is_dir() else None,
                error=error,
            )
        )
    return jobs


def _manifest_jobs(path: Path) -> list[SegmentJob]:
    rows: list[tuple[int, dict[str, Any]]] = []
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() == ".csv":
        reader = csv.DictReader(text.splitlines())
        if reader.fieldnames is None or "video" not in [f.strip() for f in reader.fieldnames]:
            raise InputError(f"manifest {path}: the first line must name the columns, including 'video' (known: {', '.join(COLUMNS)})")
        for i, row in enumerate(reader, start=2):
            rows.append((i, {k.strip(): (v or "").strip() for k, v in row.items() if k is not None}))
    else:
        for i, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise InputError(f"manifest {path} line {i}: not JSON ({exc.msg}); write one JSON object per line") from None
            if not isinstance(row, dict):
                raise InputError(f'manifest {path} line {i}: expected a JSON object like {{"video": ..., "mask": ...}}')
            rows.append((i, row))
    return [_row_job(row, path.parent, f"manifest {path} line {i}") for i, row in rows]


def _row_job(row: Mapping[str, Any], base: Path, where: str) -> SegmentJob:
    unknown = sorted(k for k in row if k not in COLUMNS)
    if unknown:
        raise InputError(f"{where}: unknown column(s) {', '.join(unknown)}; known: {', '.join(COLUMNS)}")
    given = {k: v for k, v in row.items() if v not in (None, "", [])}
    if "video" not in given:
        raise InputError(f"{where}: no video given")

    def resolve(p: Any) -> str:
        return str(base / str(p)) if not Path(str(p)).is_absolute() else str(p)

    video = resolve(given["video"])
    specs = given.get("mask", [])
    specs = [s for s in re.split(r"\s*;\s*", specs) if s] if isinstance(specs, str) else [str(s) for s in specs]
    masks = []
    for spec in specs:
        m = re.fullmatch(r"(\d+):(.+)", spec)
        masks.append(f"{m.group(1)}:{resolve(m.group(2))}" if m and not (base / spec).exists() else resolve(spec))
    masks_dir = resolve(given["masks"]) if "masks" in given else None
    if not masks and masks_dir is None:
        raise InputError(f"{where}: no mask given for {given['video']}; add a 'mask' (frame 0 or N:FILE) or a 'masks' folder")
    run: dict[str, Any] = {}
    try:
        fps = float(given["fps"]) if "fps" in given else None
        for key, kind in RUN_COLUMNS.items():
            if key in given:
                run[key] = kind(given[key])
    except (TypeError, ValueError):
        raise InputError(f"{where}: fps must be a number and size a whole number") from None
    name = str(given.get("name") or (Path(video).stem if Path(video).suffix.lower() in VIDEO_SUFFIXES else Path(video).name))
    return SegmentJob(name, video, tuple(masks), masks_dir, fps, tuple(sorted(run.items())))
