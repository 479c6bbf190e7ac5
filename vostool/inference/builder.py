"""Building a session from :class:`~vostool.options.RunOptions`: the method with its weights,
the flow estimator, the device.

    session = create_session("agss", device="cpu", size=240)        # keyword fields
    session = create_session(RunOptions(method="agss", size=240))   # what the CLI passes
"""

from __future__ import annotations

import dataclasses
import inspect
import json
from pathlib import Path
from typing import Any

from ..errors import InputError, WeightsError
from ..flow import FlowEstimator, create_flow
from ..models import VOSMethod, available_methods, create_method, method_info
from ..options import RunOptions
from .device import device_type, resolve_device
from .session import Session


def _file_metadata(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(arch, inference)`` stored in a safetensors file's metadata: builder kwargs (``arch``,
    JSON) and the inference defaults it was trained for (``inference_size``, ``flow``)."""
    from ..weights.serialization import read_safetensors_metadata

    if path.suffix != ".safetensors":
        return {}, {}
    meta = read_safetensors_metadata(path)
    inference: dict[str, Any] = {}
    if meta.get("inference_size", "").isdigit():
        inference["size"] = int(meta["inference_size"])
    if meta.get("flow"):
        inference["flow"] = meta["flow"]
    return (json.loads(meta["arch"]) if "arch" in meta else {}), inference


def load_method(
    name: str, *, weights: str | None = None, offline: bool | None = None, **kwargs: Any
) -> tuple[VOSMethod, dict[str, Any] | None]:
    """Build method ``name`` and load its weights.

    Args:
        name: registered method name.
        weights: None (the manifest's default for the method: cache, then download), an entry
            name, a file path, or ``"random"`` (random initialisation, for speed measurements only).
        offline: never download.
        **kwargs: builder keyword arguments (None values ignored).

    Returns:
        ``(method, weights_info)``; ``weights_info`` is None for weightless methods. Its
        ``inference`` item holds the internal ``size`` and the ``flow`` the weights were trained
        for (from the file's metadata, else the manifest entry), when known.

    Raises:
        WeightsError: no weights available (the message says how to get or train them).
    """
    info = method_info(name)
    if not info.needs_weights:
        if weights not in (None, "random"):
            raise InputError(f"method {name!r} has no weights: drop --weights {weights}, or choose a learned method (--method agss, ...)")
        return create_method(name, **kwargs), None
    if weights == "random":
        return create_method(name, **kwargs), {
            "name": "random",
            "note": "random initialisation: for speed measurements only, the masks are meaningless",
        }
    from ..weights import load_into, load_manifest, resolve_weights

    resolved = resolve_weights(name, weights, offline=offline)
    path = Path(resolved.path)
    file_arch, file_inference = _file_metadata(path)
    arch = {**resolved.arch, **file_arch}
    inference = {**(load_manifest().entry(resolved.name).inference if resolved.pinned else {}), **file_inference}
    method = create_method(name, **{**arch, **{k: v for k, v in kwargs.items() if v is not None}})
    try:
        load_into(method.net, resolved.state_dict())
    except (RuntimeError, ValueError, KeyError) as exc:
        raise WeightsError(f"weights {path} do not fit method {name!r}: {str(exc).splitlines()[0][:200]}") from None
    return method, {**resolved.describe(), **({"inference": inference} if inference else {})}


def create_session(
    method: str | VOSMethod | RunOptions = "flow", *, flow_estimator: FlowEstimator | None = None, arrays: str = "auto", **fields: Any
) -> Session:
    """Build a per-video :class:`Session` (method + weights + flow + device + internal size).

    Args:
        method: a :class:`RunOptions`, a registered method name, or a built :class:`VOSMethod`
            (its weights already loaded; with ``runtime="auto"`` it runs with torch, since ONNX
            Runtime and compile would swap its blocks in place).
        flow_estimator: a built flow estimator to use instead of ``options.flow``.
        arrays: ``auto``, ``numpy`` or ``torch``: what the session computes on (see
            :class:`~vostool.inference.session.Session`; ``auto`` picks numpy when it can).
        **fields: :class:`RunOptions` fields (``flow``, ``device``, ``size``, ``precision``,
            ``weights``, ``flow_weights``, ``offline``, ``resize_mask``, ``channels_last``,
            ``compile``, ``method_kwargs``); they override those of a given ``RunOptions``.

    Raises:
        InputError: unknown method, flow, device or precision.
        WeightsError: the method's weights cannot be found or do not fit.
    """
    built: VOSMethod | None = None
    if isinstance(method, RunOptions):
        options = dataclasses.replace(method, **fields)
    elif isinstance(method, str):
        options = RunOptions(method=method, **fields)
    else:
        built = method
        options = RunOptions(method=method.name, **fields)
        if options.runtime == "auto":  # the caller's network stays theirs: ONNX Runtime / compile swap
            options = dataclasses.replace(options, runtime="torch")  # its blocks in place only when asked
    weights_info = None
    if built is None:
        if arrays == "torch" or method_info(options.method).needs_weights or device_type(options.device) not in ("auto", "cpu"):
            resolve_device(options.device)  # torch's CPU set-up (denormals) before it runs anything, loading weights included
        kwargs = dict(options.method_kwargs)
        if options.scales is not None:
            if "scales" not in inspect.signature(method_info(options.method).builder).parameters:
                raise InputError(f"--scales applies to savos (multi-scale testing) only, not to method {options.method!r}; drop it")
            kwargs["scales"] = tuple(options.scales)
        built, weights_info = load_method(options.method, weights=options.weights, offline=options.offline, **kwargs)
        # What the weights were trained for is the default; an explicit option wins.
        trained = (weights_info or {}).get("inference", {})
        taken = {k: v for k, v in trained.items() if getattr(options, k) is None and (k != "flow" or built.uses_flow)}
        if taken:
            options = dataclasses.replace(options, **taken)
            weights_info = {**(weights_info or {}), "defaults_used": sorted(taken)}
    est: FlowEstimator | None = None
    if built.uses_flow:
        registered = built.name in available_methods()
        name = options.flow or (method_info(built.name).default_flow if registered else None) or "dis"
        est = flow_estimator if flow_estimator is not None else create_flow(name, weights=options.flow_weights, offline=options.offline)
    session = Session(built, est, options, weights=weights_info, arrays=arrays)
    if session.arrays.kind == "torch":  # a numpy session (weightless method, OpenCV flow) needs no device
        dev = session.device
        built.to(dev, channels_last=options.channels_last and dev.type == "cuda").eval()
        if est is not None:
            est.to(dev)
    return session
