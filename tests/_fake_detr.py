"""An offline stand-in for `facebook/detr-resnet-50` on the Hugging Face Hub: the files `from_pretrained` reads,
laid out as huggingface_hub caches them, with the Hub's own `config.json` and `preprocessor_config.json` (their
legacy keys included: `use_timm_backbone`, `use_pretrained_backbone: true`) and random weights written by
transformers' `save_pretrained` (which writes the checkpoint's legacy key names back, e.g.
`model.backbone.conv_encoder.model.conv1.weight`, as the Hub's file has them).

    HUB/models--facebook--detr-resnet-50/refs/main                  -> REV
    HUB/models--facebook--detr-resnet-50/snapshots/REV/{config.json, preprocessor_config.json, model.safetensors}

`small=True` keeps the architecture (timm ResNet -> 1x1 conv -> encoder -> queries -> decoder -> heads) but
shrinks it so tests are fast: a ResNet-18, D = 64, one encoder and two decoder layers, 12 queries. The class
head's bias favours "cat" on every query, so random weights still find objects, deterministically.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import torch

REPO = "facebook/detr-resnet-50"
REV = "1d5f47bd3bdd2c4bbfa585418ffe6da5028b4c0b"  # the Hub's main at the time of writing (a name here only)

# COCO 2017's category ids 0..90 as DETR's checkpoint names them ('N/A': ids COCO does not use)
COCO91 = ["N/A", "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
          "traffic light", "fire hydrant", "N/A", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse",
          "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "N/A", "backpack", "umbrella", "N/A", "N/A",
          "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite", "baseball bat",
          "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle", "N/A", "wine glass", "cup", "fork",
          "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza",
          "donut", "cake", "chair", "couch", "potted plant", "bed", "N/A", "dining table", "N/A", "N/A", "toilet",
          "N/A", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone", "microwave", "oven", "toaster", "sink",
          "refrigerator", "N/A", "book", "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush"]

# The Hub's config.json for facebook/detr-resnet-50 (written by transformers 4.x; legacy backbone keys)
HUB_CONFIG = {
    "_name_or_path": REPO, "activation_dropout": 0.0, "activation_function": "relu",
    "architectures": ["DetrForObjectDetection"], "attention_dropout": 0.0, "auxiliary_loss": False,
    "backbone": "resnet50", "bbox_cost": 5, "bbox_loss_coefficient": 5, "class_cost": 1, "d_model": 256,
    "decoder_attention_heads": 8, "decoder_ffn_dim": 2048, "decoder_layerdrop": 0.0, "decoder_layers": 6,
    "dice_loss_coefficient": 1, "dilation": False, "dropout": 0.1, "encoder_attention_heads": 8,
    "encoder_ffn_dim": 2048, "encoder_layerdrop": 0.0, "encoder_layers": 6, "eos_coefficient": 0.1, "giou_cost": 2,
    "giou_loss_coefficient": 2, "id2label": {str(i): n for i, n in enumerate(COCO91)},
    "init_std": 0.02, "init_xavier_std": 1.0, "is_encoder_decoder": True,
    "label2id": {n: i for i, n in enumerate(COCO91)}, "mask_loss_coefficient": 1, "max_position_embeddings": 1024,
    "model_type": "detr", "num_channels": 3, "num_hidden_layers": 6, "num_queries": 100,
    "position_embedding_type": "sine", "scale_embedding": False, "torch_dtype": "float32",
    "transformers_version": "4.26.0.dev0", "use_pretrained_backbone": True, "use_timm_backbone": True,
}
HUB_PREPROCESSOR = {
    "do_normalize": True, "do_pad": True, "do_rescale": True, "do_resize": True, "format": "coco_detection",
    "image_mean": [0.485, 0.456, 0.406], "image_processor_type": "DetrImageProcessor",
    "image_std": [0.229, 0.224, 0.225], "resample": 2, "rescale_factor": 0.00392156862745098,
    "size": {"longest_edge": 1333, "shortest_edge": 800},
}
SMALL = {"backbone": "resnet18", "d_model": 64, "encoder_ffn_dim": 128, "decoder_ffn_dim": 128,
         "encoder_attention_heads": 2, "decoder_attention_heads": 2, "encoder_layers": 1, "decoder_layers": 2,
         "num_hidden_layers": 1, "num_queries": 12}
SMALL_SIZE = {"longest_edge": 192, "shortest_edge": 128}  # the small model also sees small inputs
CAT = COCO91.index("cat")


def config(small: bool = True) -> dict:
    return {**HUB_CONFIG, **(SMALL if small else {})}


def write(hub: Path, small: bool = True, seed: int = 0) -> Path:
    """Write the repository into the cache at `hub` (HF_HUB_CACHE); returns the snapshot folder."""
    from transformers import DetrConfig, DetrForObjectDetection

    torch.manual_seed(seed)
    cfg = config(small)
    model = DetrForObjectDetection(DetrConfig.from_dict(cfg)).eval()
    with torch.no_grad():
        model.class_labels_classifier.bias[CAT] += 8.0  # every query: "cat" with high probability
    repo = hub / f"models--{REPO.replace('/', '--')}"
    snapshot = repo / "snapshots" / REV
    tmp = Path(tempfile.mkdtemp())
    model.save_pretrained(tmp, safe_serialization=True)
    snapshot.mkdir(parents=True, exist_ok=True)
    shutil.move(tmp / "model.safetensors", snapshot / "model.safetensors")
    shutil.rmtree(tmp, ignore_errors=True)
    (snapshot / "config.json").write_text(json.dumps(cfg, indent=2))
    pre = {**HUB_PREPROCESSOR, **({"size": SMALL_SIZE} if small else {})}
    (snapshot / "preprocessor_config.json").write_text(json.dumps(pre, indent=2))
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(REV)
    return snapshot
