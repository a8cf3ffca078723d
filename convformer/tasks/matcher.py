"""DETR's Hungarian matcher (Carion et al. 2020, models/matcher.py): each target gets the one query that
costs least overall, by scipy's `linear_sum_assignment` over cost = w_class * (-p(class)) + w_box * L1(cxcywh)
+ w_giou * (-GIoU) (torchvision's generalized_box_iou)."""
from __future__ import annotations

import torch
from scipy.optimize import linear_sum_assignment
from torchvision.ops import box_convert, generalized_box_iou


def match_cost(logits: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor, target_boxes: torch.Tensor,
               weights: tuple[float, float, float] = (1.0, 5.0, 2.0)) -> torch.Tensor:
    """One image: logits (Q, K+1), boxes (Q, 4) and target_boxes (T, 4) cxcywh normalised, labels (T,) ->
    cost (Q, T)."""
    w_class, w_box, w_giou = weights
    prob = logits.softmax(-1)[:, labels]                                   # (Q, T)
    l1 = torch.cdist(boxes, target_boxes, p=1)                             # (Q, T)
    giou = generalized_box_iou(box_convert(boxes, "cxcywh", "xyxy"), box_convert(target_boxes, "cxcywh", "xyxy"))
    return -w_class * prob + w_box * l1 - w_giou * giou


@torch.no_grad()
def hungarian_match(logits: torch.Tensor, boxes: torch.Tensor, targets: list[dict[str, torch.Tensor]],
                    weights: tuple[float, float, float] = (1.0, 5.0, 2.0)) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """logits (B, Q, K+1), boxes (B, Q, 4), targets [{"labels" (T,), "boxes" (T, 4) cxcywh normalised}] ->
    per image (query indices, target indices), each (min(Q, T),), sorted by query."""
    out = []
    for lg, bx, t in zip(logits.float(), boxes.float(), targets):
        if len(t["labels"]) == 0:
            out.append((torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long)))
            continue
        rows, cols = linear_sum_assignment(match_cost(lg, bx, t["labels"], t["boxes"].float(), weights).cpu().numpy())
        out.append((torch.as_tensor(rows, dtype=torch.long), torch.as_tensor(cols, dtype=torch.long)))
    return out
