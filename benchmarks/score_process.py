"""Whole-process speed of ``vostool bench --eval-only`` (start-up, imports, worker processes,
PNG decoding, J and F, reports) against the official DAVIS toolkit on the same folder.

The folder: a DAVIS 2016 layout of 20 sequences and 1,376 annotated 854x480 frames (the size
of DAVIS 2016 val), made from the 480p sequences under ``--root`` (each used several times
under new names, cut to reach 1,376 frames), with predictions made from the ground truth with
realistic errors (:func:`score_speed.perturb`).

The official toolkit (``davis2017-evaluation``: ``evaluation_method.py``, semi-supervised, val)
runs when ``--official DIR`` points at a checkout of it, under ``--official-python`` (an
environment with its requirements: numpy, pandas, scipy, scikit-image, opencv, Pillow, tqdm),
interleaved with vostool's runs. It reads DAVIS 2017's layout, so it gets a copy of the folder in
that layout: ``ImageSets/2017/val.txt`` and annotations stored as object ids (0/1 palette PNGs;
it would read DAVIS 2016's 0/255 files as void everywhere), the images linked. Both score the
same predictions; their J&F must agree. Without ``--official`` the ratio is computed against
``--official-fps`` (64.6: 21.3 s on these 1,376 frames, the median of 5 runs on a 2-core machine
on 2026-12-01; two other measurements that day gave 20.4 and 21.8 s, earlier days 22.7-23.8 s).

    python benchmarks/score_process.py --root ../shared/data/davis16-480p --runs 3
    python benchmarks/score_process.py --root ../shared/data/davis16-480p --tree . --tree /work/main   # compare checkouts
    python benchmarks/score_process.py --root ../shared/data/davis16-480p --official ../davis2017-evaluation \
        --official-python ../davis-venv/bin/python
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from score_speed import perturb  # noqa: E402

from vostool.datasets import read_annotation  # noqa: E402
from vostool.io.masks import read_index_png, write_index_png  # noqa: E402

FRAMES = 1376
SEQUENCES = 20


def build(root: Path, dest: Path) -> tuple[Path, Path, int]:
    """``(dataset root, predictions folder, frames)`` of a 20-sequence, 1,376-frame DAVIS 2016 copy."""
    names = sorted(p.name for p in (root / "Annotations" / "480p").iterdir() if p.is_dir())
    available = [len(list((root / "Annotations" / "480p" / names[i % len(names)]).glob("*.png"))) for i in range(SEQUENCES)]
    counts = [0] * SEQUENCES
    while sum(counts) < FRAMES:  # one frame at a time to the sequences that still have some
        open_ = [i for i in range(SEQUENCES) if counts[i] < available[i]]
        if not open_:
            break
        for i in open_[: FRAMES - sum(counts)]:
            counts[i] += 1
    rng = np.random.default_rng(0)
    ds, preds = dest / "DAVIS", dest / "results"
    val = []
    total = 0
    for i in range(SEQUENCES):
        src = names[i % len(names)]
        name = f"{src}-{i // len(names)}"
        stems = sorted(p.stem for p in (root / "Annotations" / "480p" / src).glob("*.png"))[: counts[i]]
        (ds / "Annotations" / "480p" / name).mkdir(parents=True)
        (ds / "JPEGImages" / "480p" / name).mkdir(parents=True)
        (preds / name).mkdir(parents=True)
        for t, stem in enumerate(stems):
            shutil.copyfile(root / "Annotations" / "480p" / src / f"{stem}.png", ds / "Annotations" / "480p" / name / f"{stem}.png")
            shutil.copyfile(root / "JPEGImages" / "480p" / src / f"{stem}.jpg", ds / "JPEGImages" / "480p" / name / f"{stem}.jpg")
            gt = (read_index_png(root / "Annotations" / "480p" / src / f"{stem}.png") > 0).astype(np.uint8)
            write_index_png(preds / name / f"{stem}.png", perturb(gt, t, rng))
        total += len(stems)
        val.append(name)
    (ds / "ImageSets" / "2016").mkdir(parents=True)
    (ds / "ImageSets" / "2016" / "val.txt").write_text("\n".join(val) + "\n")
    return ds, preds, total


def official_layout(ds: Path, dest: Path) -> Path:
    """A DAVIS 2017-layout copy of the DAVIS 2016 folder ``ds`` for the official toolkit."""
    (dest / "ImageSets" / "2017").mkdir(parents=True)
    shutil.copyfile(ds / "ImageSets" / "2016" / "val.txt", dest / "ImageSets" / "2017" / "val.txt")
    (dest / "JPEGImages").symlink_to(ds / "JPEGImages")
    for png in sorted((ds / "Annotations" / "480p").glob("*/*.png")):
        out = dest / "Annotations" / "480p" / png.parent.name / png.name
        out.parent.mkdir(parents=True, exist_ok=True)
        write_index_png(out, read_annotation(png, True))
    return dest


def run_official(official: Path, ds: Path, preds: Path, python: str) -> tuple[float, float]:
    """``(seconds, J&F)`` of one whole run of the official toolkit on the folder (semi-supervised, val)."""
    for csv in preds.glob("*.csv"):  # it would reuse them instead of scoring
        csv.unlink()
    cmd = [python, str(official / "evaluation_method.py"), "--task", "semi-supervised", "--results_path", str(preds)]
    cmd += ["--davis_path", str(ds), "--set", "val"]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=str(official))
    seconds = time.perf_counter() - t0
    table = preds / "global_results-val.csv"
    if not table.is_file():  # it reports some errors by printing and exiting 0
        raise SystemExit(f"the official toolkit wrote no results:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    header, values = table.read_text().splitlines()[:2]
    return seconds, float(dict(zip(header.split(","), values.split(",")))["J&F-Mean"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, required=True, help="DAVIS 2016 480p folder (Annotations/480p, JPEGImages/480p)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--tree", type=Path, action="append", help="a vostool checkout to run (repeat to compare; default: this one)")
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--official", type=Path, default=None, help="a checkout of davis2017-evaluation (runs it for the ratio)")
    ap.add_argument("--official-python", default=sys.executable, help="the Python that has the official toolkit's requirements")
    ap.add_argument("--official-fps", type=float, default=1376 / 21.3, help="the official toolkit's frames/s when it is not run")
    args = ap.parse_args()
    trees = [t.resolve() for t in (args.tree or [HERE.parent])]
    official_dir = args.official.resolve() if args.official is not None else None
    with tempfile.TemporaryDirectory() as tmp:
        ds, preds, frames = build(args.root, Path(tmp))
        cmd = [args.python, "-m", "vostool", "bench", "--eval-only", "--root", str(ds), "--dataset", "davis16", "--split", "val"]
        cmd += ["--results", str(preds), "-o", str(Path(tmp) / "report"), "-q"]
        cmd += ["--workers", str(args.workers)] if args.workers else []
        envs = {str(t): {**os.environ, "PYTHONPATH": str(t)} for t in trees}
        for env in envs.values():
            # cwd outside every checkout: `python -m vostool` would otherwise import the one in the cwd
            subprocess.run(cmd, env=env, cwd=tmp, check=True, capture_output=True)  # warm the page cache
        runs: dict[str, list[float]] = {t: [] for t in envs}
        if official_dir is not None:
            official_ds = official_layout(ds, Path(tmp) / "DAVIS2017")
            official_preds = Path(tmp) / "results-official"
            shutil.copytree(preds, official_preds)
            _, official_jf = run_official(official_dir, official_ds, official_preds, args.official_python)  # warm
            official_runs: list[float] = []
        for i in range(args.runs):
            for tree, env in envs.items():  # interleaved: a change of load hits every checkout alike
                load = os.getloadavg()[0]
                t0 = time.perf_counter()
                subprocess.run(cmd, env=env, cwd=tmp, check=True, capture_output=True)
                runs[tree].append(time.perf_counter() - t0)
                print(f"run {i + 1} {tree}: {runs[tree][-1]:.3f} s, load {load:.2f}", file=sys.stderr, flush=True)
            if official_dir is not None:
                off, official_jf = run_official(official_dir, official_ds, official_preds, args.official_python)
                official_runs.append(off)
                print(f"run {i + 1} official: {off:.3f} s", file=sys.stderr, flush=True)
        med = statistics.median(runs[str(trees[0])])
        if official_dir is not None:
            off = statistics.median(official_runs)
            official = {
                "seconds": round(off, 2),
                "runs": [round(x, 2) for x in official_runs],
                "fps": round(frames / off, 1),
                "source": "run here",
                "J&F": official_jf,
            }
        else:
            off = frames / args.official_fps
            official = {"seconds": round(off, 2), "fps": round(args.official_fps, 1), "source": "the note's figure"}
        g = json.loads(next((Path(tmp) / "report").glob("results-*.json")).read_text()).get("global", {})
    report = {
        "frames": frames,
        "sequences": SEQUENCES,
        "vostool": {
            t: {
                "seconds_median": round(statistics.median(r), 3),
                "runs": [round(x, 3) for x in r],
                "speedup": round(off / statistics.median(r), 1),
            }
            for t, r in runs.items()
        },
        "official": official,
        "speedup": round(off / med, 1),
        "J&F": g.get("J&F-Mean"),
        "load_after": os.getloadavg(),
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
