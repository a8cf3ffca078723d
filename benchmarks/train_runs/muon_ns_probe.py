"""Newton-Schulz iteration for the vit recipe's 8 hidden matrices (2 blocks x qkv, proj, fc1, fc2), 2 threads
(NOTES section 12): torch.optim.Muon's own (bf16, one matrix at a time) against float32, and against one batched
iteration per shape (convformer.train.muon.orthogonalize). Usage: python benchmarks/train_runs/muon_ns_probe.py"""
import sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import torch
from torch.optim._muon import _zeropower_via_newtonschulz
from convformer.train.muon import orthogonalize
torch.set_num_threads(2)
COEF = (3.4445, -4.7750, 2.0315)
grads = [torch.randn(s) for s in [(288, 96), (96, 96), (384, 96), (96, 384)] * 2]
by_shape = {}
for g in grads:
    by_shape.setdefault(g.shape, []).append(g)


def bf16_each():
    for g in grads:
        _zeropower_via_newtonschulz(g, COEF, 5, 1e-7)


def fp32_each():
    for g in grads:
        orthogonalize(g[None], COEF, 5, 1e-7)


def fp32_batched():
    for gs in by_shape.values():
        orthogonalize(torch.stack(gs), COEF, 5, 1e-7)


for name, f in (("torch (bf16, each)", bf16_each), ("float32, each", fp32_each), ("float32, batched", fp32_batched)):
    for _ in range(5):
        f()
    t0 = time.perf_counter()
    for _ in range(50):
        f()
    print(f"{name}: {(time.perf_counter() - t0) / 50 * 1e3:.2f} ms per step")
