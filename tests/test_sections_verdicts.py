"""The not-reproduced page (sections.verdicts): the inventory and the paper's printed rows of the
unsupported systems, and the ids its text quotes."""

import pandas as pd

from semantic_bottleneck.book import runner
from semantic_bottleneck.book.params import find_root
from semantic_bottleneck.sections import verdicts
from semantic_bottleneck.verdicts import paper_checks


def test_whole_ids_list_each_entry_then_its_grouped_ids():
    inventory = pd.DataFrame(
        {
            "id": ["fig4", "table5", "table1"],
            "also": ["fig10, fig32", "", ""],
            "scope": ["whole", "whole", "rows"],
        }
    )
    assert verdicts.whole_ids(inventory) == ["fig4", "fig10", "fig32", "table5"]


def test_the_page_lists_every_unsupported_item_and_the_papers_rows():
    page = verdicts.not_reproduced_page("testbed")
    inventory = paper_checks.unsupported_inventory()
    ids = verdicts.whole_ids(inventory)
    assert page.values["n_items"] == (len(ids), "{}") and len(ids) == 6
    assert page.values["item_ids"][0] == ", ".join(ids)
    table = page.markdown["inventory"].splitlines()
    assert table[0] == "| " + " | ".join(verdicts.INVENTORY_COLUMNS) + " |"
    assert len(table) == 2 + len(inventory)  # header, rule, one line per entry
    rows = paper_checks.unsupported_rows("table7")
    assert len(page.markdown["table7"].splitlines()) == 2 + len(rows) and len(rows)
    assert set(page.markdown) == {"inventory", "table7"}  # Tables 1, 4 and 5 have their pages
    assert verdicts.not_reproduced_page("paper").markdown == page.markdown  # measures nothing


def test_unsupported_items_link_the_page_of_their_testbed_analogue():
    inventory = paper_checks.unsupported_inventory()
    linked = {i: p for i, p in zip(inventory["id"], inventory["testbed"], strict=True) if p}
    assert linked == {"table7": "tab07-pruning-continuous"}
    assert set(linked.values()) <= set(runner.notebook_names(find_root()))
    text = verdicts.not_reproduced_page("testbed").markdown["inventory"]
    assert "{doc}`tab07-pruning-continuous`" in text
