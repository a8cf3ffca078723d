"""Named axes: every shape shown with what each number means, for this model.

A grid is `(B, C, H, W)`, tokens are `(B, N, D)` with `N = prefix + h x w` spelled out for this model
(`N=1+14x14=197`), pooled features are `(B, C)` (from a grid) or `(B, D)` (from tokens), the late merge
shows both branches, and logits are `(B, classes)`. Pure functions on plain shapes and the rows of
`inspect(...).shapes` (anything with `name`, `input_shape`, `output_shape`); the token grid of a branch is
read from its `tokens` row (its input is the grid, its output the tokens), so nothing else is needed.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

Shape = Sequence[int]


def grid(shape: Shape, hw: tuple[int, int] | None = None, prefix: int = 0) -> str:
    """(1, 32, 112, 112) -> '(B=1, C=32, H=112, W=112)'. A token row laid out as a map, (1, 192, 1, 197) with
    a class token and a 14 x 14 grid, -> '(B=1, D=192, 1, N=1+14x14=197)'."""
    b, c, h, w = shape
    if hw is not None and prefix and h == 1 and w == prefix + hw[0] * hw[1]:
        return f"(B={b}, D={c}, 1, N={token_count(w, hw, prefix)})"
    return f"(B={b}, C={c}, H={h}, W={w})"


def token_count(n: int, hw: tuple[int, int] | None, prefix: int = 0) -> str:
    """N spelled out: '1+14x14=197' (class token + grid), '14x14=196', or just '197' when the grid is unknown."""
    if hw is None or prefix + hw[0] * hw[1] != n:
        return str(n)
    return f"{prefix}+{hw[0]}x{hw[1]}={n}" if prefix else f"{hw[0]}x{hw[1]}={n}"


def tokens(shape: Shape, hw: tuple[int, int] | None = None, prefix: int = 0) -> str:
    """(1, 197, 192) with grid 14 x 14 and a class token -> '(B=1, N=1+14x14=197, D=192)'."""
    b, n, d = shape
    return f"(B={b}, N={token_count(n, hw, prefix)}, D={d})"


def vector(shape: Shape, axis: str = "D") -> str:
    """(1, 192) -> '(B=1, D=192)'; axis names the second dimension (C, D, C+D, classes)."""
    b, f = shape
    return f"(B={b}, {axis}={f})"


def named(shape: Shape, hw: tuple[int, int] | None = None, prefix: int = 0, axis: str = "D") -> str:
    """Any shape by its rank: 4 -> grid, 3 -> tokens, 2 -> vector; other ranks as a plain tuple."""
    shape = tuple(shape)
    if len(shape) == 4:
        return grid(shape, hw, prefix)
    if len(shape) == 3:
        return tokens(shape, hw, prefix)
    if len(shape) == 2:
        return vector(shape, axis)
    return str(shape)


def token_grids(rows: Sequence[Any]) -> dict[str, tuple[int, int, int]]:
    """Branch -> (h, w, prefix), read from each branch's `tokens` row: grid in, tokens out."""
    grids = {}
    for r in rows:
        branch, _, kind = r.name.partition(".")
        if kind == "tokens" and len(r.input_shape) == 4 and len(r.output_shape) == 3:
            h, w = r.input_shape[-2:]
            grids[branch] = (h, w, r.output_shape[1] - h * w)
    return grids


def rows(table: Sequence[Any]) -> list[tuple[str, str]]:
    """(input, output) with named axes for every row of a shape table (input first, head last).
    The merge's input names each branch: 'cnn (B=1, C=256) + vit (B=1, D=192)'."""
    grids = token_grids(table)
    names = {r.name for r in table}
    out: list[tuple[str, str]] = []
    axis: dict[str, str] = {}  # branch -> name of its pooled feature axis (C from a grid, D from tokens)
    features = "D"             # axis of the vector going into the head
    for r in table:
        branch, _, kind = r.name.partition(".")
        h, w, prefix = grids.get(branch, (0, 0, 0))
        hw = (h, w) if h else None

        def show(shape: Shape, name: str = "D") -> str:
            return named(shape, hw, prefix, name) if shape else ""

        if r.name == "merge":
            names = list(axis)
            inp = " + ".join(f"{b} {vector(s, axis[b])}" for b, s in zip(names, r.input_shape))
            concat = r.output_shape[-1] == sum(s[-1] for s in r.input_shape)
            features = "+".join(axis.values()) if concat else "D"
            out.append((inp, vector(r.output_shape, features)))
        elif r.name == "head":  # a timm head may pool a grid itself (CoAtNet's ClassifierHead)
            inp = vector(r.input_shape, features) if len(r.input_shape) == 2 else show(r.input_shape)
            out.append((inp, vector(r.output_shape, "classes")))
        else:
            if kind == "pool":  # a branch that ends in tokens pools D, one that ends in a grid C
                axis[branch] = "D" if branch in grids and f"{branch}.grid" not in names else "C"
                features = axis[branch]
            name = axis.get(branch, "D") if kind == "pool" else "D"
            out.append((show(r.input_shape, name), show(r.output_shape, name)))
    return out


def format_table(table: Sequence[Any], human: Any = None) -> str:
    """The shape table as aligned text with named axes (rows with `params`, `flops`, `note`), with a total."""
    human = human or (lambda n: f"{n:,}")
    lines = [("step", "input", "output", "params", "FLOPs", "what")]
    for r, (inp, outp) in zip(table, rows(table)):
        lines.append((r.name, inp, outp, human(r.params), human(r.flops), r.note))
    lines.append(("total", "", "", human(sum(r.params for r in table)), human(sum(r.flops for r in table)), ""))
    widths = [max(len(line[i]) for line in lines) for i in range(6)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines)


def token_note(table: Sequence[Any]) -> str:
    """One line per transformer branch: 'vit: N = 1 + 14 x 14 = 197 tokens of D = 192'."""
    lines = []
    for branch, (h, w, prefix) in token_grids(table).items():
        row = next(r for r in table if r.name == f"{branch}.tokens")
        n, d = row.output_shape[1:]
        first = f"{prefix} + " if prefix else ""
        lines.append(f"{branch}: N = {first}{h} x {w} = {n} tokens of D = {d}")
    return "\n".join(lines)


__all__ = ["format_table", "grid", "named", "rows", "token_count", "token_grids", "token_note", "tokens", "vector"]
