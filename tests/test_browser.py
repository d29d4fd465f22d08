"""A built page as headless chromium renders it: table, figure, working controls, no network;
and the page report that the full-book check reads every page with, on a page made to fail it.

Tests that start chromium are marked `browser` one by one: the expectations (what a notebook's
outputs promise the page shows) are plain file reading and run everywhere.
"""

from __future__ import annotations

import base64
import json
import re
import struct
import zlib

import nbformat
import pytest
from loopback import LoopbackServer
from page_expectations import expected_counts, markdown_counts

from semantic_bottleneck.book import runner
from semantic_bottleneck.book.browser import VIEWPORT, external_requests, page_report


@pytest.fixture(scope="module")
def demo_html(tmp_path_factory):
    """The demo book (glued table and figure, threshold explorer, MathJax) run and built once."""
    from conftest import build_demo_project

    root = build_demo_project(tmp_path_factory.mktemp("browser") / "project", widget=True)
    runner.run_notebook("demo", root=root)
    return runner.build_html(root) / "book" / "generated" / "demo.html"


def elements_with_class(dom: str, name: str) -> list[str]:
    """Opening tags whose class attribute holds `name` as a whole word."""
    return re.findall(rf'<\w+[^>]*class="(?:[^"]*\s)?{re.escape(name)}(?:\s[^"]*)?"[^>]*>', dom)


@pytest.mark.browser
@pytest.mark.book
def test_page_renders_table_figure_math_and_one_slider(demo_html):
    dom = runner.dump_dom(demo_html)
    assert len(re.findall(r"<table\b", dom)) == 1  # the glued DataFrame
    assert len(elements_with_class(dom, "widget-hslider")) == 1  # rendered once, not twice
    assert elements_with_class(dom, "widget-slider")
    assert len(re.findall(r"<img\b", dom)) >= 2  # the glued figure and the widget's panel
    assert "<mjx-container" in dom  # MathJax ran from the vendored copy
    # The stack shows one panel: that of the saved slider index (2), which only the
    # browser-side link can carry to it (the saved stack index is still 0).
    shown = re.findall(r'class="widget-html-content"><code>(s_tail\(tau = [^)]*\))', dom)
    assert shown == ["s_tail(tau = 0.1585)"]


@pytest.mark.browser
@pytest.mark.book
def test_page_makes_no_external_requests(demo_html):
    assert external_requests(demo_html) == []


@pytest.mark.browser
@pytest.mark.book
def test_screenshot_writes_a_png_of_the_window_size(demo_html, tmp_path):
    png = runner.screenshot(demo_html, tmp_path / "shots" / "demo.png", size=(1200, 900))
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", data[16:24]) == (1200, 900)
    assert len(data) > 20_000  # a rendered page, not a blank one


@pytest.mark.browser
@pytest.mark.book
def test_browser_helpers_reject_a_missing_page(tmp_path):
    with pytest.raises(ValueError, match="html_path: expected an existing HTML file"):
        runner.dump_dom(tmp_path / "missing.html")
    with pytest.raises(ValueError, match="html_path: expected an existing HTML file"):
        page_report(tmp_path / "missing.html")


# ----------------------------------------------------------------------------- page report


def tiny_png() -> str:
    """A 1x1 PNG, base64-encoded."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
    png += chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00")) + chunk(b"IEND", b"")
    return base64.b64encode(png).decode()


PNG_1PX = tiny_png()

# The theme's layout in miniature: a 600 px article column holding what a broken page shows.
BAD_PAGE = f"""<!DOCTYPE html>
<html><head><title>Bad page</title>
<style>body {{ margin: 0; }} article {{ width: 600px; padding: 0 20px; }}</style></head>
<body><main><article class="bd-article">
<p>The mean is <span class="pasted-text">n/a</span> and d is <span class="pasted-text">128</span>.</p>
<div class="cell_output"><div class="output traceback"><pre>ValueError   Traceback (most recent call last)
Cell In[3], line 1
ValueError: no such model</pre></div></div>
<div class="cell_output"><img src="data:image/png;base64,{PNG_1PX}" width="40"></div>
<div class="cell_output"><img src="missing.png"></div>
<div class="cell_output"><table style="width: 300px"><tr><th>fits</th></tr></table></div>
<div class="cell_output" style="overflow-x: auto">
  <table style="width: 900px"><tr><th>scrolls sideways</th></tr></table></div>
<div class="cell_output"><table style="width: 750px"><tr><th>spills out</th></tr></table></div>
</article></main></body></html>
"""


@pytest.fixture(scope="module")
def bad_page_report(tmp_path_factory):
    page = tmp_path_factory.mktemp("badpage") / "bad.html"
    page.write_text(BAD_PAGE)
    return page_report(page, page.with_suffix(".png"), size=(1300, 700))


@pytest.mark.browser
@pytest.mark.book
def test_page_report_finds_the_traceback_and_the_na_glue(bad_page_report):
    assert bad_page_report["tracebacks"]
    assert any("Traceback (most recent call last)" in t for t in bad_page_report["tracebacks"])
    assert [g["text"] for g in bad_page_report["glued"]] == ["n/a", "128"]
    assert "The mean is n/a" in bad_page_report["glued"][0]["context"]


@pytest.mark.browser
@pytest.mark.book
def test_page_report_counts_figures_and_the_image_that_did_not_load(bad_page_report):
    assert bad_page_report["figures"] == 2
    assert bad_page_report["broken_images"] == ["missing.png"]
    assert len(bad_page_report["tables"]) == 3


@pytest.mark.browser
@pytest.mark.book
def test_page_report_measures_each_table_against_its_column(bad_page_report):
    wide = {t["index"]: t for t in bad_page_report["wide_tables"]}
    assert sorted(wide) == [1, 2]  # the 300 px table fits
    assert wide[1]["width"] == 900 and wide[1]["container"] == 600  # inside a scroll box
    assert wide[2]["width"] == 750 and wide[2]["overflow_right"] == 150  # past the column
    assert all(t["column"] == 600 for t in bad_page_report["tables"])


@pytest.mark.browser
@pytest.mark.book
def test_page_report_takes_the_screenshot_at_the_window_size(bad_page_report):
    data = open(bad_page_report["screenshot"], "rb").read()
    assert struct.unpack(">II", data[16:24]) == (1300, 700)
    assert bad_page_report["viewport"][0] == 1300
    assert bad_page_report["requests"] == []


@pytest.mark.browser
@pytest.mark.book
def test_page_report_of_a_good_page_moves_its_slider(demo_html):
    report = page_report(demo_html)
    assert report["tracebacks"] == [] and report["wide_tables"] == []
    assert report["broken_images"] == [] and report["requests"] == []
    assert "n/a" not in [g["text"] for g in report["glued"]]
    assert len(report["glued"]) == 2  # n and mean
    expected = expected_counts(demo_html.parents[4] / "book" / "generated" / "demo.ipynb")
    assert expected == {"figures": 1, "tables": 1}  # the glued figure and the glued table
    assert report["figures"] >= expected["figures"]
    assert len(report["tables"]) >= expected["tables"]
    assert report["math"] >= 1
    (slider,) = [c for c in report["controls"] if c["kind"] == "slider"]
    assert (slider["value_before"], slider["value_after"]) == ("0.1585", "0.631")
    assert slider["panel_before"][0].startswith("s_tail(tau = 0.1585)")
    assert slider["panel_after"][0].startswith("s_tail(tau = 0.631)")
    assert slider["panel_before"][1] != slider["panel_after"][1]  # the panel's image changed
    assert slider["changed"] and slider["restored"]


class Pixel(LoopbackServer):
    """Answers every GET with the 1x1 PNG, and counts them."""

    def __init__(self):
        super().__init__()
        self.paths: list[str] = []

    def handle(self, h) -> None:
        self.paths.append(h.path)
        data = base64.b64decode(PNG_1PX)
        h.send_response(200)
        h.send_header("Content-Type", "image/png")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)


@pytest.mark.browser
@pytest.mark.book
def test_page_reports_name_what_each_page_fetched_from_outside(tmp_path):
    server = Pixel()
    try:
        pages = {"quiet": tmp_path / "quiet.html", "fetches": tmp_path / "fetches.html"}
        pages["quiet"].write_text(BAD_PAGE)
        pages["fetches"].write_text(
            BAD_PAGE.replace('src="missing.png"', f'src="{server.url}/a.png"')
        )
        worker = (
            "new Worker(URL.createObjectURL(new Blob([" + repr(f"fetch('{server.url}/w')") + "])))"
        )
        pages["worker"] = tmp_path / "worker.html"
        pages["worker"].write_text(BAD_PAGE.replace("</main>", f"</main><script>{worker}</script>"))
        reports = runner.page_reports(pages, tmp_path / "shots", workers=1)
    finally:
        server.stop()
    assert reports["quiet"]["requests"] == []
    assert reports["fetches"]["requests"] == [f"{server.url}/a.png"]
    assert reports["fetches"]["broken_images"] == []  # the image came from the server
    assert reports["worker"]["requests"] == [f"{server.url}/w"]  # a worker's fetch is seen too
    assert sorted(server.paths) == ["/a.png", "/w"]
    for name in pages:  # one browser read the three pages in turn, each shot at the window size
        data = (tmp_path / "shots" / f"{name}.png").read_bytes()
        assert struct.unpack(">II", data[16:24]) == VIEWPORT


# ----------------------------------------------------------------------------- expectations


def output(data: dict, kind: str = "display_data", **metadata) -> dict:
    out = {"output_type": kind, "data": data, "metadata": metadata}
    if kind == "execute_result":
        out["execution_count"] = 1
    return nbformat.from_dict(out)


def test_expected_counts_follow_what_myst_nb_renders(tmp_path):
    png = {"image/png": PNG_1PX, "text/plain": "<Figure>"}
    html_table = {"text/html": "<div><table><tr><td>1</td></tr></table></div>", "text/plain": "df"}
    prefix = "application/papermill.record/"
    nb = nbformat.v4.new_notebook()
    cells = [
        nbformat.v4.new_markdown_cell(
            "| a | b |\n|---|---|\n| 1 | 2 |\n\n```python\n|---|---|\n```\n\n"
            "```{glue:figure} glued_fig\n:name: f\n\nCaption.\n```\n{glue:text}`glued_text`"
        ),
        nbformat.v4.new_code_cell("plot"),
        nbformat.v4.new_code_cell("removed"),
        nbformat.v4.new_code_cell("glue"),
    ]
    cells[1].outputs = [
        output(png),
        output(html_table, "execute_result"),
        output({"text/markdown": "| x |\n|:---|\n| 1 |", "text/plain": "md"}),
        output({"application/vnd.jupyter.widget-view+json": {}, "text/plain": "w", **png}),
        output({"text/html": "<p>no table</p>", **png}),  # HTML wins over the image
        nbformat.from_dict({"output_type": "stream", "name": "stdout", "text": "| a |\n|---|"}),
    ]
    cells[2].metadata["tags"] = ["remove-output"]
    cells[2].outputs = [output(png), output(html_table)]
    scrap = lambda name, prefix: {"scrapbook": {"name": name, "mime_prefix": prefix}}  # noqa: E731
    cells[3].outputs = [
        output({prefix + k: v for k, v in png.items()}, **scrap("glued_fig", prefix)),
        output({prefix + k: v for k, v in html_table.items()}, **scrap("unused", prefix)),
        output({prefix + "text/plain": "'0.5'"}, **scrap("glued_text", prefix)),
        output(html_table, **scrap("shown_table", "")),  # glued with display=True
    ]
    nb.cells = cells
    path = tmp_path / "page.ipynb"
    path.write_text(json.dumps(nb))
    # figures: the png output, the pasted glued figure; tables: the markdown cell's, the html
    # result, the markdown output's and the glued table shown in place
    assert expected_counts(path) == {"figures": 2, "tables": 4}


def test_markdown_counts_skip_code_blocks(tmp_path):
    text = (
        "# Page\n\n| a |\n|---|\n| 1 |\n\n![logo](logo.png)\n\n"
        "```{list-table}\n* - a\n```\n\n~~~\n| not | a table |\n|---|---|\n~~~\n"
    )
    assert markdown_counts(text) == {"figures": 1, "tables": 2}
    page = tmp_path / "page.md"
    page.write_text(text)
    assert expected_counts(page) == {"figures": 1, "tables": 2}
