"""The continuous-condition testbed model: its embedder, its condition set, the class-model view
the samplers and the c analysis use, PSNR/SSIM, its pruning sweep and its ledger claim."""

import dataclasses

import numpy as np
import pytest
import torch
from fakes import model_c, small_emb

from semantic_bottleneck.core import conditioning
from semantic_bottleneck.evaluation.reconstruction import mean_interval, pair_scores
from semantic_bottleneck.sections import continuous
from semantic_bottleneck.sweeps.continuous import TABLE7_ROWS, TARGETS, continuous_sweep
from semantic_bottleneck.sweeps.spec import SweepSettings
from semantic_bottleneck.training import testbed
from semantic_bottleneck.training.config import TrainConfig
from semantic_bottleneck.training.data import condition_set, digits, digits_thumbnail, thumbnail
from semantic_bottleneck.verdicts import ledger
from semantic_bottleneck.zoo import build_model
from semantic_bottleneck.zoo.dit import ConditionSetModel, VectorEmbedder


def tiny_continuous(seed=0):
    torch.manual_seed(seed)
    config = TrainConfig(dataset="digits-thumbnail", hidden_size=32, num_heads=2, depth=1)
    model = build_model(config.family, **config.model_config()).eval()
    for p in model.parameters():  # adaLN-Zero starts at zero: make every path count
        p.data.normal_(0, 0.1)
    return model


def test_the_thumbnail_is_the_mean_of_each_2x2_block():
    x = torch.arange(64.0).reshape(1, 1, 8, 8)
    v = thumbnail(x)
    assert v.shape == (1, 16)
    assert v[0, 0] == pytest.approx((0 + 1 + 8 + 9) / 4)
    assert v[0, 15] == pytest.approx((54 + 55 + 62 + 63) / 4)


def test_training_digits_and_the_condition_set_come_from_disjoint_splits():
    x, v = digits_thumbnail()
    train_x, _ = digits("train")
    assert torch.equal(x, train_x) and torch.equal(v, thumbnail(train_x))
    conds, targets, labels = condition_set()
    assert conds.shape == (100, 16) and targets.shape == (100, 1, 8, 8)
    assert torch.equal(labels, torch.arange(10).repeat_interleave(10))
    assert torch.equal(conds, thumbnail(targets))
    test_x, _ = digits("test")
    flat_test = {tuple(r.tolist()) for r in test_x.flatten(1)}
    assert all(tuple(r.tolist()) in flat_test for r in targets.flatten(1))
    with pytest.raises(ValueError, match="per_class"):
        condition_set(per_class=1000)


def test_a_dropped_condition_adds_nothing():
    emb = VectorEmbedder(16, 8, dropout_prob=0.5)
    v = torch.randn(400, 16)
    assert torch.equal(emb(v, train=False), emb.proj(v))
    torch.manual_seed(0)
    out = emb(v, train=True)
    dropped = (out == 0).all(1)
    assert 120 < int(dropped.sum()) < 280  # about half
    assert torch.equal(out[~dropped], emb.proj(v)[~dropped])
    forced = emb(v[:3], train=False, force_drop_ids=torch.tensor([1, 0, 1]))
    assert torch.allclose(forced[1], emb.proj(v[1])) and (forced[[0, 2]] == 0).all()


def test_the_condition_set_model_is_a_class_model_over_its_conditions():
    model = tiny_continuous()
    conds = condition_set()[0][:5]
    wrapped = ConditionSetModel(model, conds)
    assert wrapped.num_classes == 5
    t, y = torch.full((7,), 999.0), torch.tensor([0, 4, 5, 2, 5, 1, 3])  # 5: the null label
    c, T = wrapped.condition(t, y), model.t_embedder(t)
    assert torch.equal(c[[2, 4]], T[[2, 4]])  # null: T alone, exactly
    assert torch.allclose(c[0], T[0] + model.y_embedder.proj(conds[0]), atol=1e-6)
    seen = {}

    def record(c_in):
        seen["c"] = c_in
        return c_in

    x = torch.randn(7, 1, 8, 8)
    out = wrapped(x, t, y, c_fn=record)
    assert torch.allclose(seen["c"], c, atol=1e-6)  # the forward sees the same c
    direct = model(x[:2], t[:2], conds[[0, 4]])
    assert torch.allclose(out[:2], direct, atol=1e-5)
    emb = conditioning.embedders_from_model(wrapped)
    table = emb["y_embedder.embedding_table.weight"]
    assert table.shape == (6, 32) and (table[5] == 0).all()
    assert torch.allclose(conditioning.class_conditions(emb, 999.0), c[[0, 5, 3, 6, 1]], atol=1e-6)
    with pytest.raises(ValueError, match="labels"):
        wrapped.condition(t[:1], torch.tensor([6]))
    with pytest.raises(ValueError, match="shape"):
        ConditionSetModel(model, torch.zeros(3, 15))
    class_model = build_model("dit", input_size=8, in_channels=1, hidden_size=32, depth=1,
                              num_heads=2, num_classes=10)  # fmt: skip
    with pytest.raises(ValueError, match="continuous"):
        ConditionSetModel(class_model, conds)


def test_only_the_diffusion_transformer_families_take_a_continuous_condition():
    with pytest.raises(ValueError, match="continuous"):
        TrainConfig(family="repa", objective="repa", dataset="digits-thumbnail")
    assert TrainConfig(dataset="digits-thumbnail").model_config()["cond_dim"] == 16


def test_the_shipped_continuous_model_loads_as_a_model_over_100_conditions():
    config = testbed.testbed_config("testbed-continuous")
    model, log, _ = testbed.load_trained(config)
    assert isinstance(model, ConditionSetModel) and model.num_classes == 100
    assert testbed.testbed_source("testbed-continuous").num_classes == 100
    c = conditioning.class_conditions(conditioning.embedders_from_model(model), 999.0)
    cos = torch.nn.functional.cosine_similarity(c[:, None], c[None], dim=-1)
    mean = float(cos[~torch.eye(100, dtype=torch.bool)].mean())
    assert mean == pytest.approx(log[-1]["ema_classes_cos_mean"], abs=1e-5)  # the monitor's


def test_psnr_and_ssim_against_their_definitions():
    rng = np.random.default_rng(0)
    target = rng.integers(0, 256, size=(4, 8, 8, 3), dtype=np.uint8)
    target[..., 1] = target[..., 2] = target[..., 0]  # gray RGB
    same = pair_scores(target, target)
    assert np.allclose(same["ssim"], 1.0) and np.isinf(same["psnr"]).all()
    noisy = np.clip(target.astype(int) + rng.integers(-20, 21, size=target.shape[:3])[..., None],
                    0, 255).astype(np.uint8)  # fmt: skip
    scores = pair_scores(noisy, target)
    mse = ((noisy[..., 0] / 255.0 - target[..., 0] / 255.0) ** 2).mean(axis=(1, 2))
    assert np.allclose(scores["psnr"], 10 * np.log10(1 / mse))
    assert (scores["ssim"] < 1).all() and (scores["ssim"] > 0.5).all()
    with pytest.raises(ValueError, match="uint8"):
        pair_scores(target.astype(np.float32), target)
    with pytest.raises(ValueError, match="kernel_size"):
        pair_scores(target, target, kernel_size=9)
    mean, half = mean_interval([1.0, 2.0, 3.0, 4.0])
    assert mean == 2.5 and half == pytest.approx(1.959964 * np.std([1, 2, 3, 4], ddof=1) / 2)


def test_the_continuous_sweep_pairs_every_row_with_the_baseline(one_thread):
    settings = SweepSettings(per_class=1, num_steps=3, last_k=1, grid_per_class=1)
    result = continuous_sweep("testbed-continuous", TABLE7_ROWS[:2], settings)
    base, pruned = result["table"]
    assert base["psnr_change"] == 0 and base["removed"] == 0
    assert pruned["target count"] == round(0.4 * 128) and pruned["removed"] > 0
    assert pruned["psnr_change"] == pytest.approx(pruned["psnr"] - base["psnr"], abs=1e-9)
    assert list(result["grids"]) == [TARGETS, "baseline", "tail 0.1 t_i"]
    assert result["grids"][TARGETS].shape == (10, 1, 8, 8, 3)
    with pytest.raises(ValueError, match="class-conditional"):
        continuous_sweep("testbed-ddpm", TABLE7_ROWS[:1], settings)


def test_the_continuous_claim_is_judged_on_continuous_models_alone():
    labels, vectors = model_c(small_emb(), "labels"), model_c(small_emb(seed=1), "vectors")
    vectors = dataclasses.replace(vectors, continuous=True)
    measured = ledger.measure([labels, vectors])
    assert measured["cosine-continuous"].detail.startswith("vectors")
    assert "vectors" not in measured["cosine-imagenet"].detail
    assert ledger.measure([labels])["cosine-continuous"] is None


def test_the_continuous_pages_quote_nothing_measured_in_the_paper_profile(tmp_path, monkeypatch):
    monkeypatch.setenv("SEMANTIC_BOTTLENECK_WEIGHTS", str(tmp_path))  # an empty weights cache
    page = continuous.tab07_page("paper", "testbed-continuous-long")
    assert set(continuous.TABLE7_MEASURED) <= set(page.values)
    assert all(page.values[k][0] is None for k in continuous.TABLE7_MEASURED)
    assert page.values["paper_psnr_change"][0] == pytest.approx(17.328 - 17.336)
    shown = continuous.fig04_page("paper", ["testbed-continuous"])
    assert not shown.found and [m.name for m in shown.missing] == ["xmdpt-l-2"]
    shown = continuous.tab05_page("paper", ["testbed-continuous"])
    assert [m.name for m in shown.missing] == continuous.TABLE5_SYSTEMS
    assert shown.missing[0].command == "semantic-bottleneck fetch xmdpt-l-2"


def test_the_paper_profile_table7_and_fig10_pages_name_their_absent_inputs(tmp_path, monkeypatch):
    monkeypatch.setenv("SEMANTIC_BOTTLENECK_WEIGHTS", str(tmp_path))  # an empty weights cache
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    for page in (continuous.tab07_page("paper", "unused"), continuous.fig10_page("paper", "x")):
        names = [m.name for m in page.missing]
        assert names == ["xmdpt-l-2", "xmdpt-vae", "conditions", "deepfashion",
                         "inception-fidelity", "lpips"]  # fmt: skip
        assert any("xmdpt-sweep" in note for note in page.notes)
        assert not page.figures
