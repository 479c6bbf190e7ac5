"""Reading and writing state dicts without ever executing code, and strict loading.

* :func:`load_state_dict` reads ``.safetensors`` or a PyTorch pickle with
  ``torch.load(weights_only=True)`` (the restricted unpickler: tensors and plain containers only).
  Nested checkpoints (``{'seg': {...}, 'flow': {...}}``) are flattened with ``.``-joined keys.
* :func:`save_state_dict` writes safetensors atomically (a crash never leaves a half file).
* :func:`load_into` loads strictly: any missing or unexpected key, or any shape mismatch, is a
  :class:`~vostool.errors.WeightsError` naming a few of the offending keys.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..errors import WeightsError
from ..io.atomic import atomic_path

StateDict = dict[str, torch.Tensor]

_SAFETENSORS_SUFFIXES = (".safetensors",)


def sha256_file(path: str | os.PathLike[str], *, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _is_safetensors(path: Path) -> bool:
    if path.suffix in _SAFETENSORS_SUFFIXES:
        return True
    # A safetensors file starts with an 8-byte little-endian header length followed by '{'.
    with open(path, "rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < (1 << 32)


def _flatten(obj: object, prefix: str, out: StateDict) -> None:
    if isinstance(obj, torch.Tensor):
        out[prefix] = obj
    elif isinstance(obj, Mapping):
        for k, v in obj.items():
            _flatten(v, f"{prefix}.{k}" if prefix else str(k), out)
    # Non-tensor leaves (epoch counters, optimiser settings, strings) carry no weights.


def load_state_dict(path: str | os.PathLike[str]) -> StateDict:
    """Read the tensors of a weights file without executing any code from it.

    Args:
        path: a ``.safetensors`` file, or a PyTorch ``.pth``/``.pt``/``.bin`` checkpoint (zip or
            legacy pickle format) read with ``torch.load(weights_only=True)``.

    Returns:
        ``{name: tensor}`` on the CPU; nested dicts are flattened to ``outer.inner`` keys.

    Raises:
        WeightsError: the file is missing, truncated, not a weights file, or would need code
            execution to load.
    """
    p = Path(path)
    if not p.is_file():
        raise WeightsError(f"weights file {p} does not exist; check the path or run `vostool weights list`")
    try:
        if _is_safetensors(p):
            return dict(load_file(str(p), device="cpu"))
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsError(
            f"{p} cannot be loaded safely ({first[:160]}); vostool only loads plain tensors, convert the file with the tool that made it"
        ) from exc
    except Exception as exc:  # on garbage, safetensors and the unpickler raise many types
        raise WeightsError(f"{p} is not a readable weights file ({type(exc).__name__}); re-download or re-import it") from exc
    out: StateDict = {}
    _flatten(obj, "", out)
    if not out:
        raise WeightsError(f"{p} holds no tensors; is it a weights file?")
    return out


def save_state_dict(
    path: str | os.PathLike[str], state_dict: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None
) -> None:
    """Write ``state_dict`` as safetensors at ``path``, atomically.

    Tensors are made contiguous and moved to the CPU; tensors sharing storage are cloned (the
    safetensors format forbids shared storage).
    """
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state_dict.items()}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=dict(metadata) if metadata else None)


def _few(keys: list[str], n: int = 3) -> str:
    shown = ", ".join(keys[:n])
    return shown + (f" (+{len(keys) - n} more)" if len(keys) > n else "")


def load_into(
    module: nn.Module, state_dict: Mapping[str, torch.Tensor], *, what: str = "weights", allow_missing: Sequence[str] = ()
) -> None:
    """Load ``state_dict`` into ``module`` strictly.

    Every parameter and persistent buffer of ``module`` must be present with the same shape,
    and no key may be left over; otherwise nothing is loaded and a one-line WeightsError names
    up to three keys of each kind of problem.

    Args:
        module: the network.
        state_dict: ``{name: tensor}`` in the module's layout (convert original checkpoints first).
        what: how to call the weights in the message (e.g. ``"raft-small.things"``).
        allow_missing: key prefixes that may be absent and keep the module's own values (only
            for initialising training from a related network, e.g. ``("encoder.atn.",)`` for
            RGMP weights in AGSS-VOS); everything else stays strict.
    """
    expected = module.state_dict()
    missing = [k for k in expected if k not in state_dict and not k.startswith(tuple(allow_missing))]
    unexpected = [k for k in state_dict if k not in expected]
    mismatched = [
        f"{k} {tuple(state_dict[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing: {_few(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected: {_few(unexpected)}")
    if mismatched:
        problems.append(f"{len(mismatched)} with another shape (file vs network): {_few(mismatched)}")
    if problems:
        from .converters import detect_layout

        layout = detect_layout(state_dict)
        hint = (
            f"the file is in the {layout} layout: load it through resolve_weights(...).state_dict() or `vostool weights import`"
            if layout
            else "use weights made for this network (see `vostool weights list`)"
        )
        raise WeightsError(f"{what} do not fit {type(module).__name__}: " + "; ".join(problems) + f"; {hint}")
    if allow_missing:
        module.load_state_dict({**expected, **state_dict}, strict=True)
    else:
        module.load_state_dict(dict(state_dict), strict=True)
