"""One training step of each recipe with the optimizers before and after NOTES section 12, interleaved in one
process: torch.optim.Muon + for-loop AdamW (949a7fb) against convformer.train.muon.Muon (batched by shape, float32 on the
CPU) + fused AdamW (`train.optimizers`). Forward, label-smoothed cross-entropy, backward, clipping, the steps;
batch 128 at 40 px, 2 threads, 30 rounds of 3 steps each, median.
Usage: python benchmarks/train_runs/optimizer_step_ab.py vit mid early late"""
import statistics, sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import torch, torch.nn.functional as F
from convformer.train.recipes import RECIPES
from convformer.model import ConvFormer
from convformer.train import loop as T
torch.set_num_threads(2)


def before(model, cfg):
    groups = T.param_groups(model, cfg.weight_decay)
    head = {id(p) for p in model.get_classifier().parameters()}
    hidden = [p for p in groups[0]["params"] if p.ndim == 2 and id(p) not in head]
    if cfg.optimizer == "adamw" or not hidden:
        return [torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.999))]
    groups[0]["params"] = [p for p in groups[0]["params"] if p.ndim != 2 or id(p) in head]
    return [torch.optim.Muon(hidden, lr=cfg.lr, weight_decay=cfg.weight_decay, adjust_lr_fn="match_rms_adamw"),
            torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.999))]


def step(model, opts, x, y):
    loss = F.cross_entropy(model(x), y, label_smoothing=0.1)
    for o in opts:
        o.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    for o in opts:
        o.step()


x, y = torch.randn(128, 3, 40, 40), torch.randint(0, 10, (128,))
for fusion in sys.argv[1:]:
    r = RECIPES[fusion]
    runs = {}
    for name, make in (("before", before), ("after", T.optimizers)):
        torch.manual_seed(0)
        model = ConvFormer(r.model_config()).train()
        runs[name] = (model, make(model, r.train_config()), [])
    for _ in range(5):
        for model, opts, _t in runs.values():
            step(model, opts, x, y)
    for _ in range(30):
        for model, opts, times in runs.values():
            t0 = time.perf_counter()
            for _ in range(3):
                step(model, opts, x, y)
            times.append((time.perf_counter() - t0) / 3)
    b, a = (statistics.median(runs[k][2]) * 1e3 for k in ("before", "after"))
    print(f"{fusion}: step before {b:.1f} ms, after {a:.1f} ms, speed-up {b / a:.3f}x")
