"""The pruning operator P(c) of the paper (Sec. 5, Tables 2, 3, 6) as a sampler hook.

P(c) zeroes selected coordinates of the conditional vector c and changes nothing else:
- side "tail" removes |c_i| < tau, side "head" removes |c_i| > tau (Eq. (2); tau compared in
  float64, as `metrics.tail_mask` / `metrics.head_mask` do); or, with `count`, the `count`
  smallest (tail) / largest (head) |c_i| (ties broken by the lower index).
- The mask is chosen ONCE per sample from c at the sampler's initial step (the paper's
  "statistics at t0"): `make_masks(condition_fn, y, initial_t, spec)`, one row per sample, and
  one per null-class row of a guided batch.
- schedule "every" (t_i) prunes at every step, "initial" (t_0) only at the first step, "last_k"
  (t_{n-k,n}) only during the last k steps (the paper does not state k, so it is a parameter),
  "window" only at the steps start <= step < stop (where along the trajectory pruning acts).
`PruneHook(step)` returns the c_fn a sampler passes to the model at that step: zeroing on a
scheduled step, the identity (c itself) otherwise. An empty selection returns c itself at every
step, so such a run equals the unpruned baseline bit for bit.

The controls, each a PruneSpec option that changes one thing against the paper's operator:
- select "random": per row as many coordinates as the magnitude rule removes, but the first ones
  of a random permutation of the d coordinates (seeded by `draw`, the same for every row);
- select "variance": as many coordinates, ranked by their variance across the classes instead of
  by |c_i| (head: the largest variances, tail: the smallest);
- select "all": every coordinate of c (tau and count unused);
- replace "mean": the removed coordinates take their mean over the classes instead of 0.
The class statistics are those of c at the initial step over the labels 0..classes-1. For c =
T(t) + Y(y), as in every model here, c_y - mean_y' c_y' = Y(y) - mean_y' Y(y') does not depend on
t, so the class mean at any step is c(t, y) - (c(t0, y) - mean_y' c(t0, y')): the hook keeps that
offset per row and subtracts it on the removed coordinates.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from numbers import Integral, Real

import torch
from torch import Tensor

from semantic_bottleneck.core import metrics

SIDES = ("tail", "head")
SCHEDULES = ("every", "initial", "last_k", "window")
SELECTIONS = ("magnitude", "random", "variance", "all")
REPLACEMENTS = ("zero", "mean")
ConditionFn = Callable[[Tensor, Tensor], Tensor]  # (t, y) -> c, e.g. a zoo model's `condition`


@dataclass(frozen=True)
class PruneSpec:
    """Which coordinates of c to remove, and at which steps.

    Attributes:
        side: "tail" (small magnitudes) or "head" (large magnitudes).
        tau: threshold >= 0 (tail: |c_i| < tau, head: |c_i| > tau); exclusive with count.
        count: remove exactly this many coordinates per row instead of using tau.
        schedule: "every" (t_i), "initial" (t_0), "last_k" (t_{n-k,n}) or "window".
        k: number of final steps for "last_k" (1 <= k <= steps); None otherwise.
        select: "magnitude" (the paper's rule) or a control: "random", "variance", "all".
        replace: "zero" (the paper's P(c)) or "mean" (the class mean of each removed coordinate).
        draw: seed of the random permutation of select "random" (0 otherwise).
        classes: the labels 0..classes-1 whose c gives the variance (select "variance") and the
            mean (replace "mean"); None otherwise.
        window: (start, stop) of schedule "window": steps start <= step < stop; None otherwise.
    """

    side: str
    tau: float | None = None
    count: int | None = None
    schedule: str = "every"
    k: int | None = None
    select: str = "magnitude"
    replace: str = "zero"
    draw: int = 0
    classes: int | None = None
    window: tuple[int, int] | None = None


class PruneSpecError(ValueError):
    """A PruneSpec setting that cannot run.

    Attributes:
        template: the message with each setting at fault written `{field}`, so that a caller can
            name the settings its own way (the command line: by their flags, see `render`).
        fields: those settings ('side', 'tau', 'count', 'schedule', 'k', 'steps', 'spec' or a
            control's field: 'select', 'replace', 'draw', 'classes', 'window').
    """

    def __init__(self, template: str, *fields: str):
        self.template, self.fields = template, fields
        super().__init__(self.render())

    def render(self, names: Mapping[str, str] | None = None) -> str:
        """The message with each field called `names[field]` (default: its own name)."""
        names = names or {}
        return self.template.format_map({f: names.get(f, f) for f in self.fields})


def _shown(value: object) -> str:
    # values go into a format template: braces in their repr must stay literal
    return repr(value).replace("{", "{{").replace("}", "}}")


def _is_int(value: object) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def check_settings(
    tau: float | None = None,
    count: int | None = None,
    schedule: str = "every",
    k: int | None = None,
) -> None:
    """Raise PruneSpecError for settings that cannot run: each value for itself, then together.

    The rules of `check_spec` but those on `side` and on giving neither tau nor count, so that a
    caller can check the settings it was given before it has a side.

    Args:
        tau, count, schedule, k: as in PruneSpec (None = not given).
    """
    if tau is not None and (
        isinstance(tau, bool) or not isinstance(tau, Real) or not math.isfinite(tau) or tau < 0
    ):
        raise PruneSpecError(f"{{tau}}: expected a finite number >= 0, got {_shown(tau)}", "tau")
    if count is not None and (not _is_int(count) or count < 0):
        raise PruneSpecError(f"{{count}}: expected an integer >= 0, got {_shown(count)}", "count")
    if schedule not in SCHEDULES:
        raise PruneSpecError(
            f"{{schedule}}: expected one of {SCHEDULES}, got {_shown(schedule)}", "schedule"
        )
    if k is not None and (not _is_int(k) or k < 1):
        raise PruneSpecError(f"{{k}}: expected an integer >= 1, got {_shown(k)}", "k")
    if tau is not None and count is not None:
        raise PruneSpecError(
            f"give exactly one of {{tau}} and {{count}}, got {{tau}} {_shown(tau)} and "
            f"{{count}} {_shown(count)}",
            "tau",
            "count",
        )
    if schedule == "last_k" and k is None:
        raise PruneSpecError(
            "{k}: {schedule} 'last_k' needs an integer k >= 1, got none", "k", "schedule"
        )
    if schedule != "last_k" and k is not None:
        raise PruneSpecError(
            f"{{k}}: only {{schedule}} 'last_k' takes it, got {_shown(k)} with {{schedule}} "
            f"{_shown(schedule)}",
            "k",
            "schedule",
        )


def check_controls(spec: PruneSpec) -> None:
    """Raise PruneSpecError for control settings that cannot run (select, replace, draw, classes,
    window), each with the setting it needs."""
    if spec.select not in SELECTIONS:
        raise PruneSpecError(
            f"{{select}}: expected one of {SELECTIONS}, got {_shown(spec.select)}", "select"
        )
    if spec.replace not in REPLACEMENTS:
        raise PruneSpecError(
            f"{{replace}}: expected one of {REPLACEMENTS}, got {_shown(spec.replace)}", "replace"
        )
    if not _is_int(spec.draw) or spec.draw < 0:
        raise PruneSpecError(f"{{draw}}: expected an integer >= 0, got {_shown(spec.draw)}", "draw")
    if spec.draw and spec.select != "random":
        raise PruneSpecError(
            f"{{draw}}: only {{select}} 'random' takes it, got {spec.draw}", "draw", "select"
        )
    needs_classes = spec.select == "variance" or spec.replace == "mean"
    if needs_classes and (not _is_int(spec.classes) or spec.classes < 2):
        raise PruneSpecError(
            f"{{classes}}: {{select}} 'variance' and {{replace}} 'mean' need an integer >= 2, "
            f"got {_shown(spec.classes)}",
            "classes",
            "select",
            "replace",
        )
    if not needs_classes and spec.classes is not None:
        raise PruneSpecError(
            f"{{classes}}: only {{select}} 'variance' or {{replace}} 'mean' take it, got "
            f"{_shown(spec.classes)}",
            "classes",
            "select",
            "replace",
        )
    if spec.schedule == "window":
        w = spec.window
        if not (
            isinstance(w, tuple | list)
            and len(w) == 2
            and all(_is_int(v) for v in w)
            and 0 <= w[0] < w[1]
        ):
            raise PruneSpecError(
                f"{{window}}: {{schedule}} 'window' needs (start, stop) integers with "
                f"0 <= start < stop, got {_shown(w)}",
                "window",
                "schedule",
            )
    elif spec.window is not None:
        raise PruneSpecError(
            f"{{window}}: only {{schedule}} 'window' takes it, got {_shown(spec.window)}",
            "window",
            "schedule",
        )


def check_spec(spec: PruneSpec) -> None:
    """Raise PruneSpecError for a spec that cannot run whatever the sampler: every rule of
    `validate` but k, window <= steps (for a caller that has no sampler yet)."""
    if not isinstance(spec, PruneSpec):
        raise PruneSpecError(f"{{spec}}: expected a PruneSpec, got {type(spec).__name__}", "spec")
    if spec.side not in SIDES:
        raise PruneSpecError(f"{{side}}: expected one of {SIDES}, got {_shown(spec.side)}", "side")
    check_settings(spec.tau, spec.count, spec.schedule, spec.k)
    check_controls(spec)
    if spec.select == "all":
        if spec.tau is not None or spec.count is not None:
            raise PruneSpecError(
                "{select} 'all' removes every coordinate: give neither {tau} nor {count}",
                "select",
                "tau",
                "count",
            )
    elif spec.tau is None and spec.count is None:
        raise PruneSpecError("give exactly one of {tau} and {count}, got neither", "tau", "count")


def validate(spec: PruneSpec, steps: int) -> None:
    """Raise PruneSpecError (a ValueError), before any sampling, for a spec that cannot run with
    `steps` steps."""
    check_spec(spec)
    if not _is_int(steps) or steps < 1:
        raise PruneSpecError(f"{{steps}}: expected an integer >= 1, got {_shown(steps)}", "steps")
    if spec.schedule == "last_k" and spec.k > steps:
        raise PruneSpecError(
            f"{{k}}: {{schedule}} 'last_k' needs 1 <= k <= {{steps}} = {steps}, got {spec.k}",
            "k",
            "schedule",
            "steps",
        )
    if spec.schedule == "window" and spec.window[1] > steps:
        raise PruneSpecError(
            f"{{window}}: {{schedule}} 'window' needs stop <= {{steps}} = {steps}, got "
            f"{_shown(tuple(spec.window))}",
            "window",
            "schedule",
            "steps",
        )


def scheduled(spec: PruneSpec, step: int, steps: int) -> bool:
    """Whether step (0 = the initial, noisiest step) of `steps` is pruned."""
    if spec.schedule == "every":
        return True
    if spec.schedule == "initial":
        return step == 0
    if spec.schedule == "window":
        return spec.window[0] <= step < spec.window[1]
    return step >= steps - spec.k


def select(c: Tensor, spec: PruneSpec, class_c: Tensor | None = None) -> Tensor:
    """The coordinates of each row of c that `spec` removes.

    Args:
        c: conditional vectors.
        spec: side and tau or count, and the selection (magnitude or a control).
        class_c: c of every class (select "variance" ranks the coordinates by its variance).

    Returns:
        Bool mask, True = removed, on c's device.

    Shapes:
        c (N, d), class_c (K, d) -> (N, d).
    """
    if c.dim() != 2:
        raise ValueError(f"c: expected an (N, d) tensor, got shape {tuple(c.shape)}")
    if spec.select == "all":
        return torch.ones(c.shape, dtype=torch.bool, device=c.device)
    by_magnitude = _magnitude_select(c, spec)
    if spec.select == "magnitude":
        return by_magnitude
    d = c.shape[1]
    if spec.select == "random":
        order = torch.randperm(d, generator=torch.Generator().manual_seed(spec.draw))
    else:  # "variance"
        if class_c is None or class_c.dim() != 2 or class_c.shape[1] != d:
            raise ValueError(f"class_c: expected (K, {d}) c of the classes for select 'variance'")
        variance = class_c.detach().double().var(dim=0).cpu()
        order = torch.argsort(variance, descending=spec.side == "head", stable=True)
    return first_in_order(order.to(c.device), by_magnitude.sum(dim=1))


def first_in_order(order: Tensor, counts: Tensor) -> Tensor:
    """Per row, the first counts[r] coordinates of one ordering of the d coordinates.

    Shapes:
        order (d,) a permutation, counts (N,) -> bool (N, d).
    """
    rank = torch.empty_like(order)
    rank[order] = torch.arange(len(order), device=order.device)
    return rank[None, :] < counts[:, None]


def _magnitude_select(c: Tensor, spec: PruneSpec) -> Tensor:
    """The paper's rule: |c_i| against tau, or the `count` smallest/largest |c_i|. (N, d)."""
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


def _initial_c(condition_fn: ConditionFn, y: Tensor, initial_t: int | float) -> Tensor:
    with torch.no_grad():
        return condition_fn(initial_times(initial_t, y.shape[0], y.device), y)


def class_conditions(
    condition_fn: ConditionFn, initial_t: int | float, spec: PruneSpec | None, device
) -> Tensor | None:
    """c at the initial step of the labels 0..spec.classes-1, or None when spec needs none.

    Shapes: -> (spec.classes, d).
    """
    if spec is None or spec.classes is None:
        return None
    return _initial_c(condition_fn, torch.arange(spec.classes, device=device), initial_t)


def make_masks(
    condition_fn: ConditionFn,
    y: Tensor,
    initial_t: int | float,
    spec: PruneSpec | None,
    class_c: Tensor | None = None,
) -> Tensor:
    """Per-row pruning masks from c = condition_fn(t0, y) at the sampler's initial time.

    Args:
        condition_fn: (t, y) -> c, e.g. `model.condition` of a zoo model in eval mode.
        y: labels of the rows (null-class rows included, for a guided batch).
        initial_t: the model's time at step 0 (DiT/MDT 999, SiT/LightningDiT 0.0, REPA/MG 1.0).
        spec: what to remove; None removes nothing.
        class_c: c of the classes at the initial step (`class_conditions`), for select
            "variance"; computed here when needed and not given.

    Returns:
        Bool mask, True = removed.

    Shapes:
        y (N,) -> (N, d).
    """
    c = _initial_c(condition_fn, y, initial_t)
    if spec is None:
        return torch.zeros(c.shape, dtype=torch.bool, device=c.device)
    if class_c is None:
        class_c = class_conditions(condition_fn, initial_t, spec, y.device)
    return select(c, spec, class_c)


def mean_offsets(
    condition_fn: ConditionFn, y: Tensor, initial_t: int | float, class_c: Tensor
) -> Tensor:
    """c(t0, y) minus the class mean of c(t0): what replace "mean" subtracts on the removed
    coordinates (for c = T(t) + Y(y) the same at every t, see the module docstring).

    Shapes: y (N,), class_c (K, d) -> (N, d).
    """
    return _initial_c(condition_fn, y, initial_t) - class_c.mean(dim=0, keepdim=True)


def zero_coordinates(c: Tensor, mask: Tensor) -> Tensor:
    """P(c): the masked coordinates set to 0, every other coordinate bit-identical.

    Shapes:
        c (N, d), mask (N, d) -> (N, d).
    """
    return c.masked_fill(mask.to(c.device), 0)


def mean_coordinates(c: Tensor, mask: Tensor, offset: Tensor) -> Tensor:
    """The masked coordinates set to their class mean, c - offset; every other one bit-identical.

    Shapes:
        c (N, d), mask (N, d), offset (N, d) -> (N, d).
    """
    return torch.where(mask.to(c.device), c - offset.to(c.device, c.dtype), c)


class PruneHook:
    """Step-wise c_fn for a sampler's `c_fn_at`: hook(step) -> c_fn.

    A c_fn receives c of the N conditional rows, or of 2N rows [conditional; null] in a guided
    call; the null rows use `null_mask` (required then).

    Args:
        spec: the validated spec.
        steps: the sampler's number of steps.
        mask: Bool (N, d) masks of the conditional rows.
        null_mask: Bool (N, d) masks of the null-class rows, for guided sampling.
        offset: (N, d) `mean_offsets` of the conditional rows, for replace "mean".
        null_offset: (N, d) `mean_offsets` of the null-class rows, for replace "mean" guided.
    """

    def __init__(
        self,
        spec: PruneSpec,
        steps: int,
        mask: Tensor,
        null_mask: Tensor | None = None,
        offset: Tensor | None = None,
        null_offset: Tensor | None = None,
    ):
        validate(spec, steps)
        if null_mask is not None and null_mask.shape != mask.shape:
            raise ValueError(
                f"null_mask: expected shape {tuple(mask.shape)}, got {tuple(null_mask.shape)}"
            )
        if spec.replace == "mean" and (
            offset is None
            or offset.shape != mask.shape
            or (null_mask is not None and (null_offset is None or null_offset.shape != mask.shape))
        ):
            raise ValueError(
                f"replace 'mean': expected offset (and null_offset with null_mask) of shape "
                f"{tuple(mask.shape)}"
            )
        self.spec, self.steps, self.mask, self.null_mask = spec, steps, mask, null_mask
        both = mask if null_mask is None else torch.cat([mask, null_mask])
        self._masks = {len(mask): (mask, bool(mask.any()), offset)}
        if null_mask is not None:
            both_offset = None if offset is None else torch.cat([offset, null_offset])
            self._masks[2 * len(mask)] = (both, bool(both.any()), both_offset)
        self._removes = any(any_removed for _, any_removed, _ in self._masks.values())

    def _prune(self, c: Tensor) -> Tensor:
        if c.shape[0] not in self._masks:
            raise ValueError(
                f"c has {c.shape[0]} rows; the masks cover {sorted(self._masks)} rows "
                f"(a guided batch needs null_mask)"
            )
        mask, any_removed, offset = self._masks[c.shape[0]]
        if not any_removed:
            return c
        if self.spec.replace == "mean":
            return mean_coordinates(c, mask, offset)
        return zero_coordinates(c, mask)

    def __call__(self, step: int):
        """The c_fn of `step`: pruning when scheduled (and some coordinate is removed), identity
        otherwise (`unpruned` tells them apart)."""
        if self._removes and scheduled(self.spec, step, self.steps):
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
            "select": self.spec.select,
            "replace": self.spec.replace,
            "window": self.spec.window,
            "steps": self.steps,
            "removed_per_row": self.removed.tolist(),
            "removed_mean": float(self.removed.double().mean()),
        }
        if self.null_mask is not None:
            out["null_removed_per_row"] = self.null_mask.sum(dim=1).tolist()
        return out


def _identity(c: Tensor) -> Tensor:
    return c


def unpruned(c_fn) -> bool:
    """Whether a step's c_fn leaves c as the model computes it (None, or a hook's identity)."""
    return c_fn is None or c_fn is _identity


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
        initial_t: the model's time at the sampler's step 0 (see `sampling.initial_t`).
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
    class_c = class_conditions(condition_fn, initial_t, spec, y.device)
    rows = [y] if null_class is None else [y, torch.full_like(y, null_class)]
    masks = [make_masks(condition_fn, r, initial_t, spec, class_c) for r in rows]
    offsets = [None] * len(rows)
    if spec is not None and spec.replace == "mean":
        offsets = [mean_offsets(condition_fn, r, initial_t, class_c) for r in rows]
    null_mask, null_offset = (masks[1], offsets[1]) if null_class is not None else (None, None)
    spec = spec if spec is not None else empty
    return PruneHook(spec, steps, masks[0], null_mask, offsets[0], null_offset)
