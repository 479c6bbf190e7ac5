"""``ovsnet``: OVSNet, one-pass detection-based video object segmentation.

Paper: Peng Sun, Peiwen Lin, Guangliang Cheng, Jianping Shi, Jiawan Zhang, Xi Li, "OVSNet:
Towards One-Pass Real-Time Video Object Segmentation", arXiv preprint, 2019. No code or weights
were published; this network is built from the paper alone.

Design (paper section 3, Figures 2-4):

* **Detector** — Mask R-CNN with a ResNet-50-FPN backbone, torchvision's implementation
  (:class:`~torchvision.models.detection.MaskRCNN`) on :class:`~vostool.models.backbones.EncoderWithFPN`.
  The paper-size encoder is :class:`~vostool.models.backbones.ResNetEncoder` (depth 50, width
  64, BatchNorm, every layer trainable), whose parameter names are torchvision's, so with
  ``anchor_scales=(8,)`` the detector's state dict has exactly the keys and shapes of
  ``torchvision.models.detection.maskrcnn_resnet50_fpn(weights=None, weights_backbone=None)``
  under the prefix ``detector.``; with the paper's three scales only the RPN head's two output
  convolutions are wider (9 anchors per position instead of 3). Any encoder of
  :func:`~vostool.models.backbones.create_encoder` can replace ResNet-50 (``backbone``), its
  input normalisation becoming the detector's. Inference keeps proposals scoring > 0.05
  with NMS at IoU 0.6 (section 4.1), shorter image side 800 (section 4.3), longer side at most
  1900 (the training maximum of section 4.1; the paper gives no test maximum). Training draws
  the shorter side from 640, 720, 800, 920, 1080 per step (section 4.1's multi-scale training).
* **Anchors** — section 4.1: "the anchor scales are 3, 5, 8". We read the scales as in
  py-faster-rcnn / Detectron, where an anchor's side is ``scale x`` the stride of the feature map
  it sits on (FPN's single scale 8 gives the usual 32..512 pixels on P2..P6): on each FPN level
  ``P_l`` (stride ``s_l`` = 4, 8, 16, 32, 64) anchors of sides ``3 s_l, 5 s_l, 8 s_l`` at aspect
  ratios 0.5, 1, 2, i.e. 9 anchors per position from 12 pixels (P2) to 512 pixels (P6)
  (:func:`anchor_sizes`). The alternative reading (sides 3, 5, 8 pixels) gives boxes far below
  a 4-pixel stride and below any DAVIS object, so it cannot be what was meant.
* **Re-ID head** (3.1.2) — RoIAlign (7x7 over the FPN levels, boxes assigned to levels as in
  Mask R-CNN) -> fc (1024) -> ReLU -> fc (128) -> dropout 0.2. The feature is not normalised: the
  Re-ID path thresholds Euclidean distances at 2.3 and the triplet margin is 1.0, both
  meaningless on the unit sphere. Loss: batch-hard triplet loss, eq. (1), squared distances,
  margin 1.0 (:func:`batch_hard_triplet_loss`).
* **Mask-guided attention (MGA)** (3.1.1, Figure 3) — the box is enlarged by 20% (1.2x width and
  height about its centre); the attention map is Mask R-CNN's mask probability inside the
  original box and 0.5 in the enlargement. The four FPN levels P2..P5 are each cropped to the
  enlarged box and resized to 100x100 (one RoIAlign per level), concatenated (4 x 256 = 1024
  channels, exactly the input width of ResNet's last stage), multiplied by the attention, and
  passed through the last ResNet stage (3 bottlenecks, 1024 -> 2048, stride 1 with dilation 2 as
  in DeepLab/PSPNet, so the output stays 100x100) and the "advanced ASPP" head
  (:class:`AdvancedASPP`: DeepLabv3's ASPP branches and PSPNet's pyramid pooling in one
  concatenation), then a 1x1 classifier to 2 channels (background / foreground), trained with
  pixel-wise cross entropy. MGA gradients stay in MGA: features and attention are detached.
* **One-pass cascade** (3.2, Figure 4), per object, with the flow-warped previous mask as the
  template: IoU path (the candidate with the largest mask IoU > rho_iou = 0.3; its Re-ID feature
  is saved in the object's collection), else Re-ID path (candidates whose Euclidean distance is
  < rho_reid = 2.3 to at least 30% of the collection; the one with the smallest mean distance to
  the collection wins), else flow path (the warped mask, as attention, refined by MGA).

Choices where the paper is vague (kept):

* Detector classes: ``num_classes = 2`` (background, object): video objects are class-agnostic.
  ``num_classes = 91`` builds the COCO layout (torchvision's COCO weights then load into
  ``detector``); candidates are then all detections whatever their class.
* The cascade associates with Mask R-CNN's 28x28 masks (IoU computed exactly in each candidate's
  box); MGA then refines only the K masks the cascade selects, in one batch, plus flow-path
  objects in the same batch. Running MGA on every candidate (up to 100) would not change the
  decisions' inputs and would cost 100 MGA crops per frame.
* Each object's cascade is independent, as in the paper (two objects may take the same
  candidate); overlapping masks are merged by the soft aggregation of AGSS-VOS (eq. 4-5), which
  the paper does not specify.
* The Re-ID collection of each object is bounded (``reid_memory`` = 100 features): entry 0 is
  the feature of the given mask and is kept; the others are a ring buffer of IoU-path features.
* An object with no candidate and an empty warped mask (no pixel > 0.5) is absent (probability
  0) on that frame and can come back through the Re-ID path later.
* Flow: RAFT-small in place of FlowNet 2.0 (the session computes and warps it). Training needs
  no flow; the shipped weights name the flow they were validated with (their inference default).
* Frame pairs: each training sample is two frames of one video (up to 5 apart), so the
  batch-hard triplet loss sees each object twice; the paper does not say how Re-ID mini-batches
  were drawn.

**Compact variant** (:data:`COMPACT`, ``variant="compact"``: the weights vostool trains on the CPU
and ships). Every module and rule above is kept; sizes are cut for 240p video on a CPU:

* encoder MobileNetV2 (ImageNet, torchvision's architecture: it needs no optional package at
  inference; BatchNorm frozen) instead of ResNet-50 (no ImageNet ResNet can be shipped), FPN
  width 64, box head fc 256, mask head 4 x 64 channels, Re-ID fc 256 (feature 128 as the paper);
* detector input at the video's 240p size (shorter side 240, longer at most 576: the paper's
  1900 / 800) instead of 800, multi-scale training at 192..324 (the paper's 640..1080 scaled),
  300 / 100 RPN proposals before / after NMS (600 / 200 in training), at most 20 candidates,
  128 RoIs per training image for the box and mask heads;
* MGA: crops of 48 x 48 instead of 100 x 100 (the paper's crop is 1/8 of its 800-pixel frames;
  48 is 1/5 of 240 and keeps more detail than Mask R-CNN's 28 x 28 masks), the last-stage
  bottlenecks at width 64 (4 x 64 FPN channels in and out, as the paper's 4 x 256 -> 2048 keeps
  ResNet's expansion of 4 only approximately), ASPP / pyramid-pooling branches of 32 channels.
  Per object that is about 1.0 GMAC, half the compact detector (2.1 GMAC at 240 x 427); the
  paper-size MGA is about 300 GMAC per object, more than its whole detector at 800 x 1408. The
  cost is reported per object in ``timing.json`` (stage ``mga``, ``per_object_ms``).

Training entry point (``OVSNet.forward`` in train mode)::

    losses = net(images, targets)      # images: list of (3, H, W) in [0, 1]
    # targets[i]: boxes (G, 4) float xyxy pixels, labels (G,) int64 (1 = object for
    # num_classes=2), masks (G, H, W) uint8, ids (G,) int64 identity of each object,
    # unique per video object across the mini-batch (Re-ID labels).
    total = sum(v for k, v in losses.items() if k != "loss_refine") + REFINE_WEIGHT * losses["loss_refine"]

returns the detector's ``loss_classifier``, ``loss_box_reg``, ``loss_mask`` (L_cls, L_loc,
L_mask), ``loss_objectness``, ``loss_rpn_box_reg`` (RPN), ``loss_reid`` (eq. 1 on the
``reid_per_image`` = 2 proposals per image with the largest IoU to a ground-truth box, one per
object where the image has two or more) and
``loss_refine`` (MGA cross entropy on the same proposals), the terms of eq. (2) with lambda =
``REFINE_WEIGHT`` = 1.3 (Table 4). Inference uses the same modules through :meth:`OVSNet.detect`,
:meth:`OVSNet.reid_features` and :meth:`OVSNet.refine`.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.rpn import RPNHead
from torchvision.models.resnet import Bottleneck
from torchvision.ops import MultiScaleRoIAlign, box_iou, roi_align

from .backbones import EncoderWithFPN, backbone_name, create_encoder
from .base import MethodState, StageFn, VOSMethod, no_stage
from .blocks import freeze_batchnorm, soft_aggregate
from .registry import register_method

FPN_LEVELS = ("0", "1", "2", "3")
"""The FPN outputs P2..P5 (torchvision's names) used by Re-ID and MGA."""
FPN_STRIDES = (4, 8, 16, 32)
TRAIN_SCALES = (0.8, 0.9, 1.0, 1.15, 1.35)
"""Multi-scale training: the paper's shorter sides 640, 720, 800, 920, 1080 over its test side 800."""
ANCHOR_SCALES = (3, 5, 8)
"""The paper's anchor scales, in units of each FPN level's stride (see the module docstring)."""
ENLARGE = 1.2
"""MGA box enlargement (20%)."""
REFINE_WEIGHT = 1.3
"""lambda of eq. (2) for ``loss_refine`` (best in Table 4)."""


# --------------------------------------------------------------------------------- modules
class ReIDHead(nn.Module):
    """Re-ID branch: RoIAlign -> fc -> ReLU -> fc -> dropout.

    ``features`` (FPN dict), ``boxes`` list of ``(n_i, 4)`` xyxy in the detector's resized image
    coordinates -> ``(sum n_i, dim)`` embeddings.
    """

    def __init__(self, in_channels: int, *, hidden: int = 1024, dim: int = 128, pool: int = 7, dropout: float = 0.2) -> None:
        super().__init__()
        self.pool = MultiScaleRoIAlign(list(FPN_LEVELS), output_size=pool, sampling_ratio=2)
        self.fc1 = nn.Linear(in_channels * pool * pool, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, features: dict[str, torch.Tensor], boxes: list[torch.Tensor], image_sizes: list[tuple[int, int]]) -> torch.Tensor:
        x = self.pool(features, boxes, image_sizes).flatten(1)
        return self.dropout(self.fc2(F.relu(self.fc1(x))))


def _conv_bn_relu(cin: int, cout: int, kernel: int = 1, dilation: int = 1) -> nn.Sequential:
    pad = dilation * (kernel // 2)
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, padding=pad, dilation=dilation, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


class AdvancedASPP(nn.Module):
    """DeepLabv3's ASPP merged with PSPNet's pyramid pooling: ``(N, cin, s, s) -> (N, cout, s, s)``.

    Branches (each conv-BN-ReLU to ``channels``): a 1x1 conv; 3x3 convs at dilation ``rates``;
    for each bin ``b`` an average pool to ``b x b``, 1x1 conv and bilinear upsampling (``b = 1``
    is ASPP's image pooling). The concatenation is projected by a 1x1 conv-BN-ReLU.
    """

    def __init__(
        self, cin: int, channels: int = 256, *, rates: tuple[int, ...] = (6, 12, 18), bins: tuple[int, ...] = (1, 2, 3, 6)
    ) -> None:
        super().__init__()
        self.convs = nn.ModuleList([_conv_bn_relu(cin, channels)] + [_conv_bn_relu(cin, channels, 3, r) for r in rates])
        self.bins = tuple(bins)
        self.pools = nn.ModuleList([_conv_bn_relu(cin, channels) for _ in bins])
        self.project = _conv_bn_relu(channels * (len(self.convs) + len(bins)), channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        outs = [conv(x) for conv in self.convs]
        for b, conv in zip(self.bins, self.pools):
            outs.append(F.interpolate(conv(F.adaptive_avg_pool2d(x, b)), size=size, mode="bilinear", align_corners=False))
        return self.project(torch.cat(outs, 1))


class MaskGuidedAttention(nn.Module):
    """MGA module: multi-level FPN crops x attention -> last ResNet stage -> advanced ASPP -> 2 logits.

    Args:
        fpn_channels: channels of each FPN level (256).
        size: crop size ``S`` (100 in the paper).
        planes: bottleneck width of the last ResNet stage (512; output ``4 * planes``).
        blocks: bottlenecks in that stage (3, as in ResNet-50/101).
        aspp_channels: width of the ASPP/PPM branches (256).
    """

    def __init__(self, fpn_channels: int = 256, *, size: int = 100, planes: int = 512, blocks: int = 3, aspp_channels: int = 256) -> None:
        super().__init__()
        self.size = size
        inplanes = fpn_channels * len(FPN_LEVELS)
        layers: list[nn.Module] = []
        for i in range(blocks):
            down = None
            if i == 0 and inplanes != planes * Bottleneck.expansion:
                down = nn.Sequential(
                    nn.Conv2d(inplanes, planes * Bottleneck.expansion, 1, bias=False), nn.BatchNorm2d(planes * Bottleneck.expansion)
                )
            # torchvision's dilated stage: the first block keeps the previous dilation (1).
            layers.append(Bottleneck(inplanes, planes, 1, down, dilation=1 if i == 0 else 2))
            inplanes = planes * Bottleneck.expansion
        self.block = nn.Sequential(*layers)
        self.aspp = AdvancedASPP(inplanes, aspp_channels)
        self.classifier = nn.Conv2d(aspp_channels, 2, 1)

    def forward(self, features: list[torch.Tensor], rois: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        """MGA logits.

        Args:
            features: P2..P5, ``(B, C, H/4, W/4)`` .. ``(B, C, H/32, W/32)`` (detached by the caller
                or here: gradients never leave MGA).
            rois: ``(K, 5)`` ``[batch index, x0, y0, x1, y1]`` enlarged boxes in the coordinates
                of the image the features were computed on.
            attention: ``(K, 1, S, S)`` attention over each enlarged box.

        Returns:
            ``(K, 2, S, S)`` background / foreground logits over each enlarged box.
        """
        s = self.size
        rois = rois.float()
        crops = [
            roi_align(f.detach().float(), rois, (s, s), spatial_scale=1.0 / stride, sampling_ratio=2, aligned=True)
            for f, stride in zip(features, FPN_STRIDES)
        ]
        x = torch.cat(crops, 1) * attention.detach().to(crops[0].dtype)
        return self.classifier(self.aspp(self.block(x)))


def _enlarge(boxes: torch.Tensor, factor: float) -> torch.Tensor:
    """``(N, 4)`` xyxy boxes scaled by ``factor`` about their centres."""
    c = (boxes[:, :2] + boxes[:, 2:]) * 0.5
    half = (boxes[:, 2:] - boxes[:, :2]) * (0.5 * factor)
    return torch.cat([c - half, c + half], 1)


def mga_attention(inner: torch.Tensor, size: int) -> tuple[torch.Tensor, float]:
    """Attention over an enlarged box: ``inner`` resized to the original box's share, 0.5 around it.

    Args:
        inner: ``(K, 1, h, w)`` mask probabilities over each original box (e.g. Mask R-CNN's 28x28).
        size: MGA crop size ``S``.

    Returns:
        ``((K, 1, S, S) attention, factor)`` where ``factor`` (about 1.2) is the exact enlargement
        that puts the inner map on the original box: the inner side is ``round(S / 1.2)`` pixels,
        made even with ``S`` so the margin is the same on both sides (84 of 100).
    """
    n = _inner_size(size)
    lo = (size - n) // 2
    att = F.interpolate(inner.float(), size=(n, n), mode="bilinear", align_corners=False)
    att = F.pad(att, (lo, lo, lo, lo), value=0.5)
    return att, size / n


def _inner_size(size: int) -> int:
    n = max(1, round(size / ENLARGE))
    return min(size, n + (size - n) % 2)


def paste_in_boxes(patches: torch.Tensor, boxes: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Paste ``(K, C, S, S)`` maps into ``(K, C, H, W)`` images, each over its box, zero outside.

    ``boxes``: ``(K, 4)`` xyxy in pixel units (pixel ``i`` covers ``[i, i + 1)``).
    """
    k = patches.shape[0]
    h, w = size
    boxes = boxes.float()
    xs = torch.arange(w, device=boxes.device, dtype=torch.float32) + 0.5
    ys = torch.arange(h, device=boxes.device, dtype=torch.float32) + 0.5
    gx = (xs[None] - boxes[:, 0:1]) / (boxes[:, 2:3] - boxes[:, 0:1]).clamp_min(1e-3) * 2 - 1
    gy = (ys[None] - boxes[:, 1:2]) / (boxes[:, 3:4] - boxes[:, 1:2]).clamp_min(1e-3) * 2 - 1
    grid = torch.stack([gx[:, None, :].expand(k, h, w), gy[:, :, None].expand(k, h, w)], -1)
    return F.grid_sample(patches.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def mask_boxes(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Tight xyxy boxes of ``(K, H, W)`` boolean masks, without host synchronisation.

    Returns:
        ``((K, 4) float boxes, (K,) bool present)``; an empty mask gets the whole image.
    """
    k, h, w = mask.shape
    rows, cols = mask.any(2), mask.any(1)
    present = rows.any(1)
    ar_h = torch.arange(h, device=mask.device)
    ar_w = torch.arange(w, device=mask.device)
    y0 = torch.where(rows, ar_h, h).amin(1)
    y1 = torch.where(rows, ar_h, -1).amax(1) + 1
    x0 = torch.where(cols, ar_w, w).amin(1)
    x1 = torch.where(cols, ar_w, -1).amax(1) + 1
    boxes = torch.stack([x0, y0, x1, y1], 1).float()
    full = boxes.new_tensor([0.0, 0.0, float(w), float(h)]).expand(k, 4)
    return torch.where(present[:, None], boxes, full), present


def mask_iou(masks: torch.Tensor, boxes: torch.Tensor, template: torch.Tensor) -> torch.Tensor:
    """IoU between box-relative candidate masks and full-frame templates, ``(K, N)``.

    Args:
        masks: ``(N, 1, m, m)`` candidate mask probabilities over their boxes (thresholded at 0.5).
        boxes: ``(N, 4)`` candidate boxes (xyxy, frame pixels).
        template: ``(K, H, W)`` bool object templates.

    The intersection is computed in each candidate's box by sampling the template on the
    candidate's ``m x m`` grid (RoIAlign, so each cell holds the template's coverage).
    """
    n, m = masks.shape[0], masks.shape[-1]
    cand = (masks[:, 0].float() > 0.5).float()
    rois = torch.cat([boxes.new_zeros(n, 1), boxes], 1).float()
    t_in_box = roi_align(template.float()[None], rois, (m, m), spatial_scale=1.0, sampling_ratio=2, aligned=True)
    cell = (boxes[:, 2] - boxes[:, 0]).clamp_min(0) * (boxes[:, 3] - boxes[:, 1]).clamp_min(0) / (m * m)
    inter = (t_in_box * cand[:, None]).sum((2, 3)) * cell[:, None]
    union = (cand.sum((1, 2)) * cell)[:, None] + template.float().sum((1, 2))[None] - inter
    return (inter / union.clamp_min(1e-6)).T


def batch_hard_triplet_loss(emb: torch.Tensor, ids: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    """Eq. (1): for each anchor, its hardest positive and hardest negative, squared distances.

    Args:
        emb: ``(P, D)`` Re-ID features; ``ids``: ``(P,)`` identities.

    Returns:
        Scalar: mean over anchors that have both a positive and a negative (0 if none do).
    """
    d = (emb[:, None] - emb[None]).pow(2).sum(-1)
    same = ids[:, None] == ids[None]
    pos = same & ~torch.eye(len(ids), dtype=torch.bool, device=ids.device)
    neg = ~same
    hardest_pos = d.masked_fill(~pos, float("-inf")).amax(1)
    hardest_neg = d.masked_fill(~neg, float("inf")).amin(1)
    ok = pos.any(1) & neg.any(1)
    per = F.relu(torch.where(ok, hardest_pos - hardest_neg + margin, torch.zeros_like(hardest_pos)))
    return per.sum() / ok.sum().clamp_min(1)


@dataclass
class Detections:
    """One frame's detector output (inference).

    Attributes:
        features: FPN outputs ``"0"..."3"`` (P2..P5) and ``"pool"`` for the resized image.
        image_size: ``(h, w)`` of the resized image the detector ran on.
        scale: ``(sx, sy)``, resized size / frame size.
        boxes: ``(N, 4)`` candidate boxes (xyxy) in frame pixels.
        scores: ``(N,)`` detection scores.
        masks: ``(N, 1, 28, 28)`` Mask R-CNN foreground probabilities over each box.
    """

    features: OrderedDict[str, torch.Tensor]
    image_size: tuple[int, int]
    scale: tuple[float, float]
    boxes: torch.Tensor
    scores: torch.Tensor
    masks: torch.Tensor

    def to_resized(self, boxes: torch.Tensor) -> torch.Tensor:
        """Frame-pixel boxes ``(N, 4)`` -> resized-image boxes."""
        sx, sy = self.scale
        return boxes * boxes.new_tensor([sx, sy, sx, sy])


class OVSNet(nn.Module):
    """Mask R-CNN + Re-ID head + MGA module (stateless).

    Args:
        detector: a torchvision :class:`MaskRCNN` whose backbone returns FPN levels ``"0".."3"``.
        reid: the :class:`ReIDHead`.
        mga: the :class:`MaskGuidedAttention` module.
        reid_per_image: proposals per training image for Re-ID and MGA (2 in the paper).
        freeze_bn: keep the encoder's BatchNorm fixed in training (statistics and affine).
        train_sizes: shorter image sides drawn from in training (one per step, torchvision's
            multi-scale training); None: the detector's test size only.
    """

    def __init__(
        self,
        detector: MaskRCNN,
        reid: ReIDHead,
        mga: MaskGuidedAttention,
        *,
        reid_per_image: int = 2,
        freeze_bn: bool = False,
        train_sizes: tuple[int, ...] | None = None,
    ) -> None:
        super().__init__()
        self.detector = detector
        self.reid = reid
        self.mga = mga
        self.reid_per_image = reid_per_image
        self.freeze_bn = freeze_bn
        self.test_sizes = tuple(detector.transform.min_size)
        self.train_sizes = tuple(train_sizes) if train_sizes else self.test_sizes
        self.train(self.training)

    def train(self, mode: bool = True) -> OVSNet:
        super().train(mode)
        self.detector.transform.min_size = self.train_sizes if mode else self.test_sizes
        if self.freeze_bn:
            freeze_batchnorm(self.detector.backbone.body)
        return self

    # ------------------------------------------------------------------ inference pieces
    def features(self, image: torch.Tensor) -> tuple[OrderedDict[str, torch.Tensor], tuple[int, int], tuple[float, float], ImageList]:
        """``(1, 3, H, W)`` in [0, 1] -> (FPN features, resized ``(h, w)``, scale ``(sx, sy)``, the detector's ImageList)."""
        det = self.detector
        images, _ = det.transform([image[0]])
        feats = det.backbone(images.tensors)
        hr, wr = images.image_sizes[0]
        return feats, (hr, wr), (wr / image.shape[-1], hr / image.shape[-2]), images

    def detect(self, image: torch.Tensor) -> Detections:
        """Run Mask R-CNN (eval mode) on ``(1, 3, H, W)`` in [0, 1]; see :class:`Detections`."""
        det = self.detector
        feats, size, scale, images = self.features(image)
        proposals, _ = det.rpn(images, feats)
        found, _ = det.roi_heads(feats, proposals, images.image_sizes)
        r = found[0]
        sx, sy = scale
        boxes = r["boxes"].float() / r["boxes"].new_tensor([sx, sy, sx, sy]).float()
        return Detections(feats, size, scale, boxes, r["scores"], r["masks"])

    def reid_features(self, dets: Detections, boxes: torch.Tensor) -> torch.Tensor:
        """Re-ID features ``(N, dim)`` of frame-pixel boxes ``(N, 4)``."""
        return self.reid(dets.features, [dets.to_resized(boxes)], [dets.image_size]).float()

    def refine(self, features: dict[str, torch.Tensor], rois: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        """MGA logits ``(K, 2, S, S)`` (see :meth:`MaskGuidedAttention.forward`)."""
        return self.mga([features[k] for k in FPN_LEVELS], rois, attention)

    # ------------------------------------------------------------------ training
    def forward(self, images: list[torch.Tensor], targets: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """Training losses (call in train mode); see the module docstring for ``targets``.

        Args:
            images: list of ``(3, H_i, W_i)`` RGB in [0, 1].
            targets: per image ``boxes (G, 4)``, ``labels (G,)``, ``masks (G, H_i, W_i)``, ``ids (G,)``.

        Returns:
            The detector's five losses plus ``loss_reid`` and ``loss_refine`` (scalars).
        """
        det = self.detector
        image_list, tgts = det.transform(images, targets)
        assert tgts is not None
        feats = det.backbone(image_list.tensors)
        proposals, rpn_losses = det.rpn(image_list, feats, tgts)
        _, roi_losses = det.roi_heads(feats, proposals, image_list.image_sizes, tgts)

        # The reid_per_image proposals with the largest IoU to a ground-truth box (section 4.1),
        # taken from distinct objects where the image has enough of them (so the triplets of
        # eq. 1 find negatives in every image).
        boxes, gt_idx = [], []
        for props, t in zip(proposals, tgts):
            iou = box_iou(props, t["boxes"])
            n = self.reid_per_image
            if iou.shape[1] == 0:  # no object in this frame (it left, or the crop cut it away)
                boxes.append(props[:0])
                gt_idx.append(torch.zeros(0, dtype=torch.int64, device=props.device))
                continue
            if iou.shape[1] >= n:
                best, p = iou.max(0)
                g = best.topk(n).indices
                top = p[g]
            else:
                best, g_all = iou.max(1)
                top = best.topk(min(n, len(best))).indices
                g = g_all[top]
            boxes.append(props[top])
            gt_idx.append(g)
        if not any(len(g) for g in gt_idx):  # no object in the whole batch: nothing to re-identify or refine
            zero = sum(f.sum() for f in feats.values()) * 0.0
            return {**roi_losses, **rpn_losses, "loss_reid": zero, "loss_refine": zero}
        ids = torch.cat([t["ids"][g] for t, g in zip(tgts, gt_idx)])
        labels = torch.cat([t["labels"][g] for t, g in zip(tgts, gt_idx)])
        loss_reid = batch_hard_triplet_loss(self.reid(feats, boxes, image_list.image_sizes), ids)

        rh = det.roi_heads
        with torch.no_grad():  # Mask R-CNN's probability is MGA's attention; no gradient flows back.
            logits28 = rh.mask_predictor(rh.mask_head(rh.mask_roi_pool(feats, boxes, image_list.image_sizes)))
            inner = logits28[torch.arange(len(labels), device=labels.device), labels].sigmoid()[:, None]
        attention, factor = mga_attention(inner, self.mga.size)
        big = [_enlarge(b, factor) for b in boxes]
        batch = torch.cat([torch.full((len(b), 1), float(i), device=b.device) for i, b in enumerate(big)])
        rois = torch.cat([batch, torch.cat(big)], 1)
        logits = self.refine(feats, rois, attention)
        with torch.no_grad():
            s = self.mga.size
            target = (
                torch.cat(
                    [
                        roi_align(
                            t["masks"][g][:, None].float(),
                            torch.cat([torch.arange(len(g), device=b.device, dtype=b.dtype)[:, None], b], 1),
                            (s, s),
                            spatial_scale=1.0,
                            sampling_ratio=2,
                            aligned=True,
                        )
                        for t, g, b in zip(tgts, gt_idx, big)
                        if len(g)
                    ]
                )[:, 0]
                > 0.5
            )
        loss_refine = F.cross_entropy(logits.float(), target.long())
        return {**roi_losses, **rpn_losses, "loss_reid": loss_reid, "loss_refine": loss_refine}


def anchor_sizes(scales: tuple[int, ...] = ANCHOR_SCALES, strides: tuple[int, ...] = (*FPN_STRIDES, 64)) -> tuple[tuple[int, ...], ...]:
    """Anchor sides (pixels of the detector's resized image) per FPN level: ``scale x stride``
    for every scale (see the module docstring); ``scales = (8,)`` is torchvision's Mask R-CNN
    (32, 64, 128, 256, 512 on P2..P6)."""
    return tuple(tuple(s * stride for s in scales) for stride in strides)


def ovsnet_net(
    *,
    backbone: str | None = None,
    depth: int | None = None,
    base_width: int = 64,
    num_classes: int = 2,
    fpn_channels: int = 256,
    box_channels: int = 1024,
    mask_head_channels: int = 256,
    mask_head_layers: int = 4,
    reid_hidden: int = 1024,
    reid_dim: int = 128,
    mga_size: int = 100,
    mga_planes: int = 512,
    mga_blocks: int = 3,
    aspp_channels: int = 256,
    anchor_scales: tuple[int, ...] = ANCHOR_SCALES,
    train_scales: tuple[float, ...] = TRAIN_SCALES,
    min_size: int = 800,
    max_size: int = 1900,
    rpn_pre_nms_top_n: int = 1000,
    rpn_post_nms_top_n: int = 1000,
    detections_per_img: int = 100,
    box_batch_size_per_image: int = 512,
    freeze_bn: bool = False,
) -> OVSNet:
    """Build the OVSNet network (random init). Defaults are the paper's ResNet-50-FPN model.

    ``backbone`` (or the older ``depth``) / ``base_width`` select the encoder
    (:func:`~vostool.models.backbones.create_encoder`; its input normalisation becomes the
    detector's); ``fpn_channels``, ``box_channels`` (box head fc width), ``mask_head_*`` and
    ``reid_hidden`` size the heads; ``mga_*`` and ``aspp_channels`` size MGA; ``anchor_scales``
    the anchors (:func:`anchor_sizes`); ``min_size``/``max_size`` are the detector's test
    resizing (in training the shorter side is drawn from ``min_size x train_scales``, the
    paper's multi-scale training; ``(1.0,)`` trains at the test size); ``rpn_*``/``detections_per_img`` bound proposals and candidates per frame (in
    training the RPN keeps twice ``rpn_*``, torchvision's 2000 at paper size);
    ``box_batch_size_per_image`` is the RoIs sampled per training image for the box and mask
    heads (512, torchvision's); ``freeze_bn`` keeps the encoder's BatchNorm fixed in training (pretrained encoders).
    """
    body = create_encoder(backbone_name(backbone, depth), base_width=base_width)
    mask_layers = (mask_head_channels,) * mask_head_layers
    sizes = anchor_sizes(tuple(anchor_scales))
    anchors = AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * len(sizes))
    detector = MaskRCNN(
        EncoderWithFPN(body, fpn_channels),
        min_size=min_size,
        max_size=max_size,
        image_mean=list(body.mean),
        image_std=list(body.std),
        rpn_anchor_generator=anchors,
        rpn_head=RPNHead(fpn_channels, anchors.num_anchors_per_location()[0]),
        rpn_pre_nms_top_n_test=rpn_pre_nms_top_n,
        rpn_post_nms_top_n_test=rpn_post_nms_top_n,
        rpn_pre_nms_top_n_train=2 * rpn_pre_nms_top_n,
        rpn_post_nms_top_n_train=2 * rpn_post_nms_top_n,
        box_batch_size_per_image=box_batch_size_per_image,
        box_head=TwoMLPHead(fpn_channels * 7 * 7, box_channels),
        box_predictor=FastRCNNPredictor(box_channels, num_classes),
        box_score_thresh=0.05,
        box_nms_thresh=0.6,
        box_detections_per_img=detections_per_img,
        mask_head=MaskRCNNHeads(fpn_channels, mask_layers, 1),
        mask_predictor=MaskRCNNPredictor(mask_layers[-1], mask_head_channels, num_classes),
    )
    reid = ReIDHead(fpn_channels, hidden=reid_hidden, dim=reid_dim)
    mga = MaskGuidedAttention(fpn_channels, size=mga_size, planes=mga_planes, blocks=mga_blocks, aspp_channels=aspp_channels)
    train_sizes = tuple(round(min_size * f) for f in train_scales)
    return OVSNet(detector, reid, mga, freeze_bn=freeze_bn, train_sizes=train_sizes)


COMPACT: dict[str, Any] = dict(
    backbone="mobilenet-v2",
    fpn_channels=64,
    box_channels=256,
    mask_head_channels=64,
    reid_hidden=256,
    mga_size=48,
    mga_planes=64,
    aspp_channels=32,
    min_size=240,
    max_size=576,
    rpn_pre_nms_top_n=300,
    rpn_post_nms_top_n=100,
    detections_per_img=20,
    box_batch_size_per_image=128,
    freeze_bn=True,
)
"""The compact variant (``variant="compact"``, the shipped weights); see the module docstring."""


# --------------------------------------------------------------------------------- method
@dataclass
class OVSNetState(MethodState):
    """OVSNet's per-video state: each object's Re-ID collection, a ring buffer (None until the
    first objects are given).

    Attributes:
        reid_bank: ``(K, M, dim)`` float32 Re-ID features.
        reid_valid: ``(K, M)`` bool, which entries hold a feature.
        reid_next: ``(K,)`` int64 next ring-buffer entry (1..M-1; entry 0 holds the given mask's feature).
    """

    reid_bank: torch.Tensor | None = None
    reid_valid: torch.Tensor | None = None
    reid_next: torch.Tensor | None = None


class OVSNetMethod(VOSMethod[OVSNetState]):
    """OVSNet's one-pass cascade over the network's detections; its state is :class:`OVSNetState`.

    Args:
        net: the :class:`OVSNet`.
        rho_iou: IoU-path threshold (0.3). rho_reid: Re-ID distance threshold (2.3).
        reid_fraction: share of the collection a candidate must be close to (0.3).
        reid_memory: features kept per object (M).
    """

    name = "ovsnet"
    stages = ("detector", "re-id", "cascade", "mga", "aggregate")
    state_type = OVSNetState

    def __init__(
        self, net: OVSNet, *, rho_iou: float = 0.3, rho_reid: float = 2.3, reid_fraction: float = 0.3, reid_memory: int = 100
    ) -> None:
        super().__init__(net)
        if reid_memory < 2:
            raise ValueError("reid_memory must be at least 2")
        self.rho_iou = rho_iou
        self.rho_reid = rho_reid
        self.reid_fraction = reid_fraction
        self.reid_memory = reid_memory

    @property
    def _net(self) -> OVSNet:
        assert isinstance(self.net, OVSNet)
        return self.net

    def memorize(self, state: OVSNetState, image: torch.Tensor, prob: torch.Tensor, new_slots: list[int]) -> None:
        """Start the Re-ID collection of each new object with the feature of its given mask."""
        k = prob.shape[0] - 1
        dim = self._net.reid.fc2.out_features
        dev = prob.device
        if state.reid_bank is None or state.reid_valid is None or state.reid_next is None:
            state.reid_bank = torch.zeros(0, self.reid_memory, dim, device=dev)
            state.reid_valid = torch.zeros(0, self.reid_memory, dtype=torch.bool, device=dev)
            state.reid_next = torch.ones(0, dtype=torch.long, device=dev)
        k0 = state.reid_bank.shape[0]
        if k > k0:
            state.reid_bank = torch.cat([state.reid_bank, state.reid_bank.new_zeros(k - k0, self.reid_memory, dim)])
            state.reid_valid = torch.cat([state.reid_valid, torch.zeros(k - k0, self.reid_memory, dtype=torch.bool, device=dev)])
            state.reid_next = torch.cat([state.reid_next, torch.ones(k - k0, dtype=torch.long, device=dev)])
        if not new_slots:
            return
        idx = torch.tensor([s - 1 for s in new_slots], device=dev)
        boxes, present = mask_boxes(prob[1:][idx] > 0.5)
        feats, size, scale, _ = self._net.features(image)
        sx, sy = scale
        emb = self._net.reid(feats, [boxes * boxes.new_tensor([sx, sy, sx, sy])], [size]).float()
        state.reid_bank[idx, 0] = emb
        state.reid_valid[idx] = False
        state.reid_valid[idx, 0] = present
        state.reid_next[idx] = 1

    def predict(self, state: OVSNetState, image: torch.Tensor, warped: torch.Tensor, *, stage: StageFn = no_stage) -> torch.Tensor:
        """Detector once, cascade per object (tensor ops), MGA once over all objects -> ``(K + 1, H, W)``."""
        net = self._net
        k, h, w = warped.shape
        if k == 0:
            return torch.ones(1, h, w, device=warped.device)
        warped = warped.float()
        template = warped > 0.5
        with stage("detector"):
            dets = net.detect(image)
        flow_box, present = mask_boxes(template)
        s = net.mga.size
        n_inner = _inner_size(s)
        rows = torch.arange(k, device=warped.device)
        # Flow path: the warped mask over its own box is the attention.
        inner = roi_align(warped[:, None], torch.cat([rows[:, None].float(), flow_box], 1), (n_inner, n_inner), 1.0, 2, True)
        box = flow_box
        matched = torch.zeros(k, dtype=torch.bool, device=warped.device)
        if dets.boxes.shape[0] > 0:
            with stage("re-id"):
                feats = net.reid_features(dets, dets.boxes)
            with stage("cascade"):
                use_iou, use_reid, cand = self._cascade(state, feats, mask_iou(dets.masks, dets.boxes, template))
                matched = use_iou | use_reid
                self._remember(state, feats[cand], use_iou)
                cand_inner = F.interpolate(dets.masks[cand].float(), size=(n_inner, n_inner), mode="bilinear", align_corners=False)
                inner = torch.where(matched[:, None, None, None], cand_inner, inner)
                box = torch.where(matched[:, None], dets.boxes[cand], flow_box)
        with stage("mga", objects=k):
            attention, factor = mga_attention(inner, s)
            big = _enlarge(box, factor)
            rois = torch.cat([torch.zeros_like(big[:, :1]), dets.to_resized(big)], 1)
            fg_patch = torch.softmax(net.refine(dets.features, rois, attention).float(), 1)[:, 1:]
        with stage("aggregate"):
            fg = paste_in_boxes(fg_patch, big, (h, w))[:, 0] * (matched | present)[:, None, None]
            return soft_aggregate(fg)

    def _cascade(self, state: OVSNetState, feats: torch.Tensor, iou: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """IoU path then Re-ID path, as masks over objects: ``(use_iou, use_reid, candidate index)``."""
        best_iou, best = iou.max(1)
        use_iou = best_iou > self.rho_iou
        bank, valid = state.reid_bank, state.reid_valid
        dist = torch.cdist(bank, feats[None].expand(bank.shape[0], -1, -1))  # (K, M, N)
        count = valid.sum(1).clamp_min(1)[:, None]
        frac = ((dist < self.rho_reid) & valid[:, :, None]).sum(1) / count
        qualified = (frac >= self.reid_fraction) & valid.any(1)[:, None]
        mean = (dist * valid[:, :, None]).sum(1) / count
        reid_best = mean.masked_fill(~qualified, float("inf")).argmin(1)
        use_reid = ~use_iou & qualified.any(1)
        return use_iou, use_reid, torch.where(use_iou, best, reid_best)

    def _remember(self, state: OVSNetState, feats: torch.Tensor, write: torch.Tensor) -> None:
        """Append ``feats (K, dim)`` to the collections of objects where ``write (K,)`` is True."""
        rows = torch.arange(write.shape[0], device=write.device)
        nxt = state.reid_next
        bank = state.reid_bank
        bank[rows, nxt] = torch.where(write[:, None], feats, bank[rows, nxt])
        state.reid_valid[rows, nxt] |= write
        state.reid_next = torch.where(write, nxt % (self.reid_memory - 1) + 1, nxt)


@register_method(
    "ovsnet",
    OVSNetMethod,
    paper="Sun et al., OVSNet: Towards One-Pass Real-Time Video Object Segmentation (arXiv 2019)",
    default_flow="raft-small",
    tiny=dict(
        backbone="resnet18",
        base_width=8,
        fpn_channels=16,
        box_channels=32,
        mask_head_channels=16,
        mask_head_layers=2,
        reid_hidden=32,
        mga_size=16,
        mga_planes=8,
        mga_blocks=1,
        aspp_channels=16,
        min_size=96,
        max_size=160,
        rpn_pre_nms_top_n=100,
        rpn_post_nms_top_n=50,
        detections_per_img=20,
    ),
    compact=COMPACT,
)
def build_ovsnet(
    *,
    rho_iou: float = 0.3,
    rho_reid: float = 2.3,
    reid_fraction: float = 0.3,
    reid_memory: int = 100,
    freeze_bn: bool = False,
    **net_kwargs: Any,
) -> OVSNetMethod:
    """OVSNet with a random-init network; ``net_kwargs`` go to :func:`ovsnet_net` (paper size by default)."""
    return OVSNetMethod(
        ovsnet_net(freeze_bn=freeze_bn, **net_kwargs),
        rho_iou=rho_iou,
        rho_reid=rho_reid,
        reid_fraction=reid_fraction,
        reid_memory=reid_memory,
    )
