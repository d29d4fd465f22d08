"""Benchmark: c for all classes from a full-size checkpoint, against loading the whole checkpoint.

Builds a synthetic checkpoint with the exact keys and shapes of an official XL model (from its
manifest; DiT-XL/2 is 2.7 GB of float32), then measures in separate child processes:

  (a) `torchfile.read_tensors` + `torchfile.class_conditions_numpy` at the model's initial t, in
      a process that never imports torch (numpy_cold: file evicted; numpy_warm: in page cache);
  (b) `read_embedders` + `class_conditions` (torch) at the same t, with an empty embedder
      cache (embedders_cold), and again with the cache filled (embedders_cached);
  (c) a plain `torch.load(path, map_location="cpu", weights_only=True)` of the same file.

Before each cold measurement the file is evicted from the page cache (posix_fadvise DONTNEED),
so it reads from disk. Each child reports the wall time of the operation alone (imports
excluded) and its peak RSS (ru_maxrss), absolute and above the level reached after the imports
(importing torch alone costs hundreds of MB on CUDA builds). The torch child also compares its c
with the numpy child's (max abs difference, and relative to max |c|). Each measurement is
repeated (--repeats, default 3) and the median is reported, with the load average before and
after (other processes on the machine slow every figure). Prints one JSON line.

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

from semantic_bottleneck.book.provenance import cpu_name

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

    from semantic_bottleneck.core.conditioning import EMBEDDER_KEYS
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


def _child_numpy(path: Path, initial_t: float, c_out: Path) -> dict:
    """c for all classes without torch: read the five tensors, then numpy float32."""
    import numpy as np

    from semantic_bottleneck.core.torchfile import (
        EMBEDDER_KEYS,
        class_conditions_numpy,
        read_tensors,
    )

    rss_before = _peak_rss_mb()
    start = time.perf_counter()
    arrays = read_tensors(path, EMBEDDER_KEYS)
    read = time.perf_counter() - start
    c = class_conditions_numpy(arrays, initial_t)
    wall = time.perf_counter() - start
    np.save(c_out, c)  # for the torch child's comparison
    return {
        "wall_s": wall,
        "read_s": read,
        "compute_s": wall - read,
        "shape": list(c.shape),
        "rss_before_mb": rss_before,
        "torch_imported": "torch" in sys.modules,
    }


def _child_embedders(path: Path, cache_dir: Path, model: str, compare: Path | None) -> dict:
    from semantic_bottleneck.core.conditioning import class_conditions, read_embedders
    from semantic_bottleneck.zoo.registry import get_checkpoint

    initial_t = get_checkpoint(model).initial_t
    rss_before = _peak_rss_mb()
    start = time.perf_counter()
    emb = read_embedders(path, cache_dir=cache_dir)
    read = time.perf_counter() - start
    c = class_conditions(emb, initial_t)
    wall = time.perf_counter() - start
    result = {
        "wall_s": wall,
        "read_s": read,
        "compute_s": wall - read,
        "shape": list(c.shape),
        "rss_before_mb": rss_before,
    }
    if compare is not None and compare.is_file():  # after the timing: it costs nothing measured
        import numpy as np

        c = c.numpy()
        diff = float(np.abs(np.load(compare) - c).max())
        result.update(c_max_abs_diff=diff, c_max_rel_diff=diff / float(np.abs(c).max()))
    return result


def _child_full_load(path: Path) -> dict:
    import torch

    rss_before = _peak_rss_mb()
    start = time.perf_counter()
    state = torch.load(path, map_location="cpu", weights_only=True)
    wall = time.perf_counter() - start
    return {"wall_s": wall, "num_tensors": len(state), "rss_before_mb": rss_before}


def _round(value: float) -> float:
    """4 decimals, or 3 significant digits for small figures such as differences of c."""
    return round(value, 4) if abs(value) >= 1e-3 or value == 0 else float(f"{value:.3g}")


def _run_child(args: list[str]) -> dict:
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, __file__, *args], check=True, capture_output=True, text=True
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["process_wall_s"] = time.perf_counter() - start
    if "rss_before_mb" in result:
        result["op_rss_mb"] = result["peak_rss_mb"] - result.pop("rss_before_mb")
    return {k: _round(v) if isinstance(v, float) else v for k, v in result.items()}


def _summary(results: list[dict]) -> dict:
    """Median of every numeric figure over the repeats, plus the individual wall times."""
    out = {}
    for key, value in results[0].items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            out[key] = _round(statistics.median(r[key] for r in results))
        elif isinstance(value, bool):  # a flag such as torch_imported: true if in any run
            out[key] = any(r[key] for r in results)
        elif key != "torch":
            out[key] = value
    out["wall_s_runs"] = [r["wall_s"] for r in results]
    return out


def _targets(summary: dict, speedup: float) -> dict:
    return {
        f"wall_lt_{TARGET_WALL_S}s": summary["wall_s"] < TARGET_WALL_S,
        f"op_rss_lt_{TARGET_RSS_MB:.0f}mb": summary["op_rss_mb"] < TARGET_RSS_MB,
        f"peak_rss_lt_{TARGET_RSS_MB:.0f}mb": summary["peak_rss_mb"] < TARGET_RSS_MB,
        f"speedup_ge_{TARGET_SPEEDUP:.0f}x": speedup >= TARGET_SPEEDUP,
    }


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=None, help="folder for the 2.7 GB file")
    parser.add_argument("--keep", action="store_true", help="keep the synthetic checkpoint")
    parser.add_argument("--model", default="dit-xl-2", help="registry name giving the layout")
    parser.add_argument("--repeats", type=int, default=3, help="runs per measurement (median)")
    parser.add_argument(
        "--child", choices=["build", "numpy", "embedders", "full-load"], help=argparse.SUPPRESS
    )
    parser.add_argument("--path", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--cache-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--t", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--c-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")

    if args.child:  # inside a measured child process
        if args.child == "numpy":  # must not import torch, not even for its version
            result = _child_numpy(args.path, args.t, args.c_file)
            result.update(peak_rss_mb=_peak_rss_mb(), vm_hwm_mb=_vm_hwm_mb())
            print(json.dumps(result))
            return 0
        if args.child == "build":
            from semantic_bottleneck.zoo.registry import get_checkpoint

            result = {
                "file_bytes": build_checkpoint(args.path, args.model),
                "initial_t": get_checkpoint(args.model).initial_t,
            }
        elif args.child == "embedders":
            result = _child_embedders(args.path, args.cache_dir, args.model, args.c_file)
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
    c_file = workdir / "c_numpy.npy"
    load_before = os.getloadavg()
    try:
        common = ["--path", str(path), "--model", args.model]
        built = _run_child(["--child", "build", *common])
        size, initial_t = built["file_bytes"], built["initial_t"]
        shutil.rmtree(cache, ignore_errors=True)  # a reused --workdir must not start warm
        c_file.unlink(missing_ok=True)
        runs = {k: [] for k in ("numpy_cold", "numpy_warm", "embedders_cold", "embedders_cached",
                                "full_torch_load")}  # fmt: skip
        numpy = ["--child", "numpy", "--t", repr(initial_t), "--c-file", str(c_file), *common]
        for repeat in range(args.repeats):
            evicted = _evict(path)
            runs["numpy_cold"].append(_run_child(numpy))
            runs["numpy_warm"].append(_run_child(numpy))
            cache_r = cache / str(repeat)  # empty: the first read is cold
            _evict(path)
            embed = ["--child", "embedders", "--cache-dir", str(cache_r), "--c-file", str(c_file)]
            runs["embedders_cold"].append(_run_child([*embed, *common]))
            runs["embedders_cached"].append(_run_child([*embed, *common]))
            _evict(path)
            runs["full_torch_load"].append(_run_child(["--child", "full-load", *common]))
    finally:
        if not args.keep:
            path.unlink(missing_ok=True)
            c_file.unlink(missing_ok=True)
            shutil.rmtree(cache, ignore_errors=True)
            if args.workdir is None:
                shutil.rmtree(workdir, ignore_errors=True)
    torch_version = runs["full_torch_load"][0]["torch"]
    numpy_cold, numpy_warm, cold, cached, full = (_summary(runs[k]) for k in runs)
    speedup = full["wall_s"] / max(cold["wall_s"], 1e-9)
    speedup_numpy = full["wall_s"] / max(numpy_cold["wall_s"], 1e-9)
    rel_diff = max(r["c_max_rel_diff"] for r in runs["embedders_cold"] + runs["embedders_cached"])
    report = {
        "benchmark": "conditioning",
        "device": cpu_name(),
        "torch": torch_version,
        "repeats": args.repeats,
        "python": platform.python_version(),
        "model_layout": args.model,
        "initial_t": initial_t,
        "file_bytes": size,
        "page_cache_evicted": evicted,
        "load_average_1_5_15min": {
            "before": [round(x, 2) for x in load_before],
            "after": [round(x, 2) for x in os.getloadavg()],
        },
        "numpy_cold": numpy_cold,
        "numpy_warm": numpy_warm,
        "embedders_cold": cold,
        "embedders_cached": cached,
        "full_torch_load": full,
        "numpy_vs_torch_c": {
            "max_abs_diff": max(r["c_max_abs_diff"] for r in runs["embedders_cold"]),
            "max_rel_diff": rel_diff,
            "within_1e-5_relative": rel_diff <= 1e-5,
        },
        "speedup_numpy_cold_vs_full_load": round(speedup_numpy, 1),
        "speedup_cold_vs_full_load": round(speedup, 1),
        "targets": {
            "numpy_cold": _targets(numpy_cold, speedup_numpy)
            | {"torch_not_imported": not numpy_cold["torch_imported"]},
            "embedders_cold": _targets(cold, speedup),
        },
        "kept": str(path) if args.keep else None,
    }
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
