"""Overlays: colour blended inside objects, a contrasting outline inside each border, background untouched."""

from __future__ import annotations

import numpy as np

from synthetic_videos import texture
from vostool.io.masks import DAVIS_PALETTE
from vostool.io.overlay import OUTLINE_PX, render_overlay


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
    for y, x in ((10, 15), (11, 15), (20, 24), (20, 23), (20, 25), (20, 26), (29, 40)):  # 2 px inside borders: white
        assert tuple(out[y, x]) == (255, 255, 255), (y, x)
    assert tuple(out[12, 15]) != (255, 255, 255) and tuple(out[20, 22]) != (255, 255, 255)  # 3 px in: the blend
    np.testing.assert_array_equal(render_overlay(rgb, np.zeros_like(ids)), rgb)


def test_object_one_is_visible_on_a_red_object() -> None:
    """DAVIS object 1 is dark red (128, 0, 0): over a red object its fill still changes the frame
    clearly, and its outline stands out from red and from the background."""
    rgb = np.zeros((60, 80, 3), np.uint8)
    rgb[:] = (40, 110, 40)  # green background
    rgb[15:45, 20:60] = (210, 35, 30)  # a red object
    ids = np.zeros((60, 80), np.uint8)
    ids[15:45, 20:60] = 1
    out = render_overlay(rgb, ids).astype(int)
    fill = np.linalg.norm(out[25:35, 30:50] - rgb[25:35, 30:50].astype(int), axis=-1)
    assert fill.min() >= 45  # the fill alone is visible
    border = np.zeros_like(ids, bool)
    border[15:45, 20:60] = True
    border[15 + OUTLINE_PX : 45 - OUTLINE_PX, 20 + OUTLINE_PX : 60 - OUTLINE_PX] = False
    contrast = np.linalg.norm(out[border] - np.array([210, 35, 30]), axis=-1)
    assert contrast.min() >= 200  # the outline: white against red


def test_light_palette_colours_get_a_black_outline() -> None:
    rgb = texture(30, 30, np.random.default_rng(1))
    ids = np.zeros((30, 30), np.uint8)
    ids[5:25, 5:25] = 7
    pal = DAVIS_PALETTE.copy()
    pal[7] = (250, 250, 120)
    out = render_overlay(rgb, ids, pal)
    assert tuple(out[5, 10]) == (0, 0, 0) and tuple(out[6, 10]) == (0, 0, 0)
