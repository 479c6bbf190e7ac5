"""Synthetic test videos made on the fly, with their exact ground-truth masks, and the files
tests read them from: textured objects moving over a textured background."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def texture(h: int, w: int, rng: np.random.Generator, scale: float = 3.0) -> np.ndarray:
    """Smooth random colour texture ``(H, W, 3)`` uint8 (enough structure for optical flow)."""
    noise = rng.random((h, w, 3)).astype(np.float32)
    tex = cv2.GaussianBlur(noise, (0, 0), scale)
    tex = (tex - tex.min()) / (tex.max() - tex.min() + 1e-6)
    return (tex * 255).astype(np.uint8)


def moving_objects(
    n: int = 12, h: int = 96, w: int = 128, objects: int = 2, seed: int = 0, speed: float = 2.0
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``n`` frames ``(H, W, 3)`` uint8 and index masks ``(H, W)`` uint8 of ``objects`` textured
    ellipses moving at ``speed`` px/frame over a slowly panning textured background."""
    rng = np.random.default_rng(seed)
    bg = texture(h + 40, w + 40, rng)
    sprites = []
    for k in range(objects):
        ry, rx = int(h * 0.14) + 3 * k, int(w * 0.12) + 2 * k
        tex = texture(2 * ry + 1, 2 * rx + 1, rng, 2.5)
        tex[..., k % 3] = (tex[..., k % 3].astype(np.int16) // 2 + 128).astype(np.uint8)  # tinted, still textured
        shape = np.zeros((2 * ry + 1, 2 * rx + 1), np.uint8)
        cv2.ellipse(shape, (rx, ry), (rx, ry), 0, 0, 360, 1, -1)
        start = np.array([h * (0.3 + 0.35 * k), w * (0.25 + 0.4 * (k % 2))])
        vel = np.array([speed * (0.5 - k % 2), speed * (1 if k % 2 == 0 else -0.7)])
        sprites.append((tex, shape.astype(bool), start, vel))
    frames, masks = [], []
    for t in range(n):
        ox = int(round(t * 0.5)) % 40
        img = bg[20 : 20 + h, ox : ox + w].copy()
        ids = np.zeros((h, w), np.uint8)
        for k, (tex, shape, start, vel) in enumerate(sprites):
            sh, sw = shape.shape
            lo = np.array([sh // 2, sw // 2], float)
            span = np.array([h - sh, w - sw], float).clip(1)
            pos = np.abs((start - lo + vel * t) % (2 * span) - span)  # bounce off the borders
            cy, cx = (lo + span - pos).round().astype(int)
            y0, x0 = cy - sh // 2, cx - sw // 2
            ys, xs = slice(max(y0, 0), min(y0 + sh, h)), slice(max(x0, 0), min(x0 + sw, w))
            sub = shape[ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0]
            img[ys, xs][sub] = tex[ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0][sub]
            ids[ys, xs][sub] = k + 1
        frames.append(img)
        masks.append(ids)
    return frames, masks


def write_folder(path: Path, frames: list[np.ndarray], pattern: str = "{:05d}.jpg") -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(frames):
        cv2.imwrite(str(path / pattern.format(i)), cv2.cvtColor(f, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    return path


def write_mp4(path: Path, frames: list[np.ndarray], fps: float = 25.0) -> Path:
    import imageio_ffmpeg

    h, w = frames[0].shape[:2]
    gen = imageio_ffmpeg.write_frames(
        str(path),
        (w, h),
        fps=fps,
        codec="libx264",
        quality=None,
        macro_block_size=1,
        output_params=["-crf", "12", "-preset", "ultrafast"],
        ffmpeg_log_level="error",
    )
    gen.send(None)
    for f in frames:
        gen.send(np.ascontiguousarray(f))
    gen.close()
    return path


def iou(a: np.ndarray, b: np.ndarray) -> float:
    u = np.logical_or(a, b).sum()
    return 1.0 if u == 0 else float(np.logical_and(a, b).sum() / u)


def moving_discs(n_frames: int, h: int, w: int, k: int, seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """A blocky textured background with ``k`` flat-coloured discs moving right 2 px/frame:
    ``(H, W, 3)`` uint8 frames and ``(H, W)`` uint8 id maps (0 = background, 1..k)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = (rng.random((h // 4 + 1, w // 4 + 1, 3)) * 120 + 60).repeat(4, 0).repeat(4, 1)[:h, :w]
    colours = rng.integers(0, 255, (k, 3))
    frames, ids = [], []
    for t in range(n_frames):
        img, lab = base.copy(), np.zeros((h, w), np.uint8)
        for i in range(k):
            cy, cx, r = h * (i + 1) / (k + 1), w * 0.25 + 2 * t + 3 * i, min(h, w) / (2.5 * k + 2)
            disc = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
            img[disc], lab[disc] = colours[i], i + 1
        frames.append(img.astype(np.uint8))
        ids.append(lab)
    return frames, ids


def without(ids: np.ndarray, *object_ids: int) -> np.ndarray:
    """A copy of the ``(H, W)`` id map with ``object_ids`` set to background."""
    out = ids.copy()
    out[np.isin(out, object_ids)] = 0
    return out
