"""Shared network blocks: global convolution, refine, CBAM, aggregation, padding, frozen BN
(the encoders are tested in test_models_backbones.py)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vostool.models.backbones import ResNetEncoder
from vostool.models.blocks import (
    CBAM,
    GlobalConvBlock,
    RefineModule,
    aggregate_logits,
    freeze_batchnorm,
    pad_to_multiple,
    soft_aggregate,
    softmax_aggregate,
    unpad,
)


@pytest.mark.parametrize("hw", [(75, 101), (33, 47), (64, 96)])
def test_pad_unpad_round_trip(hw: tuple[int, int]) -> None:
    x = torch.rand(2, 3, *hw)
    padded, pads = pad_to_multiple(x, 32)
    assert padded.shape[-2] % 32 == 0 and padded.shape[-1] % 32 == 0
    assert padded.shape[-2] - hw[0] < 32 and padded.shape[-1] - hw[1] < 32
    assert torch.equal(unpad(padded, pads), x)


def test_soft_aggregate_is_agss_eq_4_5() -> None:
    fg = torch.tensor([0.9, 0.3, 0.0]).view(3, 1, 1)
    bg = 1 - 0.9
    p = torch.tensor([bg, 0.9, 0.3, 1e-7]).clamp(1e-7, 1 - 1e-7)
    odds = p / (1 - p)
    expected = odds / odds.sum()
    out = soft_aggregate(fg)
    assert out.shape == (4, 1, 1)
    torch.testing.assert_close(out.view(-1), expected, rtol=1e-5, atol=1e-7)
    assert out.view(-1).argmax() == 1


def test_softmax_aggregate_is_savos_eq_5_with_product_background() -> None:
    fg = torch.tensor([0.6, 0.5]).view(2, 1, 1)
    p = torch.tensor([0.4 * 0.5, 0.6, 0.5])
    odds = p / (1 - p)
    torch.testing.assert_close(softmax_aggregate(fg).view(-1), odds / odds.sum(), rtol=1e-5, atol=1e-7)
    # the two rules differ only in the background: 1 - max vs product
    assert softmax_aggregate(fg)[0].item() < soft_aggregate(fg)[0].item()


@pytest.mark.parametrize("fn", [soft_aggregate, softmax_aggregate])
def test_aggregate_sums_to_one_batched_and_empty(fn) -> None:
    fg = torch.rand(2, 3, 5, 7)
    out = fn(fg)
    assert out.shape == (2, 4, 5, 7)
    torch.testing.assert_close(out.sum(1), torch.ones(2, 5, 7))
    for b in range(2):
        torch.testing.assert_close(out[b], fn(fg[b]))
    empty = fn(torch.zeros(0, 4, 4))
    assert empty.shape == (1, 4, 4) and torch.allclose(empty, torch.ones(1, 4, 4))


def test_aggregate_logits_gradients_are_finite_at_hard_masks() -> None:
    fg = torch.tensor([[[0.0, 1.0]], [[1.0, 0.0]]], requires_grad=True)
    logits = aggregate_logits(fg, background="prod")
    torch.softmax(logits, 0)[1].sum().backward()
    assert torch.isfinite(fg.grad).all()
    with pytest.raises(ValueError):
        aggregate_logits(fg, background="mean")


def test_global_conv_covers_a_k_by_k_window() -> None:
    """An impulse spreads over exactly the k x k square (kx1 then 1xk, plus 1xk then kx1)."""
    torch.manual_seed(0)
    gc = GlobalConvBlock(2, 3, kernel=7)
    for m in gc.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.uniform_(m.weight, 0.1, 1.0)
            nn.init.zeros_(m.bias)
    x = torch.zeros(1, 2, 15, 15)
    x[0, :, 7, 7] = 1.0
    with torch.no_grad():
        y = gc(x)
    support = (y.abs().sum(1)[0] > 0).nonzero()
    assert y.shape == (1, 3, 15, 15)
    assert support[:, 0].min() == 4 and support[:, 0].max() == 10
    assert support[:, 1].min() == 4 and support[:, 1].max() == 10
    assert len(support) == 49


def test_refine_module_upsamples_coarse_to_skip() -> None:
    rf = RefineModule(12, 8)
    out = rf(torch.rand(2, 12, 20, 30), torch.rand(2, 8, 10, 15))
    assert out.shape == (2, 8, 20, 30)
    assert rf(torch.rand(1, 12, 6, 6), torch.rand(1, 8, 6, 6)).shape == (1, 8, 6, 6)
    names = {n.split(".")[0] for n, _ in rf.named_parameters()}
    assert names == {"convFS1", "convFS2", "convFS3", "convMM1", "convMM2"}


def test_cbam_only_attenuates() -> None:
    """Channel and spatial attention maps are in (0, 1): every output is a damped input."""
    cbam = CBAM(16, reduction=4)
    x = torch.randn(2, 16, 9, 11)
    y = cbam(x)
    assert y.shape == x.shape
    assert (y.abs() <= x.abs() + 1e-6).all()
    assert (torch.sign(y) == torch.sign(x)).all()


def test_freeze_batchnorm_keeps_statistics() -> None:
    enc = ResNetEncoder(18, base_width=8, mask_channels=1)
    freeze_batchnorm(enc)
    before = enc.bn1.running_mean.clone()
    enc(torch.rand(2, 3, 64, 64) * 5, torch.rand(2, 1, 64, 64))
    assert torch.equal(before, enc.bn1.running_mean)
    assert not enc.bn1.weight.requires_grad and not enc.bn1.training
    assert enc.conv1.weight.requires_grad
