"""AGSS-VOS (``agss``): tiny random-init networks on the CPU."""

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
from vostool.models.agss import AGSS, AGSSNet
from vostool.models.blocks import soft_aggregate

tiny = partial(tiny_method, "agss")


def test_registered_with_weights_and_flow() -> None:
    assert "agss" in available_methods()
    info = method_info("agss")
    assert info.needs_weights and info.default_flow == "dis" and "AGSS-VOS" in info.paper
    assert AGSS.stages == ("instance-agnostic", "instance-specific", "decoder") and AGSS.uses_flow


@pytest.mark.parametrize("hw", [(75, 101), (33, 47), (64, 96)])
def test_predict_shapes_and_probabilities_at_odd_sizes(hw: tuple[int, int]) -> None:
    m = tiny()
    frames, ids = moving_objects(2, *hw, objects=2)
    prob = to_inputs(frames[0], ids[0], 2)[1]
    with torch.inference_mode():
        state = first_frame_state(m, frames[0], ids[0], 2)
        out = m.predict(state, to_inputs(frames[1], ids[1], 2)[0], prob[1:])
    assert_probabilities(out, 2, hw)


@pytest.mark.parametrize("arch", [{}, {"backbone": "mobilenet-v2", "base_width": 64}], ids=["resnet18", "mobilenet-v2"])
def test_predict_is_the_training_forward_plus_normalisation(arch: dict) -> None:
    """Inference uses the same network pieces as ``AGSSNet.forward`` (eq. 4-5 on top)."""
    m = tiny(**arch)
    frames, ids = moving_objects(2, 75, 101, objects=3)
    image0, prob0 = to_inputs(frames[0], ids[0], 3)
    image1, _ = to_inputs(frames[1], ids[1], 3)
    with torch.inference_mode():
        state = first_frame_state(m, frames[0], ids[0], 3)
        out = m.predict(state, image1, prob0[1:])
        ref = m.net.reference(image0, prob0[None, 1:])
        logits = m.net(image1, prob0[None, 1:], ref)
    torch.testing.assert_close(state["ref"], ref)
    assert logits.shape == (1, 3, 75, 101)
    torch.testing.assert_close(out, soft_aggregate(torch.sigmoid(logits))[0], rtol=1e-4, atol=1e-5)


def test_per_object_parts_batched_equal_one_object_at_a_time() -> None:
    net = tiny().net
    image = torch.rand(1, 3, 64, 96)
    masks = torch.rand(4, 1, 64, 96)
    with torch.no_grad():
        m3 = net.instance_agnostic(image, masks.amax(0, keepdim=True), net.reference(image, masks.view(1, 4, 64, 96)))
        r2, atn = net.instance_specific(image, masks)
        batched = net.decode(m3.expand(4, -1, -1, -1), r2, atn)
        for i in range(4):
            r2_i, atn_i = net.instance_specific(image, masks[i : i + 1])
            torch.testing.assert_close(net.decode(m3, r2_i, atn_i)[0], batched[i], rtol=1e-4, atol=1e-5)
    assert batched.shape == (4, 64, 96)


@pytest.mark.parametrize("groups,objects", [(1, 1), (1, 3), (2, 3)])
def test_frame_features_share_work_without_changing_results(groups: int, objects: int) -> None:
    """One pass for both modules (shared stem; with one object the whole first stage) equals the
    instance-agnostic and instance-specific modules run separately."""
    net = tiny().net
    image, masks = torch.rand(1, 3, 64, 96), torch.rand(objects, 1, 64, 96)
    member = torch.zeros(groups, objects)
    member[0, : objects - groups + 1] = 1
    for g in range(1, groups):
        member[g, objects - groups + g] = 1
    agnostic = (masks[:, 0].unsqueeze(0) * member[:, :, None, None]).amax(1, keepdim=True)
    ref = torch.rand(groups, net.encoder.channels[3], 2, 3)
    with torch.no_grad():
        m3, r2_obj = net.frame_features(image, agnostic, masks, ref)
        torch.testing.assert_close(m3, net.instance_agnostic(image, agnostic, ref), rtol=1e-4, atol=1e-5)
        r2, atn = net.instance_specific(image, masks)
        torch.testing.assert_close(r2_obj, r2, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(net.attention(r2_obj, masks), atn, rtol=1e-4, atol=1e-5)
        # the inference entry point: each object decoded with its own group's m3
        logits = net.decode(m3[member.argmax(0)], r2, atn)
        torch.testing.assert_close(net.frame(image, masks, ref, member), logits, rtol=1e-4, atol=1e-5)


def test_forward_batch_equals_separate_samples() -> None:
    net = tiny().net
    images, warped = torch.rand(2, 3, 40, 50), torch.rand(2, 2, 40, 50)
    with torch.no_grad():
        refs = net.reference(torch.rand(2, 3, 40, 50), torch.rand(2, 2, 40, 50))
        both = net(images, warped, refs)
        for b in range(2):
            torch.testing.assert_close(net(images[b : b + 1], warped[b : b + 1], refs[b : b + 1])[0], both[b], rtol=1e-4, atol=1e-5)


def test_object_added_mid_video_gets_its_own_reference_group() -> None:
    m = tiny()
    frames, ids = moving_objects(4, 48, 80, objects=3)
    first = without(ids[0], 3)  # object 3 is only given on frame 2
    prob = to_inputs(frames[0], first, 2)[1]
    with torch.inference_mode():
        state = first_frame_state(m, frames[0], first, 2)
        out = m.predict(state, to_inputs(frames[1], ids[1], 2)[0], prob[1:])
        assert_probabilities(out, 2, (48, 80))
        image2, prob2 = to_inputs(frames[2], ids[2], 3)
        m.memorize(state, image2, prob2, [3])
        assert state["ref"].shape[0] == 2
        assert state["group"].tolist() == [0, 0, 1]
        assert state["member"].tolist() == [[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
        torch.testing.assert_close(state["ref"][1:], m.net.reference(image2, prob2[None, 3:]))
        out = m.predict(state, to_inputs(frames[3], ids[3], 3)[0], prob2[1:])
    assert_probabilities(out, 3, (48, 80))
    with pytest.raises(RuntimeError):
        m.predict(state, image2, prob2[1:3])


def test_vanished_object_is_carried_with_its_last_seen_mask() -> None:
    """An object under 5% of its peak area (here: a few stray pixels, or none) is not dropped for
    good: it keeps its slot and its last-seen mask (the prior it is searched with until it returns)."""
    from vostool.models.agss import VANISHED_FRACTION

    m = tiny()
    frames, ids = moving_objects(3, 48, 64, objects=2)
    image0, prob0 = to_inputs(frames[0], ids[0], 2)
    image1 = to_inputs(frames[1], ids[1], 2)[0]
    stray = prob0[1:].clone()
    stray[1] *= 0.5
    ys, xs = torch.nonzero(prob0[2] > 0.5)[:3].T
    stray[1, ys, xs] = 1.0  # 3 pixels left above 0.5
    for warped in (prob0[1:] * torch.tensor([1.0, 0.5])[:, None, None], stray):
        with torch.inference_mode():
            state = first_frame_state(m, frames[0], ids[0], 2)
            m.update(state, image0, prob0)
            torch.testing.assert_close(state["last_seen"], prob0[1:])
            peak = (prob0[1:] > 0.5).flatten(1).sum(1).float()
            torch.testing.assert_close(state["peak_area"], peak)
            assert not m._present(state, warped)[1] and m._present(state, warped)[0]
            out = m.predict(state, image1, warped)
            assert_probabilities(out, 2, (48, 64))
            m.update(state, image1, out)
            area = (out[1:] > 0.5).flatten(1).sum(1).float()
            for k in range(2):  # absent objects keep their last-seen mask, not the empty one
                present = area[k] > 0 and area[k] >= VANISHED_FRACTION * peak[k]
                torch.testing.assert_close(state["last_seen"][k], out[k + 1] if present else prob0[k + 1])
            torch.testing.assert_close(state["peak_area"], torch.maximum(peak, area))


def test_gradients_reach_every_learnable_parameter() -> None:
    net = tiny().net.train()
    bns = [mod for mod in net.modules() if isinstance(mod, torch.nn.BatchNorm2d)]
    assert bns and all(not bn.training and not bn.weight.requires_grad for bn in bns)
    frames, ids = moving_objects(2, 48, 64, objects=2)
    ref_img, ref_prob = to_inputs(frames[0], ids[0], 2)
    img, gt = to_inputs(frames[1], ids[1], 2)
    ref = net.reference(ref_img, ref_prob[None, 1:])
    prob = soft_aggregate(torch.sigmoid(net(img, ref_prob[None, 1:], ref)))
    inter = torch.minimum(prob[:, 1:], gt[None, 1:]).sum((-2, -1))
    union = torch.maximum(prob[:, 1:], gt[None, 1:]).sum((-2, -1))
    loss = 1 - (inter / union).mean()  # instance IoU loss (eq. 7)
    loss.backward()
    assert_gradients_reach(((n, p) for n, p in net.named_parameters() if p.requires_grad), 50)


def test_deterministic_for_a_fixed_seed() -> None:
    frames, ids = moving_objects(2, 40, 56, objects=2)
    prob = to_inputs(frames[0], ids[0], 2)[1]
    outs = []
    for _ in range(2):
        m = tiny(seed=7)
        with torch.inference_mode():
            state = first_frame_state(m, frames[0], ids[0], 2)
            outs += [m.predict(state, to_inputs(frames[1], ids[1], 2)[0], prob[1:]) for _ in range(2)]
    assert all(torch.equal(outs[0], o) for o in outs[1:])
    assert not torch.equal(tiny(seed=8).net.decoder.pred2.weight, tiny(seed=7).net.decoder.pred2.weight)


def test_runs_under_bf16_autocast_with_channels_last() -> None:
    frames, ids = moving_objects(2, 40, 56, objects=2)
    prob = to_inputs(frames[0], ids[0], 2)[1]

    def predict(m: AGSS) -> torch.Tensor:
        return m.predict(first_frame_state(m, frames[0], ids[0], 2), to_inputs(frames[1], ids[1], 2)[0], prob[1:])

    fp32, bf16 = fp32_and_bf16(tiny, predict)
    assert_probabilities(bf16, 2, (40, 56))
    assert (fp32 - bf16).abs().max() < 0.05


def test_paper_size_layout_matches_the_official_checkpoint_names() -> None:
    net = AGSSNet()
    sd = net.state_dict()
    shapes = {
        "encoder.conv1_p.weight": (64, 1, 7, 7),
        "encoder.conv1_p.bias": (64,),
        "encoder.layer1.0.conv1.weight": (64, 64, 1, 1),
        "encoder.layer4.2.conv3.weight": (2048, 512, 1, 1),
        "encoder.atn.0.weight": (256, 257, 1, 1),
        "encoder.atn.2.weight": (256, 256, 3, 3),
        "encoder.atn.4.weight": (256, 256, 3, 3),
        "decoder.GC.conv_l1.weight": (256, 4096, 7, 1),
        "decoder.GC.conv_r1.weight": (256, 4096, 1, 7),
        "decoder.convG1.weight": (256, 256, 3, 3),
        "decoder.RF4.convFS1.weight": (256, 1024, 3, 3),
        "decoder.RF2.convFS1.weight": (256, 256, 3, 3),
        "decoder.RF2.convMM2.weight": (256, 256, 3, 3),
        "decoder.pred2.weight": (2, 256, 3, 3),
    }
    for key, shape in shapes.items():
        assert tuple(sd[key].shape) == shape, key
    assert not any(k.startswith("encoder.fc") for k in sd)
    assert sum(p.numel() for p in net.parameters()) == 52_751_298


def test_segments_a_clip_through_the_session() -> None:
    """The lead's session drives the method: DIS flow, warp, predict, a new object on frame 2."""
    from vostool.flow import create_flow
    from vostool.inference.session import Session

    frames, ids = moving_objects(4, 48, 64, objects=3)
    propagate_with_late_object(Session(tiny(), create_flow("dis")), frames, ids)


def test_session_state_resumes_identically() -> None:
    """The method's state (reference groups) survives a session checkpoint: same probabilities."""
    from vostool.flow import create_flow
    from vostool.inference.session import Session

    frames, ids = moving_objects(5, 48, 64, objects=2)
    assert_session_resumes(lambda: Session(tiny(), create_flow("dis")), frames, ids)
