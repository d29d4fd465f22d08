"""Safe checkpoint I/O: read official `.pt` / `.safetensors` files, load them strictly, save atomically.

Official checkpoints are torch pickles. They are read only with `weights_only=True`, which refuses
any pickled object other than tensors and plain containers; the single extra class allowed is
`argparse.Namespace`, because training checkpoints (`train.py` of DiT, SiT, REPA, MG) store their
command line arguments as one. Reads use `mmap=True`, so taking a few tensors out of a 2.7 GB file
touches only those tensors' bytes.

Layouts handled (see reference/official_checkpoints.md): a bare state_dict (DiT, SiT, REPA, MDT),
or a training dict `{'model', 'ema', 'opt', 'args', ...}` (MG, LightningDiT, custom runs), unwrapped
as 'ema' -> 'model' -> bare; a DDP `module.` prefix is stripped.
"""

from __future__ import annotations

import argparse
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

from semantic_bottleneck.torchfile import preview_keys, unwrap_state

PathLike = str | os.PathLike

# the only non-tensor class a checkpoint may contain (argparse args of train.py checkpoints)
SAFE_GLOBALS = [argparse.Namespace]
_ACCEPTED = (
    "Only tensors, state dicts (plain containers of tensors) and argparse.Namespace are "
    "accepted; nothing else is unpickled."
)


class UnsafeCheckpointError(ValueError):
    """The file's pickle asks for a Python object outside the tensor/state-dict allowlist."""


class CheckpointError(ValueError):
    """The file is not a readable checkpoint, or its keys/shapes are not the expected ones."""


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
        raise CheckpointError(f"{path}: entries {not_tensors[:10]} are not tensors")
    return {k: state[k] for k in wanted}


def _load_safetensors(path: Path, keys: Iterable[str] | None) -> dict[str, Tensor]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt", device="cpu") as f:
        names = list(f.keys())
        if keys is None:
            return {k: f.get_tensor(k) for k in names}
        # a safetensors file written from a DDP model keeps the `module.` prefix too
        lookup = {k.removeprefix("module."): k for k in names}
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


def state_dict_mismatch(expected: Mapping[str, Tensor], found: Mapping[str, Tensor]) -> str:
    """Describe how `found` differs from `expected` (keys and shapes); empty string if it does not.

    Shapes: any.
    """
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    shapes = [
        f"{k}: expected {tuple(expected[k].shape)}, found {tuple(found[k].shape)}"
        for k in expected
        if k in found and tuple(expected[k].shape) != tuple(found[k].shape)
    ]
    lines = []
    if missing:
        lines.append(f"missing keys ({len(missing)}): {', '.join(missing)}")
    if unexpected:
        lines.append(f"unexpected keys ({len(unexpected)}): {', '.join(unexpected)}")
    if shapes:
        lines.append(f"shape mismatches ({len(shapes)}): " + "; ".join(shapes))
    return "\n".join(lines)


def load_into(model: nn.Module, path: PathLike, weights_key: str | None = None) -> nn.Module:
    """Load a checkpoint into `model` strictly (every key, every shape), in place.

    Args:
        model: a model whose state-dict keys equal the checkpoint's.
        path: checkpoint file (see `load_state_dict`).
        weights_key: as in `load_state_dict`.

    Returns:
        the same model, with the weights copied in.

    Raises:
        CheckpointError: listing missing keys, unexpected keys and shape mismatches, before any
            weight is copied.
    """
    state = load_state_dict(path, weights_key=weights_key)
    problems = state_dict_mismatch(model.state_dict(), state)
    if problems:
        raise CheckpointError(f"{path} does not match {type(model).__name__}:\n{problems}")
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
