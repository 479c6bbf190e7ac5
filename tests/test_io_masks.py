"""Mask reading in every format, and palette PNG writing."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from vostool.errors import InputError
from vostool.io.masks import DAVIS_PALETTE, read_index_png, read_mask, write_index_png


def test_davis_palette_matches_published_entries() -> None:
    expected = [
        (0, 0, 0),
        (128, 0, 0),
        (0, 128, 0),
        (128, 128, 0),
        (0, 0, 128),
        (128, 0, 128),
        (0, 128, 128),
        (128, 128, 128),
        (64, 0, 0),
        (192, 0, 0),
        (64, 128, 0),
        (192, 128, 0),
    ]
    assert [tuple(c) for c in DAVIS_PALETTE[:12].tolist()] == expected
    assert len({tuple(c) for c in DAVIS_PALETTE.tolist()}) == 256


def test_void_pixels_are_not_an_object(tmp_path) -> None:
    ids = np.zeros((10, 10), np.uint8)
    ids[1:4, 1:4] = 1
    ids[6:9, 6:9] = 255
    write_index_png(tmp_path / "v.png", ids)
    m = read_mask(tmp_path / "v.png")
    assert m.object_ids == [1]
    assert m.void is not None and m.void.sum() == 9
    assert read_index_png(tmp_path / "v.png").max() == 255  # the benchmark sees void as stored


def test_binary_gray_is_object_one(tmp_path) -> None:
    a = np.zeros((12, 12), np.uint8)
    a[3:9, 3:9] = 255
    Image.fromarray(a, "L").save(tmp_path / "b.png")
    m = read_mask(tmp_path / "b.png")
    assert m.object_ids == [1] and m.ids.sum() == 36


def test_gray_index_mask_keeps_ids(tmp_path) -> None:
    a = np.zeros((12, 12), np.uint8)
    a[0:3] = 1
    a[5:8] = 3
    a[10:] = 255
    Image.fromarray(a, "L").save(tmp_path / "g.png")
    m = read_mask(tmp_path / "g.png")
    assert m.object_ids == [1, 3]
    assert m.void is not None and m.void.sum() == 24


def test_gray_matte_is_refused(tmp_path) -> None:
    a = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (8, 1))  # 64 grey levels in a ramp: a soft matte, not ids
    Image.fromarray(a, "L").save(tmp_path / "s.png")
    with pytest.raises(InputError, match="soft gradients.*threshold it or save a hard mask"):
        read_mask(tmp_path / "s.png")


def test_rgb_antialiased_edges_snap_to_objects(tmp_path) -> None:
    img = np.zeros((120, 160, 3), np.uint8)
    cv2.circle(img, (45, 60), 30, (255, 40, 40), -1, lineType=cv2.LINE_AA)
    cv2.circle(img, (115, 60), 28, (40, 60, 255), -1, lineType=cv2.LINE_AA)
    n_colours = len(np.unique(img.reshape(-1, 3), axis=0))
    assert n_colours > 10  # anti-aliasing made many blend colours
    Image.fromarray(img, "RGB").save(tmp_path / "rgb.png")
    m = read_mask(tmp_path / "rgb.png")
    assert len(m.object_ids) == 2
    left, right = m.ids[60, 45], m.ids[60, 115]
    assert left != right and left > 0 and right > 0
    # The snapped masks stay within one pixel of the hard circles.
    for (cx, r), oid in (((45, 30), left), ((115, 28), right)):
        hard = np.zeros((120, 160), np.uint8)
        cv2.circle(hard, (cx, 60), r, 1, -1)
        assert np.abs((m.ids == oid).sum() - hard.sum()) < 2 * np.pi * r
    assert tuple(m.palette[left]) == (255, 40, 40)


def test_rgb_in_davis_colours_keeps_davis_ids(tmp_path) -> None:
    ids = np.zeros((30, 30), np.uint8)
    ids[2:10, 2:10] = 2
    ids[15:25, 15:25] = 5
    Image.fromarray(DAVIS_PALETTE[ids], "RGB").save(tmp_path / "d.png")
    assert read_mask(tmp_path / "d.png").object_ids == [2, 5]


def test_rgba_and_la_use_alpha(tmp_path) -> None:
    rgba = np.zeros((20, 20, 4), np.uint8)
    rgba[2:12, 2:12] = (200, 10, 10, 255)
    rgba[14:18, 14:18] = (10, 200, 10, 0)  # transparent: background
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    assert read_mask(tmp_path / "a.png").object_ids == [1]
    la = np.zeros((20, 20, 2), np.uint8)
    la[2:12, 2:12] = (255, 255)
    la[14:18, 14:18] = (255, 0)
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    m = read_mask(tmp_path / "la.png")
    assert m.object_ids == [1] and m.ids.sum() == 100


@pytest.mark.parametrize("content", [b"", b"not a png at all"])
def test_unreadable_mask_is_an_input_error(tmp_path, content) -> None:
    p = tmp_path / "bad.png"
    p.write_bytes(content)
    with pytest.raises(InputError, match="cannot read mask"):
        read_mask(p)
    with pytest.raises(InputError, match="not found"):
        read_mask(tmp_path / "missing.png")


def test_real_davis17_mask_with_void(shared_dir) -> None:
    p = shared_dir / "data/samples/davis17-fragments/Annotations/480p/tennis/00000.png"
    raw = np.array(Image.open(p))
    m = read_mask(p)
    assert m.object_ids == sorted(int(v) for v in np.unique(raw) if v not in (0, 255))
    assert (raw == 255).any() and m.void is not None
    assert (m.ids[raw == 255] == 0).all()


def test_written_pngs_read_back_exactly_with_their_palette(tmp_path) -> None:
    from PIL import Image

    from vostool.io.masks import DAVIS_PALETTE, write_gray_png, write_index_png

    rng = np.random.default_rng(0)
    ids = np.zeros((61, 83), np.uint8)
    ids[10:40, 5:50] = 1
    ids[30:60, 40:80] = 7
    palette = DAVIS_PALETTE.copy()
    palette[7] = (1, 2, 3)
    write_index_png(tmp_path / "m.png", ids, palette)
    img = Image.open(tmp_path / "m.png")
    assert img.mode == "P" and img.size == (83, 61)
    np.testing.assert_array_equal(np.array(img), ids)
    np.testing.assert_array_equal(np.array(img.getpalette(), np.uint8).reshape(-1, 3)[:256], palette)
    m = read_mask(tmp_path / "m.png")
    np.testing.assert_array_equal(m.ids, ids)
    assert m.object_ids == [1, 7] and tuple(m.palette[7]) == (1, 2, 3)
    gray = rng.integers(0, 256, (17, 29), dtype=np.uint8)
    write_gray_png(tmp_path / "g.png", gray)
    img = Image.open(tmp_path / "g.png")
    assert img.mode == "L"
    np.testing.assert_array_equal(np.array(img), gray)


def _png_with_filters(img: np.ndarray, kinds: list[int], colour: int) -> bytes:
    """An 8-bit PNG of ``img`` whose row ``r`` is filtered with ``kinds[r]`` (0 None, 1 Sub, 2 Up, 4 Paeth)."""
    import struct
    import zlib

    h, w = img.shape
    x = img.astype(np.int16)
    rows = []
    for r in range(h):
        left = np.concatenate([[0], x[r, :-1]])
        up = x[r - 1] if r else np.zeros(w, np.int16)
        upleft = np.concatenate([[0], up[:-1]])
        if kinds[r] == 4:
            p = left + up - upleft
            pa, pb, pc = np.abs(p - left), np.abs(p - up), np.abs(p - upleft)
            pred = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, upleft))
        else:
            pred = {0: 0 * left, 1: left, 2: up}[kinds[r]]
        rows.append(bytes([kinds[r]]) + ((x[r] - pred) % 256).astype(np.uint8).tobytes())

    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))

    plte = chunk(b"PLTE", bytes(range(256)) * 3) if colour == 3 else b""
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, colour, 0, 0, 0))
        + plte
        + chunk(b"IDAT", zlib.compress(b"".join(rows)))
        + chunk(b"IEND", b"")
    )


def test_fast_png_decoding_equals_pil_for_every_row_filter(tmp_path) -> None:
    """The scorer's decoder (None / Sub / Up rows, in any mix) gives PIL's samples; files it does
    not handle (Paeth rows) are read by PIL through the same call."""
    import io

    from vostool.io.masks import decode_plane_png_boxed

    def decode_plane_png(data: bytes) -> np.ndarray | None:
        boxed = decode_plane_png_boxed(data)
        return None if boxed is None else boxed.dense()

    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (23, 31), dtype=np.uint8)
    img[5:15, 3:20] = 7  # runs, as masks have
    for colour in (0, 3):
        for kinds in ([0] * 23, [1] * 23, [2] * 23, list(rng.integers(0, 3, 23)), [2, 2, 1, 0, 2, 2, 2] + [1] * 16):
            data = _png_with_filters(img, kinds, colour)
            np.testing.assert_array_equal(np.array(Image.open(io.BytesIO(data))), img)  # the test's encoder is right
            out = decode_plane_png(data)
            assert out is not None and out.flags.writeable
            np.testing.assert_array_equal(out, img)
        paeth = _png_with_filters(img, [4] * 23, colour)
        assert decode_plane_png(paeth) is None
        at = data.index(b"IDAT") + 4  # a broken zlib stream: None (PIL then says what is wrong), not an inflater's error
        assert decode_plane_png(data[:at] + b"\x00\xff" * 4 + data[at + 8 :]) is None
        (tmp_path / "p.png").write_bytes(paeth)
        np.testing.assert_array_equal(read_index_png(tmp_path / "p.png"), img)


def test_boxed_decoding_gives_the_tight_box_of_the_objects() -> None:
    """The scorer's decoder unfilters only the box of the nonzero samples (Sub rows: found from
    the filtered bytes): the box is the tight one and the samples in it exact, for objects away
    from the edges, touching the right edge in one row only, ids whose steps wrap modulo 256,
    a single pixel, and an empty mask."""
    from vostool.io.masks import BoxedPlane, decode_plane_png_boxed

    rng = np.random.default_rng(1)
    h, w = 19, 40
    cases = []
    m = np.zeros((h, w), np.uint8)
    m[4:9, 6:15] = 200
    m[6:12, 10:13] = 100  # 200 -> 100 -> 0: steps of -100 and -100 (wrapping modulo 256)
    cases.append(m)
    m2 = m.copy()
    m2[15, 30:] = 3  # one row ends on an object
    cases.append(m2)
    m3 = np.zeros((h, w), np.uint8)
    m3[7, 0] = 1  # a single pixel at the left edge
    cases.append(m3)
    cases.append(np.zeros((h, w), np.uint8))
    cases.append((rng.random((h, w)) < 0.05).astype(np.uint8) * 255)
    for img in cases:
        expected = BoxedPlane.of(img)
        for kinds in ([0] * h, [1] * h, [2] * h, list(rng.integers(0, 3, h))):
            out = decode_plane_png_boxed(_png_with_filters(img, kinds, 3))
            assert out is not None and out.box == expected.box and out.shape == (h, w)
            if expected.box is None:
                assert out.crop is None
            else:
                np.testing.assert_array_equal(out.crop, expected.crop)
            np.testing.assert_array_equal(out.dense(), img)
