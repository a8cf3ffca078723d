"""Load and soak test: N concurrent gradio_client clients against the app on 127.0.0.1 for a bounded time.

Each client sends `--requests` requests, a fixed mix: valid predictions over several fusion stages and
unusual-but-valid images (7 in 10), bad inputs from the generated corpus (3 in 10: broken or huge images,
a pickle disguised as a checkpoint, impossible configurations). It reports requests served, failures of
valid requests, bad inputs that were NOT refused, p50/p95 latency, and the server's memory and temp folder
over time; memory growth is measured from the end of warm-up (the first `--warmup` fraction of requests).

    python scripts/soak.py --clients 16 --requests 50            # starts its own server (--device cpu)
    python scripts/soak.py --url http://127.0.0.1:7860 --pid 1234  # an app that is already running

Exit status 1 when a target is missed: a failed valid request, an unrefused bad input, memory growth over
`--max-growth` (default 10%), or the time bound reached.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from contextlib import nullcontext
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests import _corpus  # noqa: E402
from tests._appserver import SMALL, app_server  # noqa: E402

VALID_FUSIONS = ("mid", "cnn", "vit", "early", "late")
VALID_IMAGES = ("rgb.png", "progressive.jpg", "exif_rotated.jpg", "16bit.png", "cmyk.jpg", "palette.png",
                "animated.gif", "rgba.png")
BAD_IMAGES = ("empty.png", "text_renamed.png", "truncated.png", "corrupt.png", "1x1.png", "20000x20000.png",
              "declares_100000x100000.png", "html_renamed.png")


def config(fusion: str, img_size: int) -> dict:
    return dict(SMALL, fusion=fusion, preset=f"convformer_{fusion}_tiny", img_size=img_size)


def plan(client_id: int, n: int, img_size: int, files: dict[str, Path]) -> list[tuple[str, str, tuple]]:
    """The requests of one client: (kind, name, predict arguments), kind = valid | bad."""
    out = []
    for i in range(n):
        j = client_id * 7 + i
        if i % 10 in (3, 6, 9):
            k = j % (len(BAD_IMAGES) + 3)
            if k < len(BAD_IMAGES):
                args = dict(config("mid", img_size))
                out.append(("bad", BAD_IMAGES[k], (files[BAD_IMAGES[k]], args)))
            elif k == len(BAD_IMAGES):
                out.append(("bad", "pickle checkpoint", (files["rgb.png"], dict(
                    config("mid", img_size), weights="upload", checkpoint=files["pickle_disguised.safetensors"]))))
            elif k == len(BAD_IMAGES) + 1:
                out.append(("bad", "embed_dim=100 heads=3", (files["rgb.png"], dict(
                    config("mid", img_size), embed_dim=100, num_heads=3))))
            else:
                out.append(("bad", "depth=10^6", (files["rgb.png"], dict(config("mid", img_size), depth=10**6))))
        else:
            fusion = VALID_FUSIONS[j % len(VALID_FUSIONS)]
            image = VALID_IMAGES[j % len(VALID_IMAGES)]
            out.append(("valid", f"{fusion}/{image}", (files[image], config(fusion, img_size))))
    return out


class Memory(threading.Thread):
    """Samples the server's resident memory (with its children) and its temp folder every `every` s."""

    def __init__(self, pid: int, temp_dir: Path | None, every: float = 0.5):
        super().__init__(daemon=True)
        self.proc, self.temp_dir, self.every = psutil.Process(pid), temp_dir, every
        self.samples: list[tuple[float, int, int]] = []  # (time, rss bytes, temp files)
        self.stop = threading.Event()
        self.start_time = time.monotonic()

    def rss(self) -> int:
        procs = [self.proc, *self.proc.children(recursive=True)]
        return sum(p.memory_info().rss for p in procs if p.is_running())

    def run(self) -> None:
        while not self.stop.is_set():
            files = sum(1 for p in self.temp_dir.rglob("*") if p.is_file()) if self.temp_dir else -1
            self.samples.append((time.monotonic() - self.start_time, self.rss(), files))
            self.stop.wait(self.every)


def soak(url: str, pid: int, temp_dir: Path | None, clients: int, requests: int, img_size: int,
         max_seconds: float, warmup: float, workdir: Path) -> dict:
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    images = _corpus.images(workdir)
    files = {k: p for k, (p, _) in images.items()}
    files.update(_corpus.checkpoints(workdir, workdir / "PAYLOAD_RAN", *_checkpoints(workdir, img_size)))
    memory = Memory(pid, temp_dir)
    results: list[dict] = []
    lock = threading.Lock()
    done_requests = [0]
    warm_at: list[float] = []
    deadline = time.monotonic() + max_seconds
    total = clients * requests

    def worker(cid: int) -> None:
        client = Client(url, verbose=False)
        for kind, name, (image, args) in plan(cid, requests, img_size, files):
            if time.monotonic() > deadline:
                break
            args = dict(args)
            if args.get("checkpoint"):
                args["checkpoint"] = handle_file(str(args["checkpoint"]))
            start = time.monotonic()
            error = None
            try:
                out = client.predict(handle_file(str(image)), *args.values(), api_name="/predict")
                ok = bool(out[0] and out[0].get("label"))
            except AppError as e:
                ok, error = False, str(e)
            except Exception as e:  # noqa: BLE001 - a transport failure is a failure, whatever it is
                ok, error = False, f"transport {type(e).__name__}: {e}"
            elapsed = time.monotonic() - start
            with lock:
                results.append(dict(client=cid, kind=kind, name=name, ok=ok, error=error, latency=elapsed))
                done_requests[0] += 1
                if not warm_at and done_requests[0] >= warmup * total:
                    warm_at.append(time.monotonic() - memory.start_time)

    memory.start()
    started = time.monotonic()
    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(1.0, deadline - time.monotonic() + 60))
    duration = time.monotonic() - started
    memory.stop.set()
    memory.join()
    time.sleep(0)
    valid = [r for r in results if r["kind"] == "valid"]
    bad = [r for r in results if r["kind"] == "bad"]
    lat = sorted(r["latency"] for r in valid)
    samples = memory.samples
    warm_t = warm_at[0] if warm_at else samples[0][0]
    warm_rss = max((s[1] for s in samples if s[0] <= warm_t), default=samples[0][1])
    tail = [s[1] for s in samples if s[0] >= samples[-1][0] - max(2.0, 0.1 * duration)]
    end_rss = statistics.median(tail) if tail else samples[-1][1]
    report = {
        "clients": clients, "requests_per_client": requests, "img_size": img_size,
        "requests_sent": len(results), "requests_planned": total, "duration_s": round(duration, 1),
        "served_per_s": round(len(results) / duration, 2),
        "valid": len(valid), "valid_failures": sum(not r["ok"] for r in valid),
        "valid_transport_errors": sum(not r["ok"] and (r["error"] or "").startswith("transport") for r in valid),
        "bad": len(bad), "bad_not_refused": sum(r["ok"] for r in bad),
        "bad_without_message": sum((not r["ok"]) and (not r["error"] or len(r["error"]) < 20) for r in bad),
        "p50_s": round(statistics.median(lat), 3) if lat else None,
        "p95_s": round(lat[min(len(lat) - 1, int(0.95 * len(lat)))], 3) if lat else None,
        "max_s": round(lat[-1], 3) if lat else None,
        "rss_start_mb": round(samples[0][1] / 2**20), "rss_warm_mb": round(warm_rss / 2**20),
        "rss_end_mb": round(end_rss / 2**20), "rss_peak_mb": round(max(s[1] for s in samples) / 2**20),
        "growth_after_warmup": round(end_rss / warm_rss - 1, 4),
        "temp_files_start": samples[0][2], "temp_files_end": samples[-1][2],
        "payload_executed": (workdir / "PAYLOAD_RAN").exists(),
        "memory_timeline": " ".join(f"{t:.0f}s:{r / 2**20:.0f}MB/{n}files"
                                    for t, r, n in samples[:: max(1, len(samples) // 20)]),
        "failures": [r for r in results if (r["kind"] == "valid") != r["ok"]][:10],
        "timed_out": len(results) < total,
    }
    return report


def _checkpoints(folder: Path, img_size: int) -> tuple[Path, Path]:
    from convformer.checkpoint import save_checkpoint
    from convformer.model import ConvFormer
    from convformer.ui_model import make_config
    keys = ("fusion", "preset", "img_size", "embed_dim", "depth", "num_heads", "mlp_ratio", "patch_size",
            "conv_widths", "conv_depths", "merge")
    cfg = make_config(*(config("mid", img_size)[k] for k in keys))
    good = save_checkpoint(ConvFormer(cfg), folder / "good.safetensors")
    return good, save_checkpoint(ConvFormer(cfg.replace(embed_dim=48)), folder / "other.safetensors")


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--requests", type=int, default=50, help="requests per client")
    p.add_argument("--img-size", type=int, default=64)
    p.add_argument("--max-seconds", type=float, default=1200, help="stop sending after this long")
    p.add_argument("--warmup", type=float, default=0.2, help="fraction of requests before memory is measured")
    p.add_argument("--max-growth", type=float, default=0.10, help="allowed memory growth after warm-up")
    p.add_argument("--url", help="an app already running (default: start one on a free port)")
    p.add_argument("--pid", type=int, help="with --url: the server's process id, for its memory")
    p.add_argument("--json", type=Path, help="also write the report here")
    args = p.parse_args(argv)
    if args.url and not args.pid:
        p.error("--url needs --pid (the server process, to measure its memory)")
    with tempfile.TemporaryDirectory(prefix="soak-") as work:
        server = nullcontext(None) if args.url else app_server()
        with server as s:
            url, pid, temp = (args.url, args.pid, None) if s is None else (s.url, s.proc.pid, s.temp_dir)
            report = soak(url, pid, temp, args.clients, args.requests, args.img_size, args.max_seconds,
                          args.warmup, Path(work))
            report["server_alive"] = psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"
    problems = [k for k, bad in (("valid requests failed", report["valid_failures"]),
                                 ("bad inputs not refused", report["bad_not_refused"]),
                                 ("bad inputs without a message", report["bad_without_message"]),
                                 ("memory grew too much", report["growth_after_warmup"] > args.max_growth),
                                 ("a pickle payload ran", report["payload_executed"]),
                                 ("time bound reached", report["timed_out"]),
                                 ("server died", not report["server_alive"])) if bad]
    report["problems"] = problems
    text = json.dumps(report, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return report


if __name__ == "__main__":
    sys.exit(1 if main()["problems"] else 0)
