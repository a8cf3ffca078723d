"""A task model as ONE PyTorch file: the backbone's export (`convformer.export`), then the neck, the head and
its decoding, copied from `heads.py` and `decode.py` (plain torch), and a `TaskModel` that reads the
backbone's taps with forward hooks. Its state_dict is the library's, so the weights load strictly and the
outputs are the same (`check`)."""
from __future__ import annotations

import inspect

import torch

from ..export import export, load
from . import heads
from .decode import decode, dense_decode, peaks, set_decode, topk
from .model import TaskModel

_BOX_CONVERT = '''
def box_convert(boxes: torch.Tensor, in_fmt: str, out_fmt: str) -> torch.Tensor:
    """torchvision.ops.box_convert for the one conversion used here: (cx, cy, w, h) -> (x1, y1, x2, y2)."""
    assert (in_fmt, out_fmt) == ("cxcywh", "xyxy")
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)
'''

_TASK_MODEL = '''
class TaskModel(nn.Module):
    """Images (B, 3, H, W) -> the head's outputs (a dict); `detect(x)` decodes boxes (B, N, 6)."""

    def __init__(self):
        super().__init__()
        self.backbone = ConvFormer()
        self.neck = Neck(LEVELS, DIM)
        self.head = HEAD()

    def forward_taps(self, x: torch.Tensor) -> list:
        """Run the backbone and keep the maps at TAPS (forward hooks, removed after): a conv map as it is; a
        transformer block's tokens through the branch's final norm, class token dropped, back on its grid."""
        found, grids = {}, {}
        hooks = [self.backbone.get_submodule(name).register_forward_hook(
            lambda m, args, out, name=name: found.__setitem__(name, out)) for name in TAPS]
        hooks += [self.backbone.get_submodule(f"branches.{b}.tokens").register_forward_pre_hook(
            lambda m, args, b=b: grids.__setitem__(b, args[0].shape[-2:])) for b in TOKEN_BRANCHES]
        try:
            self.backbone(x)
        finally:
            for hook in hooks:
                hook.remove()
        maps = []
        for name in TAPS:
            out = found[name]
            if out.dim() == 3:  # tokens (B, P + h * w, D)
                branch = name.split(".")[1]
                h, w = grids[branch]
                out = self.backbone.get_submodule(f"branches.{branch}.norm")(out)[:, -h * w:]
                out = out.transpose(1, 2).reshape(out.shape[0], -1, h, w)
            maps.append(out)
        return maps

    def forward(self, x: torch.Tensor) -> dict:
        f = self.neck(self.forward_taps(x))  # (B, DIM, H / 4, W / 4)
        return self.head(f, x) if TASK == "segment" else self.head(f)

    def detect(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, N, 6): x1, y1, x2, y2 (input pixels), score, class."""
        return DECODE(self(x), tuple(x.shape[-2:]))
'''


def export_task(model: TaskModel, name: str = "", command: str = "") -> str:
    """Python source of one file defining `TaskModel` (backbone + neck + head + decoding) for `model`."""
    cfg, hc = model.config, model.head_config
    source = export(model.config, name=name, command=command).split('\nif __name__ == "__main__":')[0]
    head_cls = {"dense": heads.DenseHead, "set": heads.SetHead, "segformer": heads.SegFormerHead}[model.head_kind]
    parts = [heads.Neck]
    if model.head_kind == "set":
        parts = [heads.sincos_2d, heads.sincos_points, heads.Neck, heads.DecoderLayer]
    parts.append(head_cls)
    if model.head_kind == "segformer":
        parts.append(heads.conv_bn)
    head_args = {"dense": f"DIM, NUM_OBJECT_CLASSES", "segformer": f"DIM, NUM_OBJECT_CLASSES, {hc.refine}, {hc.skip}",
                 "set": f"DIM, NUM_OBJECT_CLASSES, {hc.queries}, {hc.decoder_layers}, {hc.decoder_heads}"}
    decoders = [peaks, topk, dense_decode] if model.head_kind == "dense" else \
        [set_decode] if model.head_kind == "set" else []
    taps = [model.backbone.feature_info[i]["module"] for i, _, _ in model.taps]
    token_branches = sorted({t.split(".")[1] for t in taps if ".blocks." in t})
    decode_fn = ("lambda out, hw: dense_decode(out['heatmap'], out['size'], out['offset'], hw, "
                 f"{hc.max_detections})" if model.head_kind == "dense" else "lambda out, hw: set_decode("
                 "out['pred_logits'], out['pred_boxes'], hw)" if model.head_kind == "set" else "None")
    constants = "\n".join([
        "", "", "# " + "-" * 98, f"# the {model.task} head: {model.head_kind} (convformer.tasks)", "",
        f"TASK = {model.task!r}", f"TAPS = {taps!r}  # backbone modules the neck reads, finest first",
        f"TOKEN_BRANCHES = {token_branches!r}",
        f"LEVELS = {[(c, s) for _, c, s in model.taps]!r}  # (channels, stride) per tap",
        f"DIM = {hc.dim}  # neck and head width", f"NUM_OBJECT_CLASSES = {hc.num_classes}",
        f"CLASS_NAMES = {list(model.class_names)!r}", ""])
    body = [inspect.getsource(p) for p in parts] + ([_BOX_CONVERT] if model.head_kind == "set" else []) \
        + [inspect.getsource(f) for f in decoders]
    tail = [f"HEAD = lambda: {head_cls.__name__}({head_args[model.head_kind]})", f"DECODE = {decode_fn}",
            _TASK_MODEL]
    return source.rstrip() + constants + "\n\n" + "\n\n".join(b.strip("\n") for b in body) + "\n\n\n" + \
        "\n".join(tail) + _MAIN.format(task=model.task)


_MAIN = '''

if __name__ == "__main__":
    H, W = map(int, sys.argv[1:3]) if len(sys.argv) > 2 else IMG_SIZE
    torch.manual_seed(0)
    model = TaskModel().eval()
    with torch.no_grad():
        out = model(torch.randn(1, IN_CHANS, H, W))
    for key, value in out.items():
        print(f"{{key:<14}} {{tuple(value.shape)}}")
    print("{task}: {{:,}} parameters".format(sum(p.numel() for p in model.parameters())))
'''


def check_task(source: str, model: TaskModel, size: tuple[int, int] = (64, 80)) -> float:
    """Load `model`'s weights strictly into the exported TaskModel; the largest output difference on one image."""
    exported = load(source).TaskModel().eval()
    exported.load_state_dict(model.state_dict(), strict=True)
    x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(0))
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            a, b = exported(x), model(x)
            diffs = [(a[k] - b[k]).abs().max().item() for k in b]
            if model.task == "detect":
                diffs.append((exported.detect(x) - decode(b, tuple(x.shape[-2:]),
                                                                  model.head_config.max_detections)).abs().max().item())
    finally:
        model.train(was)
    return max(diffs)
