"""Small helpers the notebooks share: notices, glued text, tables beside the paper's."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown, display
from myst_nb import glue
from pandas.io.formats.style import Styler

from semantic_bottleneck.book.display import table
from semantic_bottleneck.core.analysis import Missing, missing_notice
from semantic_bottleneck.verdicts import paper


def start(page) -> None:
    """The start of every page built from a page function (an `analysis.Page`): the notice
    for absent inputs, the inputs used, and the glued values of its text. Its figures are closed
    here so that they appear where the page displays them, not also after this cell."""
    for fig in page.figures.values():
        if fig is not None:
            plt.close(fig)
    show_notice(page.missing)
    for note in page.notes:
        show_note(note)
    show_inputs(page.found)
    for name, (value, fmt) in page.values.items():
        glue_text(name, value, fmt)


def markdown(text: str) -> None:
    """Display a Markdown block (e.g. a page's `markdown` entry with {doc} links)."""
    display(Markdown(text))


def show_notice(missing: list[Missing]) -> None:
    """Display the notice for absent inputs (nothing when all are present)."""
    if missing:
        display(Markdown(missing_notice(missing)))


def glue_text(name: str, value, fmt: str = "{:.3f}") -> None:
    """Glue `value` formatted for page text; absent or non-finite values read "n/a"."""
    ok = value is not None and not (isinstance(value, float) and not math.isfinite(value))
    glue(name, fmt.format(value) if ok else "n/a", display=False)


def statistics_beside_paper(
    measured: pd.DataFrame, table_id: str, profile: str, columns: list[str]
) -> Styler:
    """A per-model statistics table (Tables 1, 4) with the paper's, as the page shows it
    (`display.table`).

    In the paper profile rows are the same models: paper | this run | difference per column.
    In the testbed profile (or when no model was measured) the paper's rows and ours are
    stacked, each labelled with its source.
    """
    if profile == "paper" and len(measured):
        return table(paper.compare(measured, table_id, on="model", columns=columns))
    ours = measured[["model", *columns]].assign(source=f"this run ({profile})")
    theirs = paper.paper_table(table_id)
    theirs = theirs[[c for c in ["model", *columns] if c in theirs.columns]]
    theirs = theirs.assign(source="paper (official XL checkpoints)")
    return table(pd.concat([theirs, ours], ignore_index=True).set_index(["source", "model"]))


def show_note(text: str) -> None:
    """Display a note admonition."""
    display(Markdown(f"```{{note}}\n{text}\n```"))


def show_inputs(found) -> None:
    """Display which inputs this page used: each model and where its c came from."""
    if found:
        # an appendix system also says what its conditions are (the paper names none)
        lines = [
            f"- {m.label}: `{_short(m.source)}`"
            + (f", over {m.conditions}" if getattr(m, "conditions", "") else "")
            for m in found
        ]
        display(Markdown("Inputs used on this page:\n\n" + "\n".join(lines)))


def _short(path: str) -> str:
    """A path relative to the working directory (the project root) when it lies below it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return path
