"""The documentation holds together: relative links resolve, the README stays a newcomer's page.

Checked pages: README.md, docs/*.md, reports/README.md and reports/notes/*.md. A link is a Markdown
``[text](target)`` (or ``![alt](target)``) outside code; its ``#anchor`` is ignored, and
URLs (``https:``, ``mailto:``, ...) and in-page anchors are not checked. A target is
relative to the page and must exist in the checkout (a file, or a folder).
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
PAGES = sorted([README, REPO / "reports" / "README.md", *(REPO / "docs").glob("*.md"),
                *(REPO / "reports" / "notes").glob("*.md")])

README_MAX_LINES = 250
FIRST_SCREEN = 40

FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.M | re.S)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
URL_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def relative_links(text: str) -> list[str]:
    """The relative link targets of a Markdown text, without their #anchor."""
    text = INLINE_CODE.sub("", FENCE.sub("", text))
    targets = []
    for target in LINK.findall(text):
        if URL_SCHEME.match(target) or target.startswith("#"):
            continue
        targets.append(target.split("#", 1)[0])
    return targets


def broken_links(page: Path) -> list[str]:
    return [t for t in relative_links(page.read_text(encoding="utf-8"))
            if not (page.parent / t).exists()]


def test_the_pages_are_there():
    names = {p.relative_to(REPO).as_posix() for p in PAGES}
    assert {"README.md", "docs/data-model.md", "docs/configuration.md"} <= names
    assert any(n.startswith("reports/notes/") for n in names)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_every_relative_link_resolves(page):
    assert broken_links(page) == []


def test_the_link_check_sees_links_and_catches_a_broken_one(tmp_path):
    assert "docs/data-model.md" in relative_links(README.read_text(encoding="utf-8"))
    page = tmp_path / "page.md"
    (tmp_path / "there.md").write_text("x")
    page.write_text("[ok](there.md#part) [web](https://example.org/x) [top](#a)\n"
                    "`[code](missing-in-code.md)`\n```\n[fenced](missing-in-fence.md)\n```\n"
                    "![img](missing.png) [gone](nowhere/else.md#anchor)\n")
    assert broken_links(page) == ["missing.png", "nowhere/else.md"]


def test_readme_is_a_short_first_page():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move reference to docs/"
    first = "\n".join(lines[:FIRST_SCREEN])
    assert "make setup" in first or "make demo" in first, "the first screen must say how to install/run"
    assert "make test" in first, "the first screen must say how to run the tests"
    assert "pytest" in first, "the first screen must say how to run one test file"
