"""Recipe search for the Train tab: many short `fit` runs, each pinned to its own 2 CPUs, in parallel.

    python -m benchmarks.train_recipes search --grid first --out runs.jsonl   # a grid of runs, JSON lines
    python -m benchmarks.train_recipes probe                                  # training images/s per model
    python -m benchmarks.train_recipes recipes --out runs.jsonl               # the committed recipes, as they are
    python -m benchmarks.train_recipes grid --grid vit3                       # a grid's runs as listed

Every run renders (or reads from a .pt cache) the shapes splits, builds the model, then calls
`convformer.train.fit` exactly as the Train tab does, with `torch.set_num_threads(2)` inside a process
pinned by `os.sched_setaffinity` to two CPUs that no other run uses. The JSON line holds the history
(val accuracy and time after every epoch), the data time, and the time to 80 % / 90 % validation accuracy.
On a machine with N free CPUs, N // 2 runs go at once (on distinct physical cores where the topology says
which CPUs are hyper-thread siblings). The numbers in benchmarks/NOTES.md section 9 come from this file.
"""
from __future__ import annotations

import argparse
import functools
import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

CACHE = Path(os.environ.get("RECIPE_CACHE", "/tmp/recipe-cache"))


def _cpu_pairs() -> list[tuple[int, int]]:
    """Pairs of CPUs on distinct physical cores (one thread per core when cores have siblings)."""
    cpus = sorted(os.sched_getaffinity(0))
    seen, firsts = set(), []
    for c in cpus:
        try:
            sib = Path(f"/sys/devices/system/cpu/cpu{c}/topology/thread_siblings_list").read_text().strip()
        except OSError:
            sib = str(c)
        if sib not in seen:
            seen.add(sib)
            firsts.append(c)
    return [(firsts[i], firsts[i + 1]) for i in range(0, len(firsts) - 1, 2)]


def _data(size: int, split: str, n: int, seed: int):
    """Rendered shapes as uint8 (N, 3, H, W), cached on disk per (split, seed, size)."""
    import torch
    from convformer.data import shapes
    from convformer.data.datasets import ImageTensors, materialize
    path = CACHE / f"{split}-{seed}-{size}.pt"
    if path.exists():
        images, labels = torch.load(path)
        if len(images) >= n:
            return ImageTensors(images[:n], labels[:n], list(shapes.CLASSES))
    data = materialize(shapes.ShapesDataset(split, n, size, seed), (size, size), 3, classes=list(shapes.CLASSES))
    CACHE.mkdir(parents=True, exist_ok=True)
    torch.save((data.images, data.labels), str(path) + ".tmp")
    os.replace(str(path) + ".tmp", path)
    return data


def model_config(spec: dict[str, Any]):
    from convformer.presets import SHAPES_PRESETS
    cfg = SHAPES_PRESETS[f"convformer_{spec['fusion']}_shapes"].replace(img_size=spec["img"])
    return cfg.replace(**{k: tuple(v) if isinstance(v, list) else v for k, v in spec.get("model", {}).items()})


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    import torch
    from convformer.model import ConvFormer
    from convformer.train import TrainConfig, fit
    torch.set_num_threads(spec.get("threads", 2))
    t0 = time.perf_counter()
    train = _data(spec["img"], "train", spec["train"], 0)
    val = _data(spec["img"], "val", spec.get("val", 1000), 0)
    data_s = time.perf_counter() - t0
    torch.manual_seed(spec.get("train_cfg", {}).get("seed", 0))  # the run's seed: initialisation and order
    model = ConvFormer(model_config(spec))
    cfg = TrainConfig(progress_bar=False, device=spec.get("device", "cpu"), **spec.get("train_cfg", {}))
    r = fit(model, train, val, cfg)
    hist = [{"epoch": h["epoch"], "val_acc": round(h["val_acc"], 4), "time": round(h["time"], 2)} for h in r.history]

    def reach(level: float) -> float | None:
        return next((h["time"] for h in hist if h["val_acc"] >= level), None)
    return {**spec, "data_s": round(data_s, 2), "train_time": round(r.train_time, 2), "best": round(r.best["val_acc"], 4),
            "t80": reach(0.8), "t90": reach(0.9), "history": hist,
            "images_per_s": round(len(train) * len(r.history) / r.train_time, 1),
            "params": sum(p.numel() for p in model.parameters())}


def probe(spec: dict[str, Any]) -> dict[str, Any]:
    """Training images/s of one model: a bare forward + backward + AdamW step, 2 warm-up + 8 timed steps."""
    import torch
    import torch.nn.functional as F
    from convformer.model import ConvFormer
    torch.set_num_threads(spec.get("threads", 2))
    torch.manual_seed(0)
    model = ConvFormer(model_config(spec))
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    b = spec.get("batch", 128)
    x, y = torch.randn(b, 3, spec["img"], spec["img"]), torch.randint(0, 10, (b,))
    if spec.get("channels_last"):
        model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    net = torch.compile(model) if spec.get("compile") else model
    t0 = time.perf_counter()
    for i in range(10 if not spec.get("compile") else 24):
        if i == 2:
            t, first = time.perf_counter(), time.perf_counter() - t0
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    steps = 8 if not spec.get("compile") else 22
    return {**spec, "images_per_s": round(steps * b / (time.perf_counter() - t), 1), "first_2_steps_s": round(first, 2)}


GRIDS: dict[str, list[dict[str, Any]]] = {}


def _grid_first() -> list[dict[str, Any]]:
    base = {"train_cfg": {"lr": 3e-3, "batch_size": 128, "warmup_epochs": 1.0, "label_smoothing": 0.1}}
    runs = []
    for fusion, img, train in itertools.product(("mid", "vit", "early", "late", "cnn"), (40, 32, 48), (10000, 5000)):
        runs.append({**base, "fusion": fusion, "img": img, "train": train, "budget": 50})
    for fusion in ("mid", "vit", "early"):
        runs += [{**base, "fusion": fusion, "img": 40, "train": 10000, "budget": 50, "tag": tag,
                  "train_cfg": {**base["train_cfg"], **change}} for tag, change in (
            ("lr 6e-3", {"lr": 6e-3}), ("lr 1.5e-3", {"lr": 1.5e-3}), ("bs 64", {"batch_size": 64}),
            ("no augment", {"augment": False}), ("no smoothing", {"label_smoothing": 0.0}))]
    return runs


GRIDS["first"] = _grid_first()


def _grid_cpu() -> list[dict[str, Any]]:
    """Second grid, on the CPU (each run about 55 s of training on 2 cores)."""
    base = {"lr": 3e-3, "batch_size": 128, "warmup_epochs": 0.5, "label_smoothing": 0.1}
    runs = []

    def add(fusion, img, train, tag="base", model=None, **change):
        runs.append({"fusion": fusion, "img": img, "train": train, "budget": 55, "tag": tag,
                     "model": model or {}, "train_cfg": {**base, **change}})
    add("mid", 40, 10000)
    add("mid", 40, 10000, "no augment", augment=False)
    add("mid", 40, 10000, "lr 5e-3", lr=5e-3)
    add("mid", 40, 20000, "20k images")
    add("mid", 40, 10000, "channels_last", channels_last=True)
    add("mid", 32, 20000, "32 px 20k")
    add("mid", 48, 10000, "48 px")
    add("mid", 40, 10000, "conv 0,1,1", model={"conv_depths": (0, 1, 1)})
    add("mid", 40, 10000, "bs 256 lr 4e-3", batch_size=256, lr=4e-3)
    add("mid", 40, 10000, "no aug no ls", augment=False, label_smoothing=0.0)
    add("vit", 40, 10000)
    add("vit", 40, 10000, "noaug lr1.5e-3", augment=False, lr=1.5e-3)
    add("vit", 32, 10000, "p4 noaug 1.5e-3", model={"patch_size": 4}, augment=False, lr=1.5e-3)
    add("vit", 32, 10000, "p4 d2 noaug", model={"patch_size": 4, "depth": 2}, augment=False, lr=1.5e-3)
    add("vit", 48, 10000, "48 noaug 1.5e-3", augment=False, lr=1.5e-3)
    add("vit", 40, 10000, "e96 d3 noaug", model={"embed_dim": 96, "depth": 3, "num_heads": 3}, augment=False,
        lr=1.5e-3)
    add("early", 40, 10000)
    add("early", 40, 10000, "no augment", augment=False)
    add("early", 40, 20000, "20k images")
    add("early", 48, 10000, "48 px")
    add("early", 40, 10000, "lr 2e-3", lr=2e-3)
    add("late", 40, 10000)
    add("late", 40, 10000, "no augment", augment=False)
    add("late", 48, 10000, "48 px")
    add("late", 32, 20000, "32 px 20k")
    add("cnn", 40, 10000)
    add("cnn", 32, 10000, "32 px")
    return runs


GRIDS["cpu"] = _grid_cpu()


def _grid_curves() -> list[dict[str, Any]]:
    """Third grid: accuracy per epoch of candidate recipes, on the GPU in float32 (the CPU's numerics, minutes
    faster); each candidate's epochs are what ~55 s of 2-core CPU training allows at its probed images/s."""
    runs = []

    def add(fusion, epochs, tag, model=None, **change):
        cfg = {"lr": 3e-3, "batch_size": 128, "warmup_epochs": 0.5, "label_smoothing": 0.1, "augment": False,
               "amp": False, "epochs": epochs, **change}
        runs.append({"fusion": fusion, "img": 40, "train": 10000, "tag": tag, "model": model or {},
                     "device": "cuda", "train_cfg": cfg})
    c011 = {"conv_depths": (0, 1, 1)}
    add("mid", 6, "c011 lr3e-3", c011)
    add("mid", 6, "c011 lr5e-3", c011, lr=5e-3)
    add("mid", 6, "c011 lr8e-3", c011, lr=8e-3)
    add("mid", 6, "c011 aug lr5e-3", c011, lr=5e-3, augment=True)
    add("mid", 6, "c011 lr5e-3 wu.25 ls.05", c011, lr=5e-3, warmup_epochs=0.25, label_smoothing=0.05)
    add("mid", 5, "base lr5e-3", None, lr=5e-3)
    add("mid", 7, "c011 lr5e-3 bs256", c011, lr=5e-3, batch_size=256)
    add("early", 5, "lr3e-3")
    add("early", 5, "lr5e-3", None, lr=5e-3)
    add("early", 5, "avg lr3e-3", {"pool": "avg"})
    add("early", 5, "avg lr5e-3", {"pool": "avg"}, lr=5e-3)
    add("early", 6, "avg d2 lr5e-3", {"pool": "avg", "depth": 2}, lr=5e-3)
    add("late", 6, "lr3e-3")
    add("late", 6, "lr5e-3", None, lr=5e-3)
    add("late", 6, "aug lr5e-3", None, lr=5e-3, augment=True)
    add("cnn", 7, "lr3e-3")
    add("cnn", 7, "lr5e-3", None, lr=5e-3)
    add("cnn", 7, "aug lr3e-3", None, augment=True)
    add("vit", 7, "lr1e-3 wu1", None, lr=1e-3, warmup_epochs=1.0)
    add("vit", 7, "lr2e-3 wu1 ls0", None, lr=2e-3, warmup_epochs=1.0, label_smoothing=0.0)
    add("vit", 7, "d2 e96 lr2e-3", {"depth": 2, "embed_dim": 96, "num_heads": 3}, lr=2e-3, warmup_epochs=1.0)
    return runs


GRIDS["curves"] = _grid_curves()


def _grid_last() -> list[dict[str, Any]]:
    """Last grid, on 2 CPU cores: the candidates that should fill (not pass) a minute, one run each."""
    runs = []

    def add(fusion, epochs, tag, model=None, **change):
        cfg = {"lr": 5e-3, "batch_size": 128, "warmup_epochs": 0.5, "label_smoothing": 0.1, "augment": False,
               "epochs": epochs, **change}
        runs.append({"fusion": fusion, "img": 40, "train": 10000, "tag": tag, "model": model or {}, "train_cfg": cfg})
    add("mid", 6, "base lr5e-3 6ep")
    add("mid", 7, "c011 lr5e-3 7ep", {"conv_depths": (0, 1, 1)})
    add("early", 7, "avg d2 lr5e-3 7ep", {"pool": "avg", "depth": 2})
    add("early", 7, "avg d2 lr6e-3 7ep", {"pool": "avg", "depth": 2}, lr=6e-3)
    add("cnn", 6, "lr3e-3 6ep", None, lr=3e-3)
    add("late", 6, "lr5e-3 6ep again")
    add("late", 7, "lr5e-3 7ep")
    add("vit", 7, "d2 e96 lr2e-3 aug", {"depth": 2, "embed_dim": 96, "num_heads": 3}, lr=2e-3, augment=True,
        warmup_epochs=1.0)
    return runs


GRIDS["last"] = _grid_last()


VIT = {"depth": 2, "embed_dim": 96, "num_heads": 3, "pos_embed": "sincos"}  # the vit recipe's model (section 10)


def _muon_run(tag: str, fusion: str, train: int, epochs: int, model: dict[str, Any], **change) -> dict[str, Any]:
    """A worker spec at 40 px with Muon, no augmentation and a 1-epoch warm-up, unless `change` says otherwise."""
    cfg = {"warmup_epochs": 1.0, "augment": False, "optimizer": "muon", "epochs": epochs, **change}
    return {"fusion": fusion, "img": 40, "train": train, "tag": tag, "model": model, "train_cfg": cfg}


def _grid_vit3() -> list[dict[str, Any]]:
    """The library runs of NOTES section 10 (L1-L10, M1-M3; raw: train_runs/6-cpu-vit-library.jsonl): the pure ViT
    with Muon and fixed sin-cos positions at the minute, then Muon in the hybrids' recipes."""
    run, hybrid = functools.partial(_muon_run, lr=6e-3), {"lr": 5e-3, "warmup_epochs": 0.5}
    return [run("L1 e96d2 16ep", "vit", 10000, 16, VIT),
            run("L2 e64d2 20ep", "vit", 10000, 20, {**VIT, "embed_dim": 64, "num_heads": 2}),
            run("L3 e96d2 bs64 12ep", "vit", 10000, 12, VIT, batch_size=64),
            run("L4 e96d2 mlp2 18ep", "vit", 10000, 18, {**VIT, "mlp_ratio": 2.0}),
            run("L5 e96d2 20k x 8ep", "vit", 20000, 8, VIT),
            run("L6 e96d2 16ep augment", "vit", 10000, 16, VIT, augment=True),
            run("L7 e96d2 20k x 7ep", "vit", 20000, 7, VIT),
            run("L8 e96d2 30k x 5ep", "vit", 30000, 5, VIT),
            run("L9 20k x 7ep lr8e-3", "vit", 20000, 7, VIT, lr=8e-3),
            run("L10 18k x 8ep lr6e-3", "vit", 18000, 8, VIT),
            run("M1 mid muon", "mid", 10000, 6, {}, **hybrid),
            run("M2 early muon", "early", 10000, 7, {"pool": "avg", "depth": 2}, **hybrid),
            run("M3 late muon", "late", 10000, 7, {}, **hybrid)]


GRIDS["vit3"] = _grid_vit3()


def _grid_vit4() -> list[dict[str, Any]]:
    """NOTES section 11 (N1-N6): the vit recipe (L9) made about 15 % cheaper, so that its run fits the minute
    inside the app too, where it trains ~1.2x slower than from the command line."""
    run = functools.partial(_muon_run, lr=8e-3)
    return [run("N1 20k x 6ep lr8e-3", "vit", 20000, 6, VIT),
            run("N2 20k x 6ep lr1e-2", "vit", 20000, 6, VIT, lr=1e-2),
            run("N3 20k x 7ep bs256 lr1.2e-2", "vit", 20000, 7, VIT, batch_size=256, lr=1.2e-2),
            run("N4 20k x 7ep mlp3", "vit", 20000, 7, {**VIT, "mlp_ratio": 3.0}),
            run("N5 16k x 7ep", "vit", 16000, 7, VIT),
            run("N6 20k x 6ep wu0.5", "vit", 20000, 6, VIT, warmup_epochs=0.5)]


GRIDS["vit4"] = _grid_vit4()


def _grid_vit5() -> list[dict[str, Any]]:
    """NOTES section 11 (P1-P7): a narrower MLP (N4's lead) and two more seeds of the candidates, since one
    seed moved the same settings by about 3 points (section 10, E1 / L1)."""
    run = functools.partial(_muon_run, fusion="vit", train=20000, epochs=7, lr=8e-3)
    return [run("P1 mlp2", model={**VIT, "mlp_ratio": 2.0}),
            run("P2 mlp3 lr1e-2", model={**VIT, "mlp_ratio": 3.0}, lr=1e-2),
            run("P3 mlp3 seed1", model={**VIT, "mlp_ratio": 3.0}, seed=1),
            run("P4 mlp3 seed2", model={**VIT, "mlp_ratio": 3.0}, seed=2),
            run("P5 L9 seed1", model=VIT, seed=1),
            run("P6 L9 seed2", model=VIT, seed=2),
            run("P7 mlp2 seed1", model={**VIT, "mlp_ratio": 2.0}, seed=1)]


GRIDS["vit5"] = _grid_vit5()


def recipe_specs(fusions: list[str] | None = None, optimizer: str | None = None,
                 seeds: list[int] | None = None) -> list[dict[str, Any]]:
    """Worker specs that train exactly the committed recipes (`convformer.train.recipes.RECIPES`), or with another
    optimizer (the side-by-side of NOTES section 10), once per seed (default: the recipe's seed 0)."""
    from convformer.train.recipes import RECIPES
    specs = []
    for fusion, r in RECIPES.items():
        if fusions and fusion not in fusions:
            continue
        cfg = {k: getattr(r, k) for k in ("epochs", "lr", "batch_size", "warmup_epochs", "label_smoothing",
                                           "augment", "optimizer")}
        if optimizer:
            cfg["optimizer"] = optimizer
        for seed in seeds or [0]:
            specs.append({"fusion": fusion, "img": r.img_size, "train": r.train_size, "val": r.val_size,
                          "tag": f"recipe ({cfg['optimizer']})" + (f" seed{seed}" if seed else ""),
                          "model": dict(r.model), "train_cfg": {**cfg, "seed": seed}})
    return specs


def final(pairs: list[tuple[int, int]], out, budget: float = 52.0) -> None:
    """Curves on the GPU (CPU probes alongside), then each stage's best candidate that fits `budget` seconds
    of 2-core training, run for real on 2 pinned CPU cores (two candidates for mid)."""
    specs = GRIDS["curves"]
    cpu_pairs, gpu_cpus = pairs[:4], [c for p in pairs[4:] for c in p]
    keys = sorted({_key(s) for s in specs})
    probe_specs = [{"fusion": f, "img": i, "batch": b, "model": json.loads(m)} for f, i, b, m, _ in keys]
    gpu_slots = [(c,) for c in gpu_cpus]
    import threading
    probes: list[dict[str, Any]] = []
    t = threading.Thread(target=lambda: probes.extend(run_all("probe1", probe_specs, cpu_pairs, out)))
    t.start()
    curves = run_all("worker", [dict(s) for s in specs], gpu_slots, out)
    t.join()
    rate = {(r["fusion"], r["img"], r["batch"], json.dumps(r["model"])): r["images_per_s"] for r in probes}
    chosen = []
    for fusion in ("mid", "early", "late", "cnn", "vit"):
        fits = []
        for c in curves:
            if c["fusion"] != fusion:
                continue
            ips = rate.get(_key(c)[:4])
            tc = c["train_cfg"]
            seconds = tc["epochs"] * (c["train"] + 1000 / 3) / ips if ips else 1e9
            if seconds <= budget:
                fits.append((c["best"], seconds, c))
        fits.sort(key=lambda x: -x[0])
        for best, seconds, c in fits[: 2 if fusion == "mid" else 1]:
            print(f"chosen {fusion} {c['tag']}: {best:.1%} on the GPU, predicted {seconds:.0f} s on 2 cores",
                  flush=True)
            chosen.append({**{k: v for k, v in c.items() if k in ("fusion", "img", "train", "tag", "model")},
                           "device": "cpu", "phase": "cpu",
                           "train_cfg": {**c["train_cfg"], "amp": True}, "predicted_s": round(seconds, 1)})
    run_all("worker", chosen, pairs, out)
GRIDS["smoke"] = [{"fusion": "mid", "img": 32, "train": 300, "val": 100, "budget": 3}]


def _key(s: dict[str, Any]) -> tuple:
    return (s["fusion"], s["img"], s.get("train_cfg", {}).get("batch_size", 128), json.dumps(s.get("model", {})),
            bool(s.get("train_cfg", {}).get("channels_last")))


def _epochs(spec: dict[str, Any], rate: dict[tuple, float]) -> int:
    """Epochs that fit the run's time budget at the probed images/s (10 % for evaluation)."""
    ips = rate.get(_key(spec))
    if ips is None:
        return spec.get("epochs", 5)
    return max(1, min(60, int(spec["budget"] * 0.9 * ips / spec["train"])))


def _launch(kind: str, spec: dict[str, Any], cpus: tuple[int, ...]) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": str(len(cpus)), "PYTHONUNBUFFERED": "1"}
    spec.setdefault("threads", len(cpus))
    return subprocess.Popen(["taskset", "-c", ",".join(map(str, cpus)), sys.executable, "-m",
                             "benchmarks.train_recipes", kind, json.dumps(spec)],
                            stdout=subprocess.PIPE, text=True, env=env)


def run_all(kind: str, specs: list[dict[str, Any]], pairs: list[tuple[int, int]], out) -> list[dict[str, Any]]:
    """Run specs on the CPU pairs, as many at once as there are pairs; write each result as it arrives."""
    todo, running, results = list(specs), [], []
    while todo or running:
        free = [p for p in pairs if p not in {q for q, _ in running}]
        while todo and free:
            spec, cpus = todo.pop(0), free.pop(0)
            running.append((cpus, _launch(spec.pop("kind", kind), spec, cpus)))
        time.sleep(0.2)
        for item in list(running):
            if item[1].poll() is not None:
                running.remove(item)
                text = item[1].stdout.read().strip().splitlines()
                if item[1].returncode == 0 and text:
                    res = json.loads(text[-1])
                    results.append(res)
                    if out is not None:
                        out.write(json.dumps(res) + "\n")
                        out.flush()
                    print(_line(res), flush=True)
    return results


def _line(r: dict[str, Any]) -> str:
    if "history" not in r:
        return (f"probe {r['fusion']:5} {r['img']} px b{r.get('batch', 128)} {r.get('model') or ''} "
                f"{'NHWC ' if r.get('channels_last') else ''}{'compiled ' if r.get('compile') else ''}"
                f"{r['images_per_s']:.0f} images/s (first 2 steps {r['first_2_steps_s']} s)")
    return (f"{r['fusion']:5} {r['img']} px {r['train']:>5} x {len(r['history'])} ep {r.get('tag', ''):14} "
            f"best {r['best']:.1%}  t80 {r['t80']}  t90 {r['t90']}  train {r['train_time']:.0f} s  data "
            f"{r['data_s']:.0f} s  {r['images_per_s']:.0f} img/s")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.train_recipes")
    p.add_argument("command", choices=("search", "probe", "worker", "probe1", "final", "last", "grid", "recipes"))
    p.add_argument("spec", nargs="?", help="worker: a JSON spec")
    p.add_argument("--grid", default="first")
    p.add_argument("--out", help="JSON lines file")
    p.add_argument("--compile", action="store_true", help="also probe torch.compile (mid, 40 px)")
    p.add_argument("--slots", type=int, help="runs at once (default: one per free CPU pair)")
    p.add_argument("--fusions", nargs="+", help="recipes: only these stages")
    p.add_argument("--optimizer", help="recipes: train with this optimizer instead of the recipe's")
    p.add_argument("--seeds", nargs="+", type=int, help="recipes: one run per seed (default: 0, the recipe's)")
    a = p.parse_args(argv)
    if a.command == "worker":
        print(json.dumps(worker(json.loads(a.spec))))
        return
    if a.command in ("grid", "recipes"):  # as listed, each on its own CPU pair (one at a time on 2 cores)
        specs = recipe_specs(a.fusions, a.optimizer, a.seeds) if a.command == "recipes" else GRIDS[a.grid]
        for spec in specs:
            _data(spec["img"], "train", spec["train"], 0)
            _data(spec["img"], "val", spec.get("val", 1000), 0)
        run_all("worker", specs, _cpu_pairs()[: a.slots or None], open(a.out, "a") if a.out else None)
        return
    if a.command == "last":
        pairs = _cpu_pairs()
        _data(40, "train", 10000, 0)
        _data(40, "val", 1000, 0)
        run_all("worker", GRIDS["last"], pairs, open(a.out, "a") if a.out else None)
        return
    if a.command == "final":
        pairs = _cpu_pairs()
        print(f"CPU pairs: {pairs}", flush=True)
        for size, n in ((40, 10000),):
            _data(size, "train", n, 0)
            _data(size, "val", 1000, 0)
        final(pairs, open(a.out, "a") if a.out else None)
        return
    if a.command == "probe1":
        print(json.dumps(probe(json.loads(a.spec))))
        return
    pairs = _cpu_pairs()[: a.slots] if a.slots else _cpu_pairs()
    print(f"CPU pairs: {pairs}", flush=True)
    out = open(a.out, "a") if a.out else None
    specs = GRIDS[a.grid]
    keys = sorted({_key(s) for s in specs})
    probes = run_all("probe1", [{"fusion": f, "img": i, "batch": b, "model": json.loads(m), "channels_last": c}
                                for f, i, b, m, c in keys], pairs, out)
    if a.command == "probe":
        run_all("probe1", [{"fusion": "mid", "img": 40, "compile": True}], pairs, out)
        return
    rate = {(r["fusion"], r["img"], r["batch"], json.dumps(r["model"]), r["channels_last"]): r["images_per_s"]
            for r in probes}
    for s in specs:  # render every split once before the runs share it
        _data(s["img"], "train", max(x["train"] for x in specs if x["img"] == s["img"]), 0)
        _data(s["img"], "val", 1000, 0)
    specs = [{**s, "train_cfg": {**s.get("train_cfg", {}), "epochs": _epochs(s, rate)}} for s in specs]
    if a.compile:
        specs.insert(len(pairs), {"fusion": "mid", "img": 40, "compile": True, "kind": "probe1"})
    run_all("worker", specs, pairs, out)


if __name__ == "__main__":
    main()
