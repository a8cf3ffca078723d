"""Other tasks: the same hybrid backbones (every fusion stage) detect and segment.

API (everything in the input image's own pixels unless said otherwise):

  TASKS = ("classify", "detect", "segment");  HEADS = {"detect": ("dense", "set"), "segment": ("segformer",)}

  render_scene(index, split="val", seed=0, size=(H, W)) -> Scene
      image: PIL RGB; target: {"boxes" (N, 4) float xyxy px, "labels" (N,) int64 in 0..9,
      "masks" (N, H, W) bool, visible part only}; semantic: (H, W) int64, 0 = background, 1..10 = class + 1.
  scene_split(split, n, size=64, seed=0) -> SceneTensors (uint8 images (N, 3, H, W), semantic (N, H, W),
      padded boxes (N, M, 4) / labels (N, M) with -1 for "no object"; .targets() gives torchvision dicts).

  create_task_model(task, fusion="mid", *, weights="bundled" | "backbone" | "random" | path, **config)
      -> TaskModel (nn.Module); task "classify" gives the classifier (a ConvFormer).
      .task ("detect" | "segment"), .head_kind ("dense" | "set" | "segformer"), .class_names (K = 10),
      .config (the backbone's ConvFormerConfig: preprocessing reads it as for a classifier),
      .head_config (HeadConfig), .backbone (the ConvFormer: inspect(model.backbone, x) works as before),
      .taps [(feature index, channels, stride)], .meta (checkpoint metadata: metrics, training record).
      forward(x (B, 3, H, W)) -> dict of named tensors:
        dense:     heatmap (B, K, h, w) logits, size (B, 2, h, w) box w, h in cells, offset (B, 2, h, w)
        set:       pred_logits (B, Q, K+1) (last = no object), pred_boxes (B, Q, 4) cxcywh in [0, 1],
                   layer_logits (B, L, Q, K+1), layer_boxes (B, L, Q, 4), cross_attn (B, L, Q, h', w')
        segformer: logits (B, K+1, H, W) (class 0 = background)
      (h, w) = (H, W) / 4; the set head's memory grid (h', w') = (H, W) / 8.

  detect(model, image: PIL, score_threshold=0.3, resize="keep") -> Detections
      boxes (N, 4) xyxy in the ORIGINAL image's pixels, scores (N,), labels (N,), names, .rows(),
      heatmap (K, h, w) probabilities (dense) | attention (N, L, h', w') per box's query and queries (N,) (set),
      raw (all candidates, input pixels), input_hw, image_size (W, H), message (one line; says "no objects found").
  segment(model, image: PIL, resize="keep") -> Segmentation
      mask (H, W) int64 in original pixels, probs (K+1, h, w) at input size, class_names ("background" first),
      areas {class: fraction}, message.
  decode(outputs, input_hw, k=100) -> (B, N, 6): x1 y1 x2 y2 score class (input pixels), either detection head.

  task_shape_rows(model, x) -> [TaskRow(name, input_shape, output_shape, params, flops, note, input_axes,
      output_axes)]: taps -> neck -> head outputs -> each decoding step, e.g. heatmap (B=1, K=10, h=16, w=16)
      -> detections (B=1, N=100, 6).

  inspect_task(model, x, cam_class=None, flops=True) -> (Inspection of the backbone, the head's outputs): one
      recorded forward (attention, activations, token grids; the taps kept by hooks for the head).

  save_task_checkpoint(model, path, half=False, **meta) (half: float16 tensors, upcast on load),
  load_task_checkpoint(path, task=None) (another task's checkpoint, or a classifier's: CheckpointError in one
  line), bundled_task_checkpoint(task, fusion, head="") (a non-default head has its own file, e.g.
  detect_mid_set; `create_task_model(task, fusion, head=...)` loads it).
  hungarian_match, mean_ap, mean_iou: matcher and metrics (torchmetrics, pycocotools backend; mIoU is
  dataset-level, the standard, with torchmetrics' per-image MeanIoU beside it).
"""
from .decode import decode
from .infer import Detections, Segmentation, detect, segment
from .inspect import inspect_task
from .matcher import hungarian_match
from .metrics import mean_ap, mean_iou
from .model import HEADS, TASKS, HeadConfig, TaskModel, pick_taps
from .rows import TaskRow, task_shape_rows
from .scenes import Scene, SceneTensors, render_scene, scene_split
from .weights import bundled_task_checkpoint, create_task_model, load_task_checkpoint, save_task_checkpoint

__all__ = ["HEADS", "TASKS", "Detections", "HeadConfig", "Scene", "SceneTensors", "Segmentation", "TaskModel",
           "TaskRow", "bundled_task_checkpoint", "create_task_model", "decode", "detect", "hungarian_match", "inspect_task",
           "load_task_checkpoint", "mean_ap", "mean_iou", "pick_taps", "render_scene", "save_task_checkpoint", "scene_split", "segment",
           "task_shape_rows"]
