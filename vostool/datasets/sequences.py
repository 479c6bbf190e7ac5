"""Annotated videos held in memory (training and validation sets).

:func:`load_dataset` reads a DAVIS 2016 / 2017 or YouTube-VOS folder through
:func:`vostool.datasets.layouts.open_dataset` (so layouts, split files and annotation rules are
the benchmark's) and keeps every frame that has an annotation, as uint8 (the 240p DAVIS 2016
train set is about 640 MB). Labels keep DAVIS 2017's void (255): training losses ignore it.
YouTube-VOS annotates every 5th frame, so its sequences hold those frames only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..io.masks import VOID_ID
from .annotations import read_annotation
from .layouts import open_dataset

TRAINING_RESOLUTIONS = ("480p", "240p", "Full-Resolution")
"""DAVIS resolution folders a training set is read from, in order of preference (else the only one)."""


@dataclasses.dataclass
class VideoSequence:
    """One annotated video held in memory.

    Attributes:
        name: sequence name.
        images: ``(T, H, W, 3)`` uint8 RGB.
        labels: ``(T, H, W)`` uint8 object ids (0 = background, 1..K objects, 255 = void).
    """

    name: str
    images: np.ndarray
    labels: np.ndarray

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.shape[-1] != 3 or self.labels.shape != self.images.shape[:3]:
            raise ValueError(f"{self.name}: images {self.images.shape} and labels {self.labels.shape} do not match")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def object_ids(self) -> list[int]:
        """Ids of every object present in any frame (void excluded)."""
        return [int(v) for v in np.unique(self.labels) if v not in (0, VOID_ID)]


def _read_rgb(path: Path) -> np.ndarray:
    from PIL import Image  # here, not at import: the benchmark's scorer imports this package and never needs PIL

    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"), dtype=np.uint8)


def _resize_pair(img: np.ndarray, lab: np.ndarray, height: int) -> tuple[np.ndarray, np.ndarray]:
    h, w = lab.shape
    if h == height:
        return img, lab
    from PIL import Image

    new_w = max(1, round(w * height / h))
    img = np.asarray(Image.fromarray(img).resize((new_w, height), Image.BILINEAR))
    lab = np.asarray(Image.fromarray(lab).resize((new_w, height), Image.NEAREST))
    return img, lab


def load_dataset(
    root: str | Path,
    *,
    split: str = "train",
    include: Iterable[str] | None = None,
    exclude: Iterable[str] = (),
    height: int | None = None,
    max_sequences: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[VideoSequence]:
    """Read the annotated sequences of a DAVIS or YouTube-VOS set into memory.

    Args:
        root: dataset root (see :mod:`vostool.datasets.layouts`); a DAVIS root is read at the
            first of :data:`TRAINING_RESOLUTIONS` it has, else at its only resolution.
        split: split name (the DAVIS split file; the YouTube-VOS folder).
        include: read exactly these sequences (in this order), split file or not; None reads the split.
        exclude: drop these names (e.g. a held-out validation split).
        height: resize frames to this height (aspect kept; masks nearest); None keeps the size.
        max_sequences: read at most this many (tests, quick runs).
        progress: called with each sequence name as it is read.

    Returns:
        The sequences, in split order. Sequences with fewer than two frames whose image and
        annotation pair up are skipped; an empty result raises InputError.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"training data folder {root} does not exist; give a DAVIS or YouTube-VOS root")
    wanted = None if include is None else list(include)
    res = next((r for r in TRAINING_RESOLUTIONS if (root / "Annotations" / r).is_dir() and (root / "JPEGImages" / r).is_dir()), None)
    ds = open_dataset(root, split=split, resolution=res, sequences=wanted, every_sequence=wanted is not None, need_meta=False)
    drop = set(exclude)
    seqs = [s for s in ds.sequences if s.name not in drop][:max_sequences]
    out: list[VideoSequence] = []
    for seq in seqs:
        if progress is not None:
            progress(seq.name)
        imgs, labs = [], []
        for stem in seq.annotated:
            frame = seq.frame_path(stem)
            if frame is None:
                continue
            img, lab = _read_rgb(frame), read_annotation(seq.annotation_path(stem), ds.binary, keep_void=True)
            if img.shape[:2] != lab.shape:
                continue
            if height is not None:
                img, lab = _resize_pair(img, lab, height)
            imgs.append(img)
            labs.append(lab)
        if len(imgs) >= 2:
            out.append(VideoSequence(seq.name, np.stack(imgs), np.stack(labs)))
    if not out:
        raise InputError(f"no annotated sequences found under {root}; check the folder layout (DAVIS or YouTube-VOS)")
    return out
