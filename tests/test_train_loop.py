"""Training loop on tiny synthetic data (CPU, tiny AGSS): learning, determinism, exact resume, export, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors import safe_open

from method_contracts import train_steps
from vostool.cli import cli
from vostool.datasets import generate_dataset
from vostool.errors import VostoolError
from vostool.train.loop import TrainConfig, Trainer
from vostool.train.recipes import AGSSRecipe, get_recipe
from vostool.weights import load_state_dict

TINY = dict(depth=18, base_width=8, mdim=16, freeze_bn=False)


@pytest.fixture(scope="module")
def videos() -> list:
    return generate_dataset(7, 3, length=12, size=(64, 96), num_objects=(1, 2))


pytestmark = pytest.mark.usefixtures("one_thread")


def _config(**kw) -> TrainConfig:
    base = dict(arch=TINY, steps=4, batch=2, lr=1e-3, clip_length=4, checkpoint_every=2, log_every=1, bn_recalibrate=2)
    return TrainConfig(**{**base, **kw})


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_state_dict(path)


def test_few_steps_reduce_loss_on_a_fixed_batch(videos: list) -> None:
    torch.manual_seed(0)
    from vostool.models import create_method

    net = create_method("agss", **TINY).net
    recipe = AGSSRecipe(clip_length=4)
    batch = recipe.make_batch(recipe.sampler(videos, 0), 0, 2)
    assert batch.images.shape[:3] == (2, 4, 3) and batch.flows.shape[:3] == (2, 3, 2)
    net.train()
    losses, stats = train_steps(net, recipe, batch, 12)
    assert all(0.0 <= st["miou"] <= 1.0 for st in stats)
    assert losses[-1] < 0.8 * losses[0], losses


def test_same_seed_same_weights_and_resume_is_exact(videos: list, tmp_path: Path) -> None:
    Trainer(_config(), videos, out=tmp_path / "a", progress=False).run()
    Trainer(_config(), videos, out=tmp_path / "b", progress=False).run()
    # interrupted after 2 of 4 steps, then resumed
    Trainer(_config(), videos, out=tmp_path / "c", progress=False).run(stop_at=2)
    assert json.loads((tmp_path / "c" / "train.json").read_text())["steps"][-1]["step"] == 2
    Trainer(_config(), videos, out=tmp_path / "c", resume=True, progress=False).run()
    Trainer(_config(seed=1), videos, out=tmp_path / "d", progress=False).run()
    a, b, c, d = (_weights(tmp_path / x / "checkpoint.safetensors") for x in "abcd")
    assert a.keys() == b.keys() == c.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "same seed gave different weights"
    assert all(torch.equal(a[k], c[k]) for k in a), "resumed run differs from the uninterrupted one"
    assert any(not torch.equal(a[k], d[k]) for k in a if a[k].is_floating_point())
    state = torch.load(tmp_path / "c" / "checkpoint.pt", weights_only=True)
    assert state["step"] == 4
    log = json.loads((tmp_path / "c" / "train.json").read_text())
    assert [e["step"] for e in log["steps"]] == [1, 2, 3, 4] and log["resumed_at"] == [2]
    with pytest.raises(VostoolError, match="already holds a run"):
        Trainer(_config(), videos, out=tmp_path / "a", progress=False)


def test_export_loads_in_a_session_and_validation_scores(videos: list, tmp_path: Path) -> None:
    from vostool.api import create_session

    log = Trainer(_config(steps=2, data={"size": 64}), videos, videos[:1], out=tmp_path / "r", progress=False).run()
    v = log["validation"][-1]
    assert v["step"] == 2 and 0.0 <= v["J&F"] <= 1.0 and set(v["sequences"]) == {videos[0].name}
    final = tmp_path / "r" / "final.safetensors"
    with safe_open(str(final), framework="pt") as f:
        meta = f.metadata()
        assert f.get_tensor("decoder.pred2.weight").dtype == torch.float16
    assert json.loads(meta["arch"]) == TINY and meta["method"] == "agss"
    assert json.loads(meta["training"])["steps"] == 2
    assert meta["flow"] == "dis" and meta["inference_size"] == "64"  # what inference should use
    session = create_session("agss", flow="dis", device="cpu", weights=str(final), offline=True)
    seq = videos[0]
    res = session.step(seq.images[0], seq.labels[0])
    res = session.step(seq.images[1])
    assert res.ids.shape == seq.labels[1].shape


def test_cli_train_resume_matches_uninterrupted(tmp_path: Path) -> None:
    runner = CliRunner()
    common = [
        "train",
        "--method",
        "agss",
        "--synthetic",
        "2",
        "--size",
        "48",
        "--variant",
        "tiny",
        "--steps",
        "3",
        "--seed",
        "3",
        "--threads",
        "1",
        "--quiet",
        "--bn-recalibrate",
        "3",
    ]
    r = runner.invoke(cli, [*common, "--out", str(tmp_path / "full")])
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli, [*common, "--out", str(tmp_path / "part"), "--stop-at", "1"])
    assert r.exit_code == 0, r.output
    assert not (tmp_path / "part" / "final.safetensors").exists()
    r = runner.invoke(
        cli,
        ["train", "--out", str(tmp_path / "part"), "--resume", "--quiet", "--threads", "1", "--export", str(tmp_path / "w.safetensors")],
    )
    assert r.exit_code == 0, r.output
    a, b = _weights(tmp_path / "full" / "final.safetensors"), _weights(tmp_path / "w.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_methods_without_recipe_stop_with_one_line(tmp_path: Path) -> None:
    with pytest.raises(VostoolError, match="no recipe for method 'flow'"):
        get_recipe("flow")
    r = CliRunner().invoke(cli, ["train", "--method", "flow", "--synthetic", "1", "--out", str(tmp_path / "x")])
    assert r.exit_code != 0
    assert not (tmp_path / "x").exists()
    r = CliRunner().invoke(cli, ["train", "--out", str(tmp_path / "y")])
    assert r.exit_code != 0 and isinstance(r.exception, VostoolError) and "no training data" in str(r.exception)


@pytest.mark.parametrize("augment", ["paper", "strong"])
def test_augmented_clips_are_deterministic(videos: list, augment: str) -> None:
    recipe = AGSSRecipe(clip_length=4, crop=(48, 64), augment=augment)
    s = recipe.sampler(videos, 5)
    c1, c2 = recipe.make_clip(s, 9, 0), recipe.make_clip(s, 9, 0)
    assert np.array_equal(c1.images, c2.images) and np.array_equal(c1.labels, c2.labels)
    assert c1.images.shape == (4, 48, 64, 3) and c1.num_objects >= 1
    assert set(np.unique(c1.labels[0])) - {255} == set(range(c1.num_objects + 1))
    if augment == "strong":  # lighting / zoom / lucid clips change every clip; "paper" clips are untouched by it
        paper = AGSSRecipe(clip_length=4, crop=(48, 64))
        assert all(not np.array_equal(recipe.make_clip(s, i, 0).images, paper.make_clip(s, i, 0).images) for i in range(4))


def test_frame_steps_and_learning_rate_groups_resume_exactly(videos: list, tmp_path: Path) -> None:
    """One optimiser step per frame, and encoder / mask-convolution learning rates of their own:
    the groups get their rates, and a resumed run still equals an uninterrupted one."""
    cfg = dict(arch={**TINY, "freeze_bn": True}, frame_steps=True, encoder_lr=1e-4, mask_lr=1e-2)
    t = Trainer(_config(**cfg), videos, out=tmp_path / "a", progress=False)
    t.train_step()
    rates = sorted(g["lr"] for g in t.optimizer.param_groups)
    assert rates == pytest.approx([1e-4, 1e-3, 1e-2], rel=0.3)
    mask = t.net.encoder.conv1_p.weight
    assert any(mask is p for g in t.optimizer.param_groups if g["lr"] == max(rates) for p in g["params"])
    t.run()
    Trainer(_config(**cfg), videos, out=tmp_path / "b", progress=False).run(stop_at=2)
    Trainer(_config(**cfg), videos, out=tmp_path / "b", resume=True, progress=False).run()
    a, b = (_weights(tmp_path / x / "checkpoint.safetensors") for x in "ab")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_agss_recipe_with_a_learned_flow_matches_its_own_flow(shared_dir: Path) -> None:
    """--flow raft-small computes flow on the training device; it must equal the estimator's own flow."""
    from vostool.flow import create_flow

    raft = str(shared_dir / "weights" / "raft-small.pth")
    videos = generate_dataset(8, 1, length=6, size=(128, 160), num_objects=2)  # RAFT needs >= 128 px
    recipe = AGSSRecipe(clip_length=3, flow="raft-small", flow_weights=raft)
    batch = recipe.make_batch(recipe.sampler(videos, 0), 0, 1)
    assert batch.flows is None
    flows = recipe.device_flows(batch.images)
    assert flows.shape == (1, 2, 2, 128, 160)
    est = create_flow("raft-small", weights=raft)
    im = batch.images[0]
    ref = est.flow(est.prepare(im[2:3]), est.prepare(im[1:2]))
    assert torch.allclose(flows[0, 1], ref, atol=1e-4)
    from vostool.models import create_method

    net = create_method("agss", **TINY).net
    loss, stats = recipe.loss(net.train(), batch)
    loss.backward()
    assert torch.isfinite(loss) and 0.0 <= stats["miou"] <= 1.0


def test_batchnorm_recalibration_averages_training_clips(videos: list, tmp_path: Path) -> None:
    from vostool.models import create_method
    from vostool.train.loop import recalibrate_batchnorm

    torch.manual_seed(0)
    net = create_method("agss", **TINY).net
    recipe = AGSSRecipe(clip_length=3)
    bn = net.encoder.bn1
    bn.running_mean.fill_(5.0)
    assert recalibrate_batchnorm(net, recipe, recipe.sampler(videos, 0), 2) > 0
    # 2 clips x (reference + 2 frames x one pass: the agnostic and instance-specific paths run
    # the stem batched together) = 6 stem forwards;
    # plain average, momentum restored
    assert int(bn.num_batches_tracked) == 6 and bn.momentum == 0.1
    assert float(bn.running_mean.abs().max()) < 5.0
    # trained BN: the run recalibrates at the end; frozen BN: never
    log = Trainer(_config(steps=1), videos, out=tmp_path / "t", progress=False).run()
    assert log["bn_recalibration"]["clips"] == 2
    log = Trainer(_config(steps=1, arch={**TINY, "freeze_bn": True}), videos, out=tmp_path / "f", progress=False).run()
    assert "bn_recalibration" not in log


def test_init_starts_from_given_weights_and_rejects_another_network(videos: list, tmp_path: Path) -> None:
    Trainer(_config(steps=2), videos, out=tmp_path / "a", progress=False).run()
    start = tmp_path / "a" / "checkpoint.safetensors"
    t = Trainer(_config(steps=2, seed=9, init=str(start)), videos, out=tmp_path / "b", progress=False)
    given = _weights(start)
    assert all(torch.equal(v, given[k]) for k, v in t.net.state_dict().items())
    with pytest.raises(VostoolError):
        Trainer(_config(arch={**TINY, "mdim": 8}, init=str(start)), videos, out=tmp_path / "c", progress=False)
