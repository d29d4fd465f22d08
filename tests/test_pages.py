"""The start-of-page helper that every page function's notebook calls (pages.start)."""

import matplotlib.pyplot as plt

from semantic_bottleneck.book import pages
from semantic_bottleneck.core.analysis import Missing, Page


def test_start_shows_notice_notes_and_glue_and_closes_the_figures(monkeypatch):
    shown, glued = [], {}
    monkeypatch.setattr(pages, "display", lambda obj: shown.append(obj.data))
    monkeypatch.setattr(pages, "glue", lambda name, value, display: glued.update({name: value}))
    fig = plt.figure()
    page = Page(
        figures={"a": fig, "absent": None},
        values={"x": (0.12345, "{:.2f}"), "none": (None, "{:.2f}")},
        missing=[Missing("dit-xl-2", "DiT", "semantic-bottleneck fetch dit-xl-2")],
        notes=["no sweep rows yet"],
    )
    pages.start(page)
    assert glued == {"x": "0.12", "none": "n/a"}
    assert "semantic-bottleneck fetch dit-xl-2" in shown[0] and "no sweep rows yet" in shown[1]
    # closed here, so the inline backend does not draw it after the cell; still displayable
    assert not plt.fignum_exists(fig.number) and fig.canvas is not None
