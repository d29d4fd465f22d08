"""The pages of Section 5, on generation with a pruned c (Tables 2 and 3, Figs. 7 and 8, and
where along the sampler's steps pruning acts).

Each reads a pruning sweep (`sweeps.run`): in the testbed profile sampled from a testbed model and
cached; in the paper profile read from the cache the `semantic-bottleneck sweep` command fills,
or, when an input or the rows are absent, nothing but the notice naming what is missing. Every
pruned row carries its difference from the baseline with a 95% paired-bootstrap interval, and its
controls (`sweeps.spec.control_rows`) stand beside it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pandas as pd

from semantic_bottleneck.book import plots
from semantic_bottleneck.core import adaln_cost
from semantic_bottleneck.core.analysis import Missing, Page
from semantic_bottleneck.core.conventions import check_profile
from semantic_bottleneck.sweeps import run as sweep
from semantic_bottleneck.sweeps.spec import (
    WINDOW_ROWS,
    SweepRow,
    SweepSettings,
    window_groups,
    window_settings,
    window_sweep_rows,
)
from semantic_bottleneck.training.data import DIGITS_CLASSES
from semantic_bottleneck.training.testbed import SEED_MODEL, TRAINING_SEEDS
from semantic_bottleneck.verdicts.rules import change_verdict
from semantic_bottleneck.zoo.fetch import fetch_command

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
        if missing:  # every row is still to be sampled, the controls among them
            return SweepOutcome(None, missing, notes=[_fill_note([r.label for r in rows], rows)])
        todo = sweep.rows_to_fill(model, rows, settings)
        done = [r for r in rows if r.label not in todo]
        if todo and not any(r.side is None for r in done):
            return SweepOutcome(None, notes=[_fill_note(todo, rows)])
        # the rows already sampled are shown; a GPU fills the others
        result = sweep.run_paper_sweep(model, done, settings)
        note = f"Sampler: `{result['sampler']}`. Model numerics: {result['numerics']}."
        notes = [note, *([_fill_note(todo, rows)] if todo else []), *_interval_note(result)]
        return SweepOutcome(result, notes=notes)
    note = f"Sampler: `{result['sampler']}`. Model numerics: {result['numerics']}."
    return SweepOutcome(result, notes=[note, *_interval_note(result)])


def _fill_note(todo: list[str], rows: list[SweepRow]) -> str:
    """The rows a GPU still has to sample: the paper's rows and the control rows apart."""
    windows = {r.label for r in rows if r.window is not None}
    controls = {r.label for r in rows if r.control is not None} - windows
    paper_todo = [label for label in todo if label not in controls | windows]
    control_todo = [label for label in todo if label in controls]
    window_todo = [label for label in todo if label in windows]
    parts = [
        f"the paper's rows {', '.join(paper_todo)}" if paper_todo else "",
        f"the control rows {', '.join(control_todo)}" if control_todo else "",
        f"the window rows {', '.join(window_todo)}" if window_todo else "",
    ]
    how = "`semantic-bottleneck sweep TABLE MODEL --controls` on a GPU fills them."
    if window_todo:
        how = "`semantic-bottleneck sweep windows MODEL` on a GPU fills them."
    return f"{len(todo)} of the {len(rows)} rows are not sampled yet: {'; '.join(p for p in parts if p)}. {how}"


def _interval_note(result: dict) -> list[str]:
    """A note when the sweep's rows carry no paired interval (the baseline is not sampled yet):
    what the page leaves out, and why."""
    if any(r.get("ci") for r in result["table"]):
        return []
    return [
        "These rows have no paired-bootstrap interval yet: every interval is of a row's "
        "difference from the baseline, whose row is not sampled yet. The differences with "
        "their 95% intervals, the verdicts and the paper's claims judged against the noise "
        "are therefore not shown here."
    ]


def _by_row(result: dict | None) -> pd.DataFrame | None:
    """A sweep's rows indexed by their label (None without a result)."""
    return pd.DataFrame(result["table"]).set_index("row") if result else None


FID_TOLERANCE = 0.05  # "preserves quality": FID within 5% of the baseline's (the ledger's bound)


def with_controls(rows: list[SweepRow], controls: str | dict, draws: int) -> list[SweepRow]:
    """The paper's rows and their control rows (`sweeps.spec.control_rows`; none for {})."""
    return rows + (sweep.control_rows(rows, controls, draws) if controls else [])  # None: none


def change_table(table: list[dict]) -> pd.DataFrame:
    """Each pruned or control row's FID change from the baseline with its 95% paired interval,
    the spread of that change over disjoint blocks of the sampling seeds, and what the
    interval establishes (`rules.change_verdict`, tolerance `FID_TOLERANCE` of the baseline FID).

    Columns: row, control, removed, fid change, low, high, interval width, seed-block sd (scaled
    to the full count, to set beside the bootstrap's sd), bootstrap sd, verdict.
    """
    rows = {r["row"]: r for r in table}
    base = rows["baseline"]["fid"]
    out = []
    for label, r in rows.items():
        ci = (r.get("ci") or {}).get("fid")
        if ci is None:
            continue
        blocks = (r.get("seed_blocks") or {}).get("fid", {})
        out.append(
            {
                "row": label,
                "control": r.get("control") or "-",
                "removed": r["removed"],
                "fid change": ci["difference"],
                "low": ci["low"],
                "high": ci["high"],
                "interval width": ci["high"] - ci["low"],
                "bootstrap sd": ci["sd"],
                "seed-block sd": blocks.get("sd_at_n"),
                "verdict": change_verdict(ci["low"], ci["high"], "lower", FID_TOLERANCE * base),
            }
        )
    return pd.DataFrame(out)


def _or_none(frame: pd.DataFrame) -> pd.DataFrame | None:
    """None for a table without rows (a sweep whose rows have no intervals yet)."""
    return frame if len(frame) else None


def _change(result: dict | None, label: str) -> str | None:
    """A row's FID change as text, "difference [low, high]" (None without it)."""
    if not result:
        return None
    row = {r["row"]: r for r in result["table"]}.get(label) or {}
    return sweep.change_text((row.get("ci") or {}).get("fid"), "{:+.2f}")


def _draws(result: dict | None, label: str) -> str | None:
    """Every random draw beside a row, "difference [low, high]" each, joined by "; " (None
    without any)."""
    if not result:
        return None
    prefix = f"{label} | random "
    texts = [_change(result, r["row"]) for r in result["table"] if r["row"].startswith(prefix)]
    texts = [t for t in texts if t]
    return "; ".join(texts) if texts else None


def _sweep_values(
    result: dict | None, table_id: str, model: str, profile: str, n_boot: int | None = None
) -> dict:
    """The values every pruning table's text quotes about its intervals: n_samples, n_boot (the
    bootstrap's resamples), the median FID-interval width over the rows that do not degrade
    (fid_width; the degraded rows' intervals are far wider; over all rows when every one
    degrades, fid_width_over says which) and its share of the baseline FID (fid_width_share), and how many of the paper's improvement claims lie within this run's
    noise at the paper's 5,000 samples (claims_noise of claims_total with the paired noise,
    claims_improve the others; claims_noise_independent with the noise of independent sets)."""
    keys = ("n_samples", "fid_width", "fid_width_over", "fid_width_share", "claims_noise",
            "claims_total", "claims_improve", "claims_noise_independent")  # fmt: skip
    out = {k: (None, "{}") for k in (*keys, "n_boot")}
    if not result or not any(r.get("ci") for r in result["table"]):
        return out  # nothing to quote without intervals
    out["n_boot"] = (n_boot, "{}")
    changes = change_table(result["table"])
    claims = sweep.paper_claims(result["table"], table_id, model, profile)
    base = {r["row"]: r for r in result["table"]}["baseline"]
    near = changes[changes["verdict"] != "degrades"]
    over = f"the {len(near)} rows that do not degrade"
    if not len(near):  # every row degrades: the width over all of them
        near, over = changes, f"all {len(changes)} rows (every one degrades)"
    width = float(near["interval width"].median()) if len(near) else None
    improve = int((claims["verdict"] == "improves").sum())
    independent = claims["independent verdict"].dropna()
    out.update(
        n_samples=(base.get("n"), "{}"),
        fid_width=(width, "{:.2f}"),
        fid_width_over=(over, "{}"),
        fid_width_share=(None if width is None else width / base["fid"], "{:.1%}"),
        claims_noise=(len(claims) - improve, "{}"),
        claims_total=(len(claims), "{}"),
        claims_improve=(improve, "{}"),
        claims_noise_independent=(
            int((independent != "improves").sum()) if len(independent) else None,
            "{}",
        ),
    )
    return out


def tab02_page(
    profile: str,
    model: str,
    train_steps: int | None = None,
    per_class: int = 20,
    num_steps: int | None = 50,
    last_k: int = 10,
    base_seed: int = 0,
    controls: str | dict | None = None,
    draws: int = 3,
) -> Page:
    """Table 2: the REPA rows of the sweep beside the paper's, each with its controls.

    Args:
        controls: "all" (every control beside every pruned row), {row label: [control, ...]}
            (`sweeps.spec.control_rows`), or None for none.
        draws: random draws per "random" control.

    Tables: rows (`sweeps.run.rows_beside_paper`), changes (`change_table`), claims
    (`sweeps.run.paper_claims`); None without a result. Values: fid_base, fid_t0, fid_066,
    fid_head8 (`TABLE2_FIDS`), removed_066 (mean dims removed in the 66% row), d_model (the
    width of c), change_066, change_t0, change_late, change_head8, change_random_066 (the
    first random draw beside the 66% row), change_mean_066 (its mean replacement),
    change_variance_head8 (the head ranked by variance), change_all_t0 (all of c at t_0) as
    "difference [low, high]", random_066_draws (every random draw beside the 66% row, `_draws`) and
    `_sweep_values`.
    """
    rows = with_controls(sweep.paper_rows("table2"), controls, draws)
    settings = settings_of(per_class, num_steps, last_k, base_seed)
    out = sweep_outcome(profile, model, rows, settings, train_steps)
    ours = _by_row(out.result)
    have = ours is not None
    page = Page(missing=out.missing, notes=out.notes)
    table = out.result["table"] if have else None
    page.tables["rows"] = (
        sweep.rows_beside_paper(table, "table2", "REPA", profile) if have else None
    )
    page.tables["changes"] = _or_none(change_table(table)) if have else None
    page.tables["claims"] = (
        _or_none(sweep.paper_claims(table, "table2", "REPA", profile)) if have else None
    )
    page.values = {
        key: (ours.loc[row, "fid"] if have else None, "{:.2f}") for key, row in TABLE2_FIDS.items()
    }
    page.values["removed_066"] = (ours.loc["tail 0.02 t_i", "removed"] if have else None, "{:.1f}")
    page.values["d_model"] = (ours["d"].iloc[0] if have else None, "{}")
    quoted = {
        "change_066": "tail 0.02 t_i",
        "change_t0": "tail 0.01 t_0",
        "change_late": "tail 0.01 t_{n-k,n}",
        "change_head8": "head 1 t_i",
        "change_random_066": "tail 0.02 t_i | random 1",
        "change_mean_066": "tail 0.02 t_i | mean",
        "change_variance_head8": "head 1 t_i | by variance",
        "change_all_t0": "all of c t_0",
    }
    for key, label in quoted.items():
        page.values[key] = (_change(out.result, label), "{}")
    page.values["random_066_draws"] = (_draws(out.result, "tail 0.02 t_i"), "{}")
    page.values.update(_sweep_values(out.result, "table2", "REPA", profile, settings.n_boot))
    return page


def training_seeds_page(profile: str, table2: Mapping | None = None) -> Page:
    """Table 2's headline rows over training seeds: its baseline and `sweeps.run.SEED_ROWS`
    swept from each training run of `testbed.SEED_MODEL`, with the Table 2 page's sampling
    settings and noise (`sweeps.run.page_settings`; testbed only, a released checkpoint being
    one training run).

    Args:
        table2: the Table 2 page's parameters where the build overrides them (None: that page's).

    Tables: training_seeds (`sweeps.run.training_seed_table`; None in the paper profile).
    Values: seed_model, n_training_seeds, n_samples, seed_sd_066 and boot_sd_066 (the 66% row's
    sd over training seeds and its bootstrap sd).
    """
    _, settings = sweep.page_settings("table2", profile, **(table2 or {}))
    page = Page()
    page.tables["training_seeds"] = None
    page.values = {"seed_model": (SEED_MODEL, "{}"), "n_samples": (None, "{}"),
                   "n_training_seeds": (1 + len(TRAINING_SEEDS), "{}"),
                   "seed_sd_066": (None, "{:.3f}"), "boot_sd_066": (None, "{:.3f}")}  # fmt: skip
    if profile != "testbed":
        page.notes.append(
            "The spread over training seeds is measured in the testbed profile only: each "
            "released checkpoint is one training run."
        )
        return page
    frame = _or_none(sweep.training_seed_table(sweep.training_seed_sweeps(settings)))
    page.tables["training_seeds"] = frame
    page.values["n_samples"] = (DIGITS_CLASSES * settings.per_class, "{}")
    if frame is not None and "tail 0.02 t_i" in set(frame["row"]):
        first = frame.set_index("row").loc["tail 0.02 t_i"]
        page.values.update(seed_sd_066=(first["sd over training seeds"], "{:.3f}"),
                           boot_sd_066=(first["bootstrap sd"], "{:.3f}"))  # fmt: skip
    return page


def worst_fid_ratio(tables: list[list[dict]]) -> float | None:
    """The largest FID of any of the paper's rows over its sweep's baseline FID, over the given
    sweeps' tables (None when there are none); control rows are left out."""
    ratios = []
    for table in tables:
        fid = pd.DataFrame(table).set_index("row")
        fid = fid[fid["control"].isna()]["fid"] if "control" in fid else fid["fid"]
        ratios.append((fid / fid["baseline"]).max())
    return max(ratios) if ratios else None


def tab03_page(
    profile: str,
    model: str,
    model_lightningdit: str | None = None,
    train_steps: int | None = None,
    per_class: int = 20,
    num_steps: int | None = 50,
    last_k: int = 10,
    base_seed: int = 0,
    controls: str | dict | None = None,
    draws: int = 3,
) -> Page:
    """Table 3: the MG and LightningDiT rows, each measured when its model is named and its
    sweep could be read, beside the paper's (the paper's rows alone otherwise), with their
    controls (`controls`, `draws` as in `tab02_page`).

    Tables: MG, LightningDiT (`sweeps.run.rows_beside_paper`), changes_MG, claims_MG,
    changes_LightningDiT, claims_LightningDiT (`change_table`, `sweeps.run.paper_claims`; None
    when not measured). Values: worst_ratio (`worst_fid_ratio` over the measured models),
    change_t0, change_late, change_random_t0, change_all_t0, random_t0_draws (of the MG row) and
    `_sweep_values` (of the MG row).
    """
    settings = settings_of(per_class, num_steps, last_k, base_seed)
    page, results = Page(), {}
    for paper_model, name in zip(TABLE3_MODELS, (model, model_lightningdit), strict=True):
        if name is None:
            continue
        rows = with_controls(sweep.paper_rows("table3", paper_model), controls, draws)
        out = sweep_outcome(profile, name, rows, settings, train_steps)
        page.missing += [m for m in out.missing if m not in page.missing]
        page.notes += out.notes
        if out.result:
            results[paper_model] = out.result["table"]
    for paper_model in TABLE3_MODELS:
        table = results.get(paper_model, [])
        page.tables[paper_model] = sweep.rows_beside_paper(table, "table3", paper_model, profile)
        measured = paper_model in results
        page.tables[f"changes_{paper_model}"] = _or_none(change_table(table)) if measured else None
        page.tables[f"claims_{paper_model}"] = (
            _or_none(sweep.paper_claims(table, "table3", paper_model, profile))
            if measured
            else None
        )
    page.values = {"worst_ratio": (worst_fid_ratio(list(results.values())), "{:.3f}")}
    mg = {"table": results["MG"]} if "MG" in results else None
    quoted = {
        "change_t0": "tail 0.01 t_0",
        "change_late": "tail 0.01 t_{n-k,n}",
        "change_random_t0": "tail 0.01 t_0 | random 1",
        "change_all_t0": "all of c t_0",
    }
    for key, label in quoted.items():
        page.values[key] = (_change(mg, label), "{}")
    page.values["random_t0_draws"] = (_draws(mg, "tail 0.01 t_0"), "{}")
    page.values.update(_sweep_values(mg, "table3", "MG", profile, settings.n_boot))
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
    num_steps: int | None = 50,
    last_k: int = 10,
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
    num_steps: int | None = 50,
    last_k: int = 10,
    base_seed: int = 0,
) -> Page:
    """Figs. 8 and 34-37: samples as more and more of the tail is zeroed (`TAIL_ROWS`).
    Figures: samples (None without a result)."""
    settings = settings_of(per_class, num_steps, last_k, base_seed)
    return _samples_page(TAIL_ROWS, profile, model, train_steps, settings)


# ----------------------------------------------------------------------------- windows


def window_plot(changes: pd.DataFrame, windows: dict[str, list[str]]):
    """FID change (with its 95% interval) against the window of steps, one line per row.

    Args:
        changes: `change_table` rows.
        windows: row label -> its window rows' labels, in step order.
    """
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.2))
    by_row = changes.set_index("row")
    for label, window_labels in windows.items():
        part = by_row.loc[window_labels]
        x = range(len(part))
        err = [part["fid change"] - part["low"], part["high"] - part["fid change"]]
        ax.errorbar(x, part["fid change"], yerr=err, marker="o", capsize=3, label=label)
        ax.set_xticks(list(x), [w.rsplit(" in ", 1)[1] for w in window_labels])
    ax.axhline(0, color="0.5", lw=0.8)
    ax.set_xlabel("steps pruned (step 0 = the noisiest)")
    ax.set_ylabel("FID change vs baseline")
    ax.set_yscale("symlog", linthresh=1.0)
    ax.legend(fontsize=8)
    fig.tight_layout()
    plt.close(fig)
    return fig


def modulation_inputs(profile: str, model: str, train_steps=None):
    """What `modulation_tables` needs of a model: its modulation layers, c of every class at a
    given t (a function of t), its time convention and whether the rows' tau is matched to its d
    (testbed) or the paper's. Testbed: the trained model. Paper: the modulation Linears read
    alone from the full checkpoint file and c from its embedders; None when that file is not in
    the weights cache."""
    import torch

    from semantic_bottleneck.core import analysis
    from semantic_bottleneck.training import testbed
    from semantic_bottleneck.zoo import checkpoint, fetch, registry

    if profile == "testbed":
        config = testbed.testbed_config(model, steps=train_steps)
        net, _, _ = testbed.load_trained(config)
        mod = adaln_cost.modulation_from_state(net.state_dict())
        time, n = config.time_convention, net.y_embedder.num_classes

        def condition(t):
            with torch.no_grad():
                return net.condition(time.times(t, n), torch.arange(n))

        return mod, condition, time, True
    entry = registry.get_checkpoint(model)
    path = fetch.locate(entry)
    if path is None:
        return None
    weights = adaln_cost.modulation_keys(entry.shapes)
    keys = [*weights, *(k.removesuffix("weight") + "bias" for k in weights)]
    state = checkpoint.load_state_dict(path, keys, weights_key=entry.weights_key)
    model_c = analysis.paper_model(model)
    return adaln_cost.modulation_from_state(state), model_c.c, model_c.time, False


def modulation_tables(profile: str, model: str, rows: list[str], train_steps=None) -> dict:
    """The change pruning gives each block's shift, scale and gate, from c at the initial t and
    the model's adaLN weights (`adaln_cost.modulation_change`), per row of `rows`, and over the
    sampler's t (the class-mean change per component at 5 t from noise to data, masks from t0).

    Testbed: the trained model's weights, each row's tau matched to its d. Paper: the
    checkpoint's weights (`modulation_inputs`) and the paper's tau; {} when the checkpoint file
    is absent. Returns {"blocks": table, "over_t": table}."""
    import torch

    from semantic_bottleneck.sampling.pruning import select, zero_coordinates

    inputs = modulation_inputs(profile, model, train_steps)
    if inputs is None:
        return {}
    mod, condition, time, matched = inputs
    c0 = condition(time.initial_t)
    table = {r.label: r for r in sweep.paper_rows("table2")}
    chosen = [table[r] for r in rows]
    specs = sweep.spec_table(chosen, c0 if matched else None, 1, c0.shape[0])
    blocks, over_t = [], []
    for spec_row in specs:
        mask = select(c0, spec_row["spec"])
        change = adaln_cost.modulation_change(mod, c0, zero_coordinates(c0, mask))
        blocks.append(change.assign(row=spec_row["row"]))
        for t in torch.linspace(time.initial_t, time.data_t, 5).tolist():
            t = round(t) if time.integer else t
            c = condition(t)
            mean = adaln_cost.modulation_change(mod, c, zero_coordinates(c, mask))
            means = mean[list(adaln_cost.COMPONENTS)].mean()
            over_t.append({"row": spec_row["row"], "t": t, **means.to_dict()})
    return {
        "blocks": pd.concat(blocks, ignore_index=True)[["row", "layer", *adaln_cost.COMPONENTS]],
        "over_t": pd.DataFrame(over_t),
    }


def pruning_windows_page(
    profile: str,
    model: str,
    train_steps: int | None = None,
    per_class: int = 10,
    num_steps: int | None = 20,
    width: int = 4,
    base_seed: int = 0,
    rows: tuple[str, ...] = WINDOW_ROWS,
) -> Page:
    """Where along the sampler's steps pruning acts: each of `rows` pruned at every step and
    only inside each window of `width` consecutive steps, with the FID change from the
    baseline and its 95% interval; and the change each block's shift, scale and gate receive
    from the pruned c (testbed: computed from the trained weights, no sampling).

    Tables: changes (`change_table` of the window sweep), blocks, over_t
    (`modulation_tables`; None, with a note, when a paper checkpoint's file is absent). Figures: windows
    (`window_plot`). Values: n_samples, steps, width, worst_window (the window with the largest
    FID change of the head row), worst_window_change, head_first (FID change of the head row in
    the first window) and gate_change_head (the median gate change of the head row over
    blocks).
    """
    if num_steps is None:
        raise ValueError("num_steps: expected the sampler's step count the windows divide")
    sweep_rows = window_sweep_rows(num_steps, width, rows)
    windows = window_groups(num_steps, width, rows)
    settings = window_settings(per_class, base_seed, num_steps, width)
    out = sweep_outcome(profile, model, sweep_rows, settings, train_steps)
    page = Page(missing=out.missing, notes=out.notes)
    changes = change_table(out.result["table"]) if out.result else None
    page.tables["changes"] = changes
    labels = {r: [w.label for w in ws] for r, ws in windows.items()}
    page.figures["windows"] = window_plot(changes, labels) if changes is not None else None
    mods = modulation_tables(profile, model, list(rows), train_steps)
    if not mods:
        page.notes.append(
            f"The modulation change per block needs the adaLN weights of {model}'s full "
            f"checkpoint file, which is not in the weights cache: `{fetch_command(model)}`."
        )
    page.tables["blocks"], page.tables["over_t"] = mods.get("blocks"), mods.get("over_t")
    head = rows[-1]
    values = {"steps": (num_steps, "{}"), "width": (width, "{}")}
    if changes is not None:
        part = changes.set_index("row").loc[labels[head]]
        worst = part["fid change"].idxmax()
        values["worst_window"] = (worst.rsplit(" in ", 1)[1], "{}")
        values["worst_window_change"] = (_change(out.result, worst), "{}")
        values["head_first"] = (_change(out.result, labels[head][0]), "{}")
        values["n_samples"] = ({r["row"]: r for r in out.result["table"]}["baseline"]["n"], "{}")
    else:
        for key in ("worst_window", "worst_window_change", "head_first", "n_samples"):
            values[key] = (None, "{}")
    blocks = page.tables["blocks"]
    gate = None
    if blocks is not None:
        gate = float(blocks[blocks["row"] == head]["gate"].median())
    values["gate_change_head"] = (gate, "{:.2f}")
    page.values = values
    return page
