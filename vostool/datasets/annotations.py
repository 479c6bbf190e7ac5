"""Ground-truth annotations of DAVIS / YouTube-VOS as object ids, with the benchmarks' void rule.

DAVIS 2017 and YouTube-VOS annotations are palette PNGs whose index is the object id; 255 is
*void* (not scored, not an object). DAVIS 2016 annotations are binary (0/255): 255 is object 1.
"""

from __future__ import annotations

import os

import cv2
import numpy as np

from ..io.masks import VOID_ID, BoxedPlane, read_index_png, read_index_png_boxed


def binary_ids(raw: np.ndarray) -> np.ndarray:
    """``(H, W)`` uint8 stored values -> ids of a one-object (DAVIS 2016) mask, 0/1 uint8.

    0/255 (or 0/1) files: every nonzero pixel is object 1. Palette files with several ids and
    void: the union of the objects, void (255) excluded. A 0/1 ``raw`` is returned as it is.
    """
    top = raw.max(initial=0)
    if top <= 1:  # already 0/1 (vostool's own masks)
        return raw
    if top == VOID_ID:
        objects = cv2.inRange(raw, 1, VOID_ID - 1)
        if cv2.countNonZero(objects):
            return objects // VOID_ID
    return cv2.threshold(raw, 0, 1, cv2.THRESH_BINARY)[1]


def read_annotation(path: str | os.PathLike[str], binary: bool, *, keep_void: bool = False) -> np.ndarray:
    """Ground-truth ids ``(H, W)`` uint8.

    Args:
        path: the annotation PNG.
        binary: a DAVIS 2016 (one-object) annotation (:func:`binary_ids`).
        keep_void: keep void pixels as 255 (training losses ignore them); by default they are
            background, as the semi-supervised evaluation sees them.
    """
    return _annotation_ids(read_index_png(path), binary, keep_void)


def read_annotation_boxed(path: str | os.PathLike[str], binary: bool) -> BoxedPlane:
    """:func:`read_annotation` (void as background) as a :class:`~vostool.io.masks.BoxedPlane`."""
    raw = read_index_png_boxed(path)
    if raw.box is None:
        return raw
    return BoxedPlane(_annotation_ids(raw.crop, binary, False), raw.box, raw.shape)


def _annotation_ids(raw: np.ndarray, binary: bool, keep_void: bool) -> np.ndarray:
    if binary:
        return binary_ids(raw)
    if not keep_void and raw.max() == VOID_ID:
        raw = raw.copy()
        raw[raw == VOID_ID] = 0
    return raw
