"""The README is one screen and the docs/ pages hold the rest: every relative link and anchor in README*.md and
docs/*.md points at a file that exists and, for `#anchor`, at a heading GitHub renders with that id (`#L12` at
a line the file has)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted([*ROOT.glob("README*.md"), *(ROOT / "docs").glob("*.md")])
LINK = re.compile(r"\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """GitHub's heading id: lower case, punctuation dropped (letters of any script kept), spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    found, seen = set(), {}
    for heading in re.findall(r"^#{1,6} (.+)$", prose(page.read_text(encoding="utf-8")), re.M):
        base = slug(heading)
        n = seen.get(base, 0)
        found.add(base if n == 0 else f"{base}-{n}")
        seen[base] = n + 1
    return found


def prose(text: str) -> str:
    """The page without its fenced code blocks (a `](x)` inside code is not a link)."""
    return re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)


def links(page: Path) -> list[str]:
    return [t for t in LINK.findall(prose(page.read_text(encoding="utf-8")))
            if not re.match(r"[a-z]+:", t)]  # http:, https:, mailto: are not relative


def broken(page: Path, target: str) -> str | None:
    path, _, anchor = target.partition("#")
    dest = (page.parent / path).resolve() if path else page
    if not dest.exists():
        return f"{target}: no such file"
    if anchor and dest.suffix == ".md":
        return None if anchor in anchors(dest) else f"{target}: no heading with that id"
    if anchor and re.fullmatch(r"L\d+", anchor):
        lines = dest.read_text(encoding="utf-8").count("\n") + 1
        return None if int(anchor[1:]) <= lines else f"{target}: the file has {lines} lines"
    return None


def test_there_are_pages_to_check():
    names = {p.relative_to(ROOT).as_posix() for p in PAGES}
    assert {"README.md", "README.zh-CN.md", "docs/app.md", "docs/library.md", "docs/training.md",
            "docs/photos.md", "docs/performance.md", "docs/safety.md"} <= names


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_and_anchor_resolves(page):
    bad = [msg for t in links(page) if (msg := broken(page, t))]
    assert not bad, "\n".join(bad)


def test_the_checker_catches_a_broken_link_and_anchor(tmp_path):
    (tmp_path / "a.md").write_text("# Title: one `x`\n\n## Languages and glossary / 语言\n")
    page = tmp_path / "b.md"
    page.write_text("[ok](a.md#title-one-x) [ok](a.md#languages-and-glossary--语言) [no](a.md#nope) [no](c.md)\n"
                    "```\n[code](not-a-link.md)\n```\n")
    assert [t for t in links(page) if broken(page, t)] == ["a.md#nope", "c.md"]


@pytest.mark.parametrize("name", ["README.md", "README.zh-CN.md"])
def test_the_readme_is_one_screen_that_links_every_docs_page(name):
    text = (ROOT / name).read_text(encoding="utf-8")
    body = text.split("\n---\n", 1)[1] if text.startswith("---\n") else text  # Spaces front matter aside
    assert len(body.strip().splitlines()) <= 55, f"{name} is {len(body.splitlines())} lines: move detail to docs/"
    assert "bash dev.sh app" in body and "bash dev.sh test" in body and "python app.py" in body
    assert "assets/screenshot.png" in body
    linked = {t.split("#")[0] for t in links(ROOT / name)}
    english = {f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md") if not p.name.endswith(".zh-CN.md")}
    assert english <= linked, sorted(english - linked)
