"""Bad input through the running app (gradio_client against a subprocess server), and configs from any
control values.

Every case of the generated corpus (tests/_corpus.py) either works (valid but unusual images) or is refused
with a clear message that carries no server path or traceback; a normal request right after still works.
Pickles disguised as checkpoints are never executed (their payload would create a marker file). Absurd
hyperparameters are refused up front, without the server's memory moving.
"""
from __future__ import annotations

import math
import re
import time
from pathlib import Path

import gradio as gr
import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from convformer.export.checkpoint import save_checkpoint
from convformer.config import FUSIONS, MERGES, ConvFormerConfig
from convformer.data.folders import DatasetError, safe_extract_zip
from convformer.model import ConvFormer
from convformer.presets import PRESETS
from convformer_app.controls import Controls

from . import _corpus
from ._appserver import SMALL

import gradio_client  # noqa: E402
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

pytestmark = pytest.mark.app

CONFIG_KEYS = ("fusion", "preset", "img_size", "embed_dim", "depth", "num_heads", "mlp_ratio", "patch_size",
               "conv_widths", "conv_depths", "merge")
LEAKS = re.compile(r"Traceback|File \"|/tmp/|/work/|/home/|site-packages|\.py\b")


@pytest.fixture(scope="module")
def client(server) -> Client:
    return Client(server.url, verbose=False)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, tuple[Path, bool]]:
    return _corpus.images(tmp_path_factory.mktemp("images"))


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("checkpoints")
    cfg = Controls(**{k: SMALL[k] for k in CONFIG_KEYS}).config()
    good = save_checkpoint(ConvFormer(cfg), folder / "good.safetensors", classes=[f"c{i}" for i in range(10)])
    other = save_checkpoint(ConvFormer(cfg.replace(embed_dim=48)), folder / "other.safetensors")
    bad = folder / "bad"
    bad.mkdir()
    return {"good": good, **_corpus.checkpoints(bad, folder / "PAYLOAD_RAN", good, other)}


def predict(client: Client, image: Path, **kw) -> tuple:
    args = {**SMALL, **kw}
    if isinstance(args["checkpoint"], Path):
        args["checkpoint"] = handle_file(str(args["checkpoint"]))
    return client.predict(handle_file(str(image)), *args.values(), api_name="/predict")


def refused(client: Client, image: Path, **kw) -> str:
    """The request fails with a clear message (no paths, no traceback); the next normal request works."""
    with pytest.raises(AppError) as info:
        predict(client, image, **kw)
    message = str(info.value)
    assert len(message) > 20 and message != "Error", f"no clear message: {message!r}"
    assert not LEAKS.search(message), f"the message leaks server internals: {message!r}"
    normal(client, image.parent / "rgb.png")
    return message


def normal(client: Client, image: Path) -> None:
    out = predict(client, image)
    assert out[0]["label"].startswith("class "), out[0]


# ---- images ---------------------------------------------------------------------------------------------
VALID = ["rgb.png", "progressive.jpg", "exif_rotated.jpg", "16bit.png", "cmyk.jpg", "palette.png", "animated.gif",
         "rgba.png", "greyscale_alpha.png", "1bit.bmp", "float.tiff", "lossless.webp", "tall_thin.png"]
INVALID = {"empty.png": "not an image", "text_renamed.png": "not an image", "svg.svg": "",
           "html_renamed.png": "not an image", "truncated.png": "truncated", "truncated.jpg": "",
           "corrupt.png": "corrupt", "1x1.png": "1 x 1", "20000x20000.png": "too large",
           "declares_100000x100000.png": "too large", "declares_7000x7000.png": "7000 x 7000",
           "short_ihdr.png": "not an image", "declares_40mp_float.tiff": "decoding it would need",
           "long_name.png": "not an image", "many_scans.jpg": "scans; the limit is 100"}


def test_corpus_is_complete(corpus) -> None:
    assert {k for k, (_, ok) in corpus.items() if ok} == set(VALID)
    assert {k for k, (_, ok) in corpus.items() if not ok} == set(INVALID)


@pytest.mark.parametrize("name", VALID)
def test_valid_but_unusual_images_work(client: Client, corpus, name: str) -> None:
    out = predict(client, corpus[name][0])
    assert out[0]["label"].startswith("class ")
    _, status = client.predict(handle_file(str(corpus[name][0])), api_name="/preview")
    assert status == "", status


def test_exif_rotation_is_applied(client: Client, corpus) -> None:
    """A 96 x 64 JPEG tagged 'rotate 90' is shown (and run) portrait, with its bright square top right."""
    picture, _ = client.predict(handle_file(str(corpus["exif_rotated.jpg"][0])), api_name="/preview")
    with Image.open(picture) as img:
        w, h = img.size
        assert h > w, (w, h)
        rgb = img.convert("RGB")
        assert sum(rgb.getpixel((w - 1 - w // 10, h // 10))) > sum(rgb.getpixel((w // 10, h // 10)))


@pytest.mark.parametrize("name", sorted(INVALID))
def test_bad_images_are_refused(client: Client, corpus, name: str) -> None:
    start = time.monotonic()
    message = refused(client, corpus[name][0])
    assert INVALID[name] in message, message
    assert time.monotonic() - start < 30
    if not name.endswith(".svg"):  # the preview tells the person too (an .svg may be refused by its type first)
        _, status = client.predict(handle_file(str(corpus[name][0])), api_name="/preview")
        assert "cannot be used" in status and not LEAKS.search(status), status


# ---- checkpoints ----------------------------------------------------------------------------------------
SAVED_WITH = {"huge_classifier.safetensors": "holds no tensors", "nested_header.safetensors": "nested too deeply",
              "other_fusion.safetensors": "saved with fusion='cnn' (here 'mid')",
              "in_chans_4.safetensors": "saved with in_chans=4", "degenerate_std.safetensors": "saved with std=(1e-09",
              "empty_objects.safetensors": "the limit is 10000"}


def test_good_checkpoint_works(client: Client, corpus, checkpoints) -> None:
    out = predict(client, corpus["rgb.png"][0], weights="upload", checkpoint=checkpoints["good"])
    assert out[0]["label"].startswith("c")


@pytest.mark.parametrize("name", ["pickle_disguised.safetensors", "pickle.pt", "empty.safetensors",
                                  "random_bytes.safetensors", "truncated_header.safetensors",
                                  "header_length_lies.safetensors", "offsets_lie.safetensors",
                                  "truncated_data.safetensors", "other_config.safetensors", "no_config.safetensors",
                                  "bad_json_config.safetensors", "absurd_config.safetensors",
                                  "wrong_dtype.safetensors", "wrong_shapes.safetensors",
                                  "classes_mismatch.safetensors", "meta_not_a_mapping.safetensors",
                                  "header_is_a_list.safetensors", *SAVED_WITH])
def test_bad_checkpoints_are_refused(client: Client, corpus, checkpoints, name: str) -> None:
    marker = checkpoints["good"].parent / "PAYLOAD_RAN"
    message = refused(client, corpus["rgb.png"][0], weights="upload", checkpoint=checkpoints[name])
    assert not marker.exists(), "a pickle inside an uploaded checkpoint was executed"
    if name in ("other_config.safetensors", "wrong_dtype.safetensors", "wrong_shapes.safetensors"):
        assert "does not fit" in message, message
    assert SAVED_WITH.get(name, "") in message, message
    try:  # the weights notice reads the header as soon as a file is chosen
        notice = client.predict("mid", "upload", handle_file(str(checkpoints[name])), api_name="/checkpoint_notice")
    except AppError as e:  # refused by its type before any handler runs (.pt)
        notice = str(e)
    assert not LEAKS.search(notice), notice
    assert not marker.exists()


# ---- absurd hyperparameters -----------------------------------------------------------------------------
ABSURD = [dict(depth=10**6), dict(embed_dim=10**7), dict(img_size=10**5), dict(num_heads=10**6),
          dict(conv_widths="10000000, 10000000"), dict(conv_depths="1000000, 1"),
          dict(conv_widths=", ".join(["64"] * 5000), conv_depths=", ".join(["1"] * 5000)),
          dict(conv_widths="1e400, 2"), dict(mlp_ratio=1e300),
          # inside the sliders' ranges, but too big together: refused by the limits on params / activations
          dict(img_size=512, embed_dim=768, depth=24, num_heads=12, conv_widths="2048, 2048, 2048, 2048",
               conv_depths="16, 16, 16, 16"),
          dict(fusion="vit", preset="convformer_vit_tiny", img_size=512, patch_size=2, embed_dim=64, num_heads=2)]


def test_absurd_hyperparameters_are_refused_up_front(server, client: Client, corpus) -> None:
    proc = psutil.Process(server.pid)
    normal(client, corpus["rgb.png"][0])
    before = proc.memory_info().rss
    for kw in ABSURD:
        start = time.monotonic()
        refused(client, corpus["rgb.png"][0], **kw)
        assert time.monotonic() - start < 15, f"{kw} took too long: it was attempted"
    grown = proc.memory_info().rss - before
    assert grown < 300e6, f"the server grew {grown / 1e6:.0f} MB on refused configs"


ANY = st.one_of(st.none(), st.booleans(), st.integers(-10**3, 10**3), st.integers(-10**400, 10**400),
                st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=30),
                st.from_regex(r"\A\s*\d{1,4}(\s*,\s*\d{1,4}){0,7}\s*\Z"), st.lists(st.integers(-5, 5000), max_size=8))


def _choice(values) -> st.SearchStrategy:
    return st.one_of(st.sampled_from(list(values)), ANY)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.tuples(_choice(FUSIONS), _choice(PRESETS), *(ANY for _ in CONFIG_KEYS[2:-1]), _choice(MERGES)))
def test_make_config_from_any_control_values(values) -> None:
    """Whatever the controls (or an API caller) send, Controls.config gives a valid config or a gr.Error."""
    try:
        cfg = Controls(*values).config()
    except gr.Error as e:
        assert e.message and not LEAKS.search(e.message)
        return
    assert isinstance(cfg, ConvFormerConfig)
    assert all(isinstance(v, int) and v > 0 for v in (cfg.embed_dim, cfg.num_heads, cfg.patch_size))
    assert math.isfinite(cfg.mlp_ratio)


# ---- zips (no Train tab yet: the library functions it will call) -------------------------------------------
@pytest.mark.parametrize("name", ["bomb.zip", "dotdot.zip", "absolute.zip", "symlink.zip", "many_entries.zip",
                                  "not_a.zip"])
def test_hostile_zips_are_refused(tmp_path: Path, name: str) -> None:
    zips = _corpus.zips(tmp_path)
    dest = tmp_path / "out" / "dest"
    with pytest.raises(DatasetError) as info:
        safe_extract_zip(zips[name], dest, max_files=200)
    assert str(info.value)
    assert not (tmp_path / "escaped.png").exists() and not (tmp_path / "out" / "escaped.png").exists()
    assert not dest.exists() or not any(p.is_file() for p in dest.rglob("*")), "partial extraction left behind"


# ---- issue 14: every input path within its limit, every refusal one line ----------------------------------
def one_line_refusal(fn, sent: str = "") -> str:
    with pytest.raises(AppError) as info:
        fn()
    message = str(info.value)
    assert len(message) > 20 and "\n" not in message and "upstream Gradio app" not in message, message
    assert not LEAKS.search(message), message
    assert len(message) < 600 and (len(sent) <= 200 or sent[:201] not in message), message[:300]
    return message


@pytest.mark.parametrize("case", ["image is a number", "image is a path string", "depth is a word",
                                  "1 MB fusion", "1 MB weights", "1 MB conv widths", "example index",
                                  "test images is a word"])
def test_wrong_arguments_get_the_apps_one_line_message(client: Client, corpus, case: str) -> None:
    args, image, sent = dict(SMALL), handle_file(str(corpus["rgb.png"][0])), ""
    if case == "image is a number":
        image = 123
    elif case == "image is a path string":
        image = "/etc/passwd"
    elif case == "depth is a word":
        args["depth"] = "deep"
    elif case.startswith("1 MB"):
        sent = "x" * 1_000_000
        args[{"1 MB fusion": "fusion", "1 MB weights": "weights", "1 MB conv widths": "conv_widths"}[case]] = sent
    if case == "example index":
        # no event data: Gradio 6.31 cannot build the bare gr.SelectData the gallery handler needs (so that a
        # click passes its index), and refuses before the handler: still the app's one line
        message = one_line_refusal(lambda: client.predict(api_name="/example"))
        assert ("example" in message and "does not exist" in message) or "cannot be used" in message, message
    elif case == "test images is a word":
        one_line_refusal(lambda: client.predict("many", api_name="/compare_split"))
    else:
        message = one_line_refusal(lambda: client.predict(image, *args.values(), api_name="/predict"), sent)
        assert "cannot be used" in message or "not" in message, message
    normal(client, corpus["rgb.png"][0])


@pytest.mark.parametrize("name, words", [("declares_7000x7000.png", "7000 x 7000"),
                                         ("declares_100000x100000.png", "too large"),
                                         ("declares_40mp_float.tiff", "decoding it would need")])
def test_the_compare_image_goes_through_the_same_limits(client: Client, corpus, name: str, words: str) -> None:
    """gr.Image decoded uploads itself (past the 40 MP check); now it passes the file on and load_image decides."""
    message = one_line_refusal(lambda: client.predict(handle_file(str(corpus[name][0])), api_name="/compare_image"))
    assert words in message and "cannot be used" in message, message


def test_kept_results_share_one_byte_budget(server, corpus, monkeypatch) -> None:
    """Sessions that never end keep their last result only within one budget for the whole process: the
    least recently used goes first, and its page is told to run again."""
    from convformer_app import safety
    first = Client(server.url, verbose=False)
    predict(first, corpus["rgb.png"][0])
    one = safety.RESULTS.size_of(safety.RESULTS.get(next(reversed(safety.RESULTS._items))))
    monkeypatch.setattr(safety.RESULTS, "budget", int(2.5 * one))
    for _ in range(3):
        predict(Client(server.url, verbose=False), corpus["rgb.png"][0])
    assert safety.RESULTS.nbytes <= 2.5 * one and len(safety.RESULTS) == 2
    message = one_line_refusal(lambda: first.predict("mean", 0.0, None, None, None, api_name="/attention"))
    assert "no longer kept" in message and "Run again" in message.replace("run again", "Run again"), message


def test_a_training_run_releases_its_model_and_its_folder_is_pruned(server, monkeypatch) -> None:
    from types import SimpleNamespace

    from convformer_app.train import handlers as train_tab, jobs
    owner = SimpleNamespace(session_hash="robustness-train")
    controls = {k: SMALL[k] for k in (*CONFIG_KEYS, "weights", "checkpoint")}
    for _ in train_tab.train("shapes", None, 1, 2e-3, 32, 100, 32, **controls, request=owner,
                             progress=lambda *a, **k: None):
        pass
    job = train_tab.JOBS[owner.session_hash]
    assert not job.running and job.result.model is None  # the model is released when the run ends
    assert job.checkpoint.is_file() and len(list(job.out_dir.glob("*.safetensors"))) == 1
    monkeypatch.setenv("CONVFORMER_TRAIN_DISK_MB", "0")
    jobs.prune()
    assert not job.out_dir.exists() and owner.session_hash not in train_tab.JOBS


def test_uploads_cut_off_leave_no_partial_files(server) -> None:
    import http.client
    from urllib.parse import urlparse

    from convformer_app import safety
    before = {p.name for p in server.temp_dir.iterdir() if p.is_file() and p.name.startswith("tmp")}
    u = urlparse(server.url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    head = (b'--b\r\nContent-Disposition: form-data; name="files"; filename="cut.png"\r\n'
            b"Content-Type: image/png\r\n\r\n")
    conn.putrequest("POST", "/gradio_api/upload")
    conn.putheader("Content-Type", "multipart/form-data; boundary=b")
    conn.putheader("Content-Length", str(len(head) + 5_000_000))
    conn.endheaders()
    conn.send(head + b"\0" * 100_000)
    deadline = time.monotonic() + 20
    partial: set[str] = set()
    while not partial and time.monotonic() < deadline:  # polled: the server writes what it got
        partial = {p.name for p in server.temp_dir.iterdir() if p.is_file() and p.name.startswith("tmp")} - before
    conn.sock.close()
    assert partial, "the cut-off upload left no temp file to test with"
    finished = next(p for p in server.temp_dir.rglob("*") if p.is_file() and p.parent != server.temp_dir)
    assert safety.remove_partial_uploads(server.temp_dir, older_than=0) >= 1
    assert not any((server.temp_dir / n).exists() for n in partial) and finished.exists()


def test_compare_caches_keyed_by_a_request_value_are_bounded() -> None:
    from convformer_app.compare import handlers as compare
    for n in (10, 20, 30, 40):
        assert len(compare._test_split((32, 32), n)) == n
    assert len(compare._DATA) <= compare.MAX_SPLITS


def test_the_time_limit_covers_loading_a_zip(server, tmp_path: Path, monkeypatch) -> None:
    """Hundreds of large images compress to a few KB: loading them is bounded by the run's time limit too."""
    import io
    import zipfile
    from types import SimpleNamespace

    from convformer_app.train import handlers as train_tab
    buf = io.BytesIO()
    Image.new("L", (2000, 2000)).save(buf, "PNG")
    with zipfile.ZipFile(tmp_path / "data.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(40):
            zf.writestr(f"c{i % 2}/{i}.png", buf.getvalue())
    monkeypatch.setenv("CONVFORMER_TRAIN_TIME_LIMIT", "0.000001")
    owner = SimpleNamespace(session_hash="robustness-zip")
    controls = {k: SMALL[k] for k in (*CONFIG_KEYS, "weights", "checkpoint")}
    with pytest.raises(gr.Error, match=r"Stopped before training: the time limit was reached while extracting"):
        for _ in train_tab.train("zip", str(tmp_path / "data.zip"), 1, 2e-3, 32, 100, 32, **controls,
                                 request=owner, progress=lambda *a, **k: None):
            pass


def test_a_refusal_is_one_short_line_in_the_server_log(client: Client, corpus, capfd) -> None:
    """Gradio printed every refusal's traceback with the client's whole value: 1 MB of log per request."""
    capfd.readouterr()
    sent = "z" * 1_000_000
    one_line_refusal(lambda: client.predict(handle_file(str(corpus["rgb.png"][0])), *dict(SMALL, fusion=sent).values(),
                                            api_name="/predict"), sent)
    logged = capfd.readouterr().err
    assert "refused: " in logged and max(map(len, logged.splitlines())) < 700, logged[:300]
    assert len(logged) < 5000


def test_a_missing_argument_gets_the_apps_one_line_message(server) -> None:
    """A raw API call with too few values (gradio_client fills in defaults; curl does not)."""
    import json
    import urllib.request
    body = json.dumps({"data": [None, "mid"]}).encode()
    call = urllib.request.Request(server.url + "/gradio_api/call/predict", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(call, timeout=30) as r:
        event = json.loads(r.read())["event_id"]
    with urllib.request.urlopen(f"{server.url}/gradio_api/call/predict/{event}", timeout=60) as r:
        stream = r.read().decode()
    error = next(line for line in stream.splitlines() if line.startswith("data:") and "null" not in line[:9])
    message = json.loads(error[5:])
    message = message if isinstance(message, str) else json.dumps(message)
    assert "cannot be used" in message and "input values" in message and not LEAKS.search(message), stream[:300]
