"""J-mean (mean IoU over frames 1..n-2, per object, averaged over sequences) of a method on
DAVIS-layout sequences, run through the public API (what issue 2 asks to report).

    python benchmarks/flow_jmean.py --root ../shared/data/davis16-480p --method flow --flow dis
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

import vostool
from vostool.bench.metrics import frame_scores
from vostool.io.masks import read_mask
from vostool.io.video import open_video


def sequence_j(session: vostool.Session, root: Path, seq: str, res: str) -> tuple[float, int, float]:
    """Mean J over objects of ``seq`` (frames 1..n-2, :func:`vostool.bench.metrics.frame_scores`),
    frames run, and the session's frames per second."""
    ann_dir = root / "Annotations" / res / seq
    gts = sorted(ann_dir.glob("*.png"))
    first = read_mask(gts[0])
    session.reset()
    ious: list[np.ndarray] = []
    t0 = time.perf_counter()
    n = 0
    for out in session.propagate(open_video(root / "JPEGImages" / res / seq), {0: first}):
        n += 1
        if 0 < out.index < len(gts) - 1:
            j, _ = frame_scores(read_mask(ann_dir / f"{out.name}.png").ids, out.ids, first.object_ids)
            ious.append(j)
    dt = time.perf_counter() - t0
    return float(np.mean(ious, axis=0).mean()), n, n / dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, required=True)
    ap.add_argument("--resolution", default="480p")
    ap.add_argument("--method", default="flow")
    ap.add_argument("--flow", default="dis")
    ap.add_argument("--weights", default=None)
    ap.add_argument("--flow-weights", default=None)
    ap.add_argument("--size", type=int, default=None)
    ap.add_argument("--sequences", nargs="*", default=None)
    args = ap.parse_args()
    seqs = args.sequences or sorted(p.name for p in (args.root / "JPEGImages" / args.resolution).iterdir() if p.is_dir())
    session = vostool.create_session(
        args.method, flow=args.flow, weights=args.weights, flow_weights=args.flow_weights, size=args.size, device="cpu"
    )
    rows = {}
    for s in seqs:
        j, n, fps = sequence_j(session, args.root, s, args.resolution)
        rows[s] = {"J": round(j, 4), "frames": n, "fps": round(fps, 2)}
        print(f"{s:14s} J={j:.4f} frames={n} fps={fps:.1f}", file=sys.stderr)
    mean = float(np.mean([r["J"] for r in rows.values()]))
    print(json.dumps({"method": args.method, "flow": args.flow, "size": args.size, "J_mean": round(mean, 4), "sequences": rows}, indent=1))


if __name__ == "__main__":
    main()
