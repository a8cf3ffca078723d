"""The Train tab: through the running app (gradio_client) and its handlers directly.

Tiny runs (32 px, a few hundred images, 1-2 epochs) keep this to seconds on a CPU: progress and curves
stream back, the final message reports accuracy, the checkpoint downloads and loads, /predict in the same
session uses it, Cancel and a closed page keep a loadable checkpoint, bad zips and runs over the limits get
clear messages, and two sessions training at once get different files.
"""
from __future__ import annotations

import io
import threading
import zipfile
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import pytest

import convformer as cf
from convformer.data.shapes import CLASSES, render
from convformer_app.train import curves as train_curves, handlers as train_tab, jobs

import gradio_client  # noqa: E402
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

pytestmark = pytest.mark.app

# the bundled mid checkpoint's architecture, small enough to train in seconds
ARCH = dict(fusion="mid", preset="convformer_mid_tiny", embed_dim=32, depth=1, num_heads=2, mlp_ratio=2.0,
            patch_size=16, conv_widths="16, 32", conv_depths="1, 1", merge="concat")
TINY = dict(dataset="shapes", upload=None, epochs=1, lr=3e-3, batch_size=32, train_images=200, train_img=32)


def _train(client: Client, **changes):
    args = {**TINY, **ARCH, **changes}
    if args["upload"]:
        args["upload"] = handle_file(str(args["upload"]))
    return client.submit(**args, api_name="/train")


def _request(name: str) -> SimpleNamespace:
    return SimpleNamespace(session_hash=name)


def _run(gen, until=None) -> list[tuple]:
    """Drive the handler's generator (as Gradio does); stop early when `until(outputs)` says so."""
    seen = []
    for out in gen:
        seen.append(out)
        if until is not None and until(out):
            break
    return seen


def test_train_from_the_page_then_predict_with_it(server, tmp_path: Path) -> None:
    client = Client(server.url, verbose=False)
    job = _train(client)
    updates = list(job)
    status, loss, acc, file = job.result()
    assert any("**Training**" in u[0] for u in updates), [u[0] for u in updates]
    assert "✓ **Done.**" in status and "validation accuracy" in status and "test images" in status, status
    loss = loss.get("value", loss)  # an update (its axis title changes per epoch) around the DataFrame
    assert loss["columns"] == ["epoch", "loss", "series"] and len(loss["data"]) >= 2
    assert {row[2] for row in loss["data"]} == set(train_curves.COLOURS)
    acc = acc.get("value", acc)  # accuracy against seconds, with every stage's typical curve
    assert acc["columns"] == ["seconds", "accuracy", "series"]
    ours = [row for row in acc["data"] if row[2] == "validation"]
    assert len(ours) == 1 and 0 <= ours[-1][1] <= 100  # one epoch
    assert {row[2] for row in acc["data"]} == {"validation", *(f"typical: {f}" for f in train_curves.TYPICAL)}
    model = cf.load_checkpoint(file)
    assert Path(file).suffix == ".safetensors" and model.config.img_size == (32, 32)
    assert model.meta["classes"] == list(CLASSES) and "val_acc" in model.meta["metrics"]

    image = tmp_path / "star.png"
    render(3, "test", 64)[0].save(image)
    out = client.predict(handle_file(str(image)), "mid", weights="trained", api_name="/predict")
    assert "trained in this session" in out[1] and out[0]["label"] in CLASSES
    other = Client(server.url, verbose=False)  # another browser session has trained nothing
    with pytest.raises(AppError, match="Nothing has been trained in this browser session"):
        other.predict(handle_file(str(image)), "mid", weights="trained", api_name="/predict")


def test_two_sessions_training_at_once_get_their_own_files(server) -> None:
    a, b = Client(server.url, verbose=False), Client(server.url, verbose=False)
    jobs = [_train(a, lr=3e-3), _train(b, lr=1e-3)]
    files = [job.result()[3] for job in jobs]
    assert files[0] != files[1]
    assert Path(files[0]).read_bytes() != Path(files[1]).read_bytes()
    lrs = [cf.load_checkpoint(f).meta["train_config"]["lr"] for f in files]
    assert lrs == [3e-3, 1e-3]


def test_bad_zip_gives_a_clear_error(server, tmp_path: Path) -> None:
    client = Client(server.url, verbose=False)
    junk = tmp_path / "photos.zip"
    junk.write_bytes(b"this is not a zip file at all")
    with pytest.raises(AppError) as info:
        _train(client, dataset="zip", upload=junk).result()
    assert "not a zip file" in str(info.value) and "/tmp" not in str(info.value)

    one_class = tmp_path / "one_class.zip"
    buf = io.BytesIO()
    render(0, "train", 32)[0].save(buf, "PNG")
    with zipfile.ZipFile(one_class, "w") as zf:
        for i in range(3):
            zf.writestr(f"data/circle/{i}.png", buf.getvalue())
    with pytest.raises(AppError) as info:
        _train(client, dataset="zip", upload=one_class).result()
    assert "at least 2 class sub-folders" in str(info.value) and "/tmp" not in str(info.value)


def test_zip_of_an_image_folder_trains(server, tmp_path: Path) -> None:
    archive = tmp_path / "two.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for label, name in enumerate(["circle", "square"]):
            for i in range(8):
                buf = io.BytesIO()
                render(i * 10 + label, "train", 32)[0].save(buf, "PNG")
                zf.writestr(f"{name}/{i}.png", buf.getvalue())
    status, *_, file = _train(Client(server.url, verbose=False), dataset="zip", upload=archive).result()
    assert "two.zip" in status and cf.load_checkpoint(file).meta["classes"] == ["circle", "square"]


def test_runs_over_the_limits_are_refused(server, monkeypatch) -> None:
    with pytest.raises(AppError, match="500 is greater than maximum value 10"):  # the slider refuses it
        _train(Client(server.url, verbose=False), epochs=500).result()
    monkeypatch.setenv("CONVFORMER_MAX_TRAIN_IMAGES", "100")
    with pytest.raises(gr.Error, match="training images=200 is not allowed"):
        next(train_tab.train(**TINY, **ARCH, request=_request("limits"), progress=lambda *a, **k: None))
    monkeypatch.setenv("CONVFORMER_MAX_TRAIN_JOBS", "0")
    with pytest.raises(gr.Error, match="the limit is 0"):
        next(train_tab.train(**{**TINY, "train_images": 100}, **ARCH, request=_request("jobs"),
                            progress=lambda *a, **k: None))


def _training(out: tuple) -> bool:
    return "**Training**" in str(out[0])


def test_cancel_keeps_a_loadable_checkpoint() -> None:
    request = _request("cancel-test")
    gen = train_tab.train(**{**TINY, "epochs": 2, "train_images": 400, "batch_size": 16}, **ARCH, request=request,
                         progress=lambda *a, **k: None)
    _run(gen, until=_training)
    assert "Stopping" in train_tab.cancel(request)
    final = _run(gen)[-1]
    assert "Cancelled" in final[0] and final[3] == final[4]
    model = cf.load_checkpoint(final[3])
    job = train_tab.JOBS["cancel-test"]
    assert job.result.cancelled and job.result.history[-1]["epoch"] < 2
    assert model.meta["classes"] == list(CLASSES)
    assert train_tab.after_cancel(request)[3] == final[3]  # what the page shows after Cancel


def test_closing_the_page_stops_the_run() -> None:
    """Gradio closes the generator when the event is cancelled or the page goes: the thread stops too."""
    request = _request("close-test")
    gen = train_tab.train(**{**TINY, "epochs": 2, "train_images": 400, "batch_size": 16}, **ARCH, request=request,
                         progress=lambda *a, **k: None)
    _run(gen, until=_training)
    gen.close()
    job = train_tab.JOBS["close-test"]
    job.thread.join(60)
    assert not job.thread.is_alive() and job.result.cancelled
    cf.load_checkpoint(job.checkpoint)  # the best model so far, its one copy on disk
    assert job.result.model is None  # released when the run ended
    train_tab.leave(request)
    assert "close-test" not in train_tab.JOBS
    jobs.forget(str(job.checkpoint))
    assert not job.out_dir.exists()


def test_every_run_has_its_own_folder() -> None:
    requests = [_request(f"own-{i}") for i in range(2)]
    gens = [train_tab.train(**TINY, **ARCH, request=r, progress=lambda *a, **k: None) for r in requests]
    threads = [threading.Thread(target=_run, args=(g,)) for g in gens]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    dirs = [train_tab.JOBS[r.session_hash].out_dir for r in requests]
    assert dirs[0] != dirs[1] and all(d.parent == jobs.run_root() for d in dirs)


def test_the_worker_process_speaks_json_lines_and_says_its_errors(tmp_path: Path, capsys) -> None:
    """The child's protocol (convformer_app/train/worker.py), run in this process: the splits and settings in
    the run folder, one JSON line per progress report, a last line with the result, the checkpoint written;
    a run folder it cannot use is one error line and exit code 1, not a traceback."""
    import json

    from convformer.data.datasets import make_datasets
    from convformer.train import TrainConfig
    from convformer_app.train import worker as train_worker
    data = make_datasets("shapes", 32, train_size=64, val_size=32, test_size=16, seed=0)
    cfg = cf.ConvFormerConfig(fusion="vit", img_size=32, patch_size=8, embed_dim=16, depth=1, num_heads=2,
                              pos_embed="sincos", num_classes=10)
    train_worker.write_run(tmp_path, {"train": data.train, "val": data.val, "test": data.test}, cfg,
                           TrainConfig(epochs=2, batch_size=32, optimizer="muon", progress_bar=False, device="cpu"),
                           {"dataset": "shapes"})
    assert train_worker.main(tmp_path, nice=0) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    phases = [e["name"] for e in lines if e["event"] == "phase"]
    assert phases == ["started", "read", "built", "saved", "tested", "trained"]  # the last three from fit's clock
    lines = [e for e in lines if e["event"] != "phase"]
    assert [e["event"] for e in lines] == ["step"] * 2 + ["epoch"] + ["step"] * 2 + ["epoch", "done", "result"]
    result = lines[-1]
    assert result["stop"] == "completed"
    assert [h["epoch"] for h in result["history"]] == [1, 2] and len(result["step_losses"]) == 4
    assert result["test"]["n"] == 16 and not result["cancelled"]
    assert not (tmp_path / "data.safetensors").exists()  # read once, then removed
    model = cf.load_checkpoint(tmp_path / "best.safetensors")
    assert model.config.pos_embed == "sincos" and model.meta["train_config"]["optimizer"] == "muon"
    (tmp_path / "run.json").write_text("{not json")
    assert train_worker.main(tmp_path, nice=0) == 1
    (error,) = [e for line in capsys.readouterr().out.splitlines() if (e := json.loads(line))["event"] != "phase"]
    assert error["event"] == "error" and error["kind"] == "JSONDecodeError" and error["refused"]
