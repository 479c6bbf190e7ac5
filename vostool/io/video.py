"""Streamed video input (mp4/mov/mkv/avi through imageio-ffmpeg, or a folder of frames) and
the overlay video writer. Frames are decoded one at a time: a video is never all in memory.

Every reader yields :class:`VideoFrame` items: ``rgb`` is ``(H, W, 3)`` uint8 RGB.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..errors import InputError, OutputError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
DEFAULT_FOLDER_FPS = 24.0

# OpenCV's own thread pool fights PyTorch's for the same cores (a 2-core machine ran 20x slower
# with both pools at 2 threads); vostool overlaps stages with its own threads instead.
cv2.setNumThreads(1)


def natural_key(name: str) -> list[Any]:
    """Sort key putting ``frame2`` before ``frame10``."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


@dataclass
class VideoFrame:
    """One decoded frame: ``index`` (0-based), ``name`` (output file stem), ``rgb`` ``(H, W, 3)`` uint8."""

    index: int
    name: str
    rgb: np.ndarray


class VideoSource:
    """Base of the readers. Attributes: ``path``, ``fps``, ``size`` ``(W, H)``, ``num_frames``
    (exact for folders, estimated from the container for video files, None if unknown)."""

    path: Path
    fps: float
    size: tuple[int, int]
    num_frames: int | None

    @property
    def frame_names(self) -> list[str] | None:
        """The name (file stem) of every frame in order, when known before decoding (folders)."""
        return None

    def __iter__(self) -> Iterator[VideoFrame]:
        raise NotImplementedError

    def frames(self, start: int = 0) -> Iterator[VideoFrame]:
        """Frames from index ``start`` on (earlier ones are skipped as cheaply as possible)."""
        for f in self:
            if f.index >= start:
                yield f

    def close(self) -> None:
        """Release the decoder (safe to call twice)."""


class FrameFolder(VideoSource):
    """A folder of JPEG/PNG frames in natural sort order (``00000.jpg``, ``frame_000000.jpg``)."""

    def __init__(self, path: Path, fps: float | None = None) -> None:
        self.path = path
        self.files = sorted(
            (p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")),
            key=lambda p: natural_key(p.name),
        )
        if not self.files:
            raise InputError(f"no JPEG/PNG frames found in folder {path}; give a video file or a folder of numbered frames")
        first = self._read(self.files[0])
        self.size = (first.shape[1], first.shape[0])
        self.num_frames = len(self.files)
        self.fps = float(fps or DEFAULT_FOLDER_FPS)

    @property
    def frame_names(self) -> list[str]:
        return [p.stem for p in self.files]

    @staticmethod
    def _read(p: Path) -> np.ndarray:
        data = np.fromfile(str(p), dtype=np.uint8)
        bgr = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
        if bgr is None:
            raise InputError(f"cannot decode frame {p}: the file is empty or not an image")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def frames(self, start: int = 0) -> Iterator[VideoFrame]:
        for i in range(start, len(self.files)):
            p = self.files[i]
            rgb = self._read(p)
            if (rgb.shape[1], rgb.shape[0]) != self.size:
                raise InputError(
                    f"frame {p.name} is {rgb.shape[1]}x{rgb.shape[0]} but the first frame is {self.size[0]}x{self.size[1]}; all frames must have one size"
                )
            yield VideoFrame(i, p.stem, rgb)

    def __iter__(self) -> Iterator[VideoFrame]:
        return self.frames(0)


class VideoFile(VideoSource):
    """A video file decoded by ffmpeg (imageio-ffmpeg) into RGB frames, streamed.

    A file that decodes to clearly fewer frames than its container declares is reported as
    truncated (:class:`InputError`) after the last decodable frame.
    """

    def __init__(self, path: Path) -> None:
        import imageio_ffmpeg

        self.path = path
        self._gen: Any = None
        try:
            gen = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
            meta = next(gen)
        except (OSError, RuntimeError, StopIteration, ValueError) as exc:
            raise InputError(f"cannot decode video {path}: {_ffmpeg_reason(exc)}") from None
        self._gen = gen
        self.size = tuple(int(v) for v in meta["size"])  # type: ignore[assignment]
        self.fps = float(meta.get("fps") or 0.0) or DEFAULT_FOLDER_FPS
        duration = float(meta.get("duration") or 0.0)
        self.num_frames = int(round(duration * self.fps)) if duration > 0 else None
        self._started = False

    def __iter__(self) -> Iterator[VideoFrame]:
        if self._started:
            raise RuntimeError("a VideoFile can be iterated once; open it again")
        self._started = True
        w, h = self.size
        n = 0
        try:
            for buf in self._gen:
                arr = np.frombuffer(buf, dtype=np.uint8)
                if arr.size != w * h * 3:
                    break
                yield VideoFrame(n, f"{n:05d}", arr.reshape(h, w, 3).copy())
                n += 1
        except (OSError, RuntimeError) as exc:
            raise InputError(f"video {self.path} failed to decode after {n} frames: {_ffmpeg_reason(exc)}") from None
        finally:
            self.close()
        if n == 0:
            raise InputError(f"video {self.path} has no decodable frames; the file is empty or truncated")
        expected = self.num_frames
        if expected is not None and n < expected - max(3, int(0.05 * expected)):
            raise InputError(
                f"video {self.path} is truncated: decoded {n} of the {expected} frames its container declares; re-encode or re-download it"
            )

    def close(self) -> None:
        if self._gen is not None:
            try:
                self._gen.close()
            except Exception:  # the ffmpeg process may already be gone
                pass
            self._gen = None


def _ffmpeg_reason(exc: BaseException) -> str:
    text = str(exc).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    keep = [
        ln for ln in lines if any(k in ln.lower() for k in ("invalid", "moov", "no such", "error", "not found", "could not", "unknown"))
    ]
    reason = (keep or lines or [type(exc).__name__])[-1]
    return f"not a readable video ({reason[:160]})"


def open_video(path: str | os.PathLike[str], *, fps: float | None = None) -> VideoSource:
    """Open a video file or a folder of frames for streamed reading.

    Args:
        path: a video file (mp4, mov, mkv, avi, ...) or a folder of image frames.
        fps: frame rate to assume for a folder (default 24); ignored for video files.

    Raises:
        InputError: missing path, folder without frames, or a file ffmpeg cannot decode.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"video not found: {p}")
    if p.is_dir():
        return FrameFolder(p, fps)
    if not os.access(p, os.R_OK):
        raise InputError(f"video is not readable (permission denied): {p}")
    if p.suffix.lower() in IMAGE_SUFFIXES:
        raise InputError(f"{p} is a single image; give a video file or a folder of frames")
    if p.stat().st_size == 0:
        raise InputError(f"video file is empty: {p}")
    return VideoFile(p)


class VideoWriter:
    """H.264 mp4 writer (imageio-ffmpeg) that appears under its final name only when closed
    successfully; an interrupted run leaves no ``overlay.mp4`` that looks complete.

    Args:
        path: destination ``.mp4``.
        size: ``(W, H)``; odd sizes are padded by one pixel (yuv420p needs even sizes).
        fps: frame rate (the input's).
    """

    def __init__(self, path: str | os.PathLike[str], size: tuple[int, int], fps: float, *, crf: int = 20, preset: str = "veryfast") -> None:
        import imageio_ffmpeg

        self.path = Path(path)
        self.tmp = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix}")
        self.size = size
        self._pad = (size[0] % 2, size[1] % 2)
        out_size = (size[0] + self._pad[0], size[1] + self._pad[1])
        try:
            self._gen = imageio_ffmpeg.write_frames(
                str(self.tmp),
                out_size,
                fps=fps,
                codec="libx264",
                quality=None,
                pix_fmt_in="rgb24",
                pix_fmt_out="yuv420p",
                macro_block_size=1,
                ffmpeg_log_level="error",
                output_params=["-crf", str(crf), "-preset", preset, "-movflags", "+faststart"],
            )
            self._gen.send(None)
        except (OSError, RuntimeError) as exc:
            raise OutputError(f"cannot write video {self.path}: {exc}") from None
        self._closed = False

    def write(self, rgb: np.ndarray) -> None:
        """Append one ``(H, W, 3)`` uint8 RGB frame."""
        if any(self._pad):
            rgb = np.pad(rgb, ((0, self._pad[1]), (0, self._pad[0]), (0, 0)), mode="edge")
        self._gen.send(np.ascontiguousarray(rgb))

    def close(self) -> None:
        """Finish the file and move it to its final name."""
        if self._closed:
            return
        self._closed = True
        self._gen.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        """Stop writing and delete the partial file."""
        if self._closed:
            return
        self._closed = True
        try:
            self._gen.close()
        except Exception:
            pass
        self.tmp.unlink(missing_ok=True)
