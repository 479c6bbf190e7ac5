"""Scoring on real DAVIS frames from ../shared (skipped without it), with known perturbations."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from vostool.bench.metrics import frame_scores
from vostool.bench.reference import reference_f, reference_j
from vostool.bench.scoring import evaluate
from vostool.datasets import open_dataset, read_annotation
from vostool.io.masks import write_index_png

pytestmark = pytest.mark.shared


def _shift(m: np.ndarray, dx: int, dy: int = 0) -> np.ndarray:
    out = np.zeros_like(m)
    h, w = m.shape
    out[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = m[max(-dy, 0) : h - max(dy, 0), max(-dx, 0) : w - max(dx, 0)]
    return out


def test_ground_truth_against_itself_is_exactly_one(shared_dir: Path) -> None:
    ds = open_dataset(shared_dir / "data" / "davis16-480p", split="train", sequences=["bear", "tennis"])
    assert ds.kind == "davis16" and ds.resolution == "480p"
    result = evaluate(ds, ds.root / "Annotations" / "480p", workers=2)
    g = result.global_metrics()
    assert g == {"J&F-Mean": 1.0, "J-Mean": 1.0, "J-Recall": 1.0, "J-Decay": 0.0, "F-Mean": 1.0, "F-Recall": 1.0, "F-Decay": 0.0}
    assert [name for name, _ in result.object_rows()] == ["bear_1", "tennis_1"]
    bear = result.sequences[0]
    assert bear.frames_read == 82 - 2 and bear.objects[0].frames[0] == "00001" and bear.objects[0].frames[-1] == "00080"


def test_five_pixel_shift_keeps_f_at_one_at_480p(shared_dir: Path) -> None:
    ann = shared_dir / "data" / "davis16-480p" / "Annotations" / "480p"
    checked = 0
    for seq in ("bear", "boat", "car-turn", "elephant"):
        for stem in ("00005", "00020", "00040"):
            gt = read_annotation(ann / seq / f"{stem}.png", binary=True)
            ys, xs = np.nonzero(gt)
            if xs.min() < 12 or ys.min() < 12 or xs.max() > gt.shape[1] - 13 or ys.max() > gt.shape[0] - 13:
                continue  # touching the border: shifting changes which edges are boundary
            for dx, dy in ((5, 0), (-5, 0), (0, 5), (3, 4)):
                j, f = frame_scores(gt, _shift(gt, dx, dy), [1])
                assert f[0] == 1.0, (seq, stem, dx, dy)
                assert j[0] < 1.0
            j, f = frame_scores(gt, _shift(gt, 12, 0), [1])
            assert f[0] < 1.0  # 12 px is beyond the 8 px tolerance
            checked += 1
    assert checked >= 3


def _perturbations(gt: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))
    noisy = gt.copy()
    flip = rng.random(gt.shape) < 0.002
    noisy[flip] = 1 - noisy[flip]
    small = cv2.resize(
        cv2.resize(gt, (gt.shape[1] // 4, gt.shape[0] // 4), interpolation=cv2.INTER_NEAREST),
        (gt.shape[1], gt.shape[0]),
        interpolation=cv2.INTER_NEAREST,
    )
    return [
        gt,
        _shift(gt, 5, 2),
        _shift(gt, -20, 9),
        cv2.erode(gt, k, iterations=2),
        cv2.dilate(gt, k, iterations=3),
        noisy,
        small,
        np.zeros_like(gt),
        np.ones_like(gt),
    ]


@pytest.mark.parametrize("seq", ["bear", "dance-jump", "tennis"])
def test_fast_scores_equal_reference_on_real_frames(shared_dir: Path, seq: str) -> None:
    rng = np.random.default_rng(0)
    for folder, stem in (("davis16-480p/Annotations/480p", "00030"), ("davis16-train-240p/Annotations/240p", "00010")):
        gt = read_annotation(shared_dir / "data" / folder / seq / f"{stem}.png", binary=True)
        for pred in _perturbations(gt, rng):
            j, f = frame_scores(gt, pred, [1])
            assert j[0] == reference_j(gt, pred)
            assert f[0] == reference_f(gt, pred)


def test_davis17_void_pixels_count_as_background(shared_dir: Path) -> None:
    path = shared_dir / "data" / "samples" / "davis17-fragments" / "Annotations" / "480p" / "tennis" / "00000.png"
    gt = read_annotation(path, binary=False)
    raw = np.array(__import__("PIL.Image", fromlist=["Image"]).open(path))
    void = raw == 255
    assert void.any() and int(gt.max()) == 2 and not (gt == 255).any()
    pred = gt.copy()
    pred[void] = 1  # void pixels predicted as object 1 are false positives
    j, f = frame_scores(gt, pred, [1, 2])
    g1 = int((gt == 1).sum())
    assert j[0] == g1 / (g1 + int(void.sum()))
    assert j[1] == 1.0 and f[1] == 1.0


def test_davis17_palette_sequence_without_split_file(shared_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    src = shared_dir / "data" / "samples" / "davis17-fragments" / "Annotations" / "480p" / "blackswan"
    root = tmp_path / "DAVIS"
    shutil.copytree(src, root / "Annotations" / "480p" / "blackswan")
    results = tmp_path / "res" / "blackswan"
    results.mkdir(parents=True)
    for p in sorted(src.glob("*.png")):
        gt = read_annotation(p, binary=False)
        write_index_png(results / p.name, _shift(gt, 10, 0))
    with caplog.at_level(logging.WARNING, logger="vostool.bench"):
        ds = open_dataset(root, split="val")
    assert "no split file" in caplog.text
    assert ds.kind == "davis17"
    result = evaluate(ds, tmp_path / "res")
    obj = result.sequences[0].objects[0]
    assert obj.frames == ["00001", "00002", "00003", "00004"]
    for i, stem in enumerate(obj.frames):
        gt = read_annotation(src / f"{stem}.png", binary=False)
        assert obj.j[i] == reference_j(gt == 1, _shift(gt, 10, 0) == 1)
        assert obj.f[i] == reference_f(gt == 1, _shift(gt, 10, 0) == 1)
