"""The package as a user gets it: the wheel built from this tree, installed into a fresh virtual environment
and used from another directory, carries the bundled checkpoints (package data) and everything it imports.

The fresh environment reuses the shared environment's dependencies (torch, timm, ... are not downloaded
again) through one .pth line; the repository is not on its path, so `convformer` can only come from the wheel.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FUSIONS = ("cnn", "early", "mid", "late", "vit")


def _run(args: list[str], cwd: Path, timeout: int = 600) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    assert done.returncode == 0, f"{' '.join(map(str, args))}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built from a copy of the tree (the build writes build/ and *.egg-info beside its sources)."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for pkg in ("convformer", "convformer_app"):
        shutil.copytree(ROOT / pkg, src / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(src)],
         cwd=src)
    (whl,) = out.glob("convformer-*.whl")
    return whl


def test_the_wheel_carries_the_bundled_checkpoints_and_every_subpackage(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for fusion in FUSIONS:
        assert f"convformer/weights/{fusion}.safetensors" in names and f"convformer/weights/{fusion}.json" in names
    for pkg in ("data", "inspection", "train", "export"):
        assert f"convformer/{pkg}/__init__.py" in names
    assert "convformer_app/explore/page.py" in names and "convformer_app/page.css" in names
    meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
    requires = [line for line in zipfile.ZipFile(wheel).read(meta).decode().splitlines()
                if line.startswith("Requires-Dist:") and "extra ==" not in line]
    assert any("huggingface" in r.replace("-", "_").lower() for r in requires), requires  # references.py imports it


def test_a_fresh_environment_loads_the_bundled_weights_from_any_directory(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp_path)
    python = venv / "bin" / "python"
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path).strip())
    (site / "shared_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # torch, timm, ...
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel)], cwd=tmp_path)
    away = tmp_path / "elsewhere"
    away.mkdir()
    shutil.copy(ROOT / "assets" / "examples" / "shapes_arrow.png", away / "image.png")
    out = _run([str(python), "-c",
                "import convformer, timm, torch\n"
                "from convformer.export.checkpoint import BUNDLED\n"
                "m = timm.create_model('convformer_mid_shapes', pretrained=True).eval()\n"
                "print(convformer.__file__)\n"
                "print(BUNDLED)\n"
                "print(m.pretrained_cfg['file'])\n"
                "print(m(torch.zeros(1, 3, 64, 64)).shape[-1])"], cwd=away)
    module, bundled, file, classes = out.split()
    assert Path(module).is_relative_to(site) and Path(bundled).is_relative_to(site), out  # the wheel, not the repo
    assert Path(file) == Path(bundled) / "mid.safetensors" and classes == "10"
    top = _run([str(python), "-m", "convformer", "predict", "image.png", "--fusion", "mid", "--top-k", "3"], cwd=away)
    lines = top.strip().splitlines()
    assert len(lines) == 3 and all(line.split()[0].endswith("%") for line in lines), top
