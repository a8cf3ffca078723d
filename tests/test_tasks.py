"""Detection and segmentation heads on every fusion stage: shapes, decoding, matching, images of any size."""
from __future__ import annotations

import itertools

import pytest
import torch
from PIL import Image

from convformer.export.checkpoint import CheckpointError, bundled_checkpoint
from convformer.config import FUSIONS
from convformer.tasks import (HEADS, create_task_model, decode, detect, hungarian_match, load_task_checkpoint,
                              render_scene, save_task_checkpoint, scene_split, segment, task_shape_rows)
from convformer.tasks.decode import dense_decode, fold, peaks
from convformer.tasks.matcher import match_cost

HEAD_KINDS = [(task, head) for task, heads in HEADS.items() for head in heads]


def _model(task: str, head: str, fusion: str):
    torch.manual_seed(0)
    return create_task_model(task, fusion, weights="random", head=head)


@pytest.mark.parametrize("fusion", FUSIONS)
@pytest.mark.parametrize("task,head", HEAD_KINDS)
def test_output_shapes_per_stage_and_task(fusion, task, head):
    model = _model(task, head, fusion)
    assert (model.task, model.head_kind, len(model.class_names)) == (task, head, 10)
    with torch.no_grad():
        out = model(torch.randn(2, 3, 64, 96))
    if head == "dense":
        assert {k: tuple(v.shape) for k, v in out.items()} == {
            "heatmap": (2, 10, 16, 24), "size": (2, 2, 16, 24), "offset": (2, 2, 16, 24)}
        assert decode(out, (64, 96)).shape == (2, 100, 6)
    elif head == "set":
        q, layers = model.head_config.queries, model.head_config.decoder_layers
        assert out["pred_logits"].shape == (2, q, 11) and out["pred_boxes"].shape == (2, q, 4)
        assert out["cross_attn"].shape == (2, layers, q, 8, 12)
        torch.testing.assert_close(out["cross_attn"].sum((-2, -1)), torch.ones(2, layers, q))
        assert out["pred_boxes"].min() >= 0 and out["pred_boxes"].max() <= 1
        assert decode(out, (64, 96)).shape == (2, q, 6)
    else:
        assert out["logits"].shape == (2, 11, 64, 96)
    assert all(torch.isfinite(v).all() for v in out.values())


@pytest.mark.parametrize("task,head", HEAD_KINDS)
def test_shape_rows_continue_through_head_and_decoding(task, head):
    model = _model(task, head, "vit")
    rows = task_shape_rows(model, torch.zeros(1, 3, 64, 64))
    names = [r.name for r in rows]
    assert names[0] == "tap vit.blocks.3" and "neck.pyramid" in names  # ViTDet's pyramid on the one-stride ViT
    last = rows[-1]
    if head == "dense":
        assert names[-4:] == ["decode.sigmoid", "decode.peaks", "decode.topk", "decode.boxes"]
        assert rows[names.index("head.heatmap")].output_axes == "(B=1, K=10, h=16, w=16)"
        assert last.output_axes == "(B=1, N=100, 6)"
    elif head == "set":
        assert last.output_axes == "(B=1, Q=12, 6)"
        assert rows[names.index("head.cross_attn")].output_axes == "(B=1, L=2, Q=12, h'=8, w'=8)"
    else:
        assert last.output_axes == "(B=1, H=64, W=64)"
    head_params = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("backbone."))
    assert sum(r.params for r in rows) == head_params


def test_taps_per_stage():
    taps = {f: [s for _, _, s in create_task_model("segment", f, weights="random").taps] for f in FUSIONS}
    assert taps == {"early": [4, 8], "mid": [4, 8], "late": [4, 8, 8], "cnn": [4, 8, 16], "vit": [8]}


def test_dense_decoding_on_constructed_heatmaps():
    logits = torch.full((1, 10, 16, 16), -10.0)
    logits[0, 3, 4, 5] = 5.0          # a peak: class 3 at cell (y=4, x=5)
    logits[0, 3, 4, 6] = 4.0          # its neighbour is no peak (3x3 max-pool test)
    logits[0, 7, 12, 2] = 3.0         # another class, elsewhere
    size = torch.zeros(1, 2, 16, 16)
    size[0, :, 4, 5] = torch.tensor([2.0, 3.0])     # 2 x 3 cells = 8 x 12 px at stride 4
    offset = torch.zeros(1, 2, 16, 16)
    offset[0, :, 4, 5] = torch.tensor([0.5, 0.25])
    dets = dense_decode(logits, size, offset, (64, 64), k=3)[0]
    assert dets.shape == (3, 6)
    cx, cy = (5 + 0.5) * 4, (4 + 0.25) * 4
    torch.testing.assert_close(dets[0], torch.tensor([cx - 4, cy - 6, cx + 4, cy + 6, torch.sigmoid(torch.tensor(5.0)), 3]))
    assert dets[1, 5] == 7 and dets[1, 4] == pytest.approx(torch.sigmoid(torch.tensor(3.0)).item())
    assert dets[2, 4] < 1e-3          # the suppressed neighbour is not among the candidates
    heat = torch.zeros(1, 1, 3, 3)
    heat[0, 0, 1, 1], heat[0, 0, 1, 2] = 0.9, 0.5
    assert peaks(heat).count_nonzero() == 1


def test_fold_keeps_one_box_per_object_and_names_its_second_guess():
    dets = torch.tensor([[0, 0, 10, 10, .9, 3], [1, 0, 10, 10, .6, 7], [0, 1, 10, 10, .5, 3], [30, 30, 40, 40, .4, 1]])
    kept, second = fold(dets)
    assert kept.tolist() == [0, 3] and second.tolist() == [1, -1]  # the same-class overlap is dropped, not named
    assert [len(v) for v in fold(dets[:0])] == [0, 0]


def _brute_force(cost: torch.Tensor) -> float:
    q, t = cost.shape
    return min(sum(cost[p[j], j].item() for j in range(t)) for p in itertools.permutations(range(q), t))


@pytest.mark.parametrize("seed", range(6))
def test_matcher_against_brute_force(seed):
    g = torch.Generator().manual_seed(seed)
    q, t = 5, int(torch.randint(1, 4, (1,), generator=g))
    logits = torch.randn(1, q, 4, generator=g)
    boxes = torch.rand(1, q, 4, generator=g) * 0.5 + 0.1
    target = {"labels": torch.randint(0, 3, (t,), generator=g), "boxes": torch.rand(t, 4, generator=g) * 0.5 + 0.1}
    (rows, cols), = hungarian_match(logits, boxes, [target])
    cost = match_cost(logits[0], boxes[0], target["labels"], target["boxes"])
    assert len(rows) == t and sorted(cols.tolist()) == list(range(t))
    assert cost[rows, cols].sum().item() == pytest.approx(_brute_force(cost), abs=1e-5)


def test_set_head_queries_start_at_grid_anchors_and_look_near_them():
    from convformer.tasks.heads import SetHead
    head = SetHead(16, 10, queries=12, layers=2, heads=4)
    anchors = head.anchors.weight.sigmoid()                                   # (Q, 4) cx cy w h
    assert len({(round(x, 3), round(y, 3)) for x, y in anchors[:, :2].tolist()}) == 12  # a 4 x 3 grid
    assert anchors[:, :2].min() > 0 and anchors[:, :2].max() < 1
    torch.testing.assert_close(anchors[:, 2:], torch.full((12, 2), 0.3))
    out = head(torch.randn(1, 16, 8, 8))
    torch.testing.assert_close(out["layer_boxes"][0, 0], anchors)             # the box MLP starts at zero offset
    prior = head.attention_prior(torch.tensor([[[0.3, 0.7]]]), 8, 8)          # centre at x 2.4, y 5.6 cells
    assert prior.shape == (4, 1, 64)
    assert (prior.argmax(-1) == 5 * 8 + 2).all()                              # every head peaks at that cell
    assert prior[0, 0, 0] < prior[3, 0, 0] < 0                                # head 0 narrowest, head 3 widest


def test_set_loss_weighs_no_object_by_the_heads_eos_coef():
    from types import SimpleNamespace
    from convformer.tasks import HeadConfig
    from convformer.tasks.losses import task_loss
    logits = torch.zeros(1, 1, 4, 11)
    logits[..., 0] = 8.0                                                      # all 4 queries say class 0
    out = {"layer_logits": logits, "layer_boxes": torch.tensor([0.5, 0.5, 0.2, 0.2]).repeat(1, 1, 4, 1)}
    batch = {"boxes": torch.tensor([[[22.0, 22.0, 42.0, 42.0]]]), "labels": torch.tensor([[0]])}  # one object

    def loss(eos: float) -> float:
        model = SimpleNamespace(head_kind="set", head_config=HeadConfig(head="set", eos_coef=eos))
        return float(task_loss(model, out, batch, (64, 64)))
    assert loss(1.0) > loss(0.1) > 0                                          # 3 unmatched queries weigh more
    with pytest.raises(ValueError, match="eos_coef=2"):
        HeadConfig(head="set", eos_coef=2)


def test_scenes_are_deterministic_and_honest_about_overlaps():
    a, b = render_scene(5, "train", 0, (48, 80)), render_scene(5, "train", 0, (48, 80))
    assert a.image.size == (80, 48) and a.image.tobytes() == b.image.tobytes()
    t = a.target
    n = len(t["labels"])
    assert 1 <= n <= 4 and t["boxes"].shape == (n, 4) and t["masks"].shape == (n, 48, 80)
    assert t["labels"].dtype == torch.int64 and t["masks"].dtype == torch.bool
    assert (t["masks"].sum(0) <= 1).all()  # visible parts never overlap
    for box, mask in zip(t["boxes"], t["masks"]):  # the box is the visible mask's extent (pixel edges)
        ys, xs = mask.nonzero(as_tuple=True)
        assert box.tolist() == [xs.min().item(), ys.min().item(), xs.max().item() + 1, ys.max().item() + 1]
    expected = torch.zeros(48, 80, dtype=torch.int64)
    for m, label in zip(t["masks"], t["labels"]):
        expected[m] = label + 1
    assert torch.equal(a.semantic, expected)
    assert render_scene(5, "val", 0, (48, 80)).target["boxes"].tolist() != t["boxes"].tolist()
    data = scene_split("val", 6, 40)
    assert data.images.shape == (6, 3, 40, 40) and data.semantic.shape == (6, 40, 40)
    assert [len(x["labels"]) for x in data.targets()] == [len(render_scene(i, "val", 0, 40).target["labels"]) for i in range(6)]


@pytest.mark.parametrize("size", [(64, 64), (120, 45), (33, 200)])
def test_boxes_and_masks_in_the_original_pixels(size):
    image = Image.new("RGB", size, (90, 120, 150))
    dets = detect(_model("detect", "dense", "mid").eval(), image, score_threshold=0.0)
    assert dets.image_size == size and len(dets.raw) == 100 and len(dets.boxes) == len(fold(dets.raw)[0])
    assert (dets.boxes[:, [0, 2]] <= size[0]).all() and (dets.boxes[:, [1, 3]] <= size[1]).all()
    assert (dets.boxes >= 0).all() and (dets.scores[:-1] >= dets.scores[1:]).all()
    seg = segment(_model("segment", "segformer", "cnn").eval(), image)
    assert seg.mask.shape == (size[1], size[0]) and seg.probs.shape[0] == 11


def test_detections_scale_back_to_the_image():
    """A box the model places in input pixels comes back in the image's pixels (aspect kept on the way in)."""
    model = _model("detect", "dense", "cnn").eval()
    image = Image.new("RGB", (256, 128))     # input 64 x 128 (short side 64, aspect kept): factor 2
    dets = detect(model, image, score_threshold=0.0)
    assert dets.input_hw == (64, 128)
    raw = dets.raw[fold(dets.raw)[0], :4]                      # threshold 0: every candidate, one per object
    torch.testing.assert_close(dets.boxes, (raw * 2).clamp(min=0).minimum(torch.tensor([256.0, 128, 256, 128])))


def test_bad_input_one_clear_line(tmp_path):
    model = _model("detect", "dense", "mid").eval()
    image = Image.new("RGB", (64, 64))
    for bad in (-0.1, 1.5, "0.3"):
        with pytest.raises(ValueError, match="score_threshold=.* out of range"):
            detect(model, image, score_threshold=bad)
    dets = detect(model, image, score_threshold=1.0)
    assert len(dets.boxes) == 0 and dets.message.startswith("no objects found")
    with pytest.raises(ValueError, match="this is a detect model; segment needs a segment model"):
        segment(model, image)
    path = save_task_checkpoint(model, tmp_path / "d.safetensors", note="x")
    with pytest.raises(CheckpointError, match="this is a detect checkpoint; the segment task needs"):
        load_task_checkpoint(path, "segment")
    loaded = load_task_checkpoint(path, "detect")
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x)["heatmap"], model(x)["heatmap"])
    assert loaded.meta == {"note": "x", "stored_dtype": "float32"}
    with pytest.raises(CheckpointError, match="classification checkpoint"):
        load_task_checkpoint(bundled_checkpoint("mid"), "detect")
    with pytest.raises(ValueError, match="task='track' is not allowed"):
        create_task_model("track", "mid")


def _coco_ap50(preds, targets) -> float:
    """AP@0.5 straight from pycocotools (COCO boxes are x, y, w, h)."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    def xywh(b):
        return [b[0], b[1], b[2] - b[0], b[3] - b[1]]
    images, anns, dets = [], [], []
    for i, (p, t) in enumerate(zip(preds, targets)):
        images.append({"id": i})
        for box, label in zip(t["boxes"].tolist(), t["labels"].tolist()):
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": label, "bbox": xywh(box),
                         "area": (box[2] - box[0]) * (box[3] - box[1]), "iscrowd": 0})
        for box, score, label in zip(p["boxes"].tolist(), p["scores"].tolist(), p["labels"].tolist()):
            dets.append({"image_id": i, "category_id": label, "bbox": xywh(box), "score": score})
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {"images": images, "annotations": anns, "categories": [{"id": k} for k in range(10)]}
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(dets), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return float(ev.stats[1])


def test_mean_ap_against_pycocotools_directly():
    from convformer.tasks import mean_ap
    g = torch.Generator().manual_seed(0)
    targets, preds = [], []
    for i in range(8):
        t = render_scene(i, "val", 0, 64).target
        noisy = t["boxes"] + torch.randn(t["boxes"].shape, generator=g) * 3
        labels = t["labels"].clone()
        labels[0] = (labels[0] + i % 2) % 10                     # every other image: one wrong class
        extra = torch.tensor([[1.0, 1.0, 20.0, 20.0]])         # and a false positive
        preds.append({"boxes": torch.cat([noisy, extra]), "labels": torch.cat([labels, torch.tensor([i % 10])]),
                      "scores": torch.rand(len(labels) + 1, generator=g)})
        targets.append({"boxes": t["boxes"], "labels": t["labels"]})
    ours = mean_ap(preds, targets)["map_50"]
    assert 0.2 < ours < 0.95
    assert ours == pytest.approx(_coco_ap50(preds, targets), abs=1e-6)


def test_mean_iou_background_included():
    from convformer.tasks import mean_iou
    pred = torch.tensor([[[0, 1], [2, 2]]])
    target = torch.tensor([[[0, 1], [2, 0]]])
    out = mean_iou(pred, target, 11)
    assert out["per_class"][:3] == pytest.approx([0.5, 1.0, 0.5]) and out["miou"] == pytest.approx(2 / 3)
    assert all(v != v for v in out["per_class"][3:])  # NaN: in neither


def test_mean_iou_is_dataset_level_not_per_image():
    """Two images: class 1 fills image 0 and is right; image 1 has 1 stray pixel of class 1 on background.
    Dataset-level: class 1 IoU = 4 / 5; torchmetrics' MeanIoU: the mean over (image, class) pairs present."""
    from convformer.tasks import mean_iou
    pred = torch.tensor([[[1, 1], [1, 1]], [[1, 0], [0, 0]]])
    target = torch.tensor([[[1, 1], [1, 1]], [[0, 0], [0, 0]]])
    out = mean_iou(pred, target, 3)
    assert out["per_class"][:2] == pytest.approx([3 / 4, 4 / 5])
    assert out["miou"] == pytest.approx((3 / 4 + 4 / 5) / 2)
    assert out["miou_per_image"] == pytest.approx((1 + 3 / 4 + 0) / 3)


@pytest.mark.parametrize("fusion", FUSIONS)
def test_inspect_task_gives_the_heads_outputs_from_one_recorded_forward(fusion):
    from convformer.tasks.inspect import inspect_task
    model = _model("segment", "segformer", fusion).eval()
    x = torch.randn(1, 3, 64, 80)
    with torch.no_grad():
        plain = model(x)["logits"]
    hooks = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())
    result, out = inspect_task(model, x, flops=False)
    torch.testing.assert_close(out["logits"], plain, atol=1e-4, rtol=1e-4)  # explicit attention vs SDPA
    assert result.attentions or fusion == "cnn"
    assert sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules()) == hooks


def test_segmenter_refinement_and_dice_loss(tmp_path):
    from convformer.tasks.losses import dice_loss
    model = create_task_model("segment", "cnn", weights="random", refine=2, dice=1.0)
    assert len(model.head.refine) == 2 and model(torch.zeros(1, 3, 32, 48))["logits"].shape == (1, 11, 32, 48)
    target = torch.randint(0, 11, (2, 8, 8))
    perfect = torch.nn.functional.one_hot(target, 11).permute(0, 3, 1, 2).float() * 50
    assert float(dice_loss(perfect, target)) == pytest.approx(0.0, abs=1e-4)
    assert float(dice_loss(-perfect, target)) > 0.9
    with pytest.raises(ValueError, match="dice="):
        create_task_model("segment", "cnn", weights="random", dice=-1.0)


def test_float16_checkpoint_loads_as_float32_with_the_same_outputs(tmp_path):
    model = _model("detect", "dense", "mid").eval()
    path = save_task_checkpoint(model, tmp_path / "half.safetensors", half=True)
    full = save_task_checkpoint(model, tmp_path / "full.safetensors")
    assert path.stat().st_size < 0.6 * full.stat().st_size
    back = load_task_checkpoint(path, "detect")
    assert all(p.dtype == torch.float32 for p in back.parameters())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(back(x)["heatmap"], model(x)["heatmap"], atol=0.05, rtol=0.01)


def test_naming_the_set_head_loads_its_own_bundled_file(tmp_path, monkeypatch):
    import warnings
    from convformer.tasks import weights
    monkeypatch.setattr(weights, "WEIGHTS_DIR", tmp_path)
    with pytest.warns(UserWarning, match="no bundled set-head detect checkpoint for 'mid'"):
        create_task_model("detect", "mid", head="set")
    save_task_checkpoint(_model("detect", "set", "mid"), tmp_path / "detect_mid_set.safetensors", half=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = create_task_model("detect", "mid", head="set")
    assert model.head_kind == "set" and model.meta["stored_dtype"] == "float16"


def test_task_recipes_are_the_measured_ones():
    from convformer.tasks.recipes import task_recipe
    seg = task_recipe("segment", "mid")
    assert seg.model == {"refine": 2, "dice": 1.0} and seg.batch_size == 16 and seg.measured[-1][0] < 120
    assert task_recipe("detect", "cnn").measured[-1][1] > 0.6
    dense, sets = task_recipe("detect", "mid").measured, task_recipe("detect", "mid", "set").measured
    assert sets[-1][1] > 0.8 and sets[-1][0] < 180  # the anchored set head detects within the budget
    assert dense[-1][1] > sets[-1][1] and dense[-1][0] < sets[-1][0]  # why the dense head is the default
    vit = task_recipe("segment", "vit")
    assert vit.optimizer == "muon" and vit.measured[-1][0] < 180 and vit.measured[-1][1] >= 0.6
    curves = [task_recipe("detect", f, h).measured for f in FUSIONS for h in ("dense", "set")]
    assert len({c for c in curves if c}) == len([c for c in curves if c])  # no curve borrowed from another stage
