"""The scores of one paper-profile sample file: FID, IS and precision/recall against the ADM
reference batch, and CLIP score.

Kept apart from the sweep tables so that the artifact cache keys scores by the evaluation code
that computes them (and the samples' own key), not by code that only shows them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from semantic_bottleneck.generation.npz import load_samples

from .clip_score import DEFAULT_MODEL, DEFAULT_PRETRAINED, DEFAULT_TEMPLATE, clip_score
from .fidelity import evaluate


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


def score_samples(npz: Path, scoring: PaperEval, cache_dir: str | None = None) -> dict:
    """Every score of a sweep row's ADM npz: the keys of `fidelity.evaluate` and "clip"."""
    samples = load_samples(npz)
    scores = evaluate(samples.images, profile="paper", cache_dir=cache_dir)
    scores["clip"] = clip_score(
        samples.images,
        samples.labels,
        scoring.clip_model,
        scoring.clip_pretrained,
        scoring.clip_template,
        device="cuda" if torch.cuda.is_available() else "cpu",
        cache_dir=cache_dir,
    )
    return scores
