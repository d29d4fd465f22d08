"""REPA training runs: exact resume, checkpoints the zoo loads, precision paths, processes."""

import json
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file

from semantic_bottleneck.evaluation.classifier import DigitsClassifier
from semantic_bottleneck.training import repa
from semantic_bottleneck.training.monitor import read_log
from semantic_bottleneck.training.trainer import TrainConfig, train
from semantic_bottleneck.zoo import build_model
from semantic_bottleneck.zoo.checkpoint import load_into

TINY_REPA = dict(
    family="repa",
    objective="repa",
    hidden_size=32,
    depth=2,
    num_heads=2,
    batch_size=8,
    log_every=2,
    repa_encoder="digits-classifier",
    z_dim=16,
    projector_dim=32,
    encoder_depth=1,
)


def tiny_digits_encoder():
    # a stand-in for the trained classifier: same class and token grid, random frozen weights
    torch.manual_seed(123)
    return repa.DigitsTokens(DigitsClassifier(width=8, dim=16).eval(), 16).requires_grad_(False)


@pytest.fixture(autouse=True)
def digits_encoder_double(monkeypatch):
    monkeypatch.setattr(repa, "digits_encoder", tiny_digits_encoder)


def test_repa_run_logs_projection_loss_and_the_monitor(tmp_path):
    config = TrainConfig(steps=4, **TINY_REPA)
    train(config, tmp_path, progress=False)
    records = read_log(tmp_path / "log.jsonl")
    assert [r["step"] for r in records] == [0, 2, 4]
    for r in records[1:]:
        assert -1 <= r["proj_loss"] <= 1 and r["loss"] > 0 and r["grad_norm"] > 0
        for key in (
            "classes_npr_mean",
            "classes_npr_of_mean",
            "batch_npr_mean",
            "batch_npr_of_mean",
        ):
            assert 0 < r[key] <= 1
        assert -1 <= r["classes_cos_mean"] <= 1
    provenance = json.loads((tmp_path / "run.json").read_text())
    assert provenance["config"]["repa_encoder"] == "digits-classifier"
    assert provenance["steps_done"] == 4 and provenance["processes"] == 1


def test_killed_repa_run_resumes_exactly(tmp_path):
    config = TrainConfig(steps=6, **TINY_REPA)
    train(config, tmp_path / "full", progress=False)
    train(config, tmp_path / "cut", progress=False, checkpoint_every=2, stop_after=3)
    assert not (tmp_path / "cut" / "model.safetensors").exists()
    # the killed run's log is readable as it stands
    assert [r["step"] for r in read_log(tmp_path / "cut/log.jsonl")] == [0, 2]
    train(config, tmp_path / "cut", progress=False, checkpoint_every=2)
    for name in ("model.safetensors", "online.safetensors"):
        full, cut = load_file(tmp_path / "full" / name), load_file(tmp_path / "cut" / name)
        assert all(torch.equal(full[k], cut[k]) for k in full), name
    assert read_log(tmp_path / "full/log.jsonl") == read_log(tmp_path / "cut/log.jsonl")
    assert json.loads((tmp_path / "cut/run.json").read_text())["resumed_at"] == [2]


def test_resume_drops_log_records_written_after_the_checkpoint(tmp_path):
    config = TrainConfig(steps=6, **TINY_REPA)
    train(config, tmp_path, progress=False, checkpoint_every=4, stop_after=5)
    with open(tmp_path / "log.jsonl", "a") as f:
        f.write('{"step": 6, "loss": 1.0')  # a torn line, as from a kill mid-write
    train(config, tmp_path, progress=False, checkpoint_every=4)
    assert [r["step"] for r in read_log(tmp_path / "log.jsonl")] == [0, 2, 4, 6]


def test_checkpoint_holds_plain_types_and_its_ema_loads_into_the_zoo_model(tmp_path):
    config = TrainConfig(steps=2, **TINY_REPA)
    train(config, tmp_path, progress=False, checkpoint_every=2)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert set(state) == {"model", "ema", "opt", "scaler", "args", "steps", "rng"}
    assert state["steps"] == 2 and state["args"] == json.loads(json.dumps(state["args"]))
    model = build_model("repa", **TrainConfig.from_dict(state["args"]).model_config())
    load_into(model, tmp_path / "checkpoint.pt")  # strict; picks 'ema' first
    assert all(torch.equal(v, state["ema"][k]) for k, v in model.state_dict().items())
    assert model.projectors[0][0].weight.shape == (32, 32)  # hidden -> projector_dim


def test_resume_refuses_a_checkpoint_of_another_config_but_may_extend_steps(tmp_path):
    train(TrainConfig(steps=2, **TINY_REPA), tmp_path, progress=False, checkpoint_every=2)
    with pytest.raises(ValueError, match="proj_coeff"):
        train(TrainConfig(steps=2, proj_coeff=0.1, **TINY_REPA), tmp_path, progress=False)
    train(TrainConfig(steps=4, **TINY_REPA), tmp_path, progress=False, checkpoint_every=2)
    assert read_log(tmp_path / "log.jsonl")[-1]["step"] == 4


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_autocast_paths_run_on_the_cpu(tmp_path, precision):
    config = TrainConfig(steps=2, mixed_precision=precision, **TINY_REPA)
    train(config, tmp_path, progress=False, checkpoint_every=2)
    rec = read_log(tmp_path / "log.jsonl")[-1]
    assert torch.isfinite(torch.tensor([rec["loss"], rec["proj_loss"]])).all()
    scaler = torch.load(tmp_path / "checkpoint.pt", weights_only=True)["scaler"]
    assert bool(scaler) == (precision == "fp16")  # a gradient scaler only for fp16
    ema = load_file(tmp_path / "model.safetensors")
    assert all(v.dtype == torch.float32 for v in ema.values())  # weights stay float32


def test_limited_timestep_training_runs(tmp_path):
    train(TrainConfig(steps=2, timestep_set=50, **TINY_REPA), tmp_path, progress=False)
    assert read_log(tmp_path / "log.jsonl")[-1]["step"] == 2


@pytest.mark.parametrize(
    "bad,match",
    [
        (dict(family="repa", objective="ddpm"), "objective 'repa'"),
        (
            dict(family="sit", objective="repa", repa_encoder="dinov2-vit-b", z_dim=768),
            "family='repa'",
        ),
        (dict(family="repa", objective="repa", repa_encoder="dinov2-vit-b"), "z_dim"),
        (dict(objective="ddpm", timestep_set=50), "timestep_set"),
        (dict(timestep_set=1), "timestep_set"),
        (dict(mixed_precision="fp8"), "mixed_precision"),
        (dict(dataset="cifar"), "dataset"),
        (dict(repa_encoder="clip"), "repa_encoder"),
    ],
)
def test_bad_repa_configs_are_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**bad)


def test_wrong_z_dim_for_the_encoder_is_refused_before_training(tmp_path):
    config = TrainConfig(steps=2, **{**TINY_REPA, "z_dim": 24})
    with pytest.raises(ValueError, match="z_dim=24"):
        train(config, tmp_path, progress=False)


# ----------------------------------------------------------------------------- two processes


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank: int, world: int, port: int, out: str, steps: int, stop_after) -> None:
    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    torch.set_num_threads(1)
    repa.digits_encoder = tiny_digits_encoder  # the spawned process needs the double too
    config = TrainConfig(steps=steps, **TINY_REPA)
    train(config, out, progress=False, checkpoint_every=2, stop_after=stop_after)


def _run_ranks(out, steps, stop_after=None):
    mp.spawn(_rank_main, args=(2, _free_port(), str(out), steps, stop_after), nprocs=2, join=True)


@pytest.mark.slow
def test_two_cpu_processes_train_resume_exactly_and_only_rank_0_writes(tmp_path):
    _run_ranks(tmp_path / "full", 4)
    _run_ranks(tmp_path / "cut", 4, stop_after=3)
    _run_ranks(tmp_path / "cut", 4)
    state = torch.load(tmp_path / "full/checkpoint.pt", weights_only=True)
    assert len(state["rng"]) == 2  # both processes' RNG states
    assert not torch.equal(state["rng"][0]["generator"], state["rng"][1]["generator"])
    full, cut = (
        load_file(tmp_path / "full/model.safetensors"),
        load_file(tmp_path / "cut/model.safetensors"),
    )
    assert all(torch.equal(full[k], cut[k]) for k in full)
    assert [r["step"] for r in read_log(tmp_path / "full/log.jsonl")] == [0, 2, 4]
    assert read_log(tmp_path / "full/log.jsonl") == read_log(tmp_path / "cut/log.jsonl")
    assert sorted(p.name for p in (tmp_path / "full").iterdir()) == [
        "checkpoint.pt",
        "config.json",
        "log.jsonl",
        "model.safetensors",
        "online.safetensors",
        "run.json",
    ]
