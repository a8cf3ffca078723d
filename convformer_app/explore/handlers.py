"""The Explore tab's handlers, as plain typed functions (page.py holds the layout and wiring).

A request resolves the weights once (`weights.resolve`), runs ONE inspection pass (`engine.run`) and keeps
what the pictures need in a `Run`, which the app stores in gr.State: controls that only change a picture
(head fusion, discard ratio, block, head, stage, clicked patch) re-draw from it without running the model,
and without waiting for the model thread.
"""
from __future__ import annotations

import hashlib
import logging
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path

import gradio as gr
import numpy as np
from PIL import Image

from convformer.export import command_for, export
from convformer.data.familiarity import TEXTURE_LIMIT, unlike_shapes

from .. import engine, views
from .. import safety
from ..controls import ALL_PRESETS, Controls, spread
from ..i18n import text
from ..engine import EXAMPLES, PREDICTED, Run
from ..weights import Weights, defaults, resolve
from .. import i18n

HEAD_FUSIONS = ("mean", "max", "min")
# what predict returns, in order (page.py maps these names to its components)
PREDICT_OUTPUTS = ("label", "notice", "stats", "maps_note", "rollout", "patch", "query", "blocks", "heads",
                   "channels", "cam", "table", "diagram", "run", "point", "block", "head", "stage", "cam_target",
                   "cam_layer", "cam_note",
                   "caution", "relevance", "relevance_note")
# what a change of fusion stage, preset, weights or checkpoint sets: every control but the uploaded file, and
# the notice (page.py maps these names to its components)
SETTABLE = tuple(n for n in Controls.names() if n != "checkpoint")
CONTROL_OUTPUTS = (*SETTABLE, "notice")


# ---- running the model ---------------------------------------------------------------------------------
@spread
def predict(image: str | None, controls: Controls, cam_target: str = PREDICTED, top_k: float = 5,
            head_fusion: str = "mean", discard_ratio: float = 0.0, cam_layer: str = "",
            trained: str | None = None, resize: str = "keep",
            progress: gr.Progress = gr.Progress(track_tqdm=True)) -> tuple:
    """Run the model once on the image; return every output, in the order of PREDICT_OUTPUTS. `trained` is
    the session's Train-tab checkpoint (a gr.State), used when weights == "trained". ImageNet weights are
    downloaded first if they are not cached (the progress bar follows the download)."""
    weights = resolve(controls, trained)
    if not weights.problem:
        weights.fetch(progress)
    r = engine.run(image, controls, weights, cam_target, cam_layer or None, resize=resize)
    k = max(1, min(int(top_k), len(r.classes)))
    top = np.argsort(-r.probs, kind="stable")[:k]
    label = {views.class_name(r.classes[i]): float(r.probs[i]) for i in top}
    blocks = list(r.attentions)
    block = blocks[-1] if blocks else None
    heads = len(r.attentions[block]) if block else 0
    patch, query = views.query_pictures(r, block, None, None)
    blocks_tile, heads_tile = views.block_pictures(r, block)
    stages = list(r.channels)
    return (label, weights.notice, r.stats, maps_note(r), views.rollout_picture(r, head_fusion, discard_ratio),
            patch, query, blocks_tile, heads_tile, views.channels_picture(r, stages[-1] if stages else None),
            views.cam_picture(r), views.table(r.shapes), views.diagram_html(r.shapes, r.fusion),
            safety.keep(r), None,
            gr.update(choices=blocks, value=block), gr.update(choices=head_choices(heads), value="mean of heads"),
            gr.update(choices=stages, value=stages[-1] if stages else None),
            gr.update(choices=[(text("cam.predicted"), PREDICTED), *((views.class_name(c), c) for c in r.classes)],
                      value=cam_target if cam_target in r.classes else PREDICTED),
            gr.update(choices=r.conv_layers, value=next(iter(r.cam), None)), views.cam_note(r),
            caution(image, weights), views.relevance_picture(r), views.relevance_note(r))


def caution(image: str | None, weights: Weights) -> str:
    """Beside the prediction: when weights trained on the built-in Shapes see an image unlike that data
    (convformer.data.familiarity: a pixel-texture test, since the model's own confidence cannot tell)."""
    if weights.meta.get("dataset") != "shapes":
        return ""
    t = unlike_shapes(engine.picture(image))
    return "" if t is None else i18n.text("caution.unlike_shapes", texture=f"{t:.2f}", limit=TEXTURE_LIMIT)


def cleared() -> tuple:
    """After a failed run: no results of an earlier run stay on the page under the error (PREDICT_OUTPUTS;
    the weights notice and the choosers stay)."""
    keep = ("notice", "block", "head", "stage", "cam_target", "cam_layer")
    return tuple(gr.skip() if name in keep else None for name in PREDICT_OUTPUTS)


def warm_up() -> threading.Thread:
    """Start one request's work for the default controls in the background (the mid stage's model loaded
    and cached, its FLOPs counted, torch's kernels and the picture code run once) so the first visitor does
    not wait for it. Started before `launch()`, it overlaps the server's start-up. Failures are only logged."""
    def work() -> None:
        try:
            engine.on_model_thread(predict, str(examples()[0]), *defaults("mid").inputs())
        except Exception:  # noqa: BLE001 - a warm-up must never stop the app; the first request will report it
            logging.getLogger(__name__).exception("warm-up failed")
    thread = threading.Thread(target=work, name="convformer-warm-up", daemon=True)
    thread.start()
    return thread


def head_choices(heads: int) -> list[tuple[str, str]]:
    """(label in the page's language, the API's value) for the head dropdown."""
    return [(text("per_block.mean"), "mean of heads"),
            *((text("per_block.head_n", i=i), f"head {i}") for i in range(heads))]


def maps_note(r: Run) -> str:
    """Which part of the model each map comes from (late fusion has one branch of each kind)."""
    if r.fusion == "late":
        where = text("maps.late")
    elif r.fusion == "cnn":
        where = text("maps.cnn")
    elif r.fusion == "vit":
        where = text("maps.vit")
    else:
        where = text("maps.hybrid", fusion=r.fusion)
    if r.notes:  # a published model: what its attention is, said by the model's own entry
        where = " ".join(i18n.translate(note) for note in r.notes)
    elif r.grid:
        where += text("maps.grid_cls" if r.grid[2] else "maps.grid", h=r.grid[0], w=r.grid[1])
    if r.cam_class:
        where += text("maps.cam", name=views.class_name(r.cam_class), layer=next(iter(r.cam)))
    return where


# ---- redraws from the kept Run (no model) --------------------------------------------------------------
def redraw_attention(r: Run | None, head_fusion: str = "mean", discard_ratio: float = 0.0,
                     block: str | None = None, head: str | None = None, point: list | None = None) -> tuple:
    """Re-draw every attention picture from the last run: (rollout, patch, query, blocks, heads)."""
    if r is None:
        raise gr.Error("Run the model first.")
    try:
        rollout = views.rollout_picture(r, head_fusion, float(discard_ratio))
    except ValueError as e:
        raise gr.Error(str(e)) from None
    patch, query = views.query_pictures(r, block, head, point)
    return (rollout, patch, query, *views.block_pictures(r, block))


def click(r: Run | None, block: str | None, head: str | None, evt: gr.SelectData) -> tuple:
    """A click on the patch picture: (the clicked point, the patch picture, where that patch attends)."""
    if r is None:
        raise gr.Error("Run the model first.")
    point = list(evt.index[:2]) if isinstance(evt.index, (list, tuple)) else None
    return (point, *views.query_pictures(r, block, head, point))


def redraw_channels(r: Run | None, stage: str | None) -> Image.Image | None:
    if r is None:
        raise gr.Error("Run the model first.")
    return views.channels_picture(r, stage)


# ---- the image -----------------------------------------------------------------------------------------
def preview(image: str | None) -> tuple[Image.Image | None, str]:
    """The decoded upload (or why it cannot be used), before running anything."""
    if not image:
        return None, ""
    try:
        shown = engine.picture(image)
    except gr.Error as e:
        gr.Warning(i18n.translate(e.message))  # a toast: escaped as every toast is (gradio_patches.install_route_guards)
        return None, f"⚠ **{views.plain(i18n.translate(e.message), 600)}**"
    scale = views.DISPLAY / max(shown.size)  # small images are enlarged so they can be seen
    return shown.resize((max(1, round(shown.width * scale)), max(1, round(shown.height * scale))),
                        Image.Resampling.BICUBIC), ""


def examples() -> list[Path]:
    return sorted(p for p in EXAMPLES.glob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp"))


def gallery() -> list[tuple[str, str]]:
    """The examples with captions: a shape's name; a photo's subject, and that it is none of the shapes."""
    def caption(path: Path) -> str:
        kind, _, name = path.stem.partition("_")
        return text("image.photo", name=name.replace("_", " ")) if kind == "photo" else views.class_name(name)
    return [(str(p), caption(p)) for p in examples()]


def first_example() -> str | None:
    """The image Explore starts with, so that Run works at once: a shape (what the bundled models know)."""
    found = sorted(examples(), key=lambda p: not p.name.startswith("shapes_"))
    return str(found[0]) if found else None


def pick_example(evt: gr.SelectData = None) -> str:  # type: ignore[assignment]
    """A click on the examples gallery: that example becomes the image. The annotation must be the bare class:
    Gradio 6.31 injects the event data only then (with `gr.SelectData | None` it passed nothing); an API call
    has no event data and gets the default."""
    found, index = examples(), getattr(evt, "index", None)
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(found):
        raise gr.Error(f"example {safety.shown(index, 40)} does not exist: choose one from 0 to {len(found) - 1}")
    return str(found[index])


# ---- the controls --------------------------------------------------------------------------------------
@spread
def check_config(controls: Controls, trained: str | None = None) -> str:
    """A one-line verdict on the controls, shown next to them: what the model will be, or what is wrong."""
    weights = resolve(controls, trained)
    if not weights.runs_convformer:
        return views.plain(i18n.translate(weights.problem), 600) if weights.problem else \
            text("config.imagenet", fusion=views.plain(controls.fusion, 40))
    if weights.fixes_architecture:
        return text("config.fixed_trained") if weights.kind == "trained" else \
            text("config.fixed_bundled", fusion=views.plain(controls.fusion, 40))
    try:
        cfg = engine.model_config(controls, Weights("random", "")) if weights.kind != "upload" else \
            engine.model_config(controls, weights)
    except gr.Error as e:
        return text("config.impossible", detail=views.plain(i18n.translate(e.message), 600))
    (h, w), cls = cfg.grid_size(), text("config.cls") if cfg.pool == "cls" else ""
    grid = text("config.grid", h=h, w=w, tokens=h * w, cls=cls) if cfg.uses_transformer else ""
    return text("config.ok", fusion=cfg.fusion, params=views.human(engine.param_count(cfg)), grid=grid)


def _set(controls: Controls, weights: Weights, upload: bool = False) -> tuple:
    """Every settable control and the notice, in the order of CONTROL_OUTPUTS. The controls show the
    checkpoint's architecture where it fixes it (and an uploaded one's, when `upload`: it was just chosen)."""
    shown = weights.controls(controls) if weights.fixes_architecture or upload else controls
    return (*(getattr(shown, n) for n in SETTABLE), weights.notice)


@spread
def on_fusion(controls: Controls, trained: str | None = None) -> tuple:
    """A new fusion stage: its tiny preset, and the architecture that will run (CONTROL_OUTPUTS)."""
    start = defaults(controls.fusion, None, controls.weights).replace(checkpoint=controls.checkpoint)
    return _set(*_not_fixed(start, trained, controls.fusion, "fusion"))


@spread
def on_preset(controls: Controls, trained: str | None = None) -> tuple:
    """A new preset: its fusion stage and hyperparameters (CONTROL_OUTPUTS)."""
    if controls.preset not in ALL_PRESETS:
        raise gr.Error(f"preset={controls.preset!r} is not allowed: expected one of {', '.join(ALL_PRESETS)}")
    start = defaults(ALL_PRESETS[controls.preset].fusion, controls.preset, controls.weights)
    start = start.replace(checkpoint=controls.checkpoint)
    return _set(*_not_fixed(start, trained, controls.preset, "preset"))


def _not_fixed(start: Controls, trained: str | None, chosen: str, what: str) -> tuple[Controls, Weights]:
    """`start` and its weights; but where a checkpoint that fixes the architecture (bundled, trained) is not
    what was chosen, random weights, and a message that says so (rather than ignoring the choice)."""
    weights = resolve(start, trained)
    if not weights.fixes_architecture or chosen in (weights.preset, weights.config.fusion):
        return start, weights
    gr.Info(text(f"fixed.{weights.kind}", preset=weights.preset, what=text(f"fixed.{what}"), chosen=chosen))
    start = defaults(start.fusion, chosen if chosen in ALL_PRESETS else None, "random")
    return start, resolve(start, trained)


@spread
def on_weights(controls: Controls, trained: str | None = None) -> tuple:
    """A new weights choice or checkpoint: the hyperparameters change to show the checkpoint's architecture
    (bundled, trained or uploaded); for random weights they stay (CONTROL_OUTPUTS)."""
    return _set(controls, resolve(controls, trained), upload=True)


@spread
def on_trained(controls: Controls, trained: str | None = None) -> tuple:
    """A run in the Train tab finished: make it this session's model in Explore (CONTROL_OUTPUTS)."""
    weights = resolve(controls.replace(weights="trained"), trained)
    if weights.problem:
        return (gr.skip(),) * len(CONTROL_OUTPUTS)
    return _set(controls.replace(weights="trained"), weights)


def on_load(request: gr.Request) -> tuple:
    """Apply the configuration in the page's URL (CONTROL_OUTPUTS); what was clamped or ignored is said once."""
    params: Mapping[str, str] = dict(request.query_params) if request is not None else {}
    controls, notes = Controls.from_query(params, defaults)
    if notes:
        gr.Warning(text("link.adjusted", notes="; ".join(i18n.translate(n) for n in notes)))
    return _set(controls, resolve(controls))


@spread
def retell(controls: Controls, trained: str | None = None, r: Run | None = None) -> tuple:
    """Explore's texts built in Python, again in the page's language (after the page loads, and when the
    language is changed in Gradio's Settings): (notice, config status, maps note, shape table, diagram)."""
    status = check_config(*controls.inputs(), trained)
    if r is None:
        return resolve(controls, trained).notice, status, "", views.table([]), ""
    from ..tasks.tables import shape_views  # a task model's table and diagram go on past its backbone
    return (resolve(controls, trained).notice, status, maps_note(r), *shape_views(r.shapes, r.fusion))


@spread
def link(controls: Controls) -> str:
    """The query string (?fusion=mid&depth=6&...) that re-creates the current configuration."""
    return controls.query()


# ---- the code ------------------------------------------------------------------------------------------
CODE_DIR = Path(tempfile.gettempdir()) / "convformer_code"  # one folder per distinct source, pruned by prune_code
CODE_BUDGET = 32 * 2**20   # bytes of written files kept at once; older ones are deleted first
CODE_TTL_S = 3600.0        # a file is kept at most this long (Gradio has copied it to its cache by then)


@spread
def code(controls: Controls, trained: str | None = None) -> tuple[str, str]:
    """The model the controls describe as ONE PyTorch file (convformer.export: torch + stdlib, the same
    state_dict as the library's model): (the source, the path of a file to download). Written from the
    configuration alone (convformer.export builds its skeleton on the meta device): no weights are loaded or
    built, whatever the size; a checkpoint gives its configuration and class names from its header."""
    weights = resolve(controls, trained)
    if not weights.runs_convformer:
        raise gr.Error(text("code.imagenet"))
    cfg = engine.model_config(controls, weights)
    if weights.kind == "random":
        preset = controls.preset if controls.preset in ALL_PRESETS else "custom configuration"
        name, command, classes = f"{preset} (random weights)", command_for(cfg), None
    else:  # a checkpoint: its file name only (no server path), and its class names
        file = weights.path.name if weights.path else "checkpoint.safetensors"
        name, command = f"{file} ({weights.kind} weights)", f"python -m convformer code --checkpoint {file}"
        classes = weights.meta.get("classes") or None
    source = export(cfg, name=name, command=command, classes=classes)
    folder = CODE_DIR / hashlib.sha256(source.encode()).hexdigest()[:16]
    path = folder / f"convformer_{cfg.fusion}.py"
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
        prune_code(keep=folder)
    return source, str(path)


def prune_code(keep: Path | None = None) -> list[Path]:
    """The janitor's task for /code's files (and run after each new one): folders older than CODE_TTL_S, then
    the oldest while all hold more than CODE_BUDGET bytes; `keep` (the file just written) stays."""
    return safety.prune_runs(CODE_DIR, CODE_BUDGET, CODE_TTL_S, active=[keep] if keep else ())
