"""The pages of the verdicts: the landing page's scorecard (index), the claims ledger, and what is
not reproduced (the tables and figures of unsupported systems, with the paper's printed
numbers). The claims, their measurements and rules live in `verdicts`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import pandas as pd

from semantic_bottleneck.book.provenance import build_info
from semantic_bottleneck.core.analysis import Page
from semantic_bottleneck.verdicts import ledger, paper_checks
from semantic_bottleneck.verdicts.ledger import Verdict, markdown_table

INVENTORY_COLUMNS = ["id", "also", "content", "scope", "why", "testbed analogue"]


def whole_ids(inventory: pd.DataFrame) -> list[str]:
    """The ids of the tables and figures not reproduced at all (scope "whole"), each entry's
    grouped ids ("also") after its own."""
    whole = inventory[inventory["scope"] == "whole"]
    return [i for e in whole.itertuples() for i in [e.id, *filter(None, e.also.split(", "))]]


def printed(table_id: str) -> str:
    """The paper's rows of a table for the unsupported systems, as printed, as Markdown."""
    return markdown_table(paper_checks.as_printed(paper_checks.unsupported_rows(table_id)))


def not_reproduced_page(profile: str) -> Page:
    """The not-reproduced page (the same in either profile: nothing is measured).

    Markdown: inventory (`paper_checks.unsupported_inventory`, or the plain statement that
    nothing is missing), and per table with rows of an unsupported system its printed rows.
    Values: n_items, item_ids (`whole_ids`; "none" when nothing is missing).
    """
    inventory = paper_checks.unsupported_inventory()
    ids = whole_ids(inventory)
    inventory["testbed analogue"] = [f"{{doc}}`{p}`" if p else "" for p in inventory["testbed"]]
    markdown = {"inventory": markdown_table(inventory[INVENTORY_COLUMNS])}
    if inventory.empty:
        markdown["inventory"] = NOTHING_MISSING
    tables = paper_checks.paper.paper_values()["tables"]
    for table_id, table in tables.items():
        if table.get("unsupported_models"):
            markdown[table_id] = printed(table_id)
    return Page(
        markdown=markdown,
        values={"n_items": (len(ids), "{}"), "item_ids": (", ".join(ids) or "none", "{}")},
    )


NOTHING_MISSING = (
    "Nothing is missing: every table and figure of the paper is marked reproducible here "
    "(data/paper_values.yaml), in the paper profile from the official checkpoints and in the "
    "testbed profile from the models trained here."
)


def _glue_counts(page: Page, by_tier: Mapping[str, list[Verdict]]) -> None:
    """The page values of the verdict counts: n_claims, and "counts", one sentence over the
    tiers ("the CI-trained (2,000 steps) models: 3 reproduced, 1 partly, ...; the ...")."""
    parts = []
    for tier, verdicts in by_tier.items():
        counts = ", ".join(f"{n} {k}" for k, n in ledger.verdict_counts(verdicts).items())
        parts.append(f"the {ledger.tier_label(tier)} models: {counts}")
    page.values["counts"] = ("; ".join(parts), "{}")
    page.values["n_claims"] = (len(next(iter(by_tier.values()))), "{}")


def tier_names(page: Page) -> list[str]:
    """The tiers a ledger page holds, in order (from its "ledger_<tier>" blocks)."""
    return [k.removeprefix("ledger_") for k in page.markdown if k.startswith("ledger_")]


def landing_page(
    profile: str,
    models: Sequence[str],
    train_steps: int | None = None,
    table2: Mapping | None = None,
    pages: Iterable[str] = (),
) -> Page:
    """The landing page: the scorecard of every claim per tier, and the build's provenance.

    Values: counts (the verdict counts per tier, as one sentence), n_claims, profile.
    Markdown: "scorecard", "build".
    """
    inputs = ledger.tier_inputs(profile, models, train_steps, table2=table2)
    by_tier = ledger.tier_verdicts(inputs)
    first = next(iter(inputs.values()))
    page = Page(missing=first.missing, notes=ledger.tier_notes(inputs))
    page.markdown["scorecard"] = ledger.scorecard_markdown(by_tier, pages)
    info = build_info(profile)
    page.markdown["build"] = "\n".join(f"- **{k}**: {v}" for k, v in info.items())
    _glue_counts(page, by_tier)
    page.values["profile"] = (profile, "{}")
    return page


def ledger_page(
    profile: str,
    models: Sequence[str],
    train_steps: int | None = None,
    supplied: Mapping | None = None,
    use_sweeps: bool = True,
    table2: Mapping | None = None,
    pages: Iterable[str] = (),
) -> Page:
    """The claims-ledger page: per tier the full ledger (with the paper's own tables judged by
    the same rules), a verdict-per-tier comparison, the details and the paper's inconsistencies.

    Values: as `landing_page`. Markdown: "ledger_<tier>" and "details_<tier>" (and "ledgers",
    "details": every tier's under its heading), "tiers", "inconsistencies".
    """
    pages = list(pages)
    inputs = ledger.tier_inputs(profile, models, train_steps, use_sweeps, table2)
    by_tier = ledger.tier_verdicts(inputs, supplied)
    own = {v.claim_id: v.verdict for v in ledger.evaluate(paper_checks.paper_measurements())}
    own = {k: (v if v != "not tested" else "-") for k, v in own.items()}
    first = next(iter(inputs.values()))
    page = Page(found=first.found, missing=first.missing, notes=ledger.tier_notes(inputs))
    for tier, verdicts in by_tier.items():
        page.markdown[f"ledger_{tier}"] = ledger.ledger_markdown(
            verdicts, pages, extra={"paper's own tables": own}
        )
        frame = ledger.ledger_frame(verdicts)
        page.markdown[f"details_{tier}"] = markdown_table(frame[["claim", "verdict", "detail"]])
    for block, part in (("ledgers", "ledger"), ("details", "details")):  # tiers, headed
        page.markdown[block] = "\n\n".join(
            f"### {ledger.tier_label(tier)}\n\n{page.markdown[f'{part}_{tier}']}"
            for tier in by_tier
        )
    first_tier = next(iter(by_tier.values()))
    tiers = {"claim": [f"`{v.claim_id}`" for v in first_tier]}
    tiers |= {
        ledger.tier_label(t): [ledger.verdict_mark(v.verdict) for v in vs]
        for t, vs in by_tier.items()
    }
    page.markdown["tiers"] = markdown_table(pd.DataFrame(tiers))
    last = list(inputs.values())[-1]
    page.markdown["inconsistencies"] = markdown_table(paper_checks.inconsistency_table(last.found))
    _glue_counts(page, by_tier)
    page.values["profile"] = (profile, "{}")
    return page
