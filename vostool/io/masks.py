"""Object masks: reading every common mask format into object ids, writing index PNGs.

An *index mask* is an ``(H, W)`` uint8 array whose value is the object id (0 = background).
DAVIS 2017 marks "void" pixels with 255; they are not an object and read as background.

:func:`read_mask` gives exactly the objects in the file, or fails with one line saying why:

* palette PNG (mode ``P``): the index is the object id; the palette is kept for writing (an
  indexed copy of a JPEG, with its noise, is refused as below);
* grey (``1``/``L``/``I;16``/``I``/``F``): values only in {0, 255} (or {0, 1}) are a binary mask
  (object 1); otherwise every value is an object id (255 = void), however many there are.
  16-bit files holding 8-bit data scaled by 257 are read as that data; ids above 255 (vostool
  writes 8-bit palette PNGs) and non-integer values are refused;
* ``LA``: the grey channel as above, pixels with alpha < 128 are background;
* RGB / RGBA: each colour is an object (an RGB image whose pixels are all grey reads as grey).
  Colours that are all entries of the DAVIS palette keep their DAVIS index as id; other colours
  are numbered 1..N in order of their (R, G, B) value. Pixels with alpha < 128 are background.

Anti-aliased edges (grey or RGB) are snapped, never counted as objects: a colour is an edge
*blend* when most of its pixels lie strictly between two differing opposite neighbours (on the
colour segment joining them), it owns no pixel whose 3x3 neighbourhood is all its own colour,
and it forms no line of its own (a thin object, 1-2 px wide, is a line of pixels of one colour
that is not such a blend). Blend pixels take the nearest object colour found within two pixels.
A mask without blends is read exactly as stored, single pixels included.

Lossy content is refused: a JPEG file (by its content, whatever its suffix) and a PNG with the
small-amplitude colour noise JPEG compression or smooth resampling leaves at edges (many pixels
that are strict local extrema within a few levels of their neighbours; anti-aliasing makes
almost none).
"""

from __future__ import annotations

import functools
import os
import struct
import threading
import warnings
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from ..errors import InputError
from .atomic import write_bytes_atomic

if TYPE_CHECKING:
    from PIL import Image

VOID_ID = 255
MAX_OBJECTS = 254

_NEIGHBOURS = [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)]
_OPPOSITE = [(3, 4), (1, 6), (0, 7), (2, 5)]  # indices into _NEIGHBOURS: left/right, up/down, two diagonals
_BLEND_TOLERANCE = (3.0, 0.25)
_MIN_LINE_PX = 3
"""Pixels (with two same-colour neighbours, not blends) that make a colour without a 3x3 core a
thin object, unless the colour is a blend of two object colours found within ``_SNAP_RADIUS``."""
_NOISE_AMPLITUDE = 8
_NOISE_MIN_PX = 10
_NOISE_EDGE_FRACTION = 0.01
"""Lossy if at least this fraction of the edge pixels (and ``_NOISE_MIN_PX``) are small-amplitude
strict extrema: JPEG leaves 3-11 %, anti-aliasing, blur and downscaling at most 0.4 %."""
_SHADE = 24
"""In a mask with soft edges, a colour within this (in every channel) of an object colour is a
shade of that object (edge shading, resampling overshoot), not another object."""
_SNAP_RADIUS = 3
_HARD_MASK_HINT = "save a hard mask, one exact colour per object, as PNG (resize masks with nearest-neighbour)"
_MAX_FAR_FRACTION = 0.25
"""Soft pixels farther than ``_SNAP_RADIUS`` from every object colour: at most a few percent
in anti-aliased, downscaled or slightly blurred masks, nearly all in a soft matte or grey ramp
(refused: its objects are not in the file)."""


def _davis_palette() -> np.ndarray:
    """The PASCAL VOC / DAVIS bit-interleaved colour map, ``(256, 3)`` uint8."""
    pal = np.zeros((256, 3), dtype=np.uint8)
    for i in range(256):
        c, r, g, b = i, 0, 0, 0
        for j in range(7, -1, -1):
            r |= ((c >> 0) & 1) << j
            g |= ((c >> 1) & 1) << j
            b |= ((c >> 2) & 1) << j
            c >>= 3
        pal[i] = (r, g, b)
    return pal


DAVIS_PALETTE: np.ndarray = _davis_palette()
"""``(256, 3)`` uint8: entry ``i`` is the colour of object id ``i`` in DAVIS annotations."""


@dataclass
class IndexMask:
    """An index mask and the palette to write it with.

    Attributes:
        ids: ``(H, W)`` uint8, 0 = background, 1..254 = object ids (void already removed).
        palette: ``(256, 3)`` uint8 colours for ids, or None when the source had no colours.
        void: ``(H, W)`` bool of pixels marked void (255) in the source, or None.
        kind: how the source was read, e.g. ``"palette PNG"``, ``"grey index"``,
            ``"RGB colours, 212 anti-aliased edge colours snapped"`` (for messages and run.json).
        source: the file it was read from (for messages), or None.
    """

    ids: np.ndarray
    palette: np.ndarray | None = None
    void: np.ndarray | None = None
    kind: str = "index array"
    source: str | None = None

    @property
    def object_ids(self) -> list[int]:
        """Sorted ids of the objects present (background excluded)."""
        return [int(v) for v in np.unique(self.ids) if v != 0]

    @property
    def num_objects(self) -> int:
        """How many objects the mask holds (background and void excluded)."""
        return len(self.object_ids)

    def summary(self) -> str:
        """One line for stderr, e.g. ``"3 objects (ids 1, 2, 5; palette PNG)"``."""
        ids = self.object_ids
        shown = ", ".join(str(i) for i in ids[:8]) + (", ..." if len(ids) > 8 else "")
        noun = "object" if len(ids) == 1 else "objects"
        return f"{len(ids)} {noun} ({'ids ' + shown + '; ' if ids else ''}{self.kind})"

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` like PIL."""
        return int(self.ids.shape[1]), int(self.ids.shape[0])


def ids_from_array(ids: object, *, what: str = "mask") -> IndexMask:
    """Check an array of object ids given through the Python API and wrap it as an IndexMask.

    Args:
        ids: ``(H, W)`` array-like of integer (or bool) object ids: 0 = background,
            1..254 = objects, 255 = void (not an object).
        what: how to name the array in messages (e.g. ``"mask for frame 0"``).

    Raises:
        InputError: not 2-D, not of an integer dtype (floats are refused, not rounded), or a
            value outside 0..255 (ids are never wrapped modulo 256).
    """
    arr = np.asarray(ids)
    if arr.ndim != 2:
        raise InputError(f"{what} must be a 2-D array of object ids (H, W), got shape {arr.shape}")
    if arr.dtype == bool:
        return IndexMask(arr.astype(np.uint8), None, None, "binary array")
    if not np.issubdtype(arr.dtype, np.integer):
        raise InputError(
            f"{what} has dtype {arr.dtype}; give object ids as an integer array (0 = background, 1..254 = objects), "
            "e.g. (prob > 0.5).astype(np.uint8)"
        )
    if arr.size and (int(arr.min()) < 0 or int(arr.max()) > VOID_ID):
        bad = int(arr.max()) if int(arr.max()) > VOID_ID else int(arr.min())
        raise InputError(f"{what} holds id {bad}; object ids must be 1..254 (0 = background, 255 = void): renumber the objects")
    arr = arr.astype(np.uint8)
    void = arr == VOID_ID
    return IndexMask(np.where(void, 0, arr).astype(np.uint8), None, void if void.any() else None)


def _open(path: str | os.PathLike[str]) -> Image.Image:
    from PIL import Image  # here: the scorer's fast path never needs PIL, and it takes 7 ms to import

    p = Path(path)
    if not p.exists():
        raise InputError(f"mask file not found: {p}")
    if p.is_dir():
        raise InputError(f"mask path is a folder, not an image: {p} (use --masks DIR for a folder of masks)")
    try:
        with warnings.catch_warnings():  # PIL warns (on stderr) about odd but readable files
            warnings.simplefilter("ignore")
            img = Image.open(p)
            img.load()
    except Exception as exc:  # PIL raises many types for unreadable files
        raise InputError(f"cannot read mask {p}: not an image file PIL can open ({type(exc).__name__})") from None
    return img


# --------------------------------------------------------------------------------------------
# Colour analysis shared by grey and RGB masks
# --------------------------------------------------------------------------------------------


def _codes(vals: np.ndarray) -> np.ndarray:
    """``(H, W, C)`` int64 channel values -> ``(H, W)`` int64 code, one per distinct colour."""
    codes = np.zeros(vals.shape[:2], np.int64)
    for c in range(vals.shape[2]):
        codes = (codes << 16) | vals[..., c]
    return codes


def _between(c: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Whether colours ``c`` lie strictly inside the segments ``a``-``b`` (``(..., C)`` arrays).

    Grey (C = 1): strictly between. RGB: the projection falls strictly inside and the colour is
    at most ``3 + 0.25 * |b - a|`` off the straight line (rounding, blending in linear light).
    """
    a, b, c = a.astype(np.float64), b.astype(np.float64), c.astype(np.float64)
    d, e = b - a, c - a
    length2 = (d * d).sum(-1)
    t = (e * d).sum(-1) / np.maximum(length2, 1.0)
    inside = (t > 0) & (t < 1)
    if c.shape[-1] > 1:
        off = np.sqrt(((e - t[..., None] * d) ** 2).sum(-1))
        inside &= off <= _BLEND_TOLERANCE[0] + _BLEND_TOLERANCE[1] * np.sqrt(length2)
    return inside


def _window(labels: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> Iterator[np.ndarray]:
    """``labels`` at every offset within ``_SNAP_RADIUS`` of the points (clamped at the border)."""
    h, w = labels.shape
    r = _SNAP_RADIUS
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            yield labels[(ys + dy).clip(0, h - 1), (xs + dx).clip(0, w - 1)]


@dataclass
class _Colours:
    """Per-colour statistics of a mask: ``uniq`` codes, their ``values`` ``(K, C)``, the
    ``(H, W)`` ``labels`` (index into ``uniq``), and for each colour: pixels with a uniform 3x3
    neighbourhood (``core``), blend pixels, and line pixels (not blends, two same neighbours)."""

    uniq: np.ndarray
    values: np.ndarray
    labels: np.ndarray
    counts: np.ndarray
    core: np.ndarray
    blend: np.ndarray
    line: np.ndarray
    edge_ys: np.ndarray
    edge_xs: np.ndarray


def _analyse(vals: np.ndarray, path: str | os.PathLike[str]) -> _Colours:
    """Colour statistics of ``(H, W, C)`` int64 ``vals``; refuses JPEG-like noise (InputError)."""
    h, w, nc = vals.shape
    codes = _codes(vals)
    uniq, labels = np.unique(codes.reshape(-1), return_inverse=True)
    labels = labels.reshape(h, w)
    pad_codes = np.pad(codes, 1, mode="edge")
    pad_vals = np.pad(vals, ((1, 1), (1, 1), (0, 0)), mode="edge")
    interior = np.ones((h, w), bool)
    for dy, dx in _NEIGHBOURS:
        interior &= pad_codes[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] == codes
    ys, xs = np.nonzero(~interior)  # only edge pixels can be blends, lines or noise
    v, own = vals[ys, xs], codes[ys, xs]  # (M, C), (M,)
    nb = np.stack([pad_vals[ys + 1 + dy, xs + 1 + dx] for dy, dx in _NEIGHBOURS])  # (8, M, C)
    nb_codes = np.stack([pad_codes[ys + 1 + dy, xs + 1 + dx] for dy, dx in _NEIGHBOURS])  # (8, M)

    extremum = ((v > nb).all(0) | (v < nb).all(0)).any(-1)
    amplitude = np.abs(v[None] - nb).max(-1).min(0)
    noise = int((extremum & (amplitude <= _NOISE_AMPLITUDE)).sum())
    if noise >= _NOISE_MIN_PX and noise >= _NOISE_EDGE_FRACTION * ys.size:
        raise InputError(
            f"mask {path} has colour noise at object edges ({noise} pixels), as JPEG compression or smooth resampling leaves, "
            f"so its objects cannot be read exactly; {_HARD_MASK_HINT}"
        )
    blend = np.zeros(ys.size, bool)
    for i, j in _OPPOSITE:
        distinct = (nb_codes[i] != nb_codes[j]) & (nb_codes[i] != own) & (nb_codes[j] != own)
        blend |= distinct & _between(v, nb[i], nb[j])
    line = ~blend & ((nb_codes == own[None]).sum(0) >= 2)
    k, edge = uniq.size, labels[ys, xs]
    values = np.stack([(uniq >> (16 * (nc - 1 - c))) & 0xFFFF for c in range(nc)], axis=1)
    return _Colours(
        uniq=uniq,
        values=values.astype(np.float64),
        labels=labels,
        counts=np.bincount(labels.reshape(-1), minlength=k),
        core=np.bincount(labels[interior], minlength=k),
        blend=np.bincount(edge, weights=blend, minlength=k),
        line=np.bincount(edge, weights=line, minlength=k),
        edge_ys=ys,
        edge_xs=xs,
    )


def _object_colours(col: _Colours) -> np.ndarray:
    """``(K,)`` bool: which colours are objects in a mask with soft edges.

    Objects are the colours with a 3x3 core and thin lines (see ``_MIN_LINE_PX``) of a colour
    that is not a blend of two object colours found next to it; background always is. A shade
    (within ``_SHADE``) of an object colour is no object: of a bigger one anywhere in RGB (edge
    shading, overshoot of smooth resampling), of one next to it in grey (where ids are close).
    """
    core = col.core > 0
    rgb = col.values.shape[1] > 1

    def shade(ci: int, of: np.ndarray) -> bool:
        return bool((np.abs(col.values[of] - col.values[ci]).max(-1) <= _SHADE).any())

    if rgb:
        for ci in np.flatnonzero(core):
            core[ci] = not shade(ci, core & (col.counts > col.counts[ci]))
    thin = ~core & (col.line >= _MIN_LINE_PX)
    edge_labels = col.labels[col.edge_ys, col.edge_xs]
    for li in np.flatnonzero(thin):
        on = edge_labels == li
        near = np.unique(np.concatenate(list(_window(col.labels, col.edge_ys[on], col.edge_xs[on]))))
        near = near[core[near]]
        ia, ib = np.triu_indices(near.size, 1)
        blend = _between(col.values[li][None], col.values[near[ia]], col.values[near[ib]]).any()
        thin[li] = not (blend or shade(li, core if rgb else near))
    is_object = core | thin
    is_object[0] |= col.uniq[0] == 0  # background (black / 0) is always a target
    return is_object


def _snap(col: _Colours, is_object: np.ndarray, path: str | os.PathLike[str]) -> np.ndarray:
    """``(H, W)`` colour codes where each pixel of a non-object colour takes the nearest (in colour)
    object colour within ``_SNAP_RADIUS`` pixels (else in the whole mask); refuses soft mattes."""
    if not is_object.any():
        raise InputError(f"mask {path} has only soft gradients, no object of one colour; threshold it or {_HARD_MASK_HINT}")
    sy, sx = np.nonzero(~is_object[col.labels])
    sv = col.values[col.labels[sy, sx]]
    best = np.full(sy.size, np.inf)
    target = np.zeros(sy.size, np.int64)
    for lab in _window(col.labels, sy, sx):
        dist = np.where(is_object[lab], ((col.values[lab] - sv) ** 2).sum(-1), np.inf)
        better = dist < best
        best[better], target[better] = dist[better], lab[better]
    far = ~np.isfinite(best)
    if far.sum() > _MAX_FAR_FRACTION * far.size:
        raise InputError(
            f"mask {path} has soft gradients ({int(far.sum())} pixels more than {_SNAP_RADIUS} px from any object of one colour), "
            f"as a soft matte or smooth resampling has, so its objects cannot be read exactly; threshold it or {_HARD_MASK_HINT}"
        )
    if far.any():
        obj = np.flatnonzero(is_object)
        target[far] = obj[((sv[far][:, None, :] - col.values[obj][None]) ** 2).sum(-1).argmin(1)]
    out = col.uniq[col.labels]
    out[sy, sx] = col.uniq[target]
    return out


def _clean_colours(vals: np.ndarray, path: str | os.PathLike[str]) -> tuple[np.ndarray, int]:
    """Snap anti-aliased edge colours to object colours; refuse lossy noise and soft mattes.

    Args:
        vals: ``(H, W, C)`` int64 channel values (C = 1 for grey, 3 for RGB).
        path: the file, for messages.

    Returns:
        ``(codes, snapped)``: ``(H, W)`` int64 colour codes (see :func:`_codes`), every pixel
        of an object (or background) colour, and how many edge colours were snapped.
    """
    col = _analyse(vals, path)
    soft = (col.core == 0) & (2 * col.blend >= col.counts)
    if not soft.any():
        return col.uniq[col.labels], 0  # a crisp mask: every colour is an object, exactly as stored
    is_object = _object_colours(col)
    return _snap(col, is_object, path), int((~is_object).sum())


def _grey_values(arr: np.ndarray, path: str | os.PathLike[str]) -> np.ndarray:
    """A grey image of any depth -> ``(H, W)`` int64 values 0..255, or a one-line InputError."""
    if arr.dtype.kind == "f" and not (np.isfinite(arr).all() and np.array_equal(arr, np.round(arr))):
        raise InputError(f"mask {path} holds non-integer values (a float image, e.g. a soft matte); save object ids 1..254 as an 8-bit PNG")
    vals = arr.astype(np.int64)
    if vals.size and int(vals.min()) < 0:
        raise InputError(f"mask {path} holds negative values; object ids must be 1..254 (0 = background): save it as an 8-bit PNG")
    top = int(vals.max()) if vals.size else 0
    if top > VOID_ID:
        if not (vals % 257).any() and top <= 65535:
            return vals // 257  # 8-bit data stored as 16 bits (x257), as image tools convert it
        raise InputError(
            f"mask {path} holds value {top} ({arr.dtype.itemsize * 8}-bit grey, {np.unique(vals).size} distinct values); object ids must be "
            "1..254 (255 = void) as in vostool's 8-bit palette PNGs: renumber the objects 1..254 (or threshold a soft matte) "
            "and save it as an 8-bit PNG"
        )
    return vals


def _grey_mask(gray: np.ndarray, path: str | os.PathLike[str], kind: str) -> IndexMask:
    """``(H, W)`` int64 values 0..255 -> IndexMask (binary 0/255 is object 1, else 255 = void)."""
    codes, snapped = _clean_colours(gray[..., None], path)
    present = set(np.unique(codes).tolist()) - {0}
    note = f", {snapped} anti-aliased edge levels snapped" if snapped else ""
    if present == {VOID_ID}:
        return IndexMask((codes == VOID_ID).astype(np.uint8), None, None, f"{kind}, binary 0/255{note}")
    void = codes == VOID_ID
    ids = np.where(void, 0, codes).astype(np.uint8)
    return IndexMask(ids, None, void if void.any() else None, f"{kind} index{note}")


def _rgb_mask(rgb: np.ndarray, alpha: np.ndarray | None, path: str | os.PathLike[str]) -> IndexMask:
    rgb = rgb.astype(np.int64)
    if alpha is not None:
        rgb = np.where((alpha >= 128)[..., None], rgb, 0)
    if (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all():
        return _grey_mask(rgb[..., 0], path, "grey RGB")
    codes, snapped = _clean_colours(rgb, path)
    colours = [int(c) for c in np.unique(codes) if c != 0]
    if len(colours) > MAX_OBJECTS:
        raise InputError(f"RGB mask {path} has {len(colours)} distinct object colours; at most {MAX_OBJECTS} objects are supported")
    palette = DAVIS_PALETTE.copy()
    davis_codes = {(int(r) << 32) | (int(g) << 16) | int(b): i for i, (r, g, b) in enumerate(DAVIS_PALETTE)}
    if all(davis_codes.get(c, VOID_ID) not in (0, VOID_ID) for c in colours):
        ids_of = {c: davis_codes[c] for c in colours}
    else:
        ids_of = {c: i for i, c in enumerate(colours, start=1)}
        for c, i in ids_of.items():
            palette[i] = ((c >> 32) & 255, (c >> 16) & 255, c & 255)
    lut_codes = np.array([0, *colours], np.int64)
    lut_ids = np.array([0, *(ids_of[c] for c in colours)], np.uint8)
    ids = lut_ids[np.searchsorted(lut_codes, codes)]
    note = f", {snapped} anti-aliased edge colours snapped" if snapped else ""
    return IndexMask(ids, palette, None, f"RGB colours{note}")


def read_mask(path: str | os.PathLike[str]) -> IndexMask:
    """Read a mask file in any supported format (see module docstring) as object ids.

    Returns:
        IndexMask with ``ids`` ``(H, W)`` uint8 (void pixels set to 0, recorded in ``void``),
        ``kind`` saying how the file was read and ``source`` the path; ``num_objects`` is the
        count to report.

    Raises:
        InputError: one line saying why the file cannot give exact objects: missing, not an
            image, a JPEG or lossy-looking content, ids above 255, non-integer values, or an
            unsupported image mode.
    """
    mask = _read_mask(path)
    mask.source = str(path)
    return mask


def _read_mask(path: str | os.PathLike[str]) -> IndexMask:
    img = _open(path)
    if img.format in ("JPEG", "MPO"):
        raise InputError(
            f"mask {path} is a JPEG image: lossy compression changes colours at object edges and adds spurious objects; "
            "save the mask as PNG from the original annotation"
        )
    mode = img.mode
    if mode == "P":
        arr = np.array(img, dtype=np.uint8)
        pal_bytes = img.getpalette() or []
        palette = DAVIS_PALETTE.copy()
        if pal_bytes:
            given = np.array(pal_bytes, dtype=np.uint8).reshape(-1, 3)[:256]
            palette[: len(given)] = given
        if np.unique(arr).size > 2:  # an indexed copy of a JPEG keeps its noise as spurious ids
            _analyse(palette[arr].astype(np.int64), path)
        void = arr == VOID_ID
        ids = np.where(void, 0, arr).astype(np.uint8)
        return IndexMask(ids, palette, void if void.any() else None, "palette PNG" if img.format == "PNG" else "palette image")
    if mode == "1":
        return IndexMask(np.array(img).astype(np.uint8), None, None, "1-bit binary")
    if mode in ("L", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        return _grey_mask(_grey_values(np.array(img), path), path, "grey")
    if mode == "LA":
        arr = np.array(img, dtype=np.uint8)
        return _grey_mask(np.where(arr[..., 1] >= 128, arr[..., 0], 0).astype(np.int64), path, "grey+alpha")
    if mode in ("RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "HSV", "LAB", "PA"):
        if mode == "PA":
            img = img.convert("RGBA")
        alpha = np.array(img.getchannel("A"), dtype=np.uint8) if img.mode == "RGBA" else None
        rgb = np.array(img.convert("RGB"), dtype=np.uint8)
        return _rgb_mask(rgb, alpha, path)
    raise InputError(f"unsupported mask image mode {mode!r} in {path}; save it as a palette, grayscale or RGB PNG")


def encode_png(plane: np.ndarray, palette: np.ndarray | None = None, *, compress_level: int = 1) -> bytes:
    """An ``(H, W)`` uint8 plane as PNG bytes: a palette PNG (colour type 3) when ``palette`` is
    given, else 8-bit grey.

    The format's few chunks are written here around one zlib stream (unfiltered rows, run-length
    strategy) instead of through PIL: on 480p masks this is faster (0.8 vs 1.0 ms) and 3x smaller
    at level 1 (1.8 vs 5.5 kB), and ``zlib`` releases the GIL while it compresses, where PIL's PNG
    encoder holds it: the writer thread then never stalls the frame loop.

    Args:
        plane: ``(H, W)`` uint8 indices or grey levels.
        palette: ``(N, 3)`` uint8 colours (N <= 256), or None for grey.
        compress_level: zlib level (1 is fast and still small for masks).
    """
    h, w = plane.shape
    rows = np.empty((h, w + 1), np.uint8)
    rows[:, 0] = 0  # filter type "None" on every row
    rows[:, 1:] = plane
    z = zlib.compressobj(compress_level, zlib.DEFLATED, 15, 9, zlib.Z_RLE)
    data = z.compress(rows) + z.flush()

    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(body, zlib.crc32(tag)))

    colour = 0 if palette is None else 3
    head = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, colour, 0, 0, 0))
    if palette is not None:
        head += chunk(b"PLTE", np.ascontiguousarray(palette, dtype=np.uint8).tobytes())
    return head + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def write_index_png(
    path: str | os.PathLike[str],
    ids: np.ndarray,
    palette: np.ndarray | None = None,
    *,
    compress_level: int = 1,
) -> None:
    """Write an ``(H, W)`` uint8 index mask as a palette PNG, atomically.

    Args:
        path: destination ``.png``.
        ids: ``(H, W)`` uint8 object ids.
        palette: ``(256, 3)`` uint8 colours; the DAVIS palette when None.
        compress_level: zlib level (1 is fast and still small for masks).
    """
    data = encode_png(np.asarray(ids, dtype=np.uint8), DAVIS_PALETTE if palette is None else palette, compress_level=compress_level)
    write_bytes_atomic(path, data)


def write_gray_png(path: str | os.PathLike[str], gray: np.ndarray, *, compress_level: int = 1) -> None:
    """Write an ``(H, W)`` uint8 grayscale image (mattes, soft scores) as a PNG, atomically."""
    write_bytes_atomic(path, encode_png(np.asarray(gray, dtype=np.uint8), compress_level=compress_level))


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

try:  # libdeflate: the same bytes as zlib's inflate, 3x faster than ISA-L on mask PNGs (the scorer's largest cost)
    from deflate import DeflateError, zlib_decompress

    def _inflate(data: bytes, size: int) -> bytes:
        return zlib_decompress(data, size)

    _INFLATE_ERRORS: tuple[type[Exception], ...] = (DeflateError,)
except ImportError:  # no wheel for this platform

    def _inflate(data: bytes, size: int) -> bytes:
        return zlib.decompress(data)

    _INFLATE_ERRORS = (zlib.error,)


Box = tuple[int, int, int, int]
"""``(x0, y0, x1, y1)``: a rectangle of a plane, exclusive ends."""


@dataclass(frozen=True, eq=False)
class BoxedPlane:
    """An ``(H, W)`` uint8 plane kept as the samples inside a box, every sample outside it 0.

    What the scorer works on: a mask's objects cover a part of the frame, and every
    full-frame pass (finding the box, unfiltering, counting) costs as much as the object's own
    work. Decoding gives the tight box of the nonzero samples (:func:`decode_plane_png_boxed`).

    Attributes:
        crop: ``(y1 - y0, x1 - x0)`` uint8 samples inside ``box`` (possibly a read-only view),
            None when every sample is 0.
        box: where ``crop`` lies, None when every sample is 0. It bounds the nonzero samples,
            and need not be tight after ids are changed inside it.
        shape: ``(H, W)`` of the whole plane.
    """

    crop: np.ndarray | None
    box: Box | None
    shape: tuple[int, int]

    @classmethod
    def of(cls, plane: np.ndarray) -> BoxedPlane:
        """The plane ``(H, W)`` uint8 cut to the tight box of its nonzero samples (a view)."""
        h, w = plane.shape
        x, y, bw, bh = cv2.boundingRect(plane)
        if not bw:
            return cls(None, None, (h, w))
        return cls(plane[y : y + bh, x : x + bw], (x, y, x + bw, y + bh), (h, w))

    @functools.cached_property
    def top(self) -> int:
        """The largest sample (0 when empty)."""
        return 0 if self.crop is None else int(self.crop.max())

    def dense(self) -> np.ndarray:
        """The whole ``(H, W)`` uint8 plane (a new, writeable array)."""
        out = np.zeros(self.shape, np.uint8)
        if self.box is not None:
            x0, y0, x1, y1 = self.box
            out[y0:y1, x0:x1] = self.crop
        return out


def decode_plane_png_boxed(data: bytes) -> BoxedPlane | None:
    """The samples of an 8-bit grey or palette PNG inside the tight box of the nonzero ones, or
    None for any other PNG.

    The scorer reads two PNGs per frame, and through PIL that was most of its time; the index
    PNGs of masks (vostool's, the benchmarks' annotations) are one zlib stream (inflated by
    libdeflate where the ``deflate`` wheel is installed, else by zlib) of rows filtered with
    None, Sub or Up, undone here exactly: Sub is a running sum along the row and Up one down the
    column, both modulo 256. When every row is Sub (DAVIS's annotations) only the box is
    unfiltered: its rows and left edge are those of the nonzero filtered bytes (a sample
    changes from 0 exactly where its filtered byte is not 0), its right edge is the last
    nonzero filtered byte, or the image's edge where a row ends on a nonzero sample. Interlaced
    files, other bit depths and colour types, and rows filtered with Average or Paeth give None
    (read them with PIL).
    """
    if not data.startswith(_PNG_SIGNATURE):
        return None
    pos, header, idat = 8, None, []
    while pos + 8 <= len(data):
        n, tag = struct.unpack(">I4s", data[pos : pos + 8])
        if tag == b"IHDR":
            header = struct.unpack(">IIBBBBB", data[pos + 8 : pos + 21])
        elif tag == b"IDAT":
            idat.append(data[pos + 8 : pos + 8 + n])
        elif tag == b"IEND":
            break
        pos += 12 + n
    if header is None or header[2:] not in ((8, 0, 0, 0, 0), (8, 3, 0, 0, 0)):
        return None
    w, h = header[0], header[1]
    try:
        raw = _inflate(b"".join(idat), h * (w + 1))
    except _INFLATE_ERRORS:
        return None
    if len(raw) != h * (w + 1):
        return None
    rows = np.frombuffer(raw, np.uint8).reshape(h, w + 1)
    kinds = rows[:, 0]
    top = kinds.max(initial=0)
    if top > 2:
        return None
    if top == 0:  # every row None (vostool's masks): the samples as stored
        return BoxedPlane.of(rows[:, 1:])
    if top == 1 and kinds.min() == 1:  # every row Sub
        x, y, bw, bh = cv2.boundingRect(rows[:, 1:])
        if not bw:
            return BoxedPlane(None, None, (h, w))
        crop = _row_sums(rows[y : y + bh, 1 + x : 1 + x + bw])
        if cv2.countNonZero(crop[:, -1]):  # a row ends on an object: the box reaches the right edge
            wide = np.empty((bh, w - x), np.uint8)
            wide[:, :bw] = crop
            wide[:, bw:] = crop[:, -1:]
            return BoxedPlane(wide, (x, y, w, y + bh), (h, w))
        # Every row ends on 0, so the last nonzero filtered byte is a step down to 0: the box ends before it.
        return BoxedPlane(crop[:, :-1], (x, y, x + bw - 1, y + bh), (h, w))
    out = rows[:, 1:].copy()
    sub = kinds == 1
    if sub.any():
        out[sub] = _row_sums(out)[sub]
    up = np.flatnonzero(kinds == 2)
    if up.size:  # each run of Up rows continues from the row above it
        starts = up[np.diff(up, prepend=-2) != 1]
        for a in starts:
            b = a
            while b < h and kinds[b] == 2:
                b += 1
            if a > 0:
                out[a] += out[a - 1]
            np.cumsum(out[a:b], axis=0, dtype=np.uint8, out=out[a:b])
    return BoxedPlane.of(out)


_scratch = threading.local()


def _row_sums(a: np.ndarray) -> np.ndarray:
    """Running sums along the rows of ``(H, W)`` uint8 ``a``, modulo 256 (PNG's Sub unfiltering).

    From OpenCV's integral image, whose row differences are the row sums (4x faster than
    ``np.cumsum``); its int32 buffers are kept per thread, grown as needed (allocating them each
    time cost more than the sums: fresh pages from the kernel).
    """
    h, w = a.shape
    if h * w * 255 >= 2**31:  # the integral could overflow int32
        return np.cumsum(a, axis=1, dtype=np.uint8)
    need = (h + 1) * (w + 1) + h * w
    buf = getattr(_scratch, "row_sums", None)
    if buf is None or buf.size < need:
        buf = _scratch.row_sums = np.empty(need, np.int32)
    total = buf[: (h + 1) * (w + 1)].reshape(h + 1, w + 1)
    rows = buf[(h + 1) * (w + 1) : need].reshape(h, w)
    cv2.integral(a, sum=total, sdepth=cv2.CV_32S)
    cv2.subtract(total[1:, 1:], total[:-1, 1:], dst=rows)
    return rows.astype(np.uint8)  # wraps modulo 256


def read_index_png(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an index PNG (mode P or L) exactly as stored, ``(H, W)`` uint8, no id remapping.

    Used by the benchmark, where 255 must stay visible as void and binary 0/255 files are
    interpreted by the dataset layout, not here. RGB predictions are converted through
    :func:`read_mask` (colours to ids). 8-bit grey and palette files are decoded by
    :func:`decode_plane_png_boxed`, others by PIL.
    """
    boxed = _decode_file(path)
    return _read_through_pil(path) if boxed is None else boxed.dense()


def read_index_png_boxed(path: str | os.PathLike[str]) -> BoxedPlane:
    """:func:`read_index_png` as a :class:`BoxedPlane` (the scorer's way: no full-frame arrays)."""
    boxed = _decode_file(path)
    return BoxedPlane.of(_read_through_pil(path)) if boxed is None else boxed


def _decode_file(path: str | os.PathLike[str]) -> BoxedPlane | None:
    try:
        with open(path, "rb") as f:
            return decode_plane_png_boxed(f.read())
    except OSError:
        return None  # _open says what is wrong


def _read_through_pil(path: str | os.PathLike[str]) -> np.ndarray:
    img = _open(path)
    if img.mode in ("P", "L"):
        return np.array(img, dtype=np.uint8)
    if img.mode == "1":
        return np.array(img, dtype=np.uint8) * 255
    return read_mask(path).ids
