"""Flow estimators recover known motion; backward warping moves masks the right way."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from synthetic_videos import texture
from vostool.errors import InputError
from vostool.flow import backward_warp, create_flow


def _shifted_pair(dx: int, dy: int) -> tuple[torch.Tensor, torch.Tensor]:
    big = texture(160, 200, np.random.default_rng(1), 2.0)
    prev = big[20:140, 20:180]
    cur = big[20 - dy : 140 - dy, 20 - dx : 180 - dx]  # content moved by (+dx, +dy)
    to_t = lambda a: torch.from_numpy(a).permute(2, 0, 1)[None].float() / 255
    return to_t(cur), to_t(prev)


@pytest.mark.parametrize("name", ["dis", "farneback"])
def test_opencv_flow_recovers_translation(name: str) -> None:
    cur, prev = _shifted_pair(4, -3)
    est = create_flow(name)
    f = est.flow(est.prepare(cur), est.prepare(prev))
    assert f.shape == (2, 120, 160)
    inner = f[:, 20:-20, 20:-20]
    # backward flow: a pixel of the current frame came from (x - 4, y + 3) in the previous one
    assert inner[0].median().item() == pytest.approx(-4, abs=0.3)
    assert inner[1].median().item() == pytest.approx(3, abs=0.3)


def test_backward_warp_moves_mask_with_constant_flow() -> None:
    prev = torch.zeros(2, 40, 50)
    prev[0, 10:20, 10:20] = 1
    prev[1, 25:30, 30:45] = 0.5
    flow = torch.zeros(2, 40, 50)
    flow[0] = -3.0  # current pixel x came from x - 3: content moved right by 3
    flow[1] = 2.0  # current pixel y came from y + 2: content moved up by 2
    out = backward_warp(prev, flow)
    expected = torch.zeros_like(prev)
    expected[0, 8:18, 13:23] = 1
    expected[1, 23:28, 33:48] = 0.5
    torch.testing.assert_close(out, expected)
    # batched form, and zeros flowing in from outside the frame
    out_b = backward_warp(prev[None], flow[None])
    torch.testing.assert_close(out_b[0], expected)
    big = torch.zeros(2, 40, 50)
    big[0] = 100.0
    assert backward_warp(prev, big).abs().sum() == 0


def test_unknown_flow_name() -> None:
    with pytest.raises(InputError, match="unknown flow 'sparse'"):
        create_flow("sparse")


def test_dis_result_does_not_depend_on_earlier_calls() -> None:
    """Resume exactness needs flow(a, b) to be the same whatever was computed before."""
    cur, prev = _shifted_pair(2, 1)
    small = lambda t: torch.nn.functional.interpolate(t, size=(48, 85), mode="area")
    est = create_flow("dis")
    a, b = est.prepare(small(cur)), est.prepare(small(prev))
    first = est.flow(a, b)
    noise = est.prepare(torch.rand(1, 3, 48, 85))
    est.flow(noise, a)
    est.flow(b, noise)
    assert torch.equal(first, est.flow(a, b))


def test_remap_warp_is_backward_warp_on_numpy_arrays() -> None:
    """The numpy warp (cv2.remap) samples where grid_sample does, zeros outside included."""
    from vostool.flow import remap_warp

    rng = np.random.default_rng(0)
    x = np.stack([cv2_blur(rng.random((60, 80)).astype(np.float32)) for _ in range(3)])
    flow = np.stack([cv2_blur(rng.normal(0, 6, (60, 80)).astype(np.float32)) for _ in range(2)], -1)
    flow[:5] = 200.0  # these pixels sample outside the frame: zeros
    expected = backward_warp(torch.from_numpy(x), torch.from_numpy(flow).permute(2, 0, 1)).numpy()
    out = remap_warp(x, flow)
    assert out.shape == x.shape and out.dtype == np.float32
    np.testing.assert_allclose(out, expected, atol=2e-4, rtol=0)
    assert np.abs(out[:, :5]).max() == 0.0
    single = np.empty_like(x[:1])
    assert remap_warp(x[:1], flow, out=single) is single


def cv2_blur(a: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.GaussianBlur(a, (0, 0), 3)


def test_opencv_flow_on_numpy_frames_matches_the_tensor_path() -> None:
    """A numpy session gives OpenCV's (H, W, 2) flow from uint8 RGB frames; a torch session the
    same flow as a (2, H, W) tensor (up to the grey conversions' rounding)."""
    cur, prev = _shifted_pair(4, -3)
    est = create_flow("dis")
    to_np = lambda t: (t[0].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
    f_np = est.flow(est.prepare(to_np(cur)), est.prepare(to_np(prev)))
    f_t = est.flow(est.prepare(cur), est.prepare(prev))
    assert isinstance(f_np, np.ndarray) and f_np.shape == (120, 160, 2)
    inner = f_np[20:-20, 20:-20]
    assert np.median(inner[..., 0]) == pytest.approx(-4, abs=0.3) and np.median(inner[..., 1]) == pytest.approx(3, abs=0.3)
    assert np.abs(f_t.permute(1, 2, 0).numpy() - f_np)[20:-20, 20:-20].mean() < 0.05
