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


def test_the_page_says_plainly_that_nothing_is_missing():
    page = verdicts.not_reproduced_page("testbed")
    inventory = paper_checks.unsupported_inventory()
    assert inventory.empty and list(inventory.columns) == paper_checks.INVENTORY_COLUMNS
    assert page.values["n_items"] == (0, "{}") and page.values["item_ids"][0] == "none"
    assert page.markdown == {"inventory": verdicts.NOTHING_MISSING}
    assert paper_checks.unsupported_rows("table7").empty  # Table 7 has its pages
    assert verdicts.not_reproduced_page("paper").markdown == page.markdown  # measures nothing


def test_the_continuous_pages_are_built_pages():
    names = set(runner.notebook_names(find_root()))
    assert {"tab07-pruning-continuous", "fig10-continuous-samples"} <= names
    testbed = {e["id"]: e.get("testbed_page") for e in paper_checks.paper.inventory()}
    assert testbed["table7"] == "tab07-pruning-continuous"
    assert testbed["fig10"] == "fig10-continuous-samples"
