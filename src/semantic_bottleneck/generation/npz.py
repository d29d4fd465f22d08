"""Sample files in the ADM format: `arr_0` (uint8 N x H x W x 3) plus labels and settings.

The ADM evaluator (guided-diffusion `evaluations/evaluator.py`) reads `arr_0` and nothing else, so
the other entries ride along unnoticed:
- `labels` (int64, N): the class of each sample;
- `seeds` (int64, N): the seed each sample's noise was drawn from (`sampling.labels`);
- `removed` / `null_removed` (int64, N), when present: coordinates of c pruned per sample (for the
  conditional row and for the null-class row of guided sampling);
- `index` (int64, N), in shard files only: the sample's position in the full set;
- `info`: a JSON string (0-d unicode array, no pickle) with the generation settings (family,
  sampler config, prune spec, ...).
A sidecar `<name>.json` repeats info, labels, seeds and removed counts for reading without numpy.
Files are written atomically (temporary file in the same folder, fsync, os.replace): a reader or
a crash sees the old file or the complete new one, never part of one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from semantic_bottleneck.zoo.checkpoint import atomic_write

PER_SAMPLE = ("labels", "seeds", "removed", "null_removed")
ArrayLike = np.ndarray | Sequence[int]


@dataclass(frozen=True)
class Samples:
    """The content of a sample file.

    Attributes:
        images: uint8 (N, H, W, 3).
        labels: int64 (N,), or None (an unlabelled batch).
        seeds: int64 (N,) or None.
        removed: int64 (N,) pruned coordinates of c per sample, or None.
        null_removed: int64 (N,) pruned coordinates of the null-class c, or None.
        index: int64 (N,) positions in the full set (shards), or None.
        info: generation settings.
    """

    images: np.ndarray
    labels: np.ndarray | None
    seeds: np.ndarray | None = None
    removed: np.ndarray | None = None
    null_removed: np.ndarray | None = None
    index: np.ndarray | None = None
    info: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.images)


def _as_numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


def _check_images(images) -> np.ndarray:
    images = _as_numpy(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(
            f"images: expected uint8 (N, H, W, 3), got {images.dtype} {tuple(images.shape)}"
        )
    return images


def _check_rows(name: str, values, n: int) -> np.ndarray:
    values = _as_numpy(values)
    if values.ndim != 1 or len(values) != n or not np.issubdtype(values.dtype, np.integer):
        raise ValueError(
            f"{name}: expected {n} integers (one per image), got {values.dtype} "
            f"{tuple(values.shape)}"
        )
    return values.astype(np.int64)


def sidecar_path(path: str | os.PathLike) -> Path:
    """`samples.npz` -> `samples.json`."""
    return Path(path).with_suffix(".json")


def save_samples(
    path: str | os.PathLike,
    images,
    labels: ArrayLike,
    seeds: ArrayLike | None = None,
    removed: ArrayLike | None = None,
    null_removed: ArrayLike | None = None,
    index: ArrayLike | None = None,
    info: Mapping | None = None,
    sidecar: bool = True,
) -> Path:
    """Write a sample file atomically (and its JSON sidecar after it).

    Args:
        path: destination `.npz`.
        images: uint8 images, numpy or torch.
        labels: class per image.
        seeds: noise seed per image.
        removed: pruned coordinates of c per image.
        null_removed: pruned coordinates of the null-class c per image.
        index: positions in the full set (shard files).
        info: JSON-serialisable settings.
        sidecar: also write `<name>.json`.

    Returns:
        the path written.

    Shapes:
        images (N, H, W, 3); every per-image array (N,).
    """
    path = Path(path)
    if path.suffix != ".npz":
        raise ValueError(f"path: expected a .npz file name, got {path.name!r}")
    images = _check_images(images)
    n = len(images)
    arrays = {"arr_0": images}
    given = dict(labels=labels, seeds=seeds, removed=removed, null_removed=null_removed)
    given["index"] = index
    for name, values in given.items():
        if values is not None:
            arrays[name] = _check_rows(name, values, n)
    try:
        info_text = json.dumps(dict(info or {}), sort_keys=True)
    except TypeError as err:
        raise ValueError(f"info: expected JSON-serialisable settings ({err})") from None
    arrays["info"] = np.array(info_text)
    with atomic_write(path) as f:  # a file object: np.savez would append .npz to a bare name
        np.savez(f, **arrays)
    if sidecar:
        side = {"info": json.loads(info_text), "num_samples": n, "image_shape": images.shape[1:]}
        side |= {k: arrays[k].tolist() for k in (*PER_SAMPLE, "index") if k in arrays}
        with atomic_write(sidecar_path(path)) as f:
            f.write(json.dumps(side, indent=1).encode())
    return path


def load_samples(path: str | os.PathLike) -> Samples:
    """Read a sample file (no pickle).

    Any ADM batch is accepted: `arr_0` alone, or with guided-diffusion's labels in `arr_1`.
    """
    with np.load(path, allow_pickle=False) as data:
        if "arr_0" not in data:
            raise ValueError(f"{path}: no 'arr_0' entry; found {sorted(data.files)}")
        images = _check_images(data["arr_0"])
        get = {k: data[k] if k in data else None for k in (*PER_SAMPLE, "index")}
        if get["labels"] is None and "arr_1" in data:  # image_sample.py: np.savez(out, arr, labels)
            get["labels"] = _check_rows("arr_1", data["arr_1"], len(images))
        info = json.loads(str(data["info"])) if "info" in data else {}
    return Samples(images=images, info=info, **get)


def shard_path(path: str | os.PathLike, rank: int, world_size: int) -> Path:
    """The shard file of one rank: `samples.npz` -> `samples.shard-001-of-004.npz`."""
    path = Path(path)
    return path.with_name(f"{path.stem}.shard-{rank:03d}-of-{world_size:03d}.npz")


def merge_shards(
    shards: Sequence[str | os.PathLike],
    path: str | os.PathLike,
    info: Mapping | None = None,
    remove: bool = False,
) -> Path:
    """Merge shard files into one sample file, ordered by sample index.

    Args:
        shards: shard files, each with an `index` entry.
        path: destination `.npz` (written atomically, with its sidecar).
        info: settings to store (default: the first shard's info).
        remove: delete the shard files once the merged file is in place.

    Returns:
        the merged file's path.

    Raises:
        ValueError: no shards, a shard without index, mismatched entries or image sizes, or
            indices that are not exactly 0..N-1.
    """
    if not shards:
        raise ValueError("shards: expected at least one shard file")
    parts = [load_samples(s) for s in shards]
    for s, part in zip(shards, parts, strict=True):
        if part.index is None:
            raise ValueError(f"{s}: not a shard file (no 'index' entry)")
    keys = [k for k in PER_SAMPLE if getattr(parts[0], k) is not None]
    for s, part in zip(shards, parts, strict=True):
        have = [k for k in PER_SAMPLE if getattr(part, k) is not None]
        if have != keys or part.images.shape[1:] != parts[0].images.shape[1:]:
            raise ValueError(
                f"{s}: entries {have} and image size {part.images.shape[1:]} differ from "
                f"{shards[0]} ({keys}, {parts[0].images.shape[1:]})"
            )
    index = np.concatenate([p.index for p in parts])
    order = np.argsort(index, kind="stable")
    if not np.array_equal(index[order], np.arange(len(index))):
        missing = np.setdiff1d(np.arange(len(index)), index)[:10].tolist()
        raise ValueError(
            f"shard indices must be exactly 0..{len(index) - 1}; duplicates or gaps "
            f"(missing e.g. {missing})"
        )
    merged = {k: np.concatenate([getattr(p, k) for p in parts])[order] for k in keys}
    images = np.concatenate([p.images for p in parts])[order]
    out = save_samples(path, images, info=info if info is not None else parts[0].info, **merged)
    if remove:
        for s in shards:
            Path(s).unlink(missing_ok=True)
    return out
