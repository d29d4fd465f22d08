"""The paper's printed numbers, as tables, and the "paper vs this run" comparison.

Every number lives in `data/paper_values.yaml` (Tables 1-7 exactly as printed, the text claims with
their stated bounds, the paper's known inconsistencies and an inventory of its tables and figures).
This module only reads that file; it never measures anything. Values carry one unit per
quantity, the same as the measured values: nPR is a fraction of d everywhere (the paper prints
it in percent; tables render it in percent), so paper and measured values compare directly.
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Sequence
from numbers import Real
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

DATA_FILE = Path(__file__).resolve().parents[3] / "data" / "paper_values.yaml"
TABLE_IDS = tuple(f"table{i}" for i in range(1, 8))

# The project's registry names -> the paper's model names. The paper does not say which MDT
# version it used; its MDT numbers are compared with MDTv2, the official repository's headline
# checkpoint.
PAPER_MODEL_NAMES = {
    "dit-xl-2": "DiT",
    "sit-xl-2": "SiT",
    "mdtv2-xl-2": "MDT",
    "lightningdit-xl-1": "LightningDiT",
    "mg-sit-xl-2": "MG",
    "repa-sit-xl-2": "REPA",
}


@functools.lru_cache(maxsize=4)
def _load(path: Path) -> dict[str, Any]:
    """Parse the YAML file once per path (the cache holds the parsed, never-mutated original)."""
    if not path.is_file():
        raise FileNotFoundError(
            f"the paper's values file is missing: expected {path} (data/paper_values.yaml in the "
            "project checkout); the package must be used from a source checkout"
        )
    with path.open(encoding="utf-8") as f:
        values = yaml.safe_load(f)
    if not isinstance(values, dict) or "tables" not in values:
        raise ValueError(f"{path}: expected a mapping with a 'tables' key, got {type(values)}")
    return values


def paper_values(path: str | Path | None = None) -> dict[str, Any]:
    """All of the paper's values: tables, claims, inconsistencies, figure inventory.

    Args:
        path: the YAML file; by default `data/paper_values.yaml` of the source checkout.

    Returns:
        A fresh copy of the parsed YAML (callers may modify it freely).
    """
    return copy.deepcopy(_load(DATA_FILE if path is None else Path(path).resolve()))


def _table(table_id: str) -> dict[str, Any]:
    """The raw YAML mapping of one table, after checking the id."""
    if table_id not in TABLE_IDS:
        raise ValueError(f"table_id: expected one of {', '.join(TABLE_IDS)}, got {table_id!r}")
    return paper_values()["tables"][table_id]


def paper_columns(table_id: str) -> list[dict[str, Any]]:
    """The declared value columns of a table: name, printed label, unit (and `better`, if printed).

    Args:
        table_id: "table1" ... "table7".

    Returns:
        One mapping per column, in printed order.
    """
    return _table(table_id)["columns"]


def paper_table(table_id: str) -> pd.DataFrame:
    """One of the paper's tables, one row per printed row, in printed order.

    Row-identity fields (model, printed_label, side, tau, schedule, ...) come first, then the value
    columns. Missing values are NaN. `attrs` holds caption, source, columns and notes.

    Args:
        table_id: "table1" ... "table7".

    Returns:
        A DataFrame. Shapes: (rows of the table, identity fields + value columns).
    """
    table = _table(table_id)
    values = [c["name"] for c in table["columns"]]
    fields = [k for row in table["rows"] for k in row if k not in values]
    order = list(dict.fromkeys(fields)) + values  # first-seen order, without repeats
    frame = pd.DataFrame.from_records(table["rows"], columns=order)
    frame.attrs = {
        "table_id": table_id,
        "caption": table["caption"],
        "source": table["source"],
        "columns": table["columns"],
        "notes": table.get("notes", []),
    }
    return frame


def _same(a: Any, b: Any) -> bool:
    """Equality for row matching: numbers compare with a tiny tolerance, None only to None."""
    if isinstance(a, Real) and isinstance(b, Real) and not isinstance(a, bool | str):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def paper_row(table_id: str, model: str, **match: Any) -> dict[str, Any]:
    """The one printed row of a table for a model and further field values.

    Args:
        table_id: "table1" ... "table7".
        model: the paper's model name ("REPA") or a registry name ("repa-sit-xl-2").
        **match: further fields that pick the row, e.g. side="head", tau=1.0, schedule="every";
            None matches a field the paper leaves empty (the baseline's tau).

    Returns:
        A copy of the row's mapping. Raises ValueError when no row or several rows match.
    """
    rows = _table(table_id)["rows"]
    name = PAPER_MODEL_NAMES.get(model, model)
    known = {k for row in rows for k in row}
    unknown = sorted(set(match) - known)
    if unknown:
        raise ValueError(f"{table_id}: expected fields among {sorted(known)}, got {unknown}")
    hits = [
        row
        for row in rows
        if row["model"] == name and all(_same(row.get(k), v) for k, v in match.items())
    ]
    if not hits:
        models = list(dict.fromkeys(row["model"] for row in rows))
        raise ValueError(
            f"{table_id}: no row for model={name!r} with {match}; the table's models are {models}"
        )
    if len(hits) > 1:
        differ = sorted(k for k in known if len({repr(row.get(k)) for row in hits}) > 1)
        raise ValueError(
            f"{table_id}: {len(hits)} rows match model={name!r} with {match}; "
            f"pick one with one of the fields {differ}"
        )
    return copy.deepcopy(hits[0])


def claims() -> list[dict[str, Any]]:
    """The paper's text claims, each with an id, its words and the bounds it states."""
    return paper_values()["claims"]


def claim(claim_id: str) -> dict[str, Any]:
    """One text claim by id (e.g. "s-tail-at-0-01"); ValueError for an unknown id."""
    found = {c["id"]: c for c in claims()}
    if claim_id not in found:
        raise ValueError(f"claim_id: expected one of {sorted(found)}, got {claim_id!r}")
    return found[claim_id]


def inconsistencies() -> list[dict[str, Any]]:
    """The paper's known internal inconsistencies, each with an id and a description."""
    return paper_values()["inconsistencies"]


def inventory() -> list[dict[str, Any]]:
    """Every table and figure: id, the ids it groups (`also`), content, needs, reproducible_here."""
    return paper_values()["figures"]


def _as_numbers(frame: pd.DataFrame, columns: Sequence[str], who: str) -> pd.DataFrame:
    """The given columns as float64, with a clear error for a non-numeric value."""
    out = {}
    for col in columns:
        try:
            out[col] = pd.to_numeric(frame[col]).astype("float64")
        except (TypeError, ValueError) as err:
            raise ValueError(f"{who} column {col!r}: expected numbers, got {err}") from None
    return pd.DataFrame(out, index=frame.index)


def _check_compare_args(
    measured: Any, paper: pd.DataFrame, keys: list[str], columns: list[str] | None
) -> list[str]:
    """Validate compare()'s arguments; return the value columns to compare."""
    if not isinstance(measured, pd.DataFrame):
        raise ValueError(f"measured: expected a pandas DataFrame, got {type(measured).__name__}")
    declared = [c["name"] for c in paper.attrs["columns"]]
    if columns is None:
        columns = [c for c in declared if c in measured.columns and c not in keys]
    if not columns:
        raise ValueError(
            f"columns: expected some of the {paper.attrs['table_id']} columns {declared}, "
            f"got none (measured has {list(measured.columns)})"
        )
    for col in keys:
        if col not in paper.columns or col not in measured.columns:
            raise ValueError(
                f"on: key {col!r} must be a column of both the paper's table {list(paper.columns)} "
                f"and the measured frame {list(measured.columns)}"
            )
    for col in columns:
        if col not in declared:
            raise ValueError(f"columns: expected names among {declared}, got {col!r}")
        if col not in measured.columns:
            raise ValueError(f"columns: {col!r} is not a column of the measured frame")
        if col in keys:
            raise ValueError(f"columns: {col!r} is also a key in on={keys}")
    for who, frame in (("the paper's table", paper), ("the measured frame", measured)):
        if frame.duplicated(subset=keys).any():
            raise ValueError(
                f"on={keys}: the key does not identify the rows of {who} uniquely; "
                "add fields such as side, tau or schedule"
            )
    return list(columns)


def compare(
    measured: pd.DataFrame,
    table_id: str,
    on: str | Sequence[str] = "model",
    columns: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Side-by-side table of the paper's values and this run's, with the difference.

    Rows are matched on the key columns (an outer join): the paper's rows come first in printed
    order, then measured rows that have no paper row, in their own order. Registry model names in
    `measured["model"]` are translated to the paper's names. Measured values must be in the
    paper's units (see `paper_columns`).

    Args:
        measured: this run's values, one row per key, with the key and value columns.
        table_id: "table1" ... "table7".
        on: the key column(s), e.g. "model" or ["model", "side", "tau", "schedule"].
        columns: value columns to compare; by default every declared column measured has.

    Returns:
        A DataFrame with the key columns, then per column `<col> (paper)`, `<col> (this run)` and
        `<col> (diff)` = this run minus paper (NaN where either is missing).
        Shapes: (union of keys, len(on) + 3 * len(columns)).
    """
    paper = paper_table(table_id)
    keys = [on] if isinstance(on, str) else list(on)
    if not keys:
        raise ValueError("on: expected at least one key column, got none")
    columns = _check_compare_args(measured, paper, keys, None if columns is None else list(columns))
    run = measured.copy()
    if "model" in keys:
        run["model"] = run["model"].map(lambda m: PAPER_MODEL_NAMES.get(m, m))
    left = paper[keys].join(_as_numbers(paper, columns, "paper").add_suffix(" (paper)"))
    right = run[keys].join(_as_numbers(run, columns, "measured").add_suffix(" (this run)"))
    left["_paper_order"] = range(len(left))
    right["_run_order"] = range(len(right))
    merged = left.merge(right, on=keys, how="outer")
    # An outer merge sorts its keys; restore the paper's order, then the measured-only rows.
    merged = merged.sort_values(["_paper_order", "_run_order"], kind="stable", na_position="last")
    out = merged[keys].copy()
    for col in columns:
        out[f"{col} (paper)"] = merged[f"{col} (paper)"]
        out[f"{col} (this run)"] = merged[f"{col} (this run)"]
        out[f"{col} (diff)"] = merged[f"{col} (this run)"] - merged[f"{col} (paper)"]
    out = out.reset_index(drop=True)
    out.attrs = {"table_id": table_id, "source": paper.attrs["source"], "on": keys}
    return out
