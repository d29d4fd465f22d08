import json

import pytest
import torch
from safetensors.torch import load_file

from semantic_bottleneck.core import metrics
from semantic_bottleneck.training import testbed
from semantic_bottleneck.training.monitor import (
    c_statistics,
    class_conditions,
    read_log,
    time_label_statistics,
)
from semantic_bottleneck.training.trainer import TrainConfig, train
from semantic_bottleneck.zoo import build_model

TINY = dict(hidden_size=32, depth=1, num_heads=2, batch_size=8, log_every=2)


@pytest.mark.parametrize("family,objective", [("dit", "ddpm"), ("sit", "repa")])
def test_training_writes_weights_and_a_monitor_log(tmp_path, family, objective):
    config = TrainConfig(family=family, objective=objective, steps=4, **TINY)
    train(config, tmp_path, progress=False)
    records = read_log(tmp_path / "log.jsonl")
    assert [r["step"] for r in records] == [0, 2, 4]
    for r in records[1:]:
        for key in (
            "classes_npr_mean",
            "classes_npr_of_mean",
            "batch_npr_mean",
            "batch_npr_of_mean",
        ):
            assert 0 < r[key] <= 1
        assert -1 <= r["classes_cos_mean"] <= 1 and r["loss"] > 0
    assert "batch_npr_mean" not in records[0]  # no batch before the first step
    ema, online = (
        load_file(tmp_path / "model.safetensors"),
        load_file(tmp_path / "online.safetensors"),
    )
    assert ema.keys() == online.keys()
    assert json.loads((tmp_path / "config.json").read_text())["config"]["objective"] == objective


def test_initial_npr_is_that_of_a_random_gaussian_vector(tmp_path):
    train(
        TrainConfig(steps=1, hidden_size=256, depth=1, num_heads=4, batch_size=8),
        tmp_path,
        progress=False,
    )
    assert abs(read_log(tmp_path / "log.jsonl")[0]["classes_npr_mean"] - 2 / torch.pi) < 0.05


def test_killed_run_resumes_exactly(tmp_path):
    config = TrainConfig(steps=6, **TINY)
    train(config, tmp_path / "full", progress=False)
    train(config, tmp_path / "cut", progress=False, checkpoint_every=2, stop_after=3)
    assert not (tmp_path / "cut" / "model.safetensors").exists()
    train(config, tmp_path / "cut", progress=False, checkpoint_every=2)
    full, cut = (
        load_file(tmp_path / "full/model.safetensors"),
        load_file(tmp_path / "cut/model.safetensors"),
    )
    assert all(torch.equal(full[k], cut[k]) for k in full)
    assert read_log(tmp_path / "full/log.jsonl") == read_log(tmp_path / "cut/log.jsonl")


def test_checkpoint_loads_with_weights_only(tmp_path):
    train(TrainConfig(steps=2, **TINY), tmp_path, progress=False, checkpoint_every=2)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["steps"] == 2 and state["args"]["steps"] == 2  # REPA's checkpoint keys


@pytest.mark.parametrize(
    "bad,match",
    [(dict(objective="x"), "objective"), (dict(steps=0), "steps"), (dict(lr=0.0), "lr")],
)
def test_bad_config_is_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**bad)


def test_new_fields_default_to_off_so_testbed_models_build_as_before():
    config = TrainConfig()
    assert (config.dataset, config.repa_encoder, config.timestep_set) == ("digits", "", 0)
    assert config.mixed_precision == "no" and config.proj_coeff == 0.5
    assert (config.adam_beta1, config.adam_beta2, config.adam_eps) == (0.9, 0.999, 1e-8)
    assert config.model_config() == dict(
        input_size=8,
        in_channels=1,
        num_classes=10,
        patch_size=2,
        hidden_size=128,
        depth=4,
        num_heads=4,
        class_dropout_prob=0.1,
        learn_sigma=True,
    )


def test_monitor_logs_magnitudes_and_the_time_label_split():
    config = testbed.testbed_config("testbed-flow", hidden_size=32)
    torch.manual_seed(0)
    model = build_model(config.family, **config.model_config()).eval()
    c = class_conditions(model, config.time_convention, torch.arange(10))
    stats = c_statistics(c, "classes")
    assert stats["classes_max_abs"] == pytest.approx(float(c.abs().max()))
    assert stats["classes_s_tail_0_01"] == pytest.approx(
        float(metrics.sparsity_ratio(c, 0.01, "tail").mean())
    )
    top = c.abs().sort(dim=1, descending=True).values
    assert stats["classes_top10_share"] == pytest.approx(
        float((top[:, :10].sum(1) / top.sum(1)).mean())
    )
    split = time_label_statistics(model, config.time_convention, torch.arange(10), "ema")
    t_vec = model.t_embedder(config.time_convention.initial(1))
    y_vec = model.y_embedder(torch.arange(10), False)
    # c = T + Y: every class shares T, so the classes differ by Y alone
    assert torch.allclose(c, t_vec + y_vec, atol=1e-6)
    assert split["ema_t_norm"] == pytest.approx(float(t_vec.norm()), rel=1e-6)
    spread = (y_vec - y_vec.mean(0)).pow(2).sum(1).mean().sqrt()
    assert split["ema_y_spread"] == pytest.approx(float(spread), rel=1e-6)
