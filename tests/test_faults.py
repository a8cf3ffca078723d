"""Faults while serving: an exception inside a model's forward, a request cancelled mid-way, a checkpoint
deleted while in use, a full temp disk, temp files cleaned by delete_cache; and a small soak run.

The app runs IN this process (the `server` fixture: app.launch on a free port, the settings of
`python app.py`), so faults can be injected with monkeypatch while real clients talk to it over HTTP.
A full disk cannot be made without root (no tiny tmpfs): it is simulated by making Gradio's image cache
writes raise ENOSPC.
"""
from __future__ import annotations

import errno
import json
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from convformer.export.checkpoint import save_checkpoint
from convformer.model import ConvFormer
from convformer_app import engine, gradio_patches
from convformer_app.controls import Controls

from ._appserver import ROOT, SMALL

import gradio_client  # noqa: E402
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

pytestmark = pytest.mark.app

IMAGE = ROOT / "assets" / "examples" / "shapes_star.png"
POISON = 40      # embed_dim of the configuration whose forward is made to fail or hang


def until(condition, timeout: float = 60.0, what: str = "condition") -> None:
    """Poll `condition` until it is true (readiness by polling, not sleeps as synchronisation)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def predict(client: Client, image: Path = IMAGE, **kw):
    args = {**SMALL, **kw}
    if isinstance(args["checkpoint"], Path):
        args["checkpoint"] = handle_file(str(args["checkpoint"]))
    return client.predict(handle_file(str(image)), *args.values(), api_name="/predict")


def ok(client: Client, **kw) -> None:
    assert predict(client, **kw)[0]["label"].startswith(("class ", "c")), "a normal request failed"


@pytest.fixture
def poisoned(monkeypatch):
    """Make forward_features of models with embed_dim == POISON call `fault` first."""
    state = {"fault": None}
    original = ConvFormer.forward_features

    def forward_features(self, x):
        if self.config.embed_dim == POISON and state["fault"]:
            state["fault"]()
        return original(self, x)
    monkeypatch.setattr(ConvFormer, "forward_features", forward_features)
    return state


@pytest.mark.parametrize("error", [RuntimeError("CUDA error: device-side assert at /srv/app/model.py:12"),
                                   ZeroDivisionError("division by zero"), AssertionError(), KeyError("x"),
                                   IndexError("index 7 is out of bounds")])
def test_exception_in_forward_is_a_clean_error(server, poisoned, error: Exception) -> None:
    def fault():
        raise error
    poisoned["fault"] = fault
    a, b = Client(server.url, verbose=False), Client(server.url, verbose=False)
    with pytest.raises(AppError) as info:
        predict(a, embed_dim=POISON)
    message = str(info.value)
    assert "Something went wrong" in message and type(error).__name__ in message, message
    assert "/srv" not in message and "Traceback" not in message
    ok(b)   # another session is unaffected
    ok(a)   # and so is the same session, with another config
    poisoned["fault"] = None
    ok(a, embed_dim=POISON)  # the model that failed still works: no lock held, no hook left behind


def test_cancel_mid_request(server, poisoned) -> None:
    """A request cancelled while its forward runs: the server stays up and answers what needs no model;
    another session's model request waits for the model thread (not failed, not lost) and is served once
    the abandoned forward ends; the model's lock is released."""
    entered, release, released = threading.Event(), threading.Event(), []

    def hang():
        entered.set()
        released.append(release.wait(30))  # a safety net only: the test releases it itself, below
    poisoned["fault"] = hang
    a, b = Client(server.url, verbose=False), Client(server.url, verbose=False)
    ok(a, embed_dim=POISON - 8)  # warm: a client with a finished request first
    job = a.submit(handle_file(str(IMAGE)), *dict(SMALL, embed_dim=POISON).values(), api_name="/predict")
    try:
        until(entered.is_set, what="the request to reach the model's forward")
        assert job.cancel()
        waiting = b.submit(handle_file(str(IMAGE)), *SMALL.values(), api_name="/predict")
        preview, _ = b.predict(handle_file(str(IMAGE)), api_name="/preview")  # served meanwhile: no model needed
        assert Path(preview).stat().st_size > 0 and not waiting.done()
    finally:
        release.set()
    assert waiting.result()[0]["label"]
    assert released and all(released)  # the forward ended because it was released, not by a timeout
    poisoned["fault"] = None
    ok(a, embed_dim=POISON)      # same model: its lock was released
    ok(a)


def _upload(url: str, path: Path) -> str:
    """POST a file to the upload route; its path on the server."""
    boundary = "cfboundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{path.name}\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode() + path.read_bytes() + \
        f"\r\n--{boundary}--\r\n".encode()
    req = urllib.request.Request(f"{url}/gradio_api/upload", data=body, method="POST",
                                 headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())[0]


def _call(url: str, api: str, data: list) -> str:
    """A raw API call with server-side file references: the event stream as text."""
    req = urllib.request.Request(f"{url}/gradio_api/call/{api}", method="POST",
                                 data=json.dumps({"data": data}).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        event = json.loads(r.read())["event_id"]
    with urllib.request.urlopen(f"{url}/gradio_api/call/{api}/{event}", timeout=120) as r:
        return r.read().decode(errors="replace")


def _file(path: str) -> dict:
    return {"path": path, "meta": {"_type": "gradio.FileData"}, "orig_name": Path(path).name}


def test_checkpoint_deleted_while_in_use(server, tmp_path: Path) -> None:
    """The checkpoint a session loaded disappears from the temp folder (delete_cache, a full disk, a person
    with a shell): that session is told to upload it again; the server and other sessions carry on."""
    cfg = Controls(**{k: SMALL[k] for k in Controls.names()}).config()
    path = save_checkpoint(ConvFormer(cfg), tmp_path / "deleted_soon.safetensors",
                           classes=[f"c{i}" for i in range(cfg.num_classes)])
    url = server.url
    image, checkpoint = _upload(url, IMAGE), _upload(url, path)
    args = dict(SMALL, weights="upload", checkpoint=_file(checkpoint))
    stream = _call(url, "predict", [_file(image), *args.values()])
    assert "event: complete" in stream, stream[-500:]
    Path(checkpoint).unlink()
    stream = _call(url, "predict", [_file(image), *args.values()])
    assert "event: error" in stream and "checkpoint" in stream, stream[-500:]
    assert str(server.temp_dir) not in stream and "Traceback" not in stream
    controls = [*(SMALL[k] for k in Controls.names()[:-2]), "upload", _file(checkpoint), None]
    notice = _call(url, "checkpoint_notice", controls)
    assert "cannot be used" in notice and str(server.temp_dir) not in notice and "Traceback" not in notice
    ok(Client(url, verbose=False))


def test_full_temp_disk(server, monkeypatch) -> None:
    """Writing output pictures fails with ENOSPC: that request fails, the server stays up, other requests
    after the disk frees up succeed."""
    import gradio.processing_utils as pu
    original, full = pu.save_pil_to_cache, threading.Event()

    def save(*args, **kwargs):
        if full.is_set():
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(*args, **kwargs)
    monkeypatch.setattr(pu, "save_pil_to_cache", save)
    client = Client(server.url, verbose=False)
    full.set()
    with pytest.raises(AppError) as info:
        predict(client)
    assert "Traceback" not in str(info.value) and str(server.temp_dir) not in str(info.value)
    full.clear()
    ok(client)
    ok(Client(server.url, verbose=False))


def test_delete_cache_removes_old_temp_files(server, tmp_path: Path) -> None:
    """What delete_cache runs every hour (here called directly with age=1 s) removes this app's uploads and
    output pictures; the app keeps working."""
    from gradio.route_utils import delete_files_created_by_app
    # the client's downloads go elsewhere: by default it would use the same GRADIO_TEMP_DIR as this process
    client = Client(server.url, verbose=False, download_files=tmp_path / "downloads")
    before = {p for p in server.temp_dir.rglob("*") if p.is_file()}  # the examples, cached for good at start
    image = tmp_path / "fresh.png"  # new content: a new upload and new output pictures, not cached ones
    Image.fromarray(np.random.default_rng(int(time.time())).integers(0, 255, (64, 64, 3), np.uint8)).save(image)
    assert predict(client, image)[0]["label"]
    # this request's upload and outputs; Gradio 6.31 also leaves an empty, untracked tmpXXXX file at the top of
    # the temp folder per upload, which delete_cache never removes (no bytes, but one inode per upload)
    files = [p for p in server.temp_dir.rglob("*") if p.is_file() and p not in before
             and not (p.parent == server.temp_dir and p.name.startswith("tmp") and p.stat().st_size == 0)]
    assert any(p.suffix in (".png", ".webp", ".jpeg") for p in files), files

    def cleaned() -> bool:
        delete_files_created_by_app(server.demo, age=1)
        return not any(p.exists() for p in files)
    try:
        until(cleaned, timeout=30, what="the app's temp files to be deleted")
    except AssertionError:
        left = [p for p in files if p.exists()]
        raise AssertionError(f"left: {[str(p.relative_to(server.temp_dir)) for p in left]}") from None
    ok(client)


def test_app_sets_delete_cache(server) -> None:
    frequency, age = server.demo.delete_cache
    assert 0 < frequency <= 24 * 3600 and 0 < age <= 24 * 3600


def test_soak_small(server) -> None:
    """scripts/soak.py at CI size: every valid request served, every bad input refused with a message."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("soak", ROOT / "scripts" / "soak.py")
    soak = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(soak)
    report = soak.main(["--clients", "3", "--requests", "4", "--sessions", "2", "--img-size", "64",
                        "--max-seconds", "400", "--max-growth", "0.5", "--url", server.url, "--pid", str(server.pid)])
    assert report["requests_sent"] == 13 and report["valid"] > 0 and report["bad"] > 0  # 12 + a training run
    assert report["sessions"] == 2 and report["sessions_failed"] == 0
    assert report["problems"] == [], report


def test_picture_cache_is_never_rewritten_in_place(server, tmp_path: Path) -> None:
    """Two sessions that get the same picture share one content-addressed file: the second save must not
    truncate it while the first session may still be downloading it (see gradio_patches.save_pil_to_cache)."""
    import gradio.processing_utils as pu
    assert pu.save_pil_to_cache is gradio_patches.save_pil_to_cache  # installed by engine.start
    picture = Image.new("RGB", (32, 32), "red")
    first = Path(pu.save_pil_to_cache(picture, str(tmp_path)))
    inode, mtime = first.stat().st_ino, first.stat().st_mtime_ns
    with open(first, "rb") as reading:  # a download in progress
        second = Path(pu.save_pil_to_cache(picture, str(tmp_path)))
        assert second == first and (first.stat().st_ino, first.stat().st_mtime_ns) == (inode, mtime)
        assert reading.read() == first.read_bytes() and first.stat().st_size > 0
    assert [p.name for p in first.parent.iterdir()] == [first.name]  # no .part file left behind
