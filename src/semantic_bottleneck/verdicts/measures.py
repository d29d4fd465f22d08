"""Per-model measurements behind the claims ledger (`ledger.py`).

`model_table` computes, once per model, every quantity a text claim of the paper refers to (at
the model's initial t); the small functions below turn that table, or the training logs, into
one `Measurement` per claim: the median over the models the claim covers, with each model's value
listed beside it. Counts of dimensions become fractions of d, so a model of another width is
judged at the same proportion as the paper's 1152-wide models.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from semantic_bottleneck.core import analysis, metrics
from semantic_bottleneck.training.testbed import curve_summary
from semantic_bottleneck.verdicts import paper

PAPER_D = 1152  # the width the paper's dimension counts refer to


@dataclass(frozen=True)
class Measurement:
    """A measured value for one claim.

    Attributes:
        value: the number the rule judges (a pair for `Both` and `Decline`).
        text: how the page shows it.
        detail: per-model values or other context.
        evidence: pages (notebook names) that show it; empty keeps the claim's own.
    """

    value: float | tuple[float, float]
    text: str
    detail: str = ""
    evidence: tuple[str, ...] = ()


def model_table(models: Sequence[analysis.ModelC]) -> pd.DataFrame:
    """Every per-model quantity a claim needs, one row per model, at the initial t.

    Args:
        models: the run's models (analysis.load_models).

    Returns:
        A DataFrame with the columns: model, paper_name (the paper's name of an official
    checkpoint, else None), continuous (a continuous-condition model), is_dit (the DiT checkpoint, or a DiT-class model in the DDPM convention on the testbed), d, cosine,
    cosine_min, npr, dims_above_0_1, dims_above_1, max_abs_c, s_tail_0_01, mean_variance,
    top_share (share of the variance across classes in the top 20 * d / 1152 dims) and
    mean_c_below_0_01 and mean_c_below_0_02 (fractions of the class-mean c's dims with
    |c_i| below 0.01 and 0.02).
    """
    names = set(paper.PAPER_MODEL_NAMES.values())
    rows = []
    for m in models:
        c = m.c()
        stats = analysis.statistics_row(m, c)
        mags = analysis.magnitude_summary(m)
        k = max(1, round(20 * m.d / PAPER_D))
        var = analysis.variance_row(m, k=k)
        paper_name = m.label if m.label in names else None
        rows.append(
            {
                "model": m.label,
                "paper_name": paper_name,
                "continuous": m.continuous,
                "is_dit": paper_name == "DiT"
                or (paper_name is None and m.family == "dit" and m.time.name == "ddpm"),
                "d": m.d,
                "cosine": stats["cosine"],
                "cosine_min": stats["cosine_min"],
                "npr": stats["npr"],
                "dims_above_0_1": mags["dims_above_0_1"],
                "dims_above_1": mags["dims_above_1"],
                "max_abs_c": mags["max_abs_c"],
                "s_tail_0_01": mags["s_tail_0_01"],
                "mean_variance": var["mean_variance"],
                "top_share": var["top_share"],
                "mean_c_below_0_01": float(metrics.sparsity_ratio(c.mean(0), 0.01, "tail")),
                "mean_c_below_0_02": float(metrics.sparsity_ratio(c.mean(0), 0.02, "tail")),
            }
        )
    return pd.DataFrame(rows)


def _scope(table: pd.DataFrame, names: Sequence[str] | None) -> pd.DataFrame:
    """The rows a claim about `names` covers: those models among official checkpoints; on the
    testbed (no official checkpoint in the table) every model stands in."""
    if table.empty or names is None or table["paper_name"].isna().all():
        return table
    return table[table["paper_name"].isin(list(names))]


def median_over(
    table: pd.DataFrame, column: str, fmt: str, names: Sequence[str] | None = None
) -> Measurement | None:
    """The median of one column over the models a claim covers.

    Args:
        table: `model_table` output.
        column: the quantity.
        fmt: format of one value, e.g. "{:.4f}".
        names: the paper's model names the claim is about (None: every model).

    Returns:
        Measurement(median, text, per-model detail), or None when no model is covered.
    """
    rows = _scope(table, names)
    if rows.empty:
        return None
    values = rows[column]
    detail = ", ".join(f"{m} {fmt.format(v)}" for m, v in zip(rows["model"], values, strict=True))
    med = float(np.median(values))
    return Measurement(med, f"{fmt.format(med)} (median of {len(rows)})", detail)


def lowest_over(table: pd.DataFrame, column: str, fmt: str) -> Measurement | None:
    """The lowest value of one column over the models (None without models)."""
    if table.empty:
        return None
    pairs = zip(table["model"], table[column], strict=True)
    detail = ", ".join(f"{m} {fmt.format(v)}" for m, v in pairs)
    low = float(table[column].min())
    return Measurement(low, f"{fmt.format(low)} (lowest of {len(table)})", detail)


def fraction_of_d(table: pd.DataFrame, column: str) -> Measurement | None:
    """A count of dimensions as a fraction of d, median over the models (None without models)."""
    if table.empty:
        return None
    frac = table[column] / table["d"]
    detail = ", ".join(
        f"{m} {n:.1f} of {d}"
        for m, n, d in zip(table["model"], table[column], table["d"], strict=True)
    )
    med = float(np.median(frac))
    return Measurement(med, f"{100 * med:.2f}% of d (= {med * PAPER_D:.1f} of 1152)", detail)


def dit_min_cosine(table: pd.DataFrame, logs: Mapping) -> Measurement | None:
    """The lowest pairwise cosine of c of the DiT model (None when the run has none)."""
    dit = table[table["is_dit"]] if not table.empty else table
    if dit.empty:
        return None
    row = dit.iloc[0]
    return Measurement(
        float(row["cosine_min"]), f"{row['cosine_min']:.4f}", f"model {row['model']}"
    )


def dit_max_abs(table: pd.DataFrame, logs: Mapping) -> Measurement | None:
    """(max |c| of the DiT model, median max |c| of the others); None unless both exist."""
    if table.empty:
        return None
    dit, others = table[table["is_dit"]], table[~table["is_dit"]]
    if dit.empty or others.empty:
        return None
    a, b = float(dit["max_abs_c"].iloc[0]), float(np.median(others["max_abs_c"]))
    detail = ", ".join(
        f"{m} {v:.2f}" for m, v in zip(table["model"], table["max_abs_c"], strict=True)
    )
    return Measurement((a, b), f"DiT {a:.2f}; others {b:.2f} (median)", detail)


def npr_decline(table: pd.DataFrame, logs: Mapping[str, list[dict]]) -> Measurement | None:
    """(peak, end) of nPR of c over training, medians over the logged runs (None without logs).

    Uses `classes_npr_mean` of the monitor records: c of every class at the initial t.
    """
    summaries = {name: curve_summary(records) for name, records in logs.items() if records}
    if not summaries:
        return None
    peak = float(np.median([s["peak"] for s in summaries.values()]))
    end = float(np.median([s["end"] for s in summaries.values()]))
    detail = ", ".join(
        f"{n}: {s['start']:.3f} -> peak {s['peak']:.3f} (step {s['peak_step']}) -> {s['end']:.3f} "
        f"(step {s['end_step']})"
        for n, s in summaries.items()
    )
    return Measurement((peak, end), f"peak {peak:.3f} -> end {end:.3f}", detail)
