"""The weights vostool ships, on real video they never trained on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import vostool
from vostool.io.masks import read_mask
from vostool.io.video import open_video

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def test_shipped_agss_beats_flow_on_real_video(shared_dir) -> None:
    """The shipped AGSS follows a held-out DAVIS sequence (motocross-bumps, not trained on)
    better than warping alone."""
    root = shared_dir / "data/davis16-train-240p"
    frames = [f.rgb for f in open_video(root / "JPEGImages/240p/motocross-bumps")]
    gts = [read_mask(root / f"Annotations/240p/motocross-bumps/{i:05d}.png").ids for i in range(len(frames))]
    scores = {}
    for method in ("agss", "flow"):
        s = vostool.create_session(method, flow="dis", device="cpu", offline=True)
        ious = [iou(r.ids == 1, gts[i] == 1) for i, r in enumerate(s.propagate(frames, {0: gts[0]})) if i]
        scores[method] = float(np.mean(ious))
    assert scores["agss"] > 0.6 and scores["agss"] > scores["flow"] + 0.15, scores


def test_shipped_agss_finds_an_object_that_left_and_came_back() -> None:
    """Issue 9 item 5: a camera pans away from the bear until it is out of view for six frames,
    then back. The object is not dropped for good: it is empty while out of view and found again
    when it returns (the authors' rule lost it at the first empty frame)."""
    src = open_video(EXAMPLES / "bear.mp4")
    first = next(iter(src)).rgb
    src.close()
    mask = read_mask(EXAMPLES / "bear_mask.png").ids
    background = first[:, 470:][:, ::-1]  # the right part of the frame holds no bear: mirrored, it extends the scene
    canvas = np.concatenate([first, background], 1)
    labels = np.concatenate([mask, np.zeros(background.shape[:2], mask.dtype)], 1)
    offsets = [*range(40, 501, 30), 500, 500, 500, *range(470, 39, -30)]
    frames = [np.ascontiguousarray(canvas[:, o : o + 427]) for o in offsets]
    truth = [labels[:, o : o + 427] > 0 for o in offsets]
    s = vostool.create_session("agss", device="cpu", offline=True)
    out = [r.ids > 0 for r in s.propagate(frames, {0: labels[:, 40:467]})]
    gone = [i for i, t in enumerate(truth) if not t.any()]
    assert len(gone) >= 5 and all(out[i].mean() < 0.01 for i in gone), [out[i].mean() for i in gone]
    back = [i for i, t in enumerate(truth) if i > gone[-1] and t.any()]
    found = [iou(out[i], truth[i]) for i in back[:3]]  # the authors' rule: 0, 0, 0 (lost for good)
    assert np.mean(found) > 0.3 and min(found) > 0.2, found
    whole = [iou(out[i], truth[i]) for i in back if truth[i].sum() > 0.5 * truth[0].sum()]
    assert np.mean(whole) > 0.5 and whole[-1] > 0.5, whole


@pytest.mark.parametrize("method", ["savos", "embedding", "ovsnet"])
def test_shipped_networks_beat_flow_on_the_held_out_split(shared_dir, method: str) -> None:
    """The shipped compact SAVOS, embedding and OVSNet networks (each with its default flow: none
    for SAVOS and the embedding method) follow the five held-out DAVIS sequences better than
    warping alone, on average (J over frames 1..n-1)."""
    from vostool.datasets import davis16_val_split

    root = shared_dir / "data/davis16-train-240p"
    scores: dict[str, list[float]] = {method: [], "flow": []}
    for name in davis16_val_split():
        frames = [f.rgb for f in open_video(root / f"JPEGImages/240p/{name}")]
        gts = [read_mask(root / f"Annotations/240p/{name}/{i:05d}.png").ids == 1 for i in range(len(frames))]
        for m in scores:
            s = vostool.create_session(m, flow="dis" if m == "flow" else None, device="cpu", offline=True)
            ious = [iou(r.ids == 1, gts[i]) for i, r in enumerate(s.propagate(frames, {0: gts[0].astype(np.uint8)})) if i]
            scores[m].append(float(np.mean(ious)))
    assert np.mean(scores[method]) > np.mean(scores["flow"]) + 0.08, scores
