"""End-to-end throughput of ``vostool segment`` (decode -> flow -> warp -> method -> write) on
real 480p DAVIS frames, as a frame folder (JPEG decode) and as an H.264 mp4.

    python benchmarks/segment_throughput.py --root ../shared/data/davis16-480p --runs 5

Reports, per input kind and output setting, the median FPS over ``--runs`` runs of all the
sequences back to back, and the median per-stage milliseconds. Absolute numbers hold for the
machine it ran on; compare settings within one run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import cv2
import numpy as np

import vostool


def make_mp4(frames_dir: Path, dest: Path, fps: float = 24.0) -> Path:
    import imageio_ffmpeg

    files = sorted(frames_dir.glob("*.jpg"))
    first = cv2.imread(str(files[0]))
    h, w = first.shape[:2]
    gen = imageio_ffmpeg.write_frames(
        str(dest),
        (w, h),
        fps=fps,
        codec="libx264",
        quality=None,
        macro_block_size=1,
        output_params=["-crf", "18", "-preset", "fast"],
        ffmpeg_log_level="error",
    )
    gen.send(None)
    for f in files:
        gen.send(np.ascontiguousarray(cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB)))
    gen.close()
    return dest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, required=True, help="DAVIS-layout folder (JPEGImages/480p, Annotations/480p)")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--method", default="flow")
    ap.add_argument("--flow", default="dis")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--inputs", default="folder,mp4")
    ap.add_argument("--overlay", default="off,on", help="off,on: with and without overlay.mp4")
    args = ap.parse_args()
    seqs = sorted(p.name for p in (args.root / "JPEGImages/480p").iterdir() if p.is_dir())
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        sources = {}
        for s in seqs:
            sources[("folder", s)] = args.root / "JPEGImages/480p" / s
            if "mp4" in args.inputs:
                sources[("mp4", s)] = make_mp4(args.root / "JPEGImages/480p" / s, t / f"{s}.mp4")
        for kind in args.inputs.split(","):
            for ov in args.overlay.split(","):
                fps_runs, stage_runs = [], []
                for _ in range(args.runs):
                    frames, wall, stages = 0, 0.0, {}
                    for s in seqs:
                        summary = vostool.segment(
                            sources[(kind, s)],
                            str(args.root / "Annotations/480p" / s / "00000.png"),
                            t / "out" / s,
                            method=args.method,
                            flow=args.flow,
                            device=args.device,
                            overlay=(ov == "on"),
                            overwrite=True,
                        )
                        frames += summary["frames"]
                        wall += summary["wall_seconds"]
                        for k, v in summary["stages"].items():
                            stages.setdefault(k, []).append(v["median_ms"])
                    fps_runs.append(frames / wall)
                    stage_runs.append({k: statistics.median(v) for k, v in stages.items()})
                key = f"{kind}, overlay {ov}"
                results[key] = {
                    "frames": frames,
                    "fps_median": round(statistics.median(fps_runs), 2),
                    "fps_runs": [round(x, 2) for x in fps_runs],
                    "stage_median_ms": {k: round(statistics.median(r[k] for r in stage_runs), 2) for k in stage_runs[0]},
                }
                print(
                    f"{key:22s} {results[key]['fps_median']:7.2f} fps  runs={results[key]['fps_runs']}  stages={results[key]['stage_median_ms']}",
                    flush=True,
                )
    print(json.dumps({"method": args.method, "flow": args.flow, "device": args.device, "results": results}, indent=1))


if __name__ == "__main__":
    main()
