"""The public Python API; the CLI is a thin shell over it.

    import vostool
    summary = vostool.segment("clip.mp4", "f0.png", "out/", method="flow")

    session = vostool.create_session("flow", flow="dis")
    for t, frame in enumerate(frames):                  # (H, W, 3) uint8 RGB
        result = session.step(frame, mask=first_mask if t == 0 else None)
        result.ids                                       # (H, W) uint8 object ids
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from .errors import InputError, WeightsError
from .flow import FLOW_NAMES, FlowEstimator, create_flow
from .inference.engine import RunConfig, run_video
from .inference.session import PRECISIONS, Session, StepResult
from .io.masks import IndexMask, read_mask
from .io.outputs import OutputOptions
from .io.video import IMAGE_SUFFIXES, VideoSource, natural_key, open_video
from .models import VOSMethod, create_method, method_info

MaskSpec = str | os.PathLike[str] | IndexMask


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` -> CUDA if available, else MPS, else CPU; checks that the asked device exists."""
    name = str(device)
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise InputError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"device {name} asked for but CUDA is not available here; use --device cpu or auto")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InputError(f"device {name} does not exist: {torch.cuda.device_count()} CUDA device(s) found")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise InputError("device mps asked for but MPS is not available here; use --device cpu or auto")
    return dev


def _arch_from_file(path: Path) -> dict[str, Any]:
    """Builder kwargs stored in a safetensors file's metadata under ``arch`` (JSON), if any."""
    if path.suffix != ".safetensors":
        return {}
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    return json.loads(meta["arch"]) if "arch" in meta else {}


def load_method(name: str, *, weights: str | None = None, offline: bool | None = None, **kwargs: Any) -> tuple[VOSMethod, dict[str, Any] | None]:
    """Build method ``name`` and load its weights.

    Args:
        name: registered method name.
        weights: None (the manifest's default for the method: cache, then download), an entry
            name, a file path, or ``"random"`` (random initialisation, for speed measurements only).
        offline: never download.
        **kwargs: builder keyword arguments (None values ignored).

    Returns:
        ``(method, weights_info)``; ``weights_info`` is None for weightless methods.

    Raises:
        WeightsError: no weights available (the message says how to get or train them).
    """
    info = method_info(name)
    if not info.needs_weights:
        return create_method(name, **kwargs), None
    if weights == "random":
        return create_method(name, **kwargs), {"name": "random", "note": "random initialisation: for speed measurements only, the masks are meaningless"}
    from .weights import load_into, resolve_weights

    resolved = resolve_weights(name, weights, offline=offline)
    path = Path(resolved.path)
    arch = {**dict(getattr(resolved, "arch", None) or {}), **_arch_from_file(path)}
    method = create_method(name, **{**arch, **{k: v for k, v in kwargs.items() if v is not None}})
    try:
        load_into(method.net, resolved.state_dict())
    except (RuntimeError, ValueError, KeyError) as exc:
        raise WeightsError(f"weights {path} do not fit method {name!r}: {str(exc).splitlines()[0][:200]}") from None
    return method, resolved.describe()


def create_session(
    method: str | VOSMethod = "flow",
    *,
    flow: str | FlowEstimator | None = None,
    device: str | torch.device = "auto",
    size: int | None = None,
    precision: str = "fp32",
    weights: str | None = None,
    flow_weights: str | None = None,
    offline: bool | None = None,
    resize_mask: bool = False,
    channels_last: bool = False,
    compile: bool = False,
    method_kwargs: Mapping[str, Any] | None = None,
) -> Session:
    """Build a per-video :class:`Session` (method + flow + device + internal size).

    Args:
        method: a registered method name or a built :class:`VOSMethod`.
        flow: flow backend name (:data:`vostool.flow.FLOW_NAMES`), an estimator, or None for the
            method's default.
        device: ``auto``, ``cpu``, ``cuda[:i]`` or ``mps``.
        size: internal resolution (shorter side) or None for the input resolution.
        precision: ``fp32``, ``bf16`` or ``fp16`` (CUDA autocast around the network).
        weights: see :func:`load_method`.
        flow_weights: RAFT weights path or entry name.
        offline: never download weights.
        resize_mask: scale masks of another size to the video instead of failing.
        channels_last / compile: CUDA speed options for the network.
        method_kwargs: builder keyword arguments (e.g. a tiny variant).
    """
    dev = resolve_device(device)
    if precision not in PRECISIONS:
        raise InputError(f"unknown precision {precision!r}; choose one of: {', '.join(PRECISIONS)}")
    weights_info = None
    if isinstance(method, str):
        m, weights_info = load_method(method, weights=weights, offline=offline, **dict(method_kwargs or {}))
    else:
        m = method
    m.to(dev, channels_last=channels_last and dev.type == "cuda").eval()
    if compile and m.net is not None:
        m.net = torch.compile(m.net)  # type: ignore[assignment]
    est: FlowEstimator | None = None
    if m.uses_flow:
        if isinstance(flow, FlowEstimator):
            est = flow.to(dev)
        else:
            name = flow or (method_info(m.name).default_flow if isinstance(method, str) else "dis")
            if name not in FLOW_NAMES:
                raise InputError(f"unknown flow {name!r}; choose one of: {', '.join(FLOW_NAMES)}")
            est = create_flow(name, device=dev, weights=flow_weights, offline=offline)
    session = Session(m, est, device=dev, size=size, precision=precision, resize_mask=resize_mask)
    session.weights_info = weights_info  # type: ignore[attr-defined]
    return session


_FRAME_NUMBER = re.compile(r"(\d+)(?!.*\d)")


def _mask_frame_index(stem: str, frame_names: list[str] | None) -> int:
    if frame_names is not None and stem in frame_names:
        return frame_names.index(stem)
    m = _FRAME_NUMBER.search(stem)
    if m is None:
        raise InputError(f"cannot tell which frame mask {stem!r} belongs to: name masks by frame number (00030.png) or frame name")
    return int(m.group(1))


def collect_masks(mask: Sequence[MaskSpec] | MaskSpec | None = None, masks_dir: str | os.PathLike[str] | None = None, *, frame_names: list[str] | None = None) -> dict[int, IndexMask]:
    """Read the masks given for a video into ``{frame index: IndexMask}``.

    Args:
        mask: one path (frame 0), ``"N:path"`` strings, IndexMasks (frame 0), or a list of them.
        masks_dir: a folder of frame-numbered PNGs (``00000.png``, ``00030.png``, or named like
            the frames of a frame folder).
        frame_names: the video's frame names (folder input), to match mask names to frames.

    Raises:
        InputError: unreadable mask, a mask with no object, two masks for one frame.
    """
    out: dict[int, IndexMask] = {}

    def put(idx: int, m: IndexMask, label: str) -> None:
        if idx in out:
            raise InputError(f"two masks given for frame {idx} ({label}); give one mask per frame")
        if not m.object_ids:
            raise InputError(f"mask {label} has no object: every pixel is background (or void); draw at least one object")
        out[idx] = m

    items = [] if mask is None else (list(mask) if isinstance(mask, (list, tuple)) else [mask])
    for spec in items:
        if isinstance(spec, IndexMask):
            put(0, spec, "given for frame 0")
            continue
        text = str(spec)
        m = re.fullmatch(r"(\d+):(.+)", text)
        idx, path = (int(m.group(1)), m.group(2)) if m and not Path(text).exists() else (0, text)
        put(idx, read_mask(path), path)
    if masks_dir is not None:
        d = Path(masks_dir)
        if not d.is_dir():
            raise InputError(f"--masks folder not found: {d}")
        files = sorted((p for p in d.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=lambda p: natural_key(p.name))
        if not files:
            raise InputError(f"no mask PNGs in {d}")
        for p in files:
            put(_mask_frame_index(p.stem, frame_names), read_mask(p), str(p))
    if not out:
        raise InputError("no mask given: pass --mask FILE (frame 0), --mask N:FILE, or --masks DIR")
    return out


def segment(
    video: str | os.PathLike[str],
    mask: Sequence[MaskSpec] | MaskSpec | None,
    out: str | os.PathLike[str],
    *,
    masks_dir: str | os.PathLike[str] | None = None,
    method: str = "flow",
    flow: str | None = None,
    device: str = "auto",
    size: int | None = None,
    precision: str = "fp32",
    weights: str | None = None,
    flow_weights: str | None = None,
    offline: bool | None = None,
    resize_mask: bool = False,
    overlay: bool = True,
    overlay_frames: bool = False,
    soft: bool = False,
    mattes: bool = False,
    fps: float | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = False,
    checkpoint_every: int = 100,
    compile: bool = False,
    method_kwargs: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Segment every frame of ``video`` into ``out`` (see :mod:`vostool.io.outputs` for the layout).

    Args:
        video: video file or folder of frames.
        mask: first-frame mask path, ``"N:path"`` specs, or a list of them.
        out: output folder.
        Others: as :func:`create_session` and the CLI options of ``vostool segment``.

    Returns:
        The timing summary (also in ``out/timing.json``).
    """
    source: VideoSource = open_video(video, fps=fps)
    try:
        given = collect_masks(mask, masks_dir, frame_names=source.frame_names)
        session = create_session(
            method, flow=flow, device=device, size=size, precision=precision, weights=weights,
            flow_weights=flow_weights, offline=offline, resize_mask=resize_mask, compile=compile,
            channels_last=True, method_kwargs=method_kwargs,
        )
        flow_name = session.flow_estimator.name if session.flow_estimator is not None else None
        meta = {
            "method": session.method.name,
            "flow": flow_name,
            "weights": getattr(session, "weights_info", None),
            "flow_weights": getattr(session.flow_estimator, "weights", None),
            "num_parameters": session.method.num_parameters,
        }
        fingerprint = {
            "video": str(Path(video).resolve()),
            "size_in": list(source.size),
            "frames": source.num_frames,
            "masks": {k: hashlib.sha256(v.ids.tobytes()).hexdigest()[:16] for k, v in given.items()},
            "method": session.method.name,
            "flow": flow_name,
            "weights": (meta["weights"] or {}).get("sha256") if isinstance(meta["weights"], dict) else None,
            "size": size,
            "precision": precision,
            "device": session.device.type,
            "method_kwargs": dict(method_kwargs or {}),
        }
        cfg = RunConfig(
            out=Path(out),
            options=OutputOptions(overlay_video=overlay, overlay_frames=overlay_frames, soft=soft, mattes=mattes),
            resume=resume,
            overwrite=overwrite,
            checkpoint_every=checkpoint_every,
            progress=progress,
            meta=meta,
            fingerprint=fingerprint,
        )
        return run_video(session, source, given, cfg)
    finally:
        source.close()


__all__ = ["segment", "create_session", "collect_masks", "load_method", "resolve_device", "Session", "StepResult"]
