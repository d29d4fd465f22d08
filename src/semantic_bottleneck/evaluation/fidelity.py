"""FID, Inception Score and precision/recall through torch-fidelity 0.4, one code path for both profiles.

Both profiles run the same torch-fidelity functions (feature extraction over a dataset of uint8
CHW tensors, `isc_features_to_metric`, `fid_features_to_statistics` and
`fid_statistics_to_metric`, `prc_features_to_metric`); only the feature network differs:

| profile | feature network | FID, P/R layer | IS layer | reference |
|---|---|---|---|---|
| paper | torch-fidelity's InceptionV3 ("inception-v3-compat", the 2015-12-05 graph of ADM's evaluator) | "2048" (pool3) | "logits_unbiased" (1008 classes, no bias) | ADM `VIRTUAL_imagenet256_labeled.npz`: `mu`/`sigma` for FID, the 10k images `arr_0` for P/R |
| testbed | the digits classifier, registered as "digits-classifier" | "features" (pooled, C) | "logits_unbiased" (10 classes, no bias) | the digits test split |

Settings follow ADM's evaluator (guided-diffusion `evaluations/evaluator.py`): precision/recall
with k = 3 nearest neighbours, samples against the reference images;
FID of the samples' statistics against the reference batch's precomputed `mu` and `sigma`
(statistics of the whole ImageNet train set). Where a reference has no statistics (the testbed),
they are computed from its images through the same extractor, as `calculate_metrics` would.

The Inception Score is reported under two protocols, `IS_PROTOCOLS`, from the same logits:
"is_adm" (ADM's evaluator: chunks of 5,000 samples) and "is_10_splits" (torch-fidelity's default:
10 shuffled splits). They are different numbers on ImageNet: IS <= min(split size, classes), and a
split of 500 samples sees about 400 of the 1,000 classes, so it scores well below a split of 5,000.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset
from torch_fidelity import KEY_METRIC_FID, KEY_METRIC_ISC_MEAN, register_feature_extractor
from torch_fidelity.defaults import DEFAULTS
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
from torch_fidelity.metric_isc import isc_features_to_metric
from torch_fidelity.metric_prc import prc_features_to_metric
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY
from torch_fidelity.utils import create_feature_extractor, get_featuresdict_from_dataset

from semantic_bottleneck.evaluation.classifier import (
    classifier_input,
    digits_classifier,
    load_classifier,
)
from semantic_bottleneck.evaluation.inputs import (
    ADM_REFERENCE,
    INCEPTION,
    check_tensor_only,
    locate_inputs,
)
from semantic_bottleneck.training.data import DIGITS_SIZE, digits, to_uint8

DIGITS_EXTRACTOR = "digits-classifier"
INCEPTION_EXTRACTOR = "inception-v3-compat"
PROFILE_EXTRACTORS = {"paper": INCEPTION_EXTRACTOR, "testbed": DIGITS_EXTRACTOR}
METRICS = ("fid", "is", "prc")
FEATURE_LAYERS = {  # metric -> feature layer of the extractor
    INCEPTION_EXTRACTOR: {"fid": "2048", "is": "logits_unbiased", "prc": "2048"},
    DIGITS_EXTRACTOR: {"fid": "features", "is": "logits_unbiased", "prc": "features"},
}
PathLike = str | os.PathLike


class DigitsFeatureExtractor(FeatureExtractorBase):
    """torch-fidelity feature extractor around the digits classifier.

    Input: torch-fidelity's uint8 (N, 3, H, W) batches, converted by `classifier_input`
    (channel mean; bilinear antialiased resize to 8x8 when H, W != 8; x / 127.5 - 1).
    Features: "features" (pooled, (N, C)), "logits_unbiased" (features @ W^T, (N, 10), the
    analogue of Inception's bias-free logits that torch-fidelity's IS uses) and "logits".

    Args:
        name: the registered name.
        features_list: requested feature names.
        feature_extractor_weights_path: a classifier folder (`classifier.classifier_folder`);
            None uses the default trained classifier.
    """

    def __init__(self, name, features_list, feature_extractor_weights_path=None, **kwargs):
        super().__init__(name, features_list)
        if feature_extractor_weights_path is None:
            self.classifier, _ = digits_classifier()
        else:
            self.classifier, _ = load_classifier(feature_extractor_weights_path)
        self.requires_grad_(False)
        self.eval()

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        """Shapes: x uint8 (N, 3, H, W) -> one tensor per requested feature, (N, C) or (N, 10)."""
        features = self.classifier.features(classifier_input(x))
        unbiased = features @ self.classifier.head.weight.T
        out = {
            "features": features,
            "logits_unbiased": unbiased,
            "logits": unbiased + self.classifier.head.bias,
        }
        return tuple(out[name] for name in self.features_list)

    @staticmethod
    def get_provided_features_list():
        return ("features", "logits_unbiased", "logits")

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        return {"isc": "logits_unbiased", "fid": "features", "kid": "features", "prc": "features"}[
            metric
        ]

    @staticmethod
    def can_be_compiled():
        return False

    @staticmethod
    def get_dummy_input_for_compile():
        return torch.zeros(1, 3, DIGITS_SIZE, DIGITS_SIZE, dtype=torch.uint8)


def register_digits_extractor() -> str:
    """Register `DigitsFeatureExtractor` with torch-fidelity (once); return its name."""
    registered = FEATURE_EXTRACTORS_REGISTRY.get(DIGITS_EXTRACTOR)
    if registered is None:
        register_feature_extractor(DIGITS_EXTRACTOR, DigitsFeatureExtractor)
    elif registered is not DigitsFeatureExtractor:
        raise ValueError(f"torch-fidelity already has another extractor named {DIGITS_EXTRACTOR!r}")
    return DIGITS_EXTRACTOR


# ----------------------------------------------------------------------------- images


def to_adm_images(x: Tensor) -> Tensor:
    """Images in [-1, 1] to the ADM sample layout: uint8 (N, H, W, 3), gray repeated to RGB.

    Shapes: (N, 1 or 3, H, W) -> (N, H, W, 3).
    """
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"expected images of shape (N, 1 or 3, H, W), got {tuple(x.shape)}")
    return to_uint8(x).expand(-1, 3, -1, -1).permute(0, 2, 3, 1).contiguous()


def digits_reference(split_seed: int = 0) -> Tensor:
    """The testbed's reference batch: the digits test split in the ADM layout.

    Shapes: -> uint8 (359, 8, 8, 3) for the default split.
    """
    return to_adm_images(digits("test", split_seed)[0])


def as_chw_images(images, what: str, min_count: int = 2) -> Tensor:
    """Validate ADM-layout images (numpy or tensor) and return them as a uint8 (N, 3, H, W) view.

    Args:
        images: uint8 (N, H, W, 3), numpy or tensor.
        what: their name in error messages.
        min_count: the fewest images accepted (statistics need 2).

    Returns:
        a (N, 3, H, W) view of the same memory where possible.

    Shapes: (N, H, W, 3) -> (N, 3, H, W).
    """
    tensor = torch.as_tensor(images)
    if tensor.dtype != torch.uint8 or tensor.ndim != 4 or tensor.shape[-1] != 3:
        raise ValueError(
            f"{what}: expected uint8 images of shape (N, H, W, 3), got {tensor.dtype} "
            f"{tuple(tensor.shape)}"
        )
    if tensor.shape[0] < min_count:
        raise ValueError(f"{what}: need at least {min_count} images, got {tensor.shape[0]}")
    return tensor.permute(0, 3, 1, 2)


class _Images(Dataset):
    """torch-fidelity's input form: a dataset of uint8 (3, H, W) tensors."""

    def __init__(self, images: Tensor):
        self.images = images

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int) -> Tensor:
        return self.images[i]


# ----------------------------------------------------------------------------- reference


@dataclass
class Reference:
    """What the samples are compared with.

    Attributes:
        source: a description (file path or "digits test split").
        images: uint8 (M, 3, H, W), or None when not needed.
        stats: precomputed FID statistics {"mu", "sigma"} (float64), or None.
    """

    source: str
    images: Tensor | None
    stats: dict[str, np.ndarray] | None


def load_reference(reference, need_images: bool, use_stats: bool) -> Reference:
    """Read a reference: an ADM-format npz path, or images (uint8 (M, H, W, 3)).

    Args:
        reference: npz path (`arr_0`, optionally `mu` and `sigma`) or an image array/tensor.
        need_images: load the images even when statistics are there (precision/recall).
        use_stats: take the npz's `mu`/`sigma` for FID (only valid for Inception pool3 features).

    Returns:
        the Reference; `images` is loaded only when needed (arr_0 is 2 GB for ImageNet 256).
    """
    if not isinstance(reference, (str, os.PathLike)):
        return Reference("given images", as_chw_images(reference, "reference"), None)
    path = Path(reference)
    if not path.is_file():
        raise FileNotFoundError(f"reference batch not found: {path}")
    with np.load(path) as npz:  # allow_pickle stays False: arrays only
        stats = None
        if use_stats and {"mu", "sigma"} <= set(npz.files):
            stats = {"mu": npz["mu"].astype(np.float64), "sigma": npz["sigma"].astype(np.float64)}
        images = None
        if need_images or stats is None:
            if "arr_0" not in npz.files:
                raise ValueError(f"{path}: no 'arr_0' images; keys are {npz.files}")
            images = as_chw_images(torch.from_numpy(npz["arr_0"]), f"{path} arr_0")
    return Reference(str(path), images, stats)


# ----------------------------------------------------------------------------- inception score

ADM_SPLIT_SIZE = 5000  # guided-diffusion `compute_inception_score(..., split_size=5000)`
FIDELITY_SPLITS = DEFAULTS["isc_splits"]  # 10
FIDELITY_SEED = DEFAULTS["rng_seed"]  # 2020, the seed of torch-fidelity's sample shuffle


def _logit_matrix(x, what: str) -> Tensor:
    x = torch.as_tensor(x).detach().cpu()
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1 or not x.is_floating_point():
        raise ValueError(f"{what}: expected a float array (N, K), got {x.dtype} {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{what}: not all finite")
    return x


def adm_inception_score(
    predictions, split_size: int = ADM_SPLIT_SIZE, *, from_logits: bool = True
) -> float:
    """Inception Score as ADM's evaluator computes it: mean over consecutive chunks of samples.

    Numerics of guided-diffusion `evaluations/evaluator.py`, `Evaluator.compute_inception_score`:
    float32 softmax of the bias-free logits, then, per chunk `preds[i : i + split_size]` (the last
    chunk may be shorter and counts as much as the others), exp(mean_x sum_y p log(p / p_chunk))
    in float32 numpy, and the float32 mean of the chunk scores. The same numpy operations run here,
    so on the same float32 probabilities the result is bit-identical to ADM's. One deliberate
    change: a probability that is exactly 0 (one-hot input, or float32 underflow of exp below
    ~1e-45) contributes its limit 0 log 0 = 0, where ADM's expression gives NaN; every result that
    ADM returns finite is unchanged.

    Samples are not shuffled, as in ADM, so for N > split_size a class-major order (all samples
    of class 0 first, ...) gives each chunk only part of the classes and lowers the score.

    Args:
        predictions: (N, K) logits (`from_logits`) or probabilities, numpy or tensor; cast to
            float32 as ADM's graph is.
        split_size: samples per chunk.
        from_logits: whether `predictions` are logits (softmax applied) or probabilities.

    Returns:
        the mean chunk score (1 <= IS <= min(K, chunk size) up to float error).

    Shapes: (N, K) -> scalar.
    """
    x = _logit_matrix(predictions, "predictions").float()
    if isinstance(split_size, bool) or not isinstance(split_size, int) or split_size < 1:
        raise ValueError(f"split_size must be an integer >= 1, got {split_size!r}")
    if from_logits:
        preds = x.softmax(dim=1).numpy()
    else:
        preds = x.numpy()
        if (preds < 0).any() or not np.allclose(preds.sum(1), 1, atol=1e-3):
            raise ValueError("probabilities must be >= 0 with rows summing to 1")
    scores = []
    with np.errstate(divide="ignore", invalid="ignore"):  # log 0 = -inf, masked below
        for i in range(0, len(preds), split_size):
            part = preds[i : i + split_size]
            kl = part * (np.log(part) - np.log(np.expand_dims(np.mean(part, 0), 0)))
            kl = np.where(part > 0, kl, np.float32(0))
            kl = np.mean(np.sum(kl, 1))
            scores.append(np.exp(kl))
    return float(np.mean(scores))


def split_inception_score(
    logits, splits: int = FIDELITY_SPLITS, *, shuffle: bool = True, seed: int = FIDELITY_SEED
) -> float:
    """Inception Score as torch-fidelity computes it: mean over a fixed number of splits.

    Calls torch-fidelity's own `metric_isc.isc_features_to_metric` (what
    `calculate_metrics(isc=True)` runs): optional permutation of the samples by
    `np.random.RandomState(seed)`, float64 softmax and log-softmax of the logits, `splits` splits
    with bounds `i * N // splits` (sizes differ by at most one, none dropped), exp(mean KL) per
    split, float64 mean over splits.

    Args:
        logits: (N, K) logits, numpy or tensor.
        splits: number of splits; needs N >= splits (an empty split has no score).
        shuffle: permute the samples first (torch-fidelity's default `samples_shuffle=True`).
        seed: the permutation's seed (torch-fidelity's default `rng_seed=2020`).

    Returns:
        the mean split score.

    Shapes: (N, K) -> scalar.
    """
    x = _logit_matrix(logits, "logits")
    if isinstance(splits, bool) or not isinstance(splits, int) or splits < 1:
        raise ValueError(f"splits must be an integer >= 1, got {splits!r}")
    if x.shape[0] < splits:
        raise ValueError(
            f"IS over {splits} splits needs at least {splits} samples, got {x.shape[0]}"
        )
    return isc_features_to_metric(x, splits, shuffle=shuffle, rng_seed=seed)[KEY_METRIC_ISC_MEAN]


@dataclass(frozen=True)
class ISProtocol:
    """One definition of the Inception Score, with the names it is reported under.

    Both protocols score the softmax of the classifier's bias-free logits ("logits_unbiased"; for
    Inception the 1,008-way `softmax/logits/MatMul` of the 2015-12-05 graph, the tensor ADM's
    evaluator reads) as exp(mean_x KL(p(y|x) || p(y))), p(y) being the mean prediction of a split,
    and average that over splits. They differ only in the splits:

    - "is_adm", "IS (ADM, 5,000 per split)": the samples in their given order, cut into
      consecutive chunks of 5,000 (the last one may be shorter and weighs as much); float32.
      5,000 samples are one chunk, 50,000 are ten. Source: openai/guided-diffusion,
      evaluations/evaluator.py, `Evaluator.compute_inception_score(activations, split_size=5000)`.
    - "is_10_splits", "IS (10 splits)": the samples permuted with seed 2020, then cut into 10
      near-equal splits whatever N is (500 each for 5,000 samples); float64. These are
      `calculate_metrics(isc=True)`'s defaults (isc_splits=10, samples_shuffle=True,
      rng_seed=2020). Source: toshas/torch-fidelity, torch_fidelity/metric_isc.py,
      `isc_features_to_metric`. Needs at least 10 samples.

    Attributes:
        key: the snake_case key of `evaluate`'s result.
        label: the column name for tables.
        source: the official implementation it reproduces (repository, file, function).
        min_samples: the fewest samples it is defined for.
        score: logits (N, K) -> IS.
    """

    key: str
    label: str
    source: str
    min_samples: int
    score: Callable[[Tensor], float]


IS_PROTOCOLS: dict[str, ISProtocol] = {
    p.key: p
    for p in (
        ISProtocol(
            "is_adm",
            "IS (ADM, 5,000 per split)",
            "openai/guided-diffusion@22e0df8 evaluations/evaluator.py "
            "Evaluator.compute_inception_score",
            1,
            adm_inception_score,
        ),
        ISProtocol(
            "is_10_splits",
            "IS (10 splits)",
            "toshas/torch-fidelity v0.4.0 torch_fidelity/metric_isc.py isc_features_to_metric",
            FIDELITY_SPLITS,
            split_inception_score,
        ),
    )
}


def inception_scores(logits, keys=tuple(IS_PROTOCOLS)) -> dict[str, float]:
    """The Inception Score of logits under the protocols `keys` of `IS_PROTOCOLS` (all by default).

    Shapes: logits (N, K) -> {key: scalar}.
    """
    unknown = [k for k in keys if k not in IS_PROTOCOLS]
    if unknown or not keys:
        raise ValueError(f"keys must be a non-empty subset of {tuple(IS_PROTOCOLS)}, got {keys}")
    return {k: IS_PROTOCOLS[k].score(logits) for k in keys}


# ----------------------------------------------------------------------------- evaluation


def _features(images: Tensor, extractor, batch_size: int, cuda: bool, verbose: bool) -> dict:
    # save_cpu_ram=True: no DataLoader workers (the images are already in memory)
    return get_featuresdict_from_dataset(
        _Images(images), extractor, batch_size, cuda, True, verbose
    )


def _check_metrics(metrics) -> tuple[str, ...]:
    metrics = tuple(metrics)
    unknown = [m for m in metrics if m not in METRICS]
    if unknown or not metrics:
        raise ValueError(f"metrics must be a non-empty subset of {METRICS}, got {metrics}")
    return metrics


def evaluate(
    samples,
    reference=None,
    profile: str = "testbed",
    metrics=METRICS,
    *,
    weights: PathLike | None = None,
    prc_neighborhood: int = 3,
    batch_size: int = 128,
    cuda: bool | None = None,
    cache_dir: PathLike | None = None,
    verbose: bool = False,
) -> dict:
    """FID, Inception Score (two protocols) and precision/recall of samples.

    Args:
        samples: uint8 (N, H, W, 3) images (numpy or tensor), the ADM npz's `arr_0` layout.
        reference: npz path or uint8 (M, H, W, 3) images; None = the profile's reference (paper:
            the ADM batch from the weights cache; testbed: the digits test split).
        profile: "paper" (Inception) or "testbed" (digits classifier).
        metrics: any of "fid", "is" (both protocols of `IS_PROTOCOLS`: they come from the same
            logits), "prc".
        weights: paper: torch-fidelity Inception weights file (default: registry entry
            inception-fidelity); testbed: a classifier folder (default: the trained classifier).
        prc_neighborhood: k of the k-NN radii of precision/recall (3 as ADM).
        batch_size: images per feature-extraction batch.
        cuda: run the feature network on the GPU; None = when available.
        cache_dir: weights cache (default `fetch.default_cache_dir()`).
        verbose: torch-fidelity progress output.

    Returns:
        {"fid", "is_adm", "is_10_splits", "precision", "recall"} (those asked for) plus
        "n_samples", "n_reference", "extractor", "reference".

    Raises:
        ValueError: bad images, metrics or profile; IS with fewer than 10 samples.
        MissingInputError: a paper-profile input is not in the weights cache (named, with the
            command that fetches it).
    """
    if profile not in PROFILE_EXTRACTORS:
        raise ValueError(f"profile must be one of {tuple(PROFILE_EXTRACTORS)}, got {profile!r}")
    metrics = _check_metrics(metrics)
    images = as_chw_images(samples, "samples")
    _check_count(images.shape[0], "samples", metrics, prc_neighborhood)
    if "is" in metrics:
        for p in IS_PROTOCOLS.values():
            if images.shape[0] < p.min_samples:
                raise ValueError(
                    f"{p.label} needs at least {p.min_samples} samples, got {images.shape[0]}"
                )
    weights, ref = _inputs(profile, reference, weights, metrics, cache_dir)
    if ref is not None and ref.images is not None:
        _check_count(ref.images.shape[0], "reference images", metrics, prc_neighborhood)

    # 1. features of the samples and (unless only statistics are needed) of the reference
    name = PROFILE_EXTRACTORS[profile]
    cuda = torch.cuda.is_available() if cuda is None else cuda
    layers = FEATURE_LAYERS[name]
    extractor = create_feature_extractor(
        name,
        sorted({layers[m] for m in metrics}),
        cuda=cuda,
        verbose=verbose,
        feature_extractor_weights_path=None if weights is None else str(weights),
    )
    feats = _features(images, extractor, batch_size, cuda, verbose)
    ref_feats = None
    if ref is not None and ref.images is not None:
        ref_feats = _features(ref.images, extractor, batch_size, cuda, verbose)

    # 2. the metrics, by torch-fidelity's functions
    return metrics_of_features(feats, ref, ref_feats, profile, metrics, prc_neighborhood, verbose)


def metrics_of_features(
    feats: dict[str, Tensor],
    ref: Reference | None,
    ref_feats: dict[str, Tensor] | None,
    profile: str,
    metrics=METRICS,
    prc_neighborhood: int = 3,
    verbose: bool = False,
) -> dict:
    """`evaluate`'s result from features the profile's network already gave, so that a sweep
    runs the network once per set (and once for the reference) however many metrics it scores.

    Args:
        feats: the samples' features by layer name (`FEATURE_LAYERS`), as torch-fidelity
            returns them.
        ref: the reference (`load_reference`; None when no metric needs one).
        ref_feats: the reference images' features by layer (needed by "prc", and by "fid"
            when the reference has no precomputed statistics).
        profile, metrics, prc_neighborhood, verbose: as `evaluate`.

    Returns:
        as `evaluate`.
    """
    layers = FEATURE_LAYERS[PROFILE_EXTRACTORS[profile]]
    out = {}
    if "fid" in metrics:
        out["fid"] = _fid(feats[layers["fid"]], ref, ref_feats, layers["fid"], verbose)
    if "is" in metrics:
        out.update(inception_scores(feats[layers["is"]]))
    if "prc" in metrics:
        prc = prc_features_to_metric(
            feats[layers["prc"]],
            ref_feats[layers["prc"]],
            prc_neighborhood=prc_neighborhood,
            prc_batch_size=DEFAULTS["prc_batch_size"],
            verbose=verbose,
        )
        out.update(precision=prc["precision"], recall=prc["recall"])
    out.update(
        n_samples=len(next(iter(feats.values()))),
        n_reference=None if ref_feats is None else ref.images.shape[0],
        extractor=PROFILE_EXTRACTORS[profile],
        reference=None if ref is None else ref.source,
    )
    return out


def _check_count(n: int, what: str, metrics: tuple[str, ...], k: int) -> None:
    if "prc" in metrics and n <= k:
        raise ValueError(f"precision/recall with k={k} needs more than {k} {what}, got {n}")


def _inputs(
    profile: str, reference, weights, metrics: tuple[str, ...], cache_dir
) -> tuple[PathLike | None, Reference | None]:
    """The feature network's weights and the reference (None when no metric needs one).

    Paper profile: every missing input is named at once, before any heavy work, and the
    Inception file is checked to hold only tensors before torch-fidelity unpickles it.
    """
    needs_reference = "fid" in metrics or "prc" in metrics
    if profile == "paper":
        wanted = [INCEPTION] if weights is None else []
        wanted += [ADM_REFERENCE] if needs_reference and reference is None else []
        found = locate_inputs(wanted, "paper-profile evaluation (FID, IS, P/R)", cache_dir)
        weights = check_tensor_only(found.get(INCEPTION, weights))
        reference = found.get(ADM_REFERENCE, reference)
    else:
        register_digits_extractor()
    if not needs_reference:
        return weights, None
    if reference is None:  # testbed default
        return weights, Reference(
            "digits test split", as_chw_images(digits_reference(), "ref"), None
        )
    use_stats = PROFILE_EXTRACTORS[profile] == INCEPTION_EXTRACTOR and "fid" in metrics
    return weights, load_reference(reference, need_images="prc" in metrics, use_stats=use_stats)


def _fid(
    features: Tensor, ref: Reference, ref_feats: dict | None, layer: str, verbose: bool
) -> float:
    """FID of sample features against the reference statistics (precomputed or from its features)."""
    stats = fid_features_to_statistics(features)
    if ref.stats is not None:
        dim = features.shape[1]
        if ref.stats["mu"].shape != (dim,) or ref.stats["sigma"].shape != (dim, dim):
            raise ValueError(
                f"{ref.source}: mu/sigma have shapes {ref.stats['mu'].shape}, "
                f"{ref.stats['sigma'].shape}; the features have {dim} dimensions"
            )
        # the npz holds float64; the sample mean is float32 (as in ADM, which upcasts it too)
        stats = {k: v.astype(np.float64) for k, v in stats.items()}
        ref_stats = ref.stats
    else:
        ref_stats = fid_features_to_statistics(ref_feats[layer])
    return fid_statistics_to_metric(stats, ref_stats, verbose)[KEY_METRIC_FID]
