"""The nPR monitor: statistics of c while a model trains (paper Sec. 6.2, Figs. 12 and 43).

Two views are logged, because the paper does not say how a batch is aggregated:
  - classes: c for every class at the model's initial (pure-noise) t, the quantity of Table 1;
  - batch: c of the training batch as the model saw it (its t, its labels after dropout), with both
    aggregations: the mean of per-sample nPR, and the nPR of the batch-mean c. Under mixed
    precision this c is the autocast one (bf16/fp16 matmuls); in a multi-process run it is the
    first process's share of the global batch.
The log is JSONL, one record per monitored step, flushed and fsynced: readable while training runs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import Tensor

from semantic_bottleneck.core import metrics
from semantic_bottleneck.core.conventions import TimeConvention

TOP_K = 10  # the head whose share of |c| is logged


def c_statistics(c: Tensor, prefix: str) -> dict[str, float]:
    """nPR, cosine and magnitude summary of a set of conditional vectors.

    Args:
        c: conditional vectors, one per row.
        prefix: key prefix ("classes", "ema_classes" or "batch").

    Returns:
        `{prefix}_npr_mean` (mean of per-row nPR), `{prefix}_npr_of_mean` (nPR of the mean row),
        `{prefix}_cos_mean` and `{prefix}_cos_min` (off-diagonal pairwise cosine),
        `{prefix}_max_abs` (largest |c_i|), `{prefix}_s_tail_0_01` (mean over rows of the
        fraction of coordinates with |c_i| < 0.01) and `{prefix}_top10_share` (mean over rows
        of the share of sum |c_i| held by the 10 largest |c_i|).

    Shapes: c (n, d) with n >= 2.
    """
    c = c.detach().float()
    cos = metrics.cosine_summary(c)
    mag = c.abs().double()
    k = min(TOP_K, c.shape[1])
    return {
        f"{prefix}_npr_mean": float(metrics.normalized_participation_ratio(c).mean()),
        f"{prefix}_npr_of_mean": float(metrics.normalized_participation_ratio(c.mean(0))),
        f"{prefix}_cos_mean": float(cos["mean"]),
        f"{prefix}_cos_min": float(cos["min"]),
        f"{prefix}_max_abs": float(mag.max()),
        f"{prefix}_s_tail_0_01": float(metrics.sparsity_ratio(c, 0.01, "tail").mean()),
        f"{prefix}_top10_share": float((mag.topk(k, dim=1).values.sum(1) / mag.sum(1)).mean()),
    }


@torch.no_grad()
def class_conditions(model, time: TimeConvention, y: Tensor) -> Tensor:
    """c of every condition `y` (every class label, or the continuous condition set: see
    `data.condition_inputs`) at the initial (noise) t, without label dropout.

    Shapes: y (n,) or (n, k) -> (n, d) float32, on the model's device.
    """
    device = model.t_embedder.mlp[0].weight.device
    y = y.to(device)
    return model.t_embedder(time.initial(len(y), device)) + model.y_embedder(y, False)


@torch.no_grad()
def time_label_statistics(model, time: TimeConvention, y: Tensor, prefix: str) -> dict:
    """c = T + Y at the initial t: T = t_embedder(t0), shared by every condition, and Y_y =
    y_embedder(y). Logs `{prefix}_t_norm` (||T||), `{prefix}_y_spread` (rms distance of the Y_y
    from their mean), `{prefix}_t_npr` and `{prefix}_y_npr` (mean nPR of the Y_y)."""
    device = model.t_embedder.mlp[0].weight.device
    t_vec = model.t_embedder(time.initial(1, device)).float()
    y_vec = model.y_embedder(y.to(device), False).float()
    spread = (y_vec - y_vec.mean(0)).pow(2).sum(1).mean().sqrt()
    return {
        f"{prefix}_t_norm": float(t_vec.norm()),
        f"{prefix}_y_spread": float(spread),
        f"{prefix}_t_npr": float(metrics.normalized_participation_ratio(t_vec).mean()),
        f"{prefix}_y_npr": float(metrics.normalized_participation_ratio(y_vec).mean()),
    }


class JsonlLog:
    """Append-only JSONL log, flushed and fsynced per record so it is readable mid-run."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, record: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())


def read_log(path: Path) -> list[dict]:
    """Records of a JSONL log; a torn last line (a run killed mid-write) is skipped."""
    records = []
    for line in Path(path).read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records
