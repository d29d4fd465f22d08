"""Tables as pages show them: headers from the value keys, one format per quantity, groups."""

import re

import pandas as pd

from semantic_bottleneck.book import display
from semantic_bottleneck.sweeps import run as sweep
from semantic_bottleneck.verdicts import paper


def headers(html: str) -> list[str]:
    return re.findall(r"<th [^>]*>([^<]*)</th>", html)


def test_paper_beside_this_run_is_grouped_under_one_header_per_quantity():
    measured = pd.DataFrame({"model": ["REPA"], "npr": [0.0150], "cosine": [0.99]})
    html = display.table(paper.compare(measured, "table1", columns=["npr", "cosine"])).to_html()
    assert 'colspan="3">nPR (%)</th>' in html and 'colspan="3">mean cosine</th>' in html
    assert headers(html).count("paper") == 2 and headers(html).count("diff") == 2
    assert ">1.53<" in html and ">1.50<" in html and ">-0.03<" in html  # nPR in %, 2 places
    assert ">0.9946<" in html  # cosine to 4 places
    assert "row0_col0" in html and "level0_row" not in html  # no index column


def test_formats_labels_and_a_named_index_becoming_a_column():
    row = {"row": "baseline", "fid": 8.123, "is_10_splits": 170.0, "is_adm": 290.0, "removed": 0.0}
    html = display.table(sweep.rows_beside_paper([row], "table2", "REPA", "paper")).to_html()
    assert "row" in headers(html) and ">baseline<" in html
    assert "FID" in headers(html) and "IS (ADM, 5,000 per split)" in headers(html)
    assert ">8.12<" in html
    plain = display.table(pd.DataFrame({"max_abs_c": [1.23456], "s_tail_0_01": [0.5]})).to_html()
    assert headers(plain) == ["max |c|", "s_tail(0.01)"] and ">1.235<" in plain
    assert display.table(None) is None
