"""Training losses (pure tensor functions).

* :func:`instance_iou_loss` — AGSS-VOS eq. 7: ``1 - (1/N) sum_k sum min(P, S) / sum max(P, S)``
  over the ``N`` objects of a frame, on the soft-aggregated (eq. 4-5) probabilities.
* :func:`aggregated_cross_entropy` — negative log-likelihood of the ground-truth label under the
  aggregated ``(K + 1)``-way distribution (an optional small stabilising term, not in the paper).
* :func:`hard_iou` and :func:`apply_tolerance` — the tolerance rule of AGSS-VOS training.

Void pixels (label 255) are excluded everywhere through a ``valid`` pixel mask; padding objects
(clips of a batch with fewer objects) through an ``objects`` mask.
"""

from __future__ import annotations

import torch


def instance_iou_loss(
    prob: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None, objects: torch.Tensor | None = None, *, eps: float = 1.0
) -> torch.Tensor:
    """Instance IoU loss (AGSS-VOS eq. 7), averaged over the batch.

    Args:
        prob: ``(B, K, H, W)`` normalised object probabilities ``P_hat_{t,k}`` (background excluded).
        target: ``(B, K, H, W)`` ground-truth object masks ``S_{t,k}`` in {0, 1}.
        valid: ``(B, H, W)`` 1 for pixels that count (0 = void); None = all.
        objects: ``(B, K)`` 1 for real objects, 0 for padding slots; None = all real.
        eps: added to numerator and denominator (pixels), so an object absent from both the
            ground truth and the prediction scores IoU 1 and the gradient stays bounded.

    Returns:
        Scalar ``mean_b [1 - mean_{k real} IoU_{b,k}]``.
    """
    p, s = prob.float(), target.float()
    if valid is not None:
        v = valid.float().unsqueeze(1)
        p, s = p * v, s * v
    inter = torch.minimum(p, s).sum((-2, -1))
    union = torch.maximum(p, s).sum((-2, -1))
    iou = (inter + eps) / (union + eps)  # (B, K)
    obj = torch.ones_like(iou) if objects is None else objects.float()
    n = obj.sum(1).clamp(min=1.0)
    return (1.0 - (iou * obj).sum(1) / n).mean()


def aggregated_cross_entropy(prob: torch.Tensor, labels: torch.Tensor, *, ignore_index: int = 255, eps: float = 1e-6) -> torch.Tensor:
    """Mean NLL of the true label under aggregated probabilities.

    Args:
        prob: ``(B, K + 1, H, W)`` probabilities summing to 1 over dim 1.
        labels: ``(B, H, W)`` long labels 0..K, ``ignore_index`` = void.

    Returns:
        Scalar mean over non-void pixels (0 when there are none).
    """
    valid = labels != ignore_index
    lab = torch.where(valid, labels, torch.zeros_like(labels))
    picked = prob.float().gather(1, lab.unsqueeze(1)).squeeze(1)
    nll = -torch.log(picked.clamp(min=eps))
    return (nll * valid).sum() / valid.sum().clamp(min=1)


def hard_iou(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """IoU of binary masks per object: ``pred, target (..., H, W)`` bool -> ``(...)`` float
    (1 where both are empty); ``valid (..., H, W)`` or broadcastable excludes void pixels."""
    p, s = pred.bool(), target.bool()
    if valid is not None:
        p, s = p & valid.bool(), s & valid.bool()
    inter = (p & s).sum((-2, -1)).float()
    union = (p | s).sum((-2, -1)).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


def apply_tolerance(prev: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor, threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """AGSS-VOS's tolerance rule: a previous mask whose IoU with the ground truth is below
    ``threshold`` is replaced by the ground truth (per object).

    Args:
        prev: ``(B, K, H, W)`` predicted soft object masks of the previous frame.
        gt: ``(B, K, H, W)`` its ground-truth masks in {0, 1}.
        valid: ``(B, H, W)`` non-void pixels.
        threshold: IoU below which the prediction is replaced.

    Returns:
        ``(masks (B, K, H, W), replaced (B, K) bool)``; IoU is that of ``prev > 0.5``.
    """
    iou = hard_iou(prev > 0.5, gt > 0.5, valid.unsqueeze(1))
    replaced = iou < threshold
    out = torch.where(replaced[:, :, None, None], gt.to(prev.dtype), prev)
    return out, replaced
