"""The pages of Section 6: where the semantics of c live, and how c forms in training.

Variance across classes (Fig. 9), the dimension-threshold curve (Fig. 11), the c = T + Y
mechanism and c over the sampler run (`mechanism`), c during training (Figs. 12 and 43, from
monitor logs), the scale study (`scale_study`, recorded runs only) and the t-SNE of head and tail
(Fig. 13).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from semantic_bottleneck.book import plots
from semantic_bottleneck.book.params import find_root
from semantic_bottleneck.book.widgets import threshold_explorer_by_model
from semantic_bottleneck.core import analysis, appendix, mechanism, metrics, tsne
from semantic_bottleneck.core.analysis import Page
from semantic_bottleneck.training import curves, runs
from semantic_bottleneck.training.scale_study import (
    RECORDS,
    class_count_table,
    end_table,
    extrapolation_table,
    provenance_table,
    scale_figure,
    scale_runs,
)
from semantic_bottleneck.verdicts import measures

# ----------------------------------------------------------------------------- Fig. 9


FIG32_SYSTEMS = ["mdsgen-b-2", "xmdpt-l-2"]  # Figs. 32 and 33 (paper profile)


def fig09_page(
    profile: str, models: list[str], train_steps: int | None = None, top_k: int = 20,
    systems: list[str] = tuple(FIG32_SYSTEMS),
) -> Page:  # fmt: skip
    """Figs. 9 and 26-33: the variance of c across classes, and across the conditions of a
    continuous-condition model (Figs. 32 and 33: MDSGen and X-MDPT, the released `systems` in the
    paper profile; the continuous-condition testbed model where the testbed lists it).

    Tables: variance (`analysis.variance_row` per model, k = top_k). Figures: variance (None
    without models). Values: mean_var_min, mean_var_max (of the mean variance over models),
    topk_share (the smallest share of the variance in the top_k dimensions).
    """
    found, missing = analysis.load_models(profile, models, steps=train_steps)
    more, absent = appendix.load_systems(profile, list(systems))
    found, missing = found + more, missing + absent
    variance = pd.DataFrame([analysis.variance_row(m, k=top_k) for m in found])
    have = len(variance) > 0
    fig = plots.variance_plots({m.label: m.c() for m in found}) if found else None
    return Page(
        tables={"variance": variance},
        figures={"variance": fig},
        values={
            "mean_var_min": (variance["mean_variance"].min() if have else None, "{:.2e}"),
            "mean_var_max": (variance["mean_variance"].max() if have else None, "{:.2e}"),
            "topk_share": (variance["top_share"].min() if have else None, "{:.3f}"),
        },
        found=found,
        missing=missing,
    )


# ----------------------------------------------------------------------------- Fig. 11

# Fig. 11's table: its column -> the column of `verdicts.measures.model_table` it shows
FIG11_FROM_LEDGER = {
    "mean c: frac < 0.01": "mean_c_below_0_01",
    "per class: s_tail(0.01)": "s_tail_0_01",
    "mean c: frac < 0.02": "mean_c_below_0_02",
}


def threshold_table(ledger: pd.DataFrame) -> pd.DataFrame:
    """Fig. 11's fractions per model: of the class-mean c's dims below 0.01 and 0.02, and
    s_tail(0.01) per class (mean over classes), read from `ledger`, the claims ledger's own
    table of the page's models (`verdicts.measures.model_table`), so that the page and the
    ledger quote one computation."""
    table = pd.DataFrame({"model": ledger.get("model", pd.Series(dtype=object))})
    for column, source in FIG11_FROM_LEDGER.items():
        table[column] = ledger.get(source, pd.Series(dtype=float))
    return table


def fig11_page(
    profile: str,
    models: list[str],
    train_steps: int | None = None,
    widget_class: int = 0,
    n_widget_taus: int = 16,
) -> Page:
    """Fig. 11: the dimension-threshold curve of the class-mean c, and an explorer of one
    class's c as tau moves (`n_widget_taus` positions, class `widget_class`).

    Tables: fractions (`threshold_table`). Figures: curves (None without models). Widgets:
    explorer (None without models). Values: frac_mean_001 (mean over models of the class-mean
    c's fraction below 0.01) and frac_mean_002 (the ledger's measurement of the threshold
    claim: the median fraction below 0.02).
    """
    found, missing = analysis.load_models(profile, models, steps=train_steps)
    taus = metrics.default_tau_grid()
    curves_by_model = {
        m.label: metrics.dimension_threshold_curve(m.c().mean(0), taus) for m in found
    }
    ledger_table = measures.model_table(found)
    fractions = threshold_table(ledger_table)
    # the value the ledger judges the threshold claim on (ledger.claim_specs)
    ledger = measures.median_over(ledger_table, "mean_c_below_0_02", "{:.3f}")
    explorer = (
        threshold_explorer_by_model(
            {m.label: m.c()[widget_class] for m in found}, np.logspace(-3, 1, n_widget_taus)
        )
        if found
        else None
    )
    return Page(
        tables={"fractions": fractions},
        figures={"curves": plots.threshold_curves(curves_by_model, taus) if found else None},
        widgets={"explorer": explorer},
        values={
            "frac_mean_001": (fractions["mean c: frac < 0.01"].mean() if found else None, "{:.3f}"),
            "frac_mean_002": (None if ledger is None else ledger.value, "{:.3f}"),
        },
        found=found,
        missing=missing,
    )


# ----------------------------------------------------------------------------- c = T + Y


def mechanism_page(profile: str, models: list[str], train_steps: int | None = None) -> Page:
    """The c = T + Y page: the split of every model at its initial t and the cosine it predicts.

    Tables: split (`mechanism.mechanism_table`). Figures: cosine_from_ratio. Values: worst_gap
    (largest |measured - predicted| cosine), share_min (smallest share of the top-10 dimensions
    that T contributes), ratio_min / ratio_max (of ||T + mean Y|| / spread).
    """
    found, missing = analysis.load_models(profile, models, steps=train_steps)
    table = mechanism.mechanism_table(found)
    page = Page(tables={"split": table}, found=found, missing=missing)
    page.figures["cosine_from_ratio"] = mechanism.cosine_from_ratio_figure(
        table, {m.label: m.num_classes for m in found}
    )
    have = len(table) > 0
    gap = (table["cosine"] - table["cosine_predicted"]).abs().max() if have else None
    page.values = {
        "worst_gap": (gap, "{:.4f}"),
        "share_min": (table["t_share_top_k"].min() if have else None, "{:.2f}"),
        "ratio_min": (table["ratio_shared"].min() if have else None, "{:.2f}"),
        "ratio_max": (table["ratio_shared"].max() if have else None, "{:.2f}"),
    }
    return page


def timestep_page(profile: str, models: list[str], train_steps: int | None = None) -> Page:
    """The timestep sweep page: Table 1's statistics at every t of each model's own sampler.

    Tables: summary (`mechanism.grid_summary`), grid (every step). Figures: grid (None without
    models). Values: rising (how many models end their run with a higher mean cosine than they
    start it), n_models, cosine_lowest (the lowest mean cosine of any model at any step).
    """
    found, missing = analysis.load_models(profile, models, steps=train_steps)
    grids = [mechanism.grid_statistics(m, mechanism.sampler_grid(profile, m.name)) for m in found]
    grid = pd.concat(grids, ignore_index=True) if grids else pd.DataFrame()
    summary = mechanism.grid_summary(grid) if len(grid) else pd.DataFrame()
    page = Page(tables={"summary": summary}, found=found, missing=missing)
    page.figures["grid"] = mechanism.grid_figure(grid) if len(grid) else None
    have = len(summary) > 0
    page.values = {
        "rising": (
            int((summary["cosine_last"] > summary["cosine_first"]).sum()) if have else None,
            "{:d}",
        ),
        "n_models": (len(summary), "{:d}"),
        "cosine_lowest": (summary["cosine_lowest"].min() if have else None, "{:.3f}"),
    }
    page.tables["grid"] = grid
    return page


# ----------------------------------------------------------------------------- Figs. 12 and 43

PAPER_PROFILE_NOTE = (
    "The paper profile draws recorded GPU runs only (below); the testbed curves are in the "
    "testbed profile."
)
# why no GPU curve is drawn, per kind of run (limited timestep set or not)
NO_GPU_RUN = {
    False: "No GPU run is recorded in data/runs yet, so no full-scale curve is drawn. "
    "To make one: prepare ImageNet (`semantic-bottleneck train prepare-imagenet --source "
    "TRAIN_DIR --dest DIR`), train (`torchrun --nproc-per-node 8 --no-python "
    "semantic-bottleneck train repa --profile paper --data-dir DIR --out runs/repa-b2`), then "
    "record it (`semantic-bottleneck train record runs/repa-b2 --name repa-b2`).",
    True: "No GPU run with a limited timestep set is recorded in data/runs. To make one, add "
    "`--timestep-set K` to the paper-profile command of the Fig. 12 page, then record it with "
    "`semantic-bottleneck train record`.",
}
PROVENANCE_KEYS = ["name", "scale", "command", "commit", "device", "processes", "steps"]


def recorded_gpu_runs(limited: bool, root: str | Path | None = None) -> dict:
    """The GPU-run section of the Fig. 12 (limited False) and Fig. 43 (limited True) pages:
    the runs recorded in data/runs whose training times were (or were not) a limited set.

    Returns:
        {"figure": batch curves of the runs (None without runs), "provenance": one row per run
        (`PROVENANCE_KEYS`; None without runs), "text": Markdown naming the runs drawn, or a
        note saying how to make one}.
    """
    found = runs.recorded_runs(None if root is None else Path(root))
    gpu = [r for r in found if bool(r["config"].get("timestep_set")) == limited]
    if not gpu:
        return {"figure": None, "provenance": None, "text": _note(NO_GPU_RUN[limited])}
    names = ", ".join(f"`{r['name']}`" for r in gpu)
    return {
        "figure": plots.training_curves({r["name"]: r["records"] for r in gpu}, prefix="batch"),
        "provenance": pd.DataFrame([{k: r.get(k) for k in PROVENANCE_KEYS} for r in gpu]),
        "text": f"Recorded GPU runs drawn below: {names}.",
    }


def _note(text: str) -> str:
    """A note admonition as Markdown (as `pages.show_note` shows one)."""
    return f"```{{note}}\n{text}\n```"


def _training_page(profile: str, configs: dict, limited: bool) -> tuple[Page, list[dict]]:
    """The parts Figs. 12 and 43 share: the testbed runs' curves (all classes at the initial t
    and the training batches) and summary, and the recorded GPU runs.

    Args:
        profile: "paper" draws the GPU runs only (a note says so).
        configs: curve label -> the testbed run's TrainConfig (none in the paper profile).
        limited: the GPU runs drawn are those with a limited timestep set.

    Returns:
        (page, summary rows of `curves.summary_rows`).
    """
    page = Page(notes=[] if profile == "testbed" else [PAPER_PROFILE_NOTE])
    logs = {label: curves.run_log(config) for label, config in configs.items()}
    rows = curves.summary_rows(logs, configs)
    gpu = recorded_gpu_runs(limited)
    page.figures = {
        "classes": plots.training_curves(logs, prefix="classes") if logs else None,
        "batch": plots.training_curves(logs, prefix="batch") if logs else None,
        "gpu": gpu["figure"],
    }
    page.tables = {
        "summary": pd.DataFrame(rows) if rows else None,
        "provenance": gpu["provenance"],
    }
    page.markdown["gpu"] = gpu["text"]
    return page, rows


def fig12_page(profile: str, models: list[str], train_steps: int | None = None) -> Page:
    """Fig. 12: c during training, for the testbed runs `models` (testbed profile) and the
    recorded GPU runs with continuous t.

    Figures: classes, batch (testbed curves; None in the paper profile), gpu. Tables: summary,
    provenance. Markdown: gpu (`recorded_gpu_runs`'s text). Values: npr_start, npr_peak,
    npr_end, peak_step, end_step and curve_run, of the headline run (the last of `models`, else
    the first run).
    """
    testbed = profile == "testbed"  # the paper profile's `models` are checkpoints: no runs
    configs = {name: curves.testbed_run(name, steps=train_steps) for name in models if testbed}
    page, rows = _training_page(profile, configs, limited=False)
    head = curves.headline(rows, prefer=models[-1])
    page.values = {
        "npr_start": (head.get("npr_start"), "{:.3f}"),
        "npr_peak": (head.get("npr_peak"), "{:.3f}"),
        "npr_end": (head.get("npr_end"), "{:.3f}"),
        "peak_step": (head.get("peak_step"), "{}"),
        "end_step": (head.get("end_step"), "{}"),
        "curve_run": (head.get("run"), "{}"),
    }
    return page


def timestep_set_label(name: str, k: int) -> str:
    """The curve label of a Fig. 43 run: K = 0 is the continuous-t run."""
    return f"{name}, K = {k}" if k else f"{name}, continuous t"


def fig43_page(
    profile: str,
    models: list[str],
    timestep_sets: list[int],
    train_steps: int | None = 200,
) -> Page:
    """Fig. 43: c during training with t drawn from K equally spaced values, one run per
    model and K of `timestep_sets`, beside the continuous-t run; and the recorded GPU runs with
    a limited set.

    Figures, tables and markdown: as `fig12_page`. Values: n_runs, peak_min, peak_max, end_min,
    end_max (of the all-classes nPR) and steps (the first run's last step).
    """
    configs = {
        timestep_set_label(name, k): curves.testbed_run(name, steps=train_steps, timestep_set=k)
        for name in (models if profile == "testbed" else [])
        for k in [0, *timestep_sets]
    }
    page, rows = _training_page(profile, configs, limited=True)
    ends, peaks = [r["npr_end"] for r in rows], [r["npr_peak"] for r in rows]
    page.values = {
        "n_runs": (len(rows), "{}"),
        "end_min": (min(ends) if ends else None, "{:.3f}"),
        "end_max": (max(ends) if ends else None, "{:.3f}"),
        "peak_min": (min(peaks) if peaks else None, "{:.3f}"),
        "peak_max": (max(peaks) if peaks else None, "{:.3f}"),
        "steps": (rows[0]["end_step"] if rows else None, "{}"),
    }
    return page


# ----------------------------------------------------------------------------- scale study


def scale_study_page(records: str | Path = RECORDS) -> Page:
    """The scale-study page, from the runs recorded in `records` only.

    Values: runs; best_npr and best_run (the lowest final nPR and its run); dit_reached (runs
    whose nPR reached DiT-XL's 10.47%); cosine_best (the highest final mean cosine); falling
    (runs whose nPR ends below its value at step 1,000); pairs and faster_high_lr (width and
    class-count pairs run at both rates for the same steps, and those where the higher rate
    ends at the lower nPR).
    """
    found = scale_runs(records)
    if not found:
        raise FileNotFoundError(
            f"no recorded run (NAME.json + NAME.jsonl) in {find_root() / records}: train with "
            "scripts/scale_study.py, then record with its --record"
        )
    ends, extrap = end_table(found), extrapolation_table(found)
    best = ends.loc[ends["npr"].idxmin()]
    page = Page(
        tables={
            "ends": ends,
            "extrapolation": extrap,
            "classes": class_count_table(found),
            "provenance": provenance_table(found),
        },
        figures={"curves": scale_figure(found)},
    )
    page.values = {
        "runs": (len(found), "{:d}"),
        "best_npr": (100 * best["npr"], "{:.1f}%"),
        "best_run": (best["run"], "{}"),
        "dit_reached": (int(extrap["dit_npr_reached"].sum()), "{:d}"),
        "cosine_best": (ends["cosine"].max(), "{:.3f}"),
        "falling": (sum(_falls(r["records"]) for r in found), "{:d}"),
        "pairs": (len(_rate_pairs(ends)), "{:d}"),
        "faster_high_lr": (sum(hi < lo for hi, lo in _rate_pairs(ends)), "{:d}"),
    }
    return page


def _falls(records: list[dict], key: str = "ema_classes_npr_mean") -> bool:
    """Whether the last logged value is below the value at step 1,000 (after the early rise)."""
    at = {r["step"]: r[key] for r in records}
    return 1000 in at and records[-1][key] < at[1000]


def _rate_pairs(ends: pd.DataFrame) -> list[tuple[float, float]]:
    """(final nPR at the higher rate, at the lower rate) per width and class count with both,
    among runs of the same length."""
    out = []
    for _, g in ends.groupby(["width", "classes", "steps"]):
        if g["lr"].nunique() >= 2:
            out.append((g.loc[g["lr"].idxmax(), "npr"], g.loc[g["lr"].idxmin(), "npr"]))
    return out


# ----------------------------------------------------------------------------- Fig. 13


def fig13_page(
    profile: str,
    models: list[str],
    train_steps: int | None = None,
    tau_head: float = 0.1,
    tau_tail: float = 0.01,
    perplexity: float | None = None,
    knn: int = 3,
    seed: int = 0,
    max_iter: int = 1000,
) -> Page:
    """Figs. 13 and 20-25: t-SNE of c of every class, full, head only, tail only and deep
    tail only, with the kNN overlap and variance kept of each variant (`tsne`).

    Tables: companion (`tsne.companion_table`; None without models). Figures: panels (None
    without models). Values: overlap_head, overlap_tail, overlap_deep (median kNN overlap over
    models), chance (k / (n - 1)), perplexity_used, n_classes.
    """
    found, missing = analysis.load_models(profile, models, steps=train_steps)
    cs = {m.label: m.c() for m in found}
    page = Page(found=found, missing=missing)
    if not found:
        page.tables["companion"], page.figures["panels"] = None, None
        names = ["overlap_head", "overlap_tail", "overlap_deep", "chance", "n_classes"]
        page.values = {name: (None, "{}") for name in names}
        page.values["perplexity_used"] = (None, "{:g}")
        return page
    n = found[0].num_classes
    used_perplexity = tsne.check_perplexity(perplexity, n)  # a bad one fails before t-SNE runs
    panels = tsne.tsne_panels(cs, tau_head, tau_tail, perplexity, seed, max_iter)
    companion = tsne.companion_table(cs, tau_head, tau_tail, knn)
    overlap = companion.groupby("variant")[f"kNN overlap (k={knn})"].median()
    page.tables["companion"], page.figures["panels"] = companion, tsne.plot_panels(panels)
    page.values = {
        "overlap_head": (float(overlap["head only"]), "{:.2f}"),
        "overlap_tail": (float(overlap["tail only"]), "{:.2f}"),
        "overlap_deep": (float(overlap["deep tail only"]), "{:.2f}"),
        "chance": (knn / (n - 1), "{:.2f}"),
        "perplexity_used": (used_perplexity, "{:g}"),
        "n_classes": (n, "{}"),
    }
    return page
