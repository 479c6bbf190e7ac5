"""``savos``: SAVOS, symmetry encoder-decoder network with attention for video object segmentation.

Paper: "Symmetry Encoder-Decoder Network with Attention Mechanism for Fast Video Object
Segmentation", Symmetry 11(8), 1006, 2019 (MDPI), doi:10.3390/sym11081006 (Sichuan Agricultural
University / China University of Geosciences; the author list is on the DOI page, it is not in
the stored text). No public code exists; the design follows the paper
(Figure 3-4, eq. 1-5, Sec. 4-5) and, where it builds on RGMP (Oh et al., CVPR 2018), RGMP's
published layout (``../shared/notes/methods.md``).

Network (:class:`SAVOSNet`), for ``K`` objects batched in one pass:

1. **Symmetry (Siamese) encoder**: one ResNet-50 with weights shared by both branches, taking
   RGB + a mask (4 channels: the mask enters through ``conv1_p`` added to ``conv1(rgb)``, which
   equals a 4-channel first convolution; the new filters are the randomly initialised ones).
   Reference branch: first frame + each object's given mask (computed once per object).
   Target branch: current frame + each object's previous soft probability (not binarised).
2. **Global convolution block** on ``cat(target r5, reference r5)``: ``1xk + kx1`` and
   ``kx1 + 1xk`` branches summed, no BatchNorm (``2*2048 -> 256``).
3. **Decoder**: three attention modules (:class:`AttentionModule`, Figure 4) with skips from the
   target branch (``r4``, ``r3``, ``r2``), then a 3x3 convolution to 2 channels and a softmax;
   the prediction is at 1/4 of the input.
4. **Multiple objects**: per-object foreground probabilities merged by softmax aggregation
   (eq. 5, :func:`~vostool.models.blocks.softmax_aggregate`); the merged probabilities are the
   next frame's guidance masks.

Training entry points (differentiable; images ``(B, 3, H, W)`` RGB in [0, 1], any size, padded
to a multiple of 32 and ImageNet-normalised inside):

* ``ref = net.reference(ref_image (B, 3, H, W), ref_masks (B, K, H, W))`` ->
  ``(B, K, C5, Hp/32, Wp/32)`` (``C5 = 2048`` at paper size).
* ``logits = net(image (B, 3, H, W), prev (B, K, H, W), ref)`` -> ``(B, K, H, W)`` per-object
  foreground logits: the paper's 1/4-resolution 2-way output as ``logit_fg - logit_bg``,
  upsampled x4 bilinearly (``sigmoid`` gives the softmax foreground probability);
  ``softmax_aggregate(torch.sigmoid(logits))`` -> ``(B, K + 1, H, W)`` is eq. 5.
* Stages on padded inputs: :meth:`SAVOSNet.encode`, :meth:`SAVOSNet.global_conv`,
  :meth:`SAVOSNet.decode` (1/4-resolution logits); all three and the x4 upsampling:
  :meth:`SAVOSNet.frame`, the inference entry point (tensors only, so it runs as one ONNX
  Runtime graph on the CPU: :mod:`vostool.inference.blocks`).

Choices where the paper is silent (kept):

* Widths: decoder width 256 and GC kernel 7 (RGMP's values); CBAM reduction ratio 16 (CBAM's).
* Attention module: ``F' = conv3x3(relu(conv3x3(F1)))`` (eq. 1; ``F1`` is the skip feature),
  channel attention then spatial attention (eq. 2-4), and the intermediate feature ``F2``
  (GC output or previous module) upsampled bilinearly and *added*: ``F = Ms(F'') * F'' + up(F2)``.
* Softmax aggregation background ``p_0`` (eq. 5 leaves it open; it cites RGMP, whose demo code
  gets it from an extra "all objects" pass): ``p_0 = prod_k (1 - p_k)``, the background of the
  same odds normalisation in STM's soft aggregation, which costs no extra network row.
* Objects first given on a later frame use that frame and their mask as reference.
* No optical flow (the paper uses none): the guidance mask is the previous frame's merged
  probability, kept by :meth:`SAVOS.update` (``uses_flow = False``).
* BatchNorm frozen in training (``freeze_bn=True``, RGMP's practice with one-video batches).
* Multi-scale testing (paper: scales 0.5, 0.75, 1, averaging foreground probabilities, as RGMP)
  is available with ``scales=(0.5, 0.75, 1.0)`` (``vostool segment --scales 0.5,0.75,1``); the
  default is the single scale ``(1.0,)`` (three times cheaper).

**Compact variant** (:data:`COMPACT`, ``variant="compact"``: the weights vostool trains on the CPU
and ships). Every module above is kept; the encoder is EfficientNet-Lite2 (ImageNet weights,
timm's architecture; BatchNorm frozen; stage outputs 24, 48, 120, 352 channels instead of
256 .. 2048; chosen for AGSS-VOS by measurement and used here too: on the same recipe it scored
0.545 held-out J&F after 1,200 steps where MobileNetV2 scored 0.460 after 900; the shipped
weights, 1,800 steps, 0.582) and the decoder width 64 instead of 256
(CBAM's hidden width 64 / 16 = 4). Training (:class:`~vostool.train.recipes.SAVOSRecipe`)
differs from the paper: Adam instead of SGD, 240p DAVIS 2016 (one object per video) instead of
DAVIS 2017, a new randomly initialised mask convolution next to the ImageNet stem (as RGMP's new
filters), and half the clips with a second object pasted from another video (copy-paste), without
which the network learned to ignore the mask on one-object data.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import backbone_name, create_encoder
from .base import MethodState, StageFn, VOSMethod, no_stage
from .blocks import CBAM, GlobalConvBlock, freeze_batchnorm, pad_to_multiple, softmax_aggregate, unpad
from .registry import register_method

PAD = 32
"""Inputs are padded to a multiple of this (the encoder's stride)."""


class AttentionModule(nn.Module):
    """SAVOS attention module (Figure 4): ``low (N, in_ch, H, W)`` + ``coarse (N, mdim, h, w)``
    -> ``(N, mdim, H, W)``.

    ``F' = conv2(relu(conv1(low)))`` (eq. 1), ``F'' = Mc(F') * F'`` (eq. 2-3),
    ``Ms(F'') * F''`` (eq. 4) by :class:`~vostool.models.blocks.CBAM`, plus ``coarse`` resized
    bilinearly to ``(H, W)``.
    """

    def __init__(self, in_ch: int, mdim: int, *, reduction: int = 16) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, mdim, 3, padding=1)
        self.conv2 = nn.Conv2d(mdim, mdim, 3, padding=1)
        self.cbam = CBAM(mdim, reduction)

    def forward(self, low: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        f = self.cbam(self.conv2(F.relu(self.conv1(low))))
        if coarse.shape[-2:] != f.shape[-2:]:
            coarse = F.interpolate(coarse, size=f.shape[-2:], mode="bilinear", align_corners=False)
        return f + coarse


class SAVOSNet(nn.Module):
    """The SAVOS network (stateless). See the module docstring for the data flow.

    Args:
        backbone: the Siamese encoder (:data:`~vostool.models.backbones.BACKBONES`; ``resnet50``
            in the paper). Its stages feed: ``r5`` of both branches the global convolution,
            ``r4``, ``r3``, ``r2`` of the target branch the attention modules ``AM4``, ``AM3``,
            ``AM2`` as skips (widths: ``encoder.channels``).
        depth: the older spelling of ``backbone="resnet{depth}"``.
        base_width: ResNet stem width (64).
        mdim: decoder width (256).
        gc_kernel: global convolution kernel ``k`` (7).
        reduction: channel-attention reduction ratio ``r`` (16).
        freeze_bn: keep the encoder's BatchNorm fixed in training (True).
    """

    def __init__(
        self,
        *,
        backbone: str | None = None,
        depth: int | None = None,
        base_width: int = 64,
        mdim: int = 256,
        gc_kernel: int = 7,
        reduction: int = 16,
        freeze_bn: bool = True,
    ) -> None:
        super().__init__()
        self.encoder = create_encoder(backbone_name(backbone, depth), mask_channels=1, base_width=base_width)
        c2, c3, c4, c5 = self.encoder.channels
        self.GC = GlobalConvBlock(2 * c5, mdim, gc_kernel)
        self.AM4 = AttentionModule(c4, mdim, reduction=reduction)
        self.AM3 = AttentionModule(c3, mdim, reduction=reduction)
        self.AM2 = AttentionModule(c2, mdim, reduction=reduction)
        self.pred = nn.Conv2d(mdim, 2, 3, padding=1)
        self.freeze_bn = freeze_bn
        if freeze_bn:
            freeze_batchnorm(self.encoder)

    def train(self, mode: bool = True) -> SAVOSNet:
        super().train(mode)
        if self.freeze_bn:
            freeze_batchnorm(self.encoder)
        return self

    # --- stages (inputs padded to a multiple of 32) -----------------------------------------
    def encode(self, image: torch.Tensor, masks: torch.Tensor) -> list[torch.Tensor]:
        """Siamese encoder: ``image (B, 3, H, W)`` in [0, 1] (multiples of 32), ``masks
        (B * K, 1, H, W)`` -> ``[r2, r3, r4, r5]``, batch ``B * K``, at 1/4 .. 1/32."""
        return self.encoder(self.encoder.normalize(image), masks)

    def global_conv(self, r5: torch.Tensor, ref5: torch.Tensor) -> torch.Tensor:
        """``r5, ref5 (N, C5, h, w)`` (target, reference) -> ``(N, mdim, h, w)``."""
        return self.GC(torch.cat([r5, ref5.to(r5.dtype)], 1))

    def decode(self, g: torch.Tensor, r4: torch.Tensor, r3: torch.Tensor, r2: torch.Tensor) -> torch.Tensor:
        """Three attention modules and the prediction conv: ``g (N, mdim, h, w)`` with skips
        ``r4 (N, C4, 2h, 2w)``, ``r3``, ``r2 (N, C2, 8h, 8w)`` -> foreground logits
        ``(N, 8h, 8w)`` (``logit_fg - logit_bg``, at 1/4 of the input)."""
        p = self.pred(self.AM2(r2, self.AM3(r3, self.AM4(r4, g))))
        return p[:, 1] - p[:, 0]

    # --- whole-frame entry points (any size) --------------------------------------------------
    def reference(self, image: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Reference branch (once per object and video).

        Args:
            image: ``(B, 3, H, W)`` reference frames in [0, 1].
            masks: ``(B, K, H, W)`` their object masks.

        Returns:
            ``(B, K, C5, Hp/32, Wp/32)``, ``Hp, Wp`` = ``H, W`` padded to a multiple of 32.
        """
        b, k = masks.shape[:2]
        x, _ = pad_to_multiple(image, PAD)
        m, _ = pad_to_multiple(masks.flatten(0, 1).unsqueeze(1), PAD)
        return self.encode(x, m)[3].unflatten(0, (b, k))

    def forward(self, image: torch.Tensor, prev: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        """Per-object foreground logits for a batch of frames (the training entry point).

        Args:
            image: ``(B, 3, H, W)`` target frames in [0, 1].
            prev: ``(B, K, H, W)`` guidance masks (previous frame's soft probabilities).
            ref: ``(B, K, C5, Hp/32, Wp/32)`` from :meth:`reference`.

        Returns:
            ``(B, K, H, W)`` foreground logits (the 1/4 output upsampled x4 bilinearly).
        """
        b, k = prev.shape[:2]
        x, pads = pad_to_multiple(image, PAD)
        m, _ = pad_to_multiple(prev.flatten(0, 1).unsqueeze(1), PAD)
        return unpad(self.frame(x, m, ref.flatten(0, 1)), pads).unflatten(0, (b, k))

    entry_points: ClassVar[tuple[str, ...]] = ("frame",)  # tensors only: see vostool.models.base

    def frame(self, image: torch.Tensor, masks: torch.Tensor, ref: torch.Tensor, *, stage: StageFn = no_stage) -> torch.Tensor:
        """Encoder, global convolution and decoder on padded inputs.

        Args:
            image: ``(B, 3, H, W)`` in [0, 1], ``H, W`` multiples of 32.
            masks: ``(B * K, 1, H, W)`` guidance masks.
            ref: ``(B * K, C5, H/32, W/32)`` reference features.
            stage: times ``encoder``, ``global-conv`` and ``decoder``.

        Returns:
            ``(B * K, H, W)`` foreground logits (the 1/4 output upsampled x4 bilinearly).
        """
        with stage("encoder"):
            r2, r3, r4, r5 = self.encode(image, masks)
        with stage("global-conv"):
            g = self.global_conv(r5, ref)
        with stage("decoder"):
            logits = self.decode(g, r4, r3, r2).unsqueeze(1)
            return F.interpolate(logits, scale_factor=4, mode="bilinear", align_corners=False)[:, 0]


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of the last two dims of a 4-D tensor (no-op at the same size)."""
    if tuple(x.shape[-2:]) == size:
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


@dataclasses.dataclass
class SAVOSState(MethodState):
    """SAVOS's per-video state.

    Attributes:
        ref: one ``(K, C5, h_s, w_s)`` tensor per test scale: reference features of every object
            (empty until objects are given).
        prev: ``(K, H, W)`` the previous frame's object probabilities (None before the first frame).
    """

    ref: list[torch.Tensor] = dataclasses.field(default_factory=list)
    prev: torch.Tensor | None = None


class SAVOS(VOSMethod[SAVOSState]):
    """SAVOS inference rule around :class:`SAVOSNet` (no optical flow); its state is :class:`SAVOSState`.

    Args:
        net: the network.
        scales: test scales; foreground probabilities are averaged over them.
    """

    name = "savos"
    stages = ("encoder", "global-conv", "decoder", "aggregate")
    uses_flow = False
    state_type = SAVOSState
    net: SAVOSNet

    def __init__(self, net: SAVOSNet, *, scales: Sequence[float] = (1.0,)) -> None:
        super().__init__(net)
        if not scales or any(s <= 0 for s in scales):
            raise ValueError("scales must be positive")
        self.scales = tuple(float(s) for s in scales)

    def _size(self, hw: tuple[int, int], scale: float) -> tuple[int, int]:
        return max(1, round(hw[0] * scale)), max(1, round(hw[1] * scale))

    def memorize(self, state: SAVOSState, image: torch.Tensor, prob: torch.Tensor, new_slots: list[int]) -> None:
        """Reference features of the new objects: this frame + each new object's mask."""
        if not new_slots:
            return
        have = int(state.ref[0].shape[0]) if state.ref else 0
        if sorted(new_slots) != list(range(have + 1, have + 1 + len(new_slots))):
            raise RuntimeError(f"new slots {new_slots} do not follow the {have} known slots")
        masks = prob[have + 1 : have + 1 + len(new_slots)].unsqueeze(0).to(image.dtype)
        hw = (int(image.shape[-2]), int(image.shape[-1]))
        refs = []
        for i, s in enumerate(self.scales):
            size = self._size(hw, s)
            ref = self.net.reference(_resize(image, size), _resize(masks, size))[0]
            refs.append(torch.cat([state.ref[i], ref]) if have else ref)
        state.ref = refs

    def predict(self, state: SAVOSState, image: torch.Tensor, warped: torch.Tensor, *, stage: StageFn = no_stage) -> torch.Tensor:
        """Segment one frame from the previous probabilities in ``state`` (``warped`` only gives
        ``K`` and the size: SAVOS uses no flow). Returns ``(K + 1, H, W)`` (eq. 5)."""
        k = warped.shape[0]
        hw = (int(image.shape[-2]), int(image.shape[-1]))
        if k == 0:
            return torch.ones((1, *hw), device=image.device)
        if not state.ref or state.prev is None or state.prev.shape[0] != k:
            raise RuntimeError(f"predict got {k} objects but the state holds {0 if state.prev is None else state.prev.shape[0]}")
        prev = state.prev.unsqueeze(1).to(image.dtype)  # (K, 1, H, W)
        fg = torch.zeros((k, *hw), device=image.device)
        for i, s in enumerate(self.scales):
            size = self._size(hw, s)
            x, pads = pad_to_multiple(_resize(image, size), PAD)
            m, _ = pad_to_multiple(_resize(prev, size), PAD)
            logits = self.net.frame(x, m, state.ref[i], stage=stage)
            with stage("decoder"):
                fg += torch.sigmoid(_resize(unpad(logits, pads).float().unsqueeze(1), hw)[:, 0])
        with stage("aggregate"):
            return softmax_aggregate(fg / len(self.scales))

    def update(self, state: SAVOSState, image: torch.Tensor, prob: torch.Tensor) -> None:
        """Keep the frame's object probabilities as the next frame's guidance masks."""
        state.prev = prob[1:].float()


COMPACT: dict[str, Any] = dict(backbone="efficientnet-lite2", mdim=64, freeze_bn=True)
"""The compact variant (``variant="compact"``, the shipped weights); see the module docstring."""


@register_method(
    "savos",
    SAVOS,
    paper="SAVOS: Symmetry Encoder-Decoder Network with Attention Mechanism for Fast Video Object Segmentation, Symmetry 11(8) 1006, 2019",
    tiny=dict(backbone="resnet18", base_width=8, mdim=16, reduction=4),
    compact=COMPACT,
)
def build_savos(*, scales: Sequence[float] = (1.0,), freeze_bn: bool = True, **net_kwargs: Any) -> SAVOS:
    """SAVOS with a random-init :class:`SAVOSNet` (``net_kwargs``; paper size by default: ResNet-50,
    width 64, decoder 256). SAVOS uses no optical flow (``uses_flow = False``);
    ``method_info("savos").tiny`` is the test variant."""
    return SAVOS(SAVOSNet(freeze_bn=freeze_bn, **net_kwargs), scales=scales)
