"""The Section 5 page functions (sections.pruning): their values from a sweep's rows (a stand-in
sweep with known FIDs), the notices of the paper profile without inputs, and the sweep's note."""

import pytest
from sweep_fakes import fake_sweep

from semantic_bottleneck.book.plots import REAL
from semantic_bottleneck.sections import pruning
from semantic_bottleneck.sweeps import run as sweep

SETTINGS = dict(per_class=2, num_steps=4, last_k=1, base_seed=3)


@pytest.fixture
def calls(monkeypatch):
    return fake_sweep(monkeypatch)


@pytest.fixture
def no_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("SEMANTIC_BOTTLENECK_WEIGHTS", str(tmp_path))


def test_tab02_quotes_the_fid_of_its_rows_and_passes_the_parameters_on(calls):
    page = pruning.tab02_page("testbed", "testbed-flow", 30, **SETTINGS)
    name, labels, settings, train = calls[0]
    assert name == "testbed-flow" and train == {"steps": 30}
    assert settings == sweep.SweepSettings(per_class=2, base_seed=3, num_steps=4, last_k=1)
    index = {label: i for i, label in enumerate(labels)}
    for key, row in pruning.TABLE2_FIDS.items():
        assert page.values[key] == (10.0 + index[row], "{:.2f}")
    assert page.values["removed_066"][0] == 2.0 * index["tail 0.02 t_i"]
    assert page.values["d_model"][0] == 128
    table = page.tables["rows"]
    assert list(table.index) == labels and table.loc["baseline", "fid (this run)"] == 10.0
    assert page.notes[0] == "Sampler: `S()`. Model numerics: fp32." and not page.missing
    assert page.notes[1].startswith("These rows have no paired-bootstrap interval yet")


def test_worst_fid_ratio_is_the_largest_over_every_sweep():
    a = [{"row": "baseline", "fid": 10.0}, {"row": "x", "fid": 12.0}]
    b = [{"row": "baseline", "fid": 4.0}, {"row": "x", "fid": 3.0}, {"row": "y", "fid": 5.0}]
    assert pruning.worst_fid_ratio([a, b]) == pytest.approx(1.25)
    assert pruning.worst_fid_ratio([a]) == pytest.approx(1.2)
    assert pruning.worst_fid_ratio([]) is None


def test_tab03_measures_only_the_named_models(calls):
    page = pruning.tab03_page("testbed", "testbed-ddpm", None, **SETTINGS)
    assert [c[0] for c in calls] == ["testbed-ddpm"]
    labels = calls[0][1]
    assert page.values["worst_ratio"][0] == pytest.approx((10.0 + len(labels) - 1) / 10.0)
    assert "fid (this run)" in page.tables["MG"].columns
    assert "fid (this run)" not in page.tables["LightningDiT"].columns  # the paper's rows alone
    assert len(page.tables["LightningDiT"]) == len(sweep.paper_rows("table3", "LightningDiT"))


def test_the_figures_draw_their_rows_below_the_real_digits(calls):
    fig7 = pruning.fig07_page("testbed", "testbed-flow", **SETTINGS)
    fig8 = pruning.fig08_page("testbed", "testbed-flow", **SETTINGS)
    drawn = [ax.get_ylabel() for ax in fig7.figures["samples"].axes]
    assert drawn == [REAL, *pruning.HEAD_ROWS]
    assert [ax.get_ylabel() for ax in fig8.figures["samples"].axes] == [REAL, *pruning.TAIL_ROWS]
    assert set(pruning.HEAD_ROWS + pruning.TAIL_ROWS) <= set(calls[0][1])  # rows the sweep has


def test_without_inputs_the_paper_pages_name_them_once_and_quote_nothing(no_weights):
    tab02 = pruning.tab02_page("paper", "repa-sit-xl-2", **SETTINGS)
    names = [m.name for m in tab02.missing]
    assert names[0] == "repa-sit-xl-2" and "adm-ref-imagenet256" in names
    assert tab02.tables["rows"] is None and all(v is None for v, _ in tab02.values.values())
    tab03 = pruning.tab03_page("paper", "mg-sit-xl-2", "lightningdit-xl-1", **SETTINGS)
    names = [m.name for m in tab03.missing]
    assert {"mg-sit-xl-2", "lightningdit-xl-1"} <= set(names)
    assert len(names) == len(set(names))  # the shared inputs (ADM batch, ...) listed once
    assert tab03.values["worst_ratio"][0] is None
    assert len(tab03.tables["MG"]) == len(sweep.paper_rows("table3", "MG"))  # paper's rows
    assert pruning.fig07_page("paper", "repa-sit-xl-2", **SETTINGS).figures["samples"] is None


def test_a_paper_sweep_needing_a_gpu_becomes_a_note(monkeypatch):
    monkeypatch.setattr(sweep, "paper_inputs", lambda name: [])
    monkeypatch.setattr(sweep, "rows_to_fill", lambda name, rows, settings: [r.label for r in rows])
    out = pruning.sweep_outcome("paper", "repa-sit-xl-2", sweep.paper_rows("table2"), None)
    assert out.result is None and out.missing == []
    assert out.notes[0].startswith(
        "9 of the 9 rows are not sampled yet: the paper's rows baseline, "
    )
    with pytest.raises(ValueError, match="profile"):
        pruning.sweep_outcome("imagenet", "x", [], None)


CONTROLS = {"tail 0.02 t_i": ["random", "mean"], "head 1 t_i": ["variance"],
            "tail 0.01 t_0": ["all"]}  # fmt: skip


@pytest.fixture
def interval_calls(monkeypatch):
    return fake_sweep(monkeypatch, intervals=True)


def test_tab02_shows_the_controls_beside_their_rows_with_intervals(interval_calls):
    page = pruning.tab02_page("testbed", "testbed-flow", 30, **SETTINGS, controls=CONTROLS, draws=2)
    labels = interval_calls[0][1]
    assert labels[: len(sweep.paper_rows("table2"))] == [
        r.label for r in sweep.paper_rows("table2")
    ]
    index = {label: i for i, label in enumerate(labels)}
    rows = list(page.tables["rows"].index)
    at = rows.index("tail 0.02 t_i")
    assert rows[at + 1 : at + 4] == [
        "tail 0.02 t_i | random 1", "tail 0.02 t_i | random 2", "tail 0.02 t_i | mean"
    ]  # fmt: skip
    i = index["tail 0.02 t_i | random 1"]
    assert page.values["change_random_066"][0] == f"{i:+.2f} [{i - 0.05:+.2f}, {i + 0.05:+.2f}]"
    assert page.values["random_066_draws"][0].count("; ") == 1
    j = index["all of c t_0"]
    assert page.values["change_all_t0"][0].startswith(f"{j:+.2f} [")
    assert page.values["change_variance_head8"][0] is not None
    changes = page.tables["changes"].set_index("row")
    assert changes.loc["tail 0.02 t_i | mean", "control"] == "mean"
    assert changes["interval width"].to_numpy() == pytest.approx(0.1)
    # the first pruned row's FID is 11 against 10: its whole interval lies beyond 5% of 10
    assert changes.loc["tail 0.01 t_i", "verdict"] == "degrades"
    claims = page.tables["claims"]
    assert set(claims["row"]) <= set(labels) and len(claims) == page.values["claims_total"][0]
    noise, improve = page.values["claims_noise"][0], page.values["claims_improve"][0]
    assert noise + improve == len(claims)
    assert page.values["n_samples"] == (40, "{}") and page.values["n_boot"][0] == 500
    assert page.values["fid_width"][0] == pytest.approx(0.1)  # every fake row degrades
    assert page.values["fid_width_over"][0] == f"all {len(changes)} rows (every one degrades)"
    assert page.values["claims_noise_independent"][0] is not None


def test_tab03_quotes_the_random_and_all_of_c_controls_of_t0(interval_calls):
    page = pruning.tab03_page(
        "testbed", "testbed-ddpm", None, **SETTINGS,
        controls={"tail 0.01 t_0": ["random", "all"]}, draws=1,
    )  # fmt: skip
    labels = interval_calls[0][1]
    assert labels[-2:] == ["tail 0.01 t_0 | random 1", "all of c t_0"]
    assert page.values["change_random_t0"][0] == page.values["random_t0_draws"][0]
    assert page.values["change_all_t0"][0] is not None
    assert page.tables["changes_MG"] is not None and page.tables["changes_LightningDiT"] is None
    assert page.values["claims_total"][0] == len(page.tables["claims_MG"])


def test_a_sweep_without_intervals_says_so_and_shows_no_empty_columns(calls):
    page = pruning.tab02_page("testbed", "testbed-flow", 30, **SETTINGS, controls=CONTROLS)
    assert page.tables["changes"] is None and page.tables["claims"] is None
    assert not any("vs baseline" in c for c in page.tables["rows"].columns)
    assert any("no paired-bootstrap interval yet" in n for n in page.notes)
    assert page.values["claims_total"][0] is None and page.values["n_boot"][0] is None


def test_without_inputs_the_paper_page_lists_the_control_rows_a_gpu_fills(no_weights):
    page = pruning.tab02_page("paper", "repa-sit-xl-2", **SETTINGS, controls="all", draws=3)
    note = next(n for n in page.notes if "not sampled yet" in n)
    assert "the control rows tail 0.01 t_i | random 1, " in note
    assert "all of c t_{n-k,n}" in note and "head 1 t_i | by variance" in note
    assert note.startswith(f"{len(pruning.with_controls(sweep.paper_rows('table2'), 'all', 3))} of")


def test_windows_page_sweeps_each_window_and_shows_the_modulation_change(
    interval_calls, monkeypatch
):
    import pandas as pd

    blocks = pd.DataFrame(
        {"row": ["head 1 t_i"] * 2, "layer": ["block 0", "block 1"], "shift": [0.1, 0.2],
         "scale": [0.1, 0.2], "gate": [0.3, 0.5]}
    )  # fmt: skip
    asked = []

    def tables(profile, model, rows, train_steps=None):
        asked.append((profile, model, rows, train_steps))
        return {"blocks": blocks, "over_t": pd.DataFrame({"row": ["head 1 t_i"], "t": [1.0]})}

    monkeypatch.setattr(pruning, "modulation_tables", tables)
    page = pruning.pruning_windows_page("testbed", "testbed-flow", 30, 2, 8, 4, 3)
    name, labels, settings, train = interval_calls[0]
    assert labels == [
        "baseline", "tail 0.02 t_i", "tail 0.02 in [0, 4)", "tail 0.02 in [4, 8)",
        "head 1 t_i", "head 1 in [0, 4)", "head 1 in [4, 8)",
    ]  # fmt: skip
    assert settings.last_k == 4 and settings.num_steps == 8 and train == {"steps": 30}
    assert asked == [("testbed", "testbed-flow", ["tail 0.02 t_i", "head 1 t_i"], 30)]
    # the fake FID grows with the row's place: the last head window changes it most
    assert page.values["worst_window"] == ("[4, 8)", "{}")
    assert page.values["head_first"][0].startswith("+5.00 [")
    assert page.values["gate_change_head"] == (0.4, "{:.2f}")
    assert page.values["n_samples"] == (40, "{}")
    assert page.figures["windows"] is not None
    with pytest.raises(ValueError, match="num_steps"):
        pruning.pruning_windows_page("testbed", "testbed-flow", num_steps=None)
    with pytest.raises(ValueError, match="rows"):
        pruning.pruning_windows_page("testbed", "testbed-flow", rows=("tail 9 t_i",))


def test_windows_page_without_inputs_names_them(no_weights):
    page = pruning.pruning_windows_page("paper", "repa-sit-xl-2", num_steps=250, width=50)
    assert page.tables["changes"] is None and page.tables["blocks"] is None
    note = next(n for n in page.notes if "not sampled yet" in n)
    assert "the window rows tail 0.02 in [0, 50), " in note and "sweep windows MODEL" in note
    assert "head 1 in [200, 250)" in note
    assert any("adaLN weights" in n for n in page.notes)
    assert page.missing and page.figures["windows"] is None
    assert page.values["worst_window"][0] is None


def test_modulation_tables_use_the_papers_tau_where_c_is_not_matched(monkeypatch):
    import torch

    from semantic_bottleneck.core import adaln_cost
    from semantic_bottleneck.core.conventions import TimeConvention

    mod = adaln_cost.random_modulation(adaln_cost.synthetic_shapes(16, 2), seed=0)
    base = torch.randn(4, 16, generator=torch.Generator().manual_seed(0))
    base[:, :2] = 8.0  # two head coordinates above the paper's tau of 5 and 1

    def condition(t):
        return base * (1 + 0.1 * t)

    time = TimeConvention("repa", integer=False, initial_t=1.0, data_t=0.0)
    monkeypatch.setattr(pruning, "modulation_inputs", lambda *a: (mod, condition, time, False))
    out = pruning.modulation_tables("paper", "repa-sit-xl-2", ["head 5 t_i"])
    blocks, over_t = out["blocks"], out["over_t"]
    assert list(blocks["layer"]) == ["block 0", "block 1", "final"]
    c0 = condition(1.0)
    pruned = c0.clone()
    pruned[:, :2] = 0.0  # |c_i| > 5: the two head coordinates
    expected = adaln_cost.modulation_change(mod, c0, pruned)
    assert blocks["gate"].iloc[0] == pytest.approx(expected["gate"].iloc[0])
    assert list(over_t["t"]) == pytest.approx([1.0, 0.75, 0.5, 0.25, 0.0])
    monkeypatch.setattr(pruning, "modulation_inputs", lambda *a: None)
    assert pruning.modulation_tables("paper", "repa-sit-xl-2", ["head 5 t_i"]) == {}
