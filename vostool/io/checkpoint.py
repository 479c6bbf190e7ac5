"""Resume checkpoints: nested dicts and lists of arrays and plain values, written atomically and
read back without executing code.

A state holding torch tensors (a torch session's) is written with ``torch.save`` as ``<stem>.pt``
and read with ``torch.load(weights_only=True)``; a state of numpy arrays and plain values (a
numpy session's, which runs without torch) is written as ``<stem>.npz``: the arrays, plus the
nesting as JSON, read with ``numpy.load(allow_pickle=False)``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import atomic_path

SUFFIXES = (".pt", ".npz")


def _has_tensors(v: Any) -> bool:
    torch = sys.modules.get("torch")  # no tensor can exist before torch is imported
    if torch is None:
        return False
    if isinstance(v, dict):
        return any(_has_tensors(x) for x in v.values())
    if isinstance(v, (list, tuple)):
        return any(_has_tensors(x) for x in v)
    return isinstance(v, torch.Tensor)


def save_state(stem: Path, data: dict[str, Any]) -> Path:
    """Write ``data`` beside ``stem`` (``stem.pt`` with tensors, else ``stem.npz``), atomically;
    the other file of the pair, left by an earlier run, is removed. Returns the path written."""
    if _has_tensors(data):
        import torch

        path = stem.with_suffix(".pt")
        with atomic_path(path) as tmp:
            torch.save(data, tmp)
    else:
        arrays: dict[str, np.ndarray] = {}

        def pack(v: Any) -> Any:
            if isinstance(v, dict):
                return {str(k): pack(x) for k, x in v.items()}
            if isinstance(v, (list, tuple)):
                return [pack(x) for x in v]
            if isinstance(v, np.ndarray):
                key = f"a{len(arrays)}"
                arrays[key] = v
                return {"__array__": key}
            return v.item() if isinstance(v, np.generic) else v

        layout = json.dumps(pack(data))
        path = stem.with_suffix(".npz")
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, __layout__=np.array(layout), **arrays)
    for suffix in SUFFIXES:
        if suffix != path.suffix:
            stem.with_suffix(suffix).unlink(missing_ok=True)
    return path


def load_state(stem: Path) -> dict[str, Any] | None:
    """The state saved by :func:`save_state` beside ``stem``, or None when there is none."""
    pt, npz = stem.with_suffix(".pt"), stem.with_suffix(".npz")
    if pt.exists():
        import torch

        return torch.load(pt, map_location="cpu", weights_only=True)
    if not npz.exists():
        return None
    with np.load(npz, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}

    def unpack(v: Any) -> Any:
        if isinstance(v, dict):
            return arrays[v["__array__"]] if set(v) == {"__array__"} else {k: unpack(x) for k, x in v.items()}
        if isinstance(v, list):
            return [unpack(x) for x in v]
        return v

    return unpack(json.loads(str(arrays.pop("__layout__"))))
