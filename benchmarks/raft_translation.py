"""Does the converted RAFT-small checkpoint still compute correct flow?

Takes a real DAVIS frame, makes a second frame by translating it by a known amount, runs
torchvision's ``raft_small`` with the original RAFT checkpoint converted by
:func:`vostool.weights.convert_raft_original`, and reports the mean end-point error of the flow
against the known translation, in the interior (borders, where content enters or leaves the
frame, are excluded). A correct conversion gives a small fraction of a pixel; a wrong key
mapping gives errors of pixels.

    python benchmarks/raft_translation.py [--weights ../shared/weights/raft-small.pth]
        [--image ../shared/data/davis16-480p/JPEGImages/480p/bear/00000.jpg]
        [--shift 3 -2 --shift 2.5 -1.25] [--iters 12] [--margin 24]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def load_converted_raft_small(weights: Path) -> torch.nn.Module:
    """torchvision ``raft_small`` with ``weights`` (original RAFT layout or torchvision layout), eval mode."""
    from torchvision.models.optical_flow import raft_small

    from vostool.weights import convert_raft_original, is_raft_original, load_into, load_state_dict

    sd = load_state_dict(weights)
    if is_raft_original(sd):
        sd = convert_raft_original(sd)
    net = raft_small()
    load_into(net, sd, what=str(weights))
    return net.eval()


def translate(image: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """``(H, W, 3)`` image moved by ``(dx, dy)`` pixels (bilinear; exact for integer shifts).

    The content at ``p`` in ``image`` is at ``p + (dx, dy)`` in the result, so the true flow
    from ``image`` to the result is ``(dx, dy)`` everywhere.
    """
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    h, w = image.shape[:2]
    return cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def _to_input(image: np.ndarray) -> torch.Tensor:
    """``(H, W, 3)`` uint8 RGB -> ``(1, 3, H, W)`` float in [-1, 1] (RAFT's input range)."""
    t = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float()
    return t / 127.5 - 1.0


@torch.inference_mode()
def translation_epe(
    net: torch.nn.Module, image: np.ndarray, dx: float, dy: float, *, iters: int = 12, margin: int = 24
) -> dict[str, float]:
    """Mean/median end-point error (px) of ``net``'s flow for a known translation.

    Args:
        net: a torchvision RAFT in eval mode.
        image: ``(H, W, 3)`` uint8 RGB; cropped to a multiple of 8.
        dx, dy: the translation in pixels.
        margin: border excluded from the statistics (plus the shift itself).
    """
    h, w = (s - s % 8 for s in image.shape[:2])
    image = image[:h, :w]
    moved = translate(image, dx, dy)
    t0 = time.perf_counter()
    flow = net(_to_input(image), _to_input(moved), num_flow_updates=iters)[-1][0]  # (2, H, W)
    seconds = time.perf_counter() - t0
    pad_x, pad_y = margin + int(np.ceil(abs(dx))), margin + int(np.ceil(abs(dy)))
    inner = flow[:, pad_y : h - pad_y, pad_x : w - pad_x]
    err = torch.sqrt((inner[0] - dx) ** 2 + (inner[1] - dy) ** 2)
    return {
        "dx": dx,
        "dy": dy,
        "mean_epe": float(err.mean()),
        "median_epe": float(err.median()),
        "p95_epe": float(torch.quantile(err.flatten(), 0.95)),
        "mean_flow_x": float(inner[0].mean()),
        "mean_flow_y": float(inner[1].mean()),
        "height": h,
        "width": w,
        "seconds": seconds,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", type=Path, default=SHARED / "weights" / "raft-small.pth")
    ap.add_argument("--image", type=Path, default=SHARED / "data" / "davis16-480p" / "JPEGImages" / "480p" / "bear" / "00000.jpg")
    ap.add_argument("--shift", type=float, nargs=2, action="append", metavar=("DX", "DY"))
    ap.add_argument("--iters", type=int, default=12)
    ap.add_argument("--margin", type=int, default=24)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    for p in (args.weights, args.image):
        if not p.is_file():
            print(f"raft_translation: {p} not found", file=sys.stderr)
            return 2
    bgr = cv2.imread(str(args.image), cv2.IMREAD_COLOR)
    image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    net = load_converted_raft_small(args.weights)
    for dx, dy in args.shift or [(3.0, -2.0), (2.5, -1.25)]:
        res = translation_epe(net, image, dx, dy, iters=args.iters, margin=args.margin)
        print(json.dumps({"image": args.image.name, **{k: round(v, 4) if isinstance(v, float) else v for k, v in res.items()}}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
