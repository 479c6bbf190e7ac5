"""Scoring speed and exactness of ``vostool.bench`` on DAVIS-layout folders.

For each dataset folder, predictions are made from the ground truth with realistic errors
(shifted, eroded or dilated, a few flipped pixels: J and F well below 1) and written to a
temporary folder. Then:

* the fast scorer runs ``--repeats`` times with ``--workers`` processes (and once with 1):
  median seconds and frames per second are reported;
* an official-style scorer (the official toolkit's data flow: all masks of a sequence in one
  array, float64 one-hot expansion, whole-frame boundary maps and dilations per object and
  frame, one process) runs once, for a speed ratio measured in the same run;
* with ``--verify``, every per-frame J and F is compared with the literal reference
  implementation (:mod:`vostool.bench.reference`) and must be identical.

Usage:
    python benchmarks/score_speed.py ../shared/data/davis16-train-240p ../shared/data/davis16-480p --split train --workers 2
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from vostool.bench.metrics import boundary_radius, disk, f_from_counts
from vostool.bench.reference import reference_boundary, reference_f, reference_j
from vostool.bench.scoring import evaluate
from vostool.datasets import Dataset, open_dataset, read_annotation
from vostool.io.masks import read_index_png, write_index_png


def perturb(gt: np.ndarray, t: int, rng: np.random.Generator) -> np.ndarray:
    """A plausible prediction for frame ``t``: shifted by a few pixels, eroded or dilated, noisy."""
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    m = np.roll(gt, (t % 5) - 2, axis=1)
    m = cv2.erode(m, k) if t % 2 else cv2.dilate(m, k)
    flip = rng.random(m.shape) < 0.0005
    m[flip] = 1 - m[flip]
    return m


def make_predictions(ds: Dataset, out: Path) -> int:
    rng = np.random.default_rng(0)
    n = 0
    for seq in ds.sequences:
        (out / seq.name).mkdir(parents=True)
        for t, stem in enumerate(seq.annotated):
            gt = read_annotation(seq.annotation_path(stem), ds.binary)
            write_index_png(out / seq.name / f"{stem}.png", perturb(gt, t, rng))
            n += 1
    return n


def official_style(ds: Dataset, res: Path) -> tuple[float, int]:
    """The official toolkit's data flow, rebuilt from its description, in one process.

    Per sequence: every mask is read into one array, objects are expanded to one-hot masks by a
    float64 broadcast comparison, J is summed over whole frames, and F builds whole-frame
    boundary maps and dilates them with the disk for every object and frame.
    """
    start = time.perf_counter()
    frames = 0
    for seq in ds.sequences:
        stems = seq.annotated[1:-1]
        gt = np.stack([read_annotation(seq.annotation_path(s), ds.binary) for s in stems])
        pred = np.stack([read_index_png(res / seq.name / f"{s}.png") for s in stems])
        n_obj = max(1, int(read_annotation(seq.annotation_path(seq.annotated[0]), ds.binary).max()))
        ids = np.arange(1, n_obj + 1, dtype=np.float64)[:, None, None, None]
        gt_1h = np.ones((n_obj, *gt.shape)) * ids == gt[None]
        pred_1h = np.ones((n_obj, *pred.shape)) * ids == pred[None]
        kernel = disk(boundary_radius(*gt.shape[1:]))
        for k in range(n_obj):
            inter = np.sum(gt_1h[k] & pred_1h[k], axis=(-2, -1))
            union = np.sum(gt_1h[k] | pred_1h[k], axis=(-2, -1))
            _ = np.where(union == 0, 1.0, inter / np.maximum(union, 1))
            for t in range(len(stems)):
                bg = reference_boundary(gt_1h[k, t]).astype(np.uint8)
                bp = reference_boundary(pred_1h[k, t]).astype(np.uint8)
                dg, dp = cv2.dilate(bg, kernel), cv2.dilate(bp, kernel)
                f_from_counts(int(bp.sum()), int(bg.sum()), int((bp * dg).sum()), int((bg * dp).sum()))
        frames += len(stems)
    return time.perf_counter() - start, frames


def verify(ds: Dataset, res: Path, result) -> int:  # noqa: ANN001
    """Compare every per-frame value with the literal reference; returns the number compared."""
    n = 0
    for seq in result.sequences:
        info = ds.sequence(seq.name)
        for obj in seq.objects:
            for i, stem in enumerate(obj.frames):
                gt = read_annotation(info.annotation_path(stem), ds.binary) == obj.object_id
                pred = read_index_png(res / seq.name / f"{stem}.png") == obj.object_id
                if obj.j[i] != reference_j(gt, pred) or obj.f[i] != reference_f(gt, pred):
                    raise SystemExit(
                        f"MISMATCH {seq.name} {stem}: fast J={obj.j[i]!r} F={obj.f[i]!r}, "
                        f"reference J={reference_j(gt, pred)!r} F={reference_f(gt, pred)!r}"
                    )
                n += 2
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("roots", nargs="+", type=Path)
    ap.add_argument("--split", default="train")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--verify", action="store_true", help="compare every value with the literal reference (slow)")
    args = ap.parse_args()
    for root in args.roots:
        ds = open_dataset(root, split=args.split)
        with tempfile.TemporaryDirectory() as tmp:
            res = Path(tmp)
            make_predictions(ds, res)
            runs, cpu = [], []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                result = evaluate(ds, res, workers=args.workers)
                runs.append(time.perf_counter() - t0)
                cpu.append(result.score_cpu_seconds)
            t0 = time.perf_counter()
            single = evaluate(ds, res, workers=1)
            t_single = time.perf_counter() - t0
            assert single.global_metrics() == result.global_metrics()
            t_off, n_off = official_style(ds, res)
            n = result.frames_read
            med = statistics.median(runs)
            g = result.global_metrics()
            print(f"{root} ({ds.kind} {ds.resolution}, {len(ds.sequences)} sequences, {n} scored frames)")
            print(f"  J&F {g['J&F-Mean']:.3f}  J {g['J-Mean']:.3f}  F {g['F-Mean']:.3f}")
            print(
                f"  fast, {args.workers} workers: median {med:.3f} s of {[round(r, 3) for r in runs]} -> {n / med:.0f} frames/s; "
                f"scoring CPU {statistics.median(cpu):.3f} s ({statistics.median(cpu) / n * 1e3:.2f} ms/frame)"
            )
            print(f"  fast, 1 process: {t_single:.3f} s -> {n / t_single:.0f} frames/s")
            print(
                f"  official-style, 1 process: {t_off:.3f} s -> {n_off / t_off:.0f} frames/s; "
                f"ratio {t_off / med:.1f}x ({args.workers} workers), {t_off / t_single:.1f}x (1 process)"
            )
            print(
                f"  at these rates 1,376 frames of this size (DAVIS 2016 val) take {1376 * med / n:.2f} s "
                f"({args.workers} workers, scoring only; whole process, start-up included, against the official toolkit: "
                "benchmarks/score_process.py)"
            )
            if args.verify:
                t0 = time.perf_counter()
                count = verify(ds, res, result)
                print(f"  verified {count} per-frame values identical to the reference ({time.perf_counter() - t0:.0f} s)")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
