"""c = T + Y measured (mechanism.py) and the sampler grid it is swept over (sampling.model_times)."""

import math

import numpy as np
import pytest
import torch
from fakes import model_c, small_emb

from semantic_bottleneck import sampling
from semantic_bottleneck.core import analysis, mechanism, metrics
from semantic_bottleneck.sampling.ddpm import ddpm_schedule
from semantic_bottleneck.sampling.schedules import flow_ode_grid, repa_sde_grid
from semantic_bottleneck.sections import semantics


def test_predicted_cosine_is_exact_for_a_simplex_around_a_shared_vector():
    # n label offsets forming a regular simplex orthogonal to m: equal norms, sum zero
    n, d = 6, 12
    simplex = torch.eye(n) - 1.0 / n  # rows sum to zero, equal norms, in span of e_0..e_5
    shared = torch.zeros(d)
    shared[n] = 3.0
    c = shared + torch.cat([simplex, torch.zeros(n, d - n)], 1) * 2.0
    spread = float((c - c.mean(0)).pow(2).sum(1).mean().sqrt())
    measured = float(metrics.cosine_summary(c)["mean"])
    assert mechanism.predicted_cosine(3.0, spread, n) == pytest.approx(measured, abs=1e-6)
    with pytest.raises(ValueError, match="at least 2"):
        mechanism.predicted_cosine(1.0, 1.0, 1)


def test_time_label_split_matches_its_definitions():
    emb = small_emb()
    m = model_c(emb)
    row = mechanism.time_label_split(m, k=3)
    t, y = m.time_only(), m.label_only()
    c = t + y
    assert row["t_norm"] == pytest.approx(float(t.norm()), rel=1e-6)
    spread = math.sqrt(float((y - y.mean(0)).pow(2).sum(1).mean()))
    assert row["y_spread"] == pytest.approx(spread, rel=1e-6)
    assert row["ratio_t"] == pytest.approx(row["t_norm"] / spread, rel=1e-6)
    assert row["cosine"] == pytest.approx(float(metrics.cosine_summary(c)["mean"]), rel=1e-6)
    # the share of T over class 0's 3 largest |c_i|, by hand
    top = c[0].abs().argsort(descending=True)[:3]
    share0 = float(t[0, top].abs().sum() / (t[0, top].abs() + y[0, top].abs()).sum())
    shares = [
        float(t[0, i].abs().sum() / (t[0, i].abs() + y[k, i].abs()).sum())
        for k, i in enumerate(c.abs().argsort(dim=1, descending=True)[:, :3])
    ]
    assert shares[0] == pytest.approx(share0)
    assert row["t_share_top_k"] == pytest.approx(float(np.mean(shares)), rel=1e-6)


def test_tiny_label_rows_leave_t_alone_and_a_cosine_of_one():
    emb = small_emb()
    emb["y_embedder.embedding_table.weight"] *= 1e-6
    row = mechanism.time_label_split(model_c(emb))
    assert row["ratio_shared"] > 1e4 and row["t_share_top_k"] == pytest.approx(1.0, abs=1e-4)
    assert row["cosine"] == pytest.approx(1.0) == row["cosine_predicted"]


def test_model_times_are_the_grids_each_sampler_feeds_the_model():
    ddpm = sampling.default_config("dit")
    assert sampling.model_times(ddpm) == [float(t) for t in ddpm_schedule(ddpm).timestep_map[::-1]]
    ode = sampling.default_config("lightningdit")
    grid = flow_ode_grid(ode.num_steps, ode.timestep_shift)
    assert sampling.model_times(ode) == pytest.approx(list(grid[:-1]), abs=1e-6)
    sde = sampling.default_config("repa")
    times = sampling.model_times(sde)
    assert len(times) == sampling.num_steps(sde) and times[0] == sampling.initial_t(sde)
    assert times == pytest.approx(list(repa_sde_grid(sde.num_steps)[:-1]), abs=1e-6)
    heun = sampling.default_config("sit", "ode")  # two model calls per step
    assert len(sampling.model_times(heun)) == 2 * sampling.num_steps(heun)


def test_grid_statistics_start_at_the_initial_t_and_drop_repeats():
    m = model_c(small_emb())
    table = mechanism.grid_statistics(m, [1.0, 0.5, 0.5, 0.25])
    assert list(table["t"]) == [1.0, 0.5, 0.25] and list(table["step"]) == [0, 1, 3]
    first = analysis.statistics_row(m)
    assert table["cosine"].iloc[0] == pytest.approx(first["cosine"], rel=1e-6)
    assert table["npr"].iloc[0] == pytest.approx(first["npr"], rel=1e-6)
    summary = mechanism.grid_summary(table)
    assert summary["steps"].iloc[0] == 3
    assert summary["cosine_last"].iloc[0] == pytest.approx(table["cosine"].iloc[-1])


def test_the_pages_read_the_shipped_long_models_and_quote_their_own_tables():
    names = ["testbed-flow-long", "testbed-ddpm-long"]
    page = semantics.mechanism_page("testbed", names)
    split = page.tables["split"]
    assert list(split["model"]) == names and [m.name for m in page.found] == names
    assert all("data/testbed" in m.source for m in page.found)  # loaded, not trained
    gap = (split["cosine"] - split["cosine_predicted"]).abs().max()
    assert page.values["worst_gap"][0] == gap
    assert page.values["ratio_min"][0] == split["ratio_shared"].min()
    sweep = semantics.timestep_page("testbed", names[:1])
    summary, grid = sweep.tables["summary"], sweep.tables["grid"]
    assert summary["steps"].iloc[0] == len(grid) == len(set(grid["t"]))
    assert grid["t"].iloc[0] == 1.0  # the flow convention starts at pure noise, t = 1
    assert sweep.values["n_models"][0] == 1 and sweep.figures["grid"] is not None
