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
    assert page.notes == ["Sampler: `S()`. Model numerics: fp32."] and not page.missing


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
    assert out.notes[0].startswith("9 of the 9 rows are not sampled yet: baseline, ")
    with pytest.raises(ValueError, match="profile"):
        pruning.sweep_outcome("imagenet", "x", [], None)
