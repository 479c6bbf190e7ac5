"""Object masks: reading every common mask format into object ids, writing index PNGs.

An *index mask* is an ``(H, W)`` uint8 array whose value is the object id (0 = background).
DAVIS 2017 marks "void" pixels with 255; they are not an object and read as background.

Formats read by :func:`read_mask`:

* palette PNG (mode ``P``): the index is the object id; the palette is kept for writing;
* grayscale (``L``/``I``): values only in {0, 255} are a binary mask (object 1); at most
  :data:`MAX_INDEX_LEVELS` distinct values are object ids (255 = void); anything else is a
  grey-level matte thresholded at 128 (object 1);
* ``LA``: the grey channel as above, pixels with alpha < 128 are background;
* RGB / RGBA: each colour is an object. Anti-aliased edge colours are snapped to the nearest
  *object colour* (a colour owning at least one pixel whose 3x3 neighbourhood has only that
  colour) or to black, so they never become extra objects. Colours that are all entries of the
  DAVIS palette keep their DAVIS index as id; other colours are numbered 1..N in order of
  their (R, G, B) value. Pixels with alpha < 128 are background.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import InputError
from .atomic import atomic_path

VOID_ID = 255
MAX_INDEX_LEVELS = 32


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
    """

    ids: np.ndarray
    palette: np.ndarray | None = None
    void: np.ndarray | None = None

    @property
    def object_ids(self) -> list[int]:
        """Sorted ids of the objects present (background excluded)."""
        return [int(v) for v in np.unique(self.ids) if v != 0]

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` like PIL."""
        return int(self.ids.shape[1]), int(self.ids.shape[0])


def _open(path: str | os.PathLike[str]) -> Image.Image:
    p = Path(path)
    if not p.exists():
        raise InputError(f"mask file not found: {p}")
    if p.is_dir():
        raise InputError(f"mask path is a folder, not an image: {p} (use --masks DIR for a folder of masks)")
    try:
        img = Image.open(p)
        img.load()
    except Exception as exc:  # PIL raises many types for unreadable files
        raise InputError(f"cannot read mask {p}: not an image file PIL can open ({type(exc).__name__})") from None
    return img


def _gray_to_ids(gray: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    values = np.unique(gray)
    if set(values.tolist()) <= {0, 255}:
        return (gray == 255).astype(np.uint8), None
    if values.size <= MAX_INDEX_LEVELS and values.max() <= 255:
        void = gray == VOID_ID
        ids = np.where(void, 0, gray).astype(np.uint8)
        return ids, (void if void.any() else None)
    return (gray >= 128).astype(np.uint8), None


def _interior_colours(codes: np.ndarray) -> set[int]:
    """Colour codes owning a pixel whose whole 3x3 neighbourhood has that colour."""
    h, w = codes.shape
    if h < 3 or w < 3:
        return set(np.unique(codes).tolist())
    c = codes[1:-1, 1:-1]
    same = np.ones_like(c, dtype=bool)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy or dx:
                same &= codes[1 + dy : h - 1 + dy, 1 + dx : w - 1 + dx] == c
    return set(np.unique(c[same]).tolist())


def _rgb_to_ids(rgb: np.ndarray, alpha: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    rgb = rgb.astype(np.int64)
    if alpha is not None:
        rgb = np.where((alpha >= 128)[..., None], rgb, 0)
    codes = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    core = sorted(_interior_colours(codes) - {0})
    palette = DAVIS_PALETTE.copy()
    if not core:
        return np.zeros(codes.shape, np.uint8), palette
    core_rgb = np.array([[(c >> 16) & 255, (c >> 8) & 255, c & 255] for c in core], dtype=np.int64)
    if len(core) > 254:
        raise InputError(f"RGB mask has {len(core)} distinct object colours; at most 254 objects are supported")
    davis_codes = {(int(r) << 16) | (int(g) << 8) | int(b): i for i, (r, g, b) in enumerate(DAVIS_PALETTE)}
    if all(c in davis_codes and davis_codes[c] not in (0, VOID_ID) for c in core):
        core_ids = np.array([davis_codes[c] for c in core], dtype=np.uint8)
    else:
        core_ids = np.arange(1, len(core) + 1, dtype=np.uint8)
        palette[core_ids] = core_rgb.astype(np.uint8)
    # Snap every distinct colour to the nearest of {black} + core colours.
    uniq, inverse = np.unique(codes.reshape(-1), return_inverse=True)
    uniq_rgb = np.stack([(uniq >> 16) & 255, (uniq >> 8) & 255, uniq & 255], axis=1)
    targets = np.concatenate([np.zeros((1, 3), np.int64), core_rgb], axis=0)
    d = ((uniq_rgb[:, None, :] - targets[None, :, :]) ** 2).sum(-1)
    nearest = d.argmin(1)
    lut = np.concatenate([np.zeros(1, np.uint8), core_ids])[nearest]
    return lut[inverse].reshape(codes.shape), palette


def read_mask(path: str | os.PathLike[str]) -> IndexMask:
    """Read a mask file in any supported format (see module docstring) as object ids.

    Returns:
        IndexMask with ``ids`` ``(H, W)`` uint8 (void pixels set to 0, recorded in ``void``).

    Raises:
        InputError: the file is missing or not an image.
    """
    img = _open(path)
    mode = img.mode
    if mode == "P":
        arr = np.array(img, dtype=np.uint8)
        pal_bytes = img.getpalette() or []
        palette = DAVIS_PALETTE.copy()
        if pal_bytes:
            given = np.array(pal_bytes, dtype=np.uint8).reshape(-1, 3)[:256]
            palette[: len(given)] = given
        if "transparency" in img.info and isinstance(img.info["transparency"], int):
            pass  # transparency index is a display hint; ids stay as stored
        void = arr == VOID_ID
        ids = np.where(void, 0, arr).astype(np.uint8)
        return IndexMask(ids, palette, void if void.any() else None)
    if mode in ("1", "L", "I", "I;16", "I;16B", "I;16L", "F"):
        arr = np.array(img)
        if mode == "1":
            return IndexMask(arr.astype(np.uint8), None)
        if arr.dtype != np.uint8:
            if arr.max() > 255 and len(np.unique(arr)) > MAX_INDEX_LEVELS:
                arr = (arr.astype(np.float64) / arr.max() * 255).round()
            arr = np.clip(arr, 0, 255).astype(np.uint8)
        ids, void = _gray_to_ids(arr)
        return IndexMask(ids, None, void)
    if mode == "LA":
        arr = np.array(img, dtype=np.uint8)
        gray = np.where(arr[..., 1] >= 128, arr[..., 0], 0).astype(np.uint8)
        ids, void = _gray_to_ids(gray)
        return IndexMask(ids, None, void)
    if mode in ("RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "HSV", "LAB", "PA"):
        if mode == "PA":
            img = img.convert("RGBA")
        alpha = np.array(img.getchannel("A"), dtype=np.uint8) if img.mode == "RGBA" else None
        rgb = np.array(img.convert("RGB"), dtype=np.uint8)
        ids, palette = _rgb_to_ids(rgb, alpha)
        return IndexMask(ids, palette)
    raise InputError(f"unsupported mask image mode {mode!r} in {path}; save it as a palette, grayscale or RGB PNG")


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
    img = Image.fromarray(np.ascontiguousarray(ids, dtype=np.uint8), mode="P")
    img.putpalette((DAVIS_PALETTE if palette is None else palette).astype(np.uint8).reshape(-1).tolist())
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG", compress_level=compress_level)


def write_gray_png(path: str | os.PathLike[str], gray: np.ndarray, *, compress_level: int = 1) -> None:
    """Write an ``(H, W)`` uint8 grayscale image (mattes, soft scores) as a PNG, atomically."""
    img = Image.fromarray(np.ascontiguousarray(gray, dtype=np.uint8), mode="L")
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG", compress_level=compress_level)


def read_index_png(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an index PNG (mode P or L) exactly as stored, ``(H, W)`` uint8, no id remapping.

    Used by the benchmark, where 255 must stay visible as void and binary 0/255 files are
    interpreted by the dataset layout, not here. RGB predictions are converted through
    :func:`read_mask` (colours to ids).
    """
    img = _open(path)
    if img.mode in ("P", "L"):
        return np.array(img, dtype=np.uint8)
    if img.mode == "1":
        return np.array(img, dtype=np.uint8) * 255
    return read_mask(path).ids
