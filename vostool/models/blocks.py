"""Network blocks shared by several methods.

(The encoders, ResNet with RGMP's mask input and the pretrained alternatives, are in
:mod:`vostool.models.backbones`.)

* :func:`freeze_batchnorm` — BatchNorm statistics and affine parameters fixed (RGMP / AGSS-VOS
  train with frozen BN: batches of one video).
* :class:`GlobalConvBlock` — the large-kernel global convolution (Peng et al.) of RGMP, AGSS-VOS
  and SAVOS: branch kx1 -> 1xk plus branch 1xk -> kx1, summed, no BatchNorm.
* :class:`RefineModule` — RGMP's refine module (``convFS1..3``, ``convMM1..2``).
* :class:`ResBlock` — two 3x3 convs with pre-activation ReLU and a residual.
* :class:`CBAM` — channel then spatial attention (Woo et al.), used by SAVOS's decoder.
* :func:`soft_aggregate` (AGSS-VOS eq. 4-5: background ``1 - max_k p_k``) and
  :func:`softmax_aggregate` (SAVOS eq. 5 with STM's background ``prod_k (1 - p_k)``); both
  normalise odds ``p / (1 - p)`` over [background, objects] (= softmax of logits, see
  :func:`aggregate_logits`).
* :func:`pad_to_multiple` / :func:`unpad`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..padding import pad_to_multiple, unpad  # noqa: F401  (the networks pad with these)


def freeze_batchnorm(module: nn.Module) -> None:
    """Fix every BatchNorm in ``module``: eval mode (running statistics used, not updated) and
    affine parameters with ``requires_grad=False``.

    Networks that train with frozen BN call this from their ``train()`` override, so
    ``net.train()`` never switches these layers back to batch statistics.
    """
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
            for p in m.parameters():
                p.requires_grad_(False)


class ResBlock(nn.Module):
    """Two 3x3 convs, each after a ReLU, with a residual: ``x + conv2(relu(conv1(relu(x))))``.

    ``(N, C, h, w) -> (N, C, h, w)``.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class GlobalConvBlock(nn.Module):
    """Global convolution (Peng et al., "Large Kernel Matters") as in RGMP / AGSS-VOS / SAVOS.

    ``(N, in_ch, h, w) -> (N, out_ch, h, w)``: branch ``conv_l1`` (kx1) -> ``conv_l2`` (1xk) plus
    branch ``conv_r1`` (1xk) -> ``conv_r2`` (kx1), summed. No BatchNorm, no activation (RGMP
    and AGSS-VOS follow it with their own residual pair ``convG1``/``convG2``).

    Args:
        in_ch: input channels (the concatenated reference and target top features).
        out_ch: output channels; also the width between the two convs of each branch.
        kernel: ``k`` (7 in RGMP / AGSS-VOS).
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 7) -> None:
        super().__init__()
        p = kernel // 2
        self.conv_l1 = nn.Conv2d(in_ch, out_ch, (kernel, 1), padding=(p, 0))
        self.conv_l2 = nn.Conv2d(out_ch, out_ch, (1, kernel), padding=(0, p))
        self.conv_r1 = nn.Conv2d(in_ch, out_ch, (1, kernel), padding=(0, p))
        self.conv_r2 = nn.Conv2d(out_ch, out_ch, (kernel, 1), padding=(p, 0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_l2(self.conv_l1(x)) + self.conv_r2(self.conv_r1(x))


class RefineModule(nn.Module):
    """RGMP's refine module: ``skip (N, in_ch, H, W)`` + ``coarse (N, out_ch, h, w)`` -> ``(N, out_ch, H, W)``.

    ``s = convFS1(skip)``; ``s = s + convFS3(relu(convFS2(relu(s))))``; ``m = s + coarse``
    (bilinearly resized to the skip's size when it differs, i.e. x2 between ResNet stages);
    ``m = m + convMM2(relu(convMM1(relu(m))))``. All convs 3x3 with bias; names as in the
    RGMP / AGSS-VOS code.
    """

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.convFS1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.convFS2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.convFS3 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.convMM1 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.convMM2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)

    def forward(self, skip: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        s = self.convFS1(skip)
        s = s + self.convFS3(F.relu(self.convFS2(F.relu(s))))
        if coarse.shape[-2:] != s.shape[-2:]:
            coarse = F.interpolate(coarse, size=s.shape[-2:], mode="bilinear", align_corners=False)
        m = s + coarse
        return m + self.convMM2(F.relu(self.convMM1(F.relu(m))))


class CBAM(nn.Module):
    """Channel then spatial attention (Woo et al.; SAVOS eq. 2-4). ``(N, C, h, w) -> (N, C, h, w)``.

    Channel: ``Mc = sigmoid(MLP(avgpool(x)) + MLP(maxpool(x)))`` with one shared MLP
    ``C -> C/r -> C`` (ReLU between); ``x' = Mc * x``. Spatial: ``Ms = sigmoid(conv7x7([mean_c(x'),
    max_c(x')]))``; output ``Ms * x'``.
    """

    def __init__(self, channels: int, reduction: int = 16, kernel: int = 7) -> None:
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.mlp = nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, channels, 1))
        self.spatial = nn.Conv2d(2, 1, kernel, padding=kernel // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ca = torch.sigmoid(self.mlp(x.mean((2, 3), keepdim=True)) + self.mlp(x.amax((2, 3), keepdim=True)))
        x = x * ca
        sa = torch.sigmoid(self.spatial(torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], 1)))
        return x * sa


def _bg_and_objects(fg: torch.Tensor, background: str, eps: float) -> torch.Tensor:
    """``(..., K + 1, H, W)`` probabilities [p_0, p_1..p_K] clamped to ``[eps, 1 - eps]``."""
    fg = fg.float()
    if background == "max":
        bg = 1.0 - fg.amax(-3, keepdim=True) if fg.shape[-3] else torch.ones_like(fg.sum(-3, keepdim=True))
    elif background == "prod":
        bg = torch.prod(1.0 - fg, -3, keepdim=True)
    else:
        raise ValueError(f"background must be 'max' or 'prod', not {background!r}")
    return torch.cat([bg, fg], -3).clamp_(eps, 1.0 - eps)


def aggregate_logits(fg: torch.Tensor, *, background: str = "max", eps: float = 1e-7) -> torch.Tensor:
    """Logits over [background, objects] whose softmax is the odds-normalised distribution
    (for losses; :func:`soft_aggregate` computes the same probabilities faster).

    Args:
        fg: ``(..., K, H, W)`` per-object foreground probabilities, each in [0, 1] and
            predicted independently (``K`` may be 0).
        background: how the background probability ``p_0`` is derived: ``"max"``
            (``1 - max_k p_k``, AGSS-VOS eq. 5) or ``"prod"`` (``prod_k (1 - p_k)``, STM's soft
            aggregation; SAVOS, see :func:`softmax_aggregate`).
        eps: probabilities are clamped to ``[eps, 1 - eps]``.

    Returns:
        ``(..., K + 1, H, W)`` float32 ``logit(p) = log(p / (1 - p))``; ``softmax`` over dim -3
        gives ``p_m / (1 - p_m)`` normalised over ``m = 0..K`` (AGSS-VOS eq. 4, SAVOS eq. 5).
    """
    p = _bg_and_objects(fg, background, eps)
    return torch.log(p) - torch.log1p(-p)


def _normalised_odds(fg: torch.Tensor, background: str, eps: float) -> torch.Tensor:
    # Equal to softmax(aggregate_logits(...)), without logs and exps: ~3x faster on the CPU at
    # 480p with 8 objects (a softmax across the channel axis is a strided reduction).
    p = _bg_and_objects(fg, background, eps)
    odds = p / (1.0 - p)
    return odds / odds.sum(-3, keepdim=True)


def soft_aggregate(fg: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """AGSS-VOS probabilistic normalisation (eq. 4-5): background ``1 - max_k p_k``, then odds
    ``p / (1 - p)`` normalised over [background, objects].

    Args:
        fg: ``(..., K, H, W)`` per-object foreground probabilities in [0, 1].

    Returns:
        ``(..., K + 1, H, W)`` float32 probabilities summing to 1 over dim -3.
    """
    return _normalised_odds(fg, "max", eps)


def softmax_aggregate(fg: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """SAVOS eq. 5 with STM's background ``prod_k (1 - p_k)``, then odds
    ``p / (1 - p)`` normalised over [background, objects], i.e. ``softmax(logit(p))``.

    Args:
        fg: ``(..., K, H, W)`` per-object foreground probabilities in [0, 1].

    Returns:
        ``(..., K + 1, H, W)`` float32 probabilities summing to 1 over dim -3.
    """
    return _normalised_odds(fg, "prod", eps)
