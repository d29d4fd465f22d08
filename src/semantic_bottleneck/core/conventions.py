"""Conventions every layer shares: the two profiles, and the time conventions.

Time: what t a model's t_embedder receives, and which t is pure noise. The paper takes its
statistics of c at the initial step, the sampler's first, pure-noise step: DiT and MDT feed the
integer DDPM index (999 = noise), SiT and LightningDiT a float with 0 = noise, REPA and MG a
float with 1 = noise. `initial_t` is defined here once; a sampler's first t
(`sampling.initial_t(config)`) equals it for every model (tested).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

# testbed: small models trained here on the digits; paper: the official XL checkpoints
PROFILES = ("testbed", "paper")


def check_profile(profile: str) -> str:
    """`profile`, or a ValueError naming the valid profiles."""
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")
    return profile


@dataclass(frozen=True)
class TimeConvention:
    """How a family parameterises time.

    Attributes:
        name: "ddpm", "sit" or "repa".
        integer: t is an int64 DDPM index (else float32 in [0, 1]).
        initial_t: t at the initial (pure-noise) sampling step.
        data_t: t at the data end.
    """

    name: str
    integer: bool
    initial_t: float
    data_t: float

    def times(self, t: float, n: int, device=None) -> Tensor:
        """t repeated n times with the convention's dtype. Shapes: -> (n,)."""
        dtype = torch.int64 if self.integer else torch.float32
        return torch.full((n,), t, dtype=dtype, device=device)

    def initial(self, n: int, device=None) -> Tensor:
        """The initial (noise) t for n samples. Shapes: -> (n,)."""
        return self.times(self.initial_t, n, device)


CONVENTIONS = {
    "ddpm": TimeConvention("ddpm", integer=True, initial_t=999, data_t=0),
    "sit": TimeConvention("sit", integer=False, initial_t=0.0, data_t=1.0),
    "repa": TimeConvention("repa", integer=False, initial_t=1.0, data_t=0.0),
}


def convention(name: str) -> TimeConvention:
    """The named time convention; a clear error lists the valid names."""
    if name not in CONVENTIONS:
        raise ValueError(f"unknown time convention {name!r}; expected one of {sorted(CONVENTIONS)}")
    return CONVENTIONS[name]
