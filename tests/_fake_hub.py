"""An offline stand-in for the Hugging Face Hub: a cache, laid out as huggingface_hub lays it out, holding every
ImageNet reference's architecture with random weights, where `timm.create_model(name, pretrained=True)` reads.

    HUB/models--timm--NAME/refs/main                       -> REV
    HUB/models--timm--NAME/snapshots/REV/model.safetensors

Built once per test run (`cache()`), shared by the library and the app tests; `offline(monkeypatch, hub)`
points huggingface_hub at it with HF_HUB_OFFLINE on, in this process (the app server runs in it too) and for
subprocesses (HF_HUB_CACHE, HF_HUB_OFFLINE in the environment).
"""
from __future__ import annotations

import atexit
import functools
import hashlib
import shutil
import tempfile
from pathlib import Path

import timm
import torch
from huggingface_hub import constants
from safetensors.torch import save_file

from convformer.references import REFERENCES, WEIGHTS_FILE, hub_repo


def names() -> list[str]:
    """Every timm model the references use, once (late fusion shares the cnn and vit members)."""
    return sorted({name for ref in REFERENCES.values() for name in ref.names})


def write(hub: Path, name: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """Write `name`'s architecture with seeded random weights into the cache at `hub`; returns the weights."""
    torch.manual_seed(seed)
    state = {k: v.contiguous() for k, v in timm.create_model(name).state_dict().items()}
    repo = hub / f"models--{hub_repo(name).replace('/', '--')}"
    rev = hashlib.sha1(name.encode()).hexdigest()
    (repo / "snapshots" / rev).mkdir(parents=True, exist_ok=True)
    save_file(state, str(repo / "snapshots" / rev / WEIGHTS_FILE))
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(rev)
    return state


@functools.cache
def cache() -> Path:
    """The fake Hub cache of this test run (HF_HOME/hub layout), built on first use, removed at exit."""
    home = Path(tempfile.mkdtemp(prefix="convformer-tests-hf-"))
    atexit.register(shutil.rmtree, home, ignore_errors=True)
    for name in names():
        write(home / "hub", name)
    return home / "hub"


def offline(monkeypatch, hub: Path) -> None:
    """Use `hub` as the Hugging Face cache, offline, here and in subprocesses."""
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
