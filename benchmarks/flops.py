"""Multiply-accumulates per frame of every method at 480p (854x480), counted with
``torch.utils.flop_counter`` (convolutions, matrix products, attention: the operations that
cost; element-wise work is not counted), split by the method's own stages: the cost model that
holds on any machine.

For each method, size (``paper``: the builder's defaults; ``shipped``: the architecture of the
weights vostool ships, where there are some) and object count: frame 0's masks are memorized
(not counted), frames 1 to 5 run, and frame 6 is counted (``predict`` + ``update``): a
steady-state frame, the embedding method's support set full (5 frames). The network runs on the
``meta`` device when it can (shapes only, no arithmetic), else on the CPU with random weights.

    python benchmarks/flops.py --objects 1,5 --out flops.md
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from vostool.datasets import speed_clip
from vostool.models import create_method
from vostool.weights.manifest import load_manifest

METHODS = ("agss", "savos", "ovsnet", "embedding")


def shipped_arch(method: str) -> dict | None:
    """The architecture of ``method``'s default weights when vostool ships them (else None)."""
    manifest = load_manifest()
    target = manifest.targets.get(method)
    entry = manifest.entries.get(target.default) if target is not None and target.default else None
    return dict(entry.arch) if entry is not None and entry.source.kind == "package" else None


COUNTED_FRAME = 6


def count(method_name: str, arch: dict, k: int, device: str, height: int = 480, width: int = 854) -> dict[str, float]:
    """GMACs per stage of one steady-state frame of ``method_name`` with ``k`` objects."""
    torch.manual_seed(0)
    method = create_method(method_name, **arch).to(device).eval()
    frames, first = speed_clip(k, height, COUNTED_FRAME + 1, width=width)
    images = [torch.from_numpy(f).permute(2, 0, 1)[None].float().div(255).to(device) for f in frames]
    prob = torch.stack([torch.from_numpy(first == i) for i in range(k + 1)]).float().to(device)
    counter = FlopCounterMode(display=False)
    per_stage: dict[str, float] = defaultdict(float)
    counting = [False]

    @contextlib.contextmanager
    def stage(name: str, *, objects: int | None = None) -> Iterator[None]:
        before = counter.get_total_flops()
        yield
        if counting[0]:
            per_stage[name] += (counter.get_total_flops() - before) / 2e9

    with torch.inference_mode(), counter:
        state = method.init_state()
        method.memorize(state, images[0], prob, list(range(1, k + 1)))
        method.update(state, images[0], prob)
        for t in range(1, COUNTED_FRAME + 1):
            counting[0] = t == COUNTED_FRAME
            start = counter.get_total_flops()
            in_stages = sum(per_stage.values())
            warped = prob[1:] if method.uses_flow else torch.zeros_like(prob[1:])
            prob = method.predict(state, images[t], warped, stage=stage).float()
            with stage("update"):
                method.update(state, images[t], prob)
            if counting[0]:
                total = (counter.get_total_flops() - start) / 2e9
                per_stage["(outside stages)"] += total - (sum(per_stage.values()) - in_stages)
    out = {s: round(v, 2) for s, v in per_stage.items() if round(v, 2) or s == "update"}
    out["total"] = round(sum(per_stage.values()), 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--objects", default="1,5")
    ap.add_argument("--sizes", default="paper,shipped")
    ap.add_argument("--out", type=Path, default=None, help="also write the markdown table here")
    args = ap.parse_args()
    rows = []
    for name in args.methods.split(","):
        for size in args.sizes.split(","):
            arch = {} if size == "paper" else shipped_arch(name)
            if arch is None:
                continue
            arch.pop("freeze_bn", None)
            for k in (int(v) for v in args.objects.split(",")):
                try:
                    gmac, where = count(name, arch, k, "meta"), "meta"
                except Exception:  # data-dependent shapes (detection boxes): run it for real
                    gmac, where = count(name, arch, k, "cpu"), "cpu"
                rows.append({"method": name, "size": size, "arch": arch, "objects": k, "gmac": gmac, "counted_on": where})
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    lines = ["| method | size | objects | GMAC per frame | by stage (GMAC) |", "|---|---|---|---|---|"]
    for r in rows:
        stages = ", ".join(f"{s} {v:g}" for s, v in r["gmac"].items() if s != "total")
        arch = ", ".join(f"{k}={v}" for k, v in r["arch"].items()) or "paper"
        lines.append(f"| {r['method']} | {r['size']} ({arch}) | {r['objects']} | {r['gmac']['total']:g} | {stages} |")
    table = "\n".join(lines) + "\n"
    print(table)
    if args.out:
        args.out.write_text(table)


if __name__ == "__main__":
    main()
