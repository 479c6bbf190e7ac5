"""Training data: video sequences in memory and deterministic sampling of training clips.

Readers (:func:`load_dataset`) accept three layouts:

* DAVIS 2016 / 2017: ``ROOT/JPEGImages/<res>/<seq>/00000.jpg`` and
  ``ROOT/Annotations/<res>/<seq>/00000.png`` with ``ROOT/ImageSets/{2016,2017}/train.txt``.
  ``<res>`` is found automatically (``480p``, ``240p``, ``Full-Resolution`` or the only folder).
  DAVIS 2016 binary 0/255 masks are read as object 1; DAVIS 2017 palette indices are object ids
  and 255 is void.
* YouTube-VOS: ``ROOT/train/JPEGImages/<video>/<frame>.jpg`` with
  ``ROOT/train/Annotations/<video>/<frame>.png`` (or ``ROOT`` already pointing at ``train``).
  Only frames that have an annotation are kept (YouTube-VOS annotates every 5th frame).

Every frame is kept in memory as uint8 (the 240p DAVIS 2016 train set is about 640 MB).

Sampling is a pure function of ``(seed, step)`` (:meth:`ClipSampler.sample`): the clip drawn at
step ``s`` does not depend on what was drawn before, so a resumed run sees exactly the same data
order as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
from PIL import Image

from ..errors import InputError
from ..io.masks import VOID_ID

_RES_PREFERENCE = ("480p", "240p", "Full-Resolution")


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


@dataclasses.dataclass
class Clip:
    """A training clip: a few consecutive frames with contiguous object ids.

    Attributes:
        images: ``(L, H, W, 3)`` uint8 RGB.
        labels: ``(L, H, W)`` uint8, 0 = background, 1..K = objects present in frame 0, 255 = void.
            Objects absent from the first frame are set to background (semi-supervised protocol).
        num_objects: K.
        name: source sequence (for logs).
    """

    images: np.ndarray
    labels: np.ndarray
    num_objects: int
    name: str = ""

    def __len__(self) -> int:
        return int(self.images.shape[0])


# --------------------------------------------------------------------------------------------
# readers


def _read_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"), dtype=np.uint8)


def _read_label(path: Path) -> np.ndarray:
    """An annotation PNG as object ids (binary 0/255 grayscale -> ids 0/1; palette -> indices)."""
    with Image.open(path) as img:
        mode = img.mode
        arr = np.asarray(img.convert("L") if mode not in ("P", "L") else img, dtype=np.uint8)
    if mode == "P":
        return arr.copy()
    # Grayscale: DAVIS 2016 binary masks (0/255) are object 1, anything else > 0 too.
    values = np.unique(arr)
    if len(values) <= 2:
        return (arr > 127).astype(np.uint8)
    return arr.copy()


def _resize_pair(img: np.ndarray, lab: np.ndarray, height: int) -> tuple[np.ndarray, np.ndarray]:
    h, w = lab.shape
    if h == height:
        return img, lab
    new_w = max(1, round(w * height / h))
    img = np.asarray(Image.fromarray(img).resize((new_w, height), Image.BILINEAR))
    lab = np.asarray(Image.fromarray(lab).resize((new_w, height), Image.NEAREST))
    return img, lab


def _davis_res_dir(root: Path) -> str:
    jpeg = root / "JPEGImages"
    subs = sorted(p.name for p in jpeg.iterdir() if p.is_dir())
    for res in _RES_PREFERENCE:
        if res in subs and (root / "Annotations" / res).is_dir():
            return res
    candidates = [s for s in subs if (root / "Annotations" / s).is_dir()]
    if len(candidates) == 1:
        return candidates[0]
    raise InputError(f"cannot tell the resolution folder under {jpeg} (found {subs}); keep one of {list(_RES_PREFERENCE)}")


def _davis_names(root: Path, res: str, split: str) -> list[str]:
    for year in ("2017", "2016"):
        f = root / "ImageSets" / year / f"{split}.txt"
        if f.is_file():
            return [ln.split()[0].strip("/").split("/")[-1] for ln in f.read_text().splitlines() if ln.strip()]
    return sorted(p.name for p in (root / "Annotations" / res).iterdir() if p.is_dir())


def detect_layout(root: str | Path) -> tuple[str, Path]:
    """Return ``("davis" | "youtube", base)`` for a dataset root; InputError when neither fits."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"training data folder {root} does not exist; give a DAVIS or YouTube-VOS root")
    if (root / "JPEGImages").is_dir() and (root / "Annotations").is_dir():
        jpeg = root / "JPEGImages"
        first = next((p for p in sorted(jpeg.iterdir()) if p.is_dir()), None)
        if first is not None and any(first.glob("*.jpg")):
            return "youtube", root  # YouTube-VOS train/ folder: JPEGImages/<video>/*.jpg
        return "davis", root
    if (root / "train" / "JPEGImages").is_dir():
        return "youtube", root / "train"
    raise InputError(f"{root} is neither a DAVIS root (JPEGImages/, Annotations/) nor a YouTube-VOS root (train/JPEGImages/)")


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
    """Read every annotated sequence of a DAVIS or YouTube-VOS training set into memory.

    Args:
        root: dataset root (see module docstring for the layouts).
        split: DAVIS ImageSets split name (ignored for YouTube-VOS).
        include: keep only these sequence names (in this order); None keeps the split.
        exclude: drop these names (e.g. a held-out validation split).
        height: resize frames to this height (aspect kept; masks nearest); None keeps the size.
        max_sequences: read at most this many (tests, quick runs).
        progress: called with each sequence name as it is read.

    Returns:
        The sequences, in split order. Sequences whose frames and masks cannot be paired are
        skipped; an empty result raises InputError.
    """
    layout, base = detect_layout(root)
    if layout == "davis":
        res = _davis_res_dir(base)
        img_root, ann_root = base / "JPEGImages" / res, base / "Annotations" / res
        names = _davis_names(base, res, split)
    else:
        img_root, ann_root = base / "JPEGImages", base / "Annotations"
        names = sorted(p.name for p in ann_root.iterdir() if p.is_dir())
    if include is not None:
        wanted = list(include)
        missing = [n for n in wanted if not (ann_root / n).is_dir()]
        if missing:
            raise InputError(f"sequences {missing} not found under {ann_root}; check the split file")
        names = wanted
    drop = set(exclude)
    names = [n for n in names if n not in drop]
    if max_sequences is not None:
        names = names[:max_sequences]
    out: list[VideoSequence] = []
    for name in names:
        if progress is not None:
            progress(name)
        ann_files = sorted((ann_root / name).glob("*.png"))
        imgs, labs = [], []
        for af in ann_files:
            jf = img_root / name / (af.stem + ".jpg")
            if not jf.is_file():
                continue
            img, lab = _read_rgb(jf), _read_label(af)
            if img.shape[:2] != lab.shape:
                continue
            if height is not None:
                img, lab = _resize_pair(img, lab, height)
            imgs.append(img)
            labs.append(lab)
        if len(imgs) >= 2:
            out.append(VideoSequence(name, np.stack(imgs), np.stack(labs)))
    if not out:
        raise InputError(f"no annotated sequences found under {root}; check the folder layout (DAVIS or YouTube-VOS)")
    return out


def read_split_file(path: str | Path) -> list[str]:
    """Sequence names listed one per line (``#`` comments allowed)."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [ln.split("#", 1)[0].strip() for ln in lines if ln.split("#", 1)[0].strip()]


def davis16_val_split() -> list[str]:
    """The fixed 5-sequence validation split held out of ``davis16-train-240p`` (shipped file)."""
    return read_split_file(Path(__file__).resolve().parents[1] / "data" / "davis16_train240p_val.txt")


# --------------------------------------------------------------------------------------------
# sampling


def relabel_clip(labels: np.ndarray, max_objects: int | None = None, rng: np.random.Generator | None = None) -> tuple[np.ndarray, int]:
    """Renumber the objects of frame 0 as 1..K; later-appearing objects become background.

    Args:
        labels: ``(L, H, W)`` uint8 ids (255 void kept).
        max_objects: keep at most this many objects (chosen with ``rng``, else the first ones).

    Returns:
        ``(labels, K)`` with contiguous ids.
    """
    first = [int(v) for v in np.unique(labels[0]) if v not in (0, VOID_ID)]
    if max_objects is not None and len(first) > max_objects:
        if rng is not None:
            first = sorted(rng.choice(first, size=max_objects, replace=False).tolist())
        else:
            first = first[:max_objects]
    lut = np.zeros(256, np.uint8)
    lut[VOID_ID] = VOID_ID
    for k, oid in enumerate(first, start=1):
        lut[oid] = k
    return lut[labels], len(first)


class ClipSampler:
    """Draws clips of ``length`` consecutive frames from a list of sequences.

    Args:
        sequences: the training sequences.
        length: frames per clip (AGSS-VOS: 8; embedding: T + 1 = 4).
        seed: base seed; the clip of step ``s`` is drawn from ``np.random.default_rng([seed, s])``.
        max_objects: at most this many objects per clip.
        max_skip: frames between consecutive clip frames are drawn in 1..max_skip (1 = adjacent).
        weights: per-sequence sampling weights (default: proportional to length, so every frame
            is equally likely to start a clip).
        min_fg_pixels: a clip's first frame must contain at least this many object pixels; up to
            ten draws are tried.
    """

    def __init__(
        self,
        sequences: Sequence[VideoSequence],
        length: int,
        *,
        seed: int = 0,
        max_objects: int | None = None,
        max_skip: int = 1,
        weights: Sequence[float] | None = None,
        min_fg_pixels: int = 16,
    ) -> None:
        if not sequences:
            raise InputError("no training sequences to sample from")
        self.sequences = list(sequences)
        self.length = int(length)
        self.seed = int(seed)
        self.max_objects = max_objects
        self.max_skip = max(1, int(max_skip))
        w = np.asarray(weights if weights is not None else [max(len(s) - 1, 1) for s in self.sequences], dtype=np.float64)
        self.p = w / w.sum()
        self.min_fg_pixels = min_fg_pixels

    def rng(self, step: int, stream: int = 0) -> np.random.Generator:
        """The generator for ``step`` (``stream`` separates independent draws of one step)."""
        return np.random.default_rng([self.seed, int(step), int(stream)])

    def sample(self, step: int, index: int = 0) -> Clip:
        """The ``index``-th clip of training step ``step`` (pure function of seed, step, index)."""
        rng = self.rng(step, 1000 + index)
        clip = None
        for _ in range(10):
            seq = self.sequences[int(rng.choice(len(self.sequences), p=self.p))]
            clip = self._draw(seq, rng)
            if clip.num_objects > 0 and int(((clip.labels[0] > 0) & (clip.labels[0] != VOID_ID)).sum()) >= self.min_fg_pixels:
                return clip
        assert clip is not None
        return clip

    def _draw(self, seq: VideoSequence, rng: np.random.Generator) -> Clip:
        n = len(seq)
        skips = rng.integers(1, self.max_skip + 1, size=max(self.length - 1, 0))
        span = int(skips.sum())
        while span >= n and skips.max() > 1:  # sequence too short for these skips: shrink them
            skips = np.maximum(skips - 1, 1)
            span = int(skips.sum())
        if span >= n:  # shorter than the clip: repeat frames at the end (ping-pong not needed)
            idx = np.minimum(np.arange(self.length), n - 1)
        else:
            start = int(rng.integers(0, n - span))
            idx = start + np.concatenate([[0], np.cumsum(skips)]).astype(int)
        labels, k = relabel_clip(seq.labels[idx], self.max_objects, rng)
        return Clip(seq.images[idx].copy(), labels, k, seq.name)
