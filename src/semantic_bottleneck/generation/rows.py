"""One row of a paper-profile sweep: a checkpoint's samples, with c pruned, written as an ADM npz.

Kept apart from the sweep tables so that the artifact cache keys a row's samples by the code that
draws them (the model, the sampler, the pruning operator, the decoder) and by nothing else: an
edit to the evaluation or to a page keeps rows that took a GPU tens of minutes.
"""

from __future__ import annotations

from pathlib import Path

import torch

from semantic_bottleneck.sampling import PruneSpec, SamplerConfig
from semantic_bottleneck.zoo import denoiser

from .decode import load_decoder
from .run import generate_npz
from .source import ModelSource, load_checkpoint


class RowSampler:
    """Writes one row's samples.npz; loads the model and decoder on its first call.

    The model runs in float32 with TF32 matmuls, as every official sampling script runs it,
    unless `bf16` asks for bf16 autocast.
    """

    def __init__(
        self,
        source: ModelSource,
        sampler: SamplerConfig,
        labels: list[int],
        seeds: list[int],
        cache_dir: Path | None,
        device: str,
        bf16: bool,
    ):
        self.source, self.sampler, self.labels, self.seeds = source, sampler, labels, seeds
        self.cache_dir, self.device, self.bf16 = cache_dir, device, bf16
        self.model = self.decode = None

    def __call__(self, spec: PruneSpec | None, out: Path, batch_size: int, progress: bool) -> None:
        src = self.source
        if self.model is None:
            torch.backends.cuda.matmul.allow_tf32 = True  # the official scripts' default
            self.model = load_checkpoint(src.name, self.cache_dir, self.device)
            self.decode = load_decoder(src.vae, src.family, self.cache_dir, self.device)
        generate_npz(
            out / "samples.npz", denoiser(self.model), self.model.condition, src.family,
            self.labels, self.seeds, self.sampler, self.decode, latent_shape=src.latent_shape,
            extra_info={"model": src.name, "vae": src.vae, "bf16": self.bf16}, prune=spec,
            batch_size=batch_size, device=self.device, bf16=self.bf16, progress=progress,
        )  # fmt: skip
