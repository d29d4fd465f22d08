"""The recorded scale-study runs: their configs retrain to the same first steps of their logs."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from semantic_bottleneck.training.monitor import read_log
from semantic_bottleneck.training.trainer import TrainConfig, train

RECORDS = Path(__file__).resolve().parents[1] / "data" / "scale"
KEYS = ("loss", "classes_npr_mean", "classes_cos_mean", "ema_classes_npr_mean", "ema_t_norm")


def recorded(name: str) -> tuple[TrainConfig, list[dict]]:
    prov = json.loads((RECORDS / f"{name}.json").read_text())
    return TrainConfig(**prov["config"]), read_log(RECORDS / f"{name}.jsonl")


@pytest.mark.parametrize("name", ["w64-lr3e-3"])
def test_a_recorded_run_retrains_to_the_same_first_steps(tmp_path, one_thread, name):
    config, log = recorded(name)
    # a constant rate: the first 300 steps do not depend on how long the run goes on
    train(replace(config, steps=300), tmp_path, progress=False)
    again = {r["step"]: r for r in read_log(tmp_path / "log.jsonl")}
    for r in (r for r in log if r["step"] <= 300):
        # the initialisation is exact; after it, another CPU's kernels may round differently
        # (bitwise equal on the machine that made the record), so a small tolerance
        rel = 1e-6 if r["step"] == 0 else 1e-3
        for key in KEYS:
            if r.get(key) is not None:
                assert again[r["step"]][key] == pytest.approx(r[key], rel=rel), (r["step"], key)


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
