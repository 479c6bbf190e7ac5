"""``vostool batch``: jobs from a folder or a manifest, worker processes that match ``vostool
segment`` byte for byte, failed jobs listed without stopping the others, a killed worker's job
started again, and a killed batch finished by running it again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from batch_helpers import CLIPS, KillFirstWorker, assert_same_masks, make_clips, reference_masks
from synthetic_videos import moving_objects, write_folder
from vostool.batch import ProcessExecutor, find_jobs, plan_job, run_batch
from vostool.cli import main
from vostool.errors import InputError
from vostool.io.masks import write_index_png
from vostool.options import OutputOptions, RunOptions


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("batch")
    folder = make_clips(root / "clips")
    return {"clips": folder, "ref": reference_masks(folder, root / "ref"), "root": root}


def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        main(["batch", *map(str, args)])
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_jobs_from_a_folder_and_from_manifests(clips: dict[str, Path], tmp_path: Path) -> None:
    folder = clips["clips"]
    jobs = {j.name: j for j in find_jobs(folder)}
    assert list(jobs) == list(CLIPS)
    assert jobs["a_mp4"].masks == (str(folder / "a_mp4_mask.png"),) and jobs["a_mp4"].masks_dir is None
    assert jobs["b_frames"].video == str(folder / "b_frames")
    assert jobs["c_later"].masks == () and jobs["c_later"].masks_dir == str(folder / "c_later_masks")
    assert all(j.error is None for j in jobs.values())

    odd = tmp_path / "odd"
    odd.mkdir()
    (odd / "lonely.mp4").write_bytes(b"x")
    (odd / "notes.txt").write_text("not a clip")
    (odd / "empty").mkdir()
    [lonely] = find_jobs(odd)
    assert lonely.name == "lonely" and "no mask for lonely.mp4" in str(lonely.error)

    csv = tmp_path / "jobs.csv"
    csv.write_text(
        "video,mask,name,method,size\n"
        f"{folder / 'a_mp4.mp4'},{folder / 'a_mp4_mask.png'},first,agss,240\n"
        f"{folder / 'c_later.mp4'},0:{folder / 'c_later_masks/00000.png'}; 4:{folder / 'c_later_masks/00004.png'},,,\n"
    )
    first, second = find_jobs(csv)
    assert first.name == "first" and first.run_options(RunOptions(device="cpu")) == RunOptions(method="agss", size=240, device="cpu")
    assert second.name == "c_later" and second.masks == (
        f"0:{folder / 'c_later_masks/00000.png'}",
        f"4:{folder / 'c_later_masks/00004.png'}",
    )
    jsonl = tmp_path / "jobs.jsonl"
    jsonl.write_text(json.dumps({"video": "clips/b_frames", "mask": ["clips/b_frames_mask.png"], "fps": 12}) + "\n\n")
    (tmp_path / "clips").symlink_to(folder)
    [job] = find_jobs(jsonl)
    assert job.name == "b_frames" and job.video == str(tmp_path / "clips/b_frames") and job.fps == 12.0  # relative to the manifest

    for text, message in [
        ("video,mask,colour\nv.mp4,m.png,red\n", "unknown column"),
        ("mask\nm.png\n", "must name the columns, including 'video'"),
        ("video,mask\nv.mp4,\n", "no mask given"),
        ("video,mask,size\nv.mp4,m.png,big\n", "size a whole number"),
        ("video,mask\nx/v.mp4,m.png\ny/v.mp4,m.png\n", "two jobs are named 'v'"),
    ]:
        csv.write_text(text)
        with pytest.raises(InputError, match=message):
            find_jobs(csv)
    with pytest.raises(InputError, match="jobs not found"):
        find_jobs(tmp_path / "nothing")


def test_worker_processes_match_segment_and_failures_do_not_stop_the_others(clips: dict[str, Path], capsys) -> None:
    folder = clips["root"] / "with_failures"
    folder.mkdir()
    for p in clips["clips"].iterdir():
        (folder / p.name).symlink_to(p)
    (folder / "broken.mp4").write_bytes(b"not a video at all")
    (folder / "broken_mask.png").symlink_to(clips["clips"] / "a_mp4_mask.png")
    (folder / "lonely.mp4").write_bytes(b"x")
    out = clips["root"] / "out_pool"
    executor = KillFirstWorker(ProcessExecutor(2))
    report = run_batch(find_jobs(folder), out, _work(), executor, run=RunOptions(device="cpu"), output=OutputOptions(overlay=False))

    assert_same_masks(clips["ref"], out)
    killed_job = executor.killed[0][0]
    jobs = report["jobs"]
    assert jobs[killed_job]["status"] == "done" and jobs[killed_job]["attempts"] == 2  # its worker was killed: started again
    assert report["counts"] == {"jobs": 5, "done": 3, "skipped": 0, "failed": 2, "running": 0, "pending": 0}
    failed = {f["name"]: f["error"] for f in report["failed"]}
    assert "cannot decode video" in failed["broken"] and "no mask for lonely.mp4" in failed["lonely"]
    assert len({jobs[n]["worker"] for n in CLIPS}) >= 1 and report["executor"]["workers"] == 2
    summary = report["summary"]
    assert summary["frames"] == sum(CLIPS.values()) and summary["frames_per_second"] > 0
    assert {"decode", "flow", "write"} <= set(summary["stages"]) and summary["job_seconds_median"] > 0
    on_disk = json.loads((out / "batch.json").read_text())
    assert on_disk["status"] == "failed" and on_disk["counts"] == report["counts"]

    # Again: the finished jobs are skipped (not a byte rewritten), the failed ones tried again and still failing.
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("masks/*.png")}
    code, _, err = _cli([folder, "-o", out, "--workers", "1", "--device", "cpu", "--no-overlay"], capsys)
    assert code == 1 and "2 of 5 jobs failed (first: broken: cannot decode video" in err.splitlines()[-1]
    assert "3 skipped" in err and "FAIL lonely" in err
    assert stamps == {p: p.stat().st_mtime_ns for p in out.rglob("masks/*.png")}
    assert json.loads((out / "batch.json").read_text())["counts"]["skipped"] == 3


def _work():
    from vostool.api import run_segment_task

    return run_segment_task


def test_resume_rules(tmp_path: Path) -> None:
    job = tmp_path / "job"
    assert plan_job(job, overwrite=False, since=time.time()) == "fresh"
    job.mkdir()
    for status, plain, overwritten in [
        ("complete", "skip", "overwrite"),
        ("running", "resume", "overwrite"),
        ("failed", "resume", "overwrite"),
    ]:
        (job / "run.json").write_text(json.dumps({"status": status, "started": "2020-01-01T00:00:00+0000"}))
        assert plan_job(job, overwrite=False, since=time.time()) == plain
        assert plan_job(job, overwrite=True, since=time.time()) == overwritten
        # a run this batch started itself (a task started again after its worker died) is never overwritten
        (job / "run.json").write_text(json.dumps({"status": status, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}))
        assert plan_job(job, overwrite=True, since=time.time() - 5) == plain


@pytest.mark.slow
def test_killed_batch_finishes_when_run_again(clips: dict[str, Path], tmp_path: Path, capsys) -> None:
    folder = tmp_path / "clips"
    folder.mkdir()
    for p in clips["clips"].iterdir():
        if p.name.startswith("a_mp4"):
            (folder / p.name).symlink_to(p)
    frames, masks = moving_objects(150, 64, 96, objects=2, seed=9, speed=1.0)
    write_folder(folder / "z_long", frames)
    write_index_png(folder / "z_long_mask.png", masks[0])
    cmd = [sys.executable, "-m", "vostool", "batch", str(folder), "--workers", "1", "--device", "cpu", "-q", "--checkpoint-every", "10"]
    out = tmp_path / "out"
    proc = subprocess.Popen([*cmd, "-o", str(out)], env={**os.environ, "PYTHONUNBUFFERED": "1"}, stderr=subprocess.PIPE)
    long = out / "z_long"
    deadline = time.time() + 180
    while time.time() < deadline and proc.poll() is None:
        if list((long / ".resume").glob("state.*")) and len(list((long / "masks").glob("[!.]*.png"))) >= 30:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the batch finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert json.loads((out / "a_mp4" / "run.json").read_text())["status"] == "complete"
    assert json.loads((long / "run.json").read_text())["status"] == "running"
    stamps = {p: p.stat().st_mtime_ns for p in (out / "a_mp4").rglob("*") if p.is_file()}

    code, _, err = _cli([folder, "-o", out, "--workers", "1", "--device", "cpu", "-q", "--checkpoint-every", "10"], capsys)
    assert code == 0, err
    report = json.loads((out / "batch.json").read_text())
    assert report["jobs"]["a_mp4"]["status"] == "skipped" and report["jobs"]["z_long"]["status"] == "done"
    assert report["jobs"]["z_long"]["resumed_from_frame"] > 0  # from its last checkpoint, not from the start
    assert stamps == {p: p.stat().st_mtime_ns for p in (out / "a_mp4").rglob("*") if p.is_file()}  # nothing redone
    import vostool

    vostool.segment(folder / "z_long", folder / "z_long_mask.png", tmp_path / "whole", device="cpu")  # uninterrupted
    for f in sorted((tmp_path / "whole" / "masks").glob("*.png")):
        assert (long / "masks" / f.name).read_bytes() == f.read_bytes(), f"{f.name} differs after the rerun"
    assert len(list((long / "masks").glob("[!.]*.png"))) == 150


def test_ray_without_ray_installed_says_what_to_install(clips: dict[str, Path], monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails as when it is not installed
    code, _, err = _cli([clips["clips"], "-o", clips["root"] / "no_ray", "--ray"], capsys)
    assert (
        code == 2
        and err.strip() == "vostool: error: --ray needs Ray, which is not installed: pip install 'vostool[ray]' (or pip install ray)"
    )
