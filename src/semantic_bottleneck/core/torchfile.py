"""Read tensors out of a `torch.save` file without torch: the standard library and numpy only.

Importing torch costs hundreds of MB of resident memory on CUDA builds, more than everything
else needed for c. This module reads the zip format that `torch.save` writes since PyTorch 1.6:

    <archive>/data.pkl      the pickled object; each tensor is a call to
                            torch._utils._rebuild_tensor_v2 (or _v3, for dtypes without a
                            legacy storage class) on a persistent id
                            ('storage', storage class, key, location, numel)
    <archive>/data/<key>    the raw bytes of storage <key>, stored uncompressed
    <archive>/byteorder     'little' or 'big'

The pickle is read by an unpickler whose `find_class` resolves only the names a state dict, or a
training dict ('ema', 'model', 'opt', 'args', step counters), needs; every tensor becomes a
`TensorRef` (where its bytes lie) and only the requested tensors are read from disk.

`class_conditions_numpy` is the numpy twin of `conditioning.class_conditions`: c for every class
at one t from the five embedder tensors, in float32, op for op as the official forward.
"""

from __future__ import annotations

import argparse
import collections
import math
import os
import pickle
import struct
import types
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import BinaryIO, NamedTuple

import numpy as np

# the five tensors that define c (book/method.md#method-conditional-vector); conditioning.py
# imports them from here
EMBEDDER_KEYS = (
    "t_embedder.mlp.0.weight",
    "t_embedder.mlp.0.bias",
    "t_embedder.mlp.2.weight",
    "t_embedder.mlp.2.bias",
    "y_embedder.embedding_table.weight",
)
# tried in this order when no weights_key is given (the official loaders' order; also used by
# zoo.checkpoint.load_state_dict)
WRAPPER_KEYS = ("ema", "model")
# DistributedDataParallel's key prefix, removed on every read
DDP_PREFIX = "module."

# torch dtype name -> numpy type code; bfloat16 is read as its raw 16 bits, then widened
_DTYPES = {
    "float64": "f8", "float32": "f4", "float16": "f2", "bfloat16": "u2",
    "int64": "i8", "int32": "i4", "int16": "i2", "int8": "i1",
    "uint64": "u8", "uint32": "u4", "uint16": "u2", "uint8": "u1", "bool": "?",
    "complex64": "c8", "complex128": "c16",
}  # fmt: skip
# legacy typed-storage class named in the pickle -> dtype of its elements
_STORAGE_DTYPES = {
    "DoubleStorage": "float64", "FloatStorage": "float32", "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16", "LongStorage": "int64", "IntStorage": "int32",
    "ShortStorage": "int16", "CharStorage": "int8", "ByteStorage": "uint8",
    "BoolStorage": "bool", "ComplexFloatStorage": "complex64",
    "ComplexDoubleStorage": "complex128", "UntypedStorage": "uint8",
}  # fmt: skip
# dtypes a _v3 record may name that have no numpy equivalent: refused only when read
_UNREADABLE = ("complex32", "float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz")
_ACCEPTED = (
    "Only tensors, state dicts (plain containers of tensors) and argparse.Namespace are "
    "accepted; nothing else is unpickled."
)


class UnsafeCheckpointError(ValueError):
    """The file's pickle asks for a Python object outside the tensor/state-dict allowlist."""


class CheckpointError(ValueError):
    """The file is not a readable checkpoint, or its keys/shapes are not the expected ones."""


# ----------------------------------------------------------------------------- the pickle


class _DType(NamedTuple):
    """A torch storage class or dtype named by the pickle; immutable, so BUILD cannot alter it."""

    name: str


class _Storage(NamedTuple):
    """A storage as its persistent id names it: zip member data/<key>, nbytes long."""

    key: str
    dtype: str
    nbytes: int


class TensorRef(NamedTuple):
    """Where a pickled tensor's bytes lie: storage member, dtype and layout (in elements)."""

    storage: str
    dtype: str
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]
    storage_nbytes: int


def _ints(value: object) -> bool:
    return isinstance(value, tuple) and all(type(v) is int for v in value)


def _tensor(storage: object, offset: object, size: object, stride: object, dtype: str) -> TensorRef:
    if not (
        isinstance(storage, _Storage) and type(offset) is int and _ints(size) and _ints(stride)
    ):
        raise CheckpointError(f"malformed tensor record: storage {storage!r}, offset {offset!r}, "
                    f"size {size!r}, stride {stride!r}")  # fmt: skip
    if len(size) != len(stride):
        raise CheckpointError(f"tensor record has size {size} but stride {stride}")
    return TensorRef(storage.key, dtype, offset, size, stride, storage.nbytes)


def _rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks, metadata=None):
    """Stand-in for torch._utils._rebuild_tensor_v2: the tensor has its storage's dtype."""
    return _tensor(storage, offset, size, stride, getattr(storage, "dtype", ""))


def _rebuild_tensor_v3(storage, offset, size, stride, requires_grad, hooks, dtype, metadata=None):
    """Stand-in for torch._utils._rebuild_tensor_v3: untyped bytes plus an explicit dtype."""
    if not isinstance(dtype, _DType):
        raise CheckpointError(f"tensor record has dtype {dtype!r}, expected a torch dtype")
    return _tensor(storage, offset, size, stride, dtype.name)


def _rebuild_parameter(data, requires_grad, hooks, state=None):
    """Stand-in for torch._utils._rebuild_parameter(_with_state): a Parameter is its data."""
    return data


_MARKERS = {
    ("torch.storage", "UntypedStorage"): _DType("uint8"),
    **{("torch", name): _DType(dtype) for name, dtype in _STORAGE_DTYPES.items()},
    **{("torch", name): _DType(name) for name in (*_DTYPES, *_UNREADABLE)},  # of _v3 records
}


def _allowed() -> dict[tuple[str, str], object]:
    """Every name a checkpoint's pickle may use, mapped to the object it resolves to.

    Functions and classes are fresh objects on each call: a pickle's BUILD can set attributes on
    them, and that must not reach the next file read in this process.
    """

    def fresh(f):
        return types.FunctionType(f.__code__, f.__globals__, f.__name__, f.__defaults__)

    return {
        ("collections", "OrderedDict"): collections.OrderedDict,  # a C type: immutable
        # train.py args; NEWOBJ + BUILD create it without running any of its code
        ("argparse", "Namespace"): type("Namespace", (argparse.Namespace,), {}),
        ("torch._utils", "_rebuild_tensor_v2"): fresh(_rebuild_tensor_v2),
        ("torch._utils", "_rebuild_tensor_v3"): fresh(_rebuild_tensor_v3),
        ("torch._utils", "_rebuild_parameter"): fresh(_rebuild_parameter),
        ("torch._utils", "_rebuild_parameter_with_state"): fresh(_rebuild_parameter),
        **_MARKERS,
    }


class _Unpickler(pickle.Unpickler):
    """An unpickler that resolves only the names of `_allowed` and torch's storage ids."""

    def __init__(self, file, path: Path):
        super().__init__(file)
        self.path = path
        self.allowed = _allowed()

    def find_class(self, module: str, name: str) -> object:
        try:
            return self.allowed[(module, name)]
        except KeyError:
            raise UnsafeCheckpointError(
                f"refusing to load {self.path}: its pickle requires {module}.{name}. {_ACCEPTED}"
            ) from None

    def persistent_load(self, pid: object) -> _Storage:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise CheckpointError(f"{self.path}: unexpected persistent id {pid!r}")
        _, storage_type, key, _location, numel = pid
        if not (isinstance(storage_type, _DType) and isinstance(key, str)):
            raise CheckpointError(f"{self.path}: unexpected storage record {pid!r}")
        if type(numel) is not int or numel < 0 or storage_type.name not in _DTYPES:
            raise CheckpointError(
                f"{self.path}: storage {key!r} of {storage_type.name} has size {numel!r}"
            )
        itemsize = np.dtype(_DTYPES[storage_type.name]).itemsize
        return _Storage(key, storage_type.name, numel * itemsize)


def archive_prefix(zf: zipfile.ZipFile, path: object) -> str:
    """The archive's top folder, e.g. 'archive/' (torch names it after the file); `path` (a
    file or URL) names the source in errors."""
    for name in zf.namelist():
        if name.endswith("data.pkl") and name.count("/") == 1:
            return name[: -len("data.pkl")]
    raise CheckpointError(
        f"{path}: a zip file without <archive>/data.pkl is not a torch.save checkpoint"
    )


def preview_keys(keys: Iterable[object], limit: int = 5, sep: str = ", ") -> str:
    """The first `limit` keys, sorted, then how many more there are (for error messages)."""
    keys = sorted(map(str, keys))
    shown = sep.join(keys[:limit])
    return f"{shown}{sep}... and {len(keys) - limit} more" if len(keys) > limit else shown


def weights_entry(obj: object, weights_key: str | None, path: Path) -> tuple[str | None, Mapping]:
    """(name, mapping) of the top-level entry holding the weights: weights_key, else 'ema' ->
    'model' -> the bare dict (name None); keys as stored, `module.` prefixes included."""
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: expected a dict at top level, found {type(obj).__name__}")
    if weights_key is not None:
        if weights_key not in obj:
            top = preview_keys(obj, limit=10)
            # without a nested dict the file cannot be a training checkpoint: it is the weights
            bare = bool(obj) and not any(isinstance(v, Mapping) for v in obj.values())
            hint = "; it is a bare state_dict: pass weights_key=None" if bare else ""
            raise CheckpointError(
                f"{path}: no {weights_key!r} entry; top-level keys are {top}{hint}"
            )
        entry = weights_key
    else:
        entry = next((k for k in WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
    weights = obj if entry is None else obj[entry]
    if not isinstance(weights, Mapping):
        raise CheckpointError(f"{path}: weights entry is a {type(weights).__name__}, not a dict")
    return entry, weights


def strip_ddp_prefix(state: Mapping) -> dict[object, object]:
    """The state dict with DistributedDataParallel's `module.` prefix removed from its keys."""
    return {k.removeprefix(DDP_PREFIX) if isinstance(k, str) else k: v for k, v in state.items()}


def unwrap_state(obj: object, weights_key: str | None, path: Path) -> dict[object, object]:
    """The state dict inside a training checkpoint: weights_key, else 'ema' -> 'model' -> bare,
    with DistributedDataParallel's `module.` prefix removed from its keys."""
    return strip_ddp_prefix(weights_entry(obj, weights_key, path)[1])


def read_index(path: str | os.PathLike, weights_key: str | None = None) -> dict[str, object]:
    """The state dict of a zip-format `torch.save` file, every tensor as a `TensorRef`.

    Args:
        path: a checkpoint written by `torch.save` (PyTorch >= 1.6, zip format).
        weights_key: top-level entry holding the weights ('ema', 'model'); None tries
            'ema', then 'model', then the bare dict.

    Returns:
        {key: TensorRef}, 'module.' prefixes stripped. No tensor bytes are read.

    Raises:
        FileNotFoundError: no such file.
        UnsafeCheckpointError: the pickle names anything beyond tensors and containers.
        CheckpointError: not a zip-format torch file, or no such weights entry.

    Shapes: TensorRef.shape as stored.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(
            f"{path}: not a zip-format torch.save file (legacy pre-1.6 format, safetensors or "
            "something else); read it with zoo.checkpoint.load_state_dict"
        )
    with zipfile.ZipFile(path) as zf:
        obj = load_pickle(zf.open(archive_prefix(zf, path) + "data.pkl"), path)
    return unwrap_state(obj, weights_key, path)


def load_pickle(file: BinaryIO, path: object) -> object:
    """Unpickle a checkpoint's data.pkl with the restricted unpickler: tensors become
    `TensorRef`s, anything outside the allowlist is refused; `path` (file or URL) names the
    source in errors.

    Raises:
        UnsafeCheckpointError: the pickle names anything beyond tensors and containers.
        CheckpointError: a malformed pickle.
    """
    unpickler = _Unpickler(file, path)
    try:
        return unpickler.load()
    except (pickle.UnpicklingError, EOFError, LookupError, AttributeError, TypeError,
            ValueError) as err:  # fmt: skip
        if isinstance(err, (UnsafeCheckpointError, CheckpointError)):  # already explained
            raise
        # a malformed or hostile pickle: wrong arguments, BUILD on an immutable marker, ...
        raise CheckpointError(f"{path}: unreadable pickle ({type(err).__name__}: {err})") from None


# ----------------------------------------------------------------------------- the bytes


def _member_offset(zf: zipfile.ZipFile, name: str, path: Path) -> tuple[int, int]:
    """(offset of the member's bytes in the file, their length); the member must be stored."""
    try:
        info = zf.getinfo(name)
    except KeyError:
        raise CheckpointError(
            f"{path}: the pickle names storage {name!r}, which the archive lacks"
        ) from None
    if info.compress_type != zipfile.ZIP_STORED:
        raise CheckpointError(f"{path}: storage {name!r} is compressed; torch.save stores them raw")
    # the local header's extra field (torch's alignment padding) may differ from the central one
    zf.fp.seek(info.header_offset)
    magic, name_len, extra_len = struct.unpack("<4s22xHH", zf.fp.read(30))
    if magic != b"PK\x03\x04":
        raise CheckpointError(f"{path}: bad local header for {name!r}")
    return info.header_offset + 30 + name_len + extra_len, info.file_size


def _read(ref: TensorRef, file, start: int, size: int, big_endian: bool, key: str) -> np.ndarray:
    """Read one tensor's bytes (only its span of the storage) into a C-contiguous array;
    bfloat16 widened to float32."""
    out = read_raw(ref, file, start, size, big_endian, key)
    if ref.dtype == "bfloat16":  # bfloat16 is the upper half of a float32
        out = (out.astype(np.uint32) << 16).view(np.float32)
    return out


def read_raw(
    ref: TensorRef, file: BinaryIO, start: int, size: int, big_endian: bool, key: str
) -> np.ndarray:
    """One tensor's bytes (only its span of the storage) as a C-contiguous, native-order array
    of its stored dtype (bfloat16 as its raw uint16 bits).

    Args:
        ref: where the tensor lies in its storage.
        file: seekable binary file holding the storage's bytes from `start` on.
        start, size: byte offset and length of the storage in `file`.
        big_endian: the archive's byte order.
        key: state-dict key, for errors.

    Shapes: ref.shape.
    """
    if ref.dtype not in _DTYPES:
        raise CheckpointError(
            f"{key}: dtype {ref.dtype} is not supported; supported: {sorted(_DTYPES)}"
        )
    dtype = np.dtype(_DTYPES[ref.dtype]).newbyteorder(">" if big_endian else "<")
    shape, stride = ref.shape, ref.stride
    if ref.offset < 0 or any(s < 0 for s in shape) or any(s < 0 for s in stride):
        raise CheckpointError(
            f"{key}: negative offset, size or stride ({ref.offset}, {shape}, {stride})"
        )
    # elements from the first to the last one the tensor touches
    span = 0 if 0 in shape else 1 + sum((n - 1) * s for n, s in zip(shape, stride, strict=True))
    end = (ref.offset + span) * dtype.itemsize
    if end > min(ref.storage_nbytes, size):
        raise CheckpointError(f"{key}: tensor reaches byte {end} of storage {ref.storage!r}, which has "
                    f"{min(ref.storage_nbytes, size)}")  # fmt: skip
    flat = np.empty(span, dtype)
    file.seek(start + ref.offset * dtype.itemsize)
    if file.readinto(memoryview(flat).cast("B")) != flat.nbytes:
        raise CheckpointError(f"{key}: storage {ref.storage!r} is truncated")
    # bounds checked above; a transposed or expanded tensor is copied into C order
    view = np.lib.stride_tricks.as_strided(flat, shape, [s * dtype.itemsize for s in stride])
    if not view.flags.c_contiguous:
        view = view.copy()
    return view.astype(dtype.newbyteorder("="), copy=False)  # native byte order


def read_tensors(
    path: str | os.PathLike, keys: Iterable[str], weights_key: str | None = None
) -> dict[str, np.ndarray]:
    """Read some tensors of a zip-format `torch.save` checkpoint into numpy, without torch.

    Args:
        path: a checkpoint written by `torch.save` (PyTorch >= 1.6).
        keys: state-dict keys to read (without any 'module.' prefix); only their bytes are read.
        weights_key: as in `read_index`.

    Returns:
        {key: array}, C-contiguous and independent of the file, in the order of `keys`.
        bfloat16 tensors come back as float32 (exact); other dtypes as stored.

    Raises:
        ValueError: keys is not a non-empty collection of strings.
        UnsafeCheckpointError, CheckpointError: as `read_index`; also for a missing key, an
            entry that is not a tensor, or an unsupported dtype.

    Shapes: as stored.
    """
    if isinstance(keys, str):
        raise ValueError(f"keys must be a collection of strings, got the string {keys!r}")
    keys = list(keys)
    if not keys or not all(isinstance(k, str) for k in keys):
        raise ValueError(f"keys must be a non-empty collection of strings, got {keys[:10]!r}")
    path = Path(path)
    state = read_index(path, weights_key)
    missing = [k for k in keys if k not in state]
    if missing:
        raise CheckpointError(f"{path}: missing keys {missing}; keys found: {sorted(map(str, state))[:20]} "
                    f"({len(state)} in all)")  # fmt: skip
    not_tensors = [k for k in keys if not isinstance(state[k], TensorRef)]
    if not_tensors:
        raise CheckpointError(f"{path}: entries {not_tensors[:10]} are not tensors")
    out = {}
    with open(path, "rb") as file, zipfile.ZipFile(file) as zf:
        prefix = archive_prefix(zf, path)
        names = set(zf.namelist())
        # files written before torch recorded it are little-endian
        big = prefix + "byteorder" in names and zf.read(prefix + "byteorder") == b"big"
        for key in keys:
            ref = state[key]
            start, size = _member_offset(zf, f"{prefix}data/{ref.storage}", path)
            out[key] = _read(ref, file, start, size, big, key)
    return out


# ----------------------------------------------------------------------------- c in numpy


def _check_embedders(arrays: Mapping[str, np.ndarray]) -> None:
    """The five embedder arrays are present and consistently shaped (as conditioning checks)."""
    missing = [k for k in EMBEDDER_KEYS if k not in arrays]
    if missing:
        raise ValueError(f"embedders lack {missing}; expected keys {EMBEDDER_KEYS}")
    w0, b0, w2, b2, table = (np.shape(arrays[k]) for k in EMBEDDER_KEYS)
    d = w2[0] if w2 else -1
    checks = [
        (EMBEDDER_KEYS[0], len(w0) == 2 and w0[0] == d, f"({d}, frequency_dim)"),
        (EMBEDDER_KEYS[1], b0 == (d,), f"({d},)"),
        (EMBEDDER_KEYS[2], w2 == (d, d), f"({d}, {d})"),
        (EMBEDDER_KEYS[3], b2 == (d,), f"({d},)"),
        (EMBEDDER_KEYS[4], len(table) == 2 and table[1] == d, f"(num_classes + 1, {d})"),
    ]
    bad = [f"{k}: expected {want}, got {np.shape(arrays[k])}" for k, ok, want in checks if not ok]
    if bad:
        raise ValueError("inconsistent embedder shapes: " + "; ".join(bad))


def timestep_embedding_numpy(t: float, dim: int = 256, max_period: float = 10000.0) -> np.ndarray:
    """Sinusoidal features of one t in float32, as `zoo.dit.timestep_embedding` (cosine first).

    Args:
        t: the time, in the model's own convention (not rescaled).
        dim: feature size (256 in every official model).
        max_period: controls the lowest frequency.

    Returns:
        float32 [cos(t f), sin(t f)] with f_i = exp(-ln(max_period) i / (dim // 2)).

    Shapes: () -> (1, dim).
    """
    half = dim // 2
    # the exponent in float32 ops, as torch forms it from a float32 arange
    exponent = np.float32(-math.log(max_period)) * np.arange(half, dtype=np.float32)
    exponent = exponent / np.float32(half)
    # exp rounded from float64: torch's float32 exp gives the same bits for all but a few of the
    # 128 frequencies, numpy's float32 exp differs in about 50 (times t = 999, that shows in c)
    freqs = np.exp(exponent.astype(np.float64)).astype(np.float32)
    args = np.float32(t) * freqs  # float32 product, as t.float() * freqs
    embedding = np.concatenate([np.cos(args), np.sin(args)])
    if dim % 2:
        embedding = np.concatenate([embedding, np.zeros(1, np.float32)])
    return embedding[None]


def class_conditions_numpy(
    arrays: Mapping[str, np.ndarray], t: float, classes: Iterable[int] | None = None
) -> np.ndarray:
    """c = t_embedder(t) + y_embedder(y) for many classes at one t, in numpy float32.

    The numpy twin of `conditioning.class_conditions` (which needs torch): sinusoid, Linear,
    SiLU, Linear, plus the label row; equal to it up to float32 rounding.

    Args:
        arrays: the five embedder arrays (`EMBEDDER_KEYS`), e.g. from `read_tensors`.
        t: scalar time, e.g. the registry entry's `initial_t`.
        classes: labels (n,); None = all real classes (the null row excluded).

    Returns:
        float32 (n, d); (num_classes, d) by default.

    Shapes: t () -> (n, d).
    """
    _check_embedders(arrays)
    if np.size(t) != 1:
        raise ValueError(f"class_conditions_numpy takes one t, got shape {np.shape(t)}")
    t = float(np.asarray(t).reshape(()))
    if not math.isfinite(t):
        raise ValueError(f"t must be finite, got {t}")
    w0, b0, w2, b2, table = (np.asarray(arrays[k], dtype=np.float32) for k in EMBEDDER_KEYS)
    rows = table.shape[0]
    labels = np.arange(rows - 1) if classes is None else np.asarray(classes).reshape(-1)
    if labels.dtype.kind not in "iu":
        raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() >= rows):
        raise ValueError(
            f"labels must lie in [0, {rows - 1}] ({rows - 1} = null), got {labels[:10].tolist()}"
        )
    t_freq = timestep_embedding_numpy(t, dim=w0.shape[1])  # (1, 256)
    h = t_freq @ w0.T + b0  # (1, d)
    with np.errstate(over="ignore"):  # exp(-h) = inf for h << 0 gives SiLU = -0, as in torch
        h = h / (np.float32(1) + np.exp(-h))  # SiLU
    t_emb = h @ w2.T + b2  # (1, d)
    return t_emb + table[labels]  # (n, d)
