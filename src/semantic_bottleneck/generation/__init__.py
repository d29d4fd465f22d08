"""Image generation with c pruned (Sec. 5): decoders, sampling runs and ADM `.npz` files.

Typical paired run on a zoo model (baseline and pruned share every noise draw):

    decode = load_decoder("sd-vae-ft-ema", "dit", device="cuda")
    config = sampling.default_config("dit")
    labels = sampling.balanced_labels(1000, 5); seeds = sampling.sample_seeds(0, len(labels))
    base, _ = generate(denoiser(model), model.condition, "dit", labels, seeds, config, decode,
                       latent_shape=(4, 32, 32))
    pruned, info = generate(..., prune=PruneSpec("tail", count=700))
    save_samples("pruned.npz", pruned, labels, seeds, removed=info["removed"])

`generate_npz` does this into one `.npz`, sharded over torchrun ranks; the command line is
`semantic-bottleneck generate` (see `generation.cli`).
"""

from __future__ import annotations

from .decode import (
    FAMILY_PIXELS,
    PIXELS,
    LatentDecoder,
    MissingAssetError,
    decode_digits,
    decoder_for_checkpoint,
    load_decoder,
    load_sd_vae,
    load_vavae,
    pixels_of,
    to_images,
)
from .npz import Samples, load_samples, merge_shards, save_samples, shard_path
from .run import check_request, generate, generate_npz, shard_indices
from .vavae import VAVAE_F16D32, LDMConfig, build_autoencoder, convert_ldm_state_dict

__all__ = [
    "FAMILY_PIXELS",
    "LDMConfig",
    "LatentDecoder",
    "MissingAssetError",
    "PIXELS",
    "Samples",
    "VAVAE_F16D32",
    "build_autoencoder",
    "check_request",
    "convert_ldm_state_dict",
    "decode_digits",
    "decoder_for_checkpoint",
    "generate",
    "generate_npz",
    "load_decoder",
    "load_samples",
    "load_sd_vae",
    "load_vavae",
    "merge_shards",
    "pixels_of",
    "save_samples",
    "shard_indices",
    "shard_path",
    "to_images",
]
