"""A built page as headless chromium renders it: table, figure, one working slider, no network."""

from __future__ import annotations

import re
import struct

import pytest

from semantic_bottleneck import book
from semantic_bottleneck.book_browser import external_requests

pytestmark = [pytest.mark.browser, pytest.mark.book]


@pytest.fixture(scope="module")
def demo_html(tmp_path_factory):
    """The demo book (glued table and figure, threshold explorer, MathJax) run and built once."""
    from conftest import build_demo_project

    root = build_demo_project(tmp_path_factory.mktemp("browser") / "project", widget=True)
    book.run_notebook("demo", root=root)
    return book.build_html(root) / "book" / "generated" / "demo.html"


def elements_with_class(dom: str, name: str) -> list[str]:
    """Opening tags whose class attribute holds `name` as a whole word."""
    return re.findall(rf'<\w+[^>]*class="(?:[^"]*\s)?{re.escape(name)}(?:\s[^"]*)?"[^>]*>', dom)


def test_page_renders_table_figure_math_and_one_slider(demo_html):
    dom = book.dump_dom(demo_html)
    assert len(re.findall(r"<table\b", dom)) == 1  # the glued DataFrame
    assert len(elements_with_class(dom, "widget-hslider")) == 1  # rendered once, not twice
    assert elements_with_class(dom, "widget-slider")
    assert len(re.findall(r"<img\b", dom)) >= 2  # the glued figure and the widget's panel
    assert "<mjx-container" in dom  # MathJax ran from the vendored copy
    # The stack shows one panel: that of the saved slider index (2), which only the
    # browser-side link can carry to it (the saved stack index is still 0).
    shown = re.findall(r'class="widget-html-content"><code>(s_tail\(tau = [^)]*\))', dom)
    assert shown == ["s_tail(tau = 0.1585)"]


def test_page_makes_no_external_requests(demo_html):
    assert external_requests(demo_html) == []


def test_screenshot_writes_a_png_of_the_window_size(demo_html, tmp_path):
    png = book.screenshot(demo_html, tmp_path / "shots" / "demo.png", size=(1200, 900))
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", data[16:24]) == (1200, 900)
    assert len(data) > 20_000  # a rendered page, not a blank one


def test_browser_helpers_reject_a_missing_page(tmp_path):
    with pytest.raises(ValueError, match="html_path: expected an existing HTML file"):
        book.dump_dom(tmp_path / "missing.html")
