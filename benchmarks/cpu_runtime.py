"""Frames per second of a learned method on the CPU through the real session (flow, warp,
network, aggregation), with the network run by torch or by ONNX Runtime
(:mod:`vostool.inference.blocks`), at 1, 2, 4 and 8 objects.

Each cell: a synthetic clip (:func:`vostool.datasets.speed_clip`) at ``--size`` (shorter side;
16:9), ``--warmup`` frames untimed (the first network frame is where ONNX Runtime blocks are
chosen and exported), then ``--frames`` timed frames; the table gives the median wall ms per
frame, frames per second, and (with ``--threads 1``) the CPU ms of the thread, which other load
on the machine changes less than the wall time.

    python benchmarks/cpu_runtime.py --method agss --weights default --size 240 --objects 1,2,4,8
    python benchmarks/cpu_runtime.py --method agss --weights random --arch '{"depth": 18, "base_width": 32, "mdim": 64}'
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

import vostool  # noqa: E402
from vostool.datasets import speed_clip  # noqa: E402


def cell(args: argparse.Namespace, runtime: str, k: int) -> dict:
    w = int(round(args.size * 16 / 9 / 2)) * 2
    frames, first = speed_clip(k, args.size, 1 + args.warmup + args.frames, width=w)
    weights = None if args.weights == "default" else args.weights
    kwargs = json.loads(args.arch) if args.arch else {}
    s = vostool.create_session(args.method, weights=weights, device="cpu", runtime=runtime, flow=args.flow, method_kwargs=kwargs)
    wall, cpu = [], []
    for i, res in enumerate(s.propagate(frames, {0: first})):
        if i == 0:
            t_cpu = time.thread_time()
            continue
        if i > args.warmup:
            wall.append(res.seconds)
            cpu.append(time.thread_time() - t_cpu)
        t_cpu = time.thread_time()
    med = statistics.median(wall)
    return {
        "method": args.method,
        "runtime": s.describe()["runtime"],
        "objects": k,
        "ms_per_frame": round(med * 1e3, 1),
        "fps": round(1.0 / med, 1),
        "thread_cpu_ms": round(statistics.median(cpu) * 1e3, 1),
        "threads": torch.get_num_threads(),
        "load": round(os.getloadavg()[0], 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--method", default="agss")
    ap.add_argument("--weights", default="default", help="default (shipped), random, or a file")
    ap.add_argument("--arch", default=None, help="builder keyword arguments as JSON (with --weights random)")
    ap.add_argument("--flow", default=None)
    ap.add_argument("--size", type=int, default=240)
    ap.add_argument("--objects", default="1,2,4,8")
    ap.add_argument("--runtimes", default="torch,onnxruntime")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--frames", type=int, default=10)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print("| method | runtime | objects | ms/frame | FPS | thread CPU ms | threads | load |")
    print("|---|---|---|---|---|---|---|---|")
    for k in (int(v) for v in args.objects.split(",")):
        for runtime in args.runtimes.split(","):
            r = cell(args, runtime, k)
            print(
                f"| {r['method']} | {r['runtime']} | {k} | {r['ms_per_frame']} | {r['fps']} | {r['thread_cpu_ms']} | {r['threads']} | {r['load']} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
