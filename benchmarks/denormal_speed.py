"""Seconds per frame of every learned method on the CPU with and without subnormal floats
flushed to zero (``torch.set_flush_denormal``, what :func:`vostool.inference.device.resolve_device`
sets for every torch run), paper-size networks with random weights at 854x480.

Each cell runs in its own process (the setting is per thread and torch's worker threads copy it
when they start, so it must be made before torch runs anything): build the method, memorize
frame 0 of a synthetic clip with K objects, then time ``--frames`` frames (predict + update).

    python benchmarks/denormal_speed.py --methods agss,ovsnet,savos,embedding --objects 1,5 --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def child(name: str, k: int, flush: bool, frames: int, threads: int, variant: str | None) -> dict:
    import torch

    torch.set_num_threads(threads)
    if flush:
        torch.set_flush_denormal(True)  # before any torch work: the pool's threads copy it
    sys.path.insert(0, str(REPO))
    from vostool.datasets import speed_clip
    from vostool.models import create_method

    torch.manual_seed(0)
    method = create_method(name, variant=variant).eval()
    clip, first = speed_clip(k, 480, frames + 1, width=854)
    images = [torch.from_numpy(f).permute(2, 0, 1)[None].float().div_(255) for f in clip]
    prob = torch.stack([torch.from_numpy(first == i) for i in range(k + 1)]).float()
    times = []
    with torch.inference_mode():
        state = method.init_state()
        method.memorize(state, images[0], prob, list(range(1, k + 1)))
        method.update(state, images[0], prob)
        for t in range(1, frames + 1):
            t0 = time.perf_counter()
            warped = prob[1:] if method.uses_flow else torch.zeros_like(prob[1:])
            prob = method.predict(state, images[t], warped).float()
            method.update(state, images[t], prob)
            times.append(time.perf_counter() - t0)
    return {"method": name, "objects": k, "flush": flush, "seconds": round(min(times), 3), "load": round(os.getloadavg()[0], 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", default="agss,ovsnet,savos,embedding")
    ap.add_argument("--objects", default="1,5")
    ap.add_argument("--frames", type=int, default=1, help="frames timed per cell (the fastest is reported)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--variant", default=None, help="paper (default) or tiny")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        name, k, flush = args.child.split(":")
        print(json.dumps(child(name, int(k), flush == "on", args.frames, args.threads, args.variant)))
        return
    rows = []
    print("| method | objects | subnormals kept (s) | flushed (s) | speed-up | load |")
    print("|---|---|---|---|---|---|")
    for name in args.methods.split(","):
        for k in (int(v) for v in args.objects.split(",")):
            cell = {}
            for flush in ("off", "on"):
                cmd = [
                    sys.executable,
                    __file__,
                    "--child",
                    f"{name}:{k}:{flush}",
                    "--frames",
                    str(args.frames),
                    "--threads",
                    str(args.threads),
                ]
                cmd += ["--variant", args.variant] if args.variant else []
                r = subprocess.run(cmd, capture_output=True, text=True, check=True)
                cell[flush] = json.loads(r.stdout.strip().splitlines()[-1])
            rows.append(cell)
            off, on = cell["off"]["seconds"], cell["on"]["seconds"]
            print(f"| {name} | {k} | {off:.2f} | {on:.2f} | {off / on:.2f}x | {cell['off']['load']}, {cell['on']['load']} |", flush=True)
    print(json.dumps(rows), file=sys.stderr)


if __name__ == "__main__":
    main()
