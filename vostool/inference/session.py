"""The per-video inference session: all state of one video lives here, never in a network.

One :class:`Session` per video. Each :meth:`Session.step` takes a frame (and optionally masks
given on it) and returns the frame's object ids and probabilities at the input resolution:

    frame -> resize to the internal size -> flow (current -> previous) -> backward warp of the
    previous probabilities -> method.predict -> (masks given? merge + method.memorize) ->
    method.update -> upsample to the input size -> argmax -> object ids

The state (object slots, previous probabilities, previous prepared frame for flow, the method's
own state) can be saved with :meth:`Session.state_dict` and restored with
:meth:`Session.load_state_dict`, which is how an interrupted run resumes with identical results.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError
from ..flow import FlowEstimator, backward_warp
from ..io.masks import IndexMask, ids_from_array
from ..io.video import VideoFrame
from ..models.base import VOSMethod
from ..options import PRECISION_NAMES, RunOptions
from .device import resolve_device
from .objects import ObjectManager
from .timing import StageTimer

PRECISIONS = dict(zip(PRECISION_NAMES, (None, torch.bfloat16, torch.float16)))
"""Precision name -> autocast dtype (None: no autocast)."""


def internal_size(width: int, height: int, size: int | None) -> tuple[int, int]:
    """``(W, H)`` at which the method runs: shorter side ``size`` (aspect kept), or unchanged
    when ``size`` is None or not below the input's shorter side (never upsampled)."""
    if not size or size >= min(width, height):
        return width, height
    scale = size / min(width, height)
    return max(1, int(round(width * scale))), max(1, int(round(height * scale)))


def channel_argmax(prob: torch.Tensor) -> torch.Tensor:
    """``(C, H, W)`` -> ``(H, W)`` uint8 index of the largest channel (first one on ties).

    A running comparison over channels: on the CPU it is ~10x faster than ``argmax(0)``,
    whose reduction runs across the strided channel axis.
    """
    best = prob[0].clone()
    idx = torch.zeros(prob.shape[1:], dtype=torch.uint8, device=prob.device)
    for c in range(1, prob.shape[0]):
        better = prob[c] > best
        idx.masked_fill_(better, c)
        torch.maximum(best, prob[c], out=best)
    return idx


@dataclass
class StepResult:
    """What one step produced.

    Attributes:
        index: frame index (0-based).
        ids: ``(H, W)`` uint8 object ids at the input resolution.
        prob: ``(K + 1, H, W)`` float32 probabilities over [background, objects in
            ``object_ids`` order] at the input resolution, on the session's device.
        object_ids: the object id of each slot 1..K.
        name: the frame's name (file stem), when it was given.
        frame: the ``(H, W, 3)`` uint8 RGB input frame (the array passed in, not a copy).
        seconds: wall-clock seconds the step took (input to result on the host).
        pts: the frame's presentation time in seconds, when it came as a VideoFrame.
    """

    index: int
    ids: np.ndarray
    prob: torch.Tensor
    object_ids: list[int] = field(default_factory=list)
    name: str | None = None
    frame: np.ndarray | None = None
    seconds: float = 0.0
    pts: float | None = None


class Session:
    """Per-video inference state and the frame loop (:meth:`propagate`, one :meth:`step` per frame).

    Args:
        method: the segmentation method (stateless network + per-frame rule), already on the
            options' device (:func:`vostool.inference.builder.create_session` puts it there).
        flow: flow estimator; required when ``method.uses_flow``.
        options: the run's options; the session uses ``device``, ``size`` (internal resolution,
            shorter side), ``precision`` (autocast around the network) and ``resize_mask``
            (scale masks of another size to the video instead of failing). Default: the
            defaults on the CPU.
        weights: what weights the method loaded (for reports; None for weightless methods).
        timer: stage timer (a new one is made if None).
    """

    def __init__(
        self,
        method: VOSMethod,
        flow: FlowEstimator | None = None,
        options: RunOptions | None = None,
        *,
        weights: dict[str, Any] | None = None,
        timer: StageTimer | None = None,
    ) -> None:
        options = options if options is not None else RunOptions(method=method.name, device="cpu")
        if method.uses_flow and flow is None:
            raise InputError(f"method {method.name!r} needs an optical-flow backend (--flow)")
        if options.precision not in PRECISIONS:
            raise InputError(f"unknown precision {options.precision!r}; choose one of: {', '.join(PRECISION_NAMES)}")
        self.method = method
        self.flow_estimator = flow
        self.options = options
        self.device = resolve_device(options.device)
        self.weights = weights
        self.reset()
        if timer is not None:
            self.timer = timer

    @property
    def size(self) -> int | None:
        """Internal resolution (shorter side), or None for the input resolution."""
        return self.options.size

    @property
    def precision(self) -> str:
        return self.options.precision

    def describe(self) -> dict[str, Any]:
        """What runs: method, flow, weights of both, parameter count (for reports)."""
        return {
            "method": self.method.name,
            "flow": self.flow_estimator.name if self.flow_estimator is not None else None,
            "weights": self.weights,
            "flow_weights": self.flow_estimator.weights if self.flow_estimator is not None else None,
            "num_parameters": self.method.num_parameters,
        }

    def reset(self) -> None:
        """Forget the current video (start a new one, with a fresh stage timer)."""
        self.timer = StageTimer(self.device, self.method.stages)
        self.index = 0
        self.objects = ObjectManager()
        self.state = self.method.init_state()
        self.prev_prob: torch.Tensor | None = None
        self.prev_prep: torch.Tensor | None = None
        self.input_size: tuple[int, int] | None = None

    # ------------------------------------------------------------------ helpers
    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        dtype = PRECISIONS[self.precision]
        if dtype is None or self.method.net is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=dtype)

    def _image(self, rgb: np.ndarray) -> torch.Tensor:
        """``(H, W, 3)`` uint8 -> ``(1, 3, h, w)`` float32 in [0, 1] at the internal size."""
        t = torch.from_numpy(np.ascontiguousarray(rgb)).to(self.device, non_blocking=True)
        img = t.permute(2, 0, 1).unsqueeze(0).float().div_(255.0)
        w, h = internal_size(rgb.shape[1], rgb.shape[0], self.size)
        if (h, w) != tuple(img.shape[-2:]):
            img = F.interpolate(img, size=(h, w), mode="bilinear", align_corners=False, antialias=True).clamp_(0.0, 1.0)
        return img

    def _mask_ids(self, mask: np.ndarray | IndexMask, frame_shape: tuple[int, int]) -> np.ndarray:
        """The ``(H, W)`` uint8 ids of a given mask at the input size (checked, scaled with ``resize_mask``)."""
        m = mask if isinstance(mask, IndexMask) else ids_from_array(mask, what=f"mask for frame {self.index}")
        ids = m.ids
        if ids.shape != frame_shape:
            if not self.options.resize_mask:
                raise InputError(
                    f"mask {m.source or f'for frame {self.index}'} is {ids.shape[1]}x{ids.shape[0]} but the video is "
                    f"{frame_shape[1]}x{frame_shape[0]}; pass --resize-mask to scale the mask to the video"
                )
            import cv2

            ids = cv2.resize(ids, (frame_shape[1], frame_shape[0]), interpolation=cv2.INTER_NEAREST)
        return ids

    def _impose(self, prob: torch.Tensor, ids: torch.Tensor, present: list[int]) -> torch.Tensor:
        """Make the objects ``present`` in the given ``(H, W)`` ids exactly the given mask, in place.

        A given object's probability becomes 1 on its pixels and 0 elsewhere (a correction also
        removes its drift); on the pixels it leaves, the other objects' probabilities and the
        background are renormalised; on every given pixel the other channels are 0. Objects the
        mask does not hold keep their prediction except where the mask gives the pixel to another.
        """
        slots = [self.objects.slot(oid) for oid in present]
        prob[slots] = 0.0
        total = prob.sum(0)
        prob.div_(total.clamp_min(1e-6))
        prob[0].masked_fill_(total <= 1e-6, 1.0)
        prob[:, ids > 0] = 0.0
        for oid, slot in zip(present, slots):
            prob[slot].masked_fill_(ids == oid, 1.0)
        return prob

    def _given_prob(
        self, ids: np.ndarray, predicted: torch.Tensor | None, hw: tuple[int, int]
    ) -> tuple[torch.Tensor, list[int], list[int]]:
        """Merge masks given on this frame with the prediction for the other objects (see :meth:`_impose`).

        Returns:
            ``(prob (K + 1, h, w), slots new on this frame, ids of the given objects)``.
        """
        present = [int(v) for v in np.unique(ids) if v != 0]
        new_slots = [self.objects.add(i) for i in present if i not in self.objects.ids]
        k = self.objects.num_objects
        ids_t = torch.from_numpy(ids).to(self.device)
        if tuple(ids_t.shape) != hw:
            ids_t = F.interpolate(ids_t[None, None].float(), size=hw, mode="nearest")[0, 0].to(torch.uint8)
        prob = torch.zeros((k + 1, *hw), device=self.device)
        if predicted is not None:
            prob[: predicted.shape[0]] = predicted.float()
        return self._impose(prob, ids_t, present), new_slots, present

    # ------------------------------------------------------------------ the step
    @torch.inference_mode()
    def step(self, frame: np.ndarray, mask: np.ndarray | IndexMask | None = None, *, name: str | None = None) -> StepResult:
        """Segment the next frame.

        Args:
            frame: ``(H, W, 3)`` uint8 RGB.
            mask: object ids ``(H, W)`` (0 = background, 255 = void) given on this frame: the
                first frame needs one; later ones add objects or correct existing ones. Each
                object in it is exactly the given mask on this frame (the result's ids and
                probabilities at the input size); objects it does not hold keep their prediction.
            name: frame name for timing reports.

        Returns:
            :class:`StepResult` at the input resolution.
        """
        started = time.perf_counter()
        t = self.index
        timer = self.timer
        timer.frame = t
        timer.start()
        if name is not None:
            timer.names[t] = name
        hw_in = (int(frame.shape[0]), int(frame.shape[1]))
        if self.input_size is None:
            self.input_size = hw_in
        elif hw_in != self.input_size:
            raise InputError(f"frame {t} is {hw_in[1]}x{hw_in[0]} but earlier frames are {self.input_size[1]}x{self.input_size[0]}")
        if t == 0 and mask is None:
            raise InputError("the first frame needs a mask (give --mask for frame 0)")
        image = self._image(frame)
        hw = (int(image.shape[-2]), int(image.shape[-1]))
        k = self.objects.num_objects
        prep = None

        prob: torch.Tensor | None = None
        if k > 0:
            if self.method.uses_flow and self.prev_prob is not None:
                assert self.flow_estimator is not None
                with timer.stage("flow"):
                    prep = self.flow_estimator.prepare(image)
                    fl = self.flow_estimator.flow(prep, self.prev_prep)
                with timer.stage("warp"):
                    warped = backward_warp(self.prev_prob[1:], fl.to(self.device))
            else:
                warped = torch.zeros((k, *hw), device=self.device)
            with self._autocast():
                prob = self.method.predict(self.state, image, warped, stage=timer.stage).float()

        given: list[int] = []
        if mask is not None:
            ids = self._mask_ids(mask, hw_in)
            if not ids.any() and k == 0:
                raise InputError("the first mask has no object: every pixel is background")
            prob, new_slots, given = self._given_prob(ids, prob, hw)
            with self._autocast():
                self.method.memorize(self.state, image, prob, new_slots)
        assert prob is not None
        with self._autocast():
            self.method.update(self.state, image, prob)

        if self.method.uses_flow and self.flow_estimator is not None:
            if prep is None:
                with timer.stage("flow"):
                    prep = self.flow_estimator.prepare(image)
            self.prev_prep = prep
        self.prev_prob = prob
        self.index += 1

        out = prob
        if hw != hw_in:
            out = F.interpolate(prob[None], size=hw_in, mode="bilinear", align_corners=False)[0]
            if given:  # the given objects come back exactly as given, at the input size
                out = self._impose(out, torch.from_numpy(ids).to(self.device), given)
        slots = channel_argmax(out).cpu().numpy()
        ids = self.objects.slot_to_id_lut()[slots]
        return StepResult(t, ids, out, list(self.objects.ids), name, frame, time.perf_counter() - started)

    def propagate(self, frames: Iterable[np.ndarray | VideoFrame], masks: Mapping[int, np.ndarray | IndexMask]) -> Iterator[StepResult]:
        """The frame loop: a generator that segments ``frames`` in order and yields one
        :class:`StepResult` per frame. Every user of vostool (writing an output folder, the
        benchmark, speed sweeps, training validation) consumes this one loop.

        Args:
            frames: the frames from :attr:`index` on: ``(H, W, 3)`` uint8 RGB arrays, or
                :class:`~vostool.io.video.VideoFrame` items (their names go to the timing report).
            masks: frame index -> masks given on that frame (frame 0 needs one). Indices count
                from the start of the video, so a session restored by :meth:`load_state_dict`
                continues with the masks of the frames still to come.
        """
        for f in frames:
            if isinstance(f, VideoFrame):
                result = self.step(f.rgb, masks.get(self.index), name=f.name)
                result.pts = f.pts
                yield result
            else:
                yield self.step(f, masks.get(self.index))

    # ------------------------------------------------------------------ resume
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly from the next frame, as plain data (tensors moved
        to the CPU; loadable with ``torch.load(weights_only=True)``)."""

        def cpu(v: Any) -> Any:
            if isinstance(v, torch.Tensor):
                return v.detach().cpu().clone()
            if isinstance(v, dict):
                return {k: cpu(x) for k, x in v.items()}
            if isinstance(v, (list, tuple)):
                return [cpu(x) for x in v]
            return v

        return cpu(
            {
                "index": self.index,
                "object_ids": list(self.objects.ids),
                "prev_prob": self.prev_prob,
                "prev_prep": self.prev_prep,
                "input_size": list(self.input_size) if self.input_size else None,
                "method_state": self.state.to_dict(),
            }
        )

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` (tensors go back to the session's device)."""

        def dev(v: Any, device: torch.device) -> Any:
            if isinstance(v, torch.Tensor):
                return v.to(device)
            if isinstance(v, dict):
                return {k: dev(x, device) for k, x in v.items()}
            if isinstance(v, list):
                return [dev(x, device) for x in v]
            return v

        self.index = int(sd["index"])
        self.objects = ObjectManager(list(sd["object_ids"]))
        self.prev_prob = dev(sd["prev_prob"], self.device)
        flow_dev = self.flow_estimator.prep_device if self.flow_estimator is not None else self.device
        self.prev_prep = dev(sd["prev_prep"], flow_dev) if sd.get("prev_prep") is not None else None
        self.input_size = tuple(sd["input_size"]) if sd.get("input_size") else None  # type: ignore[assignment]
        self.state = self.method.load_state(dev(sd["method_state"], self.device))
