"""Benchmark (Fig. 42): the AdaLN modulation of every block with a dense c and a tail-pruned c.

Random weights with the modulation shapes of a DiT of width d and `depth` blocks (6d outputs per
block, 2d for the final layer; d = 1152 and 28 blocks is the XL size of every model in the
paper), a batch of c with a head-tail magnitude profile, and the paper's Table 2 removal counts
(0, 448, 762, 1110 of 1152, scaled to d). For each count it times, interleaved, the dense path
SiLU(P(c)) W^T + b and the sparse path SiLU(c_K) W_K^T + b on the gathered kept columns, checks
that both agree, and reports times per call, ratios against the dense baseline of the same run
(removed = 0) and the matmul FLOPs. Prints one JSON line.

Usage: python benchmarks/bench_adaln_cost.py [--width 1152] [--depth 28] [--batch 64]
       [--removed 0 448 762 1110] [--repeats 7] [--warmup 1] [--threads N] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys

from semantic_bottleneck.book.provenance import cpu_name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=1152, help="d, the width of c")
    parser.add_argument("--depth", type=int, default=28, help="transformer blocks")
    parser.add_argument("--batch", type=int, default=64, help="rows of c per call")
    parser.add_argument(
        "--removed", type=int, nargs="+", default=None, help="zeroed coordinates per run"
    )
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per path (median)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls per path")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.width < 2 or args.depth < 1 or args.batch < 1:
        parser.error(f"need width >= 2, depth >= 1, batch >= 1; got {vars(args)}")

    import torch

    from semantic_bottleneck.core import adaln_cost

    removed = args.removed or adaln_cost.scaled_removed(args.width)
    if 0 not in removed:
        removed = [0, *removed]  # the dense baseline runs in the same process, always
    mod = adaln_cost.random_modulation(
        adaln_cost.synthetic_shapes(args.width, args.depth), seed=args.seed
    )
    c = adaln_cost.synthetic_c(args.batch, args.width, args.seed)
    table = adaln_cost.cost_sweep(
        mod, c, removed, repeats=args.repeats, warmup=args.warmup, num_threads=args.threads
    )
    rows = [
        {
            "removed": int(r.removed),
            "kept_fraction": round(float(r.kept_fraction), 4),
            "dense_ms": round(1e3 * r.dense_s, 4),
            "sparse_ms": round(1e3 * r.sparse_s, 4),
            "dense_min_ms": round(1e3 * r.dense_min_s, 4),
            "sparse_min_ms": round(1e3 * r.sparse_min_s, 4),
            "sparse_vs_dense_baseline": round(float(r.sparse_vs_baseline), 4),
            "dense_vs_dense_baseline": round(float(r.dense_vs_baseline), 4),
            "speedup_same_count": round(float(r.speedup), 3),
            "gflop_dense": round(r.flops_dense / 1e9, 4),
            "gflop_sparse": round(r.flops_sparse / 1e9, 4),
            "max_abs_diff": float(r.max_abs_diff),
            "allclose": bool(r.allclose),
        }
        for r in table.itertuples()
    ]
    report = {
        "benchmark": "adaln_cost",
        "device": cpu_name(),
        "torch": torch.__version__,
        "threads": table.attrs["threads"],
        "python": platform.python_version(),
        "width": args.width,
        "depth": args.depth,
        "batch": args.batch,
        "modulation_params": sum(
            w.numel() + b.numel() for w, b in zip(mod.weights, mod.biases, strict=True)
        ),
        "repeats": args.repeats,
        "baseline": "dense path, removed = 0, same process",
        "rows": rows,
        "all_allclose": all(r["allclose"] for r in rows),
    }
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
