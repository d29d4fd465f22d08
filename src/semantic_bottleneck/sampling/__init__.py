"""Samplers of the six model families, classifier-free guidance and the pruning hook on c.

A sampler is a function (model_fn, noise, labels, config, generator, progress, c_fn_at, bf16)
-> final latents, where model_fn(x, t, y, c_fn=None) is e.g. `zoo.denoiser(model)` and t is
what the official sampler feeds the model. `default_config(family)` gives each family's
headline settings, as the official sampling scripts run them:

| family | sampler | model time t, first .. last step |
|---|---|---|
| dit | DDPM 250, learned-range variance, CFG 1.5 on 3 channels | int 999 (noise) .. 0 |
| mdt, mdtv2 | DDPM 250, CFG 3.8 power-cosine (pow 4) on 3 channels | int 999 .. 0 |
| sit | Euler-Maruyama 0 -> 0.96 + mean step 0.04, CFG 1.5 on 3 channels | 0.0 .. 0.96 |
| sit, mode "ode" | Heun, 125 steps on linspace(0, 1, 126), CFG 1.5 on 3 channels | 0.0 .. 1 |
| lightningdit | Euler ODE, shift 0.3, CFG 6.7 on 3 of 32 channels for t >= 0.125 | 0.0 .. 1 |
| repa | Euler-Maruyama 1 -> 0.04 + mean step, CFG 1.8 on all channels for t <= 0.7 | 1.0 .. 0 |
| mg | as repa, without guidance | 1.0 .. 0 |
| xmdpt | DDIM 50 (eta 0), CFG 2.0 power-cosine (pow 0.01) on all channels (`xmdpt.py`) | int 999 .. 0 |

Typical paired run (baseline vs pruned share all noise):

    config = default_config("repa", null_class=num_classes)
    noise = sample_noise(shape, seeds); gens = sample_generators(seeds)
    hook = prune_hook(model.condition, y, initial_t(config), spec, num_steps(config),
                      null_class=config.guidance.null_class)
    x = sample(denoiser(model), noise, y, config, gens, c_fn_at=hook)
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from .common import CFnAt, Generators, ModelFn
from .ddpm import DDPMConfig, ddpm_sample, ddpm_schedule
from .flow import (
    FlowODEConfig,
    SiTSDEConfig,
    flow_ode_sample,
    flow_ode_steps,
    sit_sde_sample,
    sit_sde_steps,
)
from .guidance import Guidance, combine, guidance_active, guided, power_cosine_scale
from .labels import balanced_labels, sample_generators, sample_noise, sample_seeds
from .pruning import PruneHook, PruneSpec, make_masks, prune_hook, scheduled, select, validate
from .repa import REPAODEConfig, REPASDEConfig, repa_ode_sample, repa_sde_sample
from .schedules import flow_ode_grid, repa_sde_grid, sit_sde_grid
from .xmdpt import XMDPT_DDIM, DDIMConfig, ddim_sample

SamplerConfig = (
    DDPMConfig | SiTSDEConfig | FlowODEConfig | REPASDEConfig | REPAODEConfig | DDIMConfig
)

_SAMPLERS = {
    DDPMConfig: ddpm_sample,
    SiTSDEConfig: sit_sde_sample,
    FlowODEConfig: flow_ode_sample,
    REPASDEConfig: repa_sde_sample,
    REPAODEConfig: repa_ode_sample,
    DDIMConfig: ddim_sample,
}

_MDT = DDPMConfig(
    guidance=Guidance(scale=3.8, guided_channels=3, schedule="power_cosine", scale_pow=4.0)
)
_REPA_GUIDANCE = Guidance(scale=1.8, guided_channels=None, interval=(0.0, 0.7))
# family -> {mode: headline config}; the first mode is the family's default
_DEFAULTS: dict[str, dict[str, SamplerConfig]] = {
    "dit": {"ddpm": DDPMConfig()},
    "mdt": {"ddpm": _MDT},
    "mdtv2": {"ddpm": _MDT},
    "sit": {
        "sde": SiTSDEConfig(),
        # SiT issue #18: Heun, 125 steps (250 evaluations), CFG 1.5 -> 126 grid points
        "ode": FlowODEConfig(
            num_steps=126,
            method="heun2",
            timestep_shift=0.0,
            guidance=Guidance(scale=1.5, guided_channels=3),
        ),
    },
    "lightningdit": {"ode": FlowODEConfig()},
    "repa": {"sde": REPASDEConfig(), "ode": REPAODEConfig(guidance=_REPA_GUIDANCE)},
    "mg": {"sde": REPASDEConfig(guidance=Guidance()), "ode": REPAODEConfig(guidance=Guidance())},
    "xmdpt": {"ddim": XMDPT_DDIM},
}
_GUIDANCE_FIELDS = {f.name for f in dataclasses.fields(Guidance)}


def default_config(
    family: str,
    mode: str | None = None,
    num_steps: int | None = None,
    cfg_scale: float | None = None,
    **overrides,
) -> SamplerConfig:
    """The headline sampler config of a model family, with optional overrides.

    A model's own sampler is `generation.source.ModelSource.sampler_config()`, which calls this
    with the model's overrides (a checkpoint's registry entry, or its testbed definition).

    Args:
        family: dit, mdt, mdtv2, sit, lightningdit, repa or mg.
        mode: "ddpm", "sde" or "ode" where the family has several (default: the headline one).
        num_steps: sampler steps (the DDPM configs' `num_sampling_steps`, the flow configs'
            `num_steps`); None keeps the headline count.
        cfg_scale: guidance scale; None keeps the headline scale.
        **overrides: sampler fields (e.g. last_step_size=0.04) or guidance fields (e.g.
            scale=4.0, null_class=10, guided_channels=None, interval=(0.1, 1.0)).

    Returns:
        a frozen config dataclass.
    """
    if family not in _DEFAULTS:
        raise ValueError(f"unknown family {family!r}; expected one of {sorted(_DEFAULTS)}")
    modes = _DEFAULTS[family]
    mode = mode or next(iter(modes))
    if mode not in modes:
        raise ValueError(f"family {family!r} has modes {sorted(modes)}, got {mode!r}")
    config = modes[mode]
    if cfg_scale is not None:
        overrides["scale"] = cfg_scale
    if num_steps is not None:
        overrides["num_sampling_steps" if isinstance(config, DDPMConfig) else "num_steps"] = (
            num_steps
        )
    fields = {f.name for f in dataclasses.fields(config)}
    guidance_kw = {k: v for k, v in overrides.items() if k in _GUIDANCE_FIELDS and k not in fields}
    sampler_kw = {k: v for k, v in overrides.items() if k not in guidance_kw}
    unknown = set(sampler_kw) - fields
    if unknown:
        raise ValueError(
            f"unknown config fields {sorted(unknown)}; expected {sorted(fields | _GUIDANCE_FIELDS)}"
        )
    if guidance_kw:
        sampler_kw.setdefault("guidance", dataclasses.replace(config.guidance, **guidance_kw))
    return dataclasses.replace(config, **sampler_kw)


def _sampler(config: SamplerConfig):
    if type(config) not in _SAMPLERS:
        raise ValueError(
            f"config: expected one of {[c.__name__ for c in _SAMPLERS]}, "
            f"got {type(config).__name__}"
        )
    return _SAMPLERS[type(config)]


def num_steps(config: SamplerConfig) -> int:
    """Number of sampler steps (each calls the model; a Heun step calls it twice)."""
    _sampler(config)
    if isinstance(config, DDPMConfig):
        return len(ddpm_schedule(config).betas)
    if isinstance(config, SiTSDEConfig):
        return sit_sde_steps(config)
    if isinstance(config, FlowODEConfig):
        return flow_ode_steps(config)
    return config.num_steps


def initial_t(config: SamplerConfig) -> int | float:
    """The time the model is fed at step 0: int for DDPM (999), float otherwise (0.0 or 1.0)."""
    _sampler(config)
    if isinstance(config, DDPMConfig):
        return int(ddpm_schedule(config).timestep_map[-1])
    if isinstance(config, SiTSDEConfig):
        return float(
            sit_sde_grid(config.num_steps, config.last_step_size if config.last_step else 0.0)[0]
        )
    if isinstance(config, FlowODEConfig):
        return float(flow_ode_grid(config.num_steps, config.timestep_shift)[0])
    return 1.0


def model_times(config: SamplerConfig) -> list[float]:
    """The time t the model is fed at each model call of one sampler run, in order (a Heun step
    calls it twice). The sampler itself is run on a stub model that records t, so this is the
    grid the sampler uses by construction, not a copy of its formula.

    Returns:
        t per call (DDPM: the original integer timesteps, as floats).
    """
    seen: list[float] = []
    learned = isinstance(config, DDPMConfig) and config.model_var_type == "learned_range"

    def stub(x: Tensor, t: Tensor, y: Tensor, c_fn=None) -> Tensor:
        seen.append(float(t.reshape(-1)[0]))
        return torch.zeros(x.shape[0], x.shape[1] * (1 + learned), *x.shape[2:])

    unguided = dataclasses.replace(config, guidance=Guidance())  # one model call per step
    generator = torch.Generator().manual_seed(0)
    sample(stub, torch.zeros(1, 1, 2, 2), torch.zeros(1, dtype=torch.int64), unguided, generator)
    return seen


def sample(
    model_fn: ModelFn,
    noise: Tensor,
    labels: Tensor,
    config: SamplerConfig,
    generator: Generators = None,
    progress: bool = False,
    c_fn_at: CFnAt = None,
    bf16: bool = False,
) -> Tensor:
    """Run the sampler that `config` belongs to (see the module table).

    Shapes:
        noise (N, C, H, W), labels (N,) -> (N, C, H, W).
    """
    return _sampler(config)(model_fn, noise, labels, config, generator, progress, c_fn_at, bf16)


__all__ = [
    "DDIMConfig",
    "DDPMConfig",
    "FlowODEConfig",
    "Guidance",
    "PruneHook",
    "PruneSpec",
    "REPAODEConfig",
    "REPASDEConfig",
    "SiTSDEConfig",
    "balanced_labels",
    "combine",
    "ddim_sample",
    "ddpm_sample",
    "default_config",
    "flow_ode_sample",
    "guidance_active",
    "guided",
    "initial_t",
    "model_times",
    "make_masks",
    "num_steps",
    "power_cosine_scale",
    "prune_hook",
    "repa_ode_sample",
    "repa_sde_sample",
    "repa_sde_grid",
    "sample",
    "sample_generators",
    "sample_noise",
    "sample_seeds",
    "scheduled",
    "select",
    "sit_sde_sample",
    "validate",
]
