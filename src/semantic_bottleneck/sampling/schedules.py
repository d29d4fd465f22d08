"""Noise schedules and time grids of the official samplers, as pure functions.

- DDPM (DiT, MDT): guided-diffusion's linear beta schedule, `space_timesteps` respacing and the
  posterior coefficients of facebookresearch/DiT `gaussian_diffusion.py` / `respace.py`, float64.
- SiT / LightningDiT (t = 0 noise): the `torch.linspace` grids of willisma/SiT `transport/`,
  LightningDiT's timestep shift t' = s t / (1 + (s - 1) t).
- REPA / MG (t = 1 noise): the float64 grids of sihyun-yu/REPA `samplers.py`.

Every function returns NumPy float64 arrays. Grids that the official code builds in float32
(`torch.linspace`'s default dtype) are returned as those exact float32 values held in float64, so a
sampler that casts them back to float32 reproduces the official grid bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral

import numpy as np
import torch


def _check_count(name: str, value: int, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return int(value)


# ----------------------------------------------------------------------------- DDPM


def linear_betas(num_timesteps: int = 1000) -> np.ndarray:
    """Ho et al.'s linear beta schedule, scaled to `num_timesteps` (guided-diffusion "linear").

    Args:
        num_timesteps: length of the diffusion process (1000 for every model of the paper).

    Returns:
        betas from 1e-4 to 0.02 (times 1000 / num_timesteps), float64.

    Shapes:
        -> (num_timesteps,).
    """
    num_timesteps = _check_count("num_timesteps", num_timesteps, 1)
    scale = 1000 / num_timesteps
    return np.linspace(scale * 0.0001, scale * 0.02, num_timesteps, dtype=np.float64)


def space_timesteps(num_timesteps: int, section_counts: str | int | list[int]) -> list[int]:
    """The timesteps of the original process that a respaced process keeps (guided-diffusion rule).

    The process is cut into len(section_counts) equal sections; section i keeps section_counts[i]
    steps at a fractional stride (size - 1) / (count - 1), each rounded with Python's round() of a
    running float sum. "250" over 1000 steps therefore keeps round(k * 999 / 249), k = 0..249:
    0, 4, 8, 12, ..., 498, 502, ..., 999 (strides of 4 and, three times, 5), not the multiples of 4.
    "ddimN" takes the integer stride that gives exactly N steps.

    Args:
        num_timesteps: length of the original process.
        section_counts: "250", "10,15,20", "ddim50", an int or a list of ints.

    Returns:
        the kept timesteps, sorted ascending.

    Shapes:
        -> list of length sum(section_counts).
    """
    num_timesteps = _check_count("num_timesteps", num_timesteps, 1)
    if isinstance(section_counts, str):
        if section_counts.startswith("ddim"):
            desired = int(section_counts[len("ddim") :])
            for stride in range(1, num_timesteps):
                if len(range(0, num_timesteps, stride)) == desired:
                    return list(range(0, num_timesteps, stride))
            raise ValueError(f"cannot create exactly {desired} steps with an integer stride")
        section_counts = [int(x) for x in section_counts.split(",")]
    elif isinstance(section_counts, Integral):
        section_counts = [int(section_counts)]
    size_per, extra = divmod(num_timesteps, len(section_counts))
    start, kept = 0, []
    for i, count in enumerate(section_counts):
        size = size_per + (1 if i < extra else 0)
        if count < 1 or size < count:
            raise ValueError(f"cannot divide a section of {size} steps into {count}")
        stride = 1 if count <= 1 else (size - 1) / (count - 1)
        position = 0.0  # running float sum, as in the official loop (rounding may depend on it)
        for _ in range(count):
            kept.append(start + round(position))
            position += stride
        start += size
    return sorted(set(kept))


@dataclass(frozen=True, eq=False)
class DDPMCoefficients:
    """Per-step float64 coefficients of a (respaced) DDPM, indexed by the respaced step 0..S-1.

    `timestep_map[i]` is the original timestep that step i stands for: the model is fed
    timestep_map[i], never i (respace.py `_WrappedModel`).
    """

    betas: np.ndarray
    log_betas: np.ndarray
    alphas_cumprod: np.ndarray
    alphas_cumprod_prev: np.ndarray
    sqrt_recip_alphas_cumprod: np.ndarray
    sqrt_recipm1_alphas_cumprod: np.ndarray
    posterior_variance: np.ndarray
    posterior_log_variance_clipped: np.ndarray
    posterior_mean_coef1: np.ndarray
    posterior_mean_coef2: np.ndarray
    timestep_map: np.ndarray


def ddpm_coefficients(
    betas: np.ndarray, timestep_map: np.ndarray | None = None
) -> DDPMCoefficients:
    """The posterior q(x_{t-1} | x_t, x_0) coefficients of a beta schedule (GaussianDiffusion).

    Args:
        betas: float64 betas, all in (0, 1].
        timestep_map: original timestep of each step (defaults to 0..S-1, no respacing).

    Returns:
        DDPMCoefficients, every array float64 of shape (S,).

    Shapes:
        betas (S,) -> arrays (S,).
    """
    betas = np.asarray(betas, dtype=np.float64)
    if betas.ndim != 1 or betas.size == 0 or not ((betas > 0).all() and (betas <= 1).all()):
        raise ValueError(f"betas: expected a non-empty 1-d array in (0, 1], got {betas!r}")
    alphas = 1.0 - betas
    alphas_cumprod = np.cumprod(alphas, axis=0)
    alphas_cumprod_prev = np.append(1.0, alphas_cumprod[:-1])
    posterior_variance = betas * (1.0 - alphas_cumprod_prev) / (1.0 - alphas_cumprod)
    # the posterior variance is 0 at step 0: its log is clipped to the value of step 1
    if len(posterior_variance) > 1:
        clipped = np.log(np.append(posterior_variance[1], posterior_variance[1:]))
    else:
        clipped = np.array([])
    if timestep_map is None:
        timestep_map = np.arange(len(betas))
    return DDPMCoefficients(
        betas=betas,
        log_betas=np.log(betas),
        alphas_cumprod=alphas_cumprod,
        alphas_cumprod_prev=alphas_cumprod_prev,
        sqrt_recip_alphas_cumprod=np.sqrt(1.0 / alphas_cumprod),
        sqrt_recipm1_alphas_cumprod=np.sqrt(1.0 / alphas_cumprod - 1),
        posterior_variance=posterior_variance,
        posterior_log_variance_clipped=clipped,
        posterior_mean_coef1=betas * np.sqrt(alphas_cumprod_prev) / (1.0 - alphas_cumprod),
        posterior_mean_coef2=(1.0 - alphas_cumprod_prev) * np.sqrt(alphas) / (1.0 - alphas_cumprod),
        timestep_map=np.asarray(timestep_map, dtype=np.int64),
    )


def respace_betas(betas: np.ndarray, use_timesteps: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Betas of the process that keeps only `use_timesteps` (SpacedDiffusion).

    new_beta_k = 1 - abar[t_k] / abar[t_{k-1}], so the respaced cumulative products equal the
    original ones at the kept timesteps.

    Args:
        betas: original float64 betas.
        use_timesteps: kept original timesteps.

    Returns:
        (new betas float64, timestep_map int64), both sorted by timestep.

    Shapes:
        betas (T,), use_timesteps (S,) -> (S,), (S,).
    """
    keep = set(int(t) for t in use_timesteps)
    alphas_cumprod = np.cumprod(1.0 - np.asarray(betas, dtype=np.float64), axis=0)
    last, new_betas, timestep_map = 1.0, [], []
    for i, abar in enumerate(alphas_cumprod):
        if i in keep:
            new_betas.append(1 - abar / last)
            last = abar
            timestep_map.append(i)
    return np.array(new_betas), np.array(timestep_map, dtype=np.int64)


def spaced_ddpm(
    timestep_respacing: str | int = "250",
    diffusion_steps: int = 1000,
    noise_schedule: str = "linear",
) -> DDPMCoefficients:
    """The coefficients of DiT's `create_diffusion(timestep_respacing)`.

    Args:
        timestep_respacing: section counts as in `space_timesteps` ("" or None: no respacing).
        diffusion_steps: length of the original process.
        noise_schedule: only "linear" (the schedule of every model of the paper).

    Returns:
        DDPMCoefficients of the respaced process, with its timestep_map.
    """
    if noise_schedule != "linear":
        raise ValueError(f"noise_schedule: expected 'linear', got {noise_schedule!r}")
    betas = linear_betas(diffusion_steps)
    if timestep_respacing is None or timestep_respacing == "":
        timestep_respacing = [diffusion_steps]
    new_betas, timestep_map = respace_betas(
        betas, space_timesteps(diffusion_steps, timestep_respacing)
    )
    return ddpm_coefficients(new_betas, timestep_map)


# ----------------------------------------------------------------------------- SiT / LightningDiT


def _float32_linspace(start: float, end: float, steps: int) -> np.ndarray:
    """torch.linspace in float32 on the CPU (as the official code builds it), held in float64."""
    return torch.linspace(start, end, steps, dtype=torch.float32).double().numpy()


def sit_sde_grid(num_steps: int = 250, last_step_size: float = 0.04) -> np.ndarray:
    """SiT's SDE grid: linspace(0, 1 - last_step_size, num_steps) in float32 (t = 0 is noise).

    Euler-Maruyama steps start at grid[:-1]; the last step (of size last_step_size) starts at
    grid[-1]. Velocity models on the linear path have t0 = 0 (sample_eps is 0 for them).

    Args:
        num_steps: `--num-sampling-steps` (250).
        last_step_size: 0.04 for last_step "Mean"; 0 when there is no last step.

    Returns:
        float32 grid values as float64.

    Shapes:
        -> (num_steps,).
    """
    num_steps = _check_count("num_steps", num_steps, 2)
    if not 0 <= last_step_size < 1:
        raise ValueError(f"last_step_size: expected a value in [0, 1), got {last_step_size!r}")
    return _float32_linspace(0.0, 1 - last_step_size, num_steps)


def timestep_shift(t: np.ndarray, shift: float) -> np.ndarray:
    """LightningDiT's timestep shift t' = shift t / (1 + (shift - 1) t), in float64.

    With shift < 1 the grid crowds toward t = 0 (noise); 0 and 1 stay fixed.

    Args:
        t: times in [0, 1].
        shift: the shift s > 0 (0.3 for LightningDiT-XL).

    Returns:
        shifted times, float64.

    Shapes:
        t (S,) -> (S,).
    """
    t = np.asarray(t, dtype=np.float64)
    return shift * t / (1 + (shift - 1) * t)


def flow_ode_grid(num_steps: int, shift: float = 0.0) -> np.ndarray:
    """SiT / LightningDiT ODE grid: float32 linspace(0, 1, num_steps), then the shift if shift > 0.

    The shift is computed as in LightningDiT's `transport/integrators.py`: float32 ops on each
    float32 grid point (numerator shift * t, denominator 1 + (shift - 1) * t).

    Args:
        num_steps: grid points (`num_sampling_steps`); the solver takes num_steps - 1 steps.
        shift: timestep shift (0 = none; 0.3 for LightningDiT-XL).

    Returns:
        float32 grid values as float64, from 0 (noise) to 1 (data).

    Shapes:
        -> (num_steps,).
    """
    num_steps = _check_count("num_steps", num_steps, 2)
    if not shift >= 0:
        raise ValueError(f"shift: expected a value >= 0 (0 = no shift), got {shift!r}")
    t = torch.linspace(0.0, 1.0, num_steps, dtype=torch.float32)
    if shift > 0:
        t = (shift * t) / (1 + (shift - 1) * t)
    return t.double().numpy()


# ----------------------------------------------------------------------------- REPA / MG


def repa_sde_grid(num_steps: int = 250, t_last: float = 0.04) -> np.ndarray:
    """REPA's Euler-Maruyama grid: linspace(1, t_last, num_steps) then 0, in float64 (t = 1 noise).

    num_steps - 1 stochastic steps go from grid[i] to grid[i + 1]; the last, deterministic mean
    step goes from t_last to 0.

    Args:
        num_steps: `--num-steps` (250).
        t_last: time of the last stochastic point (0.04; MG's sampler versions use 0.04 or 0.004).

    Returns:
        float64 grid.

    Shapes:
        -> (num_steps + 1,).
    """
    num_steps = _check_count("num_steps", num_steps, 2)
    if not 0 < t_last < 1:
        raise ValueError(f"t_last: expected a value in (0, 1), got {t_last!r}")
    t = torch.linspace(1.0, t_last, num_steps, dtype=torch.float64)
    return torch.cat([t, torch.tensor([0.0], dtype=torch.float64)]).numpy()


def repa_ode_grid(num_steps: int = 50) -> np.ndarray:
    """REPA's Euler ODE grid: linspace(1, 0, num_steps + 1) in float64 (t = 1 noise).

    Shapes:
        -> (num_steps + 1,).
    """
    num_steps = _check_count("num_steps", num_steps, 1)
    return torch.linspace(1.0, 0.0, num_steps + 1, dtype=torch.float64).numpy()
