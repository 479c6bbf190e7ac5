"""Benchmark layouts: DAVIS 2017, DAVIS 2016 and YouTube-VOS folders as lists of sequences.

* ``davis17``: ``ROOT/{JPEGImages,Annotations}/<res>/<seq>/%05d.{jpg,png}``, palette annotations
  whose index is the object id (255 = void, read as background), split lists in
  ``ROOT/ImageSets/2017/<split>.txt``. Objects are the ids 1..N of the first annotated frame.
* ``davis16``: the same folders with binary annotations (0/255; 255 is object 1, not void),
  split lists in ``ImageSets/2016/<split>.txt`` or, in the original release,
  ``ImageSets/<res>/<split>.txt`` / ``ImageSets/1080p/<split>.txt`` whose lines are
  ``/JPEGImages/1080p/bear/00000.jpg /Annotations/1080p/bear/00000.png`` file pairs. A DAVIS
  2017 palette annotation read as DAVIS 2016 is the union of its objects (void excluded).
* ``ytvos``: ``ROOT[/<split>]/{JPEGImages,Annotations}/<video>/<frame>.{jpg,png}`` and
  ``meta.json`` listing each object's frames; an object's mask is given on its first listed
  frame (possibly late in the video) and the listed frames (every 5th) are the ones submitted.

* one clip: ``ROOT/{JPEGImages,Annotations}/<frame>.{jpg,png}`` (frames directly in the folders,
  e.g. a PUMaVOS clip) is one ``davis17``-style sequence named after ``ROOT``.

``<res>`` is ``480p`` by default or any folder under ``Annotations`` (``Full-Resolution``,
``1080p``, ``240p``, ...). A missing split file falls back to every sequence folder, with a
warning. Nothing is read from images here; annotations are read by
:func:`vostool.datasets.annotations.read_annotation`, and training sets are read into memory by
:func:`vostool.datasets.sequences.load_dataset`, both through this layout.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..io.masks import VOID_ID, read_index_png
from .annotations import read_annotation
from .splits import read_split_file

log = logging.getLogger(__name__)

KINDS = ("davis17", "davis16", "ytvos")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclass
class SequenceInfo:
    """One video of a benchmark.

    Attributes:
        name: sequence (video) name.
        annotation_dir: folder of ground-truth PNGs.
        image_dir: folder of frames, or None when the dataset has no images (eval-only).
        annotated: stems of the ground-truth PNGs, sorted.
        frames: stems of the frame images, sorted (empty without ``image_dir``).
        objects: YouTube-VOS only: object id -> stem of the frame where it is first given.
            None for DAVIS, whose objects are the ids of the first annotated frame.
        submit: YouTube-VOS only: the frame stems a submission must contain.
    """

    name: str
    annotation_dir: Path
    image_dir: Path | None
    annotated: list[str]
    frames: list[str] = field(default_factory=list)
    objects: dict[int, str] | None = None
    submit: list[str] | None = None

    def annotation_path(self, stem: str) -> Path:
        return self.annotation_dir / f"{stem}.png"

    def missing_annotations(self) -> list[str]:
        """DAVIS (every frame annotated): the frames without a ground-truth PNG, from the frame
        images, or without images from the gaps in the numbered annotations. Empty for
        YouTube-VOS, whose annotations are sparse by design."""
        if self.objects is not None:
            return []
        have = set(self.annotated)
        if self.frames:
            return [s for s in self.frames if s not in have]
        if len(self.annotated) < 2 or not all(s.isdigit() for s in self.annotated):
            return []
        width, lo, hi = len(self.annotated[0]), int(self.annotated[0]), int(self.annotated[-1])
        return [f"{i:0{width}d}" for i in range(lo, hi + 1) if f"{i:0{width}d}" not in have]

    def frame_path(self, stem: str) -> Path | None:
        """The image of frame ``stem`` (None when there is none)."""
        if self.image_dir is None:
            return None
        return next((p for p in (self.image_dir / f"{stem}{s}" for s in IMAGE_SUFFIXES) if p.is_file()), None)


@dataclass
class Dataset:
    """A benchmark split: its layout kind and sequences (in split-file order)."""

    kind: str
    root: Path
    split: str
    resolution: str | None
    sequences: list[SequenceInfo]

    @property
    def binary(self) -> bool:
        """Whether annotations are binary (DAVIS 2016: one object, 255 = object 1)."""
        return self.kind == "davis16"

    def sequence(self, name: str) -> SequenceInfo:
        for s in self.sequences:
            if s.name == name:
                return s
        raise InputError(f"sequence {name!r} is not in {self.kind} {self.split}")

    def given_masks(self, seq: SequenceInfo) -> dict[str, np.ndarray]:
        """Frame stem -> ``(H, W)`` uint8 ids the semi-supervised protocol gives on that frame:
        DAVIS gives the first annotated frame; YouTube-VOS gives each object on the frame where
        ``meta.json`` first lists it (only that object's pixels)."""
        if seq.objects is None:
            if not seq.annotated:
                raise InputError(f"sequence {seq.name} has no annotation PNG in {seq.annotation_dir}; the first frame's mask is needed")
            return {seq.annotated[0]: read_annotation(seq.annotation_path(seq.annotated[0]), self.binary)}
        masks: dict[str, np.ndarray] = {}
        for stem in sorted(set(seq.objects.values())):
            new = [k for k, f in seq.objects.items() if f == stem]
            path = seq.annotation_path(stem)
            if not path.is_file():
                raise InputError(f"{seq.name}: meta.json gives objects {new} on frame {stem} but {path} does not exist")
            ids = read_annotation(path, False)
            masks[stem] = np.where(np.isin(ids, new), ids, 0).astype(np.uint8)
        return masks


def _stems(folder: Path, suffixes: tuple[str, ...]) -> list[str]:
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.iterdir() if p.suffix.lower() in suffixes and not p.name.startswith("."))


def _subdirs(folder: Path) -> list[str]:
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _is_ytvos(folder: Path, need_meta: bool) -> bool:
    """A YouTube-VOS split folder: ``meta.json``, or (when it is not needed) frames directly in
    ``JPEGImages/<video>/`` next to ``Annotations/``."""
    if (folder / "meta.json").is_file():
        return True
    jpeg = folder / "JPEGImages"
    if need_meta or not (jpeg.is_dir() and (folder / "Annotations").is_dir()):
        return False
    first = next((p for p in sorted(jpeg.iterdir()) if p.is_dir()), None)
    return first is not None and any(first.glob("*.jpg"))


def _find_ytvos_dir(root: Path, split: str, need_meta: bool) -> Path | None:
    for folder in (root, root / split, root / "valid" if split == "val" else root / split):
        if _is_ytvos(folder, need_meta):
            return folder
    return None


def _pick_resolution(root: Path, resolution: str | None) -> str:
    available = _subdirs(root / "Annotations")
    if not available:
        raise InputError(f"no Annotations/<resolution>/ folders under {root}; point --root at a DAVIS folder")
    if resolution is not None:
        if resolution not in available:
            raise InputError(f"resolution {resolution!r} not found under {root / 'Annotations'}; available: {', '.join(available)}")
        return resolution
    if "480p" in available:
        return "480p"
    if len(available) == 1:
        return available[0]
    raise InputError(f"several resolutions under {root / 'Annotations'} ({', '.join(available)}); choose one with --resolution")


def _split_candidates(root: Path, kind: str, split: str, resolution: str) -> list[Path]:
    sets = root / "ImageSets"
    if kind == "davis17":
        return [sets / "2017" / f"{split}.txt"]
    return [
        sets / "2016" / f"{split}.txt",
        sets / resolution / f"{split}.txt",
        sets / "1080p" / f"{split}.txt",
        sets / "480p" / f"{split}.txt",
    ]


def _detect_davis_kind(root: Path, split: str, resolution: str) -> str:
    if (root / "ImageSets" / "2017" / f"{split}.txt").is_file():
        return "davis17"
    if any(p.is_file() for p in _split_candidates(root, "davis16", split, resolution)):
        return "davis16"
    ann = root / "Annotations" / resolution
    for seq in _subdirs(ann):
        stems = _stems(ann / seq, (".png",))
        if stems:
            raw = read_index_png(ann / seq / f"{stems[0]}.png")
            return "davis16" if set(np.unique(raw).tolist()) <= {0, VOID_ID} else "davis17"
    raise InputError(f"no annotation PNGs under {ann}")


def _open_davis(root: Path, kind: str, split: str, resolution: str | None, only: list[str] | None, every_sequence: bool) -> Dataset:
    res = _pick_resolution(root, resolution)
    if kind == "auto":
        kind = _detect_davis_kind(root, split, res)
    ann_root = root / "Annotations" / res
    img_root = root / "JPEGImages" / res
    split_file = next((p for p in _split_candidates(root, kind, split, res) if p.is_file()), None)
    folders = _subdirs(ann_root)
    if every_sequence:
        names = folders
    elif split_file is None:
        tried = ", ".join(str(p.relative_to(root)) for p in _split_candidates(root, kind, split, res))
        log.warning("no split file for %r (looked for %s); using every sequence folder in %s (%d)", split, tried, ann_root, len(folders))
        names = folders
    else:
        names = read_split_file(split_file)
        missing = [n for n in names if n not in folders and (not only or n in only)]
        if missing:
            more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
            raise InputError(
                f"{len(missing)} sequence(s) of {split_file} have no annotations in {ann_root}: "
                f"{', '.join(missing[:3])}{more}; complete the dataset or choose sequences with --sequences"
            )
    seqs = []
    for name in names:
        image_dir = img_root / name
        seqs.append(
            SequenceInfo(
                name=name,
                annotation_dir=ann_root / name,
                image_dir=image_dir if image_dir.is_dir() else None,
                annotated=_stems(ann_root / name, (".png",)),
                frames=_stems(image_dir, IMAGE_SUFFIXES),
            )
        )
    return Dataset(kind, root, split, res, seqs)


def _open_ytvos(split_dir: Path, root: Path, split: str) -> Dataset:
    if not (split_dir / "meta.json").is_file():  # a training folder: every annotated video, objects from the first frame
        names = _subdirs(split_dir / "Annotations")
        videos: dict[str, dict] = {}
    else:
        try:
            meta = json.loads((split_dir / "meta.json").read_text(encoding="utf-8"))
            videos = meta["videos"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InputError(
                f"cannot read {split_dir / 'meta.json'}: {exc}; it must be YouTube-VOS meta.json with a 'videos' map"
            ) from None
        names = sorted(videos)
    seqs = []
    for name in names:
        objects: dict[int, str] = {}
        submit: set[str] = set()
        for oid, obj in videos.get(name, {}).get("objects", {}).items():
            frames = sorted(str(f) for f in obj.get("frames", []))
            if frames:
                objects[int(oid)] = frames[0]
                submit.update(frames)
        image_dir = split_dir / "JPEGImages" / name
        seqs.append(
            SequenceInfo(
                name=name,
                annotation_dir=split_dir / "Annotations" / name,
                image_dir=image_dir if image_dir.is_dir() else None,
                annotated=_stems(split_dir / "Annotations" / name, (".png",)),
                frames=_stems(image_dir, IMAGE_SUFFIXES),
                objects=dict(sorted(objects.items())) if videos else None,
                submit=sorted(submit) if videos else None,
            )
        )
    return Dataset("ytvos", root, split_dir.name if split_dir != root else split, None, seqs)


def _open_clip(root: Path) -> Dataset:
    seq = SequenceInfo(
        name=root.name,
        annotation_dir=root / "Annotations",
        image_dir=root / "JPEGImages",
        annotated=_stems(root / "Annotations", (".png",)),
        frames=_stems(root / "JPEGImages", IMAGE_SUFFIXES),
    )
    return Dataset("davis17", root, "clip", None, [seq])


def open_dataset(
    root: str | os.PathLike[str],
    *,
    kind: str = "auto",
    split: str = "val",
    resolution: str | None = None,
    sequences: list[str] | None = None,
    every_sequence: bool = False,
    need_meta: bool = True,
) -> Dataset:
    """Open a benchmark (or training) folder.

    Args:
        root: dataset root (the folder holding ``Annotations`` or ``meta.json``).
        kind: ``davis17``, ``davis16``, ``ytvos`` or ``auto`` (from the files present).
        split: split name (``val``, ``train``, ``test-dev``, ``valid`` ...).
        resolution: DAVIS resolution folder; ``480p`` or the only one present when None.
        sequences: keep only these sequences (in this order).
        every_sequence: every sequence folder, whatever the split file lists (``split`` still
            decides the DAVIS kind and the YouTube-VOS folder).
        need_meta: a YouTube-VOS folder must have ``meta.json`` (benchmarks: it says where each
            object is given and which frames a submission holds); without it (training sets),
            its videos are the annotation folders and objects are those of the first frame.

    Raises:
        InputError: the folder is not a benchmark of that kind, or a sequence is missing.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"dataset root not found: {root}")
    if kind not in (*KINDS, "auto"):
        raise InputError(f"unknown dataset {kind!r}; choose one of: auto, {', '.join(KINDS)}")
    ytvos_dir = _find_ytvos_dir(root, split, need_meta) if kind in ("ytvos", "auto") else None
    if kind == "ytvos" and ytvos_dir is None:
        raise InputError(f"no meta.json in {root} or {root / split}; point --root at a YouTube-VOS folder")
    if kind in ("davis17", "auto") and (root / "Annotations").is_dir() and _stems(root / "JPEGImages", IMAGE_SUFFIXES):
        ds = _open_clip(root)
    elif ytvos_dir is not None:
        ds = _open_ytvos(ytvos_dir, root, split)
    else:
        ds = _open_davis(root, kind, split, resolution, sequences, every_sequence)
    if sequences:
        known = {s.name: s for s in ds.sequences}
        unknown = [n for n in sequences if n not in known]
        if unknown:
            raise InputError(f"sequence(s) not in {ds.kind} {ds.split}: {', '.join(unknown)}")
        ds.sequences = [known[n] for n in sequences]
    if not ds.sequences:
        raise InputError(f"no sequences found in {root} for split {split!r}")
    return ds
