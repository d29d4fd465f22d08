"""The Section 6 page functions (sections.semantics) on the shipped testbed models and runs:
what each page quotes against its own tables, Fig. 11's numbers against the claims ledger's,
the recorded-GPU-run section shared by Figs. 12 and 43, and the paper profile without inputs.
(The c = T + Y, timestep and scale-study pages: tests/test_mechanism.py and
tests/test_scale_study_page.py.)"""

import json

import numpy as np
import pytest

from semantic_bottleneck.core import analysis, metrics
from semantic_bottleneck.sections import semantics
from semantic_bottleneck.training import curves
from semantic_bottleneck.verdicts import ledger, measures

NAMES = ["testbed-flow-long", "testbed-ddpm-long"]  # shipped: read, not trained


@pytest.fixture
def no_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("SEMANTIC_BOTTLENECK_WEIGHTS", str(tmp_path))


def test_fig09_quotes_the_range_of_its_variance_table():
    page = semantics.fig09_page("testbed", NAMES, top_k=5)
    variance = page.tables["variance"]
    assert list(variance["top_k"]) == [5, 5]
    assert variance.to_dict("records") == [analysis.variance_row(m, k=5) for m in page.found]
    assert page.values["mean_var_min"][0] == variance["mean_variance"].min()
    assert page.values["mean_var_max"][0] == variance["mean_variance"].max()
    assert page.values["topk_share"][0] == variance["top_share"].min()


def test_fig11_shows_the_ledgers_numbers_and_quotes_the_ledgers_measurement():
    page = semantics.fig11_page("testbed", NAMES, widget_class=2, n_widget_taus=3)
    fractions = page.tables["fractions"]
    ledger_table = measures.model_table(page.found)
    for column, source in semantics.FIG11_FROM_LEDGER.items():
        assert fractions[column].tolist() == ledger_table[source].tolist()
    below = [float((m.c().mean(0).abs() < 0.01).float().mean()) for m in page.found]
    assert fractions["mean c: frac < 0.01"].tolist() == pytest.approx(below)
    assert page.values["frac_mean_001"][0] == pytest.approx(np.mean(below))
    # the claims ledger judges the threshold claim on exactly the value the page quotes
    judged = ledger.measure(page.found)["threshold-curve-saturates"].value
    assert page.values["frac_mean_002"][0] == judged
    per_class = [float(metrics.sparsity_ratio(m.c(), 0.01).mean()) for m in page.found]
    assert fractions["per class: s_tail(0.01)"].tolist() == pytest.approx(per_class)
    explorer = page.widgets["explorer"]
    assert list(explorer.children[0].options) == NAMES  # one explorer per model
    assert page.figures["curves"] is not None


def test_fig13_quotes_the_median_overlap_of_each_variant():
    page = semantics.fig13_page("testbed", NAMES, knn=2, max_iter=250)
    companion = page.tables["companion"]
    assert set(companion["variant"]) == {"full", "head only", "tail only", "deep tail only"}
    overlap = companion.groupby("variant")["kNN overlap (k=2)"].median()
    assert page.values["overlap_head"][0] == overlap["head only"]
    assert page.values["overlap_tail"][0] == overlap["tail only"]
    assert page.values["overlap_deep"][0] == overlap["deep tail only"]
    assert page.values["chance"][0] == pytest.approx(2 / 9)
    assert page.values["n_classes"][0] == 10
    assert page.values["perplexity_used"][0] == pytest.approx(3.0)  # (10 - 1) / 3, few classes


def write_run(runs, name, timestep_set=0):
    config = {"timestep_set": timestep_set}
    prov = dict(name=name, scale="B/2", command="train", commit="abc", device="gpu", processes=8)
    prov.update(steps=200, config=config)
    (runs / f"{name}.json").write_text(json.dumps(prov))
    stats = {"batch_npr_mean": 0.5, "batch_npr_of_mean": 0.4, "batch_cos_mean": 0.9}
    lines = [json.dumps({"step": s, **stats}) for s in (0, 100, 200)]
    (runs / f"{name}.jsonl").write_text("\n".join(lines) + "\n")


def test_recorded_gpu_runs_are_split_by_their_timestep_set(tmp_path):
    empty = semantics.recorded_gpu_runs(False, tmp_path)
    assert empty["figure"] is None and empty["provenance"] is None
    assert "prepare-imagenet" in empty["text"] and empty["text"].startswith("```{note}")
    assert "--timestep-set K" in semantics.recorded_gpu_runs(True, tmp_path)["text"]
    runs = tmp_path / "data" / "runs"
    runs.mkdir(parents=True)
    write_run(runs, "repa-b2")
    write_run(runs, "repa-b2-k50", timestep_set=50)
    continuous = semantics.recorded_gpu_runs(False, tmp_path)
    assert continuous["provenance"]["name"].tolist() == ["repa-b2"]
    assert list(continuous["provenance"].columns) == semantics.PROVENANCE_KEYS
    assert continuous["figure"] is not None and "`repa-b2`" in continuous["text"]
    limited = semantics.recorded_gpu_runs(True, tmp_path)
    assert limited["provenance"]["name"].tolist() == ["repa-b2-k50"]


def test_fig12_headlines_the_last_run_of_its_models():
    names = ["testbed-repa", "testbed-repa-long"]
    page = semantics.fig12_page("testbed", names)
    summary = page.tables["summary"]
    assert summary["run"].tolist() == names
    last = summary.iloc[-1]
    assert page.values["curve_run"] == ("testbed-repa-long", "{}")
    for key in ("npr_start", "npr_peak", "npr_end", "peak_step", "end_step"):
        assert page.values[key][0] == last[key], key
    log = curves.run_log(curves.testbed_run("testbed-repa-long"))
    assert page.values["npr_start"][0] == log[0]["classes_npr_mean"]
    assert page.figures["classes"] is not None and page.figures["batch"] is not None
    assert not page.notes  # the paper-profile note only in the paper profile


def test_fig43_runs_one_curve_per_timestep_set_beside_the_continuous_run():
    page = semantics.fig43_page("testbed", ["testbed-repa"], [50], train_steps=25)
    summary = page.tables["summary"]
    assert summary["run"].tolist() == ["testbed-repa, continuous t", "testbed-repa, K = 50"]
    assert page.values["n_runs"][0] == 2 and page.values["steps"][0] == 25
    assert page.values["end_min"][0] == summary["npr_end"].min()
    assert page.values["peak_max"][0] == summary["npr_peak"].max()


@pytest.mark.parametrize(
    "make",
    [
        lambda: semantics.fig12_page("paper", ["dit-xl-2", "repa-sit-xl-2"]),
        lambda: semantics.fig43_page("paper", ["dit-xl-2"], [50, 100]),
    ],
)
def test_the_training_pages_draw_no_testbed_run_in_the_paper_profile(make):
    page = make()
    assert page.notes == [semantics.PAPER_PROFILE_NOTE]
    assert page.figures["classes"] is None and page.tables["summary"] is None
    quoted = [v for k, (v, _) in page.values.items() if k != "n_runs"]
    assert all(v is None for v in quoted)


@pytest.mark.parametrize(
    "page_function", [semantics.fig09_page, semantics.fig11_page, semantics.fig13_page]
)
def test_without_checkpoints_the_paper_pages_name_them_and_quote_nothing(no_weights, page_function):
    page = page_function("paper", ["dit-xl-2", "mg-sit-xl-2"])
    names = ["dit-xl-2", "mg-sit-xl-2"]
    names += semantics.FIG32_SYSTEMS if page_function is semantics.fig09_page else []
    assert [m.name for m in page.missing] == names and not page.found
    assert all(v is None for v, _ in page.values.values())
    assert all(f is None for f in page.figures.values())
