"""Interactive views for the book that keep working in static HTML (no kernel).

A widget whose Python callbacks run in a kernel shows only its last output in the built book. These
views therefore precompute one panel per state and switch between them in the browser: a slider is
`jslink`-ed to a `Stack` of panels, both synced widget models that the book's vendored widget
manager (book/_vendor/embed-amd.js) renders from the notebook's saved widget state.

`threshold_explorer` shows, for one conditional vector c and a grid of thresholds tau, the tail
sparsity ratio s_tail(tau) of Eq. (2) and which coordinates tail pruning with that tau removes.
"""

from __future__ import annotations

import html
import io
from collections.abc import Mapping, Sequence
from typing import Any

import ipywidgets as widgets
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from semantic_bottleneck.core.metrics import (
    cosine_similarity_matrix,
    cosine_summary,
    sparsity_ratio,
    tail_mask,
)

MAX_STATES = 64  # every state is a stored PNG; more would make the page heavy
PANEL_SIZE = (5.0, 2.0)  # inches; with PANEL_DPI about 400x160 px, ~15 KB per PNG
PANEL_DPI = 80
KEPT_COLOR = "#1f77b4"
PRUNED_COLOR = "#d62728"


def _vector(c: Any) -> np.ndarray:
    """c as a float64 (d,) numpy array (torch on any device, numpy or a list)."""
    if hasattr(c, "detach"):
        c = c.detach().cpu().double().numpy()
    x = np.asarray(c, dtype=np.float64)
    if x.ndim != 1 or x.size < 1:
        raise ValueError(f"c: expected one conditional vector of shape (d,), got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("c: expected finite values, got NaN or inf")
    return x


def _tau_grid(taus: Any) -> np.ndarray:
    """taus as a float64 (k,) array, validated: 1 <= k <= MAX_STATES, >= 0, strictly increasing."""
    grid = np.asarray(taus, dtype=np.float64)
    if grid.ndim != 1 or not 1 <= grid.size <= MAX_STATES:
        raise ValueError(
            f"taus: expected a 1-d grid of 1 to {MAX_STATES} thresholds, got shape {grid.shape}"
        )
    if not np.all(np.isfinite(grid)) or np.any(grid < 0):
        raise ValueError(f"taus: expected finite thresholds >= 0, got {grid.tolist()}")
    if np.any(np.diff(grid) <= 0):
        raise ValueError(f"taus: expected strictly increasing thresholds, got {grid.tolist()}")
    return grid


def _dims(dims_shown: int | None, d: int) -> int:
    """Number of dimensions to plot: all d when None, else dims_shown checked to lie in [1, d]."""
    if dims_shown is None:
        return d
    if (
        isinstance(dims_shown, bool)
        or not isinstance(dims_shown, (int, np.integer))
        or not 1 <= dims_shown <= d
    ):
        raise ValueError(
            f"dims_shown: expected an integer in [1, d = {d}] or None, got {dims_shown!r}"
        )
    return int(dims_shown)


def tail_text(c: Any, tau: float) -> str:
    """The one-line s_tail summary shown above each panel.

    Args:
        c: one conditional vector.
        tau: threshold >= 0.

    Returns:
        e.g. "s_tail(tau = 0.01) = 0.734: 845 of 1152 dimensions have |c_i| < tau".

    Shapes:
        c (d,) -> str.
    """
    x = _vector(c)
    count = int(np.count_nonzero(tail_mask(x, tau)))
    ratio = sparsity_ratio(x, tau, side="tail")
    return f"s_tail(tau = {tau:.4g}) = {ratio:.3f}: {count} of {x.size} dimensions have |c_i| < tau"


def tail_panels_png(
    c: Any, taus: Any, dims_shown: int | None = None, log: bool = True
) -> list[bytes]:
    """PNGs of |c_i| over the dimensions, one per tau, with the pruned (tail) coordinates in red.

    Every panel shares one figure and fixed axes (only the colours and the tau line move), so
    the states line up when a slider switches between them, and the grid renders quickly.

    Args:
        c: one conditional vector.
        taus: thresholds >= 0, each drawn as a dashed horizontal line.
        dims_shown: plot only the first `dims_shown` dimensions (all when None).
        log: logarithmic y axis (zeros are drawn a decade below the smallest nonzero |c_i|).

    Returns:
        One PNG file's bytes per tau.

    Shapes:
        c (d,), taus (k,) -> k PNGs.
    """
    x = _vector(c)
    grid = _tau_grid(taus)
    n = _dims(dims_shown, x.size)
    v, idx = np.abs(x[:n]), np.arange(n)
    fig = Figure(figsize=PANEL_SIZE, dpi=PANEL_DPI)
    FigureCanvasAgg(fig)  # attaches an Agg canvas: no pyplot state, no inline display
    fig.subplots_adjust(left=0.13, right=0.98, bottom=0.24, top=0.86)
    ax = fig.add_subplot()
    if log:
        # A few massive coordinates dwarf the rest; a log axis keeps small taus visible.
        nonzero = np.concatenate([v[v > 0], grid[grid > 0]])
        low = nonzero.min() / 10 if nonzero.size else 1e-12
        v = np.maximum(v, low)
        ax.set_yscale("log")
        ax.set_ylim(low / 1.5, max(v.max(), grid.max()) * 1.5)
    else:
        ax.set_ylim(0, max(v.max(), grid.max()) * 1.05 or 1.0)
    ax.set_xlim(-0.5, n - 0.5)
    ax.set_xlabel("dimension i", labelpad=1)
    ax.set_ylabel("|c_i|")
    (kept,) = ax.plot([], [], ".", ms=2.5, color=KEPT_COLOR, label="kept")
    (pruned,) = ax.plot([], [], ".", ms=2.5, color=PRUNED_COLOR, label="pruned (|c_i| < tau)")
    line = ax.axhline(grid[0], color="black", lw=0.8, ls="--", label="tau")
    fig.legend(loc="upper center", ncols=3, fontsize=7, frameon=False)
    pngs = []
    for tau in grid:
        mask = np.asarray(tail_mask(x, float(tau)))[:n]
        kept.set_data(idx[~mask], v[~mask])
        pruned.set_data(idx[mask], v[mask])
        line.set_ydata([tau, tau])
        line.set_visible(bool(tau > 0) or not log)  # tau = 0 has no place on a log axis
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=PANEL_DPI)
        pngs.append(buf.getvalue())
    return pngs


def _panel(x: np.ndarray, tau: float, png: bytes) -> widgets.VBox:
    text = widgets.HTML(f"<code>{html.escape(tail_text(x, tau))}</code>")
    return widgets.VBox([text, widgets.Image(value=png, format="png")])


def threshold_explorer(c: Any, taus: Any, dims_shown: int | None = None) -> widgets.VBox:
    """A slider over a tau grid that shows s_tail(tau) and the pruned coordinates of one c.

    All panels are rendered now; the slider switches them in the browser (jslink), so the view
    works in the static book. The slider's readout is tau itself.

    Args:
        c: one conditional vector, torch or numpy.
        taus: strictly increasing thresholds >= 0, at most MAX_STATES of them.
        dims_shown: plot only the first `dims_shown` dimensions (the s_tail text always uses all d).

    Returns:
        A VBox: the slider (`.children[0]`, a SelectionSlider whose index is the state) above a
        Stack (`.children[1]`) with one VBox([HTML text, Image]) per tau.

    Shapes:
        c (d,), taus (k,) -> k states.
    """
    x = _vector(c)
    grid = _tau_grid(taus)
    pngs = tail_panels_png(x, grid, dims_shown)
    stack = widgets.Stack(
        [_panel(x, float(t), png) for t, png in zip(grid, pngs, strict=True)], selected_index=0
    )
    labels = [f"{tau:.4g}" for tau in grid]
    if len(set(labels)) < grid.size:  # SelectionSlider needs unique labels
        labels = [repr(float(tau)) for tau in grid]
    slider = widgets.SelectionSlider(
        options=labels,
        index=0,
        description="tau",
        continuous_update=True,
        layout=widgets.Layout(width="420px"),
    )
    widgets.jslink((slider, "index"), (stack, "selected_index"))
    return widgets.VBox([slider, stack])


def threshold_explorer_by_model(
    models: Mapping[str, Any], taus: Any, dims_shown: int | None = None
) -> widgets.VBox:
    """`threshold_explorer` for several models, chosen with a dropdown (also linked client-side).

    Args:
        models: model name -> its conditional vector c (d may differ between models).
        taus: the tau grid shared by all models.
        dims_shown: as in `threshold_explorer`.

    Returns:
        A VBox: the Dropdown (`.children[0]`) above a Stack of one `threshold_explorer` per model.

    Shapes:
        each c (d_m,), taus (k,) -> len(models) * k states.
    """
    if not isinstance(models, Mapping) or not models:
        raise ValueError(
            f"models: expected a non-empty mapping name -> c, got {type(models).__name__}"
        )
    names: Sequence[str] = list(models)
    grid = _tau_grid(taus)
    if len(names) * grid.size > 4 * MAX_STATES:
        raise ValueError(
            f"models x taus: expected at most {4 * MAX_STATES} states in all, got {len(names)} x {grid.size}"
        )
    stack = widgets.Stack(
        [threshold_explorer(models[n], grid, dims_shown) for n in names], selected_index=0
    )
    dropdown = widgets.Dropdown(options=names, index=0, description="model")
    widgets.jslink((dropdown, "index"), (stack, "selected_index"))
    return widgets.VBox([dropdown, stack])


def pruned_panels_png(
    c: Any, taus: Any, cls: int = 0, max_classes: int = 50, seed: int = 0
) -> tuple[list[bytes], list[str]]:
    """Per tau: |c_i| of one class with its tail-pruned coordinates marked, and the cosine matrix
    of the tail-pruned c over (up to max_classes randomly chosen) classes.

    Args:
        c: conditional vectors of all classes, (n, d).
        taus: thresholds; each state prunes |c_i| < tau, the mask taken per class.
        cls: the class whose vector the left panel draws.
        max_classes: classes in the cosine matrix (a fixed seeded subset when n is larger).
        seed: seed of that subset.

    Returns:
        (PNG bytes per tau, summary text per tau).

    Shapes:
        c (n, d), taus (k,) -> k PNGs and k strings.
    """
    x = c.detach().cpu().double().numpy() if hasattr(c, "detach") else np.asarray(c, np.float64)
    if x.ndim != 2 or x.shape[0] < 2 or not 0 <= cls < x.shape[0]:
        raise ValueError(f"c: expected (n >= 2, d) with 0 <= cls < n, got {x.shape}, cls={cls}")
    grid = _tau_grid(taus)
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(x.shape[0], min(max_classes, x.shape[0]), replace=False))
    pngs, texts = [], []
    for tau in grid:
        mask = np.asarray(tail_mask(x, float(tau)))
        pruned = np.where(mask, 0.0, x)
        v, m = np.abs(x[cls]), mask[cls]
        fig = Figure(figsize=(8.0, 2.8), dpi=PANEL_DPI)
        FigureCanvasAgg(fig)
        left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.6, 1]})
        idx = np.arange(v.size)
        floor = max(v[v > 0].min() / 10 if (v > 0).any() else 1e-12, 1e-12)
        left.semilogy(idx[~m], np.maximum(v[~m], floor), ".", ms=2.5, color=KEPT_COLOR)
        left.semilogy(idx[m], np.maximum(v[m], floor), ".", ms=2.5, color=PRUNED_COLOR)
        if tau > 0:
            left.axhline(tau, color="black", lw=0.8, ls="--")
        left.set(xlabel="dimension i", ylabel=f"|c_i|, class {cls}")
        kept = ~np.all(pruned[rows] == 0, axis=1)
        if kept.sum() >= 2:
            cos = np.asarray(cosine_similarity_matrix(pruned[rows][kept]))
            image = right.imshow(cos, vmin=-1, vmax=1, cmap="viridis")
            fig.colorbar(image, ax=right, fraction=0.046, pad=0.04, label="cosine")
            summary = cosine_summary(pruned[rows][kept])
            cos_text = f"mean cosine of pruned c {summary['mean']:.4f} (min {summary['min']:.4f})"
        else:
            cos_text = "pruned c is zero for all but at most one class"
        right.set(title="cosine of pruned c", xticks=[], yticks=[])
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=PANEL_DPI)
        pngs.append(buf.getvalue())
        ratio = float(np.mean(np.asarray(sparsity_ratio(x, float(tau), side="tail"))))
        texts.append(f"tau = {tau:.4g}: s_tail = {ratio:.3f} (mean over classes); {cos_text}")
    return pngs, texts


def pruning_explorer(models: Mapping[str, Any], taus: Any, cls: int = 0) -> widgets.VBox:
    """Choose a model and tau; see s_tail, the pruned mask of one class and the cosine matrix of
    the pruned c. Every state is precomputed and switched in the browser (static HTML).

    Args:
        models: model name -> c of all its classes (n, d).
        taus: strictly increasing thresholds >= 0 shared by all models.
        cls: the class whose mask is drawn.

    Returns:
        A VBox: Dropdown (model) and SelectionSlider (tau) above a Stack per model of Stacks per tau.

    Shapes:
        each c (n_m, d_m), taus (k,) -> len(models) * k states.
    """
    if not isinstance(models, Mapping) or not models:
        raise ValueError(f"models: expected a non-empty mapping name -> c, got {models!r}")
    grid = _tau_grid(taus)
    if len(models) * grid.size > 4 * MAX_STATES:
        raise ValueError(
            f"models x taus: at most {4 * MAX_STATES} states, got {len(models)} x {grid.size}"
        )
    slider = widgets.SelectionSlider(
        options=[f"{t:.4g}" for t in grid],
        index=0,
        description="tau",
        layout=widgets.Layout(width="420px"),
    )
    per_model = []
    for c in models.values():
        pngs, texts = pruned_panels_png(c, grid, cls)
        panels = [
            widgets.VBox(
                [
                    widgets.HTML(f"<code>{html.escape(t)}</code>"),
                    widgets.Image(value=p, format="png"),
                ]
            )
            for p, t in zip(pngs, texts, strict=True)
        ]
        inner = widgets.Stack(panels, selected_index=0)
        widgets.jslink((slider, "index"), (inner, "selected_index"))
        per_model.append(inner)
    outer = widgets.Stack(per_model, selected_index=0)
    dropdown = widgets.Dropdown(options=list(models), index=0, description="model")
    widgets.jslink((dropdown, "index"), (outer, "selected_index"))
    return widgets.VBox([widgets.HBox([dropdown, slider]), outer])
