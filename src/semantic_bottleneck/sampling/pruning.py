"""The pruning operator P(c) of the paper (Sec. 5, Tables 2, 3, 6) as a sampler hook.

P(c) zeroes selected coordinates of the conditional vector c and changes nothing else:
- side "tail" removes |c_i| < tau, side "head" removes |c_i| > tau (Eq. (2); tau compared in
  float64, as `metrics.tail_mask` / `metrics.head_mask` do); or, with `count`, the `count`
  smallest (tail) / largest (head) |c_i| (ties broken by the lower index).
- The mask is chosen ONCE per sample from c at the sampler's initial step (the paper's
  "statistics at t0"): `make_masks(condition_fn, y, initial_t, spec)`, one row per sample, and
  one per null-class row of a guided batch.
- schedule "every" (t_i) prunes at every step, "initial" (t_0) only at the first step, "last_k"
  (t_{n-k,n}) only during the last k steps; the paper does not state k, so it is a parameter.
`PruneHook(step)` returns the c_fn a sampler passes to the model at that step: zeroing on a
scheduled step, the identity (c itself) otherwise. An empty selection returns c itself at every
step, so such a run equals the unpruned baseline bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from numbers import Integral, Real

import torch
from torch import Tensor

from .. import metrics

SIDES = ("tail", "head")
SCHEDULES = ("every", "initial", "last_k")
ConditionFn = Callable[[Tensor, Tensor], Tensor]  # (t, y) -> c, e.g. a zoo model's `condition`


@dataclass(frozen=True)
class PruneSpec:
    """Which coordinates of c to remove, and at which steps.

    Attributes:
        side: "tail" (small magnitudes) or "head" (large magnitudes).
        tau: threshold >= 0 (tail: |c_i| < tau, head: |c_i| > tau); exclusive with count.
        count: remove exactly this many coordinates per row instead of using tau.
        schedule: "every" (t_i), "initial" (t_0) or "last_k" (t_{n-k,n}).
        k: number of final steps for "last_k" (1 <= k <= steps); None otherwise.
    """

    side: str
    tau: float | None = None
    count: int | None = None
    schedule: str = "every"
    k: int | None = None


def validate(spec: PruneSpec, steps: int) -> None:
    """Raise ValueError, before any sampling, for a spec that cannot run with `steps` steps."""
    if not isinstance(spec, PruneSpec):
        raise ValueError(f"spec: expected a PruneSpec, got {type(spec).__name__}")
    if spec.side not in SIDES:
        raise ValueError(f"side: expected one of {SIDES}, got {spec.side!r}")
    if spec.schedule not in SCHEDULES:
        raise ValueError(f"schedule: expected one of {SCHEDULES}, got {spec.schedule!r}")
    if (spec.tau is None) == (spec.count is None):
        raise ValueError(
            f"give exactly one of tau and count, got tau={spec.tau!r}, count={spec.count!r}"
        )
    if spec.tau is not None:
        tau = spec.tau
        if isinstance(tau, bool) or not isinstance(tau, Real) or not math.isfinite(tau) or tau < 0:
            raise ValueError(f"tau: expected a finite number >= 0, got {tau!r}")
    if spec.count is not None and (
        isinstance(spec.count, bool) or not isinstance(spec.count, Integral) or spec.count < 0
    ):
        raise ValueError(f"count: expected an integer >= 0, got {spec.count!r}")
    if isinstance(steps, bool) or not isinstance(steps, Integral) or steps < 1:
        raise ValueError(f"steps: expected an integer >= 1, got {steps!r}")
    if spec.schedule == "last_k":
        k = spec.k
        if isinstance(k, bool) or not isinstance(k, Integral) or not 1 <= k <= steps:
            raise ValueError(f"k: schedule 'last_k' needs an integer 1 <= k <= {steps}, got {k!r}")
    elif spec.k is not None:
        raise ValueError(
            f"k: only schedule 'last_k' takes k, got k={spec.k!r} with {spec.schedule!r}"
        )


def scheduled(spec: PruneSpec, step: int, steps: int) -> bool:
    """Whether step (0 = the initial, noisiest step) of `steps` is pruned."""
    if spec.schedule == "every":
        return True
    if spec.schedule == "initial":
        return step == 0
    return step >= steps - spec.k


def select(c: Tensor, spec: PruneSpec) -> Tensor:
    """The coordinates of each row of c that `spec` removes.

    Args:
        c: conditional vectors.
        spec: side and tau or count.

    Returns:
        Bool mask, True = removed, on c's device.

    Shapes:
        c (N, d) -> (N, d).
    """
    if c.dim() != 2:
        raise ValueError(f"c: expected an (N, d) tensor, got shape {tuple(c.shape)}")
    if spec.tau is not None:
        side_mask = metrics.tail_mask if spec.side == "tail" else metrics.head_mask
        return side_mask(c, spec.tau).bool()
    d = c.shape[1]
    if spec.count > d:
        raise ValueError(f"count: expected 0 <= count <= d = {d}, got {spec.count}")
    magnitude = c.detach().abs().double()
    order = torch.argsort(magnitude, dim=1, descending=spec.side == "head", stable=True)
    mask = torch.zeros_like(magnitude, dtype=torch.bool)
    return mask.scatter_(1, order[:, : spec.count], True)


def initial_times(initial_t: int | float, n: int, device: torch.device) -> Tensor:
    """The model's time tensor at the initial step: int64 for an int (DDPM), else float32."""
    dtype = torch.int64 if isinstance(initial_t, Integral) else torch.float32
    return torch.full((n,), initial_t, dtype=dtype, device=device)


def make_masks(
    condition_fn: ConditionFn, y: Tensor, initial_t: int | float, spec: PruneSpec | None
) -> Tensor:
    """Per-row pruning masks from c = condition_fn(t0, y) at the sampler's initial time.

    Args:
        condition_fn: (t, y) -> c, e.g. `model.condition` of a zoo model in eval mode.
        y: labels of the rows (null-class rows included, for a guided batch).
        initial_t: the model's time at step 0 (DiT/MDT 999, SiT/LightningDiT 0.0, REPA/MG 1.0).
        spec: what to remove; None removes nothing.

    Returns:
        Bool mask, True = removed.

    Shapes:
        y (N,) -> (N, d).
    """
    with torch.no_grad():
        c = condition_fn(initial_times(initial_t, y.shape[0], y.device), y)
    if spec is None:
        return torch.zeros(c.shape, dtype=torch.bool, device=c.device)
    return select(c, spec)


def zero_coordinates(c: Tensor, mask: Tensor) -> Tensor:
    """P(c): the masked coordinates set to 0, every other coordinate bit-identical.

    Shapes:
        c (N, d), mask (N, d) -> (N, d).
    """
    return c.masked_fill(mask.to(c.device), 0)


class PruneHook:
    """Step-wise c_fn for a sampler's `c_fn_at`: hook(step) -> c_fn.

    A c_fn receives c of the N conditional rows, or of 2N rows [conditional; null] in a guided
    call; the null rows use `null_mask` (required then).

    Args:
        spec: the validated spec.
        steps: the sampler's number of steps.
        mask: Bool (N, d) masks of the conditional rows.
        null_mask: Bool (N, d) masks of the null-class rows, for guided sampling.
    """

    def __init__(self, spec: PruneSpec, steps: int, mask: Tensor, null_mask: Tensor | None = None):
        validate(spec, steps)
        if null_mask is not None and null_mask.shape != mask.shape:
            raise ValueError(
                f"null_mask: expected shape {tuple(mask.shape)}, got {tuple(null_mask.shape)}"
            )
        self.spec, self.steps, self.mask, self.null_mask = spec, steps, mask, null_mask
        both = mask if null_mask is None else torch.cat([mask, null_mask])
        self._masks = {len(mask): (mask, bool(mask.any()))}
        if null_mask is not None:
            self._masks[2 * len(mask)] = (both, bool(both.any()))

    def _prune(self, c: Tensor) -> Tensor:
        if c.shape[0] not in self._masks:
            raise ValueError(
                f"c has {c.shape[0]} rows; the masks cover {sorted(self._masks)} rows "
                f"(a guided batch needs null_mask)"
            )
        mask, any_removed = self._masks[c.shape[0]]
        return zero_coordinates(c, mask) if any_removed else c

    def __call__(self, step: int):
        """The c_fn of `step`: pruning when scheduled, identity otherwise."""
        if scheduled(self.spec, step, self.steps):
            return self._prune
        return _identity

    @property
    def removed(self) -> Tensor:
        """Removed coordinates per conditional row, (N,) int64."""
        return self.mask.sum(dim=1)

    def report(self) -> dict:
        """Removed count per row and its mean (conditional rows; null rows listed apart)."""
        out = {
            "side": self.spec.side,
            "tau": self.spec.tau,
            "count": self.spec.count,
            "schedule": self.spec.schedule,
            "k": self.spec.k,
            "steps": self.steps,
            "removed_per_row": self.removed.tolist(),
            "removed_mean": float(self.removed.double().mean()),
        }
        if self.null_mask is not None:
            out["null_removed_per_row"] = self.null_mask.sum(dim=1).tolist()
        return out


def _identity(c: Tensor) -> Tensor:
    return c


def prune_hook(
    condition_fn: ConditionFn,
    y: Tensor,
    initial_t: int | float,
    spec: PruneSpec | None,
    steps: int,
    null_class: int | None = None,
) -> PruneHook:
    """Validate `spec`, then build the hook with masks from c at the initial step.

    Args:
        condition_fn: (t, y) -> c of the model being sampled.
        y: class labels of the samples.
        initial_t: the model's time at the sampler's step 0 (see `sampling.initial_time`).
        spec: what to remove and when; None builds an empty hook (the baseline).
        steps: the sampler's number of steps (see `sampling.num_steps`).
        null_class: the null label for guided sampling (masks of the null rows), or None.

    Returns:
        the PruneHook.

    Shapes:
        y (N,) -> hook with masks (N, d).
    """
    if spec is not None:
        validate(spec, steps)  # before any model call
    empty = PruneSpec(side="tail", count=0)
    mask = make_masks(condition_fn, y, initial_t, spec)
    null_mask = None
    if null_class is not None:
        null_mask = make_masks(condition_fn, torch.full_like(y, null_class), initial_t, spec)
    return PruneHook(spec if spec is not None else empty, steps, mask, null_mask)
