"""Fig. 42: the cost of the AdaLN modulation with a dense c and with a tail-pruned (sparse) c.

Every block computes its modulation as m = SiLU(c) W^T + b with W of shape (6d, d) (the final
layer: (2d, d)). Pruning zeroes coordinates of c, and SiLU(0) = 0, so a zeroed coordinate adds
nothing to m: with the kept coordinates K gathered once from every W (`gather_columns`),

    SiLU(P(c)) W^T + b  =  SiLU(c_K) W_K^T + b,

and the sparse path multiplies (n, |K|) by (|K|, 6d) instead of (n, d) by (d, 6d). This module
times both paths on the same weights, checks they agree, and counts their FLOPs. One kept set
serves the whole batch (the cost depends only on |K|; with per-row masks K is their union).

`modulation_change` measures, from c and the same weights, how much pruning moves each block's
shift, scale and gate: the mechanism through which a pruned c reaches the network.
"""

from __future__ import annotations

import re
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import matplotlib.pyplot as plt
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor

_MODULATION_KEY = re.compile(r"^(?P<owner>.+)\.adaLN_modulation\.(?P<layer>\d+)\.weight$")

# The paper's Table 2 removal counts for d = 1152 (tail tau = 0.01, 0.02, 0.05), plus no pruning.
PAPER_REMOVED = (0, 448, 762, 1110)
PAPER_D = 1152


@dataclass(frozen=True)
class Modulation:
    """The modulation Linears of one model, in layer order.

    Attributes:
        weights: one (out_i, d_in) tensor per layer (out_i = 6d for a block, 2d for the final).
        biases: one (out_i,) tensor per layer.
    """

    weights: tuple[Tensor, ...]
    biases: tuple[Tensor, ...]

    @property
    def d_in(self) -> int:
        return self.weights[0].shape[1]

    @property
    def out_total(self) -> int:
        return sum(w.shape[0] for w in self.weights)


def _natural(key: str) -> list:
    """Sort key that orders blocks.2 before blocks.10."""
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", key)]


def modulation_keys(shapes: Mapping[str, Sequence[int]]) -> list[str]:
    """Names of the modulation Linear weights, blocks in natural order, the final layer last.

    Args:
        shapes: parameter name -> shape (a state dict's shapes or a checkpoint manifest).

    Returns:
        The `*.adaLN_modulation.<i>.weight` keys. Raises ValueError when there are none.
    """
    keys = sorted((k for k in shapes if _MODULATION_KEY.match(k)), key=_natural)
    if not keys:
        raise ValueError("shapes: expected '*.adaLN_modulation.<i>.weight' keys, found none")
    return sorted(keys, key=lambda k: k.startswith("final_layer."))  # stable: final layer last


def modulation_from_state(state: Mapping[str, Tensor]) -> Modulation:
    """The modulation weights and biases of a model's state dict (e.g. `model.state_dict()`).

    Shapes: each weight (out_i, d), each bias (out_i,).
    """
    keys = modulation_keys({k: tuple(v.shape) for k, v in state.items()})
    weights = tuple(state[k].detach().float() for k in keys)
    biases = tuple(state[k.removesuffix("weight") + "bias"].detach().float() for k in keys)
    return Modulation(weights, biases)


def random_modulation(
    shapes: Mapping[str, Sequence[int]], seed: int = 0, dtype: torch.dtype = torch.float32
) -> Modulation:
    """Random weights with the shapes of a manifest's modulation layers (timing needs no values).

    Args:
        shapes: parameter name -> shape (a checkpoint manifest or a state dict's shapes).
        seed: generator seed.
        dtype: weight dtype.

    Returns:
        A Modulation with weights ~ N(0, 1/d) and biases ~ N(0, 0.01).

    Shapes: as in `shapes`.
    """
    g = torch.Generator().manual_seed(seed)
    weights, biases = [], []
    for key in modulation_keys(shapes):
        out, d = shapes[key]
        weights.append((torch.randn(out, d, generator=g) * d**-0.5).to(dtype))
        biases.append((torch.randn(out, generator=g) * 0.01).to(dtype))
    return Modulation(tuple(weights), tuple(biases))


def synthetic_shapes(d: int, depth: int) -> dict[str, tuple[int, int]]:
    """Modulation shapes of a DiT with width d and `depth` blocks (6d per block, 2d final)."""
    if d < 1 or depth < 1:
        raise ValueError(f"expected d >= 1 and depth >= 1, got d={d}, depth={depth}")
    shapes = {f"blocks.{i}.adaLN_modulation.1.weight": (6 * d, d) for i in range(depth)}
    return shapes | {"final_layer.adaLN_modulation.1.weight": (2 * d, d)}


def synthetic_c(batch: int, d: int, seed: int = 0) -> Tensor:
    """A batch of c with a head-tail magnitude profile (a few coordinates near 5, most far below
    0.01, as in the trained XL models), for timing when no checkpoint gives a real c.

    Shapes: -> (batch, d).
    """
    if batch < 1 or d < 2:
        raise ValueError(f"expected batch >= 1 and d >= 2, got batch={batch}, d={d}")
    g = torch.Generator().manual_seed(seed)
    profile = torch.logspace(0.7, -3.0, d)[torch.randperm(d, generator=g)]
    return torch.randn(batch, d, generator=g) * profile


def kept_columns(c: Tensor, removed: int) -> Tensor:
    """Indices kept by tail pruning of `removed` coordinates: the d - removed largest |c_i|.

    Args:
        c: one vector (d,), e.g. the class-mean c, which picks one kept set for a batch.
        removed: number of coordinates to zero, 0 <= removed < d.

    Returns:
        Sorted int64 indices of the kept coordinates. Shapes: (d,) -> (d - removed,).
    """
    if c.ndim != 1:
        raise ValueError(f"c: expected one vector (d,), got shape {tuple(c.shape)}")
    d = c.shape[0]
    if not 0 <= removed < d:
        raise ValueError(f"removed: expected 0 <= removed < d = {d}, got {removed}")
    order = torch.argsort(c.abs(), descending=True, stable=True)
    return torch.sort(order[: d - removed]).values


def prune_to(c: Tensor, kept: Tensor) -> Tensor:
    """P(c): zero every coordinate not in `kept`. Shapes: c (n, d), kept (k,) -> (n, d)."""
    out = torch.zeros_like(c)
    out[:, kept] = c[:, kept]
    return out


def gather_columns(mod: Modulation, kept: Tensor) -> Modulation:
    """W_K: the kept input columns of every modulation weight, made contiguous once.

    Shapes: each weight (out_i, d) -> (out_i, k); biases unchanged.
    """
    weights = tuple(w[:, kept].contiguous() for w in mod.weights)
    return Modulation(weights, mod.biases)


def modulate_all(c: Tensor, mod: Modulation) -> list[Tensor]:
    """SiLU(c) W^T + b for every layer, as each block computes it (SiLU inside each layer).

    Works for both paths: dense (c (n, d), full W) and sparse (c_K (n, k), W_K).

    Shapes: c (n, d_in) -> one (n, out_i) tensor per layer.
    """
    if c.ndim != 2 or c.shape[1] != mod.d_in:
        raise ValueError(f"c: expected shape (n, {mod.d_in}), got {tuple(c.shape)}")
    return [F.linear(F.silu(c), w, b) for w, b in zip(mod.weights, mod.biases, strict=True)]


def modulation_flops(batch: int, d_in: int, out_total: int) -> int:
    """Multiply-add FLOPs of the modulation matmuls: 2 * batch * d_in * sum(out_i)."""
    return 2 * batch * d_in * out_total


def _calibrate(fn: Callable[[], object], min_run_s: float) -> int:
    """Calls per timed run so that one run lasts at least min_run_s (timeit's autorange idea)."""
    number = 1
    while number < 10_000:
        start = time.perf_counter()
        for _ in range(number):
            fn()
        if time.perf_counter() - start >= min_run_s:
            break
        number *= 4
    return number


def time_calls(
    fns: Mapping[str, Callable[[], object]],
    repeats: int = 7,
    warmup: int = 1,
    min_run_s: float = 0.02,
) -> dict[str, dict]:
    """Median wall time per call of each function, the functions interleaved run by run.

    Interleaving (a, b, a, b, ...) exposes every function to the same drift of the machine's
    load, so their ratio is fairer than two separate loops. Fast calls are looped `number` times
    per run so that a run lasts at least min_run_s.

    Args:
        fns: name -> function of no arguments.
        repeats: timed runs per function (the median is reported).
        warmup: untimed calls of each function first.
        min_run_s: shortest run; 0 times single calls.

    Returns:
        name -> {"median_s", "min_s", "runs_s", "number"} (times per call).
    """
    if repeats < 1 or warmup < 0 or min_run_s < 0:
        raise ValueError(
            f"expected repeats >= 1, warmup >= 0, min_run_s >= 0; got {repeats}, {warmup}, {min_run_s}"
        )
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    numbers = {name: _calibrate(fn, min_run_s) for name, fn in fns.items()}
    runs: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            for _ in range(numbers[name]):
                fn()
            runs[name].append((time.perf_counter() - start) / numbers[name])
    return {
        name: {
            "median_s": statistics.median(r),
            "min_s": min(r),
            "runs_s": r,
            "number": numbers[name],
        }
        for name, r in runs.items()
    }


def scaled_removed(d: int, removed: Sequence[int] = PAPER_REMOVED) -> list[int]:
    """The paper's removal counts (of 1152) at the same fractions of width d.

    Args:
        d: width of c.
        removed: counts of 1152 (default: Table 2's 0, 448, 762, 1110).

    Returns:
        round(r * d / 1152) for each count, capped at d - 1 (one coordinate is always kept).
    """
    return [min(d - 1, round(r * d / PAPER_D)) for r in removed]


@torch.inference_mode()
def cost_sweep(
    mod: Modulation,
    c: Tensor,
    removed: Sequence[int],
    repeats: int = 7,
    warmup: int = 1,
    min_run_s: float = 0.02,
    num_threads: int | None = None,
) -> pd.DataFrame:
    """Time the dense and the sparse modulation for each removal count, on the same batch.

    The kept set is chosen from the batch-mean c (`kept_columns`); the dense path receives P(c)
    (what the model sees with the pruning hook), the sparse path c_K and the gathered W_K
    (gathered before timing: it is done once per sampling run, not per step).

    Args:
        mod: the modulation layers.
        c: the batch of conditional vectors.
        removed: numbers of coordinates to zero; 0 is the dense baseline.
        repeats: timed runs per path (median reported), dense and sparse interleaved.
        warmup: untimed calls of each path first.
        min_run_s: shortest timed run (fast calls are looped; see `time_calls`).
        num_threads: torch CPU threads while timing (restored after); None keeps the setting.
            One thread gives stable times on a shared machine; more measure the parallel speed.

    Returns:
        One row per count: removed, kept, kept_fraction, dense_s, sparse_s (medians),
        dense_min_s, sparse_min_s (fastest runs: least disturbed by a busy machine), speedup
        (dense_s / sparse_s), dense_vs_baseline and sparse_vs_baseline (time / the removed = 0
        dense time), flops_dense, flops_sparse, max_abs_diff, allclose.

    Shapes: c (n, d).
    """
    n, d = c.shape
    if num_threads is not None and num_threads < 1:
        raise ValueError(f"num_threads: expected None or >= 1, got {num_threads}")
    if d != mod.d_in:
        raise ValueError(f"c: expected width {mod.d_in} (the modulation's input), got {d}")
    if not removed or any(not 0 <= r < d for r in removed):
        raise ValueError(f"removed: expected counts in [0, {d}), got {list(removed)}")
    previous = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    try:
        rows = [_measure(mod, c, r, repeats, warmup, min_run_s) for r in removed]
    finally:
        torch.set_num_threads(previous)
    table = pd.DataFrame(rows)
    base = table.loc[table["removed"].idxmin(), "dense_s"]
    table["speedup"] = table["dense_s"] / table["sparse_s"]
    table["dense_vs_baseline"] = table["dense_s"] / base
    table["sparse_vs_baseline"] = table["sparse_s"] / base
    table.attrs["threads"] = num_threads or previous
    return table


def _measure(mod: Modulation, c: Tensor, r: int, repeats: int, warmup: int, min_run_s: float):
    """One row of `cost_sweep`: both paths for r removed coordinates."""
    n, d = c.shape
    kept = kept_columns(c.mean(0), r)
    pruned = prune_to(c, kept)
    sparse_mod = gather_columns(mod, kept)
    c_kept = pruned[:, kept].contiguous()
    dense_out = modulate_all(pruned, mod)
    sparse_out = modulate_all(c_kept, sparse_mod)
    diff = max(float((a - b).abs().max()) for a, b in zip(dense_out, sparse_out, strict=True))
    scale = max(float(a.abs().max()) for a in dense_out)
    paths = {
        "dense": lambda: modulate_all(pruned, mod),
        "sparse": lambda: modulate_all(c_kept, sparse_mod),
    }
    times = time_calls(paths, repeats, warmup, min_run_s)
    return {
        "removed": r,
        "kept": len(kept),
        "kept_fraction": len(kept) / d,
        "dense_s": times["dense"]["median_s"],
        "sparse_s": times["sparse"]["median_s"],
        "dense_min_s": times["dense"]["min_s"],
        "sparse_min_s": times["sparse"]["min_s"],
        "flops_dense": modulation_flops(n, d, mod.out_total),
        "flops_sparse": modulation_flops(n, len(kept), mod.out_total),
        "max_abs_diff": diff,
        # float32 sums in another order: agreement up to rounding, relative to the output scale
        "allclose": bool(diff <= 1e-5 * max(scale, 1.0)),
    }


def plot_cost(table: pd.DataFrame, title: str = ""):
    """Fig. 42: time per call (dense, sparse) and FLOPs against the kept fraction of c.

    Args:
        table: `cost_sweep` output.
        title: figure title.

    Returns:
        A matplotlib Figure with two panels (wall time, FLOPs), more pruning to the right.
    """
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 3.8))
    x = table["kept_fraction"]
    axes[0].plot(x, 1e3 * table["dense_s"], "o-", label="dense c (full W)")
    axes[0].plot(x, 1e3 * table["sparse_s"], "s-", label="sparse c (kept columns of W)")
    axes[0].set(xlabel="kept fraction of c", ylabel="ms per call (median)", ylim=(0, None))
    axes[0].set_title("wall time of all modulations")
    axes[0].legend(fontsize=8)
    axes[1].plot(x, table["flops_dense"] / 1e9, "o-", label="dense")
    axes[1].plot(x, table["flops_sparse"] / 1e9, "s-", label="sparse")
    axes[1].set(xlabel="kept fraction of c", ylabel="GFLOP per call", ylim=(0, None))
    axes[1].set_title("matmul FLOPs")
    axes[1].legend(fontsize=8)
    for ax in axes:
        ax.invert_xaxis()  # left to right: more pruning
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- modulation change

# the chunks of a block's modulation in DiT's order (shift, scale, gate of attention, then MLP);
# the final layer has shift and scale only
BLOCK_CHUNKS = ("shift", "scale", "gate", "shift", "scale", "gate")
FINAL_CHUNKS = ("shift", "scale")
COMPONENTS = ("shift", "scale", "gate")


def modulation(c: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """One layer's modulation m = SiLU(c) W^T + b. Shapes: c (n, d), weight (out, d) -> (n, out)."""
    return F.linear(F.silu(c.float()), weight.float(), bias.float())


def modulation_change(mod: Modulation, c: Tensor, pruned: Tensor) -> pd.DataFrame:
    """How much each layer's shift, scale and gate change when c is replaced by its pruned
    version: ||m(P(c)) - m(c)|| / ||m(c)|| per component (attention and MLP chunks together),
    averaged over the rows of c. Computed from c and the weights alone, without sampling.

    Args:
        mod: the modulation layers (blocks in order, the final layer last).
        c: c of each class at one t.
        pruned: P(c), the same rows pruned.

    Returns:
        One row per layer: layer ("block i" or "final"), shift, scale, gate (None for the final
        layer).

    Shapes: c (n, d), pruned (n, d).
    """
    if c.shape != pruned.shape or c.dim() != 2 or c.shape[1] != mod.d_in:
        raise ValueError(
            f"c and pruned: expected equal (n, {mod.d_in}) shapes, got {tuple(c.shape)} and "
            f"{tuple(pruned.shape)}"
        )
    rows = []
    for i, (w, b) in enumerate(zip(mod.weights, mod.biases, strict=True)):
        # the final layer (last, 2d wide against a block's 6d) has no gate
        final = i == len(mod.weights) - 1 and 3 * w.shape[0] == mod.weights[0].shape[0]
        names = FINAL_CHUNKS if final else BLOCK_CHUNKS
        dense, sparse = modulation(c, w, b), modulation(pruned, w, b)
        chunks = zip(dense.chunk(len(names), dim=1), sparse.chunk(len(names), dim=1), strict=True)
        parts = {k: ([], []) for k in COMPONENTS}
        for name, (m, mp) in zip(names, chunks, strict=True):
            parts[name][0].append(m)
            parts[name][1].append(mp)
        row = {"layer": "final" if final else f"block {i}"}
        for name, (ms, mps) in parts.items():
            if not ms:
                row[name] = None
                continue
            m, mp = torch.cat(ms, dim=1), torch.cat(mps, dim=1)
            change = (mp - m).norm(dim=1) / m.norm(dim=1).clamp(min=1e-12)
            row[name] = float(change.mean())
        rows.append(row)
    return pd.DataFrame(rows, columns=["layer", *COMPONENTS])
