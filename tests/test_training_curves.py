"""Training-page data: cached runs are reused, a shorter run is read from a longer one."""

import pytest

from semantic_bottleneck.book.cache import cache_root
from semantic_bottleneck.training import curves
from semantic_bottleneck.training.config import TrainConfig
from semantic_bottleneck.training.monitor import read_log
from semantic_bottleneck.training.testbed import trained

FLOW = dict(family="sit", objective="repa", learn_sigma=False, hidden_size=32, depth=1,
            num_heads=2, batch_size=8, log_every=2)  # fmt: skip


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SEMANTIC_BOTTLENECK_CACHE", str(tmp_path / "cache"))


def test_a_shorter_run_is_the_prefix_of_a_longer_cached_one_without_training():
    long_log = read_log(trained(TrainConfig(steps=6, **FLOW), progress=False) / "log.jsonl")
    runs_before = sorted((cache_root() / curves.KIND).iterdir())
    short = curves.run_log(TrainConfig(steps=4, **FLOW), progress=False)
    assert sorted((cache_root() / curves.KIND).iterdir()) == runs_before  # nothing trained
    assert short == long_log[:3] and [r["step"] for r in short] == [0, 2, 4]
    # and it is what a 4-step run logs
    fresh = read_log(trained(TrainConfig(steps=4, **FLOW), progress=False) / "log.jsonl")
    assert fresh == short


def test_a_run_of_another_config_or_off_the_log_grid_is_trained():
    trained(TrainConfig(steps=6, **FLOW), progress=False)
    odd = curves.run_log(TrainConfig(steps=3, **FLOW), progress=False)  # 3 is not on the grid
    assert [r["step"] for r in odd] == [0, 2, 3]
    other = curves.run_log(TrainConfig(steps=4, seed=1, **FLOW), progress=False)
    assert [r["step"] for r in other] == [0, 2, 4]
    assert len(list((cache_root() / curves.KIND).iterdir())) == 3


def test_named_testbed_runs_and_their_scale_lines():
    repa = curves.testbed_run("testbed-repa", steps=10, timestep_set=50)
    assert repa.repa_encoder == "digits-classifier" and repa.timestep_set == 50
    assert curves.testbed_run("testbed-flow", steps=10).family == "sit"
    line = curves.scale_of(repa)
    assert "width 128" in line and "8x8 digits" in line and "50 discrete t" in line


def test_summary_rows_give_start_peak_and_end_and_prefer_the_repa_run():
    config = TrainConfig(steps=4, **FLOW)
    logs = {"a": curves.run_log(config, progress=False)}
    rows = curves.summary_rows(logs, {"a": config})
    assert rows[0]["npr_start"] == logs["a"][0]["classes_npr_mean"]
    assert rows[0]["npr_peak"] >= max(rows[0]["npr_start"], rows[0]["npr_end"])
    assert rows[0]["end_step"] == 4
    assert curves.headline(rows) == rows[0] and curves.headline([]) == {}
    assert curves.headline([{"run": "x"}, {"run": "testbed-repa"}])["run"] == "testbed-repa"
