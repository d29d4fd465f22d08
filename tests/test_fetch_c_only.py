"""The c-only fetch (`fetch --c-only`, zoo/ranged.py) against real HTTP servers on 127.0.0.1.

Each test starts a server in a thread and stops it: one honours Range (and can cut a response
short or flip a byte of what it serves), one ignores Range. The checkpoints are synthetic, built
with the packaged manifests' key sets at small widths (one with the five tensors of c at their
real XL shapes): a bare state dict, an {'ema', 'model', 'opt', 'args'} training checkpoint, a
file split in six parts, a safetensors file. Nothing touches the real network: the registry
entries are replaced by ones pointing at the local server, and any other URL is refused.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import json
import struct
import zipfile
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
import torch
from fakes import manifest_state
from loopback import LoopbackServer
from safetensors.torch import save_file

from semantic_bottleneck import cli
from semantic_bottleneck.core import analysis, conditioning
from semantic_bottleneck.core.torchfile import EMBEDDER_KEYS, archive_prefix, load_pickle
from semantic_bottleneck.zoo import fetch, ranged, registry

FAST = {"backoff_s": 0.0}  # retries without waiting
CHUNK = 1 << 16  # bytes per server write


class RangeServer(LoopbackServer):
    """Serves `files` over HTTP on 127.0.0.1, honouring Range unless `ignore_range`.

    `cut` = (min_length, after): the first response of at least min_length body bytes is cut
    after `after` bytes (`cut_always` cuts every one); `flip` = {path: offset}: that byte of the
    file is inverted wherever a response carries it. `sent` counts body bytes written, `ranges`
    logs (path, Range header) per request.
    """

    def __init__(self, ignore_range: bool = False):
        self.files: dict[str, bytes] = {}
        self.ignore_range = ignore_range
        self.cut: tuple[int, int] | None = None
        self.cut_always = False
        self.flip: dict[str, int] = {}
        self.sent = 0
        self.ranges: list[tuple[str, str | None]] = []
        super().__init__()

    def _body(self, path: str, first: int, last: int) -> bytes:
        body = bytearray(self.files[path][first : last + 1])
        flip = self.flip.get(path)
        if flip is not None and first <= flip <= last:
            body[flip - first] ^= 0xFF
        return bytes(body)

    def _span(self, header: str | None, size: int) -> tuple[int, int] | None:
        if not header or self.ignore_range:
            return None
        first, _, last = header.removeprefix("bytes=").partition("-")
        return int(first), min(int(last), size - 1) if last else size - 1

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        header = h.headers.get("Range")
        with self.lock:
            self.ranges.append((h.path, header))
        if h.path not in self.files:
            h.send_error(404)
            return
        data = self.files[h.path]
        span = self._span(header, len(data))
        h.send_response(200 if span is None else 206)
        first, last = span or (0, len(data) - 1)
        if span is not None:
            h.send_header("Accept-Ranges", "bytes")
            h.send_header("Content-Range", f"bytes {first}-{last}/{len(data)}")
        h.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()[:16]}"')
        h.send_header("Content-Length", str(last - first + 1))
        h.end_headers()
        body = self._body(h.path, first, last)
        with self.lock:
            cut = self.cut if self.cut and len(body) >= self.cut[0] else None
            if cut and not self.cut_always:
                self.cut = None
        if cut:
            body = body[: cut[1]]
            h.close_connection = True
        try:
            for i in range(0, len(body), CHUNK):
                h.wfile.write(body[i : i + CHUNK])
                with self.lock:
                    self.sent += len(body[i : i + CHUNK])
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client closed the connection: expected for an aborted 200


@pytest.fixture
def server():
    srv = RangeServer()
    yield srv
    srv.stop()


@pytest.fixture
def no_range_server():
    srv = RangeServer(ignore_range=True)
    yield srv
    srv.stop()


@pytest.fixture(autouse=True)
def local_only(monkeypatch):
    """Any URL but the test servers' is refused: the real network is never touched."""
    real = ranged._open_url

    def guarded(request, timeout):
        assert request.full_url.startswith("http://127.0.0.1:"), request.full_url
        return real(request, timeout)

    monkeypatch.setattr(ranged, "_open_url", guarded)
    monkeypatch.setattr(fetch, "_open_url", guarded)


# ----------------------------------------------------------------------------- checkpoints


@pytest.fixture(scope="module")
def dit_state() -> dict[str, torch.Tensor]:
    """DiT-XL/2's 292 keys at width 128, 10 classes: ~33 MB, of which c is ~0.3%."""
    return manifest_state("dit_xl2.json", width=128, classes=10, seed=1)


def _save(state: object, path: Path) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path.read_bytes()


def _serve(srv: RangeServer, monkeypatch, name: str, data: bytes | list[bytes], **changes):
    """Serve `data` (or its parts) and point the registry entry `name` at it (no Hugging Face)."""
    parts = data if isinstance(data, list) else [data]
    urls = []
    for i, part in enumerate(parts):
        srv.files[f"/{name}/{i}"] = part
        urls.append(f"{srv.url}/{name}/{i}")
    entry = dataclasses.replace(
        registry.get_checkpoint(name), urls=tuple(urls), hf_repo=None, **changes
    )
    monkeypatch.setitem(registry.REGISTRY, name, entry)
    return entry


def _c(emb: dict, name: str) -> torch.Tensor:
    return conditioning.class_conditions(emb, registry.get_checkpoint(name).time.initial_t)


def _assert_bit_identical(c_only: Path, full: Path, weights_key, tmp_path) -> None:
    """The extract's tensors and c equal those of the full local file, bit for bit."""
    ranged_emb = conditioning.read_c_only(c_only)
    full_emb = conditioning.read_embedders(
        full, cache_dir=tmp_path / "emb", weights_key=weights_key
    )
    for key in EMBEDDER_KEYS:
        assert ranged_emb[key].dtype == full_emb[key].dtype, key
        assert ranged_emb[key].shape == full_emb[key].shape, key
        assert torch.equal(ranged_emb[key].view(torch.uint8), full_emb[key].view(torch.uint8))
    c_full = _c(full_emb, "dit-xl-2")
    assert torch.equal(_c(ranged_emb, "dit-xl-2"), c_full) and c_full.abs().sum() > 0


def _member_offset(data: bytes, name_end: str) -> int:
    """File offset of the bytes of the zip member whose name ends with `name_end`."""
    with zipfile.ZipFile(_bytes_file(data)) as zf:
        info = next(i for i in zf.infolist() if i.filename.endswith(name_end))
    name_len, extra_len = struct.unpack(
        "<HH", data[info.header_offset + 26 : info.header_offset + 30]
    )
    return info.header_offset + 30 + name_len + extra_len


def _bytes_file(data: bytes) -> io.BytesIO:
    return io.BytesIO(data)


def _storage_of(data: bytes, key: str) -> str:
    """The zip member name ('data/N') holding tensor `key` (bare checkpoint)."""
    with zipfile.ZipFile(_bytes_file(data)) as zf:
        prefix = archive_prefix(zf, "test")
        state = load_pickle(zf.open(prefix + "data.pkl"), "test")
    return f"data/{state[key].storage}"


# ----------------------------------------------------------------------------- the tests


def test_bare_state_dict_is_bit_identical_and_reads_a_few_percent(
    server, monkeypatch, tmp_path, dit_state
):
    data = _save(dit_state, tmp_path / "full" / "DiT-XL-2-256x256.pt")
    _serve(server, monkeypatch, "dit-xl-2", data)
    cache = tmp_path / "cache"
    done = fetch.fetch_c_only("dit-xl-2", cache)
    assert done.path == cache / "dit-xl-2" / "DiT-XL-2-256x256.pt.c-only.safetensors"
    assert sorted(p.name for p in (cache / "dit-xl-2").iterdir()) == [done.path.name]
    _assert_bit_identical(done.path, tmp_path / "full" / "DiT-XL-2-256x256.pt", None, tmp_path)
    # a few percent of the file at most, on both ends of the wire
    assert done.extract.size == len(data)
    assert done.extract.bytes_received <= 0.03 * len(data)
    assert server.sent <= 0.03 * len(data), (server.sent, len(data))
    # the metadata names the source and hashes every range read
    meta = ranged.read_metadata(done.path)
    assert meta["remote_size"] == str(len(data)) and server.url in meta["urls"]
    parts = json.loads(meta["parts"])
    assert parts[0]["etag"] == f'"{hashlib.sha256(data).hexdigest()[:16]}"'
    for offset, length, sha in json.loads(meta["ranges"]):
        assert hashlib.sha256(data[offset : offset + length]).hexdigest() == sha


def test_real_xl_shapes_of_c_are_bit_identical(server, monkeypatch, tmp_path):
    state = manifest_state("dit_xl2.json", width=32, classes=1000, seed=2, real_c=True)
    assert state[EMBEDDER_KEYS[4]].shape == (1001, 1152)
    full = tmp_path / "full" / "DiT-XL-2-256x256.pt"
    _serve(server, monkeypatch, "dit-xl-2", _save(state, full))
    done = fetch.fetch_c_only("dit-xl-2", tmp_path / "cache")
    _assert_bit_identical(done.path, full, None, tmp_path)
    assert torch.equal(
        conditioning.read_c_only(done.path)[EMBEDDER_KEYS[2]], state[EMBEDDER_KEYS[2]]
    )


def test_training_checkpoint_reads_the_ema_weights(server, monkeypatch, tmp_path, dit_state):
    model = {k: v + 1 for k, v in dit_state.items()}
    ckpt = {
        "model": {f"module.{k}": v for k, v in model.items()},  # DDP prefix, stripped
        "ema": dit_state,
        "opt": {"state": {0: {"exp_avg": torch.zeros(3)}}, "param_groups": [{"lr": 1e-4}]},
        "args": argparse.Namespace(model="SiT-XL/2"),
        "steps": 4000,
    }
    full = tmp_path / "full" / "SiT-XL-2-MG.pt"
    _serve(server, monkeypatch, "mg-sit-xl-2", _save(ckpt, full))
    done = fetch.fetch_c_only("mg-sit-xl-2", tmp_path / "cache")
    emb = conditioning.read_c_only(done.path)
    assert all(torch.equal(emb[k], dit_state[k]) for k in EMBEDDER_KEYS)  # ema, not model
    assert ranged.read_metadata(done.path)["weights_entry"] == "ema"
    _assert_bit_identical(done.path, full, None, tmp_path)


def test_six_part_file_spans_the_parts(server, monkeypatch, tmp_path, dit_state):
    full = tmp_path / "full" / "SiT-XL-2-MG.pt"
    data = _save(dit_state, full)
    # cut points inside the label table and inside mlp.0.weight, so reads cross part boundaries
    table = _member_offset(data, _storage_of(data, EMBEDDER_KEYS[4]))
    w0 = _member_offset(data, _storage_of(data, EMBEDDER_KEYS[0]))
    cuts = sorted({len(data) // 5, table + 100, w0 + 7, w0 + 5000, len(data) - 40})
    bounds = [0, *cuts, len(data)]
    parts = [data[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    assert len(parts) == 6 and b"".join(parts) == data
    _serve(server, monkeypatch, "mg-sit-xl-2", parts)
    done = fetch.fetch_c_only("mg-sit-xl-2", tmp_path / "cache")
    _assert_bit_identical(done.path, full, None, tmp_path)
    assert len(done.extract.parts) == 6 and done.extract.size == len(data)
    assert {path for path, _ in server.ranges} == {f"/mg-sit-xl-2/{i}" for i in range(6)}


def test_safetensors_bfloat16_file(server, monkeypatch, tmp_path, dit_state):
    state = {k: v.bfloat16() for k, v in dit_state.items()}
    full = tmp_path / "full" / "model.safetensors"
    full.parent.mkdir(parents=True)
    save_file(state, str(full))
    data = full.read_bytes()
    _serve(server, monkeypatch, "dit-xl-2", data, filename="model.safetensors")
    done = fetch.fetch_c_only("dit-xl-2", tmp_path / "cache")
    assert conditioning.read_c_only(done.path)[EMBEDDER_KEYS[0]].dtype == torch.bfloat16
    _assert_bit_identical(done.path, full, None, tmp_path)
    assert done.extract.bytes_received <= 0.03 * len(data)


def test_cut_connection_resumes_where_it_stopped(server, monkeypatch, tmp_path, dit_state):
    full = tmp_path / "full" / "DiT-XL-2-256x256.pt"
    data = _save(dit_state, full)
    _serve(server, monkeypatch, "dit-xl-2", data)
    server.cut = (100_000, 12_345)  # mlp.0.weight's storage (131 KB) is cut after 12,345 bytes
    done = fetch.fetch_c_only("dit-xl-2", tmp_path / "cache", **FAST)
    _assert_bit_identical(done.path, full, None, tmp_path)
    spans = [tuple(map(int, r.removeprefix("bytes=").split("-"))) for _, r in server.ranges]
    cut = next(i for i, (a, b) in enumerate(spans) if b - a + 1 >= 100_000)
    first, last = spans[cut]
    assert spans[cut + 1] == (first + 12_345, last)  # only the missing bytes were asked again


def test_connection_cut_every_time_gives_up_and_writes_nothing(
    server, monkeypatch, tmp_path, dit_state
):
    _serve(server, monkeypatch, "dit-xl-2", _save(dit_state, tmp_path / "full" / "x.pt"))
    server.cut, server.cut_always = (100_000, 1000), True
    with pytest.raises(fetch.FetchError, match="kept being cut off.*run the same command"):
        fetch.fetch_c_only("dit-xl-2", tmp_path / "cache", retries=2, **FAST)
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize("member", ["table", "data.pkl"])
def test_a_flipped_byte_is_detected_and_nothing_written(
    server, monkeypatch, tmp_path, dit_state, member
):
    data = _save(dit_state, tmp_path / "full" / "x.pt")
    entry = _serve(server, monkeypatch, "dit-xl-2", data)
    name = _storage_of(data, EMBEDDER_KEYS[4]) if member == "table" else "data.pkl"
    server.flip["/dit-xl-2/0"] = _member_offset(data, name) + 17
    with pytest.raises(fetch.IntegrityError) as err:
        fetch.fetch_c_only("dit-xl-2", tmp_path / "cache")
    message = str(err.value)
    assert entry.urls[0] in message and "CRC" in message and "nothing was written" in message
    assert not (tmp_path / "cache").exists()


def test_server_ignoring_range_is_a_clear_error_and_nothing_is_downloaded(
    no_range_server, monkeypatch, tmp_path, dit_state, capsys
):
    data = _save(dit_state, tmp_path / "full" / "x.pt")
    entry = _serve(no_range_server, monkeypatch, "dit-xl-2", data)
    bodies = []
    real = ranged._open_url

    def spy(request, timeout):  # records how much of each response body the client read
        response = real(request, timeout)
        read = response.read
        bodies.append([response, 0])

        def counted(*args):
            out = read(*args)
            bodies[-1][1] += len(out)
            return out

        response.read = counted
        return response

    monkeypatch.setattr(ranged, "_open_url", spy)
    with pytest.raises(fetch.FetchError) as err:
        fetch.fetch_c_only("dit-xl-2", tmp_path / "cache")
    message = str(err.value)
    assert "ignores HTTP Range" in message and entry.urls[0] in message
    assert "full file is needed: run `semantic-bottleneck fetch dit-xl-2`" in message
    assert [(n, r.closed) for r, n in bodies] == [(0, True)]  # aborted unread
    assert no_range_server.sent < len(data)  # the server could not send it all
    assert not (tmp_path / "cache").exists()
    # the command line says the same, without a traceback
    assert cli.main(["fetch", "--c-only", "dit-xl-2", "--cache-dir", str(tmp_path / "c")]) == 1
    assert "full file is needed" in capsys.readouterr().err


def test_central_directory_pointing_outside_the_file(server, monkeypatch, tmp_path, dit_state):
    data = bytearray(_save(dit_state, tmp_path / "full" / "x.pt"))
    with zipfile.ZipFile(_bytes_file(bytes(data))) as zf:
        start = zf.start_dir
    # the first central directory entry's local-header offset (byte 42 of the entry)
    data[start + 42 : start + 46] = struct.pack("<I", len(data) + 1000)
    entry = _serve(server, monkeypatch, "dit-xl-2", bytes(data))
    with pytest.raises(fetch.FetchError, match="outside the file") as err:
        fetch.fetch_c_only("dit-xl-2", tmp_path / "cache")
    assert entry.urls[0] in str(err.value) and not (tmp_path / "cache").exists()


class Payload:
    """A class outside the unpickler's allowlist: its pickle must be refused, never run."""


def test_pickle_outside_the_allowlist_is_refused(server, monkeypatch, tmp_path, dit_state):
    bad = {**dit_state, "extra": Payload()}
    _serve(server, monkeypatch, "dit-xl-2", _save(bad, tmp_path / "full" / "x.pt"))
    with pytest.raises(fetch.FetchError, match="refusing to load.*Payload"):
        fetch.fetch_c_only("dit-xl-2", tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_pinned_size_is_checked(server, monkeypatch, tmp_path, dit_state):
    data = _save(dit_state, tmp_path / "full" / "x.pt")
    _serve(server, monkeypatch, "dit-xl-2", data, size=len(data) + 1)
    with pytest.raises(fetch.IntegrityError, match="registry pins"):
        fetch.fetch_c_only("dit-xl-2", tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_pages_use_the_extract_when_the_full_file_is_absent(
    server, monkeypatch, tmp_path, dit_state
):
    cache = tmp_path / "cache"
    missing = analysis.paper_model("dit-xl-2", cache)
    assert isinstance(missing, analysis.Missing)
    assert missing.command == "semantic-bottleneck fetch dit-xl-2 --c-only"
    assert "`--c-only`" in analysis.missing_notice([missing])
    data = _save(dit_state, tmp_path / "full" / "DiT-XL-2-256x256.pt")
    _serve(server, monkeypatch, "dit-xl-2", data)
    assert cli.main(["fetch", "--c-only", "dit-xl-2", "--cache-dir", str(cache)]) == 0
    model = analysis.paper_model("dit-xl-2", cache)
    assert model.source.endswith(".c-only.safetensors") and model.d == 128
    assert torch.equal(model.c(), _c(dit_state, "dit-xl-2"))
    # read_embedders by registry name serves the extract too
    monkeypatch.setenv(fetch.ENV_VAR, str(cache))
    assert torch.equal(
        conditioning.read_embedders("dit-xl-2")[EMBEDDER_KEYS[4]], dit_state[EMBEDDER_KEYS[4]]
    )
    # a second c-only fetch reads nothing
    before = len(server.ranges)
    assert fetch.fetch_c_only("dit-xl-2", cache).extract is None and len(server.ranges) == before
    # with the full file present, pages read it (unchanged path) and c is the same
    fetch.fetch("dit-xl-2", cache, progress=False)
    full_model = analysis.paper_model("dit-xl-2", cache)
    assert full_model.source == str(cache / "dit-xl-2" / "DiT-XL-2-256x256.pt")
    assert torch.equal(full_model.c(), model.c())
    assert fetch.fetch_c_only("dit-xl-2", cache).path == Path(full_model.source)


def test_full_fetch_checks_the_extract_and_deletes_one_that_disagrees(
    server, monkeypatch, tmp_path, dit_state
):
    cache = tmp_path / "cache"
    data = _save(dit_state, tmp_path / "full" / "x.pt")
    _serve(server, monkeypatch, "dit-xl-2", data)
    extract = fetch.fetch_c_only("dit-xl-2", cache).path
    fetch.fetch("dit-xl-2", cache, progress=False)
    assert extract.is_file()  # its ranges match the full file
    (cache / "dit-xl-2" / "DiT-XL-2-256x256.pt").unlink()
    (cache / fetch.HASHES_FILE).unlink()  # forget the first file's recorded hash
    other = _save({k: v * 2 for k, v in dit_state.items()}, tmp_path / "full" / "y.pt")
    server.files["/dit-xl-2/0"] = other
    with pytest.warns(UserWarning, match="do not match the c-only extract"):
        fetch.fetch("dit-xl-2", cache, progress=False)
    assert not extract.exists()


def test_an_input_is_not_a_c_only_target(tmp_path, capsys):
    assert cli.main(["fetch", "--c-only", "sd-vae-ft-ema", "--cache-dir", str(tmp_path)]) == 2
    assert "not a model" in capsys.readouterr().err


def test_locate_c_only_ignores_other_files(tmp_path):
    path = fetch.c_only_path("dit-xl-2", tmp_path)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\x10" + b"\x00" * 7 + b"{}" + b" " * 14)
    assert fetch.locate_c_only("dit-xl-2", tmp_path) is None
    save_file({"x": torch.zeros(2)}, str(path))
    assert fetch.locate_c_only("dit-xl-2", tmp_path) is None
