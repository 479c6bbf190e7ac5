"""Per-frame, per-stage timing.

Stages run in different threads (decode in the reader, write in the writer, the rest in the
main loop), so records are keyed by frame index and guarded by a lock. On CUDA, stages of the
main loop are timed with CUDA events and resolved lazily (when outputs are fetched anyway), so
timing adds no host-device synchronisation inside the frame loop.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import threading
import time
from collections.abc import Iterator
from typing import Any

from .device import device_type

CORE_STAGES = ("decode", "flow", "warp")
TAIL_STAGES = ("write",)


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    pos = (len(s) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


class StageTimer:
    """Collects milliseconds per (frame, stage).

    Args:
        device: the device the main loop runs on (``torch.device`` or name); CUDA devices use events.
        stages: the method's own stage names, reported between ``warp`` and ``write``.
    """

    def __init__(self, device: Any = "cpu", stages: tuple[str, ...] = ()) -> None:
        self.device = device
        self.cuda = device_type(device) == "cuda"
        self.stage_names = [*CORE_STAGES, *[s for s in stages if s not in CORE_STAGES + TAIL_STAGES], *TAIL_STAGES]
        self.records: dict[int, dict[str, float]] = {}
        self.objects: dict[int, dict[str, int]] = {}
        """Objects handled per (frame, stage), for stages timed with ``objects=n``."""
        self.names: dict[int, str] = {}
        self.pts: dict[int, float] = {}
        self._pending: list[tuple[int, str, Any, Any]] = []
        self._lock = threading.Lock()
        self.frame = 0
        self.wall_start: float | None = None
        self.wall_end: float | None = None

    def start(self) -> None:
        if self.wall_start is None:
            self.wall_start = time.perf_counter()

    def stop(self) -> None:
        self.wall_end = time.perf_counter()

    def add(self, frame: int, stage: str, ms: float) -> None:
        """Record ``ms`` for ``stage`` of ``frame`` (accumulates; thread-safe)."""
        with self._lock:
            rec = self.records.setdefault(frame, {})
            rec[stage] = rec.get(stage, 0.0) + ms
            if stage not in self.stage_names:
                self.stage_names.insert(len(self.stage_names) - len(TAIL_STAGES), stage)

    @contextlib.contextmanager
    def stage(self, name: str, frame: int | None = None, *, objects: int | None = None) -> Iterator[None]:
        """Time the enclosed block as ``name`` for ``frame`` (default: the current frame);
        ``objects``: how many objects the block handled (the summary then gives a per-object cost)."""
        f = self.frame if frame is None else frame
        if objects is not None:
            with self._lock:
                rec = self.objects.setdefault(f, {})
                rec[name] = rec.get(name, 0) + int(objects)
        if self.cuda:
            import torch

            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            yield
            end.record()
            with self._lock:
                self._pending.append((f, name, start, end))
        else:
            t0 = time.perf_counter()
            yield
            self.add(f, name, (time.perf_counter() - t0) * 1000.0)

    def resolve(self) -> None:
        """Turn finished CUDA events into milliseconds (synchronises only if events are pending)."""
        with self._lock:
            pending, self._pending = self._pending, []
        if pending:
            pending[-1][3].synchronize()
        for f, name, s, e in pending:
            self.add(f, name, s.elapsed_time(e))

    def table(self) -> list[dict[str, Any]]:
        """One row per frame: ``frame``, ``name``, ``pts`` (seconds, when known), each stage's ms, and ``total``."""
        self.resolve()
        rows = []
        for f in sorted(self.records):
            rec = self.records[f]
            row: dict[str, Any] = {"frame": f, "name": self.names.get(f, str(f))}
            if self.pts:
                row["pts"] = round(self.pts[f], 6) if f in self.pts else None
            for s in self.stage_names:
                row[s] = round(rec.get(s, 0.0), 3)
            row["total"] = round(sum(rec.values()), 3)
            rows.append(row)
        return rows

    def summary(self) -> dict[str, Any]:
        """Frames, wall-clock FPS and median / p95 / mean ms per stage; stages timed with a number
        of objects also get ``per_object_ms`` (median over frames of ms / objects)."""
        rows = self.table()
        n = len(rows)
        wall = (self.wall_end or time.perf_counter()) - (self.wall_start or time.perf_counter())
        stages = {}
        for s in self.stage_names:
            vals = [r[s] for r in rows if s in self.records.get(r["frame"], {})]
            if vals:
                stages[s] = {
                    "median_ms": round(_percentile(vals, 0.5), 3),
                    "p95_ms": round(_percentile(vals, 0.95), 3),
                    "mean_ms": round(sum(vals) / len(vals), 3),
                    "total_ms": round(sum(vals), 1),
                }
                per = [rec[s] / n_obj for f, rec in self.records.items() if s in rec and (n_obj := self.objects.get(f, {}).get(s))]
                if per:
                    stages[s]["per_object_ms"] = round(_percentile(per, 0.5), 3)
        return {"frames": n, "wall_seconds": round(wall, 3), "fps": round(n / wall, 2) if wall > 0 else None, "stages": stages}

    def to_csv(self) -> str:
        rows = self.table()
        buf = io.StringIO()
        fields = ["frame", "name", *(["pts"] if self.pts else []), *self.stage_names, "total"]
        w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        return buf.getvalue()

    def state(self) -> dict[str, Any]:
        """Records as plain data (for resume checkpoints)."""
        self.resolve()
        with self._lock:
            return {
                "records": {str(k): dict(v) for k, v in self.records.items()},
                "objects": {str(k): dict(v) for k, v in self.objects.items()},
                "names": {str(k): v for k, v in self.names.items()},
                "pts": {str(k): v for k, v in self.pts.items()},
            }

    def load_state(self, state: dict[str, Any]) -> None:
        with self._lock:
            self.records = {int(k): dict(v) for k, v in state.get("records", {}).items()}
            self.objects = {int(k): dict(v) for k, v in state.get("objects", {}).items()}
            self.names = {int(k): v for k, v in state.get("names", {}).items()}
            self.pts = {int(k): float(v) for k, v in state.get("pts", {}).items()}
