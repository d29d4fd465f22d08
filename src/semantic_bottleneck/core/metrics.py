"""Metrics on the conditional vector c: nPR (Eq. 1), sparsity (Eq. 2), cosine, class variance.

The definitions, with their formulas, are on the Method page: book/method.md#method-definitions.

Pure functions of a torch tensor or numpy array (a list counts as numpy). Input is validated, then
converted to one float64 numpy array, so torch and numpy inputs give bit-identical results. Scalars
come back as Python floats; per-row or per-coordinate results in the input's array type (torch on
the input's device). Comparisons with tau are made in float64 with tau as given, so
`sparsity_ratio`, `tail_mask`, `head_mask` and `tau_for_count` agree on what a tau selects.
"""

from __future__ import annotations

from numbers import Integral, Real
from typing import Any

import numpy as np
import torch

ArrayLike = Any  # torch.Tensor | np.ndarray | nested sequence of numbers
SIDES = ("tail", "head")
_NDIM_TEXT = {(1,): "a 1-d array", (2,): "a 2-d (n, d) array", (1, 2): "a (d,) or (n, d) array"}


def _to_float64(c: ArrayLike, name: str = "c", ndims: tuple[int, ...] = (1, 2)) -> np.ndarray:
    """Validate c (ndim, real dtype, d >= 1, n >= 1, finite) and return it as a float64 array."""
    if isinstance(c, torch.Tensor):
        real = not (c.is_complex() or c.dtype == torch.bool)
    else:
        c = np.asarray(c)
        real = np.issubdtype(c.dtype, np.integer) or np.issubdtype(c.dtype, np.floating)
    if not real:
        raise ValueError(f"{name}: expected a real-valued array, got dtype {c.dtype}")
    if c.ndim not in ndims:
        raise ValueError(f"{name}: expected {_NDIM_TEXT[ndims]}, got shape {tuple(c.shape)}")
    if isinstance(c, torch.Tensor):
        x = c.detach().to(device="cpu", dtype=torch.float64).numpy()
    else:
        x = c.astype(np.float64)
    if x.size == 0:  # n = 0 or d = 0
        raise ValueError(f"{name}: expected n >= 1 rows and d >= 1, got shape {x.shape}")
    bad = int(x.size - np.count_nonzero(np.isfinite(x)))
    if bad:
        raise ValueError(f"{name}: expected finite values, got {bad} NaN/inf entries")
    return x


def _rows(c: ArrayLike, min_rows: int) -> np.ndarray:
    """Validate a 2-d (n, d) input with n >= min_rows and return it as float64."""
    x = _to_float64(c, ndims=(2,))
    if x.shape[0] < min_rows:
        raise ValueError(f"c: expected n >= {min_rows} rows, got shape {x.shape}")
    return x


def _check_tau(tau: Real) -> float:
    if isinstance(tau, torch.Tensor):
        if tau.numel() != 1:
            raise ValueError(f"tau: expected a scalar, got a tensor of shape {tuple(tau.shape)}")
        tau = tau.item()
    if isinstance(tau, bool) or not isinstance(tau, Real):
        raise ValueError(f"tau: expected a real number >= 0, got {tau!r}")
    tau = float(tau)
    if not np.isfinite(tau) or tau < 0:
        raise ValueError(f"tau: expected a finite number >= 0, got {tau!r}")
    return tau


def _check_side(side: str) -> str:
    if side not in SIDES:
        raise ValueError(f"side: expected one of {SIDES}, got {side!r}")
    return side


def _side_mask(x: np.ndarray, tau: float, side: str) -> np.ndarray:
    """Coordinates that pruning of `side` removes (Eq. (2)): tail |x| < tau, head |x| > tau."""
    return np.abs(x) < tau if side == "tail" else np.abs(x) > tau


def _like(result: np.ndarray, c: ArrayLike) -> np.ndarray | torch.Tensor:
    """Return a numpy result in the array type of the input c (torch: on c's device)."""
    if isinstance(c, torch.Tensor):
        return torch.from_numpy(np.ascontiguousarray(result)).to(c.device)
    return result


def _per_row(result: np.ndarray, c: ArrayLike) -> float | np.ndarray | torch.Tensor:
    """A per-row result: a Python float for a (d,) input, else an (n,) array of the input's type."""
    if result.ndim == 0:
        return float(result)
    return _like(result, c)


def participation_ratio(c: ArrayLike) -> float | np.ndarray | torch.Tensor:
    """Participation ratio of the magnitudes of c, Eq. (1).

    With v = |c|, PR = (sum_i v_i)^2 / sum_i v_i^2: the effective number of coordinates carrying
    the magnitude (k equal magnitudes and d - k zeros give exactly k). v is first divided by its
    row maximum: PR is scale invariant, and this keeps the squares from over- or underflowing.

    Args:
        c: conditional vectors, torch or numpy.

    Returns:
        PR per row, in [1, d]: a float for a (d,) input, an (n,) float64 array/tensor for (n, d).
        An all-zero row, where PR is undefined, raises ValueError.

    Shapes:
        (d,) -> float; (n, d) -> (n,).
    """
    x = _to_float64(c)
    v = np.abs(x)
    vmax = v.max(axis=-1, keepdims=True)
    zero = np.flatnonzero(vmax == 0)
    if zero.size:
        rows = zero[:10].tolist()
        raise ValueError(f"c: expected rows with a nonzero entry (PR), got all-zero rows {rows}")
    u = v / vmax
    pr = u.sum(axis=-1) ** 2 / (u * u).sum(axis=-1)
    return _per_row(pr, c)


def normalized_participation_ratio(c: ArrayLike) -> float | np.ndarray | torch.Tensor:
    """Normalized participation ratio nPR = PR / d, Eq. (1).

    The fraction of the d coordinates that carry the magnitude of c: 1 when all |c_i| are equal,
    k / d when k are equal and the rest zero, 1 / d for a one-hot vector, and about 2 / pi for an
    i.i.d. Gaussian vector.

    Args:
        c: conditional vectors, torch or numpy.

    Returns:
        nPR per row, in [1/d, 1]: a float for a (d,) input, an (n,) float64 array/tensor for
        (n, d). An all-zero row raises ValueError.

    Shapes:
        (d,) -> float; (n, d) -> (n,).
    """
    return participation_ratio(c) / np.shape(c)[-1]


def tail_mask(c: ArrayLike, tau: Real) -> np.ndarray | torch.Tensor:
    """Coordinates that tail pruning removes: |c_i| < tau (Eq. (2), tail side).

    Args:
        c: conditional vectors, torch or numpy.
        tau: threshold, >= 0 (compared in float64).

    Returns:
        Boolean mask, True where the coordinate would be zeroed.

    Shapes:
        (d,) -> (d,); (n, d) -> (n, d).
    """
    return _like(_side_mask(_to_float64(c), _check_tau(tau), "tail"), c)


def head_mask(c: ArrayLike, tau: Real) -> np.ndarray | torch.Tensor:
    """Coordinates that head pruning removes: |c_i| > tau (Eq. (2), head side).

    Args:
        c: conditional vectors, torch or numpy.
        tau: threshold, >= 0 (compared in float64).

    Returns:
        Boolean mask, True where the coordinate would be zeroed.

    Shapes:
        (d,) -> (d,); (n, d) -> (n, d).
    """
    return _like(_side_mask(_to_float64(c), _check_tau(tau), "head"), c)


def sparsity_ratio(
    c: ArrayLike, tau: Real, side: str = "tail"
) -> float | np.ndarray | torch.Tensor:
    """Sparsity ratio, Eq. (2): the fraction of coordinates on one side of tau.

    side="tail": s_tail(tau) = #{i : |c_i| < tau} / d (the main text's definition);
    side="head": s_head(tau) = #{i : |c_i| > tau} / d (what Appendix A.3 calls the sparsity ratio).
    Coordinates with |c_i| == tau count on neither side.

    Args:
        c: conditional vectors, torch or numpy.
        tau: threshold, >= 0.
        side: "tail" or "head".

    Returns:
        Ratio per row, in [0, 1]: a float for a (d,) input, an (n,) float64 array/tensor for (n, d).

    Shapes:
        (d,) -> float; (n, d) -> (n,).
    """
    mask = _side_mask(_to_float64(c), _check_tau(tau), _check_side(side))
    return _per_row(mask.mean(axis=-1, dtype=np.float64), c)


def dimension_threshold_curve(
    c: ArrayLike, taus: ArrayLike | None = None
) -> np.ndarray | torch.Tensor:
    """Fraction of dimensions with |c_i| < tau for every tau of a grid (Fig. 11; s_tail of Eq. (2)).

    Args:
        c: conditional vectors, torch or numpy.
        taus: 1-d grid of thresholds >= 0, in any order; default `default_tau_grid()`.

    Returns:
        s_tail(tau) for each tau, in [0, 1] and non-decreasing in tau; float64, input's array type.

    Shapes:
        c (d,) -> (len(taus),); c (n, d) -> (n, len(taus)).
    """
    x = _to_float64(c)
    grid = default_tau_grid() if taus is None else _to_float64(taus, name="taus", ndims=(1,))
    if np.any(grid < 0):
        raise ValueError(f"taus: expected values >= 0, got min {grid.min()!r}")
    v = np.sort(np.abs(np.atleast_2d(x)), axis=-1)
    # searchsorted(side="left") on the sorted magnitudes counts the entries strictly below tau.
    counts = np.stack([np.searchsorted(row, grid, side="left") for row in v])
    return _like((counts / x.shape[-1]).reshape(x.shape[:-1] + grid.shape), c)


def default_tau_grid(n: int = 200) -> np.ndarray:
    """Log-spaced tau grid from 1e-4 to 10 for `dimension_threshold_curve`.

    Args:
        n: number of grid points, >= 2.

    Returns:
        float64 numpy array, increasing, first 1e-4, last 10.

    Shapes:
        () -> (n,).
    """
    if isinstance(n, bool) or not isinstance(n, Integral) or n < 2:
        raise ValueError(f"n: expected an integer >= 2, got {n!r}")
    return np.logspace(-4.0, 1.0, int(n), dtype=np.float64)


def tau_for_count(c: ArrayLike, count: int, side: str = "tail") -> float:
    """A tau at which sparsity pruning of one side removes exactly `count` coordinates of c.

    With the magnitudes sorted, tau is the midpoint of the two neighbours that separate the removed
    from the kept coordinates: tail, between the count-th and (count+1)-th smallest |c_i|; head,
    between the count-th and (count+1)-th largest. At the ends, 0 stands in below the smallest
    magnitude and twice the largest (1 if c is all zero) above the largest.

    Args:
        c: one conditional vector, torch or numpy.
        count: number of coordinates to remove, 0 <= count <= d.
        side: "tail" (removes |c_i| < tau) or "head" (removes |c_i| > tau).

    Returns:
        tau as a Python float, >= 0.

    Shapes:
        c (d,) -> float.

    Raises ValueError when ties in |c| (or zeros, for the head) make the count unreachable.
    """
    x = _to_float64(c, ndims=(1,))
    side = _check_side(side)
    d = x.shape[0]
    if isinstance(count, bool) or not isinstance(count, Integral) or not 0 <= count <= d:
        raise ValueError(f"count: expected an integer with 0 <= count <= d = {d}, got {count!r}")
    a = np.sort(np.abs(x))  # ascending
    top = 2.0 * a[-1] if a[-1] > 0 else 1.0
    ext = np.concatenate(([0.0], a, [top]))  # ext[j] is the j-th smallest magnitude, 1-based
    # Tail removes the `count` smallest; head removes the `count` largest, i.e. keeps d - count.
    kept_below = count if side == "tail" else d - count
    lo, hi = ext[kept_below], ext[kept_below + 1]
    tau = 0.5 * (lo + hi)
    if int(_side_mask(x, tau, side).sum()) != count:
        raise ValueError(
            f"count: expected a count reachable by {side} pruning, got {count}: the magnitudes "
            f"around it are tied or adjacent ({lo!r} and {hi!r}), so no tau removes exactly {count}"
        )
    return float(tau)


def _cosine64(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1)
    zero = np.flatnonzero(norms == 0)
    if zero.size:
        rows = zero[:10].tolist()
        raise ValueError(f"c: expected nonzero rows (cosine), got all-zero rows {rows}")
    u = x / norms[:, None]
    # Rounding can push |u_i . u_j| a hair past 1; clip to the mathematical range.
    return np.clip(u @ u.T, -1.0, 1.0)


def cosine_similarity_matrix(c: ArrayLike) -> np.ndarray | torch.Tensor:
    """Pairwise cosine similarity of the rows of c (Fig. 3, 14-19).

    Entry (i, j) is c_i . c_j / (||c_i|| ||c_j||), accumulated in float64 via one matrix product.

    Args:
        c: conditional vectors, one row per class, torch or numpy; no all-zero row.

    Returns:
        Symmetric matrix with entries in [-1, 1] and diagonal 1, in the input's floating dtype
        (float32 for an integer input).

    Shapes:
        (n, d) -> (n, n).
    """
    x = _rows(c, min_rows=1)
    s = _cosine64(x)
    if isinstance(c, torch.Tensor):
        dtype = c.dtype if c.is_floating_point() else torch.float32
        return torch.from_numpy(s).to(device=c.device, dtype=dtype)
    in_dtype = np.asarray(c).dtype
    return s.astype(in_dtype if np.issubdtype(in_dtype, np.floating) else np.float32)


def cosine_summary(c: ArrayLike, *, precomputed: bool = False) -> dict[str, float | int]:
    """Mean and minimum cosine similarity over class pairs y != y' ("Cosine Sim.", Tables 1, 4, 5).

    The mean is over the off-diagonal entries of the cosine matrix (ordered pairs; the matrix is
    symmetric, so it equals the mean over unordered pairs).

    Args:
        c: the rows (n, d), whose cosine matrix is computed in float64, or, with
            precomputed=True, an (n, n) cosine matrix.
        precomputed: treat c as a cosine matrix instead of rows.

    Returns:
        {"mean": float, "min": float, "n": int}: mean and min in [-1, 1], n the number of rows.

    Shapes:
        (n, d) -> dict of scalars; n >= 2.
    """
    x = _rows(c, min_rows=2)
    n = x.shape[0]
    if precomputed:
        if x.shape != (n, n):
            raise ValueError(f"c: expected a square (n, n) cosine matrix, got shape {x.shape}")
        s = x
    else:
        s = _cosine64(x)
    off = ~np.eye(n, dtype=bool)
    return {"mean": float(s[off].mean()), "min": float(s[off].min()), "n": int(n)}


def class_variance(c: ArrayLike) -> np.ndarray | torch.Tensor:
    """Per-dimension variance of c across rows (classes), Fig. 9(b) and Fig. 26-33.

    Population variance (ddof=0, numpy's default): mean over rows of (c_yi - mean_y c_yi)^2.

    Args:
        c: conditional vectors, one row per class, torch or numpy.

    Returns:
        float64 variances (>= 0) in the input's array type.

    Shapes:
        (n, d) -> (d,); n >= 2.
    """
    x = _rows(c, min_rows=2)
    return _like(x.var(axis=0, ddof=0), c)


def mean_class_variance(c: ArrayLike) -> float:
    """Mean over dimensions of `class_variance` (Fig. 9(a), "mean variance").

    Args:
        c: conditional vectors, one row per class, torch or numpy.

    Returns:
        The mean per-dimension population variance, a float >= 0.

    Shapes:
        (n, d) -> float; n >= 2.
    """
    x = _rows(c, min_rows=2)
    return float(x.var(axis=0, ddof=0).mean())
