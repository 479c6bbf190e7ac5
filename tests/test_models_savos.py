"""SAVOS (``savos``): tiny random-init networks on the CPU."""

from __future__ import annotations

from functools import partial

import pytest
import torch

from method_contracts import (
    assert_gradients_reach,
    assert_probabilities,
    assert_session_resumes,
    first_frame_state,
    fp32_and_bf16,
    propagate_with_late_object,
    tiny_method,
    to_inputs,
)
from synthetic_videos import moving_objects, without
from vostool.models import available_methods, method_info
from vostool.models.blocks import softmax_aggregate
from vostool.models.savos import SAVOS, SAVOSNet

tiny = partial(tiny_method, "savos")


def test_registered_without_flow() -> None:
    assert "savos" in available_methods()
    assert method_info("savos").needs_weights
    assert SAVOS.uses_flow is False
    assert SAVOS.stages == ("encoder", "global-conv", "decoder", "aggregate")


@pytest.mark.parametrize("hw", [(75, 101), (33, 47), (64, 96)])
def test_predict_shapes_and_probabilities_at_odd_sizes(hw: tuple[int, int]) -> None:
    m = tiny()
    frames, ids = moving_objects(2, *hw, objects=2)
    with torch.inference_mode():
        state = first_frame_state(m, frames[0], ids[0], 2)
        out = m.predict(state, to_inputs(frames[1], ids[1], 2)[0], torch.zeros(2, *hw))
    assert_probabilities(out, 2, hw)


def test_guidance_is_the_previous_probability_not_the_warped_input() -> None:
    m = tiny()
    frames, ids = moving_objects(3, 48, 64, objects=2)
    image1, prob1 = to_inputs(frames[1], ids[1], 2)
    with torch.inference_mode():
        state = first_frame_state(m, frames[0], ids[0], 2)
        a = m.predict(state, image1, torch.zeros(2, 48, 64))
        b = m.predict(state, image1, torch.rand(2, 48, 64))
        m.update(state, image1, prob1)
        torch.testing.assert_close(state["prev"], prob1[1:])
        c = m.predict(state, image1, torch.zeros(2, 48, 64))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


@pytest.mark.parametrize("arch", [{}, {"backbone": "mobilenet-v2", "base_width": 64}], ids=["resnet18", "mobilenet-v2"])
def test_predict_is_the_training_forward_plus_eq_5(arch: dict) -> None:
    m = tiny(**arch)
    frames, ids = moving_objects(2, 75, 101, objects=3)
    image0, prob0 = to_inputs(frames[0], ids[0], 3)
    image1, _ = to_inputs(frames[1], ids[1], 3)
    with torch.inference_mode():
        state = first_frame_state(m, frames[0], ids[0], 3)
        out = m.predict(state, image1, torch.zeros(3, 75, 101))
        ref = m.net.reference(image0, prob0[None, 1:])
        logits = m.net(image1, prob0[None, 1:], ref)
    assert ref.shape[:2] == (1, 3) and logits.shape == (1, 3, 75, 101)
    torch.testing.assert_close(state["ref"][0], ref[0])
    torch.testing.assert_close(out, softmax_aggregate(torch.sigmoid(logits))[0], rtol=1e-4, atol=1e-5)


def test_objects_in_one_batch_equal_one_object_at_a_time() -> None:
    """Objects are independent rows of one pass: batching changes nothing."""
    net = tiny().net
    image, ref_image = torch.rand(1, 3, 40, 72), torch.rand(1, 3, 40, 72)
    prev, ref_masks = torch.rand(1, 3, 40, 72), torch.rand(1, 3, 40, 72)
    with torch.no_grad():
        ref = net.reference(ref_image, ref_masks)
        batched = net(image, prev, ref)
        for i in range(3):
            single = net(image, prev[:, i : i + 1], net.reference(ref_image, ref_masks[:, i : i + 1]))
            torch.testing.assert_close(single[0, 0], batched[0, i], rtol=1e-4, atol=1e-5)


def test_multi_scale_testing_averages_foreground_over_scales() -> None:
    """scales=(0.5, 1.0): eq. 5 on the mean of the per-scale foreground probabilities."""
    frames, ids = moving_objects(2, 56, 72, objects=2)
    image0, prob0 = to_inputs(frames[0], ids[0], 2)
    image1 = to_inputs(frames[1], ids[1], 2)[0]
    m = tiny(scales=(0.5, 1.0))
    resize = lambda x, size: torch.nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=False)  # noqa: E731
    with torch.inference_mode():
        state = first_frame_state(m, frames[0], ids[0], 2)
        out = m.predict(state, image1, torch.zeros(2, 56, 72))
        fg = []
        for size in [(28, 36), (56, 72)]:
            ref = m.net.reference(resize(image0, size), resize(prob0[None, 1:], size))
            logits = m.net(resize(image1, size), resize(prob0[None, 1:], size), ref)
            fg.append(torch.sigmoid(resize(logits, (56, 72))))
    assert [r.shape[-1] for r in state["ref"]] == [2, 3]
    torch.testing.assert_close(out, softmax_aggregate((fg[0] + fg[1]) / 2)[0], rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError):
        tiny(scales=())


def test_object_added_mid_video() -> None:
    m = tiny()
    frames, ids = moving_objects(4, 48, 80, objects=3)
    first = without(ids[0], 3)
    with torch.inference_mode():
        state = first_frame_state(m, frames[0], first, 2)
        image1, _ = to_inputs(frames[1], ids[1], 2)
        out = m.predict(state, image1, torch.zeros(2, 48, 80))
        m.update(state, image1, out)
        image2, prob2 = to_inputs(frames[2], ids[2], 3)
        m.memorize(state, image2, prob2, [3])
        m.update(state, image2, prob2)
        assert state["ref"][0].shape[0] == 3
        torch.testing.assert_close(state["ref"][0][2:], m.net.reference(image2, prob2[None, 3:])[0])
        out = m.predict(state, to_inputs(frames[3], ids[3], 3)[0], torch.zeros(3, 48, 80))
    assert_probabilities(out, 3, (48, 80))
    with pytest.raises(RuntimeError):
        m.memorize(state, image2, torch.zeros(6, 48, 80), [5])


def test_gradients_reach_every_learnable_parameter() -> None:
    net = tiny().net.train()
    bns = [mod for mod in net.modules() if isinstance(mod, torch.nn.BatchNorm2d)]
    assert bns and all(not bn.training and not bn.weight.requires_grad for bn in bns)
    frames, ids = moving_objects(2, 48, 64, objects=2)
    ref_img, ref_prob = to_inputs(frames[0], ids[0], 2)
    img, gt = to_inputs(frames[1], ids[1], 2)
    prob = softmax_aggregate(torch.sigmoid(net(img, ref_prob[None, 1:], net.reference(ref_img, ref_prob[None, 1:]))))
    loss = -(gt[None] * torch.log(prob.clamp_min(1e-6))).sum(1).mean()
    loss.backward()
    assert_gradients_reach(((n, p) for n, p in net.named_parameters() if p.requires_grad), 50)


def test_deterministic_for_a_fixed_seed() -> None:
    frames, ids = moving_objects(2, 40, 56, objects=2)
    outs = []
    for _ in range(2):
        m = tiny(seed=3)
        with torch.inference_mode():
            state = first_frame_state(m, frames[0], ids[0], 2)
            outs += [m.predict(state, to_inputs(frames[1], ids[1], 2)[0], torch.zeros(2, 40, 56)) for _ in range(2)]
    assert all(torch.equal(outs[0], o) for o in outs[1:])


def test_runs_under_bf16_autocast_with_channels_last() -> None:
    frames, ids = moving_objects(2, 40, 56, objects=2)

    def predict(m: SAVOS) -> torch.Tensor:
        return m.predict(first_frame_state(m, frames[0], ids[0], 2), to_inputs(frames[1], ids[1], 2)[0], torch.zeros(2, 40, 56))

    fp32, bf16 = fp32_and_bf16(tiny, predict)
    assert_probabilities(bf16, 2, (40, 56))
    assert (fp32 - bf16).abs().max() < 0.05


def test_paper_size_layout() -> None:
    net = SAVOSNet()
    sd = net.state_dict()
    assert tuple(sd["encoder.conv1_p.weight"].shape) == (64, 1, 7, 7)
    assert tuple(sd["GC.conv_l1.weight"].shape) == (256, 4096, 7, 1)
    assert tuple(sd["AM4.conv1.weight"].shape) == (256, 1024, 3, 3)
    assert tuple(sd["AM2.cbam.mlp.0.weight"].shape) == (16, 256, 1, 1)
    assert tuple(sd["pred.weight"].shape) == (2, 256, 3, 3)
    assert sum(p.numel() for p in net.parameters()) == 45_039_899


def test_segments_a_clip_through_the_session() -> None:
    """The lead's session drives the method without flow; a new object joins on frame 2."""
    from vostool.inference.session import Session

    frames, ids = moving_objects(4, 48, 64, objects=3)
    propagate_with_late_object(Session(tiny(), None), frames, ids)


def test_session_state_resumes_identically() -> None:
    """The method's state (references, previous probabilities) survives a session checkpoint."""
    from vostool.inference.session import Session

    frames, ids = moving_objects(5, 48, 64, objects=2)
    assert_session_resumes(lambda: Session(tiny(), None), frames, ids)
