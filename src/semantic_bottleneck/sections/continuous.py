"""The pages on continuous conditions (Fig. 4, Tables 5 and 7): c when the condition is a vector
computed from an input rather than a class label, as in X-MDPT (pose and source image) and MDSGen
(video features).

In the testbed profile they read the continuous-condition testbed models, each digit conditioned
on its own 4x4 thumbnail through a Linear layer summed with T; their "classes" are 100 held-out
conditions (10 digits of each class, `training.data.condition_set`). In the paper profile they
read the released systems (`core.appendix`) over the conditions of their condition files.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from semantic_bottleneck.book import plots
from semantic_bottleneck.core import analysis, appendix, metrics
from semantic_bottleneck.core.analysis import Missing, Page
from semantic_bottleneck.core.conventions import check_profile
from semantic_bottleneck.sweeps.continuous import TABLE7_ROWS, run_continuous_sweep
from semantic_bottleneck.sweeps.spec import SweepSettings
from semantic_bottleneck.verdicts import paper

PAPER_PROFILE_NOTE = (
    "The paper profile has no sampler for X-MDPT yet, so this page shows the paper's values "
    "only. In the testbed profile it measures the continuous-condition testbed model."
)


def continuous_models(
    profile: str, models: list[str], train_steps: int | None = None, systems: list[str] = ()
) -> tuple[list, list[Missing]]:
    """The continuous-condition models a page measures: the testbed's in the testbed profile,
    the released `systems` in the paper profile; (present, absent)."""
    check_profile(profile)
    if profile == "paper":
        return appendix.load_systems(profile, list(systems))
    found, _ = analysis.load_models(profile, list(models), steps=train_steps)
    return found, []


def sparsity_row(model: analysis.ModelC, tau: float) -> dict:
    """Fig. 4's quantities of one model over its conditions at the initial t: the mean and
    minimum pairwise cosine, and the mean s_head(tau) and s_tail(tau) (the fraction of d above,
    and below, tau)."""
    c = model.c()
    cos = metrics.cosine_summary(c)
    return {
        "model": model.label,
        "conditions": model.num_classes,
        "cosine": cos["mean"],
        "cosine_min": cos["min"],
        "s_head": float(metrics.sparsity_ratio(c, tau, "head").mean()),
        "s_tail": float(metrics.sparsity_ratio(c, tau, "tail").mean()),
    }


def sparsity_figure(found: list[analysis.ModelC], tau: float):
    """Fig. 4 (a, b): s_head(tau) and s_tail(tau) of each condition, sorted, per model."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    for m in found:
        c = m.c()
        for ax, side in zip(axes, ("head", "tail"), strict=True):
            ax.plot(np.sort(np.asarray(metrics.sparsity_ratio(c, tau, side))), label=m.label)
    for ax, side, panel in zip(axes, ("head", "tail"), "ab", strict=True):
        ax.set(
            title=f"({panel}) s_{side}({tau:g}) per condition",
            xlabel="condition (sorted)",
            ylabel="fraction of d",
            ylim=(0, 1),
        )
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    return fig


def fig04_page(
    profile: str, models: list[str], train_steps: int | None = None, tau: float = 0.1,
    zoom: int = 10, seed: int = 0, systems: list[str] = ("xmdpt-l-2",),
) -> Page:  # fmt: skip
    """Fig. 4: sparsity of c at tau (a, b) and the cosine of c across held-out conditions (c).

    Values: cos_lowest (lowest mean cosine over the models), cos_headline, s_head and s_tail
    (of the headline model: the last one), n_conditions, tau, cos_paper (X-MDPT's Table 1 cosine).
    Figures: "sparsity" (a, b), "cosine" (c). Tables: "sparsity".
    """
    found, missing = continuous_models(profile, models, train_steps, systems)
    page = Page(found=found, missing=missing)
    table = pd.DataFrame([sparsity_row(m, tau) for m in found])
    head = table.iloc[-1] if len(table) else None
    xmdpt = paper.paper_row("table1", "X-MDPT")
    page.values = {
        "cos_lowest": (table["cosine"].min() if len(table) else None, "{:.4f}"),
        "cos_headline": (head["cosine"] if head is not None else None, "{:.4f}"),
        "s_head": (head["s_head"] if head is not None else None, "{:.3f}"),
        "s_tail": (head["s_tail"] if head is not None else None, "{:.3f}"),
        "n_conditions": (int(head["conditions"]) if head is not None else None, "{}"),
        "tau": (tau, "{:g}"),
        "cos_paper": (xmdpt["cosine"], "{:.4f}"),
    }
    if found:
        page.tables["sparsity"] = table
        page.figures["sparsity"] = sparsity_figure(found, tau)
        title = f"{found[-1].label}: {found[-1].num_classes} held-out conditions"
        page.figures["cosine"] = plots.cosine_heatmap(
            found[-1].c(), zoom, seed, title, what="conditions"
        )
    return page


TABLE5_COLUMNS = ["cosine_yt", "npr_yt", "cosine_y", "npr_y"]


TABLE5_SYSTEMS = ["xmdpt-l-2", "xmdpt-b-2", "xmdpt-s-2", "sd3-medium", "sd3.5-large"]
TABLE5_SYSTEMS += ["mdsgen-b-2", "audioldm-s-full-v2"]  # the paper's row order


def tab05_page(
    profile: str, models: list[str], train_steps: int | None = None,
    systems: list[str] = tuple(TABLE5_SYSTEMS),
) -> Page:  # fmt: skip
    """Table 5: cosine and nPR of y + t (c) and of y alone (the condition's embedding), beside
    the paper's rows for X-MDPT, SD3, MDSGen and AudioLDM (the released `systems` in the paper
    profile; SD3.5-Large stands in for the unreleased "SD3.0 (8B)").

    Values: cos_yt_min, cos_gap (the smallest rise of the cosine from y alone to y + t),
    cos_y_headline (y alone, the last model),
    cos_paper_min (the lowest of the paper's y + t cosines). Tables: "measured" (shown beside
    the paper's with `pages.statistics_beside_paper(..., "table5", ...)`, columns `TABLE5_COLUMNS`).
    """
    found, missing = continuous_models(profile, models, train_steps, systems)
    page = Page(found=found, missing=missing)
    table = analysis.label_vs_sum_table(found)
    page.tables["measured"] = table
    gap = (table["cosine_yt"] - table["cosine_y"]).min() if len(table) else None
    page.values = {
        "cos_yt_min": (table["cosine_yt"].min() if len(table) else None, "{:.4f}"),
        "cos_gap": (gap, "{:.4f}"),
        "cos_y_headline": (table["cosine_y"].iloc[-1] if len(table) else None, "{:.4f}"),
        "cos_paper_min": (paper.paper_table("table5")["cosine_yt"].min(), "{:.4f}"),
    }
    return page


# the values Table 7's summary quotes from the sweep
TABLE7_MEASURED = (
    "removed", "d", "psnr_change", "psnr_change_ci", "ssim_change", "ssim_change_ci",
    "head_psnr_change", "conditions",
)  # fmt: skip
# Table 7's summary quotes these rows
TABLE7_QUOTED = {"paper_row": "tail 0.1 t_i", "head_row": "head 4 dims t_i"}


def tab07_page(
    profile: str, model: str, train_steps: int | None = None, per_condition: int = 2,
    num_steps: int | None = 100, last_k: int = 20, base_seed: int = 0,
) -> Page:  # fmt: skip
    """Table 7: pruning a continuous condition, scored by FID, and by PSNR and SSIM against the
    digit each condition was taken from, with 95% intervals and paired changes to the baseline.

    Values: removed (mean dims removed by the paper's row), d, psnr_change, psnr_change_ci,
    ssim_change, ssim_change_ci (the paper's row against the baseline), head_psnr_change
    (the head control), conditions, paper_psnr_change and paper_ssim_change (Table 7's).
    Tables: "measured", "paper". Figures: "samples".
    """
    check_profile(profile)
    page = Page()
    theirs = paper.paper_table("table7")
    page.tables["paper"] = theirs[["printed_label", "fid", "ssim", "lpips", "psnr"]]
    base, pruned = theirs.iloc[0], theirs.iloc[1]
    page.values = {
        "paper_psnr_change": (pruned["psnr"] - base["psnr"], "{:+.3f}"),
        "paper_ssim_change": (pruned["ssim"] - base["ssim"], "{:+.4f}"),
    }
    if profile == "paper":  # the measured values read "n/a"
        page.notes.append(PAPER_PROFILE_NOTE)
        page.values.update({key: (None, "{}") for key in TABLE7_MEASURED})
        return page
    settings = SweepSettings(
        per_class=per_condition, base_seed=base_seed, num_steps=num_steps, last_k=last_k,
        grid_per_class=1,
    )  # fmt: skip
    result = run_continuous_sweep(model, TABLE7_ROWS, settings, steps=train_steps)
    found, _ = analysis.load_models(profile, [model], steps=train_steps)
    page.found = found
    rows = {r["row"]: r for r in result["table"]}
    quoted, head = rows[TABLE7_QUOTED["paper_row"]], rows[TABLE7_QUOTED["head_row"]]
    page.tables["measured"] = pd.DataFrame(result["table"]).drop(columns=["target count"])
    page.figures["samples"] = plots.sample_grids(result["grids"])
    page.notes.append(
        f"Sampler: `{result['sampler']}`; {result['conditions']} held-out conditions, "
        f"{per_condition} samples each, the same conditions and noise seeds in every row."
    )
    page.values.update(
        removed=(quoted["removed"], "{:.1f}"),
        d=(quoted["d"], "{}"),
        psnr_change=(quoted["psnr_change"], "{:+.3f}"),
        psnr_change_ci=(quoted["psnr_change_ci"], "{:.3f}"),
        ssim_change=(quoted["ssim_change"], "{:+.4f}"),
        ssim_change_ci=(quoted["ssim_change_ci"], "{:.4f}"),
        head_psnr_change=(head["psnr_change"], "{:+.3f}"),
        conditions=(result["conditions"], "{}"),
    )
    return page
