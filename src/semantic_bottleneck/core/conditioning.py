"""The conditional vector c = t_embedder(t) + y_embedder(y), computed without the transformer.

In every model the paper studies (DiT, SiT, REPA, LightningDiT, MDT, MG), c depends on five tensors
only (book/method.md#method-conditional-vector):

    t_embedder.mlp.0.{weight,bias}   Linear(256 -> d)
    t_embedder.mlp.2.{weight,bias}   Linear(d -> d), after a SiLU
    y_embedder.embedding_table.weight  (num_classes + 1, d); the last row is the null class

A continuous-condition model (the testbed's analogue of X-MDPT and MDSGen) has a Linear in place
of the table; over a fixed set of conditions (`zoo.dit.ConditionSetModel`) its Linear's outputs
are the table's rows, with a zero null row (a dropped condition adds nothing), so every function
below applies to it unchanged.

`read_embedders` takes exactly these out of a checkpoint (memory-mapped, weights_only) and caches
them as a small safetensors file, so c for every class at any t costs milliseconds instead of a
2.7 GB load. The functions below reproduce the official forward op for op: float32 sinusoid (cos
first, t not rescaled), Linear, SiLU, Linear, plus the label row.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from semantic_bottleneck.core.torchfile import EMBEDDER_KEYS  # defined where torch is not imported
from semantic_bottleneck.zoo import fetch, ranged, registry
from semantic_bottleneck.zoo.checkpoint import load_state_dict, save_atomic
from semantic_bottleneck.zoo.dit import ConditionSetModel, timestep_embedding
from semantic_bottleneck.zoo.fetch import default_cache_dir, recorded_sha256

_CACHE_FORMAT = 1  # bump when the cached content changes


# ----------------------------------------------------------------------------- reading


def _source(path: str | os.PathLike) -> tuple[Path, str | None]:
    """Resolve a registry name to its cached file, else its c-only extract; return
    (path, weights_key)."""
    candidate = Path(path)
    if candidate.exists() or str(path) not in registry.REGISTRY:
        return candidate, None
    entry = registry.get_checkpoint(str(path))
    located = fetch.locate(entry) or fetch.locate_c_only(entry)
    if located is None:
        raise FileNotFoundError(
            f"checkpoint {entry.name!r} is not in the weights cache; run "
            f"`{fetch.fetch_command(entry.name, c_only=True)}` (only the ~10 MB c needs) or "
            f"`{fetch.fetch_command(entry.name)}` (the full file)"
        )
    return located, entry.weights_key


def read_c_only(path: str | os.PathLike) -> dict[str, Tensor]:
    """The five embedder tensors of a c-only extract (`semantic-bottleneck fetch NAME --c-only`),
    exactly as the checkpoint stores them; no further cache (the extract is one).

    Raises:
        CheckpointError: not an extract, or its tensors are missing.

    Shapes: as in `read_embedders`.
    """
    ranged.read_metadata(path)  # its header says it is an extract of the five tensors
    tensors = load_state_dict(path, keys=EMBEDDER_KEYS)
    embedders = {k: tensors[k].clone() for k in EMBEDDER_KEYS}
    check_embedders(embedders)
    return embedders


def _cache_key(path: Path, weights_key: str | None) -> tuple[str, dict[str, str]]:
    """Identity of the source file: its recorded sha256 if any, else (path, size, mtime)."""
    stat = path.stat()
    sha = recorded_sha256(path)
    ident = {"format": str(_CACHE_FORMAT), "weights_key": str(weights_key)}
    if sha is not None:
        ident["sha256"] = sha
    else:
        ident.update(
            path=str(path.resolve()), size=str(stat.st_size), mtime_ns=str(stat.st_mtime_ns)
        )
    digest = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()
    return digest[:32], ident


def _default_cache_dir() -> Path:
    return default_cache_dir() / "embedders"


def read_embedders(
    path: str | os.PathLike,
    cache_dir: str | os.PathLike | None = None,
    weights_key: str | None = None,
) -> dict[str, Tensor]:
    """The five embedder tensors of a checkpoint, read once and then served from a small cache.

    Args:
        path: checkpoint file (`.pt` or `.safetensors`), or a registry name such as 'dit-xl-2'
            whose file (else its c-only extract, `fetch --c-only`) is in the weights cache.
        cache_dir: folder of the embedder cache (default `<weights cache>/embedders`).
        weights_key: entry holding the weights in a training checkpoint (default: auto).

    Returns:
        {key: float tensor} for the keys in EMBEDDER_KEYS, cloned (independent of the file).

    Shapes: mlp.0.weight (d, 256), mlp.0.bias (d,), mlp.2.weight (d, d), mlp.2.bias (d,),
        embedding_table.weight (num_classes + 1, d).
    """
    source, entry_key = _source(path)
    weights_key = weights_key or entry_key
    if not source.is_file():
        raise FileNotFoundError(f"checkpoint not found: {source}")
    if source.name.endswith(fetch.C_ONLY_SUFFIX):  # the registry name's full file is absent
        return read_c_only(source)
    key, ident = _cache_key(source, weights_key)
    cache_file = Path(cache_dir or _default_cache_dir()) / f"{key}.safetensors"
    if cache_file.is_file():
        try:
            cached = load_state_dict(cache_file)
        except Exception:  # an unreadable cache entry is rebuilt from the checkpoint below
            cached = {}
        if set(cached) == set(EMBEDDER_KEYS):
            return {k: cached[k] for k in EMBEDDER_KEYS}
    tensors = load_state_dict(source, keys=EMBEDDER_KEYS, weights_key=weights_key)
    # clone: the loaded tensors are views of the memory-mapped checkpoint
    embedders = {k: v.detach().clone() for k, v in tensors.items()}
    check_embedders(embedders)
    save_atomic(embedders, cache_file, metadata={**ident, "source": str(source)})
    return embedders


def embedders_from_model(model: nn.Module) -> dict[str, Tensor]:
    """The five embedder tensors of a model in memory (detached clones). For a
    `ConditionSetModel` the table is y_embedder(v) of its conditions plus a zero null row.

    Shapes: as in `read_embedders`; the table is (n + 1, d) for n conditions.
    """
    if isinstance(model, ConditionSetModel):
        inner = model.model
        with torch.no_grad():
            rows = inner.y_embedder(model.conditions, False)
        table = torch.cat([rows, torch.zeros_like(rows[:1])])
        return {**_state_tensors(inner, EMBEDDER_KEYS[:4]), EMBEDDER_KEYS[4]: table}
    return _state_tensors(model, EMBEDDER_KEYS)


def _state_tensors(model: nn.Module, keys: tuple[str, ...]) -> dict[str, Tensor]:
    """Detached clones of `keys` of a model's state_dict (DDP/compile prefixes removed)."""
    # DDP (`module.`) and torch.compile (`_orig_mod.`) prefix every key
    state = {
        k.removeprefix("module.").removeprefix("_orig_mod."): v
        for k, v in model.state_dict().items()
    }
    missing = [k for k in keys if k not in state]
    if missing:
        raise ValueError(f"{type(model).__name__} has no {missing}; expected all of {keys}")
    return {k: state[k].detach().clone() for k in keys}


def check_embedders(emb: Mapping[str, Tensor]) -> int:
    """Validate the five tensors' presence and shapes; return d (the width of c)."""
    missing = [k for k in EMBEDDER_KEYS if k not in emb]
    if missing:
        raise ValueError(f"embedders lack {missing}; expected keys {EMBEDDER_KEYS}")
    w0, b0, w2, b2, table = (emb[k] for k in EMBEDDER_KEYS)
    d = w2.shape[0]
    # (key, shape is right, expected shape in words)
    checks = [
        (EMBEDDER_KEYS[0], w0.ndim == 2 and w0.shape[0] == d, f"({d}, frequency_dim)"),
        (EMBEDDER_KEYS[1], tuple(b0.shape) == (d,), f"({d},)"),
        (EMBEDDER_KEYS[2], tuple(w2.shape) == (d, d), f"({d}, {d})"),
        (EMBEDDER_KEYS[3], tuple(b2.shape) == (d,), f"({d},)"),
        (EMBEDDER_KEYS[4], table.ndim == 2 and table.shape[1] == d, f"(num_classes + 1, {d})"),
    ]
    bad = [f"{k}: expected {want}, got {tuple(emb[k].shape)}" for k, ok, want in checks if not ok]
    if bad:
        raise ValueError("inconsistent embedder shapes: " + "; ".join(bad))
    return d


# ----------------------------------------------------------------------------- c


def _as_time(t: float | Tensor, n: int | None = None) -> Tensor:
    """t as a float32 vector, broadcast to n entries when t is a scalar.

    float32 is what each sampler feeds the model (DDPM indices are exact in float32).
    """
    t = torch.as_tensor(t)
    if t.ndim > 1:
        raise ValueError(f"t must be a scalar or a vector (n,), got shape {tuple(t.shape)}")
    if not torch.isfinite(t.double()).all():
        raise ValueError("t must be finite")
    t = t.to(torch.float32).reshape(-1)
    if n is not None and t.numel() == 1:
        t = t.expand(n)
    if n is not None and t.numel() != n:
        raise ValueError(f"t has {t.numel()} entries, y has {n}; expected a scalar or {n}")
    return t


def _as_labels(emb: Mapping[str, Tensor], y: int | Tensor | None) -> Tensor:
    """Labels as int64 (n,), checked against the table; None = every real class."""
    rows = emb["y_embedder.embedding_table.weight"].shape[0]
    if y is None:
        return torch.arange(rows - 1)  # the last row is the null class
    y = torch.as_tensor(y)
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise ValueError(f"labels must be integers, got dtype {y.dtype}")
    y = y.to(torch.int64).reshape(-1)
    if y.numel() and (y.min() < 0 or y.max() >= rows):
        raise ValueError(
            f"labels must lie in [0, {rows - 1}] ({rows - 1} = null), got {y[:10].tolist()}"
        )
    return y


def time_only(emb: Mapping[str, Tensor], t: float | Tensor) -> Tensor:
    """t_embedder(t): sinusoid -> Linear -> SiLU -> Linear, as in the official TimestepEmbedder.

    Args:
        emb: the five embedder tensors.
        t: scalar or (n,), in the model's own time convention (registry `time_convention`).

    Returns:
        float32 (n, d), n = 1 for a scalar t.

    Shapes: t () or (n,) -> (n, d).
    """
    check_embedders(emb)
    w0, b0, w2, b2 = (emb[k].float() for k in EMBEDDER_KEYS[:4])
    t_freq = timestep_embedding(_as_time(t), dim=w0.shape[1])  # (n, 256), cos first
    return F.linear(F.silu(F.linear(t_freq, w0, b0)), w2, b2)


def label_only(emb: Mapping[str, Tensor], classes: int | Tensor | None = None) -> Tensor:
    """y_embedder(y): rows of the label table (the paper's Table 4 "y alone").

    Args:
        emb: the five embedder tensors.
        classes: labels (n,); None = all real classes 0..num_classes-1 (null row excluded).

    Returns:
        float32 (n, d).

    Shapes: (n,) -> (n, d).
    """
    check_embedders(emb)
    table = emb["y_embedder.embedding_table.weight"].float()
    return F.embedding(_as_labels(emb, classes), table)


def condition(emb: Mapping[str, Tensor], t: float | Tensor, y: int | Tensor) -> Tensor:
    """c = t_embedder(t) + y_embedder(y), exactly as the official forward (model in eval mode).

    Args:
        emb: the five embedder tensors.
        t: scalar (shared by all labels) or (n,).
        y: labels (n,); the null class is num_classes.

    Returns:
        float32 c, (n, d).

    Shapes: t () or (n,), y (n,) -> (n, d).
    """
    y = _as_labels(emb, y)
    t = _as_time(t, y.numel())
    return time_only(emb, t) + label_only(emb, y)  # (n, d) + (n, d)


def class_conditions(
    emb: Mapping[str, Tensor], t: float | Tensor, classes: int | Tensor | None = None
) -> Tensor:
    """c for many classes at one t, in one batched call (as a sampler's first step computes it).

    Args:
        emb: the five embedder tensors.
        t: scalar time, e.g. the entry's `initial_t`.
        classes: labels (n,); None = all real classes.

    Returns:
        float32 (n, d); (num_classes, d) by default.

    Shapes: t () -> (n, d).
    """
    if torch.as_tensor(t).numel() != 1:
        raise ValueError(
            f"class_conditions takes one t, got shape {tuple(torch.as_tensor(t).shape)}"
        )
    return condition(emb, t, _as_labels(emb, classes))
