"""Download the registry's checkpoints and inputs: resumable, atomic, hash-verified.

Layout: `<cache>/<name>/<filename>` per registry entry, plus `<cache>/hashes.json`, where the
sha256 and size of every file are recorded on first download and checked on every later one.
The cache is `$SEMANTIC_BOTTLENECK_WEIGHTS`, else `~/.cache/semantic_bottleneck/weights`.

Direct URLs are fetched with urllib into `<file>.part`, resumed with an HTTP Range request after
an interruption, and renamed into place only once complete and verified (MG's six release parts
are fetched one by one, then concatenated). Hugging Face files go through `hf_hub_download`, which
resumes and renames on its own; their hashes are recorded and checked the same way.

`fetch_c_only` (`semantic-bottleneck fetch --c-only NAME ...`) downloads only the five tensors that
define c, by HTTP Range requests (zoo/ranged.py), into `<cache>/<name>/<filename>.c-only.safetensors`
(about 10 MB instead of 2.7 GB); its metadata names the source (URLs, size, ETag/Last-Modified)
and the sha256 of every byte range read. No registry entry pins a full-file sha256 today, and such
a hash can only be checked on the full file: where one is pinned, `fetch` verifies the full file
against it on download (as for every file), and then checks every range of an existing c-only
extract against the verified file, deleting an extract that disagrees.

Command line: `semantic-bottleneck fetch NAME [NAME ...]` (`--c-only`) and `semantic-bottleneck
inputs`.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from tqdm.auto import tqdm

from semantic_bottleneck import __version__
from semantic_bottleneck.core.torchfile import CheckpointError, UnsafeCheckpointError
from semantic_bottleneck.zoo import ranged, registry
from semantic_bottleneck.zoo.checkpoint import atomic_write, fsync_dir
from semantic_bottleneck.zoo.registry import CheckpointEntry, Entry

ENV_VAR = "SEMANTIC_BOTTLENECK_WEIGHTS"
HASHES_FILE = "hashes.json"
CHUNK = 1 << 20  # bytes per read and per hash update
TIMEOUT_S = 60
C_ONLY_SUFFIX = ".c-only.safetensors"  # beside the full file: <filename>.c-only.safetensors


class FetchError(RuntimeError):
    """A download could not be completed; the message says what to do."""


class NetworkUnavailableError(FetchError):
    """The server could not be reached."""


class IntegrityError(FetchError):
    """A downloaded file has the wrong size or sha256; it was deleted."""


def default_cache_dir() -> Path:
    """`$SEMANTIC_BOTTLENECK_WEIGHTS`, else `~/.cache/semantic_bottleneck/weights`."""
    env = os.environ.get(ENV_VAR)
    return Path(env).expanduser() if env else Path.home() / ".cache/semantic_bottleneck/weights"


def _resolve(name: str | Entry) -> Entry:
    return name if isinstance(name, Entry) else registry.get_entry(name)


def _files(entry: Entry) -> tuple[str, ...]:
    return (entry.filename, *entry.extra_files)


def fetch_command(name: str, c_only: bool = False) -> str:
    """The shell command that downloads `name` (with `c_only`: only the tensors of c)."""
    return f"semantic-bottleneck fetch {name}" + (" --c-only" if c_only else "")


# ----------------------------------------------------------------------------- hashes


def sha256_file(path: Path, progress: bool = False) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f, _bar(path.stat().st_size, f"sha256 {path.name}", progress) as bar:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
            bar.update(len(chunk))
    return digest.hexdigest()


def _read_hashes(cache: Path) -> dict:
    path = cache / HASHES_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def _write_hashes(cache: Path, hashes: dict) -> None:
    # atomic: a crash never leaves a truncated hashes.json
    with atomic_write(cache / HASHES_FILE) as f:
        f.write(json.dumps(hashes, indent=1, sort_keys=True).encode())


def recorded_sha256(path: str | os.PathLike) -> str | None:
    """The sha256 recorded for a file of the weights cache, if its size still matches the record."""
    path = Path(path).resolve()
    record = _read_hashes(path.parent.parent).get(f"{path.parent.name}/{path.name}")
    if record is None or not path.is_file() or path.stat().st_size != record["size"]:
        return None
    return record["sha256"]


def _expected_size(entry: Entry, hashes: dict, key: str, main: bool) -> int | None:
    """Pinned size of the main file, else the size recorded at first download, else None."""
    if main and entry.size is not None:
        return entry.size
    return hashes.get(key, {}).get("size")


def _verify_or_record(
    cache: Path, key: str, path: Path, entry: Entry, main: bool, source: str, progress: bool
) -> None:
    """Check `path` against the pinned or recorded size and sha256; record them if new.

    On a mismatch the file is deleted (so nothing half-right stays in the cache) and an
    IntegrityError names the file and both values.
    """
    size = path.stat().st_size
    hashes = _read_hashes(cache)
    record = hashes.get(key)
    want_size = _expected_size(entry, hashes, key, main)
    if want_size is not None and size != want_size:
        path.unlink()
        raise IntegrityError(
            f"{key}: size {size} bytes, expected {want_size}; the file was deleted, "
            f"run `{fetch_command(entry.name)}` again"
        )
    actual = sha256_file(path, progress)
    pinned = entry.sha256 if main else None
    expected, origin = (pinned, "pinned") if pinned else ((record or {}).get("sha256"), "recorded")
    if expected is not None and actual != expected:
        path.unlink()
        raise IntegrityError(
            f"{key}: sha256 mismatch: expected {expected} ({origin}), got {actual}; "
            f"the file was deleted, run `{fetch_command(entry.name)}` again"
        )
    if record is None:
        hashes = _read_hashes(cache)  # re-read: hashing took a while
        hashes[key] = {
            "sha256": actual,
            "size": size,
            "source": source,
            "recorded": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        _write_hashes(cache, hashes)


# ----------------------------------------------------------------------------- transport


def _bar(total: int | None, desc: str, progress: bool, initial: int = 0) -> tqdm:
    return tqdm(
        total=total, initial=initial, desc=desc, unit="B", unit_scale=True, unit_divisor=1024,
        disable=not progress,
    )  # fmt: skip


def _offline(what: str, url: str, reason: object) -> NetworkUnavailableError:
    return NetworkUnavailableError(
        f"cannot download {what} from {url}: the server is unreachable ({reason}). "
        "Fetching needs network access; on an offline machine, fetch on a connected one and "
        "copy the cache folder (see `semantic-bottleneck inputs`)."
    )


def _open_url(request: urllib.request.Request, timeout: float):
    """urlopen, kept apart so tests can replace the transport."""
    return urllib.request.urlopen(request, timeout=timeout)


_DRIVE_PAGE = re.compile(r"^https://drive\.google\.com/file/d/([\w-]+)(/view)?(\?.*)?$")


def direct_url(url: str) -> str:
    """The URL that serves the file itself: a Google Drive file page (as the U-ViT, X-MDPT and
    MDSGen READMEs link their checkpoints) becomes Drive's direct download, with the confirmation
    that large files need; any other URL is returned unchanged."""
    match = _DRIVE_PAGE.match(url)
    if match is None:
        return url
    return f"https://drive.usercontent.google.com/download?id={match[1]}&export=download&confirm=t"


def download_url(url: str, part: Path, progress: bool = True, desc: str | None = None) -> None:
    """Download `url` into `part`, resuming from the bytes already in `part`.

    Args:
        url: http(s) URL.
        part: destination; if it exists, a Range request asks for the rest.
        progress: show a tqdm bar.
        desc: bar label (default: the file name).

    Raises:
        NetworkUnavailableError: the server cannot be reached.
        FetchError: HTTP error, or the transfer ended early (`part` is kept for resuming).
    """
    desc = desc or part.name.removesuffix(".part")
    part.parent.mkdir(parents=True, exist_ok=True)
    start = part.stat().st_size if part.exists() else 0
    url = direct_url(url)
    request = urllib.request.Request(
        url, headers={"User-Agent": f"semantic-bottleneck/{__version__}"}
    )
    if start:
        request.add_header("Range", f"bytes={start}-")
    try:
        response = _open_url(request, TIMEOUT_S)
    except urllib.error.HTTPError as err:
        if err.code == 416 and start:  # nothing left to send: `part` may already be complete
            total = err.headers.get("Content-Range", "").rpartition("/")[2]
            if total.isdigit() and int(total) == start:
                return
            part.unlink()
            raise FetchError(
                f"{desc}: partial file did not match {url}; deleted, run again"
            ) from None
        raise FetchError(f"{desc}: {url} answered HTTP {err.code} {err.reason}") from None
    except (urllib.error.URLError, OSError) as err:
        raise _offline(desc, url, getattr(err, "reason", err)) from None
    with response:
        resumed = bool(start) and response.status == 206
        if resumed and not response.headers.get("Content-Range", "").startswith(f"bytes {start}-"):
            part.unlink()
            raise FetchError(f"{desc}: {url} resumed at the wrong offset; deleted, run again")
        if not resumed:
            start = 0  # server ignored the Range header: start over
        if response.headers.get("Content-Type", "").startswith("text/html"):
            # a checkpoint is never a web page: Drive answers with one when its quota is exceeded
            raise FetchError(f"{desc}: {url} returned a web page instead of the file")
        length = response.headers.get("Content-Length")
        total = start + int(length) if length and length.isdigit() else None
        try:
            with (
                open(part, "ab" if resumed else "wb") as f,
                _bar(total, desc, progress, start) as bar,
            ):
                while chunk := response.read(CHUNK):
                    f.write(chunk)
                    bar.update(len(chunk))
                f.flush()
                os.fsync(f.fileno())
        except (http.client.IncompleteRead, OSError) as err:
            raise FetchError(
                f"{desc}: transfer from {url} interrupted ({err}); run the same command again "
                "to resume"
            ) from None
    got = part.stat().st_size
    if total is not None and got != total:
        raise FetchError(
            f"{desc}: transfer from {url} ended after {got} of {total} bytes; run the same "
            "command again to resume"
        )


def _concatenate(pieces: list[Path], out: Path) -> None:
    with open(out, "wb") as f:
        for piece in pieces:
            with open(piece, "rb") as src:
                while chunk := src.read(CHUNK):
                    f.write(chunk)
        f.flush()
        os.fsync(f.fileno())


def _fetch_direct(entry: Entry, folder: Path, progress: bool) -> Path:
    """Download the entry's URL(s) into `<filename>.part` (joined in order if several)."""
    part = folder / f"{entry.filename}.part"
    if len(entry.urls) == 1:
        download_url(entry.urls[0], part, progress, entry.filename)
        return part
    pieces = []
    for url in entry.urls:
        piece = folder / Path(urllib.parse.urlparse(url).path).name
        if not piece.exists():  # a finished piece is only ever renamed into place complete
            download_url(url, piece.with_name(piece.name + ".part"), progress, piece.name)
            os.replace(piece.with_name(piece.name + ".part"), piece)
        pieces.append(piece)
    _concatenate(pieces, part)
    for piece in pieces:
        piece.unlink()
    return part


def _hf_download(repo: str, filename: str, revision: str, folder: Path) -> None:
    """hf_hub_download into a plain folder, kept apart so tests can replace the transport."""
    from huggingface_hub import hf_hub_download

    hf_hub_download(repo_id=repo, filename=filename, revision=revision, local_dir=folder)


def _network_errors() -> tuple[type[BaseException], ...]:
    """Exceptions meaning 'no network' from huggingface_hub and whichever HTTP client it uses."""
    from huggingface_hub.errors import LocalEntryNotFoundError

    errors: list[type[BaseException]] = [LocalEntryNotFoundError, ConnectionError, TimeoutError]
    for module, attr in (("httpx2", "TransportError"), ("httpx", "TransportError")):
        try:
            errors.append(getattr(__import__(module), attr))
        except (ImportError, AttributeError):
            pass
    return tuple(errors)


@contextmanager
def _hf_progress(progress: bool) -> Iterator[None]:
    from huggingface_hub import utils

    turn_off = not progress and not utils.are_progress_bars_disabled()
    if turn_off:
        utils.disable_progress_bars()
    try:
        yield
    finally:
        if turn_off:
            utils.enable_progress_bars()


def _fetch_hf(entry: Entry, folder: Path, filename: str, progress: bool) -> None:
    from huggingface_hub.errors import HfHubHTTPError

    url = f"https://huggingface.co/{entry.hf_repo}/resolve/{entry.hf_revision}/{filename}"
    folder.mkdir(parents=True, exist_ok=True)
    try:
        with _hf_progress(progress):
            _hf_download(entry.hf_repo, filename, entry.hf_revision, folder)
    except _network_errors() as err:
        raise _offline(f"{entry.name}/{filename}", url, err) from None
    except HfHubHTTPError as err:
        raise FetchError(f"{entry.name}/{filename}: Hugging Face refused {url} ({err})") from None


# ----------------------------------------------------------------------------- public API


def locate(name: str | Entry, cache_dir: str | os.PathLike | None = None) -> Path | None:
    """Path of the entry's main file if it and its companions are in the cache with the right size.

    The size is the pinned one, else the one recorded at download; no hashing (cheap).
    """
    entry = _resolve(name)
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    hashes = _read_hashes(cache)
    for i, filename in enumerate(_files(entry)):
        path = cache / entry.name / filename
        expected = _expected_size(entry, hashes, f"{entry.name}/{filename}", i == 0)
        if not path.is_file() or (expected is not None and path.stat().st_size != expected):
            return None
    return cache / entry.name / entry.filename


def fetch(
    name: str | Entry,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
    verify: bool = False,
) -> Path:
    """Make sure the entry's files are in the cache, downloading what is missing.

    Args:
        name: registry name (see `registry.names()`) or an entry.
        cache_dir: weights cache (default `default_cache_dir()`).
        progress: show tqdm bars.
        verify: re-hash files already present against the recorded sha256.

    Returns:
        path of the main file (companion files lie in the same folder).

    Raises:
        ValueError: unknown name.
        NetworkUnavailableError: no network; the message names the file and URL.
        IntegrityError: size or sha256 differs from the pinned or recorded value.
        FetchError: any other failed download.
    """
    entry = _resolve(name)
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    folder = cache / entry.name
    for i, filename in enumerate(_files(entry)):
        key, target, main = f"{entry.name}/{filename}", folder / filename, i == 0
        if target.is_file():
            # present: hash only if asked, never recorded, or of the wrong size (which fails)
            expected = _expected_size(entry, _read_hashes(cache), key, main)
            if verify or expected is None or target.stat().st_size != expected:
                _verify_or_record(cache, key, target, entry, main, "local", progress)
            continue
        if entry.hf_repo is not None:
            _fetch_hf(entry, folder, filename, progress)
            _verify_or_record(cache, key, target, entry, main, f"hf:{entry.hf_repo}", progress)
            continue
        part = _fetch_direct(entry, folder, progress)
        _verify_or_record(cache, key, part, entry, main, " + ".join(entry.urls), progress)
        os.replace(part, target)
        fsync_dir(folder)
    _check_c_only(entry, cache)
    return folder / entry.filename


# ----------------------------------------------------------------------------- c only


def c_only_path(name: str | Entry, cache_dir: str | os.PathLike | None = None) -> Path:
    """Where the c-only extract of `name` lies (or would lie) in the cache."""
    entry = _resolve(name)
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    return cache / entry.name / f"{entry.filename}{C_ONLY_SUFFIX}"


def ranged_urls(entry: Entry) -> tuple[str, ...]:
    """The URLs the c-only fetch reads: the direct parts, or the Hugging Face resolve URL."""
    if entry.hf_repo is not None:
        return (
            f"https://huggingface.co/{entry.hf_repo}/resolve/{entry.hf_revision}/{entry.filename}",
        )
    return entry.urls


def locate_c_only(name: str | Entry, cache_dir: str | os.PathLike | None = None) -> Path | None:
    """Path of the entry's c-only extract if it is in the cache and is one (header read only)."""
    path = c_only_path(name, cache_dir)
    try:
        ranged.read_metadata(path)
    except (OSError, CheckpointError):
        return None
    return path


def _check_c_only(entry: Entry, cache: Path) -> None:
    """Check an existing c-only extract's ranges against the full file now in the cache;
    delete it (with a warning) if they differ: the full file, verified, is what counts."""
    extract = locate_c_only(entry, cache)
    if extract is None or not isinstance(entry, CheckpointEntry):
        return
    ranges = json.loads(ranged.read_metadata(extract)["ranges"])
    try:
        with open(cache / entry.name / entry.filename, "rb") as f:
            ranged.check_ranges(f, ranges, f"{entry.name}/{extract.name}")
    except ranged.RangeIntegrityError as err:
        extract.unlink()
        warnings.warn(f"{err}; the extract was deleted", stacklevel=2)


class COnly(NamedTuple):
    """What `fetch_c_only` did: the file c is read from, and the ranged read (None: no read)."""

    path: Path
    extract: ranged.Extract | None


def _pinned_checks(entry: Entry, extract: ranged.Extract) -> None:
    """Compare the remote file with the registry's pinned size and sha256, where it can."""
    if entry.size is not None and extract.size != entry.size:
        raise IntegrityError(
            f"{entry.name}: the remote file has {extract.size} bytes, the registry pins "
            f"{entry.size}; nothing was written"
        )
    linked = extract.parts[0].linked_etag  # Hugging Face reports the sha256 of an LFS file
    if entry.sha256 and len(extract.parts) == 1 and linked and linked.strip('"') != entry.sha256:
        raise IntegrityError(
            f"{entry.name}: the server reports sha256 {linked.strip(chr(34))}, the registry pins "
            f"{entry.sha256}; nothing was written"
        )


def _read_remote(entry: CheckpointEntry, **remote_args) -> ranged.Extract:
    """The ranged read, its errors turned into FetchErrors that say what to run."""
    urls = ranged_urls(entry)
    full = fetch_command(entry.name)
    try:
        return ranged.read_c_tensors(
            urls, entry.weights_key, entry.filename.endswith(".safetensors"), **remote_args
        )
    except ranged.RangeNotSupportedError as err:
        raise FetchError(
            f"{entry.name}: {err}. The full file is needed: run `{full}`; nothing was written"
        ) from None
    except ranged.RangeIntegrityError as err:
        raise IntegrityError(f"{entry.name}: {err}; nothing was written") from None
    except ranged.RangedReadError as err:
        raise FetchError(f"{entry.name}: {err}; nothing was written") from None
    except UnsafeCheckpointError as err:  # the full file would be refused the same way
        raise FetchError(f"{entry.name}: {err} Nothing was written") from None
    except CheckpointError as err:
        raise FetchError(
            f"{entry.name}: {err}. Nothing was written; the full file (`{full}`) may still load"
        ) from None


def fetch_c_only(
    name: str | Entry, cache_dir: str | os.PathLike | None = None, refresh: bool = False,
    **remote_args,
) -> COnly:  # fmt: skip
    """Download only the five tensors of c of a checkpoint, by HTTP Range requests.

    The tensors are written atomically, exactly as stored (dtype, bits), into a small
    safetensors file whose metadata names the source: URLs, remote size, ETag/Last-Modified
    and the sha256 of every range read (`ranged.extract_metadata`).

    Args:
        name: registry name of a checkpoint, or its entry.
        cache_dir: weights cache (default `default_cache_dir()`).
        refresh: read again even if an extract is already in the cache.
        **remote_args: `ranged.RemoteFile` settings (readahead, retries, backoff_s, timeout).

    Returns:
        COnly: the full file if present (nothing read), else the extract and its ranged read.

    Raises:
        ValueError: unknown name, or an input that is not a model.
        FetchError: a server that ignores Range (the message gives the full-file command), an
            unreachable server, an unreadable file; IntegrityError: a truncated, tampered or
            changing response, or one that contradicts the registry. Nothing is written then.
    """
    entry = name if isinstance(name, Entry) else registry.get_checkpoint(name)
    full = locate(entry, cache_dir)
    if full is not None:  # c comes from the full file: nothing to download
        return COnly(full, None)
    path = c_only_path(entry, cache_dir)
    if not refresh and locate_c_only(entry, cache_dir) is not None:
        return COnly(path, None)
    extract = _read_remote(entry, **remote_args)
    _pinned_checks(entry, extract)
    metadata = ranged.extract_metadata(extract, entry.name, entry.sha256)
    data = ranged.safetensors_bytes(extract.arrays, extract.dtypes, metadata)
    with atomic_write(path) as f:  # a crash leaves the old file or none, never half of one
        f.write(data)
    return COnly(path, extract)


# ----------------------------------------------------------------------------- status


@dataclass(frozen=True)
class InputStatus:
    """Whether one registry entry is in the cache (`path` is None when missing)."""

    name: str
    kind: str
    present: bool
    path: Path | None
    command: str


def status(cache_dir: str | os.PathLike | None = None) -> list[InputStatus]:
    """Present/missing state of every registry entry, in registry order."""
    rows = []
    for name, entry in registry.REGISTRY.items():
        path = locate(entry, cache_dir)
        system = isinstance(entry, registry.SystemEntry)
        kind = getattr(entry, "kind", "system" if system else "checkpoint")
        rows.append(InputStatus(name, kind, path is not None, path, fetch_command(name)))
    return rows


def format_status(rows: list[InputStatus]) -> str:
    """A plain-text table: name, kind, present/missing, path or the fetch command."""
    table = [("name", "kind", "status", "path / command")]
    for row in rows:
        where = str(row.path) if row.present else row.command
        table.append((row.name, row.kind, "present" if row.present else "missing", where))
    widths = [max(len(line[i]) for line in table) for i in range(3)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(line[:3], widths, strict=True)) + "  " + line[3]
        for line in table
    )


# ----------------------------------------------------------------------------- command line


def _c_only_line(entry: Entry, done: COnly) -> str:
    """One line of `fetch --c-only` output: where c is read from and what the read cost."""
    if done.extract is None:
        kind = "full file" if not done.path.name.endswith(C_ONLY_SUFFIX) else "already fetched"
        return f"{entry.name}: {done.path} ({kind})"
    x = done.extract
    return (
        f"{entry.name}: {done.path} ({x.bytes_received:,} bytes of {x.size:,} in "
        f"{x.requests} requests)"
    )


def _cmd_fetch(args: argparse.Namespace) -> int:
    get = registry.get_checkpoint if args.c_only else registry.get_entry
    try:
        entries = [get(name) for name in args.names]  # all names valid first
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    failed = 0
    for entry in entries:
        try:
            if args.c_only:
                print(_c_only_line(entry, fetch_c_only(entry, args.cache_dir)))
                continue
            path = fetch(entry, args.cache_dir, progress=not args.no_progress, verify=args.verify)
        except FetchError as err:
            print(f"error: {err}", file=sys.stderr)
            failed += 1
            continue
        print(f"{entry.name}: {path}")
    return 1 if failed else 0


def _cmd_inputs(args: argparse.Namespace) -> int:
    print(format_status(status(args.cache_dir)))
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the `fetch` and `inputs` subcommands."""
    cache_help = f"weights cache (default ${ENV_VAR} or ~/.cache/semantic_bottleneck/weights)"
    p = subparsers.add_parser("fetch", help="download checkpoints and evaluation inputs")
    p.add_argument(
        "names", nargs="+", metavar="MODEL", help=f"one of: {', '.join(registry.names())}"
    )
    p.add_argument("--cache-dir", type=Path, default=None, help=cache_help)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--verify", action="store_true", help="re-hash files already present")
    p.add_argument(
        "--c-only",
        action="store_true",
        help="only the five tensors of c (~10 MB per model, by HTTP Range requests), for the "
        "pages that need c alone",
    )
    p.set_defaults(func=_cmd_fetch)
    p = subparsers.add_parser("inputs", help="list checkpoints and inputs, present or missing")
    p.add_argument("--cache-dir", type=Path, default=None, help=cache_help)
    p.set_defaults(func=_cmd_inputs)
