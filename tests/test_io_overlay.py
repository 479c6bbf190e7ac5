"""Overlays: colour blended inside objects, outline in full colour, background untouched."""

from __future__ import annotations

import numpy as np

from synthetic_videos import texture
from vostool.io.masks import DAVIS_PALETTE
from vostool.io.overlay import render_overlay


def test_overlay_blends_objects_and_outlines_them() -> None:
    rgb = texture(40, 60, np.random.default_rng(0))
    ids = np.zeros((40, 60), np.uint8)
    ids[10:30, 10:25] = 1
    ids[10:30, 25:50] = 3
    out = render_overlay(rgb, ids, alpha=0.5)
    bg = ids == 0
    np.testing.assert_array_equal(out[bg], rgb[bg])
    inner = (slice(13, 27), slice(13, 22))
    expected = (rgb[inner].astype(int) + DAVIS_PALETTE[1].astype(int)) / 2
    assert np.abs(out[inner].astype(int) - expected).max() <= 1
    assert tuple(out[10, 15]) == tuple(DAVIS_PALETTE[1])  # top border of object 1
    assert tuple(out[20, 25]) == tuple(DAVIS_PALETTE[3])  # where objects 1 and 3 meet
    assert tuple(out[20, 24]) == tuple(DAVIS_PALETTE[1])
    np.testing.assert_array_equal(render_overlay(rgb, np.zeros_like(ids)), rgb)
