"""The testbed scale study: how c moves with training steps, width, learning rate and class count.

The runs are trained once by `scripts/scale_study.py` (one CPU thread, resumable) and recorded in
data/scale/ as provenance (NAME.json) and monitor log (NAME.jsonl); the page reads only those. All
statistics are of the EMA model's c for every class at the initial t (`training.monitor`).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from semantic_bottleneck.book import display
from semantic_bottleneck.book.params import find_root
from semantic_bottleneck.training.config import DATASETS
from semantic_bottleneck.training.data import DIGITS_CLASSES
from semantic_bottleneck.training.runs import recorded_runs
from semantic_bottleneck.verdicts.paper import claim, paper_table

RECORDS = "data/scale"
# the statistics drawn: monitor log key -> value key of the book's tables (`display`)
PANELS = {
    "ema_classes_npr_mean": "npr",
    "ema_classes_cos_mean": "cosine",
    "ema_classes_cos_min": "cosine_min",
    "ema_classes_max_abs": "max_abs_c",
    "ema_classes_s_tail_0_01": "s_tail_0_01",
    "ema_classes_top10_share": "top_share",
}


def scale_runs(records: str | Path = RECORDS) -> list[dict]:
    """Every recorded run in `records` (relative to the project root unless absolute):
    provenance with "records" (the monitor log), by name."""
    folder = find_root() / records
    runs = recorded_runs(folder=folder)
    for run in runs:
        if not run["records"]:
            name = run.get("name", "?")
            raise FileNotFoundError(f"{folder}: the log {name}.jsonl of run {name} is missing")
    return runs


def paper_references() -> dict[str, tuple[float, float]]:
    """(low, high) of the paper's values per log key, for the reference bands: Table 1's nPR and
    cosine over the six ImageNet models, the stated s_tail(0.01) and max |c| ranges, and
    DiT's min cosine (the lowest any ImageNet model shows)."""
    t1 = paper_table("table1")
    imagenet = t1[~t1["model"].isin(["X-MDPT", "MDSGen"])]
    return {
        "ema_classes_npr_mean": (imagenet["npr"].min(), imagenet["npr"].max()),
        "ema_classes_cos_mean": (imagenet["cosine"].min(), imagenet["cosine"].max()),
        "ema_classes_cos_min": (claim("dit-min-cosine")["dit_min_cosine"],) * 2,
        "ema_classes_max_abs": (
            claim("dit-max-abs-c")["dit_max_abs_c"],
            claim("dit-max-abs-c")["others_max_abs_c"][1],
        ),
        "ema_classes_s_tail_0_01": tuple(claim("s-tail-at-0-01")["s_tail_at_0.01"]),
    }


def run_label(run: dict) -> str:
    """ "width 128, lr 3e-3" (and ", 80 classes" off the 10-class digits)."""
    cfg = run["config"]
    classes = f", {_classes(run)} classes" if _classes(run) != DIGITS_CLASSES else ""
    return f"width {cfg['hidden_size']}, lr {cfg['lr']:.0e}{classes}".replace("e-0", "e-")


def _classes(run: dict) -> int:
    """The number of classes of a run's dataset."""
    return DATASETS[run["config"]["dataset"]]["num_classes"]


def end_table(runs: list[dict]) -> pd.DataFrame:
    """One row per run: its size, steps, wall time and the last logged statistics."""
    rows = []
    for run in runs:
        last = run["records"][-1]
        row = {
            "run": run_label(run),
            "width": run["config"]["hidden_size"],
            "lr": run["config"]["lr"],
            "classes": _classes(run),
            "steps": last["step"],
            "wall_minutes": run.get("seconds", float("nan")) / 60,
        }
        row.update({value: last[key] for key, value in PANELS.items()})
        row["t_norm"], row["y_spread"] = last["ema_t_norm"], last["ema_y_spread"]
        rows.append(row)
    return pd.DataFrame(rows)


def steps_to_reach(records: list[dict], target: float, key: str = "ema_classes_npr_mean"):
    """Extrapolated step at which `key` reaches `target`: a straight line in log10(step) fitted
    to the second half of the run (by log step), where the trend has settled.

    Returns:
        (step, slope per decade, reached): the first logged step at or below the target when
        the run reached it (reached True), else the extrapolated step, or None when the fit
        does not fall toward the target.
    """
    pts = [(r["step"], r[key]) for r in records if r["step"] > 0 and key in r]
    steps = np.array([s for s, _ in pts], dtype=float)
    values = np.array([v for _, v in pts])
    logs = np.log10(steps)
    late = logs >= (logs[0] + logs[-1]) / 2
    late[-2:] = True  # a line needs two points
    slope, intercept = np.polyfit(logs[late], values[late], 1)
    if values.min() <= target:
        return float(steps[values <= target][0]), float(slope), True
    if slope >= 0:
        return None, float(slope), False
    return float(10 ** ((target - intercept) / slope)), float(slope), False


def extrapolation_table(runs: list[dict], target: float | None = None) -> pd.DataFrame:
    """Per run: the steps its nPR needs to reach `target` (default: the paper's largest ImageNet
    nPR of Table 1, DiT-XL's) and the smallest (REPA-XL's): measured where the run got there,
    else extrapolated from its trend (`steps_to_reach`)."""
    refs = paper_references()["ema_classes_npr_mean"]
    rows = []
    for run in runs:
        rec = run["records"]
        high, slope, reached_high = steps_to_reach(rec, refs[1] if target is None else target)
        low, _, reached_low = steps_to_reach(rec, refs[0])
        rows.append(
            {
                "run": run_label(run),
                "steps": rec[-1]["step"],
                "npr": rec[-1]["ema_classes_npr_mean"],
                "npr_per_decade": slope,
                "steps_to_dit_npr": high,
                "dit_npr_reached": reached_high,
                "steps_to_repa_npr": low,
                "repa_npr_reached": reached_low,
            }
        )
    return pd.DataFrame(rows)


def scale_figure(runs: list[dict]):
    """The six statistics against training steps (log axis), one line per run, the paper's
    values as grey bands (a line where the paper gives one number)."""
    refs = paper_references()
    fig, axes = plt.subplots(2, 3, figsize=(13, 7.5), constrained_layout=True)
    widths = sorted({r["config"]["hidden_size"] for r in runs})
    colours = dict(zip(widths, plt.cm.viridis(np.linspace(0.1, 0.85, len(widths))), strict=True))
    for ax, (key, value) in zip(axes.flat, PANELS.items(), strict=True):
        scale = 100 if value in display.PERCENT_KEYS else 1
        for run in runs:
            cfg = run["config"]
            pts = [
                (r["step"], scale * r[key]) for r in run["records"] if r["step"] > 0 and key in r
            ]
            style = "-" if cfg["lr"] >= 3e-3 else "--"
            marker = "o" if _classes(run) != DIGITS_CLASSES else None
            ax.plot(
                *zip(*pts, strict=True),
                style,
                color=colours[cfg["hidden_size"]],
                marker=marker,
                markevery=0.1,
                markersize=4,
                label=run_label(run),
            )
        if key in refs:
            lo, hi = scale * refs[key][0], scale * refs[key][1]
            if hi > lo:
                ax.axhspan(lo, hi, color="0.6", alpha=0.3, label="paper (XL models)")
            else:
                ax.axhline(lo, color="0.4", linestyle=":", label="paper (XL models)")
        ax.set_xscale("log")
        ax.set_xlabel("training step")
        ax.set_ylabel(display.label(value))
        ax.grid(alpha=0.3)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=4, fontsize=9)
    return fig


def class_count_table(runs: list[dict]) -> pd.DataFrame:
    """The 80-class run beside the 10-class run of the same width and rate, at shared steps."""
    by = {(r["config"]["hidden_size"], r["config"]["lr"], r["config"]["dataset"]): r for r in runs}
    rows = []
    for (width, lr, data), run in by.items():
        base = by.get((width, lr, "digits"))
        if data != "digits-80" or base is None:
            continue
        ten = {r["step"]: r for r in base["records"]}
        for r in run["records"]:
            if r["step"] in ten and r["step"] in _milestones(run["records"][-1]["step"]):
                rows.append(
                    {
                        "run": run_label(base).removesuffix(", 80 classes"),
                        "step": r["step"],
                        "npr_10_classes": ten[r["step"]]["ema_classes_npr_mean"],
                        "npr_80_classes": r["ema_classes_npr_mean"],
                        "cosine_10_classes": ten[r["step"]]["ema_classes_cos_mean"],
                        "cosine_80_classes": r["ema_classes_cos_mean"],
                    }
                )
    return pd.DataFrame(rows)


def _milestones(last: int) -> set[int]:
    """Steps 1k, 2k, 4k, ... up to `last` (and `last` itself)."""
    out, s = {last}, 1000
    while s <= last:
        out.add(s)
        s *= 2
    return out


def provenance_table(runs: list[dict]) -> pd.DataFrame:
    """Per run: the command that trained it, its commit, device and wall time."""
    return pd.DataFrame(
        [
            {
                "run": run_label(r),
                "command": r["command"],
                "commit": r["commit"][:10] + (" (dirty)" if r.get("dirty") else ""),
                "device": r["device"],
                "wall_minutes": r.get("seconds", float("nan")) / 60,
            }
            for r in runs
        ]
    )
