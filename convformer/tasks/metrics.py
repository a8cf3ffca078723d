"""Task metrics through torchmetrics: COCO-style mean average precision (MeanAveragePrecision on the
pycocotools backend) and mean IoU over background + the classes (MeanIoU)."""
from __future__ import annotations

import torch


def mean_ap(preds: list[dict[str, torch.Tensor]], targets: list[dict[str, torch.Tensor]],
            class_metrics: bool = False) -> dict[str, float]:
    """preds [{"boxes" (N, 4) xyxy, "scores" (N,), "labels" (N,)}], targets [{"boxes", "labels"}] ->
    {"map", "map_50", "map_75", ...} as floats (COCO: 101-point interpolation, max 100 detections)."""
    from torchmetrics.detection import MeanAveragePrecision
    metric = MeanAveragePrecision(box_format="xyxy", iou_type="bbox", backend="pycocotools",
                                  class_metrics=class_metrics)
    metric.update(preds, targets)
    out = metric.compute()
    return {k: (v.tolist() if v.numel() > 1 else float(v)) for k, v in out.items() if k != "classes"}


def mean_iou(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> dict[str, object]:
    """pred, target (B, H, W) class indices (0 = background) -> {"miou": mean over classes present in either,
    background included; "per_class": IoU per class, NaN where a class is in neither}."""
    from torchmetrics.segmentation import MeanIoU
    metric = MeanIoU(num_classes=num_classes, include_background=True, per_class=True, input_format="index")
    metric.update(pred.long(), target.long())
    per_class = metric.compute()
    present = torch.bincount(torch.cat([pred.flatten(), target.flatten()]).long(), minlength=num_classes) > 0
    per_class = torch.where(present, per_class, torch.nan)
    return {"miou": float(per_class[present].mean()), "per_class": per_class.tolist()}


def detections_to_preds(dets: torch.Tensor, scale: torch.Tensor | None = None) -> list[dict[str, torch.Tensor]]:
    """(B, N, 6) decoded detections -> torchmetrics' preds (boxes optionally scaled)."""
    out = []
    for d in dets.float().cpu():
        boxes = d[:, :4] * (scale if scale is not None else 1)
        out.append({"boxes": boxes, "scores": d[:, 4], "labels": d[:, 5].long()})
    return out
