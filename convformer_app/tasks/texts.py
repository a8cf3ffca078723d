"""The task views' texts, English and Simplified Chinese, in the catalogue's form (key -> (en, zh-CN));
convformer_app/i18n.py adds them to its catalogue."""
from __future__ import annotations

TEXT: dict[str, tuple[str, str]] = {
    # ---- the choice ----
    "task.choice": ("Task", "任务"),
    "task.info": ("classify: one label per image · detect: boxes, classes and scores · segment: a class per pixel",
                  "classify 分类：每张图像一个标签 · detect 检测：框、类别与置信度 · segment 分割：每个像素一个类别"),
    "task.classify": ("classify", "classify 分类"),
    "task.detect": ("detect", "detect 检测"),
    "task.segment": ("segment", "segment 分割"),
    "task.run_detect": ("Detect", "检测"),
    "task.run_segment": ("Segment", "分割"),
    # ---- detect ----
    "detect.threshold": ("Score threshold", "置信度阈值"),
    "detect.threshold_info": ("boxes scoring below it are not shown", "低于该值的框不显示"),
    "detect.image": ("Detections (click a box)", "检测结果（点击一个框）"),
    "detect.table": ("Detections", "检测列表"),
    "detect.heat_class": ("Heatmap of the class", "该类别的热力图"),
    "detect.heatmap": ("Where the dense head sees this class's centres", "密集检测头认为该类别中心所在之处"),
    "detect.query": ("Where the clicked box's query looked", "被点击的框所对应查询关注的位置"),
    "detect.explain": (
        "The detector's boxes in the image's own pixels, with class and confidence. A **dense** head predicts a "
        "heatmap per class and reads boxes at its peaks (CenterNet); a **set** head's object queries each "
        "cross-attend to the image tokens and answer one box or *no object* (DETR): click a box to see where "
        "its query looked.",
        "检测器给出的框使用图像自身的像素坐标，并带有类别与置信度。**密集**检测头为每个类别预测一张热力图，"
        "在其峰值处读出框（CenterNet）；**集合**检测头的每个对象查询对图像词元做交叉注意力，回答一个框或"
        "*无对象*（DETR）：点击一个框，看看它的查询关注了哪里。"),
    "detect.found": ("**{n}** object(s) found at score ≥ {t}.", "在置信度 ≥ {t} 时找到 **{n}** 个对象。"),
    "detect.none": ("No objects found at score ≥ {t}: lower the threshold, or try an image with shapes in it.",
                    "在置信度 ≥ {t} 时没有找到对象：请降低阈值，或换一张含有形状的图像。"),
    "detect.no_query": ("This detector has no per-query attention (a dense head): see the heatmap instead.",
                        "该检测器没有逐查询的注意力（密集检测头）：请改看热力图。"),
    "detect.no_box": ("No box there: click inside a box.", "那里没有框：请点击框内。"),
    "detect.threshold_bad": ("threshold={value} is not allowed: expected a number from 0 to 1",
                             "threshold={value} 不允许：应为 0 到 1 之间的数"),
    "detect.query_of": ("Detection {i} ({name}, {score}): the cross-attention of its query, averaged over heads.",
                        "检测 {i}（{name}，{score}）：其查询的交叉注意力，对各头取平均。"),
    "detector.choice": ("Detector", "检测器"),
    "detector.shapes": ("this stage's, trained on Shapes scenes", "本阶段的，在 Shapes 场景上训练"),
    "detector.coco": ("DETR pretrained on COCO (for photos)", "COCO 预训练的 DETR（用于照片）"),
    "detect.col_class": ("class", "类别"),
    "detect.col_score": ("score", "置信度"),
    "detect.col_second": ("second guess", "次选"),
    # ---- segment ----
    "segment.image": ("Mask", "掩码"),
    "segment.iou": ("IoU per class (Shapes scenes only)", "各类别 IoU（仅限 Shapes 场景）"),
    "segment.explain": (
        "A class for every pixel of the image (background included), over the image with a legend. When the "
        "image is a Shapes scene (*Render a Shapes scene*, beside the image), its true mask is known: the table "
        "gives each class's IoU.",
        "为图像的每个像素给出一个类别（包括背景），叠加在图像上并附图例。当图像是 Shapes 场景（用图像旁的“生成一个 Shapes 场景”）时，"
        "其真实掩码已知：表格给出每个类别的 IoU。"),
    "segment.col_pred": ("predicted px", "预测像素数"),
    "segment.col_true": ("true px", "真实像素数"),
    "segment.found": ("Classes found: {names}.", "找到的类别：{names}。"),
    "segment.none": ("Only background found: no objects in this image.", "只找到背景：这张图像中没有对象。"),
    "segment.miou": (" Mean IoU against the scene's true mask: **{miou}**.", "与场景真实掩码相比的平均 IoU：**{miou}**。"),
    "segment.no_truth": (" (Not a Shapes scene: no true mask to score against.)",
                         "（不是 Shapes 场景：没有可用于评分的真实掩码。）"),
    # ---- scenes ----
    "scene.index": ("Scene number", "场景编号"),
    "scene.render": ("Render a Shapes scene", "生成一个 Shapes 场景"),
    # ---- compare ----
    "tcompare.title": ("### Detect and segment: the stages side by side",
                       "### 检测与分割：各阶段并排对比"),
    "tcompare.explain": (
        "Every fusion stage's bundled detector or segmenter on the image above: its picture, its score on an unseen "
        "Shapes-scenes split (from the checkpoint's record), its size, FLOPs and latency on this device.",
        "每个融合阶段的内置检测器或分割器在上面这张图像上的结果：它的图像、它在未见过的 Shapes 场景划分上的得分"
        "（来自检查点的记录）、它的大小、FLOPs 以及在本设备上的延迟。"),
    "tcompare.task": ("Task to compare", "要对比的任务"),
    "tcompare.run": ("Compare the stages on this task", "在此任务上对比各阶段"),
    "tcompare.gallery": ("Each stage on the same image", "各阶段在同一张图像上的结果"),
    "tcompare.table": ("The stages on this task", "各阶段在此任务上的表现"),
    "tcompare.col_stage": ("stage", "阶段"),
    "tcompare.col_weights": ("weights", "权重"),
    "tcompare.col_found": ("found", "找到"),
    "tcompare.boxes": ("{n} boxes", "{n} 个框"),
    "tcompare.background": ("background only", "只有背景"),
    "tcompare.bundled": ("bundled checkpoint", "内置检查点"),
    "tcompare.untrained": ("no bundled checkpoint: head untrained", "无内置检查点：任务头未训练"),
    # ---- train ----
    "ttrain.title": ("### Train a detector or a segmenter", "### 训练一个检测器或分割器"),
    "ttrain.explain": (
        "A fusion stage's detector or segmenter trained on Shapes scenes with its measured recipe (the backbone "
        "starts from the stage's bundled classifier); its metric on the validation scenes after every epoch, "
        "against time. The result becomes this session's *trained* weights for Explore's Detect and Segment.",
        "用测得的配方在 Shapes 场景上训练某个融合阶段的检测器或分割器（主干从该阶段的内置分类器开始）；每个 epoch "
        "之后在验证场景上的指标随时间变化。结果成为本次会话 Explore 中检测与分割的*训练*权重。"),
    "ttrain.task": ("Task to train", "要训练的任务"),
    "ttrain.seconds": ("Training time (s)", "训练时长（秒）"),
    "ttrain.start": ("Train", "开始训练"),
    "ttrain.stop": ("Stop", "停止"),
    "ttrain.curve": ("Validation metric against time", "验证指标随时间的变化"),
    "ttrain.starting": ("Training a {task} model on the {fusion} backbone for up to {s} s: rendering the scenes...",
                        "正在 {fusion} 主干上训练 {task} 模型，最多 {s} 秒：正在生成场景……"),
    "ttrain.epoch": ("Epoch {epoch}: validation {metric} **{value}** after {t} s.",
                     "第 {epoch} 个 epoch：{t} 秒后验证 {metric} 为 **{value}**。"),
    "ttrain.done": ("Done in {t} s: best validation {metric} **{best}**, on unseen test scenes **{test}**. In Explore, "
                    "choose the task and *Trained in this session* to run it.",
                    "用时 {t} 秒完成：最佳验证 {metric} 为 **{best}**，在未见过的测试场景上为 **{test}**。在 Explore 中"
                    "选择该任务与“本次会话中训练的”权重即可运行它。"),
    "ttrain.failed": ("Training stopped: {error}", "训练已停止：{error}"),
    "ttrain.busy": ("A task run of this page is still going: stop it first.", "本页面的任务训练仍在进行：请先停止它。"),
    "ttrain.nothing": ("Nothing is training.", "没有正在进行的训练。"),
    "ttrain.stopping": ("Stopping after the current step...", "将在当前步骤之后停止……"),
    "ttrain.axis_seconds": ("seconds", "秒"),
    # ---- the task rows of the shape table (convformer.tasks.task_shape_rows' notes) ----
    "note.task_tap": ("backbone feature at stride {s}", "步幅 {s} 处的主干特征"),
    "note.task_pyramid": ("ViTDet simple pyramid: deconv / identity / max-pool", "ViTDet 简单金字塔：反卷积 / 恒等 / 最大池化"),
    "note.task_fuse": ("SegFormer all-MLP fusion: Linear per level, upsample, concat, 1x1",
                       "SegFormer 全 MLP 融合：每层一个线性层、上采样、拼接、1x1"),
    "note.task_classify": ("1x1 conv to K+1 classes, upsampled to the input", "1x1 卷积到 K+1 个类别，上采样到输入尺寸"),
    "note.task_argmax": ("class per pixel (0 = background)", "每个像素的类别（0 = 背景）"),
    "note.task_trunk": ("shared 3x3 conv + ReLU", "共享的 3x3 卷积 + ReLU"),
    "note.task_heatmap": ("class-centre heatmaps (CenterNet), 1x1 conv", "类别中心热力图（CenterNet），1x1 卷积"),
    "note.task_size": ("box width, height in cells, 1x1 conv", "框的宽、高（以网格单元计），1x1 卷积"),
    "note.task_offset": ("centre offset in its cell, 1x1 conv", "中心在其网格单元内的偏移，1x1 卷积"),
    "note.task_sigmoid": ("heatmap probabilities", "热力图概率"),
    "note.task_peaks": ("3x3 max-pool equality: local maxima, no NMS", "3x3 最大池化相等检验：局部极大值，无需 NMS"),
    "note.task_topk": ("top {k} peaks over classes and cells", "在类别与网格单元上取前 {k} 个峰值"),
    "note.task_boxes": ("(centre + offset) * stride -/+ size / 2: x1 y1 x2 y2 score class",
                       "（中心 + 偏移）× 步幅 ∓ 尺寸 / 2：x1 y1 x2 y2 置信度 类别"),
    "note.task_input_proj": ("3x3 conv, stride 2: the memory grid", "3x3 卷积，步幅 2：记忆网格"),
    "note.task_memory": ("grid -> tokens (+ 2-D sin-cos positions)", "网格 -> 词元（+ 二维正弦余弦位置编码）"),
    "note.task_decoder": ("{n} decoder layers: Q queries, self- then cross-attention", "{n} 个解码器层：Q 个查询，先自注意力再交叉注意力"),
    "note.task_query_box": ("box per query: cx cy w h in [0, 1]", "每个查询一个框：cx cy w h，取值 [0, 1]"),
    "note.task_cross": ("where each query looked, per layer", "每个查询关注的位置，逐层"),
    "note.task_post": ("softmax, drop no-object, cxcywh -> xyxy pixels: x1 y1 x2 y2 score class",
                       "softmax，去掉无对象，cxcywh -> xyxy 像素：x1 y1 x2 y2 置信度 类别"),
    # ---- what the model is ----
    "task.weights": ("{task} model, **{fusion}** backbone, {head} head; {weights}.",
                     "{task} 模型，**{fusion}** 主干，{head} 任务头；{weights}。"),
    "task.weights_bundled": ("the bundled checkpoint", "内置检查点"),
    "task.weights_random": ("random weights (predictions mean nothing)", "随机权重（预测没有意义）"),
    "task.weights_upload": ("your checkpoint", "你的检查点"),
    "task.weights_trained": ("trained in this session", "本次会话中训练的"),
    "task.head": ("Detection head", "检测头"),
    "task.head_info": ("dense: a heatmap per class, boxes at its peaks (CenterNet) · set: object queries that "
                       "cross-attend to the image (DETR)",
                       "dense 密集：每个类别一张热力图，在峰值处读出框（CenterNet）· set 集合：对图像做交叉注意力的"
                       "对象查询（DETR）"),
    "task.wrong_task": ("This checkpoint is a {found} model, not a {task} model: choose a {task} checkpoint",
                        "这个检查点是 {found} 模型，不是 {task} 模型：请选择 {task} 检查点"),
    "task.no_weights": ("weights={weights} are not available for {task}: expected one of {choices}",
                        "{task} 不支持 weights={weights}：应为 {choices} 之一"),
    # ---- Explore's views on DETR (the COCO detector) and on any task model ----
    "tview.detr_stats": ("**{params}** parameters · input {h} x {w} px · token grid {gh} x {gw} (h x w) · {ms} ms for "
                         "the inspected forward pass on **{device}**",
                         "**{params}** 个参数 · 输入 {h} x {w} 像素 · 词元网格 {gh} x {gw}（高 x 宽）· 在 **{device}** 上"
                         "带检查的前向传播用时 {ms} 毫秒"),
    "tview.detr_maps": ("DETR: the attention maps are its transformer encoder's self-attention over the ResNet's "
                        "{gh} x {gw} token grid (one block per encoder layer, heads averaged; click a patch to see "
                        "where it looked); conv activations from the ResNet. Where each object's query looked: the "
                        "Detect panel above.",
                        "DETR：注意力图是它的 Transformer 编码器在 ResNet 的 {gh} x {gw} 词元网格上的自注意力（每个"
                        "编码器层算一个块，各头平均；点击一个图像块看它关注了哪里）；卷积激活来自 ResNet。每个对象的查询"
                        "关注了哪里：见上方的检测面板。"),
    "tview.detr_cam": ("Grad-CAM for a DETR box: open *Photos: Pretrained on COCO* below, choose the object and "
                       "press *Grad-CAM for this object*.",
                       "DETR 某个框的 Grad-CAM：打开下方的“照片：在 COCO 上预训练”，选择该对象并点击“为该对象计算 "
                       "Grad-CAM”。"),
    "tview.relevance_task": ("Relevance explains a classifier's class: choose the task *classify* to see it.",
                             "相关性解释的是分类器的类别：选择 classify 分类任务即可查看。"),
    "task.unknown": ("task={task} is not allowed: expected one of {choices}", "task={task} 不允许：应为 {choices} 之一"),
}

