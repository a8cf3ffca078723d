"""Training loop, datasets, command line and the bundled checkpoints. Tiny models on 32 px images, one
CPU thread: the whole file runs in well under a minute on 2 cores."""
from __future__ import annotations

import json
import socket
import threading
import zipfile

import numpy as np
import pytest
import timm
import torch
import torch.distributed as dist
from torch import nn

from convformer import ConvFormerConfig, build_model, load_checkpoint
from convformer.data import shapes
from convformer.__main__ import main
from convformer.data.datasets import SHAPES_CACHE, ShapesCache
from convformer.train import muon
from convformer.train.muon import Muon, orthogonalize
from convformer.train.recipes import RECIPES, estimate_seconds, verdict
from convformer.train import (ImageTensors, TrainConfig, evaluate, fit, lr_factor, make_datasets,
                              optimizers, param_groups)

TINY = ConvFormerConfig(fusion="mid", img_size=32, num_classes=10, conv_widths=(8, 16), conv_depths=(0, 1),
                        embed_dim=32, depth=1, num_heads=2)
FAST = dict(batch_size=32, lr=3e-3, warmup_epochs=0.5, progress_bar=False)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # more threads than free cores makes small models many times slower
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data():
    return make_datasets("shapes", 32, train_size=320, val_size=100, test_size=100, seed=0)


def two_classes(split: ImageTensors, keep=(1, 5)) -> ImageTensors:
    """Square vs ring: a pair a tiny model separates within seconds (all ten classes take minutes)."""
    mask = torch.isin(split.labels, torch.tensor(keep))
    labels = (split.labels[mask] == keep[1]).long()
    return ImageTensors(split.images[mask], labels, [split.classes[k] for k in keep])


def tiny(seed: int = 0):
    torch.manual_seed(seed)
    return build_model(TINY)


def test_fit_lowers_loss_and_beats_chance(tmp_path):
    data = make_datasets("shapes", 32, train_size=1500, val_size=300, test_size=100, seed=0)
    train, val, test = (two_classes(s) for s in (data.train, data.val, data.test))
    events = []
    torch.manual_seed(0)
    result = fit(build_model(TINY, num_classes=2), train, val, TrainConfig(epochs=6, **FAST), out_dir=tmp_path,
                 test_set=test, progress=lambda info: events.append(info["event"]))
    losses = result.step_losses
    assert sum(losses[-10:]) / 10 < sum(losses[:10]) / 10 - 0.1
    assert result.best["val_acc"] > 0.7  # chance is 0.5
    assert len(result.history) == 6 and not result.cancelled
    assert events.count("step") == 6 * 10 and events.count("epoch") == 6 and events[-1] == "done"
    for name in ("best.safetensors", "best.json", "metrics.json", "curves.png"):
        assert (tmp_path / name).is_file()
    model = load_checkpoint(tmp_path / "best.safetensors")
    assert model.meta["classes"] == ["square", "ring"]
    assert model.meta["metrics"]["val_acc"] == result.best["val_acc"]
    assert model.meta["metrics"]["test_acc"] == result.test["acc"]
    assert evaluate(model, val)["acc"] == pytest.approx(result.best["val_acc"])
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert [h["epoch"] for h in metrics["history"]] == [1, 2, 3, 4, 5, 6]


def test_same_seed_same_history(data):
    cfg = TrainConfig(epochs=1, seed=3, **FAST)
    a = fit(tiny(1), data.train, data.val, cfg)
    b = fit(tiny(1), data.train, data.val, cfg)
    state = torch.random.get_rng_state()
    c = fit(tiny(1), data.train, data.val, TrainConfig(epochs=1, seed=4, **FAST))
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's RNG is left as it was
    assert a.step_losses == b.step_losses and a.history[0]["val_loss"] == b.history[0]["val_loss"]
    assert a.step_losses != c.step_losses


def test_cancel_keeps_a_loadable_best_checkpoint(data, tmp_path):
    cancel = threading.Event()

    def progress(info):
        if info["event"] == "step" and info["step"] == 3:
            cancel.set()
    result = fit(tiny(), data.train, data.val, TrainConfig(epochs=3, **FAST), progress=progress,
                 cancel=cancel, out_dir=tmp_path)
    assert result.cancelled and len(result.step_losses) == 3
    assert len(result.history) == 1 and result.history[0]["epoch"] < 1  # a partial epoch, evaluated once
    model = load_checkpoint(tmp_path / "best.safetensors")
    assert model.meta["metrics"]["val_acc"] == result.best["val_acc"]
    assert json.loads((tmp_path / "metrics.json").read_text())["cancelled"] is True


def test_losses_read_back_in_batches(data):
    """read_loss_every > 1 (a GPU's default: no step waits for the device) is the same run with the same
    reports for every step, in order, only delivered in groups; a cancel set by a report acts when the group
    it came in has been reported (the GPU default's group is 16 steps, ~0.2 s there)."""
    small = ImageTensors(data.train.images[:224], data.train.labels[:224], data.classes)  # 7 steps an epoch
    each, grouped = [], []
    a = fit(tiny(), small, data.val, TrainConfig(epochs=2, **FAST), progress=each.append)
    b = fit(tiny(), small, data.val, TrainConfig(epochs=2, read_loss_every=4, **FAST), progress=grouped.append)
    assert b.step_losses == a.step_losses
    assert [h["val_loss"] for h in b.history] == [h["val_loss"] for h in a.history]

    def reports(events):
        return [(i["event"], i["step"], i["epoch"], i["loss"], i["lr"]) for i in events]
    assert reports(grouped) == reports(each)
    assert [i[1] for i in reports(each) if i[0] == "step"] == list(range(1, 15))
    assert [i[3] for i in reports(each) if i[0] == "step"] == a.step_losses

    cancel = threading.Event()

    def progress(info):
        if info["event"] == "step" and info["step"] == 2:
            cancel.set()
    c = fit(tiny(), small, data.val, TrainConfig(epochs=2, read_loss_every=4, **FAST), progress=progress,
            cancel=cancel)
    assert c.cancelled and c.step_losses == a.step_losses[:4]
    with pytest.raises(ValueError, match="read_loss_every"):
        TrainConfig(read_loss_every=0)


def test_config_and_data_errors(data):
    with pytest.raises(ValueError, match="epochs"):
        TrainConfig(epochs=0)
    with pytest.raises(ValueError, match="lr"):
        TrainConfig(lr=-1)
    with pytest.raises(ValueError, match="model takes"):
        fit(build_model(TINY.replace(img_size=48)), data.train, data.val, TrainConfig(epochs=1, **FAST))
    with pytest.raises(ValueError, match="max_images"):
        fit(tiny(), data.train, data.val, TrainConfig(epochs=1, max_images=10, **FAST))


def test_schedule_and_weight_decay_groups():
    factors = [lr_factor(s, 100, 10, 0.01) for s in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[9:], factors[10:])) and factors[-1] < 0.02
    model = build_model(TINY.replace(fusion="early", pool="cls"))
    decay, no_decay = param_groups(model, 0.05)
    names = {id(p): n for n, p in model.named_parameters()}
    skipped = {names[id(p)] for p in no_decay["params"]}
    assert any(n.endswith("pos_embed") for n in skipped) and any(n.endswith("cls_token") for n in skipped)
    assert all(p.ndim >= 2 for p in decay["params"]) and no_decay["weight_decay"] == 0


@pytest.mark.parametrize("fusion", ["vit", "late"])
def test_muon_takes_the_hidden_matrices_and_adamw_the_rest(fusion):
    model = build_model(TINY.replace(fusion=fusion, pool="cls", patch_size=8))
    muon, adamw = optimizers(model, TrainConfig(optimizer="muon"))
    names = {id(p): n for n, p in model.named_parameters()}
    to_muon = {names[id(p)] for g in muon.param_groups for p in g["params"]}
    to_adamw = {names[id(p)] for g in adamw.param_groups for p in g["params"]}
    assert isinstance(muon, Muon) and isinstance(adamw, torch.optim.AdamW)
    assert to_muon | to_adamw == set(names.values()) and not to_muon & to_adamw  # every parameter, once
    assert to_muon == {n for n, p in model.named_parameters() if p.ndim == 2 and not n.startswith("head.")}
    assert {"blocks.0.attn.qkv.weight", "blocks.0.mlp.fc2.weight"} <= {n.split("vit.")[-1] for n in to_muon}
    assert "head.weight" in to_adamw and any("pos_embed" in n for n in to_adamw)
    (cnn,) = optimizers(build_model(TINY.replace(fusion="cnn")), TrainConfig(optimizer="muon"))
    assert isinstance(cnn, torch.optim.AdamW)  # conv kernels and the classifier only: nothing for Muon
    (only,) = optimizers(model, TrainConfig())
    assert isinstance(only, torch.optim.AdamW) and sum(len(g["params"]) for g in only.param_groups) == len(names)
    with pytest.raises(ValueError, match="optimizer='sgd' is not allowed"):
        TrainConfig(optimizer="sgd")


@pytest.mark.parametrize("nesterov, adjust_lr_fn", [(True, "match_rms_adamw"), (False, None),
                                                   (True, "spectral_unclamped")])
@pytest.mark.parametrize("ns_dtype", [torch.float32, torch.bfloat16])  # bf16: what a GPU computes in
def test_batched_muon_steps_as_torch_muon(nesterov, adjust_lr_fn, ns_dtype, monkeypatch):
    """convformer.train.muon.Muon batches the matrices of one shape; its steps are torch.optim.Muon's up to rounding
    (torch's iteration runs in bf16, ours in float32 on the CPU)."""
    monkeypatch.setattr(muon, "ns_dtype", lambda device: ns_dtype)
    torch.manual_seed(0)
    shapes = [(48, 16), (16, 48), (16, 16), (48, 16), (32, 16)]  # tall, wide, square, and two of one shape
    start = [torch.randn(s) * 0.02 for s in shapes]
    runs = []
    for cls in (torch.optim.Muon, Muon):
        params = [nn.Parameter(p.clone()) for p in start]
        runs.append((params, cls(params, lr=8e-3, weight_decay=0.05, nesterov=nesterov,
                                 adjust_lr_fn=adjust_lr_fn)))
    for _ in range(5):
        grads = [torch.randn(s) for s in shapes]
        for params, opt in runs:
            for p, g in zip(params, grads):
                p.grad = g.clone()
            opt.step()
    (ref, ref_opt), (ours, our_opt) = runs
    for r, o, s in zip(ref, ours, start):
        assert o.dtype == torch.float32 and (o - r).abs().max() < 0.02 * (r - s).abs().max()
    assert all(torch.equal(ref_opt.state[r]["momentum_buffer"], our_opt.state[o]["momentum_buffer"])
               for r, o in zip(ref, ours))  # the same state, so a checkpointed optimizer loads into either
    sv = torch.linalg.svdvals(orthogonalize(torch.randn(3, 16, 48), (3.4445, -4.7750, 2.0315), 5, 1e-7).float())
    assert sv.min() > 0.5 and sv.max() < 1.3  # U S' V^T with S' near 1, as torch's iteration gives


def test_fit_with_muon_learns_and_is_seeded():
    data = make_datasets("shapes", 32, train_size=1500, val_size=300, test_size=0, seed=0)
    train, val = two_classes(data.train), two_classes(data.val)
    cfg = TrainConfig(epochs=5, optimizer="muon", **FAST)
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        runs.append(fit(build_model(TINY, num_classes=2), train, val, cfg))
    a, b = runs
    assert a.step_losses == b.step_losses
    assert sum(a.step_losses[-10:]) / 10 < sum(a.step_losses[:10]) / 10 - 0.05
    assert a.best["val_acc"] > 0.7  # chance is 0.5


def test_cli_train_writes_the_files(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["train", "--fusion", "cnn", "--dataset", "shapes", "--epochs", "1", "--out", str(out),
               "--img-size", "32", "--train-size", "64", "--val-size", "20", "--test-size", "20",
               "--conv-widths", "8", "16", "--batch-size", "32", "--quiet"])
    assert rc == 0
    for name in ("best.safetensors", "best.json", "metrics.json", "curves.png"):
        assert (out / name).is_file()
    model = load_checkpoint(out / "best.safetensors")
    assert model.config.fusion == "cnn" and model.config.conv_widths == (8, 16)
    assert model.meta["data"]["train_size"] == 64 and "test_acc" in model.meta["metrics"]
    assert "test_acc" in capsys.readouterr().out
    again = tmp_path / "again"  # fine-tune from the checkpoint: its config, its weights as the start
    assert main(["train", "--init", str(out / "best.safetensors"), "--epochs", "1", "--out", str(again),
                 "--train-size", "64", "--val-size", "20", "--test-size", "0", "--quiet"]) == 0
    tuned = load_checkpoint(again / "best.safetensors")
    assert tuned.config == model.config and tuned.meta["init"]["metrics"] == model.meta["metrics"]
    assert main(["train", "--init", str(out / "best.safetensors"), "--depth", "2", "--out", str(again)]) == 2


def test_cli_bad_config_is_a_message(tmp_path, capsys):
    rc = main(["train", "--fusion", "mid", "--epochs", "1", "--out", str(tmp_path), "--embed-dim", "30",
               "--num-heads", "4"])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "embed_dim" in err and "Traceback" not in err
    assert main(["train", "--epochs", "0", "--out", str(tmp_path), "--img-size", "32"]) == 2


def test_distributed_world_size_1_gloo(data, monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for key, value in {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": "0",
                       "WORLD_SIZE": "1", "LOCAL_RANK": "0"}.items():
        monkeypatch.setenv(key, value)
    small = ImageTensors(data.train.images[:96], data.train.labels[:96], data.classes)
    cfg = TrainConfig(epochs=1, distributed=True, device="cpu", **FAST)
    try:
        ddp = fit(tiny(), small, data.val, cfg)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    assert not dist.is_initialized()  # fit destroys the group it created
    plain = fit(tiny(), small, data.val, TrainConfig(epochs=1, device="cpu", **FAST))
    assert ddp.step_losses == pytest.approx(plain.step_losses, rel=1e-4)


def test_folder_and_zip_datasets(tmp_path):
    root = tmp_path / "data"
    shapes.write_samples(root, per_class=3, img_size=40, seed=5)
    a = make_datasets(str(root), 32, val_fraction=0.34, seed=1)
    assert a.classes == sorted(shapes.CLASSES) and a.test is None
    assert len(a.train) == 20 and len(a.val) == 10  # one of each class's three images for validation
    assert a.train.images.shape[1:] == (3, 32, 32) and a.train.images.dtype == torch.uint8
    assert sorted(a.val.labels.tolist()) == list(range(10))
    archive = tmp_path / "data.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(root.rglob("*.png")):
            zf.write(path, f"data/{path.relative_to(root)}")
    b = make_datasets(str(archive), 32, val_fraction=0.34, seed=1)
    assert b.classes == a.classes and torch.equal(b.val.images, a.val.images)
    result = fit(build_model(TINY), b.train, b.val, TrainConfig(epochs=1, **FAST))
    assert len(result.history) == 1
    with pytest.raises(ValueError):
        make_datasets(str(tmp_path / "missing"), 32)



def test_shapes_cache_renders_once_and_shares():
    cache = ShapesCache(budget_bytes=10 * 2 ** 20)
    a = cache.get("train", 20, (32, 32))
    b = cache.get("train", 30, (32, 32))  # renders only the 10 missing images
    c = cache.get("train", 25, (32, 32))  # a prefix of what is there: no rendering
    assert cache.rendered == 30 and cache.cached("train", 0, (32, 32)) == 30
    assert torch.equal(a.images, b.images[:20]) and c.images.data_ptr() == b.images.data_ptr()
    img, label = shapes.render(27, "train", 32)  # image i does not depend on how many were rendered
    assert torch.equal(b.images[27], torch.from_numpy(np.array(img)).permute(2, 0, 1)) and b.labels[27] == label
    assert cache.get("train", 5, (32, 32), seed=1).images.shape == (5, 3, 32, 32) and cache.rendered == 35
    assert not torch.equal(cache.get("train", 5, (32, 32), seed=1).images, a.images[:5])


def test_shapes_cache_stays_within_its_budget():
    per_image = 3 * 32 * 32 + 8  # uint8 pixels + an int64 label
    cache = ShapesCache(budget_bytes=50 * per_image)
    cache.get("train", 30, (32, 32))
    cache.get("val", 10, (32, 32))
    assert cache.nbytes == 40 * per_image
    cache.get("val", 10, (32, 32))  # val is now the most recently used
    cache.get("test", 20, (32, 32))  # over budget: the least recently used entry (train) goes
    assert cache.cached("train", 0, (32, 32)) == 0 and cache.cached("val", 0, (32, 32)) == 10
    assert cache.nbytes <= 50 * per_image
    big = cache.get("train", 60, (32, 32))  # one split larger than the whole budget: returned, not kept
    assert len(big) == 60 and cache.nbytes <= 50 * per_image


def test_shapes_cache_two_threads_render_once():
    cache = ShapesCache(budget_bytes=10 * 2 ** 20)
    barrier, out = threading.Barrier(2), []

    def ask():
        barrier.wait()
        out.append(cache.get("val", 40, (32, 32)))
    threads = [threading.Thread(target=ask) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert cache.rendered == 40 and torch.equal(out[0].images, out[1].images)


def test_make_datasets_reads_the_shared_cache():
    before = SHAPES_CACHE.rendered
    a = make_datasets("shapes", 40, train_size=24, val_size=12, test_size=0, seed=11)
    b = make_datasets("shapes", 40, train_size=24, val_size=12, test_size=0, seed=11)
    assert SHAPES_CACHE.rendered - before == 36 and torch.equal(a.train.images, b.train.images)


@pytest.mark.parametrize("fusion", sorted(RECIPES))
def test_recipes_build_and_describe_themselves(fusion):
    r = RECIPES[fusion]
    cfg = r.model_config()
    assert cfg.fusion == fusion and cfg.img_size == (r.img_size, r.img_size) and cfg.num_classes == 10
    tcfg = r.train_config(device="cpu")
    assert (tcfg.epochs, tcfg.lr, tcfg.batch_size, tcfg.augment, tcfg.optimizer) == (
        r.epochs, r.lr, r.batch_size, r.augment, r.optimizer)
    assert r.curve and r.time_to(0.0) == r.curve[0][0] and r.best == max(a for _, a in r.curve)
    assert r.time_to(0.8) is not None and r.seconds <= 60  # its measured run: 80 % within a minute (issue 16)
    assert r.accuracy_at(0) == pytest.approx(0.1) and r.accuracy_at(10 ** 6) == r.curve[-1][1]
    assert all(r.accuracy_at(t) == pytest.approx(a) for t, a in r.curve)
    (t0, a0), (t1, a1) = r.curve[:2]
    assert r.accuracy_at((t0 + t1) / 2) == pytest.approx((a0 + a1) / 2)  # linear between epochs
    # the estimate of the recipe's own run is its measured time plus rendering, and grows with the work
    est = estimate_seconds(cfg, r.epochs, r.train_size, r.val_size, rendered=r.train_size + r.val_size)
    assert est == pytest.approx(r.seconds, rel=1e-6)
    assert estimate_seconds(cfg, 2 * r.epochs, r.train_size, r.val_size, rendered=10 ** 9) > 1.9 * r.seconds
    assert estimate_seconds(cfg, r.epochs, r.train_size, r.val_size) > est  # nothing rendered yet
    line = verdict(fusion, 0.5, 12.0)
    assert "50.0%" in line and "12 s" in line and all(f in line for f in RECIPES)


@pytest.mark.parametrize("fusion", ["cnn", "vit"])
def test_cli_recipe_uses_the_recipe(tmp_path, fusion):
    r = RECIPES[fusion]
    out = tmp_path / "run"
    assert main(["train", "--recipe", fusion, "--epochs", "1", "--train-size", "40", "--val-size", "20",
                 "--test-size", "0", "--out", str(out), "--quiet"]) == 0
    model = load_checkpoint(out / "best.safetensors")
    assert model.config == r.model_config()
    assert model.meta["recipe"] == fusion and model.meta["train_config"]["lr"] == r.lr
    assert model.meta["train_config"]["optimizer"] == r.optimizer
    assert model.meta["train_config"]["batch_size"] == r.batch_size and model.meta["data"]["train_size"] == 40
    assert main(["train", "--recipe", fusion, "--fusion", "mid", "--out", str(out)]) == 2



@pytest.mark.parametrize("fusion", ["early", "mid", "late", "cnn", "vit"])
def test_bundled_checkpoint_reaches_its_recorded_accuracy(fusion):
    from convformer.export.checkpoint import bundled_checkpoint
    from convformer.presets import SHAPES_PRESETS
    path = bundled_checkpoint(fusion)
    assert path is not None, f"convformer/weights/{fusion}.safetensors is missing"
    model = load_checkpoint(path)
    assert model.config.fusion == fusion and model.meta["classes"] == list(shapes.CLASSES)
    assert model.config == SHAPES_PRESETS[f"convformer_{fusion}_shapes"]
    assert path.stat().st_size < 2_000_000
    recorded = model.meta["metrics"]["test_acc"]  # on 2000 images of the test split, seed 1000
    # the pure ViT learns these cluttered scenes far more slowly; its model card records how far it got
    assert recorded >= 0.95
    # 200 images of a test split no checkpoint has seen (training used seeds 0-4, their test split seed 1000)
    fresh = make_datasets("shapes", model.config.img_size, train_size=1, val_size=1, test_size=200,
                          seed=7, test_seed=4242).test
    tolerance = max(0.03, 3 * (recorded * (1 - recorded) / 200) ** 0.5)  # three standard errors
    assert evaluate(model, fresh)["acc"] >= recorded - tolerance
    timm_model = timm.create_model(f"convformer_{fusion}_shapes", pretrained=True)
    assert all(torch.equal(a, b) for a, b in zip(timm_model.state_dict().values(), model.state_dict().values()))


@pytest.mark.app
def test_the_train_tab_defaults_are_the_recipes(monkeypatch):
    import inspect
    from convformer_app.train import handlers as train_tab, jobs
    from convformer.train.recipes import DEFAULT
    from convformer_app.controls import Controls
    r = RECIPES[DEFAULT]
    assert r.time_to(0.9) is not None and r.time_to(0.9) <= 60  # the default passes 90 % within its minute
    defaults = {k: p.default for k, p in inspect.signature(train_tab.train).parameters.items()}
    assert (defaults["epochs"], defaults["lr"], defaults["batch_size"], defaults["train_images"],
            defaults["train_img"]) == (r.epochs, r.lr, r.batch_size, r.train_size, r.img_size)
    for fusion, rec in RECIPES.items():
        assert train_tab.on_model(fusion) == (rec.epochs, rec.lr, rec.batch_size, rec.train_size, rec.img_size)
        assert train_tab._model_config(fusion, Controls(), rec.img_size) == rec.model_config()
    assert jobs.val_size(r.train_size) == r.val_size
    warmed = []
    monkeypatch.setattr(train_tab, "warm", lambda cfg, images: warmed.append((cfg.img_size, images)))
    cold = SHAPES_CACHE.cached("train", 0, (r.img_size, r.img_size)) < r.train_size
    text = train_tab.describe("mid", weights="random", model=DEFAULT)
    assert f"{DEFAULT} fusion with its one-minute recipe" in text and "Estimate" in text
    if cold:  # rendering starts when the page describes the run, before Train is pressed
        assert warmed == [((r.img_size, r.img_size), r.train_size)] and "rendering" in text
    vit = train_tab.describe("mid", weights="random", model="vit")  # how the pure ViT's recipe trains, said
    assert "Muon" in vit and "sin-cos" in vit and "Muon" not in text  # late keeps AdamW
