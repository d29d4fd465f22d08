"""Read the five tensors of c out of a remote checkpoint by HTTP Range requests.

c = t_embedder(t) + y_embedder(y) depends on five tensors (`torchfile.EMBEDDER_KEYS`), about
10 MB of a 2.7 GB file. For a zip-format `torch.save` file the reads are: the tail (end of central
directory, zip64 records, usually the central directory itself), data.pkl (unpickled by torchfile's
restricted unpickler), then only the five storages. For a safetensors file: the 8-byte length, the
JSON header, then the five byte ranges. A file released in parts that are joined with `cat` (MG)
is one virtual file: offsets are mapped onto the parts, and a read that crosses a boundary is split.

Every byte is untrusted. Each response must be a 206 whose Content-Range is exactly the range
asked for, of the size and ETag/Last-Modified the first probe saw; a 200 (a server that ignores
Range) is aborted before its body is read. Zip members are CRC-32 checked against the central
directory (data.pkl and each storage is read whole), so a flipped or truncated byte in a served
range is an error; every member must lie inside the file. safetensors has no checksums: there
only the structure is checked. The sha256 of every range read is recorded (`RangeRecord`), so the
extract can be checked against the full file once that is present (`check_ranges`).

Nothing here writes to disk: `read_c_tensors` returns the arrays, `safetensors_bytes` the bytes
of the extract, which the caller writes atomically (zoo/fetch.py).
"""

from __future__ import annotations

import hashlib
import http.client
import io
import json
import math
import os
import struct
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

from semantic_bottleneck import __version__
from semantic_bottleneck.core.torchfile import (
    EMBEDDER_KEYS,
    CheckpointError,
    TensorRef,
    archive_prefix,
    load_pickle,
    read_raw,
    strip_ddp_prefix,
    weights_entry,
)

TIMEOUT_S = 60
RETRIES = 5  # attempts per range after a cut connection, each resuming where the last stopped
BACKOFF_S = 0.5  # doubled after each failed attempt
READAHEAD = 16 << 10  # a small read (a local header) fetches this much, to spare round trips
# end of central directory (22) + the longest comment + zip64 locator (20) and record (56)
TAIL = 22 + 0xFFFF + 20 + 56
MAX_PICKLE = 64 << 20  # data.pkl of a 2.7 GB XL checkpoint is ~40 KB
MAX_C_BYTES = 256 << 20  # the five tensors are ~10 MB at XL; more means it is not such a file
MAX_HEADER = 100 << 20  # safetensors' own limit on its JSON header
CHUNK = 1 << 20
FORMAT = "semantic-bottleneck c-only 1"  # `__metadata__['format']` of an extract

# torch dtype name -> (safetensors code, numpy type of the raw bytes); bfloat16 kept as raw bits
_ST_DTYPES = {
    "float64": ("F64", "<f8"), "float32": ("F32", "<f4"), "float16": ("F16", "<f2"),
    "bfloat16": ("BF16", "<u2"), "int64": ("I64", "<i8"), "int32": ("I32", "<i4"),
    "int16": ("I16", "<i2"), "int8": ("I8", "i1"), "uint8": ("U8", "u1"), "bool": ("BOOL", "?"),
}  # fmt: skip
_FROM_ST = {code: name for name, (code, _) in _ST_DTYPES.items()}


class RangedReadError(RuntimeError):
    """A ranged read failed; the message names the URL and what to do."""


class RangeNotSupportedError(RangedReadError):
    """The server ignores Range: only the full file can be had from it."""


class RangeIntegrityError(RangedReadError):
    """A response or the file it belongs to is inconsistent (truncated, tampered or changed)."""


# ----------------------------------------------------------------------------- transport


@dataclass(frozen=True)
class RangeRecord:
    """One byte range read: offset in the (virtual, joined) file, length, sha256 of its bytes."""

    offset: int
    length: int
    sha256: str


@dataclass
class Part:
    """One URL of the file: its size and the validators (ETag, Last-Modified) its probe gave."""

    url: str
    size: int
    etag: str | None = None
    last_modified: str | None = None
    linked_etag: str | None = None  # Hugging Face's X-Linked-Etag: the sha256 of an LFS file


def parse_content_range(header: str | None) -> tuple[int, int, int] | None:
    """(first, last, total) of a `Content-Range: bytes first-last/total` header, else None."""
    if not header or not header.startswith("bytes "):
        return None
    span, _, total = header[6:].partition("/")
    first, _, last = span.partition("-")
    if not (first.isdigit() and last.isdigit() and total.isdigit()):
        return None
    return int(first), int(last), int(total)


def _open_url(request: urllib.request.Request, timeout: float):
    """urlopen, kept apart so that tests could replace the transport."""
    return urllib.request.urlopen(request, timeout=timeout)


def _request(url: str, first: int, last: int) -> urllib.request.Request:
    headers = {
        "User-Agent": f"semantic-bottleneck/{__version__}",
        "Range": f"bytes={first}-{last}",
        "Accept-Encoding": "identity",  # byte offsets are those of the file, not of a gzip
    }
    return urllib.request.Request(url, headers=headers)


def _open_range(url: str, first: int, last: int, timeout: float):
    """Open a ranged GET and check it is a 206 for exactly [first, last]; abort anything else.

    Returns:
        (response, total size from Content-Range).
    """
    try:
        response = _open_url(_request(url, first, last), timeout)
    except urllib.error.HTTPError as err:
        raise RangedReadError(f"{url} answered HTTP {err.code} {err.reason}") from None
    except (urllib.error.URLError, OSError) as err:
        raise RangedReadError(
            f"cannot reach {url} ({getattr(err, 'reason', err)}); fetching needs network access"
        ) from None
    if response.status != 206:
        response.close()  # before reading the body: never download the whole file by accident
        raise RangeNotSupportedError(
            f"{url} ignores HTTP Range requests (answered {response.status}, Accept-Ranges: "
            f"{response.headers.get('Accept-Ranges', 'absent')}), so the tensors of c cannot be "
            "read on their own"
        )
    got = parse_content_range(response.headers.get("Content-Range"))
    if got is None or got[:2] != (first, last):
        response.close()
        raise RangeIntegrityError(
            f"{url} answered bytes {response.headers.get('Content-Range')!r} to a request for "
            f"bytes {first}-{last}"
        )
    return response, got[2]


class RemoteFile(io.RawIOBase):
    """A seekable, read-only view of the concatenation of `urls`, read by Range requests.

    Reads are served from the spans fetched so far; a miss fetches the missing bytes (at least
    `readahead`) in one request per part it touches. A connection cut mid-range is resumed from
    the first byte not yet received, up to `retries` times.

    Attributes:
        parts: the URLs with the size and validators their probe gave.
        size: total size in bytes.
        records: every range fetched (offset, length, sha256), in order.
        bytes_received: body bytes received, counting those of attempts that were cut.
        requests: HTTP requests made.
    """

    def __init__(
        self,
        urls: Sequence[str],
        *,
        readahead: int = READAHEAD,
        retries: int = RETRIES,
        backoff_s: float = BACKOFF_S,
        timeout: float = TIMEOUT_S,
    ):
        super().__init__()
        if not urls:
            raise ValueError("a remote file needs at least one URL")
        self.readahead, self.retries, self.backoff_s, self.timeout = (
            readahead, retries, backoff_s, timeout,
        )  # fmt: skip
        self.records: list[RangeRecord] = []
        self.bytes_received = 0
        self.requests = 0
        self._spans: list[tuple[int, bytes]] = []  # (offset, bytes), disjoint
        self._pos = 0
        self.parts = [self._probe(url) for url in urls]
        self._starts = np.cumsum([0] + [p.size for p in self.parts]).tolist()
        self.size = self._starts[-1]

    # -- probing and fetching

    def _probe(self, url: str) -> Part:
        """Size and validators of one part, from a 1-byte ranged GET (which also shows whether
        the server honours Range at all)."""
        self.requests += 1
        response, total = _open_range(url, 0, 0, self.timeout)
        with response:
            headers = response.headers
            self.bytes_received += len(response.read(2))
        return Part(
            url, total, headers.get("ETag"), headers.get("Last-Modified"),
            headers.get("X-Linked-Etag"),
        )  # fmt: skip

    def _check_validators(self, part: Part, headers) -> None:
        for name, seen in (("ETag", part.etag), ("Last-Modified", part.last_modified)):
            now = headers.get(name)
            if seen is not None and now is not None and now != seen:
                raise RangeIntegrityError(
                    f"{part.url} changed during the fetch ({name} {seen} then {now}); run again"
                )

    def _fetch_part(self, index: int, first: int, last: int) -> bytes:
        """Bytes [first, last] of part `index`, resuming a cut transfer where it stopped."""
        part = self.parts[index]
        got = bytearray()
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            self.requests += 1
            try:
                response, total = _open_range(part.url, first + len(got), last, self.timeout)
            except (RangeNotSupportedError, RangeIntegrityError):
                raise
            except RangedReadError:  # unreachable, HTTP error: worth another try
                if attempt == self.retries:
                    raise
                continue
            with response:
                if total != part.size:
                    raise RangeIntegrityError(
                        f"{part.url} now has {total} bytes, it had {part.size}; run again"
                    )
                self._check_validators(part, response.headers)
                try:
                    while len(got) <= last - first and (
                        chunk := response.read(min(CHUNK, last - first + 1 - len(got)))
                    ):
                        got += chunk
                        self.bytes_received += len(chunk)
                except (http.client.HTTPException, OSError):
                    pass  # cut mid-body: the next attempt asks for the rest
            if len(got) == last - first + 1:
                return bytes(got)
        raise RangedReadError(
            f"{part.url}: the transfer of bytes {first}-{last} kept being cut off after "
            f"{self.retries + 1} attempts ({len(got)} bytes received); run the same command again"
        )

    def fetch(self, start: int, end: int) -> bytes:
        """Bytes [start, end) of the joined file, fetched (no cache), recorded with sha256."""
        if not 0 <= start <= end <= self.size:
            raise RangeIntegrityError(
                f"{self.parts[0].url}: bytes {start}-{end} lie outside the file ({self.size} bytes)"
            )
        pieces = []
        for i, part in enumerate(self.parts):
            lo, hi = max(start, self._starts[i]), min(end, self._starts[i] + part.size)
            if lo < hi:  # the share of [start, end) in part i, in the part's own offsets
                pieces.append(self._fetch_part(i, lo - self._starts[i], hi - 1 - self._starts[i]))
        data = b"".join(pieces)
        self.records.append(RangeRecord(start, len(data), hashlib.sha256(data).hexdigest()))
        return data

    def _cached(self, pos: int) -> tuple[int, bytes] | None:
        return next(((s, b) for s, b in self._spans if s <= pos < s + len(b)), None)

    def _fill(self, pos: int, n: int) -> None:
        """Fetch bytes from `pos` on (at least n, at least readahead) up to the next cached span."""
        end = min(self.size, pos + max(n, self.readahead))
        end = min([end, *(s for s, _ in self._spans if s > pos)])
        self._spans.append((pos, self.fetch(pos, end)))

    def prefetch(self, start: int, end: int) -> None:
        """Make bytes [start, end) available with one request per part (unless cached)."""
        start, end = max(0, start), min(self.size, end)
        if start < end and self._cached(start) is None:
            self._fill(start, end - start)

    # -- io.RawIOBase

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self.size}[whence]
        if base + offset < 0:
            raise OSError(f"negative seek position {base + offset}")
        self._pos = base + offset
        return self._pos

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        n = min(len(view), max(0, self.size - self._pos))
        done = 0
        while done < n:
            pos = self._pos + done
            span = self._cached(pos)
            if span is None:
                self._fill(pos, n - done)
                continue
            start, data = span
            take = min(n - done, start + len(data) - pos)
            view[done : done + take] = data[pos - start : pos - start + take]
            done += take
        self._pos += n
        return n

    def read(self, size: int = -1) -> bytes:
        size = self.size - self._pos if size is None or size < 0 else size
        buffer = bytearray(max(0, min(size, self.size - self._pos)))
        return bytes(buffer[: self.readinto(buffer)])


# ----------------------------------------------------------------------------- the tensors


@dataclass
class Extract:
    """The five tensors of c as read from a remote file, and where they came from.

    Attributes:
        arrays: {key: raw array}, C-contiguous, little-endian, of the stored dtype (bfloat16 as
            uint16 bits), in EMBEDDER_KEYS order.
        dtypes: {key: torch dtype name as stored}.
        parts: the file's URLs, sizes and validators.
        records: every range read.
        weights_entry: top-level entry the tensors came from ('ema', 'model' or None: bare).
        bytes_received, requests: transfer totals.
    """

    arrays: dict[str, np.ndarray]
    dtypes: dict[str, str]
    parts: list[Part]
    records: list[RangeRecord] = field(default_factory=list)
    weights_entry: str | None = None
    bytes_received: int = 0
    requests: int = 0

    @property
    def size(self) -> int:
        return sum(p.size for p in self.parts)


def _zip_error(url: str, err: Exception) -> CheckpointError:
    return CheckpointError(f"{url}: not a readable zip-format torch.save file ({err})")


def _check_members(zf: zipfile.ZipFile, size: int, url: str) -> None:
    """Every member's local header and data lie inside the file, before the central directory."""
    end = min(size, zf.start_dir)
    for info in zf.infolist():
        stop = info.header_offset + 30 + len(info.orig_filename.encode()) + info.compress_size
        if info.header_offset < 0 or stop > end:
            raise CheckpointError(
                f"{url}: the central directory places {info.filename!r} at bytes "
                f"{info.header_offset}-{stop}, outside the file's {end} bytes of members"
            )


def _member(zf: zipfile.ZipFile, name: str, limit: int, url: str) -> bytes:
    """A stored member's bytes, read whole so that zipfile checks its CRC-32."""
    try:
        info = zf.getinfo(name)
    except KeyError:
        raise CheckpointError(f"{url}: the archive lacks {name!r}") from None
    if info.compress_type != zipfile.ZIP_STORED:
        raise CheckpointError(f"{url}: {name!r} is compressed; torch.save stores members raw")
    if info.file_size > limit:
        raise CheckpointError(
            f"{url}: {name!r} has {info.file_size} bytes, more than the {limit} a c-only read "
            "allows; fetch the full file"
        )
    try:
        return zf.read(name)
    except zipfile.BadZipFile as err:  # bad CRC-32, local header disagreeing with the directory
        raise RangeIntegrityError(
            f"{url}: {name!r} does not match the central directory ({err}): the bytes served "
            "are truncated or tampered with; nothing was written"
        ) from None


def _refs(state: Mapping, url: str) -> dict[str, TensorRef]:
    """The five embedder entries of a state dict, each a tensor of a supported dtype."""
    missing = [k for k in EMBEDDER_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"{url}: no {missing} in the weights ({len(state)} keys)")
    bad = [k for k in EMBEDDER_KEYS if not isinstance(state[k], TensorRef)]
    if bad:
        raise CheckpointError(f"{url}: entries {bad} are not tensors")
    odd = {k: state[k].dtype for k in EMBEDDER_KEYS if state[k].dtype not in _ST_DTYPES}
    if odd:
        raise CheckpointError(f"{url}: unsupported dtypes {odd}; supported: {sorted(_ST_DTYPES)}")
    return {k: state[k] for k in EMBEDDER_KEYS}


def read_zip_c_tensors(remote: RemoteFile, weights_key: str | None, url: str) -> Extract:
    """The five tensors of a zip-format `torch.save` file, read by ranges.

    Args:
        remote: the file.
        weights_key: as `torchfile.read_index` ('ema', 'model'; None: 'ema' -> 'model' -> bare).
        url: names the file in errors.

    Returns:
        an Extract (tensors of the stored dtype).

    Shapes: as stored.
    """
    # the tail holds the end records and, for a checkpoint, the whole central directory
    remote.prefetch(remote.size - TAIL, remote.size)
    try:
        zf = zipfile.ZipFile(remote)
    except (zipfile.BadZipFile, OSError, ValueError, struct.error) as err:
        raise _zip_error(url, err) from None
    with zf:
        _check_members(zf, remote.size, url)
        prefix = archive_prefix(zf, url)
        pickled = _member(zf, prefix + "data.pkl", MAX_PICKLE, url)
        entry, weights = weights_entry(load_pickle(io.BytesIO(pickled), url), weights_key, url)
        refs = _refs(strip_ddp_prefix(weights), url)
        names = set(zf.namelist())
        big = prefix + "byteorder" in names and _member(zf, prefix + "byteorder", 16, url) == b"big"
        storages = {f"{prefix}data/{ref.storage}" for ref in refs.values()}
        total = sum(zf.getinfo(s).file_size for s in storages if s in names)
        if total > MAX_C_BYTES:  # before any storage byte is fetched
            raise CheckpointError(
                f"{url}: the storages of c hold {total} bytes, more than {MAX_C_BYTES}; fetch "
                "the full file"
            )
        data = {s: _member(zf, s, MAX_C_BYTES, url) for s in sorted(storages)}
    arrays = {}
    for key, ref in refs.items():
        raw = data[f"{prefix}data/{ref.storage}"]
        arrays[key] = read_raw(ref, io.BytesIO(raw), 0, len(raw), big, f"{url}: {key}")
    return _extract(remote, arrays, {k: r.dtype for k, r in refs.items()}, entry)


def _extract(remote: RemoteFile, arrays: dict, dtypes: dict, entry: str | None) -> Extract:
    return Extract(
        arrays, dtypes, remote.parts, list(remote.records), entry, remote.bytes_received,
        remote.requests,
    )  # fmt: skip


def _header_entry(
    header: Mapping, key: str, data_size: int, url: str
) -> tuple[str, list, int, int]:
    """(dtype, shape, begin, end) of one safetensors header entry, checked against the file."""
    item = header[key]
    if not isinstance(item, Mapping):
        raise CheckpointError(f"{url}: header entry {key!r} is not an object")
    dtype, shape, offsets = item.get("dtype"), item.get("shape"), item.get("data_offsets")
    if dtype not in _FROM_ST:
        raise CheckpointError(f"{url}: {key} has dtype {dtype!r}; supported: {sorted(_FROM_ST)}")
    ints = isinstance(shape, list) and all(type(n) is int and n >= 0 for n in shape)
    pair = isinstance(offsets, list) and len(offsets) == 2 and all(type(n) is int for n in offsets)
    if not (ints and pair and 0 <= offsets[0] <= offsets[1] <= data_size):
        raise CheckpointError(
            f"{url}: {key} has shape {shape!r}, data_offsets {offsets!r}: outside the "
            f"{data_size} data bytes or malformed"
        )
    name = _FROM_ST[dtype]
    nbytes = math.prod(shape) * np.dtype(_ST_DTYPES[name][1]).itemsize
    if offsets[1] - offsets[0] != nbytes:
        raise CheckpointError(
            f"{url}: {key} of {dtype} {shape} needs {nbytes} bytes, its offsets span "
            f"{offsets[1] - offsets[0]}"
        )
    return name, shape, offsets[0], offsets[1]


def read_safetensors_c_tensors(remote: RemoteFile, url: str) -> Extract:
    """The five tensors of a safetensors file: the header, then their byte ranges.

    safetensors carries no checksums, so a tampered byte inside a tensor cannot be detected
    here; the structure (offsets, sizes, dtypes) is checked, and the recorded range hashes let
    the full file confirm the extract later.

    Shapes: as stored.
    """
    if remote.size < 8:
        raise CheckpointError(f"{url}: {remote.size} bytes is too short for a safetensors file")
    (length,) = struct.unpack("<Q", remote.fetch(0, 8))
    if not 2 <= length <= min(MAX_HEADER, remote.size - 8):
        raise CheckpointError(f"{url}: safetensors header length {length} is impossible here")
    try:
        header = json.loads(remote.fetch(8, 8 + length))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{url}: unreadable safetensors header ({err})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{url}: the safetensors header is not an object")
    lookup = {k.removeprefix("module."): k for k in header if k != "__metadata__"}
    missing = [k for k in EMBEDDER_KEYS if k not in lookup]
    if missing:
        raise CheckpointError(f"{url}: no {missing} in the header ({len(lookup)} tensors)")
    base, data_size = 8 + length, remote.size - 8 - length
    entries = {k: _header_entry(header, lookup[k], data_size, url) for k in EMBEDDER_KEYS}
    if sum(end - begin for _, _, begin, end in entries.values()) > MAX_C_BYTES:
        raise CheckpointError(f"{url}: the tensors of c exceed {MAX_C_BYTES} bytes")
    arrays = {}
    for key, (name, shape, begin, end) in entries.items():
        raw = remote.fetch(base + begin, base + end)
        arrays[key] = np.frombuffer(raw, _ST_DTYPES[name][1]).reshape(shape).copy()
    return _extract(remote, arrays, {k: e[0] for k, e in entries.items()}, None)


def read_c_tensors(
    urls: Sequence[str], weights_key: str | None = None, safetensors: bool = False, **remote_args
) -> Extract:
    """Read only the five tensors of c out of a remote checkpoint.

    Args:
        urls: the file's URL, or its parts in `cat` order.
        weights_key: entry holding the weights in a training checkpoint (None: auto).
        safetensors: the file is safetensors (else a zip-format `torch.save` file).
        **remote_args: `RemoteFile` settings (readahead, retries, backoff_s, timeout).

    Raises:
        RangeNotSupportedError: a server ignores Range (its response was aborted unread).
        RangeIntegrityError: a truncated, tampered or changing response or file.
        RangedReadError: unreachable server, HTTP error.
        CheckpointError, UnsafeCheckpointError: the file is not a readable checkpoint.

    Shapes: as stored.
    """
    remote = RemoteFile(urls, **remote_args)
    if safetensors:
        return read_safetensors_c_tensors(remote, urls[-1])
    return read_zip_c_tensors(remote, weights_key, urls[0] if len(urls) == 1 else " + ".join(urls))


# ----------------------------------------------------------------------------- the extract


def safetensors_bytes(arrays: Mapping[str, np.ndarray], dtypes: Mapping[str, str],
                      metadata: Mapping[str, str]) -> bytes:  # fmt: skip
    """A safetensors file holding `arrays` as their stored dtypes, with string `metadata`.

    Args:
        arrays: {key: C-contiguous array}, bfloat16 as uint16 bits.
        dtypes: {key: torch dtype name}.
        metadata: string values only (safetensors' `__metadata__`).
    """
    header: dict[str, object] = {"__metadata__": dict(metadata)}
    blobs, offset = [], 0
    for key, array in arrays.items():
        raw = np.ascontiguousarray(array, _ST_DTYPES[dtypes[key]][1]).tobytes()
        header[key] = {
            "dtype": _ST_DTYPES[dtypes[key]][0],
            "shape": list(array.shape),
            "data_offsets": [offset, offset + len(raw)],
        }
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the data section starts 8-byte aligned
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


def extract_metadata(extract: Extract, name: str, pinned_sha256: str | None) -> dict[str, str]:
    """The `__metadata__` of an extract: its source (URLs, sizes, validators), the range hashes."""
    parts = [
        {"url": p.url, "size": p.size, "etag": p.etag, "last_modified": p.last_modified,
         "linked_etag": p.linked_etag}
        for p in extract.parts
    ]  # fmt: skip
    return {
        "format": FORMAT,
        "name": name,
        "urls": json.dumps([p.url for p in extract.parts]),
        "remote_size": str(extract.size),
        "parts": json.dumps(parts),
        "ranges": json.dumps([[r.offset, r.length, r.sha256] for r in extract.records]),
        "weights_entry": str(extract.weights_entry),
        "pinned_sha256": str(pinned_sha256),
        "fetched": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The `__metadata__` of a local extract, from its header only (cheap).

    Raises:
        CheckpointError: not a safetensors file, or not an extract of this format.
    """
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(8)
        length = struct.unpack("<Q", head)[0] if len(head) == 8 else -1
        if not 2 <= length <= min(MAX_HEADER, path.stat().st_size - 8):
            raise CheckpointError(f"{path}: not a safetensors file")
        try:
            header = json.loads(f.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise CheckpointError(f"{path}: unreadable safetensors header ({err})") from None
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a c-only extract ({FORMAT!r})")
    if set(header) - {"__metadata__"} != set(EMBEDDER_KEYS):
        raise CheckpointError(f"{path}: holds {sorted(header)}, expected {EMBEDDER_KEYS}")
    return meta


def check_ranges(file: BinaryIO, ranges: Sequence[Sequence], label: str) -> None:
    """Check that the bytes of a full file at each recorded range have the recorded sha256.

    Raises:
        RangeIntegrityError: a range differs (the extract came from other bytes).
    """
    for offset, length, sha in ranges:
        file.seek(offset)
        data = file.read(length)
        if len(data) != length or hashlib.sha256(data).hexdigest() != sha:
            raise RangeIntegrityError(
                f"{label}: bytes {offset}-{offset + length} of the full file do not match the "
                "c-only extract"
            )
