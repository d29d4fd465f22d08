"""The recorded scale-study runs: their configs retrain to the same first steps of their logs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fakes import assert_retrains_alike

from semantic_bottleneck.training.monitor import read_log
from semantic_bottleneck.training.trainer import TrainConfig

RECORDS = Path(__file__).resolve().parents[1] / "data" / "scale"


def recorded(name: str) -> tuple[TrainConfig, list[dict]]:
    prov = json.loads((RECORDS / f"{name}.json").read_text())
    return TrainConfig(**prov["config"]), read_log(RECORDS / f"{name}.jsonl")


@pytest.mark.parametrize("name", ["w64-lr3e-3"])
def test_a_recorded_run_retrains_to_the_same_first_steps(tmp_path, one_thread, name):
    config, log = recorded(name)
    assert_retrains_alike(config, log, tmp_path, 300)


def test_every_record_has_its_provenance_and_a_log_to_the_end():
    names = sorted(p.stem for p in RECORDS.glob("*.json"))
    assert names, "no recorded scale-study run"
    for name in names:
        prov = json.loads((RECORDS / f"{name}.json").read_text())
        for key in ("command", "commit", "device", "config"):
            assert key in prov, (name, key)
        assert "seconds" in prov or "finished" not in prov, name  # a finished run has its time
        config, log = recorded(name)
        # a run still under way is recorded up to where it got (resumable; constant rate, so
        # its first N steps are those of an N-step run)
        assert log[-1]["step"] == prov["steps"] <= config.steps, name
        assert ("finished" in prov) == (prov["steps"] == config.steps), name
