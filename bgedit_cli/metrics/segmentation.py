"""Semantic segmentation metrics: a confusion matrix, then closed forms on it (all vectorized, any device).

Conventions (as in mmsegmentation / the ADE20K SceneParsing benchmark):
- `confusion_matrix(pred, target)[t, p]` counts pixels of true class t predicted as p; target pixels equal to
  `ignore_index` (255) are left out entirely, whatever was predicted there.
- pixel accuracy = trace / total.
- IoU of class c = cm[c, c] / (row_c + col_c - cm[c, c]); a class is *present* when that union is non-zero, i.e.
  it occurs in the labels or in the predictions. mIoU averages IoU over present classes only, so classes absent
  from both never count, while a class that is only predicted (a pure false positive) counts with IoU 0.
- mean class accuracy averages recall cm[c, c] / row_c over classes that occur in the labels.
Confusion matrices of several batches (or ranks) add up; compute the scores once at the end.
"""

from __future__ import annotations

import torch

from bgedit_cli.data.ade20k_classes import IGNORE_ID, NUM_CLASSES


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int = NUM_CLASSES,
                     ignore_index: int = IGNORE_ID) -> torch.Tensor:
    """pred, target: int [...] of the same shape -> int64 [num_classes, num_classes] (rows = target)."""
    if pred.shape != target.shape:
        raise ValueError(f"pred {list(pred.shape)} and target {list(target.shape)} must have the same shape")
    pred, target = pred.reshape(-1).long(), target.reshape(-1).long()
    keep = target != ignore_index
    pred, target = pred[keep], target[keep]
    if pred.numel() and (min(pred.min(), target.min()) < 0 or max(pred.max(), target.max()) >= num_classes):
        raise ValueError(f"class ids must be 0..{num_classes - 1} (or {ignore_index} in the target)")
    cm = torch.bincount(target * num_classes + pred, minlength=num_classes * num_classes)
    return cm.reshape(num_classes, num_classes)


def pixel_accuracy(cm: torch.Tensor) -> float:
    """Correct pixels / labelled pixels (nan when there are none)."""
    total = cm.sum()
    return (cm.diagonal().sum() / total).item() if total > 0 else float("nan")


def class_iou(cm: torch.Tensor) -> torch.Tensor:
    """float64 [C]: IoU per class, nan where the class is in neither labels nor predictions."""
    cm = cm.double()
    tp = cm.diagonal()
    union = cm.sum(0) + cm.sum(1) - tp
    return torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, float("nan")))


def mean_iou(cm: torch.Tensor) -> float:
    """Mean IoU over present classes (nan when no class is present)."""
    iou = class_iou(cm)
    present = ~iou.isnan()
    return iou[present].mean().item() if present.any() else float("nan")


def mean_class_accuracy(cm: torch.Tensor) -> float:
    """Mean per-class recall over the classes that occur in the labels."""
    cm = cm.double()
    rows = cm.sum(1)
    labelled = rows > 0
    return (cm.diagonal()[labelled] / rows[labelled]).mean().item() if labelled.any() else float("nan")


def segmentation_scores(cm: torch.Tensor) -> dict[str, float | int]:
    """All scalar scores of one confusion matrix: pixel_acc, mean_acc, miou, num_classes_present, num_pixels."""
    iou = class_iou(cm)
    return {"pixel_acc": pixel_accuracy(cm), "mean_acc": mean_class_accuracy(cm), "miou": mean_iou(cm),
            "num_classes_present": int((~iou.isnan()).sum()), "num_pixels": int(cm.sum())}
