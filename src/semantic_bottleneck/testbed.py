"""The testbed profile's models: small AdaLN transformers trained here on scikit-learn's digits.

Each testbed model is the zoo's model class at a small size, trained by `training.trainer` in one
of the two conventions the paper's models use. Trained weights and the nPR log live in the
artifact cache, keyed by every training parameter, so a second book build reuses them.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from safetensors.torch import load_file

from semantic_bottleneck.cache import cached
from semantic_bottleneck.generation.decode import DIGITS
from semantic_bottleneck.generation.source import ModelSource
from semantic_bottleneck.training.data import DIGITS_CLASSES, DIGITS_SIZE
from semantic_bottleneck.training.monitor import read_log
from semantic_bottleneck.training.recipes import testbed_recipe
from semantic_bottleneck.training.trainer import TrainConfig, train
from semantic_bottleneck.zoo import build_model

# Sizes and rates chosen so the paper's dynamics show in CPU minutes: nPR of c rises within
# ~100 steps, then falls (measured curves: the Fig 12 page).
TESTBED_MODELS: dict[str, TrainConfig] = {
    # DiT/MDT convention: epsilon + learned variance, integer t, t = 999 is noise
    "testbed-ddpm": TrainConfig(family="dit", objective="ddpm", learn_sigma=True),
    # REPA/MG convention: linear path, velocity, float t, t = 1 is noise
    "testbed-flow": TrainConfig(family="sit", objective="repa", learn_sigma=False),
    # the REPA recipe at testbed scale (alignment to the digits classifier): Fig 12's headline
    "testbed-repa": testbed_recipe(),
}
# training objective -> (sampler family of the same time convention, its settings here): the
# digits have one channel, so DiT's "first 3 channels" guidance becomes that one channel
TESTBED_SAMPLERS: dict[str, tuple[str, dict]] = {
    "ddpm": ("dit", {"guided_channels": 1}),
    "repa": ("repa", {}),
}


def testbed_config(name: str, **overrides) -> TrainConfig:
    """The training config of a testbed model, with fields overridden (e.g. steps=200)."""
    if name not in TESTBED_MODELS:
        raise ValueError(
            f"unknown testbed model {name!r}; expected one of {sorted(TESTBED_MODELS)}"
        )
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return replace(TESTBED_MODELS[name], **overrides)


def testbed_source(name: str) -> ModelSource:
    """The `ModelSource` of a testbed model: what sampling it needs, without training it."""
    family, overrides = TESTBED_SAMPLERS[testbed_config(name).objective]
    shape = (1, DIGITS_SIZE, DIGITS_SIZE)
    return ModelSource(name, family, DIGITS_CLASSES, shape, DIGITS, dict(overrides))


def trained(config: TrainConfig, progress: bool = True) -> Path:
    """The artifact folder of a trained model (trained now when not cached).

    Returns:
        folder with model.safetensors (EMA), online.safetensors, log.jsonl, config.json.
    """
    folder, _ = cached("testbed-model", config, lambda out: train(config, out, progress=progress))
    return folder


def load_trained(config: TrainConfig, weights: str = "ema", progress: bool = True):
    """A trained testbed model in eval mode, and its nPR training log.

    Args:
        config: the training config (see `testbed_config`).
        weights: "ema" (analysed, as the official EMA releases) or "online".
        progress: show the training bar when training is needed.

    Returns:
        (model, log records, artifact folder).
    """
    if weights not in ("ema", "online"):
        raise ValueError(f"weights must be 'ema' or 'online', got {weights!r}")
    folder = trained(config, progress)
    model = build_model(config.family, **config.model_config())
    file = "model.safetensors" if weights == "ema" else "online.safetensors"
    model.load_state_dict(load_file(folder / file), strict=True)
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
