"""Wall time of many short clips: a serial shell-style loop of ``vostool segment`` vs ``vostool
batch --workers N`` vs ``vostool batch --ray local``, and a batch killed (SIGKILL) mid-way and run
again.

    python benchmarks/batch_wall.py --root ../shared/data/davis16-train-240p --clips 24 --frames 30 --runs 3

Clips: the first ``--frames`` frames of ``--clips`` DAVIS sequences as H.264 mp4 files with the
first annotation as the mask (``NAME.mp4`` + ``NAME_mask.png``). Every path runs the same
``vostool segment`` work per clip (default options: overlay.mp4 included) in a fresh process, as a
user would type it; the median wall time over ``--runs`` runs is reported with the per-job
overhead each path pays (process start-up and model load per clip for the loop; worker start-up
once per worker and the time outside the frame loop per clip for the batch), and how many masks
and pixels differ from the first path's (none with the flow method; with a network on the CPU a
different PyTorch thread count per process can flip a pixel). ``--kill`` adds the kill / rerun check. The load
average of the machine is printed with the results: the numbers hold for that machine and load.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
VOSTOOL = [sys.executable, "-m", "vostool"]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}


def make_clips(root: Path, dest: Path, clips: int, frames: int) -> list[str]:
    """The clips, cropped to an even width (H.264's 4:2:0 needs it; DAVIS 240p is 427 wide)."""
    import cv2
    from segment_throughput import make_mp4

    images, annotations = root / "JPEGImages" / "240p", root / "Annotations" / "240p"
    names = sorted(p.name for p in images.iterdir())[:clips]
    dest.mkdir(parents=True, exist_ok=True)
    for name in names:
        first = dest / ".frames" / name
        first.mkdir(parents=True, exist_ok=True)
        for f in sorted((images / name).glob("*.jpg"))[:frames]:
            img = cv2.imread(str(f))
            cv2.imwrite(str(first / f.name), img[:, : img.shape[1] // 2 * 2], [cv2.IMWRITE_JPEG_QUALITY, 95])
        make_mp4(first, dest / f"{name}.mp4")
        mask = cv2.imread(str(annotations / name / "00000.png"), cv2.IMREAD_UNCHANGED)
        cv2.imwrite(str(dest / f"{name}_mask.png"), mask[:, : mask.shape[1] // 2 * 2])
    shutil.rmtree(dest / ".frames")
    return names


def serial_loop(clips: Path, names: list[str], out: Path, extra: list[str]) -> dict:
    """What examples/segment_all.sh did: one ``vostool segment`` process per clip."""
    t0 = time.perf_counter()
    overhead = []
    for name in names:
        s = time.perf_counter()
        cmd = [*VOSTOOL, "segment", str(clips / f"{name}.mp4"), "--mask", str(clips / f"{name}_mask.png"), "-o", str(out / name), "-q"]
        subprocess.run([*cmd, *extra], check=True, env=ENV)
        job = time.perf_counter() - s
        loop = json.loads((out / name / "timing.json").read_text())["summary"]["wall_seconds"]
        overhead.append(job - loop)
    return {"wall": time.perf_counter() - t0, "per_job_overhead": statistics.median(overhead)}


def batch(clips: Path, out: Path, extra: list[str]) -> dict:
    t0 = time.perf_counter()
    subprocess.run([*VOSTOOL, "batch", str(clips), "-o", str(out), "-q", *extra], check=True, env=ENV)
    wall = time.perf_counter() - t0
    report = json.loads((out / "batch.json").read_text())
    s, ex = report["summary"], report["executor"]
    return {
        "wall": wall,
        "per_job_overhead": s["job_overhead_seconds_median"],
        "worker_startup": ex.get("worker_startup_seconds", []),
        "model_loads": s["session_setup_seconds_total"],
        "inside_batch": report["wall_seconds"],
    }


def mask_difference(a: Path, b: Path, names: list[str]) -> dict[str, int]:
    """Masks (files) and pixels of ``b`` that differ from ``a``."""
    from vostool.io.masks import read_index_png

    files = pixels = 0
    for name in names:
        for f in sorted((a / name / "masks").glob("*.png")):
            if (b / name / "masks" / f.name).read_bytes() != f.read_bytes():
                files += 1
                pixels += int((read_index_png(f) != read_index_png(b / name / "masks" / f.name)).sum())
    return {"masks_differing": files, "pixels_differing": pixels}


def kill_and_rerun(clips: Path, names: list[str], work: Path, reference: Path, extra: list[str]) -> dict:
    """SIGKILL a ``--workers 2`` batch when about half the jobs are complete; run it again."""
    out = work / "killed"
    shutil.rmtree(out, ignore_errors=True)
    proc = subprocess.Popen([*VOSTOOL, "batch", str(clips), "-o", str(out), "-q", *extra], env=ENV)

    def complete() -> list[str]:
        done = []
        for n in names:
            try:
                if json.loads((out / n / "run.json").read_text())["status"] == "complete":
                    done.append(n)
            except (OSError, ValueError, KeyError):
                pass
        return done

    def midway() -> bool:  # half the jobs complete and another one part-way through its frames
        done = complete()
        return len(done) >= len(names) // 2 and any(len(list((out / n / "masks").glob("[!.]*.png"))) >= 5 for n in names if n not in done)

    while proc.poll() is None and not midway():
        time.sleep(0.02)
    family = descendants(proc.pid)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    time.sleep(2.0)
    before = complete()
    running = [n for n in names if n not in before and (out / n / "run.json").exists()]
    stamps = {p: p.stat().st_mtime_ns for n in before for p in (out / n).rglob("*") if p.is_file()}
    orphans = []
    for p in family:
        try:
            if Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                orphans.append(Path(f"/proc/{p}/cmdline").read_bytes().replace(b"\0", b" ")[:80].decode())
        except OSError:
            pass
    t0 = time.perf_counter()
    subprocess.run([*VOSTOOL, "batch", str(clips), "-o", str(out), "-q", *extra], env=ENV)
    rerun = time.perf_counter() - t0
    report = json.loads((out / "batch.json").read_text())
    return {
        "complete_at_kill": len(before),
        "interrupted_at_kill": running,
        "processes_of_the_batch": len(family),
        "processes_left_2s_after_kill": orphans,
        "after_rerun": report["counts"],
        "lost": [n for n in names if report["jobs"][n]["status"] not in ("done", "skipped")],
        "redone": [n for n in before if report["jobs"][n]["status"] != "skipped"],
        "finished_files_rewritten": sum(1 for p, t in stamps.items() if p.stat().st_mtime_ns != t),
        "resumed_from": {n: report["jobs"][n].get("resumed_from_frame") for n in running},
        "differences_from_uninterrupted": mask_difference(reference, out, names),
        "rerun_wall": rerun,
    }


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (workers, the fork server)."""
    out, todo = [], [pid]
    while todo:
        kids = subprocess.run(["ps", "-o", "pid=", "--ppid", str(todo.pop())], capture_output=True, text=True).stdout.split()
        out += [int(k) for k in kids]
        todo += [int(k) for k in kids]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=REPO.parent / "shared" / "data" / "davis16-train-240p")
    ap.add_argument("--clips", type=int, default=24)
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--work", type=Path, default=Path("/tmp/vostool-batch-wall"))
    ap.add_argument("--no-ray", action="store_true")
    ap.add_argument("--no-serial", action="store_true", help="leave out the serial loop (the slowest path)")
    ap.add_argument("--kill", action="store_true", help="also kill a batch mid-way and run it again")
    ap.add_argument("--kill-only", action="store_true", help="only the kill / rerun check (after one uninterrupted batch)")
    ap.add_argument("extra", nargs="*", help="options for every run, after --, e.g. -- --method agss --size 240")
    args = ap.parse_args()
    clips = args.work / "clips"
    names = make_clips(args.root, clips, args.clips, args.frames)
    paths = {} if args.no_serial else {"serial loop (vostool segment per clip)": lambda out: serial_loop(clips, names, out, args.extra)}
    paths["vostool batch --workers 1"] = lambda out: batch(clips, out, ["--workers", "1", *args.extra])
    paths[f"vostool batch --workers {args.workers}"] = lambda out: batch(clips, out, ["--workers", str(args.workers), *args.extra])
    if not args.no_ray:
        paths[f"vostool batch --ray local --workers {args.workers}"] = lambda out: batch(
            clips, out, ["--ray", "local", "--workers", str(args.workers), *args.extra]
        )
    if args.kill_only:
        paths = {f"vostool batch --workers {args.workers}": paths[f"vostool batch --workers {args.workers}"]}
        args.runs, args.kill = 1, True
    results: dict[str, list[dict]] = {k: [] for k in paths}
    reference = args.work / "reference"  # the first path's masks, which the others are compared with
    outs = {label: args.work / f"out{i}" for i, label in enumerate(paths)}
    for r in range(args.runs):
        for label, fn in paths.items():
            shutil.rmtree(outs[label], ignore_errors=True)
            results[label].append(fn(outs[label]))
            if r == 0 and label == next(iter(paths)):
                shutil.rmtree(reference, ignore_errors=True)
                shutil.copytree(outs[label], reference)
            results[label][-1].update(mask_difference(reference, outs[label], names))
            print(f"run {r + 1}: {label}: {results[label][-1]['wall']:.1f} s", file=sys.stderr)
    load = os.getloadavg()
    table = {}
    for label, runs in results.items():
        walls = [x["wall"] for x in runs]
        row = {"median_wall_s": round(statistics.median(walls), 1), "walls_s": [round(w, 1) for w in walls]}
        row["per_job_overhead_s"] = round(statistics.median(x["per_job_overhead"] for x in runs), 3)
        row["vs_first_path"] = {k: max(x[k] for x in runs) for k in ("masks_differing", "pixels_differing")}
        if "worker_startup" in runs[0]:
            row["worker_startup_s"] = [round(s, 1) for s in runs[-1]["worker_startup"]]
            row["model_loads_s"] = round(statistics.median(x["model_loads"] for x in runs), 2)
        table[label] = row
        print(f"{label:48s} {row}")
    report = {"clips": len(names), "frames_per_clip": args.frames, "options": args.extra, "loadavg": load, "paths": table}
    if args.kill:  # compared with an uninterrupted batch of the same workers (same threads per worker)
        same = outs[f"vostool batch --workers {args.workers}"]
        report["kill"] = kill_and_rerun(clips, names, args.work, same, ["--workers", str(args.workers), *args.extra])
        print(json.dumps(report["kill"], indent=1))
    print(f"load average at the end: {load}")
    (args.work / "results.json").write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
