"""Ancestral DDPM sampling of DiT and MDT (guided-diffusion `p_sample_loop`).

Matches facebookresearch/DiT `diffusion/gaussian_diffusion.py` + `respace.py` (and the copy in
sail-sg/MDT): a linear-beta process of 1000 steps respaced to 250 ("250"), epsilon prediction,
`model_var_type` LEARNED_RANGE (the model's extra C channels interpolate the log variance between
the clipped posterior variance and beta), `clip_denoised=False` as in `sample_ddp.py`. The model is
fed the ORIGINAL timestep of each respaced step (`_WrappedModel`), an int64 tensor. Coefficients
are float64 arrays read out as float32 per step, as `_extract_into_tensor` does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from .common import (
    CFn,
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
from .guidance import Guidance, guided
from .schedules import DDPMCoefficients, spaced_ddpm

VAR_TYPES = ("learned_range", "fixed_large", "fixed_small")


@dataclass(frozen=True)
class DDPMConfig:
    """DDPM sampler settings (defaults: DiT-XL/2's `sample_ddp.py`, FID 2.27).

    Attributes:
        num_sampling_steps: timestep respacing ("250", or an int).
        diffusion_steps: length of the original process (1000).
        noise_schedule: beta schedule ("linear").
        model_var_type: "learned_range" (learn_sigma models, 2C output channels), "fixed_large"
            or "fixed_small" (C output channels).
        clip_denoised: clamp the x_0 prediction to [-1, 1] (False for latents).
        guidance: classifier-free guidance (DiT: 1.5 on 3 channels).
    """

    num_sampling_steps: int | str = 250
    diffusion_steps: int = 1000
    noise_schedule: str = "linear"
    model_var_type: str = "learned_range"
    clip_denoised: bool = False
    guidance: Guidance = field(default_factory=lambda: Guidance(scale=1.5, guided_channels=3))


def ddpm_schedule(config: DDPMConfig) -> DDPMCoefficients:
    """The respaced coefficients of a config (the number of steps is len(betas))."""
    return spaced_ddpm(
        str(config.num_sampling_steps), config.diffusion_steps, config.noise_schedule
    )


def check_var_type(config: DDPMConfig) -> None:
    """Raise ValueError unless the config's model_var_type is one of VAR_TYPES."""
    if config.model_var_type not in VAR_TYPES:
        raise ValueError(
            f"model_var_type: expected one of {VAR_TYPES}, got {config.model_var_type!r}"
        )


def split_output(out: Tensor, channels: int, var_type: str) -> tuple[Tensor, Tensor | None]:
    """Epsilon and, for "learned_range", the variance half of a model output (else None).

    Shapes: out (N, 2C or C, H, W) -> (N, C, H, W), (N, C, H, W) or None.
    """
    if var_type != "learned_range":
        return out, None
    if out.shape[1] != 2 * channels:
        raise ValueError(
            f"learned_range needs a model output of 2C = {2 * channels} channels, got "
            f"{out.shape[1]}"
        )
    eps, out_var = torch.split(out, channels, dim=1)
    return eps, out_var


def respaced_loop(
    step: Callable[[ModelFn, Tensor, int, DDPMCoefficients, CFn], Tensor],
    model_fn: ModelFn,
    noise: Tensor,
    config: DDPMConfig,
    progress: bool,
    c_fn_at: CFnAt,
    bf16: bool,
    desc: str,
) -> Tensor:
    """guided-diffusion's loop over a respaced process, from the noisiest step down to 0.

    Args:
        step: (guided model, x, respaced index i, coefficients, c_fn) -> x at step i - 1.
        model_fn, noise, progress, c_fn_at, bf16: as the samplers take them.
        config: the process and the guidance.
        desc: the tqdm bar's label.

    Shapes:
        noise (N, C, H, W) -> (N, C, H, W).
    """
    coef = ddpm_schedule(config)
    steps = len(coef.betas)
    check_hook(c_fn_at, steps, config.guidance.enabled)
    fn = guided(with_autocast(model_fn, bf16), config.guidance)
    x = noise
    with torch.no_grad():
        for k in steps_iter(range(steps), progress, steps, desc):
            i = steps - 1 - k  # respaced index, from the noisiest step down to 0
            x = step(fn, x, i, coef, c_fn_for(c_fn_at, k))
    return x


def _at(arr: np.ndarray, i: int, device: torch.device) -> Tensor:
    """One float64 coefficient as a float32 scalar tensor (`_extract_into_tensor`'s `.float()`)."""
    return torch.tensor(arr[i], dtype=torch.float64, device=device).float()


def _log_variance(
    out_var: Tensor | None, coef: DDPMCoefficients, i: int, var_type: str, device: torch.device
) -> Tensor:
    """Log variance of p(x_{t-1} | x_t) at respaced step i."""
    if var_type == "learned_range":
        # the model's value in [-1, 1] interpolates between min (posterior) and max (beta)
        min_log = _at(coef.posterior_log_variance_clipped, i, device)
        max_log = _at(coef.log_betas, i, device)
        frac = (out_var + 1) / 2
        return frac * max_log + (1 - frac) * min_log
    if var_type == "fixed_large":  # step 0 uses the posterior variance for a better decoder
        large = np.append(coef.posterior_variance[1], coef.betas[1:])
        return _at(np.log(large), i, device)
    return _at(coef.posterior_log_variance_clipped, i, device)


def p_sample(
    fn: ModelFn,
    x: Tensor,
    i: int,
    labels: Tensor,
    coef: DDPMCoefficients,
    config: DDPMConfig,
    generator: Generators,
    c_fn: CFn,
) -> Tensor:
    """One ancestral step x_t -> x_{t-1} at respaced step i (GaussianDiffusion.p_sample).

    Shapes:
        x (N, C, H, W), labels (N,) -> (N, C, H, W).
    """
    n, channels, device = x.shape[0], x.shape[1], x.device
    t = torch.full((n,), i, dtype=torch.int64, device=device)
    # 1. model at the original timestep (respace.py _WrappedModel)
    t_model = torch.as_tensor(coef.timestep_map, device=device)[t]
    eps, out_var = split_output(fn(x, t_model, labels, c_fn), channels, config.model_var_type)
    log_var = _log_variance(out_var, coef, i, config.model_var_type, device)
    # 2. x_0 from epsilon, then the posterior mean q(x_{t-1} | x_t, x_0)
    pred_x0 = (
        _at(coef.sqrt_recip_alphas_cumprod, i, device) * x
        - _at(coef.sqrt_recipm1_alphas_cumprod, i, device) * eps
    )
    if config.clip_denoised:
        pred_x0 = pred_x0.clamp(-1, 1)
    mean = (
        _at(coef.posterior_mean_coef1, i, device) * pred_x0
        + _at(coef.posterior_mean_coef2, i, device) * x
    )
    # 3. add noise except at the last step (t == 0); the noise is drawn at every step
    noise = randn_rows(generator, x.shape, x.dtype, device)
    nonzero = (t != 0).float().view(-1, *([1] * (x.dim() - 1)))
    return mean + nonzero * torch.exp(0.5 * log_var) * noise


def ddpm_sample(
    model_fn: ModelFn,
    noise: Tensor,
    labels: Tensor,
    config: DDPMConfig | None = None,
    generator: Generators = None,
    progress: bool = False,
    c_fn_at: CFnAt = None,
    bf16: bool = False,
) -> Tensor:
    """Sample with DiT/MDT's ancestral DDPM (`p_sample_loop`).

    Args:
        model_fn: (x, t, y, c_fn=None) -> epsilon (and variance) prediction; t is the original
            int64 DDPM timestep.
        noise: initial latents x_T.
        labels: class labels.
        config: sampler settings (default: DiT's headline).
        generator: one generator, or one per sample (required: every step draws noise).
        progress: show a tqdm bar.
        c_fn_at: step index (0 = first, noisiest step) -> c_fn passed to the model.
        bf16: run the model under bf16 autocast.

    Returns:
        the final latents x_0.

    Shapes:
        noise (N, C, H, W), labels (N,) -> (N, C, H, W).
    """
    config = config or DDPMConfig()
    check_inputs(noise, labels, generator, stochastic=True)
    check_var_type(config)

    def step(fn: ModelFn, x: Tensor, i: int, coef: DDPMCoefficients, c_fn: CFn) -> Tensor:
        return p_sample(fn, x, i, labels, coef, config, generator, c_fn)

    return respaced_loop(step, model_fn, noise, config, progress, c_fn_at, bf16, "DDPM")
