"""The pages of Sections 1-4, on the conditional vector c itself (Figs. 1, 2, 3, 5, 6).

Every page reads c for every class at each model's initial t (`analysis.load_models`); in the
paper profile a model whose checkpoint is absent is listed in `Page.missing` and left out.
"""

from __future__ import annotations

import pandas as pd
from torch import Tensor

from semantic_bottleneck.book import plots
from semantic_bottleneck.core import analysis, appendix, bootstrap, schematic
from semantic_bottleneck.core.analysis import Page
from semantic_bottleneck.verdicts import paper

TOP_DIMS = 10  # Fig. 6: the dimensions whose share of the L1 mass of c is quoted
TOP_SHARE = f"top-{TOP_DIMS} share of |c|₁"  # its column in the Fig. 6 table


def fig01_page(profile: str, models: list[str], train_steps: int | None = None) -> Page:
    """Fig. 1: mean cosine and nPR of c per model, and the same bars from the paper's Table 1.

    Tables: statistics (`analysis.statistics_table`). Figures: bars (this run; None without
    models), paper_bars (Table 1 as printed). Values: lowest_cosine, highest_npr, profile.
    """
    found, missing = analysis.load_models(profile, models, steps=train_steps)
    table = analysis.statistics_table(found)
    have = len(table) > 0
    return Page(
        tables={"statistics": table},
        figures={
            "bars": plots.bars(table, ["cosine", "npr"]) if have else None,
            "paper_bars": plots.bars(paper.paper_table("table1"), ["cosine", "npr"]),
        },
        values={
            "lowest_cosine": (table["cosine"].min() if have else None, "{:.4f}"),
            "highest_npr": (table["npr"].max() if have else None, "{:.2%}"),
            "profile": (profile, "{}"),
        },
        found=found,
        missing=missing,
    )


TABLE1_COLUMNS = ["d", "pr", "npr", "cosine"]  # the columns the paper's Table 1 prints


def tab01_page(
    profile: str, models: list[str], train_steps: int | None = None,
    systems: list[str] = tuple(appendix.TABLE1_SYSTEMS),
) -> Page:  # fmt: skip
    """Table 1: d, PR, nPR and the cosine of c per model at the initial t (shown beside the
    paper's with `pages.statistics_beside_paper(..., "table1", ...)` on `TABLE1_COLUMNS`); in
    the paper profile also X-MDPT's and MDSGen's rows over their condition files (`systems`).

    Tables: statistics (`analysis.statistics_table`), intervals (95% intervals over classes,
    `bootstrap.class_interval_table`). Figures: bars (nPR and cosine; None without models).
    Values: npr_min, npr_max, cos_min, cos_max, n_models, ci_boot, npr_width_max, cos_width_max.
    """
    found, missing = analysis.load_models(profile, models, steps=train_steps)
    more, absent = appendix.load_systems(profile, list(systems))
    found, missing = found + more, missing + absent
    table = analysis.statistics_table(found)
    have = len(table) > 0
    intervals, interval_values = bootstrap.class_interval_table(found)

    def over_models(column: str, how: str) -> float | None:
        return getattr(table[column], how)() if have else None

    return Page(
        tables={"statistics": table, "intervals": intervals},
        figures={"bars": plots.bars(table, ["npr", "cosine"]) if have else None},
        values={
            "npr_min": (over_models("npr", "min"), "{:.2%}"),
            "npr_max": (over_models("npr", "max"), "{:.2%}"),
            "cos_min": (over_models("cosine", "min"), "{:.4f}"),
            "cos_max": (over_models("cosine", "max"), "{:.4f}"),
            "n_models": (len(table), "{}"),
            **interval_values,
        },
        found=found,
        missing=missing,
    )


def layout_row(name: str, shapes: dict) -> dict:
    """One model's row of the Fig. 2 layout table: width, blocks, modulation widths and the
    share of the parameters its modulation Linears hold (`schematic.parameter_shares`)."""
    layout, share = schematic.layout_from_shapes(shapes), schematic.parameter_shares(shapes)
    return {
        "model": name,
        "d": layout.d,
        "blocks": layout.depth,
        "block modulation": f"{layout.d} -> {layout.block_chunks} x {layout.d}",
        "final modulation": f"{layout.d} -> {layout.final_chunks} x {layout.d}",
        "modulation params": share["modulation"],
        "all params": share["total"],
        "share": share["share"],
    }


def fig02_page(profile: str, models: list[str], show_pruning: bool = True) -> Page:
    """Fig. 2: the conditioning path of the first model drawn from its layer shapes (testbed:
    the zoo model its config builds; paper: the checkpoint's manifest, no weights needed).

    Tables: layouts (`layout_row` per model). Figures: schematic. Values: drawn_model, d, depth,
    modulation_share (of the first model).
    """
    shapes = {name: schematic.model_shapes(profile, name) for name in models}
    layouts = pd.DataFrame([layout_row(name, s) for name, s in shapes.items()])
    first = models[0]
    drawn = schematic.layout_from_shapes(shapes[first])
    fig = schematic.draw_schematic(drawn, show_pruning, title=f"Conditioning path of {first}")
    return Page(
        tables={"layouts": layouts},
        figures={"schematic": fig},
        values={
            "drawn_model": (first, "{}"),
            "d": (drawn.d, "{}"),
            "depth": (drawn.depth, "{}"),
            "modulation_share": (layouts["share"].iloc[0], "{:.1%}"),
        },
    )


def fig03_page(
    profile: str,
    models: list[str],
    train_steps: int | None = None,
    zoom: int = 10,
    seed: int = 0,
) -> Page:
    """Figs. 3 and 14-19: the cosine matrix of c across classes per model, with a zoom on
    `zoom` classes drawn with `seed`.

    Tables: cosine (model, mean and min cosine). Figures: one heatmap per model, keyed by its
    label. Values: min_pair_cos (the smallest pairwise cosine of any model).
    """
    found, missing = analysis.load_models(profile, models, steps=train_steps)
    table = analysis.statistics_table(found)
    figures = {
        m.label: plots.cosine_heatmap(m.c(), zoom=zoom, seed=seed, title=m.label) for m in found
    }
    value = table["cosine_min"].min() if len(table) else None
    return Page(
        tables={"cosine": table[["model", "cosine", "cosine_min"]]},
        figures=figures,
        values={"min_pair_cos": (value, "{:.4f}")},
        found=found,
        missing=missing,
    )


def fig05_page(profile: str, models: list[str], train_steps: int | None = None) -> Page:
    """Fig. 5: the histogram of |c_i| over all classes and dimensions.

    Tables: counts (`analysis.magnitude_summary` per model). Figures: histograms (None without
    models). Values: max_abs_c (over models), s_tail_001 (s_tail(0.01), mean over models).
    """
    found, missing = analysis.load_models(profile, models, steps=train_steps)
    counts = pd.DataFrame([analysis.magnitude_summary(m) for m in found])
    have = len(counts) > 0
    fig = plots.magnitude_histograms({m.label: m.c() for m in found}) if found else None
    return Page(
        tables={"counts": counts},
        figures={"histograms": fig},
        values={
            "max_abs_c": (counts["max_abs_c"].max() if have else None, "{:.3f}"),
            "s_tail_001": (counts["s_tail_0_01"].mean() if have else None, "{:.3f}"),
        },
        found=found,
        missing=missing,
    )


def top_share(c: Tensor, k: int = TOP_DIMS) -> float:
    """The share of the L1 mass of one c held by its k largest |c_i|. Shapes: c (d,)."""
    mags = c.abs()
    return float(mags.topk(min(k, mags.numel())).values.sum() / mags.sum())


def fig06_page(
    profile: str, models: list[str], train_steps: int | None = None, class_index: int = 0
) -> Page:
    """Fig. 6: c_i against the dimension index i for one class.

    Tables: top_share (model, the share of the L1 mass of c in its `TOP_DIMS` largest |c_i|,
    for class `class_index`). Figures: dimensions (None without models). Values: top10_share
    (its smallest value over models), class_index_text.
    """
    found, missing = analysis.load_models(profile, models, steps=train_steps)
    cs = {m.label: m.c() for m in found}
    shares = pd.DataFrame(
        [{"model": label, TOP_SHARE: top_share(c[class_index])} for label, c in cs.items()],
        columns=["model", TOP_SHARE],
    )
    fig = plots.c_over_dimensions(cs, cls=class_index) if found else None
    return Page(
        tables={"top_share": shares},
        figures={"dimensions": fig},
        values={
            "top10_share": (shares[TOP_SHARE].min() if found else None, "{:.3f}"),
            "class_index_text": (class_index, "{}"),
        },
        found=found,
        missing=missing,
    )
