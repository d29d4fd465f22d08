"""Schedules and time grids of the official samplers, against hand values and the official rules."""

import math

import numpy as np
import pytest
import torch

from semantic_bottleneck.sampling import schedules as sch


def test_linear_betas_hand_values():
    betas = sch.linear_betas(1000)
    assert betas.dtype == np.float64 and betas.shape == (1000,)
    assert betas[0] == 1e-4 and betas[-1] == 0.02
    assert math.isclose(betas[1], 1e-4 + (0.02 - 1e-4) / 999, rel_tol=1e-12)
    # guided-diffusion scales the endpoints by 1000 / T for other lengths
    assert sch.linear_betas(500)[-1] == pytest.approx(0.04)


def test_alphas_cumprod_hand_values():
    coef = sch.ddpm_coefficients(sch.linear_betas(1000))
    ac = coef.alphas_cumprod
    assert ac[0] == pytest.approx(0.9999, abs=1e-15)
    assert ac[1] == pytest.approx(0.9999 * (1 - (1e-4 + (0.02 - 1e-4) / 999)), rel=1e-13)
    # independent product in plain Python
    by_hand = math.prod(1 - (1e-4 + (0.02 - 1e-4) * i / 999) for i in range(1000))
    assert ac[-1] == pytest.approx(by_hand, rel=1e-10)
    assert 4.0e-5 < ac[-1] < 4.1e-5  # the well-known abar_T ~ 4.04e-5 of the linear schedule


def test_posterior_coefficients_at_the_first_step():
    coef = sch.ddpm_coefficients(sch.linear_betas(1000))
    assert coef.alphas_cumprod_prev[0] == 1.0
    assert coef.posterior_mean_coef1[0] == pytest.approx(1.0, abs=1e-12)  # x_0 prediction itself
    assert coef.posterior_mean_coef2[0] == 0.0
    assert coef.posterior_variance[0] == 0.0
    # the clipped log variance repeats step 1 at step 0
    assert coef.posterior_log_variance_clipped[0] == coef.posterior_log_variance_clipped[1]
    assert coef.posterior_log_variance_clipped[1] == np.log(coef.posterior_variance[1])
    np.testing.assert_array_equal(coef.log_betas, np.log(coef.betas))


def test_respacing_250_follows_the_rounded_fractional_stride():
    kept = sch.space_timesteps(1000, "250")
    # official rule: round(k * 999 / 249); 999/249 = 333/83 never ends in .5, so no rounding ties
    assert kept == [round(k * 999 / 249) for k in range(250)]
    assert kept[:4] == [0, 4, 8, 12] and kept[-1] == 999
    assert kept[125] == 502  # not a multiple of 4
    gaps = np.diff(kept)
    assert set(gaps.tolist()) == {4, 5} and int((gaps == 5).sum()) == 3


def test_space_timesteps_sections_and_ddim():
    # the docstring example of guided-diffusion: 300 steps, sections of 10, 15, 20
    kept = sch.space_timesteps(300, "10,15,20")
    assert (
        len(kept) == 45 and kept[0] == 0 and kept[9] == 99 and kept[10] == 100 and kept[-1] == 299
    )
    assert sch.space_timesteps(1000, "ddim50") == list(range(0, 1000, 20))
    assert sch.space_timesteps(1000, 1000) == list(range(1000))


def test_respaced_betas_keep_the_original_cumulative_products():
    betas = sch.linear_betas(1000)
    coef = sch.spaced_ddpm("250")
    ac = np.cumprod(1 - betas)
    np.testing.assert_array_equal(coef.timestep_map, sch.space_timesteps(1000, "250"))
    assert coef.betas[0] == pytest.approx(1e-4, abs=1e-16)
    m = coef.timestep_map
    np.testing.assert_allclose(coef.betas[1:], 1 - ac[m[1:]] / ac[m[:-1]], rtol=1e-14)
    np.testing.assert_allclose(coef.alphas_cumprod, ac[m], rtol=1e-12)


def test_sit_sde_grid_is_the_float32_linspace_to_0_96():
    grid = sch.sit_sde_grid(250, 0.04)
    expected = torch.linspace(0, 1 - 0.04, 250, dtype=torch.float32).double().numpy()
    np.testing.assert_array_equal(grid, expected)
    assert grid[0] == 0.0 and grid[-1] == np.float32(0.96)
    np.testing.assert_array_equal(grid, grid.astype(np.float32))  # exact float32 values
    assert sch.sit_sde_grid(250, 0.0)[-1] == 1.0  # no last step: up to t = 1


def test_lightningdit_shift_formula_and_grid():
    t = np.linspace(0, 1, 11)
    s = 0.3
    shifted = sch.timestep_shift(t, s)
    np.testing.assert_allclose(shifted, s * t / (1 - (1 - s) * t), rtol=1e-15)
    assert shifted[5] == pytest.approx(0.15 / 0.65)
    grid = sch.flow_ode_grid(250, 0.3)
    assert grid[0] == 0.0 and grid[-1] == 1.0 and np.all(np.diff(grid) > 0)
    np.testing.assert_allclose(grid, sch.timestep_shift(np.linspace(0, 1, 250), 0.3), atol=1e-6)
    # shift < 1 spends more steps near t = 0 (noise): half the grid lies below t = 0.3 / 1.3
    assert np.sum(grid < 0.3 / 1.3) == 125
    np.testing.assert_array_equal(
        sch.flow_ode_grid(5, 0.0), torch.linspace(0, 1, 5).double().numpy()
    )


def test_repa_grids():
    grid = sch.repa_sde_grid(250, 0.04)
    assert grid.dtype == np.float64 and grid.shape == (251,)
    assert grid[0] == 1.0 and grid[249] == 0.04 and grid[250] == 0.0
    np.testing.assert_allclose(np.diff(grid[:250]), -0.96 / 249, rtol=1e-12)
    np.testing.assert_array_equal(sch.repa_ode_grid(4), [1.0, 0.75, 0.5, 0.25, 0.0])


@pytest.mark.parametrize(
    "call",
    [
        lambda: sch.linear_betas(0),
        lambda: sch.space_timesteps(10, "20"),
        lambda: sch.spaced_ddpm("250", noise_schedule="cosine"),
        lambda: sch.sit_sde_grid(1),
        lambda: sch.sit_sde_grid(10, 1.0),
        lambda: sch.flow_ode_grid(10, -0.5),
        lambda: sch.repa_sde_grid(250, 0.0),
        lambda: sch.repa_ode_grid(0),
        lambda: sch.ddpm_coefficients(np.array([0.0, 0.1])),
    ],
)
def test_bad_schedule_arguments_raise(call):
    with pytest.raises(ValueError):
        call()
