"""App benchmark, end to end against a real `python app.py` on 127.0.0.1:

- cold start: from launching `python app.py` to the first successful `/predict` answer (gradio_client);
- `/predict` latency (p50, p95) over N sequential requests with a 224 x 224 image and every output on
  (mid fusion, Grad-CAM of the predicted class), for the bundled 64 px model (the default controls) and
  for convformer_mid_tiny at 224 px with random weights, each from three API clients (gradio_client as
  documented, the same client reusing one SSL context, and a browser-like HTTP client), interleaved with a
  bare inspection of the same model in this process, `inspect(model, preprocess(image), cam_class="pred")`,
  so each ratio p50 / bare is same-load;
- throughput under `clients` concurrent gradio_clients (one per thread), with and without a shared SSL
  context, against sequential throughput;
- peak memory of the serving process (VmHWM from /proc/<pid>/status, children included).

The server is started in a subprocess on a free port and always stopped.
"""
from __future__ import annotations

import contextlib
import functools
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

import torch

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "assets" / "examples" / "photo_chelsea_cat.jpg"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_image(folder: Path, size: int = 224) -> Path:
    """A 224 x 224 PNG: the example photo resized, or noise when the photo is missing."""
    from PIL import Image
    if EXAMPLE.is_file():
        img = Image.open(EXAMPLE).convert("RGB").resize((size, size), Image.BICUBIC)
    else:
        img = Image.fromarray((torch.rand(size, size, 3) * 255).byte().numpy())
    path = folder / "bench_224.png"
    img.save(path)
    return path


def _status_kb(pid: int, field: str) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _children(pid: int) -> list[int]:
    kids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                if int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    kids.append(int(d.name))
    return kids + [g for k in kids for g in _children(k)]


def peak_rss_bytes(pid: int) -> tuple[int, int]:
    """(peak RSS of the process, sum of peak RSS of it and its descendants), in bytes."""
    own = _status_kb(pid, "VmHWM") * 1024
    return own, own + sum(_status_kb(k, "VmHWM") * 1024 for k in _children(pid))


class Server:
    """`python app.py --host 127.0.0.1 --port N` in a subprocess; a context manager that always stops it."""

    def __init__(self, port: int | None = None, log_path: Path | None = None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log_path = log_path or Path(tempfile.mkstemp(prefix="bench_app_", suffix=".log")[1])
        self.proc: subprocess.Popen | None = None
        self.started = 0.0

    def __enter__(self) -> "Server":
        env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1"}
        self._log = open(self.log_path, "w")
        self.started = time.perf_counter()
        self.proc = subprocess.Popen([sys.executable, "app.py", "--host", "127.0.0.1", "--port", str(self.port)],
                                     cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()

    def log_tail(self, n: int = 2000) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text()[-n:]
        return ""


def predict(client, image: Path, **controls: Any) -> Any:
    from gradio_client import handle_file
    return client.predict(handle_file(str(image)), "mid", api_name="/predict", **controls)


def wait_first_predict(server: Server, image: Path, timeout: float = 180.0):
    """Poll until `/predict` answers; return (seconds since launch, seconds until the page first answered
    HTTP 200, the connected client). The difference is the first request: client handshake and the
    first model build and inspection."""
    import urllib.request
    from gradio_client import Client
    client, last, http = None, None, None
    while time.perf_counter() - server.started < timeout:
        if server.proc.poll() is not None:
            raise RuntimeError(f"app.py exited with code {server.proc.returncode}:\n{server.log_tail()}")
        try:
            if http is None:
                with urllib.request.urlopen(server.url + "config", timeout=5) as r:
                    r.read()
                http = time.perf_counter() - server.started
            client = client or Client(server.url, verbose=False)
            predict(client, image)
            return time.perf_counter() - server.started, http, client
        except Exception as e:  # not up yet: connection refused, config not served yet
            last = e
            time.sleep(0.01)
    raise TimeoutError(f"no /predict answer within {timeout:.0f} s (last error: {last!r}):\n{server.log_tail()}")


def bare_inspection(image: Path, weights: str = "bundled") -> Callable[[], Any]:
    """The app's model for the default controls with these weights (bundled: the mid checkpoint in assets/
    when there is one; random: convformer_mid_tiny at 224 px), and a function that decodes, preprocesses and
    inspects the image with Grad-CAM, as the handler must."""
    import convformer
    from convformer.export.checkpoint import bundled_checkpoint
    path = bundled_checkpoint("mid") if weights == "bundled" else None
    if path is not None:
        model = convformer.load_checkpoint(path).eval()
    else:
        try:
            from convformer_app.controls import RANDOM_CLASSES as classes
        except ImportError:
            classes = 1000
        model = convformer.create("convformer_mid_tiny", num_classes=classes).eval()

    def fn():
        x = convformer.preprocess(convformer.load_image(image), model)
        return convformer.inspect(model, x, cam_class="pred")
    fn()  # FLOPs counted once and cached, as in the app
    fn.img_size = model.config.img_size[0]
    return fn


def _img_size(fn: Callable[[], Any]) -> int:
    return fn.img_size


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def concurrent(url: str, image: Path, clients: int, per_client: int, shared_ssl: bool = False) -> dict:
    """`clients` threads, each with its own Client, each sending `per_client` requests at once. With
    `shared_ssl`, each client reuses one SSL context, so the clients (on the same cores) cost less CPU."""
    import ssl

    from gradio_client import Client
    kw = {"ssl_verify": ssl.create_default_context()} if shared_ssl else {}
    conns = [Client(url, verbose=False, **kw) for _ in range(clients)]
    barrier, lat, errors, retries = threading.Barrier(clients + 1), [], [], []

    def work(c):
        barrier.wait()
        for _ in range(per_client):
            t = time.perf_counter()
            for attempt in range(2):  # one retry, counted: a pooled keep-alive connection the server has
                try:                  # closed meanwhile fails with RemoteProtocolError before it is sent
                    predict(c, image)
                    lat.append(time.perf_counter() - t)
                    break
                except Exception as e:  # counted, not fatal: the queue may also refuse when full
                    (retries if attempt == 0 else errors).append(repr(e))
    threads = [threading.Thread(target=work, args=(c,)) for c in conns]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    for c in conns:
        with contextlib.suppress(Exception):
            c.close()
    return {"clients": clients, "requests": len(lat), "errors": len(errors), "first_error": errors[:1],
            "retries": len(retries), "first_retry": retries[:1],
            "wall_s": wall, "req_s": len(lat) / wall, "p50_ms": statistics.median(lat) * 1e3 if lat else None,
            "p95_ms": _pct(lat, 0.95) * 1e3 if lat else None}


def controls(weights: str) -> dict:
    """Controls for a series. Bundled: the app's defaults (the checkpoint fixes the architecture). Random:
    convformer_mid_tiny's own hyperparameters, 224 px, sent explicitly (the API's defaults are the bundled
    model's, so without them the app would run a 64 px model against a 224 px bare inspection)."""
    if weights == "bundled":
        return {}
    from convformer.presets import PRESETS
    from convformer_app.controls import hparams
    return {"preset": "convformer_mid_tiny", **hparams(PRESETS["convformer_mid_tiny"])}


def clients(url: str) -> dict[str, Any]:
    """The API clients timed side by side, by name:
    - `gradio_client`: `Client(url)` as its docs show it;
    - `gradio_client, shared SSL`: the same client given one SSL context to reuse
      (`ssl_verify=ssl.create_default_context()`, certificates still checked). gradio_client opens a new httpx
      client for every upload, queue join, event stream and output download, and each builds an SSL context
      from certifi's bundle (about 20 ms of CPU, even for http://);
    - `browser-like HTTP`: Gradio's protocol over one keep-alive connection pool, the stream read as it
      arrives, outputs fetched in parallel (benchmarks/http_client.py), which is what the page does."""
    import ssl

    from gradio_client import Client

    from benchmarks.http_client import HttpClient
    return {"gradio_client": Client(url, verbose=False),
            "gradio_client, shared SSL": Client(url, verbose=False, ssl_verify=ssl.create_default_context()),
            "browser-like HTTP": HttpClient(url)}


def requester(client: Any) -> Callable[..., Any]:
    """`f(image, **controls)` -> /predict's outputs, for either kind of client."""
    from benchmarks.http_client import HttpClient
    return client.predict if isinstance(client, HttpClient) else functools.partial(predict, client)


def check_size(output: list, size: int) -> None:
    """The app must have run the same input size as the bare inspection (its shape table says)."""
    from convformer_app.explore.handlers import PREDICT_OUTPUTS
    first = output[PREDICT_OUTPUTS.index("table")]["data"][0][2]
    if first != f"(B=1, C=3, H={size}, W={size})":  # named axes (convformer.axes)
        raise RuntimeError(f"the app ran a {first} input, the bare inspection {size} px: not comparable")


def run(requests: int = 30, clients_n: int = 8, per_client: int = 5, log: Callable[[str], None] = print) -> dict:
    """The whole app benchmark; a dict with the figures, the ratios and a text table."""
    if not (ROOT / "app.py").is_file():
        return {"error": "app.py not found", "table": "(app.py not found: app benchmark skipped)"}
    with tempfile.TemporaryDirectory() as tmp:
        image = make_image(Path(tmp))
        import gradio_client  # noqa: F401  imported before the clock starts: only the server's start counts
        with Server() as server:
            cold, http, client = wait_first_predict(server, image)
            log(f"  cold start: {cold:.2f} s to the first /predict answer ({http:.2f} s to the first HTTP "
                f"answer; port {server.port})")
            series, apis = {}, clients(server.url)
            send = {name: requester(c) for name, c in apis.items()}
            for weights in ("bundled", "random"):  # the app's default model, and mid_tiny at 224 px
                bare, ctl = bare_inspection(image, weights), controls(weights)
                times: dict[str, list[float]] = {"bare": [], **{name: [] for name in apis}}
                warm = {name: f(image, weights=weights, **ctl) for name, f in send.items()}  # builds the model
                check_size(warm["browser-like HTTP"], _img_size(bare))
                for _ in range(requests):  # interleaved: each client's request, then a bare inspection
                    for name, f in send.items():
                        t = time.perf_counter()
                        f(image, weights=weights, **ctl)
                        times[name].append(time.perf_counter() - t)
                    t = time.perf_counter()
                    bare()
                    times["bare"].append(time.perf_counter() - t)
                bare_ms = statistics.median(times["bare"]) * 1e3
                s = series[weights] = {"bare_inspection_ms": bare_ms, "model_img_size": _img_size(bare),
                                       "clients": {}}
                for name in apis:
                    req = times[name]
                    p50 = statistics.median(req) * 1e3
                    s["clients"][name] = {"p50_ms": p50, "p95_ms": _pct(req, 0.95) * 1e3, "ratio": p50 / bare_ms,
                                          "req_s": len(req) / sum(req)}
                    log(f"  /predict ({weights} weights, {name} client) p50 {p50:.0f} ms, p95 "
                        f"{_pct(req, 0.95) * 1e3:.0f} ms over {requests}; bare inspection {bare_ms:.0f} ms "
                        f"({p50 / bare_ms:.2f}x)")
                d = s["clients"]["gradio_client"]  # the headline numbers: the client as its docs show it
                s.update(predict_p50_ms=d["p50_ms"], predict_p95_ms=d["p95_ms"], predict_ratio=d["ratio"],
                         sequential_req_s=d["req_s"])
            conc = concurrent(server.url, image, clients_n, per_client)
            conc_ssl = concurrent(server.url, image, clients_n, per_client, shared_ssl=True)
            for name, c in (("gradio_client", conc), ("gradio_client, shared SSL", conc_ssl)):
                log(f"  {clients_n} clients ({name}): {c['req_s']:.2f} req/s ({c['requests']} ok, {c['errors']} "
                    f"errors), p50 {c['p50_ms'] or 0:.0f} ms")
            own, total = peak_rss_bytes(server.proc.pid)
            rss = _status_kb(server.proc.pid, "VmRSS") * 1024
            for c in (client, *apis.values()):
                with contextlib.suppress(Exception):
                    c.close()
    main = {k: v for k, v in series["bundled"].items() if k != "clients"}  # the target: the default controls
    out = {"cold_start_s": cold, "cold_http_s": http, "requests": requests, **main, "series": series,
           "concurrent": conc, "concurrency_speedup": conc["req_s"] / main["sequential_req_s"],
           "concurrent_shared_ssl": conc_ssl, "concurrency_speedup_shared_ssl":
               conc_ssl["req_s"] / series["bundled"]["clients"]["gradio_client, shared SSL"]["req_s"],
           "server_peak_rss_gb": total / 1e9, "server_peak_rss_own_gb": own / 1e9, "server_rss_end_gb": rss / 1e9,
           "torch_threads_client": torch.get_num_threads()}
    out["table"] = app_table(out)
    return out


def app_table(a: dict) -> str:
    from benchmarks.bench import _align
    c = a["concurrent"]
    lines = [["measure", "value"],
             ["cold start: python app.py -> first /predict", f"{a['cold_start_s']:.2f} s"],
             ["  of which: python app.py -> server answers HTTP", f"{a['cold_http_s']:.2f} s"],
             *[row for w, r in a["series"].items() for row in (
                 [f"bare inspection, {w} weights ({r['model_img_size']} px model, with Grad-CAM)",
                  f"{r['bare_inspection_ms']:.1f} ms"],
                 *[[f"  /predict p50 / p95, {name} client ({a['requests']} requests)",
                    f"{c['p50_ms']:.0f} / {c['p95_ms']:.0f} ms = {c['ratio']:.2f}x bare"]
                   for name, c in r["clients"].items()])],
             ["sequential throughput (bundled weights)", f"{a['sequential_req_s']:.2f} req/s"],
             [f"{c['clients']} concurrent clients: throughput", f"{c['req_s']:.2f} req/s ({c['errors']} errors)"],
             [f"{c['clients']} concurrent clients: p50 / p95", f"{c['p50_ms'] or 0:.0f} / {c['p95_ms'] or 0:.0f} ms"],
             ["concurrent / sequential throughput", f"{a['concurrency_speedup']:.2f}x"],
             *([[f"{a['concurrent_shared_ssl']['clients']} concurrent clients, shared SSL: throughput",
                 f"{a['concurrent_shared_ssl']['req_s']:.2f} req/s ({a['concurrent_shared_ssl']['errors']} errors, "
                 f"{a['concurrency_speedup_shared_ssl']:.2f}x sequential)"]] if "concurrent_shared_ssl" in a else []),
             ["serving process peak RSS (VmHWM, with children)", f"{a['server_peak_rss_gb']:.2f} GB"]]
    return _align(lines)
