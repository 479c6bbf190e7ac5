"""Split files (which sequences belong to a split) and the held-out validation split.

A split file lists one sequence per line; ``#`` starts a comment. The original DAVIS 2016
release lists file pairs instead (``/JPEGImages/1080p/bear/00000.jpg /Annotations/...``), whose
sequence is the folder of the first path.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import InputError

DAVIS16_VAL_FILE = Path(__file__).resolve().parents[1] / "data" / "davis16_train240p_val.txt"


def read_split_file(path: str | os.PathLike[str]) -> list[str]:
    """Sequence names of a split file, in order, each once."""
    names: list[str] = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        first = line.split()[0]
        name = Path(first).parent.name if "/" in first else first
        if name not in names:
            names.append(name)
    return names


def davis16_val_split() -> list[str]:
    """The fixed 5-sequence validation split held out of ``davis16-train-240p`` (shipped file)."""
    return read_split_file(DAVIS16_VAL_FILE)


def held_out_names(root: Path, val_split: str) -> list[str]:
    """The validation sequences of a training set in ``root``.

    Args:
        root: the dataset root.
        val_split: a split file, ``davis16`` (the shipped split; an error when its sequences are
            not all in ``root``), ``auto`` (davis16 when all its sequences are in ``root``, else
            none) or ``none``.
    """
    if val_split == "none":
        return []
    if val_split in ("auto", "davis16"):
        names = davis16_val_split()
        ann = [p for p in root.glob("Annotations/*") if p.is_dir()]
        have = {q.name for a in ann for q in a.iterdir()} | {q.name for q in (root / "Annotations").glob("*") if q.is_dir()}
        if all(n in have for n in names):
            return names
        if val_split == "davis16":
            raise InputError(f"the davis16 validation sequences are not all in {root}; give --val-split none or a split file")
        return []
    return read_split_file(val_split)
