"""Building a session from :class:`~vostool.options.RunOptions`: the method with its weights,
the flow estimator, the device.

    session = create_session("agss", device="cpu", size=240)        # keyword fields
    session = create_session(RunOptions(method="agss", size=240))   # what the CLI passes
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from ..errors import WeightsError
from ..flow import FlowEstimator, create_flow
from ..models import VOSMethod, available_methods, create_method, method_info
from ..options import RunOptions
from .device import device_type, resolve_device
from .session import Session


def _arch_from_file(path: Path) -> dict[str, Any]:
    """Builder kwargs stored in a safetensors file's metadata under ``arch`` (JSON), if any."""
    if path.suffix != ".safetensors":
        return {}
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    return json.loads(meta["arch"]) if "arch" in meta else {}


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
        ``(method, weights_info)``; ``weights_info`` is None for weightless methods.

    Raises:
        WeightsError: no weights available (the message says how to get or train them).
    """
    info = method_info(name)
    if not info.needs_weights:
        return create_method(name, **kwargs), None
    if weights == "random":
        return create_method(name, **kwargs), {
            "name": "random",
            "note": "random initialisation: for speed measurements only, the masks are meaningless",
        }
    from ..weights import load_into, resolve_weights

    resolved = resolve_weights(name, weights, offline=offline)
    path = Path(resolved.path)
    arch = {**resolved.arch, **_arch_from_file(path)}
    method = create_method(name, **{**arch, **{k: v for k, v in kwargs.items() if v is not None}})
    try:
        load_into(method.net, resolved.state_dict())
    except (RuntimeError, ValueError, KeyError) as exc:
        raise WeightsError(f"weights {path} do not fit method {name!r}: {str(exc).splitlines()[0][:200]}") from None
    return method, resolved.describe()


def create_session(
    method: str | VOSMethod | RunOptions = "flow", *, flow_estimator: FlowEstimator | None = None, arrays: str = "auto", **fields: Any
) -> Session:
    """Build a per-video :class:`Session` (method + weights + flow + device + internal size).

    Args:
        method: a :class:`RunOptions`, a registered method name, or a built :class:`VOSMethod`
            (its weights already loaded).
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
    weights_info = None
    if built is None:
        if arrays == "torch" or method_info(options.method).needs_weights or device_type(options.device) not in ("auto", "cpu"):
            resolve_device(options.device)  # torch's CPU set-up (denormals) before it runs anything, loading weights included
        built, weights_info = load_method(options.method, weights=options.weights, offline=options.offline, **dict(options.method_kwargs))
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
