"""Whole-process speed of ``vostool segment --method flow`` as a user runs it, against a naive
20-line script doing the same job (``benchmarks/naive_flow.py``), measured in one run.

The input is one frame folder of 384 real 854x480 DAVIS frames: the 2016 480p sequences bear
(82), boat (75), car-turn (80), elephant (80) and tennis (the first 67 of 70) concatenated in that
order, with bear's first annotation as the mask of frame 0. Each configuration runs ``--runs``
times as a subprocess (Python start-up, imports, decode, flow, warp, PNG and H.264 encoding:
everything the user waits for); the table gives the median wall time and frames per second.

    python benchmarks/flow_pipeline.py --root ../shared/data/davis16-480p --runs 3
    python benchmarks/flow_pipeline.py --root ../shared/data/davis16-480p --tree /work/main   # another checkout

The machine's load (``os.getloadavg``) is printed with every run: numbers taken under load say
little in absolute terms, ratios measured in the same run more.
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

SEQUENCES = ("bear", "boat", "car-turn", "elephant", "tennis")
FRAMES = 384
HERE = Path(__file__).resolve().parent


def build_folder(root: Path, dest: Path) -> tuple[Path, Path]:
    """Link the first :data:`FRAMES` frames of :data:`SEQUENCES` into ``dest/frames`` as
    ``00000.jpg`` ...; returns the folder and frame 0's mask."""
    frames = dest / "frames"
    frames.mkdir(parents=True)
    n = 0
    for seq in SEQUENCES:
        for jpg in sorted((root / "JPEGImages" / "480p" / seq).glob("*.jpg")):
            if n == FRAMES:
                break
            shutil.copyfile(jpg, frames / f"{n:05d}.jpg")
            n += 1
    return frames, root / "Annotations" / "480p" / SEQUENCES[0] / "00000.png"


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stderr[-2000:]}")
    return dt, r.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, required=True, help="DAVIS 2016 480p folder (JPEGImages/480p, Annotations/480p)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--tree", type=Path, default=HERE.parent, help="the vostool checkout to run (default: this one)")
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument(
        "--configs",
        default="no-overlay,overlay,naive",
        help="which of no-overlay, overlay, naive (and with --before: before-no-overlay, before-overlay) to run",
    )
    ap.add_argument(
        "--before",
        type=Path,
        default=None,
        help="another checkout (e.g. the version before a change) run as before-no-overlay / before-overlay",
    )
    ap.add_argument("--extra", default="", help="extra vostool segment arguments, e.g. '--flow farneback'")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args()
    env = {**os.environ, "PYTHONPATH": str(args.tree.resolve())}
    before_env = {**os.environ, "PYTHONPATH": str(args.before.resolve())} if args.before else env
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        frames, mask = build_folder(args.root, t)
        base = [args.python, "-m", "vostool", "segment", str(frames), "--mask", str(mask), "--method", "flow", "--flow", "dis"]
        base += ["--device", "cpu", "--quiet", "--json", "--overwrite", *args.extra.split()]
        commands = {
            "no-overlay": [*base, "--no-overlay", "-o", str(t / "out")],
            "overlay": [*base, "-o", str(t / "out")],
            "naive": [args.python, str(HERE / "naive_flow.py"), str(frames), str(mask), str(t / "naive")],
        }
        commands["before-no-overlay"] = commands["no-overlay"]
        commands["before-overlay"] = commands["overlay"]
        envs = {n: before_env if n.startswith("before-") else env for n in commands}
        names = [c for c in args.configs.split(",") if c]
        for name in names:
            timed(commands[name], envs[name])  # warm the page cache and the bytecode
        runs: dict[str, list[float]] = {n: [] for n in names}
        stages: dict[str, list[dict]] = {n: [] for n in names}
        for i in range(args.runs):
            for name in names:  # interleaved, so a change of load hits every configuration alike
                load = os.getloadavg()[0]
                dt, out = timed(commands[name], envs[name])
                runs[name].append(dt)
                if name != "naive":
                    summary = json.loads(out)
                    stages[name].append({k: v["median_ms"] for k, v in summary["stages"].items()})
                print(f"run {i + 1} {name:10s} {dt:6.2f} s  {FRAMES / dt:6.1f} fps  load {load:.2f}", file=sys.stderr, flush=True)
        for name in names:
            med = statistics.median(runs[name])
            results[name] = {"seconds_median": round(med, 3), "fps": round(FRAMES / med, 1), "runs": [round(r, 3) for r in runs[name]]}
            if stages[name]:
                results[name]["stage_median_ms"] = {k: round(statistics.median(s[k] for s in stages[name]), 2) for k in stages[name][0]}
    if "naive" in results:
        for name in names:
            if name != "naive":
                results[name]["speedup_vs_naive"] = round(results["naive"]["seconds_median"] / results[name]["seconds_median"], 2)
    report = {
        "frames": FRAMES,
        "sequences": SEQUENCES,
        "tree": str(args.tree),
        "before": str(args.before) if args.before else None,
        "load_after": os.getloadavg(),
        "results": results,
    }
    print(json.dumps(report, indent=1))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
