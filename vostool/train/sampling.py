"""Deterministic sampling of training clips from videos held in memory
(:class:`~vostool.datasets.sequences.VideoSequence`, read by :func:`vostool.datasets.load_dataset`).

Sampling is a pure function of ``(seed, step)`` (:meth:`ClipSampler.sample`): the clip drawn at
step ``s`` does not depend on what was drawn before, so a resumed run sees exactly the same data
order as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from ..datasets.sequences import VideoSequence
from ..errors import InputError
from ..io.masks import VOID_ID


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
    """Draws clips of ``length`` frames in temporal order from a list of sequences.

    Args:
        sequences: the training sequences.
        length: frames per clip (AGSS-VOS: 8; embedding: T + 1 = 4).
        seed: base seed; the clip of step ``s`` is drawn from ``np.random.default_rng([seed, s])``.
        max_objects: at most this many objects per clip.
        max_skip: frames between consecutive clip frames are drawn in 1..max_skip (1 = adjacent).
        max_span: when given, clips are drawn as temporal segments instead (TSN's sampling, as
            the embedding method builds its support set): a span of ``length - 1 ..
            min(max_span, frames - 1)`` frames, its first and last frame, and one frame drawn
            in each of ``length - 2`` equal segments between them (``max_skip`` is then unused).
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
        max_span: int | None = None,
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
        self.max_span = None if max_span is None else max(1, int(max_span))
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
        if self.max_span is not None and n >= self.length:
            idx = self._segments(n, rng)
            labels, k = relabel_clip(seq.labels[idx], self.max_objects, rng)
            return Clip(seq.images[idx].copy(), labels, k, seq.name)
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

    def _segments(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Frame indices of a TSN-style clip in a sequence of ``n >= length`` frames (see ``max_span``)."""
        assert self.max_span is not None
        inner = self.length - 2
        span = int(rng.integers(self.length - 1, max(min(self.max_span, n - 1), self.length - 1) + 1))
        start = int(rng.integers(0, n - span))
        if inner <= 0:
            return np.array([start, start + span][: self.length])
        # Segment j of the open interval (start, start + span) holds frames lo_j .. hi_j - 1.
        edges = start + 1 + np.floor(np.arange(inner + 1) * (span - 1) / inner).astype(int)
        mids = [int(rng.integers(lo, max(hi, lo + 1))) for lo, hi in zip(edges[:-1], edges[1:])]
        return np.array([start, *mids, start + span])
