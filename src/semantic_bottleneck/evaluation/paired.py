"""Paired bootstrap of the generation metrics: how far a pruned row's FID, IS, CLIP score and
precision/recall differ from the baseline's, with a 95% interval.

A pruned row and its baseline share every label and noise seed, so sample i of the one and sample
i of the other are a pair. A resample draws N pair indices with replacement (within each class, so
that every class keeps its count) and scores both sets on the same indices; the interval is the
2.5-97.5% range of the differences over resamples (`core.bootstrap`). The reference set is held
fixed: the interval is the noise of the sampled sets, not of the reference.

Each metric is recomputed on a resample from per-sample quantities computed once, with the
definitions of `evaluation.fidelity` (torch-fidelity's, as ADM's evaluator):

- FID from the resampled features' mean and covariance against the reference statistics, with
  tr sqrt(S R) = sum sqrt(eig(R^{1/2} S R^{1/2})) (R^{1/2} computed once; with fewer samples
  than feature dimensions, from the N x N Gram matrix that has the same nonzero eigenvalues);
- IS (10 splits) by `fidelity.split_inception_score` on the resampled logits;
- precision: the mean over the resampled samples of "inside some reference point's k-NN ball";
- recall: the share of reference points inside the ball of some resampled sample, with each
  sample's k-NN radius taken from the full set (a resample's duplicates would have radius 0);
- CLIP score (testbed: the class probability x100): the mean of the resampled per-sample scores.
On the full set each equals `fidelity.evaluate`'s value (tested); `set_scores` gives those values
from the same per-sample quantities, so a set goes through the feature network once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch
from torch import Tensor
from torch_fidelity.metric_fid import fid_features_to_statistics
from torch_fidelity.utils import create_feature_extractor

from semantic_bottleneck.core.bootstrap import percentile_interval, stratified_indices
from semantic_bottleneck.evaluation.fidelity import (
    FEATURE_LAYERS,
    PROFILE_EXTRACTORS,
    Reference,
    _features,
    _inputs,
    as_chw_images,
    metrics_of_features,
    split_inception_score,
)

METRICS = ("fid", "is_10_splits", "clip", "precision", "recall")
PRC_NEIGHBORHOOD = 3  # k of the k-NN radii, as ADM's evaluator


def sample_features(
    images, profile: str = "testbed", cache_dir=None, batch_size: int = 128, cuda=None
) -> dict[str, np.ndarray]:
    """The per-sample features the metrics use, from the profile's feature network.

    Args:
        images: uint8 (N, H, W, 3) samples.
        profile: "testbed" (digits classifier) or "paper" (Inception).
        cache_dir: weights cache (paper profile).
        batch_size: images per feature batch.
        cuda: run the network on the GPU (None: when available).

    Returns:
        {"fid": (N, F) FID features, "logits": (N, K) IS logits, "prc": (N, P) P/R features},
        float32.
    """
    by_layer = _layer_features(
        as_chw_images(images, "images"), profile, cache_dir, batch_size, cuda
    )
    layers = FEATURE_LAYERS[PROFILE_EXTRACTORS[profile]]
    return {key: by_layer[layers[metric]].float().cpu().numpy() for key, metric in _KEYS.items()}


_KEYS = {"fid": "fid", "logits": "is", "prc": "prc"}  # sample_features key -> metric


def _layer_features(chw, profile: str, cache_dir, batch_size: int = 128, cuda=None) -> dict:
    """Every layer the metrics use, of uint8 (N, 3, H, W) images, as torch-fidelity returns them."""
    if profile not in PROFILE_EXTRACTORS:
        raise ValueError(f"profile: expected one of {tuple(PROFILE_EXTRACTORS)}, got {profile!r}")
    weights, _ = _inputs(profile, None, None, ("is",), cache_dir)
    name = PROFILE_EXTRACTORS[profile]
    cuda = torch.cuda.is_available() if cuda is None else cuda
    extractor = create_feature_extractor(
        name,
        sorted(set(FEATURE_LAYERS[name].values())),
        cuda=cuda,
        verbose=False,
        feature_extractor_weights_path=None if weights is None else str(weights),
    )
    return _features(chw, extractor, batch_size, cuda, False)


@dataclass(frozen=True)
class ReferenceFeatures:
    """The fixed side of every comparison.

    Attributes:
        mu, sigma: FID statistics of the reference (float64 (F,), (F, F)).
        prc: P/R features of the reference images (float32 (M, P)).
        reference: the reference as `fidelity.evaluate` compares with it, and by_layer its
            images' features by layer as the network gave them (`set_scores` needs both; the
            bootstrap only the three above).
    """

    mu: np.ndarray
    sigma: np.ndarray
    prc: np.ndarray
    reference: Reference | None = None
    by_layer: dict | None = None

    @cached_property
    def sigma_root(self) -> np.ndarray:
        """sigma^{1/2} (float64 (F, F)), computed once for every set compared with it."""
        return sqrt_psd(torch.as_tensor(self.sigma, dtype=torch.float64)).numpy()


def reference_features(profile: str = "testbed", cache_dir=None) -> ReferenceFeatures:
    """The profile's reference (testbed: the digits test split; paper: the ADM batch, whose
    precomputed mu/sigma give FID and whose images give P/R), through the same network."""
    _, ref = _inputs(profile, None, None, ("fid", "prc"), cache_dir)
    by_layer = _layer_features(ref.images, profile, cache_dir)
    layers = FEATURE_LAYERS[PROFILE_EXTRACTORS[profile]]
    if ref.stats is not None:
        mu, sigma = ref.stats["mu"], ref.stats["sigma"]
    else:
        stats = fid_features_to_statistics(by_layer[layers["fid"]].float().cpu())
        mu, sigma = stats["mu"], stats["sigma"]
    prc = by_layer[layers["prc"]].float().cpu().numpy()
    return ReferenceFeatures(
        np.asarray(mu, np.float64), np.asarray(sigma, np.float64), prc, ref, by_layer
    )


def set_scores(
    features: dict[str, np.ndarray], reference: ReferenceFeatures, profile: str = "testbed"
) -> dict:
    """`fidelity.evaluate(images, profile=profile)` of a set from its `sample_features`, without
    running the network again: the same FID, IS (both protocols) and precision/recall.

    Returns:
        as `fidelity.evaluate` with every metric.
    """
    if reference.reference is None or reference.by_layer is None:
        raise ValueError(
            "reference: expected `reference_features`, which keeps its images' features"
        )
    layers = FEATURE_LAYERS[PROFILE_EXTRACTORS[profile]]
    by_layer = {layers[metric]: torch.from_numpy(features[key]) for key, metric in _KEYS.items()}
    return metrics_of_features(by_layer, reference.reference, reference.by_layer, profile)


def sqrt_psd(matrix: Tensor) -> Tensor:
    """The symmetric square root of a positive semi-definite matrix (negative eigenvalues of
    rounding clamped to 0). Shapes: (F, F) -> (F, F)."""
    vals, vecs = torch.linalg.eigh(matrix)
    return (vecs * vals.clamp(min=0).sqrt()) @ vecs.T


def frechet_to_reference(x: Tensor, mu: Tensor, sigma: Tensor, sigma_root: Tensor) -> float:
    """FID of the rows of x against fixed reference statistics, sigma_root = `sqrt_psd(sigma)`
    computed once for every set compared with them.

    tr sqrt(S R) is the sum of sqrt(eig(R^{1/2} S R^{1/2})), and R^{1/2} S R^{1/2} = A^T A with
    A = (x - mean) R^{1/2} / sqrt(N - 1), whose nonzero eigenvalues are those of the smaller of
    A^T A (F x F) and A A^T (N x N): a few samples in 2,048 dimensions cost an N x N problem.

    Shapes: x (N, F), mu (F,), sigma and sigma_root (F, F), all float64 -> scalar.
    """
    mean = x.mean(0)
    xc = x - mean
    a = xc @ sigma_root / math.sqrt(len(x) - 1)
    vals = torch.linalg.eigvalsh(a @ a.T if len(a) < a.shape[1] else a.T @ a).clamp(min=0)
    diff = mean - mu
    trace = (xc * xc).sum() / (len(x) - 1)
    return float(diff @ diff + trace + sigma.trace() - 2 * vals.sqrt().sum())


def _kth_radius(x: Tensor, k: int) -> Tensor:
    """Distance of each row to its k-th nearest other row (torch-fidelity's kthvalue(k + 1))."""
    return torch.cdist(x, x).kthvalue(k + 1, dim=1).values


class SampleSet:
    """One sampled set against the reference: per-sample quantities from which every metric of
    `METRICS` is recomputed on any resample.

    Args:
        features: `sample_features` of the set.
        clip: per-sample CLIP score (testbed: class probability x100), (N,).
        reference: `reference_features`.
        device: where the FID algebra runs (a GPU for Inception's 2048 dimensions).
    """

    def __init__(self, features: dict, clip, reference: ReferenceFeatures, device: str = "cpu"):
        n = len(features["fid"])
        clip = np.asarray(clip, dtype=np.float64)
        if clip.shape != (n,) or len(features["logits"]) != n or len(features["prc"]) != n:
            raise ValueError(f"features and clip: expected {n} samples each")
        self.n = n
        self.x = torch.as_tensor(features["fid"], dtype=torch.float64, device=device)
        self.logits = torch.as_tensor(features["logits"])
        self.clip = clip
        self.ref_mu = torch.as_tensor(reference.mu, device=device)
        self.ref_sigma = torch.as_tensor(reference.sigma, device=device)
        self.ref_root = torch.as_tensor(reference.sigma_root, device=device)
        s = torch.as_tensor(features["prc"], dtype=torch.float32)
        r = torch.as_tensor(reference.prc, dtype=torch.float32)
        k = PRC_NEIGHBORHOOD
        self.inside = (torch.cdist(s, r) <= _kth_radius(r, k)).any(dim=1).numpy()  # (N,)
        self.cover = torch.cdist(r, s) <= _kth_radius(s, k)  # (M, N): sample j covers ref i
        self._resampled: dict[tuple, dict[str, np.ndarray]] = {}

    def fid(self, idx: np.ndarray) -> float:
        x = self.x[torch.as_tensor(idx, device=self.x.device)]
        return frechet_to_reference(x, self.ref_mu, self.ref_sigma, self.ref_root)

    def scores(self, idx: np.ndarray) -> dict[str, float]:
        """Every metric of `METRICS` on the samples `idx` (with repeats). Shapes: idx (N,)."""
        picked = torch.as_tensor(np.unique(idx))
        return {
            "fid": self.fid(idx),
            "is_10_splits": split_inception_score(self.logits[torch.as_tensor(idx)]),
            "clip": float(self.clip[idx].mean()),
            "precision": float(self.inside[idx].mean()),
            "recall": float(self.cover[:, picked].any(dim=1).double().mean()),
        }

    def resample_scores(self, labels, n_boot: int, seed: int) -> dict[str, np.ndarray]:
        """Every metric of `METRICS` on each `stratified_indices(labels, n_boot, seed)` resample,
        {metric: (n_boot,)}; kept per (labels, n_boot, seed), so that a baseline paired with
        many rows (which share their resamples) computes its own once."""
        labels = np.asarray(labels)
        key = (labels.dtype.str, labels.tobytes(), n_boot, seed)
        if key not in self._resampled:
            draws = [self.scores(idx) for idx in stratified_indices(labels, n_boot, seed)]
            self._resampled[key] = {k: np.array([d[k] for d in draws]) for k in METRICS}
        return self._resampled[key]


def paired_bootstrap(
    base: SampleSet, row: SampleSet, labels, n_boot: int = 1000, seed: int = 0
) -> dict[str, dict[str, float]]:
    """Each metric's difference row - base with its 95% paired-bootstrap interval.

    Args:
        base: the baseline's set.
        row: the pruned (or control) row's set, paired sample by sample with `base`.
        labels: class of each pair (resampling keeps each class's count).
        n_boot: resamples.
        seed: generator seed (the same for every row, so rows share their resamples).

    Returns:
        {metric: {"difference", "low", "high", "sd"}} for each of `METRICS` ("sd": the standard
        deviation of the bootstrap differences).
    """
    if base.n != row.n or len(labels) != base.n:
        raise ValueError(f"expected paired sets of one size with labels, got {base.n}, {row.n}")
    everyone = np.arange(base.n)
    full = {k: row.scores(everyone)[k] - v for k, v in base.scores(everyone).items()}
    a, b = base.resample_scores(labels, n_boot, seed), row.resample_scores(labels, n_boot, seed)
    draws = {k: b[k] - a[k] for k in METRICS}
    out = {}
    for k in METRICS:
        low, high = percentile_interval(draws[k])
        out[k] = {"difference": full[k], "low": low, "high": high, "sd": float(np.std(draws[k]))}
    return out


def bootstrap_spread(
    sample: SampleSet, labels, n_boot: int = 1000, seed: int = 0
) -> dict[str, dict[str, float]]:
    """Each metric of one set with its 95% bootstrap interval: the sampling noise of the metric
    itself, which an independently sampled set of the same size would differ by.

    Returns:
        {metric: {"value", "low", "high", "sd"}} for each of `METRICS`.
    """
    if len(labels) != sample.n:
        raise ValueError(f"labels: expected {sample.n}, got {len(labels)}")
    full = sample.scores(np.arange(sample.n))
    draws = sample.resample_scores(labels, n_boot, seed)
    out = {}
    for k in METRICS:
        low, high = percentile_interval(draws[k])
        out[k] = {"value": full[k], "low": low, "high": high, "sd": float(np.std(draws[k]))}
    return out


def seed_block_spread(
    base: SampleSet, row: SampleSet, labels, blocks: int = 4
) -> dict[str, dict[str, float]]:
    """The difference row - base on disjoint blocks of the sampling seeds: each block holds an
    equal share of every class's samples, so the blocks are independent sampling runs of N /
    blocks samples.

    Returns:
        {metric: {"mean", "sd", "sd_at_n"}}: mean and standard deviation over the blocks, and that
        deviation scaled to N samples (divided by sqrt(blocks)), to set beside the bootstrap's.
    """
    labels = np.asarray(labels)
    assigned = np.empty(len(labels), dtype=np.int64)
    for value in np.unique(labels):
        members = np.flatnonzero(labels == value)
        assigned[members] = np.arange(len(members)) % blocks
    diffs = {k: [] for k in METRICS}
    for b in range(blocks):
        idx = np.flatnonzero(assigned == b)
        a, r = base.scores(idx), row.scores(idx)
        for k in METRICS:
            diffs[k].append(r[k] - a[k])
    return {
        k: {
            "mean": float(np.mean(v)),
            "sd": float(np.std(v, ddof=1)),
            "sd_at_n": float(np.std(v, ddof=1) / np.sqrt(blocks)),
        }
        for k, v in diffs.items()
    }
