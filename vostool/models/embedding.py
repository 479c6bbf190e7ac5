"""``embedding``: video object segmentation with global and instance embedding learning.

Paper: Wenbin Ge, Xiankai Lu, Jianbing Shen, "Video Object Segmentation Using Global and Instance
Embedding Learning", CVPR 2021. No code or weights were published; this network is built from
the paper alone, with the memory reader of STM (Oh et al., ICCV 2019) the paper follows.

Design (paper section 3, Figures 2-3):

* **Encoders** — a query encoder (RGB) and a support encoder (RGB + the class-agnostic objects
  mask through the stem's mask convolution, ``conv1_p``), both ResNet-50 (or another backbone,
  :mod:`~vostool.models.backbones`) up to res4 (1/16, C = 1024); res2/res3 of the query feed
  the decoders.
* **Key / value** (eq. 3) — 1x1 convs ``f_k`` (C -> C/8) and ``f_v`` (C -> C/2), the same
  ``f_k`` / ``f_v`` for support and query, as the equation writes them.
* **Memory read** (eq. 4) — ``A = softmax over all T*h*w support positions of k_S . k_Q``, scaled by
  ``1/sqrt(C/8)`` as in STM's reader, with the **temporal attention** (Figure 3) folded in: for
  each support key, 1x1 conv + ReLU + global average pooling of (first key, that key, query key),
  concatenated, three 1x1 convs -> one score per support frame, softmax over the T frames ->
  ``w_t``; ``A`` is computed as ``softmax(s + log w_t)``, i.e. each frame's similarities are
  multiplied by its weight and renormalised.
* **Global branch** (eq. 5-6) — ``[v_Q, v_S A]`` (C channels) -> STM's decoder (3x3 conv + residual
  block, refine modules with res3 and res2 skips, 3x3 prediction) -> one saliency logit at 1/4,
  upsampled x4: ``F_global``.
* **Instance branch** (eq. 7-10) — per instance a 3-channel label tensor (this instance, the other
  instances, background) -> **label encoder** (two conv + BN layers: 3x3 conv 3 -> C/8, BN, ReLU,
  1x1 conv C/8 -> C/2, BN) -> multiplies the support values (eq. 8) -> memory read with the same
  ``A`` (eq. 9) -> ``[v_Q, V_inst A]`` -> ``f_coarse`` (1x1 convs C -> 256 -> 1): coarse maps.
* **Refine decoder** (eq. 12) — a second STM decoder on the instance embedding. The paper says it
  "replaces the upsampling U(.) in eq. 11 to refine the coarse maps"; we read that as a residual
  refinement: instance logit = upsampled coarse logit + decoder output (so ``f_coarse`` keeps a
  role). ``refine_decoder=False`` gives the paper's fast variant (eq. 11 with plain upsampling).
* **Instance masks** (eq. 11) — ``fg_d = sigmoid(instance logit_d) * sigmoid(global logit)``,
  merged over objects by the soft aggregation of RGMP the paper cites (background
  ``prod_d (1 - fg_d)``, odds normalised: :func:`~vostool.models.blocks.softmax_aggregate`). Instances run in groups of at most
  ``D = 6`` per pass; the global branch and ``A`` are computed once per frame.

Choices where the paper is vague (kept):

* The label tensor is built at 1/16 (area-downsampled probabilities; area pooling is linear, so
  this equals pooling the full-resolution tensor), which keeps the label encoder cheap enough to
  run on every support frame for every object each frame, with nothing cached per object.
* **Support set** (T = 5): the first annotated frame always, plus T - 1 frames chosen by TSN-style
  temporal sampling (the centre of each of T - 1 equal segments of the processed frames; all
  processed frames while there are at most T - 1). To keep memory bounded on long videos, the
  processed frames are kept in a pool of at most ``pool_size`` (16) frames at multiples of a
  stride that doubles (dropping every other frame) when the pool overflows, and each segment
  centre takes the nearest pooled frame. Frames whose masks were given later (objects added
  mid-video) are kept as extra anchors (at most ``max_anchors``, the first always kept).
* Support frames are encoded lazily, at the start of the next :meth:`predict` (timed as the
  ``support-encoder`` stage); a frame that never enters the pool is never encoded.
* No optical flow: the method is memory-based (``uses_flow = False``).

**Compact variant** (:data:`COMPACT`, ``variant="compact"``: the weights vostool trains on the CPU
and ships). Every module above is kept; both encoders are MobileNetV2 up to its stride-16 stage
(ImageNet weights, torchvision's architecture, so no optional package is needed at inference;
BatchNorm frozen) instead of ResNet-50 up to res4, so ``C = 96`` instead of 1024: keys of 12
channels and values of 48 (``C/8``, ``C/2`` as eq. 3), skips of 24 (1/4) and 32 (1/8) channels;
decoders and ``f_coarse`` 64 wide instead of 256. The paper starts its encoders from Mask R-CNN
COCO weights; these start from ImageNet.

Training (:class:`~vostool.train.recipes.EmbeddingRecipe`): clips of T + 1 = 4 frames drawn as
the support set is at inference (first frame, then one frame per segment), recurrent over the
support frames, eq. 13. Differs from the paper: 240p DAVIS 2016 instead of YouTube-VOS + DAVIS
2017, batch 1 instead of 16, no 740 x 384 crop (whole 427 x 240 frames), Adam's learning rate
and its poly power 0.9 (the paper: 1e-5, power 1.0), a new randomly initialised mask convolution
in the support encoder, and half the clips with a second object pasted from another video.

Training entry point (``GlobalInstanceEmbeddingNet.forward``)::

    out = net(query, support_images, support_probs)
    # query (B, 3, H, W) in [0, 1]; support_images (B, T, 3, H, W) in [0, 1] (first frame
    # first); support_probs (B, T, D + 1, H, W) over [background, D <= 6 instances].
    loss = bce_with_logits(out["global_logit"], objects_mask) + lam * cross_entropy(out["logits"], labels)

(eq. 13, lambda = 1.0) with ``out["global_logit"] (B, 1, H, W)``, ``out["instance_logit"] (B, D, H, W)``,
``out["fg"] (B, D, H, W)`` and ``out["logits"] (B, D + 1, H, W)`` whose softmax is the
soft-aggregated distribution. ``forward`` is :meth:`~GlobalInstanceEmbeddingNet.encode_supports`
then :meth:`~GlobalInstanceEmbeddingNet.read`; recurrent training (the support frames' masks
predicted one after the other, :class:`~vostool.train.recipes.EmbeddingRecipe`) encodes the
support frames one by one, grows the :class:`SupportFeatures` and reads each frame with
``net(frame, support=features)``. Inference uses the same pieces (:meth:`encode_query`,
:meth:`encode_support`, :meth:`affinity`, :meth:`global_logits`, :meth:`instance_logits`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import backbone_name, create_encoder
from .base import MethodState, StageFn, VOSMethod, no_stage
from .blocks import RefineModule, ResBlock, aggregate_logits, freeze_batchnorm, pad_to_multiple, softmax_aggregate, unpad
from .registry import register_method

STRIDE = 16
"""Resolution of keys and values (res4)."""


class QueryFeatures(NamedTuple):
    """Query encoder outputs: ``r2 (B, c2, H/4, W/4)``, ``r3 (B, c3, H/8, W/8)``,
    ``key (B, C/8, H/16, W/16)``, ``value (B, C/2, H/16, W/16)``."""

    r2: torch.Tensor
    r3: torch.Tensor
    key: torch.Tensor
    value: torch.Tensor


class SupportFeatures(NamedTuple):
    """Encoded support frames: ``keys (B, T, C/8, h, w)``, ``values (B, T, C/2, h, w)`` and
    ``probs (B, T, D + 1, h, w)`` (probabilities at 1/16, background first)."""

    keys: torch.Tensor
    values: torch.Tensor
    probs: torch.Tensor

    def cat(self, other: SupportFeatures) -> SupportFeatures:
        """These frames followed by ``other``'s (along T)."""
        return SupportFeatures(*(torch.cat([a, b.to(a.dtype)], 1) for a, b in zip(self, other)))


class TemporalAttention(nn.Module):
    """Figure 3: one normalised weight per support frame.

    ``support_keys (B, T, c, h, w)`` (first frame first), ``query_key (B, c, h, w)`` -> ``(B, T)``
    softmax weights. Each summary is a 1x1 conv + ReLU + global average pool; the regressor's last
    conv has no bias (the softmax over T ignores a constant).
    """

    def __init__(self, key_channels: int) -> None:
        super().__init__()
        c = key_channels
        self.first = nn.Conv2d(c, c, 1)
        self.support = nn.Conv2d(c, c, 1)
        self.query = nn.Conv2d(c, c, 1)
        self.regress = nn.Sequential(
            nn.Conv2d(3 * c, c, 1), nn.ReLU(inplace=True), nn.Conv2d(c, c, 1), nn.ReLU(inplace=True), nn.Conv2d(c, 1, 1, bias=False)
        )

    def forward(self, support_keys: torch.Tensor, query_key: torch.Tensor) -> torch.Tensor:
        b, t, c = support_keys.shape[:3]
        first = F.relu(self.first(support_keys[:, 0])).mean((2, 3))
        query = F.relu(self.query(query_key)).mean((2, 3))
        each = F.relu(self.support(support_keys.flatten(0, 1))).mean((2, 3)).view(b, t, c)
        x = torch.cat([first[:, None].expand(b, t, c), each, query[:, None].expand(b, t, c)], 2)
        return torch.softmax(self.regress(x.reshape(b * t, 3 * c, 1, 1)).view(b, t).float(), 1)


class LabelEncoder(nn.Module):
    """Eq. 7: ``(N, 3, h, w)`` label tensors at 1/16 -> ``(N, value_channels, h, w)``."""

    def __init__(self, key_channels: int, value_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, key_channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(key_channels)
        self.conv2 = nn.Conv2d(key_channels, value_channels, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(value_channels)

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        return self.bn2(self.conv2(F.relu(self.bn1(self.conv1(labels)))))


class MaskDecoder(nn.Module):
    """STM's decoder: ``(N, cin, h, w)`` at 1/16 + skips -> ``(N, 1, 4h, 4w)`` logits at 1/4.

    Skips ``r3 (1 | N, c3, 2h, 2w)`` and ``r2 (1 | N, c2, 4h, 4w)``; a batch of 1 is shared by all N.
    """

    def __init__(self, cin: int, c3: int, c2: int, channels: int = 256) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, channels, 3, padding=1)
        self.res = ResBlock(channels)
        self.rf3 = RefineModule(c3, channels)
        self.rf2 = RefineModule(c2, channels)
        self.pred = nn.Conv2d(channels, 1, 3, padding=1)

    def forward(self, x: torch.Tensor, r3: torch.Tensor, r2: torch.Tensor) -> torch.Tensor:
        m = self.rf2(r2, self.rf3(r3, self.res(self.conv(x))))
        return self.pred(F.relu(m))


def label_tensors(probs: torch.Tensor, objects: slice) -> torch.Tensor:
    """Eq. 7's inputs: ``probs (B, T, K + 1, h, w)`` -> ``(B, D, T, 3, h, w)`` for ``objects`` (0-based)
    with channels (this instance, the other instances, background)."""
    bg = probs[:, :, :1]
    this = probs[:, :, 1:][:, :, objects]
    others = (1.0 - bg - this).clamp_min(0.0)
    return torch.stack([this, others, bg.expand_as(this)], 3).transpose(1, 2)


class GlobalInstanceEmbeddingNet(nn.Module):
    """The global / instance embedding network (stateless); see the module docstring.

    Args:
        backbone: the two encoders (:data:`~vostool.models.backbones.BACKBONES`; ``resnet50`` in
            the paper), built up to ``r4`` (stride 16). The query encoder's ``r4`` gives the keys
            and values, its ``r3`` and ``r2`` the decoders' skips; the support encoder (RGB + the
            objects mask) gives only ``r4`` (widths: ``query_encoder.channels``).
        depth: the older spelling of ``backbone="resnet{depth}"``.
        base_width: ResNet stem width (64).
        decoder_channels: width of the decoders and ``f_coarse`` (256, as STM).
        refine_decoder: the full model (True) or the paper's fast variant (False).
        freeze_bn: keep the encoders' BatchNorm fixed in training (for pretrained encoders; the
            paper does not say, False keeps them trainable).
    """

    def __init__(
        self,
        *,
        backbone: str | None = None,
        depth: int | None = None,
        base_width: int = 64,
        decoder_channels: int = 256,
        refine_decoder: bool = True,
        freeze_bn: bool = False,
    ) -> None:
        super().__init__()
        name = backbone_name(backbone, depth)
        self.query_encoder = create_encoder(name, base_width=base_width, out_stage=3)
        self.support_encoder = create_encoder(name, base_width=base_width, mask_channels=1, out_stage=3)
        self.freeze_bn = freeze_bn
        c2, c3, c = self.query_encoder.channels[:3]
        self.key_channels, self.value_channels = c // 8, c // 2
        self.key = nn.Conv2d(c, self.key_channels, 1)
        self.value = nn.Conv2d(c, self.value_channels, 1)
        self.temporal = TemporalAttention(self.key_channels)
        self.label_encoder = LabelEncoder(self.key_channels, self.value_channels)
        self.global_decoder = MaskDecoder(c, c3, c2, decoder_channels)
        self.coarse = nn.Sequential(nn.Conv2d(c, decoder_channels, 1), nn.ReLU(inplace=True), nn.Conv2d(decoder_channels, 1, 1))
        self.refine = MaskDecoder(c, c3, c2, decoder_channels) if refine_decoder else None
        self.train(self.training)

    def train(self, mode: bool = True) -> GlobalInstanceEmbeddingNet:
        super().train(mode)
        if self.freeze_bn:
            freeze_batchnorm(self.query_encoder)
            freeze_batchnorm(self.support_encoder)
        return self

    def normalize(self, image: torch.Tensor) -> torch.Tensor:
        """``(N, 3, H, W)`` RGB in [0, 1] -> the encoders' input normalisation."""
        return self.query_encoder.normalize(image)

    # ------------------------------------------------------------------ pieces
    def encode_query(self, image: torch.Tensor) -> QueryFeatures:
        """``(B, 3, H, W)`` ImageNet-normalised, ``H, W`` multiples of 16 -> :class:`QueryFeatures`."""
        r2, r3, r4 = self.query_encoder(image)
        return QueryFeatures(r2, r3, self.key(r4), self.value(r4))

    def encode_support(self, image: torch.Tensor, objects: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``image (N, 3, H, W)`` normalised + ``objects (N, 1, H, W)`` mask in [0, 1] ->
        ``(key (N, C/8, H/16, W/16), value (N, C/2, H/16, W/16))``."""
        r4 = self.support_encoder(image, objects)[-1]
        return self.key(r4), self.value(r4)

    def affinity(self, support_keys: torch.Tensor, query_key: torch.Tensor) -> torch.Tensor:
        """Eq. 4 with temporal attention: ``(B, T, c, h, w)``, ``(B, c, h, w)`` -> ``A (B, T*h*w, h*w)``,
        each column a distribution over support positions (frame-major order)."""
        b, t, c, h, w = support_keys.shape
        ks = support_keys.permute(0, 2, 1, 3, 4).reshape(b, c, t * h * w)
        log_w = torch.log(self.temporal(support_keys, query_key).clamp_min(1e-12)).repeat_interleave(h * w, 1)
        # Query-major (B, hw, T*hw) so the softmax runs over the contiguous dim; scale and the
        # per-frame log-weight are fused into one baddbmm.
        sim = torch.baddbmm(log_w[:, None, :].to(ks.dtype), query_key.flatten(2).transpose(1, 2), ks, alpha=1.0 / math.sqrt(c))
        return torch.softmax(sim, 2, dtype=torch.float32).transpose(1, 2)

    def global_logits(self, q: QueryFeatures, support_values: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """Eq. 5-6: ``support_values (B, T, C/2, h, w)``, ``A`` -> ``(B, 1, 4h, 4w)`` saliency logits."""
        b, t, cv, h, w = support_values.shape
        vs = support_values.permute(0, 2, 1, 3, 4).reshape(b, cv, t * h * w)
        read = torch.bmm(vs, a.to(vs.dtype)).view(b, cv, h, w)
        return self.global_decoder(torch.cat([q.value, read], 1), q.r3, q.r2)

    def instance_logits(self, q: QueryFeatures, support_values: torch.Tensor, labels: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """Eq. 7-10 (+12): ``labels (B, D, T, 3, h, w)`` -> ``(B, D, 4h, 4w)`` instance logits at 1/4."""
        b, d, t = labels.shape[:3]
        cv, h, w = support_values.shape[2:]
        enc = self.label_encoder(labels.flatten(0, 2).to(support_values.dtype)).view(b, d, t, cv, h, w)
        v_inst = (support_values[:, None] * enc).permute(0, 1, 3, 2, 4, 5).reshape(b, d * cv, t * h * w)
        read = torch.bmm(v_inst, a.to(v_inst.dtype)).view(b, d, cv, h, w)
        emb = torch.cat([q.value[:, None].expand(b, d, cv, h, w), read], 2).flatten(0, 1)
        logit = F.interpolate(self.coarse(emb), size=q.r2.shape[-2:], mode="bilinear", align_corners=False)
        if self.refine is not None:
            r3, r2 = (q.r3, q.r2) if b == 1 else (q.r3.repeat_interleave(d, 0), q.r2.repeat_interleave(d, 0))
            logit = logit + self.refine(emb, r3, r2)
        return logit.view(b, d, *logit.shape[-2:])

    # ------------------------------------------------------------------ training
    def encode_supports(self, support_images: torch.Tensor, support_probs: torch.Tensor) -> SupportFeatures:
        """Support frames -> :class:`SupportFeatures` (the training path; inference stores frames one by one).

        Args:
            support_images: ``(B, T, 3, H, W)`` RGB in [0, 1].
            support_probs: ``(B, T, D + 1, H, W)`` probabilities over [background, instances].
        """
        b, t = support_images.shape[:2]
        s_img, _ = pad_to_multiple(self.normalize(support_images.flatten(0, 1)), STRIDE)
        s_prob = _pad_probs(support_probs.flatten(0, 1), STRIDE)
        keys, values = self.encode_support(s_img, 1.0 - s_prob[:, :1])
        small = F.interpolate(s_prob, size=keys.shape[-2:], mode="area")
        return SupportFeatures(
            keys.view(b, t, *keys.shape[1:]), values.view(b, t, *values.shape[1:]), small.view(b, t, -1, *keys.shape[-2:])
        )

    def read(self, query: torch.Tensor, support: SupportFeatures) -> dict[str, torch.Tensor]:
        """One query frame ``(B, 3, H, W)`` in [0, 1] against encoded support frames; returns
        what :meth:`forward` returns."""
        x, pads = pad_to_multiple(self.normalize(query), STRIDE)
        q = self.encode_query(x)
        a = self.affinity(support.keys, q.key)
        g = self.global_logits(q, support.values, a)
        inst = self.instance_logits(q, support.values, label_tensors(support.probs, slice(None)), a)
        up = unpad(F.interpolate(torch.cat([g, inst], 1).float(), size=x.shape[-2:], mode="bilinear", align_corners=False), pads)
        fg = torch.sigmoid(up[:, 1:]) * torch.sigmoid(up[:, :1])
        logits = aggregate_logits(fg, background="prod")
        return {"global_logit": up[:, :1], "instance_logit": up[:, 1:], "fg": fg, "logits": logits}

    def forward(
        self,
        query: torch.Tensor,
        support_images: torch.Tensor | None = None,
        support_probs: torch.Tensor | None = None,
        *,
        support: SupportFeatures | None = None,
    ) -> dict[str, torch.Tensor]:
        """One query frame against its support set (see the module docstring).

        Args:
            query: ``(B, 3, H, W)`` RGB in [0, 1].
            support_images: ``(B, T, 3, H, W)`` RGB in [0, 1], the first annotated frame first.
            support_probs: ``(B, T, D + 1, H, W)`` probabilities over [background, instances].
            support: the support set already encoded (:meth:`encode_supports`) instead of
                ``support_images`` and ``support_probs``: recurrent training reads through
                ``forward`` so that DistributedDataParallel averages the gradients.

        Returns:
            ``global_logit (B, 1, H, W)``, ``instance_logit (B, D, H, W)``, ``fg (B, D, H, W)``,
            ``logits (B, D + 1, H, W)`` (log-odds whose softmax is the soft aggregation).
        """
        if support is None:
            if support_images is None or support_probs is None:
                raise TypeError("forward() needs support_images and support_probs, or support")
            support = self.encode_supports(support_images, support_probs)
        return self.read(query, support)


def _pad_probs(prob: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad ``(N, K + 1, H, W)`` probabilities to a multiple of ``multiple``: background 1 in the padding."""
    fg, pads = pad_to_multiple(prob[:, 1:], multiple)
    bg = F.pad(prob[:, :1], pads, value=1.0)
    return torch.cat([bg, fg], 1)


def embedding_net(**kwargs: Any) -> GlobalInstanceEmbeddingNet:
    """Build the network (random init, keyword arguments of :class:`GlobalInstanceEmbeddingNet`);
    defaults are the paper's full ResNet-50 model."""
    return GlobalInstanceEmbeddingNet(**kwargs)


@dataclasses.dataclass
class EmbeddingState(MethodState):
    """The embedding method's per-video state: its two frame memories and a frame waiting to be encoded.

    Attributes:
        t: index of the frame being processed.
        stride: the pool keeps frames whose index is a multiple of this (doubles when it is full).
        anchor_keys / anchor_values / anchor_probs / anchor_times: frames with given masks, one
            item per stored frame: ``key (1, C/8, h, w)``, ``value (1, C/2, h, w)``, ``probs
            (K_e + 1, h, w)`` (1/16 probabilities, K_e objects known then), the frame index.
        pool_keys / pool_values / pool_probs / pool_times: processed frames, the same items.
        pending_image / pending_prob / pending_time / pending_anchor: a frame to encode at the
            next :meth:`EmbeddingMethod.predict` (image ``(1, 3, H, W)``, prob ``(K + 1, H, W)``,
            its index, whether it is an anchor); None when there is none.
    """

    t: int = 0
    stride: int = 1
    anchor_keys: list[torch.Tensor] = dataclasses.field(default_factory=list)
    anchor_values: list[torch.Tensor] = dataclasses.field(default_factory=list)
    anchor_probs: list[torch.Tensor] = dataclasses.field(default_factory=list)
    anchor_times: list[int] = dataclasses.field(default_factory=list)
    pool_keys: list[torch.Tensor] = dataclasses.field(default_factory=list)
    pool_values: list[torch.Tensor] = dataclasses.field(default_factory=list)
    pool_probs: list[torch.Tensor] = dataclasses.field(default_factory=list)
    pool_times: list[int] = dataclasses.field(default_factory=list)
    pending_image: torch.Tensor | None = None
    pending_prob: torch.Tensor | None = None
    pending_time: int | None = None
    pending_anchor: bool = False


class EmbeddingMethod(VOSMethod[EmbeddingState]):
    """Per-frame rule: bounded support set, one memory read, instances in groups of ``max_instances``;
    its state is :class:`EmbeddingState`.

    Args:
        net: the :class:`GlobalInstanceEmbeddingNet`.
        support_size: T, support frames per query (5).
        pool_size: processed frames kept for temporal sampling (16).
        max_instances: D, instances per pass (6).
        max_anchors: frames with given masks kept (the first always).
    """

    name = "embedding"
    uses_flow = False
    stages = ("support-encoder", "query-encoder", "memory-read", "global-branch", "instance-branch", "aggregate")
    state_type = EmbeddingState

    def __init__(
        self, net: GlobalInstanceEmbeddingNet, *, support_size: int = 5, pool_size: int = 16, max_instances: int = 6, max_anchors: int = 4
    ) -> None:
        super().__init__(net)
        if support_size < 1 or pool_size < 1 or max_instances < 1 or max_anchors < 1:
            raise ValueError("support_size, pool_size, max_instances and max_anchors must be positive")
        self.support_size = support_size
        self.pool_size = pool_size
        self.max_instances = max_instances
        self.max_anchors = max_anchors

    @property
    def _net(self) -> GlobalInstanceEmbeddingNet:
        assert isinstance(self.net, GlobalInstanceEmbeddingNet)
        return self.net

    # ------------------------------------------------------------------ memory
    def memorize(self, state: EmbeddingState, image: torch.Tensor, prob: torch.Tensor, new_slots: list[int]) -> None:
        """Frames with given masks become anchors of the support set (encoded at the next predict)."""
        self._flush(state)
        self._queue(state, image, prob, anchor=True)

    def update(self, state: EmbeddingState, image: torch.Tensor, prob: torch.Tensor) -> None:
        """Queue the frame for the pool when its index is a multiple of the pool's stride."""
        t = state.t
        if state.pending_time != t and t > 0 and t % state.stride == 0:
            self._flush(state)
            self._queue(state, image, prob, anchor=False)
        state.t = t + 1

    @staticmethod
    def _queue(state: EmbeddingState, image: torch.Tensor, prob: torch.Tensor, *, anchor: bool) -> None:
        state.pending_image, state.pending_prob, state.pending_time, state.pending_anchor = image, prob, state.t, anchor

    def _flush(self, state: EmbeddingState, stage: StageFn = no_stage) -> None:
        """Encode the pending frame and store it as an anchor or in the pool."""
        image, prob, t, anchor = state.pending_image, state.pending_prob, state.pending_time, state.pending_anchor
        if image is None or prob is None or t is None:
            return
        state.pending_image, state.pending_prob, state.pending_time, state.pending_anchor = None, None, None, False
        with stage("support-encoder"):
            x, _ = pad_to_multiple(self._net.normalize(image), STRIDE)
            p = _pad_probs(prob[None].float(), STRIDE)
            key, value = self._net.encode_support(x, 1.0 - p[:, :1])
            small = F.interpolate(p, size=key.shape[-2:], mode="area")[0]
        if anchor:
            state.anchor_keys.append(key)
            state.anchor_values.append(value)
            state.anchor_probs.append(small)
            state.anchor_times.append(t)
            if len(state.anchor_times) > self.max_anchors:  # drop the oldest but the first
                for items in (state.anchor_keys, state.anchor_values, state.anchor_probs, state.anchor_times):
                    del items[1]
            return
        state.pool_keys.append(key)
        state.pool_values.append(value)
        state.pool_probs.append(small)
        state.pool_times.append(t)
        if len(state.pool_times) > self.pool_size:  # thin the pool out to every second stride
            state.stride *= 2
            keep = [i for i, ti in enumerate(state.pool_times) if ti % state.stride == 0]
            state.pool_keys = [state.pool_keys[i] for i in keep]
            state.pool_values = [state.pool_values[i] for i in keep]
            state.pool_probs = [state.pool_probs[i] for i in keep]
            state.pool_times = [state.pool_times[i] for i in keep]

    def support_indices(self, state: EmbeddingState) -> list[int]:
        """Pool entries in the support set of frame ``state.t``: the pooled frame nearest to the
        centre of each of ``T - 1`` equal segments of the processed frames ``1 .. t - 1``."""
        times = state.pool_times
        n = self.support_size - 1
        if len(times) <= n:
            return list(range(len(times)))
        span = state.t - 1
        chosen: list[int] = []
        for j in range(n):
            centre = 1 + span * (j + 0.5) / n - 0.5
            i = min(range(len(times)), key=lambda i: abs(times[i] - centre))
            if i not in chosen:
                chosen.append(i)
        return chosen

    # ------------------------------------------------------------------ per frame
    def predict(self, state: EmbeddingState, image: torch.Tensor, warped: torch.Tensor, *, stage: StageFn = no_stage) -> torch.Tensor:
        """Segment all K objects of ``image`` against the support set -> ``(K + 1, H, W)``."""
        net = self._net
        k, h, w = warped.shape
        if k == 0:
            return torch.ones(1, h, w, device=warped.device)
        self._flush(state, stage)
        if not state.anchor_times:
            raise RuntimeError("embedding: predict() before any memorize()")
        x, pads = pad_to_multiple(net.normalize(image), STRIDE)
        with stage("query-encoder"):
            q = net.encode_query(x)
        pool = self.support_indices(state)
        keys = [*state.anchor_keys, *(state.pool_keys[i] for i in pool)]
        values = [*state.anchor_values, *(state.pool_values[i] for i in pool)]
        probs = [*state.anchor_probs, *(state.pool_probs[i] for i in pool)]
        keys_t = torch.cat([v.to(q.key.dtype) for v in keys])[None]
        values_t = torch.cat([v.to(q.value.dtype) for v in values])[None]
        probs_t = torch.stack([F.pad(p, (0, 0, 0, 0, 0, k + 1 - p.shape[0])) for p in probs])[None]
        with stage("memory-read"):
            a = net.affinity(keys_t, q.key)
        with stage("global-branch"):
            g = net.global_logits(q, values_t, a)
        with stage("instance-branch"):
            inst = [
                net.instance_logits(q, values_t, label_tensors(probs_t, slice(i, i + self.max_instances)), a)
                for i in range(0, k, self.max_instances)
            ]
        with stage("aggregate"):
            up = unpad(F.interpolate(torch.cat([g, *inst], 1).float(), size=x.shape[-2:], mode="bilinear", align_corners=False), pads)
            fg = torch.sigmoid(up[0, 1:]) * torch.sigmoid(up[0, :1])
            return softmax_aggregate(fg)


COMPACT: dict[str, Any] = dict(backbone="mobilenet-v2", decoder_channels=64, freeze_bn=True)
"""The compact variant (``variant="compact"``, the shipped weights); see the module docstring."""


@register_method(
    "embedding",
    EmbeddingMethod,
    paper="Ge, Lu, Shen, Video Object Segmentation Using Global and Instance Embedding Learning (CVPR 2021)",
    tiny=dict(backbone="resnet18", base_width=8, decoder_channels=16),
    compact=COMPACT,
)
def build_embedding(
    *,
    support_size: int = 5,
    pool_size: int = 16,
    max_instances: int = 6,
    max_anchors: int = 4,
    freeze_bn: bool = False,
    **net_kwargs: Any,
) -> EmbeddingMethod:
    """The embedding method with a random-init network; ``net_kwargs`` go to :func:`embedding_net`."""
    return EmbeddingMethod(
        embedding_net(freeze_bn=freeze_bn, **net_kwargs),
        support_size=support_size,
        pool_size=pool_size,
        max_instances=max_instances,
        max_anchors=max_anchors,
    )
