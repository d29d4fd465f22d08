"""What the browser check expects of each built page: at least how many figures and tables its
executed notebook (or Markdown source) shows, counted as myst-nb renders them."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# myst-nb's HTML render priority: the first of these a bundle holds is what the page shows.
RENDER_PRIORITY = [
    "application/vnd.jupyter.widget-view+json", "application/javascript", "text/html",
    "image/svg+xml", "image/png", "image/jpeg", "image/gif", "text/markdown", "text/latex",
    "text/plain",
]  # fmt: skip
GLUE_PREFIX = "application/papermill.record/"
_FENCE = re.compile(r"^(```+|~~~+).*?^\1", flags=re.MULTILINE | re.DOTALL)
# A table's delimiter row, `|---|:---:|` (a rule has no pipe, a row of "-" cells short dashes).
_PIPE_TABLE = re.compile(
    r"^(?=[^\n]*\|)[ \t]*\|?[ \t]*:?-{3,}:?[ \t]*(\|[ \t]*:?-{3,}:?[ \t]*)*\|?[ \t]*$",
    flags=re.MULTILINE,
)
_DIRECTIVE = re.compile(r"^\s*(?:```+|:::+)\{([\w:-]+)\}\s*(\S*)", flags=re.MULTILINE)
_GLUE_ROLE = re.compile(r"\{glue(?::(\w+))?\}`([^`]+)`")


def markdown_counts(text: str) -> dict[str, int]:
    """Figures and tables that MyST markdown renders: pipe tables, list-tables, images."""
    directives = _DIRECTIVE.findall(text)
    prose = _FENCE.sub("", text)  # code blocks show their text, not tables
    return {
        "figures": len(re.findall(r"!\[[^\]]*\]\(", prose))
        + sum(name in ("figure", "image") for name, _ in directives),
        "tables": len(_PIPE_TABLE.findall(prose))
        + sum(name in ("list-table", "csv-table") for name, _ in directives),
    }


def _bundle_counts(data: Mapping[str, Any]) -> dict[str, int]:
    """Figures and tables one output shows, by the mime type myst-nb renders."""
    mime = next((m for m in RENDER_PRIORITY if m in data), None)
    if mime is None or mime == RENDER_PRIORITY[0]:
        return {"figures": 0, "tables": 0}  # nothing, or a widget: its content is JS-made
    value = data[mime]
    value = "".join(value) if isinstance(value, list) else str(value)
    if mime.startswith("image/"):
        return {"figures": 1, "tables": 0}
    if mime == "text/html":
        return {"figures": len(re.findall(r"<img\b", value)),
                "tables": len(re.findall(r"<table\b", value))}  # fmt: skip
    if mime == "text/markdown":
        return markdown_counts(value)
    return {"figures": 0, "tables": 0}


def expected_counts(source: str | Path) -> dict[str, int]:
    """At least how many figures and tables the built page of `source` must show.

    For an executed notebook: every display_data / execute_result output of a cell whose output
    is not removed (tags remove-cell, remove-output), counted by what myst-nb renders (an
    image: a figure; HTML: its <table>s and <img>s; Markdown: its tables and images), plus what
    markdown cells show themselves and the glued outputs they paste (`{glue}`, `{glue:figure}`,
    `{glue:any}`, `{glue:md}`). For a Markdown page: its tables and images.

    Args:
        source: `book/generated/<name>.ipynb` or a hand-written `.md` page.

    Returns:
        {"figures": n, "tables": n}.
    """
    path = Path(source)
    if path.suffix == ".md":
        return markdown_counts(path.read_text(encoding="utf-8"))
    nb = json.loads(path.read_text(encoding="utf-8"))
    counts = {"figures": 0, "tables": 0}
    glued: dict[str, dict[str, int]] = {}
    pasted: list[str] = []

    def add(more: Mapping[str, int]) -> None:
        for key in counts:
            counts[key] += more[key]

    for cell in nb.get("cells", []):
        source_text = "".join(cell.get("source", ""))
        if cell.get("cell_type") == "markdown":
            add(markdown_counts(source_text))
            pasted += [name for kind, name in _GLUE_ROLE.findall(source_text) if kind != "text"]
            pasted += [
                name
                for kind, name in _DIRECTIVE.findall(source_text)
                if kind in ("glue", "glue:figure", "glue:any", "glue:md")
            ]
            continue
        tags = set(cell.get("metadata", {}).get("tags", []))
        removed = bool(tags & {"remove-cell", "remove-output"})
        for output in cell.get("outputs", []):
            if output.get("output_type") not in ("display_data", "execute_result"):
                continue
            data = output.get("data", {})
            scrap = output.get("metadata", {}).get("scrapbook")
            if scrap:
                prefix = scrap.get("mime_prefix", "")
                glued[scrap["name"]] = _bundle_counts(
                    {k.removeprefix(prefix): v for k, v in data.items()}
                )
                if prefix:
                    continue  # glued with display=False: shown only where it is pasted
            if not removed:
                add(_bundle_counts(data))
    for name in pasted:
        add(glued.get(name.split("::")[-1], {"figures": 0, "tables": 0}))
    return counts


def page_source(root: str | Path, page: str) -> Path:
    """The file a toc page is built from: `<page>.ipynb` (executed) or `<page>.md`."""
    for suffix in (".ipynb", ".md"):
        path = Path(root) / f"{page}{suffix}"
        if path.is_file():
            return path
    raise ValueError(f"page: expected {page}.ipynb or {page}.md under {root}, found neither")
