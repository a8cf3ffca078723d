"""The house's structure (issue 22): the layout in docs/library.md names every module, the library keeps its
functions' positional parameters few, and no module calls another module's private function."""
from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("convformer", "convformer_app")


def _metrics():
    spec = importlib.util.spec_from_file_location("house_metrics", ROOT / "scripts" / "house_metrics.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_layout_names_every_module() -> None:
    text = (ROOT / "docs" / "library.md").read_text(encoding="utf-8")
    sections = {"convformer": text.split("### `convformer/`")[1].split("### `convformer_app/`")[0],
                "convformer_app": text.split("### `convformer_app/`")[1].split("\n## ")[0]}
    for pkg in PACKAGES:
        missing = [p.relative_to(ROOT / pkg).as_posix() for p in sorted((ROOT / pkg).rglob("*.py"))
                   if f"`{p.relative_to(ROOT / pkg).as_posix()}`" not in sections[pkg]]
        assert not missing, f"docs/library.md's {pkg}/ table does not name {missing}"


def test_library_functions_take_at_most_six_positional_parameters() -> None:
    found = [f for f in _metrics().many_positional(ROOT) if f[0].startswith("convformer/")]
    assert found == [], found


def test_no_module_calls_another_modules_private_function() -> None:
    """`other._name(...)` or `from .other import _name` where `other` is one of our modules."""
    ours = {p.stem for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")} | {"train_tab", "session"}
    found = []
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith(PACKAGES)):
                    found += [f"{path.name}: from {node.module} import {a.name}" for a in node.names
                              if a.name.startswith("_") and not a.name.startswith("__")]
                elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and \
                        node.value.id in ours and node.attr.startswith("_") and not node.attr.startswith("__"):
                    found.append(f"{path.name}: {node.value.id}.{node.attr}")
    assert found == [], found
