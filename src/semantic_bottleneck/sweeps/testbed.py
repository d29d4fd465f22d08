"""The testbed pruning sweep's producer: sample every row from a testbed model and score it.

Kept apart from the tables and pages (`sweeps.run`) so that the artifact cache keys these rows by the
code that samples and scores them, and by nothing that only shows them.
"""

from __future__ import annotations

import torch

from semantic_bottleneck.evaluation.clip_score import class_probability_score
from semantic_bottleneck.evaluation.fidelity import evaluate
from semantic_bottleneck.generation.decode import decode_digits
from semantic_bottleneck.generation.run import generate
from semantic_bottleneck.sampling import balanced_labels, initial_t, sample_seeds
from semantic_bottleneck.sweeps.spec import (
    SweepRow,
    SweepSettings,
    class_grid,
    result_row,
    spec_table,
)
from semantic_bottleneck.training.testbed import load_trained, testbed_config, testbed_source
from semantic_bottleneck.zoo import denoiser


def testbed_sweep(name: str, rows: list[SweepRow], settings: SweepSettings, **train) -> dict:
    """Sample and score every row of a pruning table from a testbed model.

    Args:
        name: testbed model.
        rows: the paper's rows, matched to the model's d (`sweeps.spec.spec_table`).
        settings: sampling settings.
        **train: overrides of the model's training config.

    Returns:
        {"table": row dicts, "grids": {row label: uint8 grid}, "sampler": the config as text,
        "initial_t": the sampler's first t}.
    """
    config = testbed_config(name, **train)
    model, _, _ = load_trained(config)
    source = testbed_source(name)
    sampler = source.sampler_config(num_steps=settings.num_steps, cfg_scale=settings.cfg_scale)
    labels = balanced_labels(source.num_classes, settings.per_class)
    seeds = sample_seeds(settings.base_seed, len(labels))
    with torch.no_grad():
        t0 = config.time_convention.times(initial_t(sampler), source.num_classes)
        c = model.condition(t0, torch.arange(source.num_classes))
    table, grids = [], {}
    for spec_row in spec_table(rows, c, settings.last_k):
        images, info = generate(
            denoiser(model), model.condition, source.family, labels, seeds, sampler,
            decode_digits, latent_shape=source.latent_shape, prune=spec_row["spec"],
            batch_size=len(labels), bf16=settings.bf16, progress=False,
        )  # fmt: skip
        scores = evaluate(images, profile="testbed", metrics=("fid", "is", "prc"))
        row = result_row(spec_row, info, scores, c.shape[1])
        row["class_prob"] = class_probability_score(images, labels)
        table.append(row)
        grids[spec_row["row"]] = class_grid(images, settings.per_class, settings.grid_per_class)
    return {
        "table": table,
        "grids": grids,
        "sampler": repr(sampler),
        "initial_t": initial_t(sampler),
    }
