"""What the running app exposes: only the example pictures (allowed_paths), uploads up to max_file_size, no
server file reachable through a crafted file reference, no share link unless asked, and nothing that
unpickles or evals what a user sends."""
from __future__ import annotations

import json
import re
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import pytest

from ._appserver import ROOT, SMALL

import gradio_client  # noqa: E402
from gradio_client import Client, handle_file  # noqa: E402

pytestmark = pytest.mark.app


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def file_url(server, path: str) -> str:
    return f"{server.url}/gradio_api/file={urllib.parse.quote(path, safe='/')}"


def test_examples_are_served(server) -> None:
    """The control case: the file route works for what allowed_paths names."""
    status, body = get(file_url(server, str(ROOT / "assets" / "examples" / "shapes_star.png")))
    assert status == 200 and body.startswith(b"\x89PNG")


@pytest.mark.parametrize("path", ["/etc/passwd", "/etc/hostname", "/proc/self/environ", "app.py",
                                  "{root}/app.py", "{root}/convformer/export/checkpoint.py", "{root}/README.md",
                                  "{root}/.git/config", "{root}/assets/README.md", "{root}/requirements.txt",
                                  "{root}/assets/examples/../../app.py", "assets/examples/../../app.py",
                                  "{root}/assets/examples/%2e%2e/%2e%2e/app.py", "{temp}/../server.log",
                                  "{root}/tests/_appserver.py", "~/.bashrc"])
def test_file_route_refuses_everything_else(server, path: str) -> None:
    path = path.format(root=ROOT, temp=server.temp_dir)
    status, body = get(file_url(server, path))
    assert status in (400, 403, 404), (status, body[:200])
    assert b"root:" not in body and b"import " not in body


def test_other_routes_do_not_serve_the_repository(server) -> None:
    for route in ("/app.py", "/static/../app.py", "/assets/../app.py", "/gradio_api/static/../../app.py",
                  "/gradio_api/file=.", "/gradio_api/file=/", "/.git/config", "/README.md"):
        status, body = get(server.url + route)
        assert b"import gradio" not in body and b"[core]" not in body and b"ConvFormer Lab:" not in body[:200] \
            or status != 200, route


def _call(server, api: str, data: list) -> str:
    """A raw API call (no gradio_client upload): the whole event stream as text."""
    req = urllib.request.Request(f"{server.url}/gradio_api/call/{api}", method="POST",
                                 data=json.dumps({"data": data}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        event = json.loads(r.read())["event_id"]
    return get(f"{server.url}/gradio_api/call/{api}/{event}")[1].decode(errors="replace")


@pytest.mark.parametrize("path", ["/etc/passwd", str(ROOT / "assets" / "examples" / "shapes_star.png"),
                                  str(ROOT / "app.py"), "../../../../etc/passwd"])
def test_server_paths_in_a_request_are_refused(server, path: str) -> None:
    """A crafted FileData that names a server file instead of an upload is refused before any handler runs
    (even an example picture: the handlers only see files that were uploaded)."""
    file = {"path": path, "meta": {"_type": "gradio.FileData"}, "orig_name": "x.png"}
    for api, data in (("preview", [file]), ("predict", [file, *list(SMALL.values())])):
        stream = _call(server, api, data)
        assert "event: error" in stream, stream[:500]
        assert "root:" not in stream and "x:0:0" not in stream
    stream = _call(server, "predict", [None, *(dict(SMALL, weights="upload", checkpoint=file)).values()])
    assert "event: error" in stream


def test_uploads_over_the_size_limit_are_refused(server, tmp_path: Path) -> None:
    big = tmp_path / "big.png"
    with open(big, "wb") as f:
        f.truncate(26 * 1024 * 1024)  # over max_file_size="25mb" (sparse: no disk used)
    boundary = uuid.uuid4().hex
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"big.png\"\r\n"
            "Content-Type: image/png\r\n\r\n").encode()
    body = head + big.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    req = urllib.request.Request(f"{server.url}/gradio_api/upload", data=body, method="POST",
                                 headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, timeout=60)
    assert info.value.code in (400, 413), info.value.code
    assert not any(p.stat().st_size > 25e6 for p in server.temp_dir.rglob("*") if p.is_file()), \
        "the refused upload was kept in the temp folder"
    small = tmp_path / "small.png"
    small.write_bytes((ROOT / "assets" / "examples" / "shapes_star.png").read_bytes())
    out = Client(server.url, verbose=False).predict(handle_file(str(small)), api_name="/preview")
    assert out[0]


def test_no_share_link_unless_asked(server) -> None:
    demo = server.demo
    assert demo.server_name == "127.0.0.1" and not demo.share and demo.share_url is None


SOURCES = [ROOT / "app.py", *sorted((ROOT / "convformer").glob("*.py")), *sorted((ROOT / "convformer_app").glob("*.py"))]


@pytest.mark.parametrize("pattern", [r"\btorch\.load\(", r"\bpickle\.loads?\(", r"allow_pickle\s*=\s*True",
                                     r"(?<![.\w])eval\(", r"(?<![.\w])exec\(", r"\bshell\s*=\s*True", r"\bos\.system\(",
                                     r"\bjoblib\.", r"\bdill\.", r"trust_remote_code"])
def test_nothing_user_supplied_is_unpickled_or_executed(pattern: str) -> None:
    """A static check over the app and the library: no unpickling or code execution, but for the one reviewed
    exception below."""
    hits = [f"{p.name}:{i}" for p in SOURCES for i, line in enumerate(p.read_text().splitlines(), 1)
            if re.search(pattern, line) and not line.lstrip().startswith("#")]
    assert [h for h in hits if h.split(":")[0] not in REVIEWED.get(pattern, ())] == [], hits


# export.load runs the source that convformer.export generated from a config (never a user's text), for the
# library's own check that the file builds the same model; the app never calls it (test below)
REVIEWED = {r"(?<![.\w])exec\(": ("export.py",)}


def test_the_app_never_executes_exported_source() -> None:
    app_sources = [ROOT / "app.py", *(ROOT / "convformer_app").glob("*.py")]
    assert not [p.name for p in app_sources if re.search(r"export\.load\b|\bimport load\b|check\(", p.read_text())]


def test_launch_settings_in_app_py() -> None:
    """The launch call keeps exposure minimal: only the examples folder, an upload limit, errors shown only as
    the handlers' own messages, share off by default, localhost by default."""
    text = (ROOT / "app.py").read_text()
    launch = text[text.index("demo.launch("):]
    assert re.search(r"allowed_paths=\[str\(session\.EXAMPLES\)\]", launch), "allowed_paths must stay minimal"
    assert "max_file_size=" in launch and "show_error=False" in launch and "share=share" in launch
    assert "share=args.share" in text
    assert '"--share", action="store_true"' in text and 'os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1")' in text
    assert "delete_cache=" in text
