"""One function per figure kind. Each takes measured arrays and returns a matplotlib Figure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

from semantic_bottleneck import display, metrics

sns.set_theme(style="whitegrid", context="notebook")


def _np(x) -> np.ndarray:
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


def cosine_heatmap(c, zoom: int = 10, seed: int = 0, title: str = ""):
    """Fig. 3 / 14-19: the pairwise cosine matrix of c over classes and a zoom on random classes.

    Args:
        c: (n, d) conditional vectors, one per class.
        zoom: number of randomly chosen classes in the zoomed panel.
        seed: seed of that choice.
        title: figure title (model name).
    """
    cos = _np(metrics.cosine_similarity_matrix(c))
    n = cos.shape[0]
    pick = np.sort(np.random.default_rng(seed).choice(n, size=min(zoom, n), replace=False))
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.4), gridspec_kw={"width_ratios": [1.15, 1]})
    sns.heatmap(
        cos,
        ax=axes[0],
        cmap="viridis",
        square=True,
        cbar=True,
        xticklabels=False,
        yticklabels=False,
    )
    axes[0].set(title=f"{n} x {n} classes", xlabel="class", ylabel="class")
    sns.heatmap(
        cos[np.ix_(pick, pick)],
        ax=axes[1],
        cmap="viridis",
        square=True,
        annot=n <= 1000 and zoom <= 10,
        fmt=".3f",
        annot_kws={"size": 6},
        xticklabels=pick,
        yticklabels=pick,
        cbar=False,
    )
    axes[1].set(title=f"zoom: {len(pick)} random classes (seed {seed})")
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
    """Fig. 1: one bar group per model for each column (e.g. cosine and nPR)."""
    fig, axes = plt.subplots(1, len(columns), figsize=(4.2 * len(columns), 3.4), squeeze=False)
    table = table.assign(**{c: 100 * table[c] for c in columns if c in display.PERCENT_KEYS})
    for ax, col in zip(axes[0], columns, strict=True):
        sns.barplot(data=table, x=label, y=col, hue=label, ax=ax, legend=False)
        ax.set(title=display.label(col), xlabel="")
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
    axes[0].set(ylabel="cosine similarity of c", title=f"{prefix} statistics")
    axes[1].set(ylabel="nPR", xlabel="training step")
    axes[0].legend(fontsize=8)
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    return fig


def sample_grids(grids, rows=None, max_classes: int = 10):
    """Figs. 7, 8, 34-37: samples under each pruning level, one row of panels per level.

    Args:
        grids: row label -> uint8 images (classes, per_class, H, W, 3).
        rows: which labels to draw, in order (default: all).
        max_classes: classes drawn per level.
    """
    rows = list(grids) if rows is None else rows
    fig, axes = plt.subplots(len(rows), 1, figsize=(9, 1.3 * len(rows)), squeeze=False)
    for ax, label in zip(axes[:, 0], rows, strict=True):
        g = np.asarray(grids[label])[:max_classes]  # (classes, per, H, W, 3)
        classes, per, h, w, _ = g.shape
        tiles = g.transpose(1, 2, 0, 3, 4).reshape(per * h, classes * w, 3)
        ax.imshow(tiles, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
    fig.tight_layout()
    return fig
