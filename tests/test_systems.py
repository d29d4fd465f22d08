"""Tests of the appendix systems' c container: how T and Y combine, and the shapes it refuses."""

import pytest
import torch

from semantic_bottleneck.core import analysis
from semantic_bottleneck.core.systems import SystemC, combine, readings_from_cosine


def test_sum_adds_the_shared_time_part_to_every_condition():
    time, cond = torch.ones(1, 3), torch.arange(6.0).reshape(2, 3)
    assert torch.equal(combine(time, cond, "sum"), cond + 1)


def test_concat_puts_the_time_part_first():
    time, cond = torch.full((1, 2), 7.0), torch.zeros(3, 4)
    c = combine(time, cond, "concat")
    assert c.shape == (3, 6)
    assert torch.equal(c[:, :2], torch.full((3, 2), 7.0)) and torch.equal(c[:, 2:], cond)


@pytest.mark.parametrize(
    ("time", "cond", "how", "match"),
    [
        (torch.ones(1, 3), torch.ones(2, 4), "sum", "d_t = d_y"),
        (torch.ones(3, 3), torch.ones(2, 3), "sum", "expected time"),
        (torch.ones(3), torch.ones(2, 3), "sum", "expected time"),
        (torch.ones(1, 3), torch.ones(2, 3), "product", "expected one of"),
    ],
)
def test_bad_parts_are_refused_with_what_was_expected(time, cond, how, match):
    with pytest.raises(ValueError, match=match):
        combine(time, cond, how)
    with pytest.raises(ValueError, match=match):
        SystemC("x", "X", time, cond, how, t=0.0, conditions="test")


def test_system_c_answers_the_table_rows():
    g = torch.Generator().manual_seed(0)
    time, cond = torch.randn(1, 8, generator=g), torch.randn(5, 8, generator=g)
    for how, d in (("sum", 8), ("concat", 16)):
        sys_c = SystemC("x", "X", time, cond, how, t=999.0, conditions="five")
        assert (sys_c.d, sys_c.num_classes, sys_c.initial_t) == (d, 5, 999.0)
        assert torch.equal(sys_c.label_only(), cond)
        row = analysis.label_vs_sum_row(sys_c)
        assert row["model"] == "X" and 0 < row["npr_yt"] <= 1
        assert analysis.statistics_row(sys_c)["d"] == d


def test_readings_from_cosine_match_the_cosine_and_tell_the_readings_apart():
    from semantic_bottleneck.core import metrics
    from semantic_bottleneck.zoo.dit import timestep_embedding

    time = timestep_embedding(torch.tensor([1000.0]), 256)
    c = readings_from_cosine(time, 0.9, n=400)
    assert c["concat"].shape == (400, 512) and c["sum"].shape == (400, 256)
    for how in ("concat", "sum"):
        assert metrics.cosine_summary(c[how])["mean"] == pytest.approx(0.9, abs=0.01)
    npr = {how: float(metrics.normalized_participation_ratio(c[how]).mean()) for how in c}
    assert npr["concat"] < npr["sum"]  # half of the concatenation is the small label token
    with pytest.raises(ValueError, match="expected a value in \\(0, 1\\)"):
        readings_from_cosine(time, 1.0)
