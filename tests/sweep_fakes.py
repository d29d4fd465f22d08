"""A stand-in for the testbed pruning sweep (`sweeps.run.run_testbed_sweep`) with known rows, for the
page-function tests of the pruning and appendix pages."""

from __future__ import annotations

import numpy as np

from semantic_bottleneck.book.plots import REAL
from semantic_bottleneck.sweeps import run as sweep


def fake_ci(i: int) -> dict:
    """The intervals of row i of `fake_table`: FID's difference i (its FID 10 + i against the
    baseline's 10) within +-0.05; every other metric's i/10, within [0.8, 1.2] times it."""
    out = {m: {"difference": i / 10, "low": i / 10 * 0.8, "high": i / 10 * 1.2, "sd": 0.01}
           for m in ("is_10_splits", "clip", "precision", "recall")}  # fmt: skip
    out["fid"] = {"difference": float(i), "low": i - 0.05, "high": i + 0.05, "sd": 0.02}
    return out


def fake_table(rows: list, intervals: bool = False) -> list[dict]:
    """A measured row per paper row i: FID 10 + i, removed 2 i, precision 0.5 - 0.01 i; with
    `intervals`, n = 40 and the pruned rows' "ci" of `fake_ci` and the row's control."""
    table = [
        {
            "row": r.label,
            "tau": 0.1 * i,
            "target count": 0,
            "removed": 2.0 * i,
            "d": 128,
            "fid": 10.0 + i,
            "is_10_splits": 3.0,
            "is_adm": 2.5,
            "precision": 0.5 - 0.01 * i,
            "recall": 0.4,
            "class_prob": 0.9,
        }
        for i, r in enumerate(rows)
    ]
    if intervals:
        for i, (row, r) in enumerate(zip(table, rows, strict=True)):
            row.update(n=40, control=r.control)
            if r.side is not None:
                row["ci"] = fake_ci(i)
            else:  # the baseline's own noise: FID 10 within +-1
                row["spread"] = {"fid": {"value": 10.0, "low": 9.0, "high": 11.0, "sd": 0.5}}
    return table


def fake_sweep(monkeypatch, intervals: bool = False) -> list[tuple]:
    """Replace `sweeps.run.run_testbed_sweep` by the stand-in (rows with intervals when
    `intervals`); returns the list of the calls it gets (name, row labels, settings, training
    overrides), in order."""
    seen = []

    def run(name, rows, settings, **train):
        seen.append((name, [r.label for r in rows], settings, train))
        grids = {r.label: np.full((10, 1, 8, 8, 3), i, np.uint8) for i, r in enumerate(rows)}
        grids = {REAL: np.zeros((10, 1, 8, 8, 3), np.uint8), **grids}
        return {
            "table": fake_table(rows, intervals),
            "grids": grids,
            "sampler": "S()",
            "numerics": "fp32",
        }

    monkeypatch.setattr(sweep, "run_testbed_sweep", run)
    return seen
