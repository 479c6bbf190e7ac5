"""``vostool segment`` end to end: outputs, reports, bad input, interrupted runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from synthetic_videos import moving_objects, write_folder, write_mp4
from vostool.cli import main
from vostool.io.masks import DAVIS_PALETTE, read_index_png, write_index_png
from vostool.io.video import open_video


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        main(["segment", *[str(a) for a in args]])
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture()
def clip(tmp_path: Path) -> dict:
    frames, masks = moving_objects(14, 96, 128, objects=2, speed=1.0)
    video = write_mp4(tmp_path / "clip.mp4", frames, fps=12)
    pal = DAVIS_PALETTE.copy()
    pal[1], pal[2] = (250, 20, 20), (20, 20, 250)
    write_index_png(tmp_path / "m0.png", masks[0], pal)
    return {"video": video, "mask": tmp_path / "m0.png", "frames": frames, "masks": masks, "palette": pal, "dir": tmp_path}


def test_segment_mp4_writes_every_output(clip, capsys) -> None:
    out = clip["dir"] / "out"
    code, stdout, err = run([clip["video"], "--mask", clip["mask"], "-o", out, "--json", "--soft", "--mattes", "--overlay-frames"], capsys)
    assert code == 0, err
    summary = json.loads(stdout)
    assert summary["frames"] == 14 and summary["method"] == "flow" and summary["flow"] == "dis"
    assert summary["objects"] == [1, 2] and summary["resolution"] == [128, 96]
    for stage in ("decode", "flow", "warp", "aggregate", "write"):
        assert summary["stages"][stage]["median_ms"] >= 0 and "p95_ms" in summary["stages"][stage]
    pngs = sorted((out / "masks").glob("*.png"))
    assert [p.stem for p in pngs] == [f"{i:05d}" for i in range(14)]
    img = Image.open(pngs[5])
    assert img.mode == "P" and img.size == (128, 96)
    assert tuple(np.array(img.getpalette()[:9]).reshape(3, 3)[1]) == (250, 20, 20)  # input palette kept
    np.testing.assert_array_equal(read_index_png(pngs[0]), clip["masks"][0])
    ov = open_video(out / "overlay.mp4")
    assert ov.fps == pytest.approx(12) and ov.size == (128, 96) and len(list(ov)) == 14
    assert len(list((out / "overlays").glob("*.png"))) == 14
    soft = np.array(Image.open(out / "soft/2/00007.png"))
    matte = np.array(Image.open(out / "mattes/2/00007.png"))
    assert set(np.unique(matte)) <= {0, 255} and (matte > 0).sum() > 100
    assert ((soft > 127) == (matte > 0)).mean() > 0.98
    timing = json.loads((out / "timing.json").read_text())
    assert len(timing["frames"]) == 14 and timing["summary"]["frames"] == 14
    csv_lines = (out / "timing.csv").read_text().splitlines()
    assert csv_lines[0].startswith("frame,name,pts,decode,flow,warp") and len(csv_lines) == 15
    assert [r["pts"] for r in timing["frames"]] == pytest.approx([i / 12 for i in range(14)], abs=1e-3)  # the file's own times
    assert timing["summary"]["rotation"] == 0
    run_info = json.loads((out / "run.json").read_text())
    assert run_info["status"] == "complete"
    assert run_info["masks"]["0"]["num_objects"] == 2 and run_info["masks"]["0"]["kind"] == "palette PNG"
    assert err.splitlines() == ["vostool: mask for frame 0: 2 objects (ids 1, 2; palette PNG)"]  # the objects found


def test_frame_folder_with_masks_dir_adds_objects(tmp_path, capsys) -> None:
    frames, masks = moving_objects(10, 96, 128, objects=2, speed=1.0)
    d = write_folder(tmp_path / "frames", frames, "frame_{:06d}.jpg")
    md = tmp_path / "masks"
    md.mkdir()
    write_index_png(md / "frame_000000.png", np.where(masks[0] == 1, 1, 0).astype(np.uint8))
    write_index_png(md / "frame_000004.png", np.where(masks[4] == 2, 2, 0).astype(np.uint8))
    out = tmp_path / "out"
    code, stdout, err = run([d, "--masks", md, "-o", out, "--no-overlay", "--json"], capsys)
    assert code == 0, err
    assert json.loads(stdout)["objects"] == [1, 2]
    assert not (out / "overlay.mp4").exists()
    m3 = read_index_png(out / "masks/frame_000003.png")
    m4 = read_index_png(out / "masks/frame_000004.png")
    assert 2 not in np.unique(m3) and 2 in np.unique(m4)


def _one_line_error(code: int, err: str, pattern: str) -> None:
    assert code != 0
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert pattern in lines[0], lines[0]


def test_resize_mask_and_existing_output(clip, capsys) -> None:
    d = clip["dir"]
    small = d / "small.png"
    write_index_png(small, clip["masks"][0][::2, ::2])
    cmd = [clip["video"], "--mask", small, "--resize-mask", "-o", d / "o"]
    code, _, err = run(cmd, capsys)
    assert code == 0, err
    assert "vostool: mask for frame 0: 2 objects (ids 1, 2; palette PNG)" in err
    before = {p: p.stat().st_mtime_ns for p in (d / "o").rglob("*") if p.is_file()}
    code, _, err = run(cmd, capsys)  # the same command again: already complete, nothing touched
    assert code == 0 and "already complete" in err, err
    assert {p: p.stat().st_mtime_ns for p in (d / "o").rglob("*") if p.is_file()} == before
    code, _, err = run([*cmd, "--soft"], capsys)  # other options: refused, --overwrite suggested
    _one_line_error(code, err, "--overwrite")
    code, _, err = run([*cmd, "-q", "--overwrite", "--soft"], capsys)
    assert code == 0 and err == "", err
    assert (d / "o/soft/1/00000.png").is_file() and not (d / "o/.resume").exists()


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_output(clip, capsys) -> None:
    ro = clip["dir"] / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    code, _, err = run([clip["video"], "--mask", clip["mask"], "-o", ro / "o"], capsys)
    _one_line_error(code, err, "cannot create output folder")


def test_killed_run_resumes_to_identical_masks(tmp_path) -> None:
    frames, masks = moving_objects(150, 96, 128, objects=2, speed=1.0)
    d = write_folder(tmp_path / "frames", frames)
    write_index_png(tmp_path / "m.png", masks[0])
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "vostool", "segment", str(d), "--mask", str(tmp_path / "m.png"), "-q", "--checkpoint-every", "10"]
    ref = tmp_path / "ref"
    subprocess.run([*cmd, "-o", str(ref)], check=True, env=env, capture_output=True)
    out = tmp_path / "out"
    proc = subprocess.Popen([*cmd, "-o", str(out)], env=env, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if list((out / ".resume").glob("state.*")) and len(list((out / "masks").glob("[!.]*.png"))) >= 40:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(list((out / "masks").glob("[!.]*.png")))
    assert 0 < done < 150
    assert json.loads((out / "run.json").read_text())["status"] == "running"  # not complete
    assert not (out / "timing.json").exists() and not (out / "overlay.mp4").exists()
    for p in (out / "masks").glob("*.png"):  # every file under a final name is whole
        Image.open(p).load()
    r = subprocess.run([*cmd, "-o", str(out), "--resume"], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    for i in range(150):
        a = read_index_png(ref / "masks" / f"{i:05d}.png")
        b = read_index_png(out / "masks" / f"{i:05d}.png")
        assert np.array_equal(a, b), f"frame {i} differs after resume"
    assert json.loads((out / "run.json").read_text())["status"] == "complete"
    assert not list(out.rglob(".*partial*")) and not (out / ".resume").exists()  # no leftovers of the killed run
    assert len(list(open_video(out / "overlay.mp4"))) == 150
    summary = json.loads((out / "timing.json").read_text())["summary"]
    assert summary["frames"] == 150 and summary["resumed_from_frame"] > 0


@pytest.mark.parametrize(
    "method, entry, flow",
    [
        ("agss", "agss.davis16-lite2", "dis"),
        ("savos", "savos.davis16-lite2", None),
        ("embedding", "embedding.davis16-mbv2", None),
        ("ovsnet", "ovsnet.davis16-mbv2", "dis"),
    ],
)
def test_every_learned_method_runs_offline_out_of_the_box(method, entry, flow, clip, capsys, monkeypatch, tmp_path) -> None:
    """Each method's shipped weights (and the flow they name) come inside the package: with an
    empty cache and no network, segment runs with the package's pinned files."""
    monkeypatch.setenv("VOSTOOL_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / method
    code, stdout, err = run([clip["video"], "--mask", clip["mask"], "-o", out, "--method", method, "--json", "--no-overlay"], capsys)
    assert code == 0, err
    summary = json.loads(stdout)
    w = summary["weights"]
    assert w["name"] == entry and w["resolved_by"] == "package" and w["pinned"]
    assert summary["flow"] == flow and summary["frames"] == 14
    assert len(list((out / "masks").glob("*.png"))) == 14


def test_random_weights_are_labelled_in_the_report(clip) -> None:
    import vostool

    summary = vostool.segment(
        clip["video"],
        clip["mask"],
        clip["dir"] / "rnd",
        method="agss",
        flow="dis",
        weights="random",
        device="cpu",
        overlay=False,
        method_kwargs={"variant": "tiny"},
    )
    assert summary["weights"]["name"] == "random" and "speed measurements only" in summary["weights"]["note"]
    assert summary["frames"] == 14
    assert {"instance-agnostic", "instance-specific", "decoder"} <= set(summary["stages"])


def test_ovsnet_runs_offline_with_its_default_flow_shipped_in_the_package(clip, monkeypatch, tmp_path) -> None:
    """OVSNet's registry default flow is RAFT-small; its fp16 weights come inside the package, so
    even random weights (no trained default flow) run offline with an empty cache."""
    import vostool

    monkeypatch.setenv("VOSTOOL_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    summary = vostool.segment(
        clip["video"],
        clip["mask"],
        tmp_path / "o",
        method="ovsnet",
        weights="random",
        device="cpu",
        size=128,  # RAFT's correlation pyramid needs at least 128 pixels
        overlay=False,
        method_kwargs={"variant": "tiny"},
    )
    assert summary["flow"] == "raft-small" and summary["frames"] == 14
    flow_weights = summary["flow_weights"]
    assert flow_weights["name"] == "raft-small.things-fp16" and flow_weights["resolved_by"] == "package" and flow_weights["pinned"]


def test_inference_defaults_travel_with_the_weights(clip, capsys, tmp_path) -> None:
    """Without --size / --flow, agss runs at the size and with the flow its weights were trained
    with (weights.toml / the file's metadata); explicit options win; timing.json says which."""
    from vostool.inference.session import internal_size
    from vostool.weights import load_manifest

    trained = load_manifest().entry("agss.davis16-lite2").inference
    w, h = Image.open(clip["mask"]).size
    big = trained["size"] > min(w, h)  # the weights' size is capped at the input's (with a note, no warning)
    cases = {"defaults": ([], internal_size(w, h, trained["size"]), trained["flow"], ["flow", "size"])}
    cases["explicit"] = (["--size", "48", "--flow", "farneback"], internal_size(w, h, 48), "farneback", None)
    cases["input size"] = (["--size", "0"], (w, h), trained["flow"], ["flow"])
    for name, (extra, resolution, flow, used) in cases.items():
        args = [clip["video"], "--mask", clip["mask"], "-o", tmp_path / name, "--method", "agss", "--json", "--no-overlay", *extra]
        code, stdout, err = run(args, capsys)
        assert code == 0, err
        summary = json.loads(stdout)
        assert tuple(summary["internal_resolution"]) == resolution, name
        assert summary["flow"] == flow and summary["weights"].get("defaults_used") == used, name
        assert "warning" not in err or not big, err


def test_overwrite_deletes_only_what_vostool_wrote(clip, capsys) -> None:
    """Issue 14 item 2: --overwrite removes the files the earlier run recorded, nothing else."""
    out = clip["dir"] / "o"
    code, _, err = run([clip["video"], "--mask", clip["mask"], "-o", out, "-q", "--soft", "--no-overlay"], capsys)
    assert code == 0, err
    manifest = (out / ".vostool-files").read_text().split()
    assert "masks/00013.png" in manifest and "soft/2/00013.png" in manifest and "run.json" in manifest
    (out / "notes.txt").write_text("mine")
    (out / "frames-i-keep").mkdir()
    code, _, err = run([clip["video"], "--mask", clip["mask"], "-o", out, "-q", "--overwrite", "--no-overlay"], capsys)
    assert code == 0, err
    assert (out / "notes.txt").read_text() == "mine" and (out / "frames-i-keep").is_dir()
    assert not (out / "soft").exists()  # the earlier run's soft scores went with it
    assert not [p for p in (out / ".vostool-files").read_text().split() if p.startswith("soft/")]


@pytest.mark.slow
def test_a_second_run_on_the_same_folder_is_refused_while_the_first_finishes(tmp_path) -> None:
    """Issue 14 item 10: --overwrite during a run is refused with one line naming the running
    process; the first run completes unharmed and leaves no .resume/ or partial file."""
    frames, masks = moving_objects(60, 96, 128, objects=2, speed=1.0)
    d = write_folder(tmp_path / "frames", frames)
    write_index_png(tmp_path / "m.png", masks[0])
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "vostool", "segment", str(d), "--mask", str(tmp_path / "m.png"), "-q", "-o", str(tmp_path / "out")]
    first = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and first.poll() is None and len(list((tmp_path / "out/masks").glob("[!.]*.png"))) < 5:
        time.sleep(0.02)
    assert first.poll() is None, "the first run finished too early"
    first.send_signal(signal.SIGSTOP)  # hold it mid-run while the second one tries
    try:
        second = subprocess.run([*cmd, "--overwrite"], env=env, capture_output=True, text=True)
    finally:
        first.send_signal(signal.SIGCONT)
    assert second.returncode == 4
    assert second.stderr.strip() == f"vostool: error: {tmp_path / 'out'} is being written by another vostool run (pid {first.pid}); " + (
        "wait for it to finish or choose another -o"
    )
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    out = tmp_path / "out"
    assert json.loads((out / "run.json").read_text())["status"] == "complete"
    assert len(list((out / "masks").glob("*.png"))) == 60 and (out / "overlay.mp4").is_file()
    assert not (out / ".resume").exists() and not [p for p in out.rglob("*") if ".partial" in p.name]


def test_one_frame_numbering_for_masks_of_a_one_based_folder(tmp_path, capsys) -> None:
    """Issue 14 item 7: in a folder numbered from 1, ``--masks`` files named like the frames, or
    carrying the frames' numbers, land on those frames; ``--mask N:`` is the 0-based index."""
    frames, masks = moving_objects(8, 96, 128, objects=2, speed=1.0)
    d = write_folder(tmp_path / "frames", frames, "img_{:04d}.jpg")
    for i, p in reversed(list(enumerate(sorted(d.iterdir())))):
        p.rename(d / f"img_{i + 1:04d}.jpg")  # img_0001 .. img_0008
    first = np.where(masks[0] == 1, 1, 0).astype(np.uint8)
    later = np.where(masks[4] == 2, 2, 0).astype(np.uint8)  # object 2 on the 5th frame, img_0005 (index 4)
    for name, files in (("like-frames", ("img_0001", "img_0005")), ("numbers", ("0001", "0005"))):
        md = tmp_path / name
        md.mkdir()
        write_index_png(md / f"{files[0]}.png", first)
        write_index_png(md / f"{files[1]}.png", later)
        out = tmp_path / f"out-{name}"
        code, _, err = run([d, "--masks", md, "-o", out, "-q", "--no-overlay"], capsys)
        assert code == 0, err
        assert 2 not in read_index_png(out / "masks/img_0004.png")
        np.testing.assert_array_equal(read_index_png(out / "masks/img_0005.png") == 2, later == 2)
    write_index_png(tmp_path / "first.png", first)
    write_index_png(tmp_path / "later.png", later)
    code, _, err = run([d, "--mask", tmp_path / "first.png", "--mask", f"4:{tmp_path / 'later.png'}", "-o", tmp_path / "o3", "-q"], capsys)
    assert code == 0, err
    np.testing.assert_array_equal(
        read_index_png(tmp_path / "o3/masks/img_0005.png"), read_index_png(tmp_path / "out-numbers/masks/img_0005.png")
    )


def test_overlay_keeps_the_timing_of_a_variable_frame_rate_video(tmp_path, capsys) -> None:
    """Issue 14 item 6: one mask per decoded frame, in order, each frame's time in timing.json,
    and the overlay shows the frames at the input's times."""
    from test_io_video_vfr import VFR_TIMES, _vfr_clip

    video = _vfr_clip(tmp_path / "vfr.mp4")
    ids = np.zeros((64, 96), np.uint8)
    ids[20:40, 30:60] = 1
    write_index_png(tmp_path / "m.png", ids)
    out = tmp_path / "out"
    code, _, err = run([video, "--mask", tmp_path / "m.png", "-o", out, "-q"], capsys)
    assert code == 0, err
    assert len(list((out / "masks").glob("*.png"))) == len(VFR_TIMES)
    rows = json.loads((out / "timing.json").read_text())["frames"]
    assert [r["pts"] for r in rows] == pytest.approx(VFR_TIMES, abs=1e-3)
    ov = open_video(out / "overlay.mp4")
    list(ov)
    assert ov.timestamps == pytest.approx(VFR_TIMES, abs=2e-3)


def test_api_takes_masks_as_arrays_and_by_frame(clip) -> None:
    """The Python API: ``{frame: mask}`` with arrays or files; arrays are checked, never wrapped."""
    import vostool
    from vostool.errors import InputError

    first = clip["masks"][0]
    later = np.where(clip["masks"][6] == 2, 2, 0).astype(np.uint8)
    write_index_png(clip["dir"] / "later.png", later)
    given = vostool.collect_masks({0: np.where(first == 1, 1, 0).astype(np.int64), 6: str(clip["dir"] / "later.png")})
    assert sorted(given) == [0, 6] and given[0].object_ids == [1] and given[6].source.endswith("later.png")
    with pytest.raises(InputError, match="holds id 300"):
        vostool.collect_masks(np.where(first == 1, 300, first.astype(np.int32)))
    with pytest.raises(InputError, match="not a frame index"):
        vostool.collect_masks({-1: first})
    summary = vostool.segment(clip["video"], {0: first, 6: later}, clip["dir"] / "api", overlay=False, device="cpu")
    assert summary["objects"] == [1, 2] and summary["frames"] == 14
