"""Benchmark: c for all classes from a full-size checkpoint, against loading the whole checkpoint.

Builds a synthetic checkpoint with the exact keys and shapes of an official XL model (from its
manifest; DiT-XL/2 is 2.7 GB of float32), then measures in separate child processes:

  (a) `read_embedders` + `class_conditions` at the model's initial t, with an empty embedder
      cache (cold), and again with the cache filled (cached);
  (b) a plain `torch.load(path, map_location="cpu", weights_only=True)` of the same file.

Before each cold measurement the file is evicted from the page cache (posix_fadvise DONTNEED),
so both read from disk. Each child reports the wall time of the operation alone (imports
excluded) and its peak RSS (ru_maxrss), absolute and above the level reached after the imports
(importing torch alone costs hundreds of MB on CUDA builds). Each measurement is repeated
(--repeats, default 3) and the median is reported. Prints one JSON line.

Usage: python benchmarks/bench_conditioning.py [--workdir DIR] [--keep] [--model NAME] [--repeats N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_WALL_S = 2.0
TARGET_RSS_MB = 300.0
TARGET_SPEEDUP = 10.0


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _vm_hwm_mb() -> float | None:
    """Peak RSS of this process image from /proc (Linux), a cross-check of ru_maxrss."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _device() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} CPUs)"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()} ({os.cpu_count()} CPUs)"


def _evict(path: Path) -> bool:
    """Drop the file's pages from the page cache so the next read comes from disk."""
    if not hasattr(os, "posix_fadvise"):
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    return True


def build_checkpoint(path: Path, model: str) -> int:
    """Write a bare state dict with the model's official keys and shapes; return its size."""
    import torch

    from semantic_bottleneck.conditioning import EMBEDDER_KEYS
    from semantic_bottleneck.zoo.registry import get_checkpoint

    g = torch.Generator().manual_seed(0)
    state = {}
    for key, shape in get_checkpoint(model).shapes.items():
        if key in EMBEDDER_KEYS:  # random at a trained model's scale, so c is not trivial
            state[key] = torch.randn(*shape, generator=g) * shape[-1] ** -0.5
        else:
            state[key] = torch.zeros(*shape)  # constant: only the bytes on disk matter here
    torch.save(state, path)
    del state
    return path.stat().st_size


# ----------------------------------------------------------------------------- children


def _child_embedders(path: Path, cache_dir: Path, model: str) -> dict:
    from semantic_bottleneck.conditioning import class_conditions, read_embedders
    from semantic_bottleneck.zoo.registry import get_checkpoint

    initial_t = get_checkpoint(model).initial_t
    rss_before = _peak_rss_mb()
    start = time.perf_counter()
    emb = read_embedders(path, cache_dir=cache_dir)
    read = time.perf_counter() - start
    c = class_conditions(emb, initial_t)
    wall = time.perf_counter() - start
    return {
        "wall_s": wall,
        "read_s": read,
        "compute_s": wall - read,
        "shape": list(c.shape),
        "rss_before_mb": rss_before,
    }


def _child_full_load(path: Path) -> dict:
    import torch

    rss_before = _peak_rss_mb()
    start = time.perf_counter()
    state = torch.load(path, map_location="cpu", weights_only=True)
    wall = time.perf_counter() - start
    return {"wall_s": wall, "num_tensors": len(state), "rss_before_mb": rss_before}


def _run_child(args: list[str]) -> dict:
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, __file__, *args], check=True, capture_output=True, text=True
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["process_wall_s"] = time.perf_counter() - start
    if "rss_before_mb" in result:
        result["op_rss_mb"] = result["peak_rss_mb"] - result.pop("rss_before_mb")
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}


def _summary(results: list[dict]) -> dict:
    """Median of every numeric figure over the repeats, plus the individual wall times."""
    out = {}
    for key, value in results[0].items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            out[key] = round(statistics.median(r[key] for r in results), 3)
        elif key != "torch":
            out[key] = value
    out["wall_s_runs"] = [r["wall_s"] for r in results]
    return out


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=None, help="folder for the 2.7 GB file")
    parser.add_argument("--keep", action="store_true", help="keep the synthetic checkpoint")
    parser.add_argument("--model", default="dit-xl-2", help="registry name giving the layout")
    parser.add_argument("--repeats", type=int, default=3, help="runs per measurement (median)")
    parser.add_argument(
        "--child", choices=["build", "embedders", "full-load"], help=argparse.SUPPRESS
    )
    parser.add_argument("--path", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--cache-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")

    if args.child:  # inside a measured child process
        if args.child == "build":
            result = {"file_bytes": build_checkpoint(args.path, args.model)}
        elif args.child == "embedders":
            result = _child_embedders(args.path, args.cache_dir, args.model)
        else:
            result = _child_full_load(args.path)
        import torch

        result.update(peak_rss_mb=_peak_rss_mb(), vm_hwm_mb=_vm_hwm_mb(), torch=torch.__version__)
        print(json.dumps(result))
        return 0

    # the parent imports no torch and holds no tensors: a forked child would inherit its
    # resident size into ru_maxrss
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench_conditioning_"))
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "synthetic_xl.pt"
    cache = workdir / "embedder_cache"
    try:
        common = ["--path", str(path), "--model", args.model]
        size = _run_child(["--child", "build", *common])["file_bytes"]
        shutil.rmtree(cache, ignore_errors=True)  # a reused --workdir must not start warm
        runs = {"embedders_cold": [], "embedders_cached": [], "full_torch_load": []}
        for repeat in range(args.repeats):
            cache_r = cache / str(repeat)  # empty: the first read is cold
            evicted = _evict(path)
            embed = ["--child", "embedders", "--cache-dir", str(cache_r), *common]
            runs["embedders_cold"].append(_run_child(embed))
            runs["embedders_cached"].append(_run_child(embed))
            _evict(path)
            runs["full_torch_load"].append(_run_child(["--child", "full-load", *common]))
    finally:
        if not args.keep:
            path.unlink(missing_ok=True)
            shutil.rmtree(cache, ignore_errors=True)
            if args.workdir is None:
                shutil.rmtree(workdir, ignore_errors=True)
    torch_version = runs["full_torch_load"][0]["torch"]
    cold, cached, full = (_summary(runs[k]) for k in runs)
    speedup = full["wall_s"] / max(cold["wall_s"], 1e-9)
    report = {
        "benchmark": "conditioning",
        "device": _device(),
        "torch": torch_version,
        "repeats": args.repeats,
        "python": platform.python_version(),
        "model_layout": args.model,
        "file_bytes": size,
        "page_cache_evicted": evicted,
        "embedders_cold": cold,
        "embedders_cached": cached,
        "full_torch_load": full,
        "speedup_cold_vs_full_load": round(speedup, 1),
        "targets": {
            f"cold_wall_lt_{TARGET_WALL_S}s": cold["wall_s"] < TARGET_WALL_S,
            f"cold_op_rss_lt_{TARGET_RSS_MB:.0f}mb": cold["op_rss_mb"] < TARGET_RSS_MB,
            f"cold_peak_rss_lt_{TARGET_RSS_MB:.0f}mb": cold["peak_rss_mb"] < TARGET_RSS_MB,
            f"speedup_ge_{TARGET_SPEEDUP:.0f}x": speedup >= TARGET_SPEEDUP,
        },
        "kept": str(path) if args.keep else None,
    }
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
