"""What every sampler shares: input checks, per-sample noise, the pruning hook, progress, bf16.

Randomness never comes from the global RNG. A sampler takes either one torch.Generator for the
whole batch or one generator per sample; with one per sample, row i's noise depends only on its
own generator, so a sample is the same whatever batch it is drawn in (see `labels.py`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch
from torch import Tensor

ModelFn = Callable[..., Tensor]  # (x, t, y, c_fn=None) -> prediction
CFn = Callable[[Tensor], Tensor] | None
CFnAt = Callable[[int], CFn] | None  # step index -> c_fn of that step (e.g. a PruneHook)
Generators = torch.Generator | Sequence[torch.Generator] | None


def check_inputs(noise: Tensor, labels: Tensor, generator: Generators, stochastic: bool) -> None:
    """Validate the sampler inputs before any model call.

    Args:
        noise: initial latents, floating point, (N, C, ...).
        labels: integer class labels (N,).
        generator: None, one generator, or N generators.
        stochastic: whether the sampler draws noise (then a generator is required).
    """
    if not isinstance(noise, Tensor) or not noise.is_floating_point() or noise.dim() < 2:
        got = tuple(noise.shape) if isinstance(noise, Tensor) else type(noise).__name__
        raise ValueError(f"noise: expected a floating tensor of shape (N, C, ...), got {got}")
    n = noise.shape[0]
    if (
        not isinstance(labels, Tensor)
        or labels.dim() != 1
        or labels.shape[0] != n
        or labels.is_floating_point()
        or labels.is_complex()
    ):
        got = tuple(labels.shape) if isinstance(labels, Tensor) else type(labels).__name__
        raise ValueError(f"labels: expected an integer tensor of shape ({n},), got {got}")
    if generator is None:
        if stochastic:
            raise ValueError(
                "generator: this sampler draws noise; pass a torch.Generator or one per sample "
                "(the global RNG is never used)"
            )
        return
    if isinstance(generator, torch.Generator):
        return
    gens = list(generator)
    if len(gens) != n or not all(isinstance(g, torch.Generator) for g in gens):
        raise ValueError(
            f"generator: expected a torch.Generator or a sequence of {n} generators (one per "
            f"sample), got {len(gens)} items"
        )


def randn_rows(
    generator: Generators, shape: Sequence[int], dtype: torch.dtype, device: torch.device
) -> Tensor:
    """Standard normal noise of `shape`; with one generator per sample, row i uses generator i.

    Each draw happens on its generator's device, then moves to `device`.

    Shapes:
        -> shape (N, ...).
    """
    if generator is None:
        raise ValueError("generator: required to draw noise (the global RNG is never used)")
    if isinstance(generator, torch.Generator):
        out = torch.randn(tuple(shape), generator=generator, dtype=dtype, device=generator.device)
        return out.to(device)
    rows = [
        torch.randn(tuple(shape[1:]), generator=g, dtype=dtype, device=g.device) for g in generator
    ]
    return torch.stack([r.to(device) for r in rows])


def check_hook(c_fn_at: CFnAt, steps: int, guided: bool = False) -> None:
    """Check a step hook before sampling: its step count, and null-row masks when guided.

    Args:
        c_fn_at: None or a callable step -> c_fn; a PruneHook also carries `steps` and
            `null_mask`, which must match the sampler.
        steps: the sampler's number of steps.
        guided: whether the sampler runs guided batches [conditional; null].
    """
    if c_fn_at is None:
        return
    if not callable(c_fn_at):
        raise ValueError(f"c_fn_at: expected a callable step -> c_fn, got {type(c_fn_at).__name__}")
    hook_steps = getattr(c_fn_at, "steps", None)
    if hook_steps is not None and hook_steps != steps:
        raise ValueError(
            f"c_fn_at was built for {hook_steps} steps but this sampler takes {steps} steps"
        )
    if guided and hasattr(c_fn_at, "null_mask") and c_fn_at.null_mask is None:
        raise ValueError(
            "c_fn_at has no null-class masks but the sampler uses guidance: build the hook with "
            "null_class=config.guidance.null_class"
        )


def c_fn_for(c_fn_at: CFnAt, step: int) -> CFn:
    """The c_fn of one step (None: the model's own c)."""
    return None if c_fn_at is None else c_fn_at(step)


def with_autocast(model_fn: ModelFn, bf16: bool) -> ModelFn:
    """The model call under bf16 autocast (output back in float32) when bf16 is set."""
    if not bf16:
        return model_fn

    def call(x: Tensor, t: Tensor, y: Tensor, c_fn: CFn = None) -> Tensor:
        with torch.autocast(device_type=x.device.type, dtype=torch.bfloat16):
            out = model_fn(x, t, y, c_fn=c_fn)
        return out.float()

    return call


def steps_iter(items: Iterable, progress: bool, total: int, desc: str) -> Iterable:
    """`items`, wrapped in a tqdm bar when progress is set."""
    if not progress:
        return items
    from tqdm import tqdm

    return tqdm(items, total=total, desc=desc)
