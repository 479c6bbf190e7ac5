"""Training losses checked by hand on tiny examples."""

from __future__ import annotations

import math

import torch

from vostool.train.losses import aggregated_cross_entropy, apply_tolerance, hard_iou, instance_iou_loss


def test_instance_iou_loss_by_hand() -> None:
    # One image, two objects on a 2x2 frame.
    prob = torch.tensor([[[[0.5, 1.0], [0.0, 0.0]], [[0.0, 0.0], [0.25, 0.25]]]])
    target = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]], [[0.0, 0.0], [1.0, 0.0]]]])
    # object 1: sum min = 0.5 + 1 = 1.5, sum max = 1 + 1 = 2 -> 0.75
    # object 2: sum min = 0.25, sum max = 1 + 0.25 = 1.25 -> 0.2
    loss = instance_iou_loss(prob, target, eps=0.0)
    assert math.isclose(float(loss), 1 - (0.75 + 0.2) / 2, rel_tol=1e-6)
    # A padding object does not count.
    loss1 = instance_iou_loss(prob, target, objects=torch.tensor([[1.0, 0.0]]), eps=0.0)
    assert math.isclose(float(loss1), 0.25, rel_tol=1e-6)
    # Void pixels are ignored: hide pixel (0, 0) -> object 1 becomes 1/1, object 2 stays 0.2.
    valid = torch.tensor([[[0.0, 1.0], [1.0, 1.0]]])
    loss2 = instance_iou_loss(prob, target, valid, eps=0.0)
    assert math.isclose(float(loss2), 1 - (1.0 + 0.2) / 2, rel_tol=1e-6)
    # Perfect prediction -> 0; gradient exists.
    p = target.clone().requires_grad_(True)
    assert float(instance_iou_loss(p, target).detach()) == 0.0
    instance_iou_loss(prob.clone().requires_grad_(True), target).backward()


def test_cross_entropy_by_hand_ignores_void() -> None:
    prob = torch.tensor([[[[0.8, 0.5]], [[0.2, 0.5]]]])  # (1, 2, 1, 2): background, object 1
    labels = torch.tensor([[[0, 255]]])
    assert math.isclose(float(aggregated_cross_entropy(prob, labels)), -math.log(0.8), rel_tol=1e-6)
    labels = torch.tensor([[[1, 1]]])
    assert math.isclose(float(aggregated_cross_entropy(prob, labels)), -(math.log(0.2) + math.log(0.5)) / 2, rel_tol=1e-6)


def test_tolerance_rule_replaces_bad_previous_mask() -> None:
    gt = torch.zeros(1, 2, 8, 8)
    gt[0, 0, :4, :4] = 1  # object 1: top-left block
    gt[0, 1, 4:, 4:] = 1  # object 2: bottom-right block
    prev = torch.zeros(1, 2, 8, 8)
    prev[0, 0, :4, :3] = 0.9  # 12/16 = 0.75 IoU: kept
    prev[0, 1, :2, :] = 0.9  # drifted to the wrong place: IoU 0 -> replaced
    valid = torch.ones(1, 8, 8, dtype=torch.bool)
    out, replaced = apply_tolerance(prev, gt, valid, 0.5)
    assert replaced.tolist() == [[False, True]]
    assert torch.equal(out[0, 0], prev[0, 0])
    assert torch.equal(out[0, 1], gt[0, 1])
    # A stricter threshold replaces the first one too.
    _, replaced = apply_tolerance(prev, gt, valid, 0.8)
    assert replaced.tolist() == [[True, True]]
    # Both empty counts as a perfect match.
    assert float(hard_iou(torch.zeros(3, 3, dtype=torch.bool), torch.zeros(3, 3, dtype=torch.bool))) == 1.0
