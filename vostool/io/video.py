"""Streamed video input (mp4/mov/mkv/avi through ffmpeg, or a folder of frames) and the
overlay video writer. Frames are decoded one at a time: a video is never all in memory.

Every reader yields :class:`VideoFrame` items: ``rgb`` is ``(H, W, 3)`` uint8 RGB, ``pts`` the
presentation time in seconds. A video file gives every frame it stores exactly once, in order,
with its own timestamp (a variable-frame-rate file is never resampled to a constant rate), and
turned as a player shows it (rotation metadata applied, ``size`` is the shown size).

ffmpeg is imageio-ffmpeg's binary, run directly: its messages are captured, never printed, and
a failure becomes one line saying what is wrong.
"""

from __future__ import annotations

import collections
import math
import os
import queue
import re
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..errors import InputError, OutputError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
DEFAULT_FOLDER_FPS = 24.0
MAX_FPS = 1000.0
HEADER_TIMEOUT_S = 60.0

# OpenCV's own thread pool fights PyTorch's for the same cores (a 2-core machine ran 20x slower
# with both pools at 2 threads); vostool overlaps stages with its own threads instead.
cv2.setNumThreads(1)


def natural_key(name: str) -> list[Any]:
    """Sort key putting ``frame2`` before ``frame10``."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def check_fps(fps: float, what: str = "frame rate") -> float:
    """``fps`` as a float if it is a usable frame rate (finite, 0 < fps <= 1000), else InputError."""
    try:
        value = float(fps)
    except (TypeError, ValueError):
        raise InputError(f"{what} {fps!r} is not a number; give frames per second, e.g. 25") from None
    if not (math.isfinite(value) and 0 < value <= MAX_FPS):
        raise InputError(f"{what} {fps!r} is not usable; give a positive number of frames per second up to {MAX_FPS:g}, e.g. 25")
    return value


@dataclass
class VideoFrame:
    """One decoded frame: ``index`` (0-based), ``name`` (output file stem), ``rgb`` ``(H, W, 3)``
    uint8, ``pts`` presentation time in seconds (the file's own; ``index / fps`` for folders)."""

    index: int
    name: str
    rgb: np.ndarray
    pts: float | None = None


class VideoSource:
    """Base of the readers.

    Attributes:
        path: the video file or folder.
        fps: frame rate (a file's average rate; timing is in each frame's ``pts``).
        size: ``(W, H)`` of the frames as yielded (as a player shows them).
        num_frames: exact for folders, estimated from the container for video files, or None.
        timestamps: ``pts`` (seconds) of the frames yielded so far; all of them for folders.
        rotation: counter-clockwise degrees (0, 90, 180, 270) of display rotation the file
            carries; the frames are already turned by it, as players show them.
        stored_size: ``(W, H)`` of the frames as stored, before that rotation.
    """

    path: Path
    fps: float
    size: tuple[int, int]
    num_frames: int | None
    timestamps: list[float]
    rotation: int = 0
    stored_size: tuple[int, int]

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

    def rotation_hint(self, mask_size: tuple[int, int]) -> str | None:
        """Advice when a mask of ``mask_size`` ``(W, H)`` fits the stored frames but not the shown
        ones (a rotated video), else None."""
        if self.rotation % 180 and tuple(mask_size) == tuple(self.stored_size) and tuple(mask_size) != tuple(self.size):
            return (
                f"the mask is {mask_size[0]}x{mask_size[1]} like the video's stored frames, but the video carries a rotation of "
                f"{self.rotation} degrees and is read as players show it ({self.size[0]}x{self.size[1]}): draw the mask on a frame "
                f"as shown, or turn it {self.rotation} degrees counter-clockwise"
            )
        return None


class FrameFolder(VideoSource):
    """A folder of JPEG/PNG frames in natural sort order (``00000.jpg``, ``frame_000000.jpg``)."""

    def __init__(self, path: Path, fps: float | None = None) -> None:
        self.path = path
        self.fps = DEFAULT_FOLDER_FPS if fps is None else check_fps(fps, "--fps")
        self.files = sorted(
            (p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")),
            key=lambda p: natural_key(p.name),
        )
        if not self.files:
            raise InputError(f"no JPEG/PNG frames found in folder {path}; give a video file or a folder of numbered frames")
        first = self._read(self.files[0])
        self.size = self.stored_size = (first.shape[1], first.shape[0])
        self.num_frames = len(self.files)
        self.timestamps = [i / self.fps for i in range(self.num_frames)]

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
                    f"frame {p.name} is {rgb.shape[1]}x{rgb.shape[0]} but the first frame is {self.size[0]}x{self.size[1]}; "
                    "all frames must have one size"
                )
            yield VideoFrame(i, p.stem, rgb, self.timestamps[i])

    def __iter__(self) -> Iterator[VideoFrame]:
        return self.frames(0)


# --------------------------------------------------------------------------------------------
# ffmpeg processes
# --------------------------------------------------------------------------------------------


def _ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


_LOG_PREFIX = re.compile(r"^\[[^\]]*@ 0x[0-9a-f]+\]\s*")
_OS_ERRORS = (
    "No space left on device",
    "Disk quota exceeded",
    "Permission denied",
    "Read-only file system",
    "File too large",
    "Input/output error",
)


class _Stderr(threading.Thread):
    """Drains an ffmpeg's stderr so it never blocks and nothing reaches the terminal; keeps the
    last lines for messages and hands each line to ``on_line``."""

    def __init__(self, stream: Any, on_line: Any = None) -> None:
        super().__init__(name="vostool-ffmpeg-log", daemon=True)
        self._stream = stream
        self._on_line = on_line
        self.lines: collections.deque[str] = collections.deque(maxlen=60)
        self.start()

    def run(self) -> None:
        try:
            for raw in self._stream:
                line = raw.decode("utf-8", "replace").rstrip()
                if self._on_line is not None and self._on_line(line):
                    continue  # a per-frame line: not kept
                if line.strip():
                    self.lines.append(line)
        except (OSError, ValueError):  # the pipe was closed under us
            pass
        finally:
            if self._on_line is not None:
                self._on_line(None)

    def reason(self) -> str:
        """The most telling line ffmpeg wrote: an OS error, else the last error-like line."""
        lines = [_LOG_PREFIX.sub("", ln).strip() for ln in self.lines]
        for ln in reversed(lines):
            for err in _OS_ERRORS:
                if err in ln:
                    return err
        keys = ("invalid", "moov", "no such", "error", "not found", "could not", "unknown", "unrecognized", "failed")
        keep = [ln for ln in lines if any(k in ln.lower() for k in keys) and not ln.lower().startswith("exiting with exit code")]
        return (keep or [ln for ln in lines if not ln.lower().startswith("exiting with exit code")] or ["ffmpeg stopped"])[-1][:160]


def _stop(proc: subprocess.Popen[bytes] | None, log: _Stderr | None, *, kill: bool) -> None:
    """End an ffmpeg process quietly: kill it first (``kill``: its output is not wanted), or
    close its pipes and let it finish; then collect its exit and the rest of its messages."""
    if proc is None:
        return
    if kill and proc.poll() is None:
        proc.kill()
    for stream in (proc.stdin, proc.stdout):
        try:
            if stream is not None:
                stream.close()
        except OSError:
            pass
    try:
        proc.wait(timeout=10.0)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if log is not None:
        log.join(timeout=2.0)


_STREAM_SIZE = re.compile(r"[ ,](\d{1,6})x(\d{1,6})[ ,\[]")
_FPS = re.compile(r"([\d.]+)(k?) fps")
_TBR = re.compile(r"([\d.]+)(k?) tbr")
_DURATION = re.compile(r"Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)")
_ROTATION = re.compile(r"rotation of (-?[\d.]+) degrees", re.IGNORECASE)
_TIME_BASE = re.compile(r"config in time_base: (\d+)/(\d+)")
_SHOWINFO = re.compile(r"\bn:\s*(\d+)\s+pts:\s*(\S+)\s+pts_time:(\S+)")


def _rate(match: re.Match[str] | None) -> float:
    return float(match.group(1)) * (1000.0 if match.group(2) else 1.0) if match else 0.0


class VideoFile(VideoSource):
    """A video file decoded by ffmpeg into RGB frames, streamed, each with its timestamp.

    ffmpeg runs with ``-fps_mode passthrough`` (every stored frame once, never duplicated or
    dropped to reach a constant rate) and ``showinfo``, whose per-frame line gives the frame's
    ``pts``; rotation metadata is applied as players do. A file that decodes to clearly fewer
    frames than its container declares is reported as truncated (:class:`InputError`) after
    the last decodable frame.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.timestamps = []
        self._pts: queue.Queue[float | None] = queue.Queue()
        self._time_base: Fraction | None = None
        self._in_output = False
        self._header: list[str] = []
        self._header_done = threading.Event()
        self._started = False
        cmd = [_ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats", "-i", str(path), "-map", "0:v:0", "-an", "-sn", "-dn"]
        cmd += ["-vf", "showinfo=checksum=0", "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"]
        self._proc: subprocess.Popen[bytes] | None = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        self._log: _Stderr | None = _Stderr(self._proc.stderr, self._on_line)
        if not self._header_done.wait(HEADER_TIMEOUT_S) or self._size is None:
            reason = self._log.reason()
            self.close()
            if "fps_mode" in reason or "checksum" in reason:
                raise InputError(f"the ffmpeg at {cmd[0]} is too old for vostool (it needs ffmpeg 5.1 or later): {reason}")
            raise InputError(f"cannot decode video {path}: not a readable video ({reason})")
        self.size = self._size
        header = "\n".join(self._header)
        inputs = [ln for ln in self._header if "Video:" in ln and "Stream #" in ln]
        stored = _STREAM_SIZE.search(inputs[0].split("Video:", 1)[1]) if inputs else None
        self.stored_size = (int(stored.group(1)), int(stored.group(2))) if stored else self.size
        rot = _ROTATION.search(header)
        self.rotation = round(float(rot.group(1))) % 360 if rot else 0
        self.fps = (_rate(_FPS.search(inputs[0])) or _rate(_TBR.search(inputs[0]))) if inputs else 0.0
        self.fps = self.fps if 0 < self.fps <= MAX_FPS else DEFAULT_FOLDER_FPS
        dur = _DURATION.search(header)
        duration = int(dur.group(1)) * 3600 + int(dur.group(2)) * 60 + float(dur.group(3)) if dur else 0.0
        self.num_frames = round(duration * self.fps) if duration > 0 else None

    _size: tuple[int, int] | None = None

    def _on_line(self, line: str | None) -> bool:
        """Parse one stderr line (in the log thread); True for per-frame lines."""
        if line is None:  # stderr closed: ffmpeg is gone
            self._header_done.set()
            self._pts.put(None)
            return True
        m = _SHOWINFO.search(line)
        if m:
            if self._time_base is not None and re.fullmatch(r"-?\d+", m.group(2)):
                self._pts.put(float(int(m.group(2)) * self._time_base))
            else:
                try:
                    self._pts.put(float(m.group(3)))
                except ValueError:  # NOPTS
                    self._pts.put(math.nan)
            return True
        tb = _TIME_BASE.search(line)
        if tb and int(tb.group(2)):
            self._time_base = Fraction(int(tb.group(1)), int(tb.group(2)))
            return True
        if not self._header_done.is_set():
            self._header.append(line)
            if line.startswith("Output #"):
                self._in_output = True
            elif self._in_output and "Stream #" in line and "Video:" in line:
                m = _STREAM_SIZE.search(line.split("Video:", 1)[1])
                if m:
                    self._size = (int(m.group(1)), int(m.group(2)))
                self._header_done.set()
        return line.startswith("[Parsed_showinfo")  # the rest of showinfo's lines (side data, colours)

    def _next_pts(self, n: int) -> float:
        try:
            t = self._pts.get(timeout=10.0)
        except queue.Empty:
            t = None
        if t is None or math.isnan(t):  # no timestamp: one frame period after the last
            t = self.timestamps[-1] + 1.0 / self.fps if self.timestamps else 0.0
        return t

    def __iter__(self) -> Iterator[VideoFrame]:
        if self._started or self._proc is None:
            raise RuntimeError("a VideoFile can be iterated once; open it again")
        self._started = True
        w, h = self.size
        need = w * h * 3
        n, ended = 0, False
        stdout, log = self._proc.stdout, self._log
        assert stdout is not None and log is not None
        try:
            while True:
                buf = bytearray(need)
                got = stdout.readinto(buf)
                if not got:
                    ended = True
                    break
                if got != need:
                    raise InputError(f"video {self.path} failed to decode after {n} frames: the last frame is incomplete")
                pts = self._next_pts(n)
                self.timestamps.append(pts)
                yield VideoFrame(n, f"{n:05d}", np.frombuffer(buf, dtype=np.uint8).reshape(h, w, 3), pts)
                n += 1
        except (OSError, ValueError) as exc:
            if self._proc is None:  # closed from another thread
                return
            raise InputError(f"video {self.path} failed to decode after {n} frames: {exc}") from None
        finally:
            self.close(kill=not ended)  # at the end, let ffmpeg finish its messages
        if n == 0:
            raise InputError(f"video {self.path} has no decodable frames; the file is empty or truncated ({log.reason()})")
        expected = self.num_frames
        if expected is not None and n < expected - max(3, int(0.05 * expected)):
            raise InputError(
                f"video {self.path} is truncated: decoded {n} of the {expected} frames its container declares; re-encode or re-download it"
            )

    def close(self, *, kill: bool = True) -> None:
        """Release ffmpeg (``kill``: stop it now; otherwise wait for it to finish)."""
        proc, log = self._proc, self._log
        self._proc = self._log = None
        _stop(proc, log, kill=kill)

    def __del__(self) -> None:  # an abandoned reader must not leave ffmpeg waiting on its pipe
        try:
            self.close()
        except Exception:  # interpreter shutdown
            pass


def open_video(path: str | os.PathLike[str], *, fps: float | None = None) -> VideoSource:
    """Open a video file or a folder of frames for streamed reading.

    Args:
        path: a video file (mp4, mov, mkv, avi, ...) or a folder of image frames.
        fps: frame rate to assume for a folder (default 24); ignored for video files.

    Raises:
        InputError: missing path, folder without frames, a file ffmpeg cannot decode, or an
            unusable ``fps``.
    """
    if fps is not None:
        check_fps(fps, "--fps")
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


def _ebml(eid: int, payload: bytes) -> bytes:
    """One EBML element: id, size (as a variable-length integer), payload."""
    n = len(payload)
    length = next(k for k in range(1, 9) if n < (1 << (7 * k)) - 1)
    return eid.to_bytes((eid.bit_length() + 7) // 8, "big") + ((1 << (7 * length)) | n).to_bytes(length, "big") + payload


def _ebml_uint(eid: int, value: int) -> bytes:
    return _ebml(eid, value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big"))


class _TimedRawStream:
    """Raw RGB frames with their timestamps as a Matroska stream, for ffmpeg's stdin.

    ffmpeg's raw-video input has no timestamps; Matroska carries one per frame, and a stream
    of raw frames needs only its smallest part: the EBML header, a segment of unknown size, the
    time scale (microseconds), one track (``V_UNCOMPRESSED``, colour space ``RGB\\x18`` =
    rgb24) and one cluster per frame (timestamp + one key-frame block).
    """

    def __init__(self, size: tuple[int, int], fps: float) -> None:
        w, h = size
        u, e = _ebml_uint, _ebml
        ebml = e(
            0x1A45DFA3, u(0x4286, 1) + u(0x42F7, 1) + u(0x42F2, 4) + u(0x42F3, 8) + e(0x4282, b"matroska") + u(0x4287, 4) + u(0x4285, 2)
        )
        segment = bytes.fromhex("18538067") + b"\x01" + b"\xff" * 7  # Segment of unknown size (a live stream)
        info = e(0x1549A966, u(0x2AD7B1, 1000) + e(0x4D80, b"vostool") + e(0x5741, b"vostool"))  # TimestampScale: 1000 ns
        video = e(0xE0, u(0xB0, w) + u(0xBA, h) + e(0x2EB524, b"RGB\x18"))  # PixelWidth, PixelHeight, ColourSpace
        # TrackEntry: TrackNumber 1, TrackUID 1, TrackType video, CodecID, DefaultDuration (ns: the last frame's)
        track = e(0xAE, u(0xD7, 1) + u(0x73C5, 1) + u(0x83, 1) + e(0x86, b"V_UNCOMPRESSED") + u(0x23E383, round(1e9 / fps)) + video)
        self.header = ebml + segment + info + e(0x1654AE6B, track)

    @staticmethod
    def frame(t_us: int, rgb: np.ndarray) -> list[Any]:
        """The cluster holding one frame at ``t_us`` microseconds, as buffers to write in order."""
        data = memoryview(np.ascontiguousarray(rgb, dtype=np.uint8)).cast("B")
        block = _ebml_head(0xA3, 4 + data.nbytes) + b"\x81\x00\x00\x80"  # track 1, relative time 0, key frame
        body = _ebml_uint(0xE7, t_us) + block  # Cluster: Timestamp, SimpleBlock
        return [_ebml_head(0x1F43B675, len(body) + data.nbytes) + body, data]


def _ebml_head(eid: int, n: int) -> bytes:
    """An element's id and 8-byte size, for a payload of ``n`` bytes written after it."""
    return eid.to_bytes((eid.bit_length() + 7) // 8, "big") + ((1 << 56) | n).to_bytes(8, "big")


class VideoWriter:
    """H.264 mp4 writer that keeps each frame's timestamp and appears under its final name only
    when closed successfully; an interrupted run leaves no ``overlay.mp4`` that looks complete.

    Frames go to ffmpeg with their timestamps (see :class:`_TimedRawStream`) and are encoded with
    ``-fps_mode passthrough``, so a variable-frame-rate input gives an overlay with the same
    timing. ffmpeg's messages are captured; a failure (disk full, ...) is one OutputError line.

    Args:
        path: destination ``.mp4``.
        size: ``(W, H)``; odd sizes are padded by one pixel (yuv420p needs even sizes).
        fps: nominal frame rate: the timestamps of frames written without one (``index / fps``)
            and the duration of the last frame.
        crf, preset: x264's quality and speed. ``superfast``: on two cores the encoder was the
            largest cost of a ``--method flow`` run with overlay (``veryfast``: 12.7 ms of CPU per
            480p frame, more than decode, flow and PNG together); ``superfast`` takes 9.5 ms for
            a file 31 % larger at the same quality setting, ``ultrafast`` 6.4 ms for one 3x larger.

    Raises:
        InputError: ``fps`` is not a usable frame rate (checked before ffmpeg starts).
        OutputError: ffmpeg cannot be started or cannot write.
    """

    def __init__(
        self, path: str | os.PathLike[str], size: tuple[int, int], fps: float, *, crf: int = 20, preset: str = "superfast"
    ) -> None:
        self.fps = check_fps(fps, "overlay video frame rate")
        self.path = Path(path)
        self.tmp = self.path.with_name(f".{self.path.name}.partial")  # never ends in .mp4: a killed run leaves no video that looks whole
        self.size = size
        self._pad = (size[0] % 2, size[1] % 2)
        out_size = (size[0] + self._pad[0], size[1] + self._pad[1])
        self._stream = _TimedRawStream(out_size, self.fps)
        self._count = 0
        self._last_us = -1
        self._closed = False
        cmd = [_ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats", "-v", "error", "-f", "matroska", "-i", "pipe:0", "-map", "0:v:0"]
        cmd += ["-fps_mode", "passthrough", "-enc_time_base:v", "demux", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", str(crf)]
        cmd += ["-preset", preset, "-movflags", "+faststart", "-f", "mp4", "-y", str(self.tmp)]
        try:
            self._proc: subprocess.Popen[bytes] = subprocess.Popen(
                cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )
        except OSError as exc:
            raise OutputError(f"cannot write video {self.path}: ffmpeg does not start ({exc.strerror or exc})") from None
        self._log = _Stderr(self._proc.stderr)
        self._send([self._stream.header])

    def _fail(self) -> OutputError:
        _stop(self._proc, self._log, kill=False)
        self._closed = True
        self.tmp.unlink(missing_ok=True)
        reason = self._log.reason()
        hint = "; free some disk space or write elsewhere" if reason in ("No space left on device", "Disk quota exceeded") else ""
        return OutputError(f"cannot write video {self.path}: {reason}{hint}")

    def _send(self, buffers: list[Any]) -> None:
        stdin = self._proc.stdin
        assert stdin is not None
        try:
            for b in buffers:
                stdin.write(b)
        except (BrokenPipeError, OSError):  # ffmpeg stopped: say why
            raise self._fail() from None

    def write(self, rgb: np.ndarray, pts: float | None = None) -> None:
        """Append one ``(H, W, 3)`` uint8 RGB frame shown at ``pts`` seconds (``index / fps``
        when None). Timestamps are kept to the microsecond and made strictly increasing."""
        if self._closed:
            raise OutputError(f"cannot write video {self.path}: the writer is closed")
        if any(self._pad):
            rgb = np.pad(rgb, ((0, self._pad[1]), (0, self._pad[0]), (0, 0)), mode="edge")
        t = self._count / self.fps if pts is None or not math.isfinite(pts) else pts
        t_us = max(round(t * 1e6), self._last_us + 1, 0)
        self._send(self._stream.frame(t_us, rgb))
        self._last_us = t_us
        self._count += 1

    def close(self) -> None:
        """Finish the file and move it to its final name."""
        if self._closed:
            return
        stdin = self._proc.stdin
        try:
            if stdin is not None:
                stdin.close()
        except OSError:
            pass
        if self._count == 0:
            self.abort()
            raise OutputError(f"cannot write video {self.path}: no frame was written")
        if self._proc.wait() != 0:
            raise self._fail()
        self._log.join(timeout=2.0)
        self._closed = True
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        """Stop writing and delete the partial file."""
        if self._closed:
            return
        self._closed = True
        _stop(self._proc, self._log, kill=True)
        self.tmp.unlink(missing_ok=True)
