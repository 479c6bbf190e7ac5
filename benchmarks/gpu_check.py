"""The prepared GPU check (run by ``benchmarks/gpu_check.sh``): one command that measures what a
CUDA machine does and writes ``gpu_check.json`` and ``gpu_check.md`` to a folder.

Sections (each is timed; a failing one is recorded with its error and the others still run):

* ``methods``: every learned method's frames per second at 1/2/4/8 objects, network alone
  (``predict`` + ``update``, after ``memorize`` of frame 0), 854x480, bf16 autocast, paper size
  and, where vostool ships weights, shipped size (random weights: speed only), eager and with
  the heavy blocks captured as CUDA graphs (``--runtime cuda-graphs``, the CUDA default).
* ``segment``: whole ``vostool segment`` processes on a 480p H.264 mp4 (decode to written
  masks, no overlay): ``flow``, shipped ``agss`` at its size (240) and paper-size ``agss`` in
  bf16, each with the default runtime (CUDA graphs) and ``--runtime torch``.
* ``raft_small``: milliseconds per 480p frame pair of RAFT-small (12 iterations), fp32 and bf16.
* ``train_step``: one AGSS-VOS training step (paper size, 8-frame clips, batch 1, 320x224 crops
  as the recipe): seconds and peak GPU memory.
* ``correctness``: the example clip (``examples/bear.mp4``) through every shipped network and the
  ``flow`` method on the CPU and on the device: per-frame IoU of the masks (fp32; agss in bf16 too).

``--device cpu`` is the check's own smoke test: the same code on tiny networks, small frames and
fewer objects, in under two minutes on two cores.

    bash benchmarks/gpu_check.sh gpu-check/              # CUDA (default), < 8 minutes on an H100/H200
    bash benchmarks/gpu_check.sh /tmp/smoke --device cpu
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from flops import shipped_arch  # noqa: E402  (benchmarks/ is the script's folder)

import vostool  # noqa: E402
from vostool.datasets import speed_clip  # noqa: E402
from vostool.inference import blocks  # noqa: E402
from vostool.io.masks import read_mask, write_index_png  # noqa: E402
from vostool.io.video import VideoWriter, open_video  # noqa: E402
from vostool.models import create_method  # noqa: E402

METHODS = ("agss", "savos", "ovsnet", "embedding")


class Plan:
    """Sizes of the check: the real one on CUDA, a smoke test on the CPU."""

    def __init__(self, device: str) -> None:
        self.cuda = device.startswith("cuda")
        self.device = torch.device(device)
        self.precision = "bf16" if self.cuda else "fp32"
        self.size = (854, 480) if self.cuda else (224, 128)
        self.objects = (1, 2, 4, 8) if self.cuda else (1, 2)
        self.frames = 30 if self.cuda else 2
        self.warmup = 5 if self.cuda else 1
        self.runtimes = ("torch", "cuda-graphs") if self.cuda else ("torch",)
        self.variants: dict[str, dict[str, Any]] = {"paper": {}, "shipped": {}} if self.cuda else {"tiny": {"variant": "tiny"}}
        self.clip_frames = 16  # smoke test's synthetic clip


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast(plan: Plan) -> Any:
    return torch.autocast(plan.device.type, dtype=torch.bfloat16, enabled=plan.precision == "bf16")


# ------------------------------------------------------------------------------------ sections
def methods(plan: Plan, names: list[str]) -> list[dict[str, Any]]:
    rows = []
    w, h = plan.size
    for name, (size, kwargs), runtime in itertools.product(names, plan.variants.items(), plan.runtimes):
        if size == "shipped":
            kwargs = shipped_arch(name)  # the architecture of the weights vostool ships
            if kwargs is None:
                continue
        torch.manual_seed(0)
        method = create_method(name, **kwargs).to(plan.device).eval()
        acc = blocks.Accelerator(method.net, runtime) if runtime != "torch" else None
        for k in plan.objects:
            frames, first = speed_clip(k, h, 1 + plan.warmup + plan.frames, width=w)
            images = [torch.from_numpy(f).to(plan.device).permute(2, 0, 1)[None].float().div_(255) for f in frames]
            prob = torch.stack([torch.from_numpy(first == i) for i in range(k + 1)]).to(plan.device).float()
            if plan.cuda:
                torch.cuda.reset_peak_memory_stats(plan.device)
            with torch.inference_mode(), autocast(plan):
                state = method.init_state()
                method.memorize(state, images[0], prob, list(range(1, k + 1)))
                method.update(state, images[0], prob)
                for i in range(1, 1 + plan.warmup + plan.frames):
                    if i == 1 + plan.warmup:
                        sync(plan.device)
                        t0 = time.perf_counter()
                    warped = prob[1:] if method.uses_flow else torch.zeros_like(prob[1:])
                    # the session's rule: the first predicted frame shows the accelerator its blocks
                    with acc.watch() if acc is not None and not acc.done else contextlib.nullcontext():
                        prob = method.predict(state, images[i], warped).float()
                        method.update(state, images[i], prob)
                sync(plan.device)
            fps = plan.frames / (time.perf_counter() - t0)
            mem = torch.cuda.max_memory_allocated(plan.device) / 2**30 if plan.cuda else None
            row = {"method": name, "size": size, "runtime": runtime, "objects": k, "fps": round(fps, 1)}
            rows.append({**row, "blocks": len(acc.blocks) if acc else None, "peak_gib": mem and round(mem, 2)})
            print(f"  {name} {size} {runtime} K={k}: {fps:.1f} fps", file=sys.stderr, flush=True)
        del method
        if plan.cuda:
            torch.cuda.empty_cache()
    return rows


def make_clip(plan: Plan, folder: Path) -> tuple[Path, Path]:
    """The mp4 of the ``segment`` section and its first-frame mask. CUDA: the example clip's 82 real
    854x480 DAVIS frames played forwards then backwards, twice (328 frames, re-encoded H.264); smoke
    test: a small synthetic clip."""
    frames: list[np.ndarray]
    if plan.cuda:
        frames = [f.rgb for f in open_video(REPO / "examples" / "bear.mp4")]
        frames = (frames + frames[::-1]) * 2
        first = read_mask(REPO / "examples" / "bear_mask.png").ids
    else:
        w, h = plan.size
        frames, first = speed_clip(1, h, plan.clip_frames, width=w)
    video, mask = folder / "clip.mp4", folder / "clip_mask.png"
    writer = VideoWriter(video, (frames[0].shape[1], frames[0].shape[0]), 24.0)
    for f in frames:
        writer.write(f)
    writer.close()
    write_index_png(mask, first)
    return video, mask


def segment(plan: Plan, folder: Path) -> list[dict[str, Any]]:
    video, mask = make_clip(plan, folder)
    runs = [("flow", ["--method", "flow"])]
    runs.append(("agss shipped, --size 240", ["--method", "agss", "--size", "240"]))
    if plan.cuda:
        runs.append(("agss shipped, --size 240, --runtime torch", ["--method", "agss", "--size", "240", "--runtime", "torch"]))
        paper = ["--method", "agss", "--weights", "random", "--precision", "bf16"]
        runs.append(("agss paper, random weights, bf16", paper))
        runs.append(("agss paper, random weights, bf16, --runtime torch", [*paper, "--runtime", "torch"]))
    rows = []
    for label, extra in runs:
        cmd = [sys.executable, "-m", "vostool", "segment", str(video), "--mask", str(mask), "-o", str(folder / "out"), "--overwrite"]
        cmd += ["--no-overlay", "--json", "-q", "--device", str(plan.device), *extra]
        t0 = time.perf_counter()
        r = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))},
        )
        wall = time.perf_counter() - t0
        if r.returncode != 0:
            rows.append({"run": label, "error": r.stderr.strip().splitlines()[-1:]})
            continue
        s = json.loads(r.stdout)
        rows.append(
            {
                "run": label,
                "frames": s["frames"],
                "process_seconds": round(wall, 2),
                "process_fps": round(s["frames"] / wall, 1),
                "loop_fps": s["fps"],
                "stages_ms": {k: v["median_ms"] for k, v in s["stages"].items()},
            }
        )
        print(f"  segment {label}: {s['frames'] / wall:.1f} fps whole process", file=sys.stderr, flush=True)
    return rows


def raft_small(plan: Plan) -> dict[str, Any]:
    from vostool.flow.raft import RAFTFlow

    try:
        from vostool.weights import resolve_weights

        sd, source = resolve_weights("raft-small", None, offline=True).state_dict(), "raft-small.things"
    except Exception:
        sd, source = None, "random weights (speed only)"
    est = RAFTFlow(sd, variant="small", iters=12 if plan.cuda else 2).to(plan.device)
    w, h = plan.size
    a, b = (torch.rand(1, 3, h, w, device=plan.device) * 2 - 1 for _ in range(2))
    out = {"weights": source, "size": [w, h], "iters": est.iters}
    for precision in ("fp32", "bf16") if plan.cuda else ("fp32",):
        with torch.autocast(plan.device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            for _ in range(plan.warmup):
                est.flow(a, b)
            sync(plan.device)
            times = []
            for _ in range(plan.frames):
                t0 = time.perf_counter()
                est.flow(a, b)
                sync(plan.device)
                times.append(time.perf_counter() - t0)
        out[f"ms_{precision}"] = round(statistics.median(times) * 1e3, 2)
    return out


def train_step(plan: Plan, folder: Path) -> dict[str, Any]:
    from vostool.datasets import generate_dataset
    from vostool.train.loop import TrainConfig, Trainer

    size = (480, 854) if plan.cuda else (64, 96)
    videos = generate_dataset(0, 2, length=10 if plan.cuda else 5, size=size, num_objects=(1, 3))
    arch = {} if plan.cuda else {"depth": 18, "base_width": 8, "mdim": 16}
    cfg = TrainConfig(arch=arch, steps=100, batch=1, clip_length=8 if plan.cuda else 4, crop=[224, 320] if plan.cuda else None)
    trainer = Trainer(cfg, videos, out=folder / "train", device=plan.device, progress=False)
    if plan.cuda:
        torch.cuda.reset_peak_memory_stats(plan.device)
    times = []
    for _ in range(4 if plan.cuda else 2):
        sync(plan.device)
        t0 = time.perf_counter()
        trainer.train_step()
        sync(plan.device)
        times.append(time.perf_counter() - t0)
    return {
        "method": "agss",
        "arch": arch or "paper",
        "clip": f"{cfg.clip_length} frames, crop {cfg.crop}",
        "step_seconds": round(statistics.median(times[1:]), 3),
        "first_step_seconds": round(times[0], 3),
        "peak_gib": round(torch.cuda.max_memory_allocated(plan.device) / 2**30, 2) if plan.cuda else None,
    }


def _masks(run: dict[str, Any], frames: list[np.ndarray], first: np.ndarray) -> list[np.ndarray]:
    session = vostool.create_session(**run)
    return [r.ids for r in session.propagate(frames, {0: first})]


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a > 0, b > 0).sum()
    return 1.0 if union == 0 else float(np.logical_and(a == b, a > 0).sum() / union)


def correctness(plan: Plan, names: list[str]) -> list[dict[str, Any]]:
    frames = [f.rgb for f in open_video(REPO / "examples" / "bear.mp4")][: 40 if plan.cuda else 12]
    first = read_mask(REPO / "examples" / "bear_mask.png").ids
    base = {"device": "cpu", "runtime": "torch"}
    cases = [("flow", {"method": "flow"}, {"method": "flow", "device": str(plan.device), "arrays": "torch"})]
    for name in names:  # every method whose weights vostool ships, at their size (the default)
        if shipped_arch(name) is not None:
            cases.append((f"{name} shipped fp32", {"method": name}, {"method": name, "device": str(plan.device)}))
    if plan.cuda:
        cases.append(("agss shipped bf16", {"method": "agss"}, {"method": "agss", "device": "cuda", "precision": "bf16"}))
    rows = []
    for label, cpu_run, dev_run in cases:
        ref = _masks({**base, **cpu_run, **({"arrays": "auto"} if cpu_run["method"] == "flow" else {})}, frames, first)
        got = _masks(dev_run, frames, first)
        ious = [_iou(a, b) for a, b in zip(ref, got)]
        rows.append({"case": label, "frames": len(ious), "iou_min": round(min(ious), 4), "iou_mean": round(float(np.mean(ious)), 5)})
        print(f"  correctness {label}: IoU min {min(ious):.4f}", file=sys.stderr, flush=True)
    return rows


# ------------------------------------------------------------------------------------ report
def table(report: dict[str, Any]) -> str:
    out = [f"# vostool GPU check: {report['env'].get('device_name')} ({report['env']['device']})", ""]
    sec = report["sections"]
    if isinstance(sec.get("methods"), list):
        ks = sorted({r["objects"] for r in sec["methods"]})
        out += ["## Methods, network alone, FPS (" + report["env"]["precision"] + ")", ""]
        out += ["| method | size | runtime | " + " | ".join(f"{k} obj" for k in ks) + " |", "|---|---|---|" + "---|" * len(ks)]
        for key in dict.fromkeys((r["method"], r["size"], r["runtime"]) for r in sec["methods"]):
            fps = {r["objects"]: r["fps"] for r in sec["methods"] if (r["method"], r["size"], r["runtime"]) == key}
            out.append(f"| {' | '.join(key)} | " + " | ".join(str(fps.get(k, "")) for k in ks) + " |")
        out.append("")
    for name in ("segment", "correctness"):
        rows = sec.get(name)
        if isinstance(rows, list) and rows:
            cols = [c for c in rows[0] if c != "stages_ms"]
            out += [f"## {name}", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
            out += ["| " + " | ".join(str(r.get(c, "")) for c in cols) + " |" for r in rows]
            out.append("")
    for name in ("raft_small", "train_step"):
        if isinstance(sec.get(name), dict):
            out += [f"## {name}", "", "```", json.dumps(sec[name], indent=1), "```", ""]
    errors = {k: v for k, v in sec.items() if isinstance(v, dict) and "error" in v}
    if errors:
        out += ["## Errors", ""] + [f"- {k}: {v['error']}" for k, v in errors.items()] + [""]
    out.append(f"Section seconds: {report['seconds']}")
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path, nargs="?", default=Path("gpu-check"))
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--sections", default="methods,segment,raft_small,train_step,correctness")
    ap.add_argument("--methods", default=",".join(METHODS), help="methods of the methods and correctness sections")
    args = ap.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("gpu_check: no CUDA device here; run with --device cpu for the smoke test")
    plan = Plan(args.device)
    if plan.cuda:
        torch.backends.cudnn.benchmark = True
    args.out.mkdir(parents=True, exist_ok=True)
    env = {
        "device": args.device,
        "device_name": torch.cuda.get_device_name(plan.device) if plan.cuda else platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "vostool": vostool.__version__,
        "precision": plan.precision,
        "cpu_threads": torch.get_num_threads(),
    }
    report: dict[str, Any] = {"env": env, "sections": {}, "seconds": {}}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        fns: dict[str, Callable[[], Any]] = {
            "methods": lambda: methods(plan, args.methods.split(",")),
            "segment": lambda: segment(plan, work),
            "raft_small": lambda: raft_small(plan),
            "train_step": lambda: train_step(plan, work),
            "correctness": lambda: correctness(plan, args.methods.split(",")),
        }
        for name in args.sections.split(","):
            print(f"{name} ...", file=sys.stderr, flush=True)
            t0 = time.perf_counter()
            try:
                report["sections"][name] = fns[name]()
            except Exception as exc:  # record and go on: one broken part must not hide the others
                report["sections"][name] = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-3000:]}
            report["seconds"][name] = round(time.perf_counter() - t0, 1)
            report["seconds"]["total"] = round(time.perf_counter() - started, 1)
            write_report(report, args.out)  # after each section: a run stopped early keeps what it measured
    print(table(report))


def write_report(report: dict[str, Any], out: Path) -> None:
    (out / "gpu_check.json").write_text(json.dumps(report, indent=1) + "\n")
    (out / "gpu_check.md").write_text(table(report))


if __name__ == "__main__":
    main()
