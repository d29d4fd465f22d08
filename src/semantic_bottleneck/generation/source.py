"""What the samplers need to know about a model before loading it, and loading a checkpoint.

A `ModelSource` describes a registry checkpoint or a testbed model (`testbed.testbed_source`)
without reading any weights: its sampler family, classes, latent shape, decoder and its own
sampler settings. Every path that samples a model (the `generate` command, the sweeps, the
pages, the benchmarks) builds its sampler with `ModelSource.sampler_config`, so each model's
settings are read from one place: its registry entry or its testbed definition.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from semantic_bottleneck import sampling
from semantic_bottleneck.zoo import build_model, fetch, registry
from semantic_bottleneck.zoo.checkpoint import load_into

from .decode import MissingAssetError


@dataclass(frozen=True)
class ModelSource:
    """A model to sample, described without reading its weights.

    Attributes:
        name: registry checkpoint or testbed model name.
        family: sampler family (and pixel convention), a key of `sampling.default_config`.
        num_classes: real classes (labels 0..num_classes-1); the null class is num_classes.
        latent_shape: (C, H, W) of one latent.
        vae: decoder name (see `decode.load_decoder`).
        sampler_overrides: the model's own departures from the family's headline sampler.
    """

    name: str
    family: str
    num_classes: int
    latent_shape: tuple[int, int, int]
    vae: str
    sampler_overrides: dict = field(default_factory=dict)

    def sampler_config(
        self, mode: str | None = None, num_steps: int | None = None, cfg_scale: float | None = None
    ) -> sampling.SamplerConfig:
        """The model's sampler, with `mode`, `num_steps` and `cfg_scale` applied where given."""
        overrides = {"null_class": self.num_classes, **self.sampler_overrides}
        return sampling.default_config(
            self.family, mode, num_steps=num_steps, cfg_scale=cfg_scale, **overrides
        )


def checkpoint_source(name: str) -> ModelSource:
    """The `ModelSource` of a registry checkpoint (its entry's settings, no weights read)."""
    entry = registry.get_checkpoint(name)
    cfg = entry.config
    shape = (cfg["in_channels"], cfg["input_size"], cfg["input_size"])
    overrides = {**entry.sampler_overrides, "null_class": entry.null_class}
    return ModelSource(name, entry.family, entry.num_classes, shape, entry.vae, overrides)


def load_checkpoint(name: str, cache_dir: Path | None, device: str) -> torch.nn.Module:
    """A registry checkpoint's model in eval mode on `device`, from the weights cache.

    Raises:
        MissingAssetError: the file is not in the weights cache (the message says how to fetch it).
    """
    entry = registry.get_checkpoint(name)
    path = fetch.locate(entry, cache_dir)
    if path is None:
        raise MissingAssetError(
            f"{entry.name}: {entry.filename} is not in the weights cache; run "
            f"`{fetch.fetch_command(entry.name)}`"
        )
    model = load_into(build_model(entry.family, **entry.config), path, entry.weights_key)
    return model.eval().requires_grad_(False).to(device)
