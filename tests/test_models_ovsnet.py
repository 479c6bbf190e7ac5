"""OVSNet (``ovsnet``): tiny random-init networks on the CPU, and the cascade's geometry."""

from __future__ import annotations

from functools import partial

import pytest
import torch

from method_contracts import (
    assert_gradients_reach,
    assert_probabilities,
    assert_session_resumes,
    first_frame_state,
    propagate_with_late_object,
    tiny_method,
    to_inputs,
)
from synthetic_videos import moving_discs, without
from vostool.models import available_methods, method_info
from vostool.models.ovsnet import (
    COMPACT,
    Detections,
    OVSNetMethod,
    OVSNetState,
    anchor_sizes,
    batch_hard_triplet_loss,
    mask_boxes,
    mask_iou,
    mga_attention,
    ovsnet_net,
    paste_in_boxes,
)

TINY = method_info("ovsnet").tiny
tiny = partial(tiny_method, "ovsnet")


def training_batch(n: int = 2, h: int = 60, w: int = 80) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """``n`` frames of a two-disc clip with torchvision-style targets plus Re-ID ``ids``."""
    frames, ids = moving_discs(n, h, w, k=2)
    images, targets = [], []
    for f, lab in zip(frames, ids):
        masks = torch.stack([torch.from_numpy(lab == i) for i in (1, 2)]).to(torch.uint8)
        boxes, _ = mask_boxes(masks.bool())
        images.append(torch.from_numpy(f).permute(2, 0, 1).float() / 255)
        targets.append({"boxes": boxes, "labels": torch.ones(2, dtype=torch.int64), "masks": masks, "ids": torch.tensor([1, 2])})
    return images, targets


def test_registered_with_weights_and_flow() -> None:
    assert "ovsnet" in available_methods()
    info = method_info("ovsnet")
    assert info.needs_weights and info.default_flow == "raft-small" and "OVSNet" in info.paper
    assert OVSNetMethod.uses_flow and OVSNetMethod.stages == ("detector", "re-id", "cascade", "mga", "aggregate")


@pytest.mark.parametrize("hw", [(45, 67), (33, 91)])
def test_predict_shapes_and_probabilities_at_odd_sizes(hw: tuple[int, int]) -> None:
    m = tiny()
    frames, ids = moving_discs(2, *hw, k=2)
    with torch.inference_mode():
        state = first_frame_state(m, frames[0], ids[0], 2)
        out = m.predict(state, to_inputs(frames[1], ids[1], 2)[0], to_inputs(frames[0], ids[0], 2)[1][1:])
    assert_probabilities(out, 2, hw)
    assert state["reid_bank"].shape == (2, 100, 128) and state["reid_valid"][:, 0].all()


def test_detector_is_torchvisions_mask_rcnn_resnet50_fpn() -> None:
    """Paper size: the detector's state dict is maskrcnn_resnet50_fpn's, key for key and shape for
    shape, but for the RPN head's outputs: 9 anchors per position (scales 3, 5, 8) instead of 3."""
    from torchvision.models.detection import maskrcnn_resnet50_fpn

    net = ovsnet_net()
    ref = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=2)
    ref_shapes = {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    ours = {k: tuple(v.shape) for k, v in net.detector.state_dict().items()}
    differ = {k for k in ours if ours[k] != ref_shapes.get(k)}
    assert ours.keys() == ref_shapes.keys() and differ == {
        f"rpn.head.{n}.{p}" for n in ("cls_logits", "bbox_pred") for p in ("weight", "bias")
    }
    assert ours["rpn.head.cls_logits.weight"][0] == 9 and ours["rpn.head.bbox_pred.weight"][0] == 36
    torchvision_anchors = {k: tuple(v.shape) for k, v in ovsnet_net(anchor_scales=(8,)).detector.state_dict().items()}
    assert torchvision_anchors == ref_shapes
    count = lambda mod: sum(p.numel() for p in mod.parameters())  # noqa: E731
    assert count(net.detector.backbone.body) == 23_508_032  # ResNet-50 without fc
    assert count(net.reid) == 256 * 49 * 1024 + 1024 + 1024 * 128 + 128
    assert tuple(net.mga.block[0].conv1.weight.shape) == (512, 1024, 1, 1)  # 4 FPN levels x 256 in
    assert tuple(net.mga.block[2].conv2.weight.shape) == (512, 512, 3, 3) and net.mga.block[2].conv2.dilation == (2, 2)
    assert net.mga.size == 100 and net.mga.classifier.out_channels == 2
    assert count(net) == 89_224_157 + 6 * 257 + 24 * 257  # the RPN head's 6 more objectness and 24 more box outputs
    assert net.detector.roi_heads.nms_thresh == 0.6 and net.detector.roi_heads.score_thresh == 0.05


def test_anchors_are_scales_3_5_8_times_each_levels_stride() -> None:
    """Section 4.1's anchor scales, in strides of each FPN level: 9 anchors per position."""
    assert anchor_sizes() == ((12, 20, 32), (24, 40, 64), (48, 80, 128), (96, 160, 256), (192, 320, 512))
    gen = ovsnet_net(**TINY).detector.rpn.anchor_generator
    assert gen.sizes == anchor_sizes() and gen.num_anchors_per_location() == [9] * 5


def test_training_draws_the_papers_scales_and_inference_uses_the_test_size() -> None:
    net = ovsnet_net(**TINY)  # min_size 96
    assert net.eval().detector.transform.min_size == (96,)
    assert net.train().detector.transform.min_size == (77, 86, 96, 110, 130)  # 96 x (640, 720, 800, 920, 1080) / 800
    assert ovsnet_net(**{**TINY, "train_scales": (1.0,)}).train().detector.transform.min_size == (96,)


def test_compact_mga_costs_at_most_half_the_detector_per_object() -> None:
    """The paper-size MGA costs ~300 GMAC per object; the compact one is bounded (multiply-adds
    counted by torch's FLOP counter on a 240 x 427 frame)."""
    from torch.utils.flop_counter import FlopCounterMode

    pytest.importorskip("torchvision")
    net = ovsnet_net(**COMPACT).eval()
    image = torch.rand(1, 3, 240, 427)
    with torch.no_grad(), FlopCounterMode(display=False) as detector:
        dets = net.detect(image)
    s = net.mga.size
    rois = torch.tensor([[0.0, 20.0, 20.0, 200.0, 180.0]])
    with torch.no_grad(), FlopCounterMode(display=False) as mga:
        net.refine(dets.features, rois, torch.rand(1, 1, s, s))
    assert mga.get_total_flops() <= 0.5 * detector.get_total_flops()
    assert mga.get_total_flops() / 2 < 1.1e9  # about 1 GMAC per object


def test_timing_reports_the_mga_cost_per_object() -> None:
    from vostool.flow import create_flow
    from vostool.inference.session import Session

    frames, ids = moving_discs(4, 48, 64, k=3)
    session = Session(tiny(), create_flow("dis"))
    for t, (f, lab) in enumerate(zip(frames, ids)):
        session.step(f, lab if t == 0 else None)
    mga = session.timer.summary()["stages"]["mga"]
    assert 0 < mga["per_object_ms"] < mga["median_ms"]  # three objects per frame
    assert "per_object_ms" not in session.timer.summary()["stages"]["detector"]


def test_mask_iou_is_exact_for_box_aligned_masks() -> None:
    """28x28 masks on 56x56 boxes (2x2 pixels per cell): IoU equals the full-resolution IoU."""
    g = torch.Generator().manual_seed(0)
    h, w = 100, 120
    boxes = torch.tensor([[10.0, 20.0, 66.0, 76.0], [40.0, 4.0, 96.0, 60.0], [0.0, 0.0, 56.0, 56.0]])
    masks = (torch.rand(3, 1, 7, 7, generator=g) > 0.4).float().repeat_interleave(4, 2).repeat_interleave(4, 3)
    template = torch.zeros(2, h, w, dtype=torch.bool)
    template[0, 15:70, 5:50] = True
    template[1, 30:90, 60:110] = True
    full = paste_in_boxes(masks, boxes, (h, w))[:, 0] > 0.5
    expected = torch.stack([(full & t).sum((1, 2)) / (full | t).sum((1, 2)) for t in template])
    torch.testing.assert_close(mask_iou(masks, boxes, template), expected.float(), rtol=1e-5, atol=1e-6)


def test_mask_boxes_are_tight_and_flag_empty_masks() -> None:
    m = torch.zeros(2, 30, 40, dtype=torch.bool)
    m[0, 5:12, 7:33] = True
    boxes, present = mask_boxes(m)
    assert boxes[0].tolist() == [7.0, 5.0, 33.0, 12.0] and boxes[1].tolist() == [0.0, 0.0, 40.0, 30.0]
    assert present.tolist() == [True, False]


def test_mga_attention_is_the_mask_on_the_box_and_half_in_the_enlargement() -> None:
    att, factor = mga_attention(torch.ones(1, 1, 28, 28), 100)
    assert att.shape == (1, 1, 100, 100) and factor == pytest.approx(100 / 84)
    box = torch.tensor([[40.0, 30.0, 124.0, 114.0]])  # 84 x 84: the enlarged box is 100 x 100
    c = (box[:, :2] + box[:, 2:]) / 2
    big = torch.cat([c - 50, c + 50], 1)
    pasted = paste_in_boxes(att, big, (160, 200))[0, 0]
    assert torch.equal(pasted[30:114, 40:124], torch.ones(84, 84))  # the original box
    assert torch.allclose(pasted[22:30, 32:132], torch.full((8, 100), 0.5))  # the enlargement above it
    assert pasted[:21].abs().max() == 0 and pasted[:, :31].abs().max() == 0  # outside the enlarged box


def test_triplet_loss_is_eq_1_with_hardest_pairs() -> None:
    emb = torch.tensor([[0.0], [1.0], [3.0], [3.5]])
    ids = torch.tensor([1, 1, 2, 2])
    # anchor 0: hardest positive d=1, hardest negative d=9 -> 0; anchor 1: 1 - 4 + 1 = -2 -> 0;
    # anchor 2: 0.25 - 4 + 1 -> 0; anchor 3: 0.25 - 6.25 + 1 -> 0. Margin 10 gives positives.
    assert batch_hard_triplet_loss(emb, ids).item() == 0.0
    expected = ((1 - 9 + 10) + (1 - 4 + 10) + (0.25 - 4 + 10) + (0.25 - 6.25 + 10)) / 4
    assert batch_hard_triplet_loss(emb, ids, margin=10.0).item() == pytest.approx(expected)
    lonely = batch_hard_triplet_loss(emb, torch.tensor([1, 2, 3, 4]))  # no positives: no anchors
    assert lonely.item() == 0.0


def _stub_state(m: OVSNetMethod, bank_rows: list[list[list[float]]]) -> OVSNetState:
    """A state whose Re-ID collections hold the given 128-d features (first entries valid)."""
    k, mem = len(bank_rows), m.reid_memory
    state = OVSNetState(
        reid_bank=torch.zeros(k, mem, 128), reid_valid=torch.zeros(k, mem, dtype=torch.bool), reid_next=torch.ones(k, dtype=torch.long)
    )
    for i, rows in enumerate(bank_rows):
        for j, r in enumerate(rows):
            state["reid_bank"][i, j] = torch.tensor(r).repeat(64)  # 2-d pattern tiled to 128-d
            state["reid_valid"][i, j] = True
    return state


def test_cascade_takes_iou_then_reid_then_flow_paths() -> None:
    m = tiny()
    # Object 0 overlaps candidate 2; object 1 overlaps nothing but looks like candidate 0;
    # object 2 matches nothing at all.
    state = _stub_state(m, [[[5.0, 5.0]], [[0.0, 0.0], [0.0, 0.1], [9.0, 9.0]], [[7.0, -7.0]]])
    feats = torch.stack([torch.tensor(v).repeat(64) for v in ([0.0, 0.05], [3.0, 3.0], [5.0, 5.0])])
    iou = torch.tensor([[0.0, 0.2, 0.8], [0.1, 0.0, 0.0], [0.0, 0.0, 0.3]])
    use_iou, use_reid, cand = m._cascade(state, feats, iou)
    assert use_iou.tolist() == [True, False, False]  # 0.3 is not > rho_iou
    assert use_reid.tolist() == [False, True, False]  # 2 of 3 stored features within 2.3
    assert cand[:2].tolist() == [2, 0]
    m._remember(state, feats[cand], use_iou)
    assert state["reid_valid"].sum(1).tolist() == [2, 3, 1] and state["reid_next"].tolist() == [2, 1, 1]
    torch.testing.assert_close(state["reid_bank"][0, 1], feats[2])


def test_reid_path_needs_thirty_percent_of_the_collection() -> None:
    m = tiny()
    close, far = [0.0, 0.0], [9.0, 9.0]
    state = _stub_state(m, [[close, far, far, far], [close, close, far, far]])  # 25% vs 50%
    feats = torch.zeros(1, 128)
    _, use_reid, _ = m._cascade(state, feats, torch.zeros(2, 1))
    assert use_reid.tolist() == [False, True]


def test_reid_collection_is_a_bounded_ring_that_keeps_the_given_feature() -> None:
    m = tiny(reid_memory=4)
    state = _stub_state(m, [[[1.0, 1.0]]])
    first = state["reid_bank"][0, 0].clone()
    for i in range(7):
        m._remember(state, torch.full((1, 128), float(i)), torch.tensor([True]))
    torch.testing.assert_close(state["reid_bank"][0, 0], first)
    assert state["reid_bank"][0, 1:, 0].tolist() == [6.0, 4.0, 5.0] and state["reid_valid"].all()


def _with_detections(m: OVSNetMethod, boxes: torch.Tensor, masks: torch.Tensor) -> None:
    """Replace the detector's candidates (features stay real) so the cascade's inputs are known."""
    real = m.net.detect

    def detect(image: torch.Tensor) -> Detections:
        d = real(image)
        return Detections(d.features, d.image_size, d.scale, boxes, torch.ones(len(boxes)), masks)

    m.net.detect = detect  # type: ignore[method-assign]


def test_flow_path_refines_the_warped_mask_and_lost_objects_are_absent() -> None:
    m = tiny()
    frames, ids = moving_discs(2, 48, 64, k=2)
    with torch.inference_mode():
        state = first_frame_state(m, frames[0], ids[0], 2)
        _with_detections(m, torch.zeros(0, 4), torch.zeros(0, 1, 28, 28))
        warped = to_inputs(frames[0], ids[0], 2)[1][1:].clone()
        warped[1] = 0  # object 2 lost by the flow, no candidate: absent
        out = m.predict(state, to_inputs(frames[1], ids[1], 2)[0], warped)
    assert out[2].max() < 1e-6
    box, _ = mask_boxes(warped[:1] > 0.5)
    x0, y0, x1, y1 = box[0].tolist()
    cx, cy, hw, hh = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) * 0.65, (y1 - y0) * 0.65
    outside = torch.ones(48, 64, dtype=torch.bool)
    outside[max(0, int(cy - hh)) : int(cy + hh) + 2, max(0, int(cx - hw)) : int(cx + hw) + 2] = False
    assert out[1][outside].max() < 1e-6 and out[1][~outside].max() > 0  # pasted over its enlarged box only
    assert_probabilities(out, 2, (48, 64))
    assert state["reid_valid"].sum().item() == 2  # no IoU path: nothing new saved


def test_iou_path_takes_the_overlapping_candidate_and_saves_its_feature() -> None:
    m = tiny()
    frames, ids = moving_discs(2, 48, 64, k=2)
    image1, prob1 = to_inputs(frames[1], ids[1], 2)
    boxes, _ = mask_boxes(prob1[1:] > 0.5)
    with torch.inference_mode():
        state = first_frame_state(m, frames[0], ids[0], 2)
        _with_detections(m, boxes.flip(0), torch.ones(2, 1, 28, 28))  # candidate 0 is object 2
        out = m.predict(state, image1, to_inputs(frames[0], ids[0], 2)[1][1:])
        feats = m.net.reid_features(m.net.detect(image1), boxes.flip(0))
    assert state["reid_valid"].sum(1).tolist() == [2, 2]
    torch.testing.assert_close(state["reid_bank"][0, 1], feats[1])
    torch.testing.assert_close(state["reid_bank"][1, 1], feats[0])
    assert out.shape == (3, 48, 64)


def test_object_added_mid_video_starts_its_own_collection() -> None:
    m = tiny()
    frames, ids = moving_discs(3, 48, 64, k=2)
    first = without(ids[0], 2)
    with torch.inference_mode():
        state = first_frame_state(m, frames[0], first, 1)
        bank1 = state["reid_bank"].clone()
        out = m.predict(state, to_inputs(frames[1], ids[1], 1)[0], to_inputs(frames[0], first, 1)[1][1:])
        assert out.shape == (2, 48, 64)
        image2, prob2 = to_inputs(frames[2], ids[2], 2)
        m.memorize(state, image2, prob2, [2])
        m.update(state, image2, prob2)
        assert state["reid_bank"].shape[0] == 2 and state["reid_valid"][1].sum() == 1
        torch.testing.assert_close(state["reid_bank"][0, 0], bank1[0, 0])
        out = m.predict(state, image2, prob2[1:])
    assert_probabilities(out, 2, (48, 64))


def test_training_losses_reach_every_parameter() -> None:
    torch.manual_seed(0)
    net = ovsnet_net(**TINY).train()
    images, targets = training_batch()
    losses = net(images, targets)
    assert set(losses) == {
        "loss_classifier",
        "loss_box_reg",
        "loss_mask",
        "loss_objectness",
        "loss_rpn_box_reg",
        "loss_reid",
        "loss_refine",
    }
    assert all(torch.isfinite(v) for v in losses.values()) and losses["loss_reid"] > 0
    sum(losses.values()).backward()
    assert_gradients_reach(net.named_parameters(), 80)


@pytest.mark.parametrize("empty", [[1], [0, 1]])
def test_training_on_frames_without_objects_gives_finite_losses(empty: list[int]) -> None:
    """An object that left the frame, or was cropped away, leaves a frame with no box; a batch
    may have none at all (a real run stopped at step 101 on such a batch)."""
    torch.manual_seed(0)
    net = ovsnet_net(**TINY).train()
    images, targets = training_batch()
    for i in empty:
        t = targets[i]
        targets[i] = {"boxes": t["boxes"][:0], "labels": t["labels"][:0], "masks": t["masks"][:0], "ids": t["ids"][:0]}
    losses = net(images, targets)
    assert all(torch.isfinite(v) for v in losses.values())
    assert (losses["loss_refine"] > 0) == (len(empty) == 1)
    sum(losses.values()).backward()


def test_mga_gradient_stays_in_mga() -> None:
    torch.manual_seed(0)
    net = ovsnet_net(**TINY).train()
    images, targets = training_batch()
    net(images, targets)["loss_refine"].backward()
    for name, p in net.named_parameters():
        assert (p.grad is not None) == name.startswith("mga."), name


def test_deterministic_for_a_fixed_seed() -> None:
    frames, ids = moving_discs(2, 40, 56, k=2)
    outs = []
    for _ in range(2):
        m = tiny(seed=7)
        with torch.inference_mode():
            state = first_frame_state(m, frames[0], ids[0], 2)
            outs += [m.predict(state, to_inputs(frames[1], ids[1], 2)[0], to_inputs(frames[0], ids[0], 2)[1][1:]) for _ in range(2)]
    assert all(torch.equal(outs[0], o) for o in outs[1:])
    assert not torch.equal(tiny(seed=8).net.mga.classifier.weight, tiny(seed=7).net.mga.classifier.weight)


def test_runs_under_bf16_autocast_with_channels_last() -> None:
    frames, ids = moving_discs(2, 40, 56, k=2)
    m = tiny().to("cpu", channels_last=True)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        state = first_frame_state(m, frames[0], ids[0], 2)
        out = m.predict(state, to_inputs(frames[1], ids[1], 2)[0], to_inputs(frames[0], ids[0], 2)[1][1:])
    assert state["reid_bank"].dtype == torch.float32
    assert_probabilities(out, 2, (40, 56))


def test_segments_a_clip_through_the_session() -> None:
    """The lead's session drives the method: DIS flow, warp, predict, a new object on frame 2."""
    from vostool.flow import create_flow
    from vostool.inference.session import Session

    frames, ids = moving_discs(4, 48, 64, k=3)
    session = Session(tiny(), create_flow("dis"))
    propagate_with_late_object(session, frames, ids)
    assert session.state["reid_bank"].shape[0] == 3


def test_session_state_resumes_identically() -> None:
    """The method's state (Re-ID collections) survives a session checkpoint."""
    from vostool.flow import create_flow
    from vostool.inference.session import Session

    frames, ids = moving_discs(5, 48, 64, k=2)
    assert_session_resumes(lambda: Session(tiny(), create_flow("dis")), frames, ids)
