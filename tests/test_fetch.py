"""Tests for zoo/fetch.py against a local HTTP server (127.0.0.1) and a fake Hugging Face hub.

Nothing here touches the network: URLs point at a throwaway server in this process, and the
Hugging Face transport (`fetch._hf_download`) is replaced.
"""

from __future__ import annotations

import hashlib
import json
import threading
import urllib.error
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from semantic_bottleneck import cli
from semantic_bottleneck.zoo import fetch, registry
from semantic_bottleneck.zoo.registry import AssetEntry

PAYLOAD = bytes(range(256)) * 40  # 10,240 bytes


class _Server:
    """Serves `files` with HTTP Range support; can cut a response short or ignore Range."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.cut_after: dict[str, int] = {}  # path -> bytes to send before dropping (once)
        self.ignore_range = False
        self.types: dict[str, str] = {}  # path -> Content-Type, where one is sent
        self.ranges: list[tuple[str, str | None]] = []  # (path, Range header) per request
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_GET(self):
                header = self.headers.get("Range")
                server.ranges.append((self.path, header))
                if self.path not in server.files:
                    self.send_error(404)
                    return
                data = server.files[self.path]
                start = 0
                if header and not server.ignore_range:
                    start = int(header.removeprefix("bytes=").split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(data) - start))
                if self.path in server.types:
                    self.send_header("Content-Type", server.types[self.path])
                self.end_headers()
                body = data[start:]
                cut = server.cut_after.pop(self.path, None)
                self.wfile.write(body if cut is None else body[:cut])
                if cut is not None:
                    self.close_connection = True

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()


@pytest.fixture
def server():
    srv = _Server()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


def _entry(server, name="toy", paths=("/toy.bin",), **kwargs) -> AssetEntry:
    return AssetEntry(
        name=name,
        kind="test",
        urls=tuple(server.url + p for p in paths),
        filename="toy.bin",
        **kwargs,
    )


def _hashes(cache) -> dict:
    return json.loads((cache / fetch.HASHES_FILE).read_text())


def test_fetch_downloads_renames_and_records_sha256(server, tmp_path):
    server.files["/toy.bin"] = PAYLOAD
    path = fetch.fetch(_entry(server), tmp_path, progress=False)
    assert path == tmp_path / "toy" / "toy.bin" and path.read_bytes() == PAYLOAD
    assert sorted(p.name for p in path.parent.iterdir()) == ["toy.bin"]  # no .part left
    record = _hashes(tmp_path)["toy/toy.bin"]
    assert record["sha256"] == hashlib.sha256(PAYLOAD).hexdigest()
    assert record["size"] == len(PAYLOAD)
    assert fetch.recorded_sha256(path) == record["sha256"]


def test_truncated_transfer_resumes_with_range(server, tmp_path):
    server.files["/toy.bin"] = PAYLOAD
    server.cut_after["/toy.bin"] = 3000
    entry = _entry(server)
    with pytest.raises(fetch.FetchError, match="resume"):
        fetch.fetch(entry, tmp_path, progress=False)
    part = tmp_path / "toy" / "toy.bin.part"
    assert part.stat().st_size == 3000
    assert not (tmp_path / "toy" / "toy.bin").exists()  # incomplete data never takes the name
    assert fetch.locate(entry, tmp_path) is None
    path = fetch.fetch(entry, tmp_path, progress=False)
    assert server.ranges[-1] == ("/toy.bin", "bytes=3000-")
    assert path.read_bytes() == PAYLOAD and not part.exists()


def test_existing_part_file_is_resumed(server, tmp_path):
    server.files["/toy.bin"] = PAYLOAD
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy" / "toy.bin.part").write_bytes(PAYLOAD[:777])
    path = fetch.fetch(_entry(server), tmp_path, progress=False)
    assert server.ranges == [("/toy.bin", "bytes=777-")]
    assert path.read_bytes() == PAYLOAD


def test_server_without_range_support_restarts_cleanly(server, tmp_path):
    server.files["/toy.bin"] = PAYLOAD
    server.ignore_range = True
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy" / "toy.bin.part").write_bytes(b"x" * 500)
    assert fetch.fetch(_entry(server), tmp_path, progress=False).read_bytes() == PAYLOAD


def test_parts_are_concatenated_in_order(server, tmp_path):
    pieces = [PAYLOAD[:4000], PAYLOAD[4000:9000], PAYLOAD[9000:]]
    paths = ("/big-a", "/big-b", "/big-c")
    server.files.update(dict(zip(paths, pieces, strict=True)))
    path = fetch.fetch(_entry(server, paths=paths), tmp_path, progress=False)
    assert path.read_bytes() == PAYLOAD
    assert sorted(p.name for p in path.parent.iterdir()) == ["toy.bin"]


def test_recorded_hash_mismatch_names_file_and_both_hashes(server, tmp_path):
    server.files["/toy.bin"] = PAYLOAD
    entry = _entry(server)
    fetch.fetch(entry, tmp_path, progress=False).unlink()
    changed = bytes(reversed(PAYLOAD))  # same size, other bytes
    server.files["/toy.bin"] = changed
    with pytest.raises(fetch.IntegrityError) as err:
        fetch.fetch(entry, tmp_path, progress=False)
    message = str(err.value)
    assert "toy/toy.bin" in message
    assert hashlib.sha256(PAYLOAD).hexdigest() in message
    assert hashlib.sha256(changed).hexdigest() in message
    assert not any((tmp_path / "toy").iterdir())  # neither the file nor a .part remains


def test_pinned_sha256_is_enforced(server, tmp_path):
    server.files["/toy.bin"] = PAYLOAD
    with pytest.raises(fetch.IntegrityError, match="0{64} \\(pinned\\)"):
        fetch.fetch(_entry(server, sha256="0" * 64), tmp_path, progress=False)
    good = hashlib.sha256(PAYLOAD).hexdigest()
    assert fetch.fetch(_entry(server, sha256=good), tmp_path, progress=False).is_file()


def test_size_mismatch_is_an_error_and_leaves_nothing(server, tmp_path):
    server.files["/toy.bin"] = PAYLOAD
    with pytest.raises(fetch.IntegrityError, match=f"size {len(PAYLOAD)} bytes, expected 5"):
        fetch.fetch(_entry(server, size=5), tmp_path, progress=False)
    assert not any((tmp_path / "toy").iterdir())


def test_verify_rehashes_present_files(server, tmp_path):
    server.files["/toy.bin"] = PAYLOAD
    entry = _entry(server)
    path = fetch.fetch(entry, tmp_path, progress=False)
    path.write_bytes(bytes(reversed(PAYLOAD)))  # corrupted in place, size unchanged
    assert fetch.fetch(entry, tmp_path, progress=False) == path  # cheap check: size only
    with pytest.raises(fetch.IntegrityError, match="sha256 mismatch"):
        fetch.fetch(entry, tmp_path, progress=False, verify=True)


def test_http_error_is_reported(server, tmp_path):
    with pytest.raises(fetch.FetchError, match="HTTP 404"):
        fetch.fetch(_entry(server), tmp_path, progress=False)


def _unreachable(request, timeout):
    raise urllib.error.URLError("[Errno -2] Name or service not known")


def test_offline_message_names_file_url_and_network(server, tmp_path, monkeypatch):
    monkeypatch.setattr(fetch, "_open_url", _unreachable)
    entry = _entry(server)
    with pytest.raises(fetch.NetworkUnavailableError) as err:
        fetch.fetch(entry, tmp_path, progress=False)
    message = str(err.value)
    assert "toy.bin" in message and entry.urls[0] in message and "network" in message
    assert err.value.__cause__ is None and err.value.__suppress_context__


def test_cli_offline_prints_message_without_traceback(server, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(fetch, "_open_url", _unreachable)
    monkeypatch.setitem(registry.REGISTRY, "toy", _entry(server))
    assert cli.main(["fetch", "toy", "--cache-dir", str(tmp_path), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: cannot download toy.bin") and "Traceback" not in err


def test_hf_entries_use_the_hub_and_are_recorded(tmp_path, monkeypatch):
    calls = []

    def fake_hub(repo, filename, revision, folder):
        calls.append((repo, filename, revision))
        (folder / filename).write_bytes(filename.encode() * 10)

    monkeypatch.setattr(fetch, "_hf_download", fake_hub)
    path = fetch.fetch("sd-vae-ft-ema", tmp_path, progress=False)
    assert path == tmp_path / "sd-vae-ft-ema" / "diffusion_pytorch_model.safetensors"
    assert calls == [
        ("stabilityai/sd-vae-ft-ema", "diffusion_pytorch_model.safetensors", "main"),
        ("stabilityai/sd-vae-ft-ema", "config.json", "main"),
    ]
    assert set(_hashes(tmp_path)) == {
        "sd-vae-ft-ema/diffusion_pytorch_model.safetensors",
        "sd-vae-ft-ema/config.json",
    }
    assert fetch.locate("sd-vae-ft-ema", tmp_path) == path
    fetch.fetch("sd-vae-ft-ema", tmp_path, progress=False)
    assert len(calls) == 2  # present files are not downloaded again


def test_hf_offline_message(tmp_path, monkeypatch):
    from huggingface_hub.errors import LocalEntryNotFoundError

    def offline_hub(repo, filename, revision, folder):
        raise LocalEntryNotFoundError("cannot find the requested files in the local cache")

    monkeypatch.setattr(fetch, "_hf_download", offline_hub)
    with pytest.raises(fetch.NetworkUnavailableError) as err:
        fetch.fetch("mdtv2-xl-2", tmp_path, progress=False)
    message = str(err.value)
    assert "mdtv2-xl-2/mdt_xl2_v2_ckpt.pt" in message
    assert "https://huggingface.co/shgao/MDT-XL2/resolve/main/mdt_xl2_v2_ckpt.pt" in message
    assert "network" in message


def test_locate_status_and_inputs_table(server, tmp_path, monkeypatch, capsys):
    server.files["/toy.bin"] = PAYLOAD
    entry = _entry(server)
    monkeypatch.setitem(registry.REGISTRY, "toy", entry)
    assert fetch.locate("toy", tmp_path) is None
    rows = {row.name: row for row in fetch.status(tmp_path)}
    assert not rows["toy"].present and rows["toy"].command == "semantic-bottleneck fetch toy"
    path = fetch.fetch("toy", tmp_path, progress=False)
    assert fetch.locate("toy", tmp_path) == path
    path.write_bytes(PAYLOAD[:-1])  # wrong size: no longer counts as present
    assert fetch.locate("toy", tmp_path) is None

    assert cli.main(["inputs", "--cache-dir", str(tmp_path)]) == 0
    table = capsys.readouterr().out
    for name in registry.names():
        assert name in table
    assert "semantic-bottleneck fetch dit-xl-2" in table and "missing" in table


def test_cli_unknown_name_lists_valid_names(tmp_path, capsys):
    assert cli.main(["fetch", "dit", "--cache-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "unknown" in err and "dit-xl-2" in err and not any(tmp_path.iterdir())


def test_default_cache_dir_follows_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(fetch.ENV_VAR, str(tmp_path / "w"))
    assert fetch.default_cache_dir() == tmp_path / "w"
    monkeypatch.delenv(fetch.ENV_VAR)
    assert fetch.default_cache_dir().parts[-3:] == (".cache", "semantic_bottleneck", "weights")


def test_drive_file_pages_become_direct_downloads_and_others_stay():
    page = "https://drive.google.com/file/d/1XZoK-uU0mTWeRLilLZ_FtysRgearBxOp/view?usp=sharing"
    assert fetch.direct_url(page) == (
        "https://drive.usercontent.google.com/download?id=1XZoK-uU0mTWeRLilLZ_FtysRgearBxOp"
        "&export=download&confirm=t"
    )
    other = "https://dl.fbaipublicfiles.com/DiT/models/DiT-XL-2-256x256.pt"
    assert fetch.direct_url(other) == other


def test_a_web_page_instead_of_the_file_is_refused(server, tmp_path):
    server.files["/toy.bin"] = b"<html>quota exceeded</html>"
    server.types["/toy.bin"] = "text/html; charset=utf-8"
    with pytest.raises(fetch.FetchError, match="web page instead of the file"):
        fetch.fetch(_entry(server), tmp_path, progress=False)
    assert not (tmp_path / "toy" / "toy.bin").exists()
