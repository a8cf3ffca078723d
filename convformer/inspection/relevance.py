"""Class-specific relevance of a transformer's tokens (Chefer, Gur & Wolf 2021, "Generic Attention-model
Explainability for Interpreting Bi-Modal and Encoder-Decoder Transformers", rules 5 and 6).

Per block, the attention probabilities A (B, heads, N, N) are weighted by the gradient of the explained
class's logit with respect to them, negative contributions dropped, heads averaged:
    Ā = mean_heads(clamp(∂y_c/∂A ⊙ A, min=0))
and accumulated from the first block to the last, starting from the identity (the residual path):
    R = I;  R ← R + Ā @ R.
The relevance of the patch tokens is the class token's row of R (without a class token: the mean over
rows, as the model's mean pooling reads every token), laid out on the token grid. Unlike rollout, the map
depends on the class; unlike Grad-CAM, it reads the attention, so it exists for every model with attention:
early and mid fusion's token grid, late fusion's ViT branch, the plain ViT and timm's ViTs / DeiTs.

The attention and its gradient come from `convformer.inspect(..., relevance_class=...)`, which keeps the
explicit softmax path in the autograd graph for this; the rule itself is the pure function `chefer`.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from . import viz


def chefer(attentions: Sequence[torch.Tensor], grads: Sequence[torch.Tensor]) -> torch.Tensor:
    """The relevance matrix R (B, N, N) from each block's attention and its gradient, (B, heads, N, N) each,
    first block first."""
    if not len(attentions) or len(attentions) != len(grads):
        raise ValueError(f"relevance needs one gradient per attention map, got {len(attentions)} maps and "
                         f"{len(grads)} gradients")
    b, _, n, _ = attentions[0].shape
    r = torch.eye(n, dtype=torch.float32, device=attentions[0].device).expand(b, n, n)
    for a, g in zip(attentions, grads):
        cam = (g.float() * a.float()).clamp(min=0).mean(1)  # (B, N, N)
        r = r + cam @ r
    return r


def token_relevance(r: torch.Tensor, prefix: int) -> torch.Tensor:
    """(B, N, N) -> (B, N): the class token's row, or without one the mean over every row."""
    return r[:, 0] if prefix else r.mean(1)


def relevance_maps(r: torch.Tensor, grid: tuple[int, int], prefix: int) -> torch.Tensor:
    """(B, N, N) -> (B, h, w) maps, each min-max scaled to [0, 1] (prefix tokens dropped; any h x w grid)."""
    grids = torch.from_numpy(viz.tokens_to_grid(token_relevance(r, prefix), grid, prefix))  # (B, h, w)
    lo = grids.flatten(1).amin(1)[:, None, None]
    span = grids.flatten(1).amax(1)[:, None, None] - lo
    return torch.where(span > 0, (grids - lo) / span.clamp_min(1e-12), torch.zeros_like(grids))


def explain(score: torch.Tensor, attentions: dict[str, torch.Tensor], blocks: Sequence[str],
            grid: tuple[int, int], prefix: int, retain_graph: bool = False) -> torch.Tensor:
    """The relevance maps (B, h, w) of `blocks` (the blocks of one token grid, first first) for `score`, the
    summed logit of the explained class; `attentions` still in the autograd graph. Used by `inspect`."""
    grads = torch.autograd.grad(score, [attentions[b] for b in blocks], retain_graph=retain_graph,
                                allow_unused=True)
    grads = [torch.zeros_like(attentions[b]) if g is None else g for b, g in zip(blocks, grads)]
    r = chefer([attentions[b].detach() for b in blocks], [g.detach() for g in grads])
    return relevance_maps(r.cpu(), grid, prefix)


__all__ = ["chefer", "explain", "relevance_maps", "token_relevance"]
