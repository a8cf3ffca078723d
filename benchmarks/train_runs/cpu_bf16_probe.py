"""CPU bf16 autocast (AMX) against float32 for one training step of each recipe (NOTES section 11): a bare
forward + backward + the recipe's optimizer step, batch 128 at 40 px, 2 threads, 10 timed steps after 4, twice each.
Usage: python benchmarks/train_runs/cpu_bf16_probe.py vit late mid cnn"""
import sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import torch, torch.nn.functional as F
from convformer.train.recipes import RECIPES
from convformer.model import ConvFormer
from convformer.train import optimizers
torch.set_num_threads(2)
print(torch.backends.cpu.get_cpu_capability(), torch.ops.mkldnn._is_mkldnn_bf16_supported())
for fusion in sys.argv[1:]:
    r = RECIPES[fusion]
    for amp in (False, True, False, True):
        torch.manual_seed(0)
        m = ConvFormer(r.model_config())
        opts = optimizers(m, r.train_config())
        x, y = torch.randn(128, 3, 40, 40), torch.randint(0, 10, (128,))
        for i in range(14):
            if i == 4: t = time.perf_counter()
            with torch.autocast("cpu", torch.bfloat16, enabled=amp):
                loss = F.cross_entropy(m(x), y)
            for o in opts: o.zero_grad()
            loss.backward()
            for o in opts: o.step()
        print(fusion, "bf16" if amp else "fp32", round(10 * 128 / (time.perf_counter() - t)), "img/s", flush=True)
