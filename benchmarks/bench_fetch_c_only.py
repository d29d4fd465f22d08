"""Benchmark: `fetch --c-only` (HTTP Range reads of the five tensors of c) against a full download.

Builds a synthetic checkpoint with the real key set of an official XL model (its manifest;
DiT-XL/2: 292 keys, hidden 1152, 2.7 GB of random float32), serves it from a local HTTP server on
127.0.0.1 that honours Range, then in the same run:

  (a) `fetch.fetch_c_only`: tail + central directory, data.pkl, the five storages, written as a
      small safetensors extract;
  (b) `fetch.fetch`: the full download (resumable .part file, sha256, rename), as
      `semantic-bottleneck fetch NAME` does it;

and reports bytes on the wire (counted by the server and by the client), requests and wall time
of each, and whether c for all classes at the model's initial t from the extract equals c from
the downloaded full file bit for bit. Over loopback the transfer is nearly free, so the wall-time
ratio understates what a real network gives; the byte ratio does not depend on the link.

`--width W` (< 1152) keeps the five tensors of c at their real shapes and shrinks every other
dimension that is a multiple of 1152 by W / 1152, for machines without ~6 GB of free disk (the
checkpoint plus its downloaded copy); the JSON says so (`shrunk`).

Usage: python benchmarks/bench_fetch_c_only.py [--workdir DIR] [--keep] [--model NAME] [--width W]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import shutil
import sys
import tempfile
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import torch

from semantic_bottleneck.book.provenance import cpu_name
from semantic_bottleneck.core import conditioning
from semantic_bottleneck.core.torchfile import EMBEDDER_KEYS
from semantic_bottleneck.zoo import fetch
from semantic_bottleneck.zoo.registry import CheckpointEntry, get_checkpoint

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from loopback import LoopbackServer  # noqa: E402  (the tests' loopback server)

XL = 1152
CHUNK = 1 << 20


def shrunk_shape(shape: list[int], width: int) -> list[int]:
    """Every dimension that is a multiple of 1152 scaled to `width` (the rest unchanged)."""
    return [n // XL * width if n % XL == 0 else n for n in shape]


def build_checkpoint(path: Path, entry: CheckpointEntry, width: int) -> int:
    """Write a bare state dict with the entry's official keys, random float32 weights; c's five
    tensors at their real shapes, the others shrunk to `width`; return the file size."""
    g = torch.Generator().manual_seed(0)
    state = {}
    for key, shape in entry.shapes.items():
        real = key in EMBEDDER_KEYS or width == XL
        size = list(shape) if real else shrunk_shape(list(shape), width)
        # at a trained model's scale, so c is not trivial
        state[key] = torch.randn(size, generator=g) * size[-1] ** -0.5
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    del state
    return path.stat().st_size


class FileServer(LoopbackServer):
    """Serves one file from disk at /<name> on 127.0.0.1, honouring Range; counts body bytes."""

    def __init__(self, path: Path):
        self.path, self.size, self.sent, self.requests = path, path.stat().st_size, 0, 0
        super().__init__(f"/{path.name}")

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        with self.lock:
            self.requests += 1
        header = h.headers.get("Range")
        first, last = 0, self.size - 1
        if header:
            a, _, b = header.removeprefix("bytes=").partition("-")
            first, last = int(a), min(int(b), self.size - 1) if b else self.size - 1
            h.send_response(206)
            h.send_header("Content-Range", f"bytes {first}-{last}/{self.size}")
        else:
            h.send_response(200)
        h.send_header("Accept-Ranges", "bytes")
        h.send_header("ETag", f'"{self.size:x}"')
        h.send_header("Content-Length", str(last - first + 1))
        h.end_headers()
        with open(self.path, "rb") as f:
            f.seek(first)
            left = last - first + 1
            while left and (chunk := f.read(min(CHUNK, left))):
                h.wfile.write(chunk)
                left -= len(chunk)
                with self.lock:
                    self.sent += len(chunk)

    def take(self) -> tuple[int, int]:
        """(body bytes, requests) since the last call."""
        with self.lock:
            out, self.sent, self.requests = (self.sent, self.requests), 0, 0
        return out


def c_of(emb: dict, entry: CheckpointEntry) -> torch.Tensor:
    """c for every class at the entry's initial t. Shapes: -> (num_classes, d)."""
    return conditioning.class_conditions(emb, entry.time.initial_t)


def run(workdir: Path, model: str, width: int) -> dict:
    """Build, serve, fetch both ways; the JSON record."""
    official = get_checkpoint(model)
    t0 = time.perf_counter()
    size = build_checkpoint(workdir / "served" / official.filename, official, width)
    build_s = time.perf_counter() - t0
    server = FileServer(workdir / "served" / official.filename)
    try:
        entry = dataclasses.replace(official, urls=(server.url,), hf_repo=None, size=None)
        t0 = time.perf_counter()
        done = fetch.fetch_c_only(entry, workdir / "cache-c-only")
        c_only_s = time.perf_counter() - t0
        c_only_sent, c_only_requests = server.take()
        t0 = time.perf_counter()
        full = fetch.fetch(entry, workdir / "cache-full", progress=False)
        full_s = time.perf_counter() - t0
        full_sent, full_requests = server.take()
    finally:
        server.stop()
    c_ranged = c_of(conditioning.read_c_only(done.path), entry)
    emb = conditioning.read_embedders(full, cache_dir=workdir / "embedders")
    c_full = c_of(emb, entry)
    return {
        "benchmark": "fetch_c_only",
        "model": model,
        "keys": len(official.shapes),
        "width": width,
        "shrunk": width != XL,
        "file_bytes": size,
        "build_s": round(build_s, 2),
        "c_only": {
            "bytes_server": c_only_sent,
            "bytes_client": done.extract.bytes_received,
            "requests": c_only_requests,
            "wall_s": round(c_only_s, 4),
            "extract_bytes": done.path.stat().st_size,
            "fraction_of_file": round(c_only_sent / size, 6),
        },
        "full": {"bytes_server": full_sent, "requests": full_requests, "wall_s": round(full_s, 3)},
        "bytes_ratio": round(full_sent / max(c_only_sent, 1), 1),
        "wall_ratio": round(full_s / c_only_s, 1),
        "c_bit_identical": bool(torch.equal(c_ranged, c_full)),
        "c_shape": list(c_full.shape),
        "machine": {
            "cpu": cpu_name(),
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temporary folder")
    parser.add_argument("--keep", action="store_true", help="keep the files in --workdir")
    parser.add_argument("--model", default="dit-xl-2", help="registry name of the key set")
    parser.add_argument("--width", type=int, default=XL, help="shrink non-c tensors to this width")
    args = parser.parse_args(argv)
    if not 1 <= args.width <= XL:
        parser.error(f"--width must lie in [1, {XL}]")
    workdir = Path(tempfile.mkdtemp(prefix="bench-c-only-", dir=args.workdir))
    try:
        need = 2.2 * 2.75e9 * (args.width / XL) ** 2  # the file, its download and the .part
        free = shutil.disk_usage(workdir).free
        if free < need:
            print(f"error: {need / 1e9:.1f} GB of disk needed, {free / 1e9:.1f} GB free; "
                  "pass --width 256 (c keeps its real shapes)", file=sys.stderr)  # fmt: skip
            return 2
        print(json.dumps(run(workdir, args.model, args.width)))
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
