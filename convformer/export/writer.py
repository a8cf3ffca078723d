"""The writer behind `export.export`: turns a configuration, the shapes of a dry run of the library's
model and the facts read from its modules into the source of one readable PyTorch file. Each part kind of
`model.LAYOUTS` has its code here, written only when the configuration uses it."""
from __future__ import annotations

import re
import textwrap
from collections.abc import Sequence
from typing import Any

from ..config import ConvFormerConfig
from ..model import LAYOUTS

BRANCH_CLASSES = {"cnn": "CNNBranch", "vit": "ViTBranch", "early": "EarlyBranch", "mid": "MidBranch"}
RULE = "# " + "-" * 98


class ExportError(ValueError):
    """The library's model has a piece the exporter cannot write out faithfully."""


def _t(shape: Sequence[int]) -> str:
    """(1, 32, 112, 112) -> '(B, 32, 112, 112)'."""
    return "(" + ", ".join(["B", *map(str, shape[1:])]) + ")"


def _aligned(pairs: list[tuple[str, str]], indent: int, cap: int = 64) -> str:
    """Code lines with their comments lined up in one column."""
    width = min(max((len(c) for c, note in pairs if note and len(c) <= cap), default=0), cap) + 2
    out = []
    for code, note in pairs:
        line = " " * indent + code
        if note and len(code) > cap:  # a long line gets its comment above it
            out += [f"{' ' * indent}# {note}", line]
        else:
            out.append(f"{line.ljust(indent + width - 2)}  # {note}" if note else line)
    return "\n".join(out)


def _section(title: str, *bodies: str) -> str:
    """A rule, a one-line title, then the bodies two blank lines apart."""
    return f"{RULE}\n# {title}\n\n" + "\n\n\n".join(b for b in bodies if b)


def doc_text(text: str, limit: int = 200) -> str:
    """`text` (a preset or file name: anything a client typed) as it may stand inside the generated file's
    docstring: cut to `limit` characters; where it holds a quote, a backslash, an @ (the templates' marks) or
    anything unprintable, every such character is written as an escape (\\n, \\x22, \\u2028...), so the
    name reads the same and can never end the docstring or add a line of code."""
    text = str(text) if len(str(text)) <= limit else str(text)[:limit] + "…"
    if text.isprintable() and not any(c in text for c in '"\\@'):
        return text
    return text.encode("unicode_escape").decode("ascii").replace('"', "\\x22").replace("@", "\\x40")


def _fill(template: str, **values: Any) -> str:
    """Dedent a template and replace each @NAME@ by its value."""
    text = textwrap.dedent(template).strip("\n")
    for key, value in values.items():
        text = text.replace(f"@{key}@", str(value))
    missing = re.findall(r"@[A-Z_]+@", text)
    if missing:
        raise AssertionError(f"template values missing: {missing}")
    return text


class Writer:
    """outs / ins: output and input shape of every named module of the library model (and "input");
    facts: numbers and choices read from its modules (norm epsilons, GELU flavour, MLP width, ...)."""

    def __init__(self, cfg: ConvFormerConfig, outs: dict[str, tuple], ins: dict[str, Any], facts: dict[str, Any], *,
                 name: str = "", command: str = "", classes: list[str] | None = None):
        self.cfg, self.name, self.command, self.classes = cfg, name, command, classes
        self.layout = LAYOUTS[cfg.fusion]
        self.out, self.inp = outs, ins
        self.facts = facts
        self.kinds = {k for kinds in self.layout.values() for k in kinds}
        self.prefix = int(cfg.pool == "cls")
        tokens = next((f"branches.{b}.tokens" for b, kinds in self.layout.items() if "tokens" in kinds), None)
        self.tokens = tokens
        self.grid = tuple(self.inp[tokens][-2:]) if tokens else None
        self.blocks = cfg.depth > 0 and "blocks" in self.kinds

    # shapes of the library's modules, batch written as B
    def o(self, name: str) -> str:
        return _t(self.out[name])

    def i(self, name: str) -> str:
        return _t(self.inp[name])

    def branch_with(self, kind: str) -> str:
        return next(b for b, kinds in self.layout.items() if kind in kinds)

    def n_spelled(self) -> str:
        h, w = self.grid
        n = self.prefix + h * w
        return f"N = {self.prefix} + {h} x {w} = {n}" if self.prefix else f"N = {h} x {w} = {n}"

    # ---- sections ----------------------------------------------------------------------------------------
    def source(self) -> str:
        parts = [self.docstring(), self.imports(), self.constants()]
        if self.cfg.drop_path_rate > 0:
            parts.append(self.drop_path())
        if self.kinds & {"conv", "refine"}:
            parts.append(self.convs())
        if self.kinds & {"tokens", "grid", "patch"}:
            parts.append(self.boundary())
        if self.blocks:
            parts.append(self.transformer())
        parts += [self.pools(), *self.branches(), self.convformer(), self.main()]
        return parts[0] + "\n\n" + "\n\n\n".join(p for p in parts[1:] if p) + "\n"

    def docstring(self) -> str:
        cfg = self.cfg
        title = f"ConvFormer {doc_text(self.name)}: " if self.name else "ConvFormer: "
        flow = "\n".join(f"    {b}: {' -> '.join(kinds)}" for b, kinds in self.layout.items())
        if len(self.layout) > 1:
            flow += f"\n    merge ({cfg.merge}): {' + '.join(self.layout)} -> one vector"
        flow += (f"\n    head: Linear {self.i('head')} -> {self.o('head')}" if cfg.num_classes
                 else "\n    no head (num_classes = 0): the pooled features are the output")
        made = f"`{doc_text(self.command, 400)}`" if self.command else "convformer.export.export(config)"
        h, w = cfg.img_size
        tokens = f" (here {self.n_spelled()})" if self.grid else ""
        return _fill('''
            """@TITLE@fusion "@FUSION@", the complete model in one file.

            Generated by @MADE@
            from the layout the library builds from, convformer.model.LAYOUTS["@FUSION@"], and this configuration:

            @FLOW@

            Needs only PyTorch. Module names and parameter shapes are exactly the library's, so its weights load
            strictly:  model = ConvFormer(); model.load_state_dict(state_dict)  (e.g. the library model's
            state_dict(), or safetensors.torch.load_file("model.safetensors")).

            Shapes: an image batch and every grid are (B, C, H, W); tokens are (B, N, D) with N = prefix + h x w
            for an h x w token grid@TOKENS@. The comments give the shapes for a @H@ x @W@ input;
            any H, W >= @MIN@ works. Run this file to print the shape after every step: python this_file.py [H W]
            """''', TITLE=title, FUSION=cfg.fusion, MADE=made, FLOW=flow, TOKENS=tokens, H=h, W=w, MIN=cfg.min_size)

    def imports(self) -> str:
        return "import sys\n\nimport torch\nimport torch.nn.functional as F\nfrom torch import nn"

    def constants(self) -> str:
        cfg, f = self.cfg, self.facts
        h, w = cfg.img_size
        rows = [("IMG_SIZE = " + repr(tuple(cfg.img_size)), "(H, W) the model is laid out for (positional embeddings)"),
                (f"IN_CHANS = {cfg.in_chans}", "image channels"),
                (f"NUM_CLASSES = {cfg.num_classes}", "logits per image" if cfg.num_classes
                  else "no classifier: the model returns its pooled features")]
        if "conv" in self.kinds:
            conv = f"branches.{self.branch_with('conv')}.conv"
            sides = " -> ".join(str(self.out[f"{conv}.stage{i}"][-2]) for i in range(len(cfg.conv_widths)))
            rows += [(f"CONV_WIDTHS = {tuple(cfg.conv_widths)!r}", f"one stride-2 conv stage each: H {h} -> {sides}"),
                     (f"CONV_DEPTHS = {tuple(cfg.conv_depths)!r}", "residual blocks after each stage's strided conv")]
        if "patch" in self.kinds:
            rows.append((f"PATCH_SIZE = {cfg.patch_size}", "patch side in pixels: one token per patch"))
        if self.grid:
            d = cfg.embed_dim
            rows += [(f"EMBED_DIM = {d}", "token width D"),
                     (f"DEPTH = {cfg.depth}", "transformer blocks"),
                     (f"NUM_HEADS = {cfg.num_heads}", f"attention heads, each {d // cfg.num_heads} wide")]
            if self.blocks:
                rows.append((f"MLP_HIDDEN = {f['mlp_hidden']}", f"MLP hidden width ({cfg.mlp_ratio:g} x {d})"))
            rows += [(f"GRID = {self.grid!r}", f"token grid (h, w) at IMG_SIZE: {h} x {w} px / "
                                                f"{cfg.token_stride} px per token"),
                     (f"PREFIX = {self.prefix}", "tokens before the grid's: the class token" if self.prefix
                      else "tokens before the grid's: none (no class token)")]
        if "bn_eps" in f:
            rows += [(f"BN_EPS = {f['bn_eps']!r}", "BatchNorm epsilon"),
                     (f"BN_MOMENTUM = {f['bn_momentum']!r}", "BatchNorm running-statistics momentum")]
        if "ln_eps" in f:
            rows.append((f"LN_EPS = {f['ln_eps']!r}", "LayerNorm epsilon"))
        for key, what in (("drop_rate", "dropout in the MLP, after attention and before the head"),
                          ("attn_drop_rate", "dropout on the attention probabilities"),
                          ("drop_path_rate", "stochastic depth, the largest rate")):
            if getattr(cfg, key) > 0 and (key == "drop_rate" or self.blocks or key == "drop_path_rate"):
                rows.append((f"{key.upper()} = {getattr(cfg, key)!r}", what))
        rows += [(f"MEAN = {tuple(cfg.mean)!r}", "normalise inputs in [0, 1]: (x - MEAN) / STD per channel"),
                 (f"STD = {tuple(cfg.std)!r}", "")]
        text = _aligned(rows, 0, cap=36)
        if self.classes:
            text += f"\n# what the logits mean, in order\nCLASSES = {tuple(self.classes)!r}"
        return _section("configuration", text)

    def drop_path(self) -> str:
        return _section("stochastic depth", _fill('''
            def drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
                """Stochastic depth (Huang et al. 2016): while training, drop a whole residual branch per sample."""
                if p == 0.0 or not training:
                    return x
                keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(1 - p)
                return x * keep / (1 - p)'''))

    def convs(self) -> str:
        dp = self.cfg.drop_path_rate > 0
        text = _fill('''
            class ConvBN(nn.Module):
                """3 x 3 conv (padding 1, no bias) -> BatchNorm -> ReLU; stride 2 halves H and W (rounding up)."""

                def __init__(self, in_dim: int, dim: int, stride: int = 1, act: bool = True):
                    super().__init__()
                    self.conv = nn.Conv2d(in_dim, dim, 3, stride, padding=1, bias=False)
                    self.bn = nn.BatchNorm2d(dim, eps=BN_EPS, momentum=BN_MOMENTUM)
                    self.act = act

                def forward(self, x: torch.Tensor) -> torch.Tensor:
                    x = self.bn(self.conv(x))
                    return F.relu(x) if self.act else x


            class ResidualBlock(nn.Module):
                """ResNet basic block (He et al. 2016): two 3 x 3 ConvBN and the identity, shape unchanged."""

                def __init__(self, dim: int@DP_ARG@):
                    super().__init__()
                    self.conv1 = ConvBN(dim, dim)
                    self.conv2 = ConvBN(dim, dim, act=False)@DP_INIT@

                def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C, H, W)
                    return F.relu(x + @RESIDUAL@)''',
            DP_ARG=", drop_path: float = 0.0" if dp else "",
            DP_INIT="\n        self.drop_prob = drop_path" if dp else "",
            RESIDUAL="drop_path(self.conv2(self.conv1(x)), self.drop_prob, self.training)" if dp
            else "self.conv2(self.conv1(x))")
        title = "convolutions: local features on a grid (B, C, H, W)"
        if "conv" not in self.kinds:
            return _section(title, text)
        conv = f"branches.{self.branch_with('conv')}.conv"
        n = len(self.cfg.conv_widths)
        calls = [(f"x = self.stage{i}(x)", f"{self.i(f'{conv}.stage{i}')} -> {self.o(f'{conv}.stage{i}')}")
                 for i in range(n)]
        return _section(title, text, _fill('''
            class ConvStages(nn.Module):
                """@N@ stages, each a stride-2 ConvBN that sets the width, then residual blocks: stride @S@ in all."""

                def __init__(self):
                    super().__init__()
                    dims = (IN_CHANS, *CONV_WIDTHS)
                    for i, depth in enumerate(CONV_DEPTHS):
                        blocks = [ResidualBlock(dims[i + 1]@DP@) for _ in range(depth)]
                        self.add_module(f"stage{i}", nn.Sequential(ConvBN(dims[i], dims[i + 1], stride=2), *blocks))

                def forward(self, x: torch.Tensor) -> torch.Tensor:
            @CALLS@
                    return x''', N=n, S=2 ** n, DP=", DROP_PATH_RATE" if self.cfg.drop_path_rate > 0 else "",
            CALLS=_aligned(calls, 8)))

    def boundary(self) -> str:
        out = []
        if "patch" in self.kinds:
            patch = f"branches.{self.branch_with('patch')}.patch"
            out.append(_fill('''
                class PatchEmbed(nn.Module):
                    """ViT's patchify (Dosovitskiy et al. 2021): a PATCH_SIZE x PATCH_SIZE conv with the same stride,
                    one grid cell per patch; the image is first padded right and bottom to whole patches."""

                    def __init__(self):
                        super().__init__()
                        self.proj = nn.Conv2d(IN_CHANS, EMBED_DIM, PATCH_SIZE, stride=PATCH_SIZE)

                    def forward(self, x: torch.Tensor) -> torch.Tensor:
                        H, W = x.shape[-2:]
                        x = F.pad(x, (0, -W % PATCH_SIZE, 0, -H % PATCH_SIZE))  # zeros up to a multiple of PATCH_SIZE
                        return self.proj(x)  # @IN@ -> @OUT@''', IN=self.i(patch), OUT=self.o(patch)))
        if self.grid:
            out.append(self.resample())
            out.append(self.to_tokens())
        if "grid" in self.kinds:
            grid = f"branches.{self.branch_with('grid')}.grid"
            drop = "x = x[:, PREFIX:]  # drop the class token\n        " if self.prefix else ""
            out.append(_fill('''
                class ToGrid(nn.Module):
                    """Tokens -> grid, the inverse of ToTokens' flatten: (B, N, D) -> (B, D, h, w), row by row."""

                    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
                        @DROP@return x.transpose(1, 2).reshape(x.shape[0], -1, h, w)  # @IN@ -> @OUT@''',
                             DROP=drop, IN=self.i(grid), OUT=self.o(grid)))
        return _section("the fusion boundary: grid (B, C, H, W) <-> tokens (B, N, D)", *out)

    def resample(self) -> str:
        h, w = self.grid
        if self.prefix:
            body = """
                prefix, pos = pos[:, :PREFIX], pos[:, PREFIX:]                      # (1, 1, D), (1, @HW@, D)
                pos = pos.reshape(1, *GRID, -1).permute(0, 3, 1, 2)                 # (1, D, @H@, @W@)
                pos = F.interpolate(pos.float(), size=(h, w), mode="@MODE@", antialias=True).to(prefix.dtype)
                return torch.cat([prefix, pos.flatten(2).transpose(1, 2)], dim=1)  # (1, 1 + h * w, D)"""
        else:
            body = """
                dtype = pos.dtype
                pos = pos.reshape(1, *GRID, -1).permute(0, 3, 1, 2)  # (1, D, @H@, @W@)
                pos = F.interpolate(pos.float(), size=(h, w), mode="@MODE@", antialias=True).to(dtype)
                return pos.flatten(2).transpose(1, 2)                # (1, h * w, D)"""
        return _fill('''
            def resample_pos_embed(pos: torch.Tensor, h: int, w: int) -> torch.Tensor:
                """Positional embeddings for an h x w token grid. They are learned for GRID; another grid (another
                input size or aspect) gets them resized as an image, @MODE@ with antialiasing (timm's
                resample_abs_pos_embed)@KEPT@."""
                if (h, w) == GRID:
                    return pos''' + body, HW=h * w, H=h, W=w, MODE=self.facts["pos_interpolation"],
                     KEPT="; the class token's embedding is kept as it is" if self.prefix else "")

    def to_tokens(self) -> str:
        tokens = self.tokens
        b, c, h, w = self.inp[tokens]
        n = h * w
        cls = self.prefix
        lines = [("B, D, h, w = x.shape", f"{self.i(tokens)}: the grid, D channels"),
                 ("x = x.flatten(2).transpose(1, 2)", f"(B, {n}, {c}), row by row")]
        if cls:
            lines.append(("x = torch.cat([self.cls_token.expand(B, -1, -1), x], dim=1)",
                          f"(B, {n + 1}, {c}): the class token first"))
        lines.append(("return x + resample_pos_embed(self.pos_embed, h, w)", f"{self.o(tokens)}: {self.n_spelled()}"))
        sincos = self.cfg.pos_embed == "sincos"
        init = ["        self.cls_token = nn.Parameter(torch.zeros(1, 1, EMBED_DIM))"] if cls else []
        if sincos:
            init.append("        self.register_buffer(\"pos_embed\", sincos_table())  # fixed, not trained")
        else:
            init.append("        self.pos_embed = nn.Parameter(torch.zeros(1, PREFIX + GRID[0] * GRID[1], EMBED_DIM))")
            init.append("        nn.init.trunc_normal_(self.pos_embed, std=0.02)")
        if cls:
            init.append("        nn.init.normal_(self.cls_token, std=1e-6)")
        what = "A learned class token, then one token per grid cell" if cls else "One token per grid cell"
        table = _fill('''
            def sincos_table() -> torch.Tensor:
                """Fixed 2-D sin-cos positional embeddings (1, PREFIX + h * w, D) for GRID, as timm's
                build_sincos2d_pos_embed: a quarter of D each for sin(y f), sin(x f), cos(y f), cos(x f) at a
                token's row y and column x, with frequencies f = 10000^(-i / (D / 4)); the class token's row is 0."""
                f = 1.0 / 10000 ** (torch.arange(EMBED_DIM // 4) / (EMBED_DIM // 4))
                y, x = torch.meshgrid(torch.arange(GRID[0]), torch.arange(GRID[1]), indexing="ij")
                y, x = y.flatten()[:, None] * f, x.flatten()[:, None] * f               # (@HW@, D / 4) each
                table = torch.cat([y.sin(), x.sin(), y.cos(), x.cos()], dim=1)          # (@HW@, @D@)
                return F.pad(table, (0, 0, PREFIX, 0)).unsqueeze(0)                     # (1, @N@, @D@)''',
                     HW=n, D=c, N=cls + n) + "\n\n\n" if sincos else ""
        return table + _fill('''
            class ToTokens(nn.Module):
                """Grid -> tokens: (B, D, h, w) -> (B, N, D) with N = PREFIX + h * w.

                @WHAT@, row by row, plus @POS@ positional
                embeddings (resampled when the grid is not GRID)."""

                def __init__(self):
                    super().__init__()
            @INIT@

                def forward(self, x: torch.Tensor) -> torch.Tensor:
            @LINES@''', WHAT=what, POS="fixed sin-cos" if sincos else "learned", INIT="\n".join(init),
                     LINES=_aligned(lines, 8))

    def attention_lines(self, n: int, d: int) -> list[tuple[str, str]]:
        """The attention's forward over N = `n` tokens of width `d`, line by line beside its shapes."""
        nh, hs = self.cfg.num_heads, d // self.cfg.num_heads
        sdpa = "F.scaled_dot_product_attention(q, k, v" + (
            ", dropout_p=ATTN_DROP_RATE if self.training else 0.0)" if self.cfg.attn_drop_rate > 0 else ")")
        return [("B, N, D = x.shape", f"(B, {n}, {d})"),
                ("qkv = self.qkv(x).reshape(B, N, 3, NUM_HEADS, D // NUM_HEADS)", f"(B, {n}, 3, {nh}, {hs})"),
                ("q, k, v = qkv.permute(2, 0, 3, 1, 4)", f"(B, {nh}, {n}, {hs}) each: (B, nh, N, hs)"),
                (f"x = {sdpa}", f"softmax(q k^T / sqrt({hs})) v"),
                ("x = x.transpose(1, 2).reshape(B, N, D)", f"(B, {n}, {d}): heads side by side")]

    def transformer(self) -> str:
        cfg, f = self.cfg, self.facts
        blk = f"branches.{self.branch_with('blocks')}.blocks.0"
        _, n, d = self.inp[blk]
        drop, dp = cfg.drop_rate > 0, cfg.drop_path_rate > 0
        gelu = "F.gelu(self.fc1(x))" if f["gelu"] == "none" else f'F.gelu(self.fc1(x), approximate="{f["gelu"]}")'
        attn_lines = self.attention_lines(n, d)
        attn_ret = "return self.drop(self.proj(x))" if drop else "return self.proj(x)"
        mlp_fwd = (f"x = self.drop({gelu})" if drop else f"x = {gelu}", f"(B, N, {d}) -> (B, N, {f['mlp_hidden']})")
        mlp_ret = ("return self.drop(self.fc2(x))" if drop else "return self.fc2(x)", f"-> (B, N, {d})")
        res = "drop_path({}, self.drop_prob, self.training)" if dp else "{}"
        return _section("the transformer: tokens (B, N, D) -> (B, N, D)", _fill('''
            class Attention(nn.Module):
                """Multi-head self-attention (Vaswani et al. 2017): each token attends to every token."""

                def __init__(self):
                    super().__init__()
                    self.qkv = nn.Linear(EMBED_DIM, 3 * EMBED_DIM)
                    self.proj = nn.Linear(EMBED_DIM, EMBED_DIM)@DROP_INIT@

                def forward(self, x: torch.Tensor) -> torch.Tensor:
            @ATTN@
                    @ATTN_RET@


            class MLP(nn.Module):
                """Per-token feed-forward: Linear -> GELU -> Linear, D -> MLP_HIDDEN -> D."""

                def __init__(self):
                    super().__init__()
                    self.fc1 = nn.Linear(EMBED_DIM, MLP_HIDDEN)
                    self.fc2 = nn.Linear(MLP_HIDDEN, EMBED_DIM)@DROP_INIT@

                def forward(self, x: torch.Tensor) -> torch.Tensor:
            @MLP@


            class Block(nn.Module):
                """Pre-norm transformer block (ViT): attention, then an MLP, each added to the residual stream."""

                def __init__(self@DP_ARG@):
                    super().__init__()
                    self.norm1 = nn.LayerNorm(EMBED_DIM, eps=LN_EPS)
                    self.attn = Attention()
                    self.norm2 = nn.LayerNorm(EMBED_DIM, eps=LN_EPS)
                    self.mlp = MLP()@DP_INIT@

                def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, @N@, @D@) -> (B, @N@, @D@)
                    x = x + @RES_ATTN@  # mixes information between tokens
                    x = x + @RES_MLP@  # transforms each token on its own
                    return x''',
            DROP_INIT="\n        self.drop = nn.Dropout(DROP_RATE)" if drop else "",
            ATTN=_aligned(attn_lines, 8), ATTN_RET=attn_ret, MLP=_aligned([mlp_fwd, mlp_ret], 8),
            DP_ARG=", drop_path: float = 0.0" if dp else "",
            DP_INIT="\n        self.drop_prob = drop_path" if dp else "",
            RES_ATTN=res.format("self.attn(self.norm1(x))"), RES_MLP=res.format("self.mlp(self.norm2(x))"), N=n, D=d))

    def pools(self) -> str:
        out = []
        token_pooled = {self.pools_tokens(b) for b in self.layout}
        if False in token_pooled:
            out.append(_fill('''
                class GridPool(nn.Module):
                    """Global average pool: the mean over H and W, (B, C, H, W) -> (B, C)."""

                    def forward(self, x: torch.Tensor) -> torch.Tensor:
                        return x.mean(dim=(2, 3))'''))
        if True in token_pooled:
            if self.cfg.pool == "cls":
                what, body = "The class token's output: (B, N, D) -> (B, D).", "x[:, 0]"
            else:
                what = "The mean of the grid's tokens" + (" (class token left out)" if self.prefix else "")
                what, body = what + ": (B, N, D) -> (B, D).", "x[:, PREFIX:].mean(dim=1)" if self.prefix \
                    else "x.mean(dim=1)"
            out.append(_fill('''
                class TokenPool(nn.Module):
                    """@WHAT@"""

                    def forward(self, x: torch.Tensor) -> torch.Tensor:
                        return @BODY@''', WHAT=what, BODY=body))
        if len(self.layout) > 1:
            out.append(self.merge())
        return _section("to one vector per image", *out)

    def merge(self) -> str:
        mode = self.cfg.merge
        names = list(self.layout)
        a, b = (self.out[f"branches.{n}.pool"] for n in names)
        dims = [self.dim_expr(n) for n in names]
        sig = f"def forward(self, {names[0]}: torch.Tensor, {names[1]}: torch.Tensor) -> torch.Tensor:"
        shapes = f"{_t(a)} and {_t(b)}"
        if mode == "concat":
            return _fill('''
                class Merge(nn.Module):
                    """Late fusion by concatenation: the two branches' features side by side."""

                    @SIG@  # @SHAPES@
                        return torch.cat([@A@, @B@], dim=1)  # -> @OUT@''',
                         SIG=sig, SHAPES=shapes, A=names[0], B=names[1], OUT=self.o("merge"))
        proj = f"nn.ModuleList([nn.Linear({dims[0]}, EMBED_DIM), nn.Linear({dims[1]}, EMBED_DIM)])"
        if mode == "add":
            return _fill('''
                class Merge(nn.Module):
                    """Late fusion by addition: each branch projected to EMBED_DIM, then summed."""

                    def __init__(self):
                        super().__init__()
                        self.proj = @PROJ@

                    @SIG@  # @SHAPES@
                        return self.proj[0](@A@) + self.proj[1](@B@)  # -> @OUT@''',
                         PROJ=proj, SIG=sig, SHAPES=shapes, A=names[0], B=names[1], OUT=self.o("merge"))
        return _fill('''
            class Merge(nn.Module):
                """Late fusion by a learned gate: each branch projected to EMBED_DIM, then mixed per channel with
                g = sigmoid(W [a, b]) as g * a + (1 - g) * b."""

                def __init__(self):
                    super().__init__()
                    self.proj = @PROJ@
                    self.gate = nn.Linear(2 * EMBED_DIM, EMBED_DIM)

                @SIG@  # @SHAPES@
                    a, b = self.proj[0](@A@), self.proj[1](@B@)  # (B, @D@) each
                    g = torch.sigmoid(self.gate(torch.cat([a, b], dim=1)))  # (B, @D@): how much of @A@, per channel
                    return g * a + (1 - g) * b  # -> @OUT@''',
                     PROJ=proj, SIG=sig, SHAPES=shapes, A=names[0], B=names[1], D=self.cfg.embed_dim,
                     OUT=self.o("merge"))

    def pools_tokens(self, branch: str) -> bool:
        """Whether the branch pools tokens (it ends in tokens) rather than a grid."""
        kinds = self.layout[branch]
        return "tokens" in kinds and "grid" not in kinds

    def dim_expr(self, branch: str) -> str:
        """The width a branch pools, as an expression of the constants."""
        kinds = self.layout[branch]
        return "EMBED_DIM" if {"proj", "patch"} & set(kinds) else "CONV_WIDTHS[-1]"

    def branches(self) -> list[str]:
        title = f"the branches, as in LAYOUTS[{self.cfg.fusion!r}]"
        return [_section(title, *(self.branch(b, kinds) for b, kinds in self.layout.items()))]

    def branch(self, branch: str, kinds: tuple[str, ...]) -> str:
        cfg = self.cfg
        p = f"branches.{branch}"
        init, fwd = [], []
        pooled = "(B, D)" if self.pools_tokens(branch) else "(B, C)"
        prev = "input"
        for kind in kinds:
            name = f"{p}.{kind}"
            io = f"{self.o(prev)} -> {self.o(name)}"
            prev = name
            if kind == "conv":
                init.append(("self.conv = ConvStages()", f"{len(cfg.conv_widths)} stages, stride {cfg.conv_stride}"))
                fwd.append(("x = self.conv(x)", f"{io}: a grid"))
            elif kind == "proj":
                init.append(("self.proj = nn.Conv2d(CONV_WIDTHS[-1], EMBED_DIM, 1)", "1 x 1 conv to the token width"))
                fwd.append(("x = self.proj(x)", io))
            elif kind == "patch":
                init.append(("self.patch = PatchEmbed()", f"{cfg.patch_size} x {cfg.patch_size} patches"))
                fwd.append(("x = self.patch(x)", f"{io}: a grid, one cell per patch"))
            elif kind == "tokens":
                init.append(("self.tokens = ToTokens()", "grid -> tokens"))
                if "grid" in kinds:
                    fwd.append(("h, w = x.shape[-2:]", f"the token grid, {self.grid[0]} x {self.grid[1]} here, "
                                                      "kept for the way back"))
                fwd.append(("x = self.tokens(x)", f"-> {self.o(name)}: {self.n_spelled()}"))
            elif kind == "blocks":
                if self.blocks:
                    arg = "r" if cfg.drop_path_rate > 0 else ""
                    loop = ("r in torch.linspace(0, DROP_PATH_RATE, DEPTH).tolist()" if arg else "_ in range(DEPTH)")
                    init.append((f"self.blocks = nn.Sequential(*[Block({arg}) for {loop}])", "DEPTH blocks"))
                    fwd.append(("x = self.blocks(x)", f"{self.o(name)}: {cfg.depth} block{'s' * (cfg.depth > 1)}, the shape stays"))
                else:
                    init.append(("self.blocks = nn.Sequential()", "DEPTH = 0: no transformer blocks"))
                    fwd.append(("x = self.blocks(x)", "no blocks: unchanged"))
            elif kind == "norm":
                init.append(("self.norm = nn.LayerNorm(EMBED_DIM, eps=LN_EPS)", ""))
                fwd.append(("x = self.norm(x)", self.o(name)))
            elif kind == "grid":
                init.append(("self.grid = ToGrid()", "tokens -> grid"))
                fwd.append(("x = self.grid(x, h, w)", f"{io}: back onto the {self.grid[0]} x {self.grid[1]} grid"))
            elif kind == "refine":
                init.append(("self.refine = ResidualBlock(EMBED_DIM)", "a 3 x 3 conv block on the token map"))
                fwd.append(("x = self.refine(x)", io))
            elif kind == "pool":
                init.append((f"self.pool = {'TokenPool' if self.pools_tokens(branch) else 'GridPool'}()", ""))
                fwd.append(("return self.pool(x)", f"{io} = {pooled}"))
            else:
                raise ExportError(f"LAYOUTS[{cfg.fusion!r}] has a part {kind!r} the exporter cannot write")
        cls = BRANCH_CLASSES.get(branch, branch.capitalize() + "Branch")
        return _fill('''
            class @CLS@(nn.Module):
                """@BRANCH@: @FLOW@, @IN@ -> @POOLED@."""

                def __init__(self):
                    super().__init__()
            @INIT@

                def forward(self, x: torch.Tensor) -> torch.Tensor:
            @FWD@''', CLS=cls, BRANCH=branch, FLOW=" -> ".join(kinds), IN=self.o("input"), POOLED=pooled,
                     INIT=_aligned(init, 8), FWD=_aligned(fwd, 8))

    def convformer(self) -> str:
        cfg = self.cfg
        names = list(self.layout)
        branches = ", ".join(f'"{b}": {BRANCH_CLASSES.get(b, b.capitalize() + "Branch")}()' for b in names)
        init = [(f"self.branches = nn.ModuleDict({{{branches}}})", "")]
        if len(names) > 1:
            init.append(("self.merge = Merge()", cfg.merge))
            feats = ("EMBED_DIM" if cfg.merge != "concat" else " + ".join(self.dim_expr(b) for b in names))
        else:
            feats = self.dim_expr(names[0])
        if cfg.drop_rate > 0:
            init.append(("self.head_drop = nn.Dropout(DROP_RATE)", ""))
        init.append((f"self.head = nn.Linear({feats}, NUM_CLASSES)", "") if cfg.num_classes
                    else ("self.head = nn.Identity()", "NUM_CLASSES = 0: no classifier"))
        init.append(("self.apply(init_weights)", ""))
        if len(names) > 1:
            fwd = [(f'{b} = self.branches["{b}"](x)', f"{self.o('input')} -> {self.o(f'branches.{b}.pool')}")
                   for b in names]
            fwd.append((f"x = self.merge({', '.join(names)})", self.o("merge")))
        else:
            b = names[0]
            fwd = [(f'x = self.branches["{b}"](x)', f"{self.o('input')} -> {self.o(f'branches.{b}.pool')}")]
        if cfg.drop_rate > 0:
            fwd.append(("x = self.head_drop(x)", ""))
        fwd.append(("return self.head(x)", f"{self.i('head')} -> {self.o('head')}: "
                                            f"{'logits' if cfg.num_classes else 'features'}"))
        return _section("the model", _fill('''
            def init_weights(m: nn.Module) -> None:
                """Linear layers: truncated normal (std 0.02) weights and zero biases, as ViT / timm."""
                if isinstance(m, nn.Linear):
                    nn.init.trunc_normal_(m.weight, std=0.02)
                    nn.init.zeros_(m.bias)


            class ConvFormer(nn.Module):
                """Images (B, @C@, H, W) -> @OUT@, any H, W >= @MIN@ (laid out for @H@ x @W@)."""

                def __init__(self):
                    super().__init__()
            @INIT@

                def forward(self, x: torch.Tensor) -> torch.Tensor:
            @FWD@''', C=cfg.in_chans, MIN=cfg.min_size, H=cfg.img_size[0], W=cfg.img_size[1],
                  INIT=_aligned(init, 8), FWD=_aligned(fwd, 8),
                  OUT=f"logits (B, {cfg.num_classes})" if cfg.num_classes else f"features {self.o('head')}"))

    def main(self) -> str:
        merge = '\n    yield "merge", model.merge' if len(self.layout) > 1 else ""
        return _section("run it: python this_file.py [H W]", _fill('''
            def steps(model: ConvFormer):
                """(name, module) of every step: each part of each branch, conv stages and blocks one by one, head."""
                for branch, parts in model.branches.items():
                    for kind, part in parts.named_children():
                        subs = list(part.named_children()) if kind in ("conv", "blocks") else [("", part)]
                        for sub, module in subs:
                            yield ".".join(filter(None, (branch, kind, sub))), module@MERGE@
                yield "head", model.head


            if __name__ == "__main__":
                H, W = map(int, sys.argv[1:3]) if len(sys.argv) > 2 else IMG_SIZE
                torch.manual_seed(0)
                model = ConvFormer().eval()
                x = torch.randn(2, IN_CHANS, H, W)  # a random batch of two images
                print(f"{'input':<20} {tuple(x.shape)}")
                for name, module in steps(model):
                    module.register_forward_hook(lambda m, args, out, name=name: print(f"{name:<20} {tuple(out.shape)}"))
                with torch.no_grad():
                    logits = model(x)
                print(f"logits {tuple(logits.shape)}, {sum(p.numel() for p in model.parameters()):,} parameters")''',
                                                    MERGE=merge))
