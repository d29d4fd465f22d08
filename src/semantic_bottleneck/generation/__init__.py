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

The modules are imported on their own (`generation.decode`, `generation.run`, ...): this package
imports none of them, so that the artifact cache's use of `generation.ranks` loads nothing else.
"""
