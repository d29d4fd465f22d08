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

import json

import numpy as np
import torch

from semantic_bottleneck.book.cache import cached
from semantic_bottleneck.evaluation.fidelity import evaluate, to_adm_images
from semantic_bottleneck.evaluation.reconstruction import mean_interval, pair_scores
from semantic_bottleneck.generation.decode import decode_digits
from semantic_bottleneck.generation.run import generate
from semantic_bottleneck.sampling import balanced_labels, initial_t, sample_seeds
from semantic_bottleneck.sweeps.spec import SweepRow, SweepSettings, removed_summary, spec_table
from semantic_bottleneck.training.data import condition_set
from semantic_bottleneck.training.testbed import (
    is_continuous,
    load_trained,
    testbed_config,
    testbed_source,
    trained,
)
from semantic_bottleneck.zoo import denoiser

XMDPT_D = 1024  # width of X-MDPT-L's c, the model of the paper's Table 7
TABLE7_ROWS = [
    SweepRow("baseline", None),
    # the paper's row: tau = 0.1 removes 40% of X-MDPT's d (schedule not stated: all three here)
    *(
        SweepRow(f"tail 0.1 {name}", "tail", schedule, 0.1, round(0.4 * XMDPT_D), XMDPT_D)
        for schedule, name in (("every", "t_i"), ("initial", "t_0"), ("last_k", "t_{n-k,n}"))
    ),
    # a control that is not in the paper: the 4 largest coordinates instead
    SweepRow("head 4 dims t_i", "head", "every", None, 4, XMDPT_D),
]
GRID_CONDITIONS = 10  # conditions whose samples the figure shows (one per digit)
TARGETS = "target digits"  # the grid of the digits the shown conditions were taken from


def _check(name: str, **train):
    config = testbed_config(name, **train)
    if not is_continuous(config):
        raise ValueError(f"{name} is a class-conditional model; expected a continuous one")
    return config


def continuous_sweep(name: str, rows: list[SweepRow], settings: SweepSettings, **train) -> dict:
    """Sample every row once per condition (`settings.per_class` samples each) and score it.

    Returns:
        {"table": one dict per row (row, tau, target count, removed, d, fid, psnr, psnr_ci,
        ssim, ssim_ci, psnr_change, psnr_change_ci, ssim_change, ssim_change_ci; the changes
        paired against the first row), "grids": {row label: uint8 (GRID_CONDITIONS, per, 8, 8,
        3)}, "sampler": the config as text, "initial_t", "conditions": n}.
    """
    config = _check(name, **train)
    model, _, _ = load_trained(config)
    source = testbed_source(name)
    sampler = source.sampler_config(num_steps=settings.num_steps, cfg_scale=settings.cfg_scale)
    n = source.num_classes
    _, targets, digit = condition_set()
    labels = balanced_labels(n, settings.per_class)  # condition-major
    seeds = sample_seeds(settings.base_seed, len(labels))
    target_images = to_adm_images(targets).numpy()[labels.numpy()]
    with torch.no_grad():
        t0 = config.time_convention.times(initial_t(sampler), n)
        c = model.condition(t0, torch.arange(n))
    shown = [int(torch.nonzero(digit == k)[0]) for k in range(GRID_CONDITIONS)]
    table, grids, base = [], {}, None
    for spec_row in spec_table(rows, c, settings.last_k):
        images, info = generate(
            denoiser(model), model.condition, source.family, labels, seeds, sampler,
            decode_digits, latent_shape=source.latent_shape, prune=spec_row["spec"],
            batch_size=len(labels), bf16=settings.bf16, progress=False,
        )  # fmt: skip
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
    return {
        "table": table,
        "grids": grids,
        "sampler": repr(sampler),
        "initial_t": initial_t(sampler),
        "conditions": n,
    }


def run_continuous_sweep(name: str, rows: list[SweepRow], settings: SweepSettings, **train) -> dict:
    """`continuous_sweep`, cached by every parameter and by this module's code."""
    config = _check(name, **train)
    key = dict(model=trained(config).name, rows=[r.__dict__ for r in rows], **settings.__dict__)

    def produce(out):
        result = continuous_sweep(name, rows, settings, **train)
        grids = result.pop("grids")
        np.savez(out / "grids.npz", **{f"row{i}": g for i, g in enumerate(grids.values())})
        (out / "sweep.json").write_text(json.dumps({**result, "labels": list(grids)}))

    folder, _ = cached("continuous-sweep", key, produce)
    result = json.loads((folder / "sweep.json").read_text())
    with np.load(folder / "grids.npz") as z:
        result["grids"] = {label: z[f"row{i}"] for i, label in enumerate(result.pop("labels"))}
    return result
