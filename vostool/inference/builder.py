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

import torch

from ..errors import InputError, WeightsError
from ..flow import FlowEstimator, create_flow
from ..models import VOSMethod, available_methods, create_method, method_info
from ..options import RunOptions
from .device import resolve_device
from .session import Session


def _arch_from_file(path: Path) -> dict[str, Any]:
    """Builder kwargs stored in a safetensors file's metadata under ``arch`` (JSON), if any."""
    if path.suffix != ".safetensors":
        return {}
    from ..weights.serialization import read_safetensors_metadata

    meta = read_safetensors_metadata(path)  # a damaged file is one WeightsError line
    try:
        return json.loads(meta["arch"]) if "arch" in meta else {}
    except ValueError:
        raise WeightsError(f"weights {path} carry unreadable 'arch' metadata; export them again with vostool train") from None


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
        if weights not in (None, "random"):
            raise InputError(f"method {name!r} has no weights: drop --weights {weights}, or choose a learned method (--method agss, ...)")
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


def create_session(method: str | VOSMethod | RunOptions = "flow", *, flow_estimator: FlowEstimator | None = None, **fields: Any) -> Session:
    """Build a per-video :class:`Session` (method + weights + flow + device + internal size).

    Args:
        method: a :class:`RunOptions`, a registered method name, or a built :class:`VOSMethod`
            (its weights already loaded).
        flow_estimator: a built flow estimator to use instead of ``options.flow``.
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
    dev = resolve_device(options.device)
    weights_info = None
    if built is None:
        built, weights_info = load_method(options.method, weights=options.weights, offline=options.offline, **dict(options.method_kwargs))
    built.to(dev, channels_last=options.channels_last and dev.type == "cuda").eval()
    if options.compile and built.net is not None:
        built.net = torch.compile(built.net)  # type: ignore[assignment]
    est: FlowEstimator | None = None
    if built.uses_flow:
        if flow_estimator is not None:
            est = flow_estimator.to(dev)
        else:
            registered = built.name in available_methods()
            name = options.flow or (method_info(built.name).default_flow if registered else None) or "dis"
            est = create_flow(name, device=dev, weights=options.flow_weights, offline=options.offline)
    return Session(built, est, options, weights=weights_info)
