"""The pages of Section 5, on generation with a pruned c (Tables 2 and 3, Figs. 7 and 8).

Each reads a pruning sweep (`sweeps.run`): in the testbed profile sampled from a testbed model and
cached; in the paper profile read from the cache the `semantic-bottleneck sweep` command fills,
or, when an input or the rows are absent, nothing but the notice naming what is missing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from semantic_bottleneck.book import plots
from semantic_bottleneck.core.analysis import Missing, Page
from semantic_bottleneck.core.conventions import check_profile
from semantic_bottleneck.sweeps import run as sweep
from semantic_bottleneck.sweeps.spec import SweepRow, SweepSettings

# the rows the figures draw, in order (labels of `sweeps.run.paper_rows("table2")`)
HEAD_ROWS = ["baseline", "head 5 t_i", "head 1 t_i"]
TAIL_ROWS = ["baseline", "tail 0.01 t_i", "tail 0.02 t_i", "tail 0.05 t_i", "tail 5 t_i"]
# Table 2's summary: glue name -> the row whose FID it quotes
TABLE2_FIDS = {
    "fid_base": "baseline",
    "fid_t0": "tail 0.01 t_0",
    "fid_066": "tail 0.02 t_i",  # the paper's 66% row
    "fid_head8": "head 1 t_i",  # the paper's 8 head dimensions
}
TABLE3_MODELS = ("MG", "LightningDiT")  # the paper's models of Table 3, in its order


@dataclass
class SweepOutcome:
    """A page's sweep: its result (None when it could not be read) and what the page says
    about it: absent inputs (`Missing`) and notes (the sampler, or why nothing was sampled)."""

    result: dict | None
    missing: list[Missing] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def settings_of(per_class: int, num_steps: int | None, last_k: int, base_seed: int):
    """The sweep settings a pruning page's parameters give."""
    return SweepSettings(
        per_class=per_class, base_seed=base_seed, num_steps=num_steps, last_k=last_k
    )


def sweep_outcome(
    profile: str,
    model: str,
    rows: list[SweepRow],
    settings: SweepSettings,
    train_steps: int | None = None,
) -> SweepOutcome:
    """The sweep behind a page, with its notices returned as data (`pages.start` shows them at
    the top of the page).

    Testbed: `sweeps.run.run_testbed_sweep` (sampled now or cached). Paper: `sweeps.run.run_paper_sweep`
    when every input is in the weights cache, and then only if the rows are cached or a GPU is
    there; otherwise result None with the missing inputs or the reason as a note.
    """
    check_profile(profile)
    if profile == "testbed":
        result = sweep.run_testbed_sweep(model, rows, settings, steps=train_steps)
    else:
        missing = sweep.paper_inputs(model)
        if missing:
            return SweepOutcome(None, missing)
        try:
            result = sweep.run_paper_sweep(model, rows, settings)
        except sweep.NeedsGPUError as err:
            return SweepOutcome(None, notes=[str(err)])
    note = f"Sampler: `{result['sampler']}`. Model numerics: {result['numerics']}."
    return SweepOutcome(result, notes=[note])


def _by_row(result: dict | None) -> pd.DataFrame | None:
    """A sweep's rows indexed by their label (None without a result)."""
    return pd.DataFrame(result["table"]).set_index("row") if result else None


def tab02_page(
    profile: str,
    model: str,
    train_steps: int | None = None,
    per_class: int = 20,
    num_steps: int | None = 100,
    last_k: int = 20,
    base_seed: int = 0,
) -> Page:
    """Table 2: the REPA rows of the sweep beside the paper's.

    Tables: rows (`sweeps.run.rows_beside_paper`; None without a result). Values: fid_base, fid_t0,
    fid_066, fid_head8 (`TABLE2_FIDS`), removed_066 (mean dims removed in the 66% row) and
    d_model (the width of c).
    """
    out = sweep_outcome(
        profile,
        model,
        sweep.paper_rows("table2"),
        settings_of(per_class, num_steps, last_k, base_seed),
        train_steps,
    )
    ours = _by_row(out.result)
    have = ours is not None
    page = Page(missing=out.missing, notes=out.notes)
    page.tables["rows"] = (
        sweep.rows_beside_paper(out.result["table"], "table2", "REPA", profile) if have else None
    )
    page.values = {
        key: (ours.loc[row, "fid"] if have else None, "{:.2f}") for key, row in TABLE2_FIDS.items()
    }
    page.values["removed_066"] = (ours.loc["tail 0.02 t_i", "removed"] if have else None, "{:.1f}")
    page.values["d_model"] = (ours["d"].iloc[0] if have else None, "{}")
    return page


def worst_fid_ratio(tables: list[list[dict]]) -> float | None:
    """The largest FID of any row over its sweep's baseline FID, over the given sweeps' tables
    (None when there are none)."""
    ratios = []
    for table in tables:
        fid = pd.DataFrame(table).set_index("row")["fid"]
        ratios.append((fid / fid["baseline"]).max())
    return max(ratios) if ratios else None


def tab03_page(
    profile: str,
    model: str,
    model_lightningdit: str | None = None,
    train_steps: int | None = None,
    per_class: int = 20,
    num_steps: int | None = 100,
    last_k: int = 20,
    base_seed: int = 0,
) -> Page:
    """Table 3: the MG and LightningDiT rows, each measured when its model is named and its
    sweep could be read, beside the paper's (the paper's rows alone otherwise).

    Tables: MG, LightningDiT (`sweeps.run.rows_beside_paper`). Values: worst_ratio
    (`worst_fid_ratio` over the measured models).
    """
    settings = settings_of(per_class, num_steps, last_k, base_seed)
    page, results = Page(), {}
    for paper_model, name in zip(TABLE3_MODELS, (model, model_lightningdit), strict=True):
        if name is None:
            continue
        rows = sweep.paper_rows("table3", paper_model)
        out = sweep_outcome(profile, name, rows, settings, train_steps)
        page.missing += [m for m in out.missing if m not in page.missing]
        page.notes += out.notes
        if out.result:
            results[paper_model] = out.result["table"]
    for paper_model in TABLE3_MODELS:
        table = results.get(paper_model, [])
        page.tables[paper_model] = sweep.rows_beside_paper(table, "table3", paper_model, profile)
    page.values = {"worst_ratio": (worst_fid_ratio(list(results.values())), "{:.3f}")}
    return page


def _samples_page(
    rows: list[str],
    profile: str,
    model: str,
    train_steps: int | None,
    settings: SweepSettings,
) -> Page:
    """A page of sample grids of the Table 2 sweep: the given rows, below the real digits."""
    out = sweep_outcome(profile, model, sweep.paper_rows("table2"), settings, train_steps)
    fig = plots.sample_grids(out.result["grids"], rows) if out.result else None
    return Page(figures={"samples": fig}, missing=out.missing, notes=out.notes)


def fig07_page(
    profile: str,
    model: str,
    train_steps: int | None = None,
    per_class: int = 20,
    num_steps: int | None = 100,
    last_k: int = 20,
    base_seed: int = 0,
) -> Page:
    """Fig. 7: samples with the head of c removed at every step (`HEAD_ROWS`), beside the
    baseline with the same noise. Figures: samples (None without a result)."""
    settings = settings_of(per_class, num_steps, last_k, base_seed)
    return _samples_page(HEAD_ROWS, profile, model, train_steps, settings)


def fig08_page(
    profile: str,
    model: str,
    train_steps: int | None = None,
    per_class: int = 20,
    num_steps: int | None = 100,
    last_k: int = 20,
    base_seed: int = 0,
) -> Page:
    """Figs. 8 and 34-37: samples as more and more of the tail is zeroed (`TAIL_ROWS`).
    Figures: samples (None without a result)."""
    settings = settings_of(per_class, num_steps, last_k, base_seed)
    return _samples_page(TAIL_ROWS, profile, model, train_steps, settings)
