"""One typed config for every ConvFormer model, validated in one place.

The fusion stage is data: `fusion` picks which parts the builder in `model.py` assembles.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

FUSIONS = ("early", "mid", "late", "cnn", "vit")
POOLS = ("cls", "avg")
MERGES = ("concat", "gate", "add")
POS_EMBEDS = ("learned", "sincos")

# Upper bounds that keep one model within a few GB of memory and a forward pass within seconds on a CPU.
# A config beyond them is refused up front instead of exhausting the machine.
LIMITS = {"img_size": 1024, "embed_dim": 2048, "depth": 48, "num_heads": 64, "conv_width": 2048,
          "conv_depth": 16, "conv_stages": 6, "num_classes": 100_000, "in_chans": 16, "mlp_ratio": 16.0,
          "patch_size": 64, "params": 300_000_000, "tokens": 4096, "activations": 100_000_000}


class UnknownFieldError(TypeError, ValueError):
    """A keyword that is no config field: a TypeError, as Python's own for an unexpected keyword argument
    (timm's factory contract), and a ValueError, as every other bad config."""


@dataclass
class ConvFormerConfig:
    """Everything that defines a model. Sizes are in pixels, channels or tokens."""

    fusion: str = "mid"                           # early | mid | late | cnn | vit
    img_size: int | tuple[int, int] = 224          # training / positional-embedding size (H, W)
    in_chans: int = 3                              # image channels
    num_classes: int = 1000                        # logits per image; 0: no classifier (pooled features)
    conv_widths: tuple[int, ...] = (32, 64, 128, 192)  # one stride-2 conv stage per entry
    conv_depths: tuple[int, ...] = (1, 1, 2, 2)    # residual blocks after each stage's strided conv
    embed_dim: int = 192                           # token width C
    depth: int = 4                                 # transformer blocks
    num_heads: int = 3                             # attention heads; embed_dim % num_heads == 0
    mlp_ratio: float = 4.0                         # MLP hidden width = mlp_ratio * embed_dim
    patch_size: int = 16                           # vit and the ViT branch of late: patch side in pixels
    pool: str = "avg"                              # cls: class token; avg: mean of tokens / grid
    pos_embed: str = "learned"                     # learned | sincos: fixed 2-D sin-cos (Beyer et al. 2022)
    merge: str = "concat"                          # late: concat | gate | add
    drop_rate: float = 0.0                         # dropout before the classifier and in the MLP
    attn_drop_rate: float = 0.0                    # dropout on attention probabilities
    drop_path_rate: float = 0.0                    # stochastic depth, linearly increasing over blocks
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)  # preprocessing, read by timm data config
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    extra: dict[str, Any] = field(default_factory=dict)  # free-form notes; not used by the builder

    def __post_init__(self) -> None:
        if isinstance(self.img_size, int) and not isinstance(self.img_size, bool):
            self.img_size = (self.img_size, self.img_size)
        for name in ("img_size", "conv_widths", "conv_depths", "mean", "std"):
            value = getattr(self, name)
            if isinstance(value, list):
                setattr(self, name, tuple(value))
        validate(self)

    # ---- derived sizes ---------------------------------------------------------------------------
    @property
    def conv_stride(self) -> int:
        """Total downsampling of the conv trunk (each stage halves H and W)."""
        return 2 ** len(self.conv_widths)

    @property
    def uses_conv(self) -> bool:
        return self.fusion != "vit"

    @property
    def uses_transformer(self) -> bool:
        return self.fusion != "cnn"

    @property
    def token_stride(self) -> int:
        """Pixels per token side: the conv trunk's stride (early, mid) or the patch size (vit, late)."""
        return self.patch_size if self.fusion in ("vit", "late") else self.conv_stride

    @property
    def min_size(self) -> int:
        """Smallest input side that gives at least a 1 x 1 grid everywhere."""
        sizes = [self.conv_stride] if self.uses_conv else []
        if self.uses_transformer:
            sizes.append(self.token_stride)
        return max(sizes)

    def grid_size(self, img_size: tuple[int, int] | None = None) -> tuple[int, int]:
        """Token grid (h, w) for an input of `img_size` (default: the config's)."""
        h, w = img_size or self.img_size
        s = self.token_stride
        return -(-h // s), -(-w // s)  # ceil: inputs are padded (patches) or conv-padded

    def data_config(self) -> dict[str, Any]:
        """timm pretrained_cfg fields for preprocessing (read by timm.data.resolve_data_config); the model
        adds the rest (model.timm_config)."""
        return {"input_size": (self.in_chans, *self.img_size), "mean": self.mean, "std": self.std,
                "interpolation": "bicubic", "crop_pct": 1.0, "crop_mode": "squash", "num_classes": self.num_classes}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ConvFormerConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UnknownFieldError(f"unknown config field(s) {unknown}; allowed: {sorted(known)}")
        return cls(**data)

    def replace(self, **changes: Any) -> "ConvFormerConfig":
        """A validated copy with some fields changed; an unknown field raises ValueError."""
        return ConvFormerConfig.from_dict({**self.to_dict(), **changes})


def _fail(name: str, value: Any, allowed: str) -> None:
    raise ValueError(f"{name}={value!r} is not allowed: {allowed}")


def _int(cfg: ConvFormerConfig, name: str, lo: int, hi: int) -> None:
    value = getattr(cfg, name)
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        _fail(name, value, f"expected an integer in [{lo}, {hi}]")


def _float(cfg: ConvFormerConfig, name: str, lo: float, hi: float, hi_open: bool = False) -> None:
    value = getattr(cfg, name)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and lo <= value
    ok = ok and (value < hi if hi_open else value <= hi)
    if not ok:
        _fail(name, value, f"expected a number in [{lo}, {hi}{')' if hi_open else ']'}")


def validate(cfg: ConvFormerConfig) -> None:
    """Raise ValueError naming the field, its value and what is allowed: each field alone, then the rules that
    tie fields together and the model's size."""
    _check_fields(cfg)
    _check_together(cfg)


def _check_fields(cfg: ConvFormerConfig) -> None:
    """Each field's type and range."""
    if cfg.fusion not in FUSIONS:
        _fail("fusion", cfg.fusion, f"expected one of {FUSIONS}")
    if cfg.pool not in POOLS:
        _fail("pool", cfg.pool, f"expected one of {POOLS}")
    if cfg.merge not in MERGES:
        _fail("merge", cfg.merge, f"expected one of {MERGES}")
    if cfg.pos_embed not in POS_EMBEDS:
        _fail("pos_embed", cfg.pos_embed, f"expected one of {POS_EMBEDS}")
    size = cfg.img_size
    if not (isinstance(size, tuple) and len(size) == 2
            and all(isinstance(s, int) and not isinstance(s, bool) and 1 <= s <= LIMITS["img_size"] for s in size)):
        _fail("img_size", size, f"expected an int or (H, W) with sides in [1, {LIMITS['img_size']}]")
    _int(cfg, "in_chans", 1, LIMITS["in_chans"])
    _int(cfg, "num_classes", 0, LIMITS["num_classes"])
    _int(cfg, "embed_dim", 1, LIMITS["embed_dim"])
    _int(cfg, "depth", 0, LIMITS["depth"])
    _int(cfg, "num_heads", 1, LIMITS["num_heads"])
    _int(cfg, "patch_size", 1, LIMITS["patch_size"])
    _float(cfg, "mlp_ratio", 0.25, LIMITS["mlp_ratio"])
    for name in ("drop_rate", "attn_drop_rate", "drop_path_rate"):
        _float(cfg, name, 0.0, 1.0, hi_open=True)
    widths, depths = cfg.conv_widths, cfg.conv_depths
    if not isinstance(widths, tuple) or not 1 <= len(widths) <= LIMITS["conv_stages"] or not all(
            isinstance(w, int) and not isinstance(w, bool) and 1 <= w <= LIMITS["conv_width"] for w in widths):
        _fail("conv_widths", widths,
              f"expected 1 to {LIMITS['conv_stages']} integers in [1, {LIMITS['conv_width']}]")
    if not isinstance(depths, tuple) or len(depths) != len(widths) or not all(
            isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= LIMITS["conv_depth"] for d in depths):
        _fail("conv_depths", depths,
              f"expected {len(widths)} integers in [0, {LIMITS['conv_depth']}], one per conv width")
    for name in ("mean", "std"):
        value = getattr(cfg, name)
        if not (isinstance(value, tuple) and len(value) == 3 and all(isinstance(v, (int, float)) for v in value)):
            _fail(name, value, "expected three numbers, one per RGB channel")
    if any(s <= 0 for s in cfg.std):
        _fail("std", cfg.std, "expected positive numbers")


def _check_together(cfg: ConvFormerConfig) -> None:
    """The rules across fields (heads divide the width, mid pools its grid, ...) and the size limits (LIMITS)."""
    size, widths = cfg.img_size, cfg.conv_widths
    if cfg.uses_transformer:
        if cfg.embed_dim % cfg.num_heads:
            _fail("embed_dim", cfg.embed_dim,
                  f"must be divisible by num_heads={cfg.num_heads} (try {cfg.embed_dim // cfg.num_heads * cfg.num_heads or cfg.num_heads})")
        if cfg.pos_embed == "sincos" and cfg.embed_dim % 4:
            _fail("embed_dim", cfg.embed_dim, "must be divisible by 4 for sin-cos positional embeddings "
                  f"(pos_embed='sincos'; try {cfg.embed_dim // 4 * 4 or 4})")
        if cfg.depth == 0 and cfg.fusion in ("early", "vit"):
            _fail("depth", cfg.depth, f"fusion {cfg.fusion!r} needs at least one transformer block")
    if cfg.fusion == "mid" and cfg.pool == "cls":
        _fail("pool", cfg.pool, "mid fusion refines the token grid with a conv and pools it: use 'avg'")
    if min(size) < cfg.min_size:
        _fail("img_size", size, f"fusion {cfg.fusion!r} with this config needs sides >= {cfg.min_size} px")
    params, tokens, acts = estimate(cfg)
    if params > LIMITS["params"]:
        _fail("depth", cfg.depth, f"with embed_dim={cfg.embed_dim} and conv_widths={cfg.conv_widths} the model "
              f"would have ~{params / 1e6:.0f} M parameters (limit {LIMITS['params'] / 1e6:.0f} M)")
    if tokens > LIMITS["tokens"]:
        name = "patch_size" if cfg.fusion in ("vit", "late") else "conv_widths"
        _fail(name, getattr(cfg, name), f"img_size={size} gives {tokens} tokens (limit {LIMITS['tokens']}); "
              "use a larger stride or a smaller image")
    if acts > LIMITS["activations"]:
        _fail("conv_widths", widths, f"at img_size={size} the conv stages would hold ~{acts / 1e6:.0f} M "
              f"activations per image (limit {LIMITS['activations'] / 1e6:.0f} M)")


def estimate(cfg: ConvFormerConfig) -> tuple[int, int, int]:
    """Rough (parameters, tokens, conv activations per image), cheap enough to check before building."""
    d, (h, w) = cfg.embed_dim, cfg.img_size
    params = tokens = acts = 0
    if cfg.uses_transformer:
        params += cfg.depth * int((4 + 2 * cfg.mlp_ratio) * d * d)
        gh, gw = cfg.grid_size()
        tokens = gh * gw
    if cfg.uses_conv:
        prev = cfg.in_chans
        for i, (width, blocks) in enumerate(zip(cfg.conv_widths, cfg.conv_depths)):
            params += 9 * prev * width + blocks * 18 * width * width
            acts += (blocks * 2 + 1) * width * (-(-h // 2 ** (i + 1))) * (-(-w // 2 ** (i + 1)))
            prev = width
    return params, tokens, acts
