"""The app's Code view (the model as one PyTorch file), named axes in the shape table and diagram, and the
aspect-keeping resize with its message; the handlers called directly, then once through the HTTP API."""
from __future__ import annotations

from pathlib import Path

import gradio as gr
import pytest
import torch
from PIL import Image

import convformer as cf
from convformer.export import load
from convformer_app import views
from convformer_app.explore import handlers as explore
from convformer_app import engine
from convformer_app.controls import Controls
from convformer_app.weights import resolve

pytestmark = pytest.mark.app
SMALL = {"img_size": 64, "weights": "random"}


@pytest.fixture(scope="module")
def wide(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("code") / "wide.png"
    Image.new("RGB", (288, 96), (200, 40, 40)).save(path)
    return str(path)


def test_code_view_is_the_running_model():
    """The bundled checkpoint's file: its weights load strictly and give the app's logits; CLASSES are its."""
    source, path = explore.code("mid")
    assert Path(path).name == "convformer_mid.py" and Path(path).read_text() == source
    controls = Controls(fusion="mid")
    weights = resolve(controls)
    loaded = engine.load(weights, engine.model_config(controls, weights))
    module = load(source)
    mine = module.ConvFormer().eval()
    mine.load_state_dict(loaded.model.state_dict(), strict=True)
    x = torch.randn(2, 3, *module.IMG_SIZE, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert (mine(x) - loaded.model.cpu()(x)).abs().max().item() <= 1e-5
    assert list(module.CLASSES) == loaded.classes
    assert "/" not in module.__doc__.split("--checkpoint")[1].split("`")[0].strip()  # a file name, no server path


def test_code_view_follows_the_controls():
    source, _ = explore.code("vit", img_size=64, depth=2, patch_size=8, embed_dim=32, num_heads=2, weights="random")
    module = load(source)
    assert module.IMG_SIZE == (64, 64) and module.DEPTH == 2 and module.GRID == (8, 8)
    assert "class ConvBN" not in source  # only what the configuration uses


def test_a_wide_image_keeps_its_aspect(wide):
    out = dict(zip(explore.PREDICT_OUTPUTS, explore.predict(wide, "mid", **SMALL)))
    r = out["run"]
    h, w, _ = r.grid
    assert w == 3 * h  # the token grid follows the 3:1 image
    assert out["table"]["data"][0][2] == f"(B=1, C=3, H=64, W={3 * 64})"
    assert abs(r.display.width / r.display.height - 3) < 0.05
    assert f"288 x 96 -> {3 * 64} x 64 px, aspect kept; token grid {h} x {w} (h x w)" in out["stats"]


def test_squash_is_still_there(wide):
    out = dict(zip(explore.PREDICT_OUTPUTS, explore.predict(wide, "mid", resize="squash", **SMALL)))
    assert out["table"]["data"][0][2] == "(B=1, C=3, H=64, W=64)" and "squashed" in out["stats"]
    with pytest.raises(gr.Error, match="resize='stretch'"):
        explore.predict(wide, "mid", resize="stretch", **SMALL)


def test_shape_table_collapses_repeated_blocks_and_names_axes():
    model = cf.create("convformer_vit_tiny", img_size=64, patch_size=8, num_classes=5)
    rows = cf.inspect(model, torch.zeros(1, 3, 64, 64), flops=False).shapes
    table = views.shape_table(rows)
    depth = model.config.depth
    assert [r[0] for r in table if ".blocks." in r[0]] == [f"vit.blocks.0-{depth - 1}"]
    assert len(table) == len(rows) - depth + 2  # one row for the blocks, plus the total
    assert table[-2][:3] == ["head", f"(B=1, D={model.config.embed_dim})", "(B=1, classes=5)"]
    assert table[-1][0] == "total" and table[-1][3] == views.human(sum(r.params for r in rows))
    blocks = next(r for r in table if ".blocks." in r[0])
    assert blocks[2] == "(B=1, N=1+8x8=65, D=192)" and blocks[5].startswith(f"{depth} x ")


def test_diagram_shows_both_branches_into_the_merge():
    model = cf.create("convformer_late_tiny", img_size=64, num_classes=3)
    rows = cf.inspect(model, torch.zeros(1, 3, 64, 64), flops=False).shapes
    html = views.diagram_html(rows, "late")
    c, d = model.config.conv_widths[-1], model.config.embed_dim
    assert f"cnn (B=1, C={c}) + vit (B=1, D={d}) → (B=1, C+D={c + d})" in html


def test_api_code_and_the_old_resize(server, wide):
    from gradio_client import Client, handle_file
    client = Client(server.url, verbose=False)
    source, path = client.predict("vit", preset="convformer_vit_tiny", img_size=64, weights="random",
                                  api_name="/code")
    assert "class ConvFormer(nn.Module)" in source and Path(path).read_text().rstrip() == source.rstrip()
    mid = {**SMALL, "preset": "convformer_mid_tiny"}
    out = client.predict(handle_file(wide), "mid", **mid, resize="squash", api_name="/predict")
    table = out[11]["data"]
    assert table[0][2] == "(B=1, C=3, H=64, W=64)"
    out = client.predict(handle_file(wide), "mid", **mid, api_name="/predict")  # the default keeps the aspect
    assert out[11]["data"][0][2] == "(B=1, C=3, H=64, W=192)"
