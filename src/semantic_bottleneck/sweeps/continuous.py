"""The continuous-condition pruning sweep (the testbed's Table 7): prune c of the
continuous-condition model, sample one digit per held-out condition, and score each sample against
the digit its condition was taken from (PSNR, SSIM) and the set of samples against the digits (FID).

The paper's Table 7 prunes X-MDPT's c at tau = 0.1, which removes 40% of its 1024 dimensions; the
schedule is not stated. Here each row removes the same fraction of the testbed's d (tau matched as
in the class-conditional sweeps, `sweeps.spec.matched_tau`), under each of the three schedules, with
a head-removal row as the control that pruning the large coordinates does matter. Every row uses
the same conditions and noise seeds as the baseline, so differences are paired.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import torch

from semantic_bottleneck.evaluation.fidelity import evaluate, to_adm_images
from semantic_bottleneck.evaluation.reconstruction import mean_interval, pair_scores
from semantic_bottleneck.sweeps.spec import (
    SCHEDULE_NAMES,
    SweepRow,
    SweepSettings,
    removed_summary,
    spec_table,
)
from semantic_bottleneck.sweeps.testbed import TestbedRows, cached_sweep
from semantic_bottleneck.training.data import condition_set
from semantic_bottleneck.training.testbed import (
    is_continuous,
    testbed_config,
)

XMDPT_D = 1024  # width of X-MDPT-L's c, the model of the paper's Table 7
TABLE7_ROWS = [
    SweepRow("baseline", None),
    # the paper's row: tau = 0.1 removes 40% of X-MDPT's d (schedule not stated: all three here)
    *(
        SweepRow(f"tail 0.1 {name}", "tail", schedule, 0.1, round(0.4 * XMDPT_D), XMDPT_D)
        for schedule, name in SCHEDULE_NAMES.items()
    ),
    # a control that is not in the paper: the 4 largest coordinates instead
    SweepRow("head 4 dims t_i", "head", "every", None, 4, XMDPT_D),
]
GRID_CONDITIONS = 10  # conditions whose samples the figure shows (one per digit)
TARGETS = "target digits"  # the grid of the digits the shown conditions were taken from


def _check(name: str, **train) -> None:
    if not is_continuous(testbed_config(name, **train)):
        raise ValueError(f"{name} is a class-conditional model; expected a continuous one")


def continuous_sweep(name: str, rows: list[SweepRow], settings: SweepSettings, **train) -> dict:
    """Sample every row once per condition (`settings.per_class` samples each) and score it.

    Returns:
        {"table": one dict per row (row, tau, target count, removed, d, fid, psnr, psnr_ci,
        ssim, ssim_ci, psnr_change, psnr_change_ci, ssim_change, ssim_change_ci; the changes
        paired against the first row), "grids": {row label: uint8 (GRID_CONDITIONS, per, 8, 8,
        3)}, "sampler": the config as text, "initial_t", "conditions": n}.
    """
    _check(name, **train)
    run = TestbedRows(name, settings, **train)
    n, c = run.source.num_classes, run.c
    _, targets, digit = condition_set()
    target_images = to_adm_images(targets).numpy()[run.labels.numpy()]
    shown = [int(torch.nonzero(digit == k)[0]) for k in range(GRID_CONDITIONS)]
    table, grids, base = [], {}, None
    for spec_row in spec_table(rows, c, settings.last_k):
        images, info = run.sample(spec_row["spec"])
        images = images.numpy()
        pairs = pair_scores(images, target_images)
        base = pairs if base is None else base
        row = {k: spec_row[k] for k in ("row", "tau", "target count")}
        row.update(removed=removed_summary(info), d=c.shape[1])
        row["fid"] = evaluate(images, profile="testbed", metrics=("fid",))["fid"]
        for key in ("psnr", "ssim"):
            row[key], row[f"{key}_ci"] = mean_interval(pairs[key])
            row[f"{key}_change"], row[f"{key}_change_ci"] = mean_interval(pairs[key] - base[key])
        table.append(row)
        per = images.reshape(n, settings.per_class, *images.shape[1:])
        grids[spec_row["row"]] = np.ascontiguousarray(per[shown, : settings.grid_per_class])
    grids = {TARGETS: target_images.reshape(n, settings.per_class, 8, 8, 3)[shown, :1], **grids}
    return {"table": table, "grids": grids, **run.summary(), "conditions": n}


def table7_settings(per_condition: int, num_steps: int | None, last_k: int, base_seed: int):
    """The sampling settings of Table 7's testbed sweep (one grid sample per shown condition), as
    its pages and the ledger's continuous-pruning claim read it."""
    return SweepSettings(
        per_class=per_condition, base_seed=base_seed, num_steps=num_steps, last_k=last_k,
        grid_per_class=1,
    )  # fmt: skip


def run_continuous_sweep(name: str, rows: list[SweepRow], settings: SweepSettings, **train) -> dict:
    """`continuous_sweep`, cached by every parameter and by this module's code."""
    _check(name, **train)
    produce = partial(continuous_sweep, name, rows, settings, **train)
    return cached_sweep("continuous-sweep", name, rows, settings, produce, **train)
