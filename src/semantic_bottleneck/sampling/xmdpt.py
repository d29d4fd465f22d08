"""X-MDPT's sampler: DDIM (eta 0) over 50 respaced steps, power-cosine guidance on the condition.

Matches trungpx/xmdpt @ 8397056 (file:line below), whose diffusion code is guided-diffusion's:
- `create_diffusion("50")` (infer_xmdpt.py:24, 48; masked_diffusion/__init__.py:10-45): linear
  betas 1e-4 .. 0.02 over 1000 steps (gaussian_diffusion.py:106-115), respaced by
  `space_timesteps(1000, "50")` (respace.py:12-62; `schedules.space_timesteps`), epsilon
  prediction, learned-range variance (learn_sigma=True), the model fed the ORIGINAL timestep
  (respace.py:116-128): 999 at the first, pure-noise step.
- `ddim_sample_loop(model.forward_with_cfg, z.shape, z, clip_denoised=False, ...)`
  (infer_xmdpt.py:102-104) with its default eta 0.0 (gaussian_diffusion.py:611): per step
  (gaussian_diffusion.py:513-560) x_0 = sqrt(1/abar) x - sqrt(1/abar - 1) eps, eps re-derived
  from that x_0, then x_prev = x_0 sqrt(abar_prev) + sqrt(1 - abar_prev - sigma^2) eps with
  sigma = eta sqrt((1 - abar_prev) / (1 - abar)) sqrt(1 - abar / abar_prev); coefficients are
  float64 arrays read out as float32 (`_extract_into_tensor`, :861-873), as here.
- Guidance (models.py:637-655, infer_xmdpt.py:25-26, 94): cfg_scale 2.0, scale_pow 0.01, one
  unconditional forward (the condition dropped, so c = T) and one conditional forward,
  combined on all 8 output channels with MDT's power-cosine weight
  w(t) = 1 + (2 - 1) (1 - cos(pi (1 - t / 1000)^0.01)) / 2 (1.989 at t = 999, 2 at t = 0).
  Here that is `guidance.guided` with `Guidance(schedule="power_cosine", guided_channels=None)`.
- No masking at inference (`enable_mask=False`, models.py:643-644); the model generates 256x256
  images from 4x32x32 latents, decoded as `vae.decode(z / 0.18215)` (infer_xmdpt.py:106) with
  the released decoder-fine-tuned AutoencoderKL (`model_zoo/diffuser_finetune_vae`, :50-51).

How the class-model machinery carries over. A sampler here takes integer "labels"; for X-MDPT
a row's label is the index of its condition in a batch of condition inputs (`condition_rows`),
and `NULL_ROW` is the dropped condition, the null class of the guidance. `xmdpt_denoiser` turns
the model and a batch of inputs into the project's (x, t, y, c_fn) callable, so the pruning hook
acts on X-MDPT's c exactly as on a class model's: masks chosen once per sample from c at the
initial step (t = 999), one set for the conditional rows and one for the unconditional ones
(c = T), zeroing at the steps of the spec's schedule.

One departure, for paired comparisons: the official draws z with `torch.randn` from the global
CUDA generator after `torch.manual_seed(0)` (infer_xmdpt.py:21, 92), interleaved with the VAE
posterior draws of the source images, so a sample depends on its batch. Here sample i's noise
comes from its own seed (`labels.sample_noise`); the baseline and a pruned run share it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from semantic_bottleneck.zoo import xmdpt as zoo_xmdpt

from .common import (
    CFn,
    CFnAt,
    Generators,
    ModelFn,
    check_inputs,
    randn_rows,
    steps_iter,
)
from .ddpm import DDPMConfig, _at, check_var_type, respaced_loop, split_output
from .guidance import Guidance
from .labels import sample_noise
from .pruning import ConditionFn, PruneHook, PruneSpec, prune_hook
from .schedules import DDPMCoefficients

# the label of a row whose condition is dropped (c = T); no batch of conditions reaches it
NULL_ROW = torch.iinfo(torch.int64).max
CFG_SCALE = 2.0  # infer_xmdpt.py:25
SCALE_POW = 0.01  # infer_xmdpt.py:26, passed as scale_pow at :94
NUM_STEPS = 50  # infer_xmdpt.py:24, create_diffusion(str(50)) at :48


def _xmdpt_guidance() -> Guidance:
    return Guidance(
        scale=CFG_SCALE,
        guided_channels=None,
        schedule="power_cosine",
        scale_pow=SCALE_POW,
        null_class=NULL_ROW,
    )


@dataclass(frozen=True)
class DDIMConfig(DDPMConfig):
    """DDIM over a respaced DDPM (guided-diffusion `ddim_sample_loop`); defaults: X-MDPT's.

    The process fields (respacing, schedule, variance type, clipping) are the DDPM config's, so
    `sampling.num_steps` and `sampling.initial_t` read a DDIM config as they read a DDPM one.

    Attributes:
        num_sampling_steps: timestep respacing (X-MDPT: "50", infer_xmdpt.py:24, 48).
        diffusion_steps, noise_schedule: the original process (1000, "linear").
        model_var_type: "learned_range" (X-MDPT's learn_sigma); DDIM discards the variance.
        clip_denoised: clamp the x_0 prediction (False, infer_xmdpt.py:103).
        guidance: X-MDPT's: 2.0, power-cosine with pow 0.01, all channels, null = NULL_ROW.
        eta: DDIM's stochasticity (0.0, gaussian_diffusion.py:611); eta > 0 draws noise.
    """

    num_sampling_steps: int | str = NUM_STEPS
    guidance: Guidance = field(default_factory=_xmdpt_guidance)
    eta: float = 0.0


XMDPT_DDIM = DDIMConfig()  # the headline config of the "xmdpt" family


def ddim_step(
    fn: ModelFn,
    x: Tensor,
    i: int,
    labels: Tensor,
    config: DDIMConfig,
    generator: Generators,
    c_fn: CFn,
    coef,
) -> Tensor:
    """One DDIM step x_t -> x_{t-1} at respaced step i (GaussianDiffusion.ddim_sample).

    Shapes:
        x (N, C, H, W), labels (N,) -> (N, C, H, W).
    """
    n, channels, device = x.shape[0], x.shape[1], x.device
    t_model = torch.full((n,), int(coef.timestep_map[i]), dtype=torch.int64, device=device)
    # DDIM does not use the variance half
    eps, _ = split_output(fn(x, t_model, labels, c_fn), channels, config.model_var_type)
    sqrt_recip = _at(coef.sqrt_recip_alphas_cumprod, i, device)
    sqrt_recipm1 = _at(coef.sqrt_recipm1_alphas_cumprod, i, device)
    pred_x0 = sqrt_recip * x - sqrt_recipm1 * eps
    if config.clip_denoised:
        pred_x0 = pred_x0.clamp(-1, 1)
    # eps re-derived from x_0, as the official step does (it differs from eps in the last bits)
    eps = (sqrt_recip * x - pred_x0) / sqrt_recipm1
    abar = _at(coef.alphas_cumprod, i, device)
    abar_prev = _at(coef.alphas_cumprod_prev, i, device)
    sigma = config.eta * torch.sqrt((1 - abar_prev) / (1 - abar)) * torch.sqrt(1 - abar / abar_prev)
    mean = pred_x0 * torch.sqrt(abar_prev) + torch.sqrt(1 - abar_prev - sigma**2) * eps
    # with eta = 0 the official noise term is exactly 0 (its draw never changes the result)
    if i == 0 or config.eta == 0:
        return mean
    return mean + sigma * randn_rows(generator, x.shape, x.dtype, device)


def ddim_sample(
    model_fn: ModelFn,
    noise: Tensor,
    labels: Tensor,
    config: DDIMConfig | None = None,
    generator: Generators = None,
    progress: bool = False,
    c_fn_at: CFnAt = None,
    bf16: bool = False,
) -> Tensor:
    """Sample with guided-diffusion's DDIM over a respaced process (`ddim_sample_loop`).

    Args:
        model_fn: (x, t, y, c_fn=None) -> epsilon (and variance) prediction; t is the original
            int64 timestep of each respaced step.
        noise: initial latents x_T.
        labels: labels of the rows (for X-MDPT: `condition_rows`).
        config: sampler settings (default: X-MDPT's headline).
        generator: needed only for eta > 0 (one generator, or one per sample).
        progress: show a tqdm bar.
        c_fn_at: step index (0 = first, noisiest step) -> c_fn passed to the model.
        bf16: run the model under bf16 autocast.

    Returns:
        the final latents x_0.

    Shapes:
        noise (N, C, H, W), labels (N,) -> (N, C, H, W).
    """
    config = config or XMDPT_DDIM
    if not isinstance(config, DDIMConfig):
        raise ValueError(f"config: expected a DDIMConfig, got {type(config).__name__}")
    check_var_type(config)
    if not 0 <= config.eta:
        raise ValueError(f"eta: expected a number >= 0, got {config.eta!r}")
    check_inputs(noise, labels, generator, stochastic=config.eta > 0)

    def step(fn: ModelFn, x: Tensor, i: int, coef: DDPMCoefficients, c_fn: CFn) -> Tensor:
        return ddim_step(fn, x, i, labels, config, generator, c_fn, coef)

    return respaced_loop(step, model_fn, noise, config, progress, c_fn_at, bf16, "DDIM")


# ----------------------------------------------------------------------------- X-MDPT adapter


def condition_rows(n: int, device: torch.device | str | None = None) -> Tensor:
    """The labels of n conditions: row i of the sampled batch reads condition i.

    Shapes: -> (n,) int64.
    """
    return torch.arange(n, dtype=torch.int64, device=device)


def _model_inputs(model: nn.Module, inputs: Mapping[str, Tensor]) -> dict[str, Tensor]:
    zoo_xmdpt.check_inputs(inputs)
    param = model.pos_embed
    return {name: inputs[name].to(param.device, param.dtype) for name in zoo_xmdpt.INPUTS}


def _autocast(model: nn.Module, device: torch.device):
    """The model's own autocast (bf16 on CUDA when `official_autocast`), so that c computed
    outside a forward is the c the forward computes."""
    enabled = getattr(model, "official_autocast", False) and device.type == "cuda"
    return torch.autocast("cuda", torch.bfloat16, enabled=enabled)


def _groups(rows: Tensor) -> list[tuple[bool, Tensor]]:
    """(dropped, row positions) of the unconditional then the conditional rows, the official
    order of the two forwards (models.py:643-644); empty groups left out."""
    dropped = rows == NULL_ROW
    out = []
    for drop in (True, False):
        where = torch.nonzero(dropped == drop).flatten()
        if where.numel():
            out.append((drop, where))
    return out


def _sources(rows: Tensor) -> Tensor:
    # a dropped row's condition part is multiplied by 0 (models.py:599-602): any row will do
    return rows.masked_fill(rows == NULL_ROW, 0)


def _by_group(
    y: Tensor, args: Mapping[str, Tensor], run: Callable[[Tensor, list[Tensor], float], Tensor]
) -> Tensor:
    """`run(where, condition inputs of those rows, drop_prob)` for the unconditional then the
    conditional rows of y (`_groups`), the results put back in y's row order.

    Shapes: y (B,) -> (B, ...) as each result.
    """
    source = _sources(y)
    parts = []
    for drop, where in _groups(y):
        rows = source[where]
        inputs = [args[name][rows] for name in zoo_xmdpt.INPUTS]
        parts.append((where, run(where, inputs, 1.0 if drop else 0.0)))
    result = parts[0][1].new_empty((len(y), *parts[0][1].shape[1:]))
    for where, out in parts:
        result[where] = out
    return result


def _placed(c_fn: CFn, where: Tensor, total: int) -> CFn:
    """c_fn of the whole batch as seen from one group: the group's c is put at its rows of a
    `total`-row batch (zeros elsewhere), c_fn applied, the group's rows taken back. The hooks of
    this project act row by row, so each row gets what it would get in one batched call."""
    if c_fn is None:
        return None
    if where.numel() == total and bool((where == torch.arange(total, device=where.device)).all()):
        return c_fn

    def call(c: Tensor) -> Tensor:
        full = c.new_zeros((total, *c.shape[1:]))
        full[where] = c
        return c_fn(full)[where]

    return call


def xmdpt_denoiser(model: nn.Module, inputs: Mapping[str, Tensor]) -> ModelFn:
    """X-MDPT over a batch of conditions as the project's (x, t, y, c_fn=None) callable.

    Row j of a call reads condition y[j] of `inputs` (y from `condition_rows`), or none when
    y[j] is NULL_ROW (c = T). The unconditional and the conditional rows run as two forwards,
    as the official `forward_with_cfg` runs them, and c_fn sees the call's rows in their order
    ([conditional; null] in a guided call, as a PruneHook expects).

    Args:
        model: an X-MDPT in eval mode.
        inputs: condition inputs (`zoo.xmdpt.INPUTS`), N rows.

    Returns:
        the callable; its output has 2C channels (epsilon and the variance interpolation).

    Shapes:
        x (B, C, H, W), t (B,), y (B,) -> (B, 2C, H, W).
    """
    args = _model_inputs(model, inputs)

    def call(x: Tensor, t: Tensor, y: Tensor, c_fn: CFn = None) -> Tensor:
        def run(where: Tensor, inputs: list[Tensor], drop_prob: float) -> Tensor:
            c_fn_rows = _placed(c_fn, where, len(y))
            return model(x[where], t[where], *inputs, drop_prob=drop_prob, c_fn=c_fn_rows)

        return _by_group(y, args, run)

    return call


def xmdpt_condition_fn(model: nn.Module, inputs: Mapping[str, Tensor]) -> ConditionFn:
    """(t, y) -> c of X-MDPT over a batch of conditions, as its forward computes c (under the
    same autocast); NULL_ROW rows give c = T. For `pruning.prune_hook`.

    Shapes:
        t (B,), y (B,) -> (B, D).
    """
    args = _model_inputs(model, inputs)

    def condition(t: Tensor, y: Tensor) -> Tensor:
        def run(where: Tensor, inputs: list[Tensor], drop_prob: float) -> Tensor:
            return model.condition(t[where], *inputs, drop_prob=drop_prob)

        with _autocast(model, t.device):
            return _by_group(y, args, run)

    return condition


def xmdpt_prune_hook(
    model: nn.Module,
    inputs: Mapping[str, Tensor],
    spec: PruneSpec | None,
    config: DDIMConfig = XMDPT_DDIM,
) -> PruneHook:
    """The pruning hook of a batch of conditions: masks from c at the initial step (t = 999), for
    the conditional rows and, when guided, for the unconditional ones (c = T).

    Args:
        model: an X-MDPT in eval mode.
        inputs: the batch's condition inputs, N rows.
        spec: what to remove and when; None builds the empty hook (the baseline).
        config: the sampler config the hook is for.

    Shapes:
        inputs N rows -> hook with masks (N, D).
    """
    from . import initial_t, num_steps  # the package's readers of a config

    n = len(inputs["src_latent"])
    rows = condition_rows(n, model.pos_embed.device)
    null = config.guidance.null_class if config.guidance.enabled else None
    condition = xmdpt_condition_fn(model, inputs)
    return prune_hook(condition, rows, initial_t(config), spec, num_steps(config), null)


def sample_xmdpt(
    model: nn.Module,
    inputs: Mapping[str, Tensor],
    noise: Tensor,
    prune: PruneSpec | None = None,
    config: DDIMConfig = XMDPT_DDIM,
    progress: bool = False,
) -> tuple[Tensor, PruneHook]:
    """Latents of N conditions, with c pruned by `prune` (None: the official sampler).

    Args:
        model: an X-MDPT in eval mode.
        inputs: condition inputs, N rows (`zoo.xmdpt.read_inputs`).
        noise: x_T, on the model's device.
        prune: what to remove from c and when.
        config: sampler settings (default: the official ones).
        progress: tqdm bar over steps.

    Returns:
        (latents x_0, the hook used: its masks tell what was removed).

    Shapes:
        noise (N, 4, 32, 32) -> (N, 4, 32, 32).
    """
    hook = xmdpt_prune_hook(model, inputs, prune, config)
    rows = condition_rows(noise.shape[0], noise.device)
    fn = xmdpt_denoiser(model, inputs)
    return ddim_sample(fn, noise, rows, config, progress=progress, c_fn_at=hook), hook


def decode_latents(vae: nn.Module, latents: Tensor) -> Tensor:
    """`vae.decode(z / 0.18215)` (infer_xmdpt.py:106) mapped from [-1, 1] to [0, 1] as
    `save_image(normalize=True, value_range=(-1, 1))` maps it (clamp, then (x + 1) / 2).

    Shapes:
        (N, 4, h, w) -> (N, 3, 8h, 8w) float32 in [0, 1].
    """
    param = next(vae.parameters())
    with torch.no_grad():
        images = vae.decode(latents.to(param.device, param.dtype) / zoo_xmdpt.LATENT_SCALE).sample
    return (images.float().clamp(-1, 1) + 1) / 2


def generate_xmdpt(
    model: nn.Module,
    inputs: Mapping[str, Tensor] | str | Path,
    vae: nn.Module | str | Path,
    seeds: Sequence[int],
    *,
    prune: PruneSpec | None = None,
    config: DDIMConfig = XMDPT_DDIM,
    batch_size: int = 8,
    progress: bool = False,
    on_batch: Callable[[slice, Tensor], None] | None = None,
) -> tuple[Tensor, dict]:
    """Images of N conditions, sampled and decoded, with c pruned by `prune` (or not).

    Args:
        model: an X-MDPT in eval mode, on the device to sample on (`zoo.xmdpt.load_xmdpt`).
        inputs: condition inputs (N rows) or the path of a condition file (`read_inputs`).
        vae: a diffusers AutoencoderKL, or the path of its local folder (`zoo.xmdpt.load_vae`;
            the official `model_zoo/diffuser_finetune_vae`); moved to the model's device.
        seeds: one noise seed per condition (`labels.sample_seeds`); rows keep their noise in
            any batch, so a pruned run and the baseline with the same seeds are paired.
        prune: what to remove from c and when; None is the official sampler.
        config: sampler settings (default: the official ones).
        batch_size: conditions per sampler call (8 officially, infer_xmdpt.py:66).
        progress: tqdm bar over batches.
        on_batch: called with (rows, images) after each batch (e.g. to write a shard).

    Returns:
        (images, info): float32 RGB in [0, 1] on the CPU, and a JSON-serialisable dict with the
        settings and, per condition, `removed` (and `null_removed` when guided) coordinates.

    Shapes:
        inputs N rows, seeds (N,) -> images (N, 3, 256, 256) at the released size.
    """
    if isinstance(inputs, (str, Path)):
        inputs = zoo_xmdpt.read_inputs(inputs)
    zoo_xmdpt.check_inputs(inputs)
    n = len(inputs["src_latent"])
    seeds = list(seeds)
    if len(seeds) != n:
        raise ValueError(f"seeds: expected one per condition ({n}), got {len(seeds)}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected an integer >= 1, got {batch_size!r}")
    device = model.pos_embed.device
    if isinstance(vae, (str, Path)):
        vae = zoo_xmdpt.load_vae(vae)
    vae = vae.to(device)
    latent_shape = tuple(inputs["src_latent"].shape[1:])  # the source's latent: the target's
    images, removed, null_removed = [], [], []
    batches = [slice(i, i + batch_size) for i in range(0, n, batch_size)]
    for rows in steps_iter(batches, progress, len(batches), "X-MDPT"):
        batch = {name: v[rows] for name, v in inputs.items()}
        noise = sample_noise(latent_shape, seeds[rows], device=device)
        latents, hook = sample_xmdpt(model, batch, noise, prune, config)
        out = decode_latents(vae, latents).cpu()
        if on_batch is not None:
            on_batch(rows, out)
        images.append(out)
        removed += hook.removed.tolist()
        if hook.null_mask is not None:
            null_removed += hook.null_mask.sum(dim=1).tolist()
    info = {
        "family": "xmdpt",
        "sampler": type(config).__name__,
        "sampler_config": dataclasses.asdict(config),
        "prune": dataclasses.asdict(prune) if prune is not None else None,
        "seeds": seeds,
        "batch_size": batch_size,
        "num_samples": n,
        "removed": removed,
        "removed_mean": float(np.mean(removed)),
        "null_removed": null_removed or None,
    }
    return torch.cat(images), info
