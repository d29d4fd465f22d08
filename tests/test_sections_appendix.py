"""The Appendix page functions (sections.appendix): Table 4 on the shipped models, Table 6 from
a stand-in sweep, Fig. 42's inputs in either profile and the values its text quotes; the paper
profile without checkpoints."""

import pandas as pd
import pytest
import torch
from sweep_fakes import fake_sweep

from semantic_bottleneck.core import adaln_cost, analysis, schematic
from semantic_bottleneck.sections import appendix

SETTINGS = dict(per_class=2, num_steps=4, last_k=1, base_seed=0)
NAMES = ["testbed-flow-long", "testbed-ddpm-long"]


@pytest.fixture
def no_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("SEMANTIC_BOTTLENECK_WEIGHTS", str(tmp_path))


def test_tab04_quotes_the_smallest_rise_of_the_cosine_from_y_to_t_plus_y():
    page = appendix.tab04_page("testbed", NAMES)
    table = page.tables["label_vs_sum"]
    assert list(table["model"]) == NAMES and set(appendix.TABLE4_COLUMNS) <= set(table.columns)
    rows = [analysis.label_vs_sum_row(m) for m in page.found]
    assert page.values["cos_gap"][0] == pytest.approx(
        min(r["cosine_yt"] - r["cosine_y"] for r in rows)
    )


def test_tab06_keeps_three_rows_of_each_sweep_and_quotes_the_largest_precision_drop(
    monkeypatch,
):
    calls = fake_sweep(monkeypatch)
    page = appendix.tab06_page("testbed", "testbed-flow", "testbed-ddpm", 30, **SETTINGS)
    assert [c[0] for c in calls] == ["testbed-flow", "testbed-ddpm"]
    assert all(c[3] == {"steps": 30} for c in calls)
    for key in ("table2", "table3"):
        table = page.tables[key]
        assert list(table.index) == appendix.TABLE6_ROWS
        assert all(any(k in col for k in ("precision", "recall", "fid")) for col in table.columns)
    # precision 0.5 - 0.01 i for row i of each sweep: the drop is that of the latest kept row
    drops = []
    for _, labels, _, _ in calls:
        i = [labels.index(r) for r in appendix.TABLE6_ROWS]
        drops.append(-0.01 * (max(i[1:]) - i[0]))
    assert page.values["precision_drop"][0] == pytest.approx(min(drops))
    assert sum(n.startswith("Sampler") for n in page.notes) == 2  # one per sweep
    assert sum("no paired-bootstrap interval" in n for n in page.notes) == 1  # said once


def test_tab06_shows_the_controls_of_its_rows_and_judges_the_precision_recall_claims(
    monkeypatch,
):
    calls = fake_sweep(monkeypatch, intervals=True)
    page = appendix.tab06_page(
        "testbed", "testbed-flow", "testbed-ddpm", 30, **SETTINGS,
        controls_table2={"tail 0.01 t_0": ["all"]},
        controls_table3={"tail 0.01 t_0": ["random", "all"]}, draws=1,
    )  # fmt: skip
    assert calls[0][1][-1] == "all of c t_0"
    assert calls[1][1][-2:] == ["tail 0.01 t_0 | random 1", "all of c t_0"]
    assert list(page.tables["table2"].index) == [*appendix.TABLE6_ROWS, "all of c t_0"]
    table3 = page.tables["table3"]
    assert list(table3.index) == [
        "baseline", "tail 0.01 t_0", "tail 0.01 t_0 | random 1", "tail 0.01 t_{n-k,n}",
        "all of c t_0",
    ]  # fmt: skip
    assert {"precision (vs baseline)", "recall (vs baseline)"} <= set(table3.columns)
    claims = page.tables["claims"]
    assert set(claims["metric"]) <= set(appendix.TABLE6_METRICS) and len(claims) > 0
    assert set(claims["model"]) <= {"REPA", "MG"}
    assert page.values["claims_total"][0] == len(claims)
    assert 0 <= page.values["claims_noise"][0] <= len(claims)


def test_precision_drop_is_the_most_negative_change_against_the_baseline():
    rows = appendix.TABLE6_ROWS
    a = pd.DataFrame({"precision (this run)": [0.5, 0.49, 0.52]}, index=rows)
    b = pd.DataFrame({"precision (this run)": [0.6, 0.61, 0.57]}, index=rows)
    assert appendix.precision_drop([a, b]) == pytest.approx(-0.03)
    assert appendix.precision_drop([a]) == pytest.approx(-0.01)
    assert appendix.precision_drop([]) is None


def test_without_checkpoints_the_paper_pages_name_them_and_quote_nothing(no_weights):
    tab04 = appendix.tab04_page("paper", ["dit-xl-2", "repa-sit-xl-2"])
    names = ["dit-xl-2", "repa-sit-xl-2", "uvit-h-2-imagenet256"]  # the U-ViT row's release too
    assert [m.name for m in tab04.missing] == names
    assert tab04.values["cos_gap"][0] is None and tab04.tables["label_vs_sum"].empty
    tab06 = appendix.tab06_page("paper", "repa-sit-xl-2", "mg-sit-xl-2", **SETTINGS)
    assert tab06.tables == {"table2": None, "table3": None, "claims": None}
    assert tab06.values["claims_total"][0] is None
    assert tab06.values["precision_drop"][0] is None
    names = [m.name for m in tab06.missing]
    assert {"repa-sit-xl-2", "mg-sit-xl-2"} <= set(names) and len(names) == len(set(names))


def test_fig42_times_the_trained_layers_with_the_models_own_c():
    found = analysis.load_models("testbed", ["testbed-ddpm"])[0]
    inputs = appendix.cost_inputs("testbed", "testbed-ddpm", found, batch=12)
    assert inputs.modulation.d_in == 128 and len(inputs.modulation.weights) == 5  # 4 blocks + final
    assert inputs.c.shape == (12, 128) and "trained weights of testbed-ddpm" in inputs.weights_note
    assert torch.equal(inputs.c[10], found[0].c()[0])  # the classes repeated to fill the batch
    page = appendix.fig42_page(
        "testbed", ["testbed-ddpm"], batch=12, removed=[0, 50, 120], repeats=1, warmup=0
    )
    cost = page.tables["cost"]
    assert list(cost["removed"]) == [0, 50, 120] and list(cost["kept"]) == [128, 78, 8]
    assert page.values["all_agree"][0] == "all agree"
    assert page.values["first_removed"][0] == 50 and page.values["most_removed"][0] == 120
    assert page.values["most_flops_ratio"][0] == pytest.approx(8 / 128)
    assert "5 modulation layers, batch 12" in page.notes[0]


def test_fig42_in_the_paper_profile_times_random_layers_of_the_checkpoints_shapes(
    no_weights, monkeypatch
):
    asked = []

    def shapes(profile, name):  # a small stand-in for the XL manifest (1152 wide, 28 blocks)
        asked.append((profile, name))
        return adaln_cost.synthetic_shapes(32, 2)

    monkeypatch.setattr(schematic, "model_shapes", shapes)
    found, missing = analysis.load_models("paper", ["dit-xl-2"])
    assert not found and [m.name for m in missing] == ["dit-xl-2"]
    inputs = appendix.cost_inputs("paper", "dit-xl-2", found, batch=4, seed=1)
    assert asked == [("paper", "dit-xl-2")] and "random weights" in inputs.weights_note
    assert inputs.c.shape == (4, 32) and "synthetic" in inputs.c_note
    assert torch.equal(inputs.c, adaln_cost.synthetic_c(4, 32, 1))


def test_cost_values_read_the_largest_and_the_second_smallest_count():
    cost = pd.DataFrame(
        {
            "removed": [0, 10, 30],
            "kept": [32, 22, 2],
            "kept_fraction": [1.0, 22 / 32, 2 / 32],
            "sparse_vs_baseline": [1.0, 0.8, 0.3],
            "flops_dense": [64.0] * 3,
            "flops_sparse": [64.0, 44.0, 4.0],
            "max_abs_diff": [0.0, 1e-7, 2e-7],
            "allclose": [True, True, False],
        }
    )
    values = appendix.cost_values(cost, 32)
    assert values["all_agree"][0] == "DISAGREE" and values["max_diff"][0] == 2e-7
    assert values["most_removed"][0] == 30 and values["most_ratio"][0] == 0.3
    assert values["most_flops_ratio"][0] == pytest.approx(4 / 64)
    assert values["first_removed"][0] == 10 and values["first_ratio"][0] == 0.8
    single = appendix.cost_values(cost.iloc[:1], 32)
    assert single["first_removed"][0] is None and single["first_ratio"][0] is None


def test_uvit_readings_match_the_papers_cosine_and_differ_in_npr():
    table = appendix.uvit_readings(seed=1)
    assert list(table["reading"].unique()) == ["sum", "concat"] and len(table) == 4
    assert table["cosine"].to_numpy() == pytest.approx(0.97917, abs=1e-3)  # by construction
    h = table[table["model"] == "uvit-h-2-imagenet256"].set_index("reading")
    assert (h.loc["concat", "width"], h.loc["sum", "width"]) == (2304, 1152)
    assert h.loc["concat", "t"] == 1000.0
    page = appendix.tab04_page("testbed", ["testbed-ddpm"])
    assert page.values["uvit_concat_npr"][0] == pytest.approx(h.loc["concat", "npr"], abs=0.01)
    assert page.values["uvit_paper_npr"][0] == pytest.approx(0.5006)
    assert page.values["uvit_match"][0] in set(appendix.READING_NAMES.values())
