"""The exported single-file model: same state_dict, same logits, only torch + stdlib, prints every step;
the `code` command; named axes."""
from __future__ import annotations

import ast
import runpy
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from convformer import ConvFormer, ConvFormerConfig, inspect, load_checkpoint
from convformer import axes
from convformer.__main__ import main
from convformer.export.checkpoint import bundled_checkpoint
from convformer.export import export, load
from convformer.model import LAYOUTS
from convformer.presets import PRESETS, SHAPES_PRESETS
from convformer.presets import create as cf_create

SMALL = {  # every fusion stage and every pool / merge choice, at sizes that run in milliseconds
    "early_cls": SHAPES_PRESETS["convformer_early_shapes"],
    "mid": SHAPES_PRESETS["convformer_mid_shapes"],
    "late_concat_avg": SHAPES_PRESETS["convformer_late_shapes"],
    "late_gate_cls": SHAPES_PRESETS["convformer_late_shapes"].replace(merge="gate", pool="cls"),
    "late_add": SHAPES_PRESETS["convformer_late_shapes"].replace(merge="add", img_size=(48, 40)),
    "cnn": SHAPES_PRESETS["convformer_cnn_shapes"],
    "vit_avg": SHAPES_PRESETS["convformer_vit_shapes"],
    "vit_cls_drops": SHAPES_PRESETS["convformer_vit_shapes"].replace(
        pool="cls", drop_rate=0.1, attn_drop_rate=0.1, drop_path_rate=0.2, img_size=(40, 56)),
    "mid_depth0_drop_path": SHAPES_PRESETS["convformer_mid_shapes"].replace(depth=0, drop_path_rate=0.1),
}


def exported(model: ConvFormer, **kwargs):
    """The exported module for `model`, run from source in a fresh namespace, and its source."""
    source = export(model, **kwargs)
    return load(source), source


def same(model: ConvFormer, sizes: list[tuple[int, int]], batch: int = 2, train: bool = False) -> list[float]:
    """Load the library model's weights strictly into the exported ConvFormer and run both at each size:
    the largest logit difference per size."""
    module, _ = exported(model)
    mine = module.ConvFormer()
    lib_state, my_state = model.state_dict(), mine.state_dict()
    assert {k: tuple(v.shape) for k, v in my_state.items()} == {k: tuple(v.shape) for k, v in lib_state.items()}
    mine.load_state_dict(lib_state, strict=True)
    model.train(train), mine.train(train)
    diffs = []
    for size in sizes:
        x = torch.randn(batch, model.config.in_chans, *size, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            diffs.append((mine(x) - model(x)).abs().max().item())
    return diffs


def trained_like(cfg: ConvFormerConfig) -> ConvFormer:
    """A library model whose BatchNorm statistics and zero-initialised parameters are not trivial."""
    torch.manual_seed(0)
    model = ConvFormer(cfg)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.is_floating_point():
                t.add_(torch.randn_like(t) * 0.05)
                if "running_var" in name:
                    t.abs_().add_(0.5)
    return model.eval()


@pytest.mark.parametrize("name", sorted(SMALL))
def test_every_stage_loads_strictly_and_gives_the_same_logits(name):
    model = trained_like(SMALL[name])
    h, w = model.config.img_size
    # and another, non-square size that is not a multiple of the stride: padding, conv rounding, resampled positions
    assert max(same(model, [(h, w), (h + 5, 2 * w - 3)])) <= 1e-5


def test_training_mode_matches_too():
    """BatchNorm in training mode uses batch statistics: still the same logits (no dropout configured)."""
    model = trained_like(SMALL["late_gate_cls"])
    assert max(same(model, [model.config.img_size], train=True, batch=3)) <= 1e-5


@st.composite
def configs(draw):
    fusion = draw(st.sampled_from(sorted(LAYOUTS)))
    stages = draw(st.integers(1, 3))
    heads = draw(st.integers(1, 3))
    cfg = dict(
        fusion=fusion, img_size=(draw(st.integers(8, 40)), draw(st.integers(8, 40))),
        in_chans=draw(st.integers(1, 4)), num_classes=draw(st.integers(0, 7)),  # 0: features, no head
        conv_widths=tuple(draw(st.lists(st.integers(1, 12), min_size=stages, max_size=stages))),
        conv_depths=tuple(draw(st.lists(st.integers(0, 2), min_size=stages, max_size=stages))),
        embed_dim=heads * draw(st.integers(1, 8)), num_heads=heads, depth=draw(st.integers(0, 2)),
        mlp_ratio=draw(st.sampled_from([0.5, 1.0, 2.0, 4.0])), patch_size=draw(st.integers(2, 8)),
        pool=draw(st.sampled_from(["avg", "cls"])), merge=draw(st.sampled_from(["concat", "gate", "add"])),
        pos_embed=draw(st.sampled_from(["learned", "sincos"])))
    try:
        return ConvFormerConfig(**cfg)
    except ValueError:
        assume(False)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(cfg=configs(), extra=st.tuples(st.integers(0, 9), st.integers(0, 9)))
def test_random_valid_configurations(cfg, extra):
    model = trained_like(cfg)
    h, w = cfg.img_size
    assert max(same(model, [(h, w), (h + extra[0], w + extra[1])])) <= 1e-5


@pytest.mark.parametrize("fusion", ["early", "mid", "late", "cnn", "vit"])
def test_bundled_checkpoint(fusion):
    path = bundled_checkpoint(fusion)
    assert path is not None, f"convformer/weights/{fusion}.safetensors is missing"
    model = load_checkpoint(path).eval()
    module, source = exported(model, classes=model.meta["classes"])
    mine = module.ConvFormer().eval()
    mine.load_state_dict(model.state_dict(), strict=True)
    x = torch.rand(4, 3, *model.config.img_size, generator=torch.Generator().manual_seed(2))
    x = (x - torch.tensor(module.MEAN)[:, None, None]) / torch.tensor(module.STD)[:, None, None]
    with torch.no_grad():
        assert (mine(x) - model(x)).abs().max().item() <= 1e-5
    assert list(module.CLASSES) == model.meta["classes"]
    assert module.IMG_SIZE == tuple(model.config.img_size) and module.NUM_CLASSES == model.config.num_classes


def imported_roots(source: str) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "relative import"
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("name", sorted(SMALL))
def test_imports_only_torch_and_the_standard_library(name):
    source = export(SMALL[name])
    roots = imported_roots(source)
    assert "torch" in roots
    assert roots - {"torch"} <= set(sys.stdlib_module_names), roots


def test_only_the_parts_this_config_uses():
    cnn = export(SMALL["cnn"])
    assert "class ConvStages" in cnn and "class Attention" not in cnn and "class ToTokens" not in cnn
    assert "PatchEmbed" not in cnn and "class Merge" not in cnn
    vit = export(SMALL["vit_avg"])
    assert "class ConvBN" not in vit and "class ToGrid" not in vit and "class PatchEmbed" in vit
    assert "cls_token" not in vit and "dropout" not in vit.lower() and "drop_path" not in vit
    assert "drop_path" in export(SMALL["vit_cls_drops"])
    late = export(SMALL["late_concat_avg"])
    assert "torch.cat([cnn, vit], dim=1)" in late and "self.gate" not in late
    assert "self.gate" in export(SMALL["late_gate_cls"])


def test_comments_carry_this_configurations_shapes():
    cfg = PRESETS["convformer_mid_tiny"]
    h, w = cfg.img_size
    source = export(cfg)
    c0, c_last = cfg.conv_widths[0], cfg.conv_widths[-1]
    gh, gw = cfg.grid_size()
    assert f"(B, {cfg.in_chans}, {h}, {w}) -> (B, {c0}, {h // 2}, {w // 2})" in source
    assert f"(B, {cfg.embed_dim}, {gh}, {gw})" in source and f"N = {gh} x {gw} = {gh * gw}" in source
    vit = PRESETS["convformer_vit_tiny"]
    gh, gw = vit.grid_size()
    assert f"N = 1 + {gh} x {gw} = {1 + gh * gw}" in export(vit)
    for line in source.splitlines():
        assert len(line) <= 120, line


def run_script(source: str, tmp_path: Path, capsys, argv: list[str]) -> list[tuple[str, tuple[int, ...]]]:
    path = tmp_path / "model.py"
    path.write_text(source)
    old = sys.argv
    sys.argv = [str(path), *argv]
    try:
        runpy.run_path(str(path), run_name="__main__")
    finally:
        sys.argv = old
    lines = capsys.readouterr().out.splitlines()
    steps = []
    for line in lines[:-1]:
        name, shape = line.split(maxsplit=1)
        steps.append((name, tuple(int(v) for v in shape.strip("()").split(",") if v.strip())))
    assert lines[-1].startswith("logits (2, ")
    return steps


@pytest.mark.parametrize("name", ["late_gate_cls", "mid"])
def test_running_the_file_prints_every_step(name, tmp_path, capsys):
    """`python model.py H W` prints one line per step; they match the library's shape table at that size."""
    cfg = SMALL[name]
    size = (cfg.img_size[0] + 3, cfg.img_size[1] * 2)
    steps = run_script(export(cfg), tmp_path, capsys, [str(size[0]), str(size[1])])
    model = ConvFormer(cfg).eval()
    table = inspect(model, torch.zeros(2, cfg.in_chans, *size), flops=False).shapes
    assert [s[0] for s in steps] == [r.name for r in table]
    assert [s[1] for s in steps] == [tuple(r.output_shape) for r in table]


def test_cli_code_with_a_checkpoint_writes_its_configuration(tmp_path, capsys):
    path = bundled_checkpoint("late")
    out = tmp_path / "late.py"
    assert main(["code", "--checkpoint", str(path), "-o", str(out)]) == 0
    assert "logits agree" in capsys.readouterr().err
    module = load(out.read_text())
    cfg = load_checkpoint(path).config
    assert module.IMG_SIZE == cfg.img_size and module.CONV_WIDTHS == cfg.conv_widths
    assert module.EMBED_DIM == cfg.embed_dim and module.DEPTH == cfg.depth and module.PATCH_SIZE == cfg.patch_size
    assert module.NUM_CLASSES == cfg.num_classes and len(module.CLASSES) == cfg.num_classes


def test_cli_code_with_flags_prints_the_file(capsys):
    assert main(["code", "--fusion", "vit", "--img-size", "32", "48", "--patch-size", "8", "--embed-dim", "16",
                 "--num-heads", "2", "--depth", "1", "--num-classes", "3"]) == 0
    module = load(capsys.readouterr().out)
    assert module.IMG_SIZE == (32, 48) and module.GRID == (4, 6) and module.NUM_CLASSES == 3
    assert "--img-size 32 48" in module.__doc__


def test_cli_code_refuses_flags_with_a_checkpoint(capsys):
    assert main(["code", "--checkpoint", str(bundled_checkpoint("mid")), "--depth", "3"]) == 2
    assert "--checkpoint fixes the configuration" in capsys.readouterr().err
    assert main(["code", "--fusion", "vit", "--embed-dim", "100", "--num-heads", "3"]) == 2
    assert "embed_dim=100" in capsys.readouterr().err


# ---- named axes --------------------------------------------------------------------------------------------
def test_named_axes_of_single_shapes():
    assert axes.grid((1, 32, 112, 112)) == "(B=1, C=32, H=112, W=112)"
    assert axes.tokens((2, 197, 192), (14, 14), 1) == "(B=2, N=1+14x14=197, D=192)"
    assert axes.tokens((2, 196, 192), (14, 14), 0) == "(B=2, N=14x14=196, D=192)"
    assert axes.tokens((2, 50, 8), (14, 14), 1) == "(B=2, N=50, D=8)"  # a grid that does not fit: N only
    assert axes.vector((1, 10), "classes") == "(B=1, classes=10)"


@pytest.mark.parametrize("name", ["late_gate_cls", "late_concat_avg", "mid", "vit_cls_drops"])
def test_named_axes_of_a_shape_table(name):
    cfg = SMALL[name]
    size = (cfg.img_size[0], cfg.img_size[1] + 8)  # non-square: h and w must not be swapped
    table = inspect(ConvFormer(cfg).eval(), torch.zeros(1, cfg.in_chans, *size), flops=False).shapes
    rows = dict(zip([r.name for r in table], axes.rows(table)))
    assert rows["input"][1] == f"(B=1, C={cfg.in_chans}, H={size[0]}, W={size[1]})"
    branch = next(b for b, kinds in LAYOUTS[cfg.fusion].items() if "tokens" in kinds)
    gh, gw = cfg.grid_size(size)
    prefix = int(cfg.pool == "cls")
    n = f"{prefix}+{gh}x{gw}={prefix + gh * gw}" if prefix else f"{gh}x{gw}={gh * gw}"
    assert rows[f"{branch}.tokens"] == (f"(B=1, C={cfg.embed_dim}, H={gh}, W={gw})",
                                        f"(B=1, N={n}, D={cfg.embed_dim})")
    assert rows["head"][1] == f"(B=1, classes={cfg.num_classes})"
    if cfg.fusion == "late":
        c = cfg.conv_widths[-1]
        assert rows["merge"][0] == f"cnn (B=1, C={c}) + vit (B=1, D={cfg.embed_dim})"
        out = f"C+D={c + cfg.embed_dim}" if cfg.merge == "concat" else f"D={cfg.embed_dim}"
        assert rows["merge"][1] == rows["head"][0] == f"(B=1, {out})"
    text = axes.format_table(table)
    assert text.splitlines()[-1].startswith("total") and f"N={n}" in text


# ---- docs/library.md's pitfalls point at the right lines of a committed export --------------------------------
ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "mid_tiny.py"


def _without_values(source: str) -> list[str]:
    """The source with the values of the configuration constants blanked (an epsilon may change upstream)."""
    return [line.split("=")[0] if line[:1].isupper() and " = " in line else line for line in source.splitlines()]


def test_the_example_is_what_export_writes_today():
    model = cf_create("convformer_mid_tiny")
    fresh = export(model, name="convformer_mid_tiny",
                   command="python -m convformer code --preset convformer_mid_tiny")
    assert _without_values(EXAMPLE.read_text()) == _without_values(fresh), (
        "examples/mid_tiny.py is stale: run `python -m convformer code --preset convformer_mid_tiny "
        "-o examples/mid_tiny.py` and check docs/library.md's line links (test below)")


def test_readme_pitfall_links_point_at_the_code_they_name():
    import re
    readme = (ROOT / "docs" / "library.md").read_text()
    section = readme[readme.index("## Pitfalls of the usual sketch"):]
    section = section[:section.index("\n## ", 3)]
    links = re.findall(r"\[`([^`]+)`\]\(\.\./examples/mid_tiny\.py#L(\d+)\)", section)
    assert len(links) >= 10
    lines = EXAMPLE.read_text().splitlines()
    for code, number in links:
        assert code in lines[int(number) - 1], (number, code, lines[int(number) - 1])
    for mistake in ("attention only", "norm2(x)", "64*H*W/4", "`num_classes` never defined", "H/2 x W/2"):
        row = next(r for r in section.splitlines() if mistake in r)
        assert "../examples/mid_tiny.py#L" in row, mistake


def test_command_for_a_config_writes_the_same_file(capsys):
    from convformer.export import command_for
    cfg = PRESETS["convformer_late_tiny"].replace(img_size=(48, 80), patch_size=8, embed_dim=32, num_heads=2,
                                                  depth=1, merge="gate", num_classes=5, pool="avg")
    command = command_for(cfg)
    assert main(command.split()[3:]) == 0
    module = load(capsys.readouterr().out)
    assert module.IMG_SIZE == (48, 80) and module.PATCH_SIZE == 8 and module.NUM_CLASSES == 5
    assert "self.gate" in export(cfg)
