"""Headless chromium checks of built book pages: screenshots, the rendered DOM, network requests,
a measured report of each page, and printing to PDF.

Debian's `chromium` runs headless with a throwaway profile and no background networking, in its
own process session, so a hang is killed together with its children. The single-shot helpers
(`screenshot`, `dump_dom`, `external_requests`) start one browser per call with
`--virtual-time-budget` (without it a meta-refresh page such as index.html never finishes). Most
of such a run is chromium's start-up, so the page reports and the PDF drive one long-lived
browser per worker over the DevTools protocol on a pipe (`Browser`), loading the pages one after
another in its tab.
"""

from __future__ import annotations

import base64
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
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
        if _external(url) and url not in urls:
            urls.append(url)
    return urls


def _external(url: str) -> bool:
    """Whether a requested URL leaves the machine's files (http(s) or ws(s))."""
    return url.split(":", 1)[0] in ("http", "https", "ws", "wss")


# ----------------------------------------------------------------------------- page reports

VIEWPORT = (1300, 2000)  # a laptop-wide window (all three columns); tall, so a shot shows more
REPORT_ID = "sb-page-report"

# Injected at the top of <head> of a copy of the page. It waits for what renders after `load`
# (MathJax, the embedded widgets, their images), then measures the page in place and writes the
# result as JSON into the DOM, where `Browser` reads it. The waits run in real time: each ends
# as soon as what it waits for is done, and only a control's re-render gets a fixed 500 ms.
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


# Run as `python -c ON_FDS_3_AND_4 R W exe args...`: puts pipe ends R and W on fds 3 and 4 (where
# --remote-debugging-pipe reads and writes) and execs chromium. Both ends go above 9 first, so
# that neither can be overwritten when the other is moved.
ON_FDS_3_AND_4 = """
import fcntl, os, sys
ends = [fcntl.fcntl(int(f), fcntl.F_DUPFD_CLOEXEC, 10) for f in sys.argv[1:3]]
for f in sys.argv[1:3]:
    os.close(int(f))
os.dup2(ends[0], 3)
os.dup2(ends[1], 4)
os.execv(sys.argv[3], sys.argv[3:])
"""


class Browser:
    """One headless chromium driven over the DevTools protocol (`--remote-debugging-pipe`: JSON
    messages ending in a NUL byte, read by the browser on fd 3 and written on fd 4), its single
    tab loading one page after another. Use as a context manager; every wait has a deadline,
    after which the browser is killed with its children and TimeoutError raised.

    A page's requests are the network events of its tab and of the workers and frames attached to
    it while it loads. The browser also keeps a net log of its whole run; an http(s)/ws(s)
    request there from a page origin that no page's events showed is added to the requests of
    every page this browser read (`close` returns them), so nothing a page fetched goes unseen.
    """

    def __init__(self, timeout: float = 120):
        exe = chromium_path()
        if exe is None:
            raise FileNotFoundError(
                "chromium: expected a headless chromium on PATH (apt-get install chromium), "
                "found none"
            )
        self.timeout = timeout
        self._tmp = tempfile.TemporaryDirectory(prefix="chromium-cdp-")
        self._log = Path(self._tmp.name) / "net.json"
        to_browser, self._in = os.pipe()
        self._out, from_browser = os.pipe()
        args = [exe, *CHROMIUM_FLAGS, f"--user-data-dir={self._tmp.name}/profile",
                f"--log-net-log={self._log}", "--remote-debugging-pipe", "about:blank"]  # fmt: skip
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", ON_FDS_3_AND_4, str(to_browser), str(from_browser),
             *args],
            pass_fds=(to_browser, from_browser), stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        os.close(to_browser)
        os.close(from_browser)
        self._buffer, self._id, self._events = b"", 0, []
        self.seen: list[str] = []  # every page's requests, to tell the net log's apart
        self.pages: list[dict[str, Any]] = []  # the reports this browser made
        try:
            targets = self._send("Target.getTargets")["targetInfos"]
            tab = next(t["targetId"] for t in targets if t["type"] == "page")
            self._tab = self._send("Target.attachToTarget", {"targetId": tab, "flatten": True})[
                "sessionId"
            ]
            for method in ("Page.enable", "Network.enable"):
                self._send(method, session=self._tab)
            auto = {"autoAttach": True, "waitForDebuggerOnStart": True, "flatten": True}
            self._send("Target.setAutoAttach", auto, self._tab)
        except BaseException:
            self._kill()
            raise

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- protocol

    def _post(self, method: str, params: dict | None = None, session: str | None = None) -> int:
        self._id += 1
        message = {"id": self._id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        os.write(self._in, json.dumps(message).encode() + b"\0")
        return self._id

    def _read(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._out], [], [], left)[0]:
                self._kill()
                raise TimeoutError(f"chromium did not answer within {self.timeout} s")
            chunk = os.read(self._out, 1 << 20)
            if not chunk:
                raise RuntimeError(f"chromium exited (status {self.proc.poll()})")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        message = json.loads(message)
        if message.get("method") == "Target.attachedToTarget":  # a worker or frame: watch it too
            child = message["params"]["sessionId"]
            self._post("Network.enable", session=child)
            self._post("Runtime.runIfWaitingForDebugger", session=child)
        return message

    def _send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        """The result of one command (events that arrive meanwhile are kept)."""
        sent, deadline = self._post(method, params, session), time.monotonic() + self.timeout
        while True:
            message = self._read(deadline)
            if message.get("id") == sent:
                if "error" in message:
                    raise RuntimeError(f"chromium: {method} failed: {message['error']}")
                return message["result"]
            if "method" in message:
                self._events.append(message)

    def _evaluate(self, expression: str) -> Any:
        result = self._send(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True}, self._tab
        )
        return result["result"].get("value")

    # -- pages

    def _load(self, html_path: Path, size: tuple[int, int]) -> dict[str, Any]:
        """Load an instrumented copy of the page at `size` and wait for PAGE_SCRIPT's report."""
        page = Path(html_path).resolve()
        if not page.is_file():
            raise ValueError(f"html_path: expected an existing HTML file, got {page}")
        folder = Path(tempfile.mkdtemp(prefix="page-", dir=self._tmp.name))
        copy = _instrumented_copy(page, folder)
        metrics = {"width": size[0], "height": size[1], "deviceScaleFactor": 1, "mobile": False}
        self._send("Emulation.setDeviceMetricsOverride", metrics, self._tab)
        self._events = []
        self._send("Page.navigate", {"url": copy.as_uri()}, self._tab)
        ask = (
            f"location.href === {json.dumps(copy.as_uri())} && "
            f"(document.getElementById({json.dumps(REPORT_ID)}) || {{}}).textContent"
        )
        deadline = time.monotonic() + self.timeout
        while not (found := self._evaluate(ask)):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{page}: the page script wrote no report in {self.timeout} s")
            time.sleep(0.05)
        report = json.loads(found)
        if "script_error" in report:
            raise RuntimeError(f"{page}: the page script failed: {report['script_error']}")
        requests = []
        for event in self._events:
            params = event.get("params") or {}
            url = (params.get("request") or {}).get("url") or params.get("url") or ""
            if event["method"] in ("Network.requestWillBeSent", "Network.webSocketCreated"):
                if _external(url) and url not in requests:
                    requests.append(url)
        self.seen += requests
        return {"page": str(page), "requests": requests, **report}

    def report(
        self, html_path: str | Path, png_path: str | Path | None = None, size=VIEWPORT
    ) -> dict[str, Any]:
        """`page_report` of one page in this browser."""
        report = self._load(Path(html_path), size)
        png = None
        if png_path is not None:
            png = Path(png_path).resolve()
            png.parent.mkdir(parents=True, exist_ok=True)
            shot = self._send("Page.captureScreenshot", {"format": "png"}, self._tab)
            _write_atomic(png, base64.b64decode(shot["data"]))
        report["screenshot"] = str(png) if png is not None else None
        self.pages.append(report)
        return report

    def pdf(self, html_path: str | Path, pdf_path: str | Path) -> Path:
        """Print one page, once its report is made (math typeset, images and widgets done), as
        chromium prints for paper (no header or footer)."""
        self._load(Path(html_path), VIEWPORT)
        printed = self._send("Page.printToPDF", {"displayHeaderFooter": False}, self._tab)
        pdf = Path(pdf_path).resolve()
        pdf.parent.mkdir(parents=True, exist_ok=True)
        _write_atomic(pdf, base64.b64decode(printed["data"]))
        return pdf

    # -- shutdown

    def close(self) -> list[str]:
        """Shut the browser down and read its net log: the page-origin requests no page's events
        showed, each added to the requests of every report this browser made."""
        if self.proc.poll() is None:
            try:
                self._post("Browser.close")
                self.proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self._kill()
        unseen = []
        if self._log.is_file():
            unseen = [u for u in _net_requests(self._log) if u not in self.seen]
        for report in self.pages:
            report["requests"] += [u for u in unseen if u not in report["requests"]]
        self._tmp.cleanup()
        return unseen

    def _kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        for fd in (self._in, self._out):
            try:
                os.close(fd)
            except OSError:
                pass
        self._in = self._out = -1


def _write_atomic(path: Path, data: bytes) -> None:
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    partial.write_bytes(data)
    os.replace(partial, path)


def page_report(
    html_path: str | Path,
    png_path: str | Path | None = None,
    size: tuple[int, int] = VIEWPORT,
    timeout: float = 120,
) -> dict[str, Any]:
    """Read one built page as headless chromium renders it.

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

    `requests` lists the http(s)/ws(s) URLs the page asked for (see `Browser`).

    Args:
        html_path: a page of the built book.
        png_path: where to save a screenshot of the window (after the controls went back).
        size: window width and height in pixels.
        timeout: wall-clock seconds any step may take before chromium is killed.

    Returns:
        The measurements above, plus `page` (the HTML path) and `screenshot` (png path or None).
    """
    page = Path(html_path).resolve()
    if not page.is_file():
        raise ValueError(f"html_path: expected an existing HTML file, got {page}")
    with Browser(timeout) as browser:
        return browser.report(page, png_path, size)


def page_reports(
    pages: Mapping[str, str | Path],
    shots: str | Path | None = None,
    workers: int = 2,
    **kwargs: Any,
) -> dict[str, dict[str, Any]]:
    """`page_report` for many pages, each of `workers` browsers reading its share in turn.

    Args:
        pages: name -> HTML path; the screenshot of each goes to `<shots>/<name>.png`.
        shots: folder for the screenshots (none taken when None).
        workers: browsers run at once.
        **kwargs: `size`, `timeout` as `page_report` takes them.

    Returns:
        name -> report, in the order of `pages`.
    """
    timeout = kwargs.pop("timeout", 120)
    names = list(pages)

    def share(part: list[str]) -> dict[str, dict[str, Any]]:
        with Browser(timeout) as browser:
            return {
                name: browser.report(
                    pages[name], Path(shots) / f"{name}.png" if shots is not None else None,
                    **kwargs,
                )
                for name in part
            }  # fmt: skip

    reports = _in_shares(names, workers, share)
    return {name: reports[name] for name in names}


def print_pdfs(pages: list[Path], pdfs: list[Path], workers: int = 2, timeout: float = 120):
    """Print each page to its PDF (`Browser.pdf`), `workers` browsers at a time."""
    targets = dict(zip(map(str, pages), pdfs, strict=True))

    def share(part: list[str]) -> dict[str, Path]:
        with Browser(timeout) as browser:
            return {page: browser.pdf(page, targets[page]) for page in part}

    printed = _in_shares(list(targets), workers, share)
    return [printed[str(p)] for p in pages]


def _in_shares(items: list[str], workers: int, work) -> dict:
    """work(share) on `workers` interleaved shares of the items at once, results merged."""
    n = max(1, min(workers, len(items)))
    shares = [items[i::n] for i in range(n)]
    with ThreadPoolExecutor(max_workers=n) as pool:
        results = list(pool.map(work, shares))
    return {k: v for result in results for k, v in result.items()}


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
