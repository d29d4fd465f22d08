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
import torch

from semantic_bottleneck.book import plots
from semantic_bottleneck.core import analysis, appendix, metrics
from semantic_bottleneck.core.analysis import Missing, Page
from semantic_bottleneck.core.conventions import check_profile
from semantic_bottleneck.sweeps import xmdpt as xmdpt_sweep
from semantic_bottleneck.sweeps.continuous import (
    TABLE7_ROWS,
    TARGETS,
    run_continuous_sweep,
    table7_settings,
)
from semantic_bottleneck.sweeps.run import change_text
from semantic_bottleneck.training.data import condition_set
from semantic_bottleneck.verdicts import paper


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
# the paper profile quotes these as well
TABLE7_PAPER_MEASURED = ("fid_change", "fid_change_ci", "lpips_change", "lpips_change_ci")
# Table 7's summary quotes these rows
TABLE7_QUOTED = {"paper_row": "tail 0.1 t_i", "head_row": "head 4 dims t_i"}
TABLE7_METRICS = ("fid", "ssim", "lpips", "psnr")
CHANGE_FORMATS = {"fid": "{:+.3f}", "ssim": "{:+.4f}", "lpips": "{:+.4f}", "psnr": "{:+.3f}"}


def _paper_value_rows(labels: list[str]) -> dict[str, str]:
    """Which of the paper's two Table 7 rows stands beside each measured row: its baseline
    beside the baseline, its pruned row beside the tail 0.1 rows of every schedule (the paper
    states none); controls have none."""
    return {
        label: "baseline" if label == "baseline" else "pruned"
        for label in labels
        if label == "baseline" or (label.startswith("tail 0.1 ") and "|" not in label)
    }


def table7_beside_paper(table: list[dict], profile: str) -> pd.DataFrame:
    """The sweep's rows beside the paper's Table 7: per metric the paper's value, this run's with
    its 95% interval, their difference (paper profile: same checkpoint, same metric) and this
    run's change from its own baseline with its 95% interval ("difference [low, high]")."""
    theirs = paper.paper_table("table7")
    printed = {"baseline": theirs.iloc[0], "pruned": theirs.iloc[1]}
    ours = pd.DataFrame(table).set_index("row")
    which = _paper_value_rows(list(ours.index))
    out = pd.DataFrame(index=pd.Index(list(ours.index), name="row"))
    out["removed (this run)"] = ours["removed"]
    for m in TABLE7_METRICS:
        if m not in ours.columns:
            continue
        out[f"{m} (paper)"] = [printed[which[r]][m] if r in which else np.nan for r in out.index]
        out[f"{m} (this run)"] = ours[m]
        if f"{m}_ci" in ours.columns:
            out[f"{m} (this run, 95% ±)"] = ours[f"{m}_ci"]
        if profile == "paper":
            out[f"{m} (diff)"] = out[f"{m} (this run)"] - out[f"{m} (paper)"]
        if "ci" in ours.columns:
            out[f"{m} (vs baseline)"] = [
                change_text(_interval(ci, m), CHANGE_FORMATS[m]) for ci in ours["ci"]
            ]
    return out


def _interval(ci, metric: str) -> dict | None:
    one = (ci or {}).get(metric) if isinstance(ci, dict) else None
    if not one or one.get("low") is None:
        return None
    return one


def _half(ci: dict | None) -> float | None:
    return None if ci is None else (ci["high"] - ci["low"]) / 2


def _fill_note(todo: list[str], rows) -> str:
    return (
        f"{len(todo)} of the {len(rows)} rows are not sampled yet: {', '.join(todo)}. "
        "`semantic-bottleneck xmdpt-sweep` on a GPU fills them (rows are cached one by one and "
        "read here)."
    )


def xmdpt_outcome(system: str, settings, controls, draws: int, root=None):
    """The cached X-MDPT sweep behind the paper-profile pages: (result of the cached rows or
    None, absent inputs, notes). Nothing is sampled."""
    rows = xmdpt_sweep.xmdpt_rows(controls, draws)
    missing = xmdpt_sweep.xmdpt_inputs(system, root)
    if missing:
        return None, missing, [_fill_note([r.label for r in rows], rows)]
    todo = xmdpt_sweep.rows_to_fill(system, rows, settings, root)
    done = [r for r in rows if r.label not in todo]
    if not done or done[0].side is not None:  # nothing to compare without the baseline
        return None, [], [_fill_note(todo, rows)]
    result = xmdpt_sweep.cached_xmdpt_sweep(system, done, settings, root)
    notes = [
        f"Sampler: `{result['sampler']}`; the first {result['pairs']} DeepFashion test pairs, "
        "the same noise seed per pair in every row."
    ]
    return result, [], notes + ([_fill_note(todo, rows)] if todo else [])


def _xmdpt_settings(num_pairs, base_seed, num_steps, last_k, n_boot):
    return xmdpt_sweep.XmdptSettings(
        num_pairs=num_pairs, base_seed=base_seed, num_steps=num_steps or 50, last_k=last_k,
        n_boot=n_boot,
    )  # fmt: skip


def tab07_page(
    profile: str, model: str, train_steps: int | None = None, per_condition: int = 2,
    num_steps: int | None = 50, last_k: int = 10, base_seed: int = 0, *,
    system: str = "xmdpt-l-2", num_pairs: int | None = None, controls: dict | None = None,
    draws: int = 1, deepfashion_root: str | None = None, n_boot: int = 500,
) -> Page:  # fmt: skip
    """Table 7: pruning a continuous condition, with 95% intervals and paired changes to the
    baseline, beside the paper's values.

    Testbed: the continuous-condition model `model`, scored by FID and by PSNR and SSIM against
    the digit each condition was taken from. Paper: the cached X-MDPT sweep of `system` on the
    DeepFashion test pairs (`sweeps.xmdpt`; FID, SSIM, LPIPS, PSNR), its rows where cached,
    notices naming absent inputs and the rows a GPU still has to fill.

    Values: removed (mean dims removed by the paper's row), d, psnr_change, psnr_change_ci,
    ssim_change, ssim_change_ci (the paper's row against the baseline; _ci the 95% half-width),
    head_psnr_change (the head control), conditions, paper_psnr_change and paper_ssim_change
    (Table 7's); in the paper profile also fid_change, fid_change_ci, lpips_change,
    lpips_change_ci. Tables: "measured", "beside paper", "paper". Figures: "samples".
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
    page.values.update({key: (None, "{}") for key in (*TABLE7_MEASURED, *TABLE7_PAPER_MEASURED)})
    if profile == "paper":
        settings = _xmdpt_settings(num_pairs, base_seed, num_steps, last_k, n_boot)
        result, page.missing, page.notes = xmdpt_outcome(
            system, settings, controls, draws, deepfashion_root
        )
        if result is None:
            return page
        rows = {r["row"]: r for r in result["table"]}
        page.tables["measured"] = pd.DataFrame(result["table"]).drop(columns=["ci"])
        page.tables["beside paper"] = table7_beside_paper(result["table"], profile)
        page.figures["samples"] = pairs_figure(result["grids"], _shown_rows(rows))
        page.values.update(conditions=(result["pairs"], "{}"))
        if TABLE7_QUOTED["paper_row"] in rows:
            quoted = rows[TABLE7_QUOTED["paper_row"]]
            page.values.update(removed=(quoted["removed"], "{:.1f}"), d=(quoted["d"], "{}"))
            for m in TABLE7_METRICS:
                ci = _interval(quoted["ci"], m)
                diff = None if ci is None else ci["difference"]
                page.values[f"{m}_change"] = (diff, CHANGE_FORMATS[m])
                page.values[f"{m}_change_ci"] = (_half(ci), CHANGE_FORMATS[m].replace("+", ""))
        if TABLE7_QUOTED["head_row"] in rows:
            ci = _interval(rows[TABLE7_QUOTED["head_row"]]["ci"], "psnr")
            page.values["head_psnr_change"] = (None if ci is None else ci["difference"], "{:+.3f}")
        return page
    settings = table7_settings(per_condition, num_steps, last_k, base_seed)
    result = run_continuous_sweep(model, TABLE7_ROWS, settings, steps=train_steps)
    found, _ = analysis.load_models(profile, [model], steps=train_steps)
    page.found = found
    rows = {r["row"]: r for r in result["table"]}
    quoted, head = rows[TABLE7_QUOTED["paper_row"]], rows[TABLE7_QUOTED["head_row"]]
    page.tables["measured"] = pd.DataFrame(result["table"]).drop(columns=["target count"])
    page.tables["beside paper"] = table7_beside_paper(_testbed_rows(result["table"]), profile)
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


def _testbed_rows(table: list[dict]) -> list[dict]:
    """The testbed rows in the paper profile's form (no LPIPS: no network for 8x8 digits; FID
    has no paired interval there)."""
    out = []
    for r in table:
        ci = {}
        for m in ("psnr", "ssim"):
            d, half = r[f"{m}_change"], r[f"{m}_change_ci"]
            ci[m] = dict(difference=d, low=d - half, high=d + half)
        keep = dict(row=r["row"], removed=r["removed"], fid=r["fid"], ssim=r["ssim"],
                    ssim_ci=r["ssim_ci"], psnr=r["psnr"], psnr_ci=r["psnr_ci"])  # fmt: skip
        out.append({**keep, "ci": ci if r["row"] != "baseline" else {}})
    return out


# ----------------------------------------------------------------------------- Figs. 10, 38-41


def _shown_rows(rows: dict) -> list[str]:
    """The unpruned and the paper's pruned row, when measured."""
    return [r for r in ("baseline", TABLE7_QUOTED["paper_row"]) if r in rows]


def pairs_figure(grids: dict, rows: list[str], first: tuple[str, ...] = ("source", "target")):
    """Figs. 10, 38-41: per pair (one line each) the condition's images (`first`), then the
    sample of each row in `rows`, side by side, with the same noise.

    Args:
        grids: label -> uint8 (pairs, H, W, 3) (images of another size are drawn at their own).
        rows: the sample rows drawn after `first`.
        first: the condition's columns.
    """
    columns = [c for c in first if c in grids] + list(rows)
    n = min(len(grids[c]) for c in columns)
    fig, axes = plt.subplots(n, len(columns), figsize=(1.9 * len(columns), 1.9 * n + 0.4),
                             squeeze=False)  # fmt: skip
    for j, label in enumerate(columns):
        for i in range(n):
            ax = axes[i, j]
            ax.imshow(np.asarray(grids[label][i]), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
        axes[0, j].set_title("unpruned" if label == "baseline" else label, fontsize=9)
    fig.tight_layout()
    return fig


def _testbed_pair_grids(result: dict, shown: int) -> dict:
    """Condition thumbnail (4x4, drawn at 8x8), target digit and the samples of each row, for
    the first condition of each of the first `shown` digits."""
    v, _, digit = condition_set()
    picks = [int(np.flatnonzero(digit.numpy() == k)[0]) for k in range(shown)]
    thumbs = v[picks].reshape(-1, 1, 4, 4).repeat_interleave(2, 2).repeat_interleave(2, 3)
    thumbs = ((thumbs.clamp(-1, 1) + 1) * 127.5).round().to(dtype=torch.uint8)
    grids = {"condition": thumbs.permute(0, 2, 3, 1).repeat(1, 1, 1, 3).numpy()}
    grids["target"] = np.asarray(result["grids"][TARGETS])[:shown, 0]
    for label, g in result["grids"].items():
        if label != TARGETS:
            grids[label] = np.asarray(g)[:shown, 0]
    return grids


def fig10_page(
    profile: str, model: str, train_steps: int | None = None, per_condition: int = 1,
    num_steps: int | None = 50, last_k: int = 10, base_seed: int = 0, shown: int = 6, *,
    system: str = "xmdpt-l-2", num_pairs: int | None = None, controls: dict | None = None,
    draws: int = 1, deepfashion_root: str | None = None, n_boot: int = 500,
) -> Page:  # fmt: skip
    """Figs. 10 and 38-41: the same pairs unpruned and pruned (tail 0.1 at every step), side by
    side with the condition.

    Testbed: each held-out condition's thumbnail, the digit it was taken from, the unpruned and
    the pruned sample (the Table 7 sweep's rows, same parameters). Paper: the source image and
    the ground-truth target (in the target pose) of the first DeepFashion test pairs, and
    X-MDPT's unpruned and pruned samples from the cached Table 7 sweep.

    Values: n_shown, pruned_row, removed, d. Figures: "pairs".
    """
    check_profile(profile)
    page = Page()
    page.values = {"n_shown": (None, "{}"), "pruned_row": (TABLE7_QUOTED["paper_row"], "{}"),
                   "removed": (None, "{:.1f}"), "d": (None, "{}")}  # fmt: skip
    if profile == "paper":
        settings = _xmdpt_settings(num_pairs, base_seed, num_steps, last_k, n_boot)
        result, page.missing, page.notes = xmdpt_outcome(
            system, settings, controls, draws, deepfashion_root
        )
        if result is None:
            return page
        grids = {k: v[:shown] for k, v in result["grids"].items()}
        rows = {r["row"]: r for r in result["table"]}
        first = ("source", "pose", "target")
        if "pose" not in grids:
            page.notes.append(
                "The target pose is shown through the ground-truth target image: the test set "
                "read here has no keypoint files (pose/), from which the pose map is drawn."
            )
    else:
        settings = table7_settings(per_condition, num_steps, last_k, base_seed)
        result = run_continuous_sweep(model, TABLE7_ROWS, settings, steps=train_steps)
        page.found, _ = analysis.load_models(profile, [model], steps=train_steps)
        grids = _testbed_pair_grids(result, min(shown, 10))
        rows = {r["row"]: r for r in result["table"]}
        first = ("condition", "target")
        page.notes.append(f"Sampler: `{result['sampler']}`.")
    drawn = _shown_rows(rows)
    page.figures["pairs"] = pairs_figure(grids, drawn, first)
    quoted = rows.get(TABLE7_QUOTED["paper_row"])
    shown_columns = [c for c in first if c in grids] + drawn
    page.values.update(n_shown=(min(len(grids[c]) for c in shown_columns), "{}"))
    if quoted is not None:
        page.values.update(removed=(quoted["removed"], "{:.1f}"), d=(quoted["d"], "{}"))
    return page
