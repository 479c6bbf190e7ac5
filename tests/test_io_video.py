"""Streamed video and frame-folder reading; the overlay writer."""

from __future__ import annotations

import numpy as np
import pytest

from synthetic_videos import moving_objects, write_folder, write_mp4
from vostool.errors import InputError
from vostool.io.video import FrameFolder, VideoWriter, natural_key, open_video


def test_mp4_streams_every_frame_with_metadata(tmp_path) -> None:
    frames, _ = moving_objects(20, 64, 96)
    src = open_video(write_mp4(tmp_path / "c.mp4", frames, fps=25))
    assert src.size == (96, 64) and src.fps == pytest.approx(25) and src.num_frames == 20
    got = list(src)
    assert [f.index for f in got] == list(range(20)) and got[3].name == "00003"
    err = np.abs(got[7].rgb.astype(int) - frames[7].astype(int)).mean()
    assert err < 6  # lossy but close


def test_folder_natural_order_and_names(tmp_path) -> None:
    frames, _ = moving_objects(12, 32, 48)
    d = write_folder(tmp_path / "f", frames, "frame_{}.jpg")
    src = open_video(d)
    names = [f.name for f in src]
    assert names == [f"frame_{i}" for i in range(12)]  # frame_2 before frame_10
    assert sorted(["f10", "f2", "f1"], key=natural_key) == ["f1", "f2", "f10"]
    assert [f.index for f in FrameFolder(d).frames(start=9)] == [9, 10, 11]


def test_bad_inputs_are_input_errors(tmp_path) -> None:
    with pytest.raises(InputError, match="not found"):
        open_video(tmp_path / "nope.mp4")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no JPEG/PNG frames"):
        open_video(tmp_path / "empty")
    txt = tmp_path / "notes.mp4"
    txt.write_text("this is not a video\n" * 50)
    with pytest.raises(InputError, match="cannot decode video"):
        open_video(txt)
    (tmp_path / "zero.mp4").write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        open_video(tmp_path / "zero.mp4")


def test_truncated_mp4_is_reported(tmp_path) -> None:
    frames, _ = moving_objects(60, 64, 96)
    good = write_mp4(tmp_path / "g.mp4", frames)
    data = good.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])  # moov first (faststart is not used here: ffmpeg writes it last)
    with pytest.raises(InputError, match="truncated|cannot decode|no decodable"):
        list(open_video(cut))


def test_truncated_faststart_mp4_is_reported(tmp_path) -> None:
    frames, _ = moving_objects(60, 64, 96)
    w = VideoWriter(tmp_path / "fs.mp4", (96, 64), 25)  # writes moov first (+faststart)
    for f in frames:
        w.write(f)
    w.close()
    data = (tmp_path / "fs.mp4").read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.4)])
    with pytest.raises(InputError, match="truncated"):
        list(open_video(cut))


def test_video_writer_appears_only_when_closed(tmp_path) -> None:
    frames, _ = moving_objects(5, 33, 47)  # odd size is padded for yuv420p
    w = VideoWriter(tmp_path / "o.mp4", (47, 33), 10)
    for f in frames:
        w.write(f)
    assert not (tmp_path / "o.mp4").exists()
    w.close()
    src = open_video(tmp_path / "o.mp4")
    assert len(list(src)) == 5 and src.fps == pytest.approx(10)
    w2 = VideoWriter(tmp_path / "a.mp4", (47, 33), 10)
    w2.write(frames[0])
    w2.abort()
    assert not (tmp_path / "a.mp4").exists() and not list(tmp_path.glob(".a*"))
