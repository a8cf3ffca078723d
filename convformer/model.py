"""ConvFormer: hybrid conv + transformer classifiers where the fusion stage is data.

`LAYOUTS` maps each fusion stage to its branches, and each branch to the parts it runs in order. One
builder reads it (as timm's CoAtNet reads its stage layout). Shapes for a 224 x 224 RGB input with
conv_widths of 4 stages (stride 16), embed_dim D and patch 16:

  early  Xiao et al. 2021, "Early Convolutions Help Transformers See Better":
         conv (B,C4,14,14) -> proj 1x1 (B,D,14,14) -> tokens (B,P+196,D) -> blocks -> norm -> pool (B,D)
  mid    CoAtNet / MobileViT style: convs for local features, attention on the coarse grid, a conv refines:
         conv (B,C4,14,14) -> proj (B,D,14,14) -> tokens (B,196,D) -> blocks -> norm -> grid (B,D,14,14)
         -> refine 3x3 (B,D,14,14) -> pool (B,D)
  late   two full branches over the same image, merged before the classifier:
         cnn: conv (B,C4,14,14) -> pool (B,C4);  vit: patch (B,D,14,14) -> tokens -> blocks -> norm -> pool (B,D)
         merge (concat: (B,C4+D); add / gate: (B,D))
  cnn    conv -> pool                               (baseline)
  vit    patch -> tokens -> blocks -> norm -> pool  (baseline; DeiT-Ti when configured so, Touvron et al. 2021)
Every model ends in head: Linear (B, F) -> (B, num_classes), or nothing with num_classes=0.

The timm model interface (`forward_features` / `forward_head`, `forward_intermediates`, `feature_info`, ...):
  * `forward_features` is unpooled and always a (B, C, ., .) map: the last conv or token grid (B, C, h, w); a
    branch that ends in tokens with a class token gives every token as one row (B, D, 1, 1 + h * w), class
    token first. `forward_head(x, pre_logits=)` pools (the branch's `pool` part), drops out and classifies.
  * Late fusion has two branches over the same image, merged only after pooling, so its unpooled features
    are a list of two maps, [cnn map, vit map] (the branches' grids need not match); `forward_head` takes
    that list. `num_features` and `head_hidden_size` are then the merged width.
  * `feature_info` / `forward_intermediates`: one feature per conv stage and per transformer block (the
    token grid, prefix dropped), plus mid's refined grid; late lists both branches' taps ordered by stride.
"""
# No `from __future__ import annotations` here: torch.fx copies forward's annotations into the code it
# generates, and TorchScript must be able to read them (timm's fx + TorchScript test).
from contextlib import nullcontext
from typing import Any, Callable, List

import torch
from timm.layers import trunc_normal_
from timm.models._features import feature_take_indices
from torch import nn

from .branch import PARTS, Branch, branch_taps
from .config import ConvFormerConfig
from .layers import Merge

TOKENS = ("tokens", "blocks", "norm")
LAYOUTS: dict[str, dict[str, tuple[str, ...]]] = {
    "early": {"early": ("conv", "proj", *TOKENS, "pool")},
    "mid": {"mid": ("conv", "proj", *TOKENS, "grid", "refine", "pool")},
    "late": {"cnn": ("conv", "pool"), "vit": ("patch", *TOKENS, "pool")},
    "cnn": {"cnn": ("conv", "pool")},
    "vit": {"vit": ("patch", *TOKENS, "pool")},
}
assert all(list(kinds) == [p for p in PARTS if p in kinds] for b in LAYOUTS.values() for kinds in b.values())


def feature_taps(cfg: ConvFormerConfig) -> list[tuple[str, str, int, int, int]]:
    """Every branch's taps as (branch, part, index, channels, stride), ordered by stride (stable), as timm's
    FeatureInfo requires."""
    taps = [(b, *t) for b, kinds in LAYOUTS[cfg.fusion].items() for t in branch_taps(kinds, cfg)]
    return sorted(taps, key=lambda t: t[4])


def default_out_indices(cfg: ConvFormerConfig) -> tuple[int, ...]:
    """What `features_only=True` returns by default: every conv stage and the final token grid (mid: also
    the refined grid); a plain ViT, without conv stages, its last three blocks (as timm's ViT)."""
    taps = feature_taps(cfg)
    last = {b: max(i for i, t in enumerate(taps) if t[0] == b and t[1] == "blocks")
            for b, kinds in LAYOUTS[cfg.fusion].items() if "blocks" in kinds and cfg.depth}
    picked = {i for i, t in enumerate(taps) if t[1] in ("conv", "refine") or i in last.values()}
    blocks = [i for i, t in enumerate(taps) if t[1] == "blocks" and i not in picked]
    while len(picked) < 3 and blocks:
        picked.add(blocks.pop())
    return tuple(sorted(picked))


def _map_size(kinds: tuple[str, ...], cfg: ConvFormerConfig) -> tuple[int, int]:
    """Spatial size of a branch's unpooled map at the configured img_size."""
    if "tokens" in kinds:
        gh, gw = cfg.grid_size()
        return (1, 1 + gh * gw) if cfg.pool == "cls" and "grid" not in kinds else (gh, gw)
    h, w = cfg.img_size
    return -(-h // cfg.conv_stride), -(-w // cfg.conv_stride)


def timm_config(cfg: ConvFormerConfig) -> dict[str, Any]:
    """timm's pretrained_cfg for a config: preprocessing (read by timm.data.resolve_data_config), the map size
    before pooling, the first conv(s) (adapted when in_chans differs from the weights') and the classifier."""
    branches = LAYOUTS[cfg.fusion]
    first = tuple(f"branches.{b}.conv.stage0.0.conv" if "conv" in kinds else f"branches.{b}.patch.proj"
                  for b, kinds in branches.items())
    pool_size = _map_size(*branches.values(), cfg) if len(branches) == 1 else None  # late: one map per branch
    out = {**cfg.data_config(), "min_input_size": (cfg.in_chans, cfg.min_size, cfg.min_size),
           "fixed_input_size": False, "pool_size": pool_size, "first_conv": first[0] if len(first) == 1 else first,
           "classifier": "head", "license": "mit"}
    return {k: v for k, v in out.items() if v is not None}


class ConvFormer(nn.Module):
    """(B, in_chans, H, W) -> logits (B, num_classes), or pooled features with num_classes=0. Any H, W >=
    config.min_size. With fusion="late" the instance is a `ConvFormerLate` (its unpooled features are a list).

    global_pool: the head's pooling, "cls" (class token), "avg" (mean over positions after the class token)
    or "" (none: `forward` returns the unpooled map; needs num_classes=0); None takes config.pool.
    device, dtype: where and in which dtype the parameters are created (timm's factory arguments)."""

    def __new__(cls, config: ConvFormerConfig | None = None, **overrides: Any) -> "ConvFormer":
        if cls is ConvFormer and overrides.get("fusion", (config or ConvFormerConfig).fusion) == "late":
            cls = ConvFormerLate
        return super().__new__(cls)

    def __init__(self, config: ConvFormerConfig | None = None, *, global_pool: str | None = None,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None, **overrides: Any):
        super().__init__()
        cfg = (config or ConvFormerConfig()).replace(**overrides) if overrides else (config or ConvFormerConfig())
        self.config = cfg
        self.num_classes, self.in_chans = cfg.num_classes, cfg.in_chans
        self.pretrained_cfg = self.default_cfg = timm_config(cfg)  # timm's metadata; timm's builder replaces it
        with torch.device(device) if device is not None else nullcontext():
            self.branches = nn.ModuleDict({name: Branch(kinds, cfg) for name, kinds in LAYOUTS[cfg.fusion].items()})
            dims = tuple(b.out_dim for b in self.branches.values())
            self.merge = Merge(dims, cfg.merge, cfg.embed_dim) if len(dims) > 1 else None
            self.num_features = self.head_hidden_size = self.merge.out_dim if self.merge is not None else dims[0]
            self.head_drop = nn.Dropout(cfg.drop_rate)
            self.head = nn.Linear(self.num_features, cfg.num_classes) if cfg.num_classes else nn.Identity()
        self.apply(_init_weights)
        if dtype is not None:
            self.to(dtype)
        self.global_pool = cfg.pool
        if global_pool is not None:
            self._set_pool(global_pool)
        taps = feature_taps(cfg)
        self._taps = [(t[0], t[1:3]) for t in taps]  # global tap index -> (branch, (part, index))
        self.feature_info = [dict(num_chs=c, reduction=s, module=f"branches.{b}.{part}" + (
            f".stage{i}" if part == "conv" else f".{i}" if part == "blocks" else "")) for b, part, i, c, s in taps]

    # ---- forward ------------------------------------------------------------------------------------
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> the unpooled map (B, num_features, ., .); see the module docstring."""
        for branch in self.branches.values():  # the one branch
            x = branch(x)
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Unpooled map -> pooled features (B, head_hidden_size) with pre_logits, else logits."""
        for branch in self.branches.values():
            x = branch.pool(x)  # (B, C)
        x = self.head_drop(x)
        return x if pre_logits else self.head(x)  # (B, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    @torch.jit.ignore
    def forward_intermediates(self, x: torch.Tensor, indices: int | list[int] | None = None, norm: bool = False,
                              stop_early: bool = False, output_fmt: str = "NCHW", intermediates_only: bool = False,
                              ) -> list[torch.Tensor] | tuple[Any, list[torch.Tensor]]:
        """The maps at the feature taps `indices` (None: all; n: the last n; a list: those) as NCHW or NHWC,
        and unless intermediates_only the unpooled features too. norm applies the final norm to block taps."""
        if output_fmt not in ("NCHW", "NHWC"):
            raise ValueError(f"output_fmt={output_fmt!r} is not supported: use 'NCHW' or 'NHWC'")
        take, _ = feature_take_indices(len(self.feature_info), indices)
        found: dict[int, torch.Tensor] = {}
        finals = []
        for name, branch in self.branches.items():
            wanted = {branch.taps.index(tap): i for i, (b, tap) in enumerate(self._taps) if b == name and i in take}
            if intermediates_only and not wanted:
                continue  # a late branch none of whose taps is asked for
            final, got = branch.forward_intermediates(x, list(wanted), norm, stop_early)
            finals.append(final)
            found.update({wanted[t]: v for t, v in got.items()})
        maps = [found[i] for i in take]
        if output_fmt == "NHWC":
            maps = [m.permute(0, 2, 3, 1) for m in maps]
        if intermediates_only:
            return maps
        return (finals if self.merge is not None or len(finals) > 1 else finals[0]), maps

    @torch.jit.ignore
    def prune_intermediate_layers(self, indices: int | list[int] = 1, prune_norm: bool = False,
                                  prune_head: bool = True) -> list[int]:
        """Drop what runs after the last tap in `indices` (late: in each branch, after its last tap up to that
        index; a branch with none goes); with prune_head the classifier, late's merge and the pooling too, and
        `forward_features` then ends at the tap, class token dropped. Returns the absolute tap indices, which
        keep their meaning."""
        take, max_index = feature_take_indices(len(self.feature_info), indices)
        for name in list(self.branches):
            branch = self.branches[name]
            mine = [branch.taps.index(tap) for i, (b, tap) in enumerate(self._taps) if b == name and i <= max_index]
            if not mine:
                del self.branches[name]
            else:
                branch.prune(max(mine), prune_norm)
        layout = LAYOUTS[self.config.fusion]
        intact = list(self.branches) == list(layout) and all(
            len(b.taps) == len(branch_taps(layout[n], self.config)) for n, b in self.branches.items())
        if self.merge is not None and (prune_head or not intact):
            self.merge = None  # part of the head; and its input widths may be gone
        if self.merge is None:
            dims = [b.out_dim for b in self.branches.values()]
            self.num_features = self.head_hidden_size = dims[0] if len(dims) == 1 else sum(dims)
        if prune_head:
            for branch in self.branches.values():
                branch.row = False  # no head reads the class token: the map is the grid
            self.reset_classifier(0, "")
        return take

    # ---- timm's classifier and training interface -------------------------------------------------
    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """A new head for `num_classes` (0: none, `forward` returns pooled features), on the device and in
        the dtype of the model; global_pool None keeps the pooling (a classifier after global_pool='' gets
        the config's pooling back)."""
        if global_pool is None and self.global_pool == "" and num_classes:
            global_pool = self.config.pool
        if global_pool is not None:
            self._set_pool(global_pool, num_classes)
        self.config = self.config.replace(num_classes=num_classes)
        self.num_classes = num_classes
        ref = next(self.parameters())
        self.head = nn.Linear(self.head_hidden_size, num_classes, device=ref.device, dtype=ref.dtype) \
            if num_classes else nn.Identity()
        if num_classes:
            _init_weights(self.head)
        self.head.train(self.training)

    def _set_pool(self, mode: str, num_classes: int | None = None) -> None:
        num_classes = self.num_classes if num_classes is None else num_classes
        allowed = ("avg", "cls") if self.config.pool == "cls" else ("avg",)
        allowed += ("",) if self.merge is None else ()
        if mode not in allowed:
            raise ValueError(f"global_pool={mode!r} is not allowed for this model: expected one of {allowed}"
                             + (" ('cls' needs pool='cls', a class token)" if mode == "cls" else ""))
        if mode == "" and num_classes:
            raise ValueError(f"global_pool='' (no pooling) needs num_classes=0, not {num_classes}")
        self.global_pool = mode
        for branch in self.branches.values():  # a branch without a class token (late's cnn) takes the mean
            branch.pool.mode = "avg" if mode == "cls" and not branch.prefix else mode

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        for branch in self.branches.values():
            branch.grad_checkpointing = enable

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        """Positional embeddings and class tokens (as timm's ViT)."""
        names = set()
        for name, branch in self.branches.items():
            if branch.tokens is not None:
                names.add(f"branches.{name}.tokens.pos_embed")
                if branch.tokens.cls_token is not None:
                    names.add(f"branches.{name}.tokens.cls_token")
        return names

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> Callable[[str], tuple[float, ...]]:
        """timm's parameter grouping (layer-wise LR decay): each parameter's depth in its branch, counted in
        conv stages and transformer blocks (embeddings with the first), merge and head last."""
        def depth(name: str) -> tuple[float, ...]:
            parts = name.split(".")
            if parts[0] != "branches":
                return (float("inf"),)
            taps = [f"{p}.stage{i}" if p == "conv" else f"{p}.{i}" for p, i in self.branches[parts[1]].taps]
            rest = ".".join(parts[2:])
            for d, tap in enumerate(taps):
                if rest.startswith(tap + "."):
                    return (float(d),)
            if parts[2] in ("patch", "tokens", "proj"):
                return (float(sum(t.startswith("conv") for t in taps)),)
            return (float(len(taps)),)
        return depth


class ConvFormerLate(ConvFormer):
    """Late fusion: its unpooled features are one map per branch, [cnn (B, C4, h, w), vit (B, D, ., .)], and
    `forward_head` pools each, merges and classifies. Built by `ConvFormer(config)` when fusion == "late"."""

    def forward_features(self, x: torch.Tensor) -> List[torch.Tensor]:  # type: ignore[override]
        feats: List[torch.Tensor] = []
        for branch in self.branches.values():
            feats.append(branch(x))
        return feats

    def forward_head(self, x: List[torch.Tensor], pre_logits: bool = False) -> torch.Tensor:  # type: ignore[override]
        pooled: List[torch.Tensor] = []
        i = 0
        for branch in self.branches.values():
            pooled.append(branch.pool(x[i]))  # (B, C_i)
            i += 1
        if self.merge is None:
            raise RuntimeError("this late-fusion model was pruned below its merge: use forward_intermediates")
        out = self.head_drop(self.merge(pooled))  # (B, head_hidden_size)
        return out if pre_logits else self.head(out)


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


def build_model(config: ConvFormerConfig | None = None, **overrides: Any) -> ConvFormer:
    """Build a ConvFormer from a config, with field overrides (validated; bad values raise ValueError)."""
    return ConvFormer(config, **overrides)
