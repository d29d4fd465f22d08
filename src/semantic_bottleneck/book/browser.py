"""Headless chromium checks of built book pages: screenshots, the rendered DOM, network requests,
a measured report of each page, and printing to PDF.

Debian's `chromium` runs headless with a throwaway profile and no background networking. Every
call passes `--virtual-time-budget` (without it a meta-refresh page such as index.html never
finishes) and runs in its own process session, so a hang is killed together with its children.
Headless chromium loads one page per run and most of a run is its start-up, so `page_report`
gets everything about a page (DOM measurements, screenshot, network log) from a single run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from semantic_bottleneck.book.params import _toc_files, load_yaml

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


def chromium_path() -> str | None:
    """The chromium executable (Debian's `chromium`), or None when it is not installed."""
    return shutil.which("chromium") or shutil.which("/usr/bin/chromium")


def _chromium(html_path: str | Path, flags: list[str], timeout: float) -> str:
    """Run headless chromium on a local page and return its stdout."""
    exe = chromium_path()
    if exe is None:
        raise FileNotFoundError(
            "chromium: expected a headless chromium on PATH (apt-get install chromium), found none"
        )
    page = Path(html_path).resolve()
    if not page.is_file():
        raise ValueError(f"html_path: expected an existing HTML file, got {page}")
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        cmd = [exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *flags, page.as_uri()]
        # Its own session, so a hang (e.g. on a meta-refresh page) can be killed with all children.
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
        )
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise TimeoutError(f"chromium did not finish {page} within {timeout} s") from None
    if proc.returncode != 0:
        raise RuntimeError(f"chromium failed on {page} (exit {proc.returncode}): {stderr[-2000:]}")
    return stdout


def screenshot(
    html_path: str | Path,
    png_path: str | Path,
    size: tuple[int, int] = (1200, 900),
    budget_ms: int = 5000,
    timeout: float = 60,
) -> Path:
    """Save a PNG of a built page as headless chromium renders it (widgets and MathJax included).

    Args:
        html_path: a page of the built book.
        png_path: where the screenshot goes (parent folders are created).
        size: window width and height in pixels.
        budget_ms: virtual time the page gets to run its scripts before the shot.
        timeout: wall-clock seconds before chromium is killed.

    Returns:
        png_path.
    """
    png = Path(png_path).resolve()
    png.parent.mkdir(parents=True, exist_ok=True)
    png.unlink(missing_ok=True)  # so an old file cannot pass for a new shot
    flags = [
        f"--window-size={size[0]},{size[1]}",
        f"--virtual-time-budget={budget_ms}",
        f"--screenshot={png}",
    ]
    _chromium(html_path, flags, timeout)
    if not png.is_file():
        raise RuntimeError(f"chromium wrote no screenshot for {html_path}")
    return png


def dump_dom(html_path: str | Path, budget_ms: int = 10000, timeout: float = 60) -> str:
    """The DOM of a built page after its scripts ran (e.g. to find `widget-slider` elements).

    Args:
        html_path: a page of the built book.
        budget_ms: virtual time the page gets to run its scripts.
        timeout: wall-clock seconds before chromium is killed.

    Returns:
        The serialized DOM (HTML text).
    """
    return _chromium(html_path, [f"--virtual-time-budget={budget_ms}", "--dump-dom"], timeout)


def external_requests(
    html_path: str | Path, budget_ms: int = 5000, timeout: float = 60
) -> list[str]:
    """The http(s)/ws(s) URLs a page asks for while it loads and runs its scripts.

    Read from chromium's net log. The browser's own traffic (update checks, account probes) has
    no page origin (`initiator` "not an origin") and is left out; what remains is what the page
    requested, which for the offline book must be nothing.

    Args:
        html_path: a page of the built book.
        budget_ms: virtual time the page gets to run its scripts.
        timeout: wall-clock seconds before chromium is killed.

    Returns:
        The requested URLs, in order, without duplicates.
    """
    with tempfile.TemporaryDirectory(prefix="chromium-netlog-") as tmp:
        log = Path(tmp) / "net.json"
        _chromium(
            html_path,
            [f"--virtual-time-budget={budget_ms}", f"--log-net-log={log}", "--dump-dom"],
            timeout,
        )
        return _net_requests(log)


def _net_requests(log: Path) -> list[str]:
    """The http(s)/ws(s) URLs a page requested, read from a chromium net log."""
    data = json.loads(log.read_text())
    start_job = data["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    urls: list[str] = []
    for event in data["events"]:
        params = event.get("params") or {}
        url = params.get("url", "")
        if event["type"] != start_job or params.get("initiator") == "not an origin":
            continue
        if url.split(":", 1)[0] in ("http", "https", "ws", "wss") and url not in urls:
            urls.append(url)
    return urls


# ----------------------------------------------------------------------------- page reports

VIEWPORT = (1300, 2000)  # a laptop-wide window (all three columns); tall, so a shot shows more
REPORT_ID = "sb-page-report"

# Injected at the top of <head> of a copy of the page. It waits for what renders after `load`
# (MathJax, the embedded widgets, their images), then measures the page in place and writes the
# result as JSON into the DOM, where --dump-dom hands it back. Timers cost nothing under
# chromium's virtual time, so the waits are generous.
PAGE_SCRIPT = r"""
(function () {
  var errors = [];
  window.addEventListener("error", function (e) { errors.push(String(e.message)); });
  var sleep = function (ms) { return new Promise(function (r) { setTimeout(r, ms); }); };
  var shown = function (el) { return el.getClientRects().length > 0; };
  var inWidget = function (el) { return !!el.closest(".widget-subarea, .jupyter-widgets"); };
  function hash(s) {
    var h = 5381;
    for (var i = 0; i < s.length; i++) h = ((h * 33) ^ s.charCodeAt(i)) >>> 0;
    return s.length + ":" + h.toString(16);
  }
  function textOf(root) {
    var walk = document.createTreeWalker(root, NodeFilter.SHOW_TEXT, {acceptNode: function (n) {
      var p = n.parentElement;
      return p && p.closest("script, style, template") ? NodeFilter.FILTER_REJECT
                                                       : NodeFilter.FILTER_ACCEPT;
    }});
    var parts = [];
    while (walk.nextNode()) parts.push(walk.currentNode.nodeValue);
    return parts.join(" ");
  }
  function widgetsRendered() {
    var views = document.querySelectorAll(
      'script[type="application/vnd.jupyter.widget-view+json"]');
    return Array.prototype.every.call(views, function (v) {
      var area = v.previousElementSibling;
      return area && area.classList.contains("widget-subarea") && area.childElementCount > 0;
    });
  }
  async function settle() {
    for (var i = 0; i < 100 && !widgetsRendered(); i++) await sleep(100);
    if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
      try { await MathJax.startup.promise; } catch (e) { errors.push("MathJax: " + e); }
    }
    // A lazy image below the window would never load and read as broken.
    Array.prototype.forEach.call(document.images, function (img) { img.loading = "eager"; });
    var loaded = Promise.all(Array.prototype.map.call(document.images, function (img) {
      return img.complete ? null : new Promise(function (r) { img.onload = img.onerror = r; });
    }));
    await Promise.race([loaded, sleep(10000)]);
    await sleep(200);
  }
  function pixels(img) {
    // Widget images are blob: URLs, new at every render: compare what they show instead.
    try {
      var canvas = document.createElement("canvas");
      canvas.width = 48; canvas.height = 48;
      var ctx = canvas.getContext("2d");
      ctx.drawImage(img, 0, 0, 48, 48);
      return "img " + hash(Array.prototype.join.call(ctx.getImageData(0, 0, 48, 48).data, ""));
    } catch (e) {
      return "img " + hash(img.src);  // a file: image taints the canvas; its URL is stable
    }
  }
  function panel(root, control) {
    var parts = [];
    root.querySelectorAll(".widget-html-content, img").forEach(function (el) {
      if (control.contains(el) || !shown(el)) return;
      parts.push(el.tagName === "IMG" ? pixels(el) : el.textContent.trim());
    });
    return parts;
  }
  // ipywidgets 8 sliders are noUiSlider handles, with no <input> to set: noUiSlider takes
  // keyboard input on the handle, as a reader's arrow key would move it. A dropdown is a <select>.
  function slider(el) {
    var handle = el.querySelector(".noUi-handle");
    if (!handle) return null;
    var atEnd = handle.getAttribute("aria-valuenow") === handle.getAttribute("aria-valuemax");
    return {
      value: function () {
        var r = el.querySelector(".widget-readout");
        return r ? r.textContent.trim() : handle.getAttribute("aria-valuenow");
      },
      move: function (back) {
        var key = (atEnd !== back) ? "ArrowLeft" : "ArrowRight";
        handle.dispatchEvent(new KeyboardEvent("keydown", {key: key, bubbles: true,
                                                           cancelable: true}));
      },
    };
  }
  function dropdown(el) {
    var select = el.querySelector("select");
    if (!select || select.options.length < 2) return null;
    var start = select.selectedIndex;
    return {
      value: function () { return select.value; },
      move: function (back) {
        select.selectedIndex = back ? start : (start + 1) % select.options.length;
        select.dispatchEvent(new Event("change", {bubbles: true}));
      },
    };
  }
  async function moveControls(article) {
    var out = [];
    var kinds = [["slider", ".widget-slider", slider], ["dropdown", ".widget-dropdown", dropdown]];
    for (var k = 0; k < kinds.length; k++) {
      var found = article.querySelectorAll(kinds[k][1]);
      for (var i = 0; i < found.length; i++) {
        var el = found[i], root = el.closest(".widget-subarea") || el.parentElement;
        var control = kinds[k][2](el);
        var entry = {kind: kinds[k][0], index: i, panel_before: panel(root, el)};
        if (!control) { entry.error = "no handle or options to move"; out.push(entry); continue; }
        entry.value_before = control.value();
        control.move(false);
        await sleep(500);
        entry.value_after = control.value();
        entry.panel_after = panel(root, el);
        control.move(true);
        await sleep(500);
        entry.panel_restored = panel(root, el);
        entry.changed = JSON.stringify(entry.panel_after) !== JSON.stringify(entry.panel_before);
        entry.restored =
          JSON.stringify(entry.panel_restored) === JSON.stringify(entry.panel_before);
        out.push(entry);
      }
    }
    return out;
  }
  async function report() {
    await settle();
    var article = document.querySelector("article.bd-article") ||
                  document.querySelector("main") || document.body;
    var style = getComputedStyle(article), box = article.getBoundingClientRect();
    var columnRight = box.right - parseFloat(style.paddingRight || "0");
    var columnWidth = columnRight - box.left - parseFloat(style.paddingLeft || "0");
    var all = textOf(document.body), tracebacks = [];
    var at = all.indexOf("Traceback (most recent call last)");
    if (at >= 0) tracebacks.push(all.slice(Math.max(0, at - 120), at + 200));
    document.querySelectorAll(".traceback, .output.error").forEach(function (el) {
      tracebacks.push(el.textContent.trim().slice(0, 300));
    });
    var glued = [];
    article.querySelectorAll(".pasted-text, .pasted-inline").forEach(function (el) {
      var context = el.parentElement ? el.parentElement.textContent : "";
      glued.push({text: el.textContent.trim(), context: context.trim().slice(0, 160)});
    });
    var images = Array.prototype.filter.call(article.querySelectorAll("img"), function (img) {
      return !inWidget(img);
    });
    var tables = Array.prototype.filter.call(article.querySelectorAll("table"), function (t) {
      return !inWidget(t);
    });
    var measured = tables.map(function (t, i) {
      var r = t.getBoundingClientRect(), parent = t.parentElement;
      while (parent !== article && /^(inline|contents)/.test(getComputedStyle(parent).display)) {
        parent = parent.parentElement;  // an inline box has no clientWidth to compare with
      }
      var head = Array.prototype.find.call(t.querySelectorAll("caption, th, td"), function (c) {
        return c.textContent.trim();
      });
      return {
        index: i, width: Math.round(Math.max(t.scrollWidth, r.width)),
        container: parent.clientWidth, column: Math.round(columnWidth),
        overflow_right: Math.round(r.right - columnRight), shown: shown(t),
        first_cell: head ? head.textContent.trim().slice(0, 60) : "",
      };
    });
    var result = {
      title: document.title, viewport: [window.innerWidth, window.innerHeight],
      tracebacks: tracebacks, glued: glued,
      figures: images.length,
      broken_images: images.filter(function (img) {
        return img.complete && img.naturalWidth === 0;
      }).map(function (img) { return img.getAttribute("src"); }),
      tables: measured,
      wide_tables: measured.filter(function (t) {
        return t.shown && (t.width > t.container + 1 || t.overflow_right > 1);
      }),
      math: document.querySelectorAll("mjx-container").length,
    };
    result.controls = await moveControls(article);
    result.errors = errors;
    var out = document.createElement("script");
    out.type = "application/json";
    out.id = "sb-page-report";
    out.textContent = JSON.stringify(result).replace(/</g, "\\u003c");
    document.body.appendChild(out);
  }
  window.addEventListener("load", function () {
    report().catch(function (e) {
      var out = document.createElement("script");
      out.type = "application/json";
      out.id = "sb-page-report";
      out.textContent = JSON.stringify({script_error: String(e && e.stack || e)});
      document.body.appendChild(out);
    });
  });
})();
"""


def _instrumented_copy(html_path: Path, folder: Path) -> Path:
    """A copy of the page, in `folder`, that loads everything from the page's own folder and
    runs PAGE_SCRIPT. The built book stays untouched (other checks may read it meanwhile)."""
    text = html_path.read_text(encoding="utf-8")
    head = re.search(r"<head\b[^>]*>", text, flags=re.IGNORECASE)
    if head is None:
        raise ValueError(f"html_path: expected a page with a <head>, got {html_path}")
    base = html_path.parent.as_uri() + "/"
    inject = f'<base href="{base}"><script>{PAGE_SCRIPT}</script>'
    copy = folder / html_path.name
    copy.write_text(text[: head.end()] + inject + text[head.end() :], encoding="utf-8")
    return copy


def page_report(
    html_path: str | Path,
    png_path: str | Path | None = None,
    size: tuple[int, int] = VIEWPORT,
    budget_ms: int = 30000,
    timeout: float = 120,
) -> dict[str, Any]:
    """Read one built page as headless chromium renders it, in a single browser run.

    The page (a copy with PAGE_SCRIPT injected, resources read from the original folder) is
    loaded at `size`; once MathJax, the widgets and the images are done the script measures:

    - `tracebacks`: text around "Traceback (most recent call last)" and every error output;
    - `glued`: each glued text (`{glue:text}` and inline glue) with its sentence, so "n/a" shows;
    - `figures`, `broken_images`: img elements of the article outside widgets, and those that
      did not load;
    - `tables`: every table of the article outside widgets with its width, its parent's width
      and the article column's; `wide_tables` those wider than their parent or reaching past
      the column (hidden ones, in a collapsed toggle, cannot be measured and are left out);
    - `controls`: each ipywidgets slider and dropdown moved one step (a keydown on the slider's
      handle, the way noUiSlider takes keyboard input; a `change` of the dropdown's select),
      with its value and the visible panel of its widget (HTML text, a hash of each image's
      pixels) before and after, then moved back (`changed`, `restored`);
    - `errors`: uncaught JavaScript errors; `math`: MathJax containers.

    `requests` lists the external URLs the page asked for (see `external_requests`).

    Args:
        html_path: a page of the built book.
        png_path: where to save a screenshot of the window (after the controls went back).
        size: window width and height in pixels.
        budget_ms: virtual time the page gets; waits are virtual, so this costs little.
        timeout: wall-clock seconds before chromium is killed.

    Returns:
        The measurements above, plus `page` (the HTML path) and `screenshot` (png path or None).
    """
    page = Path(html_path).resolve()
    if not page.is_file():
        raise ValueError(f"html_path: expected an existing HTML file, got {page}")
    with tempfile.TemporaryDirectory(prefix="book-page-") as tmp:
        copy = _instrumented_copy(page, Path(tmp))
        log = Path(tmp) / "net.json"
        flags = [
            f"--window-size={size[0]},{size[1]}",
            f"--virtual-time-budget={budget_ms}",
            f"--log-net-log={log}",
            "--dump-dom",
        ]
        png = None
        if png_path is not None:
            png = Path(png_path).resolve()
            png.parent.mkdir(parents=True, exist_ok=True)
            png.unlink(missing_ok=True)
            flags.append(f"--screenshot={png}")
        dom = _chromium(copy, flags, timeout)
        requests = _net_requests(log)
    found = re.search(rf'<script[^>]*id="{REPORT_ID}"[^>]*>(.*?)</script>', dom, flags=re.DOTALL)
    if found is None:
        raise RuntimeError(f"{page}: the page script wrote no report within {budget_ms} ms")
    report = json.loads(found.group(1))
    if "script_error" in report:
        raise RuntimeError(f"{page}: the page script failed: {report['script_error']}")
    if png is not None and not png.is_file():
        raise RuntimeError(f"chromium wrote no screenshot for {page}")
    screenshot = str(png) if png is not None else None
    return {"page": str(page), "screenshot": screenshot, "requests": requests, **report}


def page_reports(
    pages: Mapping[str, str | Path],
    shots: str | Path | None = None,
    workers: int = 2,
    **kwargs: Any,
) -> dict[str, dict[str, Any]]:
    """`page_report` for many pages, a few browsers at a time (each run is mostly startup).

    Args:
        pages: name -> HTML path; the screenshot of each goes to `<shots>/<name>.png`.
        shots: folder for the screenshots (none taken when None).
        workers: browsers run at once.
        **kwargs: passed to `page_report`.

    Returns:
        name -> report, in the order of `pages`.
    """
    from concurrent.futures import ThreadPoolExecutor

    def one(name: str) -> dict[str, Any]:
        png = Path(shots) / f"{name}.png" if shots is not None else None
        return page_report(pages[name], png, **kwargs)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return dict(zip(pages, pool.map(one, pages), strict=True))


# ----------------------------------------------------------------------------- expectations


def toc_pages(root: str | Path) -> list[str]:
    """Every page of the book's `_toc.yml`, root first, in reading order, without suffix."""
    toc = load_yaml((Path(root) / "_toc.yml").read_text()) or {}
    pages: list[str] = []
    for file in _toc_files(toc):
        name = re.sub(r"\.(md|ipynb)$", "", file)
        if name not in pages:
            pages.append(name)
    return pages


# ----------------------------------------------------------------------------- printing


def print_pdf(
    html_path: str | Path, pdf_path: str | Path, budget_ms: int = 15000, timeout: float = 120
) -> Path:
    """Print a built page to PDF as headless chromium renders it for print (MathJax typeset).

    Args:
        html_path: a page of the built book.
        pdf_path: where the PDF goes (parent folders are created).
        budget_ms: virtual time the page gets to typeset its math and load its images.
        timeout: wall-clock seconds before chromium is killed.

    Returns:
        pdf_path.
    """
    pdf = Path(pdf_path).resolve()
    pdf.parent.mkdir(parents=True, exist_ok=True)
    pdf.unlink(missing_ok=True)
    flags = [
        f"--virtual-time-budget={budget_ms}",
        "--no-pdf-header-footer",
        f"--print-to-pdf={pdf}",
    ]
    _chromium(html_path, flags, timeout)
    if not pdf.is_file() or pdf.stat().st_size == 0:
        raise RuntimeError(f"chromium wrote no PDF for {html_path}")
    return pdf
