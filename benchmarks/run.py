"""One command for every benchmark: `python -m benchmarks [--quick] [--out results.json]`.

Runs, in one process on one machine: the model table (ConvFormer presets and timm references), inspection
overhead, the app end to end (cold start, /predict latency, 8 concurrent clients, serving memory), and, when
a GPU is present, the model table again on the GPU with autocast at larger batches. Prints the tables and the
targets (each a ratio from this run), and writes everything as JSON.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # `python benchmarks/run.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from benchmarks import bench

TARGETS = {  # name -> (what, limit, at most / at least)
    "gflops_ratio": ("every ConvFormer preset's achieved GFLOP/s vs its timm reference", 1.0, "min"),
    "inspection_ratio": ("full inspection / plain forward (batch 1)", 1.3, "max"),
    "predict_ratio": ("/predict p50 / bare inspection", 2.0, "max"),
    "cold_start_s": ("python app.py -> first /predict answer (s)", 6.0, "max"),
    "server_memory_gb": ("serving process peak RSS (GB)", 1.5, "max"),
    "train_loop_ratio": ("fit() images/s / bare training loop (CPU, the Train tab's default)", 0.9, "min"),
}


def targets(result: dict) -> list[dict]:
    """Each target with the value this run measured (None when that part did not run) and met / missed."""
    values: dict[str, float | None] = dict.fromkeys(TARGETS)
    lo, hi = result["settings"]["batch_sizes"][0], result["settings"]["batch_sizes"][-1]
    ratios = [r[f"ratio_b{b}"] for r in result.get("models", []) if r["model"].startswith("convformer_")
              for b in (lo, hi) if r[f"ratio_b{b}"] is not None]
    values["gflops_ratio"] = min(ratios) if ratios else None
    if result.get("inspection"):
        values["inspection_ratio"] = max(r["ratio"] for r in result["inspection"])
    app = result.get("app") or {}
    values["predict_ratio"] = app.get("predict_ratio")
    values["cold_start_s"] = app.get("cold_start_s")
    values["server_memory_gb"] = app.get("server_peak_rss_gb")
    cpu_train = [r for r in result.get("train", []) if r["device"] == "cpu"]
    values["train_loop_ratio"] = cpu_train[0]["ratio"] if cpu_train else None
    out = []
    for key, (what, limit, kind) in TARGETS.items():
        v = values[key]
        met = None if v is None else (v >= limit if kind == "min" else v <= limit)
        out.append({"target": key, "what": what, "limit": limit, "kind": kind, "value": v, "met": met})
    return out


def targets_table(rows: list[dict]) -> str:
    lines = [["target", "value", "limit", "status"]]
    for r in rows:
        v = "-" if r["value"] is None else f"{r['value']:.2f}"
        status = "not run" if r["met"] is None else ("met" if r["met"] else "MISSED")
        lines.append([r["what"], v, f"{'>=' if r['kind'] == 'min' else '<='} {r['limit']:g}", status])
    return bench._align(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="few repeats and small batches (CI smoke; not for numbers)")
    p.add_argument("--out", default="benchmarks/results.json", help="JSON file to write (default: %(default)s)")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: all cores)")
    p.add_argument("--models", nargs="+", help="a subset of presets / timm models (default: all presets + references)")
    p.add_argument("--batch", type=int, default=None, help="throughput batch (default 32; 2 with --quick)")
    p.add_argument("--rounds", type=int, nargs=2, metavar=("B1", "BIG"),
                   help="interleaved timing rounds at batch 1 and at the large batch (default 12 4)")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="cpu: process CPU time instead of wall time, for A/B work on a busy machine; use it "
                        "with --threads 1 only. The reported numbers use wall (the default)")
    p.add_argument("--skip-models", action="store_true", help="skip the model table")
    p.add_argument("--skip-inspection", action="store_true", help="skip the inspection overhead")
    p.add_argument("--skip-app", action="store_true", help="skip the app benchmark")
    p.add_argument("--skip-train", action="store_true", help="skip the training loop benchmark (bench_train.py)")
    p.add_argument("--app-requests", type=int, default=None, help="sequential /predict requests (default 30)")
    p.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    p.add_argument("--accel", choices=("auto", "off", "cpu"), default="auto",
                   help="the accelerator table: auto = on the GPU when one is present; cpu = exercise that code "
                        "path on the CPU (bfloat16 autocast, small batches); off = skip")
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads or torch.get_num_threads())
    names = args.models or bench.default_names()
    batch = args.batch or (2 if args.quick else 32)
    settings = bench.Settings.quick((1, batch)) if args.quick else bench.Settings(batch_sizes=(1, batch))
    settings.clock = args.clock
    if args.rounds:
        settings.rounds = tuple(args.rounds)
        settings.inspect_rounds = args.rounds[0]
    started = time.time()
    result: dict = {"command": " ".join(["python -m benchmarks", *(argv if argv is not None else sys.argv[1:])]),
                    "started": time.strftime("%Y-%m-%d %H:%M:%S %z"), "settings": bench.asdict(settings),
                    "machine": bench.machine()}
    m = result["machine"]
    print(f"machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} with {m['torch_threads']} threads, "
          f"timm {m['timm']}, load {m.get('loadavg')}", flush=True)
    if not args.skip_models or not args.skip_inspection:
        r = bench.run(names, settings, inspection=not args.skip_inspection, models=not args.skip_models,
                      log=lambda s: print(s, flush=True))
        result.update({k: v for k, v in r.items() if k not in ("settings", "machine")})
    if not args.skip_app:
        from benchmarks import bench_app
        print("app end to end", flush=True)
        requests = args.app_requests or (5 if args.quick else 30)
        result["app"] = bench_app.run(requests=requests, clients_n=args.clients,
                                      per_client=2 if args.quick else 5, log=lambda s: print(s, flush=True))
    if not args.skip_train:
        from benchmarks import bench_train
        print("training loop: fit() vs a bare loop", flush=True)
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() and args.accel != "off" else [])
        result["train"] = [bench_train.run(device=d, rounds=1 if args.quick else 3,
                                           train_size=512 if args.quick else None, val_size=200 if args.quick else None,
                                           log=lambda s: print(s, flush=True)) for d in devices]
        result["train_table"] = bench_train.table(result["train"])
    if args.accel != "off" and (args.accel == "cpu" or torch.cuda.is_available()):
        result["accelerator"] = accelerator(names, args)
    result["targets"] = targets(result)
    result["seconds"] = time.time() - started
    result["machine"]["loadavg_end"] = bench.machine().get("loadavg")

    print()
    if "models_table" in result:
        print(f"## Models (224 x 224, {m['torch_threads']} threads, median of interleaved rounds)\n")
        print(result["models_table"], "\n")
    if "inspection_table" in result:
        print("## Inspection overhead (batch 1)\n")
        print(result["inspection_table"], "\n")
    if "app" in result:
        print("## App end to end\n")
        print(result["app"]["table"], "\n")
    if "train_table" in result:
        print("## Training loop: fit() vs a bare forward + backward + AdamW loop\n")
        print(result["train_table"], "\n")
    if "accelerator" in result:
        a = result["accelerator"]
        print(f"## Accelerator: {a['device']} ({a['amp']} autocast)\n")
        print(a["models_table"], "\n")
        print(f"## Inspection overhead on {a['device']} (batch 1, float32)\n")
        print(a["inspection_table"], "\n")
    print("## Targets (ratios from this run)\n")
    print(targets_table(result["targets"]))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"\nwrote {out} in {result['seconds']:.0f} s")
    return 0


def accelerator(names: list[str], args: argparse.Namespace) -> dict:
    """The model table on the GPU with autocast (float16) at batches 1 / 256, or, with --accel cpu, the same
    code path on the CPU with bfloat16 autocast and small batches, so that it is exercised without a GPU."""
    if args.accel == "cpu" or not torch.cuda.is_available():
        device, amp, batches = "cpu", "bfloat16", (1, 2 if args.quick else 8)
    else:
        device, amp, batches = "cuda", "float16", (1, 64 if args.quick else 256)
    settings = (bench.Settings.quick(batches) if args.quick else bench.Settings(batch_sizes=batches, rounds=(20, 10)))
    settings.device, settings.amp, settings.channels_last = device, amp, device == "cuda"
    print(f"accelerator table on {device} with {amp} autocast, batches {batches}", flush=True)
    r = bench.run(names, settings, inspection=True, log=lambda s: print(s, flush=True))
    name = torch.cuda.get_device_name(0) if device == "cuda" else "cpu (accelerator code path, no GPU present)"
    return {"device": name, "amp": amp, "batch_sizes": batches, "models": r["models"],
            "models_table": r["models_table"], "inspection": r["inspection"],  # inspection in float32
            "inspection_table": r["inspection_table"]}


if __name__ == "__main__":
    sys.exit(main())
