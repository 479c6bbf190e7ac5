"""The Ray executor on a local Ray instance (2 CPUs): the same masks as the local path, a killed
worker's job run again, and ``vostool bench`` spreading sequences the same way. Skipped without Ray."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from batch_helpers import CLIPS, KillFirstWorker, assert_same_masks, make_clips, reference_masks  # noqa: E402
from vostool.api import run_segment_task  # noqa: E402
from vostool.batch import find_jobs, run_batch  # noqa: E402
from vostool.batch.cluster import RayExecutor  # noqa: E402
from vostool.options import OutputOptions, RunOptions  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_ray_gives_the_local_masks_and_runs_a_killed_workers_job_again(tmp_path: Path) -> None:
    clips = make_clips(tmp_path / "clips")
    ref = reference_masks(clips, tmp_path / "ref")
    executor = KillFirstWorker(RayExecutor(workers=2))
    report = run_batch(
        find_jobs(clips), tmp_path / "out", run_segment_task, executor, run=RunOptions(device="cpu"), output=OutputOptions(overlay=False)
    )
    assert report["counts"]["done"] == len(CLIPS) and not report["failed"]
    assert_same_masks(ref, tmp_path / "out")
    name, pid = executor.killed[0]
    assert not report["jobs"][name]["worker"].endswith(f":{pid}")  # finished by the restarted worker
    assert report["executor"] == {**report["executor"], "kind": "ray", "workers": 2, "cpus_per_worker": 1.0, "gpus_per_worker": 0.0}
    # Run again: everything is complete, nothing is handed to Ray.
    again = run_batch(find_jobs(clips), tmp_path / "out", run_segment_task, RayExecutor(workers=2), run=RunOptions(device="cpu"))
    assert again["counts"]["skipped"] == len(CLIPS)


def test_bench_sequences_on_ray_score_like_in_process(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from test_bench_cli import _make_davis17
    from vostool.cli.bench import bench

    root = tmp_path / "DAVIS"
    _make_davis17(root, {"alpha": 6, "beta": 5, "gamma": 5})
    common = ["--root", str(root), "--method", "flow", "--flow", "dis", "--device", "cpu", "--workers", "1", "-q"]
    for name, extra in (("here", []), ("ray", ["--ray", "--run-workers", "2"])):
        r = CliRunner().invoke(bench, [*common, "--results", str(tmp_path / name), *extra])
        assert r.exit_code == 0, r.output
    here, there = (json.loads((tmp_path / n / "results-val.json").read_text()) for n in ("here", "ray"))
    assert here["global"] == there["global"] and there["run_workers"]["kind"] == "ray"
    assert [s["name"] for s in there["sequences"]] == ["alpha", "beta", "gamma"]
    for f in sorted((tmp_path / "here").rglob("*.png")):
        assert (tmp_path / "ray" / f.relative_to(tmp_path / "here")).read_bytes() == f.read_bytes()
