"""Peak memory of ``vostool segment`` on a long video against a short one of the same size.

Builds a 480p H.264 video from a DAVIS sequence played forwards and backwards (real frames,
real motion) of ``--long`` and ``--short`` frames, segments each in a fresh process, and reports
each process's peak RSS and their ratio (the target is <= 1.2: frames are streamed, queues are
bounded, nothing grows with the video's length).

    python benchmarks/memory_long_video.py --seq ../shared/data/davis16-480p/JPEGImages/480p/bear \
        --mask ../shared/data/davis16-480p/Annotations/480p/bear/00000.png
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

CHILD = """
import resource, sys, json, vostool
s = vostool.segment(sys.argv[1], sys.argv[2], sys.argv[3], method=sys.argv[4], device="cpu")
print(json.dumps({"frames": s["frames"], "fps": s["fps"], "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def pingpong_video(seq: Path, n: int, dest: Path) -> Path:
    import imageio_ffmpeg

    files = sorted(seq.glob("*.jpg"))
    order = files + files[-2:0:-1]
    first = cv2.imread(str(files[0]))
    h, w = first.shape[:2]
    gen = imageio_ffmpeg.write_frames(
        str(dest),
        (w, h),
        fps=24,
        codec="libx264",
        quality=None,
        macro_block_size=1,
        output_params=["-crf", "20", "-preset", "ultrafast"],
        ffmpeg_log_level="error",
    )
    gen.send(None)
    cache = {}
    for i in range(n):
        f = order[i % len(order)]
        if f not in cache:
            cache[f] = np.ascontiguousarray(cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB))
        gen.send(cache[f])
    gen.close()
    return dest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seq", type=Path, required=True)
    ap.add_argument("--mask", type=Path, required=True)
    ap.add_argument("--short", type=int, default=200)
    ap.add_argument("--long", type=int, default=2000)
    ap.add_argument("--method", default="flow")
    args = ap.parse_args()
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in (args.short, args.long):
            video = pingpong_video(args.seq, n, Path(tmp) / f"v{n}.mp4")
            r = subprocess.run(
                [sys.executable, "-c", CHILD, str(video), str(args.mask), str(Path(tmp) / f"o{n}"), args.method],
                check=True,
                capture_output=True,
                text=True,
            )
            out[n] = json.loads(r.stdout.strip().splitlines()[-1])
            print(f"{n} frames: {out[n]}", flush=True)
    ratio = out[args.long]["peak_rss_mib"] / out[args.short]["peak_rss_mib"]
    print(json.dumps({"runs": out, "ratio_long_over_short": round(ratio, 3)}, indent=1))


if __name__ == "__main__":
    main()
