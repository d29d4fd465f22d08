"""Classifier-free guidance as a wrapper around a row-wise callable (a model or a drift).

The official code (DiT/SiT/LightningDiT/MDT `forward_with_cfg`, REPA `samplers.py`) runs the
batch [x; x] with labels [y; null] and combines out = uncond + w (cond - uncond):
- DiT, SiT, MDT and LightningDiT combine only the first 3 channels (DiT's default, inherited by
  the others). Their `forward_with_cfg` returns 2N rows: the guided channels copied to both
  halves, every other channel as its own row produced it, so the conditional half, which the
  official samplers keep, holds the conditional output there. Here this is `guided_channels=3`,
  computed on the N conditional rows only; `guided_channels=None` guides every channel (REPA,
  diffusers, and MG's `forward_with_cfg`, which guides all `in_channels`).
- REPA guides only while guidance_low <= t <= guidance_high (0 <= t <= 0.7, t = 1 noise) and
  LightningDiT only while t >= cfg_interval_start (0.125, t = 0 noise): `interval=(low, high)`.
  Outside the interval the result is the conditional output, computed on the conditional rows only.
- MDT scales w with its power-cosine schedule of the DDPM timestep: `schedule="power_cosine"`.
Guidance is used only for scale > 1, as in every official sampler.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from numbers import Integral, Real

import torch
from torch import Tensor

SCHEDULES = ("constant", "power_cosine")
RowFn = Callable[..., Tensor]  # (x, t, y, c_fn) -> (N, C, ...), row i depends on row i only


@dataclass(frozen=True)
class Guidance:
    """Classifier-free guidance settings.

    Attributes:
        scale: guidance scale w; guidance is applied only when w > 1.
        guided_channels: guide channels [0, guided_channels) only (3 = the official DiT quirk);
            None guides all channels.
        interval: closed interval (low, high) of the sampler's time t where guidance is applied;
            None = every step.
        schedule: "constant" or "power_cosine" (MDT: w_t = 1 + (w - 1) s(t)).
        scale_pow: exponent of the power-cosine schedule (MDT's `scale_pow`, 4).
        diffusion_steps: DDPM length that the power-cosine schedule divides t by (1000).
        null_class: the unconditional label (num_classes; 1000 for the ImageNet models).
    """

    scale: float = 1.0
    guided_channels: int | None = None
    interval: tuple[float, float] | None = None
    schedule: str = "constant"
    scale_pow: float = 4.0
    diffusion_steps: int = 1000
    null_class: int = 1000

    @property
    def enabled(self) -> bool:
        """Whether the sampler runs the unconditional branch at all (scale > 1)."""
        return self.scale > 1.0


def validate_guidance(guidance: Guidance) -> None:
    """Raise ValueError for settings that no official sampler allows."""
    g = guidance
    if isinstance(g.scale, bool) or not isinstance(g.scale, Real) or not math.isfinite(g.scale):
        raise ValueError(f"guidance scale: expected a finite number >= 1, got {g.scale!r}")
    if g.scale < 1.0:
        raise ValueError(f"guidance scale: expected >= 1 (1 = no guidance), got {g.scale!r}")
    if g.guided_channels is not None and (
        isinstance(g.guided_channels, bool)
        or not isinstance(g.guided_channels, Integral)
        or g.guided_channels < 1
    ):
        raise ValueError(
            f"guided_channels: expected an integer >= 1 or None (all), got {g.guided_channels!r}"
        )
    if g.interval is not None and (len(g.interval) != 2 or not g.interval[0] <= g.interval[1]):
        raise ValueError(f"interval: expected (low, high) with low <= high, got {g.interval!r}")
    if g.schedule not in SCHEDULES:
        raise ValueError(f"guidance schedule: expected one of {SCHEDULES}, got {g.schedule!r}")
    if isinstance(g.null_class, bool) or not isinstance(g.null_class, Integral) or g.null_class < 0:
        raise ValueError(f"null_class: expected an integer >= 0, got {g.null_class!r}")


def power_cosine_scale(
    t: Tensor, scale: float, diffusion_steps: int = 1000, scale_pow: float = 4.0
) -> Tensor:
    """MDT's guidance scale per row: 1 + (w - 1) (1 - cos(pi (1 - t / T)^pow)) / 2.

    Computed with MDT's ops on the model's timestep tensor (float32 for an integer t), so the
    scale is 1 at t = T (noise) and w at t = 0.

    Args:
        t: original DDPM timesteps fed to the model (int64 or float).
        scale: guidance scale w.
        diffusion_steps: T (1000).
        scale_pow: pow (4).

    Returns:
        the per-row scale.

    Shapes:
        t (N,) -> (N,).
    """
    step = (1 - torch.cos(((1 - t / diffusion_steps) ** scale_pow) * math.pi)) * 1 / 2
    return (scale - 1) * step + 1


def guidance_active(guidance: Guidance, t: Tensor) -> bool:
    """Whether guidance applies at time t (the first row's time; all rows share it).

    The comparison runs in t's own dtype, as the official samplers compare (float64 for REPA,
    float32 for LightningDiT).
    """
    if not guidance.enabled:
        return False
    if guidance.interval is None:
        return True
    low, high = guidance.interval
    t0 = t.reshape(-1)[0]
    return bool((t0 >= low) & (t0 <= high))


def combine(
    cond: Tensor, uncond: Tensor, scale: float | Tensor, guided_channels: int | None
) -> Tensor:
    """uncond + scale (cond - uncond) on the guided channels; the other channels keep cond.

    Args:
        cond: conditional output.
        uncond: unconditional output.
        scale: a float, or a per-row tensor of shape (N,).
        guided_channels: number of leading channels to guide, None for all.

    Returns:
        the guided output.

    Shapes:
        cond, uncond (N, C, ...) -> (N, C, ...).
    """
    if isinstance(scale, Tensor):
        scale = scale.reshape(-1, *([1] * (cond.dim() - 1)))
    k = cond.shape[1] if guided_channels is None else guided_channels
    if k > cond.shape[1]:
        raise ValueError(f"guided_channels={k} exceeds the output's {cond.shape[1]} channels")
    if k == cond.shape[1]:
        return uncond + scale * (cond - uncond)
    guided = uncond[:, :k] + scale * (cond[:, :k] - uncond[:, :k])
    return torch.cat([guided, cond[:, k:]], dim=1)


def guided(fn: RowFn, guidance: Guidance) -> RowFn:
    """Wrap a row-wise callable (x, t, y, c_fn) -> out with classifier-free guidance.

    The returned callable takes (x, t, y, c_fn=None, active=None). When guidance applies it calls
    fn once on the batch [x; x], [t; t], [y; null] (so c_fn sees 2N rows, conditional rows
    first) and combines the halves; otherwise it calls fn(x, t, y, c_fn) on the N rows. `active`
    overrides the interval test (REPA's Heun step tests the interval at the step's start time).

    Args:
        fn: model or drift callable.
        guidance: the settings.

    Returns:
        the guided callable.

    Shapes:
        x (N, C, ...), t (N,), y (N,) -> (N, C_out, ...).
    """
    validate_guidance(guidance)

    def call(x: Tensor, t: Tensor, y: Tensor, c_fn=None, active: bool | None = None) -> Tensor:
        if active is None:
            active = guidance_active(guidance, t)
        if not (active and guidance.enabled):
            return fn(x, t, y, c_fn)
        null = torch.full_like(y, guidance.null_class)
        out = fn(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, null]), c_fn)
        cond, uncond = out.chunk(2, dim=0)
        scale = guidance.scale
        if guidance.schedule == "power_cosine":
            scale = power_cosine_scale(t, scale, guidance.diffusion_steps, guidance.scale_pow)
        return combine(cond, uncond, scale, guidance.guided_channels)

    return call
