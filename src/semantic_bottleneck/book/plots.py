"""One function per figure kind. Each takes measured arrays and returns a matplotlib Figure.

Where the paper gives a value for what a figure shows, the figure draws it as a reference mark
(grey, dashed, labelled "paper"), read from `paper` (data/paper_values.yaml), so a reader sees
the measured curve against the paper's number without looking it up.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np

from semantic_bottleneck.book import display
from semantic_bottleneck.core import metrics
from semantic_bottleneck.verdicts import paper

# seaborn's "whitegrid" look at "notebook" scale with its "deep" palette, from matplotlib's own
# copies of those style sheets (importing seaborn costs every page a second)
plt.style.use(["seaborn-v0_8-whitegrid", "seaborn-v0_8-notebook", "seaborn-v0_8-deep"])
PAPER_MARK = dict(color="0.35", ls="--", lw=1.0)  # the paper's values in every figure


def _claim(claim_id: str) -> dict:
    return next(c for c in paper.paper_values()["claims"] if c["id"] == claim_id)


def _np(x) -> np.ndarray:
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


def heatmap(ax, values: np.ndarray, label: str, ticks=None, annotate: bool = False) -> None:
    """A square heatmap with its colour bar (`label`); `ticks` label rows and columns (none when
    None), `annotate` writes each value to 3 places."""
    image = ax.imshow(values, cmap="viridis", interpolation="nearest", aspect="equal")
    ax.figure.colorbar(image, ax=ax, label=label)
    ax.grid(False)
    if ticks is None:
        ax.set_xticks([])
        ax.set_yticks([])
    else:
        ax.set_xticks(range(len(ticks)), [str(t) for t in ticks], rotation=90, fontsize=7)
        ax.set_yticks(range(len(ticks)), [str(t) for t in ticks], fontsize=7)
    if annotate:
        middle = (np.nanmin(values) + np.nanmax(values)) / 2
        for (i, j), v in np.ndenumerate(values):
            colour = "black" if v > middle else "white"  # viridis is light at the top
            ax.text(j, i, f"{v:.3f}", ha="center", va="center", fontsize=6, color=colour)


def cosine_heatmap(c, zoom: int = 10, seed: int = 0, title: str = "", what: str = "classes"):
    """Fig. 3 / 14-19 (and 4c): the pairwise cosine matrix of c over classes (or conditions) and
    a zoom on random ones.

    Args:
        c: (n, d) conditional vectors, one per class.
        zoom: number of randomly chosen classes in the zoomed panel.
        seed: seed of that choice.
        title: figure title (model name).
        what: what the rows are, for the axis labels ("classes", "conditions").
    """
    cos = _np(metrics.cosine_similarity_matrix(c))
    n = cos.shape[0]
    pick = np.sort(np.random.default_rng(seed).choice(n, size=min(zoom, n), replace=False))
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.4), gridspec_kw={"width_ratios": [1.15, 1]})
    heatmap(axes[0], cos, "cosine")
    one = what.removesuffix("es") if what.endswith("sses") else what.removesuffix("s")
    axes[0].set(title=f"{n} x {n} {what}", xlabel=one, ylabel=one)
    heatmap(axes[1], cos[np.ix_(pick, pick)], "cosine", pick, n <= 1000 and zoom <= 10)
    axes[1].set(title=f"zoom: {len(pick)} random {what} (seed {seed})")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def magnitude_histograms(cs: Mapping[str, object], bins: int = 60):
    """Fig. 5: histogram of |c_i| over all classes and dimensions, one panel per model."""
    fig, axes = plt.subplots(1, len(cs), figsize=(3.6 * len(cs), 3.2), squeeze=False)
    for ax, (label, c) in zip(axes[0], cs.items(), strict=True):
        v = np.abs(_np(c)).ravel()
        ax.hist(v, bins=np.logspace(np.log10(max(v.min(), 1e-6)), np.log10(v.max()), bins))
        ax.set(xscale="log", yscale="log", title=label, xlabel="|c_i|", ylabel="count")
    fig.tight_layout()
    return fig


def c_over_dimensions(cs: Mapping[str, object], cls: int = 0):
    """Fig. 6: c_i against the dimension index i for one class, one row per model."""
    fig, axes = plt.subplots(len(cs), 1, figsize=(9, 1.9 * len(cs)), squeeze=False)
    for ax, (label, c) in zip(axes[:, 0], cs.items(), strict=True):
        v = _np(c)[cls]
        ax.plot(np.arange(v.size), v, lw=0.8)
        ax.set(title=f"{label}, class {cls}", xlabel="dimension i", ylabel="c_i")
    fig.tight_layout()
    return fig


def bars(table, columns: Sequence[str], label: str = "model"):
    """Fig. 1: one bar group per model for each column (e.g. cosine and nPR), with the range
    of the paper's six ImageNet models (Table 1) as a grey band where the paper prints it."""
    fig, axes = plt.subplots(1, len(columns), figsize=(4.2 * len(columns), 3.4), squeeze=False)
    table = table.assign(**{c: 100 * table[c] for c in columns if c in display.PERCENT_KEYS})
    theirs = paper.paper_table("table1").head(6)  # the six ImageNet models
    for ax, col in zip(axes[0], columns, strict=True):
        colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        names = [str(v) for v in table[label]]
        ax.bar(names, table[col], color=[colours[i % len(colours)] for i in range(len(names))])
        if col in theirs.columns:
            ref = theirs[col] * (100 if col in display.PERCENT_KEYS else 1)
            ax.axhspan(ref.min(), ref.max(), color="0.5", alpha=0.18, lw=0)
            ax.axhline(ref.median(), **PAPER_MARK, label="paper: median and range of 6 models")
            ax.legend(fontsize=7, loc="best")
        ax.set(title=display.label(col), xlabel="", ylabel="")
        ax.tick_params(axis="x", rotation=30)
        for cont in ax.containers:
            ax.bar_label(cont, fmt="%.3g", fontsize=8)
    fig.tight_layout()
    return fig


def variance_plots(cs: Mapping[str, object]):
    """Fig. 9 / 26-31: (a) mean variance across classes per model; (b) per-dimension variance."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), gridspec_kw={"width_ratios": [1, 2.2]})
    means = {label: metrics.mean_class_variance(c) for label, c in cs.items()}
    axes[0].bar(list(means), list(means.values()))
    axes[0].set(title="(a) mean variance across classes", yscale="log")
    axes[0].tick_params(axis="x", rotation=30)
    for label, c in cs.items():
        axes[1].plot(_np(metrics.class_variance(c)), lw=0.8, label=label)
    axes[1].set(
        title="(b) variance across classes per dimension",
        xlabel="dimension i",
        ylabel="variance",
        yscale="log",
    )
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    return fig


def threshold_curves(curves: Mapping[str, np.ndarray], taus: np.ndarray):
    """Fig. 11: fraction of dimensions with |c_i| < tau against tau, one line per model."""
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for label, frac in curves.items():
        ax.plot(taus, frac, label=label)
    claim = _claim("threshold-curve-saturates")
    ax.axvline(claim["saturation_tau"], **PAPER_MARK, label="paper: saturates near tau = 0.02")
    lo, hi = claim["fraction_below_range"]
    ax.axhspan(lo, hi, color="0.5", alpha=0.12, lw=0, label="paper: 50-90% of dims below")
    ax.set(xscale="log", xlabel="tau", ylabel="fraction of dims with |c_i| < tau", ylim=(0, 1.02))
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def training_curves(logs: Mapping[str, Sequence[dict]], prefix: str = "classes"):
    """Fig. 12 / 43: cosine of c (top) and nPR (bottom) over training steps.

    Args:
        logs: label -> monitor records (training.monitor), each with `step` and statistics.
        prefix: "classes" (all classes at the initial t) or "batch" (the training batches).
    """
    fig, axes = plt.subplots(2, 1, figsize=(7.5, 5.6), sharex=True)
    for i, (label, records) in enumerate(logs.items()):
        color = f"C{i}"  # one colour per model: solid = mean nPR, dashed = nPR of the mean c
        rec = [r for r in records if f"{prefix}_npr_mean" in r]
        steps = [r["step"] for r in rec]
        axes[0].plot(steps, [r[f"{prefix}_cos_mean"] for r in rec], color=color, label=label)
        axes[1].plot(
            steps, [r[f"{prefix}_npr_mean"] for r in rec], color=color, label=f"{label}: mean nPR"
        )
        axes[1].plot(
            steps,
            [r[f"{prefix}_npr_of_mean"] for r in rec],
            color=color,
            ls="--",
            label=f"{label}: nPR of mean c",
        )
    levels = _claim("npr-falls-during-training")["npr_training"]
    axes[1].axhline(levels["from"], **PAPER_MARK, label="paper (REPA-B/2): about 90% early")
    axes[1].axhline(
        levels["to_below"], color="0.35", ls=":", lw=1.0, label="paper: under 6% at 200k"
    )
    axes[0].set(ylabel="cosine similarity of c", title=f"{prefix} statistics")
    axes[1].set(ylabel="nPR", xlabel="training step")
    axes[0].legend(fontsize=8)
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    return fig


REAL = "real digits"  # the grid a sweep adds of real images of each class, drawn first


def sample_grids(grids, rows=None, max_classes: int = 10):
    """Figs. 7, 8, 34-37: samples under each pruning level, one row of panels per level, below
    the real images of the same classes when the sweep provides them (`REAL`).

    Args:
        grids: row label -> uint8 images (classes, per_class, H, W, 3).
        rows: which labels to draw, in order (default: all); `REAL` is drawn first when present.
        max_classes: classes drawn per level.
    """
    rows = list(grids) if rows is None else list(rows)
    if REAL in grids and REAL not in rows:
        rows = [REAL, *rows]
    per = max(np.asarray(grids[label]).shape[1] for label in rows)
    fig, axes = plt.subplots(
        len(rows), 1, figsize=(11, 1.25 * per * len(rows) + 0.4), squeeze=False
    )
    for ax, label in zip(axes[:, 0], rows, strict=True):
        g = np.asarray(grids[label])[:max_classes]  # (classes, per, H, W, 3)
        classes, per, h, w, _ = g.shape
        tiles = g.transpose(1, 2, 0, 3, 4).reshape(per * h, classes * w, 3)
        ax.imshow(tiles, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.grid(False)
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=10)
    axes[0, 0].set_title("one column per class", fontsize=8)
    fig.tight_layout()
    return fig
