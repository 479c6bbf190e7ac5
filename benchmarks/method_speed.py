"""Frames per second against the number of objects, per method (like AGSS-VOS Figure 1).

Methods are looked up through the registry (``vostool.models.create_method``) with random
weights; ``--variant tiny`` builds the tiny variant each method registers next to its builder
(``MethodInfo.tiny``), ``--variant paper`` the builder's defaults. ``--methods`` defaults to
every registered method.

Each (method, objects) cell: a synthetic clip at ``--size`` (854x480 by default) with that many
moving textured objects (:func:`vostool.datasets.speed_clip`); frame 0's masks are memorized
(not timed); ``--warmup`` frames run untimed, then
``--frames`` frames are timed, ``--repeats`` times; the table gives the median FPS, its ratio to
the 1-object median of the same method measured in the same invocation, and median per-stage ms.

Two pipelines:

* ``--flow none`` (default): the method alone. ``predict`` gets the previous frame's
  probabilities as ``warped`` (zeros for methods with ``uses_flow = False``, as the session
  gives them), then ``update``; no host-device synchronisation inside a run.
* ``--flow NAME`` (``dis``, ``raft-small``, ...; ``--flow-weights`` for a local RAFT file): the
  real :class:`vostool.inference.session.Session` per frame (flow, warp, method, argmax to the
  host), i.e. the paper's setting where flow is part of the cost.

``--arch`` gives builder keyword arguments on top of the variant (another backbone or width, e.g.
the architecture of a weights file: its ``arch`` metadata).

Examples::

    .venv/bin/python benchmarks/method_speed.py --methods agss,savos --variant tiny --frames 5
    .venv/bin/python benchmarks/method_speed.py --methods agss --variant paper --arch '{"backbone": "mobilenet-v2", "mdim": 64}' \
        --size 427x240 --objects 1 --flow dis --threads 2
    .venv/bin/python benchmarks/method_speed.py --device cuda --precision bf16 --variant paper \\
        --flow raft-small --flow-weights ../shared/weights/raft-small.pth --out bench-out/
"""

from __future__ import annotations

import argparse
import csv
import io
import itertools
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from vostool.datasets import speed_clip  # noqa: E402
from vostool.inference.session import Session  # noqa: E402
from vostool.inference.timing import StageTimer  # noqa: E402
from vostool.inference.torch_ops import PRECISIONS  # noqa: E402
from vostool.io.atomic import atomic_path, write_text_atomic  # noqa: E402
from vostool.models import available_methods, create_method  # noqa: E402
from vostool.models.base import VOSMethod, no_stage  # noqa: E402
from vostool.models.registry import VARIANTS  # noqa: E402
from vostool.options import RunOptions  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _network_runs(
    method: VOSMethod, frames: list[np.ndarray], ids: list[np.ndarray], k: int, args: argparse.Namespace, device: torch.device
) -> tuple[list[float], dict[str, float]]:
    """Time ``method`` alone; returns FPS per repeat and median ms per stage."""
    images = [torch.from_numpy(f).to(device).permute(2, 0, 1)[None].float().div_(255) for f in frames]
    prob0 = torch.stack([torch.from_numpy(ids[0] == i) for i in range(k + 1)]).to(device).float()
    dtype = PRECISIONS[args.precision]
    autocast = torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)
    timer = StageTimer(device, method.stages)
    fps = []
    with torch.inference_mode(), autocast:
        state = method.init_state()
        method.memorize(state, images[0], prob0, list(range(1, k + 1)))
        method.update(state, images[0], prob0)
        prob = prob0
        i = 1
        for rep in range(args.repeats):
            for step in range(args.warmup + args.frames):
                if step == args.warmup:
                    _sync(device)
                    t0 = time.perf_counter()
                image = images[i % len(images)]
                timed = step >= args.warmup
                timer.frame = rep * args.frames + step - args.warmup
                warped = prob[1:] if method.uses_flow else torch.zeros_like(prob[1:])
                prob = method.predict(state, image, warped, stage=timer.stage if timed else no_stage).float()
                method.update(state, image, prob)
                i += 1
            _sync(device)
            fps.append(args.frames / (time.perf_counter() - t0))
    stages = {s: v["median_ms"] for s, v in timer.summary()["stages"].items()}
    return fps, stages


def _session_runs(
    method: VOSMethod, frames: list[np.ndarray], ids: list[np.ndarray], args: argparse.Namespace, device: torch.device
) -> tuple[list[float], dict[str, float]]:
    """Time the full session step (flow, warp, method, argmax to host)."""
    from vostool.flow import create_flow

    flow = create_flow(args.flow, device=device, weights=args.flow_weights, offline=True) if method.uses_flow else None
    fps, per_stage = [], {}
    for _ in range(args.repeats):
        session = Session(method, flow, RunOptions(method=method.name, device=str(device), precision=args.precision))
        stream = session.propagate(frames[: 1 + args.warmup + args.frames], {0: ids[0]})
        for _ in itertools.islice(stream, 1 + args.warmup):
            pass
        session.timer = StageTimer(device, method.stages)
        t0 = time.perf_counter()
        for res in stream:
            res.ids  # noqa: B018  (waits for the masks on the host)
        fps.append(args.frames / (time.perf_counter() - t0))
        for s, v in session.timer.summary()["stages"].items():
            per_stage.setdefault(s, []).append(v["median_ms"])
    return fps, {s: statistics.median(v) for s, v in per_stage.items()}


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Measure every (method, objects) cell; returns the table rows."""
    device = torch.device(args.device)
    w, h = (int(v) for v in args.size.lower().split("x"))
    known = available_methods()
    rows: list[dict[str, Any]] = []
    for name in args.methods:
        if name not in known:
            raise SystemExit(f"method_speed: unknown method {name!r}; registered: {', '.join(known)}")
        torch.manual_seed(0)
        method = create_method(name, variant=args.variant, **args.arch).to(device, channels_last=args.channels_last).eval()
        base_fps = None
        for k in args.objects:
            frames, first = speed_clip(k, h, 1 + args.warmup + args.frames, width=w)
            ids = [first]
            if args.flow == "none":
                fps, stages = _network_runs(method, frames, ids, k, args, device)
            else:
                fps, stages = _session_runs(method, frames, ids, args, device)
            med = statistics.median(fps)
            base_fps = med if base_fps is None else base_fps
            rows.append(
                {
                    "method": name,
                    "variant": args.variant,
                    "params": method.num_parameters,
                    "objects": k,
                    "fps": round(med, 2),
                    "ms_per_frame": round(1000.0 / med, 1),
                    "vs_first": round(med / base_fps, 3),
                    "runs": len(fps),
                    "stages_ms": " ".join(f"{s}={v:.1f}" for s, v in stages.items()),
                }
            )
            print(_markdown(rows[-1:], header=len(rows) == 1), end="", file=sys.stderr, flush=True)
    return rows


COLUMNS = ["method", "variant", "params", "objects", "fps", "ms_per_frame", "vs_first", "runs", "stages_ms"]


def _markdown(rows: list[dict[str, Any]], header: bool = True) -> str:
    out = []
    if header:
        out += ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    out += ["| " + " | ".join(str(r[c]) for c in COLUMNS) + " |" for r in rows]
    return "\n".join(out) + "\n"


def _csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    wr = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    wr.writeheader()
    wr.writerows(rows)
    return buf.getvalue()


def plot(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    """FPS against the number of objects, one line per method (PNG, written atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8), dpi=120)
    for name in dict.fromkeys(r["method"] for r in rows):
        pts = [(r["objects"], r["fps"]) for r in rows if r["method"] == name]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
    ks = sorted({r["objects"] for r in rows})
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.set_xlabel("objects")
    ax.set_ylabel("frames per second")
    ax.set_title(title, fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", default=None, help="comma-separated registered methods (default: all of them)")
    p.add_argument("--variant", choices=VARIANTS, default="tiny", help="tiny (the registered tiny nets) or paper (builder defaults)")
    p.add_argument(
        "--arch",
        type=json.loads,
        default={},
        help='builder keyword arguments over the variant, as JSON (e.g. \'{"backbone": "mobilenet-v2", "mdim": 64}\')',
    )
    p.add_argument("--objects", default="1,2,4,8", help="comma-separated object counts")
    p.add_argument("--frames", type=int, default=10, help="timed frames per run")
    p.add_argument("--warmup", type=int, default=2, help="untimed frames before each run")
    p.add_argument("--repeats", type=int, default=3, help="runs per cell (the median is reported)")
    p.add_argument("--size", default="854x480", help="WxH of the frames the method gets")
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", choices=sorted(PRECISIONS), default="fp32")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--flow", default="none", help="none (method alone) or a flow backend to run the whole session")
    p.add_argument("--flow-weights", default=None, help="RAFT weights file or entry (with --flow raft-*)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--out", type=Path, default=None, help="folder for method_speed.{md,csv,png}")
    args = p.parse_args(argv)
    args.methods = available_methods() if args.methods is None else [m.strip() for m in args.methods.split(",") if m.strip()]
    args.objects = [int(k) for k in args.objects.split(",")]
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = run(args)
    device_name = (
        torch.cuda.get_device_name(args.device) if torch.device(args.device).type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    )
    title = f"{args.variant} nets, {args.size}, {args.precision}, flow={args.flow}, {device_name}"
    table = f"{title}; median of {args.repeats} runs x {args.frames} frames\n\n{_markdown(rows)}"
    print(table)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(args.out / "method_speed.md", table)
        write_text_atomic(args.out / "method_speed.csv", _csv(rows))
        plot(rows, args.out / "method_speed.png", title)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
