"""Training across processes: ``torchrun`` with 2 gloo processes on the CPU matches one process
with the same global batch, and a distributed run resumed from a checkpoint continues exactly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from vostool.cli import cli
from vostool.datasets import generate_dataset
from vostool.models import create_method, method_info
from vostool.train.distributed import Distributed
from vostool.train.recipes import get_recipe
from vostool.weights import load_state_dict

REPO = Path(__file__).resolve().parents[1]
COMMON = [
    "train",
    "--method",
    "agss",
    "--synthetic",
    "4",
    "--size",
    "48",
    "--variant",
    "tiny",
    "--freeze-bn",  # BatchNorm statistics are per process in DDP: frozen BN makes one process and two comparable
    "--steps",
    "3",
    "--batch",
    "2",
    "--crop",
    "32x48",
    "--seed",
    "3",
    "--lr",
    "1e-3",
    "--bn-recalibrate",
    "0",
    "--checkpoint-every",
    "0",
    "--quiet",
]


def _torchrun(args: list[str]) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "vostool", *args]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]


def test_shards_split_the_global_batch() -> None:
    assert [Distributed(r, 2).shard(4) for r in range(2)] == [range(0, 2), range(2, 4)]
    assert Distributed().shard(3) == range(3)
    with pytest.raises(Exception, match="does not split evenly over 2 processes"):
        Distributed(0, 2).shard(3)


@pytest.mark.parametrize("name", ["agss", "savos", "embedding", "ovsnet"])
def test_every_recipe_calls_the_network_itself(name: str, one_thread) -> None:
    # DistributedDataParallel averages the gradients only after a call of the wrapped network
    # (net.reference / encode_supports alone leave each rank with its own gradients).
    torch.manual_seed(0)
    net = create_method(name, **method_info(name).tiny).net.train()
    calls = []
    net.register_forward_pre_hook(lambda module, args: calls.append(1))
    recipe = get_recipe(name, crop=(32, 48))
    batch = recipe.make_batch(recipe.sampler(generate_dataset(2, 3, length=8, size=(48, 64), num_objects=(1, 2)), 0), 0, 1)
    recipe.loss(net, batch)
    assert calls


@pytest.mark.slow
def test_two_gloo_processes_match_one_process_and_resume_exactly(tmp_path: Path, one_thread) -> None:
    # two processes, interrupted after step 2 of 3 and resumed
    _torchrun([*COMMON, "--out", str(tmp_path / "ddp"), "--stop-at", "2"])
    assert json.loads((tmp_path / "ddp" / "train.json").read_text())["distributed"] == {"processes": 2, "clips_per_process": 1}
    _torchrun(["train", "--out", str(tmp_path / "ddp"), "--resume", "--quiet", "--bn-recalibrate", "0"])
    # one process, the same global batch of 2 clips per step, uninterrupted
    r = CliRunner().invoke(cli, [*COMMON, "--threads", "1", "--out", str(tmp_path / "one")])
    assert r.exit_code == 0, r.output
    two, one = (load_state_dict(tmp_path / x / "checkpoint.safetensors") for x in ("ddp", "one"))
    torch.manual_seed(3)  # the network both runs started from
    start = create_method("agss", **json.loads((tmp_path / "one" / "config.json").read_text())["arch"]).net.state_dict()
    assert two.keys() == one.keys() == start.keys()
    moved = max((one[k] - start[k]).abs().max().item() for k in one if one[k].is_floating_point())
    diff = max((one[k] - two[k]).abs().max().item() for k in one if one[k].is_floating_point())
    assert moved > 1e-3 and diff < 1e-5, f"training moved the weights by {moved}; 2 processes differ from 1 by {diff}"
    logs = [json.loads((tmp_path / x / "train.json").read_text()) for x in ("ddp", "one")]
    assert logs[0]["resumed_at"] == [2] and (tmp_path / "ddp" / "final.safetensors").is_file()
    assert logs[0]["steps"][-1]["step"] == logs[1]["steps"][-1]["step"] == 3
    assert logs[0]["steps"][-1]["loss"] == pytest.approx(logs[1]["steps"][-1]["loss"], abs=1e-5)
    assert torch.load(tmp_path / "ddp" / "checkpoint.pt", weights_only=True)["step"] == 3
