"""Bad input and faults, one row each: the command, its exit status, the one line it prints, and
what it leaves behind (issue 14's table).

Every row runs the real CLI in this process and checks that stderr holds no traceback, exactly
one ``vostool: error:`` line (for failures; other lines may only be vostool's notes), that the
line matches the row's pattern, and the row's leftovers:

* ``none``: the output folder was not created (or is empty);
* ``failed``: ``run.json`` says ``failed``, no ``timing.json`` / ``overlay.mp4``;
* ``complete``: ``run.json`` says ``complete``, no ``.resume/``;
* ``untouched``: every file that was in the folder before is there, unchanged, and nothing new.

In every case no temporary (``*.partial*``) file is left. ``VOSTOOL_TABLE=FILE`` appends each
row's result as a Markdown table line to FILE (the closing note's table).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pickle
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from synthetic_videos import moving_objects, write_folder, write_mp4
from vostool.cli import main
from vostool.io.masks import read_index_png, write_index_png

H, W, N = 96, 128, 14


@dataclass
class Fx:
    """The shared files of the table (made once per module)."""

    d: Path
    video: Path
    mask: Path
    frames: Path
    masks: list[np.ndarray]


@pytest.fixture(scope="module")
def fx(tmp_path_factory: pytest.TempPathFactory) -> Fx:
    d = tmp_path_factory.mktemp("bad")
    frames, masks = moving_objects(N, H, W, objects=2, speed=1.0)
    video = write_mp4(d / "clip.mp4", frames, fps=12)
    write_index_png(d / "m0.png", masks[0])
    write_folder(d / "frames", frames, "{:05d}.jpg")
    (d / "text.mp4").write_text("hello\n" * 100)
    data = video.read_bytes()
    (d / "cut.mp4").write_bytes(data[: len(data) // 3])
    (d / "empty.mp4").write_bytes(b"")
    (d / "noframes").mkdir()
    write_index_png(d / "small.png", masks[0][: H // 2, : W // 2])
    write_index_png(d / "blank.png", np.zeros((H, W), np.uint8))
    write_index_png(d / "allvoid.png", np.full((H, W), 255, np.uint8))
    (d / "notimage.png").write_text("not a png")
    Image.fromarray(np.where(masks[0] > 0, 255, 0).astype(np.uint8)).convert("RGB").save(d / "mask.jpg", quality=90)
    Image.fromarray(np.where(masks[0] == 1, 300, masks[0].astype(np.uint16))).save(d / "id300.png")
    ramp = np.tile(np.linspace(0, 255, W), (H, 1)).astype(np.uint8)
    Image.fromarray(np.where(masks[0] > 0, ramp, 0).astype(np.uint8)).save(d / "matte.png")
    (d / "maskdir").mkdir()
    (d / "emptymasks").mkdir()
    (d / "wrongnames").mkdir()
    write_index_png(d / "wrongnames" / "00099.png", masks[0])
    # a folder of frames with a different-size frame and one with a broken frame, mid-video
    for name, damage in (("oddsize", "size"), ("broken", "bytes")):
        f = write_folder(d / name, frames, "{:05d}.jpg")
        if damage == "size":
            cv2.imwrite(str(f / "00007.jpg"), np.zeros((H // 2, W, 3), np.uint8))
        else:
            (f / "00007.jpg").write_bytes(b"\xff\xd8garbage")
    # a video stored 128x96 that players turn by 90 degrees (phones), and the mask of its stored frames
    import imageio_ffmpeg

    subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-display_rotation", "90", "-i", str(video), "-c", "copy", str(d / "rot.mp4")],
        check=True,
    )
    # weights files
    from vostool.weights import save_state_dict

    save_state_dict(d / "w.safetensors", {"a": torch.randn(64, 64)}, {"arch": "{}"})
    (d / "cut.safetensors").write_bytes((d / "w.safetensors").read_bytes()[:-100])
    (d / "random.pth").write_bytes(np.random.default_rng(0).bytes(5000))
    with open(d / "evil.pth", "wb") as f:
        pickle.dump({"w": _Exploit()}, f, protocol=2)
    _make_davis(d / "DAVIS", d / "res")
    return Fx(d, video, d / "m0.png", d / "frames", masks)


class _Exploit:
    def __reduce__(self):
        return (os.system, ("true",))


def _make_davis(root: Path, res: Path) -> None:
    """A DAVIS 2017 layout of one 8-frame sequence whose ground truth lacks frame 00004, and predictions."""
    ann, img = root / "Annotations/480p/s", root / "JPEGImages/480p/s"
    ann.mkdir(parents=True)
    img.mkdir(parents=True)
    (res / "s").mkdir(parents=True)
    for t in range(8):
        ids = np.zeros((48, 64), np.uint8)
        ids[10:30, 10 + t : 30 + t] = 1
        cv2.imwrite(str(img / f"{t:05d}.jpg"), np.full((48, 64, 3), 100, np.uint8))
        write_index_png(res / "s" / f"{t:05d}.png", ids)
        if t != 4:
            write_index_png(ann / f"{t:05d}.png", ids)
    (root / "ImageSets/2017").mkdir(parents=True)
    (root / "ImageSets/2017/val.txt").write_text("s\n")


# ------------------------------------------------------------------------------------ set-ups
def _complete_run(fx: Fx, out: Path, *extra: str) -> None:
    assert _cli(["segment", fx.video, "--mask", fx.mask, "-o", out, "-q", "--no-overlay", *extra])[0] == 0


def _foreign_masks(fx: Fx, out: Path) -> None:
    (out / "masks").mkdir(parents=True)
    write_index_png(out / "masks" / "00000.png", fx.masks[0])  # someone's annotations, no run.json


def _annotated_sequence(fx: Fx, out: Path) -> None:
    """``seq/`` holds the user's frames and ``seq/masks`` the user's annotations."""
    write_folder(out / "frames", [np.zeros((H, W, 3), np.uint8)] * 3)
    (out / "masks").mkdir()
    write_index_png(out / "masks" / "00000.png", fx.masks[0])


def _unfinished_run(fx: Fx, out: Path) -> None:
    (out / "run.json").write_text(json.dumps({"status": "failed", "fingerprint": "0" * 16}))


def _other_tools_run_json(fx: Fx, out: Path) -> None:
    (out / "run.json").write_text('{"tool": "another one"}')


def _user_file_in_a_run(fx: Fx, out: Path) -> None:
    _complete_run(fx, out)
    write_index_png(out / "masks" / "mine.png", fx.masks[0])  # added by the user after the run


@contextlib.contextmanager
def _locked(out: Path) -> Iterator[None]:
    """Another run holds the folder (the lock a running vostool holds)."""
    out.mkdir(exist_ok=True)
    (out / "run.json").write_text(json.dumps({"status": "running", "pid": 4242}))
    fd = os.open(out, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        os.close(fd)


# ------------------------------------------------------------------------------------ the table
@dataclass
class Case:
    kind: str
    args: Callable[[Fx, Path], list]
    exit: int
    line: str
    leftovers: str = "none"
    setup: Callable[[Fx, Path], None] | None = None
    slow: bool = False
    around: Callable[[Path], contextlib.AbstractContextManager[None]] | None = None


def _seg(*args: object) -> Callable[[Fx, Path], list]:
    """``vostool segment VIDEO --mask M -o OUT ARGS``; the strings ``{v}``, ``{m}``, ``{d}`` name the shared files."""

    def build(fx: Fx, out: Path) -> list:
        def fill(a: object) -> object:
            return str(a).format(v=fx.video, m=fx.mask, d=fx.d, f=fx.frames, o=out) if isinstance(a, str) else a

        parts = [fill(a) for a in args]
        if "-o" not in parts:
            parts += ["-o", out]
        return ["segment", *parts]

    return build


def _bench(*args: str) -> Callable[[Fx, Path], list]:
    return lambda fx, out: ["bench", *[a.format(d=fx.d, o=out) for a in args], "--workers", "1", "-o", out]


CASES = [
    # video
    Case("video: missing file", _seg("{d}/missing.mp4", "--mask", "{m}"), 2, r"video not found: .*missing\.mp4"),
    Case(
        "video: a text file named .mp4", _seg("{d}/text.mp4", "--mask", "{m}"), 2, r"cannot decode video .*text\.mp4: not a readable video"
    ),
    Case(
        "video: truncated mp4 (first third)",
        _seg("{d}/cut.mp4", "--mask", "{m}"),
        2,
        r"cannot decode video .*cut\.mp4: not a readable video",
    ),
    Case("video: empty file", _seg("{d}/empty.mp4", "--mask", "{m}"), 2, r"video file is empty"),
    Case("video: folder without frames", _seg("{d}/noframes", "--mask", "{m}"), 2, r"no JPEG/PNG frames found in folder"),
    Case("video: a single image", _seg("{d}/m0.png", "--mask", "{m}"), 2, r"is a single image; give a video file or a folder"),
    Case(
        "video: frame of another size mid-folder",
        _seg("{d}/oddsize", "--mask", "{m}"),
        2,
        r"frame 00007\.jpg is 128x48 but the first frame is 128x96",
        "failed",
    ),
    Case("video: undecodable frame mid-folder", _seg("{d}/broken", "--mask", "{m}"), 2, r"cannot decode frame .*00007\.jpg", "failed"),
    Case("video: --fps -5", _seg("{f}", "--mask", "{m}", "--fps", "-5"), 2, r"--fps -5\.0 is not usable; give a positive number"),
    Case("video: --fps abc", _seg("{f}", "--mask", "{m}", "--fps", "abc"), 2, r"Invalid value for '--fps'"),
    Case(
        "video: rotated phone video, mask of the stored frames",
        _seg("{d}/rot.mp4", "--mask", "{m}"),
        2,
        r"mask .*m0\.png: the mask is 128x96 like the video's stored frames, but the video carries a rotation of 90 degrees",
    ),
    # masks
    Case("mask: missing file", _seg("{v}", "--mask", "{d}/nomask.png"), 2, r"mask file not found: .*nomask\.png"),
    Case("mask: a folder", _seg("{v}", "--mask", "{d}/maskdir"), 2, r"mask path is a folder, not an image.*--masks DIR"),
    Case("mask: not an image", _seg("{v}", "--mask", "{d}/notimage.png"), 2, r"cannot read mask .*notimage\.png: not an image file"),
    Case("mask: JPEG", _seg("{v}", "--mask", "{d}/mask.jpg"), 2, r"mask .*mask\.jpg is a JPEG image: lossy compression"),
    Case("mask: no object", _seg("{v}", "--mask", "{d}/blank.png"), 2, r"mask .*blank\.png has no object"),
    Case("mask: only void (255)", _seg("{v}", "--mask", "{d}/allvoid.png"), 2, r"mask .*allvoid\.png has no object"),
    Case(
        "mask: smaller than the video",
        _seg("{v}", "--mask", "{d}/small.png"),
        2,
        r"mask .*small\.png is 64x48 but the video is 128x96; pass --resize-mask",
    ),
    Case(
        "mask: 16-bit ids above 255",
        _seg("{v}", "--mask", "{d}/id300.png"),
        2,
        r"mask .*id300\.png holds value 300 .*object ids must be 1\.\.254",
    ),
    Case("mask: soft matte", _seg("{v}", "--mask", "{d}/matte.png"), 2, r"mask .*matte\.png has soft gradients"),
    Case(
        "mask: frame past the end (--mask 999:)",
        _seg("{v}", "--mask", "{m}", "--mask", "999:{m}"),
        2,
        r"mask .*m0\.png is given for frame 999 but the video has about 14 frames",
    ),
    Case(
        "mask: frame past the end of a folder",
        _seg("{f}", "--mask", "{m}", "--mask", "14:{m}"),
        2,
        r"is given for frame 14 but the video has 14 frames \(0\.\.13, counted from 0\)",
    ),
    Case("mask: --mask -1:FILE", _seg("{v}", "--mask", "-1:{m}"), 2, r"--mask '-1:.*': '-1' is not a frame number"),
    Case("mask: --mask abc:FILE", _seg("{v}", "--mask", "abc:{m}"), 2, r"--mask 'abc:.*': 'abc' is not a frame number"),
    Case("mask: --mask 3: (no file)", _seg("{v}", "--mask", "3:"), 2, r"--mask '3:' names no file"),
    Case("mask: two masks for frame 0", _seg("{v}", "--mask", "{m}", "--mask", "0:{m}"), 2, r"two masks given for frame 0"),
    Case("mask: none given", _seg("{v}"), 2, r"no mask given: pass --mask FILE"),
    Case("mask: only a later frame", _seg("{v}", "--mask", "3:{m}"), 2, r"no mask for frame 0: the first frame needs a mask"),
    Case("mask: --masks folder missing", _seg("{v}", "--masks", "{d}/nomasks"), 2, r"--masks folder not found"),
    Case("mask: --masks folder empty", _seg("{v}", "--masks", "{d}/emptymasks"), 2, r"no mask PNGs in"),
    Case(
        "mask: --masks name that is no frame of the folder",
        _seg("{f}", "--masks", "{d}/wrongnames"),
        2,
        r"mask '00099' matches no frame of the folder \(frames 00000 \.\. 00013\)",
    ),
    # options
    Case("option: unknown method", _seg("{v}", "--mask", "{m}", "--method", "magic"), 2, r"unknown method 'magic'"),
    Case("option: unknown flow", _seg("{v}", "--mask", "{m}", "--flow", "sparse"), 2, r"unknown flow 'sparse'"),
    Case(
        "option: a device that is not there",
        _seg("{v}", "--mask", "{m}", "--device", "cuda:7" if not torch.cuda.is_available() else "tpu"),
        2,
        r"device",
    ),
    Case("option: --size 8", _seg("{v}", "--mask", "{m}", "--size", "8"), 2, r"Invalid value for '--size'"),
    Case("option: --precision fp8", _seg("{v}", "--mask", "{m}", "--precision", "fp8"), 2, r"Invalid value for '--precision'"),
    Case("option: --scales for a method without them", _seg("{v}", "--mask", "{m}", "--scales", "0.5,1"), 2, r"--scales applies to savos"),
    Case(
        "option: --scales not numbers",
        _seg("{v}", "--mask", "{m}", "--method", "savos", "--scales", "half"),
        2,
        r"--scales must be numbers",
    ),
    Case(
        "option: --weights with --method flow",
        _seg("{v}", "--mask", "{m}", "--weights", "{d}/w.safetensors"),
        2,
        r"method 'flow' has no weights",
    ),
    Case("option: --resume with --overwrite", _seg("{v}", "--mask", "{m}", "--resume", "--overwrite"), 2, r"give one of them"),
    Case(
        "option: --size above the input (warning, capped)",
        _seg("{v}", "--mask", "{m}", "--size", "1080", "--no-overlay"),
        0,
        r"warning: --size 1080 is above the video's shorter side \(96\); running at the input size 128x96",
        "complete",
    ),
    # weights
    Case(
        "weights: missing file",
        _seg("{v}", "--mask", "{m}", "--method", "agss", "--weights", "{d}/none.safetensors"),
        3,
        r"none\.safetensors",
    ),
    Case(
        "weights: truncated safetensors",
        _seg("{v}", "--mask", "{m}", "--method", "agss", "--weights", "{d}/cut.safetensors"),
        3,
        r"cut\.safetensors is damaged or incomplete",
    ),
    Case(
        "weights: random bytes as .pth",
        _seg("{v}", "--mask", "{m}", "--method", "agss", "--weights", "{d}/random.pth"),
        3,
        r"random\.pth is not a PyTorch checkpoint",
    ),
    Case(
        "weights: pickle that would run code",
        _seg("{v}", "--mask", "{m}", "--method", "agss", "--weights", "{d}/evil.pth"),
        3,
        r"evil\.pth cannot be loaded safely.*system",
    ),
    # output folder
    Case(
        "output: -o is a file",
        _seg("{v}", "--mask", "{m}", "-o", "{d}/notimage.png"),
        4,
        r"cannot create output folder .*notimage\.png: File exists",
    ),
    Case(
        "output: -o under a file",
        _seg("{v}", "--mask", "{m}", "-o", "{d}/m0.png/sub"),
        4,
        r"cannot create output folder .*: Not a directory",
    ),
    Case(
        "output: -o is the frame folder", _seg("{f}", "--mask", "{m}", "-o", "{f}"), 4, r"output folder .*frames holds the input .*frames"
    ),
    Case("output: -o holds the video", _seg("{v}", "--mask", "{m}", "-o", "{d}"), 4, r"holds the input .*clip\.mp4"),
    Case(
        "output: -o seq with --masks seq/masks, --overwrite",
        _seg("{v}", "--masks", "{o}/masks", "--overwrite"),
        4,
        r"output folder .*out holds the input .*out/masks/00000\.png; choose an -o outside the inputs",
        "untouched",
        _annotated_sequence,
    ),
    Case(
        "output: -o seq holding the mask file, --overwrite",
        _seg("{v}", "--mask", "{o}/masks/00000.png", "--overwrite"),
        4,
        r"holds the input .*masks/00000\.png",
        "untouched",
        _foreign_masks,
    ),
    Case(
        "output: masks/ vostool did not write, --overwrite",
        _seg("{v}", "--mask", "{m}", "--overwrite"),
        4,
        r"already holds masks that no vostool run wrote; vostool never replaces files it did not write",
        "untouched",
        _foreign_masks,
    ),
    Case(
        "output: a run.json vostool did not write, --overwrite",
        _seg("{v}", "--mask", "{m}", "--overwrite"),
        4,
        r"holds run\.json, which no vostool run recorded",
        "untouched",
        _other_tools_run_json,
    ),
    Case(
        "output: an unfinished run",
        _seg("{v}", "--mask", "{m}"),
        4,
        r"holds an unfinished run \(status: failed\); use --resume to finish it or --overwrite",
        "untouched",
        _unfinished_run,
    ),
    Case(
        "output: --resume of a run with other inputs",
        _seg("{v}", "--mask", "{m}", "--resume"),
        4,
        r"--resume: .* holds a run \(status: failed\) made with other inputs or options",
        "untouched",
        _unfinished_run,
    ),
    Case(
        "output: a complete run with other options",
        _seg("{v}", "--mask", "{m}", "--no-overlay", "--soft"),
        4,
        r"holds a complete run with other inputs or options; use --overwrite",
        "untouched",
        lambda fx, out: _complete_run(fx, out),
        slow=True,
    ),
    Case(
        "output: the same command on a complete run",
        _seg("{v}", "--mask", "{m}", "--no-overlay"),
        0,
        r"is already complete \(same inputs and options\); --overwrite redoes it",
        "untouched",
        lambda fx, out: _complete_run(fx, out),
        slow=True,
    ),
    Case(
        "output: --overwrite with a user's file among the masks",
        _seg("{v}", "--mask", "{m}", "--no-overlay", "--overwrite"),
        4,
        r"holds masks/mine\.png, which no vostool run recorded \(in \.vostool-files\); vostool deletes only what it wrote",
        "untouched",
        _user_file_in_a_run,
        slow=True,
    ),
    Case(
        "output: another run is writing the folder",
        _seg("{v}", "--mask", "{m}", "--overwrite"),
        4,
        r"is being written by another vostool run \(pid 4242\); wait for it to finish",
        "untouched",
        around=_locked,
    ),
    # bench
    Case(
        "bench: dataset root missing", _bench("--eval-only", "--results", "{d}/res", "--root", "{d}/nodata"), 2, r"dataset root not found"
    ),
    Case(
        "bench: ground truth missing for a frame",
        _bench("--eval-only", "--results", "{d}/res", "--root", "{d}/DAVIS"),
        0,
        r"warning: 1 of the 8 frames of sequence s have no ground truth \(e\.g\. .*00004\.png\): scoring the other 7",
        "reports",
    ),
    Case(
        "bench: ground truth missing, --strict",
        _bench("--eval-only", "--results", "{d}/res", "--root", "{d}/DAVIS", "--strict"),
        2,
        r"1 of the 8 frames of sequence s have no ground truth .*drop --strict",
    ),
]


def _cli(args: list, capfd: pytest.CaptureFixture[str] | None = None) -> tuple[int, str]:
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    err = capfd.readouterr().err if capfd is not None else ""
    return code, err


def _snapshot(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()} if out.is_dir() else {}


def _check_leftovers(case: Case, out: Path, before: dict[str, bytes]) -> str:
    assert not [p for p in (out.rglob("*") if out.is_dir() else []) if ".partial" in p.name], "temporary files left"
    if case.leftovers == "none":
        assert not out.exists() or not any(out.iterdir())
        return "no output folder"
    if case.leftovers == "untouched":
        assert _snapshot(out) == before
        return "folder untouched" if before else "nothing written"
    if case.leftovers == "reports":
        report = json.loads((out / "results-val.json").read_text())
        assert report["scoring"]["frames_without_ground_truth"] == 1 and report["sequences"][0]["missing_ground_truth"] == ["00004"]
        return "reports count the frame (results-val.json)"
    status = json.loads((out / "run.json").read_text())["status"]
    assert status == case.leftovers, status
    if status == "failed":
        assert not (out / "timing.json").exists() and not (out / "overlay.mp4").exists()
        return "run.json failed, no timing.json / overlay.mp4"
    assert (out / "timing.json").is_file() and not (out / ".resume").exists()
    return "run.json complete, no .resume/"


def _params() -> list:
    return [pytest.param(c, id=re.sub(r"[^a-z0-9]+", "-", c.kind.lower()).strip("-"), marks=[pytest.mark.slow] * c.slow) for c in CASES]


@pytest.mark.parametrize("case", _params())
def test_bad_input(case: Case, fx: Fx, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    if case.setup is not None:
        out.mkdir()
        case.setup(fx, out)
    capfd.readouterr()
    with case.around(out) if case.around is not None else contextlib.nullcontext():
        before = _snapshot(out)
        code, err = _cli(case.args(fx, out), capfd)
    assert "Traceback" not in err and "internal error" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    if case.exit:
        errors = [ln for ln in lines if ln.startswith("vostool: error: ")]
        assert len(errors) == 1, err
        assert all(ln in errors or re.match(r"vostool: (mask for frame \d+:|warning:)", ln) for ln in lines), err
        line = errors[0]
    else:
        line = next((ln for ln in lines if re.search(case.line, ln)), "")
    assert code == case.exit, err
    assert re.search(case.line, line), line
    _table_row(case.kind, code, line, _check_leftovers(case, out, before), fx.d, tmp_path)


def _table_row(kind: str, code: int, line: str, left: str, *folders: Path) -> None:
    """Append the row to ``$VOSTOOL_TABLE`` (when set), with the test's folders shortened to "…"."""
    table = os.environ.get("VOSTOOL_TABLE")
    if table:
        for folder in folders:
            line = line.replace(str(folder), "…")
        with open(table, "a", encoding="utf-8") as f:
            f.write(f"| {kind} | {code} | {line.replace('|', '/')} | {left} |\n")


def test_the_table_has_forty_cases() -> None:
    assert len(CASES) >= 40 and len({c.kind for c in CASES}) == len(CASES)


def _mount_small_disk(path: Path, size: str) -> bool:
    path.mkdir()
    if os.name != "posix" or os.geteuid() != 0:
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True).returncode == 0


@pytest.mark.slow
@pytest.mark.parametrize(
    "what, extra",
    [("--soft", ["--soft", "--mattes", "--overlay-frames"]), ("resume checkpoints", ["--checkpoint-every", "1"]), ("full before", [])],
)
def test_disk_full_fails_with_one_line(what: str, extra: list[str], fx: Fx, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """Issue 14 item 9: a disk that fills up during the run: one line saying so (no "internal
    error: OSError", no "(None)"), run.json "failed", no half-written file."""
    disk = tmp_path / "disk"
    if not _mount_small_disk(disk, "160k"):
        pytest.skip("needs root to mount a small tmpfs")
    try:
        out = disk / "out"
        if what == "full before":
            with contextlib.suppress(OSError), open(disk / "filler", "wb") as f:
                f.write(b"\0" * (1 << 20))
        code, err = _cli(["segment", fx.video, "--mask", fx.mask, "-o", out, *extra], capfd)
        errors = [ln for ln in err.splitlines() if ln.startswith("vostool: error:")]
        assert code == 4 and len(errors) == 1 and "Traceback" not in err, err
        assert "No space left on device" in errors[0] and "free some disk space" in errors[0] and "(None)" not in errors[0], errors[0]
        if (out / "run.json").exists() or what != "full before":  # a disk full from the start may not take run.json at all
            assert json.loads((out / "run.json").read_text())["status"] == "failed"
        assert not (out / "timing.json").exists() and not (out / "overlay.mp4").exists()
        assert not [p for p in out.rglob("*") if ".partial" in p.name]
        for p in (out / "masks").glob("*.png"):
            Image.open(p).load()  # every file under a final name is whole
        left = "run.json failed" if (out / "run.json").exists() else "no run.json"
        _table_row(f"fault: disk full ({what})", code, errors[0], f"{left}, no timing.json / overlay.mp4", fx.d, disk)
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


@pytest.mark.slow
def test_ctrl_c_stops_with_one_line_and_resumes(tmp_path: Path) -> None:
    """A run stopped with Ctrl-C (SIGINT): exit 130, one line saying how to finish it, run.json
    "interrupted", a checkpoint, no overlay or report that looks complete; --resume finishes it."""
    frames, masks = moving_objects(100, H, W, objects=2, speed=1.0)
    d = write_folder(tmp_path / "frames", frames)
    write_index_png(tmp_path / "m.png", masks[0])
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "vostool", "segment", str(d), "--mask", str(tmp_path / "m.png"), "-q", "-o", str(out)]
    proc = subprocess.Popen(
        cmd,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # a background job inherits SIGINT ignored
    )
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and len(list((out / "masks").glob("[!.]*.png"))) < 20:
        time.sleep(0.02)
    proc.send_signal(signal.SIGSTOP)  # hold it mid-run, so Ctrl-C lands in the frame loop
    assert proc.poll() is None, "the run finished before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGCONT)
    _, err = proc.communicate(timeout=60)
    lines = err.strip().splitlines()
    assert proc.returncode == 130 and len(lines) == 1 and "Traceback" not in err, err
    assert re.fullmatch(r"vostool: error: interrupted after \d+ frames; finish the run with the same command plus --resume", lines[0])
    assert json.loads((out / "run.json").read_text())["status"] == "interrupted" and (out / ".resume/state.npz").is_file()  # flow: no torch
    assert not (out / "overlay.mp4").exists() and not (out / "timing.json").exists()
    assert not [p for p in out.rglob("*") if ".partial" in p.name]
    _table_row("fault: Ctrl-C during the run", proc.returncode, lines[0], "run.json interrupted, .resume/state.npz", tmp_path)
    done = subprocess.run([*cmd, "--resume"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert json.loads((out / "run.json").read_text())["status"] == "complete" and not (out / ".resume").exists()
    assert json.loads((out / "timing.json").read_text())["summary"]["resumed_from_frame"] > 0  # from the Ctrl-C checkpoint
    ref = tmp_path / "ref"
    subprocess.run([*cmd[:-1], str(ref)], check=True, capture_output=True)
    for i in range(100):  # the checkpoint held a whole step: the masks of an uninterrupted run
        assert np.array_equal(read_index_png(out / "masks" / f"{i:05d}.png"), read_index_png(ref / "masks" / f"{i:05d}.png")), i
