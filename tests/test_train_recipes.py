"""SAVOS, embedding and OVSNet recipes: a few CPU steps with tiny networks on synthetic videos."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from method_contracts import train_steps
from vostool.cli import cli
from vostool.datasets import generate_dataset
from vostool.models import create_method, method_info
from vostool.train.recipes import get_recipe
from vostool.weights import load_state_dict


@pytest.fixture(scope="module")
def videos() -> list:
    return generate_dataset(7, 3, length=12, size=(64, 96), num_objects=(1, 3))


pytestmark = pytest.mark.usefixtures("one_thread")


def _net(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    arch = dict(method_info(name).tiny)
    if name == "savos":
        arch["freeze_bn"] = False
    net = create_method(name, **arch).net
    assert net is not None
    return net.train()


@pytest.mark.parametrize("name", ["savos", "embedding"])
def test_dense_recipes_reduce_loss_on_a_fixed_batch(name: str, videos: list) -> None:
    net, recipe = _net(name), get_recipe(name)
    batch = recipe.make_batch(recipe.sampler(videos, 0), 0, 2)
    assert batch.images.shape[1] == recipe.clip_length and batch.objects.shape[0] == 2
    losses, _ = train_steps(net, recipe, batch, 6)
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.5 * losses[0], losses


@pytest.mark.parametrize("name", ["agss", "savos", "embedding", "ovsnet"])
def test_batch_images_are_nchw_copies_of_the_clip_frames(name: str, videos: list) -> None:
    # NCHW, not channels_last views: oneDNN 3.12's NHWC weight gradient of narrow strided 1x1
    # convs corrupts the heap (benchmarks/onednn_nhwc_1x1_backward.py).
    recipe = get_recipe(name)
    sampler = recipe.sampler(videos, 0)
    batch = recipe.make_batch(sampler, 3, 2)
    images = batch.images if name == "ovsnet" else list(batch.images.unbind(0))
    assert images and all(im.is_contiguous() and im.dtype == torch.float32 for im in images)
    if name != "ovsnet":
        clip = recipe.make_clip(sampler, 3, 1)
        expected = torch.from_numpy(clip.images).permute(0, 3, 1, 2).float() / 255.0
        assert torch.equal(images[1], expected)


def test_embedding_recurrence_feeds_its_own_predictions_to_the_support_set(videos: list) -> None:
    """Recurrent training: frame 1 is predicted from frame 0 alone, its detached soft prediction
    becomes its support mask, and so on; without recurrence every support mask is the truth.
    The loss differs between the two, and equals a hand-made unrolled loop."""
    net, recipe = _net("embedding"), get_recipe("embedding")
    batch = recipe.make_batch(recipe.sampler(videos, 0), 1, 1)
    with torch.no_grad():
        loss, _ = recipe.loss(net, batch)
        plain, _ = get_recipe("embedding", recurrent=False).loss(net, batch)
        k = batch.objects.shape[1]
        onehot = lambda t: (batch.labels[:, t, None] == torch.arange(1, k + 1).view(1, k, 1, 1)).float() * batch.objects[..., None, None]  # noqa: E731
        probs = [torch.cat([(1 - onehot(0).sum(1, keepdim=True)).clamp(min=0), onehot(0)], 1)]
        total = 0.0
        for i in range(1, 4):
            out = net(batch.images[:, i], batch.images[:, :i], torch.stack(probs, 1))
            bce, ce = recipe.frame_loss(out, batch.labels[:, i])
            total += float(bce + ce) / 3
            own = torch.softmax(out["logits"], 1)[:, 1:] * batch.objects[..., None, None]
            probs.append(torch.cat([(1 - own.sum(1, keepdim=True)).clamp(min=0), own], 1))
    assert float(loss) == pytest.approx(total, rel=1e-4)
    assert abs(float(loss) - float(plain)) > 1e-4


def test_ovsnet_recipe_targets_and_losses(videos: list) -> None:
    net, recipe = _net("ovsnet"), get_recipe("ovsnet")
    batch = recipe.make_batch(recipe.sampler(videos, 0), 0, 2)
    assert len(batch.images) == 4  # two frame pairs
    for tgt in batch.targets:
        g = tgt["boxes"].shape[0]
        assert tgt["masks"].shape[0] == g == tgt["ids"].shape[0] == tgt["labels"].shape[0]
        for box, m in zip(tgt["boxes"], tgt["masks"]):
            ys, xs = torch.nonzero(m, as_tuple=True)
            assert box.tolist() == [xs.min().item(), ys.min().item(), xs.max().item() + 1, ys.max().item() + 1]
    # the two frames of a pair share identities; different pairs never do
    assert set(batch.targets[0]["ids"].tolist()).isdisjoint(batch.targets[2]["ids"].tolist())
    opt = torch.optim.Adam(net.parameters(), lr=3e-4)
    first = last = None
    for _ in range(5):
        opt.zero_grad()
        loss, stats = recipe.loss(net, batch)
        assert math.isfinite(float(loss.detach())) and {"loss_reid", "loss_refine", "loss_mask"} <= set(stats)
        loss.backward()
        opt.step()
        det = stats["loss_classifier"] + stats["loss_mask"] + stats["loss_refine"]
        first = det if first is None else first
        last = det
    assert last < first


@pytest.mark.parametrize("name", ["savos", "embedding", "ovsnet"])
def test_cli_trains_each_method_and_exports(name: str, tmp_path: Path) -> None:
    out = tmp_path / name
    r = CliRunner().invoke(
        cli,
        [
            "train",
            "--method",
            name,
            "--synthetic",
            "2",
            "--size",
            "64",
            "--variant",
            "tiny",
            "--steps",
            "2",
            "--threads",
            "1",
            "--quiet",
            "--out",
            str(out),
        ],
    )
    assert r.exit_code == 0, r.output
    sd = load_state_dict(out / "final.safetensors")
    assert all(v.dtype == torch.float16 for v in sd.values() if v.is_floating_point())
