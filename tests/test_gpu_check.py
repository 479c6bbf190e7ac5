"""``benchmarks/gpu_check.sh --device cpu``: the prepared GPU check's own smoke test, so the
script a GPU session runs once works on the first try."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_gpu_check_smoke_test_measures_every_section(tmp_path) -> None:
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(REPO)}
    r = subprocess.run(
        ["bash", str(REPO / "benchmarks/gpu_check.sh"), str(tmp_path), "--device", "cpu"], env=env, capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr[-2000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    sec = report["sections"]
    assert not [k for k, v in sec.items() if isinstance(v, dict) and "error" in v], sec
    assert {row["method"] for row in sec["methods"]} == {"agss", "savos", "ovsnet", "embedding"}
    assert all(row["fps"] > 0 for row in sec["methods"])
    assert [row["frames"] for row in sec["segment"]] == [16, 16] and all(row["process_fps"] > 0 for row in sec["segment"])
    assert sec["raft_small"]["ms_fp32"] > 0 and sec["train_step"]["step_seconds"] > 0
    cases = {row["case"]: row for row in sec["correctness"]}
    assert {"flow", "agss shipped fp32"} <= set(cases) and all(row["iou_min"] >= 0.999 for row in cases.values())
    assert "## Methods" in (tmp_path / "gpu_check.md").read_text()
