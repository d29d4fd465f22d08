"""The scores of one paper-profile sample file: FID, IS and precision/recall against the ADM
reference batch, and CLIP score; and a pruned row's paired bootstrap against its baseline.

Kept apart from the sweep tables so that the artifact cache keys scores by the evaluation code
that computes them (and the samples' own key), not by code that only shows them.

Besides the scores, each file's per-sample quantities are kept (`features.npz`: Inception's
pool3 features, IS logits and P/R features of `paired.sample_features`, and the per-sample CLIP
score), so that a row's difference from the baseline gets the same 95% paired-bootstrap interval
as in the testbed (`evaluation.paired`): resampling the pairs within each class, the ADM batch
held fixed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from semantic_bottleneck.generation.npz import load_samples

from .clip_score import DEFAULT_MODEL, DEFAULT_PRETRAINED, DEFAULT_TEMPLATE, clip_scores, load_clip
from .paired import (
    ReferenceFeatures,
    SampleSet,
    bootstrap_spread,
    paired_bootstrap,
    sample_features,
    set_scores,
)


@dataclass(frozen=True)
class PaperEval:
    """How a paper-profile sweep scores its samples (keys the score cache, not the samples').

    Attributes:
        clip_model: open_clip model name.
        clip_pretrained: open_clip tag or weights file.
        clip_template: CLIP prompt with one "{}" for the class name.
    """

    clip_model: str = DEFAULT_MODEL
    clip_pretrained: str = DEFAULT_PRETRAINED
    clip_template: str = DEFAULT_TEMPLATE


def score_samples(
    npz: Path, scoring: PaperEval, reference: ReferenceFeatures, cache_dir: str | None = None
) -> tuple[dict, dict[str, np.ndarray]]:
    """Every score of a sweep row's ADM npz, and the per-sample quantities behind them; the
    samples go through Inception once (`paired.set_scores`).

    Args:
        npz: the row's samples.
        scoring: CLIP settings.
        reference: `paired.reference_features("paper")` (once for all the rows of a sweep).
        cache_dir: weights cache.

    Returns:
        (the keys of `fidelity.evaluate` and "clip", {"fid", "logits", "prc": float32 (N, F)
        per-sample features (`paired.sample_features`), "clip": float32 (N,) per-sample CLIP
        scores}).
    """
    samples = load_samples(npz)
    features = sample_features(samples.images, "paper", cache_dir)
    scores = set_scores(features, reference, "paper")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    clip = load_clip(scoring.clip_model, scoring.clip_pretrained, None, device, cache_dir)
    per_sample = clip_scores(clip, samples.images, samples.labels, scoring.clip_template)
    scores["clip"] = per_sample.mean().item()
    return scores, {**features, "clip": per_sample.float().cpu().numpy()}


def _sample_set(features: Path, reference: ReferenceFeatures) -> SampleSet:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with np.load(features) as z:
        return SampleSet({k: z[k] for k in ("fid", "logits", "prc")}, z["clip"], reference, device)


def paired_scores(
    base_features: Path, row_features: Path, labels, n_boot: int, seed: int,
    reference: ReferenceFeatures,
) -> dict[str, dict[str, float]]:  # fmt: skip
    """A row's paired bootstrap against its baseline (`paired.paired_bootstrap`), from the two
    files' `features.npz`.

    Args:
        base_features, row_features: the baseline's and the row's per-sample quantities.
        labels: class of each pair (resampling keeps each class's count).
        n_boot: resamples; seed: their generator (shared by every row).
        reference: `paired.reference_features("paper")` (once for all the rows of a sweep).
    """
    base, row = _sample_set(base_features, reference), _sample_set(row_features, reference)
    return paired_bootstrap(base, row, labels, n_boot, seed)


def baseline_spread(
    features: Path, labels, n_boot: int, seed: int, reference: ReferenceFeatures
) -> dict[str, dict[str, float]]:
    """The baseline's own sampling noise per metric (`paired.bootstrap_spread`)."""
    return bootstrap_spread(_sample_set(features, reference), labels, n_boot, seed)
