"""One source per fact: sampler settings, numerics, families, profiles, testbed models, units,
and the ledger's inputs are each defined once and read from there by every path."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from semantic_bottleneck.book import display, runner
from semantic_bottleneck.book.params import resolve_parameters
from semantic_bottleneck.core import analysis, conventions
from semantic_bottleneck.generation import cli as G_cli
from semantic_bottleneck.generation import run as G_run
from semantic_bottleneck.generation.rows import RowSampler
from semantic_bottleneck.sampling import initial_t
from semantic_bottleneck.sweeps import run as sweep
from semantic_bottleneck.training import curves, recipes, testbed
from semantic_bottleneck.verdicts import ledger
from semantic_bottleneck.zoo import FAMILIES, fetch, registry


def _dry_run(capsys, *argv: str) -> str:
    assert G_cli.main([*argv, "--out", "unused.npz", "--dry-run"]) == 0
    return capsys.readouterr().out


def test_generate_samples_each_lightningdit_checkpoint_with_its_own_settings(capsys):
    ep800 = _dry_run(capsys, "lightningdit-xl-1")
    ep64 = _dry_run(capsys, "lightningdit-xl-1-64ep")
    assert "scale=6.7" in ep800 and "interval=(0.125, 1.0)" in ep800
    assert "scale=10.0" in ep64 and "interval=(0.1, 1.0)" in ep64
    assert "scale=4.0" in _dry_run(capsys, "lightningdit-xl-1-64ep", "--cfg-scale", "4")


def test_testbed_models_sample_with_their_own_settings(capsys):
    # DiT's 3-channel guidance on the one-channel digits would be an error: one channel here
    assert "guided_channels=1" in _dry_run(capsys, "testbed-ddpm", "--per-class", "1")
    assert "REPASDEConfig" in _dry_run(capsys, "testbed-repa", "--per-class", "1")
    assert "null_class=10" in _dry_run(capsys, "testbed-flow", "--per-class", "1")


@pytest.fixture
def fake_checkpoint(tmp_path, monkeypatch):
    """Every checkpoint 'present' as a small file, so a sweep can be planned without weights."""
    file = tmp_path / "ckpt.pt"
    file.write_bytes(b"0")
    monkeypatch.setattr(fetch, "locate", lambda entry, cache_dir=None: file)
    monkeypatch.setattr(fetch, "recorded_sha256", lambda path: "0" * 64)


def test_paper_sweep_samples_with_the_checkpoints_settings_in_float32(fake_checkpoint):
    rows = sweep.paper_rows("table3", "LightningDiT")
    settings = sweep.SweepSettings(per_class=1, num_steps=None)
    plan = sweep.paper_sweep_plan("lightningdit-xl-1-64ep", rows, settings)
    assert plan["sampler"].guidance.scale == 10.0
    assert plan["sampler"].guidance.interval == (0.10, 1.0)
    # the official numerics by default, recorded in every row's key; bf16 only when asked
    assert all(key["bf16"] is False for key in plan["keys"])
    bf16 = sweep.paper_sweep_plan("lightningdit-xl-1-64ep", rows, settings.__class__(bf16=True))
    assert all(key["bf16"] is True for key in bf16["keys"])
    sampler = RowSampler(plan["source"], plan["sampler"], [0], [0], None, "cuda", settings.bf16)
    assert sampler.bf16 is False
    assert sweep.numerics(False).startswith("float32")


def test_one_definition_of_families_profiles_and_testbed_models():
    assert registry.FAMILIES is FAMILIES and G_run.FAMILIES is FAMILIES
    assert not hasattr(analysis, "PROFILES") and not hasattr(recipes, "PROFILES")
    with pytest.raises(ValueError, match="profile must be one of"):
        conventions.check_profile("imagenet")
    assert set(testbed.TESTBED_MODELS) == {
        "testbed-ddpm",
        "testbed-flow",
        "testbed-repa",
        "testbed-continuous",
    }
    assert testbed.testbed_config("testbed-repa") == recipes.testbed_recipe()
    assert curves.testbed_run("testbed-repa", steps=7) == recipes.testbed_recipe().__class__(
        **{**recipes.testbed_recipe().__dict__, "steps": 7}
    )
    source = G_cli.resolve_model("testbed-repa")
    assert (source.family, source.num_classes) == ("repa", 10)


def test_initial_t_is_one_value_per_testbed_model():
    for name in testbed.TESTBED_MODELS:
        config = testbed.testbed_config(name)
        sampler = testbed.testbed_source(name).sampler_config()
        assert initial_t(sampler) == config.time_convention.initial_t, name


def test_values_carry_snake_case_keys_and_one_unit(tiny_model_c):
    stats = analysis.statistics_row(tiny_model_c)
    assert 0 < stats["npr"] <= 1  # a fraction of d, everywhere
    mags = analysis.magnitude_summary(tiny_model_c)
    var = analysis.variance_row(tiny_model_c, k=2)
    for key in (*mags, *var, *stats):
        assert key == key.lower() and " " not in key and "|" not in key, key
    shown = display.readable(analysis.statistics_table([tiny_model_c]))
    assert shown["nPR (%)"].iloc[0] == pytest.approx(100 * stats["npr"])


@pytest.fixture
def tiny_model_c():
    g = torch.Generator().manual_seed(0)
    d, n = 16, 5
    emb = {
        "t_embedder.mlp.0.weight": torch.randn(d, 256, generator=g),
        "t_embedder.mlp.0.bias": torch.randn(d, generator=g),
        "t_embedder.mlp.2.weight": torch.randn(d, d, generator=g),
        "t_embedder.mlp.2.bias": torch.randn(d, generator=g),
        "y_embedder.embedding_table.weight": torch.randn(n + 1, d, generator=g),
    }
    return analysis.ModelC("tiny", "tiny", "repa", conventions.convention("repa"), emb, "memory")


def test_the_ledger_reads_what_the_pages_show(monkeypatch):
    seen = {}

    def load_models(profile, names, steps=None):
        seen["models"] = (profile, list(names))
        return [], []

    monkeypatch.setattr(analysis, "load_models", load_models)
    monkeypatch.setattr(ledger, "headline_logs", lambda profile, steps, tier: {"fig12-run": []})
    table = [{"row": r.label, "fid": 10.0 + i} for i, r in enumerate(sweep.paper_rows("table2"))]

    def cached_paper_sweep(name, rows, settings):
        seen["sweep"] = (name, settings)
        return {"table": table}

    monkeypatch.setattr(sweep, "cached_paper_sweep", cached_paper_sweep)
    inputs = ledger.ledger_inputs("paper", ["repa-sit-xl-2"])
    # the Table 2 page's model and parameters in the paper profile
    name, settings = seen["sweep"]
    assert name == "repa-sit-xl-2" and settings.per_class == 5 and settings.num_steps is None
    assert settings.last_k == 50
    assert set(inputs.supplied) == {
        "pruning-keeps-quality",
        "head-removal-destroys-quality",
        "late-step-pruning-best-fid",
        "continuous-pruning-keeps-quality",  # from Table 7's sweep: not cached here
    }
    assert inputs.supplied["continuous-pruning-keeps-quality"] is None
    assert inputs.logs == {"fig12-run": []}
    monkeypatch.setattr(sweep, "cached_paper_sweep", lambda *a: None)
    assert ledger.ledger_inputs("paper", ["repa-sit-xl-2"]).notes  # says why it is not tested


def test_the_training_claim_is_judged_on_fig12s_headline_run(monkeypatch):
    monkeypatch.setattr(curves, "run_log", lambda config: [{"step": config.steps}])
    logs = curves.headline_logs("testbed", train_steps=3)
    assert logs == {"testbed-repa": [{"step": 3}]}
    long = curves.headline_logs("testbed", tier="long")
    assert long == {"testbed-repa-long": [{"step": 16000}]}


@pytest.mark.parametrize("profile", ["testbed", "paper"])
@pytest.mark.parametrize("layers", [None, "tiny"])
@pytest.mark.parametrize("reader", ["claims-ledger", "index", "tab02-training-seeds"])
def test_the_ledgers_table2_sweep_is_the_table2_pages(profile, layers, reader):
    overrides = None
    if layers == "tiny":
        overrides = runner.load_overrides(Path(__file__).parent / "tiny.yaml")
    page = resolve_parameters("tab02-pruning-repa", profile, overrides=overrides)
    own = resolve_parameters(reader, profile, overrides=overrides)["table2"] or {}
    seen = {**resolve_parameters("tab02-pruning-repa", profile), **own}
    for key in ("model", "per_class", "base_seed", "num_steps", "last_k"):
        assert seen[key] == page[key], (profile, layers, key)
