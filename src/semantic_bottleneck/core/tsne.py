"""Fig. 13 and 20-25: t-SNE of the class embeddings c, whole and split into head and tail.

App. A.4.2 of the paper embeds c of every class (at the initial t) with t-SNE four ways: the full
vector, the head alone, the tail alone, and a second tail variant; removing the head "strongly
disrupts the separability of class clusters, while perturbing tail dimensions has minimal
impact". The paper states neither its t-SNE settings nor its thresholds; here they are
parameters:

- full: c itself;
- head only: tail pruning at tau_head, i.e. only |c_i| > tau_head is kept;
- tail only: head pruning at tau_head, i.e. only |c_i| <= tau_head is kept;
- deep tail only: only |c_i| < tau_tail is kept, exactly the coordinates that the paper's tail
  pruning at tau_tail (Table 2: tau = 0.01, 448 of 1152) removes.

Masks are per class (each class's own magnitudes), as the pruning operator P(c) does it.
A t-SNE picture has no scale to read off, so each variant also gets two numbers measured in the
d-dimensional space: how many of each class's k nearest classes (by Euclidean distance of c)
stay its nearest classes, and what share of the variance across classes the variant keeps.
"""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from semantic_bottleneck.core import metrics

VARIANTS = ("full", "head only", "tail only", "deep tail only")
MAX_PERPLEXITY = 30.0  # scikit-learn's default, used whenever there are enough classes


def _array(c) -> np.ndarray:
    x = c.detach().cpu().numpy() if hasattr(c, "detach") else np.asarray(c)
    x = x.astype(np.float64)
    if x.ndim != 2 or x.shape[0] < 3 or not np.all(np.isfinite(x)):
        raise ValueError(
            f"c: expected a finite (n, d) array with n >= 3 classes, got shape {x.shape}"
        )
    return x


def variants(c, tau_head: float = 0.1, tau_tail: float = 0.01) -> dict[str, np.ndarray]:
    """The four versions of c that Fig. 13 embeds (module docstring), as float64 arrays.

    Args:
        c: conditional vectors, one row per class, torch or numpy.
        tau_head: the head/tail line: the head is |c_i| > tau_head.
        tau_tail: the deep tail is |c_i| < tau_tail; needs tau_tail <= tau_head.

    Returns:
        variant name -> (n, d) array, zeros where coordinates were removed.

    Shapes: (n, d) -> each (n, d).
    """
    x = _array(c)
    if not 0 <= tau_tail <= tau_head:
        raise ValueError(
            f"expected 0 <= tau_tail <= tau_head, got tau_tail={tau_tail}, tau_head={tau_head}"
        )
    head = np.asarray(metrics.head_mask(x, tau_head))
    deep_tail = np.asarray(metrics.tail_mask(x, tau_tail))
    return {
        "full": x,
        "head only": np.where(head, x, 0.0),
        "tail only": np.where(head, 0.0, x),
        "deep tail only": np.where(deep_tail, x, 0.0),
    }


def default_perplexity(n: int) -> float:
    """scikit-learn's default 30 when n allows it, else (n - 1) / 3, so that perplexity < n.

    With 10 classes (the testbed) this gives 3.0; with 1000 (ImageNet) 30.
    """
    if n < 3:
        raise ValueError(f"n: t-SNE needs at least 3 points, got {n}")
    return min(MAX_PERPLEXITY, (n - 1) / 3)


def check_perplexity(perplexity: float | None, n: int) -> float:
    """The perplexity to use for n points: the default when None, else validated (0 < p < n)."""
    if perplexity is None:
        return default_perplexity(n)
    if not 0 < perplexity < n:
        raise ValueError(
            f"perplexity: expected 0 < perplexity < n = {n} (the number of classes), got "
            f"{perplexity}; pass None for {default_perplexity(n):g}"
        )
    return float(perplexity)


def embed(x, perplexity: float | None = None, seed: int = 0, max_iter: int = 1000) -> np.ndarray:
    """2-D t-SNE of the rows of x (scikit-learn, Euclidean, PCA initialisation, fixed seed).

    Args:
        x: points, one per row.
        perplexity: effective number of neighbours; None for `default_perplexity`.
        seed: random_state of the optimisation.
        max_iter: optimisation steps (scikit-learn's minimum is 250).

    Returns:
        (n, 2) float64 coordinates. Exact gradients below 200 points, Barnes-Hut above.

    Shapes: (n, d) -> (n, 2).
    """
    from sklearn.manifold import TSNE

    x = _array(x)
    perplexity = check_perplexity(perplexity, x.shape[0])
    if max_iter < 250:
        raise ValueError(f"max_iter: expected >= 250 (scikit-learn's minimum), got {max_iter}")
    tsne = TSNE(
        n_components=2,
        perplexity=perplexity,
        init="pca",
        learning_rate="auto",
        max_iter=max_iter,
        random_state=seed,
        method="exact" if x.shape[0] < 200 else "barnes_hut",
    )
    return tsne.fit_transform(x)


def knn_overlap(reference, other, k: int) -> float:
    """Mean share of each row's k nearest rows in `reference` that are also its k nearest in `other`.

    1 means the variant keeps every class's neighbourhood; k / (n - 1) is what unrelated
    geometry gives on average. Ties in distance are broken by row index.

    Args:
        reference: the points whose neighbourhoods count (full c), one class per row.
        other: the same classes in another representation (a variant, or a 2-D map).
        k: neighbours per row, 1 <= k < n.

    Returns:
        The overlap as a float in [0, 1].

    Shapes: reference (n, d), other (n, d') -> float.
    """
    a, b = _array(reference), _array(other)
    n = a.shape[0]
    if b.shape[0] != n:
        raise ValueError(f"expected the same rows, got {n} and {b.shape[0]}")
    if not 1 <= k < n:
        raise ValueError(f"k: expected 1 <= k < n = {n}, got {k}")

    def neighbours(x):
        dist = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
        np.fill_diagonal(dist, np.inf)
        return np.argsort(dist, axis=1, kind="stable")[:, :k]

    na, nb = neighbours(a), neighbours(b)
    return float(np.mean([len(set(na[i]) & set(nb[i])) / k for i in range(n)]))


def variance_kept(reference, other) -> float:
    """Share of the total variance across classes (summed over dimensions) that `other` keeps.

    Args:
        reference: full c, one class per row.
        other: a variant of it.

    Returns:
        sum_i var(other[:, i]) / sum_i var(reference[:, i]); per-class masks can exceed 1.

    Shapes: (n, d), (n, d') -> float.
    """
    a, b = _array(reference), _array(other)
    total = a.var(axis=0).sum()
    if total == 0:
        raise ValueError("reference: the classes do not vary, so no share can be computed")
    return float(b.var(axis=0).sum() / total)


def companion_table(
    cs: Mapping[str, object], tau_head: float = 0.1, tau_tail: float = 0.01, k: int = 3
) -> pd.DataFrame:
    """Numbers behind the pictures: one row per model and variant.

    Args:
        cs: model label -> c of every class, (n, d).
        tau_head: head/tail line (see `variants`).
        tau_tail: deep-tail line.
        k: neighbours of the kNN overlap, below the number of classes.

    Returns:
        Columns: model, variant, dims kept (mean over classes), kNN overlap (k=...) with the
        full c, variance kept (share of the full c's variance across classes).
    """
    rows = []
    for label, c in cs.items():
        parts = variants(c, tau_head, tau_tail)
        for name, x in parts.items():
            rows.append(
                {
                    "model": label,
                    "variant": name,
                    "dims kept": float((x != 0).sum(axis=1).mean()),
                    f"kNN overlap (k={k})": knn_overlap(parts["full"], x, k),
                    "variance kept": variance_kept(parts["full"], x),
                }
            )
    return pd.DataFrame(rows)


def tsne_panels(
    cs: Mapping[str, object],
    tau_head: float = 0.1,
    tau_tail: float = 0.01,
    perplexity: float | None = None,
    seed: int = 0,
    max_iter: int = 1000,
) -> dict[str, dict[str, np.ndarray]]:
    """t-SNE of every variant of every model's c.

    Args:
        cs: model label -> c of every class, (n, d).
        tau_head, tau_tail: thresholds of the variants (see `variants`).
        perplexity, seed, max_iter: t-SNE settings (see `embed`).

    Returns:
        model -> variant -> (n, 2) coordinates; None for a variant whose classes all coincide
        (e.g. no coordinate above tau_head), which has no picture.
    """
    return {
        label: {
            name: None if np.ptp(x, axis=0).max() == 0 else embed(x, perplexity, seed, max_iter)
            for name, x in variants(c, tau_head, tau_tail).items()
        }
        for label, c in cs.items()
    }


def plot_panels(panels: Mapping[str, Mapping[str, np.ndarray]], title: str = ""):
    """Fig. 13 / 20-25: one row per model, one panel per variant.

    Args:
        panels: `tsne_panels` output.
        title: figure title.

    Returns:
        A matplotlib Figure; points coloured (and, up to 20 classes, labelled) by class.
    """
    rows = len(panels)
    fig, axes = plt.subplots(
        rows, len(VARIANTS), figsize=(3.2 * len(VARIANTS), 3.0 * rows), squeeze=False
    )
    for row, (label, parts) in zip(axes, panels.items(), strict=True):
        for ax, name in zip(row, VARIANTS, strict=True):
            ax.set(title=f"{label}: {name}", xticks=[], yticks=[])
            ax.title.set_fontsize(9)
            xy = parts[name]
            if xy is None:
                ax.text(0.5, 0.5, "all classes coincide", ha="center", transform=ax.transAxes)
                continue
            n = xy.shape[0]
            ax.scatter(
                xy[:, 0],
                xy[:, 1],
                c=np.arange(n),
                cmap="tab10" if n <= 10 else "viridis",
                s=18 if n <= 20 else 4,
            )
            if n <= 20:
                for i, (u, v) in enumerate(xy):
                    ax.annotate(
                        str(i), (u, v), fontsize=7, xytext=(2, 2), textcoords="offset points"
                    )
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
