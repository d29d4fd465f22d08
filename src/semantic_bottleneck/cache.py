"""Artifact cache: results keyed by a hash of every parameter that changes them.

An artifact is a folder `<root>/<kind>/<key>/` holding `params.json` (what made it) and whatever
files the producer writes (safetensors, JSONL, ...). The folder appears atomically: it is built
under a temporary name and renamed, so an interrupted run leaves nothing that looks complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, is_dataclass
from pathlib import Path

from semantic_bottleneck import __version__

ENV_VAR = "SEMANTIC_BOTTLENECK_CACHE"


def cache_root() -> Path:
    """`$SEMANTIC_BOTTLENECK_CACHE/artifacts`, else `.cache/artifacts` under the project root."""
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]) / "artifacts"
    return Path(__file__).resolve().parents[2] / ".cache" / "artifacts"


def _plain(params) -> dict:
    return asdict(params) if is_dataclass(params) else dict(params)


def params_key(params) -> str:
    """Hash of the parameters (a dict or dataclass) and the package version: 16 hex digits."""
    blob = json.dumps({"params": _plain(params), "version": __version__}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def lookup(kind: str, params, root: Path | None = None) -> Path | None:
    """The artifact folder for (kind, params) when it is complete, else None (nothing is made)."""
    folder = (Path(root) if root is not None else cache_root()) / kind / params_key(params)
    return folder if (folder / "params.json").exists() else None


def _publish(tmp: Path, final: Path, kind: str, params) -> None:
    """Mark a filled folder complete (params.json) and move it into place in one rename."""
    (tmp / "params.json").write_text(
        json.dumps({"kind": kind, "version": __version__, "params": _plain(params)}, indent=1)
    )
    if final.exists():  # a concurrent producer won: keep theirs
        shutil.rmtree(tmp)
    else:
        os.replace(tmp, final)


def cached(
    kind: str, params, produce: Callable[[Path], None], root: Path | None = None
) -> tuple[Path, bool]:
    """Return the artifact folder for (kind, params), producing it first when absent.

    Args:
        kind: artifact family, e.g. "testbed-model".
        params: dict or dataclass of every parameter that changes the result (JSON-able).
        produce: called with an empty temporary folder to fill.
        root: cache root (default `cache_root()`).

    Returns:
        (folder, hit) where hit tells whether the artifact was already there.
    """
    root = Path(root) if root is not None else cache_root()
    final = root / kind / params_key(params)
    if (final / "params.json").exists():
        return final, True
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
    try:
        produce(tmp)
        _publish(tmp, final, kind, params)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final, False


def cached_on_ranks(kind: str, params, produce: Callable[[Path], None], root: Path | None = None):
    """`cached` for a producer that every rank of torch.distributed runs, each writing its part
    into one folder (e.g. a sample file's shards, merged by rank 0). Every rank must call it;
    without torch.distributed it is `cached`.

    Rank 0 empties the staging folder `<kind>/.<key>.staging`, every rank runs `produce` on it,
    and rank 0 publishes it atomically once all have finished. The cache root must be one folder
    seen by every rank (one machine, or a shared file system).

    Returns:
        the artifact folder, on every rank.
    """
    from semantic_bottleneck.generation.run import barrier, rank_and_world

    rank, world = rank_and_world()
    if world == 1:
        return cached(kind, params, produce, root)[0]
    final = (Path(root) if root is not None else cache_root()) / kind / params_key(params)
    if (final / "params.json").exists():  # published only between barriers: every rank agrees
        return final
    staging = final.parent / f".{final.name}.staging"
    if rank == 0:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
    barrier()
    produce(staging)
    barrier()
    if rank == 0:
        _publish(staging, final, kind, params)
    barrier()
    return final
