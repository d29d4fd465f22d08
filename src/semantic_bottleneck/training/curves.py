"""The training-dynamics pages' data: monitor logs of testbed runs and of recorded GPU runs.

A testbed run is shipped (data/testbed) or lives in the artifact cache ("testbed-model", keyed by
its TrainConfig). The
learning rate is constant, so the first N steps of a run do not depend on how long it goes on:
the log of an N-step run is the first records of any longer cached run of the same config
(when N is a multiple of log_every, so both log the same steps). The Fig. 43 page reuses the
Fig. 12 run that way for its continuous-t baseline instead of training it again.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from semantic_bottleneck.book.cache import cache_root, params_key
from semantic_bottleneck.training.monitor import read_log
from semantic_bottleneck.training.runs import describe_scale, recorded_runs
from semantic_bottleneck.training.testbed import (
    curve_summary,
    shipped_models,
    testbed_config,
    tier_name,
    trained,
)
from semantic_bottleneck.training.trainer import TrainConfig

KIND = "testbed-model"  # artifact kind of `testbed.trained`
REPA_TESTBED = "testbed-repa"


def _longer_cached_run(config: TrainConfig) -> list[dict] | None:
    """Records up to config.steps of a shipped or cached longer run of the same config, if there
    is one."""
    if config.steps % config.log_every:
        return None
    want = {**asdict(config), "steps": 0}
    for prov in shipped_models().values():
        saved = prov["config"]
        if saved["steps"] >= config.steps and {**saved, "steps": 0} == want:
            log = read_log(Path(prov["folder"]) / "log.jsonl")
            return [r for r in log if r["step"] <= config.steps]
    folder = cache_root() / KIND
    for params in sorted(folder.glob("*/params.json")) if folder.is_dir() else []:
        try:
            saved = json.loads(params.read_text())["params"]
        except (json.JSONDecodeError, KeyError):
            continue
        if saved.get("steps", 0) >= config.steps and {**saved, "steps": 0} == want:
            log = params.parent / "log.jsonl"
            if params.parent.name == params_key(KIND, saved) and log.is_file():
                return [r for r in read_log(log) if r["step"] <= config.steps]
    return None


def run_log(config: TrainConfig, progress: bool = True) -> list[dict]:
    """The monitor log of a testbed run: from the cache (or a longer cached run), else trained now."""
    records = _longer_cached_run(config)
    return records if records is not None else read_log(trained(config, progress) / "log.jsonl")


def testbed_run(name: str, steps: int | None = None, **overrides) -> TrainConfig:
    """The training config of a named testbed model (e.g. "testbed-repa", the REPA recipe)."""
    return testbed_config(name, steps=steps, **overrides)


def scale_of(config: TrainConfig) -> str:
    """One line naming the scale a curve was made at."""
    return describe_scale(asdict(config))


def summary_rows(logs: dict[str, list[dict]], configs: dict[str, TrainConfig]) -> list[dict]:
    """Per run: its scale, and the start, peak and end of the all-classes nPR curve.

    Returns:
        rows with run, scale, npr_start, npr_peak, peak_step, npr_end, end_step (nPR of all
        classes at the initial t), batch_npr_end and cos_end (mean cosine of all classes).
    """
    rows = []
    for name, records in logs.items():
        s = curve_summary(records)
        rows.append(
            {
                "run": name,
                "scale": scale_of(configs[name]),
                "npr_start": s["start"],
                "npr_peak": s["peak"],
                "peak_step": s["peak_step"],
                "npr_end": s["end"],
                "end_step": s["end_step"],
                "batch_npr_end": curve_summary(records, "batch_npr_mean")["end"],
                "cos_end": records[-1]["classes_cos_mean"],
            }
        )
    return rows


def headline_logs(
    profile: str, train_steps: int | None = None, tier: str = "ci"
) -> dict[str, list[dict]]:
    """The run the Fig 12 page headlines, as name -> monitor records: the testbed REPA recipe
    in `tier` (testbed profile), or the recorded GPU runs with continuous t (paper profile; may
    be none)."""
    if profile == "testbed":
        name = tier_name(REPA_TESTBED, tier)
        return {name: run_log(testbed_run(name, steps=train_steps))}
    gpu = [r for r in recorded_runs() if not r["config"].get("timestep_set")]
    return {r["name"]: r["records"] for r in gpu}


def headline(rows: list[dict], prefer: str = REPA_TESTBED) -> dict:
    """The row of run `prefer` if present, else the first row, else {} (no runs)."""
    return next((r for r in rows if r["run"] == prefer), rows[0] if rows else {})
