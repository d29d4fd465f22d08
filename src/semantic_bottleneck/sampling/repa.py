"""REPA and MG samplers: linear-path velocity models with t = 1 noise, t = 0 data, in float64.

Matches sihyun-yu/REPA `samplers.py` (MG's sampler is the same code):
- `repa_sde_sample` = `euler_maruyama_sampler`: float64 grid linspace(1, 0.04, 250) plus 0;
  249 Euler-Maruyama steps with w(t) = 2t, drift d = v - (1/2) w(t) score(v) and noise
  sqrt(w(t)) sqrt(|dt|) eps (eps drawn in float64), then the mean step x + dt d from 0.04 to 0.
  Guidance combines the drifts d (not the velocities), on all channels, while
  guidance_low <= t <= guidance_high (REPA-XL: 1.8 for t <= 0.7; MG: no guidance).
- `repa_ode_sample` = `euler_sampler`: Euler (optionally Heun) on linspace(1, 0, num_steps + 1),
  guiding the velocity; Heun's second evaluation tests the interval at the step's start time.
The state is float64; the model sees x and t cast to the latents' dtype and its output is cast back
to float64, as in the official code. The result is returned in the latents' dtype.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from .common import (
    CFnAt,
    Generators,
    ModelFn,
    c_fn_for,
    check_hook,
    check_inputs,
    randn_rows,
    steps_iter,
    with_autocast,
)
from .guidance import Guidance, guidance_active, guided
from .schedules import repa_ode_grid, repa_sde_grid

PATH_TYPES = ("linear", "cosine")


def _repa_guidance() -> Guidance:
    return Guidance(scale=1.8, guided_channels=None, interval=(0.0, 0.7))


@dataclass(frozen=True)
class REPASDEConfig:
    """REPA / MG Euler-Maruyama settings (defaults: REPA-XL's README command, FID 1.42).

    Attributes:
        num_steps: grid points from 1 to t_last; num_steps - 1 stochastic steps plus the mean step.
        t_last: time of the last stochastic point (0.04).
        path_type: "linear" (x_t = (1 - t) x + t eps) or "cosine".
        guidance: classifier-free guidance (REPA: 1.8 on all channels for t <= 0.7).
    """

    num_steps: int = 250
    t_last: float = 0.04
    path_type: str = "linear"
    guidance: Guidance = field(default_factory=_repa_guidance)


@dataclass(frozen=True)
class REPAODEConfig:
    """REPA / MG Euler ODE settings.

    Attributes:
        num_steps: Euler steps from t = 1 to t = 0.
        heun: Heun's correction on every step but the last.
        path_type: accepted for parity with the official signature (the ODE uses v directly).
        guidance: classifier-free guidance (REPA: 1.8 on all channels for t <= 0.7).
    """

    num_steps: int = 250
    heun: bool = False
    path_type: str = "linear"
    guidance: Guidance = field(default_factory=_repa_guidance)


def repa_score(v: Tensor, x: Tensor, t: Tensor, path_type: str = "linear") -> Tensor:
    """Score from velocity (samplers.py `get_score_from_velocity`), official op order.

    Shapes:
        v, x (N, C, ...), t (N,) -> (N, C, ...).
    """
    t = t.view(t.shape[0], *([1] * (x.dim() - 1)))
    if path_type == "linear":
        alpha_t, d_alpha_t = 1 - t, torch.ones_like(x) * -1
        sigma_t, d_sigma_t = t, torch.ones_like(x)
    else:  # cosine
        alpha_t = torch.cos(t * np.pi / 2)
        sigma_t = torch.sin(t * np.pi / 2)
        d_alpha_t = -np.pi / 2 * torch.sin(t * np.pi / 2)
        d_sigma_t = np.pi / 2 * torch.cos(t * np.pi / 2)
    reverse_alpha_ratio = alpha_t / d_alpha_t
    var = sigma_t**2 - reverse_alpha_ratio * d_sigma_t * sigma_t
    return (reverse_alpha_ratio * v - x) / var


def _velocity(model_fn: ModelFn, dtype: torch.dtype):
    """The model on float64 state: inputs cast to the latents' dtype, output back to float64."""

    def call(x: Tensor, t: Tensor, y: Tensor, c_fn=None) -> Tensor:
        return model_fn(x.to(dtype=dtype), t.to(dtype=dtype), y, c_fn=c_fn).to(torch.float64)

    return call


def _drift(velocity, path_type: str):
    """d = v - (1/2) w(t) score(v) with w(t) = 2t (compute_diffusion), per row of the batch."""

    def call(x: Tensor, t: Tensor, y: Tensor, c_fn=None) -> Tensor:
        v = velocity(x, t, y, c_fn)
        s = repa_score(v, x, t, path_type)
        diffusion = 2 * t[0]  # all rows share the step's time
        return v - 0.5 * diffusion * s

    return call


def repa_sde_sample(
    model_fn: ModelFn,
    noise: Tensor,
    labels: Tensor,
    config: REPASDEConfig | None = None,
    generator: Generators = None,
    progress: bool = False,
    c_fn_at: CFnAt = None,
    bf16: bool = False,
) -> Tensor:
    """Sample with REPA's `euler_maruyama_sampler` (also MG's headline sampler).

    Args:
        model_fn: (x, t, y, c_fn=None) -> velocity; t in [0, 1], 1 = noise.
        noise: initial latents at t = 1.
        labels: class labels.
        config: sampler settings (default: REPA's headline).
        generator: one generator, or one per sample (required; draws are float64).
        progress: show a tqdm bar.
        c_fn_at: step index -> c_fn (step num_steps - 1 is the final mean step).
        bf16: run the model under bf16 autocast.

    Returns:
        the latents at t = 0, in noise's dtype.

    Shapes:
        noise (N, C, H, W), labels (N,) -> (N, C, H, W).
    """
    config = config or REPASDEConfig()
    check_inputs(noise, labels, generator, stochastic=True)
    if config.path_type not in PATH_TYPES:
        raise ValueError(f"path_type: expected one of {PATH_TYPES}, got {config.path_type!r}")
    grid = torch.from_numpy(repa_sde_grid(config.num_steps, config.t_last))  # float64, CPU
    steps = config.num_steps
    check_hook(c_fn_at, steps, config.guidance.enabled)
    velocity = _velocity(with_autocast(model_fn, bf16), noise.dtype)
    drift = guided(_drift(velocity, config.path_type), config.guidance)
    n, x = noise.shape[0], noise.to(torch.float64)
    ones = torch.ones(n, dtype=torch.float64, device=x.device)
    with torch.no_grad():
        for step in steps_iter(range(steps - 1), progress, steps - 1, "REPA SDE"):
            t_cur, t_next = grid[step], grid[step + 1]
            dt = t_next - t_cur
            # 1. Euler-Maruyama: x + d dt + sqrt(w(t)) sqrt(|dt|) eps
            diffusion = 2 * t_cur
            eps = randn_rows(generator, x.shape, torch.float64, x.device)
            deps = eps * torch.sqrt(torch.abs(dt))
            d_cur = drift(x, ones * t_cur, labels, c_fn_for(c_fn_at, step))
            x = x + d_cur * dt + torch.sqrt(diffusion) * deps
        # 2. the last, deterministic mean step from t_last to 0
        t_cur, t_next = grid[-2], grid[-1]
        d_cur = drift(x, ones * t_cur, labels, c_fn_for(c_fn_at, steps - 1))
        x = x + (t_next - t_cur) * d_cur
    return x.to(noise.dtype)


def repa_ode_sample(
    model_fn: ModelFn,
    noise: Tensor,
    labels: Tensor,
    config: REPAODEConfig | None = None,
    generator: Generators = None,
    progress: bool = False,
    c_fn_at: CFnAt = None,
    bf16: bool = False,
) -> Tensor:
    """Sample with REPA's `euler_sampler` (Euler, or Heun with `heun=True`).

    Args:
        model_fn: (x, t, y, c_fn=None) -> velocity; t in [0, 1], 1 = noise.
        noise: initial latents at t = 1.
        labels: class labels.
        config: solver settings.
        generator: unused (deterministic); accepted for a uniform signature.
        progress: show a tqdm bar.
        c_fn_at: step index -> c_fn (both Heun evaluations of a step use the step's c_fn).
        bf16: run the model under bf16 autocast.

    Returns:
        the latents at t = 0, in noise's dtype.

    Shapes:
        noise (N, C, H, W), labels (N,) -> (N, C, H, W).
    """
    config = config or REPAODEConfig()
    check_inputs(noise, labels, generator, stochastic=False)
    grid = torch.from_numpy(repa_ode_grid(config.num_steps))  # float64, CPU
    steps = config.num_steps
    check_hook(c_fn_at, steps, config.guidance.enabled)
    velocity = guided(_velocity(with_autocast(model_fn, bf16), noise.dtype), config.guidance)
    n, x = noise.shape[0], noise.to(torch.float64)
    ones = torch.ones(n, dtype=torch.float64, device=x.device)
    with torch.no_grad():
        for step in steps_iter(range(steps), progress, steps, "REPA ODE"):
            t_cur, t_next = grid[step], grid[step + 1]
            c_fn = c_fn_for(c_fn_at, step)
            x_cur = x
            d_cur = velocity(x_cur, ones * t_cur, labels, c_fn)
            x = x_cur + (t_next - t_cur) * d_cur
            if config.heun and step < steps - 1:
                active = guidance_active(config.guidance, ones * t_cur)
                d_prime = velocity(x, ones * t_next, labels, c_fn, active=active)
                x = x_cur + (t_next - t_cur) * (0.5 * d_cur + 0.5 * d_prime)
    return x.to(noise.dtype)
