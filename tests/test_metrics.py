"""Tests for semantic_bottleneck.core.metrics: hand-computed cases, properties, input validation."""

import math
import numbers
import time

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from semantic_bottleneck.core import metrics as M

# Hypothesis vectors: moderate magnitudes so scaling by up to 1e3 stays far from overflow/underflow.
finite = st.floats(min_value=-1e3, max_value=1e3, allow_nan=False, allow_infinity=False)
vectors = arrays(np.float64, st.integers(1, 40), elements=finite).filter(
    lambda v: np.abs(v).max() > 1e-6
)


# --- nPR, Eq. (1)


def test_npr_uniform_vector_is_one():
    assert M.normalized_participation_ratio(np.full(7, -0.3)) == pytest.approx(1.0, abs=1e-15)


def test_npr_one_hot_is_one_over_d():
    c = np.zeros(16)
    c[5] = 2.5
    assert M.normalized_participation_ratio(c) == pytest.approx(1 / 16, abs=1e-15)
    assert M.participation_ratio(c) == pytest.approx(1.0, abs=1e-15)


def test_npr_k_equal_entries_is_k_over_d():
    # Magnitudes equal, signs mixed: Eq. (1) works on |c|, so PR = k^2 / k = k.
    c = np.array([0.0, 1.5, -1.5, 0.0, 1.5, 0.0, 0.0, -1.5, 0.0, 0.0])
    assert M.participation_ratio(c) == pytest.approx(4.0, abs=1e-12)
    assert M.normalized_participation_ratio(c) == pytest.approx(0.4, abs=1e-12)


def test_pr_hand_value():
    # v = (1, 2, 3): (1 + 2 + 3)^2 / (1 + 4 + 9) = 36 / 14.
    assert M.participation_ratio([1.0, -2.0, 3.0]) == pytest.approx(36 / 14, rel=1e-14)


def test_npr_gaussian_close_to_two_over_pi():
    c = np.random.default_rng(0).standard_normal(100_000)
    assert M.normalized_participation_ratio(c) == pytest.approx(2 / math.pi, abs=0.01)


def test_npr_batched_matches_rows_and_returns_array():
    c = np.random.default_rng(1).standard_normal((5, 12))
    out = M.normalized_participation_ratio(c)
    assert isinstance(out, np.ndarray) and out.shape == (5,) and out.dtype == np.float64
    expected = [M.normalized_participation_ratio(row) for row in c]
    np.testing.assert_allclose(out, expected, rtol=1e-14)


def test_npr_single_vector_returns_python_float():
    assert type(M.normalized_participation_ratio(torch.ones(3))) is float
    assert type(M.participation_ratio(np.ones(3, dtype=np.float32))) is float


@settings(max_examples=60, deadline=None)
@given(v=vectors, scale=st.floats(min_value=1e-3, max_value=1e3), seed=st.integers(0, 2**32 - 1))
def test_npr_invariant_to_scaling_permutation_and_signs(v, scale, seed):
    rng = np.random.default_rng(seed)
    base = M.normalized_participation_ratio(v)
    assert M.normalized_participation_ratio(scale * v) == pytest.approx(base, rel=1e-9)
    assert M.normalized_participation_ratio(rng.permutation(v)) == pytest.approx(base, rel=1e-9)
    signs = rng.choice([-1.0, 1.0], size=v.shape)
    assert M.normalized_participation_ratio(signs * v) == base  # |c| is unchanged, bit for bit


@settings(max_examples=60, deadline=None)
@given(v=vectors)
def test_npr_in_unit_interval(v):
    npr = M.normalized_participation_ratio(v)
    assert 1 / v.size - 1e-12 <= npr <= 1 + 1e-12
    assert npr > 0


# --- sparsity, Eq. (2)


HAND = np.array([0.005, -0.02, 0.01, -0.5, 3.0, 0.0])  # d = 6


def test_sparsity_ratio_tail_hand_vector():
    # |c| < 0.01: 0.005 and 0.0 (0.01 itself is not strictly below) -> 2/6.
    assert M.sparsity_ratio(HAND, 0.01, side="tail") == pytest.approx(2 / 6, abs=1e-15)
    assert M.sparsity_ratio(HAND, 0.01) == pytest.approx(2 / 6, abs=1e-15)  # tail is the default
    # |c| < 1: everything but 3.0 -> 5/6.
    assert M.sparsity_ratio(HAND, 1.0, side="tail") == pytest.approx(5 / 6, abs=1e-15)


def test_sparsity_ratio_head_hand_vector():
    # |c| > 0.01: 0.02, 0.5, 3.0 -> 3/6; |c| > 0.5: 3.0 only -> 1/6.
    assert M.sparsity_ratio(HAND, 0.01, side="head") == pytest.approx(3 / 6, abs=1e-15)
    assert M.sparsity_ratio(HAND, 0.5, side="head") == pytest.approx(1 / 6, abs=1e-15)
    assert M.sparsity_ratio(HAND, 0.0, side="head") == pytest.approx(5 / 6, abs=1e-15)


def test_sparsity_ratio_batched():
    c = np.stack([HAND, np.zeros(6), np.full(6, 2.0)])
    out = M.sparsity_ratio(c, 0.01)
    assert isinstance(out, np.ndarray) and out.shape == (3,)
    np.testing.assert_allclose(out, [2 / 6, 1.0, 0.0])


@settings(max_examples=60, deadline=None)
@given(
    c=arrays(np.float64, st.tuples(st.integers(1, 4), st.integers(1, 30)), elements=finite),
    tau=st.sampled_from([0.0, 0.01, 0.5, 1.0, 7.0]),
)
def test_sparsity_tail_head_equal_sum_to_one(c, tau):
    c = np.round(c)  # integers make |c_i| == tau actually happen for tau in {0, 1, 7}
    equal = (np.abs(c) == tau).mean(axis=-1)
    total = M.sparsity_ratio(c, tau, "tail") + M.sparsity_ratio(c, tau, "head") + equal
    np.testing.assert_allclose(total, 1.0, atol=1e-12)


def test_masks_hand_vector():
    np.testing.assert_array_equal(M.tail_mask(HAND, 0.01), [True, False, False, False, False, True])
    np.testing.assert_array_equal(M.head_mask(HAND, 0.01), [False, True, False, True, True, False])


def test_masks_agree_with_sparsity_ratio_and_keep_shape():
    c = np.random.default_rng(2).standard_normal((4, 9)) * 0.05
    for mask_fn, side in [(M.tail_mask, "tail"), (M.head_mask, "head")]:
        mask = mask_fn(c, 0.03)
        assert mask.shape == c.shape and mask.dtype == bool
        np.testing.assert_allclose(mask.mean(axis=1), M.sparsity_ratio(c, 0.03, side))


def test_masks_torch_in_torch_out():
    c = torch.tensor([[0.005, -0.02], [2.0, 0.0]])
    mask = M.tail_mask(c, 0.01)
    assert isinstance(mask, torch.Tensor) and mask.dtype == torch.bool
    assert mask.tolist() == [[True, False], [False, True]]
    assert M.head_mask(c, 0.01).tolist() == [[False, True], [True, False]]


# --- threshold curve


def test_dimension_threshold_curve_hand_values():
    c = np.array([0.001, -0.01, 0.1, 1.0])
    taus = [0.0, 0.005, 0.01, 0.05, 2.0]
    # Strictly below tau: 0 / 1 (0.001) / 1 (0.01 is not < 0.01) / 2 / 4, out of d = 4.
    np.testing.assert_allclose(M.dimension_threshold_curve(c, taus), [0, 0.25, 0.25, 0.5, 1.0])


def test_dimension_threshold_curve_batched_monotone_and_matches_sparsity():
    c = np.random.default_rng(3).standard_normal((3, 50)) * 0.1
    grid = M.default_tau_grid(40)
    curve = M.dimension_threshold_curve(c, grid)
    assert curve.shape == (3, 40)
    assert np.all(np.diff(curve, axis=1) >= 0)
    for j in (0, 17, 39):
        np.testing.assert_allclose(curve[:, j], M.sparsity_ratio(c, grid[j], "tail"))
    # Unsorted taus give the same values, in their own order.
    perm = np.random.default_rng(4).permutation(40)
    np.testing.assert_allclose(M.dimension_threshold_curve(c, grid[perm]), curve[:, perm])


def test_default_tau_grid():
    grid = M.default_tau_grid()
    assert grid.shape == (200,) and grid.dtype == np.float64
    assert grid[0] == pytest.approx(1e-4) and grid[-1] == pytest.approx(10.0)
    np.testing.assert_allclose(np.diff(np.log10(grid)), 5 / 199)
    assert M.dimension_threshold_curve(np.ones(3)).shape == (200,)


# --- top-k and tau_for_count


def test_topk_mask_head_and_tail():
    c = np.array([0.3, -2.0, 0.0, 1.0, -0.1])
    np.testing.assert_array_equal(topk_mask(c, 2, "head"), [False, True, False, True, False])
    np.testing.assert_array_equal(topk_mask(c, 2, "tail"), [False, False, True, False, True])
    assert not topk_mask(c, 0, "head").any()
    assert topk_mask(c, 5, "tail").all()


def test_topk_mask_ties_broken_by_index():
    c = np.array([[1.0, -1.0, 1.0, 0.5], [0.2, 0.2, 0.2, 0.2]])
    np.testing.assert_array_equal(
        topk_mask(c, 2, "head"), [[True, True, False, False], [True, True, False, False]]
    )
    np.testing.assert_array_equal(
        topk_mask(c, 2, "tail"), [[True, False, False, True], [True, True, False, False]]
    )
    # Long (d = 200), many ties: an unstable sort would select other indices within a tie.
    v = np.random.default_rng(9).choice([-0.3, -0.1, 0.1, 0.2, 0.3], size=200)
    for side, k in [("head", 50), ("tail", 50)]:
        order = np.lexsort((np.arange(200), -np.abs(v) if side == "head" else np.abs(v)))
        np.testing.assert_array_equal(np.flatnonzero(topk_mask(v, k, side)), np.sort(order[:k]))


def test_tau_for_count_round_trip():
    c = np.random.default_rng(5).standard_normal(64) * 0.05
    for side in ("tail", "head"):
        for count in (0, 1, 10, 32, 63, 64):
            tau = M.tau_for_count(c, count, side)
            assert tau >= 0
            assert M.sparsity_ratio(c, tau, side) * 64 == pytest.approx(count)
            mask = M.tail_mask(c, tau) if side == "tail" else M.head_mask(c, tau)
            np.testing.assert_array_equal(mask, topk_mask(c, count, side))


def test_tau_for_count_midpoint_hand_value():
    c = np.array([0.04, -0.01, 0.5, 0.02])  # sorted |c|: 0.01, 0.02, 0.04, 0.5
    assert M.tau_for_count(c, 2, "tail") == pytest.approx(0.03)
    assert M.tau_for_count(c, 1, "head") == pytest.approx(0.27)


def test_tau_for_count_ties_raise():
    c = np.array([0.1, -0.1, 0.3])
    with pytest.raises(ValueError, match="tied"):
        M.tau_for_count(c, 1, "tail")
    with pytest.raises(ValueError, match="tied"):
        M.tau_for_count(np.array([0.0, 1.0]), 2, "head")  # a zero is never > tau >= 0
    with pytest.raises(ValueError, match="1-d"):
        M.tau_for_count(np.ones((2, 3)), 1, "tail")


# --- cosine similarity


def test_cosine_identical_rows_is_one():
    c = np.tile(np.array([0.3, -1.0, 2.0], dtype=np.float32), (4, 1))
    s = M.cosine_similarity_matrix(c)
    assert s.shape == (4, 4) and s.dtype == np.float32
    np.testing.assert_allclose(s, 1.0, atol=1e-7)
    summary = M.cosine_summary(c)
    assert summary["mean"] == pytest.approx(1.0, abs=1e-12) and summary["n"] == 4


def test_cosine_orthogonal_rows_is_zero_off_diagonal():
    c = np.eye(3) * np.array([[2.0], [-0.5], [7.0]])
    np.testing.assert_allclose(M.cosine_similarity_matrix(c), np.eye(3), atol=1e-15)
    assert M.cosine_summary(c) == {"mean": 0.0, "min": 0.0, "n": 3}


def test_cosine_summary_hand_example():
    # Rows (1,0), (0,1), (1,1): pair cosines 0, 1/sqrt2, 1/sqrt2 -> mean sqrt2/3, min 0.
    c = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    summary = M.cosine_summary(c)
    assert summary["mean"] == pytest.approx(math.sqrt(2) / 3, rel=1e-14)
    assert summary["min"] == pytest.approx(0.0, abs=1e-15)
    assert summary["n"] == 3
    pre = M.cosine_summary(M.cosine_similarity_matrix(c), precomputed=True)
    assert pre["mean"] == pytest.approx(summary["mean"], rel=1e-14)


def test_cosine_summary_large_uses_matrix_product():
    c = np.random.default_rng(6).standard_normal((1000, 1152)).astype(np.float32) + 0.5
    start = time.perf_counter()
    summary = M.cosine_summary(c)
    elapsed = time.perf_counter() - start
    assert elapsed < 5.0  # a pairwise Python loop over 5e5 pairs would take far longer
    # Compare with direct float64 cosines of a few pairs.
    x = c.astype(np.float64)
    pairs = [(0, 1), (10, 999), (500, 3)]
    direct = [x[i] @ x[j] / np.linalg.norm(x[i]) / np.linalg.norm(x[j]) for i, j in pairs]
    s = M.cosine_similarity_matrix(c)
    np.testing.assert_allclose([s[i, j] for i, j in pairs], direct, rtol=1e-6)
    assert summary["min"] <= min(direct) and summary["mean"] == pytest.approx(0.2, abs=0.02)


def test_cosine_matrix_torch_keeps_dtype():
    c = torch.tensor([[1.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    s = M.cosine_similarity_matrix(c)
    assert isinstance(s, torch.Tensor) and s.dtype == torch.float64
    assert M.cosine_similarity_matrix(torch.tensor([[1, 0], [1, 1]])).dtype == torch.float32


# --- variance (Fig. 9)


def test_class_variance_matches_numpy_population_variance():
    c = np.random.default_rng(7).standard_normal((10, 6)).astype(np.float32)
    np.testing.assert_allclose(M.class_variance(c), np.var(c.astype(np.float64), axis=0))
    assert M.mean_class_variance(c) == pytest.approx(np.var(c.astype(np.float64), axis=0).mean())


def test_class_variance_hand_value():
    # Column 0: (1, 3) -> mean 2, variance ((1)^2 + (1)^2) / 2 = 1 (ddof = 0); column 1 constant.
    c = np.array([[1.0, 5.0], [3.0, 5.0]])
    np.testing.assert_allclose(M.class_variance(c), [1.0, 0.0])
    assert M.mean_class_variance(c) == pytest.approx(0.5)


# --- torch vs numpy


def test_torch_and_numpy_give_same_values():
    c_np = np.random.default_rng(8).standard_normal((6, 20)).astype(np.float32) * 0.1
    c_pt = torch.from_numpy(c_np.copy())
    per_row = [
        lambda c: M.participation_ratio(c),
        lambda c: M.normalized_participation_ratio(c),
        lambda c: M.sparsity_ratio(c, 0.05, "tail"),
        lambda c: M.sparsity_ratio(c, 0.05, "head"),
        lambda c: M.tail_mask(c, 0.05),
        lambda c: M.head_mask(c, 0.05),
        lambda c: topk_mask(c, 3, "head"),
        lambda c: M.dimension_threshold_curve(c, [0.01, 0.1]),
        lambda c: M.cosine_similarity_matrix(c),
        lambda c: M.class_variance(c),
    ]
    for fn in per_row:
        out_np, out_pt = fn(c_np), fn(c_pt)
        assert isinstance(out_np, np.ndarray) and isinstance(out_pt, torch.Tensor)
        np.testing.assert_array_equal(out_pt.numpy(), out_np)
    assert M.cosine_summary(c_pt) == M.cosine_summary(c_np)
    assert M.mean_class_variance(c_pt) == M.mean_class_variance(c_np)
    assert M.tau_for_count(c_pt[0], 7, "tail") == M.tau_for_count(c_np[0], 7, "tail")
    assert M.normalized_participation_ratio(c_pt[0]) == M.normalized_participation_ratio(c_np[0])


# --- bad input


def test_bad_input_3d():
    with pytest.raises(
        ValueError, match=r"expected a \(d,\) or \(n, d\) array, got shape \(2, 3, 4\)"
    ):
        M.normalized_participation_ratio(np.ones((2, 3, 4)))
    with pytest.raises(ValueError, match="2-d"):
        M.cosine_summary(torch.ones(2, 3, 4))


def test_bad_input_nan_and_inf():
    c = np.ones((3, 4))
    c[1, 2] = np.nan
    with pytest.raises(ValueError, match="finite"):
        M.sparsity_ratio(c, 0.1)
    with pytest.raises(ValueError, match="finite"):
        M.cosine_summary(torch.tensor([[1.0, float("inf")], [1.0, 0.0]]))


def test_bad_tau():
    with pytest.raises(ValueError, match=r"tau: expected .*>= 0, got -0.1"):
        M.sparsity_ratio(np.ones(3), -0.1)
    with pytest.raises(ValueError, match="tau"):
        M.tail_mask(np.ones(3), float("nan"))
    with pytest.raises(ValueError, match="taus"):
        M.dimension_threshold_curve(np.ones(3), [0.1, -1.0])


def test_bad_side():
    with pytest.raises(ValueError, match=r"side: expected one of \('tail', 'head'\), got 'middle'"):
        M.sparsity_ratio(np.ones(3), 0.1, side="middle")
    with pytest.raises(ValueError, match="side"):
        topk_mask(np.ones(3), 1, "top")


def test_zero_row_raises():
    c = np.ones((3, 4))
    c[2] = 0.0
    with pytest.raises(ValueError, match=r"all-zero rows \[2\]"):
        M.normalized_participation_ratio(c)
    with pytest.raises(ValueError, match="all-zero"):
        M.participation_ratio(torch.zeros(5))
    with pytest.raises(ValueError, match="all-zero"):
        M.cosine_similarity_matrix(c)


def test_bad_sizes_and_counts():
    with pytest.raises(ValueError, match="n >= 2"):
        M.cosine_summary(np.ones((1, 4)))
    with pytest.raises(ValueError, match="n >= 2"):
        M.class_variance(np.ones((1, 4)))
    with pytest.raises(ValueError, match="d >= 1"):
        M.participation_ratio(np.ones((3, 0)))
    with pytest.raises(ValueError, match=r"0 <= k <= d = 3, got 4"):
        topk_mask(np.ones(3), 4, "head")
    with pytest.raises(ValueError, match="count"):
        M.tau_for_count(np.ones(3), -1, "tail")
    with pytest.raises(ValueError, match="square"):
        M.cosine_summary(np.ones((3, 4)), precomputed=True)
    with pytest.raises(ValueError, match="real-valued"):
        M.participation_ratio(torch.ones(3, dtype=torch.complex64))


# the oracle of tau_for_count: exactly k coordinates per row, ties broken by index
def topk_mask(c, k: int, side: str = "tail") -> np.ndarray | torch.Tensor:
    """Mask of the k largest-|c| (side "head") or k smallest-|c| (side "tail") coordinates per row.

    Ties in |c| are broken by index: the lower index is selected first (a stable sort).

    Args:
        c: conditional vectors, torch or numpy.
        k: number of coordinates to select per row, 0 <= k <= d.
        side: "head" (largest magnitudes) or "tail" (smallest magnitudes).

    Returns:
        Boolean mask with exactly k True entries per row.

    Shapes:
        (d,) -> (d,); (n, d) -> (n, d).
    """
    x = M._to_float64(c)
    side = M._check_side(side)
    d = x.shape[-1]
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or not 0 <= k <= d:
        raise ValueError(f"k: expected an integer with 0 <= k <= d = {d}, got {k!r}")
    v = np.abs(x)
    # Negating is exact, so a stable sort of -|c| ranks the head with ties by index.
    order = np.argsort(v if side == "tail" else -v, axis=-1, kind="stable")
    mask = np.zeros(x.shape, dtype=bool)
    np.put_along_axis(mask, order[..., : int(k)], True, axis=-1)
    return M._like(mask, c)
