"""J-mean (mean IoU over frames 1..n-2, per object, averaged over sequences) of a method on
DAVIS-layout sequences, run through the public API (what issue 2 asks to report).

    python benchmarks/flow_jmean.py --root ../shared/data/davis16-480p --method flow --flow dis
    python benchmarks/flow_jmean.py --root ../shared/data/davis16-480p --compare-arrays

``--compare-arrays`` runs the weightless method twice, on numpy arrays (what ``--method flow``
runs on the CPU: OpenCV grey, DIS, ``cv2.remap``, numpy aggregation, no torch) and on torch
tensors (``grid_sample`` warp: vostool's path before the numpy one), and reports both J-means
and the per-frame IoU of the two sessions' masks.
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


def sequence_masks(session: vostool.Session, root: Path, seq: str, res: str) -> tuple[list[np.ndarray], list[int], float]:
    """Every frame's ids of ``seq``, its object ids, and the session's frames per second."""
    first = read_mask(root / "Annotations" / res / seq / "00000.png")
    session.reset()
    t0 = time.perf_counter()
    ids = [out.ids for out in session.propagate(open_video(root / "JPEGImages" / res / seq), {0: first})]
    return ids, first.object_ids, len(ids) / (time.perf_counter() - t0)


def sequence_j(root: Path, seq: str, res: str, ids: list[np.ndarray], objects: list[int]) -> float:
    """Mean J over objects of ``seq`` (frames 1..n-2, :func:`vostool.bench.metrics.frame_scores`)."""
    gts = sorted((root / "Annotations" / res / seq).glob("*.png"))
    ious = [frame_scores(read_mask(gts[t]).ids, ids[t], objects)[0] for t in range(1, len(gts) - 1)]
    return float(np.mean(ious, axis=0).mean())


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
    ap.add_argument("--arrays", default="auto", choices=("auto", "numpy", "torch"))
    ap.add_argument("--compare-arrays", action="store_true", help="numpy vs torch sessions: both J-means and per-frame IoU")
    args = ap.parse_args()
    seqs = args.sequences or sorted(p.name for p in (args.root / "JPEGImages" / args.resolution).iterdir() if p.is_dir())
    kinds = ["numpy", "torch"] if args.compare_arrays else [args.arrays]
    opts = dict(flow=args.flow, weights=args.weights, flow_weights=args.flow_weights, size=args.size, device="cpu")
    sessions = {k: vostool.create_session(args.method, arrays=k, **opts) for k in kinds}
    report: dict = {"method": args.method, "flow": args.flow, "size": args.size, "arrays": {}}
    pair_ious: list[float] = []
    for kind in kinds:
        report["arrays"][kind] = {"sequences": {}}
    for s in seqs:
        masks = {}
        for kind, session in sessions.items():
            ids, objects, fps = sequence_masks(session, args.root, s, args.resolution)
            masks[kind] = ids
            j = sequence_j(args.root, s, args.resolution, ids, objects)
            report["arrays"][kind]["sequences"][s] = {"J": round(j, 4), "frames": len(ids), "fps": round(fps, 2)}
            print(f"{kind:6s} {s:14s} J={j:.4f} frames={len(ids)} fps={fps:.1f}", file=sys.stderr)
        if args.compare_arrays:
            for a, b in zip(masks["numpy"], masks["torch"]):
                union = np.logical_or(a > 0, b > 0).sum()
                pair_ious.append(1.0 if union == 0 else float(np.logical_and(a == b, a > 0).sum() / union))
    for kind in kinds:
        js = [r["J"] for r in report["arrays"][kind]["sequences"].values()]
        report["arrays"][kind]["J_mean"] = round(float(np.mean(js)), 4)
    if args.compare_arrays:
        report["numpy_vs_torch_iou"] = {
            "frames": len(pair_ious),
            "min": round(min(pair_ious), 4),
            "mean": round(float(np.mean(pair_ious)), 5),
            "p1": round(float(np.percentile(pair_ious, 1)), 4),
            "J_mean_difference": round(report["arrays"]["numpy"]["J_mean"] - report["arrays"]["torch"]["J_mean"], 4),
        }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
