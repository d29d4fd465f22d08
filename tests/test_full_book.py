"""The whole book: every notebook executed, a -W build, a browser check of every page of the toc
and the PDF.

The book checked is the one `make book` built in this checkout when it is current (every page
executed from the present sources, `runner.built_book`), as in CI where `make test` follows
`make book`; otherwise a copy of the sources is run with tests/tiny.yaml and built here.

The browser check reads each page once in headless chromium at 1300 px (`runner.page_reports`):
tracebacks, glued "n/a", figures and tables against what the executed notebook holds, table
widths against the column, external requests, the widgets' controls moved, and a screenshot in
`_build/screenshots/<page>.png`. All reports go to `_build/screenshots/pages.json`.
"""

from __future__ import annotations

import json
import re
import shutil
import struct
import time
import unicodedata
from pathlib import Path

import pytest
from page_expectations import expected_counts, page_source

from semantic_bottleneck.book import runner

pytestmark = [pytest.mark.book, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ["_config.yml", "_toc.yml", "book", "notebooks", "data"]
SHOTS = ROOT / "_build" / "screenshots"
# Pages whose controls must change what the page shows (the rest are checked when they have any).
INTERACTIVE = ["interactive-pruning", "fig11-threshold"]


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
def full_book(tmp_path_factory):
    """(root, html) of the current `make book` build, else of a copy of the book sources with
    every notebook run with tests/tiny.yaml, built with -W."""
    built = runner.built_book(ROOT)
    if built is not None:
        return ROOT, built
    root = copy_sources(tmp_path_factory.mktemp("fullbook"))
    cache = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SEMANTIC_BOTTLENECK_CACHE", str(cache))
        overrides = runner.load_overrides(ROOT / "tests" / "tiny.yaml")
        runner.run_all("testbed", root=root, overrides=overrides)
    return root, runner.build_html(root)


@pytest.fixture(scope="module")
def page_reports(full_book):
    """Every toc page of the book read by headless chromium: name -> report, with the
    figures and tables its executed notebook (or Markdown source) promises under "expected"."""
    root, html = full_book
    pages = runner.toc_pages(root)
    names = [Path(page).name for page in pages]
    assert len(set(names)) == len(names), f"two toc pages would share a screenshot: {names}"
    start = time.perf_counter()
    reports = runner.page_reports(
        {name: html / f"{page}.html" for name, page in zip(names, pages, strict=True)}, SHOTS
    )
    seconds = time.perf_counter() - start
    for name, page in zip(names, pages, strict=True):
        reports[name]["expected"] = expected_counts(page_source(root, page))
    summary = {"seconds": round(seconds, 1), "pages": reports}
    (SHOTS / "pages.json").write_text(json.dumps(summary, indent=1))
    return reports


def offenders(reports: dict, key: str, condition=bool) -> dict:
    """name -> reports[name][key] for the pages where condition(that value) holds."""
    return {name: r[key] for name, r in reports.items() if condition(r[key])}


def test_every_toc_page_is_built(full_book):
    root, html = full_book
    names = runner.notebook_names(root)
    assert len(names) >= 9
    pages = runner.toc_pages(root)
    assert {f"book/generated/{name}" for name in names} <= set(pages)
    for page in pages:
        assert (html / f"{page}.html").is_file(), f"missing page {page}.html"


@pytest.mark.browser
def test_no_page_shows_a_traceback(page_reports):
    assert offenders(page_reports, "tracebacks") == {}


@pytest.mark.browser
def test_no_glued_value_reads_na_in_the_testbed_build(page_reports):
    glued = [g for r in page_reports.values() for g in r["glued"]]
    assert len(glued) >= 20  # the check reads the glued spans at all
    na = {
        n: [g["context"] for g in r["glued"] if g["text"] == "n/a"] for n, r in page_reports.items()
    }
    assert {n: c for n, c in na.items() if c} == {}


@pytest.mark.browser
def test_every_page_shows_the_figures_and_tables_its_notebook_made(page_reports):
    expected = {n: r["expected"] for n, r in page_reports.items()}
    found = {
        n: {"figures": r["figures"], "tables": len(r["tables"])} for n, r in page_reports.items()
    }
    assert sum(e["figures"] for e in expected.values()) >= 10  # expectations are not vacuous
    assert sum(e["tables"] for e in expected.values()) >= 10
    short = {
        n: f"expected {expected[n]}, found {found[n]}"
        for n in page_reports
        if any(found[n][k] < expected[n][k] for k in ("figures", "tables"))
    }
    assert short == {}
    assert offenders(page_reports, "broken_images") == {}


@pytest.mark.browser
def test_math_is_typeset_offline(page_reports):
    assert page_reports["method"]["math"] > 10


@pytest.mark.browser
def test_no_page_makes_external_requests(page_reports):
    assert offenders(page_reports, "requests") == {}


@pytest.mark.browser
def test_every_page_has_a_1300_px_screenshot(page_reports):
    for name, report in page_reports.items():
        data = Path(report["screenshot"]).read_bytes()
        assert report["screenshot"] == str(SHOTS / f"{name}.png")
        assert struct.unpack(">II", data[16:24])[0] == 1300, name
        assert len(data) > 20_000, f"{name}: a blank screenshot"
        assert report["viewport"][0] == 1300


@pytest.mark.browser
def test_moving_the_controls_changes_the_shown_panel(page_reports):
    for name in INTERACTIVE:
        kinds = [c["kind"] for c in page_reports[name]["controls"]]
        assert "slider" in kinds, f"{name}: no slider rendered ({kinds})"
    stuck = {
        f"{name} {c['kind']} {c['index']}": c
        for name, report in page_reports.items()
        for c in report["controls"]
        if not (c.get("changed") and c.get("restored"))
    }
    assert stuck == {}


@pytest.mark.browser
def test_no_table_is_wider_than_its_column(page_reports):
    wide = {
        name: [(t["index"], t["first_cell"], t["width"], t["container"], t["column"]) for t in w]
        for name, w in offenders(page_reports, "wide_tables").items()
    }
    assert wide == {}, "tables wider than the column at 1300 px (index, first cell, width, "
    "container, column):\n" + "\n".join(f"{n}: {w}" for n, w in wide.items())


def page_heading(source: Path) -> str:
    """The first heading of a page's source, as plain text (empty when it holds math)."""
    if source.suffix == ".md":
        text = source.read_text()
    else:
        text = "".join(json.loads(source.read_text())["cells"][0]["source"])
    heading = next((line[2:] for line in text.splitlines() if line.startswith("# ")), "")
    return "" if "$" in heading or "`" in heading else plain(heading)


def plain(text: str) -> str:
    """Text as PDF extraction gives it back: compatibility forms (ligatures, |cᵢ|) folded."""
    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text)).strip()


@pytest.mark.browser
def test_pdf_has_every_page_in_toc_order(full_book, tmp_path):
    from pypdf import PdfReader

    root, html = full_book
    pdf = runner.build_pdf(root, html, tmp_path / "pdf" / "book.pdf")
    reader = PdfReader(pdf)
    pages = runner.toc_pages(root)
    assert len(reader.pages) >= len(pages)
    starts = [reader.get_destination_page_number(item) for item in reader.outline]
    assert len(starts) == len(pages) and starts == sorted(set(starts))  # one bookmark each
    ends = [*starts[1:], len(reader.pages)]
    checked = 0
    for page, first, last in zip(pages, starts, ends, strict=True):
        heading = page_heading(page_source(root, page))
        if not heading:
            continue
        text = plain(" ".join(reader.pages[i].extract_text() for i in range(first, last)))
        assert heading in text, f"{page}: {heading!r} not in its PDF pages {first}-{last - 1}"
        checked += 1
    assert checked >= len(pages) // 2


def test_table1_page_shows_measured_rows_beside_the_papers(full_book):
    _, html = full_book
    text = (html / "book" / "generated" / "tab01-statistics.html").read_text()
    assert "testbed-ddpm" in text and "testbed-flow" in text
    assert "paper (official XL checkpoints)" in text and "REPA" in text


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


def test_every_inventory_entry_has_a_page(full_book):
    import nbformat

    from semantic_bottleneck.verdicts import paper

    root, html = full_book
    covered = set()
    for name in runner.notebook_names(root):
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


def test_paper_profile_without_weights_builds_with_a_notice_on_every_model_page(tmp_path):
    root = copy_sources(tmp_path / "paperbook")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SEMANTIC_BOTTLENECK_WEIGHTS", str(tmp_path / "no-weights"))
        mp.setenv("SEMANTIC_BOTTLENECK_CACHE", str(tmp_path / "cache"))
        runner.run_all(
            "paper", root=root, overrides=runner.load_overrides(ROOT / "tests" / "tiny.yaml")
        )
    html = runner.build_html(root)
    for name in ["tab01-statistics", "fig03-cosine-matrix", "tab02-pruning-repa"]:
        text = (html / "book" / "generated" / f"{name}.html").read_text()
        words = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", text))
        assert "semantic-bottleneck fetch" in words and 'class="admonition note"' in text, name
