"""Frames are the video's frames: variable frame rate, rotation, quiet ffmpeg, one-line errors."""

from __future__ import annotations

import math
import subprocess
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest

from synthetic_videos import moving_objects, write_folder, write_mp4
from vostool.errors import InputError, OutputError
from vostool.io.video import VideoWriter, open_video

# Presentation times of a clip whose rate changes from 5 to 25 to about 12 fps. Multiples of
# 1/25 s, the time base x264 picks for the clip, so the file stores them exactly.
VFR_TIMES = [0.0, 0.2, 0.4, 0.6, 0.8, 0.84, 0.88, 0.92, 0.96, 1.04, 1.12, 1.24]


def _ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def _run(*args: str) -> str:
    done = subprocess.run([_ffmpeg(), "-hide_banner", *args], capture_output=True, text=True, check=True)
    return done.stderr


def _vfr_clip(path: Path) -> Path:
    """An H.264 mp4 whose frames are shown at VFR_TIMES (setpts on a moving test pattern)."""
    pts = "+".join(f"eq(N,{i})*{t}" for i, t in enumerate(VFR_TIMES))
    _run(
        "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=96x64:rate=25", "-vf", f"setpts='({pts})/TB'",
        "-fps_mode", "passthrough", "-frames:v", str(len(VFR_TIMES)), "-c:v", "libx264", "-pix_fmt", "yuv420p", str(path),
    )  # fmt: skip
    return path


def _packet_times(path: Path) -> list[float]:
    """The stored frames' presentation times, read from the packets without decoding (ffmpeg's framecrc)."""
    out = subprocess.run([_ffmpeg(), "-v", "error", "-i", str(path), "-map", "0:v:0", "-c", "copy", "-f", "framecrc", "-"],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    tb = next(ln for ln in out.splitlines() if ln.startswith("#tb 0:")).split(":", 1)[1].strip()
    num, den = (int(v) for v in tb.split("/"))
    rows = [ln.split(",") for ln in out.splitlines() if ln and not ln.startswith("#")]
    return sorted(int(r[2]) * num / den for r in rows)


def test_vfr_video_gives_each_stored_frame_once_with_its_time(tmp_path) -> None:
    clip = _vfr_clip(tmp_path / "vfr.mp4")
    assert _packet_times(clip) == pytest.approx(VFR_TIMES, abs=1e-6)  # the file really is VFR
    src = open_video(clip)
    frames = list(src)
    assert len(frames) == len(VFR_TIMES)  # a constant-rate decode made 32 of them
    assert [f.index for f in frames] == list(range(len(VFR_TIMES)))
    assert [f.pts for f in frames] == pytest.approx(VFR_TIMES, abs=1e-6)
    assert src.timestamps == [f.pts for f in frames]
    # testsrc2 moves every frame: no two decoded frames are the same picture (none duplicated).
    assert all(np.abs(a.rgb.astype(int) - b.rgb.astype(int)).mean() > 1 for a, b in pairwise(frames))


def test_overlay_written_with_the_timestamps_keeps_them(tmp_path) -> None:
    src = open_video(_vfr_clip(tmp_path / "vfr.mp4"))
    frames = list(src)
    w = VideoWriter(tmp_path / "overlay.mp4", src.size, src.fps)
    for f in frames:
        w.write(255 - f.rgb, f.pts)
    w.close()
    back = list(open_video(tmp_path / "overlay.mp4"))
    assert [f.pts for f in back] == pytest.approx(VFR_TIMES, abs=1e-6)
    assert _packet_times(tmp_path / "overlay.mp4") == pytest.approx(VFR_TIMES, abs=1e-6)
    for a, b in zip(frames, back):  # same pictures in the same order
        assert np.abs((255 - a.rgb).astype(int) - b.rgb.astype(int)).mean() < 6


def test_writer_without_timestamps_writes_constant_rate(tmp_path) -> None:
    frames, _ = moving_objects(6, 32, 48)
    w = VideoWriter(tmp_path / "c.mp4", (48, 32), 12.5)
    for f in frames:
        w.write(f)
    w.close()
    src = open_video(tmp_path / "c.mp4")
    assert [f.pts for f in src] == pytest.approx([i / 12.5 for i in range(6)], abs=1e-6)
    assert src.fps == pytest.approx(12.5)


def test_folder_frames_are_timed_by_fps(tmp_path) -> None:
    frames, _ = moving_objects(4, 32, 48)
    src = open_video(write_folder(tmp_path / "f", frames), fps=8)
    assert [f.pts for f in src] == [0.0, 0.125, 0.25, 0.375] == src.timestamps


def test_rotated_video_is_read_as_shown(tmp_path) -> None:
    frames, _ = moving_objects(8, 64, 96)
    plain = write_mp4(tmp_path / "plain.mp4", frames)
    rotated = tmp_path / "rot.mp4"
    _run("-v", "error", "-display_rotation", "90", "-i", str(plain), "-c", "copy", str(rotated))  # metadata only, as phones write
    src = open_video(rotated)
    assert src.size == (64, 96) and src.stored_size == (96, 64) and src.rotation == 90
    shown = list(src)
    stored = list(open_video(plain))
    assert len(shown) == 8 and shown[0].rgb.shape == (96, 64, 3)
    for a, b in zip(stored, shown):  # turned 90 degrees counter-clockwise, as ffmpeg's players show it
        assert np.abs(np.rot90(a.rgb).astype(int) - b.rgb.astype(int)).mean() < 1
    assert "turn it 90 degrees counter-clockwise" in src.rotation_hint((96, 64))
    assert src.rotation_hint((64, 96)) is None and open_video(plain).rotation_hint((96, 64)) is None


def test_reading_and_writing_print_nothing(tmp_path, capfd) -> None:
    frames, _ = moving_objects(5, 64, 96)
    plain = write_mp4(tmp_path / "plain.mp4", frames)
    _run("-v", "error", "-display_rotation", "90", "-i", str(plain), "-c", "copy", str(tmp_path / "rot.mp4"))
    capfd.readouterr()
    src = open_video(tmp_path / "rot.mp4")  # imageio-ffmpeg warned here about the size change
    got = list(src)
    w = VideoWriter(tmp_path / "o.mp4", src.size, src.fps)
    for f in got:
        w.write(f.rgb, f.pts)
    w.close()
    early = open_video(tmp_path / "o.mp4")  # stopped after one frame: ffmpeg is ended quietly
    next(iter(early))
    early.close()
    with pytest.raises(InputError):
        open_video(tmp_path / "plain.mp4", fps=-5)
    out, err = capfd.readouterr()
    assert out == "" and err == ""


@pytest.mark.parametrize("fps", [-5, 0, math.nan, math.inf, "abc"])
def test_bad_fps_is_one_input_error_before_ffmpeg(tmp_path, fps) -> None:
    with pytest.raises(InputError, match="positive number of frames per second|not a number") as err:
        VideoWriter(tmp_path / "o.mp4", (48, 32), fps)  # type: ignore[arg-type]
    assert "ffmpeg" not in str(err.value) and "\n" not in str(err.value)
    assert list(tmp_path.iterdir()) == []
    frames, _ = moving_objects(2, 32, 48)
    with pytest.raises(InputError, match="--fps"):
        open_video(write_folder(tmp_path / "f", frames), fps=fps)  # type: ignore[arg-type]


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full to simulate a full disk")
def test_disk_full_is_one_clean_line(tmp_path) -> None:
    (tmp_path / ".o.mp4.partial").symlink_to("/dev/full")  # the writer's temporary file: every write fails with ENOSPC
    rng = np.random.default_rng(0)
    with pytest.raises(OutputError) as err:
        w = VideoWriter(tmp_path / "o.mp4", (96, 64), 25)
        for _ in range(100):  # noise does not compress: ffmpeg soon has to write
            w.write(rng.integers(0, 256, (64, 96, 3), dtype=np.uint8))
        w.close()
    text = str(err.value)
    assert "No space left on device" in text and "free some disk space" in text
    assert "ffmpeg" not in text.lower() and "None" not in text and "\n" not in text
    assert not (tmp_path / "o.mp4").exists()


def test_unreadable_video_is_one_line(tmp_path) -> None:
    bad = tmp_path / "notes.mp4"
    bad.write_text("this is not a video\n" * 50)
    with pytest.raises(InputError) as err:
        open_video(bad)
    assert "cannot decode video" in str(err.value) and "\n" not in str(err.value) and "ffmpeg -" not in str(err.value)
