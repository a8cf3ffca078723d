"""Post-processing: head outputs -> detections (B, N, 6) as (x1, y1, x2, y2, score, class) in input pixels, or
a class per pixel. Each step is a few lines and its own function, so the shape table can list them as rows.

- dense (CenterNet's decode.py): sigmoid, peaks by a 3 x 3 max-pool equality test instead of NMS, top-K over
  classes and positions, then box = (centre + offset) * stride -/+ size * stride / 2. Peaks are per class, so
  one object whose centre scores in two classes gives two boxes: that is what COCO's mAP rewards (a second
  guess of the right class still counts; peaks on each cell's best class only cost 0.04-0.10 mAP@0.5,
  benchmarks/NOTES.md, 17). For the picture, `fold` keeps one box per object and names the second guess
  (also for the set head, whose neighbouring queries may settle on one object).
- set (DETR's PostProcess): softmax, drop "no object" (score = best real class), cxcywh -> xyxy scaled to
  the input (torchvision's box_convert).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.ops import box_convert, box_iou, nms


def peaks(heat: torch.Tensor, per_class: bool = True) -> torch.Tensor:
    """(B, K, h, w) probabilities -> the same with 0 everywhere but the peaks: CenterNet's 3 x 3 local maxima of
    each class's map (`per_class=False`: cells whose best class is a local maximum of the best-class map, that
    class only; measured worse, kept for the benchmark)."""
    if per_class:
        return heat * (F.max_pool2d(heat, 3, stride=1, padding=1) == heat)
    best = heat.amax(1, keepdim=True)
    return heat * ((F.max_pool2d(best, 3, stride=1, padding=1) == best) & (heat == best))


def topk(heat: torch.Tensor, k: int) -> tuple[torch.Tensor, ...]:
    """(B, K, h, w) -> scores, classes, ys, xs, each (B, k'), k' = min(k, K*h*w), best first."""
    b, c, h, w = heat.shape
    scores, idx = heat.flatten(1).topk(min(k, c * h * w))
    return scores, idx // (h * w), (idx % (h * w)) // w, idx % w


def dense_decode(heatmap: torch.Tensor, size: torch.Tensor, offset: torch.Tensor, input_hw: tuple[int, int],
                 k: int = 100, per_class: bool = True) -> torch.Tensor:
    """CenterNet heads (heatmap logits (B, K, h, w), size and offset (B, 2, h, w)) -> (B, k, 6) in pixels of
    the (H, W) input. `per_class` as in `peaks`."""
    b, _, h, w = heatmap.shape
    sy, sx = input_hw[0] / h, input_hw[1] / w
    scores, classes, ys, xs = topk(peaks(heatmap.sigmoid(), per_class), k)
    flat = ys * w + xs                                                    # (B, k)
    wh = size.flatten(2).gather(2, flat[:, None].expand(-1, 2, -1))       # (B, 2, k) in cells
    off = offset.flatten(2).gather(2, flat[:, None].expand(-1, 2, -1))
    cx, cy = (xs + off[:, 0]) * sx, (ys + off[:, 1]) * sy
    bw, bh = wh[:, 0].clamp(min=0) * sx, wh[:, 1].clamp(min=0) * sy
    boxes = torch.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], -1)
    return torch.cat([boxes, scores[..., None], classes[..., None].to(boxes.dtype)], -1)


def set_decode(pred_logits: torch.Tensor, pred_boxes: torch.Tensor, input_hw: tuple[int, int]) -> torch.Tensor:
    """DETR heads (pred_logits (B, Q, K+1), pred_boxes (B, Q, 4) cxcywh normalised) -> (B, Q, 6) in pixels."""
    probs = pred_logits.softmax(-1)[..., :-1]                             # drop "no object"
    scores, classes = probs.max(-1)
    h, w = input_hw
    boxes = box_convert(pred_boxes, "cxcywh", "xyxy") * pred_boxes.new_tensor([w, h, w, h])
    return torch.cat([boxes, scores[..., None], classes[..., None].to(boxes.dtype)], -1)


def decode(outputs: dict[str, torch.Tensor], input_hw: tuple[int, int], k: int = 100) -> torch.Tensor:
    """Either detection head's outputs -> (B, N, 6): x1, y1, x2, y2, score, class (input pixels)."""
    if "heatmap" in outputs:
        return dense_decode(outputs["heatmap"], outputs["size"], outputs["offset"], input_hw, k)
    return set_decode(outputs["pred_logits"], outputs["pred_boxes"], input_hw)


def fold(dets: torch.Tensor, iou: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 6) detections, best first -> (the rows kept, one per object: torchvision's class-agnostic `nms` at
    `iou`; for each kept row the index of the strongest row of another class it absorbed, -1 if none)."""
    kept = nms(dets[:, :4], dets[:, 4], iou)
    if not len(kept):
        return kept, kept
    absorbed = (box_iou(dets[kept, :4], dets[:, :4]) >= iou) & (dets[kept, 5, None] != dets[None, :, 5])
    absorbed[:, kept] = False
    first = torch.where(absorbed, torch.arange(len(dets)), len(dets)).amin(1)   # rows are best first
    return kept, torch.where(absorbed.any(1), first, -1)
