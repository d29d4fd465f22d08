"""t-SNE of the class embeddings (Fig. 13, 20-25): variants, settings, companion numbers."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from semantic_bottleneck.core import tsne


def _c(n: int = 10, d: int = 32, seed: int = 0) -> np.ndarray:
    """Class vectors with a head-tail profile: a few large shared dims, a small tail."""
    rng = np.random.default_rng(seed)
    scale = np.where(np.arange(d) < 4, 2.0, 0.02)
    return rng.standard_normal((n, d)) * scale


def test_head_and_tail_partition_c():
    c = _c()
    parts = tsne.variants(c, tau_head=0.1, tau_tail=0.01)
    assert list(parts) == list(tsne.VARIANTS)
    np.testing.assert_array_equal(parts["head only"] + parts["tail only"], c)
    assert np.all(np.abs(parts["head only"][parts["head only"] != 0]) > 0.1)
    assert np.all(np.abs(parts["deep tail only"]) < 0.01)
    kept_deep = parts["deep tail only"] != 0
    np.testing.assert_array_equal(parts["tail only"][kept_deep], c[kept_deep])


def test_variants_accept_torch_and_check_thresholds():
    parts = tsne.variants(torch.from_numpy(_c()).float())
    assert parts["full"].dtype == np.float64
    with pytest.raises(ValueError, match="tau_tail <= tau_head"):
        tsne.variants(_c(), tau_head=0.01, tau_tail=0.1)
    with pytest.raises(ValueError, match="n >= 3"):
        tsne.variants(_c(n=2))


def test_default_perplexity_stays_below_the_number_of_classes():
    assert tsne.default_perplexity(10) == 3.0
    assert tsne.default_perplexity(1000) == 30.0
    assert tsne.check_perplexity(None, 10) == 3.0
    assert tsne.check_perplexity(5, 10) == 5.0
    with pytest.raises(ValueError, match="0 < perplexity < n = 10"):
        tsne.check_perplexity(30, 10)
    with pytest.raises(ValueError, match="at least 3"):
        tsne.default_perplexity(2)


def test_embed_is_seeded_and_validates_before_fitting():
    x = _c(n=12)
    a = tsne.embed(x, seed=3, max_iter=250)
    b = tsne.embed(x, seed=3, max_iter=250)
    assert a.shape == (12, 2)
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="perplexity"):
        tsne.embed(x, perplexity=12)
    with pytest.raises(ValueError, match="max_iter"):
        tsne.embed(x, max_iter=10)


def test_knn_overlap_known_answers():
    x = _c(n=8)
    assert tsne.knn_overlap(x, x, k=3) == 1.0
    assert tsne.knn_overlap(x, 5.0 * x + 1.0, k=3) == 1.0  # distances scale, order kept
    line = np.arange(5.0)[:, None]
    swapped = np.array([0.0, 1.0, 2.0, 4.0, 3.0])[:, None]  # the last two points swap places
    # nearest neighbours (ties to the lower index): line 1,0,1,2,3; swapped 1,0,1,4,2
    assert tsne.knn_overlap(line, swapped, k=1) == pytest.approx(3 / 5)
    with pytest.raises(ValueError, match="1 <= k < n"):
        tsne.knn_overlap(x, x, k=8)


def test_variance_kept_of_full_and_of_nothing():
    x = _c()
    assert tsne.variance_kept(x, x) == pytest.approx(1.0)
    assert tsne.variance_kept(x, np.zeros_like(x)) == 0.0
    with pytest.raises(ValueError, match="do not vary"):
        tsne.variance_kept(np.ones((4, 3)), x[:4, :3])


def test_companion_table_rows_and_full_reference():
    table = tsne.companion_table({"a": _c(seed=0), "b": _c(seed=1)}, k=3)
    assert len(table) == 2 * len(tsne.VARIANTS)
    full = table[table["variant"] == "full"]
    assert np.allclose(full["kNN overlap (k=3)"], 1.0) and np.allclose(full["variance kept"], 1.0)
    head = table[table["variant"] == "head only"]
    assert np.all(head["dims kept"] <= 4)


def test_panels_skip_coinciding_variants_and_plot():
    c = _c(n=6)
    c[:, 4:] = 0.05  # tail identical across classes; nothing below 0.01
    panels = tsne.tsne_panels({"m": c}, perplexity=2, max_iter=250)
    assert panels["m"]["deep tail only"] is None
    assert panels["m"]["full"].shape == (6, 2)
    fig = tsne.plot_panels(panels)
    assert len(fig.axes) == len(tsne.VARIANTS)
    plt.close(fig)
