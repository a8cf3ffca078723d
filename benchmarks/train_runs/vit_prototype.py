"""The throwaway prototype behind NOTES section 10's V13-V22 and E1-E7 (not part of the library): it swaps modules of a library
model (patch LayerNorm, sin-cos positions, QK-norm, relative position bias, Muon via a wrapper, distillation targets)
and calls `convformer.train.fit` unchanged. Usage: python vit_prototype.py '<json spec>' (raw output: 6-cpu-vit-prototype.jsonl)."""
import json, sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root
import torch, torch.nn as nn, torch.nn.functional as F
from benchmarks.train_recipes import _data, model_config
from convformer.model import ConvFormer
from convformer.train import TrainConfig, fit

class PatchLN(nn.Module):
    def __init__(self, p, C, D, ln_in=True, ln_out=True):
        super().__init__()
        self.p = p
        self.norm_in = nn.LayerNorm(p * p * C) if ln_in else nn.Identity()
        self.proj = nn.Linear(p * p * C, D)
        self.norm_out = nn.LayerNorm(D) if ln_out else nn.Identity()
    def forward(self, x):
        x = F.pixel_unshuffle(x, self.p).permute(0, 2, 3, 1)  # (B, h, w, C p p)
        x = self.norm_out(self.proj(self.norm_in(x)))
        return x.permute(0, 3, 1, 2)

spec = json.loads(sys.argv[1])
torch.set_num_threads(2)
train = _data(spec["img"], "train", spec["train"], 0)
val = _data(spec["img"], "val", 1000, 0)
torch.manual_seed(0)
cfg = model_config(spec)
model = ConvFormer(cfg)
vit = model.branches[cfg.fusion] if cfg.fusion == "vit" else None
hacks = spec.get("hacks", [])
if "patchln" in hacks or "patchln_in" in hacks:
    vit.patch = PatchLN(cfg.patch_size, 3, cfg.embed_dim, ln_out="patchln" in hacks)
if "sincos" in hacks or "sincos_learn" in hacks:
    from timm.layers import build_sincos2d_pos_embed
    g = cfg.grid_size()
    pe = build_sincos2d_pos_embed(list(g), cfg.embed_dim).reshape(1, g[0] * g[1], cfg.embed_dim)
    del vit.tokens.pos_embed
    vit.tokens.pos_embed = nn.Parameter(pe, requires_grad="sincos_learn" in hacks)
if "qknorm" in hacks:
    from convformer.layers import Attention
    import types
    def fwd(self, x):
        B, N, C = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(B, N, C))
    for m in model.modules():
        if isinstance(m, Attention):
            m.q_norm, m.k_norm = nn.LayerNorm(m.head_dim), nn.LayerNorm(m.head_dim)
            m.forward = types.MethodType(fwd, m)
if "relpos" in hacks or "relpos_nopos" in hacks:
    from convformer.layers import Attention
    import types
    gh, gw = cfg.grid_size()
    ys, xs = torch.meshgrid(torch.arange(gh), torch.arange(gw), indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()
    idx = (ys[:, None] - ys[None, :] + gh - 1) * (2 * gw - 1) + (xs[:, None] - xs[None, :] + gw - 1)
    def fwd(self, x):
        B, N, C = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        if hasattr(self, "q_norm"):
            q, k = self.q_norm(q), self.k_norm(k)
        bias = self.rel[:, idx]  # (nh, N, N)
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.unsqueeze(0))
        return self.proj(x.transpose(1, 2).reshape(B, N, C))
    for m in model.modules():
        if isinstance(m, Attention):
            m.rel = nn.Parameter(torch.zeros(m.num_heads, (2 * gh - 1) * (2 * gw - 1)))
            m.forward = types.MethodType(fwd, m)
    if "relpos_nopos" in hacks:
        del vit.tokens.pos_embed
        vit.tokens.pos_embed = nn.Parameter(torch.zeros(1, gh * gw, cfg.embed_dim), requires_grad=False)
if "muon" in hacks:
    head_ids = {id(p) for p in model.head.parameters()}
    real_adamw = torch.optim.AdamW
    mscale = spec.get("muon_scale", 1.0)
    class Combo(torch.optim.Optimizer):
        def __init__(self, groups, lr, betas):
            hid = lambda p: p.ndim == 2 and id(p) not in head_ids
            muon_ps = [p for g in groups for p in g["params"] if hid(p)]
            rest = [{"params": [p for p in g["params"] if not hid(p)], "weight_decay": g["weight_decay"]} for g in groups]
            super().__init__([torch.zeros(1, requires_grad=True)], {"lr": lr})
            self.muon = torch.optim.Muon(muon_ps, lr=lr * mscale, weight_decay=0.05, adjust_lr_fn="match_rms_adamw")
            self.adam = real_adamw(rest, lr=lr, betas=betas)
            for g in self.muon.param_groups:
                g["lr"] = lr * mscale
            self.param_groups = self.muon.param_groups + self.adam.param_groups
        def step(self, closure=None):
            self.muon.step(); self.adam.step()
        def zero_grad(self, set_to_none=True):
            self.muon.zero_grad(set_to_none); self.adam.zero_grad(set_to_none)
    torch.optim.AdamW = Combo
if spec.get("kd"):
    from convformer.export.checkpoint import load_checkpoint
    from convformer.data.datasets import ImageTensors
    from convformer.train.loop import evaluate, normalizer
    t0 = time.perf_counter()
    teacher = load_checkpoint("/work/main/convformer/weights/cnn.safetensors").eval()
    big = _data(64, "train", spec["train"], 0)
    print("teacher val@64", evaluate(teacher, _data(64, "val", 1000, 0))["acc"], file=sys.stderr)
    norm = normalizer(teacher, torch.device("cpu"))
    with torch.inference_mode():
        logits = torch.cat([teacher(norm(big.images[i:i + 500].float() / 255)) for i in range(0, len(big), 500)])
    T, a = spec["kd"]
    soft = (logits / T).softmax(1)
    hard = F.one_hot(train.labels, 10).float()
    train = ImageTensors(train.images, train.labels, train.classes)
    train.labels = a * soft + (1 - a) * hard
    print("teacher time", time.perf_counter() - t0, file=sys.stderr)
tc = TrainConfig(progress_bar=False, device="cpu", **spec.get("train_cfg", {}))
r = fit(model, train, val, tc)
hist = [(round(h["time"], 1), round(h["val_acc"], 3)) for h in r.history]
print(json.dumps({**spec, "best": round(r.best["val_acc"], 4), "time": round(r.train_time, 1),
                  "ips": round(len(train) * len(r.history) / r.train_time), "hist": hist,
                  "loss": round(r.history[-1]["train_loss"], 3)}), flush=True)
