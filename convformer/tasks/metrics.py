"""Task metrics through torchmetrics: COCO-style mean average precision (MeanAveragePrecision on the
pycocotools backend) and mean IoU over background + the classes (dataset-level, as Cityscapes / ADE20K;
torchmetrics' per-image `MeanIoU` reported beside it)."""
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
    """pred, target (B, H, W) class indices (0 = background) -> {"miou": the standard dataset-level mean IoU
    (Cityscapes, ADE20K, mmseg: intersections and unions summed over every image, then IoU per class, averaged
    over the classes present in either, background included); "per_class": IoU per class, NaN where a class is
    in neither; "miou_per_image": torchmetrics' `MeanIoU` (IoU per image and class, averaged over the (image,
    class) pairs where the class appears in either), stricter: a few stray pixels of a class in one image count as
    a whole image at IoU 0}."""
    from torchmetrics.classification import MulticlassJaccardIndex
    from torchmetrics.segmentation import MeanIoU
    pred, target = pred.long(), target.long()
    split = MulticlassJaccardIndex(num_classes=num_classes, average="none", zero_division=0.0)
    per_class = split(pred.flatten(), target.flatten())                                   # (K+1,) dataset level
    present = torch.bincount(torch.cat([pred.flatten(), target.flatten()]), minlength=num_classes) > 0
    per_class = torch.where(present, per_class, torch.nan)
    per_image = MeanIoU(num_classes=num_classes, include_background=True, input_format="index")
    per_image.update(pred, target)
    return {"miou": float(per_class[present].mean()), "per_class": per_class.tolist(),
            "miou_per_image": float(per_image.compute())}


def detections_to_preds(dets: torch.Tensor, scale: torch.Tensor | None = None) -> list[dict[str, torch.Tensor]]:
    """(B, N, 6) decoded detections -> torchmetrics' preds (boxes optionally scaled)."""
    out = []
    for d in dets.float().cpu():
        boxes = d[:, :4] * (scale if scale is not None else 1)
        out.append({"boxes": boxes, "scores": d[:, 4], "labels": d[:, 5].long()})
    return out
