"""What the app shows, as plain values: the weights notice, the stats line, the shape table, the pipeline
diagram (HTML boxes with the real shapes) and the pictures drawn from one inspection. No model calls, no
Gradio: numpy / PIL / str in and out, so every view is testable on its own.
"""
from __future__ import annotations

import html
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from convformer import axes
from convformer.inspection import viz
from convformer.inspection import ShapeRow, human
from convformer.messages import one_line
from convformer.model import LAYOUTS
from convformer.timing import Latency, rounded

from . import i18n
from .i18n import text

DISPLAY = 320  # long side of the pictures, in pixels
TABLE_HEADERS = ["step", "input", "output", "params", "FLOPs", "what"]  # the API's (English) column names
TABLE_KEYS = ("table.step", "table.input", "table.output", "table.params", "table.flops", "table.what")


# ---- words ---------------------------------------------------------------------------------------------
def clean(error: BaseException | str) -> str:
    """An error message without server paths (a path becomes its file name)."""
    return re.sub(r"(/[\w.\-]+){2,}/?", lambda m: Path(m.group(0)).name or "<path>", str(error))


_MARKDOWN = re.compile(r"([\\`\[\]!|$~*]|(?<![^\W_])_|_(?![^\W_]))")  # what makes a link, an image, code, a table,
# a formula or emphasis (an `_` between two letters or digits never does: `embed_dim` stays as it is)
_BARE_LINK = re.compile(r"(?i)(?<=www)\.|(?<=:)//")  # what GitHub-flavoured Markdown turns into a link by itself


def plain(value: object, limit: int = 200) -> str:
    """Text from outside (a class name, a file name, a value from a URL, a refusal that repeats one) as it must
    meet Markdown or HTML: on one line, cut to `limit` characters, HTML escaped and what makes Markdown a link,
    an image, code or a formula backslash-escaped (a bare `https://` or `www.` too), so a link or a password
    form shows as the characters it is; emphasis marks (`*`, an `_` at a word's edge) too."""
    text = _MARKDOWN.sub(r"\\\1", one_line(str(value), limit))
    return html.escape(_BARE_LINK.sub(lambda m: "\\" + "\\".join(m.group(0)), text), quote=False)


def code_span(value: object, limit: int = 200) -> str:
    """Text from outside inside a Markdown `code span` (which shows its content as text): no backtick."""
    return one_line(str(value), limit).replace("`", "'")


SHAPES_NAMES = ("circle", "square", "triangle", "star", "cross", "ring", "heart", "arrow", "hexagon", "crescent",
                "background")  # convformer.data.shapes.CLASSES, and a segmenter's class 0


def class_name(name: str) -> str:
    """A class's name as the page shows it: a Shapes class (or the background) with its Chinese name beside it on a
    zh-CN page ("circle 圆形": the English one stays, it is the API's value); any other name as it is."""
    return text(f"class.{name}") if name in SHAPES_NAMES else name


def classes_text(classes: Sequence[str], limit: int = 12) -> str:
    shown = ", ".join(plain(class_name(c)) for c in classes[:limit])
    return shown + (text("notice.more", n=len(classes)) if len(classes) > limit else "")


def weights_notice(kind: str, meta: dict, name: str = "", reason: str = "") -> str:
    """One paragraph saying what the weights are and what they know, so nobody mistakes random-weight
    predictions for knowledge."""
    space = " " if i18n.LANG.get() == "en" else ""  # Chinese sentences follow each other without a space
    if kind == "random":
        return text("notice.random", why=f"{space}{reason}" if reason else "")
    classes = list(meta.get("classes") or [])
    dataset = plain(meta.get("dataset")) if meta.get("dataset") else text("notice.unnamed")
    if meta.get("dataset") == "shapes":
        dataset = text("notice.shapes")
    metrics = meta.get("metrics") or {}
    scores = [text(key, acc=f"{metrics[name]:.1%}") for name, key in (("test_acc", "notice.score_test"),
                                                                    ("val_acc", "notice.score_val"))
              if isinstance(metrics.get(name), (int, float))]
    who = text({"bundled": "notice.who_bundled", "trained": "notice.who_trained"}.get(kind, "notice.who_upload"))
    out = text("notice.weights", who=who, name=code_span(name), dataset=dataset)
    out += text("notice.classes", n=len(classes), names=classes_text(classes)) if classes else ""
    out += text("notice.scores", scores=text("list.sep").join(scores)) if scores else text("notice.end")
    if classes:
        out += text("notice.only_these")
    return out + (f"{space}{reason}" if reason else "")


def stats_markdown(params: int, flops: int, latency: Latency, device: str, size: tuple[int, int]) -> str:
    """Size, FLOPs and the forward pass's latency as a median with its quartiles; a busy machine said so."""
    line = text("stats.line", params=human(params), mb=f"{params * 4 / 2**20:.1f}", flops=human(flops, "FLOPs"),
                ms=rounded(latency.median), low=rounded(latency.low), high=rounded(latency.high), runs=latency.runs,
                device=device, h=size[0], w=size[1])  # said width x height, as image sizes are read
    return line + (text("stats.busy", load=f"{latency.load:.1f}") if latency.busy else "")


def latency_cell(latency: Latency) -> str:
    """A table cell: "4.5 (4.3-5.1)", marked when the machine was busy while it was measured."""
    return f"{rounded(latency.median)} ({rounded(latency.low)}-{rounded(latency.high)})" + (" ⚠" if latency.busy else "")


def shape_table(rows: Sequence[ShapeRow]) -> list[list[str]]:
    """Rows for a Dataframe with TABLE_HEADERS, input first, logits last, then the total. Shapes have named
    axes for this model (`convformer.axes`: (B=1, N=1+14x14=197, D=192)); a run of transformer blocks with the
    same shapes is one row (`vit.blocks.0-11`, params and FLOPs summed), so the head and total stay in view."""
    named = axes.rows(rows)
    out, i = [], 0
    while i < len(rows):
        j = i
        while _same_block(rows[i], rows[j + 1] if j + 1 < len(rows) else None):
            j += 1
        r, group = rows[i], rows[i:j + 1]
        name = r.name if j == i else f"{r.name}-{rows[j].name.rsplit('.', 1)[1]}"
        note = i18n.translate(r.note) if j == i else text("table.repeat", n=j - i + 1, note=i18n.translate(r.note))
        out.append([name, *named[i], human(sum(g.params for g in group)), human(sum(g.flops for g in group)), note])
        i = j + 1
    out.append([text("table.total"), "", "", human(sum(r.params for r in rows)), human(sum(r.flops for r in rows)),
                ""])
    return out


def table(rows: Sequence[ShapeRow]) -> dict:
    """The shape table for the page's Dataframe: its rows, with headers in the page's language."""
    return {"headers": [text(k) for k in TABLE_KEYS], "data": shape_table(rows) if rows else []}


def _same_block(first: ShapeRow, other: ShapeRow | None) -> bool:
    """Whether `other` is another transformer block of `first`'s branch with the same shapes."""
    return (other is not None and ".blocks." in first.name and other.name.rsplit(".", 1)[0] ==
            first.name.rsplit(".", 1)[0] and (other.input_shape, other.output_shape) ==
            (first.input_shape, first.output_shape))


# ---- pipeline diagram ----------------------------------------------------------------------------------
# the stripe on each box by kind (readable on light and dark pages; text and fill follow the Gradio theme)
COLOURS = {"conv": "#3b82f6", "proj": "#6366f1", "patch": "#6366f1", "tokens": "#f59e0b", "blocks": "#f97316",
           "norm": "#f59e0b", "grid": "#f59e0b", "refine": "#3b82f6", "pool": "#9ca3af", "merge": "#22c55e",
           "head": "#22c55e", "input": "#9ca3af"}
LANES = {branch for branches in LAYOUTS.values() for branch in branches}  # our models' branches
KINDS = ("conv", "proj", "patch", "tokens", "blocks", "norm", "grid", "refine", "pool", "merge", "head", "input")
# a box's title is the catalogue's "diagram.<kind>"


def _stages(rows: Sequence[ShapeRow]) -> dict[str, list[tuple[str, str, str]]]:
    """Shape rows grouped into lanes (one per branch, then 'out'); repeated blocks collapsed into one box.
    Shapes have named axes; the merge shows both branches going in."""
    lanes: dict[str, list[tuple[str, str, str]]] = {}
    for r, (named_in, named_out) in zip(rows, axes.rows(rows)):
        parts = r.name.split(".")
        own = r.name not in ("input", "merge", "head") and parts[0] not in LANES  # a timm model's own steps
        kind = r.kind  # the inspection engine says what each step is
        lane = "model" if own else parts[0] if len(parts) > 1 else "out" if r.name != "input" else "in"
        boxes = lanes.setdefault(lane, [])
        title = text(f"diagram.{kind}") if kind in KINDS else kind
        if kind == "conv":
            title = r.name if own else text("diagram.conv_n", n=parts[2][5:]) if len(parts) > 2 else title
        elif own and kind not in ("blocks", "tokens"):
            title = r.name  # e.g. CoAtNet's stages.2, a transformer stage on its own grid
        if boxes and kind == "blocks" and boxes[-1][2] == "blocks":
            count = int(boxes[-1][0].split("×")[-1]) + 1 if "×" in boxes[-1][0] else 2
            boxes[-1] = (text("diagram.blocks_n", n=count), named_out, kind)
            continue
        boxes.append((title, named_out if kind != "merge" else f"{named_in} → {named_out}", kind))
    return lanes


def box(title: str, shape: str, kind: str) -> str:
    """One step of the diagram: its title, its output shape, the stripe of its kind."""
    return (f'<div class="cf-box" style="border-left-color:{COLOURS.get(kind, "#9ca3af")}">'
            f"<b>{html.escape(title)}</b><br><code>{html.escape(shape)}</code></div>")


def diagram_html(rows: Sequence[ShapeRow], fusion: str) -> str:
    """The chosen fusion's pipeline as HTML boxes, each with the real output shape from the shape table."""
    lanes = _stages(rows)
    arrow = '<span class="cf-arrow">→</span>'
    lane_html = []
    for name, boxes in lanes.items():
        if name in ("in", "out"):
            continue
        body = arrow.join(box(*b) for b in boxes)
        lane_html.append(f'<div class="cf-lane"><span class="cf-tag">{html.escape(name)}</span>{body}</div>')
    start = "".join(box(*b) for b in lanes.get("in", []))
    end = arrow.join(box(*b) for b in lanes.get("out", []))
    style = ("<style>.cf-flow{display:flex;align-items:center;gap:6px;flex-wrap:wrap;font-size:12px}"
             ".cf-lanes{display:flex;flex-direction:column;gap:6px}.cf-lane{display:flex;align-items:center;"
             "flex-wrap:wrap;gap:4px;border:1px dashed var(--border-color-primary);border-radius:8px;padding:4px}"
             ".cf-box{border:1px solid var(--border-color-primary);border-left:5px solid;border-radius:6px;"
             "padding:3px 6px;text-align:center;background:var(--background-fill-secondary);"
             "color:var(--body-text-color)}.cf-box b{color:var(--body-text-color)}"
             ".cf-box code{font-size:11px;background:none;color:var(--body-text-color)}"
             ".cf-arrow{font-size:16px;color:var(--body-text-color-subdued)}"
             ".cf-tag{font-weight:bold;font-size:11px;color:var(--body-text-color-subdued);margin-right:4px}</style>")
    return (f'{style}<div class="cf-flow" title="{html.escape(text("diagram.title", fusion=fusion))}">{start}{arrow}'
            f'<div class="cf-lanes">{"".join(lane_html)}</div>{arrow}{end}</div>')


# ---- pictures ------------------------------------------------------------------------------------------
def display_image(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """The image at the aspect of the model's input `size` (H, W) (as preprocessing gave it), `DISPLAY` px on its
    long side."""
    h, w = size
    scale = DISPLAY / max(h, w)
    return image.convert("RGB").resize((max(1, round(w * scale)), max(1, round(h * scale))),
                                       Image.Resampling.BICUBIC)


def patch_picture(image: Image.Image, grid: tuple[int, int], query: int | None) -> Image.Image:
    """The image with the token grid drawn on it and the chosen patch outlined."""
    out = image.copy()
    draw = ImageDraw.Draw(out)
    (h, w), (W, H) = grid, out.size
    if h * w <= 1024:  # a denser grid would hide the picture
        for i in range(1, w):
            draw.line([(i * W / w, 0), (i * W / w, H)], fill=(255, 255, 255), width=1)
        for j in range(1, h):
            draw.line([(0, j * H / h), (W, j * H / h)], fill=(255, 255, 255), width=1)
    if query is not None:
        r, c = divmod(query, w)
        draw.rectangle([c * W / w, r * H / h, (c + 1) * W / w, (r + 1) * H / h], outline=(255, 0, 0), width=3)
    return out


def tile(maps: np.ndarray, cell: int = 128) -> Image.Image:
    return viz.tile(maps, cols=min(len(maps), 6), cell=cell)


def captioned_tile(maps: np.ndarray, captions: Sequence[str], cell: int = 128, cmap: str = "viridis") -> Image.Image:
    """(n, h, w) maps in rows of up to 6, each under its caption (a block's name, a head's number), and a colour
    scale under them: every map is scaled on its own, from 0 (its smallest value) to its largest ("max")."""
    from .tasks.draw import font
    maps = np.asarray(maps, dtype=np.float32)
    n, (h, w) = len(maps), maps.shape[-2:]
    cols, gap = min(n, 6), 6
    rows = -(-n // cols)
    ch, cw = (cell, max(1, round(cell * w / h))) if h >= w else (max(1, round(cell * h / w)), cell)
    f = font(max(12, cell // 9))
    line = f.size + 6
    width = max(cols * (cw + gap) - gap, 160)
    out = Image.new("RGB", (width, rows * (line + ch + gap) + 2 * line + 4), "white")
    pen = ImageDraw.Draw(out)
    for i, m in enumerate(maps):
        x, y = (i % cols) * (cw + gap), (i // cols) * (line + ch + gap)
        pen.text((x + 1, y + 2), str(captions[i])[:24], fill=(30, 30, 30), font=f)
        out.paste(Image.fromarray(viz.heatmap(m, cmap)).resize((cw, ch), Image.Resampling.NEAREST), (x, y + line))
    top, bar = rows * (line + ch + gap) + 2, min(width, 240)
    ramp = viz.colour_table(cmap)[np.linspace(0, 255, bar).astype(np.uint8)][None].repeat(line - 6, 0)
    out.paste(Image.fromarray(ramp), (0, top))
    pen.text((0, top + line - 4), "0", fill=(30, 30, 30), font=f)
    pen.text((bar - pen.textlength("max", font=f), top + line - 4), "max", fill=(30, 30, 30), font=f)
    return out


def channel_picture(maps: np.ndarray) -> Image.Image:
    return viz.tile(maps, cell=96)


# ---- pictures from one run (an `engine.Run`) ----------------------------------------------------------
def _grid(run, block: str | None = None) -> tuple[tuple[int, int], int]:
    """(h, w), prefix of the grid `block` attends over (a run's blocks may have grids of their own)."""
    h, w, prefix = run.grids.get(block) or run.grid
    return (h, w), prefix


def _block(run, block: str | None) -> str:
    return block if block in run.attentions else list(run.attentions)[-1]


def rollout_picture(run, head_fusion: str = "mean", discard_ratio: float = 0.0) -> Image.Image | None:
    """Attention rollout over the blocks of one grid (all of ours), overlaid on the image (None when there is
    no attention)."""
    if not run.attentions:
        return None
    blocks = run.rollout or list(run.attentions)
    grid, prefix = _grid(run, blocks[-1])
    values = viz.rollout_map([run.attentions[b] for b in blocks], grid, prefix, head_fusion, float(discard_ratio))
    return viz.overlay(run.display, values)


def query_index(run, point: Sequence[float] | None, block: str | None = None) -> int | None:
    """The patch under a clicked point (x, y) on the display image; the centre patch when none."""
    if run.grid is None:
        return None
    grid, _ = _grid(run, _block(run, block) if run.attentions else None)
    x, y = point if point is not None else (run.display.width / 2, run.display.height / 2)
    return viz.point_to_query(x, y, run.display.size, grid)


def _head(head: str | int | None, heads: int) -> int | None:
    if head in (None, "", "all", "mean of heads"):
        return None
    index = int(str(head).split()[-1])
    return index if 0 <= index < heads else None


def query_pictures(run, block: str | None, head: str | None, point: Sequence[float] | None
                   ) -> tuple[Image.Image, Image.Image | None]:
    """(the image with the chosen patch outlined, where that patch attends in `block`)."""
    q = query_index(run, point, block)
    if q is None or not run.attentions:
        return run.display, None
    block = _block(run, block)
    grid, prefix = _grid(run, block)
    attn = run.attentions[block]
    values = viz.query_map(attn.astype(np.float32), q, grid, prefix, _head(head, len(attn)))
    return patch_picture(run.display, grid, q), viz.overlay(run.display, values)


def block_pictures(run, block: str | None) -> tuple[Image.Image | None, Image.Image | None]:
    """(attention each patch receives in every block, heads averaged; the same per head of `block`)."""
    if not run.attentions:
        return None, None
    block = _block(run, block)
    grid, prefix = _grid(run, block)
    same = {b: a for b, a in run.attentions.items() if _grid(run, b) == (grid, prefix)}  # the blocks of this grid
    received = [viz.head_maps(a.astype(np.float32), grid, prefix).mean(0) for a in same.values()]
    heads = viz.head_maps(run.attentions[block].astype(np.float32), grid, prefix)
    return captioned_tile(np.stack(received), list(same)), captioned_tile(heads, [str(i) for i in range(len(heads))])


def channels_picture(run, stage: str | None) -> Image.Image | None:
    if not run.channels:
        return None
    maps, _, _ = run.channels.get(stage) or list(run.channels.values())[-1]
    return channel_picture(maps)


def cam_picture(run) -> Image.Image | None:
    if not run.cam:
        return None
    return viz.overlay(run.display, next(iter(run.cam.values())))


def relevance_picture(run) -> Image.Image | None:
    """Chefer et al.'s class-specific relevance over the token grid, overlaid on the image (None without attention)."""
    if not run.relevance:
        return None
    return viz.overlay(run.display, next(iter(run.relevance.values())))


def relevance_note(run) -> str:
    """One line under the relevance map: which grid and class it explains, or why there is none."""
    if not run.relevance:
        return text("relevance.none")
    grid = next(iter(run.relevance))
    h, w = next(iter(run.relevance.values())).shape
    return text("relevance.note", cls=html.escape(run.relevance_class or ""), grid=grid, h=h, w=w)


def cam_note(run) -> str:
    """Under Grad-CAM: where the explained layer sits (before or after global attention), then one line per
    conv layer of the branch saying why its map may sit off the object (benchmarks/NOTES.md, "Grad-CAM: which
    conv layer lands on the object"), and why a map is blank when it is."""
    if not run.cam:
        return ""
    layer, values = next(iter(run.cam.items()))
    branch = layer.split(".", 1)[0]
    if layer.endswith(".refine"):
        where = text("cam.after")
    elif run.fusion in ("early", "mid"):
        where = text("cam.before")
    elif run.fusion == "late":
        where = text("cam.cnn_branch")
    else:
        where = text("cam.no_attention")
    line = text("cam.note", layer=layer, where=where)
    if not np.any(values > 0):
        line += text("cam.blank", layer=layer, cls=run.cam_class)
    mine = [name for name in run.conv_layers if name.startswith(branch + ".")]
    if not all(_CONVFORMER_LAYER.match(name) for name in mine):  # a timm reference: its own layer names
        others = [name for name in mine if name != layer]
        return line + (text("cam.others", layers=", ".join(f"`{n}`" for n in others)) if others else "")
    return line + "\n\n" + "\n".join(_layer_reason(run, name, i, len(mine), name == layer)
                                     for i, name in enumerate(mine))


_CONVFORMER_LAYER = re.compile(r"^(early|mid|cnn)\.(conv\.stage\d+|refine)$")


def _layer_reason(run, name: str, index: int, count: int, shown: bool) -> str:
    """One line: the layer, its grid, and why its Grad-CAM may sit elsewhere than on the object."""
    if name.endswith(".refine"):
        why = "cam.why_after"
    elif index == 0:
        why = "cam.why_first"
    elif run.fusion in ("early", "mid"):
        why = "cam.why_feeds"
    elif index == count - 1:
        why = "cam.why_last"
    else:
        why = "cam.why_middle"
    acts = run.channels.get(name)
    grid = f"{acts[0].shape[-1]} x {acts[0].shape[-2]}" if acts is not None else "?"  # width x height
    return text("cam.layer_line", mark="▶" if shown else "·", layer=name, grid=grid, why=text(why))
