"""Losses per head, on batched padded targets (boxes (B, M, 4) xyxy input pixels, labels (B, M), -1 = none).

- dense (CenterNet): penalty-reduced focal loss on Gaussian centre heatmaps (the Gaussian's sigma a sixth of
  the box's geometric-mean side), L1 on size and offset at the centre cells.
- set (DETR): Hungarian matching per decoder layer, cross-entropy with "no object" down-weighted (eos_coef),
  L1 and GIoU on the matched boxes, every layer's outputs supervised (DETR's auxiliary losses).
- segformer: pixel cross-entropy over background + classes, optionally plus a dice loss.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.ops import box_convert, generalized_box_iou

from .matcher import hungarian_match


def centre_targets(boxes: torch.Tensor, labels: torch.Tensor, num_classes: int, hw: tuple[int, int],
                   input_hw: tuple[int, int]) -> dict[str, torch.Tensor]:
    """Padded boxes / labels -> heatmap (B, K, h, w) in [0, 1] (1 exactly at each centre cell), and per object:
    cell index (B, M), size (B, M, 2) and offset (B, M, 2) in cells, valid (B, M)."""
    h, w = hw
    sy, sx = input_hw[0] / h, input_hw[1] / w
    valid = labels >= 0
    cx, cy = (boxes[..., 0] + boxes[..., 2]) / 2 / sx, (boxes[..., 1] + boxes[..., 3]) / 2 / sy
    bw, bh = (boxes[..., 2] - boxes[..., 0]) / sx, (boxes[..., 3] - boxes[..., 1]) / sy
    ix, iy = cx.floor().clamp(0, w - 1), cy.floor().clamp(0, h - 1)
    sigma = ((bw * bh).clamp(min=0).sqrt() / 6).clamp(min=0.5)                       # (B, M)
    ys = torch.arange(h, dtype=boxes.dtype, device=boxes.device).view(1, 1, h, 1)
    xs = torch.arange(w, dtype=boxes.dtype, device=boxes.device).view(1, 1, 1, w)
    g = torch.exp(-((xs - ix[..., None, None]) ** 2 + (ys - iy[..., None, None]) ** 2)
                  / (2 * sigma[..., None, None] ** 2)) * valid[..., None, None]       # (B, M, h, w)
    heat = torch.zeros(boxes.shape[0], num_classes, h * w, dtype=boxes.dtype, device=boxes.device)
    index = labels.clamp(min=0)[..., None].expand(-1, -1, h * w)
    heat.scatter_reduce_(1, index, g.flatten(2), "amax")
    return {"heatmap": heat.view(-1, num_classes, h, w), "cell": (iy * w + ix).long(),
            "size": torch.stack([bw, bh], -1), "offset": torch.stack([cx - ix, cy - iy], -1), "valid": valid}


def focal_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss (alpha 2, beta 4), summed and divided by the number of centres."""
    pos = target.eq(1).to(logits.dtype)
    log_p, log_not_p = F.logsigmoid(logits), F.logsigmoid(-logits)
    p = log_p.exp()
    loss = -(pos * (1 - p) ** 2 * log_p + (1 - pos) * (1 - target) ** 4 * p ** 2 * log_not_p).sum()
    return loss / pos.sum().clamp(min=1)


def dense_loss(out: dict[str, torch.Tensor], boxes: torch.Tensor, labels: torch.Tensor,
               input_hw: tuple[int, int], weights: tuple[float, float] = (0.1, 1.0)) -> torch.Tensor:
    k, h, w = out["heatmap"].shape[1:]
    t = centre_targets(boxes, labels, k, (h, w), input_hw)
    n = t["valid"].sum().clamp(min=1)
    index = t["cell"][:, None].expand(-1, 2, -1)                                      # (B, 2, M)
    size = out["size"].flatten(2).gather(2, index).transpose(1, 2)                     # (B, M, 2)
    offset = out["offset"].flatten(2).gather(2, index).transpose(1, 2)
    mask = t["valid"][..., None].to(size.dtype)
    l_size = (F.l1_loss(size, t["size"], reduction="none") * mask).sum() / n
    l_off = (F.l1_loss(offset, t["offset"], reduction="none") * mask).sum() / n
    return focal_loss(out["heatmap"], t["heatmap"]) + weights[0] * l_size + weights[1] * l_off


def _set_targets(boxes: torch.Tensor, labels: torch.Tensor, input_hw: tuple[int, int]) -> list[dict]:
    h, w = input_hw
    scale = boxes.new_tensor([w, h, w, h])
    return [{"labels": lb[lb >= 0], "boxes": box_convert(bx[lb >= 0] / scale, "xyxy", "cxcywh")}
            for bx, lb in zip(boxes, labels)]


def set_loss(out: dict[str, torch.Tensor], boxes: torch.Tensor, labels: torch.Tensor, input_hw: tuple[int, int],
             eos_coef: float = 0.1, weights: tuple[float, float, float] = (1.0, 5.0, 2.0)) -> torch.Tensor:
    targets = _set_targets(boxes, labels, input_hw)
    k1 = out["layer_logits"].shape[-1]
    class_weight = torch.ones(k1, device=boxes.device)
    class_weight[-1] = eos_coef
    n = max(1, sum(len(t["labels"]) for t in targets))
    total = boxes.new_zeros(())
    for layer in range(out["layer_logits"].shape[1]):
        logits, pred = out["layer_logits"][:, layer], out["layer_boxes"][:, layer]    # (B, Q, K+1), (B, Q, 4)
        match = hungarian_match(logits.detach(), pred.detach(), targets, weights)
        cls = torch.full(logits.shape[:2], k1 - 1, dtype=torch.long, device=logits.device)
        b_idx = torch.cat([torch.full_like(q, i) for i, (q, _) in enumerate(match)])
        q_idx = torch.cat([q for q, _ in match])
        matched_t = torch.cat([t["boxes"][j] for t, (_, j) in zip(targets, match)])
        cls[b_idx, q_idx] = torch.cat([t["labels"][j] for t, (_, j) in zip(targets, match)])
        l_cls = F.cross_entropy(logits.transpose(1, 2), cls, weight=class_weight)
        matched_p = pred[b_idx, q_idx]
        l_box = F.l1_loss(matched_p, matched_t, reduction="sum") / n
        giou = generalized_box_iou(box_convert(matched_p, "cxcywh", "xyxy"), box_convert(matched_t, "cxcywh", "xyxy"))
        l_giou = (1 - giou.diagonal()).sum() / n
        total = total + weights[0] * l_cls + weights[1] * l_box + weights[2] * l_giou
    return total


def dice_loss(logits: torch.Tensor, semantic: torch.Tensor) -> torch.Tensor:
    """1 - the soft dice (Milletari et al. 2016, V-Net) per class over the whole batch, averaged over the classes
    in the batch's targets: every class counts alike, however few its pixels (background is most of a scene)."""
    p = logits.softmax(1)                                                                # (B, K+1, H, W)
    onehot = F.one_hot(semantic.long(), logits.shape[1]).permute(0, 3, 1, 2).to(p.dtype)
    inter, total = (p * onehot).sum((0, 2, 3)), (p + onehot).sum((0, 2, 3))
    present = onehot.sum((0, 2, 3)) > 0
    return 1 - (2 * inter[present] / total[present].clamp(min=1e-6)).mean()


def segment_loss(out: dict[str, torch.Tensor], semantic: torch.Tensor, dice: float = 0.0) -> torch.Tensor:
    loss = F.cross_entropy(out["logits"], semantic.long())
    return loss + dice * dice_loss(out["logits"], semantic) if dice else loss


def task_loss(model, out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor],
              input_hw: tuple[int, int]) -> torch.Tensor:
    """The loss of `model`'s head for one batch ({"boxes", "labels", "semantic"})."""
    if model.head_kind == "dense":
        return dense_loss(out, batch["boxes"], batch["labels"], input_hw)
    if model.head_kind == "set":
        return set_loss(out, batch["boxes"], batch["labels"], input_hw, model.head_config.eos_coef)
    return segment_loss(out, batch["semantic"], model.head_config.dice)
