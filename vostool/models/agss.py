"""``agss``: AGSS-VOS, attention-guided single-shot video object segmentation.

Paper: Huaijia Lin, Xiaojuan Qi, Jiaya Jia, "AGSS-VOS: Attention Guided Single-Shot Video Object
Segmentation", ICCV 2019. Design from the paper (Figure 2, Sec. 3-4) and the authors' public code
(dvlab-research/AGSS-VOS, see ``../shared/notes/methods.md``); the instance-agnostic module is
RGMP (Oh et al., CVPR 2018) with its last refine module moved into the decoder.

Per frame, for ``K`` objects (the per-object parts run batched, objects forming the batch):

1. **Instance-agnostic module** (once per frame): the RGMP encoder (ResNet-50 whose stem adds
   ``conv1_p(mask)`` to ``conv1(rgb)``) on the frame with the merged warped mask
   ``max_k P_{t-1->t,k}`` (eq. 2) gives ``r5..r2``; ``cat(r5, ref_r5)`` -> global convolution
   ``GC`` (7x7 separable, ``2*2048 -> 256``) -> ``convG1``/``convG2`` residual -> refine modules
   ``RF4`` (1024) and ``RF3`` (512) -> instance-agnostic feature ``m3`` ``(256, H/8, W/8)``.
   ``ref_r5`` is the encoder's top feature of the reference frame with its merged mask
   (eq. 1), computed once per video (:meth:`AGSSNet.reference`).
2. **Instance-specific module** (per object): the same encoder's stem + ``layer1`` on the frame
   with each object's warped mask -> visual feature ``r2_obj`` ``(256, H/4, W/4)``; the
   attention generator ``atn`` (1x1 ``257 -> 256`` + ReLU, 3x3 + ReLU, 3x3 stride 2, no final
   activation) on ``cat(r2_obj, mask at 1/4)`` -> attention feature ``(256, H/8, W/8)``.
3. **Attention-guided decoder** (per object): ``m3 * atn`` (eq. 3) -> ``RF2`` with ``r2_obj`` as
   skip -> ``pred2`` (3x3, 2 channels, after a ReLU) -> bilinear x4 -> softmax -> ``P_{t,k}``.
4. **Probabilistic normalisation** (eq. 4-5, :func:`~vostool.models.blocks.soft_aggregate`).

**Encoder** (``backbone``, :mod:`~vostool.models.backbones`): the paper's ResNet-50
(``resnet50``, the default: the official AGSS-VOS and RGMP checkpoints load into it) or another
backbone with the same four stages at strides 4 / 8 / 16 / 32, e.g. ``efficientnet-lite2`` or
``mobilenet-v2`` started from ImageNet weights (widths ``(24, 48, 120, 352)`` and
``(24, 32, 96, 320)`` instead of ``(256, 512, 1024, 2048)``). What it feeds: ``r5`` of the frame
and of the reference -> ``GC``; ``r4`` -> ``RF4``; ``r3`` -> ``RF3``; ``r2`` of the per-object
pass (stem + first stage) -> ``atn`` and ``RF2``'s skip. The mask enters through the stem's mask
convolution (``conv1_p`` for ResNet, ``conv_stem_p`` otherwise), added before the first
normalisation; each encoder brings its own input normalisation. A compact variant (another
backbone, ``mdim``) is a documented choice, never the paper-size default.

Training entry points (all differentiable; images ``(B, 3, H, W)`` RGB in [0, 1] at any size,
padded to a multiple of 32 inside; the encoder's input normalisation inside):

* ``ref = net.reference(ref_image (B, 3, H, W), ref_masks (B, K, H, W))`` -> ``(B, C5, Hp/32, Wp/32)``
  (``C5 = 2048`` at paper size; masks merged by max over ``K``).
* ``logits = net(image (B, 3, H, W), warped (B, K, H, W), ref)`` -> ``(B, K, H, W)`` per-object
  foreground logits at full resolution: ``sigmoid(logits)`` is the paper's 2-way softmax
  foreground probability ``P_{t,k}``; ``soft_aggregate(torch.sigmoid(logits))`` ->
  ``(B, K + 1, H, W)`` is eq. 4-5, the input of the instance IoU loss (eq. 7). All-zero ``warped``
  rows (padding objects) are allowed.
* The stages separately (inputs already padded to a multiple of 32):
  :meth:`AGSSNet.instance_agnostic`, :meth:`AGSSNet.instance_specific`, :meth:`AGSSNet.decode`;
  :meth:`AGSSNet.frame_features` runs the first two sharing their common encoder work (one stem
  pass for the merged and the per-object masks; with a single object the merged mask is the
  object's, so its stem + first stage run once), equal to running them apart.

Inference entry point: ``logits = net.frame(image (1, 3, H, W), masks (K, 1, H, W), ref (G, C5,
H/32, W/32), member (G, K))`` -> ``(K, H, W)``, one frame's whole network work for ``K`` objects
in ``G`` reference groups (tensors only, so it runs as one ONNX Runtime graph on the CPU:
:mod:`vostool.inference.blocks`).

BatchNorm is frozen (statistics and affine, as the authors train: ``freeze_bn=True``), so
``net.train()`` keeps BN layers in eval mode.

Names for converting the official checkpoint (``torch.save({'seg': state_dict, 'flow': ...})``,
keys with the DataParallel prefix ``module.``): drop ``module.``, lower-case ``Encoder`` /
``Decoder``, rename ``resN`` to ``layer{N-1}``; everything after that is identical:

* ``Encoder.conv1_p.{weight,bias}`` -> ``encoder.conv1_p.{weight,bias}`` (``(64, 1, 7, 7)``)
* ``Encoder.conv1.weight``, ``Encoder.bn1.*`` -> ``encoder.conv1.weight``, ``encoder.bn1.*``
* ``Encoder.res2/3/4/5.*`` -> ``encoder.layer1/2/3/4.*`` (torchvision Bottleneck names inside)
* ``Encoder.atn.{0,2,4}.{weight,bias}`` -> ``encoder.atn.{0,2,4}.{weight,bias}``
  (``(256, 257, 1, 1)``, ``(256, 256, 3, 3)``, ``(256, 256, 3, 3)``)
* ``Decoder.GC.conv_{l1,l2,r1,r2}.*`` -> ``decoder.GC.conv_{l1,l2,r1,r2}.*``
* ``Decoder.convG1.*``, ``Decoder.convG2.*`` -> ``decoder.convG1.*``, ``decoder.convG2.*``
* ``Decoder.RF{4,3,2}.conv{FS1,FS2,FS3,MM1,MM2}.*`` -> ``decoder.RF{4,3,2}.conv{...}.*``
* ``Decoder.pred2.*`` -> ``decoder.pred2.*`` (``(2, 256, 3, 3)``)

The checkpoint was written by PyTorch 0.4.0, whose BatchNorm has no ``num_batches_tracked``
buffer (unused with frozen BN). ``GC`` takes ``cat(target r5, reference r5)`` in that order, as
the official decoder does. RGMP's ``weights.pth`` (the authors' initialisation) maps the same way
for the keys it shares (it lacks ``atn``; its ``pred5..pred3`` have no place here).

Choices where paper and code are silent or differ (kept):

* The instance-specific feature extractor is the shared encoder's stem + ``layer1`` (three
  bottlenecks), as in the code (the paper says "two residual blocks"); ``conv1(rgb)`` is computed
  once per frame and shared by the ``K`` masks (equal to the code's ``K`` copies of the frame).
* The mask is resized to 1/4 for ``atn`` bilinearly with ``align_corners=True`` (code); other
  bilinear resizes use ``align_corners=False`` (PyTorch >= 0.4 default).
* Frames are zero-padded (black, split evenly) to a multiple of 32 inside; the official code
  resizes to 448x832 (DAVIS) or 320x640 (YouTube-VOS); the session's internal size (shorter
  side 448) comes close.
* Objects first given on a later frame form a *reference group*: their frame and merged mask
  give the group's own ``ref_r5``; the instance-agnostic module runs once per group (batched),
  each object decodes from its group's ``m3``, and all objects are normalised together (the code
  propagates each group separately and merges by argmax).
* Vanished objects are carried, not dropped for good. The authors' YouTube-VOS script drops an
  object whose warped mask has no pixel > 0.5, permanently (its mask stays empty). On DAVIS-style
  video that loses an object after a short occlusion or a brief exit from the frame. Here an object
  counts as *vanished* while fewer than ``VANISHED_FRACTION`` (5%) of its largest area so far is
  above 0.5 (a few stray pixels must not keep a gone object "alive" on a prior too small to find it
  again). A vanished object keeps its slot and its *last-seen mask* (the last frame on which it
  was present): that mask replaces its warped one as the input of both modules, and its
  foreground counts only where the network is confident (``p > 0.5``), so a faint ghost never
  leaks into the other objects; when the network finds it again it is present as before. All
  with tensor masking (no host-device synchronisation).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import backbone_name, create_encoder
from .base import MethodState, StageFn, VOSMethod, no_stage
from .blocks import GlobalConvBlock, RefineModule, freeze_batchnorm, pad_to_multiple, soft_aggregate, unpad
from .registry import register_method

PAD = 32
"""Inputs are padded to a multiple of this (the encoder's stride)."""


def attention_generator(c2: int, mdim: int) -> nn.Sequential:
    """The instance-specific attention generator ``atn``: ``cat(r2_obj, mask at 1/4)``
    ``(N, c2 + 1, h, w)`` -> 1x1 + ReLU, 3x3 + ReLU, 3x3 stride 2 -> ``(N, mdim, h/2, w/2)``
    (the authors' initialisation: normal(0, 0.01) weights, zero biases)."""
    atn = nn.Sequential(
        nn.Conv2d(c2 + 1, mdim, 1),
        nn.ReLU(inplace=True),
        nn.Conv2d(mdim, mdim, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(mdim, mdim, 3, stride=2, padding=1),
    )
    for m in atn:
        if isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight, 0.0, 0.01)
            nn.init.zeros_(m.bias)
    return atn


class AGSSDecoder(nn.Module):
    """Instance-agnostic decoder (``GC``, ``convG1/2``, ``RF4``, ``RF3``) and attention-guided
    decoder (``RF2``, ``pred2``).

    Args:
        channels: encoder channels of ``r2, r3, r4, r5`` (256, 512, 1024, 2048).
        mdim: decoder width (256).
        kernel: global convolution kernel (7).
    """

    def __init__(self, channels: tuple[int, int, int, int], *, mdim: int = 256, kernel: int = 7) -> None:
        super().__init__()
        c2, c3, c4, c5 = channels
        self.GC = GlobalConvBlock(2 * c5, mdim, kernel)
        self.convG1 = nn.Conv2d(mdim, mdim, 3, padding=1)
        self.convG2 = nn.Conv2d(mdim, mdim, 3, padding=1)
        self.RF4 = RefineModule(c4, mdim)
        self.RF3 = RefineModule(c3, mdim)
        self.RF2 = RefineModule(c2, mdim)
        self.pred2 = nn.Conv2d(mdim, 2, 3, padding=1)

    def agnostic(self, r5: torch.Tensor, ref5: torch.Tensor, r4: torch.Tensor, r3: torch.Tensor) -> torch.Tensor:
        """``r5, ref5 (G, C5, h, w)``, ``r4 (G, C4, 2h, 2w)``, ``r3 (G, C3, 4h, 4w)`` -> ``m3 (G, mdim, 4h, 4w)``."""
        x = self.GC(torch.cat([r5, ref5.to(r5.dtype)], 1))
        m5 = x + self.convG2(F.relu(self.convG1(F.relu(x))))
        return self.RF3(r3, self.RF4(r4, m5))

    def guided(self, m3: torch.Tensor, r2_obj: torch.Tensor, atn: torch.Tensor) -> torch.Tensor:
        """``m3, atn (N, mdim, h, w)``, ``r2_obj (N, C2, 2h, 2w)`` -> 2-way logits ``(N, 2, 2h, 2w)`` (eq. 3)."""
        return self.pred2(F.relu(self.RF2(r2_obj, m3 * atn)))


class AGSSNet(nn.Module):
    """The AGSS-VOS network (stateless). See the module docstring for the data flow.

    Args:
        backbone: the encoder (:data:`~vostool.models.backbones.BACKBONES`; ``resnet50`` in the
            paper). Its four stages feed: ``r5`` (with the reference's ``r5``) the global
            convolution, ``r4`` / ``r3`` the refine modules ``RF4`` / ``RF3`` of the
            instance-agnostic module, and ``r2`` (stem + first stage, run per object) the
            attention generator and ``RF2``'s skip; see ``encoder.channels`` for the widths.
        depth: the older spelling of ``backbone="resnet{depth}"``.
        base_width: ResNet stem width (64).
        mdim: decoder / attention width (256).
        gc_kernel: global convolution kernel size (7).
        freeze_bn: keep the encoder's BatchNorm fixed in training (True, as the authors).
    """

    def __init__(
        self,
        *,
        backbone: str | None = None,
        depth: int | None = None,
        base_width: int = 64,
        mdim: int = 256,
        gc_kernel: int = 7,
        freeze_bn: bool = True,
    ) -> None:
        super().__init__()
        self.encoder = create_encoder(backbone_name(backbone, depth), mask_channels=1, base_width=base_width)
        self.encoder.attach("atn", attention_generator(self.encoder.channels[0], mdim))
        self.decoder = AGSSDecoder(self.encoder.channels, mdim=mdim, kernel=gc_kernel)
        self.freeze_bn = freeze_bn
        if freeze_bn:
            freeze_batchnorm(self.encoder)

    def train(self, mode: bool = True) -> AGSSNet:
        super().train(mode)
        if self.freeze_bn:
            freeze_batchnorm(self.encoder)
        return self

    # --- stages (inputs padded to a multiple of 32) -----------------------------------------
    def instance_agnostic(self, image: torch.Tensor, masks: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        """Instance-agnostic feature.

        Args:
            image: ``(B, 3, H, W)`` in [0, 1], ``H, W`` multiples of 32.
            masks: ``(B * G, 1, H, W)`` merged (agnostic) warped masks, ``G`` per image (one per
                reference group).
            ref: ``(B * G, C5, H/32, W/32)`` reference features from :meth:`reference`.

        Returns:
            ``m3 (B * G, mdim, H/8, W/8)``.
        """
        r2, r3, r4, r5 = self.encoder(self.encoder.normalize(image), masks)
        return self.decoder.agnostic(r5, ref, r4, r3)

    def instance_specific(self, image: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Instance visual and attention features: ``image (B, 3, H, W)`` in [0, 1] (multiples
        of 32), ``masks (B * K, 1, H, W)`` -> ``r2_obj (B * K, C2, H/4, W/4)``,
        ``atn (B * K, mdim, H/8, W/8)``."""
        enc = self.encoder
        r2 = enc.first_stage(enc.normalize(image), masks)
        return r2, self.attention(r2, masks)

    def attention(self, r2_obj: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """The attention generator on ``cat(r2_obj (N, C2, h, w), masks (N, 1, 4h, 4w) at 1/4)``
        -> ``(N, mdim, h/2, w/2)``."""
        m4 = F.interpolate(masks, size=r2_obj.shape[-2:], mode="bilinear", align_corners=True)
        return self.encoder.atn(torch.cat([r2_obj, m4.to(r2_obj.dtype)], 1))

    def frame_features(
        self, image: torch.Tensor, agnostic: torch.Tensor, masks: torch.Tensor, ref: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`instance_agnostic` and the visual part of :meth:`instance_specific` in one pass
        that shares their common work: the frame's stem convolution, and, with one group of one
        object (``G = K = 1``, when the merged mask is the object's own), the whole stem + first
        stage. The attention features are :meth:`attention` of ``r2_obj``.

        Args:
            image: ``(B, 3, H, W)`` in [0, 1], ``H, W`` multiples of 32.
            agnostic: ``(B * G, 1, H, W)`` each group's merged mask: the max over its objects'
                rows of ``masks`` (so with ``G = K = 1`` equal to ``masks``).
            masks: ``(B * K, 1, H, W)`` the object masks.
            ref: ``(B * G, C5, H/32, W/32)``.

        Returns:
            ``m3 (B * G, mdim, H/8, W/8)`` and ``r2_obj (B * K, C2, H/4, W/4)``.
        """
        enc = self.encoder
        b = image.shape[0]
        g, k = agnostic.shape[0] // b, masks.shape[0] // b
        x = enc.normalize(image)
        if g == 1 and k == 1:
            r2_agn = r2_obj = enc.first_stage(x, masks)
        else:
            both = torch.cat([agnostic.unflatten(0, (b, g)), masks.unflatten(0, (b, k))], 1).flatten(0, 1)
            r2 = enc.first_stage(x, both).unflatten(0, (b, g + k))
            r2_agn, r2_obj = r2[:, :g].flatten(0, 1), r2[:, g:].flatten(0, 1)
        r3, r4, r5 = enc.later_stages(r2_agn)
        return self.decoder.agnostic(r5, ref, r4, r3), r2_obj

    def decode(self, m3: torch.Tensor, r2_obj: torch.Tensor, atn: torch.Tensor) -> torch.Tensor:
        """Attention-guided decoder: ``m3, atn (N, mdim, h, w)``, ``r2_obj (N, C2, 2h, 2w)`` ->
        foreground logits ``(N, 8h, 8w)`` (``logit_fg - logit_bg`` of ``pred2``, upsampled x4)."""
        p2 = self.decoder.guided(m3, r2_obj, atn)
        fg = (p2[:, 1] - p2[:, 0]).unsqueeze(1)
        return F.interpolate(fg, scale_factor=4, mode="bilinear", align_corners=False)[:, 0]

    entry_points: ClassVar[tuple[str, ...]] = ("frame",)  # tensors only: see vostool.models.base

    def frame(
        self, image: torch.Tensor, masks: torch.Tensor, ref: torch.Tensor, member: torch.Tensor, *, stage: StageFn = no_stage
    ) -> torch.Tensor:
        """One inference frame: the instance-agnostic module once per reference group, the
        instance-specific module and the decoder once per object.

        Args:
            image: ``(1, 3, H, W)`` in [0, 1], ``H, W`` multiples of 32.
            masks: ``(K, 1, H, W)`` the objects' warped masks.
            ref: ``(G, C5, H/32, W/32)`` the reference groups' features (:meth:`reference`).
            member: ``(G, K)`` float, 1 where object ``k`` belongs to group ``g`` (one 1 per
                column); a group's merged mask is the max of its objects' masks.
            stage: times the three modules (``instance-agnostic``, ``instance-specific``,
                ``decoder``).

        Returns:
            ``(K, H, W)`` foreground logits.
        """
        with stage("instance-agnostic"):  # with the instance-specific visual feature (shared work)
            agnostic = (masks[:, 0].unsqueeze(0) * member[:, :, None, None]).amax(1, keepdim=True)  # (G, 1, H, W)
            m3, r2_obj = self.frame_features(image, agnostic, masks, ref)
        with stage("instance-specific"):
            atn = self.attention(r2_obj, masks)
        with stage("decoder"):
            m3_obj = (member.t() @ m3.flatten(1)).unflatten(1, m3.shape[1:])  # each object's group's m3
            return self.decode(m3_obj, r2_obj, atn)

    # --- whole-frame entry points (any size) --------------------------------------------------
    def reference(self, image: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Reference feature (computed once per video).

        Args:
            image: ``(B, 3, H, W)`` reference frames in [0, 1].
            masks: ``(B, K, H, W)`` their object masks (merged by max over ``K``, eq. 1).

        Returns:
            ``(B, C5, Hp/32, Wp/32)``, ``Hp, Wp`` = ``H, W`` padded to a multiple of 32.
        """
        x, _ = pad_to_multiple(image, PAD)
        m, _ = pad_to_multiple(masks.amax(1, keepdim=True), PAD)
        return self.encoder(self.encoder.normalize(x), m)[3]

    def forward(self, image: torch.Tensor, warped: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        """Per-object foreground logits for a batch of frames (the training entry point).

        Args:
            image: ``(B, 3, H, W)`` target frames in [0, 1].
            warped: ``(B, K, H, W)`` previous object probabilities warped to the targets.
            ref: ``(B, C5, Hp/32, Wp/32)`` from :meth:`reference`.

        Returns:
            ``(B, K, H, W)`` foreground logits (``sigmoid`` -> ``P_{t,k}``).
        """
        b, k = warped.shape[:2]
        x, pads = pad_to_multiple(image, PAD)
        w, _ = pad_to_multiple(warped, PAD)
        masks = w.flatten(0, 1).unsqueeze(1)
        m3, r2_obj = self.frame_features(x, w.amax(1, keepdim=True), masks, ref)
        atn = self.attention(r2_obj, masks)
        m3 = m3.unsqueeze(1).expand(-1, k, -1, -1, -1).flatten(0, 1)
        logits = self.decode(m3, r2_obj, atn)
        return unpad(logits, pads).unflatten(0, (b, k))


VANISHED_FRACTION = 0.05  # an object under 5% of its peak area is searched for with its last-seen mask


@dataclasses.dataclass
class AGSSState(MethodState):
    """AGSS-VOS's per-video state (None until the first objects are given).

    Attributes:
        ref: ``(G, C5, h, w)`` reference features of the ``G`` reference groups.
        group: ``(K,)`` long, each slot's group.
        member: ``(G, K)`` float, 1 where slot k is in group g.
        last_seen: ``(K, H, W)`` each object's probability on the last frame where it was present
            (internal size): the prior of an object that vanished (see the module docstring).
        peak_area: ``(K,)`` each object's largest area so far (pixels > 0.5).
    """

    ref: torch.Tensor | None = None
    group: torch.Tensor | None = None
    member: torch.Tensor | None = None
    last_seen: torch.Tensor | None = None
    peak_area: torch.Tensor | None = None

    @property
    def num_objects(self) -> int:
        return 0 if self.group is None else int(self.group.shape[0])


class AGSS(VOSMethod[AGSSState]):
    """AGSS-VOS inference rule around :class:`AGSSNet`; its state is :class:`AGSSState`."""

    name = "agss"
    stages = ("instance-agnostic", "instance-specific", "decoder")
    uses_flow = True
    state_type = AGSSState
    net: AGSSNet

    def __init__(self, net: AGSSNet) -> None:
        super().__init__(net)

    def memorize(self, state: AGSSState, image: torch.Tensor, prob: torch.Tensor, new_slots: list[int]) -> None:
        """New slots form a reference group: this frame + their merged mask -> ``ref_r5``."""
        if not new_slots:
            return
        have = state.num_objects
        if sorted(new_slots) != list(range(have + 1, have + 1 + len(new_slots))):
            raise RuntimeError(f"new slots {new_slots} do not follow the {have} known slots")
        masks = prob[have + 1 : have + 1 + len(new_slots)].unsqueeze(0)
        ref = self.net.reference(image, masks.to(image.dtype))
        g = 0 if state.ref is None else int(state.ref.shape[0])
        new_group = torch.full((len(new_slots),), g, dtype=torch.long, device=image.device)
        state.ref = ref if state.ref is None else torch.cat([state.ref, ref])
        state.group = new_group if state.group is None else torch.cat([state.group, new_group])
        groups = torch.arange(g + 1, device=image.device)
        state.member = (state.group.unsqueeze(0) == groups.unsqueeze(1)).float()

    def predict(self, state: AGSSState, image: torch.Tensor, warped: torch.Tensor, *, stage: StageFn = no_stage) -> torch.Tensor:
        """``warped (K, H, W)`` -> ``(K + 1, H, W)`` normalised probabilities (eq. 4-5)."""
        k = warped.shape[0]
        if k == 0:
            return torch.ones((1, *warped.shape[-2:]), device=warped.device)
        if state.num_objects != k or state.member is None or state.group is None:
            raise RuntimeError(f"predict got {k} objects but memorize saw {state.num_objects}")
        # A vanished object is searched for with its last-seen mask.
        alive = self._present(state, warped)
        prior = torch.where(alive, warped, _with_new_objects(state.last_seen, warped))
        x, pads = pad_to_multiple(image, PAD)
        w, _ = pad_to_multiple(prior.to(image.dtype).unsqueeze(1), PAD)  # (K, 1, Hp, Wp)
        logits = self.net.frame(x, w, state.ref, state.member.to(w.dtype), stage=stage)
        with stage("decoder"):
            fg = torch.sigmoid(unpad(logits, pads).float())
            fg = torch.where(alive, fg, fg * (fg > 0.5))  # a vanished object returns only where confident
            return soft_aggregate(fg)

    @staticmethod
    def _area_and_peak(state: AGSSState, fg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``fg (K, H, W)`` -> each object's area (pixels > 0.5) and its peak area so far, ``(K,)``
        both (an object without a peak yet has its current area as its peak)."""
        area = (fg > 0.5).flatten(1).sum(1).float()
        return area, _with_new_objects(state.peak_area, area)

    @staticmethod
    def _is_present(area: torch.Tensor, peak: torch.Tensor) -> torch.Tensor:
        """``(K, 1, 1)`` bool: at least ``VANISHED_FRACTION`` of each object's peak area is above 0.5."""
        return ((area > 0) & (area >= VANISHED_FRACTION * peak))[:, None, None]

    @classmethod
    def _present(cls, state: AGSSState, fg: torch.Tensor) -> torch.Tensor:
        """:meth:`_is_present` of ``fg (K, H, W)`` against the state's peak areas."""
        return cls._is_present(*cls._area_and_peak(state, fg))

    def update(self, state: AGSSState, image: torch.Tensor, prob: torch.Tensor) -> None:
        """Remember each object's mask on frames where it is present (``last_seen``) and its
        largest area (``peak_area``)."""
        fg = prob[1:]
        area, peak = self._area_and_peak(state, fg)
        state.last_seen = torch.where(self._is_present(area, peak), fg, _with_new_objects(state.last_seen, fg))
        state.peak_area = torch.maximum(peak, area)


def _with_new_objects(stored: torch.Tensor | None, current: torch.Tensor) -> torch.Tensor:
    """``stored (K0, ...)`` per-object values completed with the rows of ``current (K, ...)`` for
    the objects memorized since (``current`` itself when nothing is stored or the size changed)."""
    if stored is None or stored.shape[1:] != current.shape[1:]:
        return current
    return torch.cat([stored[: current.shape[0]].to(current), current[stored.shape[0] :]])


# Default flow: DIS. The paper's FlowNet2-C is replaced by a flow backend; the weights vostool
# ships (agss.davis16-lite2) were trained with DIS flow (`--flow raft-small` also runs offline).
@register_method(
    "agss",
    AGSS,
    paper="Lin, Qi, Jia: AGSS-VOS: Attention Guided Single-Shot Video Object Segmentation, ICCV 2019",
    default_flow="dis",
    tiny=dict(backbone="resnet18", base_width=8, mdim=16),
)
def build_agss(
    *,
    backbone: str | None = None,
    depth: int | None = None,
    base_width: int = 64,
    mdim: int = 256,
    gc_kernel: int = 7,
    freeze_bn: bool = True,
) -> AGSS:
    """AGSS-VOS with a random-init :class:`AGSSNet` (paper size by default: ResNet-50, width 64,
    decoder 256, GC kernel 7); ``method_info("agss").tiny`` is the test variant."""
    return AGSS(AGSSNet(backbone=backbone, depth=depth, base_width=base_width, mdim=mdim, gc_kernel=gc_kernel, freeze_bn=freeze_bn))
