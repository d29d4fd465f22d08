"""The Verdicts part's page of what is not reproduced: the tables and figures of unsupported
systems, with the paper's printed numbers (nothing on it is measured). The claims ledger page
is `ledger`'s."""

from __future__ import annotations

import pandas as pd

from semantic_bottleneck.core.analysis import Page
from semantic_bottleneck.verdicts import paper_checks
from semantic_bottleneck.verdicts.ledger import markdown_table

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

    Markdown: inventory (`paper_checks.unsupported_inventory`), table5, table7 and table1_4
    (the unsupported rows of Tables 1 and 4, each under its id). Values: n_items, item_ids
    (`whole_ids`).
    """
    inventory = paper_checks.unsupported_inventory()
    ids = whole_ids(inventory)
    inventory["testbed analogue"] = [f"{{doc}}`{p}`" if p else "" for p in inventory["testbed"]]
    return Page(
        markdown={
            "inventory": markdown_table(inventory[INVENTORY_COLUMNS]),
            "table5": printed("table5"),
            "table7": printed("table7"),
            "table1_4": "\n\n".join(f"**{t}**\n\n{printed(t)}" for t in ("table1", "table4")),
        },
        values={"n_items": (len(ids), "{}"), "item_ids": (", ".join(ids), "{}")},
    )
