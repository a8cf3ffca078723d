"""Model benchmark: forward latency (batch 1), throughput (large batch), parameters, FLOPs (attention
included) and achieved GFLOP/s for every ConvFormer preset and a set of timm references, all on the same
machine, input size and thread count in one run; plus the overhead of a full `convformer.inspect` against a
plain forward of the same model.

Timings are robust to a busy machine: every model is warmed up, then the models are timed in interleaved
rounds (the order reversed every other round), so a burst of load from another process hits all of them;
each figure is the median over all rounds. Ratios are taken between figures from the same run.

FLOPs count multiply-adds as 2 (torch.utils.flop_counter). SDPA on CPU is reported as zero by the counter,
so attention is counted on the explicit path: ConvFormer through `convformer.inspect(...).flops`, timm models
with `fused_attn = False` set on their attention modules while counting.
"""
from __future__ import annotations

import contextlib
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

import timm
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import convformer
from convformer import inspect
from convformer.references import REFERENCES as IMAGENET, load_reference

HYBRIDS = ("mobilevit_xs", "levit_128s", "coatnet_nano_rw_224", "vit_small_r26_s32_224")
REFERENCES = ("deit_tiny_patch16_224", "resnet18", *HYBRIDS)
# family -> the timm models its achieved GFLOP/s is compared with (the median of their GFLOP/s)
FAMILY_REFS = {"vit": ("deit_tiny_patch16_224",), "cnn": ("resnet18",),
               "early": HYBRIDS, "mid": HYBRIDS, "late": HYBRIDS}
# the ImageNet reference of each fusion stage (convformer.references), random weights: imagenet_<fusion>
IMAGENET_NAMES = tuple(f"imagenet_{fusion}" for fusion in IMAGENET)
IMG_SIZE = 224


@dataclass
class Settings:
    """How much to measure. `quick()` is the CI smoke setting: a few repeats, nothing is trustworthy."""
    batch_sizes: tuple[int, ...] = (1, 32)       # the first is the latency batch, the last the throughput one
    warmup: tuple[int, int] = (3, 1)               # untimed calls per model: batch 1, larger batches
    rounds: tuple[int, int] = (12, 4)              # interleaved rounds: batch 1, larger batches
    per_round: tuple[int, int] = (3, 1)            # timed calls per model per round: batch 1, larger
    inspect_rounds: int = 12                       # plain / inspect pairs per model
    device: str = "cpu"
    amp: str | None = None                         # autocast dtype name ("bfloat16", "float16") or None
    channels_last: bool = False                    # applied to every model alike when set
    clock: str = "wall"                            # wall: time.perf_counter; cpu: process CPU time, for
                                                   # A/B work on a busy machine with --threads 1 only

    @classmethod
    def quick(cls, batch_sizes: tuple[int, ...] = (1, 2)) -> "Settings":
        return cls(batch_sizes=batch_sizes, warmup=(1, 1), rounds=(2, 2), per_round=(1, 1), inspect_rounds=2)

    def repeats(self, batch: int) -> tuple[int, int, int]:
        """(warm-up calls, rounds, calls per round) for a batch size."""
        i = 0 if batch == 1 else 1
        return self.warmup[i], self.rounds[i], self.per_round[i]


# ---- models and FLOPs -----------------------------------------------------------------------------------
def family(name: str) -> str:
    """convformer_<fusion>_<size> -> fusion; a timm reference -> vit | cnn | hybrid."""
    if name.startswith("convformer_"):
        return convformer.PRESETS[name].fusion
    if name.startswith("imagenet_"):
        return name.removeprefix("imagenet_")
    return {"deit_tiny_patch16_224": "vit", "resnet18": "cnn"}.get(name, "hybrid")


def build(name: str) -> nn.Module:
    """A preset or timm model with random weights (seeded), in eval mode, for a 224 x 224 input."""
    torch.manual_seed(0)
    if name.startswith("convformer_"):
        return convformer.create(name).eval()
    if name.startswith("imagenet_"):
        return load_reference(name.removeprefix("imagenet_"), pretrained=False)
    return timm.create_model(name, pretrained=False).eval()


def count_flops(model: nn.Module, x: torch.Tensor) -> int:
    """FLOPs of one forward of `x`, attention matmuls included."""
    if isinstance(model, convformer.ConvFormer):
        return inspect(model, x).flops  # explicit attention; cached per model and shape
    fused = [m for m in model.modules() if getattr(m, "fused_attn", False) is True]
    try:
        for m in fused:
            m.fused_attn = False
        with FlopCounterMode(display=False) as counter, torch.inference_mode():
            model(x)
    finally:
        for m in fused:
            m.fused_attn = True
    return counter.get_total_flops()


# ---- timing ---------------------------------------------------------------------------------------------
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved(fns: dict[str, Callable[[], Any]], rounds: int, per_round: int, warmup: int,
                device: torch.device, clock: str = "wall") -> dict[str, list[float]]:
    """Seconds per call of each function: warm-up, then `rounds` rounds over all of them (the order
    reversed every other round), `per_round` timed calls each. clock="cpu" counts this process's CPU time
    instead of wall time (meaningful with one thread only: other threads' spinning is counted too)."""
    now = time.process_time if clock == "cpu" else time.perf_counter
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    sync(device)
    times: dict[str, list[float]] = {k: [] for k in fns}
    for r in range(rounds):
        for key in (list(fns) if r % 2 == 0 else list(reversed(fns))):
            fn = fns[key]
            for _ in range(per_round):
                start = now()
                fn()
                sync(device)
                times[key].append(now() - start)
    return times


def _median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def _p(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))] if xs else float("nan")


def _amp(settings: Settings, device: torch.device):
    if settings.amp is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=getattr(torch, settings.amp))


# ---- the benchmarks -------------------------------------------------------------------------------------
def bench_models(names: list[str], settings: Settings, log: Callable[[str], None] = print) -> list[dict]:
    """One row per model: params, FLOPs, latency at the first batch size, images/s at the last,
    achieved GFLOP/s at both, and the ratio of achieved GFLOP/s to its family's timm reference."""
    device = torch.device(settings.device)
    models, rows = {}, {}
    for name in names:
        model = build(name)
        x = torch.randn(1, 3, IMG_SIZE, IMG_SIZE)
        flops = count_flops(model, x)  # counted in float32 on the CPU, before moving
        model = model.to(device)
        if settings.channels_last:
            model = model.to(memory_format=torch.channels_last)
        models[name] = model
        rows[name] = {"model": name, "family": family(name), "params": sum(p.numel() for p in model.parameters()),
                      "flops": flops}
        log(f"  built {name}: {rows[name]['params'] / 1e6:.2f} M params, {flops / 1e9:.3f} GFLOPs")
    for batch in settings.batch_sizes:
        x = torch.randn(batch, 3, IMG_SIZE, IMG_SIZE, device=device)
        if settings.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)

        def call(model: nn.Module, x: torch.Tensor = x) -> Callable[[], Any]:
            def fn():
                with torch.inference_mode(), _amp(settings, device):
                    return model(x)
            return fn
        warmup, rounds, per_round = settings.repeats(batch)
        log(f"  timing batch {batch}: {rounds} interleaved rounds x {per_round} calls per model")
        times = interleaved({n: call(m) for n, m in models.items()}, rounds, per_round, warmup, device,
                            settings.clock)
        for name, ts in times.items():
            med = _median(ts)
            row = rows[name]
            row[f"ms_b{batch}"] = med * 1e3
            row[f"ms_b{batch}_p90"] = _p(ts, 0.9) * 1e3
            row[f"img_s_b{batch}"] = batch / med
            row[f"gflops_s_b{batch}"] = row["flops"] * batch / med / 1e9
    for row in rows.values():
        refs = [rows[r] for r in FAMILY_REFS.get(row["family"], ()) if r in rows]
        for batch in settings.batch_sizes:
            key = f"gflops_s_b{batch}"
            ref = statistics.median([r[key] for r in refs]) if refs else None
            row[f"ref_gflops_s_b{batch}"] = ref
            row[f"ratio_b{batch}"] = row[key] / ref if ref else None
        row["refs"] = [r["model"] for r in refs]
    return list(rows.values())


def bench_inspection(names: list[str], settings: Settings, log: Callable[[str], None] = print) -> list[dict]:
    """Per ConvFormer preset and ImageNet reference at batch 1: a full inspection (attentions, activations, shapes; FLOPs cached
    after the first call, as in the app) against a plain forward, timed in alternating pairs; and, for
    information, the inspection with Grad-CAM (one backward) as the app runs it."""
    device = torch.device(settings.device)
    rows = []
    for name in [n for n in names if n.startswith(("convformer_", "imagenet_"))]:
        model = build(name).to(device)
        x = torch.randn(1, 3, IMG_SIZE, IMG_SIZE, device=device)
        cam = "pred" if (model.config.uses_conv if hasattr(model, "config") else family(name) != "vit") else None

        def plain():
            with torch.inference_mode():
                return model(x)
        fns = {"plain": plain, "inspect": lambda: inspect(model, x),
               "inspect_cam": lambda: inspect(model, x, cam_class=cam)}
        times = interleaved(fns, settings.inspect_rounds, 1, settings.warmup[0], device, settings.clock)
        ms = {k: _median(v) * 1e3 for k, v in times.items()}
        rows.append({"model": name, "plain_ms": ms["plain"], "inspect_ms": ms["inspect"],
                     "inspect_cam_ms": ms["inspect_cam"], "ratio": ms["inspect"] / ms["plain"],
                     "ratio_cam": ms["inspect_cam"] / ms["plain"]})
        log(f"  {name}: plain {ms['plain']:.1f} ms, inspect {ms['inspect']:.1f} ms "
            f"({rows[-1]['ratio']:.2f}x), with Grad-CAM {ms['inspect_cam']:.1f} ms")
    return rows


def machine() -> dict:
    """Where and how it ran: CPU, cores, threads, library versions, load while running."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    info = {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch_interop_threads": torch.get_num_interop_threads(), "python": platform.python_version(),
            "torch": torch.__version__, "timm": timm.__version__, "platform": platform.platform(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    with contextlib.suppress(OSError):
        info["loadavg"] = os.getloadavg()
    return info


# ---- tables ---------------------------------------------------------------------------------------------
def _fmt(v: Any, spec: str) -> str:
    return "-" if v is None or (isinstance(v, float) and v != v) else format(v, spec)


def model_table(rows: list[dict], batch_sizes: tuple[int, ...]) -> str:
    lo, hi = batch_sizes[0], batch_sizes[-1]
    head = ["model", "family", "params M", "GFLOPs", f"ms b{lo}", f"img/s b{hi}", f"GFLOP/s b{lo}",
            f"GFLOP/s b{hi}", f"vs ref b{lo}", f"vs ref b{hi}"]
    lines = [head]
    for r in rows:
        lines.append([r["model"], r["family"], _fmt(r["params"] / 1e6, ".2f"), _fmt(r["flops"] / 1e9, ".3f"),
                      _fmt(r[f"ms_b{lo}"], ".1f"), _fmt(r[f"img_s_b{hi}"], ".1f"),
                      _fmt(r[f"gflops_s_b{lo}"], ".1f"), _fmt(r[f"gflops_s_b{hi}"], ".1f"),
                      _fmt(r[f"ratio_b{lo}"], ".2f") + ("x" if r[f"ratio_b{lo}"] else ""),
                      _fmt(r[f"ratio_b{hi}"], ".2f") + ("x" if r[f"ratio_b{hi}"] else "")])
    return _align(lines)


def inspection_table(rows: list[dict]) -> str:
    lines = [["model", "plain ms", "inspect ms", "inspect / plain", "+Grad-CAM ms", "+Grad-CAM / plain"]]
    for r in rows:
        lines.append([r["model"], _fmt(r["plain_ms"], ".1f"), _fmt(r["inspect_ms"], ".1f"),
                      _fmt(r["ratio"], ".2f") + "x", _fmt(r["inspect_cam_ms"], ".1f"),
                      _fmt(r["ratio_cam"], ".2f") + "x"])
    return _align(lines)


def _align(lines: list[list[str]]) -> str:
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    out = ["| " + " | ".join(c.ljust(w) for c, w in zip(line, widths)) + " |" for line in lines]
    out.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(out)


def default_names() -> list[str]:
    return [*convformer.PRESETS, *REFERENCES, *IMAGENET_NAMES]


def run(names: list[str] | None = None, settings: Settings | None = None, inspection: bool = True,
        models: bool = True, log: Callable[[str], None] = print) -> dict:
    """The model and inspection benchmarks; returns a JSON-serialisable dict with the tables as text."""
    names, settings = names or default_names(), settings or Settings()
    result: dict[str, Any] = {"settings": asdict(settings), "machine": machine(), "img_size": IMG_SIZE}
    log(f"models on {settings.device} ({settings.amp or 'float32'}), {torch.get_num_threads()} threads, "
        f"{settings.clock} clock")
    if models:
        result["models"] = bench_models(names, settings, log)
        result["models_table"] = model_table(result["models"], settings.batch_sizes)
    if inspection:
        log("inspection overhead (batch 1)")
        result["inspection"] = bench_inspection(names, settings, log)
        result["inspection_table"] = inspection_table(result["inspection"])
    with contextlib.suppress(OSError):
        result["machine"]["loadavg_end"] = os.getloadavg()
    return result
