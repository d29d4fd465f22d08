"""The claims ledger: every text claim of the paper, a measured value, and a verdict decided by code.

Each claim of `data/paper_values.yaml` has a `Claim` spec: what to measure (a function of the
per-model table `verdicts.measures.model_table` and the training logs), the paper's bound (read from the YAML),
and a tolerance `Rule` that turns the measured value into one of

- "reproduced": the measured value meets the paper's bound;
- "partly": it misses the bound but lies within the stated band (or, for a trend, the direction
  holds and the level does not);
- "not reproduced": it lies outside the band;
- "not tested": nothing measured it (claims that need sampling and evaluation, or models this
  run does not have), unless a measurement is supplied to `evaluate`.

The evaluation claims are judged on the 95% paired-bootstrap interval of the change from the
baseline (`rules.IntervalAtMost`, `rules.IntervalAtLeast`): reproduced only when the whole
interval meets the bound, partly when the estimate alone does (within noise).

Counts of dimensions are compared as fractions of d (10 of 1152 dims = 0.87%), so a model of
another width is judged at the same proportion. Where a claim covers several models, the median
over the models of the run is judged and the per-model values are listed beside it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import pandas as pd

from semantic_bottleneck.book.params import resolve_parameters
from semantic_bottleneck.core import analysis, appendix
from semantic_bottleneck.core.conventions import check_profile
from semantic_bottleneck.sweeps import run as sweep
from semantic_bottleneck.sweeps import xmdpt
from semantic_bottleneck.sweeps.continuous import TABLE7_ROWS, run_continuous_sweep, table7_settings
from semantic_bottleneck.training.curves import REPA_TESTBED, headline_logs
from semantic_bottleneck.training.testbed import TIERS, split_tier, testbed_config, tier_name
from semantic_bottleneck.verdicts import paper
from semantic_bottleneck.verdicts.measures import (
    PAPER_D,
    Measurement,
    dit_max_abs,
    dit_min_cosine,
    fraction_of_d,
    lowest_over,
    median_over,
    model_table,
    npr_decline,
)
from semantic_bottleneck.verdicts.rules import (
    NOT_TESTED,
    AtLeast,
    Both,
    Decline,
    InRange,
    IntervalAtLeast,
    IntervalAtMost,
    Rule,
)


@dataclass(frozen=True)
class Claim:
    """How one claim is checked.

    Attributes:
        claim_id: id in data/paper_values.yaml.
        expected: the paper's statement of the bound, in words.
        rule: the tolerance rule that decides the verdict.
        evidence: pages (notebook names) that show the measurement.
        measure: (model table, logs) -> Measurement, or None when the inputs do not cover the
            claim; None for claims that need sampling and evaluation (they take supplied values).
        needs: what a measurement of this claim is, in words (shown while it is not tested).
        continuous: the claim is about continuous-condition models: it is measured on those
            alone, and every other claim on the class-conditional models alone.
    """

    claim_id: str
    expected: str
    rule: Rule
    evidence: tuple[str, ...]
    measure: Callable[[pd.DataFrame, Mapping[str, list[dict]]], Measurement | None] | None
    needs: str
    continuous: bool = False


@dataclass(frozen=True)
class Verdict:
    """One row of the ledger."""

    claim_id: str
    measured: str
    expected: str
    tolerance: str
    verdict: str
    evidence: tuple[str, ...]
    detail: str = ""


def measure(
    models: Sequence[analysis.ModelC], logs: Mapping[str, list[dict]] | None = None
) -> dict[str, Measurement | None]:
    """Measure every claim that the models' c and the training logs can measure.

    Args:
        models: the run's models (analysis.load_models).
        logs: name -> nPR monitor records (testbed.training_log), for the training claim.

    Returns:
        claim id -> Measurement (None where the inputs do not cover the claim).
    """
    table = model_table(models)
    kind = table["continuous"] if len(table) else pd.Series([], dtype=bool)
    split = {flag: table[kind == flag] for flag in (False, True)}
    return {
        spec.claim_id: spec.measure(split[spec.continuous], logs or {})
        for spec in claim_specs()
        if spec.measure is not None
    }


# ----------------------------------------------------------------------------- the claims


def _count_range(lo: float, hi: float) -> str:
    return f"{lo:g}-{hi:g} of 1152 dims ({100 * lo / PAPER_D:.2f}-{100 * hi / PAPER_D:.2f}% of d)"


TABLE7_PAGE = "tab07-pruning-continuous"  # the page whose sweep the continuous claim reads


def claim_specs() -> list[Claim]:
    """The spec of every claim: bounds read from data/paper_values.yaml, bands stated here.

    Returns:
        One Claim per claim of the YAML, in its order.
    """
    y = {c["id"]: c for c in paper.claims()}
    lo1, hi1 = y["dims-above-0-1"]["head_dims_above_0.1"]
    n1 = y["dims-above-1"]["dims_above_1"]
    npr_lo, npr_hi = y["npr-1-to-2-percent"]["npr_range"]
    s_lo, s_hi = y["s-tail-at-0-01"]["s_tail_at_0.01"]
    v_lo, v_hi = y["mean-variance-range"]["mean_variance_range"]
    f_lo, f_hi = y["threshold-curve-saturates"]["fraction_below_range"]
    dit_cos = y["dit-min-cosine"]["dit_min_cosine"]
    dit_max = y["dit-max-abs-c"]["dit_max_abs_c"]
    o_lo, o_hi = y["dit-max-abs-c"]["others_max_abs_c"]
    train = y["npr-falls-during-training"]["npr_training"]
    eval_note = "needs sampling and FID evaluation (Tables 2, 3, 6)"
    return [
        Claim(
            "cosine-imagenet",
            f"mean cosine > {y['cosine-imagenet']['cosine_min']}",
            AtLeast(y["cosine-imagenet"]["cosine_min"], 0.05, "median cosine"),
            ("tab01-statistics", "fig01-cosine-and-npr", "fig03-cosine-matrix"),
            lambda t, _: median_over(t, "cosine", "{:.4f}"),
            "mean pairwise cosine of c",
        ),
        Claim(
            "cosine-continuous",
            f"mean cosine > {y['cosine-continuous']['cosine_min']}",
            AtLeast(y["cosine-continuous"]["cosine_min"], 0.005, "lowest cosine"),
            ("tab05-continuous", "fig04-continuous", "tab01-statistics"),
            lambda t, _: lowest_over(t, "cosine", "{:.4f}"),
            "mean pairwise cosine of c over held-out conditions of a continuous-condition model "
            "(the testbed's; in the paper profile X-MDPT-L's and MDSGen's over their condition "
            "files)",
            continuous=True,
        ),
        Claim(
            "dims-above-0-1",
            _count_range(lo1, hi1),
            InRange(
                lo1 / PAPER_D,
                hi1 / PAPER_D,
                lo1 / 2 / PAPER_D,
                hi1 * 2 / PAPER_D,
                "share of d (median)",
                True,
            ),
            ("fig05-magnitudes",),
            lambda t, _: fraction_of_d(t, "dims_above_0_1"),
            "dims with |c_i| > 0.1, per class",
        ),
        Claim(
            "dims-above-1",
            f"about {n1} of 1152 dims ({100 * n1 / PAPER_D:.2f}% of d)",
            InRange(
                n1 / 2 / PAPER_D,
                n1 * 1.5 / PAPER_D,
                n1 / 3 / PAPER_D,
                n1 * 3 / PAPER_D,
                "share of d (median)",
                True,
            ),
            ("fig05-magnitudes",),
            lambda t, _: fraction_of_d(t, "dims_above_1"),
            "dims with |c_i| > 1, per class",
        ),
        Claim(
            "npr-1-to-2-percent",
            f"nPR {100 * npr_lo:g}-{100 * npr_hi:g}% (MDT, LightningDiT, MG, REPA)",
            InRange(npr_lo, npr_hi, npr_lo / 2, npr_hi * 2, "median nPR", True),
            ("tab01-statistics",),
            lambda t, _: median_over(t, "npr", "{:.2%}", names=y["npr-1-to-2-percent"]["models"]),
            "nPR of c (per class, averaged)",
        ),
        Claim(
            "s-tail-at-0-01",
            f"s_tail(0.01) = {s_lo}-{s_hi}",
            InRange(s_lo, s_hi, s_lo - 0.05, s_hi + 0.05, "median s_tail(0.01)"),
            ("fig11-threshold",),
            lambda t, _: median_over(t, "s_tail_0_01", "{:.3f}"),
            "s_tail(0.01) per class",
        ),
        Claim(
            "pruning-keeps-quality",
            "FID stable after removing 66% (762/1152) of dims",
            IntervalAtMost(0.05, 0.25, "relative FID change"),
            ("tab02-pruning-repa", "fig08-tail-removal"),
            None,
            f"relative FID change, tail pruning of 66% of dims vs baseline: {eval_note}",
        ),
        Claim(
            "continuous-pruning-keeps-quality",
            "quality kept at tau = 0.1 (40% of d) on a continuous condition",
            IntervalAtMost(0.05, 0.25, "relative PSNR loss"),
            ("tab07-pruning-continuous", "fig10-continuous-samples"),
            None,
            "relative PSNR loss against the target, tail pruning of 40% of d at every step vs "
            "the baseline (Table 7's sweep; read from its cache in the paper profile)",
            continuous=True,
        ),
        Claim(
            "head-removal-destroys-quality",
            "removing 4-6 head dims degrades generation dramatically",
            IntervalAtLeast(1.0, 0.75, "relative FID change"),
            ("fig07-head-removal", "tab02-pruning-repa", "fig13-tsne"),
            None,
            f"relative FID change after removing the 4-6 largest |c_i|: {eval_note}",
        ),
        Claim(
            "head-dims-carry-variance",
            "15-20 head dims carry most of the variance across classes",
            AtLeast(0.5, 0.25, "median share of variance"),
            ("fig09-variance", "fig13-tsne"),
            lambda t, _: median_over(t, "top_share", "{:.3f}"),
            "share of the variance across classes in the top 20 * d / 1152 dims",
        ),
        Claim(
            "mean-variance-range",
            f"mean variance {v_lo:g}-{v_hi:g}",
            InRange(v_lo, v_hi, v_lo / 2, v_hi * 2, "median mean variance"),
            ("fig09-variance",),
            lambda t, _: median_over(t, "mean_variance", "{:.2e}"),
            "mean variance across classes",
        ),
        Claim(
            "dit-min-cosine",
            f"DiT's lowest pairwise cosine about {dit_cos}",
            InRange(
                dit_cos - 0.02, dit_cos + 0.02, dit_cos - 0.05, dit_cos + 0.05, "DiT min cosine"
            ),
            ("fig03-cosine-matrix",),
            dit_min_cosine,
            "DiT's minimum pairwise cosine",
        ),
        Claim(
            "dit-max-abs-c",
            f"DiT max |c| about {dit_max}; others {o_lo}-{o_hi}",
            Both(
                InRange(dit_max * 0.75, dit_max * 1.25, dit_max / 2, dit_max * 2, "DiT max |c|"),
                InRange(o_lo, o_hi, o_lo / 2, o_hi * 2, "others' max |c|"),
            ),
            ("fig05-magnitudes", "fig09-variance"),
            dit_max_abs,
            "max |c| of DiT and of the others",
        ),
        Claim(
            "npr-falls-during-training",
            f"nPR from about {train['from']:.0%} to below {train['to_below']:.0%}",
            Decline(train["from"] - 0.05, train["to_below"], 0.1),
            ("fig12-training", "fig43-limited-timesteps"),
            npr_decline,
            "nPR of c over training (monitor logs)",
        ),
        Claim(
            "late-step-pruning-best-fid",
            "FID of t_{n-k,n} pruning below the baseline's (an improvement)",
            IntervalAtMost(0.0, 0.01, "relative FID change of t_{n-k,n}"),
            ("tab02-pruning-repa", "tab03-pruning-mg-lightningdit", "tab06-precision-recall"),
            None,
            f"FID change of t_(n-k,n) pruning vs the baseline, with its interval: {eval_note}",
        ),
        Claim(
            "threshold-curve-saturates",
            f"{f_lo:.0%}-{f_hi:.0%} of dims below tau, saturating near 0.02",
            InRange(f_lo, f_hi, f_lo - 0.1, min(1.0, f_hi + 0.1), "median fraction below 0.02"),
            ("fig11-threshold",),
            lambda t, _: median_over(t, "mean_c_below_0_02", "{:.3f}"),
            "fraction of the class-mean c's dims with |c_i| < 0.02",
        ),
    ]


# ----------------------------------------------------------------------------- verdicts


def _as_measurement(value) -> Measurement | None:
    if value is None or isinstance(value, Measurement):
        return value
    if isinstance(value, tuple):
        return Measurement(tuple(float(v) for v in value), ", ".join(f"{v:.4g}" for v in value))
    return Measurement(float(value), f"{float(value):.4g}")


def evaluate(
    measured: Mapping[str, Measurement | None],
    supplied: Mapping[str, Measurement | float | tuple | None] | None = None,
) -> list[Verdict]:
    """Verdicts for every claim of the paper, in the YAML's order.

    Args:
        measured: claim id -> Measurement (from `measure`).
        supplied: measurements made elsewhere (e.g. by a sampling page), claim id -> a
            Measurement or a bare value in the claim's units (`Claim.needs`); they take
            precedence over `measured`.

    Returns:
        One Verdict per claim; claims with no spec or no measurement are "not tested".
    """
    specs = {s.claim_id: s for s in claim_specs()}
    unknown = sorted(set(supplied or {}) - set(specs))
    if unknown:
        raise ValueError(f"supplied: expected claim ids among {sorted(specs)}, got {unknown}")
    out = []
    for entry in paper.claims():
        spec = specs.get(entry["id"])
        if spec is None:
            out.append(
                Verdict(entry["id"], "n/a", entry["text"], "no measurement defined", NOT_TESTED, ())
            )
            continue
        m = _as_measurement((supplied or {}).get(spec.claim_id)) or measured.get(spec.claim_id)
        rule = spec.rule.describe()
        if m is None:
            detail = f"not measured: {spec.needs}"
            out.append(
                Verdict(
                    spec.claim_id, "n/a", spec.expected, rule, NOT_TESTED, spec.evidence, detail
                )
            )
            continue
        verdict = spec.rule.judge(m.value)
        evidence = m.evidence or spec.evidence
        out.append(Verdict(spec.claim_id, m.text, spec.expected, rule, verdict, evidence, m.detail))
    return out


@dataclass(frozen=True)
class LedgerInputs:
    """What the ledger judges, read from the same sources as the pages behind each claim.

    Attributes:
        found: the models of the statistics pages (Table 1 and the Sec. 3-4 figures).
        missing: their absent checkpoints (paper profile).
        logs: the training run the Fig 12 page headlines (testbed-repa, or the recorded GPU
            runs in the paper profile).
        supplied: claim id -> value measured on a sampling page (the Table 2 sweep's rows).
        notes: why a source was not read (e.g. no cached Table 2 rows).
    """

    found: list
    missing: list
    logs: dict
    supplied: dict
    notes: tuple[str, ...] = ()


def ledger_inputs(
    profile: str,
    models: Sequence[str],
    train_steps: int | None = None,
    use_sweeps: bool = True,
    table2: Mapping | None = None,
    tier: str = "ci",
) -> LedgerInputs:
    """The ledger's inputs in a profile (and testbed tier), exactly as the pages show them.

    The evaluation claims come from the Table 2 page's sweep, run with that page's parameters in
    this profile (`sweeps.run.page_settings`): on the testbed it is sampled (or read from
    the cache), in the paper profile only rows the page already cached are read, so the ledger
    never starts GPU sampling. The training claim is judged on Fig 12's headline run.

    Args:
        profile: "testbed" or "paper".
        models: the statistics pages' models.
        train_steps: testbed only: training steps (None: each model's default).
        use_sweeps: judge the evaluation claims on the Table 2 sweep.
        table2: the Table 2 page's parameters where a build overrides them (e.g. a test build
            with tiny sweeps); None: that page's parameters in this profile.
        tier: testbed only: the training tier of the Fig 12 run and of the Table 2 sweep's
            model (`testbed.TIERS`); `models` name their own tiers.
    """
    check_profile(profile)
    found, missing = analysis.load_models(profile, list(models), steps=train_steps)
    more, absent = appendix.load_systems(profile, appendix.TABLE1_SYSTEMS)  # paper profile only
    found, missing = found + more, missing + absent
    logs = headline_logs(profile, train_steps, tier)
    supplied, notes = {}, []
    if use_sweeps:
        page, settings = sweep.page_settings("table2", profile, **(table2 or {}))
        rows = list(sweep.table2_rows(sweep.LEDGER_ROWS).values())
        if profile == "testbed":
            steps = train_steps if train_steps is not None else page["train_steps"]
            model = tier_name(split_tier(page["model"])[0], tier)
            result = sweep.run_testbed_sweep(model, rows, settings, steps=steps)
        else:
            result = sweep.cached_paper_sweep(page["model"], rows, settings)
            if result is None:
                notes.append(
                    f"The Table 2 rows of {page['model']} are not all sampled yet, so the "
                    "evaluation claims are not tested here (`semantic-bottleneck sweep table2 "
                    f"{page['model']}` on a GPU fills them)."
                )
        if result is not None:
            supplied = sweep.ledger_measurements(result["table"])
        measured, note = continuous_pruning(profile, tier, train_steps)
        supplied["continuous-pruning-keeps-quality"] = measured
        notes += [note] if note else []
    return LedgerInputs(found, missing, logs, supplied, tuple(notes))


def continuous_pruning(
    profile: str, tier: str = "ci", train_steps: int | None = None
) -> tuple[Measurement | None, str | None]:
    """Table 7's claim measured on that page's own sweep, with its parameters: the relative
    PSNR loss (estimate, low, high) of the tail 0.1 t_i row against the baseline, with its 95%
    paired interval; (None, why) where it is not measured. The paper profile reads the cached
    X-MDPT sweep only (nothing is sampled); the testbed measures the page's model's tier."""
    page = resolve_parameters(TABLE7_PAGE, profile)
    if profile == "testbed":
        model = page["model"]
        if split_tier(model)[1] != tier:
            return None, f"Table 7's sweep prunes {model} only; this tier's model is not swept."
        steps = train_steps if train_steps is not None else page["train_steps"]
        settings = table7_settings(
            page["per_condition"], page["num_steps"], page["last_k"], page["base_seed"]
        )
        rows = {r["row"]: r for r in run_continuous_sweep(model, TABLE7_ROWS, settings,
                                                          steps=steps)["table"]}  # fmt: skip
        est, half = rows[xmdpt.PAPER_ROW]["psnr_change"], rows[xmdpt.PAPER_ROW]["psnr_change_ci"]
        low, high = est - half, est + half
    else:
        page, settings = xmdpt.page_settings()
        rows = xmdpt.xmdpt_rows(page["controls"], page["draws"])
        result = None
        if not xmdpt.xmdpt_inputs(page["system"], page["deepfashion_root"]):
            result = xmdpt.cached_xmdpt_sweep(
                page["system"], rows, settings, page["deepfashion_root"]
            )
        if result is None:
            return None, (
                "Table 7's X-MDPT rows are not all sampled yet, so the continuous-pruning claim "
                "is not tested here (`semantic-bottleneck xmdpt-sweep` on a GPU fills them)."
            )
        rows = {r["row"]: r for r in result["table"]}
        ci = rows[xmdpt.PAPER_ROW]["ci"]["psnr"]
        est, low, high = ci["difference"], ci["low"], ci["high"]
    base = rows["baseline"]["psnr"]
    loss = (-est / base, -high / base, -low / base)
    text = f"{loss[0]:+.2%} [{loss[1]:+.2%}, {loss[2]:+.2%}]"
    detail = (
        f"tail 0.1 t_i: PSNR {est:+.3f} dB [{low:+.3f}, {high:+.3f}] vs the baseline's "
        f"{base:.2f} dB (95% paired)"
    )
    return Measurement(loss, text, detail), None


def tier_inputs(
    profile: str,
    models: Sequence[str],
    train_steps: int | None = None,
    use_sweeps: bool = True,
    table2: Mapping | None = None,
) -> dict[str, LedgerInputs]:
    """The ledger's inputs per testbed tier (`testbed.TIERS`: the book-build length and the long
    one), each with `models` in that tier; in the paper profile one entry, "official"."""
    if profile != "testbed":
        return {"official": ledger_inputs(profile, models, train_steps, use_sweeps, table2)}
    bases = list(dict.fromkeys(split_tier(m)[0] for m in models))
    return {
        tier: ledger_inputs(
            profile, [tier_name(b, tier) for b in bases], train_steps, use_sweeps, table2, tier
        )
        for tier in TIERS
    }


def tier_verdicts(
    inputs: Mapping[str, LedgerInputs], supplied: Mapping | None = None
) -> dict[str, list[Verdict]]:
    """tier -> the ledger of its inputs, with `supplied` values added in every tier."""
    return {
        t: ledger(i.found, i.logs, {**i.supplied, **(supplied or {})}) for t, i in inputs.items()
    }


def tier_notes(inputs: Mapping[str, LedgerInputs]) -> list[str]:
    """The notes of every tier, each once, in order."""
    return list(dict.fromkeys(n for i in inputs.values() for n in i.notes))


def ledger(
    models: Sequence[analysis.ModelC],
    logs: Mapping[str, list[dict]] | None = None,
    supplied: Mapping | None = None,
) -> list[Verdict]:
    """The whole ledger: `evaluate(measure(models, logs), supplied)`."""
    return evaluate(measure(models, logs), supplied)


def ledger_frame(verdicts: Iterable[Verdict]) -> pd.DataFrame:
    """The ledger as a DataFrame.

    Args:
        verdicts: `evaluate` or `ledger` output.

    Returns:
        Columns: claim, paper, measured, tolerance, verdict, evidence, detail.
    """
    return pd.DataFrame(
        [
            {
                "claim": v.claim_id,
                "paper": v.expected,
                "measured": v.measured,
                "tolerance": v.tolerance,
                "verdict": v.verdict,
                "evidence": ", ".join(v.evidence),
                "detail": v.detail,
            }
            for v in verdicts
        ]
    )


# verdict -> (mark, CSS class of book/_vendor/book.css): colour plus a shape, so the mark also
# reads in print and for colour-blind readers
VERDICT_MARKS = {
    "reproduced": ("\u2714", "verdict-yes"),  # heavy check mark
    "partly": ("\u25d0", "verdict-partly"),  # circle, left half black
    "not reproduced": ("\u2718", "verdict-no"),  # heavy ballot x
    "not tested": ("\u25cb", "verdict-untested"),  # white circle
}


def verdict_mark(verdict: str) -> str:
    """The verdict as a coloured mark and its word (inline HTML for the book's pages)."""
    mark, css = VERDICT_MARKS[verdict]
    return f'<span class="verdict {css}">{mark} {verdict}</span>'


def tier_label(tier: str) -> str:
    """How a page names a tier: "CI-trained (2,000 steps)", "long-trained (16,000 steps)", or
    "official checkpoints" (the paper profile's one entry)."""
    if tier not in TIERS:
        return "official checkpoints"
    steps = testbed_config(tier_name(REPA_TESTBED, tier)).steps
    return f"{'CI' if tier == 'ci' else tier}-trained ({steps:,} steps)"


def scorecard_markdown(by_tier: Mapping[str, list[Verdict]], pages: Iterable[str]) -> str:
    """The landing page's scorecard: each claim in the paper's words, the paper's value, then
    per tier this build's value and verdict, and the page behind it.

    Args:
        by_tier: tier -> the ledger rows (`ledger`), all over the same claims.
        pages: notebook names the book contains (links only to those).

    Returns:
        A MyST Markdown table.
    """
    pages = list(pages)
    text = {c["id"]: c["text"] for c in paper.paper_values()["claims"]}
    tiers = list(by_tier)
    head = ["claim (the paper's words)", "paper"]
    for tier in tiers:
        head += [f"{tier_label(tier)}: measured", "verdict"]
    lines = ["| " + " | ".join([*head, "page"]) + " |", "|" + "---|" * (len(head) + 1)]
    rows = zip(*(by_tier[t] for t in tiers), strict=True)
    for same in rows:
        first = same[0]
        link = doc_link(first.evidence[0], pages) if first.evidence else "-"
        cells = [text.get(first.claim_id, first.claim_id), first.expected]
        for v in same:
            cells += [v.measured, verdict_mark(v.verdict)]
        lines.append("| " + " | ".join(_cell(c) for c in [*cells, link]) + " |")
    return "\n".join(lines)


def verdict_counts(verdicts: Iterable[Verdict]) -> dict[str, int]:
    """How many claims got each verdict, in VERDICT_MARKS order."""
    verdicts = list(verdicts)
    return {k: sum(v.verdict == k for v in verdicts) for k in VERDICT_MARKS}


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def doc_link(name: str, pages: Iterable[str]) -> str:
    """A MyST link to the book page of notebook `name` if the book has it, else its plain name."""
    if name in set(pages):
        return f"{{doc}}`{name} </book/generated/{name}>`"
    return f"`{name}`"


def ledger_markdown(
    verdicts: Iterable[Verdict], pages: Iterable[str], extra: Mapping | None = None
) -> str:
    """The ledger as a MyST Markdown table with links to the evidence pages.

    Args:
        verdicts: the ledger rows.
        pages: notebook names the book contains (links only to those).
        extra: optional column name -> {claim id: text}, appended after the verdict.

    Returns:
        A Markdown table (header, rule, one row per verdict); render it with MyST, since the
        links are `{doc}` roles.
    """
    pages = list(pages)
    extra = dict(extra or {})
    head = ["claim", "paper", "measured", "tolerance", "verdict", *extra, "evidence"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for v in verdicts:
        links = ", ".join(doc_link(n, pages) for n in v.evidence) or "-"
        extras = [col.get(v.claim_id, "-") for col in extra.values()]
        cells = [f"`{v.claim_id}`", v.expected, v.measured, v.tolerance, verdict_mark(v.verdict)]
        cells += [*extras, links]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines)


def markdown_table(frame: pd.DataFrame) -> str:
    """Any DataFrame as a Markdown table: cells as text, pipes escaped, NaN as "-"."""
    head = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in frame.itertuples(index=False):
        cells = ["-" if isinstance(v, float) and v != v else v for v in row]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines)
