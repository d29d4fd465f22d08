"""The scale-study page's logic on synthetic recorded runs (scale_study.py and its page
function, sections.semantics.scale_study_page)."""

import json

import numpy as np
import pytest
import torch

from semantic_bottleneck.sections import semantics
from semantic_bottleneck.training import scale_study, testbed
from semantic_bottleneck.training.config import DATASETS
from semantic_bottleneck.training.data import DigitsSource, digits, digits_80


def records(npr, steps, cos=0.8):
    return [
        {
            "step": s,
            "ema_classes_npr_mean": v,
            "ema_classes_cos_mean": cos,
            "ema_classes_cos_min": cos - 0.1,
            "ema_classes_max_abs": 1.0,
            "ema_classes_s_tail_0_01": 0.1,
            "ema_classes_top10_share": 0.3,
            "ema_t_norm": 1.0,
            "ema_y_spread": 0.5,
        }
        for s, v in zip(steps, npr, strict=True)
    ]


def test_steps_to_reach_is_measured_when_reached_and_extrapolated_in_log_steps_otherwise():
    steps = [0, 100, 1000, 10000]
    # 0.1 less per decade: 0.6 at 100, 0.5 at 1e3, 0.4 at 1e4 -> 0.2 at 1e6
    step, slope, reached = scale_study.steps_to_reach(records([0.7, 0.6, 0.5, 0.4], steps), 0.2)
    assert not reached and slope == pytest.approx(-0.1) and step == pytest.approx(1e6, rel=1e-6)
    step, _, reached = scale_study.steps_to_reach(records([0.7, 0.6, 0.5, 0.4], steps), 0.55)
    assert reached and step == 1000
    step, _, reached = scale_study.steps_to_reach(records([0.7, 0.6, 0.6, 0.7], steps), 0.1)
    assert step is None and not reached


def write_run(folder, name, dataset="digits", npr=(0.7, 0.5, 0.4)):
    config = testbed.testbed_config("testbed-flow", steps=4000, dataset=dataset)
    cfg = {**config.__dict__}
    prov = {"command": "x", "commit": "abc" * 5, "device": "cpu", "seconds": 60.0, "config": cfg}
    (folder / f"{name}.json").write_text(json.dumps(prov))
    lines = "".join(json.dumps(r) + "\n" for r in records(list(npr), [0, 1000, 4000]))
    (folder / f"{name}.jsonl").write_text(lines)


def test_the_page_reads_only_the_recorded_runs_and_compares_class_counts(tmp_path):
    write_run(tmp_path, "a")
    write_run(tmp_path, "b", "digits-80", npr=(0.7, 0.6, 0.55))
    page = semantics.scale_study_page(tmp_path)  # absolute: used as it is
    assert page.values["runs"][0] == 2 and page.values["best_npr"][0] == pytest.approx(40.0)
    classes = page.tables["classes"]
    assert list(classes["step"]) == [1000, 4000]
    assert list(classes["npr_80_classes"]) == [0.6, 0.55]
    assert list(classes["npr_10_classes"]) == [0.5, 0.4]
    ends = page.tables["ends"]
    assert set(ends["classes"]) == {10, 80} and np.allclose(ends["wall_minutes"], 1.0)


def test_an_empty_records_folder_says_which_command_fills_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="scripts/scale_study.py"):
        semantics.scale_study_page(tmp_path)


def test_the_80_classes_are_each_digit_in_each_orientation():
    x, y = digits()
    x80, y80 = digits_80()
    assert x80.shape == (8 * len(y), 1, 8, 8) and sorted(set(y80.tolist())) == list(range(80))
    assert DATASETS["digits-80"]["num_classes"] == 80
    i = 5  # one digit, its 8 views: class 8 * digit + 2 * quarter turns + mirrored
    views = x80[i :: len(y)]
    assert y80[i :: len(y)].tolist() == [8 * int(y[i]) + k for k in range(8)]
    assert torch.equal(views[0], x[i]) and torch.equal(views[1], x[i].flip(2))
    assert torch.equal(views[2], torch.rot90(x[i], 1, dims=(1, 2)))
    assert torch.equal(views[7], torch.rot90(x[i], 3, dims=(1, 2)).flip(2))


def test_a_digits_source_names_the_datasets_it_knows():
    source = DigitsSource(4, torch.device("cpu"), dataset="digits-80")
    assert len(source.y) == 8 * len(digits()[1])
    with pytest.raises(ValueError, match=r"\['digits', 'digits-80', 'digits-thumbnail'\]"):
        DigitsSource(4, torch.device("cpu"), dataset="digits-90")


def test_a_recorded_run_without_its_log_is_named(tmp_path):
    write_run(tmp_path, "a")
    (tmp_path / "a.jsonl").unlink()
    with pytest.raises(FileNotFoundError, match="log"):
        semantics.scale_study_page(tmp_path)
