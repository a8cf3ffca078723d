"""Load and soak test: strangers' attacks mixed with normal users, against the app on 127.0.0.1.

Phase 1 (`--clients` x `--requests`): concurrent gradio_client clients, each a NEW session, send a fixed mix:
valid predictions over every fusion stage and unusual-but-valid images (6 in 10), and attacks (4 in 10):
every bad image and checkpoint of the generated corpus (tests/_corpus.py: bombs, corrupt headers, pickles,
a 100,000-class header with no weights, deeply nested JSON, 4 input channels...), impossible
configurations, wrong argument types, 1 MB strings, an example index out of range, the Compare tab's test
split with a new size each time, and uploads cut off mid-way. Client 0 also trains once through the API.
Phase 2 (`--sessions`): that many NEW sessions, one after another, each calling /predict once with the
largest model the app allows (24 blocks x 16 heads over 24 x 24 + 1 tokens: every session's attention maps
would be ~250 MB), to measure what sessions keep.

It reports requests served, failures of valid requests, attacks NOT refused or refused without a one-line
message (or with more than 200 characters of the input echoed), p50/p95 latency, the server's memory
(resident, with its children) and its temp folder (bytes, and partial-upload files) over time.

    python scripts/soak.py --clients 16 --requests 50 --sessions 100   # starts its own server (--device cpu)
    python scripts/soak.py --url http://127.0.0.1:7860 --pid 1234        # an app that is already running

Exit status 1 when a target is missed: a failed valid request, an unrefused or badly refused attack, memory
growth after warm-up over `--max-growth-mb` (phase 1; the kept results fill their budget, 256 MB, there) or
`--max-session-mb` (phase 2), a temp folder over
`--max-temp-mb` or holding partial uploads at the end, or the time bound reached.
"""
from __future__ import annotations

import argparse
import http.client
import json
import re
import statistics
import sys
import tempfile
import threading
import time
from contextlib import nullcontext
from pathlib import Path
from urllib.parse import urlparse

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests import _corpus  # noqa: E402
from tests._appserver import SMALL, app_server  # noqa: E402

VALID_FUSIONS = ("mid", "cnn", "vit", "early", "late")
VALID_IMAGES = ("rgb.png", "progressive.jpg", "exif_rotated.jpg", "16bit.png", "cmyk.jpg", "palette.png",
                "animated.gif", "rgba.png")
BAD_IMAGES = ("empty.png", "text_renamed.png", "truncated.png", "corrupt.png", "1x1.png", "20000x20000.png",
              "declares_100000x100000.png", "html_renamed.png", "short_ihdr.png", "declares_40mp_float.tiff",
              "long_name.png", "many_scans.jpg")
BAD_CHECKPOINTS = ("pickle_disguised.safetensors", "huge_classifier.safetensors", "nested_header.safetensors",
                   "other_fusion.safetensors", "in_chans_4.safetensors", "degenerate_std.safetensors",
                   "offsets_lie.safetensors", "header_length_lies.safetensors", "empty_objects.safetensors")
OTHER_ATTACKS = ("embed_dim=100 heads=3", "depth=10^6", "image is a number", "depth is a word",
                 "1 MB fusion string", "1 MB weights string", "example index out of range", "compare split size",
                 "upload cut off")
ATTACKS = (*(("image", n) for n in BAD_IMAGES), *(("checkpoint", n) for n in BAD_CHECKPOINTS),
           *(("other", n) for n in OTHER_ATTACKS))
ECHO = 200
# the largest model /predict allows, by what a session keeps: 24 blocks x 16 heads of 577 x 577 attention
LARGEST = dict(fusion="vit", preset="convformer_vit_tiny", img_size=384, embed_dim=64, depth=24, num_heads=16,
               mlp_ratio=1.0, patch_size=16)
TRAIN = dict(dataset="shapes", data_zip=None, epochs=1, lr=2e-3, batch_size=32, train_images=100, train_img=32)


def config(fusion: str, img_size: int) -> dict:
    return dict(SMALL, fusion=fusion, preset=f"convformer_{fusion}_tiny", img_size=img_size)


def plan(client_id: int, n: int) -> list[tuple[str, str]]:
    """The requests of one client: (kind, name), kind = valid | image | checkpoint | other."""
    out = []
    for i in range(n):
        j = client_id * 7 + i
        if i % 10 in (2, 4, 7, 9):
            out.append(ATTACKS[(client_id * 4 + i * 3 // 10 + i) % len(ATTACKS)])
        else:
            out.append(("valid", f"{VALID_FUSIONS[j % len(VALID_FUSIONS)]}/{VALID_IMAGES[j % len(VALID_IMAGES)]}"))
    return out


class Memory(threading.Thread):
    """Samples the server's resident memory (with its children) and its temp folder every `every` s."""

    def __init__(self, pid: int, temp_dir: Path | None, every: float = 0.5):
        super().__init__(daemon=True)
        self.proc, self.temp_dir, self.every = psutil.Process(pid), temp_dir, every
        self.samples: list[tuple[float, int, int, int]] = []  # (time, rss bytes, temp bytes, partial uploads)
        self.stop = threading.Event()
        self.start_time = time.monotonic()

    def rss(self) -> int:
        procs = [self.proc, *self.proc.children(recursive=True)]
        return sum(p.memory_info().rss for p in procs if p.is_running())

    def sample(self) -> tuple[float, int, int, int]:
        size = partial = -1
        if self.temp_dir:
            size, partial = temp_usage(self.temp_dir)
        s = (time.monotonic() - self.start_time, self.rss(), size, partial)
        self.samples.append(s)
        return s

    def run(self) -> None:
        while not self.stop.is_set():
            self.sample()
            self.stop.wait(self.every)


def temp_usage(folder: Path) -> tuple[int, int]:
    """(bytes in the temp folder, partial uploads: Gradio's multipart temp files directly in it)."""
    size = partial = 0
    for p in list(folder.rglob("*")):
        try:
            if p.is_file() and not p.is_symlink():
                size += p.stat().st_size
                partial += p.parent == folder and p.name.startswith("tmp")
        except OSError:
            continue
    return size, partial


def cut_upload(url: str, declared: int = 5_000_000, sent: int = 200_000) -> None:
    """Start a multipart upload declaring `declared` bytes, send `sent`, and hang up: an upload cut off."""
    u = urlparse(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    boundary = "soakboundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"cut.png\"\r\n"
            "Content-Type: image/png\r\n\r\n").encode()
    conn.putrequest("POST", "/gradio_api/upload")
    conn.putheader("Content-Type", f"multipart/form-data; boundary={boundary}")
    conn.putheader("Content-Length", str(len(head) + declared))
    conn.endheaders()
    conn.send(head + b"\0" * sent)
    time.sleep(0.2)  # let the server write what it got before the connection goes
    conn.sock.close()


def refusal_problem(error: str | None, sent: str = "") -> str | None:
    """Why a refusal's message is not good enough (None: it is): empty, several lines, a traceback or a
    server path, or more than ECHO characters of the input."""
    if not error or len(error) < 20 or "upstream Gradio app has raised an exception" in error:
        return "no message"
    if "\n" in error.strip() or re.search(r"Traceback|File \"|site-packages", error):
        return "not one line"
    if re.search(r"/tmp/|/work/|/home/|/usr/", error):
        return "server path"
    if sent and len(sent) > ECHO and sent[:ECHO + 1] in error:
        return f"echoes more than {ECHO} characters"
    return None


def soak(url: str, pid: int, temp_dir: Path | None, clients: int, requests: int, img_size: int,
         max_seconds: float, warmup: float, sessions: int, workdir: Path, train: bool = True) -> dict:
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    images = _corpus.images(workdir)
    files = {k: p for k, (p, _) in images.items()}
    files.update(_corpus.checkpoints(workdir, workdir / "PAYLOAD_RAN", *_checkpoints(workdir, img_size)))
    memory = Memory(pid, temp_dir)
    results: list[dict] = []
    lock = threading.Lock()
    warm_at: list[float] = []
    deadline = time.monotonic() + max_seconds
    total = clients * requests
    split_sizes = iter(range(10, 2001, 10))

    def call(client, kind: str, name: str) -> tuple[bool, str | None, str]:
        """Send one request: (answered with an output, the error message if refused, the longest string sent)."""
        args, image, endpoint, sent = config(VALID_FUSIONS[0], img_size), files["rgb.png"], "/predict", ""
        if kind == "valid":
            fusion, picture = name.split("/")
            args, image = config(fusion, img_size), files[picture]
        elif kind == "image":
            image = files[name]
        elif kind == "checkpoint":
            args = dict(args, weights="upload", checkpoint=handle_file(str(files[name])))
        elif name == "embed_dim=100 heads=3":
            args = dict(args, embed_dim=100, num_heads=3)
        elif name == "depth=10^6":
            args = dict(args, depth=10**6)
        elif name == "1 MB fusion string":
            sent = "x" * 1_000_000
            args = dict(args, fusion=sent)
        elif name == "1 MB weights string":
            sent = "y" * 1_000_000
            args = dict(args, weights=sent)
        elif name == "depth is a word":
            args = dict(args, depth="deep")
        elif name == "image is a number":
            return _send(lambda: client.predict(123, *args.values(), api_name="/predict"))
        elif name == "example index out of range":
            return _send(lambda: client.predict(api_name="/example"))
        elif name == "compare split size":  # a new size each time: the Compare tab's caches must stay bounded
            with lock:
                n = next(split_sizes, 10)
            return _send(lambda: client.predict(n, api_name="/compare_split"))
        elif name == "upload cut off":
            cut_upload(url)
            return True, None, ""
        return _send(lambda: client.predict(handle_file(str(image)), *args.values(), api_name=endpoint), sent)

    def _send(fn, sent: str = "") -> tuple[bool, str | None, str]:
        try:
            out = fn()
            return bool(out is not None), None, sent
        except AppError as e:
            return False, str(e), sent
        except Exception as e:  # noqa: BLE001 - a transport failure is a failure, whatever it is
            return False, f"transport {type(e).__name__}: {e}", sent

    def worker(cid: int) -> None:
        client = Client(url, verbose=False, httpx_kwargs={"timeout": 120})
        if cid == 0 and train:
            start = time.monotonic()
            answered, error, _ = _send(lambda: client.predict(*TRAIN.values(), *_controls(config("mid", 32)),
                                                              api_name="/train"))
            record(cid, "valid", "train (API)", answered, error, "", time.monotonic() - start)
        for kind, name in plan(cid, requests):
            if time.monotonic() > deadline:
                break
            start = time.monotonic()
            answered, error, sent = call(client, kind, name)
            record(cid, kind, name, answered, error, sent, time.monotonic() - start)

    def record(cid, kind, name, answered, error, sent, elapsed) -> None:
        expected = kind == "valid" or name in ("compare split size", "upload cut off")
        with lock:
            results.append(dict(client=cid, kind=kind, name=name, ok=answered if expected else not answered,
                                expected_answer=expected, error=(error or "")[:300],
                                message_problem=None if expected else refusal_problem(error, sent),
                                latency=elapsed))
            if not warm_at and len(results) >= warmup * total:
                warm_at.append(time.monotonic() - memory.start_time)

    memory.start()
    started = time.monotonic()
    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(1.0, deadline - time.monotonic() + 60))
    duration = time.monotonic() - started
    sessions_report = _sessions(url, memory, sessions, files["rgb.png"], deadline) if sessions else {}
    settled = _settle(memory, temp_dir, deadline)
    memory.stop.set()
    memory.join()
    valid = [r for r in results if r["expected_answer"]]
    bad = [r for r in results if not r["expected_answer"]]
    lat = sorted(r["latency"] for r in valid if r["kind"] == "valid")
    samples = [s for s in memory.samples if s[0] <= duration + 1] or memory.samples
    warm_t = warm_at[0] if warm_at else samples[0][0]
    warm_rss = max((s[1] for s in samples if s[0] <= warm_t), default=samples[0][1])
    tail = [s[1] for s in samples if s[0] >= samples[-1][0] - max(2.0, 0.1 * duration)]
    end_rss = statistics.median(tail) if tail else samples[-1][1]
    return {
        "clients": clients, "requests_per_client": requests, "img_size": img_size,
        "requests_sent": len(results), "requests_planned": total + (clients > 0 and train),
        "duration_s": round(duration, 1), "served_per_s": round(len(results) / max(duration, 1e-9), 2),
        "valid": len(valid), "valid_failures": sum(not r["ok"] for r in valid),
        "valid_transport_errors": sum(not r["ok"] and r["error"].startswith("transport") for r in valid),
        "bad": len(bad), "bad_not_refused": sum(not r["ok"] for r in bad),
        "bad_without_message": sum(r["message_problem"] is not None for r in bad),
        "attacks": sorted({r["name"] for r in bad}),
        "p50_s": round(statistics.median(lat), 3) if lat else None,
        "p95_s": round(lat[min(len(lat) - 1, int(0.95 * len(lat)))], 3) if lat else None,
        "max_s": round(lat[-1], 3) if lat else None,
        "rss_start_mb": round(samples[0][1] / 2**20), "rss_warm_mb": round(warm_rss / 2**20),
        "rss_end_mb": round(end_rss / 2**20), "rss_peak_mb": round(max(s[1] for s in samples) / 2**20),
        "growth_after_warmup": round(end_rss / warm_rss - 1, 4),
        **sessions_report,
        "temp_mb_start": round(memory.samples[0][2] / 2**20, 1), "temp_mb_end": round(settled[0] / 2**20, 1),
        "temp_mb_peak": round(max(s[2] for s in memory.samples) / 2**20, 1),
        "partial_uploads_end": settled[1],
        "payload_executed": (workdir / "PAYLOAD_RAN").exists(),
        "memory_timeline": " ".join(f"{t:.0f}s:{r / 2**20:.0f}MB/{d / 2**20:.0f}MBtemp"
                                    for t, r, d, _ in memory.samples[:: max(1, len(memory.samples) // 20)]),
        "failures": [r for r in results if not r["ok"] or r["message_problem"]][:10],
        "timed_out": len(results) < total + (clients > 0 and train) or time.monotonic() > deadline,
    }


def _controls(args: dict) -> list:
    """The Explore controls of /predict's arguments (the Train tab reads the same), in order."""
    keys = ("fusion", "preset", "img_size", "embed_dim", "depth", "num_heads", "mlp_ratio", "patch_size",
            "conv_widths", "conv_depths", "merge", "weights", "checkpoint")
    return [args[k] for k in keys]


def _sessions(url: str, memory: Memory, n: int, image: Path, deadline: float) -> dict:
    """n new sessions, one after another, each one /predict with LARGEST; RSS after each."""
    from gradio_client import Client, handle_file
    args = dict(SMALL, **LARGEST)
    rss, failed, times = [], 0, []
    for i in range(n):
        if time.monotonic() > deadline:
            break
        start = time.monotonic()
        try:
            Client(url, verbose=False, httpx_kwargs={"timeout": 120}).predict(handle_file(str(image)), *args.values(), api_name="/predict")
        except Exception:  # noqa: BLE001 - counted
            failed += 1
        times.append(time.monotonic() - start)
        rss.append(memory.sample()[1])
    warm = max(rss[:2]) if rss else 0
    return {"sessions": len(rss), "sessions_failed": failed, "session_rss_warm_mb": round(warm / 2**20),
            "session_rss_end_mb": round(rss[-1] / 2**20) if rss else None,
            "session_rss_peak_mb": round(max(rss) / 2**20) if rss else None,
            "session_growth_mb": round((max(rss) - warm) / 2**20) if rss else None,
            "session_p50_s": round(statistics.median(times), 2) if times else None,
            "session_rss_mb": " ".join(str(round(r / 2**20)) for r in rss)}


def _settle(memory: Memory, temp_dir: Path | None, deadline: float) -> tuple[int, int]:
    """The temp folder's (bytes, partial uploads), once the server's janitor has had its turn: polled until
    no partial upload is left or the deadline (the server started by this script sweeps every 2 s)."""
    give_up = min(deadline, time.monotonic() + 30)
    while True:
        s = memory.sample()
        if temp_dir is None or s[3] == 0 or time.monotonic() > give_up:
            return s[2], s[3]
        memory.stop.wait(0.5)


def _checkpoints(folder: Path, img_size: int) -> tuple[Path, Path]:
    from convformer.export.checkpoint import save_checkpoint
    from convformer.config import ConvFormerConfig
    from convformer.model import ConvFormer
    from convformer.presets import PRESETS
    c = config("mid", img_size)
    cfg = PRESETS[c["preset"]].replace(
        img_size=img_size, embed_dim=c["embed_dim"], depth=c["depth"], num_heads=c["num_heads"],
        mlp_ratio=c["mlp_ratio"], patch_size=c["patch_size"], merge=c["merge"],
        conv_widths=tuple(int(v) for v in c["conv_widths"].split(",")),
        conv_depths=tuple(int(v) for v in c["conv_depths"].split(",")))
    assert isinstance(cfg, ConvFormerConfig)
    good = save_checkpoint(ConvFormer(cfg), folder / "good.safetensors")
    return good, save_checkpoint(ConvFormer(cfg.replace(embed_dim=48)), folder / "other.safetensors")


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--requests", type=int, default=50, help="requests per client")
    p.add_argument("--sessions", type=int, default=0, help="then this many new sessions with the largest model")
    p.add_argument("--img-size", type=int, default=64)
    p.add_argument("--max-seconds", type=float, default=1800, help="stop sending after this long")
    p.add_argument("--warmup", type=float, default=0.2, help="fraction of requests before memory is measured")
    p.add_argument("--max-growth", type=float, help="allowed memory growth after warm-up, as a fraction")
    p.add_argument("--max-growth-mb", type=float, default=500, help="allowed memory growth after warm-up")
    p.add_argument("--max-session-mb", type=float, default=500, help="allowed growth over the new sessions")
    p.add_argument("--max-temp-mb", type=float, default=500, help="allowed size of the temp folder at the end")
    p.add_argument("--no-train", action="store_true", help="skip the training run through the API")
    p.add_argument("--url", help="an app already running (default: start one on a free port)")
    p.add_argument("--pid", type=int, help="with --url: the server's process id, for its memory")
    p.add_argument("--temp-dir", type=Path, help="with --url: the server's Gradio temp folder, for its disk")
    p.add_argument("--json", type=Path, help="also write the report here")
    args = p.parse_args(argv)
    if args.url and not args.pid:
        p.error("--url needs --pid (the server process, to measure its memory)")
    with tempfile.TemporaryDirectory(prefix="soak-") as work:
        env = {"CONVFORMER_JANITOR_S": "2", "CONVFORMER_PARTIAL_UPLOAD_S": "1"}
        server = nullcontext(None) if args.url else app_server(extra_env=env)
        with server as s:
            url, pid, temp = (args.url, args.pid, args.temp_dir) if s is None else (s.url, s.proc.pid, s.temp_dir)
            report = soak(url, pid, temp, args.clients, args.requests, args.img_size, args.max_seconds,
                          args.warmup, args.sessions, Path(work), train=not args.no_train)
            report["server_alive"] = psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"
    problems = [k for k, bad in (
        ("valid requests failed", report["valid_failures"]),
        ("attacks not refused", report["bad_not_refused"]),
        ("attacks refused without a good message", report["bad_without_message"]),
        ("memory grew too much", report["rss_end_mb"] - report["rss_warm_mb"] > args.max_growth_mb
         or (args.max_growth is not None and report["growth_after_warmup"] > args.max_growth)),
        ("new sessions grew memory too much", (report.get("session_growth_mb") or 0) > args.max_session_mb),
        ("sessions failed", report.get("sessions_failed", 0)),
        ("temp folder too large", report["temp_mb_end"] > args.max_temp_mb),
        ("partial uploads left", report["partial_uploads_end"] > 0),
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
