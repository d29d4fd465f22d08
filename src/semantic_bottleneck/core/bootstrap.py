"""Bootstrap intervals: resampling, percentile intervals, their scaling to another sample count,
and the class bootstrap of the statistics of c (Table 1).

- `stratified_indices`: B resamples of N items with replacement, within each stratum (a class of a
  class-balanced sample set keeps its count, as the sampled sets of the sweeps do).
- `percentile_interval`: the 2.5% and 97.5% points of the bootstrap values (a 95% interval).
- `scaled_interval`: the same interval for a count n_to instead of n_from. The bootstrap spread of
  a smooth statistic of n independent samples shrinks as n^{-1/2}, so the interval's distances from
  the estimate are multiplied by sqrt(n_from / n_to); the estimate itself stays.
- `class_intervals`: mean cosine, nPR and s_tail(0.01) of c with intervals over classes: the
  classes (rows of c) resampled with replacement, pairs of one class with itself left out of the
  cosine mean; `class_interval_table` gives them per model as Table 1's page shows them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from torch import Tensor

from semantic_bottleneck.core import metrics

LEVEL = 0.95  # every interval of the book


def _count(value, what: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise ValueError(f"{what}: expected an integer >= {low}, got {value!r}")
    return int(value)


def stratified_indices(strata: Sequence[int], n_boot: int, seed: int = 0) -> np.ndarray:
    """B resamples with replacement of the items, each within its stratum.

    Args:
        strata: stratum (e.g. class label) of each item.
        n_boot: number of resamples B.
        seed: generator seed.

    Returns:
        int64 indices; row b is resample b, each stratum drawing as many items as it has.

    Shapes: strata (N,) -> (B, N).
    """
    strata = np.asarray(strata)
    if strata.ndim != 1 or strata.size < 2:
        raise ValueError(f"strata: expected a 1-d sequence of >= 2 items, got shape {strata.shape}")
    n_boot = _count(n_boot, "n_boot", 1)
    rng = np.random.default_rng(seed)
    out = np.empty((n_boot, strata.size), dtype=np.int64)
    for value in np.unique(strata):
        members = np.flatnonzero(strata == value)
        out[:, members] = rng.choice(members, size=(n_boot, members.size), replace=True)
    return out


def percentile_interval(values) -> tuple[float, float]:
    """The 95% percentile interval of bootstrap values. Shapes: (B,) -> (low, high)."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or v.size < 2 or not np.isfinite(v).all():
        raise ValueError(f"values: expected >= 2 finite bootstrap values, got {v.size}")
    tail = 100 * (1 - LEVEL) / 2
    low, high = np.percentile(v, [tail, 100 - tail])
    return float(low), float(high)


def scaled_interval(
    estimate: float, interval: tuple[float, float], n_from: int, n_to: int
) -> tuple[float, float]:
    """The interval an estimate from n_to samples would have, given its interval at n_from:
    distances from the estimate times sqrt(n_from / n_to) (spread as n^{-1/2})."""
    n_from, n_to = _count(n_from, "n_from", 1), _count(n_to, "n_to", 1)
    factor = math.sqrt(n_from / n_to)
    low, high = interval
    return estimate + (low - estimate) * factor, estimate + (high - estimate) * factor


def off_diagonal_cosine(cos: np.ndarray, picks: np.ndarray) -> float:
    """Mean cosine over the pairs of picked rows that are different classes.

    Shapes: cos (K, K) the cosine matrix of c, picks (M,) row indices with repeats -> scalar.
    """
    other = picks[:, None] != picks[None, :]
    return float(cos[np.ix_(picks, picks)][other].mean())


CLASS_STATISTICS = ("cosine", "npr", "s_tail_0_01")


def class_intervals(c: Tensor, n_boot: int = 1000, seed: int = 0) -> dict[str, float]:
    """Mean cosine, mean nPR and mean s_tail(0.01) of c over classes, each with its 95%
    bootstrap interval over classes.

    Args:
        c: c of every class (or condition) at the initial t.
        n_boot: resamples of the classes.
        seed: generator seed.

    Returns:
        {name: estimate, f"{name}_low": ..., f"{name}_high": ...} for each of `CLASS_STATISTICS`.

    Shapes: c (K, d) with K >= 3.
    """
    if c.dim() != 2 or c.shape[0] < 3:
        raise ValueError(f"c: expected (K, d) with K >= 3 classes, got {tuple(c.shape)}")
    c = c.detach().cpu()
    npr = np.asarray(metrics.normalized_participation_ratio(c), dtype=np.float64)
    s_tail = np.asarray(metrics.sparsity_ratio(c, 0.01, "tail"), dtype=np.float64)
    cos = np.asarray(metrics.cosine_similarity_matrix(c), dtype=np.float64)
    k = c.shape[0]
    picks = stratified_indices(np.zeros(k, dtype=np.int64), n_boot, seed)
    per_class = {"npr": npr, "s_tail_0_01": s_tail}
    out = {"cosine": off_diagonal_cosine(cos, np.arange(k))}
    # a resample of one class repeated has no pair of different classes: it is left out
    boot = {"cosine": [off_diagonal_cosine(cos, p) for p in picks if len(set(p)) > 1]}
    for name, values in per_class.items():
        out[name] = float(values.mean())
        boot[name] = values[picks].mean(axis=1)
    for name in CLASS_STATISTICS:
        out[f"{name}_low"], out[f"{name}_high"] = percentile_interval(boot[name])
    return out


# how Table 1's page writes each statistic and its interval
_CLASS_FORMATS = {"cosine": "{:.4f}", "npr": "{:.2%}", "s_tail_0_01": "{:.3f}"}
_CLASS_HEADERS = {
    "cosine": "mean cosine [95% interval]",
    "npr": "nPR [95% interval]",
    "s_tail_0_01": "s_tail(0.01) [95% interval]",
}


def class_interval_table(models, n_boot: int = 1000, seed: int = 0) -> tuple:
    """`class_intervals` of each model's c at its initial t, as Table 1's page shows them, and
    the values its text quotes.

    Args:
        models: `analysis.ModelC` (anything with `label` and `c()`).
        n_boot: resamples of the classes.
        seed: generator seed.

    Returns:
        (table, values): one row per model (model, classes, each statistic as "estimate [low,
        high]", and the nPR and cosine interval widths, npr_width in points of d); values
        {name: (value, format)}: ci_boot (n_boot), npr_width_max and cos_width_max (the widest
        intervals over models; None without models).
    """
    rows = []
    for m in models:
        c = m.c()
        ci = class_intervals(c, n_boot, seed)
        row = {"model": m.label, "classes": int(c.shape[0])}
        for name in CLASS_STATISTICS:
            fmt = _CLASS_FORMATS[name]
            row[_CLASS_HEADERS[name]] = (
                f"{fmt.format(ci[name])} [{fmt.format(ci[name + '_low'])}, "
                f"{fmt.format(ci[name + '_high'])}]"
            )
        row["nPR width (points)"] = 100 * (ci["npr_high"] - ci["npr_low"])
        row["cosine width"] = ci["cosine_high"] - ci["cosine_low"]
        rows.append(row)
    columns = ["model", "classes", *_CLASS_HEADERS.values(), "nPR width (points)", "cosine width"]
    table = pd.DataFrame(rows, columns=columns)
    have = len(table) > 0
    values = {
        "ci_boot": (n_boot, "{}"),
        "npr_width_max": (table["nPR width (points)"].max() if have else None, "{:.2f}"),
        "cos_width_max": (table["cosine width"].max() if have else None, "{:.4f}"),
    }
    return table, values
