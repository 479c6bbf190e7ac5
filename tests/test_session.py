"""The per-video session with the weightless flow method on synthetic video."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from synthetic_videos import iou, moving_objects
from vostool import create_session
from vostool.errors import InputError
from vostool.inference.session import channel_argmax


def test_flow_method_tracks_moving_objects() -> None:
    frames, masks = moving_objects(16, 192, 256, objects=2, speed=1.0)
    s = create_session("flow", flow="dis", device="cpu")
    results = list(s.propagate(frames, {0: masks[0]}))
    assert len(results) == 16
    last = results[-1]
    assert last.ids.shape == (192, 256) and last.ids.dtype == np.uint8
    assert last.object_ids == [1, 2]
    torch.testing.assert_close(last.prob.sum(0), torch.ones(192, 256), atol=1e-5, rtol=0)
    for k in (1, 2):
        assert iou(last.ids == k, masks[-1] == k) > 0.65
        # keeping the first mask (ignoring motion) does clearly worse
        assert iou(last.ids == k, masks[-1] == k) > iou(masks[0] == k, masks[-1] == k) + 0.15


def test_objects_added_mid_video_keep_slots() -> None:
    frames, masks = moving_objects(10, 192, 256, objects=2, speed=1.0)
    first = np.where(masks[0] == 1, 1, 0).astype(np.uint8)
    later = np.where(masks[5] == 2, 2, 0).astype(np.uint8)
    s = create_session("flow", flow="dis", device="cpu")
    res = list(s.propagate(frames, {0: first, 5: later}))
    assert res[4].object_ids == [1] and res[4].prob.shape[0] == 2
    assert res[5].object_ids == [1, 2] and res[5].prob.shape[0] == 3
    np.testing.assert_array_equal(res[5].ids == 2, masks[5] == 2)  # given mask is kept exactly
    assert iou(res[9].ids == 2, masks[9] == 2) > 0.7
    assert iou(res[9].ids == 1, masks[9] == 1) > 0.6


def test_internal_size_outputs_at_input_size() -> None:
    frames, masks = moving_objects(6, 192, 256, speed=1.0)
    s = create_session("flow", flow="dis", device="cpu", size=96)
    res = list(s.propagate(frames, {0: masks[0]}))
    assert res[-1].ids.shape == (192, 256)
    assert iou(res[-1].ids == 1, masks[-1] == 1) > 0.6


def test_mask_errors() -> None:
    frames, masks = moving_objects(3, 64, 96)
    s = create_session("flow", flow="dis", device="cpu")
    with pytest.raises(InputError, match="first frame needs a mask"):
        s.step(frames[0])
    with pytest.raises(InputError, match="--resize-mask"):
        s.step(frames[0], masks[0][:32])
    with pytest.raises(InputError, match="no object"):
        s.step(frames[0], np.zeros_like(masks[0]))
    r = create_session("flow", flow="dis", device="cpu", resize_mask=True)
    small = masks[0][::2, ::2]
    assert r.step(frames[0], small).ids.shape == (64, 96)


def test_state_dict_resumes_identically() -> None:
    frames, masks = moving_objects(12, 64, 96)
    a = create_session("flow", flow="dis", device="cpu")
    full = [r.ids for r in a.propagate(frames, {0: masks[0]})]
    b = create_session("flow", flow="dis", device="cpu")
    for t in range(6):
        b.step(frames[t], masks[0] if t == 0 else None)
    sd = b.state_dict()
    c = create_session("flow", flow="dis", device="cpu")
    c.load_state_dict(sd)
    rest = [c.step(frames[t]).ids for t in range(6, 12)]
    for x, y in zip(full[6:], rest):
        np.testing.assert_array_equal(x, y)


def test_channel_argmax_matches_torch() -> None:
    p = torch.rand(5, 30, 40)
    p[:, 0, 0] = 0.5  # ties resolve to the first channel, like argmax
    assert torch.equal(channel_argmax(p).long(), p.argmax(0))


def _drifted(ids: np.ndarray, oid: int, px: int) -> np.ndarray:
    """``ids`` with object ``oid`` grown by ``px`` pixels over the background (a drifted mask)."""
    import cv2

    grown = cv2.dilate((ids == oid).astype(np.uint8), np.ones((2 * px + 1, 2 * px + 1), np.uint8)).astype(bool)
    out = ids.copy()
    out[grown & (ids == 0)] = oid
    return out


def test_a_mask_on_a_later_frame_replaces_a_drifted_object() -> None:
    """Issue 14 item 4: a mask for an object on frame t is its truth on frame t (drift removed,
    not pixels added); the other objects keep their prediction."""
    frames, masks = moving_objects(12, 96, 128, objects=2, speed=1.0)
    start = _drifted(masks[0], 1, 8)  # object 1 given far too big: its prediction drifts
    t = 6
    fix = np.where(masks[t] == 1, 1, 0).astype(np.uint8)
    plain = list(create_session("flow", flow="dis", device="cpu").propagate(frames, {0: start}))
    fixed = list(create_session("flow", flow="dis", device="cpu").propagate(frames, {0: start, t: fix}))
    assert iou(plain[t].ids == 1, fix == 1) < 0.8  # drifted before the correction
    assert iou(fixed[t].ids == 1, fix == 1) >= 0.99
    np.testing.assert_array_equal(fixed[t].ids == 1, fix == 1)  # exactly the given mask
    assert torch.equal(fixed[t].prob[1] == 1.0, torch.from_numpy(fix == 1))
    assert iou(fixed[t].ids == 2, plain[t].ids == 2) > 0.97  # object 2 kept where the mask leaves it
    assert iou(fixed[-1].ids == 1, masks[-1] == 1) > iou(plain[-1].ids == 1, masks[-1] == 1) + 0.15  # the fix propagates


@pytest.mark.parametrize("method", ["flow", "agss"])
def test_given_frames_come_back_exactly_at_another_internal_size(method: str) -> None:
    """Issue 14 item 13: with --size below the input, a frame with a given mask returns that
    mask exactly at the input size (no resampling of the given pixels), for every method."""
    frames, masks = moving_objects(5, 120, 160, objects=2, speed=1.0)
    kwargs = {"weights": "random", "method_kwargs": {"variant": "tiny"}} if method == "agss" else {}
    s = create_session(method, flow="dis", device="cpu", size=52, **kwargs)
    later = np.where(masks[3] == 2, 2, 0).astype(np.uint8)
    res = list(s.propagate(frames, {0: masks[0], 3: later}))
    np.testing.assert_array_equal(res[0].ids, masks[0])
    np.testing.assert_array_equal(res[3].ids == 2, later == 2)
    assert res[0].prob.shape == (3, 120, 160)


def test_array_masks_are_checked_not_wrapped() -> None:
    frames, masks = moving_objects(2, 64, 96)
    s = create_session("flow", flow="dis", device="cpu")
    with pytest.raises(InputError, match="id 300"):
        s.step(frames[0], np.where(masks[0] == 1, 300, masks[0].astype(np.int32)))
    with pytest.raises(InputError, match="dtype float"):
        s.step(frames[0], masks[0].astype(np.float32))
    void = np.where(masks[0] == 2, 255, masks[0]).astype(np.uint8)
    assert s.step(frames[0], void).object_ids == [1]  # 255 is void, not an object


def test_size_above_the_input_runs_at_the_input_size() -> None:
    from vostool.inference.session import internal_size

    assert internal_size(320, 180, 1080) == (320, 180)
    assert internal_size(320, 180, 90) == (160, 90)
