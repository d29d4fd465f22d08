"""The whole book: every notebook with tiny parameters, a -W build, and the browser check."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from semantic_bottleneck import book

pytestmark = [pytest.mark.book, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ["_config.yml", "_toc.yml", "book", "notebooks", "data"]


def copy_sources(root: Path) -> Path:
    """A copy of the book's sources (no generated pages) at root."""
    root.mkdir(parents=True, exist_ok=True)
    for name in SOURCES:
        src, ignore = ROOT / name, shutil.ignore_patterns("generated", "*.failed.*")
        if src.is_dir():
            shutil.copytree(src, root / name, ignore=ignore)
        else:
            shutil.copy(src, root / name)
    return root


@pytest.fixture(scope="module")
def tiny_book(tmp_path_factory):
    """A copy of the book sources, every notebook run with tests/tiny.yaml, built with -W."""
    root = copy_sources(tmp_path_factory.mktemp("fullbook"))
    cache = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SEMANTIC_BOTTLENECK_CACHE", str(cache))
        overrides = book.load_overrides(ROOT / "tests" / "tiny.yaml")
        book.run_all("testbed", root=root, overrides=overrides)
    return root, book.build_html(root)


def test_every_toc_page_is_built(tiny_book):
    root, html = tiny_book
    names = book.notebook_names(root)
    assert len(names) >= 9
    for name in names:
        page = html / "book" / "generated" / f"{name}.html"
        assert page.is_file(), f"missing page {page}"
        assert "Traceback" not in page.read_text(), f"{name} shows an exception"


def test_table1_page_shows_measured_rows_beside_the_papers(tiny_book):
    _, html = tiny_book
    text = (html / "book" / "generated" / "tab01-statistics.html").read_text()
    assert "testbed-ddpm" in text and "testbed-flow" in text
    assert "paper (official XL checkpoints)" in text and "REPA" in text


@pytest.mark.browser
def test_browser_shows_table1_with_a_table_and_a_figure(tiny_book):
    _, html = tiny_book
    page = html / "book" / "generated" / "tab01-statistics.html"
    shot = book.screenshot(page, ROOT / "_build" / "screenshots" / "table1.png")
    assert shot.stat().st_size > 20_000
    dom = book.dump_dom(page)
    assert re.search(r"<table\b", dom)
    assert re.search(r"<img\b[^>]*src=\"[^\"]+\.png\"", dom)


def covered_ids(title: str) -> set[str]:
    """Inventory ids a page title names: "Figure 9 (and 26-31)" -> fig9, fig26..fig31."""
    m = re.match(r"# (Figure|Table) (\d+)(?: \(and (\d+)-(\d+)\))?", title)
    if not m:
        return set()
    kind = "fig" if m.group(1) == "Figure" else "table"
    ids = {f"{kind}{m.group(2)}"}
    if m.group(3):
        ids |= {f"{kind}{i}" for i in range(int(m.group(3)), int(m.group(4)) + 1)}
    return ids


def test_every_inventory_entry_has_a_page(tiny_book):
    import nbformat

    from semantic_bottleneck import paper

    root, html = tiny_book
    covered = set()
    for name in book.notebook_names(root):
        title = nbformat.read(root / "notebooks" / f"{name}.ipynb", 4).cells[0].source
        covered |= covered_ids(title.splitlines()[0])
    not_reproduced = (html / "book" / "generated" / "not-reproduced.html").read_text()
    for entry in paper.inventory():
        ids = {entry["id"], *(entry.get("also") or [])}
        if entry["reproducible_here"]:
            assert ids <= covered, f"no page for {sorted(ids - covered)}"
        else:
            number = re.sub(r"\D", "", entry["id"])
            assert re.search(rf"(Fig|Table)[^<]{{0,20}}\b{number}\b", not_reproduced), entry["id"]


@pytest.mark.browser
def test_browser_screenshots_three_representative_pages(tiny_book):
    _, html = tiny_book
    pages = {
        "fig03-cosine-matrix": r"<img\b",
        "interactive-pruning": "widget-",
        "claims-ledger": "<table",
    }
    for name, marker in pages.items():
        page = html / "book" / "generated" / f"{name}.html"
        shot = book.screenshot(page, ROOT / "_build" / "screenshots" / f"{name}.png")
        assert shot.stat().st_size > 20_000
        assert re.search(marker, book.dump_dom(page)), name


def test_paper_profile_without_weights_builds_with_a_notice_on_every_model_page(tmp_path):
    root = copy_sources(tmp_path / "paperbook")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SEMANTIC_BOTTLENECK_WEIGHTS", str(tmp_path / "no-weights"))
        mp.setenv("SEMANTIC_BOTTLENECK_CACHE", str(tmp_path / "cache"))
        book.run_all(
            "paper", root=root, overrides=book.load_overrides(ROOT / "tests" / "tiny.yaml")
        )
    html = book.build_html(root)
    for name in ["tab01-statistics", "fig03-cosine-matrix", "tab02-pruning-repa"]:
        text = (html / "book" / "generated" / f"{name}.html").read_text()
        words = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", text))
        assert "semantic-bottleneck fetch" in words and 'class="admonition note"' in text, name
