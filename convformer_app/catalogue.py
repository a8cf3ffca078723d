"""The app's texts, in English and Simplified Chinese: data only (key -> (English, 简体中文)); `i18n` is the
code that shows them. A new text: one entry here, both languages, the same `{placeholders}`; keys used as
component props (gr.I18n) have none."""

LANGS = ("en", "zh-CN")  # English first: the fallback

# key -> (English, 简体中文). Terms follow the README's glossary.
TEXT: dict[str, tuple[str, str]] = {
    # ---- the page ----
    "app.intro": (
        "# ConvFormer Lab\nPick where convolutions and attention meet (early, mid or late fusion, or a pure CNN / "
        "ViT baseline), run the model on an image, and look inside.",
        "# ConvFormer Lab\n选择卷积与注意力在哪里相遇（早期融合、中期融合、后期融合，或纯 CNN / 纯 ViT 基线），"
        "在一张图像上运行模型，看看它的内部。"),
    "tab.explore": ("Explore", "探索"),
    "tab.train": ("Train", "训练"),
    "tab.compare": ("Compare", "对比"),
    # ---- Explore: the image ----
    "image.file": ("Your image", "你的图像"),
    "image.capture_box": ("Webcam or paste from the clipboard", "摄像头或从剪贴板粘贴"),
    "image.resize": ("Resize the image", "调整图像尺寸"),
    "image.resize_info": (
        "keep: the short side to the model's input size, the ratio kept (the token grid follows) · squash: exactly "
        "the input size",
        "keep：短边缩放到模型的输入尺寸，保持宽高比（词元网格随之变化）· squash：精确缩放到输入尺寸"),
    "resize.keep": ("Keep the aspect", "保持宽高比"),
    "resize.squash": ("Squash to a square", "压缩成正方形"),
    "image.photo": ("{name} (photo)", "{name}（照片）"),
    "image.capture": ("Capture", "拍摄"),
    "image.preview": ("Preview", "预览"),
    "image.examples": ("Examples (click one; the photos are not shapes)", "示例（点击选择；照片不是形状）"),
    "image.cannot": ("This image cannot be used: {detail}", "无法使用这张图像：{detail}"),
    "image.first": ("Upload an image first (or pick an example).", "请先上传一张图像（或选择一个示例）。"),
    "image.no_example": ("example {index} does not exist: choose one from 0 to {last}",
                         "示例 {index} 不存在：请选择 0 到 {last} 之间的一个"),
    # ---- Explore: the controls ----
    "ctl.fusion": ("Fusion stage", "融合阶段"),
    "ctl.fusion_info": (
        "early: conv stem, then attention · mid: attention on conv features · late: a CNN and a ViT branch, "
        "merged · cnn / vit: baselines",
        "early 早期融合：卷积主干之后接注意力 · mid 中期融合：在卷积特征上做注意力 · late 后期融合：CNN 与 ViT "
        "两个分支合并 · cnn / vit：基线"),
    "fusion.early": ("early", "early 早期融合"),
    "fusion.mid": ("mid", "mid 中期融合"),
    "fusion.late": ("late", "late 后期融合"),
    "fusion.cnn": ("cnn", "cnn 纯 CNN"),
    "fusion.vit": ("vit", "vit 纯 ViT"),
    "ctl.preset": ("Preset", "预设"),
    "ctl.preset_info": ("the starting point for the hyperparameters", "超参数的起点"),
    "ctl.weights": ("Weights", "权重"),
    "weights.bundled": ("Bundled checkpoint (trained)", "内置检查点"),
    "weights.random": ("Random initialisation", "随机初始化"),
    "weights.upload": ("My checkpoint (.safetensors)", "我的检查点（.safetensors）"),
    "weights.trained": ("Trained in this session (Train tab)", "本次会话训练的模型"),
    "weights.imagenet": ("Pretrained on ImageNet", "ImageNet 预训练"),
    "ctl.checkpoint": ("Checkpoint (.safetensors only)", "检查点（仅限 .safetensors）"),
    "ctl.hparams": ("Hyperparameters", "超参数"),
    "ctl.img_size": ("Image size (px)", "图像尺寸（像素）"),
    "ctl.patch_size": ("Patch size (vit, late)", "图像块大小（vit、late）"),
    "ctl.embed_dim": ("Embed dim", "嵌入维度"),
    "ctl.depth": ("Depth (blocks)", "深度（Transformer 块数）"),
    "ctl.num_heads": ("Heads", "注意力头数"),
    "ctl.mlp_ratio": ("MLP ratio", "MLP 扩展比"),
    "ctl.conv_widths": ("Conv widths (one per stage)", "卷积通道数（每个阶段一个）"),
    "ctl.conv_depths": ("Conv depths (blocks per stage)", "卷积深度（每个阶段的块数）"),
    "ctl.merge": ("Late-fusion merge", "后期融合的合并方式"),
    "ctl.top_k": ("Top-k predictions to show", "显示前 k 个预测"),
    "ctl.run": ("Run", "运行"),
    "ctl.link": ("Copy link to this configuration", "复制此配置的链接"),
    "ctl.link_box": ("Link", "链接"),
    "ctl.prediction": ("Prediction", "预测"),
    "config.fixed_trained": (
        "✓ The model trained in this session (Train tab) fixes the architecture (its hyperparameters are shown "
        "above). Choose *Random initialisation* to try your own.",
        "✓ 本次会话中训练的模型（训练标签页）决定了架构（上方显示其超参数）。选择*随机初始化*即可尝试你自己的超参数。"),
    "config.fixed_bundled": (
        "✓ The bundled **{fusion}** checkpoint fixes the architecture (its hyperparameters are shown above). "
        "Choose *Random initialisation* to try your own.",
        "✓ 内置的 **{fusion}** 检查点决定了架构（上方显示其超参数）。选择*随机初始化*即可尝试你自己的超参数。"),
    "fixed.bundled": (
        "The bundled checkpoint is {preset}, which fixes the architecture: the {what} {chosen} runs with random "
        "initialisation. Choose the weights again to go back to the checkpoint.",
        "内置检查点是 {preset}，它决定了架构：{what} {chosen} 将以随机初始化运行。重新选择权重即可回到该检查点。"),
    "fixed.trained": (
        "The trained checkpoint is {preset}, which fixes the architecture: the {what} {chosen} runs with random "
        "initialisation. Choose the weights again to go back to the checkpoint.",
        "本次会话训练的检查点是 {preset}，它决定了架构：{what} {chosen} 将以随机初始化运行。"
        "重新选择权重即可回到该检查点。"),
    "fixed.fusion": ("fusion stage", "融合阶段"),
    "fixed.preset": ("preset", "预设"),
    "config.impossible": ("⚠ **This combination is impossible:** {detail}", "⚠ **这个组合不可行**：{detail}"),
    "config.ok": ("✓ {fusion} fusion, {params} parameters{grid}.", "✓ {fusion} 融合，{params} 个参数{grid}。"),
    "config.grid": (", {w} x {h} = {tokens} tokens{cls}", "，{w} x {h} = {tokens} 个词元{cls}"),
    "config.cls": (" + a class token", " + 一个类别词元"),
    "config.imagenet": (
        "✓ The ImageNet reference of **{fusion}** fusion has its own architecture; the preset and hyperparameters "
        "above do not apply to it.",
        "✓ **{fusion}** 融合的 ImageNet 参考模型有自己的架构；上面的预设和超参数对它不适用。"),
    "link.adjusted": ("The link's configuration was adjusted: {notes}.", "链接中的配置已调整：{notes}。"),
    "link.not_fusion": ("fusion={value} is not a fusion stage", "fusion={value} 不是融合阶段"),
    "link.not_usable": ("{key}={value} is not usable", "{key}={value} 不可用"),
    "link.clamped": ("{key}={value} became {clamped} (the control goes from {lo} to {hi} in steps of {step})",
                     "{key}={value} 已改为 {clamped}（该控件范围为 {lo} 到 {hi}，步长 {step}）"),
    # ---- the weights notice ----
    "notice.random": (
        "**Random weights: predictions are meaningless.**{why} The maps still show how information flows "
        "through this architecture, but not what it has learned.",
        "**随机权重：预测没有意义**。{why}这些图仍然显示信息如何流经这个架构，但不显示它学到了什么。"),
    "notice.chose_random": ("You chose random initialisation.", "你选择了随机初始化。"),
    "notice.none_bundled": (
        "No trained checkpoint is bundled for **{fusion}** fusion yet, so it runs with random initialisation.",
        "**{fusion}** 融合还没有内置的已训练检查点，因此使用随机初始化运行。"),
    "notice.weights": ("**Weights: {who}** `{name}`, trained on {dataset}", "**权重：{who}** `{name}`，训练于{dataset}"),
    "notice.who_bundled": ("bundled checkpoint", "内置检查点"),
    "notice.who_trained": ("the model you trained in this session", "你在本次会话中训练的模型"),
    "notice.who_upload": ("your checkpoint", "你的检查点"),
    "notice.unnamed": ("an unnamed dataset", "一个未命名的数据集"),
    "notice.shapes": ("the built-in **Shapes** dataset", "内置的 **Shapes** 数据集"),
    "notice.classes": (" ({n} classes: {names})", "（{n} 个类别：{names}）"),
    "notice.more": (", ... ({n} in all)", "……（共 {n} 个）"),
    "notice.score_test": ("test accuracy {acc}", "测试准确率 {acc}"),
    "notice.score_val": ("val accuracy {acc}", "验证准确率 {acc}"),
    "notice.scores": (", {scores}.", "，{scores}。"),
    "list.sep": (", ", "，"),
    "notice.end": (".", "。"),
    "notice.only_these": (" It only knows these classes: any other image is still called one of them.",
                          "它只认识这些类别：任何其他图像仍会被判为其中之一。"),
    "notice.nothing_trained": (
        "Nothing has been trained in this browser session yet: train a model in the Train tab first, or choose "
        "other weights.",
        "本次浏览器会话中还没有训练过模型：请先在训练标签页训练一个模型，或选择其他权重。"),
    "notice.upload_first": ("Upload a .safetensors checkpoint first, or choose other weights.",
                            "请先上传一个 .safetensors 检查点，或选择其他权重。"),
    "notice.only_safetensors": (
        "Only .safetensors checkpoints are accepted (pickled .pt / .pth / .bin files can run code when loaded, "
        "so they are refused).",
        "只接受 .safetensors 检查点（pickle 格式的 .pt / .pth / .bin 文件在加载时可能执行代码，因此被拒绝）。"),
    "notice.cannot_bundled": ("The bundled checkpoint cannot be used: {detail}", "无法使用内置检查点：{detail}"),
    "notice.cannot_trained": ("The trained checkpoint cannot be used: {detail}", "无法使用训练得到的检查点：{detail}"),
    "notice.cannot_upload": ("This checkpoint cannot be used: {detail}", "无法使用这个检查点：{detail}"),
    "notice.cannot_kind": ("The {kind} checkpoint cannot be used: {detail}", "无法使用 {kind} 检查点：{detail}"),
    "notice.saved_with": ("{detail}. It was saved with {saved}: set these controls to load it.",
                          "{detail}。它保存时的设置为 {saved}：请把控件设为这些值后再加载。"),
    # ---- results ----
    "stats.line": (
        "**{params}** parameters ({mb} MB in float32) · **{flops}** per image · **{ms} ms** per forward pass on "
        "**{device}** (batch 1, {w} x {h} px; median of {runs} runs after a warm-up, half of them within "
        "{low}-{high} ms)",
        "**{params}** 个参数（float32 下 {mb} MB）· 每张图像 **{flops}** · 在 **{device}** 上每次前向传播 "
        "**{ms} ms**（批大小 1，{w} x {h} 像素；预热后 {runs} 次计时的中位数，其中一半在 {low}-{high} ms 之间）"),
    "stats.busy": (" · ⚠ **the machine is busy** (load {load} per core): this time includes waiting for other work, "
                   "not only the model", " · ⚠ **机器正忙**（每个核心的负载为 {load}）：这个时间包含等待其他任务的时间，"
                   "不只是模型本身"),
    "maps.late": ("Attention maps come from the **ViT branch**; conv activations and Grad-CAM from the **CNN branch**.",
                  "注意力图来自 **ViT 分支**；卷积激活和类激活图 (Grad-CAM) 来自 **CNN 分支**。"),
    "maps.cnn": ("The CNN baseline has no attention, so only conv activations and Grad-CAM are shown.",
                 "CNN 基线没有注意力，因此只显示卷积激活和类激活图 (Grad-CAM)。"),
    "maps.vit": ("The ViT baseline has no convolutions, so there are no conv activations or Grad-CAM.",
                 "ViT 基线没有卷积，因此没有卷积激活，也没有类激活图 (Grad-CAM)。"),
    # the Shapes classes' names (views.class_name): English stays beside the Chinese, it is the API's value
    "class.circle": ("circle", "circle 圆形"),
    "class.square": ("square", "square 正方形"),
    "class.triangle": ("triangle", "triangle 三角形"),
    "class.star": ("star", "star 星形"),
    "class.cross": ("cross", "cross 十字"),
    "class.ring": ("ring", "ring 圆环"),
    "class.heart": ("heart", "heart 心形"),
    "class.arrow": ("arrow", "arrow 箭头"),
    "class.hexagon": ("hexagon", "hexagon 六边形"),
    "class.crescent": ("crescent", "crescent 新月"),
    "class.background": ("background", "background 背景"),
    "refs.unavailable": ("The ImageNet references are not on this machine and cannot be downloaded now (no "
                         "connection to Hugging Face): the Shapes models above work without them.",
                         "本机没有 ImageNet 参考模型，现在也无法下载（连不上 Hugging Face）：上面的 Shapes 模型不需要它们。"),
    "absent.attention": ("No attention map: this model has no attention (a pure CNN)",
                         "没有注意力图：这个模型没有注意力（纯 CNN）"),
    "absent.conv": ("No conv activations: this model has no convolutions (a pure ViT)",
                    "没有卷积激活：这个模型没有卷积（纯 ViT）"),
    "absent.cam": ("No Grad-CAM: it explains a conv layer, and this model has none (a pure ViT)",
                   "没有类激活图 (Grad-CAM)：它解释的是卷积层，而这个模型没有卷积层（纯 ViT）"),
    "maps.hybrid": ("In {fusion} fusion the transformer attends over the conv trunk's feature grid.",
                    "在 {fusion} 融合中，Transformer 在卷积主干的特征网格上做注意力。"),
    "maps.grid": (" Token grid: {h} x {w} (h x w).", "词元网格：{h} x {w}（高 x 宽）。"),
    "maps.grid_cls": (" Token grid: {h} x {w} (h x w) plus a class token.", "词元网格：{h} x {w}（高 x 宽），外加一个类别词元。"),
    "maps.cam": (" Grad-CAM explains **{name}** at `{layer}`.", "类激活图 (Grad-CAM) 在 `{layer}` 处解释 **{name}**。"),
    "tab.rollout": ("Attention rollout", "注意力展开"),
    "rollout.explain": (
        "**Attention rollout** (Abnar & Zuidema 2020) multiplies the attention of every block, with the residual "
        "path added, to estimate how much each patch feeds the prediction. *Head fusion* combines the heads of "
        "a block; *discard ratio* drops the weakest links to sharpen the map.",
        "**注意力展开**（Abnar & Zuidema 2020）把每个块的注意力（加上残差通路）相乘，估计每个图像块对预测的贡献。"
        "*注意力头融合*合并一个块中的各个头；*丢弃比例*去掉最弱的连接，使图更清晰。"),
    "rollout.image": ("Rollout over the image", "叠加在图像上的注意力展开"),
    "rollout.head_fusion": ("Head fusion", "注意力头融合"),
    "rollout.discard": ("Discard ratio", "丢弃比例"),
    "head_fusion.mean": ("mean", "平均"),
    "head_fusion.max": ("max", "最大"),
    "head_fusion.min": ("min", "最小"),
    "tab.per_block": ("Attention per block and head", "逐块、逐头的注意力"),
    "per_block.explain": (
        "**Click a patch** on the left image to see where it attends in the chosen block (red square). Below: "
        "the attention each patch *receives* in every block (left to right, top to bottom), and in each head of "
        "the chosen block.",
        "在左侧图像上**点击一个图像块**，查看它在所选块中关注哪里（红色方框）。下方：每个块中每个图像块*接收*到的"
        "注意力（从左到右、从上到下），以及所选块中每个头的注意力。"),
    "per_block.block": ("Block", "块"),
    "per_block.head": ("Head", "注意力头"),
    "per_block.mean": ("mean of heads", "各头平均"),
    "per_block.head_n": ("head {i}", "第 {i} 个头"),
    "per_block.patch": ("Click a patch", "点击一个图像块"),
    "per_block.query": ("Where it attends", "它关注哪里"),
    "per_block.blocks": ("Every block (heads averaged)", "每个块（各头平均）"),
    "per_block.heads": ("Every head of the chosen block", "所选块的每个头"),
    "tab.channels": ("Conv activations", "卷积激活"),
    "channels.explain": (
        "The 16 most active channels of a conv stage (strongest first); bright = strong response. Early stages "
        "respond to edges and colours, later ones to larger parts.",
        "一个卷积阶段中最活跃的 16 个通道（最强的在前）；越亮表示响应越强。早期阶段对边缘和颜色响应，"
        "后期阶段对更大的部件响应。"),
    "channels.stage": ("Conv stage", "卷积阶段"),
    "channels.image": ("Most active channels", "最活跃的通道"),
    "tab.cam": ("Grad-CAM", "类激活图 (Grad-CAM)"),
    "cam.explain": (
        "**Grad-CAM** (Selvaraju et al. 2017) weights the channels of a conv layer (chosen below; at first the "
        "layer that lands on the object most often, by a measured rule) by how much they raise a class's score: bright regions are evidence *for* that class. The line "
        "under the choice says where that layer sits, which is why the maps of different layers differ.",
        "**类激活图 (Grad-CAM)**（Selvaraju 等，2017）按一个卷积层（在下方选择；起初是按实测规则最常落在物体上的那一层）的各通道对某个类别"
        "得分的提升程度加权：亮的区域是支持该类别的证据。选择框下的一行说明该层所在的位置，这正是不同层的图各不相同的原因。"),
    "cam.note": ("Grad-CAM at `{layer}`, {where}.", "类激活图 (Grad-CAM) 解释的是 `{layer}`，{where}。"),
    "cam.after": (
        "**after** the transformer: every position has already mixed in the whole image through global attention, "
        "so evidence can sit on the background around the object",
        "它在 Transformer **之后**：每个位置都已通过全局注意力混入了整张图像的信息，因此证据可能落在物体周围的背景上"),
    "cam.before": (
        "**before** the transformer: each position has seen only its own neighbourhood, so the map shows which "
        "local patterns count as evidence",
        "它在 Transformer **之前**：每个位置只看到了自己的邻域，因此这张图显示哪些局部图案算作证据"),
    "cam.cnn_branch": (
        "in the **CNN branch**: the ViT branch's evidence (merged after both) is not part of this map",
        "它在 **CNN 分支**中：ViT 分支的证据（在两个分支之后才合并）不在这张图里"),
    "cam.no_attention": ("in a network without attention: each position has seen only its receptive field",
                         "它在没有注意力的网络中：每个位置只看到了自己的感受野"),
    "cam.others": (" Other layers: {layers}.", " 其他层：{layers}。"),
    "cam.blank": (
        " **The map is blank:** no position of `{layer}` raises the score of **{cls}** (its channels' evidence for "
        "that class is negative everywhere, which Grad-CAM's ReLU removes): the model finds nothing *for* it here.",
        " **这张图是空白的**：`{layer}` 的任何位置都没有提高 **{cls}** 的得分（其各通道对该类别的证据处处为负，"
        "被类激活图 (Grad-CAM) 的 ReLU 去掉了）：模型在这里找不到支持它的证据。"),
    "cam.layer_line": ("- {mark} `{layer}` ({grid}): {why}", "- {mark} `{layer}`（{grid}）：{why}"),
    "cam.why_first": ("the finest grid: edges and colour, of the object and of the strokes around it alike",
                      "最精细的网格：边缘和颜色，物体的和周围笔画的都一样"),
    "cam.why_feeds": (
        "its evidence reaches the class only through global attention, which may gather it from the background",
        "它的证据只能经过全局注意力到达类别，而注意力可能从背景上收集证据"),
    "cam.why_after": ("after the transformer every cell has mixed in the whole image: the map can sit on the "
                      "background", "在 Transformer 之后，每个格子都混入了整张图像：这张图可能落在背景上"),
    "cam.why_middle": ("local parts (corners, arcs) that the strokes around the object can share",
                       "局部部件（角、弧），物体周围的笔画也可能有"),
    "cam.why_last": ("the most class-specific, but on the coarsest grid: the peak can straddle the object's border",
                     "最针对类别，但网格最粗：峰值可能跨在物体的边界上"),
    "cam.target": ("Explain class", "解释的类别"),
    "cam.predicted": ("predicted class", "预测的类别"),
    "cam.image": ("Grad-CAM", "类激活图 (Grad-CAM)"),
    "cam.layer": ("Conv layer to explain", "要解释的卷积层"),
    "tab.code": ("Code", "代码"),
    "code.explain": (
        "The model set above as **one PyTorch file**: only `torch` and the standard library, the configuration as "
        "constants, every step with its shapes for this configuration. Its `state_dict` is the library model's, so "
        "the weights load strictly and give the same logits. Run it (`python convformer_mid.py [H W]`) to print "
        "the shape after every step.",
        "上面设置的模型，写成**一个 PyTorch 文件**：只用 `torch` 和标准库，配置写成常量，每一步都标注了此配置下的"
        "张量形状。它的 `state_dict` 与库中的模型相同，因此权重可以严格加载并给出相同的 logits。运行它"
        "（`python convformer_mid.py [H W]`）即可打印每一步之后的张量形状。"),
    "code.write": ("Write the code for this configuration", "为此配置生成代码"),
    "code.file": ("The file, to download", "下载该文件"),
    "code.imagenet": ("The ImageNet references are timm models, not ConvFormers: choose other weights to see the "
                      "code.", "ImageNet 参考模型是 timm 模型，不是 ConvFormer：请选择其他权重来查看代码。"),
    "tab.shapes": ("Shapes", "张量形状"),
    "shapes.explain": (
        "The pipeline of the chosen fusion stage with the real tensor shapes, then every step from the input "
        "(B, C, H, W) to the logits (B, num_classes).",
        "所选融合阶段的流程图及真实的张量形状，然后是从输入 (B, C, H, W) 到 logits (B, num_classes) 的每一步。"),
    "table.step": ("step", "步骤"),
    "table.input": ("input", "输入"),
    "table.output": ("output", "输出"),
    "table.params": ("params", "参数量"),
    "table.flops": ("FLOPs", "浮点运算量 (FLOPs)"),
    "table.what": ("what", "说明"),
    "table.total": ("total", "合计"),
    "table.repeat": ("{n} x {note}", "{n} 个 {note}"),
    "class.n": ("class {i}", "类别 {i}"),
    "run.first": ("Run the model first.", "请先运行模型。"),
    "run.oom": ("The model ran out of memory on this device: choose a smaller configuration.",
                "模型在这台设备上内存不足：请选择更小的配置。"),
    "run.failed": ("Something went wrong ({kind}): {detail}. The server is fine; try another image or configuration.",
                   "出错了（{kind}）：{detail}。服务器运行正常；请换一张图像或换一个配置。"),
    "run.attention_budget": (
        "depth={depth} is not allowed here: {depth} blocks x {heads} heads x {n} x {n} tokens of attention maps "
        "({gb} GB) is more than this app shows ({limit} GB); use fewer tokens (a larger stride or a smaller "
        "image), blocks or heads",
        "depth={depth} 在这里不允许：{depth} 个块 x {heads} 个头 x {n} x {n} 个词元的注意力图（{gb} GB）超过了本应用"
        "能显示的上限（{limit} GB）；请减少词元（更大的步幅或更小的图像）、块或头的数量"),
    # ---- the pipeline diagram ----
    "diagram.conv": ("conv stage", "卷积阶段"),
    "diagram.conv_n": ("conv stage {n}", "卷积阶段 {n}"),
    "diagram.proj": ("1x1 projection", "1x1 投影"),
    "diagram.patch": ("patchify", "切分图像块"),
    "diagram.tokens": ("grid → tokens", "网格 → 词元"),
    "diagram.blocks": ("transformer block", "Transformer 块"),
    "diagram.blocks_n": ("transformer blocks ×{n}", "Transformer 块 ×{n}"),
    "diagram.norm": ("LayerNorm", "LayerNorm"),
    "diagram.grid": ("tokens → grid", "词元 → 网格"),
    "diagram.refine": ("3x3 refine conv", "3x3 细化卷积"),
    "diagram.pool": ("pool", "池化"),
    "diagram.merge": ("merge", "合并"),
    "diagram.head": ("classifier", "分类头"),
    "diagram.input": ("input image", "输入图像"),
    "diagram.title": ("{fusion} fusion", "{fusion} 融合"),
    # the library's shape-table notes (convformer.inspection.NOTES), as the "what" column shows them
    "note.conv": ("conv stage, stride 2", "卷积阶段，步幅 2"),
    "note.proj": ("1x1 conv to embed_dim", "1x1 卷积到 embed_dim"),
    "note.patch": ("patchify (conv k=s=patch)", "切分图像块（卷积 k=s=patch）"),
    "note.tokens": ("grid -> tokens (+cls, +pos)", "网格 -> 词元（+cls，+位置编码）"),
    "note.tokens_pos": ("grid -> tokens (+pos)", "网格 -> 词元（+位置编码）"),
    "note.blocks": ("transformer block (attn + MLP)", "Transformer 块（注意力 + MLP）"),
    "note.grid": ("tokens -> grid", "词元 -> 网格"),
    "note.refine": ("3x3 residual conv on the token map", "词元图上的 3x3 残差卷积"),
    "note.pool": ("pool to a vector", "池化为一个向量"),
    "note.merge": ("branch merge ({mode})", "分支合并（{mode}）"),
    "note.head": ("classifier", "分类头"),
    "note.input": ("image batch", "图像批次"),
    # ---- Train ----
    "train.explain": (
        "Train a model from random weights, on the built-in shapes or your own images: a fusion stage with its "
        "measured one-minute recipe (late passes 90% within a minute on 2 CPU cores), or the model set in "
        "**Explore**. Watch its validation accuracy against time beside every stage's typical curve. When it is "
        "done it becomes this page's model in Explore (weights: *Trained in this session*), and you can download "
        "its checkpoint. Nobody else sees it.",
        "从随机权重开始训练一个模型，数据可以是内置的形状数据集，也可以是你自己的图像：某个融合阶段及其实测的一分钟配方"
        "（在 2 个 CPU 核心上，late 在一分钟内超过 90%），或在**探索**中设置的模型。训练时可以看到验证准确率随时间的变化，"
        "以及各阶段的典型曲线。训练完成后，它会成为本页面在探索中的模型（权重：*本次会话训练的模型*），你还可以下载它的"
        "检查点。其他人看不到它。"),
    "train.dataset": ("Dataset", "数据集"),
    "dataset.shapes": ("Built-in shapes (10 classes, generated)", "内置形状数据集（10 个类别，程序生成）"),
    "dataset.zip": ("My zip of an image folder", "我的图像文件夹 zip"),
    "train.zip": ("Zip of an image folder: one sub-folder per class, images inside",
                  "图像文件夹的 zip：每个类别一个子文件夹，图像放在里面"),
    "train.images": ("Training images (shapes)", "训练图像数（形状数据集）"),
    "train.images_info": ("plus 20% for validation", "另加 20% 用于验证"),
    "train.img_size": ("Image size (px)", "图像尺寸（像素）"),
    "train.img_size_info": ("replaces Explore's image size", "替代探索中的图像尺寸"),
    "train.epochs": ("Epochs", "训练轮数 (epoch)"),
    "train.batch_size": ("Batch size", "批大小"),
    "train.lr": ("Learning rate (peak; warm-up, then cosine)", "学习率（峰值；先预热，再余弦衰减）"),
    "train.limits": (
        "Limits on this server: up to **{epochs}** epochs, **{images}** training images, **{px}** px, "
        "**{minutes}** min per run, **{jobs}** runs at once for everyone.",
        "本服务器的限制：最多 **{epochs}** 轮、**{images}** 张训练图像、**{px}** 像素、每次运行 **{minutes}** 分钟，"
        "所有人同时最多 **{jobs}** 个运行。"),
    "train.train": ("Train", "训练"),
    "train.cancel": ("Cancel", "取消"),
    "train.press": ("Press **Train** to start.", "按**训练**开始。"),
    "train.loss_plot": ("Loss", "损失"),
    "train.acc_plot": ("Validation accuracy (%)", "验证准确率（%）"),
    "train.file": ("Trained checkpoint (.safetensors): download", "训练得到的检查点（.safetensors）：下载"),
    "train.series_train": ("train (per step, smoothed)", "训练（逐步，已平滑）"),
    "train.series_val": ("validation", "验证"),
    "train.axis_epoch": ("epoch", "轮次"),
    "train.axis_loss": ("loss", "损失"),
    "train.axis_acc": ("accuracy", "准确率"),
    "train.status": ("**Training** on {dataset}: epoch {epoch}/{epochs} · step {step}/{total} ({pct}%) · loss {loss}",
                     "**正在训练**，数据：{dataset}：第 {epoch}/{epochs} 轮 · 第 {step}/{total} 步（{pct}%）· 损失 {loss}"),
    "train.status_val": (" · last validation accuracy {acc}", " · 最近一次验证准确率 {acc}"),
    "train.status_measuring": (" · {speed} images/s · measuring the speed…", " · 每秒 {speed} 张图像 · 正在测量速度……"),
    "train.status_end": (" · {speed} images/s · about {left} s left (about {whole} s in all at this speed",
                         " · 每秒 {speed} 张图像 · 约剩 {left} 秒（按当前速度全程约 {whole} 秒"),
    "train.status_vs": ("; estimated {before} s before the start", "；开始前估计为 {before} 秒"),
    "train.status_close": (")", "）"),
    "train.status_limit": (
        " · ⚠ **At this speed the run passes this server's {minutes}-minute limit**: it will stop there and keep the "
        "best model so far",
        " · ⚠ **按当前速度，本次训练会超过本服务器 {minutes} 分钟的时间上限**：到时会停止，并保留目前最好的模型"),
    "train.stopped": ("■ **Cancelled; the best model so far is kept.**", "■ **已取消；保留目前最好的模型。**"),
    "train.stopped_time": ("■ **Stopped at this server's time limit ({minutes} min); the best model so far is kept.**",
                           "■ **已在本服务器的时间上限（{minutes} 分钟）处停止；保留目前最好的模型。**"),
    "train.stopped_target": ("✓ **Stopped early: the target validation accuracy was reached.**",
                             "✓ **已提前停止：验证准确率达到了目标。**"),
    "train.phases": (
        "From pressing Train to this line: {total} s (data {data} s · child process start {start} s · model "
        "{build} s · training {train} s · final test {test} s · checkpoint {save} s · the rest {end} s).",
        "从按下训练到这一行：{total} 秒（数据 {data} 秒 · 子进程启动 {start} 秒 · 构建模型 {build} 秒 · 训练 "
        "{train} 秒 · 最终测试 {test} 秒 · 检查点 {save} 秒 · 其余 {end} 秒）。"),
    "train.done": ("✓ **Done.**", "✓ **完成。**"),
    "train.summary": (" Trained for {epochs} epoch(s) in {seconds} s on {dataset}. Best validation accuracy "
                      "**{acc}** (epoch {best})",
                      "在{dataset}上训练了 {epochs} 轮，用时 {seconds} 秒。最佳验证准确率 **{acc}**（第 {best} 轮）"),
    "train.test": (", accuracy on {n} fresh test images **{acc}**", "，在 {n} 张全新测试图像上的准确率 **{acc}**"),
    "train.now_yours": (". It is now this session's model in **Explore** (weights: *Trained in this session*); "
                        "download its checkpoint below.",
                        "。它现在是本次会话在**探索**中的模型（权重：*本次会话训练的模型*）；可在下方下载它的检查点。"),
    "train.loading": ("**Loading {dataset}** and building the model…", "**正在加载{dataset}**并构建模型……"),
    "train.builtin": ("the built-in shapes", "内置形状数据集"),
    "train.stopping": ("**Stopping** after the current step; the best model so far is kept…",
                       "当前这一步结束后**停止**；保留目前最好的模型……"),
    "train.nothing": ("Nothing is training in this page.", "本页面没有正在进行的训练。"),
    "train.still_stopping": ("■ Still stopping; try again in a moment.", "■ 仍在停止中；请稍后再试。"),
    "train.cancelled_early": ("Cancelled before training started.", "在训练开始前已取消。"),
    "train.bad_dataset": ("This dataset cannot be used: {detail}", "无法使用这个数据集：{detail}"),
    "train.failed": ("Training failed ({kind}): {detail}", "训练失败（{kind}）：{detail}"),
    "train.zip_first": ("Upload a .zip of an image folder first (one sub-folder per class), or choose the built-in "
                        "shapes.", "请先上传图像文件夹的 .zip（每个类别一个子文件夹），或选择内置形状数据集。"),
    "train.zip_only": ("The dataset must be a .zip file: one sub-folder per class, images inside.",
                       "数据集必须是 .zip 文件：每个类别一个子文件夹，图像放在里面。"),
    "train.stopped_before": ("Stopped before training: {detail}.", "训练开始前已停止：{detail}。"),
    "train.busy_page": ("A training run is already going in this page: wait for it or cancel it.",
                        "本页面已有一个训练在运行：请等待它结束或取消它。"),
    "train.busy_server": ("{busy} training run(s) are going on this server already (the limit is {limit}); try "
                          "again in a minute.", "本服务器上已有 {busy} 个训练在运行（上限为 {limit}）；请一分钟后再试。"),
    "train.cannot_train": ("⚠ **The Explore configuration cannot be trained at {px} px:** {detail}",
                           "⚠ **探索中的配置无法在 {px} 像素下训练**：{detail}"),
    "train.model": ("**Model:** {fusion} fusion from the Explore tab ({arch}), about {params} parameters at {px} "
                    "px{tokens}; random initial weights.",
                    "**模型**：来自探索标签页的 {fusion} 融合（{arch}），在 {px} 像素下约 {params} 个参数{tokens}；"
                    "随机初始权重。"),
    "train.arch_tokens": ("embed {embed}, depth {depth}", "嵌入维度 {embed}，深度 {depth}"),
    "train.arch_conv": ("conv widths {widths}", "卷积通道数 {widths}"),
    "train.arch_sep": (", ", "，"),
    "train.tokens": (", {n} tokens", "，{n} 个词元"),
    "train.progress": ("training", "训练中"),
    "train.arch": ("Model", "模型"),
    "train.arch_info": ("a fusion stage with its measured one-minute recipe (sets the sliders below), or the "
                        "architecture set in Explore", "某个融合阶段及其实测的一分钟配方（会设置下方滑块），或探索页中设置的架构"),
    "train.arch_explore": ("Explore's architecture", "探索页中的架构"),
    "train.recipe_model": ("**Model:** {fusion} fusion with its one-minute recipe ({arch}), {params} parameters at "
                           "{px} px{tokens}; random initial weights.",
                           "**模型**：{fusion} 融合及其一分钟配方（{arch}），{px} 像素时 {params} 个参数{tokens}；随机初始权重。"),
    "train.muon": (" The transformer's weight matrices train with Muon, the rest with AdamW.",
                   "Transformer 的权重矩阵用 Muon 优化器训练，其余参数用 AdamW。"),
    "train.sincos": (" Positional embeddings: a fixed 2-D sin-cos table.", "位置编码：固定的二维正余弦表。"),
    "train.estimate": (" **Estimate:** about {seconds} s on 2 CPU cores", "**预计**：在 2 个 CPU 核心上约 {seconds} 秒"),
    "train.estimate_render": (" ({seconds} s of it rendering images not cached yet)",
                              "（其中 {seconds} 秒用于渲染尚未缓存的图像）"),
    "train.estimate_typical": (". Measured with the {fusion} recipe: {acc} validation accuracy after {seconds} s.",
                               "。{fusion} 配方的实测结果：{seconds} 秒后验证准确率 {acc}。"),
    "train.estimate_gpu": (" This server trains on its GPU: expect much less.", " 本服务器在 GPU 上训练：用时会短得多。"),
    "train.axis_seconds": ("seconds", "秒"),
    "train.typical": ("typical: {fusion}", "典型：{fusion}"),
    "train.verdict": ("**Verdict:** {fusion} fusion, {acc} in {seconds} s", "**结论**：{fusion} 融合，{seconds} 秒达到 {acc}"),
    "train.verdict_above": (", above this stage's typical {typical} at that time",
                            "，高于该阶段在同一时间的典型值 {typical}"),
    "train.verdict_below": (", below this stage's typical {typical} at that time",
                            "，低于该阶段在同一时间的典型值 {typical}"),
    "train.verdict_typical": (", like this stage's typical {typical} at that time",
                              "，与该阶段在同一时间的典型值 {typical} 相当"),
    "train.verdict_ranking": (". With their recipes, 90% took: {ranking}.", "。按各自配方达到 90% 用时：{ranking}。"),
    "train.verdict_rank": ("{fusion} {seconds} s", "{fusion} {seconds} 秒"),
    "train.verdict_never": ("{fusion} not within its minute (best {best})", "{fusion} 一分钟内未达到（最高 {best}）"),
    # ---- Compare ----
    "compare.explain": (
        "Early, mid and late fusion and the two baselines **side by side**: the same image through each, then "
        "every model scored on a fresh test split of the built-in shapes. Each runs its bundled checkpoint; a "
        "stage with none runs **random weights** (its tiny preset at 64 px), marked as such.",
        "早期融合、中期融合、后期融合以及两个基线**并排对比**：同一张图像分别通过每个模型，然后在内置形状数据集的"
        "全新测试集上为每个模型打分。每个模型都运行其内置检查点；没有内置检查点的阶段使用**随机权重**"
        "（其 tiny 预设，64 像素），并会标明。"),
    "compare.image": ("Image", "图像"),
    "compare.run": ("Compare the five models on this image", "在这张图像上对比五个模型"),
    "compare.top": ("Top predictions", "排名靠前的预测"),
    "compare.rollout": ("Attention rollout", "注意力展开"),
    "compare.cam": ("Grad-CAM (no attention)", "类激活图 (Grad-CAM)（无注意力）"),
    "compare.channels": ("Top conv channels", "最活跃的卷积通道"),
    "compare.no_conv": ("No conv layers", "没有卷积层"),
    "compare.bundled": ("bundled checkpoint", "内置检查点"),
    "compare.random_title": ("⚠ **random weights**: nothing is bundled, predictions are meaningless",
                             "⚠ **随机权重**：没有内置检查点，预测没有意义"),
    "compare.random_row": ("RANDOM (nothing bundled)", "随机（无内置检查点）"),
    "compare.split": ("### On the built-in test split", "### 在内置测试集上"),
    "compare.test_images": ("Test images", "测试图像数"),
    "compare.score": ("Score every model", "为每个模型打分"),
    "compare.test_acc": ("Test accuracy (%)", "测试准确率（%）"),
    "compare.first": ("Upload an image first (or pick an example in Explore and come back).",
                      "请先上传一张图像（或在探索中选择一个示例后再回来）。"),
    "compare.bad_n": ("test images={n} is not allowed: expected a whole number from 10 to 2000",
                      "测试图像数={n} 不允许：应为 10 到 2000 之间的整数"),
    "compare.scoring": ("scoring {fusion} on {n} test images", "正在用 {n} 张测试图像为 {fusion} 打分"),
    "compare.note": (
        "{n} fresh test images of the built-in shapes (seed {seed}, {px} px, never seen in training); latency: "
        "batch 1, median of timed runs on **{device}**. Rows marked RANDOM have no bundled checkpoint: their "
        "accuracy is chance (about 10%), shown only for the cost columns.",
        "内置形状数据集的 {n} 张全新测试图像（种子 {seed}，{px} 像素，训练中从未见过）；延迟：批大小 1，在 **{device}** "
        "上多次计时的中位数。标为“随机”的行没有内置检查点：其准确率只是随机水平（约 10%），只用于比较开销列。"),
    "compare.col_model": ("model", "模型"),
    "compare.col_weights": ("weights", "权重"),
    "compare.col_acc": ("accuracy (%)", "准确率（%）"),
    "compare.col_params": ("params (M)", "参数量（百万）"),
    "compare.col_flops": ("MFLOPs", "MFLOPs"),
    "compare.col_latency": ("latency (ms)", "延迟（毫秒）"),
    "compare.busy": (" ⚠ marks a latency measured while the machine was busy (other work ran meanwhile): it "
                     "says more about that work than about the model.",
                     " ⚠ 表示测量延迟时机器正忙（同时有其他任务在运行）：它更多反映的是那些任务，而不是模型。"),
    "compare.axis_from": ("accuracy (%), axis from {low}", "准确率（%），坐标轴从 {low} 开始"),
    # how the image was fitted to the model's input (convformer.data: Fitted.message)
    "stats.input": (" · input: {detail}", " · 输入：{detail}"),
    "fit.resized": ("{size} -> {input} px, {how}; {grid}", "{size} -> {input} 像素，{how}；{grid}"),
    "fit.as_is": ("{size} px, used as it is; {grid}", "{size} 像素，按原样使用；{grid}"),
    "fit.kept": ("aspect kept", "保持宽高比"),
    "fit.squashed": ("squashed to the model's input size", "压缩到模型的输入尺寸"),
    "fit.resize": ("resized", "已缩放"),
    "fit.capped": ("aspect {ratio}:1 cut to the limit, {limit}:1", "宽高比 {ratio}:1 截到上限 {limit}:1"),
    "fit.token_grid": ("token grid {size}", "词元网格 {size}"),
    "fit.conv_grid": ("conv grid {size}", "卷积网格 {size}"),
    # ---- the ImageNet references (convformer_app/references.py) ----
    "refs.explain": (
        "### The ImageNet references\nFor photos: each fusion stage's published ImageNet-trained timm model on this "
        "image (downloaded once into the Hugging Face cache): top-3 ImageNet classes, where it looks (Grad-CAM "
        "where it has conv layers, else attention rollout), parameters, FLOPs and latency here.",
        "### ImageNet 参考模型\n用于照片：每个融合阶段已发布的、在 ImageNet 上训练的 timm 模型处理这张图像（首次使用时"
        "下载到 Hugging Face 缓存）：前 3 个 ImageNet 类别、它看向哪里（有卷积层时用类激活图 (Grad-CAM)，否则用"
        "注意力展开）、参数量、浮点运算量 (FLOPs) 以及在这里的延迟。"),
    "refs.run": ("Compare the ImageNet references on this image", "在这张图像上对比 ImageNet 参考模型"),
    "refs.gallery": ("Where each one looks", "每个模型看向哪里"),
    "refs.notice": (
        "**Weights: pretrained on ImageNet**: timm's `{model}`, {title} ({score}), {where}. It knows the 1000 "
        "ImageNet classes (timm's class names); its preprocessing is its own (resize, centre crop, ImageNet "
        "normalisation), so the maps cover the centre crop.",
        "**权重：ImageNet 预训练**：timm 的 `{model}`，{title}（{score}），{where}。它认识 1000 个 ImageNet 类别"
        "（timm 的类别名称）；它使用自己的预处理（缩放、中心裁剪、ImageNet 归一化），因此各图覆盖的是中心裁剪区域。"),
    "refs.title.early": ("R+ViT-Ti: a 7 x 7 conv stem (stride 4), then an 8 x 8 patchify and 12 ViT-Ti blocks",
                         "R+ViT-Ti：7 x 7 卷积主干（步幅 4），然后是 8 x 8 的图像块切分和 12 个 ViT-Ti 块"),
    "refs.title.mid": ("CoAtNet-nano: two MBConv stages, then two transformer stages",
                       "CoAtNet-nano：两个 MBConv 阶段，然后是两个 Transformer 阶段"),
    "refs.title.late": ("ResNet-18 and DeiT-Ti over the same image; class probabilities averaged",
                        "ResNet-18 与 DeiT-Ti 处理同一张图像；类别概率取平均"),
    "refs.title.cnn": ("ResNet-18 (A1 recipe)", "ResNet-18（A1 训练方案）"),
    "refs.title.vit": ("DeiT-Ti/16", "DeiT-Ti/16 模型"),
    "refs.top1": ("ImageNet-1k top-1 {top1}%", "ImageNet-1k top-1 准确率 {top1}%"),
    "refs.averaged": ("its members' scores averaged", "其成员模型得分的平均"),
    "refs.cached": ("in this machine's Hugging Face cache", "已在本机的 Hugging Face 缓存中"),
    "refs.download_once": ("downloaded once into the Hugging Face cache on the first run (about {mb} MB)",
                           "首次运行时下载一次到 Hugging Face 缓存（约 {mb} MB）"),
    "refs.downloading": ("Downloading {name}{size} into the Hugging Face cache, once",
                         "正在下载 {name}{size} 到 Hugging Face 缓存（仅此一次）"),
    "refs.size": (" ({mb} MB)", "（{mb} MB）"),
    "refs.col_stage": ("fusion stage", "融合阶段"),
    "refs.col_model": ("timm model", "timm 模型"),
    "refs.col_top": ("top-{k}", "前 {k} 个类别"),
    "refs.col_gflops": ("GFLOPs", "浮点运算量 (GFLOPs)"),
    "refs.cam_at": ("Grad-CAM at {layer}", "类激活图 (Grad-CAM)：{layer}"),
    "refs.rollout": ("attention rollout", "注意力展开"),
    # what a reference's attention maps are (convformer.references / inspection.timm_engine notes; recognised by translate)
    "refs.attention.early": ("Every block attends over one 7 x 7 patch grid plus the class token.",
                             "每个块都在一个 7 x 7 的图像块网格加上类别词元之上计算注意力。"),
    "refs.attention.mid": ("CoAtNet's attention has no class token and adds a learned relative-position bias.",
                           "CoAtNet 的注意力没有类别词元，并加入了可学习的相对位置偏置。"),
    "refs.attention.late": (
        "Attention comes from the DeiT branch (one 14 x 14 grid plus the class token); conv activations and "
        "Grad-CAM from the ResNet branch.",
        "注意力来自 DeiT 分支（一个 14 x 14 网格加上类别词元）；卷积激活和类激活图 (Grad-CAM) 来自 ResNet 分支。"),
    "refs.attention.cnn": ("A CNN has no attention: conv activations and Grad-CAM only.",
                           "CNN 没有注意力：只有卷积激活和类激活图 (Grad-CAM)。"),
    "refs.attention.vit": ("Every block attends over one 14 x 14 patch grid plus the class token.",
                           "每个块都在一个 14 x 14 的图像块网格加上类别词元之上计算注意力。"),
    "refs.own_grid": (
        "Each stage attends over its own grid ({sizes}); tokens do not carry over between grids, so rollout "
        "multiplies the blocks of the last grid ({last}) only.",
        "每个阶段在自己的网格上计算注意力（{sizes}）；词元不会在网格之间传递，因此注意力展开只把最后一个网格"
        "（{last}）的各块相乘。"),
    # ---- the Shapes weights on an image unlike their data (convformer.data.familiarity) ----
    "caution.unlike_shapes": (
        "⚠ This image is unlike the Shapes data these weights were trained on (texture {texture}; Shapes images "
        "stay under {limit}): the prediction can only be one of the ten shapes, whatever the picture shows.",
        "⚠ 这张图像与这些权重训练所用的 Shapes 数据不同（纹理 {texture}；Shapes 图像都低于 {limit}）："
        "无论图中是什么，预测都只能是十种形状之一。"),
    # ---- messages built around the library's errors (the values stay as they are) ----
    "err.not_allowed": ("{name}={value} is not allowed: {reason}", "{name}={value} 不允许：{reason}"),
    "err.not_allowed_here": ("{name}={value} is not allowed here: {reason}", "{name}={value} 在这里不允许：{reason}"),
    "err.empty": ("{name} is empty: expected numbers separated by commas, e.g. 32, 64, 128",
                  "{name} 为空：应为用逗号分隔的数字，例如 32, 64, 128"),
    "reason.one_of": ("expected one of {values}", "应为以下之一：{values}"),
    "reason.whole": ("expected a whole number", "应为整数"),
    "reason.number": ("expected a number", "应为数字"),
    "reason.whole_range": ("expected a whole number from {lo} to {hi}", "应为 {lo} 到 {hi} 之间的整数"),
    "reason.number_range": ("expected a number from {lo} to {hi}", "应为 {lo} 到 {hi} 之间的数字"),
    "reason.int_in": ("expected an integer in [{lo}, {hi}]", "应为 [{lo}, {hi}] 内的整数"),
    "reason.number_in": ("expected a number in {interval}", "应为 {interval} 内的数字"),
    "reason.img_size": ("expected an int or (H, W) with sides in [1, {hi}]", "应为整数或 (H, W)，边长在 [1, {hi}] 内"),
    "reason.conv_widths": ("expected 1 to {stages} integers in [1, {hi}]", "应为 1 到 {stages} 个 [1, {hi}] 内的整数"),
    "reason.conv_depths": ("expected {n} integers in [0, {hi}], one per conv width",
                           "应为 {n} 个 [0, {hi}] 内的整数，每个卷积通道数对应一个"),
    "reason.rgb": ("expected three numbers, one per RGB channel", "应为三个数，每个 RGB 通道一个"),
    "reason.positive": ("expected positive numbers", "应为正数"),
    "reason.divisible": ("must be divisible by num_heads={heads} (try {hint})", "必须能被 num_heads={heads} 整除（试试 {hint}）"),
    "reason.needs_block": ("fusion {fusion} needs at least one transformer block", "fusion {fusion} 至少需要一个 Transformer 块"),
    "reason.mid_cls": ("mid fusion refines the token grid with a conv and pools it: use 'avg'",
                       "中期融合用卷积细化词元网格并对其池化：请使用 'avg'"),
    "reason.min_size": ("fusion {fusion} with this config needs sides >= {px} px",
                        "在此配置下 fusion {fusion} 需要边长 >= {px} 像素"),
    "reason.params": ("with embed_dim={embed} and conv_widths={widths} the model would have ~{m} M parameters "
                      "(limit {limit} M)",
                      "在 embed_dim={embed}、conv_widths={widths} 下，模型约有 {m} M 个参数（上限 {limit} M）"),
    "reason.tokens": ("img_size={size} gives {tokens} tokens (limit {limit}); use a larger stride or a smaller image",
                      "img_size={size} 会产生 {tokens} 个词元（上限 {limit}）；请使用更大的步幅或更小的图像"),
    "reason.activations": ("at img_size={size} the conv stages would hold ~{m} M activations per image (limit {limit} M)",
                           "在 img_size={size} 下，卷积阶段每张图像约有 {m} M 个激活值（上限 {limit} M）"),
    # ---- limits of round three (issue 28): the details of "This image / checkpoint / dataset cannot be used" ----
    "reason.jpeg_scans": ("the JPEG has {n} scans; the limit is {limit} (photos have 1 to about 12): save it again "
                          "as a baseline JPEG or PNG",
                          "这张 JPEG 有 {n} 个扫描段，上限是 {limit}（照片一般只有 1 到 12 个）：请另存为基线 JPEG 或 PNG"),
    "reason.header_size": ("the ConvFormer header is nested too deeply or too large: it holds {n} objects and lists; "
                           "the limit is {limit}",
                           "ConvFormer 头部嵌套过深或过大：含有 {n} 个对象和列表，上限是 {limit}"),
    "reason.header_values": ("the ConvFormer header holds {n} values; the limit is {limit}",
                             "ConvFormer 头部含有 {n} 个值，上限是 {limit}"),
    "reason.class_folder": ("class folder {name} has a name of {n} characters; the limit is {limit} (the checkpoint "
                            "stores class names)",
                            "类别文件夹 {name} 的名称有 {n} 个字符，上限是 {limit}（检查点会保存类别名称）"),
    "reason.zip_depth": ("zip entry {name} is {n} folders deep; the limit is {limit}",
                         "zip 条目 {name} 位于 {n} 层文件夹之下，上限是 {limit}"),
    # ---- Explore: which map to trust (convformer_app/trust.py) ----
    "trust.legend": (
        "Lines: relevance red, rollout blue, attention green, gradcam orange, random grey.",
        "曲线：relevance 红色，rollout 蓝色，attention 绿色，gradcam 橙色，random 灰色。"),
    "tab.relevance": (
        "Relevance (Chefer et al.)",
        "相关性（Chefer 等）"),
    "relevance.explain": (
        "Class-specific relevance (Chefer et al. 2021): each block's attention weighted by the gradient of "
        "the explained class, negative parts dropped, heads averaged, and accumulated over the blocks. Unlike"
        " rollout it depends on the class (choose it under Grad-CAM); unlike Grad-CAM it reads the attention."
        " Which map to trust? The accordion below scores them all on this image.",
        "类别特定的相关性（Chefer 等，2021）：每个块的注意力按所解释类别的梯度加权，去掉负的部分，对各头取平均，再在各块之间累积。与 rollout 不同，它取决于类别（在 Grad-CAM "
        "下选择）；与 Grad-CAM 不同，它读取的是注意力。该相信哪张图？下面的折叠面板会在这张图像上给它们全部打分。"),
    "relevance.image": (
        "Relevance",
        "相关性"),
    "relevance.note": (
        "Relevance of {cls} over the `{grid}` token grid ({h} x {w}).",
        "{cls} 在 `{grid}` 词元网格（{h} x {w}）上的相关性。"),
    "relevance.none": (
        "No relevance map: this model has no attention.",
        "没有相关性图：这个模型没有注意力。"),
    "trust.title": (
        "Which map to trust?",
        "该相信哪张图？"),
    "trust.explain": (
        "Each map claims to show what the prediction rests on. Here they are tested on this image: "
        "**deletion** removes the pixels a map ranks highest first (replaced by the mean colour) and watches "
        "the predicted class's probability fall (lower area is better); **insertion** adds them onto the mean"
        " colour and watches it rise (higher is better). A random map is the floor. On a bundled Shapes "
        "example the object's mask is known: the **pointing game** asks whether the map's peak lies on the "
        "object, **mask IoU** how well the map (above its mean) covers it. The **sanity check** re-draws the "
        "weights from the head down: a map that stays the same is not explaining the model.",
        "每张图都声称展示了预测所依据的区域。这里在这张图像上检验它们：**删除**先去掉图中排名最高的像素（换成平均颜色），观察预测类别的概率下降（曲线下面积越低越好）；**插入**把这些像素加回到平均颜色上"
        "，观察概率上升（越高越好）。随机图是底线。对内置的 Shapes 示例，物体的掩码是已知的：**指向游戏**看图的峰值是否落在物体上，**掩码 IoU** "
        "看图（高于其均值的部分）覆盖物体的程度。**合理性检查**从分类头开始逐层重新随机化权重：保持不变的图并没有在解释模型。"),
    "trust.run": (
        "Score the maps",
        "为各张图打分"),
    "trust.sanity_run": (
        "Sanity check (re-draws the weights)",
        "合理性检查（重新随机化权重）"),
    "trust.deletion_plot": (
        "Deletion",
        "删除"),
    "trust.insertion_plot": (
        "Insertion",
        "插入"),
    "trust.table": (
        "Scores on this image",
        "这张图像上的得分"),
    "trust.sanity_table": (
        "Sanity check",
        "合理性检查"),
    "trust.chart_deletion": (
        "Deletion: most relevant pixels removed first",
        "删除：先去掉最相关的像素"),
    "trust.chart_insertion": (
        "Insertion: most relevant pixels added first",
        "插入：先加入最相关的像素"),
    "trust.chart_x": (
        "share of pixels changed",
        "已改变的像素比例"),
    "trust.chart_y": (
        "probability of {cls}",
        "{cls} 的概率"),
    "trust.col_method": (
        "map",
        "图"),
    "trust.col_deletion": (
        "deletion AUC (lower is better)",
        "删除 AUC（越低越好）"),
    "trust.col_insertion": (
        "insertion AUC (higher is better)",
        "插入 AUC（越高越好）"),
    "trust.col_pointing": (
        "pointing game",
        "指向游戏"),
    "trust.col_iou": (
        "mask IoU",
        "掩码 IoU"),
    "trust.col_spearman": (
        "Spearman ρ with the original (mean over the cascade)",
        "与原图的 Spearman ρ（级联平均）"),
    "trust.col_sanity": (
        "verdict",
        "结论"),
    "trust.hit": (
        "on the object",
        "在物体上"),
    "trust.miss": (
        "off the object",
        "不在物体上"),
    "trust.changes": (
        "changes with the weights: passes",
        "随权重变化：通过"),
    "trust.same": (
        "barely changes: fails",
        "几乎不变：未通过"),
    "trust.none": (
        "This model has no map to score.",
        "这个模型没有可评分的图。"),
    "trust.verdict": (
        "**Trust {best} on this image:** removing the pixels it ranks highest lowers the probability of {cls}"
        " fastest and adding them back restores it fastest (insertion minus deletion AUC {gain}, a random map"
        " {floor}){where}.",
        "**在这张图像上可以相信 {best}**：去掉它排名最高的像素时 {cls} 的概率下降最快，把它们加回时恢复最快（插入 AUC 减删除 AUC 为 {gain}，随机图为 "
        "{floor}）{where}。"),
    "trust.verdict_none": (
        "**Trust none of these maps on this image:** none moves the probability of {cls} clearly more than a "
        "random map does (insertion minus deletion AUC of a random map: {floor}).",
        "**在这张图像上这些图都不可信**：没有一张图对 {cls} 概率的影响明显超过随机图（随机图的插入 AUC 减删除 AUC：{floor}）。"),
    "trust.on_object": (
        ", and its peak lies on the object",
        "，而且它的峰值落在物体上"),
    "trust.off_object": (
        ", though its peak lies off the object",
        "，但它的峰值不在物体上"),
    "trust.branch": (
        "{branch} {share} of the logit (deletion AUC of its map, {method}: {deletion})",
        "{branch} 占 logit 的 {share}（其图 {method} 的删除 AUC：{deletion}）"),
    "trust.branches": (
        "Late fusion, which branch the prediction rests on: {parts}.",
        "后期融合，预测依赖哪个分支：{parts}。"),
    "trust.imagenet": (
        "The map scores are for the models trained here; the ImageNet references are too large to score on "
        "this server.",
        "图的评分只针对这里训练的模型；ImageNet 参考模型太大，无法在这台服务器上评分。"),
    # ---- Study (issue 26) ----
    'tab.study': ('Study', '研究'),
    'study.explain': ('### Do the usual claims about fusion hold?\nThe usual answer to "how do I fuse a CNN and a transformer" ends with claims: early fusion converges faster but may lose simple local features; mid fusion must place the fusion point well; late fusion may give the best accuracy but misses interaction in the middle layers. Here the five stages, at matched parameter counts, are trained on the built-in shapes under one protocol over several seeds, and each claim gets a verdict from the intervals. Below: the committed results (`python -m convformer study`); further down, run the quick study yourself (one seed, fewer points).', '### 关于融合的常见说法成立吗？\n“如何融合 CNN 与 Transformer”的常见回答以几条说法结尾：早期融合收敛更快，但可能因过度抽象而丢失简单的局部特征；中期融合必须选好融合点；后期融合也许最终准确率最好，但缺少中间层的交互。这里把五种融合阶段在参数量相当的条件下，用同一套训练协议、多个随机种子在内置的形状数据集上训练，并根据区间给每条说法一个结论。下方是已提交的结果（`python -m convformer study`）；再往下可以自己运行快速版研究（一个种子，更少的数据点）。'),
    'study.committed': ('Committed results', '已提交的结果'),
    'study.live': ('Run the quick study here', '在这里运行快速版研究'),
    'study.live_info': ("One seed and fewer points: about 3 minutes on 2 quiet CPU cores, longer when the server is busy; it stops at the server's time limit for training and keeps the runs it finished.", '一个种子、更少的数据点：在 2 个空闲 CPU 核上约 3 分钟，服务器繁忙时更久；到达服务器的训练时间上限即停止，并保留已完成的运行。'),
    'study.run': ('Run the quick study', '运行快速版研究'),
    'study.cancel': ('Cancel', '取消'),
    'study.press': ('Press Run to start.', '按“运行”开始。'),
    'study.plot': ('Figure: mean and min-max over seeds', '图：各种子的均值与最小-最大范围'),
    'study.live_plot': ('Figure of this run', '本次运行的图'),
    'study.none': ('No committed results yet: run `python -m convformer study` and commit convformer/study/results.json.', '还没有已提交的结果：运行 `python -m convformer study` 并提交 convformer/study/results.json。'),
    'study.head': ('Study **{name}**: {done}/{planned} runs, seeds {seeds}, {steps} steps of {batch} images at 32 px each; {device}, {threads} threads, {wall} s, load average {before} before and {after} after.', '研究 **{name}**：{done}/{planned} 次运行，种子 {seeds}，每次 {steps} 步、每步 {batch} 张 32 像素图像；{device}，{threads} 个线程，用时 {wall} 秒，系统负载前 {before}、后 {after}。'),
    'study.partial': ('**Partial**: the study stopped before its last run; claims without all their runs are inconclusive.', '**不完整**：研究在最后一次运行之前停止；缺少运行的说法判为无定论。'),
    'study.values': ('Values: mean [min, max] over seeds; accuracies in %, gaps and drops in points.', '数值：各种子的均值 [最小, 最大]；准确率为百分比，差距与下降为百分点。'),
    'study.late': ('Late fusion {late} %; its branches trained alone: cnn {cnn} %, vit {vit} %; gain over the better one ({better}): {gain} points.', '后期融合 {late}%；其分支单独训练：cnn {cnn}%，vit {vit}%；相对较好分支（{better}）的提升：{gain} 个百分点。'),
    'study.placement': ('Mid fusion with attention after conv stage 1 / 2 / 3: {one} % / {two} % / {three} %.', '中期融合，注意力放在第 1 / 2 / 3 个卷积阶段之后：{one}% / {two}% / {three}%。'),
    'study.rule': ("Rule: with at least 3 seeds on each side, A beats B when A's worst seed beats B's best (the ranges do not overlap; for 3 against 3 a one-sided exact permutation test at p = 0.05). Supported: the claimed separation; not supported: the opposite one; otherwise inconclusive on Shapes.", '规则：每一方至少 3 个种子时，若 A 最差的种子仍优于 B 最好的种子（范围不重叠；3 对 3 时相当于 p = 0.05 的单侧精确置换检验），则 A 优于 B。成立：出现所说方向的分离；不成立：出现相反方向的分离；否则在形状数据集上无定论。'),
    'study.col.stage': ('stage', '阶段'),
    'study.col.params': ('params', '参数量'),
    'study.col.mflops': ('MFLOPs', 'MFLOPs（百万次浮点运算）'),
    'study.col.steps_to': ('steps to {pct} %', '达到 {pct}% 的步数'),
    'study.col.seconds_to': ('s to {pct} %', '达到 {pct}% 的秒数'),
    'study.col.final': ('final acc %', '最终准确率 %'),
    'study.col.sgd': ('AdamW - SGD', 'AdamW 减 SGD'),
    'study.col.gap': ('gap {k}k', '差距 {k}k'),
    'study.col.acc_at': ('acc {k}k ({pct} %)', '准确率 {k}k（{pct}%）'),
    'study.col.noise': ('noise drop', '噪声下降'),
    'study.col.claim': ('claim', '说法'),
    'study.col.verdict': ('verdict', '结论'),
    'study.col.test': ('tested as', '检验方式'),
    'study.col.scale': ('at scale (published)', '大规模上的已发表结果'),
    'study.verdict.supported': ('supported', '成立'),
    'study.verdict.not supported': ('not supported', '不成立'),
    'study.verdict.inconclusive': ('inconclusive on Shapes', '在形状数据集上无定论'),
    'study.lean': (' (the means lean: {lean})', '（均值倾向：{lean}）'),
    'study.claim.early_faster': ('Early fusion converges faster.', '早期融合收敛更快。'),
    'study.claim.early_loses_local': ('Early fusion may lose simple local features to over-abstraction.', '早期融合可能因过度抽象而丢失简单的局部特征。'),
    'study.claim.mid_placement': ('Mid fusion must place the fusion point well.', '中期融合必须选好融合点。'),
    'study.claim.late_best': ('Late fusion may give the best final accuracy.', '后期融合也许能给出最好的最终准确率。'),
    'study.claim.late_misses_interaction': ('Late fusion misses interaction in the middle layers.', '后期融合缺少中间层的交互。'),
    'study.test.early_faster': ('early needs fewer steps to 80 % than mid and late (if every run gets there; else: higher validation accuracy half-way)', '早期融合达到 80% 所需步数少于中期与后期融合（若所有运行都达到；否则比较训练一半时的验证准确率）'),
    'study.test.early_loses_local': ('early ends below both models that keep a full convolutional path (cnn, late)', '早期融合的最终准确率低于两个保留完整卷积通路的模型（cnn、后期融合）'),
    'study.test.mid_placement': ('the best and the worst placement of attention (after conv stage 1, 2 or 3) separate', '注意力位置（第 1、2 或 3 个卷积阶段之后）中最好与最差的结果相互分离'),
    'study.test.late_best': ('late ends above every other stage', '后期融合的最终准确率高于其他所有阶段'),
    'study.test.late_misses_interaction': ('mid (interaction in the middle) ends above late at matched parameters', '参数量相当时，中期融合（中间层有交互）的最终准确率高于后期融合'),
    'study.scale.early_faster': ('Xiao et al. 2021: a conv stem converges faster than a patchify ViT and trains well with SGD as well as AdamW on ImageNet; they did not compare it with mid or late fusion.', 'Xiao 等 2021：在 ImageNet 上，卷积主干比分块 ViT 收敛更快，且用 SGD 与 AdamW 都能稳定训练；他们没有与中期或后期融合比较。'),
    'study.scale.early_loses_local': ('Park & Kim 2022: attention acts as a low-pass filter and convolutions as high-pass ones; yet at ImageNet scale early-conv ViTs (Xiao et al. 2021) match or beat pure ViTs.', 'Park 与 Kim 2022：注意力相当于低通滤波器，卷积相当于高通滤波器；但在 ImageNet 规模上，早期卷积的 ViT（Xiao 等 2021）与纯 ViT 持平或更好。'),
    'study.scale.mid_placement': ('Dai et al. 2021 (CoAtNet): the layout matters on ImageNet; C-C-T-T generalises best, attention earlier or later is worse.', 'Dai 等 2021（CoAtNet）：在 ImageNet 上布局很重要；C-C-T-T 泛化最好，注意力更早或更晚都更差。'),
    'study.scale.late_best': ('At ImageNet scale the strongest hybrids interleave convolution and attention (CoAtNet, Dai et al. 2021) rather than merge two networks at the decision level.', '在 ImageNet 规模上，最强的混合模型交替使用卷积与注意力（CoAtNet，Dai 等 2021），而不是在决策层合并两个网络。'),
    'study.scale.late_misses_interaction': ("d'Ascoli et al. 2021 (ConViT) and Dai et al. 2021 (CoAtNet) gain most from letting convolutional and attention features interact inside the network, especially with little data.", "d'Ascoli 等 2021（ConViT）与 Dai 等 2021（CoAtNet）的收益主要来自让卷积特征与注意力特征在网络内部交互，数据少时尤其如此。"),
    'study.plot.final': ('final accuracy', '最终准确率'),
    'study.plot.steps': ('steps to 80 % (reached only)', '达到 80% 的步数（仅已达到者）'),
    'study.plot.half': ('val. accuracy half-way\n(no run reached 80 %)', '训练过半时的验证准确率\n（无一达到 80%）'),
    'study.plot.sizes': ('accuracy vs training images', '准确率与训练图像数'),
    'study.plot.gap': ('train - test gap', '训练-测试差距'),
    'study.plot.sgd': ('AdamW - SGD', 'AdamW 减 SGD'),
    'study.plot.noise': ('drop under high-frequency noise', '高频噪声下的准确率下降'),
    'study.plot.late': ('late vs its branches alone', '后期融合与其单独分支'),
    'study.plot.placement': ('mid: attention after conv stage', '中期融合：注意力所在的卷积阶段'),
    'study.plot.acc': ('accuracy %', '准确率 %'),
    'study.plot.points': ('points', '百分点'),
    'study.plot.steps_axis': ('steps', '步数'),
    'study.plot.images': ('training images', '训练图像数'),
    'study.starting': ('Rendering the images, then the first run…', '正在渲染图像，随后开始第一次运行……'),
    'study.rendering': ('Rendering the images for {runs} runs…', '正在为 {runs} 次运行渲染图像……'),
    'study.progress': ('quick study', '快速版研究'),
    'study.status_run': ('Run {run}/{runs}: {model}, seed {seed}, {images} images, {optimizer}…', '第 {run}/{runs} 次运行：{model}，种子 {seed}，{images} 张图像，{optimizer}……'),
    'study.status_step': ('Run {run}/{runs}: {model}, seed {seed}, {images} images, {optimizer}: step {step}/{steps}, validation {acc}', '第 {run}/{runs} 次运行：{model}，种子 {seed}，{images} 张图像，{optimizer}：第 {step}/{steps} 步，验证准确率 {acc}'),
    'study.done': ('Done: {done}/{planned} runs.', '完成：{done}/{planned} 次运行。'),
    'study.stopped': ('■ Stopped after {done}/{planned} runs: the results below are partial.', '■ 在 {done}/{planned} 次运行后停止：下面的结果不完整。'),
    'study.stopped_none': ('■ Stopped before the first run finished.', '■ 在第一次运行完成之前已停止。'),
    'study.nothing': ('No study is running in this page.', '本页面没有正在运行的研究。'),
    'study.stopping': ('Stopping after the current step…', '将在当前步之后停止……'),
    'study.busy_page': ('A training run or study is already going in this page: wait for it or cancel it.', '本页面已有训练或研究在运行：请等待它结束或取消它。'),
    'study.busy_server': ('{busy} run(s) are going on this server already (the limit is {limit}); try again in a minute.', '服务器上已有 {busy} 个运行（上限为 {limit}）；请一分钟后再试。'),
    'study.too_big': ('The quick study trains on {images} images; this server allows {limit}.',
                      '快速版研究需要 {images} 张训练图像；本服务器最多允许 {limit} 张。'),
    'study.failed': ('The study failed: {detail}', '研究失败：{detail}'),
    # ---- issue 27 ----
    "image.drop": ("Your image (drop a file here)", "你的图像（把文件拖到这里）"),
    "image.drop_info": ("Drop an image on the picture, or pick one, paste one or use the webcam with the buttons "
                        "under it.", "把图像拖到上面的图片上，或用图片下方的按钮选择、粘贴或使用摄像头。"),
    "train.plots_legend": (
        "Loss: blue training (smoothed), orange validation. Validation accuracy against seconds: orange this run; "
        "pale each stage's typical curve with its recipe (late green, cnn grey, mid purple, early yellow, vit red).",
        "损失：蓝色为训练（已平滑），橙色为验证。验证准确率随时间（秒）变化：橙色为本次训练；浅色为各阶段按其配方的典型"
        "曲线（late 绿色、cnn 灰色、mid 紫色、early 黄色、vit 红色）。"),
}
