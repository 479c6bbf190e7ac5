"""``vostool train`` end to end in a subprocess, at the default ``--size 240``: a native crash
(segfault, heap corruption, a hang in oneDNN) shows as a failing exit status instead of killing pytest.

History: training batches were channels_last by accident, so every training convolution ran
oneDNN's NHWC kernels, and oneDNN 3.12 (torch 2.13-2.14) corrupts the heap in the weight gradient
of a strided 1x1 convolution whose NHWC input has fewer channels than the CPU's channel block
(see ``benchmarks/onednn_nhwc_1x1_backward.py``). ``--base-width 4`` gives every method such a
shortcut (4 -> 8 channels, stride 2, 64x112 at ``--size 240``): agss, savos and embedding died in
``loss.backward()`` on AVX2 CPUs (on AVX-512 ones the tiny variants' 8-channel shortcut did too).
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def vostool(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``python -m vostool ARGS``; a hang counts as a failure after ``timeout`` seconds."""
    env = {**os.environ, "PYTHONFAULTHANDLER": "1"}  # a native crash prints the Python stack
    try:
        cmd = [sys.executable, "-m", "vostool", *args]
        return subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"vostool {' '.join(args)} hung for {timeout:.0f} s; stderr tail: {str(exc.stderr)[-2000:]}")


def assert_trained(proc: subprocess.CompletedProcess, out: Path, steps: int) -> None:
    """Exit status 0 and a run folder whose log reaches ``steps`` with a finite loss."""
    assert proc.returncode == 0, f"exit status {proc.returncode}; stderr tail:\n{proc.stderr[-3000:]}"
    log = json.loads((out / "train.json").read_text())
    last = log["steps"][-1]
    assert last["step"] == steps and math.isfinite(last["loss"]), last
    assert (out / "checkpoint.safetensors").is_file()


def help_example() -> list[str]:
    """The first example of ``vostool train --help``, as a list of arguments after ``vostool``."""
    proc = subprocess.run([sys.executable, "-m", "vostool", "train", "--help"], check=False, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = [ln.strip() for ln in proc.stdout.splitlines() if re.match(r"\s*vostool train --method agss --data ", ln)]
    assert lines, proc.stdout
    return lines[0].split()[1:]


@pytest.mark.shared
def test_help_example_trains_on_real_davis(shared_dir: Path, tmp_path: Path) -> None:
    args = help_example()  # train --method agss --data DAVIS/ --out runs/a --steps 1000 --backbone efficientnet-lite2 ...
    assert "DAVIS/" in args and "runs/a" in args, args
    if "--backbone" in args:  # its ImageNet weights come with the train extra (CI installs it)
        from vostool.weights import load_manifest
        from vostool.weights.resolve import distribution_file

        manifest = load_manifest()
        target = manifest.targets[args[args.index("--backbone") + 1]]
        source = manifest.entries[target.default].source if target.default else None
        if source is not None and source.kind == "distribution" and distribution_file(source.distribution, source.member) is None:
            pytest.skip(f'{source.distribution} is not installed (pip install "vostool[train]")')
    out = tmp_path / "runs" / "a"
    args = [str(shared_dir / "data" / "davis16-train-240p") if a == "DAVIS/" else str(out) if a == "runs/a" else a for a in args]
    # The example as written, stopped after 3 of its 2000 steps, on 3 training sequences.
    proc = vostool(*args, "--stop-at", "3", "--max-sequences", "3", "--quiet")
    assert_trained(proc, out, 3)


@pytest.mark.shared
@pytest.mark.parametrize("method", ["savos", "embedding"])
def test_paper_size_network_trains_at_240p(method: str, shared_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / method
    data = shared_dir / "data" / "davis16-train-240p"
    proc = vostool(
        "train",
        "--method",
        method,
        "--data",
        str(data),
        "--out",
        str(out),
        "--steps",
        "1",
        "--size",
        "240",
        "--max-sequences",
        "2",
        "--val-split",
        "none",
        "--bn-recalibrate",
        "1",
        "--quiet",
    )
    assert_trained(proc, out, 1)
    assert (out / "final.safetensors").is_file()  # the end of the run (BN recalibration, export) too


@pytest.mark.parametrize("method", ["agss", "savos", "embedding"])
def test_narrow_shortcut_does_not_crash_onednn(method: str, tmp_path: Path) -> None:
    out = tmp_path / method
    proc = vostool(
        "train",
        "--method",
        method,
        "--synthetic",
        "2",
        "--size",
        "240",
        "--variant",
        "tiny",
        "--base-width",
        "4",
        "--out",
        str(out),
        "--steps",
        "1",
        "--bn-recalibrate",
        "1",
        "--threads",
        "1",
        "--quiet",
        timeout=180,
    )
    assert_trained(proc, out, 1)
