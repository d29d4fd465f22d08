"""The Appendix pages: c against the label embedding alone (Table 4), precision and recall under
pruning (Table 6) and the cost of the AdaLN modulation with a sparse c (Fig. 42)."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch
from torch import Tensor

from semantic_bottleneck.core import adaln_cost, analysis, appendix, metrics, schematic
from semantic_bottleneck.core.adaln_cost import Modulation
from semantic_bottleneck.core.analysis import Page
from semantic_bottleneck.core.systems import readings_from_cosine
from semantic_bottleneck.sections.pruning import settings_of, sweep_outcome, with_controls
from semantic_bottleneck.sweeps import run as sweep
from semantic_bottleneck.training import testbed
from semantic_bottleneck.verdicts import paper
from semantic_bottleneck.zoo import registry
from semantic_bottleneck.zoo.dit import timestep_embedding

TABLE4_COLUMNS = ["cosine_yt", "npr_yt", "cosine_y", "npr_y"]  # compared with the paper's


def tab04_page(
    profile: str, models: list[str], train_steps: int | None = None,
    uvit: str | None = "uvit-h-2-imagenet256",
) -> Page:  # fmt: skip
    """Table 4: cosine and nPR of c = T + Y and of Y alone; in the paper profile also the U-ViT
    row (`uvit`, None for none), whose label and time tokens are read both ways: concatenated
    ([T; Y], Table 4's "concatenation") and summed (T + Y).

    Tables: label_vs_sum (`analysis.label_vs_sum_table`; shown beside the paper's with
    `pages.statistics_beside_paper` on `TABLE4_COLUMNS`), uvit_readings (`uvit_readings`, in
    both profiles: it needs no weights). Values: cos_gap (the smallest rise of the mean cosine
    from Y alone to T + Y over models), uvit_concat_npr and uvit_sum_npr (U-ViT-H/2's readings),
    uvit_paper_npr, uvit_match (the reading whose nPR is nearer the paper's).
    """
    found, missing = analysis.load_models(profile, models, steps=train_steps)
    gap_models = list(found)
    more, absent = appendix.load_systems(profile, [uvit] if uvit else [])
    for sys_c in more:  # both readings of the token pair
        found += [appendix.with_reading(sys_c, "concat"), appendix.with_reading(sys_c, "sum")]
    missing += absent
    table = analysis.label_vs_sum_table(found)
    mine = table[table["model"].isin([m.label for m in gap_models])]
    gap = (mine["cosine_yt"] - mine["cosine_y"]).min() if len(mine) else None
    readings = uvit_readings()
    npr = readings[readings["model"] == UVIT_RELEASES[0]].set_index("reading")["npr"]
    return Page(
        tables={"label_vs_sum": table, "uvit_readings": readings},
        values={
            "cos_gap": (gap, "{:.3f}"),
            "uvit_concat_npr": (npr["concat"], "{:.2%}"),
            "uvit_sum_npr": (npr["sum"], "{:.2%}"),
            "uvit_paper_npr": (readings["npr_paper"].iloc[0], "{:.2%}"),
            "uvit_match": (
                READING_NAMES[(npr - readings["npr_paper"].iloc[0]).abs().idxmin()],
                "{}",
            ),
        },
        found=found,
        missing=missing,
    )


UVIT_RELEASES = ["uvit-h-2-imagenet256", "uvit-l-2-imagenet256"]  # one per width and t
READING_NAMES = {"concat": "the concatenation [T; Y]", "sum": "the sum T + Y"}


def uvit_readings(releases: list[str] = tuple(UVIT_RELEASES), seed: int = 0) -> pd.DataFrame:
    """Which reading of U-ViT's token pair Table 4's row is: the cosine and nPR of the
    concatenation [T; Y] and of the sum T + Y, from each release's exact time token at its
    initial t and label tokens drawn isotropic at the norm that gives the paper's cosine
    (`core.systems.readings_from_cosine`; the paper's "y alone" is Gaussian-like).

    Returns:
        One row per release and reading: model, reading, t, width, cosine, npr, and the paper's
        npr_yt beside (npr_paper).
    """
    theirs = paper.paper_row("table4", "U-ViT (concatenation)")
    rows = []
    for name in releases:
        entry = registry.get_system(name)
        width = registry.read_manifest(entry.manifest)["config"]["embed_dim"]
        # U-ViT's time token is this sinusoid exactly (libs/uvit.py: cos half first, no MLP)
        time = timestep_embedding(torch.tensor([entry.initial_t]), width)
        for how, c in readings_from_cosine(time, theirs["cosine_yt"], seed=seed).items():
            rows.append({
                "model": name, "reading": how, "t": entry.initial_t, "width": c.shape[1],
                "cosine": metrics.cosine_summary(c)["mean"],
                "npr": float(metrics.normalized_participation_ratio(c).mean()),
                "npr_paper": theirs["npr_yt"],
            })  # fmt: skip
    return pd.DataFrame(rows)


# Table 6's rows and the columns it adds to Tables 2 and 3
TABLE6_ROWS = ["baseline", "tail 0.01 t_0", "tail 0.01 t_{n-k,n}"]
TABLE6_COLUMNS = (
    "precision|recall|fid"  # a regex over the columns of `sweeps.run.rows_beside_paper`
)
# page table key -> (the paper's table, its model) of the sweeps Table 6 reads
TABLE6_SOURCES = {"table2": ("table2", "REPA"), "table3": ("table3", "MG")}
TABLE6_METRICS = ("precision", "recall")  # the metrics Table 6 adds (its claims judged here)


def precision_drop(frames: list[pd.DataFrame]) -> float | None:
    """The most negative precision change of a pruned Table 6 row against its baseline, over
    the given tables (`sweeps.run.rows_beside_paper` rows; None when there are none)."""
    drops = []
    for f in frames:
        ours = f["precision (this run)"]
        drops.append((ours.loc[TABLE6_ROWS[1:]] - ours.loc["baseline"]).min())
    return min(drops) if drops else None


def tab06_page(
    profile: str,
    model: str,
    model_table3: str,
    train_steps: int | None = None,
    per_class: int = 20,
    num_steps: int | None = 50,
    last_k: int = 10,
    base_seed: int = 0,
    controls_table2: str | dict | None = None,
    controls_table3: str | dict | None = None,
    draws: int = 3,
) -> Page:
    """Table 6: precision and recall of the baseline, t_0 and t_{n-k,n} rows of the Table 2
    (`model`) and Table 3 (`model_table3`) sweeps, the same cached sweeps as those pages read,
    each pruned row with its difference from the baseline and 95% paired interval, and the
    control rows of `controls_table2` / `controls_table3` (`sweeps.spec.control_rows`, `draws`
    random draws) beside them.

    Tables: table2, table3 (`TABLE6_ROWS` and their control rows by the FID, precision and
    recall columns; None when the sweep could not be read), claims (the paper's precision and
    recall improvement claims judged against this run's noise at 5,000 samples,
    `sweeps.run.paper_claims`; None without intervals). Values: precision_drop
    (`precision_drop`), claims_noise (paired noise), claims_noise_independent (the noise of
    independent sets), claims_total.
    """
    settings = settings_of(per_class, num_steps, last_k, base_seed)
    page, full, claims = Page(), [], []
    controls = {"table2": controls_table2, "table3": controls_table3}
    for key, name in zip(TABLE6_SOURCES, (model, model_table3), strict=True):
        table_id, paper_model = TABLE6_SOURCES[key]
        paper_rows = sweep.paper_rows(table_id, None if table_id == "table2" else paper_model)
        rows = with_controls(paper_rows, controls[key], draws)
        out = sweep_outcome(profile, name, rows, settings, train_steps)
        page.missing += [m for m in out.missing if m not in page.missing]
        # one sampler note per sweep; a note both sweeps give (no intervals yet) once
        page.notes += [n for n in out.notes if n.startswith("Sampler") or n not in page.notes]
        page.tables[key] = None
        if out.result:
            frame = sweep.rows_beside_paper(out.result["table"], table_id, paper_model, profile)
            others = {r.label for r in paper_rows} - set(TABLE6_ROWS)
            full.append(frame.loc[[label for label in frame.index if label not in others]])
            page.tables[key] = full[-1].filter(regex=TABLE6_COLUMNS)
            judged = sweep.paper_claims(out.result["table"], "table6", paper_model, profile)
            claims.append(judged[judged["metric"].isin(TABLE6_METRICS)].assign(model=paper_model))
    claims = pd.concat(claims, ignore_index=True) if claims else None
    page.tables["claims"] = claims if claims is not None and len(claims) else None
    page.values = {
        "precision_drop": (precision_drop(full), "{:+.3f}"),
        "claims_noise": (
            None if page.tables["claims"] is None
            else int((claims["verdict"] != "improves").sum()),
            "{}",
        ),
        "claims_total": (None if page.tables["claims"] is None else len(claims), "{}"),
        "claims_noise_independent": (
            None if page.tables["claims"] is None or claims["independent verdict"].isna().all()
            else int((claims["independent verdict"].dropna() != "improves").sum()),
            "{}",
        ),
    }  # fmt: skip
    return page


@dataclass(frozen=True)
class CostInputs:
    """What Fig. 42 times: the modulation layers, the batch of c and how each was chosen.

    Shapes: c (batch, modulation.d_in).
    """

    modulation: Modulation
    c: Tensor
    weights_note: str
    c_note: str


def cost_inputs(
    profile: str,
    model: str,
    found: list[analysis.ModelC],
    batch: int,
    train_steps: int | None = None,
    seed: int = 0,
) -> CostInputs:
    """The layers and c of Fig. 42 in either profile.

    Weights: on the testbed the trained model's own modulation Linears, so that the agreement
    check runs on real layers; in the paper profile random weights with the official
    checkpoint's layer shapes (from its manifest: timing needs only the shapes, no download).
    c: the classes of the first model present, repeated to `batch` rows, at its initial t; a
    synthetic head-tail c when no checkpoint is present.
    """
    if profile == "testbed":
        net, _, _ = testbed.load_trained(testbed.testbed_config(model, steps=train_steps))
        modulation = adaln_cost.modulation_from_state(net.state_dict())
        weights_note = f"the trained weights of {model}"
    else:
        modulation = adaln_cost.random_modulation(schematic.model_shapes(profile, model), seed)
        weights_note = f"random weights with the layer shapes of {model}"
    if found:
        classes = torch.arange(batch) % found[0].num_classes
        c, c_note = found[0].c()[classes], f"c of {found[0].label} at its initial t"
    else:
        c = adaln_cost.synthetic_c(batch, modulation.d_in, seed)
        c_note = "a synthetic head-tail c (no checkpoint present)"
    return CostInputs(modulation, c, weights_note, c_note)


# Fig. 42's table: shown column -> (column of `adaln_cost.cost_sweep`, scale)
COST_SHOWN = {
    "dense ms": ("dense_s", 1e3),
    "sparse ms": ("sparse_s", 1e3),
    "sparse / dense baseline": ("sparse_vs_baseline", 1.0),
    "fastest dense ms": ("dense_min_s", 1e3),
    "fastest sparse ms": ("sparse_min_s", 1e3),
    "GFLOP dense": ("flops_dense", 1e-9),
    "GFLOP sparse": ("flops_sparse", 1e-9),
}


def cost_values(cost: pd.DataFrame, d: int) -> dict:
    """The values Fig. 42's text quotes, from `adaln_cost.cost_sweep`'s table.

    all_agree, max_diff (of the two paths); most_removed, most_kept, most_ratio (time) and
    most_flops_ratio at the largest removed count; first_removed and first_ratio at the second
    smallest count (the paper's tau = 0.01 count, scaled; None with a single count); width (d).
    """
    most = cost.loc[cost["removed"].idxmax()]
    second = cost.sort_values("removed").iloc[1] if len(cost) > 1 else None
    return {
        "all_agree": ("all agree" if cost["allclose"].all() else "DISAGREE", "{}"),
        "max_diff": (float(cost["max_abs_diff"].max()), "{:.1e}"),
        "most_removed": (int(most["removed"]), "{}"),
        "width": (d, "{}"),
        "most_kept": (float(most["kept_fraction"]), "{:.1%}"),
        "most_ratio": (float(most["sparse_vs_baseline"]), "{:.2f}"),
        "most_flops_ratio": (float(most["flops_sparse"] / most["flops_dense"]), "{:.2f}"),
        "first_removed": (None if second is None else int(second["removed"]), "{}"),
        "first_ratio": (None if second is None else float(second["sparse_vs_baseline"]), "{:.2f}"),
    }


def fig42_page(
    profile: str,
    models: list[str],
    train_steps: int | None = None,
    batch: int = 64,
    removed: list[int] | None = None,
    repeats: int = 7,
    warmup: int = 1,
    threads: int = 1,
    seed: int = 0,
) -> Page:
    """Fig. 42: the dense and the sparse (kept columns gathered) AdaLN modulation timed on the
    same weights (`cost_inputs`, from the first of `models`) at each removed count (default:
    the paper's counts scaled to d), their agreement and FLOPs.

    Tables: cost (times in ms, FLOPs in GFLOP, agreement). Figures: cost. Values: `cost_values`.
    """
    found, missing = analysis.load_models(profile, models[:1], steps=train_steps)
    inputs = cost_inputs(profile, models[0], found, batch, train_steps, seed)
    mod = inputs.modulation
    d = mod.d_in
    counts = adaln_cost.scaled_removed(d) if removed is None else list(removed)
    cost = adaln_cost.cost_sweep(mod, inputs.c, counts, repeats, warmup, num_threads=threads)
    shown = cost[["removed", "kept", "kept_fraction"]].assign(
        **{col: scale * cost[key] for col, (key, scale) in COST_SHOWN.items()}
    )
    note = (
        f"Weights: {inputs.weights_note}. c: {inputs.c_note}. d = {d}, "
        f"{len(mod.weights)} modulation layers, batch {batch}, {threads} thread(s)."
    )
    return Page(
        tables={"cost": shown.assign(max_abs_diff=cost["max_abs_diff"], allclose=cost["allclose"])},
        figures={"cost": adaln_cost.plot_cost(cost, f"AdaLN modulation, d = {d}, batch {batch}")},
        values=cost_values(cost, d),
        found=found,
        missing=missing,
        notes=[note],
    )
