"""Class-balanced labels and per-sample seeds, for paired baseline-vs-pruned comparisons.

Sample i owns two random streams, both fixed by seeds[i] alone:
- its initial noise: a torch.Generator seeded with seeds[i] (`sample_noise`);
- its sampler noise (SDE / ancestral steps): a generator seeded with a seed derived from
  (seeds[i], 1) by NumPy's SeedSequence (`sample_generators`), so it never replays the initial
  noise.
Two runs with the same seeds therefore share ALL their noise, whatever the batch size or sharding,
and differ only by what they change (e.g. the pruning of c).
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral

import numpy as np
import torch
from torch import Tensor

_MAX_SEED = 2**63 - 1


def balanced_labels(num_classes: int, per_class: int) -> Tensor:
    """per_class labels of every class, class-major: [0]*per_class + [1]*per_class + ...

    The paper's evaluation set is 5 x 1000: balanced_labels(1000, 5).

    Args:
        num_classes: number of classes (labels 0..num_classes-1; the null class is not drawn).
        per_class: samples per class.

    Returns:
        int64 labels.

    Shapes:
        -> (num_classes * per_class,).
    """
    for name, value in (("num_classes", num_classes), ("per_class", per_class)):
        if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
            raise ValueError(f"{name}: expected an integer >= 1, got {value!r}")
    return torch.arange(num_classes, dtype=torch.int64).repeat_interleave(per_class)


def sample_seeds(base_seed: int, n: int) -> list[int]:
    """Seeds base_seed, base_seed + 1, ...: one per sample, kept by the sample in any batch."""
    if isinstance(base_seed, bool) or not isinstance(base_seed, Integral) or base_seed < 0:
        raise ValueError(f"base_seed: expected an integer >= 0, got {base_seed!r}")
    if isinstance(n, bool) or not isinstance(n, Integral) or n < 0:
        raise ValueError(f"n: expected an integer >= 0, got {n!r}")
    return [int(base_seed) + i for i in range(n)]


def _check_seeds(seeds: Sequence[int]) -> list[int]:
    seeds = list(seeds.tolist() if isinstance(seeds, (Tensor, np.ndarray)) else seeds)
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, Integral) or not 0 <= s <= _MAX_SEED:
            raise ValueError(f"seeds: expected integers in [0, 2**63), got {s!r}")
    if not seeds:
        raise ValueError("seeds: expected at least one seed")
    return [int(s) for s in seeds]


def _generator(seed: int, device: str | torch.device) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def sample_noise(
    shape_per_sample: Sequence[int],
    seeds: Sequence[int],
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
) -> Tensor:
    """Initial noise: row i is torch.randn(shape_per_sample) from a generator seeded with seeds[i].

    The draw happens on the CPU (so it is the same on every machine), then moves to `device`.

    Args:
        shape_per_sample: shape of one latent, e.g. (4, 32, 32).
        seeds: one seed per sample.
        dtype: noise dtype.
        device: where the result goes.

    Returns:
        the noise.

    Shapes:
        -> (len(seeds), *shape_per_sample).
    """
    shape = tuple(int(s) for s in shape_per_sample)
    rows = [
        torch.randn(shape, generator=_generator(s, "cpu"), dtype=dtype) for s in _check_seeds(seeds)
    ]
    return torch.stack(rows).to(device)


def stream_seed(seed: int, stream: int) -> int:
    """An independent seed for stream `stream` of a sample seeded `seed` (NumPy SeedSequence)."""
    state = np.random.SeedSequence([int(seed), int(stream)]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])  # < 2**63


def sample_generators(
    seeds: Sequence[int], device: str | torch.device = "cpu", stream: int = 1
) -> list[torch.Generator]:
    """One generator per sample for the sampler's own noise, independent of the initial noise.

    Args:
        seeds: the same per-sample seeds as `sample_noise`.
        device: generator device (CPU keeps the draws machine-independent).
        stream: stream index (0 is reserved for the initial noise, which uses seeds[i] itself).

    Returns:
        list of len(seeds) generators.
    """
    if isinstance(stream, bool) or not isinstance(stream, Integral) or stream < 1:
        raise ValueError(
            f"stream: expected an integer >= 1 (0 is the initial noise), got {stream!r}"
        )
    return [_generator(stream_seed(s, stream), device) for s in _check_seeds(seeds)]
