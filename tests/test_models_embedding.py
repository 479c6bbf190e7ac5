"""Global / instance embedding (``embedding``): tiny random-init networks on the CPU."""

from __future__ import annotations

import math
from functools import partial

import numpy as np
import pytest
import torch
import torch.nn.functional as F

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
from synthetic_videos import moving_discs, without
from vostool.models import available_methods, method_info
from vostool.models.blocks import softmax_aggregate
from vostool.models.embedding import EmbeddingMethod, EmbeddingState, GlobalInstanceEmbeddingNet, embedding_net, label_tensors

TINY = method_info("embedding").tiny
tiny = partial(tiny_method, "embedding")


def run(m: EmbeddingMethod, state: EmbeddingState, frames: list[np.ndarray], k: int) -> torch.Tensor:
    """Predict and update each frame as the session does; returns the last prediction."""
    out = torch.empty(0)
    for f in frames:
        image = to_inputs(f, np.zeros(f.shape[:2], np.uint8), 0)[0]
        out = m.predict(state, image, torch.zeros(k, *f.shape[:2]))
        m.update(state, image, out)
    return out


def test_registered_without_flow() -> None:
    assert "embedding" in available_methods()
    info = method_info("embedding")
    assert info.needs_weights and "Embedding" in info.paper
    assert not EmbeddingMethod.uses_flow
    assert EmbeddingMethod.stages == ("support-encoder", "query-encoder", "memory-read", "global-branch", "instance-branch", "aggregate")


@pytest.mark.parametrize("hw", [(45, 67), (33, 91)])
def test_predict_shapes_and_probabilities_at_odd_sizes(hw: tuple[int, int]) -> None:
    m = tiny()
    frames, ids = moving_discs(3, *hw, k=2)
    with torch.inference_mode():
        state = first_frame_state(m, frames[0], ids[0], 2)
        out = run(m, state, frames[1:], 2)
    assert_probabilities(out, 2, hw)
    assert state["anchor_times"] == [0] and state["pool_times"] == [1]


@pytest.mark.parametrize("arch", [{}, {"backbone": "mobilenet-v2", "base_width": 64}], ids=["resnet18", "mobilenet-v2"])
def test_predict_is_the_training_forward_plus_soft_aggregation(arch: dict) -> None:
    m = tiny(**arch)
    frames, ids = moving_discs(2, 45, 67, k=3)
    image0, prob0 = to_inputs(frames[0], ids[0], 3)
    image1, _ = to_inputs(frames[1], ids[1], 3)
    with torch.inference_mode():
        state = first_frame_state(m, frames[0], ids[0], 3)
        out = m.predict(state, image1, prob0[1:])
        ref = m.net(image1, image0[:, None], prob0[None, None])
    assert ref["logits"].shape == (1, 4, 45, 67) and ref["global_logit"].shape == (1, 1, 45, 67)
    torch.testing.assert_close(out, torch.softmax(ref["logits"], 1)[0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out, softmax_aggregate(ref["fg"])[0], rtol=1e-4, atol=1e-5)
    fg = torch.sigmoid(ref["instance_logit"]) * torch.sigmoid(ref["global_logit"])  # eq. 11
    torch.testing.assert_close(ref["fg"], fg)


def test_instances_in_groups_of_six_equal_one_pass() -> None:
    frames, ids = moving_discs(2, 40, 56, k=8)
    outs = []
    for d in (6, 8, 1):
        m = tiny(max_instances=d)
        with torch.inference_mode():
            state = first_frame_state(m, frames[0], ids[0], 8)
            outs.append(run(m, state, frames[1:], 8))
    assert outs[0].shape == (9, 40, 56)
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(outs[0], outs[2], rtol=1e-4, atol=1e-5)


def test_label_tensors_are_this_other_and_background() -> None:
    probs = torch.softmax(torch.randn(1, 2, 4, 5, 6), 2)  # (B, T, K + 1, h, w)
    lab = label_tensors(probs, slice(1, 3))
    assert lab.shape == (1, 2, 2, 3, 5, 6)  # (B, D, T, 3, h, w)
    torch.testing.assert_close(lab[0, 0, :, 0], probs[0, :, 2])
    torch.testing.assert_close(lab[0, 1, :, 1], probs[0, :, 1] + probs[0, :, 2], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(lab[0, :, :, 2], probs[0, :, 0][None].expand(2, -1, -1, -1))
    torch.testing.assert_close(lab.sum(3), torch.ones(1, 2, 2, 5, 6))


def test_temporal_attention_reweights_the_memory_read() -> None:
    torch.manual_seed(0)
    net = embedding_net(**TINY)
    keys, query = torch.randn(1, 3, 4, 2, 3), torch.randn(1, 4, 2, 3)
    sim = torch.einsum("tcn,cm->tnm", keys[0].flatten(2), query[0].flatten(1)).reshape(18, 6) / math.sqrt(4)  # eq. 4, STM scale
    with torch.no_grad():
        net.temporal.regress[-1].weight.normal_(0.0, 20.0)
        w = net.temporal(keys, query)
        assert w.shape == (1, 3) and w.std() > 0.01
        torch.testing.assert_close(w.sum(1), torch.ones(1))
        a = net.affinity(keys, query)
        # Frame t's similarities are multiplied by w_t, then each query column is renormalised.
        weighted = sim.exp() * w[0].repeat_interleave(6)[:, None]
        torch.testing.assert_close(a[0], weighted / weighted.sum(0), rtol=1e-5, atol=1e-6)
        net.temporal.regress[-1].weight.zero_()  # equal weights: the plain softmax of eq. 4
        torch.testing.assert_close(net.affinity(keys, query)[0], torch.softmax(sim, 0))


def test_support_set_is_bounded_and_keeps_the_first_frame() -> None:
    m = tiny(support_size=3, pool_size=4)
    frames, ids = moving_discs(1, 32, 32, k=1)
    with torch.inference_mode():
        state = first_frame_state(m, frames[0], ids[0], 1)
        sizes = []
        for _ in range(20):
            run(m, state, frames[:1], 1)
            sizes.append(len(state["pool_times"]))
    assert max(sizes) <= 4 and state["t"] == 21
    assert state["anchor_times"] == [0] and state["stride"] == 4
    assert state["pool_times"] == [4, 8, 12, 16]  # frame 20 waits to be encoded at the next predict
    assert state["pending_time"] == 20
    assert len(state["pool_keys"]) == len(state["pool_values"]) == len(state["pool_probs"]) == 4
    assert [state["pool_times"][i] for i in m.support_indices(state)] == [4, 16]  # centres 5.5, 15.5


def test_temporal_sampling_takes_the_nearest_pooled_frame_to_each_segment_centre() -> None:
    m = tiny(support_size=5)
    state = EmbeddingState(t=101, pool_times=[8, 16, 24, 32, 40, 48, 56, 64, 72, 80, 88, 96])
    # four segments of frames 1..100, centres 13, 38, 63, 88
    assert [state["pool_times"][i] for i in m.support_indices(state)] == [16, 40, 64, 88]
    state = EmbeddingState(t=4, pool_times=[1, 2, 3])
    assert m.support_indices(state) == [0, 1, 2]  # the first frames: all of them


def test_object_added_mid_video_becomes_an_anchor() -> None:
    m = tiny(max_anchors=2)
    frames, ids = moving_discs(5, 40, 56, k=3)
    first = without(ids[0], 3)
    with torch.inference_mode():
        state = first_frame_state(m, frames[0], first, 2)
        out = run(m, state, frames[1:2], 2)
        assert out.shape == (3, 40, 56)
        image2, prob2 = to_inputs(frames[2], ids[2], 3)
        m.predict(state, image2, prob2[1:3])
        m.memorize(state, image2, prob2, [3])
        m.update(state, image2, prob2)
        out = run(m, state, frames[3:4], 3)
        assert state["anchor_times"] == [0, 2] and [p.shape[0] for p in state["anchor_probs"]] == [3, 4]
        image4, prob4 = to_inputs(frames[4], ids[4], 3)
        m.predict(state, image4, prob4[1:])
        m.memorize(state, image4, prob4, [])
        m.update(state, image4, prob4)
        run(m, state, frames[4:5], 3)
    assert state["anchor_times"] == [0, 4]  # at most max_anchors: the first stays
    assert_probabilities(out, 3, (40, 56))


def test_gradients_reach_every_learnable_parameter() -> None:
    """Eq. 13 on a query against three support frames. The temporal attention's first-frame and
    query summaries are the same for every support frame, so they act only through the
    regressor's ReLUs (Figure 3): the support frames differ (every other one mirrored) so that
    they do, even at the tiny width."""
    torch.manual_seed(0)
    net = embedding_net(**TINY).train()
    frames, ids = moving_discs(4, 40, 56, k=2)
    inputs = [to_inputs(f, i, 2) for f, i in zip(frames, ids)]
    inputs = [(x.flip(-1), p.flip(-1)) if i % 2 else (x, p) for i, (x, p) in enumerate(inputs)]
    support_images = torch.cat([x[0] for x in inputs[:3]])[None]
    support_probs = torch.stack([x[1] for x in inputs[:3]])[None]
    query, gt = inputs[3]
    out = net(query, support_images, support_probs)
    loss = F.binary_cross_entropy_with_logits(out["global_logit"], 1 - gt[None, :1]) + F.cross_entropy(
        out["logits"], gt.argmax(0)[None]
    )  # eq. 13
    loss.backward()
    assert_gradients_reach(net.named_parameters(), 80)


def test_forward_batch_equals_separate_samples() -> None:
    net = embedding_net(**TINY).eval()
    q, si, sp = torch.rand(2, 3, 40, 50), torch.rand(2, 3, 3, 40, 50), torch.softmax(torch.randn(2, 3, 3, 40, 50) * 3, 2)
    with torch.no_grad():
        both = net(q, si, sp)["logits"]
        for b in range(2):
            torch.testing.assert_close(net(q[b : b + 1], si[b : b + 1], sp[b : b + 1])["logits"][0], both[b], rtol=1e-4, atol=1e-4)


def test_fast_variant_has_no_refine_decoder() -> None:
    full, fast = embedding_net(**TINY), embedding_net(**TINY, refine_decoder=False)
    assert fast.refine is None and isinstance(full.refine, torch.nn.Module)
    count = lambda n: sum(p.numel() for p in n.parameters())  # noqa: E731
    assert count(full) - count(fast) == count(full.refine)


def test_deterministic_for_a_fixed_seed() -> None:
    frames, ids = moving_discs(3, 40, 56, k=2)
    outs = []
    for _ in range(2):
        m = tiny(seed=7)
        with torch.inference_mode():
            state = first_frame_state(m, frames[0], ids[0], 2)
            outs.append(run(m, state, frames[1:], 2))
    assert torch.equal(outs[0], outs[1])
    assert not torch.equal(tiny(seed=8).net.coarse[0].weight, tiny(seed=7).net.coarse[0].weight)


def test_runs_under_bf16_autocast_with_channels_last() -> None:
    frames, ids = moving_discs(3, 40, 56, k=2)
    fp32, bf16 = fp32_and_bf16(tiny, lambda m: run(m, first_frame_state(m, frames[0], ids[0], 2), frames[1:], 2))
    assert_probabilities(bf16, 2, (40, 56))
    assert (fp32 - bf16).abs().max() < 0.1


def test_paper_size_layout() -> None:
    net = GlobalInstanceEmbeddingNet()
    sd = net.state_dict()
    assert tuple(sd["support_encoder.conv1_p.weight"].shape) == (64, 1, 7, 7)
    assert "query_encoder.conv1_p.weight" not in sd and not any(".layer4." in k for k in sd)
    assert tuple(sd["key.weight"].shape) == (128, 1024, 1, 1) and tuple(sd["value.weight"].shape) == (512, 1024, 1, 1)
    assert tuple(sd["global_decoder.rf3.convFS1.weight"].shape) == (256, 512, 3, 3)
    assert tuple(sd["label_encoder.conv2.weight"].shape) == (512, 128, 1, 1)
    assert sum(p.numel() for p in net.query_encoder.parameters()) == 8_543_296  # ResNet-50 to res4
    assert sum(p.numel() for p in net.parameters()) == 38_259_459


def test_segments_a_clip_through_the_session() -> None:
    """The lead's session drives the method without flow; a new object on frame 2."""
    from vostool.inference.session import Session

    frames, ids = moving_discs(4, 48, 64, k=3)
    session = Session(tiny(), None)
    propagate_with_late_object(session, frames, ids)
    assert session.state["anchor_times"] == [0, 2]


def test_session_state_resumes_identically() -> None:
    """The method's state (anchors, pool, a frame waiting to be encoded) survives a session checkpoint."""
    from vostool.inference.session import Session

    frames, ids = moving_discs(7, 40, 56, k=2)
    assert_session_resumes(lambda: Session(tiny(pool_size=2), None), frames, ids, split=4)
