"""Safe checkpoint I/O: read official `.pt` / `.safetensors` files, load them strictly, save atomically.

Official checkpoints are torch pickles. They are read only with `weights_only=True`, which refuses
any pickled object other than tensors and plain containers; the single extra class allowed is
`argparse.Namespace`, because training checkpoints (`train.py` of DiT, SiT, REPA, MG) store their
command line arguments as one. Reads use `mmap=True`, so taking a few tensors out of a 2.7 GB file
touches only those tensors' bytes.

Layouts handled, as the official loaders read them (book/method.md#method-checkpoints): a bare
state_dict (DiT and SiT `sample_ddp.py`, REPA `generate.py`, MDT `scripts/image_sample.py`), or a
training dict `{'model', 'ema', 'opt', 'args', ...}` (MG `test.py`, LightningDiT `inference.py`,
the `train.py` checkpoints of custom runs), unwrapped as 'ema' -> 'model' -> bare; a DDP
`module.` prefix is stripped.
"""

from __future__ import annotations

import argparse
import math
import os
import pickle
import re
import tempfile
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import torch
from torch import Tensor, nn

from semantic_bottleneck.core.torchfile import (
    DDP_PREFIX,
    CheckpointError,
    UnsafeCheckpointError,
    preview_keys,
    strip_ddp_prefix,
    unwrap_state,
    weights_entry,
)
from semantic_bottleneck.zoo import registry

PathLike = str | os.PathLike

# the only non-tensor class a checkpoint may contain (argparse args of train.py checkpoints)
SAFE_GLOBALS = [argparse.Namespace]
_ACCEPTED = (
    "Only tensors, state dicts (plain containers of tensors) and argparse.Namespace are "
    "accepted; nothing else is unpickled."
)


# ----------------------------------------------------------------------------- reading


def _is_safetensors(path: Path) -> bool:
    return path.suffix == ".safetensors"


def _torch_load(path: Path) -> object:
    """torch.load with weights_only, mmap where the format allows, and clear errors."""
    # mmap needs the zip format (torch >= 1.6); older files are read without it
    mmap = zipfile.is_zipfile(path)
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            return torch.load(path, map_location="cpu", mmap=mmap, weights_only=True)
    except pickle.UnpicklingError as err:
        message = str(err)
        found = sorted(set(re.findall(r"GLOBAL ([\w.]+)", message)))
        if found:  # the pickle names a Python object outside the allowlist
            raise UnsafeCheckpointError(
                f"refusing to load {path}: its pickle requires {', '.join(found)}. {_ACCEPTED}"
            ) from None
        reason = re.search(r"WeightsUnpickler error: \s*(.+)", message)
        reason = reason.group(1).strip() if reason else message.splitlines()[0]
        raise CheckpointError(
            f"{path}: not readable as a tensor-only checkpoint ({reason}). {_ACCEPTED}"
        ) from None
    except RuntimeError as err:
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({err})") from None


def _select(state: dict[str, object], keys: Iterable[str] | None, path: Path) -> dict[str, Tensor]:
    """Return the wanted keys (all if None), checking each is present and is a tensor."""
    wanted = list(state) if keys is None else list(keys)
    missing = [k for k in wanted if k not in state]
    if missing:
        raise CheckpointError(
            f"{path}: missing keys {missing}; keys found: {preview_keys(state.keys())}"
        )
    not_tensors = [k for k in wanted if not isinstance(state[k], Tensor)]
    if not_tensors:
        hint = _nested_hint(state, None, None, None)[0] if keys is None else None
        raise CheckpointError(
            f"{path}: entries {preview_keys(not_tensors)} are not tensors"
            + (f"; {hint}" if hint else "")
        )
    return {k: state[k] for k in wanted}


def _load_safetensors_raw(path: Path) -> dict[str, Tensor]:
    """Every tensor of a safetensors file, keys as stored."""
    from safetensors.torch import load_file

    return load_file(str(path), device="cpu")


def _load_safetensors(path: Path, keys: Iterable[str] | None) -> dict[str, Tensor]:
    from safetensors import safe_open

    if keys is None:
        return strip_ddp_prefix(_load_safetensors_raw(path))
    with safe_open(str(path), framework="pt", device="cpu") as f:
        names = list(f.keys())
        # a safetensors file written from a DDP model keeps the `module.` prefix too
        lookup = {k.removeprefix(DDP_PREFIX): k for k in names}
        missing = [k for k in keys if k not in lookup]
        if missing:
            raise CheckpointError(
                f"{path}: missing keys {missing}; keys found: {preview_keys(lookup)}"
            )
        return {k: f.get_tensor(lookup[k]) for k in keys}


def load_state_dict(
    path: PathLike, keys: Iterable[str] | None = None, weights_key: str | None = None
) -> dict[str, Tensor]:
    """Read a state dict (or some of its tensors) from a checkpoint, without running any code.

    Args:
        path: a `torch.save` file (zip or legacy format) or a `.safetensors` file.
        keys: state-dict keys to return; None returns all. Only these tensors' bytes are read.
        weights_key: top-level entry holding the weights ('ema', 'model'); None tries
            'ema', then 'model', then the bare dict.

    Returns:
        {key: tensor} on the CPU. With a zip-format `.pt`, the tensors are memory-mapped views of
        the file: clone them to keep them after the file changes.

    Raises:
        FileNotFoundError: no such file.
        UnsafeCheckpointError: the pickle references anything beyond tensors and containers.
        CheckpointError: unreadable file, missing weights entry or missing keys.

    Shapes: as stored.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if keys is not None:
        keys = list(keys)
    if _is_safetensors(path):
        return _load_safetensors(path, keys)
    state = unwrap_state(_torch_load(path), weights_key, path)
    return _select(state, keys, path)


def state_dict_mismatch(expected: Mapping[str, Tensor], found: Mapping[str, object]) -> str:
    """Describe how `found` differs from `expected` (keys and shapes); empty string if it does not.

    Each kind of difference is one line: its count and the first few keys, sorted.

    Shapes: any.
    """
    return "\n".join(_mismatch_lines(_shapes(expected), _shapes(found)))


# a tensor's shape, or the type name of a non-tensor entry
Shapes = dict[str, "tuple[int, ...] | str"]


def _shapes(state: Mapping[object, object]) -> Shapes:
    return {
        str(k): tuple(v.shape) if isinstance(v, Tensor) else type(v).__name__
        for k, v in state.items()
    }


def _tensors(shapes: Shapes) -> Shapes:
    return {k: s for k, s in shapes.items() if isinstance(s, tuple)}


def _mismatch_lines(expected: Shapes, found: Shapes) -> list[str]:
    missing = set(expected) - set(found)
    unexpected = set(found) - set(expected)
    shapes = [
        f"{k}: expected {expected[k]}, found "
        + (str(found[k]) if isinstance(found[k], tuple) else f"{found[k]} (not a tensor)")
        for k in set(expected) & set(found)
        if expected[k] != found[k]
    ]
    lines = []
    if missing:
        lines.append(f"missing keys ({len(missing)}): {preview_keys(missing)}")
    if unexpected:
        lines.append(f"unexpected keys ({len(unexpected)}): {preview_keys(unexpected)}")
    if shapes:
        lines.append(f"shape mismatches ({len(shapes)}): {preview_keys(shapes, sep='; ')}")
    return lines


# where torch puts a wrapped module's keys: DDP/DataParallel's `.module`, torch.compile's
# `._orig_mod`
_WRAPPERS = {DDP_PREFIX: "DistributedDataParallel", "_orig_mod.": "torch.compile"}
# the block lists whose length is the config's `depth` (MDT's extra side block is outside it)
_BLOCKS = re.compile(r"(\w*blocks)\.(\d+)\.")
_INDEX = re.compile(r"\.\d+(?=\.|$)")


def _common_prefix(keys: set[str], other: set[str]) -> tuple[str, int] | None:
    """(prefix, overlap): the shortest leading dotted prefix that every key has and whose
    removal makes the most keys equal to keys of `other` (more than none removed); None if none.
    """
    best, best_overlap = None, len(keys & other)
    prefix, rest = "", keys
    for _ in range(3):  # e.g. 'module._orig_mod.': DDP around a compiled model
        heads = {k.split(".", 1)[0] for k in rest}
        if len(heads) != 1 or not all("." in k for k in rest):
            break
        head = heads.pop() + "."
        prefix, rest = prefix + head, {k[len(head) :] for k in rest}
        if len(rest & other) > best_overlap:
            best, best_overlap = prefix, len(rest & other)
    return None if best is None else (best, best_overlap)


def _prefix_names(prefix: str) -> str:
    """The prefix, and which wrapper added each of its parts where known."""
    parts = [p + "." for p in prefix.split(".") if p]
    known = [f"'{p}' from {_WRAPPERS[p]}" for p in parts if p in _WRAPPERS]
    if len(parts) == 1:
        return f"'{prefix}'" + (f" (from {_WRAPPERS[prefix]})" if known else "")
    return f"'{prefix}'" + (f" ({', '.join(known)})" if known else "")


def _prefix_hint(model: Shapes, file: Shapes, stored: Iterable[object]) -> str | None:
    """How the file's (or the model's) keys carry a wrapper's prefix that the other lacks."""
    # the keys as stored: a leading 'module.' was removed on reading, but may begin a longer
    # prefix ('module._orig_mod.')
    stored = {str(k) for k in stored}
    found = _common_prefix(stored, set(model))
    if found is not None and found[1] > len(set(file) & set(model)):
        prefix, overlap = found
        return (
            f"the file's keys all start with {_prefix_names(prefix)}; without it "
            f"{overlap} of {len(model)} model keys match. Loading removes only a leading "
            f"'{DDP_PREFIX}': save the unwrapped model's state_dict, or strip the prefix"
        )
    found = _common_prefix(set(model), set(file))
    if found is not None:
        prefix, overlap = found
        inner = "model." + prefix.rstrip(".")
        return (
            f"the model's keys all start with {_prefix_names(prefix)} and the "
            f"file's do not; {overlap} of {len(file)} file keys match {inner}: load into {inner}"
        )
    return None


def _kind(value: object) -> str:
    if isinstance(value, Tensor):
        return f"tensor {tuple(value.shape)}"
    if isinstance(value, Mapping):
        n = sum(isinstance(v, Tensor) for v in value.values())
        if n:
            return f"state dict of {n} tensors"
        return f"dict of {len(value)} {'entry' if len(value) == 1 else 'entries'}"
    return type(value).__name__


def _nested_hint(
    state: Mapping, raw: object, entry: str | None, model: Shapes | None
) -> tuple[str | None, Shapes | None]:
    """(hint, shapes of the nested state dict it points to) for weights inside a training
    checkpoint or a nested dict: the entries, and the weights_key to pass.

    `model` None: no model to compare with, the entry with the most tensors is suggested.
    """
    if entry is None:  # read at top level: any dict among the values is nested deeper
        top, tensors = state, sum(isinstance(v, Tensor) for v in state.values())
        if tensors > len(state) / 2:  # a state dict with some odd entries, not a training dict
            odd = [f"{k} ({_kind(v)})" for k, v in state.items() if not isinstance(v, Tensor)]
            return (f"besides tensors, the file holds {preview_keys(odd)}" if odd else None), None
    elif isinstance(raw, Mapping):
        top = raw
    else:
        return None, None
    candidates = {}
    for k, v in top.items():
        if k != entry and isinstance(v, Mapping) and any(isinstance(x, Tensor) for x in v.values()):
            shapes = _tensors(_shapes(strip_ddp_prefix(v)))
            candidates[k] = (shapes, _fit(model, shapes) if model is not None else len(v))
    best = max(candidates, key=lambda k: candidates[k][1], default=None)
    if entry is None and len(top) == 1 and best is not None:
        described = f"the weights are nested one level down, in {best!r} ({_kind(top[best])}"
        if any(str(k).startswith(DDP_PREFIX) for k in top[best]):
            described += f", keys with the '{DDP_PREFIX}' prefix of DistributedDataParallel"
        hint = f"{described}): pass weights_key={best!r}"
    else:
        entries = preview_keys((f"{k} ({_kind(v)})" for k, v in top.items()), limit=8)
        hint = f"the file is a training checkpoint with entries {entries}"
        if entry is not None:
            hint = f"the weights were read from {entry!r}; {hint}"
            if best is not None and candidates[best][1] <= _fit(model, _tensors(_shapes(state))):
                best = None  # no other entry fits better
        if best is not None:
            fit = ""
            if model is not None:
                agree = _agreement(model, candidates[best][0])
                fit = f" ({agree} of {len(model)} model keys match it in shape)"
            hint += f": pass weights_key={best!r}{fit}"
    return hint, (candidates[best][0] if best is not None else None)


def _agreement(a: Shapes | None, b: Shapes) -> int:
    """How many keys of `a` are in `b` with the same shape."""
    return 0 if a is None else sum(1 for k, s in a.items() if b.get(k) == s)


def _fit(a: Shapes | None, b: Shapes) -> float:
    """The share of keys that agree in shape, of the larger of the two: 1 only if a == b."""
    return _agreement(a, b) / max(len(a or {}), len(b), 1)


def _layout(shapes: Shapes) -> frozenset[str]:
    """The key names with block numbers replaced: equal for one architecture at any size."""
    return frozenset(_INDEX.sub(".N", k) for k in shapes)


def _releases() -> list[tuple[str, Shapes]]:
    """(names, shapes) of each packaged manifest, naming every release it describes."""
    releases: dict[str, tuple[list[str], str, Shapes]] = {}
    for entry in registry.CHECKPOINTS:
        releases.setdefault(entry.manifest, ([], entry.family, entry.shapes))[0].append(entry.name)
    return [
        (f"{' or '.join(names)} (family '{family}')", shapes)
        for names, family, shapes in releases.values()
    ]


def _family_hint(model: Shapes, file: Shapes) -> str | None:
    """Which released model the file's keys and shapes are (exactly, nearly, or in layout)."""
    releases = dict(_releases())
    # a release the model already is explains nothing: the config hint says what differs
    own = {name for name, shapes in releases.items() if shapes == model}
    fits = {name: _fit(shapes, file) for name, shapes in releases.items()}
    top = max(fits.values(), default=0.0)
    best = [name for name, fit in fits.items() if fit == top]
    if top == 1.0 and not set(best) <= own:
        tail = ", which share them" if len(best) > 1 else ""
        return f"keys and shapes exactly those of {' or '.join(best)}{tail}"
    if 0.9 <= top < 1.0 and not set(best) & own:
        agree, n = _agreement(releases[best[0]], file), max(len(releases[best[0]]), len(file))
        return f"keys and shapes nearly those of {' or '.join(best)} ({agree} of {n} agree)"
    layout = [name for name, shapes in releases.items() if _layout(shapes) == _layout(file)]
    if layout and _layout(file) != _layout(model) and not set(layout) & own:
        return (
            f"the layout of {' or '.join(layout)} at another size "
            "(the same key names, block numbers aside)"
        )
    return None


_EVIDENCE = {
    "depth": "number of blocks",
    "hidden_size": "rows of x_embedder.proj.weight",
    "patch_size": "kernel of x_embedder.proj.weight",
    "in_channels": "columns of x_embedder.proj.weight",
    "input_size": "pos_embed tokens = (input_size / patch_size)^2",
    "num_classes": "rows of y_embedder.embedding_table.weight = num_classes + 1",
    "learn_sigma": "rows of final_layer.linear.weight = patch_size^2 * in_channels, doubled by it",
    "out_channels": "rows of final_layer.linear.weight / patch_size^2",
}


def _config_of(shapes: Shapes) -> dict[str, object]:
    """The constructor settings a state dict's shapes show (DiT-style key names)."""
    config: dict[str, object] = {}
    blocks = {(m[1], m[2]) for k in shapes if (m := _BLOCKS.match(k)) and m[1] != "sideblocks"}
    if blocks:
        config["depth"] = len(blocks)
    proj = shapes.get("x_embedder.proj.weight")
    if isinstance(proj, tuple) and len(proj) == 4:
        config.update(hidden_size=proj[0], patch_size=proj[2], in_channels=proj[1])
        patch, channels = proj[2], proj[1]
        pos = shapes.get("pos_embed")
        if isinstance(pos, tuple) and len(pos) == 3 and math.isqrt(pos[1]) ** 2 == pos[1]:
            config["input_size"] = math.isqrt(pos[1]) * patch
        final = shapes.get("final_layer.linear.weight")
        if isinstance(final, tuple) and len(final) == 2 and final[0] % (patch * patch) == 0:
            out = final[0] // (patch * patch)
            if out in (channels, 2 * channels):
                config["learn_sigma"] = out == 2 * channels
            else:
                config["out_channels"] = out
    table = shapes.get("y_embedder.embedding_table.weight")
    if isinstance(table, tuple) and len(table) == 2:
        config["num_classes"] = table[0] - 1
    return config


def _config_hint(model: Shapes, file: Shapes) -> str | None:
    ours, theirs = _config_of(model), _config_of(file)
    differ = [k for k in _EVIDENCE if k in ours and k in theirs and ours[k] != theirs[k]]
    if not differ:
        return None
    return "likely config difference (model vs file): " + "; ".join(
        f"{k} {ours[k]} vs {theirs[k]} ({_EVIDENCE[k]})" for k in differ
    )


def explain_mismatch(
    model: nn.Module | Mapping[str, Tensor],
    state: Mapping[object, object],
    *,
    raw: object = None,
    entry: str | None = None,
    stored_keys: Iterable[object] | None = None,
) -> str:
    """How a state dict fails to fit a model, and what it looks like instead; "" if it fits.

    The counts and first few missing / unexpected / misshapen keys, then what the state looks
    like by inspection: another released model (compared with every packaged manifest), a
    training checkpoint or nested dict (with the weights_key to pass), keys wrapped by
    DistributedDataParallel or torch.compile, and the config settings its shapes differ in.

    Args:
        model: the model (or its state dict) the weights should fill.
        state: the weights as read (`module.` prefixes already removed).
        raw: the file's top-level object, when `state` is one of its entries.
        entry: the top-level entry `state` was read from; None for the top level itself.
        stored_keys: the state's keys as stored (before `module.` was removed); default
            `state`'s keys.
    """
    expected = _shapes(model.state_dict() if isinstance(model, nn.Module) else model)
    found = _shapes(state)
    lines = _mismatch_lines(expected, found)
    if not lines:
        return ""
    name = type(model).__name__ if isinstance(model, nn.Module) else "the state dict"
    head = f"does not match {name} ({len(expected)} keys expected, {len(found)} in the file):"
    hints = []
    nested, nested_shapes = _nested_hint(state, raw, entry, expected)
    hints.append(nested)
    if nested_shapes is None:
        hints.append(_prefix_hint(expected, found, stored_keys or state.keys()))
    # the weights that were compared, unless the top level read is no state dict at all
    target = nested_shapes if entry is None and nested_shapes is not None else _tensors(found)
    if target:
        hints += [_family_hint(expected, target), _config_hint(expected, target)]
    hints = [h for h in hints if h]
    text = [head, *(f"  {line}" for line in lines)]
    if hints:
        text += ["what the file looks like:", *(f"  - {h}" for h in hints)]
    return "\n".join(text)


def load_into(model: nn.Module, path: PathLike, weights_key: str | None = None) -> nn.Module:
    """Load a checkpoint into `model` strictly (every key, every shape), in place.

    Args:
        model: a model whose state-dict keys equal the checkpoint's.
        path: checkpoint file (see `load_state_dict`).
        weights_key: as in `load_state_dict`.

    Returns:
        the same model, with the weights copied in.

    Raises:
        CheckpointError: before any weight is copied, with the counts and first few missing
            keys, unexpected keys and shape mismatches, and what the file looks like instead
            (see `explain_mismatch`).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if _is_safetensors(path):
        raw, entry, weights = None, None, _load_safetensors_raw(path)
    else:
        raw = _torch_load(path)
        entry, weights = weights_entry(raw, weights_key, path)
    state = strip_ddp_prefix(weights)
    problems = explain_mismatch(model, state, raw=raw, entry=entry, stored_keys=weights.keys())
    if problems:
        raise CheckpointError(f"{path} {problems}")
    model.load_state_dict(state, strict=True)
    return model


# ----------------------------------------------------------------------------- writing


def fsync_dir(directory: Path) -> None:
    """fsync a directory so that a rename inside it is durable (best effort: not every platform)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; once written, fsync it and rename it over `path`.

    Readers see either the old `path` or the complete new file, never a partial one
    (os.replace is atomic within one file system). On any error the temporary file is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        fd = os.open(tmp, os.O_RDWR)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


@contextmanager
def atomic_write(path: PathLike) -> Iterator[BinaryIO]:
    """`atomic_path`, opened as a binary file for writing."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        yield f


def save_atomic(obj: object, path: PathLike, metadata: Mapping[str, str] | None = None) -> Path:
    """Write `obj` to `path` atomically (temporary file in the same folder, fsync, rename).

    Args:
        obj: for a `.safetensors` path, a {name: tensor} dict; otherwise anything `torch.save`
            writes (a state dict, or a dict of state dicts and plain values).
        path: destination; its suffix selects the format.
        metadata: string metadata stored in the safetensors header (safetensors only).

    Returns:
        the destination path.
    """
    path = Path(path)
    if _is_safetensors(path):
        if not isinstance(obj, Mapping) or not all(isinstance(v, Tensor) for v in obj.values()):
            raise ValueError(f"a .safetensors file holds a {{name: tensor}} dict, got {type(obj)}")
        from safetensors.torch import save_file

        tensors = {k: v.detach().cpu().contiguous() for k, v in obj.items()}
        with atomic_path(path) as tmp:
            save_file(tensors, tmp, metadata=dict(metadata) if metadata else None)
    elif metadata:
        raise ValueError("metadata is only stored in .safetensors files")
    else:
        with atomic_write(path) as f:
            torch.save(obj, f)
    return path
