"""Benchmark outputs: the official CSV files, a JSON with everything, a terminal table, speed plots.

* ``global_results-<split>.csv``: one row, columns :data:`~vostool.bench.scoring.GLOBAL_COLUMNS`,
  values as fractions with three decimals (``%.3f``), like the official toolkit.
* ``per-sequence_results-<split>.csv``: ``Sequence,J-Mean,F-Mean``, one row per (sequence,
  object) named ``<seq>_<id>``.
* ``results-<split>.json``: global numbers, per-object statistics and per-frame values,
  per-sequence timing (method FPS, scoring FPS) and the run's settings.

Every file is written atomically.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import OutputError
from ..io.atomic import atomic_path, write_text_atomic
from .scoring import GLOBAL_COLUMNS, BenchResult

if TYPE_CHECKING:
    from rich.console import Console


def _fmt(x: float) -> str:
    return "%.3f" % x


def global_csv(result: BenchResult) -> str:
    """Text of ``global_results-<split>.csv``."""
    g = result.global_metrics()
    return ",".join(GLOBAL_COLUMNS) + "\n" + ",".join(_fmt(g[c]) for c in GLOBAL_COLUMNS) + "\n"


def per_sequence_csv(result: BenchResult) -> str:
    """Text of ``per-sequence_results-<split>.csv`` (one row per sequence object)."""
    lines = ["Sequence,J-Mean,F-Mean"]
    for name, o in result.object_rows():
        lines.append(f"{name},{_fmt(o.j_stats.mean)},{_fmt(o.f_stats.mean)}")
    return "\n".join(lines) + "\n"


def _num(x: float | None) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else x


def result_dict(result: BenchResult, settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything about a run as plain JSON-able data (fractions in [0, 1], seconds, frames/s)."""
    seqs = []
    for s in result.sequences:
        objects = []
        for o in s.objects:
            js, fs = o.j_stats, o.f_stats
            objects.append(
                {
                    "id": o.object_id,
                    "name": f"{s.name}_{o.object_id}",
                    "J": {"mean": js.mean, "recall": js.recall, "decay": js.decay},
                    "F": {"mean": fs.mean, "recall": fs.recall, "decay": fs.decay},
                    "frames": o.frames,
                    "J_per_frame": o.j.tolist(),
                    "F_per_frame": o.f.tolist(),
                }
            )
        entry: dict[str, Any] = {
            "name": s.name,
            "frames_scored": s.frames_read,
            "score_seconds": round(s.score_seconds, 4),
            "score_cpu_seconds": round(s.score_cpu_seconds, 4),
            "score_fps": _num(round(s.score_fps, 1)),
            "missing_ground_truth": s.missing_ground_truth,
            "objects": objects,
        }
        if s.method is not None:
            entry["method"] = {
                "frames": s.method.frames,
                "seconds": round(s.method.seconds, 4),
                "fps": _num(round(s.method.fps, 2)),
                "timer": s.method.timer,
            }
        seqs.append(entry)
    return {
        "dataset": result.dataset,
        "split": result.split,
        **(settings or {}),
        "global": {k: _num(v) for k, v in result.global_metrics().items()},
        "scoring": {
            "workers": result.workers,
            "wall_seconds": round(result.wall_seconds, 3),
            "frames": result.frames_read,
            "cpu_seconds": round(result.score_cpu_seconds, 3),
            "fps": round(result.frames_read / result.wall_seconds, 1) if result.wall_seconds > 0 else None,
            "frames_without_ground_truth": sum(len(s.missing_ground_truth) for s in result.sequences),
        },
        "sequences": seqs,
    }


def write_reports(
    result: BenchResult,
    out_dir: str | os.PathLike[str],
    settings: dict[str, Any] | None = None,
    *,
    json_path: str | os.PathLike[str] | None = None,
) -> dict[str, Path]:
    """Write the two official CSVs and the JSON into ``out_dir`` (JSON to ``json_path`` if given).

    Returns:
        ``{"global": path, "per_sequence": path, "json": path}``.
    """
    out = Path(out_dir)
    paths = {
        "global": out / f"global_results-{result.split}.csv",
        "per_sequence": out / f"per-sequence_results-{result.split}.csv",
        "json": Path(json_path) if json_path else out / f"results-{result.split}.json",
    }
    try:
        out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(paths["global"], global_csv(result))
        write_text_atomic(paths["per_sequence"], per_sequence_csv(result))
        paths["json"].parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(paths["json"], json.dumps(result_dict(result, settings), indent=1) + "\n")
    except OSError as exc:
        raise OutputError(f"cannot write reports to {out}: {exc.strerror or exc}; choose another folder with -o") from None
    return paths


def print_table(result: BenchResult, console: Console) -> None:
    """Per-sequence table (mean over the sequence's objects, timings) and the global numbers."""
    from rich.table import Table

    has_method = any(s.method is not None for s in result.sequences)
    t = Table(title=f"{result.dataset} {result.split}", title_justify="left")
    for col in ("Sequence", "Obj", "Frames", "J-Mean", "F-Mean", "J&F"):
        t.add_column(col, justify="left" if col == "Sequence" else "right")
    if has_method:
        t.add_column("Method FPS", justify="right")
    t.add_column("Score FPS", justify="right")
    for s in result.sequences:
        if s.objects:
            jm = float(np.mean([o.j_stats.mean for o in s.objects]))
            fm = float(np.mean([o.f_stats.mean for o in s.objects]))
            cells = [_fmt(jm), _fmt(fm), _fmt((jm + fm) / 2)]
        else:
            cells = ["-", "-", "-"]
        row = [s.name, str(len(s.objects)), str(s.frames_read), *cells]
        if has_method:
            row.append(f"{s.method.fps:.1f}" if s.method is not None else "-")
        row.append(f"{s.score_fps:.0f}")
        t.add_row(*row)
    console.print(t)
    g = result.global_metrics()
    gt = Table(title="global (fractions; mean over sequence objects)", title_justify="left")
    for c in GLOBAL_COLUMNS:
        gt.add_column(c, justify="right")
    gt.add_row(*[_fmt(g[c]) for c in GLOBAL_COLUMNS])
    console.print(gt)
    if has_method:
        console.print(
            f"segmented and scored {len(result.sequences)} sequences in {result.wall_seconds:.2f} s ({result.workers} scoring workers)"
        )
    else:
        fps = result.frames_read / result.wall_seconds if result.wall_seconds > 0 else float("nan")
        console.print(
            f"scored {result.frames_read} frames of {len(result.sequences)} sequences in {result.wall_seconds:.2f} s ({fps:.0f} frames/s, {result.workers} workers)"
        )


def plot_speed(rows: Sequence[dict[str, Any]], out_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Draw ``speed_fps.png`` (FPS vs number of objects, one line per method) and
    ``speed_stages.png`` (median ms per stage, stacked, one bar per method and object count).

    Args:
        rows: dicts with ``method``, ``objects``, ``fps`` and ``stages`` (stage -> median ms).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    methods = list(dict.fromkeys(r["method"] for r in rows))

    fig, ax = plt.subplots(figsize=(6, 4))
    for m in methods:
        pts = sorted((r["objects"], r["fps"]) for r in rows if r["method"] == m)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=m)
    ax.set_xlabel("objects")
    ax.set_ylabel("frames per second")
    ax.set_xticks(sorted({r["objects"] for r in rows}))
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend()
    size, device = (rows[0].get("size"), rows[0].get("device")) if rows else (None, None)
    where = ", ".join(x for x in (f"{size[0]}x{size[1]}" if size else "", device or "") if x)
    ax.set_title(f"throughput vs objects{f' ({where})' if where else ''}")
    fig.tight_layout()
    paths = {"fps": out / "speed_fps.png", "stages": out / "speed_stages.png"}
    with atomic_path(paths["fps"]) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)

    stages = list(dict.fromkeys(s for r in rows for s in r["stages"]))
    labels = [f"{r['method']}\n{r['objects']} obj" for r in rows]
    fig, ax = plt.subplots(figsize=(max(6, 0.8 * len(rows) + 2), 4))
    bottom = np.zeros(len(rows))
    for s in stages:
        vals = np.array([r["stages"].get(s, 0.0) for r in rows])
        ax.bar(range(len(rows)), vals, bottom=bottom, label=s)
        bottom += vals
    ax.set_xticks(range(len(rows)), labels, fontsize=8)
    ax.set_ylabel("median ms per frame")
    ax.set_title(f"per-stage time{f' ({where})' if where else ''}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(paths["stages"]) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
    return paths
