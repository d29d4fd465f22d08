"""Headless chromium checks of built book pages: screenshots, the rendered DOM, network requests.

Debian's `chromium` runs headless with a throwaway profile and no background networking. Every
call passes `--virtual-time-budget` (without it a meta-refresh page such as index.html never
finishes) and runs in its own process session, so a hang is killed together with its children.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

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
