"""The testbed profile's models: small AdaLN transformers trained here on scikit-learn's digits.

Each testbed model is the zoo's model class at a small size, trained by `training.trainer` in one
of the two conventions the paper's models use, in two tiers (`TIERS`): the book-build length that
shows the early dynamics, and a long one that reaches the paper's regime. Both tiers are shipped in
data/testbed (weights, monitor log, provenance) and loaded; any other setting is trained here and
kept in the artifact cache, keyed by every training parameter and the trainer's code.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, replace
from pathlib import Path

from safetensors.torch import load_file

from semantic_bottleneck.book.cache import cached
from semantic_bottleneck.book.params import find_root
from semantic_bottleneck.generation.decode import DIGITS
from semantic_bottleneck.generation.source import ModelSource
from semantic_bottleneck.training.data import DIGITS_SIZE, condition_inputs
from semantic_bottleneck.training.monitor import read_log
from semantic_bottleneck.training.recipes import testbed_recipe
from semantic_bottleneck.training.trainer import TrainConfig, train
from semantic_bottleneck.zoo import build_model
from semantic_bottleneck.zoo.dit import ConditionSetModel

# Sizes and rates chosen so the paper's dynamics show in CPU minutes: nPR of c rises within
# ~100 steps, then falls (measured curves: the Fig 12 page).
TESTBED_MODELS: dict[str, TrainConfig] = {
    # DiT/MDT convention: epsilon + learned variance, integer t, t = 999 is noise
    "testbed-ddpm": TrainConfig(family="dit", objective="ddpm", learn_sigma=True),
    # REPA/MG convention: linear path, velocity, float t, t = 1 is noise
    "testbed-flow": TrainConfig(family="sit", objective="repa", learn_sigma=False),
    # the REPA recipe at testbed scale (alignment to the digits classifier): Fig 12's headline
    "testbed-repa": testbed_recipe(),
    # the analogue of X-MDPT and MDSGen (MDT-based, DDPM convention): each digit conditioned on
    # its own 4x4 thumbnail through a Linear summed with T, instead of a class label
    "testbed-continuous": TrainConfig(
        family="dit", objective="ddpm", learn_sigma=True, dataset="digits-thumbnail"
    ),
}
# training objective -> (sampler family of the same time convention, its settings here): the
# digits have one channel, so DiT's "first 3 channels" guidance becomes that one channel
TESTBED_SAMPLERS: dict[str, tuple[str, dict]] = {
    "ddpm": ("dit", {"guided_channels": 1}),
    "repa": ("repa", {}),
}


# Training tiers. "ci": the length a book build would train in minutes, the early dynamics.
# "long": the same recipes trained 8x longer at the scale study's faster rate (width 128 at lr 3e-3
# reached DiT-XL's nPR within 16k steps there). Both are trained once by scripts/testbed_models.py
# and shipped in data/testbed, so a book build loads them; other settings are trained here.
TIERS: dict[str, dict] = {
    "ci": {},
    "long": {"steps": 16000, "lr": 3e-3, "log_every": 100},
}
SHIPPED = "data/testbed"  # under the project root: one folder per shipped model (`tier_name`)


def tier_name(model: str, tier: str) -> str:
    """The name of a testbed model in a tier: "testbed-ddpm" (ci), "testbed-ddpm-long" (long)."""
    return model if tier == "ci" else f"{model}-{tier}"


TESTBED_NAMES = [tier_name(m, t) for t in TIERS for m in TESTBED_MODELS]


# Further training seeds of one model and tier, shipped beside seed 0, so that the book sets the
# spread over training runs beside the sampling noise (the Table 2 page): "testbed-flow-seed1".
TRAINING_SEEDS = (1, 2)
SEED_MODEL = "testbed-flow"  # Table 2's convention, in the CI tier (2,000 steps each)


def seed_name(name: str, seed: int) -> str:
    """The name of a testbed model trained from another seed: "testbed-flow-seed1" (seed 0: the
    name itself)."""
    return name if seed == 0 else f"{name}-seed{seed}"


def split_seed(name: str) -> tuple[str, int]:
    """(name without the seed, seed) of a testbed name."""
    base, _, seed = name.rpartition("-seed")
    return (base, int(seed)) if base and seed.isdigit() else (name, 0)


def split_tier(name: str) -> tuple[str, str]:
    """(model, tier) of a testbed name (a seed suffix is ignored); ValueError naming the known
    names when it is none."""
    base = split_seed(name)[0]
    for model in TESTBED_MODELS:
        for tier in TIERS:
            if base == tier_name(model, tier):
                return model, tier
    raise ValueError(f"unknown testbed model {name!r}; expected one of {TESTBED_NAMES}")


def testbed_config(name: str, **overrides) -> TrainConfig:
    """The training config of a testbed model (tier and training seed included in its name),
    with fields overridden (e.g. steps=200; None leaves a field as it is)."""
    model, tier = split_tier(name)
    seed = split_seed(name)[1]
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return replace(TESTBED_MODELS[model], **{**TIERS[tier], "seed": seed, **overrides})


def is_continuous(config: TrainConfig) -> bool:
    """Whether a config trains the continuous-condition model (conditioned on thumbnails)."""
    return config.dataset == "digits-thumbnail"


def conditions(config: TrainConfig):
    """What a testbed model's c is analysed and sampled over: its class labels, or for the
    continuous model the thumbnails of the held-out condition set (`data.condition_set`).

    Shapes: -> (num_classes,) int64 or (n, 16) float32.
    """
    return condition_inputs(config.dataset, config.num_classes)


def testbed_source(name: str) -> ModelSource:
    """The `ModelSource` of a testbed model: what sampling it needs, without training it.

    The continuous model's "classes" are the n conditions of its condition set (label n: null).
    """
    config = testbed_config(name)  # checks the name
    family, overrides = TESTBED_SAMPLERS[config.objective]
    shape = (1, DIGITS_SIZE, DIGITS_SIZE)
    return ModelSource(name, family, len(conditions(config)), shape, DIGITS, dict(overrides))


def shipped_models(root: Path | None = None) -> dict[str, dict]:
    """The testbed models shipped with the project: folder name -> provenance (run.json).

    Each folder under data/testbed holds model.safetensors (EMA weights), log.jsonl, config.json
    and run.json, whose "sha256" pins the weights and whose "config" is the full TrainConfig.
    """
    base = (Path(root) if root else find_root()) / SHIPPED
    out = {}
    for prov in sorted(base.glob("*/run.json")) if base.is_dir() else []:
        out[prov.parent.name] = {**json.loads(prov.read_text()), "folder": str(prov.parent)}
    return out


def shipped(config: TrainConfig, root: Path | None = None) -> Path | None:
    """The shipped folder trained with exactly `config` (weights hash verified), else None."""
    wanted = asdict(config)
    for name, prov in shipped_models(root).items():
        if prov["config"] != wanted:
            continue
        folder = Path(prov["folder"])
        digest = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
        if digest != prov.get("sha256"):
            raise ValueError(
                f"{folder}/model.safetensors has sha256 {digest}, its run.json pins "
                f"{prov.get('sha256')}: the shipped weights were changed; restore them with git "
                f"or retrain with scripts/testbed_models.py --only {name}"
            )
        return folder
    return None


def trained(config: TrainConfig, progress: bool = True, weights: str = "ema") -> Path:
    """The artifact folder of a trained model: the shipped one with this exact config when there
    is one (EMA weights only), else the cached one (trained now when not cached).

    Returns:
        folder with model.safetensors (EMA), log.jsonl, config.json (and online.safetensors when
        trained here).
    """
    folder = shipped(config) if weights == "ema" else None
    if folder is not None:
        return folder
    folder, _ = cached("testbed-model", config, lambda out: train(config, out, progress=progress))
    return folder


def load_trained(config: TrainConfig, weights: str = "ema", progress: bool = True):
    """A trained testbed model in eval mode, and its nPR training log.

    Args:
        config: the training config (see `testbed_config`).
        weights: "ema" (analysed, as the official EMA releases) or "online".
        progress: show the training bar when training is needed.

    Returns:
        (model, log records, artifact folder). The continuous model comes as a
        `ConditionSetModel` over its condition set, so it is sampled and analysed as a class
        model whose classes are the conditions.
    """
    if weights not in ("ema", "online"):
        raise ValueError(f"weights must be 'ema' or 'online', got {weights!r}")
    folder = trained(config, progress, weights)
    model = build_model(config.family, **config.model_config())
    file = "model.safetensors" if weights == "ema" else "online.safetensors"
    model.load_state_dict(load_file(folder / file), strict=True)
    if is_continuous(config):
        model = ConditionSetModel(model, conditions(config))
    return model.eval().requires_grad_(False), read_log(folder / "log.jsonl"), folder


def training_log(name: str, **overrides) -> tuple[list[dict], TrainConfig]:
    """The nPR monitor log of a testbed model (trained now when not cached)."""
    config = testbed_config(name, **overrides)
    return read_log(trained(config) / "log.jsonl"), config


def curve_summary(records: list[dict], key: str = "classes_npr_mean") -> dict:
    """Start, peak (with its step) and end of one logged statistic."""
    values = [(r["step"], r[key]) for r in records if key in r]
    if not values:
        raise ValueError(f"no record holds {key!r}")
    peak_step, peak = max(values, key=lambda sv: sv[1])
    return {
        "start": values[0][1],
        "peak": peak,
        "peak_step": peak_step,
        "end": values[-1][1],
        "end_step": values[-1][0],
    }
