"""The Interactive part: prune c and watch the class vectors (the widget is `widgets`'s; it
travels in the page's `widgets`, apart from the figures that `pages.start` closes)."""

from __future__ import annotations

import numpy as np

from semantic_bottleneck.book import widgets
from semantic_bottleneck.core import analysis
from semantic_bottleneck.core.analysis import Page

TAU_RANGE = (-3, 1)  # the sliders' tau from 1e-3 to 10 (log-spaced)


def slider_taus(n: int) -> np.ndarray:
    """The n slider positions of the explorers: log-spaced over `TAU_RANGE`. Shapes: -> (n,)."""
    return np.logspace(*TAU_RANGE, n)


def interactive_page(
    profile: str,
    models: list[str],
    train_steps: int | None = None,
    n_taus: int = 12,
    class_index: int = 0,
) -> Page:
    """The interactive pruning page: `widgets.pruning_explorer` over the run's models (c of
    every class at the initial t), `n_taus` slider positions, the mask of class `class_index`.

    Widgets: explorer (None without models).
    """
    found, missing = analysis.load_models(profile, models, steps=train_steps)
    explorer = (
        widgets.pruning_explorer(
            {m.label: m.c() for m in found}, slider_taus(n_taus), cls=class_index
        )
        if found
        else None
    )
    return Page(found=found, missing=missing, widgets={"explorer": explorer})
