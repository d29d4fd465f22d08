"""Section 6.2's mechanism measured: c = T + Y, and c over the whole sampler grid.

At one t every class shares T = t_embedder(t) and differs only by its label row Y_y =
y_embedder(y). Write m = T + mean_y(Y_y) for the part every class shares and delta_y = Y_y - mean
for the rest; the spread s is the rms norm of the delta_y. When the c_y have about equal norms,
the mean pairwise cosine over y != y' is

    cos ~ (|m|^2 - s^2 / (n - 1)) / (|m|^2 + s^2),

because the delta_y sum to zero (their mean pairwise dot product is -s^2 / (n - 1)). So c is
aligned exactly when the shared part outweighs the spread of the labels: |m| / s large. With the
label mean left out (m = T), the ratio is |T| / s, the form of the paper's explanation.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from torch import Tensor

from semantic_bottleneck import sampling
from semantic_bottleneck.book import display
from semantic_bottleneck.book.plots import PAPER_MARK
from semantic_bottleneck.core import metrics
from semantic_bottleneck.core.analysis import ModelC
from semantic_bottleneck.generation.source import checkpoint_source
from semantic_bottleneck.training.testbed import testbed_source
from semantic_bottleneck.verdicts.paper import paper_table

TOP_K = 10


def time_label_split(model: ModelC, t: float | None = None, k: int = TOP_K) -> dict:
    """The c = T + Y decomposition of one model at time t (the initial t by default).

    Returns:
        model; t_norm (||T||); y_spread (rms ||Y_y - mean Y||); shared_norm (||T + mean Y||);
        ratio_t (t_norm / y_spread) and ratio_shared (shared_norm / y_spread); npr_t (nPR of T)
        and npr_y (mean nPR of the Y_y); t_share_top_k (over each class's k largest |c_i|, the
        share of sum |T_i| in sum |T_i| + |Y_y,i|, averaged over classes); cosine (measured
        mean) and cosine_predicted (the module formula).
    """
    t = model.time.initial_t if t is None else t
    time, labels = model.time_only(t), model.label_only()  # (1, d), (n, d)
    c = time + labels
    n = labels.shape[0]
    spread, shared = label_spread(labels), shared_norm(time, labels)
    top = c.abs().topk(min(k, c.shape[1]), dim=1).indices  # (n, k)
    t_top = time.abs().expand_as(c).gather(1, top)
    y_top = labels.abs().gather(1, top)
    share = (t_top.sum(1) / (t_top + y_top).sum(1)).mean()
    return {
        "model": model.label,
        "t_norm": float(time.norm()),
        "y_spread": spread,
        "shared_norm": shared,
        "ratio_t": _ratio(float(time.norm()), spread),
        "ratio_shared": _ratio(shared, spread),
        "npr_t": float(metrics.normalized_participation_ratio(time).mean()),
        "npr_y": float(metrics.normalized_participation_ratio(labels).mean()),
        "t_share_top_k": float(share),
        "cosine": float(metrics.cosine_summary(c)["mean"]),
        "cosine_predicted": predicted_cosine(shared, spread, n),
    }


def label_spread(labels: Tensor) -> float:
    """rms ||Y_y - mean Y|| over the label rows. Shapes: labels (n, d)."""
    return float((labels - labels.mean(0)).pow(2).sum(1).mean().sqrt())


def shared_norm(time: Tensor, labels: Tensor) -> float:
    """||T + mean Y||, the part of c every class shares. Shapes: time (1, d), labels (n, d)."""
    return float((time[0] + labels.mean(0)).norm())


def _ratio(a: float, b: float) -> float:
    """a / b, infinite for b = 0 (every class the same vector)."""
    return a / b if b > 0 else math.inf


def predicted_cosine(shared_norm: float, spread: float, n: int) -> float:
    """Mean pairwise cosine of n vectors m + delta_y with sum delta_y = 0, rms |delta| = spread,
    and equal norms: (|m|^2 - s^2 / (n - 1)) / (|m|^2 + s^2)."""
    if n < 2:
        raise ValueError(f"need at least 2 classes, got {n}")
    m2, s2 = shared_norm**2, spread**2
    return (m2 - s2 / (n - 1)) / (m2 + s2)


def mechanism_table(models: list[ModelC], k: int = TOP_K) -> pd.DataFrame:
    """`time_label_split` of every model at its initial t, one row each."""
    return pd.DataFrame([time_label_split(m, k=k) for m in models])


def grid_statistics(model: ModelC, times: list[float]) -> pd.DataFrame:
    """Table 1's statistics of c at every distinct time of a sampler grid, in sampler order.

    Args:
        model: the model's conditioning.
        times: the t the model is fed per call (`sampling.model_times`); repeats are dropped.

    Returns:
        one row per distinct t: step (its first call index), t, cosine (mean), cosine_min, npr
        (mean over classes, a fraction of d), max_abs_c, and the T + Y split's ratio_shared.
    """
    labels = model.label_only()  # the same at every t
    spread = label_spread(labels)
    rows, seen = [], set()
    for step, t in enumerate(times):
        if t in seen:
            continue
        seen.add(t)
        c = model.c(t)
        cos = metrics.cosine_summary(c)
        rows.append(
            {
                "model": model.label,
                "step": step,
                "t": t,
                "cosine": float(cos["mean"]),
                "cosine_min": float(cos["min"]),
                "npr": float(metrics.normalized_participation_ratio(c).mean()),
                "max_abs_c": float(c.abs().max()),
                "ratio_shared": _ratio(shared_norm(model.time_only(t), labels), spread),
            }
        )
    return pd.DataFrame(rows)


def grid_summary(table: pd.DataFrame) -> pd.DataFrame:
    """First, last, lowest and highest mean cosine and nPR over each model's grid."""
    out = []
    for label, g in table.groupby("model", sort=False):
        out.append(
            {
                "model": label,
                "steps": len(g),
                "cosine_first": g["cosine"].iloc[0],
                "cosine_last": g["cosine"].iloc[-1],
                "cosine_lowest": g["cosine"].min(),
                "npr_first": g["npr"].iloc[0],
                "npr_last": g["npr"].iloc[-1],
                "npr_lowest": g["npr"].min(),
            }
        )
    return pd.DataFrame(out)


def sampler_grid(profile: str, name: str) -> list[float]:
    """The t a model is fed at each call of its own headline sampler (`sampling.model_times`)."""
    source = testbed_source(name) if profile == "testbed" else checkpoint_source(name)
    return sampling.model_times(source.sampler_config())


def cosine_from_ratio_figure(table: pd.DataFrame, classes: dict[str, int]):
    """Measured mean cosine of each model against its ratio ||T + mean Y|| / spread, on the
    curve the module formula predicts for its number of classes."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2), constrained_layout=True)
    hi = max(4.0, 1.2 * float(table["ratio_shared"].max())) if len(table) else 4.0
    r = np.linspace(0.0, hi, 400)
    for n in sorted(set(classes.values())):
        ax.plot(
            r,
            [predicted_cosine(x, 1.0, n) for x in r],
            color="0.5",
            lw=1,
            linestyle="-" if n > 10 else "-.",
            label=f"predicted, {n} classes",
        )
    for _, row in table.iterrows():
        ax.scatter(row["ratio_shared"], row["cosine"], s=36, zorder=3, label=row["model"])
    ax.axhline(0.99, **PAPER_MARK, label="paper: cosine > 0.99")
    ax.set(
        xlabel=display.label("ratio_shared"),
        ylabel="mean cosine over class pairs",
        ylim=(min(0.0, float(table["cosine"].min()) - 0.05) if len(table) else 0.0, 1.02),
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return fig


def grid_figure(grids: pd.DataFrame):
    """Mean cosine, min cosine and nPR of c over each model's sampler run (x: the share of the
    run done, 0 = the first, pure-noise step), the paper's Table 1 range as a band."""
    theirs = paper_table("table1").head(6)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), constrained_layout=True)
    for ax, key in zip(axes, ("cosine", "cosine_min", "npr"), strict=True):
        scale = 100 if key in display.PERCENT_KEYS else 1
        for label, g in grids.groupby("model", sort=False):
            progress = g["step"] / max(int(g["step"].max()), 1)
            ax.plot(progress, scale * g[key], label=label)
        if key in theirs.columns:
            ref = scale * theirs[key]
            ax.axhspan(
                ref.min(),
                ref.max(),
                color="0.5",
                alpha=0.18,
                lw=0,
                label="paper, first step: range of 6 models",
            )
        ax.set(xlabel="share of the sampler run done", ylabel=display.label(key))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    return fig
