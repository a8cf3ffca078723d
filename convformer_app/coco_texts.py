"""The "Pretrained on COCO" views' texts, English and Simplified Chinese, in the catalogue's form
(key -> (en, zh-CN)); `register()` adds them to the app's catalogue (convformer_app/i18n.py)."""
from __future__ import annotations

TEXT: dict[str, tuple[str, str]] = {
    "coco.box": ("Photos: Pretrained on COCO (DETR ResNet-50)", "照片：在 COCO 上预训练（DETR ResNet-50）"),
    "coco.explain": (
        "A published conv + transformer detector for photos: **DETR** (Carion et al. 2020, `facebook/detr-resnet-50`)."
        " A ResNet-50 turns the photo into a map, the map is flattened into tokens with a positional encoding, a "
        "transformer encoder mixes them, and 100 learned **object queries** cross-attend to the tokens; each query "
        "answers one box and a COCO class, or *no object*. Uses the image chosen above; the first run downloads "
        "the weights (167 MB) into the Hugging Face cache.",
        "一个已发表的卷积 + Transformer 照片检测器：**DETR**（Carion 等，2020，`facebook/detr-resnet-50`）。"
        "ResNet-50 把照片变成特征图，特征图被展平为带位置编码的词元，Transformer 编码器混合它们，"
        "100 个可学习的**对象查询**对词元做交叉注意力；每个查询回答一个框和一个 COCO 类别，或*无对象*。"
        "使用上方选择的图像；第一次运行会把权重（167 MB）下载到 Hugging Face 缓存。"),
    "coco.run": ("Detect objects (COCO)", "检测对象（COCO）"),
    "coco.threshold": ("Score threshold", "置信度阈值"),
    "coco.boxes": ("Boxes with COCO names and confidences", "带 COCO 类别名与置信度的框"),
    "coco.table": ("Detections", "检测列表"),
    "coco.object": ("Detected object", "检测到的对象"),
    "coco.query": ("Where its query looked (last decoder layer)", "它的查询关注的位置（最后一层解码器）"),
    "coco.layers": ("Where its query looked, layer by layer", "它的查询逐层关注的位置"),
    "coco.head": ("Attention head", "注意力头"),
    "coco.pixel": ("Encoder self-attention: click the photo", "编码器自注意力：点击照片"),
    "coco.enc_layer": ("Encoder layer", "编码器层"),
    "coco.stage": ("Backbone stage", "骨干网络阶段"),
    "coco.channels": ("Conv activations (the 16 strongest channels)", "卷积激活（最强的 16 个通道）"),
    "coco.cam_btn": ("Grad-CAM for this object", "为该对象计算 Grad-CAM"),
    "coco.cam": ("Grad-CAM on the backbone's last map", "骨干网络最后一张特征图上的 Grad-CAM"),
    "coco.shapes": ("Shapes, from the photo to the boxes", "形状：从照片到框"),
    "coco.diagram": ("The pipeline", "流程"),
    "coco.found": ("**{n}** object(s) at score > {t} · {model} · input {h} x {w} px · token grid {gh} x {gw} · "
                   "{ms} ms on {device}",
                   "置信度 > {t} 时有 **{n}** 个对象 · {model} · 输入 {h} x {w} 像素 · 词元网格 {gh} x {gw} · "
                   "{device} 上 {ms} 毫秒"),
    "coco.none": ("No object scores above {t}: lower the threshold.", "没有对象的置信度高于 {t}：请降低阈值。"),
    "coco.notice": ("Pretrained on COCO: `{model}` (DETR ResNet-50, 91 COCO ids; 42.0 AP on COCO val2017)",
                    "在 COCO 上预训练：`{model}`（DETR ResNet-50，91 个 COCO 类别编号；COCO val2017 上 AP 42.0）"),
    "coco.first": ("Detect objects first.", "请先检测对象。"),
    "coco.no_object": ("Choose a detected object first.", "请先选择一个检测到的对象。"),
    "coco.layer_n": ("decoder layer {n}", "解码器第 {n} 层"),
    "coco.all_heads": ("mean of heads", "各头平均"),
    "coco.downloading": ("Downloading {name} {size} into the Hugging Face cache (once)",
                         "正在把 {name} {size} 下载到 Hugging Face 缓存（仅一次）"),
    "coco.size": ("({mb} MB)", "（{mb} MB）"),
}


def register() -> None:
    """Add TEXT to the app's catalogue and to the browser's translations (idempotent)."""
    from . import gradio_patches, i18n
    i18n.TEXT.update(TEXT)
    for key, pair in TEXT.items():
        if "{" not in pair[0]:
            gradio_patches.add_translation(i18n.I18N, key, dict(zip(i18n.LANGS, pair)))
