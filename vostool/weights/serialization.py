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
import pickletools
import re
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
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


_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTO = 0x80
"""First byte of a pickle of protocol 2 or later (PyTorch's legacy format and plain pickles)."""
_LEGACY_MAGIC = b"\x80\x02\x8a\x0a"
"""Start of PyTorch's legacy (pre-1.6) checkpoint format: a protocol-2 pickle of its magic number."""


def _is_safetensors(path: Path, head: bytes) -> bool:
    if path.suffix in _SAFETENSORS_SUFFIXES:
        return True
    # A safetensors file starts with an 8-byte little-endian header length followed by '{'.
    return len(head) >= 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < (1 << 32)


def _damaged(path: Path, reason: str) -> WeightsError:
    return WeightsError(f"weights file {path} is damaged or incomplete ({reason}): delete it and pull or import it again")


def _damaged_safetensors(path: Path, exc: Exception) -> WeightsError:
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else "unreadable header"
    return _damaged(path, reason.removeprefix("Error while deserializing header: ")[:120])


def _load_safetensors(path: Path) -> StateDict:
    try:
        return dict(load_file(str(path), device="cpu"))
    except SafetensorError as exc:
        raise _damaged_safetensors(path, exc) from None


def read_safetensors_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The ``__metadata__`` strings of a safetensors file, without reading its tensors.

    Raises:
        WeightsError: the file is missing, truncated or not a safetensors file.
    """
    p = Path(path)
    if not p.is_file():
        raise WeightsError(f"weights file {p} does not exist; check the path or run `vostool weights list`")
    try:
        with safe_open(str(p), framework="pt") as f:
            return dict(f.metadata() or {})
    except SafetensorError as exc:
        raise _damaged_safetensors(p, exc) from None


def _pickle_global(path: Path) -> str | None:
    """The first callable a plain pickle would import when loaded (``module.name``), read with
    :mod:`pickletools` (which never executes anything); None for bytes that are not a pickle."""
    strings: list[str] = []
    try:
        with open(path, "rb") as f:
            for op, arg, _ in pickletools.genops(f):
                if op.name in ("GLOBAL", "INST"):
                    return str(arg).replace(" ", ".")
                if op.name == "STACK_GLOBAL":
                    return ".".join(strings[-2:]) if len(strings) >= 2 else "a global"
                if isinstance(arg, str):
                    strings.append(arg)
    except Exception:  # genops raises ValueError, EOFError, ... on bytes that are not a pickle
        return None
    return None


def _load_torch(path: Path, head: bytes) -> object:
    """``torch.load(weights_only=True)`` with one-line errors that say what the file is."""
    is_zip = head.startswith(_ZIP_MAGIC)
    is_checkpoint = is_zip or head.startswith(_LEGACY_MAGIC)
    if not is_zip and not (head[:1] and head[0] == _PICKLE_PROTO):
        raise WeightsError(
            f"{path} is not a PyTorch checkpoint or safetensors file (it starts with neither a zip nor a pickle header); check the path"
        )
    try:
        with warnings.catch_warnings():  # the unpickler warns about odd protocol bytes in foreign files
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        named = re.search(r"GLOBAL ([\w.]+)", str(exc))  # torch names the global it refused
        called = named.group(1) if named else (None if is_zip else _pickle_global(path))
        if called:
            raise WeightsError(
                f"{path} cannot be loaded safely: it would run code ({called}) when loaded; vostool only loads plain tensors, "
                "convert the file with the tool that made it"
            ) from None
        if is_checkpoint:
            raise _damaged(path, "its data cannot be unpickled") from None
        raise WeightsError(
            f"{path} is not a PyTorch checkpoint (its pickle data holds no tensors vostool can read); check the path"
        ) from None
    except Exception as exc:  # torch raises OSError, RuntimeError, EOFError, ... on cut or foreign files
        if is_checkpoint:
            raise _damaged(
                path, f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:80] if str(exc).strip() else 'unreadable'}"
            ) from None
        raise WeightsError(f"{path} is not a PyTorch checkpoint (unreadable pickle data); check the path") from None


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
        WeightsError: one line for each case: the file is missing; damaged or incomplete
            (truncated safetensors or zip: delete it and pull/import again); not a PyTorch
            checkpoint (foreign bytes); or a pickle that would run code when loaded.
    """
    p = Path(path)
    if not p.is_file():
        raise WeightsError(f"weights file {p} does not exist; check the path or run `vostool weights list`")
    try:
        with open(p, "rb") as f:
            head = f.read(16)
    except OSError as exc:
        raise WeightsError(f"cannot read weights file {p}: {exc.strerror or exc}") from None
    if _is_safetensors(p, head):
        return _load_safetensors(p)
    obj = _load_torch(p, head)
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


def load_encoder_weights(encoder: nn.Module, state_dict: Mapping[str, torch.Tensor], *, what: str) -> None:
    """Load ImageNet weights into a :class:`vostool.models.backbones.Encoder`: strictly, for the
    part it takes (its ``pretrained_subset``), then zero its mask convolution. Nothing is
    loaded on error.

    Raises:
        WeightsError: the weights do not fit (one line naming up to three keys).
    """
    sd, may_lack = encoder.pretrained_subset(state_dict)  # type: ignore[operator]
    load_into(encoder, sd, what=what, allow_missing=may_lack)
    encoder.zero_mask_conv()  # type: ignore[operator]
