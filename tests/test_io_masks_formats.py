"""Every mask format gives exactly the objects in the file, or one line saying why not."""

from __future__ import annotations

import io
import warnings

import cv2
import numpy as np
import pytest
from PIL import Image

from vostool.errors import InputError
from vostool.io.masks import DAVIS_PALETTE, ids_from_array, read_mask

DAVIS17 = "data/samples/davis17-fragments/Annotations/480p"


def _blocks(n: int, h: int = 60, w: int = 80) -> np.ndarray:
    """``(h, w)`` int ids 1..n as a grid of rectangles (one per id) on background 0."""
    ids = np.zeros((h, w), np.int64)
    cols = int(np.ceil(np.sqrt(n)))
    bh, bw = h // cols, w // cols
    for k in range(n):
        y, x = (k // cols) * bh, (k % cols) * bw
        ids[y + 1 : y + bh - 1, x + 1 : x + bw - 1] = k + 1
    return ids


def _jpeg_bytes(arr: np.ndarray, quality: int, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", quality=quality, **kw)
    return buf.getvalue()


def _davis_ids(shared_dir) -> np.ndarray:
    ids = np.array(Image.open(shared_dir / DAVIS17 / "tennis/00000.png"))
    ids[ids == 255] = 0
    return ids


# --- grey and 16-bit index masks ------------------------------------------------------------


@pytest.mark.parametrize("mode", ["L", "I;16"])
def test_grey_index_with_many_ids_is_exact(tmp_path, mode) -> None:
    ids = _blocks(40)  # more ids than the old 32-level limit, which thresholded the mask at 128
    img = Image.fromarray(ids.astype(np.uint8 if mode == "L" else np.uint16))
    assert img.mode == mode
    img.save(tmp_path / "m.png")
    m = read_mask(tmp_path / "m.png")
    np.testing.assert_array_equal(m.ids, ids)
    assert m.num_objects == 40 and "grey index" in m.kind


def test_16bit_ids_above_255_are_refused(tmp_path) -> None:
    ids = _blocks(4) * 100  # ids 100..400: 300 and 400 used to be merged (clipped to 255 = void)
    Image.fromarray(ids.astype(np.uint16)).save(tmp_path / "m.png")
    with pytest.raises(InputError, match=r"holds value 400 \(16-bit grey.*ids must be 1\.\.254.*8-bit PNG"):
        read_mask(tmp_path / "m.png")


def test_16bit_scaled_8bit_data_reads_as_8bit(tmp_path) -> None:
    ids = _blocks(5)
    Image.fromarray((ids * 257).astype(np.uint16)).save(tmp_path / "scaled.png")  # what image tools make of 8-bit ids
    np.testing.assert_array_equal(read_mask(tmp_path / "scaled.png").ids, ids)
    Image.fromarray(((ids > 0) * 65535).astype(np.uint16)).save(tmp_path / "bin.png")
    m = read_mask(tmp_path / "bin.png")
    assert m.object_ids == [1] and (m.ids == (ids > 0)).all()


@pytest.mark.parametrize("values", [(0, 1), (0, 255)])
def test_binary_grey_is_object_one(tmp_path, values) -> None:
    ids = _blocks(3) > 0
    Image.fromarray(np.where(ids, values[1], values[0]).astype(np.uint8)).save(tmp_path / "b.png")
    m = read_mask(tmp_path / "b.png")
    assert m.object_ids == [1] and (m.ids == ids).all()


def test_float_and_negative_values_are_refused(tmp_path) -> None:
    Image.fromarray(np.full((8, 8), 0.5, np.float32), "F").save(tmp_path / "f.tif")
    with pytest.raises(InputError, match="non-integer values"):
        read_mask(tmp_path / "f.tif")
    Image.fromarray(np.full((8, 8), -3, np.int32), "I").save(tmp_path / "n.tif")
    with pytest.raises(InputError, match="negative values"):
        read_mask(tmp_path / "n.tif")


def test_crisp_single_pixels_are_objects(tmp_path) -> None:
    ids = np.zeros((20, 20), np.uint8)
    ids[3, 4], ids[10, 10], ids[15:17, 2:4] = 5, 9, 2
    Image.fromarray(DAVIS_PALETTE[ids]).save(tmp_path / "rgb.png")
    Image.fromarray(ids).save(tmp_path / "grey.png")
    for name in ("rgb.png", "grey.png"):
        np.testing.assert_array_equal(read_mask(tmp_path / name).ids, ids)


def test_real_masks_round_trip_exactly_as_rgb_and_grey(shared_dir, tmp_path) -> None:
    for seq in ("tennis", "bear", "blackswan"):
        ids = np.array(Image.open(shared_dir / DAVIS17 / seq / "00000.png"))
        ids[ids == 255] = 0
        Image.fromarray(DAVIS_PALETTE[ids]).save(tmp_path / "rgb.png")
        Image.fromarray(ids).save(tmp_path / "grey.png")
        for name in ("rgb.png", "grey.png"):
            m = read_mask(tmp_path / name)
            np.testing.assert_array_equal(m.ids, ids)
            assert m.num_objects == len(np.unique(ids)) - 1


# --- lossy content -----------------------------------------------------------------------------


def test_jpeg_named_png_is_refused(tmp_path) -> None:
    ids = _blocks(3)
    (tmp_path / "mask.png").write_bytes(_jpeg_bytes(DAVIS_PALETTE[ids], 95))
    with pytest.raises(InputError, match="is a JPEG image.*save the mask as PNG"):
        read_mask(tmp_path / "mask.png")


@pytest.mark.parametrize(("colour", "quality"), [(True, 75), (True, 95), (True, 100), (False, 95), (False, 100)])
def test_png_saved_from_a_jpeg_is_refused(shared_dir, tmp_path, colour, quality) -> None:
    ids = _davis_ids(shared_dir)
    src = DAVIS_PALETTE[ids] if colour else np.where(ids > 0, 255, 0).astype(np.uint8)
    kw = {"subsampling": 0} if colour and quality == 100 else {}
    Image.open(io.BytesIO(_jpeg_bytes(src, quality, **kw))).save(tmp_path / "m.png")  # lossless PNG of lossy pixels
    with pytest.raises(InputError, match="colour noise at object edges"):
        read_mask(tmp_path / "m.png")


def test_palette_png_quantised_from_a_jpeg_is_refused(shared_dir, tmp_path) -> None:
    rgb = DAVIS_PALETTE[_davis_ids(shared_dir)]
    Image.open(io.BytesIO(_jpeg_bytes(rgb, 90))).quantize(64).save(tmp_path / "m.png")  # an editor's "indexed" export
    assert Image.open(tmp_path / "m.png").mode == "P"
    with pytest.raises(InputError, match="colour noise at object edges"):
        read_mask(tmp_path / "m.png")


@pytest.mark.parametrize("interpolation", [cv2.INTER_CUBIC, cv2.INTER_LANCZOS4])
@pytest.mark.parametrize("shape", ["blocks", "discs"])
def test_smoothly_upscaled_mask_is_read_right_or_refused(tmp_path, interpolation, shape) -> None:
    """Ringing of bicubic/Lanczos resampling: never a spurious object (Lanczos made 9 of 4)."""
    rgb = DAVIS_PALETTE[_blocks(4)] if shape == "blocks" else _aa_discs()
    truth = (
        {tuple(c) for c in np.unique(rgb.reshape(-1, 3), axis=0).tolist() if any(c)}
        if shape == "blocks"
        else {(255, 40, 40), (40, 60, 255)}
    )
    Image.fromarray(cv2.resize(rgb, (rgb.shape[1] * 4, rgb.shape[0] * 4), interpolation=interpolation)).save(tmp_path / "m.png")
    try:
        m = read_mask(tmp_path / "m.png")
    except InputError as err:
        assert "cannot be read exactly" in str(err) and "resize masks with nearest-neighbour" in str(err)
        return
    assert {tuple(int(c) for c in m.palette[i]) for i in m.object_ids} == truth


# --- anti-aliased RGB masks ------------------------------------------------------------------------


def _aa_discs() -> np.ndarray:
    img = np.zeros((120, 160, 3), np.uint8)
    cv2.circle(img, (45, 60), 30, (255, 40, 40), -1, lineType=cv2.LINE_AA)
    cv2.circle(img, (98, 60), 28, (40, 60, 255), -1, lineType=cv2.LINE_AA)  # touches the red disc: red-blue blends
    return img


def test_thin_objects_in_antialiased_rgb_are_kept(tmp_path) -> None:
    img = _aa_discs()
    lines = {  # colour: (start, end, thickness); crisp lines that anti-aliasing used to erase
        (30, 220, 60): ((5, 110), (150, 110), 1),  # 1 px, on black
        (240, 220, 20): ((10, 5), (60, 40), 1),  # 1 px diagonal, crossing the red disc's soft edge
        (200, 0, 200): ((140, 2), (140, 100), 2),  # 2 px
    }
    drawn = {}
    for colour, (a, b, thickness) in lines.items():
        cv2.line(img, a, b, colour, thickness, lineType=cv2.LINE_8)
        drawn[colour] = (img == colour).all(-1)
    Image.fromarray(img).save(tmp_path / "m.png")
    m = read_mask(tmp_path / "m.png")
    assert m.num_objects == 5 and "anti-aliased edge colours snapped" in m.kind
    ids = {tuple(int(c) for c in m.palette[i]): i for i in m.object_ids}
    assert set(ids) == {(255, 40, 40), (40, 60, 255), *lines}
    for colour, where in drawn.items():
        assert (m.ids[where] == ids[colour]).all()


def test_antialiased_edges_between_objects_add_no_object(tmp_path) -> None:
    img = _aa_discs()
    Image.fromarray(img).save(tmp_path / "m.png")
    m = read_mask(tmp_path / "m.png")
    assert m.num_objects == 2
    hard = np.zeros((120, 160, 3), np.uint8)
    cv2.circle(hard, (45, 60), 30, (255, 40, 40), -1)
    cv2.circle(hard, (98, 60), 28, (40, 60, 255), -1)
    Image.fromarray(hard).save(tmp_path / "hard.png")
    assert (m.ids != read_mask(tmp_path / "hard.png").ids).sum() < 2 * np.pi * (30 + 28)  # differ only along the edges


def test_all_grey_rgb_reads_as_grey_ids(tmp_path) -> None:
    ids = _blocks(6)
    Image.fromarray(np.repeat(ids[..., None], 3, axis=2).astype(np.uint8)).save(tmp_path / "m.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "m.png").ids, ids)  # ids kept, not renumbered by colour


# --- reading prints nothing ------------------------------------------------------------------------


def test_reading_a_mask_prints_nothing(tmp_path, capfd, monkeypatch) -> None:
    ids = _blocks(3, 200, 200)
    Image.fromarray(DAVIS_PALETTE[ids]).save(tmp_path / "m.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 30000)  # PIL warns (DecompressionBombWarning) above this
    with warnings.catch_warnings():
        warnings.simplefilter("default")  # as outside pytest: warnings print on stderr
        assert read_mask(tmp_path / "m.png").num_objects == 3
    out, err = capfd.readouterr()
    assert out == "" and err == ""


# --- ids given through the Python API --------------------------------------------------------------


def test_api_ids_are_checked_never_wrapped() -> None:
    ids = _blocks(3).astype(np.int32)
    m = ids_from_array(ids)
    np.testing.assert_array_equal(m.ids, ids)
    assert m.num_objects == 3
    with pytest.raises(InputError, match="holds id 300.*1..254"):
        ids_from_array(np.where(ids == 3, 300, ids))  # np.uint8 would make it 44
    with pytest.raises(InputError, match="holds id -1"):
        ids_from_array(ids - 1)
    with pytest.raises(InputError, match="dtype float32.*integer array"):
        ids_from_array(ids.astype(np.float32))
    with pytest.raises(InputError, match="2-D"):
        ids_from_array(ids[None])
    assert ids_from_array(ids > 0).object_ids == [1]
    v = ids_from_array(np.where(ids == 3, 255, ids).astype(np.uint8))
    assert v.object_ids == [1, 2] and v.void is not None and v.void.sum() == (ids == 3).sum()


def test_summary_line() -> None:
    assert ids_from_array(_blocks(2)).summary() == "2 objects (ids 1, 2; index array)"
    assert ids_from_array(_blocks(1)).summary() == "1 object (ids 1; index array)"
