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

from convformer.checkpoint import save_checkpoint
from convformer.config import FUSIONS, MERGES, ConvFormerConfig
from convformer.folders import DatasetError, safe_extract_zip
from convformer.model import ConvFormer
from convformer.presets import PRESETS
from convformer_app.controls import Controls

from . import _corpus
from ._appserver import SMALL

gradio_client = pytest.importorskip("gradio_client")
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
           "declares_100000x100000.png": "too large", "declares_7000x7000.png": "7000 x 7000"}


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
                                  "header_is_a_list.safetensors"])
def test_bad_checkpoints_are_refused(client: Client, corpus, checkpoints, name: str) -> None:
    marker = checkpoints["good"].parent / "PAYLOAD_RAN"
    message = refused(client, corpus["rgb.png"][0], weights="upload", checkpoint=checkpoints[name])
    assert not marker.exists(), "a pickle inside an uploaded checkpoint was executed"
    if name in ("other_config.safetensors", "wrong_dtype.safetensors", "wrong_shapes.safetensors"):
        assert "does not fit" in message, message
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
