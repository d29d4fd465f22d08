"""The Sections 1-4 page functions (sections.conditional_vector) on the shipped testbed models
and, in the paper profile, with no checkpoint present."""

import pytest
import torch

from semantic_bottleneck.core import analysis, appendix
from semantic_bottleneck.sections import conditional_vector as cv

NAMES = ["testbed-flow-long", "testbed-ddpm-long"]  # shipped: read, not trained


@pytest.fixture
def no_weights(tmp_path, monkeypatch):
    """An empty weights cache: every official checkpoint is absent."""
    monkeypatch.setenv("SEMANTIC_BOTTLENECK_WEIGHTS", str(tmp_path))


def test_top_share_is_the_l1_share_of_the_largest_coordinates():
    c = torch.tensor([3.0, -1.0, 0.5, -0.5])
    assert cv.top_share(c, k=1) == pytest.approx(0.6)
    assert cv.top_share(c, k=2) == pytest.approx(0.8)
    assert cv.top_share(c, k=10) == pytest.approx(1.0)  # k above d: every coordinate


def test_fig06_quotes_the_smallest_top10_share_of_the_drawn_class():
    page = cv.fig06_page("testbed", NAMES, class_index=3)
    shares = page.tables["top_share"]
    assert list(shares["model"]) == NAMES
    for model, share in zip(page.found, shares[cv.TOP_SHARE], strict=True):
        mags = model.c()[3].abs().sort(descending=True).values
        assert share == pytest.approx(float(mags[:10].sum() / mags.sum()))
    assert page.values["top10_share"][0] == shares[cv.TOP_SHARE].min()
    assert 0 < page.values["top10_share"][0] < 1
    assert page.values["class_index_text"] == (3, "{}")
    assert page.figures["dimensions"] is not None


def test_fig01_and_fig03_quote_their_statistics_tables():
    page = cv.fig01_page("testbed", NAMES)
    stats = analysis.statistics_table(page.found)
    assert page.values["lowest_cosine"][0] == stats["cosine"].min()
    assert page.values["highest_npr"][0] == stats["npr"].max()
    assert page.values["profile"] == ("testbed", "{}")
    assert page.figures["bars"] is not None and page.figures["paper_bars"] is not None
    page = cv.fig03_page("testbed", NAMES, zoom=4, seed=1)
    assert list(page.figures) == NAMES  # one heatmap per model
    assert list(page.tables["cosine"].columns) == ["model", "cosine", "cosine_min"]
    assert page.values["min_pair_cos"][0] == stats["cosine_min"].min()


def test_fig05_quotes_the_largest_magnitude_and_the_mean_s_tail():
    page = cv.fig05_page("testbed", NAMES)
    counts = page.tables["counts"]
    assert page.values["max_abs_c"][0] == max(float(m.c().abs().max()) for m in page.found)
    assert page.values["s_tail_001"][0] == pytest.approx(counts["s_tail_0_01"].mean())


def test_fig02_reads_the_layout_of_each_model_and_counts_the_modulation_parameters():
    page = cv.fig02_page("testbed", ["testbed-ddpm", "testbed-flow"], show_pruning=False)
    layouts = page.tables["layouts"]
    assert list(layouts["d"]) == [128, 128] and list(layouts["blocks"]) == [4, 4]
    # 4 blocks of Linear(128, 6 * 128) and the final layer's Linear(128, 2 * 128), with biases
    assert layouts["modulation params"].iloc[0] == 4 * (128 * 768 + 768) + 128 * 256 + 256
    assert layouts["block modulation"].iloc[0] == "128 -> 6 x 128"
    share = layouts["modulation params"] / layouts["all params"]
    assert layouts["share"].tolist() == pytest.approx(share.tolist())
    assert page.values["drawn_model"] == ("testbed-ddpm", "{}")
    assert page.values["d"][0] == 128 and page.values["depth"][0] == 4
    assert page.values["modulation_share"][0] == layouts["share"].iloc[0]


@pytest.mark.parametrize(
    "page_function", [cv.fig01_page, cv.tab01_page, cv.fig03_page, cv.fig05_page, cv.fig06_page]
)
def test_without_checkpoints_the_paper_profile_names_them_and_quotes_nothing(
    no_weights, page_function
):
    page = page_function("paper", ["dit-xl-2", "repa-sit-xl-2"])
    names = ["dit-xl-2", "repa-sit-xl-2"]
    names += (
        appendix.TABLE1_SYSTEMS if page_function is cv.tab01_page else []
    )  # its continuous rows
    assert [m.name for m in page.missing] == names and not page.found
    assert "semantic-bottleneck fetch dit-xl-2" in analysis.missing_notice(page.missing)
    unquoted = ("profile", "class_index_text", "n_models", "ci_boot")  # settings, not results
    quoted = {k: v for k, (v, _) in page.values.items() if k not in unquoted}
    assert quoted and all(v is None for v in quoted.values())
    assert all(f is None for k, f in page.figures.items() if k != "paper_bars")


def test_tab01_quotes_the_range_of_its_statistics_table():
    page = cv.tab01_page("testbed", [*NAMES, "testbed-continuous"])
    table = page.tables["statistics"]
    assert list(table["model"]) == [*NAMES, "testbed-continuous"]
    assert page.values["npr_min"][0] == table["npr"].min()
    assert page.values["cos_max"][0] == table["cosine"].max()
    assert page.values["n_models"][0] == 3
    assert table["d"].tolist() == [128, 128, 128]
    assert len(page.figures["bars"].axes) == 2
