"""Training objectives of the two conventions the testbed trains in.

- "ddpm" (DiT/MDT): epsilon prediction with integer t in 0..999 on the linear-beta VP process;
  with learn_sigma the hybrid loss of improved DDPM that DiT uses: MSE on epsilon plus the
  variational bound term with a frozen mean (learned-range variance).
- "repa" (REPA/MG): linear path x_t = (1 - t) x + t eps, t ~ U[0, 1] with t = 1 noise, velocity
  target eps - x, MSE averaged over the non-batch dimensions (REPA `loss.py`, `SILoss`).

Random draws come from the generator passed in, on that generator's device, so a CPU run and a
resumed run draw the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from semantic_bottleneck.sampling.schedules import DDPMCoefficients, ddpm_coefficients, linear_betas

ModelFn = Callable[[Tensor, Tensor, Tensor], Tensor]


def dit_process(num_timesteps: int = 1000) -> DDPMCoefficients:
    """DiT's training process: linear betas over `num_timesteps` steps, no respacing."""
    return ddpm_coefficients(linear_betas(num_timesteps))


def mean_flat(x: Tensor) -> Tensor:
    """Mean over all but the batch dimension. Shapes: (N, ...) -> (N,)."""
    return x.mean(dim=tuple(range(1, x.ndim)))


def normal_kl(mean1: Tensor, logvar1: Tensor, mean2: Tensor, logvar2: Tensor) -> Tensor:
    """KL(N(mean1, e^logvar1) || N(mean2, e^logvar2)), elementwise, in nats."""
    return 0.5 * (
        -1.0
        + logvar2
        - logvar1
        + torch.exp(logvar1 - logvar2)
        + (mean1 - mean2) ** 2 * torch.exp(-logvar2)
    )


def _approx_std_normal_cdf(x: Tensor) -> Tensor:
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def discretized_gaussian_log_likelihood(x: Tensor, means: Tensor, log_scales: Tensor) -> Tensor:
    """Log-likelihood of x in [-1, 1] quantised to 256 bins under N(means, e^(2 log_scales))."""
    centered = x - means
    inv_stdv = torch.exp(-log_scales)
    cdf_plus = _approx_std_normal_cdf(inv_stdv * (centered + 1.0 / 255.0))
    cdf_min = _approx_std_normal_cdf(inv_stdv * (centered - 1.0 / 255.0))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_min = torch.log((1.0 - cdf_min).clamp(min=1e-12))
    log_cdf_delta = torch.log((cdf_plus - cdf_min).clamp(min=1e-12))
    return torch.where(
        x < -0.999,
        log_cdf_plus,
        torch.where(x > 0.999, log_one_minus_cdf_min, log_cdf_delta),
    )


def _gather(arr: np.ndarray, t: Tensor, ndim: int) -> Tensor:
    """arr[t] as float32 broadcastable to an ndim tensor. Shapes: (T,), (N,) -> (N, 1, ...)."""
    out = torch.from_numpy(arr).to(t.device)[t].float()
    return out.view(-1, *([1] * (ndim - 1)))


def ddpm_loss(
    model_fn: ModelFn, x0: Tensor, y: Tensor, generator: torch.Generator, schedule: DDPMCoefficients
) -> Tensor:
    """DiT's training loss: MSE on epsilon (+ the VB term when the model outputs 2C channels).

    Args:
        model_fn: (x_t, t, y) -> prediction with C (epsilon) or 2C (epsilon, variance) channels.
        x0: clean data in [-1, 1].
        y: labels.
        generator: source of t and noise.
        schedule: the DDPM process (1000 linear betas for DiT).

    Returns:
        scalar loss (mean over the batch).

    Shapes: x0 (N, C, H, W), y (N,).
    """
    n = x0.shape[0]
    dev = generator.device
    t = torch.randint(0, len(schedule.betas), (n,), generator=generator, device=dev).to(x0.device)
    noise = torch.randn(x0.shape, generator=generator, device=dev).to(x0)
    a = _gather(np.sqrt(schedule.alphas_cumprod), t, x0.ndim)
    s = _gather(np.sqrt(1.0 - schedule.alphas_cumprod), t, x0.ndim)
    x_t = a * x0 + s * noise
    out = model_fn(x_t, t, y)
    channels = x0.shape[1]
    if out.shape[1] == channels:
        return mean_flat((noise - out) ** 2).mean()
    eps, var_values = out[:, :channels], out[:, channels:]
    mse = mean_flat((noise - eps) ** 2)
    # variational bound with the mean frozen: it only trains the variance (improved DDPM)
    vb = _vb_bits(eps.detach(), var_values, x0, x_t, t, schedule)
    return (mse + vb).mean()


def _vb_bits(
    eps: Tensor, var_values: Tensor, x0: Tensor, x_t: Tensor, t: Tensor, sch: DDPMCoefficients
) -> Tensor:
    """One-step variational bound term in bits per dimension. Shapes: -> (N,)."""
    nd = x0.ndim
    min_log = _gather(sch.posterior_log_variance_clipped, t, nd)
    max_log = _gather(sch.log_betas, t, nd)
    frac = (var_values + 1) / 2  # learned range: interpolate log beta_tilde .. log beta
    model_log_var = frac * max_log + (1 - frac) * min_log
    pred_x0 = (
        _gather(sch.sqrt_recip_alphas_cumprod, t, nd) * x_t
        - _gather(sch.sqrt_recipm1_alphas_cumprod, t, nd) * eps
    )
    c1 = _gather(sch.posterior_mean_coef1, t, nd)
    c2 = _gather(sch.posterior_mean_coef2, t, nd)
    model_mean = c1 * pred_x0 + c2 * x_t
    true_mean = c1 * x0 + c2 * x_t
    kl = mean_flat(normal_kl(true_mean, min_log, model_mean, model_log_var)) / math.log(2.0)
    nll = -discretized_gaussian_log_likelihood(x0, model_mean, 0.5 * model_log_var)
    nll = mean_flat(nll) / math.log(2.0)
    return torch.where(t == 0, nll, kl)


def sample_t(n: int, generator: torch.Generator, timestep_set: int = 0) -> Tensor:
    """Training times of the linear path (t = 1 is noise), on the generator's device.

    Args:
        n: number of times.
        generator: source of randomness.
        timestep_set: 0 for REPA's t ~ U[0, 1); K >= 2 for t uniform on the K equally spaced
            values {0, 1/(K-1), ..., 1}, the limited timestep sets of the paper's Fig. 43
            (both ends included, so the initial t = 1 where c is measured is trained on).

    Returns:
        float32 times.

    Shapes: -> (n,).
    """
    if timestep_set == 0:
        return torch.rand(n, generator=generator, device=generator.device)
    if timestep_set < 2:
        raise ValueError(f"timestep_set must be 0 (continuous) or >= 2, got {timestep_set}")
    k = torch.randint(0, timestep_set, (n,), generator=generator, device=generator.device)
    return k.float() / (timestep_set - 1)


def linear_path(x0: Tensor, noise: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
    """REPA's linear interpolant and its velocity target.

    x_t = alpha_t x0 + sigma_t eps with alpha_t = 1 - t, sigma_t = t; the target is
    d(alpha_t)/dt x0 + d(sigma_t)/dt eps = eps - x0.

    Shapes: x0, noise (N, C, H, W), t (N,) -> x_t (N, C, H, W), target (N, C, H, W).
    """
    tb = t.view(-1, *([1] * (x0.ndim - 1)))
    return (1 - tb) * x0 + tb * noise, noise - x0


def linear_flow_loss(
    model_fn: ModelFn,
    x0: Tensor,
    y: Tensor,
    generator: torch.Generator,
    timestep_set: int = 0,
) -> Tensor:
    """REPA's denoising loss: x_t = (1 - t) x0 + t eps, t ~ U[0, 1] (t = 1 noise), v = eps - x0.

    Args:
        model_fn: (x_t, t, y) -> velocity.
        x0: clean data.
        y: labels.
        generator: source of t and noise (its device is where they are drawn).
        timestep_set: see `sample_t` (0: continuous t).

    Returns:
        scalar loss (mean over the batch of the per-sample MSE).

    Shapes: x0 (N, C, H, W), y (N,) -> scalar.
    """
    t = sample_t(x0.shape[0], generator, timestep_set).to(x0.device)
    noise = torch.randn(x0.shape, generator=generator, device=generator.device).to(x0)
    x_t, target = linear_path(x0, noise, t)
    return mean_flat((model_fn(x_t, t, y) - target) ** 2).mean()
