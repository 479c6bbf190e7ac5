"""AGSS-VOS (``agss``): tiny random-init networks on the CPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from synthetic import moving_objects

from vostool.models import available_methods, create_method, method_info
from vostool.models.agss import AGSS, AGSSNet
from vostool.models.blocks import soft_aggregate

TINY = dict(depth=18, base_width=8, mdim=16)


def to_inputs(frame: np.ndarray, ids: np.ndarray, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(1, 3, H, W)`` image in [0, 1] and ``(k + 1, H, W)`` one-hot probabilities."""
    image = torch.from_numpy(frame).permute(2, 0, 1)[None].float() / 255
    prob = torch.stack([torch.from_numpy(ids == i).float() for i in range(k + 1)])
    return image, prob


def tiny(seed: int = 0) -> AGSS:
    torch.manual_seed(seed)
    return create_method("agss", **TINY).eval()


def test_registered_with_weights_and_flow() -> None:
    assert "agss" in available_methods()
    info = method_info("agss")
    assert info.needs_weights and info.default_flow == "raft-small" and "AGSS-VOS" in info.paper
    assert AGSS.stages == ("instance-agnostic", "instance-specific", "decoder") and AGSS.uses_flow


@pytest.mark.parametrize("hw", [(75, 101), (33, 47), (64, 96)])
def test_predict_shapes_and_probabilities_at_odd_sizes(hw: tuple[int, int]) -> None:
    m = tiny()
    frames, ids = moving_objects(2, *hw, objects=2)
    image, prob = to_inputs(frames[0], ids[0], 2)
    state = m.init_state()
    with torch.inference_mode():
        m.memorize(state, image, prob, [1, 2])
        out = m.predict(state, to_inputs(frames[1], ids[1], 2)[0], prob[1:])
    assert out.shape == (3, *hw) and out.dtype == torch.float32
    assert (out >= 0).all()
    torch.testing.assert_close(out.sum(0), torch.ones(hw))


def test_predict_is_the_training_forward_plus_normalisation() -> None:
    """Inference uses the same network pieces as ``AGSSNet.forward`` (eq. 4-5 on top)."""
    m = tiny()
    frames, ids = moving_objects(2, 75, 101, objects=3)
    image0, prob0 = to_inputs(frames[0], ids[0], 3)
    image1, _ = to_inputs(frames[1], ids[1], 3)
    state = m.init_state()
    with torch.inference_mode():
        m.memorize(state, image0, prob0, [1, 2, 3])
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
    state = m.init_state()
    first = ids[0].copy()
    first[first == 3] = 0  # object 3 is only given on frame 2
    with torch.inference_mode():
        image, prob = to_inputs(frames[0], first, 2)
        m.memorize(state, image, prob, [1, 2])
        out = m.predict(state, to_inputs(frames[1], ids[1], 2)[0], prob[1:])
        assert out.shape == (3, 48, 80)
        image2, prob2 = to_inputs(frames[2], ids[2], 3)
        m.memorize(state, image2, prob2, [3])
        assert state["ref"].shape[0] == 2
        assert state["group"].tolist() == [0, 0, 1]
        assert state["member"].tolist() == [[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
        torch.testing.assert_close(state["ref"][1:], m.net.reference(image2, prob2[None, 3:]))
        out = m.predict(state, to_inputs(frames[3], ids[3], 3)[0], prob2[1:])
    assert out.shape == (4, 48, 80)
    torch.testing.assert_close(out.sum(0), torch.ones(48, 80))
    with pytest.raises(RuntimeError):
        m.predict(state, image2, prob2[1:3])


def test_object_without_confident_warped_pixels_is_dropped() -> None:
    m = tiny()
    frames, ids = moving_objects(2, 48, 64, objects=2)
    image, prob = to_inputs(frames[0], ids[0], 2)
    state = m.init_state()
    warped = prob[1:].clone()
    warped[1] *= 0.5  # no pixel > 0.5: the object is lost
    with torch.inference_mode():
        m.memorize(state, image, prob, [1, 2])
        out = m.predict(state, to_inputs(frames[1], ids[1], 2)[0], warped)
    assert torch.equal(out[2], torch.zeros_like(out[2]))
    assert out[1].max() > 0
    torch.testing.assert_close(out.sum(0), torch.ones(48, 64))


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
    learnable = [(n, p) for n, p in net.named_parameters() if p.requires_grad]
    assert len(learnable) > 50
    missing = [n for n, p in learnable if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def test_deterministic_for_a_fixed_seed() -> None:
    frames, ids = moving_objects(2, 40, 56, objects=2)
    image, prob = to_inputs(frames[0], ids[0], 2)
    outs = []
    for _ in range(2):
        m = tiny(seed=7)
        state = m.init_state()
        with torch.inference_mode():
            m.memorize(state, image, prob, [1, 2])
            outs += [m.predict(state, to_inputs(frames[1], ids[1], 2)[0], prob[1:]) for _ in range(2)]
    assert all(torch.equal(outs[0], o) for o in outs[1:])
    assert not torch.equal(tiny(seed=8).net.decoder.pred2.weight, tiny(seed=7).net.decoder.pred2.weight)


def test_runs_under_bf16_autocast_with_channels_last() -> None:
    frames, ids = moving_objects(2, 40, 56, objects=2)
    image, prob = to_inputs(frames[0], ids[0], 2)
    results = []
    for bf16 in (False, True):
        m = tiny().to("cpu", channels_last=bf16)
        state = m.init_state()
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            m.memorize(state, image, prob, [1, 2])
            results.append(m.predict(state, to_inputs(frames[1], ids[1], 2)[0], prob[1:]))
    assert results[1].dtype == torch.float32
    torch.testing.assert_close(results[1].sum(0), torch.ones(40, 56))
    assert (results[0] - results[1]).abs().max() < 0.05


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
    first = ids[0].copy()
    first[first == 3] = 0
    session = Session(tiny(), create_flow("dis"))
    results = list(session.propagate(frames, {0: first, 2: ids[2]}))
    assert [r.object_ids for r in results] == [[1, 2], [1, 2], [1, 2, 3], [1, 2, 3]]
    assert results[0].ids.shape == (48, 64)
    given = ids[2] > 0  # pixels given on frame 2 keep their ids; the rest is predicted
    assert np.array_equal(results[2].ids[given], ids[2][given])
    torch.testing.assert_close(results[3].prob.sum(0), torch.ones(48, 64))


def test_session_state_resumes_identically() -> None:
    """The method's state (reference groups) survives a session checkpoint: same probabilities."""
    from vostool.flow import create_flow
    from vostool.inference.session import Session

    frames, ids = moving_objects(5, 48, 64, objects=2)
    full = Session(tiny(), create_flow("dis"))
    expected = [r.prob for r in full.propagate(frames, {0: ids[0]})]
    first = Session(tiny(), create_flow("dis"))
    for t in range(3):
        first.step(frames[t], ids[0] if t == 0 else None)
    resumed = Session(tiny(), create_flow("dis"))
    resumed.load_state_dict(first.state_dict())
    for t in range(3, 5):
        torch.testing.assert_close(resumed.step(frames[t]).prob, expected[t])
