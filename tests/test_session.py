"""The per-video session with the weightless flow method on synthetic video, on both kinds of
arrays: numpy (what ``--method flow`` with OpenCV flow runs on the CPU, without torch) and torch."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from synthetic_videos import iou, moving_objects
from vostool import create_session
from vostool.errors import InputError
from vostool.inference.torch_ops import channel_argmax

KINDS = ["numpy", "torch"]


def _prob(result) -> np.ndarray:  # noqa: ANN001
    p = result.prob
    return p if isinstance(p, np.ndarray) else p.numpy()


def test_flow_method_runs_on_numpy_arrays_by_default() -> None:
    assert create_session("flow", flow="dis", device="cpu").arrays.kind == "numpy"
    assert create_session("flow", flow="farneback", device="auto").arrays.kind == "numpy"
    assert create_session("agss", method_kwargs={"variant": "tiny"}, weights="random", device="cpu").arrays.kind == "torch"


@pytest.mark.parametrize("arrays", KINDS)
def test_flow_method_tracks_moving_objects(arrays: str) -> None:
    frames, masks = moving_objects(16, 192, 256, objects=2, speed=1.0)
    s = create_session("flow", flow="dis", device="cpu", arrays=arrays)
    results = list(s.propagate(frames, {0: masks[0]}))
    assert len(results) == 16
    last = results[-1]
    assert last.ids.shape == (192, 256) and last.ids.dtype == np.uint8
    assert last.object_ids == [1, 2]
    assert type(last.prob) is (np.ndarray if arrays == "numpy" else torch.Tensor)
    np.testing.assert_allclose(_prob(last).sum(0), np.ones((192, 256)), atol=1e-5, rtol=0)
    for k in (1, 2):
        assert iou(last.ids == k, masks[-1] == k) > 0.65
        # keeping the first mask (ignoring motion) does clearly worse
        assert iou(last.ids == k, masks[-1] == k) > iou(masks[0] == k, masks[-1] == k) + 0.15


@pytest.mark.parametrize("size", [None, 96])
def test_numpy_and_torch_sessions_agree(size: int | None) -> None:
    """The same frames through both kinds of arrays: the same masks (within the rounding of the
    OpenCV grey conversion, remap and resize) and nearly the same probabilities."""
    frames, masks = moving_objects(20, 192, 256, objects=3, speed=1.5)
    runs = {a: list(create_session("flow", flow="dis", device="cpu", size=size, arrays=a).propagate(frames, {0: masks[0]})) for a in KINDS}
    for a, b in zip(*runs.values()):
        for k in (1, 2, 3):
            assert iou(a.ids == k, b.ids == k) > (0.995 if size is None else 0.97)
        assert np.abs(_prob(a) - _prob(b)).mean() < (2e-3 if size is None else 1e-2)


@pytest.mark.parametrize("arrays", KINDS)
def test_objects_added_mid_video_keep_slots(arrays: str) -> None:
    frames, masks = moving_objects(10, 192, 256, objects=2, speed=1.0)
    first = np.where(masks[0] == 1, 1, 0).astype(np.uint8)
    later = np.where(masks[5] == 2, 2, 0).astype(np.uint8)
    s = create_session("flow", flow="dis", device="cpu", arrays=arrays)
    res = list(s.propagate(frames, {0: first, 5: later}))
    assert res[4].object_ids == [1] and res[4].prob.shape[0] == 2
    assert res[5].object_ids == [1, 2] and res[5].prob.shape[0] == 3
    np.testing.assert_array_equal(res[5].ids == 2, masks[5] == 2)  # given mask is kept exactly
    assert iou(res[9].ids == 2, masks[9] == 2) > 0.7
    assert iou(res[9].ids == 1, masks[9] == 1) > 0.6


def test_object_ids_that_are_not_slots_come_back_as_given() -> None:
    frames, masks = moving_objects(6, 96, 128, objects=2)
    given = np.choose(masks[0], [0, 7, 3]).astype(np.uint8)  # objects 7 and 3
    for arrays in KINDS:
        res = list(create_session("flow", flow="dis", device="cpu", arrays=arrays).propagate(frames, {0: given}))
        assert res[0].object_ids == [3, 7] and set(np.unique(res[-1].ids)) == {0, 3, 7}
        np.testing.assert_array_equal(res[0].ids, given)


@pytest.mark.parametrize("arrays", KINDS)
def test_internal_size_outputs_at_input_size(arrays: str) -> None:
    frames, masks = moving_objects(6, 192, 256, speed=1.0)
    s = create_session("flow", flow="dis", device="cpu", size=96, arrays=arrays)
    res = list(s.propagate(frames, {0: masks[0]}))
    assert res[-1].ids.shape == (192, 256)
    assert iou(res[-1].ids == 1, masks[-1] == 1) > 0.6


@pytest.mark.parametrize("arrays", KINDS)
def test_mask_errors(arrays: str) -> None:
    frames, masks = moving_objects(3, 64, 96)
    s = create_session("flow", flow="dis", device="cpu", arrays=arrays)
    with pytest.raises(InputError, match="first frame needs a mask"):
        s.step(frames[0])
    with pytest.raises(InputError, match="--resize-mask"):
        s.step(frames[0], masks[0][:32])
    with pytest.raises(InputError, match="no object"):
        s.step(frames[0], np.zeros_like(masks[0]))
    r = create_session("flow", flow="dis", device="cpu", resize_mask=True, arrays=arrays)
    small = masks[0][::2, ::2]
    assert r.step(frames[0], small).ids.shape == (64, 96)


@pytest.mark.parametrize("arrays", KINDS)
def test_state_dict_resumes_identically(arrays: str) -> None:
    frames, masks = moving_objects(12, 64, 96)
    a = create_session("flow", flow="dis", device="cpu", arrays=arrays)
    full = [r.ids for r in a.propagate(frames, {0: masks[0]})]
    b = create_session("flow", flow="dis", device="cpu", arrays=arrays)
    for t in range(6):
        b.step(frames[t], masks[0] if t == 0 else None)
    sd = b.state_dict()
    c = create_session("flow", flow="dis", device="cpu", arrays=arrays)
    c.load_state_dict(sd)
    rest = [c.step(frames[t]).ids for t in range(6, 12)]
    for x, y in zip(full[6:], rest):
        np.testing.assert_array_equal(x, y)


def test_numpy_session_resumes_from_a_torch_checkpoint() -> None:
    """A checkpoint written by a torch session (vostool before the numpy path) resumes the flow method."""
    frames, masks = moving_objects(10, 64, 96)
    t = create_session("flow", flow="dis", device="cpu", arrays="torch")
    for i in range(5):
        t.step(frames[i], masks[0] if i == 0 else None)
    n = create_session("flow", flow="dis", device="cpu")
    n.load_state_dict(t.state_dict())
    assert isinstance(n.prev_prob, np.ndarray) and isinstance(n.prev_prep, np.ndarray)
    assert iou(n.step(frames[5]).ids == 1, t.step(frames[5]).ids == 1) > 0.99


def test_the_weightless_method_never_imports_torch(tmp_path) -> None:
    """Start-up of ``--method flow``: torch alone takes longer to import than a short clip's run."""
    code = (
        "import sys, numpy as np, vostool\n"
        "from vostool.io.masks import write_index_png\n"
        "sys.path.insert(0, 'tests')\n"
        "from synthetic_videos import moving_objects, write_folder\n"
        "frames, masks = moving_objects(8, 64, 96)\n"
        f"d = write_folder(__import__('pathlib').Path({str(tmp_path / 'f')!r}), frames)\n"
        f"write_index_png({str(tmp_path / 'm.png')!r}, masks[0])\n"
        f"vostool.segment(d, {str(tmp_path / 'm.png')!r}, {str(tmp_path / 'out')!r}, overlay=True, soft=True, mattes=True)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=str(__import__("pathlib").Path(__file__).parents[1])
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert len(list((tmp_path / "out" / "masks").glob("*.png"))) == 8


def test_channel_argmax_matches_torch() -> None:
    p = torch.rand(5, 30, 40)
    p[:, 0, 0] = 0.5  # ties resolve to the first channel, like argmax
    assert torch.equal(channel_argmax(p).long(), p.argmax(0))
    from vostool.inference.numpy_ops import NumpyOps

    for c in (2, 5):
        q = p[:c].numpy()
        np.testing.assert_array_equal(NumpyOps().argmax(q), q.argmax(0))


def test_numpy_aggregation_is_soft_aggregate() -> None:
    from vostool.models.blocks import soft_aggregate
    from vostool.models.flow_propagation import soft_aggregate_numpy

    rng = np.random.default_rng(0)
    for k in (0, 1, 3):
        fg = rng.random((k, 20, 30)).astype(np.float32)
        fg[:, 0, :3] = [0.0, 1.0, 1.5]  # the clamp's ends and a value above 1
        np.testing.assert_allclose(soft_aggregate_numpy(fg), soft_aggregate(torch.from_numpy(fg).clamp(0, 1)).numpy(), rtol=1e-6, atol=1e-7)


def test_numpy_and_torch_array_operations_agree() -> None:
    from vostool.inference.numpy_ops import NumpyOps
    from vostool.inference.torch_ops import TorchOps

    n, t = NumpyOps(), TorchOps(torch.device("cpu"))
    rng = np.random.default_rng(1)
    prob = rng.random((3, 24, 40)).astype(np.float32)
    np.testing.assert_allclose(n.resize(prob, (48, 80)), t.resize(torch.from_numpy(prob), (48, 80)).numpy(), atol=1e-5)
    ids = rng.integers(0, 4, (48, 80), dtype=np.uint8)
    np.testing.assert_array_equal(n.ids(ids, (24, 40)), t.ids(ids, (24, 40)).numpy())
    np.testing.assert_array_equal(n.scores_u8(prob), t.scores_u8(torch.from_numpy(prob)))


@pytest.mark.skipif(__import__("vostool.inference.blocks", fromlist=["x"]).available(), reason="ONNX Runtime is installed here")
def test_asking_for_onnx_runtime_without_it_says_how_to_install_it() -> None:
    with pytest.raises(InputError, match=r"pip install 'vostool\[ort\]'"):
        create_session("agss", method_kwargs={"variant": "tiny"}, weights="random", device="cpu", runtime="onnxruntime")
    assert create_session("agss", method_kwargs={"variant": "tiny"}, weights="random", device="cpu").describe()["runtime"] == "torch"


def _drifted(ids: np.ndarray, oid: int, px: int) -> np.ndarray:
    """``ids`` with object ``oid`` grown by ``px`` pixels over the background (a drifted mask)."""
    import cv2

    grown = cv2.dilate((ids == oid).astype(np.uint8), np.ones((2 * px + 1, 2 * px + 1), np.uint8)).astype(bool)
    out = ids.copy()
    out[grown & (ids == 0)] = oid
    return out


@pytest.mark.parametrize("arrays", KINDS)
def test_a_mask_on_a_later_frame_replaces_a_drifted_object(arrays: str) -> None:
    """Issue 14 item 4: a mask for an object on frame t is its truth on frame t (drift removed,
    not pixels added); the other objects keep their prediction."""
    frames, masks = moving_objects(12, 96, 128, objects=2, speed=1.0)
    start = _drifted(masks[0], 1, 8)  # object 1 given far too big: its prediction drifts
    t = 6
    fix = np.where(masks[t] == 1, 1, 0).astype(np.uint8)
    plain = list(create_session("flow", flow="dis", device="cpu", arrays=arrays).propagate(frames, {0: start}))
    fixed = list(create_session("flow", flow="dis", device="cpu", arrays=arrays).propagate(frames, {0: start, t: fix}))
    assert iou(plain[t].ids == 1, fix == 1) < 0.8  # drifted before the correction
    assert iou(fixed[t].ids == 1, fix == 1) >= 0.99
    np.testing.assert_array_equal(fixed[t].ids == 1, fix == 1)  # exactly the given mask
    np.testing.assert_array_equal(_prob(fixed[t])[1] == 1.0, fix == 1)
    assert iou(fixed[t].ids == 2, plain[t].ids == 2) > 0.97  # object 2 kept where the mask leaves it
    assert iou(fixed[-1].ids == 1, masks[-1] == 1) > iou(plain[-1].ids == 1, masks[-1] == 1) + 0.15  # the fix propagates


@pytest.mark.parametrize(("method", "arrays"), [("flow", "numpy"), ("flow", "torch"), ("agss", "torch")])
def test_given_frames_come_back_exactly_at_another_internal_size(method: str, arrays: str) -> None:
    """Issue 14 item 13: with --size below the input, a frame with a given mask returns that
    mask exactly at the input size (no resampling of the given pixels), for every method."""
    frames, masks = moving_objects(5, 120, 160, objects=2, speed=1.0)
    kwargs = {"weights": "random", "method_kwargs": {"variant": "tiny"}} if method == "agss" else {}
    s = create_session(method, flow="dis", device="cpu", size=52, arrays=arrays, **kwargs)
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
