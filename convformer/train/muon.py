"""`torch.optim.Muon` with one Newton-Schulz iteration per shape instead of per matrix.

The math is torch's (momentum, Nesterov, the quintic iteration and its coefficients, weight decay, the
`adjust_lr_fn` scaling); only the order of work differs. A transformer's matrices come in a few shapes
(qkv, proj, fc1, fc2, once per block), so stacking the matrices of a shape and orthogonalising them in one
batched iteration turns 5 x 3 small matmuls per matrix into the same per shape, and the momentum and update
run as foreach ops. The iteration runs in float32 on the CPU (bf16 matmuls this small are slower there) and in
bf16 elsewhere, as torch's does. NOTES section 12 measures it against torch's step.
"""
from __future__ import annotations

import math

import torch

__all__ = ["Muon", "orthogonalize"]


def lr_scale(shape: torch.Size, adjust_lr_fn: str | None) -> float:
    """torch.optim.Muon's per-matrix factor on the learning rate (its `adjust_lr_fn`), for a (rows, cols) matrix."""
    rows, cols = shape[:2]
    if adjust_lr_fn == "match_rms_adamw":  # the update's RMS made AdamW's (~0.2), so one lr serves both
        return 0.2 * math.sqrt(max(rows, cols))
    if adjust_lr_fn == "spectral_unclamped":
        return math.sqrt(rows / cols)
    return math.sqrt(max(1, rows / cols))  # None or "original"


def ns_dtype(device: torch.device) -> torch.dtype:
    """What the iteration computes in: float32 on the CPU (small bf16 matmuls are slower there), else bf16."""
    return torch.float32 if device.type == "cpu" else torch.bfloat16


def orthogonalize(g: torch.Tensor, coefficients: tuple[float, float, float], steps: int, eps: float) -> torch.Tensor:
    """Newton-Schulz iteration towards U V^T for a stack of matrices (n, rows, cols), as torch.optim.Muon's."""
    a, b, c = coefficients
    x = g.to(ns_dtype(g.device))
    tall = x.size(-2) > x.size(-1)
    if tall:
        x = x.mT
    x = x / x.norm(dim=(-2, -1), keepdim=True).clamp(min=eps)  # spectral norm <= Frobenius norm <= 1
    for _ in range(steps):
        gram = x @ x.mT
        x = torch.baddbmm(x, torch.baddbmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x.mT if tall else x


class Muon(torch.optim.Muon):
    """torch.optim.Muon (same arguments, state and result up to rounding), batched over matrices of one shape."""

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            bufs = [self.state[p].setdefault("momentum_buffer", torch.zeros_like(p)) for p in params]
            torch._foreach_lerp_(bufs, grads, 1 - group["momentum"])
            updates = torch._foreach_lerp(grads, bufs, group["momentum"]) if group["nesterov"] else bufs
            if group["weight_decay"]:
                torch._foreach_mul_(params, 1 - group["lr"] * group["weight_decay"])
            by_shape: dict[torch.Size, list[int]] = {}
            for i, p in enumerate(params):
                by_shape.setdefault(p.shape, []).append(i)
            for shape, index in by_shape.items():
                ortho = orthogonalize(torch.stack([updates[i] for i in index]), group["ns_coefficients"],
                                      group["ns_steps"], group["eps"])
                lr = group["lr"] * lr_scale(shape, group["adjust_lr_fn"])
                torch._foreach_add_([params[i] for i in index], list(ortho.to(params[index[0]].dtype).unbind(0)),
                                    alpha=-lr)
        return loss
