"""Zip files for the evaluation servers.

* DAVIS test-dev / test-challenge: the sequence folders at the zip root, ``<seq>/<frame>.png``
  for every frame of every sequence.
* YouTube-VOS: ``Annotations/<video>/<frame>.png`` for the frames ``meta.json`` lists (every 5th
  frame, from the first frame where an object is given).
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

from ..datasets import Dataset
from ..errors import InputError
from ..io.atomic import atomic_path


def submission_entries(dataset: Dataset, results_dir: str | os.PathLike[str]) -> list[tuple[Path, str]]:
    """``(file, name inside the zip)`` pairs a submission must contain; raises if one is missing."""
    res = Path(results_dir)
    entries: list[tuple[Path, str]] = []
    for seq in dataset.sequences:
        folder = res / seq.name
        if dataset.kind == "ytvos":
            stems, prefix = list(seq.submit or []), f"Annotations/{seq.name}"
        else:
            stems = seq.frames or sorted(p.stem for p in folder.glob("*.png"))
            prefix = seq.name
        if not stems:
            raise InputError(f"no frames to submit for sequence {seq.name}: {folder} has no PNGs and the dataset lists no frames")
        missing = [s for s in stems if not (folder / f"{s}.png").is_file()]
        if missing:
            raise InputError(
                f"submission needs {len(missing)} more mask(s) for sequence {seq.name}, e.g. {folder / (missing[0] + '.png')}; "
                "segment every frame of the split first"
            )
        entries.extend((folder / f"{s}.png", f"{prefix}/{s}.png") for s in stems)
    return entries


def write_submission(dataset: Dataset, results_dir: str | os.PathLike[str], zip_path: str | os.PathLike[str]) -> int:
    """Write the server zip for ``dataset`` from the predictions in ``results_dir``; returns the file count."""
    entries = submission_entries(dataset, results_dir)
    path = Path(zip_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
            for src, name in entries:
                zf.write(src, name)
    return len(entries)
