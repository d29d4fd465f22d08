"""The shipped testbed models (data/testbed): tiers, lookup by exact config, weights pinned by
hash, and each shipped log reproduced by retraining its first steps."""

import hashlib
import json
from dataclasses import asdict, replace
from pathlib import Path

import pytest
import torch
from fakes import assert_retrains_alike
from safetensors.torch import save_file

from semantic_bottleneck.training import testbed
from semantic_bottleneck.training.monitor import read_log
from semantic_bottleneck.training.trainer import TrainConfig

SHIPPED = Path(__file__).resolve().parents[1] / testbed.SHIPPED


def test_tier_names_map_to_their_configs():
    assert testbed.split_tier("testbed-ddpm") == ("testbed-ddpm", "ci")
    assert testbed.split_tier("testbed-repa-long") == ("testbed-repa", "long")
    long = testbed.testbed_config("testbed-flow-long", steps=None)  # None keeps the tier's value
    assert (long.steps, long.lr, long.log_every) == (16000, 3e-3, 100)
    assert testbed.testbed_config("testbed-flow-long", steps=30).steps == 30
    assert testbed.testbed_config("testbed-flow") == testbed.TESTBED_MODELS["testbed-flow"]
    with pytest.raises(ValueError, match="testbed-ddpm-long"):
        testbed.testbed_config("testbed-ddpm-longer")


def fake_shipped(root: Path, config: TrainConfig, name: str = "m") -> Path:
    folder = root / testbed.SHIPPED / name
    folder.mkdir(parents=True)
    save_file({"w": torch.ones(3)}, folder / "model.safetensors")
    digest = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    run = {"config": asdict(config), "sha256": digest}
    (folder / "run.json").write_text(json.dumps(run))
    return folder


def test_a_shipped_model_is_found_by_its_exact_config_and_its_weights_are_verified(tmp_path):
    config = testbed.testbed_config("testbed-flow", steps=7)
    folder = fake_shipped(tmp_path, config)
    assert testbed.shipped(config, tmp_path) == folder
    assert testbed.shipped(replace(config, steps=8), tmp_path) is None
    save_file({"w": torch.zeros(3)}, folder / "model.safetensors")  # changed weights
    with pytest.raises(ValueError, match="sha256"):
        testbed.shipped(config, tmp_path)


def shipped_names() -> list[str]:
    return sorted(p.parent.name for p in SHIPPED.glob("*/run.json"))


def test_every_shipped_model_has_weights_a_full_log_and_its_provenance():
    names = shipped_names()
    assert set(testbed.TESTBED_NAMES) <= set(names)
    seeds = {testbed.seed_name(testbed.SEED_MODEL, s) for s in testbed.TRAINING_SEEDS}
    assert seeds <= set(names)  # the training-seed runs of the Table 2 page
    for name in names:
        folder = SHIPPED / name
        prov = json.loads((folder / "run.json").read_text())
        for key in ("command", "commit", "device", "seconds", "config", "sha256"):
            assert key in prov, (name, key)
        config = TrainConfig(**prov["config"])
        assert config == testbed.testbed_config(name), name  # the name's recipe, unchanged
        assert read_log(folder / "log.jsonl")[-1]["step"] == config.steps, name
        assert testbed.shipped(config) == folder


@pytest.mark.parametrize(
    "name",
    [
        "testbed-repa",
        "testbed-ddpm-long",
        "testbed-flow-long",
        "testbed-repa-long",
        "testbed-continuous",
        "testbed-continuous-long",
        "testbed-flow-seed1",
        "testbed-flow-seed2",
    ],
)
def test_a_shipped_model_retrains_to_the_same_first_steps(tmp_path, one_thread, name):
    prov = json.loads((SHIPPED / name / "run.json").read_text())
    config, log = TrainConfig(**prov["config"]), read_log(SHIPPED / name / "log.jsonl")
    # the records of the first 50 steps on the CI tier (two after initialisation) and of the
    # first 100 on the long one (one: the long tier records every 100 steps)
    assert_retrains_alike(config, log, tmp_path, max(config.log_every, 50))
