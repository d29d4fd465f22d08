"""The testbed pruning sweep's producer: sample every row from a testbed model and score it.

Kept apart from the tables and pages (`sweeps.run`) so that the artifact cache keys these rows by the
code that samples and scores them, and by nothing that only shows them. Each row is an artifact of
its own (keyed by the model, the row, its prune spec and the settings), so that pages asking for
different rows of one model share the rows they have in common, and a row with a control is
sampled once whichever page asks for it. A pruned row holds its paired bootstrap against the
baseline row of the same settings (`evaluation.paired`), and the same difference on disjoint
blocks of the sampling seeds.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from semantic_bottleneck.book.cache import cached
from semantic_bottleneck.evaluation.clip_score import class_probability_score
from semantic_bottleneck.evaluation.paired import (
    SampleSet,
    bootstrap_spread,
    paired_bootstrap,
    reference_features,
    sample_features,
    seed_block_spread,
    set_scores,
)
from semantic_bottleneck.generation.decode import decode_digits
from semantic_bottleneck.generation.run import ModelCalls, generate
from semantic_bottleneck.sampling import balanced_labels, initial_t, sample_seeds
from semantic_bottleneck.sweeps.spec import (
    SweepRow,
    SweepSettings,
    class_grid,
    result_row,
    spec_table,
)
from semantic_bottleneck.training.testbed import (
    load_trained,
    testbed_config,
    testbed_source,
    trained,
)
from semantic_bottleneck.zoo import denoiser


class TestbedRows:
    """A testbed model ready to sample the rows of a pruning table: its sampler, the labels and
    noise seeds every row shares (paired rows), and c of every class at the sampler's first t
    (what each row's tau is matched on).

    Attributes: config, model, source, sampler, labels (N,), seeds (N,), c (num_classes, d);
    calls (the baseline's model calls, `generation.run.ModelCalls`) and baselines (baseline
    folder -> its `paired.SampleSet`), which the rows sampled after the baseline reuse.
    """

    def __init__(self, name: str, settings: SweepSettings, **train):
        self.settings = settings
        self.config = testbed_config(name, **train)
        self.model, _, _ = load_trained(self.config)
        self.source = testbed_source(name)
        n = self.source.num_classes
        self.sampler = self.source.sampler_config(
            num_steps=settings.num_steps, cfg_scale=settings.cfg_scale
        )
        self.labels = balanced_labels(n, settings.per_class)
        self.seeds = sample_seeds(settings.base_seed, len(self.labels))
        with torch.no_grad():
            t0 = self.config.time_convention.times(initial_t(self.sampler), n)
            self.c = self.model.condition(t0, torch.arange(n))
        self.baselines: dict[Path, SampleSet] = {}  # baseline folder -> its set, resamples kept
        self.calls = ModelCalls(denoiser(self.model))

    def sample(self, spec) -> tuple[torch.Tensor, dict]:
        """One row's images (uint8 (N, 8, 8, 3)) and info, c pruned by `spec` (None: baseline).

        The baseline's model calls are kept (`generation.run.ModelCalls`), so a row sampled
        after it in this sweep reuses those it shares with it (all before its first pruned step).
        """
        m, s = self.model, self.source
        model_fn = self.calls.recording() if spec is None else self.calls.replaying()
        return generate(
            model_fn, m.condition, s.family, self.labels, self.seeds, self.sampler,
            decode_digits, latent_shape=s.latent_shape, prune=spec, batch_size=len(self.labels),
            bf16=self.settings.bf16, progress=False,
        )  # fmt: skip

    def summary(self) -> dict:
        """What a sweep's result records of its sampling: the sampler as text and its first t."""
        return {"sampler": repr(self.sampler), "initial_t": initial_t(self.sampler)}


SEED_BLOCKS = 4  # disjoint blocks of the sampling seeds (5 per class each at 20 per class)


def testbed_sweep(name: str, rows: list[SweepRow], settings: SweepSettings, **train) -> dict:
    """Sample and score every row of a pruning table from a testbed model, each row cached.

    Args:
        name: testbed model.
        rows: the paper's rows and their controls, matched to the model's d
            (`sweeps.spec.spec_table`); the first row with no side is the baseline.
        settings: sampling settings.
        **train: overrides of the model's training config.

    Returns:
        {"table": row dicts (a pruned row with "ci": {metric: difference, low, high, sd} and
        "seed_blocks": {metric: mean, sd, sd_at_n}; the baseline with "spread": {metric: value,
        low, high, sd}, `paired.bootstrap_spread`), "grids": {row label: uint8 grid},
        "sampler": the config as text, "initial_t": the sampler's first t}.
    """
    if not any(r.side is None for r in rows):
        raise ValueError("rows: expected a baseline row (side None) to pair every row with")
    run = TestbedRows(name, settings, **train)
    specs = spec_table(rows, run.c, settings.last_k)
    base = next(s for s in specs if s["spec"] is None)
    base_folder = _cached_row(name, run, base, None, **train)
    table, grids = [], {}
    for spec_row in specs:
        folder = (
            base_folder
            if spec_row is base
            else _cached_row(name, run, spec_row, base_folder, **train)
        )
        table.append({**json.loads((folder / "row.json").read_text()), "row": spec_row["row"]})
        grids[spec_row["row"]] = np.load(folder / "grid.npy")
    return {"table": table, "grids": grids, **run.summary()}


def _row_key(name: str, run: TestbedRows, spec_row: dict, **train) -> dict:
    spec = spec_row["spec"]
    model = trained(testbed_config(name, **train)).name
    return dict(model=model, spec=None if spec is None else spec.__dict__, **run.settings.__dict__)


def _cached_row(name: str, run: TestbedRows, spec_row: dict, base_folder, **train):
    """The folder of one row: row.json (its scores), grid.npy, features.npz (per-sample features
    and class probabilities); a pruned row's scores hold its paired bootstrap against the
    baseline's features in `base_folder`."""

    def produce(out):
        images, info = run.sample(spec_row["spec"])
        feats, ref = sample_features(images, "testbed"), reference_features("testbed")
        row = result_row(spec_row, info, set_scores(feats, ref), run.c.shape[1])
        prob = class_probability_score(images, run.labels, per_sample=True).numpy()
        row["class_prob"] = float(prob.mean())
        np.savez(out / "features.npz", clip=prob, **feats)
        if base_folder is not None:
            row.update(_paired(base_folder, feats, prob, run, ref))
        else:  # the baseline: the sampling noise of each metric of one set
            own = SampleSet(feats, prob, ref)
            labels, settings = run.labels.numpy(), run.settings
            row["spread"] = bootstrap_spread(own, labels, settings.n_boot, settings.base_seed)
            own_set.append(own)
        np.save(
            out / "grid.npy",
            class_grid(images, run.settings.per_class, run.settings.grid_per_class),
        )
        (out / "row.json").write_text(json.dumps(row))

    own_set: list[SampleSet] = []
    folder, _ = cached("pruning-sweep", _row_key(name, run, spec_row, **train), produce)
    if own_set:  # its resample scores, computed for its spread, serve every row's bootstrap
        run.baselines[folder] = own_set[0]
    return folder


def _paired(base_folder, feats: dict, prob, run: TestbedRows, ref) -> dict:
    """The row's paired bootstrap and seed-block spread against the baseline's features (its
    set built once per sweep: rows share their resamples, so its resample scores are too)."""
    if base_folder not in run.baselines:
        with np.load(base_folder / "features.npz") as z:
            feats_base = {k: z[k] for k in ("fid", "logits", "prc")}
            run.baselines[base_folder] = SampleSet(feats_base, z["clip"], ref)
    base = run.baselines[base_folder]
    row = SampleSet(feats, prob, ref)
    labels = run.labels.numpy()
    return {
        "ci": paired_bootstrap(base, row, labels, run.settings.n_boot, run.settings.base_seed),
        "seed_blocks": seed_block_spread(base, row, labels, SEED_BLOCKS),
    }


def cached_sweep(kind: str, name: str, rows: list[SweepRow], settings: SweepSettings,
                 sweep: Callable[[], dict], **train) -> dict:  # fmt: skip
    """A testbed sweep's result from the artifact cache of `kind`, produced by `sweep()` when
    absent, keyed by the trained model, the rows and the settings (and the producing code).

    Returns:
        the result as `sweep` returns it, its "grids" (label -> uint8 array) included.
    """
    config = testbed_config(name, **train)
    key = dict(model=trained(config).name, rows=[r.__dict__ for r in rows], **settings.__dict__)

    def produce(out):
        result = sweep()
        grids = result.pop("grids")
        np.savez(out / "grids.npz", **{f"row{i}": g for i, g in enumerate(grids.values())})
        (out / "sweep.json").write_text(json.dumps({**result, "labels": list(grids)}))

    folder, _ = cached(kind, key, produce)
    result = json.loads((folder / "sweep.json").read_text())
    with np.load(folder / "grids.npz") as z:
        result["grids"] = {label: z[f"row{i}"] for i, label in enumerate(result.pop("labels"))}
    return result
