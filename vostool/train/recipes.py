"""Per-method training recipes: how a step's batch is drawn and how the loss is computed.

Every recipe has ``sampler(sequences, seed)``, ``make_batch(sampler, step, batch)`` (a pure
function of the sampler's seed and ``step``), ``loss(net, batch, autocast=None) -> (loss, stats)``
and ``describe()``. :func:`get_recipe` builds one by method name:

* :class:`AGSSRecipe` (``agss``) — the paper's recipe, below; the one used for real training.
* :class:`SAVOSRecipe` (``savos``) — "lucid dream" clips + softmax aggregation + cross-entropy.
* :class:`EmbeddingRecipe` (``embedding``) — 4-frame clips sampled as the support set at
  inference, recurrent over the support frames, BCE (global) + CE (instances).
* :class:`OVSNetRecipe` (``ovsnet``) — frame pairs; Mask R-CNN + triplet + 1.3 x MGA CE losses.

The last three are exercised by few-step CPU tests with tiny networks only (no real run yet).

AGSS-VOS (paper Sec. 3.2 and 4.1):

* a sub-sequence of ``clip_length = 8`` consecutive frames per sample; its first frame is the
  reference (ground-truth mask);
* augmentation: horizontal flip and sequence reversal, each with probability 1/2 (plus an
  optional random crop to ``crop = (h, w)``, ours, to cut CPU cost);
* recurrent training: frame ``t`` gets the previous frame's *own* soft normalised prediction
  warped by backward optical flow (DIS, computed on the augmented clip, see below); frame 1 gets
  the reference ground truth;
* tolerance rule: if the IoU of the previous mask (``> 0.5``) with its ground truth is below
  ``tolerance`` (the paper gives no value; 0.5 here), that object's mask is replaced by the
  ground truth before warping;
* loss: the instance IoU loss (eq. 7) on ``soft_aggregate(sigmoid(logits))`` (eq. 4-5), averaged
  over the 7 predicted frames, plus ``ce_weight`` x cross-entropy on the same aggregated
  distribution (not in the paper; a small term that steadies training from scratch; 0 disables);
* previous masks are detached between frames (no back-propagation through time).

The shipped ``agss`` weights (weights.toml: their ``reference``) move this recipe toward the
paper where the CPU allows, and away from it where a short CPU budget on 25 videos needs it.
Each choice below was made on an *inner* split of the training sequences
(``vostool/data/davis16_train240p_inner.txt``, 5 of the 25), never on the held-out split,
with 200-clip runs of equal settings otherwise (J&F on the inner split):

* Encoder: ImageNet EfficientNet-Lite2 (55.9) over MobileNetV2 (48.2), BatchNorm frozen as the
  authors freeze it.
* One optimiser step per predicted frame (``frame_steps``, as the authors' code does): seven
  steps per 8-frame clip; the reference feature is then computed without gradient.
* Learning rates (Adam, poly 0.9): the paper's 1e-5 for the pretrained encoder; 1e-4 for the
  decoder and attention generator, which the paper starts from RGMP's trained weights and
  which start here from random ones; 1e-3 for the zero-initialised mask convolution, which at
  1e-4 reached after 200 clips only 5 % of the RGB stem's response, so that on unseen objects
  the network followed its appearance prior more than the warped mask (elephant, rhino).
* ``augment="strong"`` (ours: lucid-dream clips, zoom / rotation, lighting) with the mask
  learning rate: 56.6 against 55.9, and the large unseen animals the network lost improved most
  (elephant 30 -> 46, rhino 29 -> 37).
* Resolution: whole 427x240 frames, as inference runs them (the paper trains at 640x320; a
  step at 240p already takes 5-10 s on two shared CPU cores).
* Data: all 25 training sequences, the other fully annotated real clip in ``../shared``
  (PUMaVOS ``chair``) and 10 synthetic videos.

Flow (``flow``): the paper fine-tunes FlowNet2 jointly; here the flow network is frozen. With
``flow="dis"`` (the CPU choice) DIS flow is computed per step on the augmented (flipped /
reversed / cropped) clip, so it is always the exact flow of the frames the network sees; at 240p
DIS ``ultrafast`` takes a few milliseconds per pair, under 2 % of a CPU training step, so no cache
is kept. With ``flow="raft-small"`` (the GPU choice, ``vostool train`` picks it on CUDA) frozen
RAFT runs on the training device inside :meth:`AGSSRecipe.loss`, batched over the clips.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
import torch

from ..datasets import VideoSequence
from ..errors import InputError
from ..flow import OPENCV_FLOWS, backward_warp, create_flow
from ..io.masks import VOID_ID
from ..models.blocks import soft_aggregate
from .augment import hflip, lucid_dream_clip, paste_object, random_affine, random_crop, random_illumination, reverse
from .losses import aggregated_cross_entropy, apply_tolerance, instance_iou_loss
from .sampling import Clip, ClipSampler


def clip_indices(batch: int | range) -> range:
    """The clips of a step's batch to make: all ``batch`` of them, or the given indices (one
    process's share of the global batch under ``torchrun``: :mod:`vostool.train.distributed`)."""
    return range(batch) if isinstance(batch, int) else batch


@dataclasses.dataclass
class Batch:
    """One training batch.

    Attributes:
        images: ``(B, L, 3, H, W)`` float32 RGB in [0, 1].
        labels: ``(B, L, H, W)`` long, 0..K, 255 = void.
        flows: ``(B, L - 1, 2, H, W)`` float32 backward flow from frame ``t + 1`` to ``t``, or
            None when the recipe computes it on the device (RAFT).
        objects: ``(B, K)`` float32, 1 for real objects (K = the batch's largest count).
        names: source sequences.
    """

    images: torch.Tensor
    labels: torch.Tensor
    flows: torch.Tensor | None
    objects: torch.Tensor
    names: list[str]

    def to(self, device: torch.device) -> Batch:
        flows = None if self.flows is None else self.flows.to(device)
        return Batch(self.images.to(device), self.labels.to(device), flows, self.objects.to(device), self.names)


@dataclasses.dataclass
class AGSSRecipe:
    """AGSS-VOS training recipe (see the module docstring).

    Args:
        clip_length: frames per sub-sequence (8).
        crop: ``(h, w)`` random crop of every clip, or None for whole frames.
        tolerance: IoU threshold of the tolerance rule.
        ce_weight: weight of the auxiliary cross-entropy term.
        max_objects: at most this many objects per clip.
        flip_p / reverse_p: augmentation probabilities.
        flow: ``"dis"`` or ``"farneback"`` (OpenCV, computed with the batch on the CPU) or a
            learned flow (``"raft-small"``, ``"raft-large"``: frozen, run on the training device).
        flow_weights: weights file or entry for a learned flow (None: the manifest's default).
        augment: ``"paper"`` (flip and reversal only) or ``"strong"`` (also: ``lucid_p`` of the
            clips synthesised from their first frame by lucid dreaming, one random affine per
            clip (zoom ``scale``, rotation up to ``rotation`` degrees, shift up to 10 %), and one
            random lighting change per clip).
        lucid_p / scale / rotation: settings of ``augment="strong"``.
    """

    clip_length: int = 8
    crop: tuple[int, int] | None = None
    tolerance: float = 0.5
    ce_weight: float = 0.1
    max_objects: int = 4
    flip_p: float = 0.5
    reverse_p: float = 0.5
    flow: str = "dis"
    flow_weights: str | None = None
    augment: str = "paper"
    lucid_p: float = 0.25
    scale: tuple[float, float] = (0.8, 1.25)
    rotation: float = 10.0
    name: str = "agss"
    _estimator: Any = dataclasses.field(default=None, init=False, repr=False, compare=False)

    def describe(self) -> dict[str, Any]:
        """JSON-able settings (logged and stored in the exported weights' metadata)."""
        d = {
            k: getattr(self, k) for k in ("clip_length", "crop", "tolerance", "ce_weight", "max_objects", "flip_p", "reverse_p", "augment")
        }
        if self.augment == "strong":
            d.update(lucid_p=self.lucid_p, scale=list(self.scale), rotation=self.rotation)
        d.update(
            loss="instance IoU (eq. 7) on soft_aggregate" + (f" + {self.ce_weight} x CE" if self.ce_weight else ""),
            flow=f"{self.flow} (frozen, per step, on the augmented clip)",
        )
        return d

    def sampler(self, sequences: list[VideoSequence], seed: int) -> ClipSampler:
        """The deterministic clip sampler for this recipe."""
        return ClipSampler(sequences, self.clip_length, seed=seed, max_objects=self.max_objects)

    # --- data -----------------------------------------------------------------------------
    def make_clip(self, sampler: ClipSampler, step: int, index: int) -> Clip:
        """The augmented clip ``index`` of ``step`` (pure function of the sampler's seed, step, index)."""
        clip = sampler.sample(step, index)
        rng = sampler.rng(step, 2000 + index)
        strong = sampler.rng(step, 3000 + index) if self.augment == "strong" else None  # own stream: "paper" clips unchanged
        if strong is not None and strong.random() < self.lucid_p:
            lucid = lucid_dream_clip(clip.images[0], clip.labels[0], strong, length=self.clip_length, name=clip.name)
            if lucid.num_objects > 0:
                clip = lucid
        flip, rev = rng.random() < self.flip_p, rng.random() < self.reverse_p
        if flip:
            clip = hflip(clip)
        if rev:
            r = reverse(clip)
            if r.num_objects > 0:  # the last frame may have lost every object: keep forward order
                clip = r
        if strong is not None:
            moved = random_affine(clip, strong, scale=self.scale, rotation=self.rotation, shift=0.1)
            if (moved.labels[0] == np.arange(1, clip.num_objects + 1)[:, None, None]).any((1, 2)).all():  # every object still in frame 0
                clip = moved
            clip = random_illumination(clip, strong)
        return _crop_and_relabel(clip, self.crop, rng)

    def flows(self, images: np.ndarray) -> np.ndarray:
        """``(L, H, W, 3)`` uint8 -> ``(L - 1, 2, H, W)`` float32 backward flow ``t+1 -> t`` of an
        OpenCV estimator (``dis`` or ``farneback``).

        A fresh estimator per clip: OpenCV's DIS keeps buffers between calls that can change
        later results, which would make a step depend on the steps before it (breaking exact resume).
        """
        est = create_flow(self.flow)
        preps = [est.prepare(torch.from_numpy(im).permute(2, 0, 1)[None].float().div(255.0)) for im in images]
        return np.stack([est.flow(preps[t + 1], preps[t]).cpu().numpy() for t in range(len(images) - 1)])

    def device_flows(self, images: torch.Tensor) -> torch.Tensor:
        """Frozen learned flow on the images' device: ``(B, L, 3, H, W)`` -> ``(B, L - 1, 2, H, W)``
        backward flow ``t+1 -> t`` (one estimator call per frame pair)."""
        if self._estimator is None:
            self._estimator = create_flow(self.flow, device=images.device, weights=self.flow_weights)
        est = self._estimator
        b, length = images.shape[:2]
        preps = [[est.prepare(images[i, t : t + 1]) for t in range(length)] for i in range(b)]
        out = [torch.stack([est.flow(p[t + 1], p[t]) for t in range(length - 1)]) for p in preps]
        return torch.stack(out).clone()  # a normal tensor (RAFT returns inference-mode tensors)

    def make_batch(self, sampler: ClipSampler, step: int, batch: int | range) -> Batch:
        """The ``batch`` clips of training step ``step`` as tensors (same size required: use ``crop``
        when sequences differ in size)."""
        clips = [self.make_clip(sampler, step, i) for i in clip_indices(batch)]
        images, labels, objects = _stack(clips)
        flows = torch.from_numpy(np.stack([self.flows(c.images) for c in clips])) if self.flow in OPENCV_FLOWS else None
        return Batch(images, labels, flows, objects, [c.name for c in clips])

    # --- loss -----------------------------------------------------------------------------
    def loss(
        self, net: torch.nn.Module, batch: Batch, *, autocast: Any = None, frame_step: Callable[[torch.Tensor], None] | None = None
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Recurrent forward over the clip and the training loss.

        Args:
            net: an :class:`~vostool.models.agss.AGSSNet` in train mode.
            batch: from :meth:`make_batch`, on the net's device.
            autocast: a context-manager factory for mixed precision (None = fp32).
            frame_step: when given, called with each predicted frame's loss (it back-propagates
                and steps the optimiser: one step per frame, as the AGSS-VOS authors train); the
                reference feature is then computed without gradient (the weights change between
                frames), and the returned loss is detached.

        Returns:
            ``(loss, stats)``: the scalar loss (mean over the predicted frames) and floats
            ``iou_loss``, ``ce``, ``replaced`` (fraction of previous masks replaced by the
            tolerance rule) and ``miou`` (hard IoU of the predictions).
        """
        ctx = autocast or contextlib.nullcontext
        b, length = batch.labels.shape[:2]
        k = batch.objects.shape[1]
        ids = torch.arange(1, k + 1, device=batch.labels.device).view(1, k, 1, 1)

        def onehot(t: int) -> torch.Tensor:
            return (batch.labels[:, t].unsqueeze(1) == ids).float() * batch.objects[:, :, None, None]

        valid = batch.labels != VOID_ID  # (B, L, H, W)
        flows = batch.flows if batch.flows is not None else self.device_flows(batch.images)
        with ctx(), torch.no_grad() if frame_step is not None else contextlib.nullcontext():
            ref = net.reference(batch.images[:, 0], onehot(0))
        prev = onehot(0)
        total_iou = torch.zeros((), device=batch.images.device)
        total_ce = torch.zeros((), device=batch.images.device)
        replaced, checked, miou = 0.0, 0.0, 0.0
        for t in range(1, length):
            if t > 1:
                prev, rep = apply_tolerance(prev, onehot(t - 1), valid[:, t - 1], self.tolerance)
                real = batch.objects > 0
                replaced += float((rep & real).sum())
                checked += float(real.sum())
            warped = backward_warp(prev, flows[:, t - 1])
            with ctx():
                logits = net(batch.images[:, t], warped, ref)
            fg = torch.sigmoid(logits.float()) * batch.objects[:, :, None, None]
            prob = soft_aggregate(fg)  # (B, K + 1, H, W)
            target = onehot(t)
            iou = instance_iou_loss(prob[:, 1:], target, valid[:, t], batch.objects)
            ce = aggregated_cross_entropy(prob, batch.labels[:, t]) if self.ce_weight else torch.zeros_like(iou)
            if frame_step is not None:
                frame_step(iou + self.ce_weight * ce)
                iou, ce = iou.detach(), ce.detach()
            total_iou = total_iou + iou
            total_ce = total_ce + ce
            with torch.no_grad():
                hard = prob.argmax(1, keepdim=True) == ids
                inter = (hard & (target > 0) & valid[:, t, None]).sum((-2, -1)).float()
                union = ((hard | (target > 0)) & valid[:, t, None]).sum((-2, -1)).float()
                iou_hard = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))
                miou += float((iou_hard * batch.objects).sum() / batch.objects.sum().clamp(min=1))
            prev = prob[:, 1:].detach()
        n = length - 1
        loss = total_iou / n + self.ce_weight * total_ce / n
        stats = {
            "iou_loss": float(total_iou.detach()) / n,
            "ce": float(total_ce.detach()) / n,
            "replaced": replaced / checked if checked else 0.0,
            "miou": miou / n,
        }
        return loss, stats


def images_to_tensor(images: np.ndarray) -> torch.Tensor:
    """``(..., H, W, 3)`` uint8 RGB -> ``(..., 3, H, W)`` float32 in [0, 1], contiguous (NCHW).

    Training batches must not be channels_last: a permuted view converted with ``.float()`` keeps
    the NHWC strides, and every convolution of the step then runs oneDNN's channels-last kernels.
    In oneDNN 3.12 (torch 2.13.0 to 2.14.1) the weight gradient of a strided 1x1 convolution (a
    ResNet shortcut) on an NHWC input with fewer channels than the CPU's channel block (8 with
    AVX2, 16 with AVX-512) writes past its workspace: heap corruption, segfaults or hangs in
    ``loss.backward()``. NCHW inputs take the blocked kernels, which are correct. Reproducer:
    ``benchmarks/onednn_nhwc_1x1_backward.py``.
    """
    return torch.from_numpy(images).movedim(-1, -3).to(torch.float32, memory_format=torch.contiguous_format).div_(255.0)


def _onehot(labels: torch.Tensor, objects: torch.Tensor) -> torch.Tensor:
    """``labels (B, H, W)`` long, ``objects (B, K)`` -> ``(B, K, H, W)`` float masks of objects 1..K."""
    k = objects.shape[1]
    ids = torch.arange(1, k + 1, device=labels.device).view(1, k, 1, 1)
    return (labels.unsqueeze(1) == ids).float() * objects[:, :, None, None]


def _crop_and_relabel(clip: Clip, crop: tuple[int, int] | None, rng: np.random.Generator) -> Clip:
    """Random crop (optional); objects no longer in frame 0 are dropped and ids made contiguous."""
    if crop is not None:
        clip = random_crop(clip, crop, rng)
    present = [k for k in range(1, clip.num_objects + 1) if (clip.labels[0] == k).any()]
    if len(present) != clip.num_objects:
        lut = np.zeros(256, np.uint8)
        lut[VOID_ID] = VOID_ID
        for i, k in enumerate(present, start=1):
            lut[k] = i
        clip = Clip(clip.images, lut[clip.labels], len(present), clip.name)
    return clip


def _maybe_paste(clip: Clip, sampler: ClipSampler, step: int, index: int, p: float) -> Clip:
    """With probability ``p``, :func:`~vostool.train.augment.paste_object` a clip of another
    sequence over ``clip`` (its own random stream, so ``p = 0`` leaves every other draw as it was)."""
    if p <= 0:
        return clip
    rng = sampler.rng(step, 4000 + index)
    if rng.random() >= p:
        return clip
    donor = sampler.sample(step, 5000 + index)
    if donor.name == clip.name:
        return clip
    return _crop_and_relabel(paste_object(clip, donor, rng), None, rng)


def _stack(clips: list[Clip]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Clips of one size -> ``images (B, L, 3, H, W)``, ``labels (B, L, H, W)`` long, ``objects (B, K)``."""
    shapes = {c.labels.shape for c in clips}
    if len(shapes) != 1:
        raise InputError(f"clips of one batch differ in size {sorted(shapes)}; give a crop size (--crop) or --batch 1")
    k = max(max(c.num_objects for c in clips), 1)
    images = images_to_tensor(np.stack([c.images for c in clips]))
    labels = torch.from_numpy(np.stack([c.labels for c in clips]).astype(np.int64))
    objects = torch.tensor([[1.0 if j < c.num_objects else 0.0 for j in range(k)] for c in clips])
    return images, labels, objects


def _flowless_batch(clips: list[Clip]) -> Batch:
    """A :class:`Batch` of clips for methods that use no optical flow (empty ``flows``)."""
    images, labels, objects = _stack(clips)
    flows = torch.zeros((len(clips), 0, 2, *labels.shape[-2:]))
    return Batch(images, labels, flows, objects, [c.name for c in clips])


PASTE_P = 0.5
"""``augment="strong"`` for SAVOS and the embedding method: the share of clips that get a second
object pasted from another training video (:func:`~vostool.train.augment.paste_object`)."""


@dataclasses.dataclass
class SAVOSRecipe:
    """SAVOS training (paper Sec. 6.1.2-6.1.3): clips synthesised from one annotated frame by
    "lucid dream" (:func:`~vostool.train.augment.lucid_dream_clip`) mixed with real clips
    (``lucid_p`` of the samples are synthetic), horizontal flip, no flow; the network runs
    recurrently on its own previous merged probabilities (frame 1 gets the reference ground
    truth); loss: cross-entropy on the softmax aggregation (eq. 5) of the per-object outputs.
    The paper trains with SGD (momentum 0.5, lr 1e-5); the loop here uses Adam for every method.
    """

    clip_length: int = 3
    crop: tuple[int, int] | None = None
    max_objects: int = 4
    lucid_p: float = 0.5
    flip_p: float = 0.5
    augment: str = "paper"
    name: str = "savos"

    @property
    def paste_p(self) -> float:
        """Share of clips that get a pasted second object (``augment="strong"``: 0.5)."""
        return PASTE_P if self.augment == "strong" else 0.0

    def describe(self) -> dict[str, Any]:
        return {
            "clip_length": self.clip_length,
            "crop": self.crop,
            "max_objects": self.max_objects,
            "lucid_p": self.lucid_p,
            "flip_p": self.flip_p,
            "paste_p": self.paste_p,
            "loss": "CE on softmax_aggregate (eq. 5)",
            "data": "lucid-dream clips from single frames + real clips" + (" + a pasted second object" if self.paste_p else ""),
        }

    def sampler(self, sequences: list[VideoSequence], seed: int) -> ClipSampler:
        return ClipSampler(sequences, self.clip_length, seed=seed, max_objects=self.max_objects)

    def make_clip(self, sampler: ClipSampler, step: int, index: int) -> Clip:
        clip = sampler.sample(step, index)
        rng = sampler.rng(step, 2000 + index)
        if rng.random() < self.lucid_p:
            lucid = lucid_dream_clip(clip.images[0], clip.labels[0], rng, length=self.clip_length, name=clip.name)
            if lucid.num_objects > 0:
                clip = lucid
        clip = _maybe_paste(clip, sampler, step, index, self.paste_p)
        if rng.random() < self.flip_p:
            clip = hflip(clip)
        return _crop_and_relabel(clip, self.crop, rng)

    def make_batch(self, sampler: ClipSampler, step: int, batch: int | range) -> Batch:
        return _flowless_batch([self.make_clip(sampler, step, i) for i in clip_indices(batch)])

    def loss(self, net: torch.nn.Module, batch: Batch, *, autocast: Any = None) -> tuple[torch.Tensor, dict[str, float]]:
        from ..models.blocks import softmax_aggregate

        ctx = autocast or contextlib.nullcontext
        length = batch.labels.shape[1]
        with ctx():
            ref = net.reference(batch.images[:, 0], _onehot(batch.labels[:, 0], batch.objects))
        prev = _onehot(batch.labels[:, 0], batch.objects)
        total = torch.zeros((), device=batch.images.device)
        for t in range(1, length):
            with ctx():
                logits = net(batch.images[:, t], prev, ref)
            prob = softmax_aggregate(torch.sigmoid(logits.float()) * batch.objects[:, :, None, None])
            total = total + aggregated_cross_entropy(prob, batch.labels[:, t])
            prev = prob[:, 1:].detach()
        loss = total / max(length - 1, 1)
        return loss, {"ce": float(loss.detach())}


@dataclasses.dataclass
class EmbeddingRecipe:
    """Global and instance embedding (paper Sec. 3.3 "Network Training"): clips of ``T + 1 = 4``
    frames, the first ``T`` as the support set, the last as the query; random crop, flip, rotation
    and scaling; loss ``BCE(global logit, objects mask) + lambda * CE(instance logits, labels)``
    (eq. 13, ``lambda = 1``); at most ``D = 6`` instances.

    Support sampling as at inference (the paper samples clips "to simulate the inference
    procedure", whose support set is the first frame plus TSN-sampled processed frames): the clip
    spans up to ``max_span`` frames; its first frame is the annotated one and each other support
    frame is drawn in its own of ``T - 1`` equal segments before the query
    (:class:`~vostool.train.sampling.ClipSampler` ``max_span``).

    Recurrence training (``recurrent``, the paper's "T frames annotations in total are involved
    in the recurrence training", after RGMP): only the first frame's mask is the ground truth; each
    later support frame is first predicted from the support frames before it, and its own
    (detached) soft prediction becomes its support mask; eq. 13 is averaged over the ``T``
    predicted frames. ``recurrent=False`` gives every support frame its ground truth and
    predicts the query only.

    ``augment="strong"`` (ours): half the clips also get a second object pasted from another
    training video (as :class:`SAVOSRecipe`), so the instance branch learns to separate objects
    even on a one-object dataset.
    """

    clip_length: int = 4
    crop: tuple[int, int] | None = None
    max_objects: int = 6
    lam: float = 1.0
    flip_p: float = 0.5
    rotation: float = 10.0
    scale: tuple[float, float] = (0.9, 1.1)
    max_span: int = 48
    recurrent: bool = True
    augment: str = "paper"
    name: str = "embedding"

    @property
    def paste_p(self) -> float:
        """Share of clips that get a pasted second object (``augment="strong"``: 0.5)."""
        return PASTE_P if self.augment == "strong" else 0.0

    def describe(self) -> dict[str, Any]:
        return {
            "clip_length": self.clip_length,
            "crop": self.crop,
            "max_objects": self.max_objects,
            "lambda": self.lam,
            "flip_p": self.flip_p,
            "rotation": self.rotation,
            "scale": list(self.scale),
            "max_span": self.max_span,
            "recurrent": self.recurrent,
            "paste_p": self.paste_p,
            "loss": "BCE(global) + lambda * CE(instances) (eq. 13)"
            + (", mean over the predicted support frames and the query" if self.recurrent else ""),
            "support": "first frame + one frame per segment (TSN) before the query",
        }

    def sampler(self, sequences: list[VideoSequence], seed: int) -> ClipSampler:
        return ClipSampler(sequences, self.clip_length, seed=seed, max_objects=self.max_objects, max_span=self.max_span)

    def make_clip(self, sampler: ClipSampler, step: int, index: int) -> Clip:
        clip = _maybe_paste(sampler.sample(step, index), sampler, step, index, self.paste_p)
        rng = sampler.rng(step, 2000 + index)
        if rng.random() < self.flip_p:
            clip = hflip(clip)
        clip = random_affine(clip, rng, scale=self.scale, rotation=self.rotation, shift=0.05, per_frame_jitter=0.3)
        return _crop_and_relabel(clip, self.crop, rng)

    def make_batch(self, sampler: ClipSampler, step: int, batch: int | range) -> Batch:
        return _flowless_batch([self.make_clip(sampler, step, i) for i in clip_indices(batch)])

    def frame_loss(self, out: dict[str, torch.Tensor], labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Eq. 13's two terms for one predicted frame: ``(BCE, CE)`` against ``labels (B, H, W)``."""
        import torch.nn.functional as F

        valid = labels != VOID_ID
        fg = ((labels > 0) & valid).float().unsqueeze(1)
        bce = F.binary_cross_entropy_with_logits(
            out["global_logit"].float(), fg, weight=valid.float().unsqueeze(1), reduction="sum"
        ) / valid.sum().clamp(min=1)
        return bce, F.cross_entropy(out["logits"].float(), labels, ignore_index=VOID_ID)

    def loss(self, net: torch.nn.Module, batch: Batch, *, autocast: Any = None) -> tuple[torch.Tensor, dict[str, float]]:
        ctx = autocast or contextlib.nullcontext
        t = batch.labels.shape[1] - 1

        def probs(onehot: torch.Tensor) -> torch.Tensor:  # (B, D, H, W) -> (B, 1, D + 1, H, W)
            bg = (1.0 - onehot.sum(1, keepdim=True)).clamp(min=0.0)
            return torch.cat([bg, onehot], 1).unsqueeze(1)

        if not self.recurrent:
            support = torch.cat([probs(_onehot(batch.labels[:, i], batch.objects)) for i in range(t)], 1)
            with ctx():
                out = net(batch.images[:, t], batch.images[:, :t], support)
            bce, ce = self.frame_loss(out, batch.labels[:, t])
        else:
            with ctx():
                feats = net.encode_supports(batch.images[:, :1], probs(_onehot(batch.labels[:, 0], batch.objects)))
            bce = ce = torch.zeros((), device=batch.images.device)
            for i in range(1, t + 1):
                with ctx():
                    out = net(batch.images[:, i], support=feats)  # through forward: DDP syncs the gradients
                b_i, c_i = self.frame_loss(out, batch.labels[:, i])
                bce, ce = bce + b_i / t, ce + c_i / t
                if i < t:
                    own = torch.softmax(out["logits"].float(), 1).detach()[:, 1:] * batch.objects[:, :, None, None]
                    with ctx():
                        feats = feats.cat(net.encode_supports(batch.images[:, i : i + 1], probs(own)))
        loss = bce + self.lam * ce
        return loss, {"bce": float(bce.detach()), "ce": float(ce.detach())}


@dataclasses.dataclass
class DetectionBatch:
    """OVSNet batch: ``images`` list of ``(3, H, W)``; ``targets`` per image (boxes, labels, masks, ids)."""

    images: list[torch.Tensor]
    targets: list[dict[str, torch.Tensor]]
    names: list[str]

    def to(self, device: torch.device) -> DetectionBatch:
        return DetectionBatch(
            [i.to(device) for i in self.images], [{k: v.to(device) for k, v in t.items()} for t in self.targets], self.names
        )


@dataclasses.dataclass
class OVSNetRecipe:
    """OVSNet (paper Sec. 3-4.1): each sample is a pair of frames of one video (so the batch-hard
    triplet loss sees the same object twice), flipped at random; every object with pixels in a
    frame gives a box (from its mask), label 1, its mask and an identity unique across the batch.
    Loss: the network's train-mode losses, eq. (2): detector + RPN + Re-ID triplet +
    ``REFINE_WEIGHT`` (1.3) x MGA cross-entropy."""

    clip_length: int = 2
    crop: tuple[int, int] | None = None
    max_objects: int = 8
    flip_p: float = 0.5
    name: str = "ovsnet"

    def describe(self) -> dict[str, Any]:
        return {
            "clip_length": self.clip_length,
            "crop": self.crop,
            "max_objects": self.max_objects,
            "flip_p": self.flip_p,
            "loss": "Mask R-CNN + RPN + triplet Re-ID + 1.3 x MGA CE (eq. 2)",
        }

    def sampler(self, sequences: list[VideoSequence], seed: int) -> ClipSampler:
        return ClipSampler(sequences, self.clip_length, seed=seed, max_objects=self.max_objects, max_skip=5)

    def make_batch(self, sampler: ClipSampler, step: int, batch: int | range) -> DetectionBatch:
        images: list[torch.Tensor] = []
        targets: list[dict[str, torch.Tensor]] = []
        names: list[str] = []
        for i in clip_indices(batch):
            clip = sampler.sample(step, i)
            rng = sampler.rng(step, 2000 + i)
            if rng.random() < self.flip_p:
                clip = hflip(clip)
            clip = _crop_and_relabel(clip, self.crop, rng)
            for t in range(len(clip)):
                lab = clip.labels[t]
                boxes, masks, ids = [], [], []
                for k in range(1, clip.num_objects + 1):
                    m = lab == k
                    if m.sum() < 4:
                        continue
                    ys, xs = np.nonzero(m)
                    boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
                    masks.append(m.astype(np.uint8))
                    ids.append(i * 256 + k)
                h, w = lab.shape
                images.append(images_to_tensor(clip.images[t]))
                targets.append(
                    {
                        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                        "labels": torch.ones(len(boxes), dtype=torch.int64),
                        "masks": torch.from_numpy(np.stack(masks)) if masks else torch.zeros((0, h, w), dtype=torch.uint8),
                        "ids": torch.tensor(ids, dtype=torch.int64),
                    }
                )
            names.append(clip.name)
        return DetectionBatch(images, targets, names)

    def loss(self, net: torch.nn.Module, batch: DetectionBatch, *, autocast: Any = None) -> tuple[torch.Tensor, dict[str, float]]:
        from ..models.ovsnet import REFINE_WEIGHT

        ctx = autocast or contextlib.nullcontext
        with ctx():
            losses = net(batch.images, batch.targets)
        total = sum((v.float() for k, v in losses.items() if k != "loss_refine"), torch.zeros((), device=batch.images[0].device))
        total = total + REFINE_WEIGHT * losses["loss_refine"].float()
        return total, {k: float(v.detach()) for k, v in losses.items()}


class Recipe(Protocol):
    """What the trainer needs of a method's recipe (every recipe dataclass above has it)."""

    name: str
    crop: tuple[int, int] | None

    def describe(self) -> dict[str, Any]:
        """JSON-able settings (logged and stored in the exported weights' metadata)."""

    def sampler(self, sequences: list[VideoSequence], seed: int) -> ClipSampler:
        """The deterministic clip sampler of this recipe."""

    def make_batch(self, sampler: ClipSampler, step: int, batch: int | range) -> Batch | DetectionBatch:
        """The ``batch`` samples of training step ``step`` (a pure function of the sampler's seed and
        ``step``), or those of the given indices of it (:func:`clip_indices`)."""

    def loss(self, net: torch.nn.Module, batch: Any, *, autocast: Any = None) -> tuple[torch.Tensor, dict[str, float]]:
        """The training loss of ``batch`` and its named parts."""


RECIPES: dict[str, type[Recipe]] = {r.name: r for r in (AGSSRecipe, SAVOSRecipe, EmbeddingRecipe, OVSNetRecipe)}
"""Method name -> its training recipe: the one list of trainable methods."""


def get_recipe(method: str, **kwargs: Any) -> Recipe:
    """The training recipe of ``method``; keyword arguments a recipe does not have (or None) are
    ignored. InputError for methods without one."""
    if method not in RECIPES:
        raise InputError(f"training is implemented for {', '.join(RECIPES)} only; no recipe for method {method!r}")
    cls = RECIPES[method]
    fields = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: v for k, v in kwargs.items() if v is not None and k in fields})
