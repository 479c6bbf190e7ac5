"""J, F and their statistics on hand-computed cases, and the fast scorer against the literal reference."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from vostool.bench.metrics import (
    boundary_map,
    boundary_radius,
    decay_bins,
    dilate_disk_bits,
    disk,
    disk_half_widths,
    frame_scores,
    object_pairs,
    score_pairs,
    statistics,
)
from vostool.bench.reference import reference_boundary, reference_decay, reference_dilate, reference_f, reference_j


def _mask(h: int, w: int, rows: slice, cols: slice) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    m[rows, cols] = 1
    return m


def _pixels(b: np.ndarray) -> set[tuple[int, int]]:
    return {(int(y), int(x)) for y, x in zip(*np.nonzero(b))}


# ---------------------------------------------------------------- tolerance and kernel
def test_boundary_radius_of_common_sizes() -> None:
    assert boundary_radius(480, 854) == 8
    assert boundary_radius(1080, 1920) == 18
    assert boundary_radius(240, 427) == 4
    assert boundary_radius(6, 6) == 1


def test_disk_matches_the_euclidean_definition() -> None:
    k = disk(8)
    assert k.shape == (17, 17) and int(k.sum()) == 197
    assert k[8, 0] == 1 and k[0, 8] == 1 and k[0, 0] == 0
    # (6, 5): 36 + 25 = 61 <= 64 is inside; (6, 6): 72 > 64 is outside.
    assert k[8 + 6, 8 + 5] == 1 and k[8 + 6, 8 + 6] == 0
    assert disk(1).tolist() == [[0, 1, 0], [1, 1, 1], [0, 1, 0]]


def _dilate_bits(m: np.ndarray, r: int) -> np.ndarray:
    """``(C, H, W)`` 0/1 uint8 through the bit-packed dilation and back."""
    c, h, w = m.shape
    planes = np.zeros((c, h, (w + 63) // 64 * 64), np.uint8)
    planes[:, :, :w] = m
    bits = np.packbits(planes, axis=-1, bitorder="little").view("<u8")
    out = dilate_disk_bits(bits, r)
    return np.unpackbits(out.view(np.uint8), axis=-1, bitorder="little")[:, :, :w]


def test_cv2_dilation_with_disk_equals_reference_dilation() -> None:
    rng = np.random.default_rng(3)
    m = (rng.random((40, 50)) > 0.97).astype(np.uint8)
    m[0, 0] = m[-1, -1] = m[0, -1] = 1  # corners: dilation must clip at the border
    for r in (1, 3, 8):
        assert np.array_equal(cv2.dilate(m, disk(r)).astype(bool), reference_dilate(m, r))
        assert np.array_equal(_dilate_bits(m[None], r)[0], cv2.dilate(m, disk(r)))


@pytest.mark.parametrize("r", [*range(0, 26), 31, 32, 33, 40, 63, 64, 70])
def test_bit_packed_dilation_equals_opencv_with_the_disk(r: int) -> None:
    """Every radius (4K frames need 36, 8K 71), rows across several 64-bit words, pixels at the
    array's edges, two channels dilated independently."""
    rng = np.random.default_rng(r)
    h, w = int(rng.integers(3, 60)), int(rng.integers(60, 300))
    two = (rng.random((2, h, w)) > 0.97).astype(np.uint8)
    two[0, 0, 0] = two[0, -1, -1] = two[1, :, 63] = two[1, :, 64] = 1
    d = _dilate_bits(two, r)
    for c in range(2):
        assert np.array_equal(d[c], cv2.dilate(two[c], disk(r), borderType=cv2.BORDER_CONSTANT, borderValue=0))
    assert disk_half_widths(8) == (8, 7, 7, 7, 6, 6, 5, 3, 0)


# ---------------------------------------------------------------- boundary maps by hand
def test_boundary_of_square_includes_left_and_top_neighbours() -> None:
    gt = _mask(6, 6, slice(1, 3), slice(1, 3))
    expected = {(0, 0), (0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1), (2, 2)}
    assert _pixels(boundary_map(gt)) == expected
    assert _pixels(reference_boundary(gt)) == expected


def test_boundary_map_equals_literal_rule_on_random_masks() -> None:
    rng = np.random.default_rng(11)
    for _ in range(200):
        h, w = (int(v) for v in rng.integers(1, 30, 2))
        m = (rng.random((h, w)) < rng.random()).astype(np.uint8)
        assert np.array_equal(boundary_map(m).astype(bool), reference_boundary(m))


def test_boundary_of_diagonal_staircase() -> None:
    m = np.triu(np.ones((4, 4), np.uint8))  # m[i, j] = 1 for j >= i
    expected = {(0, 0), (1, 0), (1, 1), (2, 1), (2, 2), (3, 2)}
    assert _pixels(boundary_map(m)) == expected


def test_border_touching_object_has_no_boundary_along_the_border() -> None:
    left_half = _mask(6, 6, slice(0, 6), slice(0, 3))
    assert _pixels(boundary_map(left_half)) == {(r, 2) for r in range(6)}
    bottom_right = _mask(6, 6, slice(3, 6), slice(3, 6))
    # rows 3..5 x cols 3..5 touching the bottom and right borders: only the top-left L.
    assert _pixels(boundary_map(bottom_right)) == {(2, 2), (2, 3), (2, 4), (2, 5), (3, 2), (4, 2), (5, 2)}
    assert boundary_map(np.ones((5, 7), np.uint8)).sum() == 0
    assert _pixels(boundary_map(_mask(4, 4, slice(3, 4), slice(3, 4)))) == {(2, 2), (2, 3), (3, 2)}


# ---------------------------------------------------------------- J and F by hand
def test_shifted_square_j_and_f_by_hand() -> None:
    gt = _mask(6, 6, slice(1, 3), slice(1, 3))
    pred = _mask(6, 6, slice(1, 3), slice(3, 5))  # same square two columns right
    j, f = frame_scores(gt, pred, [1])
    assert j[0] == 0.0
    # radius 1 (plus-shaped disk): 5 of 8 boundary pixels match in each direction -> F = 5/8.
    assert f[0] == 0.625


def test_overlapping_rectangles_j_and_f_by_hand() -> None:
    gt = _mask(6, 6, slice(1, 3), slice(1, 3))
    pred = _mask(6, 6, slice(1, 3), slice(1, 4))
    j, f = frame_scores(gt, pred, [1])
    assert j[0] == 4 / 6
    assert f[0] == 1.0  # every boundary pixel is within one pixel of the other boundary


def test_empty_mask_rules() -> None:
    empty = np.zeros((8, 8), np.uint8)
    square = _mask(8, 8, slice(2, 5), slice(2, 5))
    assert [float(v[0]) for v in frame_scores(empty, empty, [1])] == [1.0, 1.0]
    assert [float(v[0]) for v in frame_scores(square, empty, [1])] == [0.0, 0.0]
    assert [float(v[0]) for v in frame_scores(empty, square, [1])] == [0.0, 0.0]
    # A mask covering the whole frame has no boundary: against an empty one J = 0 but F = 1.
    full = np.ones((8, 8), np.uint8)
    assert [float(v[0]) for v in frame_scores(full, empty, [1])] == [0.0, 1.0]


def test_missing_and_extra_ids_per_object() -> None:
    gt = np.zeros((10, 10), np.uint8)
    gt[1:4, 1:4] = 1
    gt[6:9, 6:9] = 2
    pred = np.zeros_like(gt)
    pred[1:4, 1:4] = 1  # object 2 missing
    pred[6:9, 0:2] = 3  # an id the ground truth does not have (not scored here)
    j, f = frame_scores(gt, pred, [1, 2])
    assert j.tolist() == [1.0, 0.0] and f.tolist() == [1.0, 0.0]
    # Object 2 absent from both on this frame: both empty -> 1.
    j, f = frame_scores(np.where(gt == 2, 0, gt), pred, [1, 2])
    assert j.tolist() == [1.0, 1.0] and f.tolist() == [1.0, 1.0]


def test_size_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError):
        frame_scores(np.zeros((4, 4), np.uint8), np.zeros((4, 5), np.uint8), [1])


# ---------------------------------------------------------------- statistics
def test_decay_bins_share_edges() -> None:
    assert decay_bins(5) == [(0, 2), (1, 3), (2, 4), (3, 5)]
    # linspace(1, 48, 5) = 1, 12.75, 24.5, 36.25, 48 -> 1, 13, 25 (half up), 36, 48 -> minus 1.
    assert decay_bins(48) == [(0, 13), (12, 25), (24, 36), (35, 48)]
    # 300 frames: edges 0, 75, 150, 224, 299 -- past 255, where an 8-bit index would wrap.
    assert decay_bins(300) == [(0, 76), (75, 151), (150, 225), (224, 300)]
    assert decay_bins(1) == [(0, 1)] * 4


@pytest.mark.parametrize("n", [5, 48, 300])
def test_decay_equals_definition(n: int) -> None:
    v = np.linspace(1.0, 0.2, n) ** 2
    s = statistics(v)
    assert s.decay == pytest.approx(reference_decay(v.tolist()), abs=1e-15)
    first, last = decay_bins(n)[0], decay_bins(n)[-1]
    assert s.decay == np.mean(v[first[0] : first[1]]) - np.mean(v[last[0] : last[1]])
    assert not math.isnan(s.decay) and s.decay > 0


def test_decay_for_300_frames_by_hand() -> None:
    v = np.zeros(300)
    v[:76] = 1.0  # first bin all ones; last bin v[224:300] all zeros
    assert statistics(v).decay == 1.0
    v = np.ones(300)
    v[224:] = 0.5
    assert statistics(v).decay == 0.5


def test_recall_is_strictly_greater_than_half() -> None:
    s = statistics(np.array([0.5, 0.5, 0.6, 0.4]))
    assert s.recall == 0.25
    assert s.mean == 0.5
    assert statistics(np.array([0.5000001])).recall == 1.0


# ---------------------------------------------------------------- fast path == literal reference
def _blobby(rng: np.random.Generator, h: int, w: int, k: int) -> np.ndarray:
    ids = np.zeros((h, w), np.uint8)
    for oid in range(1, k + 1):
        for _ in range(int(rng.integers(1, 4))):
            cy, cx = int(rng.integers(-5, h + 5)), int(rng.integers(-5, w + 5))
            ay, ax = int(rng.integers(1, h // 2)), int(rng.integers(1, w // 2))
            cv2.ellipse(ids, (cx, cy), (ax, ay), float(rng.uniform(0, 180)), 0, 360, oid, -1)
    noise = rng.random((h, w)) < 0.01
    ids[noise] = rng.integers(0, k + 1, int(noise.sum()))
    return ids


@pytest.mark.parametrize("seed", range(6))
def test_fast_scores_equal_reference_on_random_masks(seed: int) -> None:
    rng = np.random.default_rng(seed)
    h, w = int(rng.integers(20, 160)), int(rng.integers(20, 220))
    for _ in range(8):
        gt, pred = _blobby(rng, h, w, 3), _blobby(rng, h, w, 3)
        if rng.random() < 0.3:
            pred = np.roll(gt, int(rng.integers(-4, 5)), axis=int(rng.integers(0, 2)))
        j, f = frame_scores(gt, pred, [1, 2, 3])
        for i, k in enumerate((1, 2, 3)):
            assert j[i] == reference_j(gt == k, pred == k)
            assert f[i] == reference_f(gt == k, pred == k)


def test_stray_pixels_and_distant_objects_equal_reference() -> None:
    gt = np.zeros((120, 200), np.uint8)
    cv2.circle(gt, (40, 50), 20, 1, -1)
    pred = gt.copy()
    pred[5, 190] = pred[110, 3] = pred[119, 199] = 1  # stray pixels far from the object
    far = np.zeros_like(gt)
    cv2.circle(far, (170, 90), 15, 1, -1)  # no boundary pixel within the tolerance
    near = np.roll(gt, 2, axis=0)
    for p in (pred, far, near, np.maximum(far, gt)):
        j, f = frame_scores(gt, p, [1])
        assert (j[0], f[0]) == (reference_j(gt, p), reference_f(gt, p))
    j, f = frame_scores(gt, far, [1])
    assert j[0] == 0.0 and f[0] == 0.0
    # Stray pixels add boundary pixels that match nothing: precision drops, recall stays 1.
    # A lone pixel's boundary is itself, its left, upper and upper-left neighbours (4 pixels);
    # in the bottom-right corner the pixel itself never counts (3).
    n_g = int(boundary_map(gt).sum())
    precision = n_g / float(n_g + 4 + 4 + 3)
    _, f = frame_scores(gt, pred, [1])
    assert f[0] == 2 * precision * 1.0 / (precision + 1.0)


def test_many_frames_in_one_call_score_like_one_frame_at_a_time() -> None:
    """The scorer matches the boundaries of many frames in one bit-packed dilation (regions of
    different sizes stacked): each frame's numbers are those of scoring it alone, and the
    reference's."""
    from vostool.io.masks import BoxedPlane

    rng = np.random.default_rng(11)
    h, w = 90, 170
    pairs, alone, ref = [], [], []
    for t in range(12):
        gt = _blobby(rng, h, w, 2)
        pred = np.roll(gt, int(rng.integers(-6, 7)), axis=1) if t % 3 else _blobby(rng, h, w, 2)
        if t == 5:
            pred[:] = 0  # an empty prediction among the others
        pairs += object_pairs(BoxedPlane.of(gt), BoxedPlane.of(pred), [1, 2])
        alone.append(np.stack(frame_scores(gt, pred, [1, 2], 2), axis=1))
        ref += [(reference_j(gt == k, pred == k), reference_f(gt == k, pred == k, 2)) for k in (1, 2)]
    j, f = score_pairs(pairs, 2)
    assert np.array_equal(np.stack([j, f], axis=1), np.concatenate(alone))
    assert np.array_equal(np.stack([j, f], axis=1), np.array(ref))


def test_popcounts_without_numpy_2(monkeypatch: pytest.MonkeyPatch) -> None:
    """numpy < 2 has no ``bitwise_count``: the table lookup counts the same bits."""
    from vostool.bench.metrics import _row_popcounts

    rng = np.random.default_rng(5)
    x = rng.integers(0, 2**63, (7, 5), dtype=np.uint64) | np.uint64(1 << 63)
    expected = np.array([sum(bin(int(v)).count("1") for v in row) for row in x])
    assert np.array_equal(_row_popcounts(x), expected)
    monkeypatch.delattr(np, "bitwise_count", raising=False)
    assert np.array_equal(_row_popcounts(x), expected)
