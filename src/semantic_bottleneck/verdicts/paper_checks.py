"""What the paper's own numbers say: its tables judged by the ledger's rules, its known
inconsistencies beside what this run measures, and the tables and figures of systems this
project does not support.

Nothing here is measured from a model except in `inconsistency_table`, which takes the run's
models; everything else reads `data/paper_values.yaml` through `paper`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from semantic_bottleneck.core import analysis, metrics
from semantic_bottleneck.verdicts import paper
from semantic_bottleneck.verdicts.measures import Measurement, model_table

# The systems of the paper that this project still lacks something of, with what it lacks
# (every system's model class and c are in zoo/ and core.appendix; X-MDPT's sampler and its
# DeepFashion evaluation are in sampling.xmdpt and evaluation.deepfashion): none.
SYSTEMS: dict[str, str] = {}
INVENTORY_COLUMNS = ["id", "also", "kind", "content", "scope", "systems", "why", "testbed"]


# ----------------------------------------------------------------------------- the paper's tables


def _relative(a: float, b: float) -> float:
    return a / b - 1.0


def paper_measurements() -> dict[str, Measurement]:
    """Claims measured on the paper's own tables (for the ledger's second verdict column).

    Covers the claims whose quantity a table prints: cosine and nPR (Table 1), pruning quality
    and schedules (Tables 2, 3). Returns claim id -> Measurement.
    """
    out: dict[str, Measurement] = {}
    t1 = paper.paper_table("table1").set_index("model")
    imagenet = list(paper.PAPER_MODEL_NAMES.values())
    cos = t1.loc[imagenet, "cosine"]
    out["cosine-imagenet"] = Measurement(
        float(np.median(cos)), f"{np.median(cos):.4f} (median of Table 1)",
        ", ".join(f"{m} {v:.4f}" for m, v in cos.items()),
    )  # fmt: skip
    continuous = t1.loc[paper.claim("cosine-continuous")["models"], "cosine"]
    out["cosine-continuous"] = Measurement(
        float(continuous.min()), f"{continuous.min():.4f} (lowest, Table 1)",
        ", ".join(f"{m} {v:.4f}" for m, v in continuous.items()),
    )  # fmt: skip
    npr = t1.loc[paper.claim("npr-1-to-2-percent")["models"], "npr"]
    out["npr-1-to-2-percent"] = Measurement(
        float(np.median(npr)), f"{np.median(npr):.2%} (median of Table 1)",
        ", ".join(f"{m} {v:.2%}" for m, v in npr.items()),
    )  # fmt: skip
    base = paper.paper_row("table2", "REPA", side=None)["fid"]
    pruned = paper.paper_row("table2", "REPA", side="tail", tau=0.02, schedule="every")
    change = _relative(pruned["fid"], base)
    out["pruning-keeps-quality"] = Measurement(
        change,
        f"{change:+.3f} (Table 2: FID {base} -> {pruned['fid']}, {pruned['removed']} removed)",
    )
    out["late-step-pruning-best-fid"] = _late_step()
    return out


def _late_step() -> Measurement:
    """FID(t_{n-k,n}) over the best other schedule's FID, minus 1, worst model of Tables 2, 3."""
    parts = {}
    for table_id, model in [("table2", "REPA"), ("table3", "MG"), ("table3", "LightningDiT")]:
        fid = {
            s: paper.paper_row(table_id, model, side="tail", tau=0.01, schedule=s)["fid"]
            for s in ("every", "initial", "last_k")
        }
        parts[model] = _relative(fid["last_k"], min(fid["every"], fid["initial"]))
    worst = max(parts, key=parts.get)
    detail = ", ".join(f"{m} {v:+.4f}" for m, v in parts.items())
    return Measurement(parts[worst], f"{parts[worst]:+.4f} (worst: {worst})", detail)


# ----------------------------------------------------------------------------- inconsistencies


def _percent_check(models) -> str:
    seen = {}
    for row in paper.paper_table("table2").to_dict("records"):
        if row["removed"] and row["removed_percent_printed"]:
            seen[int(row["removed"])] = (int(row["d"]), row["removed_percent_printed"])
    parts = [
        f"{r}/{d} = {100 * r / d:.2f}% (printed {p:.2f}%)" for r, (d, p) in sorted(seen.items())
    ]
    return (
        "Recomputed from the paper's counts: " + "; ".join(parts) + ". This book prints count / d."
    )


def _tail_head_check(models) -> str:
    if not models:
        return "no model in this run"
    parts = []
    for m in models:
        c = m.c()
        tail = float(metrics.sparsity_ratio(c, 5.0, "tail").mean()) * m.d
        head = float(metrics.sparsity_ratio(c, 5.0, "head").mean()) * m.d
        parts.append(
            f"{m.label}: tail {tail:.1f} + head {head:.1f} = {tail + head:.1f} of d = {m.d}"
        )
    return "At tau = 5.0, per class (mean): " + "; ".join(parts)


def _npr_routes_check(models) -> str:
    if not models:
        return "no model in this run"
    parts = []
    for m in models:
        t1 = analysis.statistics_row(m)["npr"]
        t4 = analysis.label_vs_sum_row(m)["npr_yt"]
        parts.append(f"{m.label}: {t1:.2f}% (Table 1 route) and {t4:.2f}% (Table 4 route)")
    return "One definition feeds both tables here: " + "; ".join(parts)


def _fig11_check(models) -> str:
    if not models:
        return "no model in this run"
    table = model_table(models)  # the numbers Fig. 11 and the ledger show
    parts = [
        f"{r.model}: class-mean c {r.mean_c_below_0_01:.3f}, per class {r.s_tail_0_01:.3f}"
        for r in table.itertuples()
    ]
    return "Fraction of dims below 0.01: " + "; ".join(parts)


_CHECKS = {
    "removed-percent-not-count-over-d": _percent_check,
    "tail-plus-head-at-5-is-1151": _tail_head_check,
    "repa-npr-table1-vs-table4": _npr_routes_check,
    "fig11-vs-s-tail": _fig11_check,
}


def inconsistency_table(models: Sequence[analysis.ModelC]) -> pd.DataFrame:
    """The paper's known inconsistencies and what this run measures about each.

    Returns:
        Columns: id, the paper, this run (text).
    """
    rows = []
    for item in paper.inconsistencies():
        check = _CHECKS.get(item["id"])
        rows.append(
            {
                "id": item["id"],
                "the paper": " ".join(item["text"].split()),
                "this run": check(list(models)) if check else "not measured here",
            }
        )
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- unsupported systems


def systems_in(entry: dict) -> list[str]:
    """The unsupported systems an inventory entry names (in its content, needs or note)."""
    text = " ".join(str(entry.get(k, "")) for k in ("content", "needs", "note"))
    return [s for s in SYSTEMS if s in text]


def unsupported_inventory() -> pd.DataFrame:
    """Every table and figure (or part of one) this project cannot reproduce, and why.

    Returns:
        Columns: id, also (grouped ids), kind, content, scope ("whole" or "rows"), systems, why,
        testbed (the page of the testbed analogue, "" where there is none).
    """
    rows = []
    for entry in paper.inventory():
        whole = not entry["reproducible_here"]
        systems = systems_in(entry)
        if not whole and not (entry.get("note") and systems):
            continue
        rows.append(
            {
                "id": entry["id"],
                "also": ", ".join(entry.get("also", [])),
                "kind": entry["kind"],
                "content": entry["content"],
                "scope": "whole" if whole else "rows",
                "systems": ", ".join(systems),
                "why": "not here yet: " + "; ".join(SYSTEMS[s] for s in systems),
                "testbed": entry.get("testbed_page", ""),
            }
        )
    return pd.DataFrame(rows, columns=INVENTORY_COLUMNS)


def unsupported_rows(table_id: str) -> pd.DataFrame:
    """The paper's printed rows of a table for the models this project does not support."""
    models = paper.paper_values()["tables"][table_id].get("unsupported_models", [])
    table = paper.paper_table(table_id)
    return table[table["model"].isin(models)].reset_index(drop=True)


def as_printed(frame: pd.DataFrame) -> pd.DataFrame:
    """The paper's numbers as text with every stored digit (0.99992 stays 0.99992), NaN as "-"."""

    def show(v):
        if isinstance(v, float):
            if v != v:
                return "-"
            return f"{v:.0f}" if v.is_integer() else repr(v)
        return "-" if v is None else str(v)

    return frame.map(show)
