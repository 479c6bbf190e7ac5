"""The per-video inference session: all state of one video lives here, never in a network.

One :class:`Session` per video. Each :meth:`Session.step` takes a frame (and optionally masks
given on it) and returns the frame's object ids and probabilities at the input resolution:

    frame -> resize to the internal size -> flow (current -> previous) -> backward warp of the
    previous probabilities -> method.predict -> (masks given? merge + method.memorize) ->
    method.update -> upsample to the input size -> argmax -> object ids

The state (object slots, previous probabilities, previous prepared frame for flow, the method's
own state) can be saved with :meth:`Session.state_dict` and restored with
:meth:`Session.load_state_dict`, which is how an interrupted run resumes with identical results.

The step runs on one of two kinds of arrays, through the same code: torch tensors on the
session's device (:class:`~vostool.inference.torch_ops.TorchOps`: every method with a network,
RAFT, CUDA / MPS), or numpy arrays on the host (:class:`~vostool.inference.numpy_ops.NumpyOps`)
when the method is weightless and the flow is OpenCV's on the CPU: the frames, DIS flow,
``cv2.remap`` warp and aggregation then stay the uint8 / float32 arrays OpenCV gives, and torch
is never imported (it would take longer than the whole run of a short clip).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InputError
from ..flow import FlowEstimator
from ..io.masks import IndexMask, ids_from_array
from ..io.video import VideoFrame
from ..models.base import VOSMethod
from ..options import PRECISION_NAMES, RUNTIME_NAMES, RunOptions
from .ahead import Ahead
from .device import device_type, resolve_device
from .numpy_ops import resize_rgb
from .objects import ObjectManager
from .timing import StageTimer

ARRAY_KINDS = ("auto", "numpy", "torch")
"""What a session computes on: ``auto`` (numpy when :func:`numpy_capable`, else torch)."""


def numpy_capable(method: VOSMethod, flow: FlowEstimator | None, options: RunOptions) -> bool:
    """Whether a session can run on numpy arrays: a weightless method, OpenCV flow (or none), the CPU."""
    return method.net is None and (flow is None or flow.host_arrays) and device_type(options.device) in ("auto", "cpu")


def internal_size(width: int, height: int, size: int | None) -> tuple[int, int]:
    """``(W, H)`` at which the method runs: shorter side ``size`` (aspect kept), or unchanged
    when ``size`` is None or not below the input's shorter side (never upsampled)."""
    if not size or size >= min(width, height):
        return width, height
    scale = size / min(width, height)
    return max(1, int(round(width * scale))), max(1, int(round(height * scale)))


@dataclass
class FrameInputs:
    """What a frame needs before its probabilities, computed from the frames alone
    (:meth:`Session.prepare`).

    Attributes:
        size: ``(H, W)`` of the input frame.
        image: the frame at the internal size, in the session's arrays.
        prep: the flow estimator's input for this frame (None without flow).
        flow: the flow from this frame to ``previous`` (None for a first frame).
        previous: the flow input of the frame before, the flow was computed against.
    """

    size: tuple[int, int]
    image: Any
    prep: Any = None
    flow: Any = None
    previous: Any = None


def _prepared(session: Session, frames: Iterable[np.ndarray | VideoFrame]) -> Iterator[tuple[Any, FrameInputs]]:
    """``(frame, Session.prepare(frame, previous flow input))`` for each of ``frames`` from the
    session's next frame on (run ahead of the loop in a thread by :meth:`Session.propagate`)."""
    previous = session.prev_prep if session.prev_prob is not None else None
    index = session.index
    for f in frames:
        inputs = session.prepare(f.rgb if isinstance(f, VideoFrame) else f, previous, index, image=session.arrays.kind == "numpy")
        previous, index = inputs.prep, index + 1
        yield f, inputs


@dataclass
class StepResult:
    """What one step produced.

    Attributes:
        index: frame index (0-based).
        ids: ``(H, W)`` uint8 object ids at the input resolution (a property: a CUDA session
            hands them over while their copy to the host is in flight, ``host_ids``).
        prob: ``(K + 1, H, W)`` float32 probabilities over [background, objects in
            ``object_ids`` order] at the input resolution: a tensor on the session's device, or
            a numpy array for a numpy session (:attr:`Session.arrays`).
        object_ids: the object id of each slot 1..K.
        name: the frame's name (file stem), when it was given.
        frame: the ``(H, W, 3)`` uint8 RGB input frame (the array passed in, not a copy).
        seconds: wall-clock seconds the step took on the host (on CUDA the GPU may still be
            working on it: time a CUDA run by the wall clock around reading ``ids``).
        pts: the frame's presentation time in seconds, when it came as a VideoFrame.
    """

    index: int
    host_ids: Any
    prob: Any
    object_ids: list[int] = field(default_factory=list)
    name: str | None = None
    frame: np.ndarray | None = None
    seconds: float = 0.0
    pts: float | None = None

    @property
    def ids(self) -> np.ndarray:
        """``(H, W)`` uint8 object ids (on CUDA, reading them waits for their copy to the host)."""
        if not isinstance(self.host_ids, np.ndarray):
            self.host_ids = self.host_ids.get()
        return self.host_ids


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
        arrays: ``auto`` (numpy arrays when :func:`numpy_capable`, else torch tensors), ``numpy``
            or ``torch`` (see the module docstring).
    """

    def __init__(
        self,
        method: VOSMethod,
        flow: FlowEstimator | None = None,
        options: RunOptions | None = None,
        *,
        weights: dict[str, Any] | None = None,
        timer: StageTimer | None = None,
        arrays: str = "auto",
    ) -> None:
        options = options if options is not None else RunOptions(method=method.name, device="cpu")
        if method.uses_flow and flow is None:
            raise InputError(f"method {method.name!r} needs an optical-flow backend (--flow)")
        if options.precision not in PRECISION_NAMES:
            raise InputError(f"unknown precision {options.precision!r}; choose one of: {', '.join(PRECISION_NAMES)}")
        if arrays not in ARRAY_KINDS or (arrays == "numpy" and not numpy_capable(method, flow, options)):
            raise ValueError(f"arrays={arrays!r}: numpy arrays need a weightless method, OpenCV flow and the CPU")
        self.method = method
        self.flow_estimator = flow
        self.options = options
        if arrays == "numpy" or (arrays == "auto" and numpy_capable(method, flow, options)):
            from .numpy_ops import NumpyOps

            self.arrays: Any = NumpyOps()
        else:
            from .torch_ops import TorchOps

            self.arrays = TorchOps(resolve_device(options.device))
        self.device = self.arrays.device
        self.accelerator = self._accelerator()
        self.weights = weights
        self.reset()
        if timer is not None:
            self.timer = timer

    def _accelerator(self) -> Any:
        """The :class:`~vostool.inference.blocks.Accelerator` of the network, or None: its blocks
        compiled (``options.compile``), run by ONNX Runtime (fp32 on the CPU) or captured as CUDA
        graphs (CUDA), as ``options.runtime`` says."""
        runtime = self.options.runtime
        if runtime not in RUNTIME_NAMES:
            raise InputError(f"unknown runtime {runtime!r}; choose one of: {', '.join(RUNTIME_NAMES)}")
        if self.arrays.kind != "torch" or self.method.net is None:
            return None
        from . import blocks

        if self.options.compile:
            if runtime == "onnxruntime":
                raise InputError("--compile and --runtime onnxruntime exclude each other; choose one")
            return blocks.Accelerator(self.method.net, "compile")
        if runtime == "torch":
            return None
        on_cuda = device_type(self.device) == "cuda"
        if runtime == "cuda-graphs" and not on_cuda:
            raise InputError("--runtime cuda-graphs needs a CUDA device; use --device cuda or another --runtime")
        if runtime in ("cuda-graphs", "auto") and on_cuda:
            return blocks.Accelerator(self.method.net, "cuda-graphs")
        usable = device_type(self.device) == "cpu" and self.precision == "fp32"
        if runtime == "onnxruntime":
            if not blocks.available():
                raise InputError("--runtime onnxruntime needs ONNX Runtime: pip install 'vostool[ort]' (onnxruntime and onnx)")
            if not usable:
                raise InputError("--runtime onnxruntime runs fp32 networks on the CPU; use --device cpu --precision fp32")
        return blocks.Accelerator(self.method.net) if usable and blocks.available() else None

    @property
    def size(self) -> int | None:
        """Internal resolution (shorter side), or None for the input resolution."""
        return self.options.size

    @property
    def precision(self) -> str:
        return self.options.precision

    def describe(self) -> dict[str, Any]:
        """What runs: method, flow, weights of both, parameter count, array kind (for reports)."""
        acc = self.accelerator
        return {
            "method": self.method.name,
            "arrays": self.arrays.kind,
            "runtime": acc.describe() if acc is not None else "torch",
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
        self.prev_prob: Any = None
        self.prev_prep: Any = None
        self.input_size: tuple[int, int] | None = None

    # ------------------------------------------------------------------ helpers
    def _network(self) -> Any:
        """Autocast to the run's precision around the network (nothing for weightless methods)."""
        return self.arrays.autocast(self.precision if self.method.net is not None else "fp32")

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

    def _impose(self, prob: Any, ids: Any, present: list[int]) -> Any:
        """Make the objects ``present`` in the given ``(H, W)`` ids exactly the given mask, in place.

        A given object's probability becomes 1 on its pixels and 0 elsewhere (a correction also
        removes its drift); on the pixels it leaves, the other objects' probabilities and the
        background are renormalised; on every given pixel the other channels are 0. Objects the
        mask does not hold keep their prediction except where the mask gives the pixel to another.
        Written with the operations numpy arrays and torch tensors share (both sessions' arrays).
        """
        slots = [self.objects.slot(oid) for oid in present]
        prob[slots] = 0.0
        total = prob.sum(0)
        empty = total <= 1e-6
        prob /= self.arrays.clip_(total, 1e-6, float("inf"))
        prob[0][empty] = 1.0
        prob[:, ids > 0] = 0.0
        for oid, slot in zip(present, slots):
            prob[slot][ids == oid] = 1.0
        return prob

    def _given_prob(self, ids: np.ndarray, predicted: Any, hw: tuple[int, int]) -> tuple[Any, list[int], list[int]]:
        """Merge masks given on this frame with the prediction for the other objects (see :meth:`_impose`).

        Returns:
            ``(prob (K + 1, h, w), slots new on this frame, ids of the given objects)``.
        """
        present = [int(v) for v in np.unique(ids) if v != 0]
        new_slots = [self.objects.add(i) for i in present if i not in self.objects.ids]
        k = self.objects.num_objects
        ids_t = self.arrays.ids(ids, hw)
        prob = self.arrays.zeros((k + 1, *hw))
        if predicted is not None:
            prob[: predicted.shape[0]] = predicted
        return self._impose(prob, ids_t, present), new_slots, present

    # ------------------------------------------------------------------ the step
    def prepare(self, frame: np.ndarray, previous: Any = None, index: int | None = None, *, image: bool = True) -> FrameInputs:
        """What ``frame`` needs before its probabilities, from the frames alone: the internal-size
        image, the flow input, and the flow to the ``previous`` flow input (when given).

        OpenCV flow is computed from the frame on the host (resized there), whatever the
        session's device, so a CUDA session never brings frames back for it. :meth:`propagate`
        computes the host part a few frames ahead in a thread (``image=False``: the image on
        the device is made by the loop); :meth:`step` computes it all when not given.
        ``index`` is the frame's index for the timing report (default: the next frame).
        """
        hw_in = (int(frame.shape[0]), int(frame.shape[1]))
        w, h = internal_size(hw_in[1], hw_in[0], self.size)
        est = self.flow_estimator if self.method.uses_flow else None
        host = resize_rgb(frame, (h, w)) if self.arrays.kind == "numpy" or (est is not None and est.host_arrays) else None
        img = host if self.arrays.kind == "numpy" else (self.arrays.image(frame, (h, w)) if image else None)
        if est is None:
            return FrameInputs(hw_in, img)
        with self.timer.stage("flow", self.index if index is None else index):
            prep = est.prepare(host if est.host_arrays else img)
            fl = None if previous is None or previous.shape != prep.shape else est.flow(prep, previous)
        return FrameInputs(hw_in, img, prep, fl, previous)

    def step(
        self, frame: np.ndarray, mask: np.ndarray | IndexMask | None = None, *, name: str | None = None, inputs: FrameInputs | None = None
    ) -> StepResult:
        """Segment the next frame.

        Args:
            frame: ``(H, W, 3)`` uint8 RGB.
            mask: object ids ``(H, W)`` (0 = background, 255 = void) given on this frame: the
                first frame needs one; later ones add objects or correct existing ones. Each
                object in it is exactly the given mask on this frame (the result's ids and
                probabilities at the input size); objects it does not hold keep their prediction.
            name: frame name for timing reports.
            inputs: :meth:`prepare` of this frame, if already computed (its flow is used only
                when it was computed against this session's previous frame).

        Returns:
            :class:`StepResult` at the input resolution.
        """
        with self.arrays.inference():
            return self._step(frame, mask, name, inputs)

    def _step(self, frame: np.ndarray, mask: np.ndarray | IndexMask | None, name: str | None, inputs: FrameInputs | None) -> StepResult:
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
        if inputs is None or inputs.size != hw_in:
            inputs = self.prepare(frame, self.prev_prep if self.prev_prob is not None else None)
        if inputs.image is None:
            w, h = internal_size(hw_in[1], hw_in[0], self.size)
            inputs.image = self.arrays.image(frame, (h, w))
        image = inputs.image
        hw = (int(image.shape[-2]), int(image.shape[-1])) if self.arrays.kind == "torch" else image.shape[:2]
        k = self.objects.num_objects

        acc = self.accelerator
        watch = acc.watch() if acc is not None and not acc.done and k > 0 else contextlib.nullcontext()
        with watch:  # the first frame the network runs on shows the accelerator which blocks to move
            prob, given, given_ids = self._network_step(inputs, mask, hw_in, hw, k)

        if inputs.prep is not None:
            self.prev_prep = inputs.prep
        self.prev_prob = prob
        self.index += 1

        out = prob
        if hw != hw_in:
            out = self.arrays.resize(prob, hw_in)
            if given:  # the given objects come back exactly as given, at the input size
                out = self._impose(out, self.arrays.ids(given_ids, hw_in), given)
        slots = self.arrays.argmax(out)  # on CUDA still on its way to the host: StepResult.ids waits for it
        lut = self.objects.slot_to_id_lut()
        if not np.array_equal(lut, np.arange(len(lut))):
            slots = slots.map(lut.__getitem__) if hasattr(slots, "map") else lut[slots]
        return StepResult(t, slots, out, list(self.objects.ids), name, frame, time.perf_counter() - started)

    def _network_step(
        self, inputs: FrameInputs, mask: np.ndarray | IndexMask | None, hw_in: tuple[int, int], hw: tuple[int, int], k: int
    ) -> tuple[Any, list[int], np.ndarray | None]:
        """Warp, predict, merge given masks (memorize), update: the frame's probabilities at
        ``hw``, the ids of the objects given on it and the given ids at the input size."""
        timer, image = self.timer, inputs.image
        prob: Any = None
        ids = None
        if k > 0:
            if self.method.uses_flow and self.prev_prob is not None:
                fl = inputs.flow if inputs.previous is self.prev_prep else None
                if fl is None:
                    assert self.flow_estimator is not None
                    with timer.stage("flow"):
                        fl = self.flow_estimator.flow(inputs.prep, self.prev_prep)
                with timer.stage("warp"):
                    warped = self.arrays.warp(self.prev_prob[1:], fl)
            else:
                warped = self.arrays.zeros((k, *hw))
            with self._network():
                prob = self.arrays.float32(self.method.predict(self.state, image, warped, stage=timer.stage))

        given: list[int] = []
        if mask is not None:
            ids = self._mask_ids(mask, hw_in)
            if not ids.any() and k == 0:
                raise InputError("the first mask has no object: every pixel is background")
            prob, new_slots, given = self._given_prob(ids, prob, hw)
            with self._network():
                self.method.memorize(self.state, image, prob, new_slots)
        assert prob is not None
        with self._network():
            self.method.update(self.state, image, prob)
        return prob, given, ids

    def propagate(self, frames: Iterable[np.ndarray | VideoFrame], masks: Mapping[int, np.ndarray | IndexMask]) -> Iterator[StepResult]:
        """The frame loop: a generator that segments ``frames`` in order and yields one
        :class:`StepResult` per frame. Every user of vostool (writing an output folder, the
        benchmark, speed sweeps, training validation) consumes this one loop.

        With OpenCV flow, each frame's flow (:meth:`prepare`, which needs the frames only) is
        computed a few frames ahead in a thread, so it overlaps the warp, network and
        aggregation of the frame before (OpenCV releases the GIL).

        Args:
            frames: the frames from :attr:`index` on: ``(H, W, 3)`` uint8 RGB arrays, or
                :class:`~vostool.io.video.VideoFrame` items (their names go to the timing report).
            masks: frame index -> masks given on that frame (frame 0 needs one). Indices count
                from the start of the video, so a session restored by :meth:`load_state_dict`
                continues with the masks of the frames still to come.
        """
        est = self.flow_estimator if self.method.uses_flow else None
        use = est is not None and (self.arrays.kind == "numpy" or est.host_arrays)
        ahead = Ahead(_prepared(self, frames), depth=3, name="vostool-flow") if use else None
        try:
            for f, inputs in ahead if ahead is not None else ((f, None) for f in frames):
                if isinstance(f, VideoFrame):
                    result = self.step(f.rgb, masks.get(self.index), name=f.name, inputs=inputs)
                    result.pts = f.pts
                    yield result
                else:
                    yield self.step(f, masks.get(self.index), inputs=inputs)
        finally:
            if ahead is not None:
                ahead.close()

    # ------------------------------------------------------------------ resume
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly from the next frame, as plain data: copies of the
        arrays on the host (CPU tensors of a torch session, loadable with
        ``torch.load(weights_only=True)``; numpy arrays of a numpy session)."""
        return _map_leaves(
            {
                "index": self.index,
                "object_ids": list(self.objects.ids),
                "prev_prob": self.prev_prob,
                "prev_prep": self.prev_prep,
                "input_size": list(self.input_size) if self.input_size else None,
                "method_state": self.state.to_dict(),
            },
            self.arrays.to_host,
        )

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` (arrays go back to the session's device)."""
        put = self.arrays.from_host
        self.index = int(sd["index"])
        self.objects = ObjectManager(list(sd["object_ids"]))
        self.prev_prob = _map_leaves(sd["prev_prob"], put)
        est = self.flow_estimator
        if est is not None and est.host_arrays:  # OpenCV's flow input stays a host array
            self.prev_prep = _map_leaves(sd.get("prev_prep"), lambda v: np.asarray(v) if hasattr(v, "__array__") else v)
        else:
            self.prev_prep = _map_leaves(sd.get("prev_prep"), lambda v: put(v, est.prep_device if est is not None else None))
        self.input_size = tuple(sd["input_size"]) if sd.get("input_size") else None  # type: ignore[assignment]
        self.state = self.method.load_state(_map_leaves(sd["method_state"], put))


def _map_leaves(v: Any, fn: Callable[[Any], Any]) -> Any:
    """``fn`` applied to every leaf of nested dicts / lists / tuples (tuples become lists)."""
    if isinstance(v, dict):
        return {k: _map_leaves(x, fn) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_map_leaves(x, fn) for x in v]
    return fn(v)
