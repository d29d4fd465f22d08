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


@pytest.fixture(scope="module")
def tiny_book(tmp_path_factory):
    """A copy of the book sources, every notebook run with tests/tiny.yaml, built with -W."""
    root = tmp_path_factory.mktemp("fullbook")
    for name in SOURCES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(
                src, root / name, ignore=shutil.ignore_patterns("generated", "*.failed.*")
            )
        else:
            shutil.copy(src, root / name)
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
