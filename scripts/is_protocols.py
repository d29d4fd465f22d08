"""The Inception Score under both protocols of `IS_PROTOCOLS`, and why they differ.

1. testbed: IS of a sample set (the digits test or train split, or an ADM-layout npz of
   generated samples) through the digits classifier, under ADM's protocol (chunks of 5,000) and
   torch-fidelity's (10 splits), and their ratio.
2. synthetic: N = 5,000 predictions over K = 1,000 classes, as an ImageNet evaluation set, with
   uniformly random labels and logits margin * onehot(label) + N(0, 1) noise; a larger margin is a
   more confident classifier. A split of 500 samples sees only ~400 of the 1,000 classes, so its
   score falls well below that of the one 5,000-sample chunk ADM uses. With K = 10 (the testbed)
   both splits see every class and the protocols agree. A class-major order (all samples of a
   class together, as `balanced_labels`) shows why torch-fidelity shuffles before splitting.

Prints JSON; ratio = is_10_splits / is_adm. CPU only, no network, well under a minute.

    python scripts/is_protocols.py [--samples NPZ | --split test|train] [--weights FOLDER]
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import torch

from semantic_bottleneck.evaluation.fidelity import (
    IS_PROTOCOLS,
    digits_reference,
    evaluate,
    inception_scores,
    split_inception_score,
    to_adm_images,
)
from semantic_bottleneck.training.data import digits

SYNTHETIC_N = 5000
MARGINS = (8.0, 9.0, 9.5, 10.0, 12.0, 30.0)
CLASS_MAJOR_MARGIN = 9.5  # ADM IS ~250-280 at K = 1,000, near the ~300 that ImageNet models reach


def _scores(values: dict) -> dict:
    return {**values, "ratio": values["is_10_splits"] / values["is_adm"]}


def testbed(samples: str | None, split: str, weights: str | None) -> dict:
    """IS of a testbed sample set under both protocols."""
    if samples is not None:
        with np.load(samples) as npz:  # arrays only: allow_pickle stays False
            images, source = npz["arr_0"], samples
    elif split == "test":
        images, source = digits_reference(), "digits test split"
    else:
        images, source = to_adm_images(digits("train", 0)[0]), "digits train split"
    out = evaluate(images, profile="testbed", metrics=("is",), weights=weights, cuda=False)
    values = {k: out[k] for k in IS_PROTOCOLS}
    return {"source": source, "n_samples": out["n_samples"], **_scores(values)}


def synthetic_logits(labels: np.ndarray, k: int, margin: float, rng) -> torch.Tensor:
    """margin * onehot(labels) + standard normal noise, float32: shape (N, k)."""
    logits = rng.standard_normal((len(labels), k)).astype(np.float32)
    logits[np.arange(len(labels)), labels] += margin
    return torch.from_numpy(logits)


def synthetic(seed: int) -> dict:
    """Both protocols on synthetic predictions, per class count and margin."""
    rng = np.random.default_rng(seed)
    out = {}
    for k in (1000, 10):
        rows = []
        for margin in MARGINS:
            labels = rng.integers(0, k, SYNTHETIC_N)
            logits = synthetic_logits(labels, k, margin, rng)
            top = float(logits.softmax(1).max(1).values.mean())
            rows.append(
                {"margin": margin, "mean_top_prob": top, **_scores(inception_scores(logits))}
            )
        out[f"K={k}"] = rows
    labels = np.repeat(np.arange(1000), SYNTHETIC_N // 1000)
    logits = synthetic_logits(labels, 1000, CLASS_MAJOR_MARGIN, rng)
    out["K=1000 class-major"] = {
        "margin": CLASS_MAJOR_MARGIN,
        **_scores(inception_scores(logits)),
        # consecutive splits of 500 hold 100 classes each, so each scores at most 100
        "is_10_splits_unshuffled": split_inception_score(logits, shuffle=False),
    }
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", help="ADM-layout npz of testbed samples (arr_0 uint8 NHW3)")
    parser.add_argument("--split", choices=("test", "train"), default="test")
    parser.add_argument("--weights", help="digits classifier folder (default: the trained one)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic predictions")
    args = parser.parse_args(argv)
    result = {
        "protocols": {k: {"label": p.label, "source": p.source} for k, p in IS_PROTOCOLS.items()},
        "testbed": testbed(args.samples, args.split, args.weights),
        "synthetic": {"n": SYNTHETIC_N, "seed": args.seed, **synthetic(args.seed)},
    }
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
