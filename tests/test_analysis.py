"""Model conditioning in both profiles, the Table 1/4 rows, and the paper profile with a synthetic file."""

import json

import nbformat
import pytest
import torch
from fakes import family_manifest, model_c, small_emb

from semantic_bottleneck.book import runner
from semantic_bottleneck.core import analysis, conditioning
from semantic_bottleneck.core.conventions import convention


def test_statistics_row_matches_the_definitions_on_identical_classes():
    emb = small_emb()
    emb["y_embedder.embedding_table.weight"] = torch.zeros_like(
        emb["y_embedder.embedding_table.weight"]
    )
    row = analysis.statistics_row(model_c(emb))
    c = analysis.ModelC("x", "x", "sit", convention("repa"), emb, "").c()[0]
    v = c.abs().double()
    assert row["cosine"] == pytest.approx(1.0) and row["cosine_min"] == pytest.approx(1.0)
    assert row["pr"] == pytest.approx(float(v.sum() ** 2 / (v**2).sum()), rel=1e-6)
    assert row["npr"] == pytest.approx(row["pr"] / 16, rel=1e-9)
    assert row["d"] == 16 and row["initial_t"] == 1.0


def test_model_c_uses_the_initial_t_of_its_convention():
    emb = small_emb()
    for name in ("ddpm", "sit", "repa"):
        m = model_c(emb, time=name)
        expected = conditioning.class_conditions(emb, convention(name).initial_t)
        assert torch.equal(m.c(), expected) and m.c().shape == (5, 16)


def test_label_vs_sum_row_reports_both_vectors():
    row = analysis.label_vs_sum_row(model_c(small_emb()))
    assert set(row) == {"model", "cosine_yt", "npr_yt", "cosine_y", "npr_y"}
    assert 0 < row["npr_y"] <= 1


def test_load_models_rejects_bad_input():
    with pytest.raises(ValueError, match="profile must be one of"):
        analysis.load_models("imagenet", ["x"])
    with pytest.raises(ValueError, match="at least one model"):
        analysis.load_models("testbed", [])
    with pytest.raises(ValueError, match="unknown testbed model"):
        analysis.load_models("testbed", ["nope"])


def test_paper_model_is_missing_with_its_fetch_command(tmp_path, monkeypatch):
    monkeypatch.setenv("SEMANTIC_BOTTLENECK_WEIGHTS", str(tmp_path))
    found, missing = analysis.load_models("paper", ["dit-xl-2"])
    assert found == [] and missing[0].label == "DiT"
    notice = analysis.missing_notice(missing)
    assert "semantic-bottleneck fetch dit-xl-2" in notice and notice.startswith("```{note}")


def write_embedder_checkpoint(folder, family="dit", seed=0):
    """A checkpoint holding the five XL embedder tensors of `family` (all c needs), seeded."""
    shapes = family_manifest(family)["keys"]
    g = torch.Generator().manual_seed(seed)
    state = {k: torch.randn(shapes[k], generator=g) * 0.02 for k in conditioning.EMBEDDER_KEYS}
    folder.mkdir(parents=True)
    torch.save(state, folder / "DiT-XL-2-256x256.pt")
    return state


def test_paper_profile_page_shows_present_models_and_a_notice_for_the_rest(tmp_path, monkeypatch):
    weights = tmp_path / "weights"
    state = write_embedder_checkpoint(weights / "dit-xl-2")
    monkeypatch.setenv("SEMANTIC_BOTTLENECK_WEIGHTS", str(weights))
    out = runner.run_notebook(
        "tab01-statistics",
        profile="paper",
        out_dir=tmp_path / "out",
        params={"models": ["dit-xl-2", "sit-xl-2"]},
    )
    nb = nbformat.read(out, as_version=4)
    text = json.dumps([c.get("outputs", []) for c in nb.cells])
    assert "semantic-bottleneck fetch sit-xl-2" in text  # the notice for the missing model
    c = conditioning.class_conditions(state, 999)
    expected = analysis.statistics_row(
        analysis.ModelC("d", "DiT", "dit", convention("ddpm"), state, ""), c
    )
    assert f">{100 * expected['npr']:.2f}<" in text  # the measured nPR of the file's c, in %
    # nPR grouped over paper | this run | diff (display.table)
    assert 'colspan=\\"3\\">nPR (%)' in text and ">diff<" in text
