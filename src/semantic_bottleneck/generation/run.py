"""Generate images with c pruned as in the paper (Sec. 5), paired with an unpruned baseline.

`generate` samples a list of (label, seed) pairs in batches. Sample i's noise comes from seeds[i]
alone (`sampling.labels`), so a baseline and a pruned run share all their noise whatever the
batch size or sharding, and differ only by the pruning of c. The pruning masks come from c at the
sampler's initial step (`sampling.pruning.prune_hook`) and are all built before the first sampler
step, so a spec that cannot run fails before any sampling.

`generate_npz` does the same under torchrun: each rank samples a contiguous (or strided) shard of
the list, writes a shard file, and rank 0 merges them, ordered by sample index, into one ADM
`.npz` (see `npz.py`). Without torch.distributed it writes the file directly.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from numbers import Integral
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from semantic_bottleneck import sampling
from semantic_bottleneck.generation.ranks import barrier, rank_and_world
from semantic_bottleneck.sampling.common import steps_iter
from semantic_bottleneck.sampling.pruning import ConditionFn, PruneHook, PruneSpec, unpruned
from semantic_bottleneck.zoo import FAMILIES

from .npz import merge_shards, save_samples, shard_path

SHARDINGS = ("contiguous", "strided")
ModelFn = Callable[..., Tensor]  # (x, t, y, c_fn=None) -> prediction, e.g. zoo.denoiser(model)
Decoder = Callable[[Tensor], Tensor]  # latents -> uint8 (N, H, W, 3)


def _family_configs(family: str) -> tuple[type, ...]:
    """The sampler config types a family's official scripts use (its modes)."""
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; expected one of {list(FAMILIES)}")
    types = []
    for mode in ("ddpm", "sde", "ode"):
        try:
            types.append(type(sampling.default_config(family, mode)))
        except ValueError:
            continue
    return tuple(types)


def _int_list(name: str, values) -> list[int]:
    values = values.tolist() if isinstance(values, (Tensor, np.ndarray)) else list(values)
    if not all(isinstance(v, Integral) and not isinstance(v, bool) for v in values):
        raise ValueError(f"{name}: expected integers, got {values[:5]}...")
    return [int(v) for v in values]


def check_request(
    family: str,
    labels,
    seeds,
    sampler_config,
    prune: PruneSpec | None,
    batch_size: int,
    latent_shape: Sequence[int],
) -> tuple[list[int], list[int], int]:
    """Validate a generation request before any model call.

    Returns:
        (labels, seeds, steps) as plain lists and the sampler's step count.
    """
    allowed = _family_configs(family)
    if not isinstance(sampler_config, allowed):
        raise ValueError(
            f"sampler_config: family {family!r} samples with {[t.__name__ for t in allowed]}, "
            f"got {type(sampler_config).__name__}"
        )
    steps = sampling.num_steps(sampler_config)
    if prune is not None:
        sampling.validate(prune, steps)
    labels, seeds = _int_list("labels", labels), _int_list("seeds", seeds)
    null = sampler_config.guidance.null_class
    if not labels or len(seeds) != len(labels):
        raise ValueError(
            f"labels and seeds: expected equal non-zero lengths, got {len(labels)} and {len(seeds)}"
        )
    if not all(0 <= y < null for y in labels):
        raise ValueError(f"labels: expected classes in [0, {null}) (null class {null} excluded)")
    if not all(0 <= s < 2**63 for s in seeds):
        raise ValueError("seeds: expected integers in [0, 2**63)")
    if isinstance(batch_size, bool) or not isinstance(batch_size, Integral) or batch_size < 1:
        raise ValueError(f"batch_size: expected an integer >= 1, got {batch_size!r}")
    shape = tuple(latent_shape)
    if len(shape) != 3 or not all(isinstance(s, Integral) and s >= 1 for s in shape):
        raise ValueError(f"latent_shape: expected (C, H, W) positive integers, got {shape}")
    return labels, seeds, steps


def _check_eval(condition_fn: ConditionFn) -> None:
    owner = getattr(condition_fn, "__self__", None)
    if isinstance(owner, torch.nn.Module) and owner.training:
        # label dropout is active in train mode: c would use random null labels
        raise ValueError("the model is in train mode; call model.eval() before generating")


def _hooks(condition_fn, labels, config, prune, steps, batches, device) -> list[PruneHook]:
    """One prune hook per batch, masks from c at the initial step (before any sampling)."""
    t0 = sampling.initial_t(config)
    null = config.guidance.null_class if config.guidance.enabled else None
    y_all = torch.tensor(labels, dtype=torch.int64)
    return [
        sampling.prune_hook(condition_fn, y_all[b].to(device), t0, prune, steps, null_class=null)
        for b in batches
    ]


def _check_decoded(images, n: int) -> Tensor:
    images = torch.as_tensor(images).cpu()  # a decoder may return numpy, as LightningDiT's does
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[0] != n:
        raise ValueError(
            f"decode: expected uint8 ({n}, H, W, 3) images, got {images.dtype} "
            f"{tuple(images.shape)}"
        )
    return images


def generate(
    model_fn: ModelFn,
    condition_fn: ConditionFn,
    family: str,
    labels,
    seeds,
    sampler_config,
    decode: Decoder,
    *,
    latent_shape: Sequence[int],
    prune: PruneSpec | None = None,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
    bf16: bool = False,
    progress: bool = True,
) -> tuple[Tensor, dict]:
    """Sample and decode one image per (label, seed), with c pruned by `prune`.

    Args:
        model_fn: (x, t, y, c_fn=None) -> prediction, on `device` (e.g. `zoo.denoiser(model)`).
        condition_fn: (t, y) -> c of the same model (e.g. `model.condition`, model in eval mode).
        family: sampler family (dit, mdt, mdtv2, sit, lightningdit, repa, mg).
        labels: class per sample.
        seeds: noise seed per sample (`sampling.sample_seeds`).
        sampler_config: a config of the family (`sampling.default_config(family, ...)`).
        decode: latents -> uint8 (N, H, W, 3), e.g. from `decode.load_decoder`.
        latent_shape: (C, H, W) of one latent.
        prune: what to remove from c and when; None (or an empty spec) is the baseline.
        batch_size: samples per sampler call.
        device: where sampling runs.
        bf16: run the model under bf16 autocast.
        progress: tqdm bar over batches.

    Returns:
        (images, info): uint8 images on the CPU, and a JSON-serialisable dict with the settings
        and, per sample, `removed` (and `null_removed` for guided sampling) coordinate counts.

    Shapes:
        labels (N,), seeds (N,) -> images (N, H, W, 3).
    """
    labels, seeds, steps = check_request(
        family, labels, seeds, sampler_config, prune, batch_size, latent_shape
    )
    _check_eval(condition_fn)
    batches = [slice(i, i + batch_size) for i in range(0, len(labels), batch_size)]
    images, removed, null_removed = [], [], []
    with torch.no_grad():
        hooks = _hooks(condition_fn, labels, sampler_config, prune, steps, batches, device)
        bar = steps_iter(batches, progress, len(batches), f"generate {family}")
        for b, hook in zip(bar, hooks, strict=True):
            y = torch.tensor(labels[b], dtype=torch.int64, device=device)
            noise = sampling.sample_noise(latent_shape, seeds[b], device=device)
            gens = sampling.sample_generators(seeds[b])
            x = sampling.sample(model_fn, noise, y, sampler_config, gens, c_fn_at=hook, bf16=bf16)
            images.append(_check_decoded(decode(x), len(y)))
            removed += hook.removed.tolist()
            if hook.null_mask is not None:
                null_removed += hook.null_mask.sum(dim=1).tolist()
    info = {
        "family": family,
        "sampler": type(sampler_config).__name__,
        "sampler_config": dataclasses.asdict(sampler_config),
        "steps": steps,
        "initial_t": sampling.initial_t(sampler_config),
        "prune": dataclasses.asdict(prune) if prune is not None else None,
        "latent_shape": list(latent_shape),
        "batch_size": batch_size,
        "bf16": bf16,
        "num_samples": len(labels),
        "removed": removed,
        "removed_mean": float(np.mean(removed)),
        "null_removed": null_removed or None,
    }
    return torch.cat(images), info


class ModelCalls:
    """One model's calls during a baseline run, kept so that pruned runs of the same labels and
    seeds skip the calls they share with it.

    A pruned run follows the baseline's trajectory exactly until its first pruned step (the
    t_{n-k,n} schedule and the late windows prune only late steps): the same x, t and y reach
    the model with c unpruned, so its output is the baseline's. `replaying()` returns that kept
    output for a call whose inputs equal the baseline's call of the same index bit for bit and
    whose c_fn is unpruned, and calls the model for every other call. The result is the
    baseline's computation itself, not an approximation of it.

    Every call's input and output is held in memory: meant for the testbed's small models.

    Args:
        model_fn: (x, t, y, c_fn=None) -> prediction (`zoo.denoiser(model)`), the only model
            the kept calls are ever served for.
    """

    def __init__(self, model_fn: ModelFn):
        self.model_fn = model_fn
        self.kept: list[tuple[Tensor, Tensor, Tensor, Tensor]] = []  # (x, t, y, output)
        self.reused = 0

    def recording(self) -> ModelFn:
        """The model, keeping each call (of a baseline: c unpruned throughout) in place of the
        calls kept before."""
        self.kept = []

        def call(x: Tensor, t: Tensor, y: Tensor, c_fn=None) -> Tensor:
            if not unpruned(c_fn):
                raise ValueError("ModelCalls.recording: expected an unpruned (baseline) run")
            out = self.model_fn(x, t, y, c_fn=c_fn)
            self.kept.append((x.clone(), t.clone(), y.clone(), out.clone()))
            return out

        return call

    def replaying(self) -> ModelFn:
        """The model, answering from the kept calls where a call is the kept one of its index."""
        index = -1

        def call(x: Tensor, t: Tensor, y: Tensor, c_fn=None) -> Tensor:
            nonlocal index
            index += 1
            if index < len(self.kept) and unpruned(c_fn):
                kx, kt, ky, out = self.kept[index]
                if torch.equal(x, kx) and torch.equal(t, kt) and torch.equal(y, ky):
                    self.reused += 1
                    return out.clone()
            return self.model_fn(x, t, y, c_fn=c_fn)

        return call


# ----------------------------------------------------------------------------- sharding


def shard_indices(n: int, rank: int, world_size: int, mode: str = "contiguous") -> np.ndarray:
    """The sample indices one rank generates: a contiguous block or every world_size-th.

    Shapes:
        -> (about n / world_size,) int64, ascending.
    """
    if mode not in SHARDINGS:
        raise ValueError(f"shard mode: expected one of {SHARDINGS}, got {mode!r}")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank: expected 0 <= rank < world_size = {world_size}, got {rank}")
    if mode == "strided":
        return np.arange(rank, n, world_size, dtype=np.int64)
    return np.array_split(np.arange(n, dtype=np.int64), world_size)[rank]


_PER_SET = ("removed", "null_removed", "removed_mean", "num_samples")  # differ between shards


def _save(path: Path, images: Tensor, labels, seeds, info: dict, **kw) -> Path:
    """Per-sample counts as arrays, settings as info (set statistics follow from the arrays)."""
    per_sample = {k: info[k] for k in ("removed", "null_removed") if info[k] is not None}
    settings = {k: v for k, v in info.items() if k not in _PER_SET}
    return save_samples(path, images, labels, seeds, info=settings, **per_sample, **kw)


def generate_npz(
    path: str | os.PathLike,
    model_fn: ModelFn,
    condition_fn: ConditionFn,
    family: str,
    labels,
    seeds,
    sampler_config,
    decode: Decoder,
    *,
    latent_shape: Sequence[int],
    shard: str = "contiguous",
    extra_info: dict | None = None,
    **options,
) -> Path:
    """`generate` into an ADM `.npz`, sharded over the ranks of torch.distributed if initialised.

    Every rank must call it with the same arguments. Each rank samples `shard_indices(...)` of the
    list into `npz.shard_path(path, rank, world)`; after a barrier, rank 0 merges the shards
    (ordered by sample index) into `path` and deletes them; a second barrier releases the ranks.

    Args:
        path: destination `.npz`.
        model_fn, condition_fn, family, labels, seeds, sampler_config, decode, latent_shape:
            as in `generate`.
        shard: "contiguous" or "strided".
        extra_info: more settings to store (e.g. the checkpoint name).
        **options: prune, batch_size, device, bf16, progress (as in `generate`).

    Returns:
        path (the merged file exists on return, on every rank).
    """
    labels, seeds, _ = check_request(
        family, labels, seeds, sampler_config, options.get("prune"),
        options.get("batch_size", 32), latent_shape,
    )  # fmt: skip
    rank, world = rank_and_world()
    path = Path(path)
    idx = shard_indices(len(labels), rank, world, shard)
    extra = dict(extra_info or {}, world_size=world, shard=shard)
    args = (model_fn, condition_fn, family)
    rest = (sampler_config, decode)
    if world == 1:
        images, info = generate(*args, labels, seeds, *rest, latent_shape=latent_shape, **options)
        return _save(path, images, labels, seeds, info | extra)
    y, s = [labels[i] for i in idx], [seeds[i] for i in idx]
    if len(idx):
        images, info = generate(*args, y, s, *rest, latent_shape=latent_shape, **options)
        _save(shard_path(path, rank, world), images, y, s, info | extra, index=idx, sidecar=False)
    barrier()
    if rank == 0:
        shards = [
            shard_path(path, r, world)
            for r in range(world)
            if len(shard_indices(len(labels), r, world, shard))
        ]
        merge_shards(shards, path, remove=True)
    barrier()
    return path
