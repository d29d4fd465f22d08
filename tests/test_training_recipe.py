"""The paper profile is REPA's SiT-B/2 recipe, field by field; the CLI maps flags to fields."""

import json
from dataclasses import fields

import pytest
import torch

from semantic_bottleneck import cli
from semantic_bottleneck.evaluation.classifier import ClassifierConfig
from semantic_bottleneck.training import repa, runs
from semantic_bottleneck.training.cli import config_from_args
from semantic_bottleneck.training.recipes import REPA_B2_RECIPE, repa_config
from semantic_bottleneck.training.trainer import TrainConfig
from semantic_bottleneck.zoo import build_model

# REPA's train.py for SiT-B/2 (sihyun-yu/REPA README, argparse defaults, issue #5), as stated
# in the training issue: each entry is a field of TrainConfig and its required value.
REPA_B2 = {
    "family": "repa",  # REPA's SiT: projectors, forward -> (x, zs)
    "objective": "repa",  # --path-type linear, --prediction v, t = 1 noise
    "timestep_set": 0,  # --weighting uniform: t ~ U[0, 1]
    "class_dropout_prob": 0.1,  # LabelEmbedder(class_dropout_prob=0.1) inside the model
    "lr": 1e-4,  # --learning-rate, constant (no scheduler)
    "weight_decay": 0.0,  # --adam-weight-decay
    "adam_beta1": 0.9,
    "adam_beta2": 0.999,
    "adam_eps": 1e-8,
    "grad_clip": 1.0,  # --max-grad-norm
    "ema_decay": 0.9999,  # update_ema default
    "batch_size": 256,  # --batch-size, global
    "hidden_size": 768,  # SiT-B/2
    "depth": 12,
    "num_heads": 12,
    "patch_size": 2,
    "dataset": "imagenet",  # 256 px -> 32 x 32 x 4 SD-VAE latents
    "repa_encoder": "dinov2-vit-b",  # --enc-type dinov2-vit-b
    "z_dim": 768,
    "encoder_depth": 4,  # B/2 (issue #5)
    "projector_dim": 2048,
    "proj_coeff": 0.5,  # --proj-coeff
    "steps": 200_000,  # the paper's run length
    "seed": 0,
}


def test_paper_recipe_matches_repa_b2_field_by_field():
    for name, value in REPA_B2.items():
        assert getattr(REPA_B2_RECIPE, name) == value, name
    assert REPA_B2_RECIPE.mixed_precision in ("fp16", "bf16")  # REPA: fp16 autocast
    assert REPA_B2_RECIPE.time_convention.initial_t == 1.0  # t = 1 is noise


def test_paper_recipe_builds_sit_b2_with_the_projector_after_block_4():
    cfg = REPA_B2_RECIPE.model_config()
    assert cfg["path_type"] == "linear" and cfg["z_dims"] == [768]
    assert (cfg["input_size"], cfg["in_channels"], cfg["num_classes"]) == (32, 4, 1000)
    with torch.device("meta"):  # shapes only, no memory
        model = build_model("repa", **cfg)
    linears = [m for m in model.projectors[0] if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [
        (768, 2048),
        (2048, 2048),
        (2048, 768),
    ]
    assert model.encoder_depth == 4 and len(model.blocks) == 12
    assert model.y_embedder.dropout_prob == 0.1 and model.out_channels == 4
    assert model.x_embedder.num_patches == 256  # matches DINOv2's 16 x 16 tokens at 224 px


def test_testbed_recipe_is_the_same_code_path_at_cpu_scale():
    cfg = repa_config("testbed")
    assert cfg.family == "repa" and cfg.objective == "repa" and cfg.dataset == "digits"
    assert cfg.repa_encoder == "digits-classifier" and cfg.z_dim == ClassifierConfig().dim
    assert cfg.encoder_depth == repa.default_encoder_depth(cfg.depth)
    assert cfg.class_dropout_prob == 0.1 and cfg.grad_clip == 1.0 and cfg.weight_decay == 0.0
    assert repa_config("testbed", steps=10, timestep_set=50).timestep_set == 50
    with pytest.raises(ValueError, match="profile"):
        repa_config("imagenet")


def test_every_config_field_has_a_kebab_case_flag():
    parser = cli.build_parser()
    args = parser.parse_args(
        [
            "train",
            "repa",
            "--profile",
            "paper",
            "--timestep-set",
            "100",
            "--steps",
            "5",
            "--mixed-precision",
            "bf16",
            "--data-dir",
            "x",
        ]
    )
    config = config_from_args(args)
    assert (config.timestep_set, config.steps, config.mixed_precision) == (100, 5, "bf16")
    assert config.lr == REPA_B2_RECIPE.lr  # omitted flags keep the profile's value
    help_text = parser._subparsers._group_actions[0].choices["train"].format_help()
    assert "prepare-imagenet" in help_text
    repa_parser = parser.parse_args(["train", "repa"])
    for f in fields(TrainConfig):
        assert hasattr(repa_parser, f.name), f.name


def _tiny_encoder():
    from semantic_bottleneck.evaluation.classifier import DigitsClassifier

    torch.manual_seed(0)
    return repa.DigitsTokens(DigitsClassifier(width=8, dim=16).eval(), 16).requires_grad_(False)


def test_cli_trains_writes_curves_and_records_the_run(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(repa, "digits_encoder", _tiny_encoder)
    out = tmp_path / "run"
    argv = [
        "train",
        "repa",
        "--profile",
        "testbed",
        "--steps",
        "4",
        "--log-every",
        "2",
        "--hidden-size",
        "32",
        "--depth",
        "2",
        "--num-heads",
        "2",
        "--batch-size",
        "8",
        "--z-dim",
        "16",
        "--projector-dim",
        "32",
        "--out",
        str(out),
        "--no-progress",
    ]
    assert cli.main(argv) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["classes_npr"]
    assert summary["end_step"] == 4 and 0 < summary["peak"] <= 1
    assert (out / "curves.png").stat().st_size > 10_000
    assert (out / "checkpoint.pt").exists()
    monkeypatch.setattr(runs, "runs_dir", lambda root=None: tmp_path / "data" / "runs")
    assert cli.main(["train", "record", str(out), "--name", "tiny-run"]) == 0
    recorded = runs.recorded_runs()
    assert [r["name"] for r in recorded] == ["tiny-run"]
    assert recorded[0]["steps"] == 4 and len(recorded[0]["records"]) == 3
    assert "8x8 digits" in recorded[0]["scale"] and recorded[0]["command"]
    assert recorded[0]["commit"] and "device" in recorded[0]


def test_record_refuses_bad_names_and_non_run_folders(tmp_path):
    with pytest.raises(ValueError, match="name"):
        runs.record_run(tmp_path, "a/b")
    with pytest.raises(FileNotFoundError, match="not a training run"):
        runs.record_run(tmp_path, "ok")


def test_no_recorded_runs_is_an_empty_list(tmp_path):
    assert runs.recorded_runs(tmp_path) == []
