"""Tests for the paper's values (data/paper_values.yaml) and the paper-vs-run comparison."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest
import yaml

from semantic_bottleneck.verdicts import paper
from semantic_bottleneck.verdicts.paper import (
    PAPER_MODEL_NAMES,
    TABLE_IDS,
    claim,
    claims,
    compare,
    inconsistencies,
    inventory,
    paper_columns,
    paper_row,
    paper_table,
    paper_values,
)

# The row counts of Tables 1-7 as printed in the paper.
ROW_COUNTS = {
    "table1": 8,
    "table2": 9,
    "table3": 8,
    "table4": 7,
    "table5": 7,
    "table6": 9,
    "table7": 2,
}
PRUNING_TABLES = ("table2", "table3", "table6", "table7")
SCHEDULES = {"every", "initial", "last_k", None}


def test_yaml_parses_with_every_section() -> None:
    with paper.DATA_FILE.open(encoding="utf-8") as f:
        raw = yaml.safe_load(f)
    assert set(raw) >= {"paper", "tables", "claims", "inconsistencies", "figures"}
    assert raw["paper"]["arxiv"] == "2602.21596v1"
    assert raw["paper"]["authors"] == ["Pham", "Zhang", "Hong", "Yoo"]
    assert sorted(raw["tables"]) == sorted(TABLE_IDS)


def test_tables_have_printed_row_counts_and_declared_columns() -> None:
    for table_id in TABLE_IDS:
        table = paper_values()["tables"][table_id]
        assert table["caption"] and table["source"].startswith(f"Table {table_id[-1]}")
        names = [c["name"] for c in table["columns"]]
        assert len(names) == len(set(names)) and all("unit" in c for c in table["columns"])
        assert len(table["rows"]) == ROW_COUNTS[table_id], table_id
        for row in table["rows"]:
            assert isinstance(row["model"], str)
            missing = [n for n in names if n not in row]
            assert not missing, (table_id, row["model"], missing)
            # Every declared value is a number or, where the paper prints none, empty.
            for n in names:
                assert row[n] is None or isinstance(row[n], int | float), (table_id, n)


def test_pruning_rows_have_side_tau_schedule_removed_d() -> None:
    for table_id in PRUNING_TABLES:
        for row in paper_values()["tables"][table_id]["rows"]:
            assert row["side"] in {"tail", "head", None}
            assert row["schedule"] in SCHEDULES
            assert row["d"] in (1152, 1024)
            if row["side"] is None:  # a baseline prunes nothing
                assert row["tau"] is None and row["removed"] == 0
            else:
                assert row["tau"] > 0


def test_spot_values_against_the_paper() -> None:
    # Both REPA nPR values: the paper prints 1.53% in Table 1 and 1.43% in Table 4 (stored as
    # fractions of d, the unit of every nPR value in the project).
    assert paper_row("table1", "REPA")["npr"] == 0.0153
    assert paper_row("table4", "REPA")["npr_yt"] == 0.0143
    head = paper_row("table2", "REPA", side="head", tau=1.0)
    assert (head["fid"], head["is_10_splits"], head["clip"], head["removed"]) == (
        523.7637,
        1.95,
        22.69,
        8,
    )
    assert paper_row("table2", "REPA", side="tail", tau=0.02)["removed_percent_printed"] == 66.21
    assert paper_row("table3", "LightningDiT", schedule="every")["clip"] == 30.7045
    assert paper_row("table4", "U-ViT (concatenation)")["cosine_y"] == 0.00165
    assert paper_row("table5", "X-MDPT-B")["cosine_yt"] == 0.99992
    assert paper_row("table6", "MG", schedule="last_k")["recall"] == 0.6644
    assert paper_row("table7", "X-MDPT", side="tail")["removed_percent_printed"] == 40
    assert paper_row("table1", "MDSGen")["d"] == 768


def test_table6_repeats_the_rows_of_tables_2_and_3() -> None:
    # Table 6 prints no tau or removed count; they come from the identical rows of Tables 2/3.
    for row in paper_values()["tables"]["table6"]["rows"]:
        source = "table2" if row["model"] == "REPA" else "table3"
        match = {"side": row["side"], "tau": row["tau"], "schedule": row["schedule"]}
        other = paper_row(source, row["model"], **match)
        assert (row["fid"], row["is_10_splits"], row["clip"]) == (
            other["fid"],
            other["is_10_splits"],
            other["clip"],
        )
        assert row["removed"] == other["removed"]


def test_table1_npr_is_pr_over_d() -> None:
    # The paper's own consistency: printed nPR = PR / d to its rounding (0.02 percentage points).
    frame = paper_table("table1")
    implied = frame["pr"] / frame["d"]
    failing = frame.loc[(implied - frame["npr"]).abs() > 0.0002, "model"].tolist()
    assert failing == []
    # Table 4's REPA value is not PR / d, which is the inconsistency the file records.
    repa = paper_row("table1", "REPA")
    assert abs(repa["pr"] / repa["d"] - paper_row("table4", "REPA")["npr_yt"]) > 0.0005


def test_table1_and_table4_agree_except_repa_npr() -> None:
    for row in paper_values()["tables"]["table4"]["rows"][:6]:
        first = paper_row("table1", row["model"])
        assert first["cosine"] == row["cosine_yt"]
        if row["model"] != "REPA":
            assert first["npr"] == row["npr_yt"]


def test_paper_table_order_types_and_attrs() -> None:
    frame = paper_table("table2")
    assert list(frame.columns[:1]) == ["model"]
    assert list(frame.columns[-3:]) == ["fid", "is_10_splits", "clip"]
    assert frame["tau"].isna().tolist() == [True] + [False] * 8
    assert frame["removed"].tolist() == [0, 448, 448, 448, 762, 1110, 1149, 2, 8]
    assert frame.attrs["source"] == "Table 2, Sec. 5"
    assert paper_table("table1")["model"].tolist() == [
        "DiT",
        "SiT",
        "MDT",
        "LightningDiT",
        "MG",
        "REPA",
        "X-MDPT",
        "MDSGen",
    ]
    assert [c["name"] for c in paper_columns("table6")][-2:] == ["precision", "recall"]


def test_paper_values_returns_independent_copies() -> None:
    first = paper_values()
    first["tables"]["table1"]["rows"][0]["pr"] = -1.0
    assert paper_values()["tables"]["table1"]["rows"][0]["pr"] == 120.69


def test_missing_values_file_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="paper's values file is missing"):
        paper_values(tmp_path / "absent.yaml")


@pytest.mark.parametrize("bad", ["table0", "table8", "Table 1", "", "tab1"])
def test_bad_table_id_is_a_value_error(bad: str) -> None:
    with pytest.raises(ValueError, match="expected one of table1"):
        paper_table(bad)


def test_paper_row_errors_name_the_problem() -> None:
    with pytest.raises(ValueError, match="rows match"):
        paper_row("table2", "REPA")  # nine REPA rows
    with pytest.raises(ValueError, match="no row for model='DiT'"):
        paper_row("table2", "DiT")
    with pytest.raises(ValueError, match="expected fields among"):
        paper_row("table2", "REPA", threshold=0.01)


def test_paper_row_accepts_registry_names() -> None:
    assert paper_row("table1", "mdtv2-xl-2")["pr"] == 18.45
    assert set(PAPER_MODEL_NAMES.values()) == {"DiT", "SiT", "MDT", "LightningDiT", "MG", "REPA"}
    for name in PAPER_MODEL_NAMES.values():
        paper_row("table1", name)  # every mapped name has a Table 1 row


def test_compare_diffs_nans_and_outer_join() -> None:
    measured = pd.DataFrame(
        {
            "model": ["repa-sit-xl-2", "DiT", "tiny-testbed"],
            "npr": [0.0150, 0.1047, 0.30],
            "cosine": [0.99, np.nan, 0.8],
        }
    )
    out = compare(measured, "table1", columns=["npr", "cosine"])
    assert list(out.columns) == [
        "model",
        "npr (paper)",
        "npr (this run)",
        "npr (diff)",
        "cosine (paper)",
        "cosine (this run)",
        "cosine (diff)",
    ]
    # The paper's eight rows in printed order, then the measured-only row.
    assert out["model"].tolist() == paper_table("table1")["model"].tolist() + ["tiny-testbed"]
    repa = out.set_index("model").loc["REPA"]
    assert math.isclose(repa["npr (diff)"], 0.0150 - 0.0153)
    assert math.isclose(repa["cosine (diff)"], 0.99 - 0.9946)
    dit = out.set_index("model").loc["DiT"]
    assert dit["npr (diff)"] == 0.0 and math.isnan(dit["cosine (diff)"])
    sit = out.set_index("model").loc["SiT"]  # paper only
    assert sit["cosine (paper)"] == 0.9852 and math.isnan(sit["cosine (this run)"])
    tiny = out.set_index("model").loc["tiny-testbed"]  # this run only
    assert math.isnan(tiny["npr (paper)"]) and math.isnan(tiny["npr (diff)"])
    assert tiny["npr (this run)"] == 0.30


def test_compare_on_several_keys_matches_the_baseline() -> None:
    measured = pd.DataFrame(
        {
            "model": ["REPA", "REPA"],
            "side": [None, "head"],
            "tau": [None, 1.0],
            "schedule": [None, "every"],
            "removed": [0, 9],
            "fid": [7.0, 500.0],
        }
    )
    out = compare(measured, "table2", on=["model", "side", "tau", "schedule"])
    assert len(out) == 9  # every measured row found its paper row
    assert out.loc[0, "fid (diff)"] == pytest.approx(7.0 - 7.1694)
    assert out.loc[8, "removed (diff)"] == 1 and out.loc[8, "fid (this run)"] == 500.0
    assert out[["fid (this run)"]].notna().sum().item() == 2


def test_compare_rejects_bad_input() -> None:
    good = pd.DataFrame({"model": ["REPA"], "cosine": [0.99]})
    with pytest.raises(ValueError, match="expected a pandas DataFrame"):
        compare({"model": ["REPA"]}, "table1")
    with pytest.raises(ValueError, match="expected one of table1"):
        compare(good, "table9")
    with pytest.raises(ValueError, match="expected names among"):
        compare(good.assign(fid=1.0), "table1", columns=["fid"])
    with pytest.raises(ValueError, match="not a column of the measured frame"):
        compare(good, "table1", columns=["pr"])
    with pytest.raises(ValueError, match="does not identify the rows of the paper's table"):
        compare(pd.DataFrame({"model": ["REPA"], "fid": [7.0]}), "table2")
    with pytest.raises(ValueError, match="does not identify the rows of the measured frame"):
        compare(pd.concat([good, good]), "table1")
    with pytest.raises(ValueError, match="expected numbers"):
        compare(good.assign(cosine=["high"]), "table1")
    with pytest.raises(ValueError, match="must be a column of both"):
        compare(good, "table1", on="name")


def test_claims_cover_the_listed_text_claims_with_bounds() -> None:
    found = {c["id"]: c for c in claims()}
    assert all(re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", i) for i in found)
    assert all(c["text"] and c["source"] for c in found.values())
    assert found["cosine-imagenet"]["cosine_min"] == 0.99
    assert found["cosine-continuous"]["cosine_min"] == 0.999
    assert found["dims-above-0-1"]["head_dims_above_0.1"] == [10, 20]
    assert found["dims-above-1"]["dims_above_1"] == 10
    assert found["npr-1-to-2-percent"]["npr_range"] == [0.01, 0.02]
    assert found["s-tail-at-0-01"]["s_tail_at_0.01"] == [0.38, 0.40]
    assert found["pruning-keeps-quality"]["pruning_keeps_quality_up_to"] == 0.66
    assert found["head-removal-destroys-quality"]["head_dims_destroy"] == [4, 6]
    assert found["head-dims-carry-variance"]["variance_dims"] == [15, 20]
    assert found["mean-variance-range"]["mean_variance_range"] == [0.0002, 0.0019]
    assert found["dit-min-cosine"]["dit_min_cosine"] == 0.88
    assert found["dit-max-abs-c"]["dit_max_abs_c"] == 0.8
    assert found["dit-max-abs-c"]["others_max_abs_c"] == [4, 8]
    assert found["npr-falls-during-training"]["npr_training"] == {"from": 0.90, "to_below": 0.06}
    assert claim("s-tail-at-0-01")["tau"] == 0.01
    with pytest.raises(ValueError, match="claim_id"):
        claim("no-such-claim")


def test_inconsistencies_are_the_four_known_ones() -> None:
    ids = [i["id"] for i in inconsistencies()]
    assert ids == [
        "removed-percent-not-count-over-d",
        "tail-plus-head-at-5-is-1151",
        "repa-npr-table1-vs-table4",
        "fig11-vs-s-tail",
    ]
    # The data itself shows the first two.
    tail = paper_row("table2", "REPA", side="tail", tau=5.0)
    head = paper_row("table2", "REPA", side="head", tau=5.0)
    assert tail["removed"] + head["removed"] == 1151
    row = paper_row("table2", "REPA", side="tail", tau=0.01, schedule="every")
    assert round(100 * row["removed"] / row["d"], 2) != row["removed_percent_printed"]


def test_inventory_covers_every_table_and_figure_once() -> None:
    items = inventory()
    ids = [i for item in items for i in [item["id"], *item.get("also", [])]]
    # the paper's inventory: figures 1-43 and tables 1-7, each exactly once.
    expected = [f"fig{n}" for n in range(1, 44)] + list(TABLE_IDS)
    assert sorted(ids) == sorted(expected)
    assert all(item["content"] and item["needs"] for item in items)
    not_here = {
        i
        for item in items
        if not item["reproducible_here"]
        for i in [item["id"], *item.get("also", [])]
    }
    # every item has a page: X-MDPT's sampler and DeepFashion evaluation are here too
    assert not_here == set()
