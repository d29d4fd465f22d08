"""The pruning sweeps of Sec. 5 (Tables 2, 3, 6): run them, cached, and set them beside the paper.

The rows are defined in `sweeps.spec` (the paper's rows, matched to the testbed's d); the testbed
rows are produced by `sweeps.testbed`, the paper-profile rows by `generation.rows` (samples) and
`evaluation.scores` (scores), each cached under its own artifact kind. This module runs them
for a page or the `semantic-bottleneck sweep` command and shows them beside the paper's rows.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from semantic_bottleneck.book.cache import cached, cached_on_ranks, lookup
from semantic_bottleneck.book.display import readable
from semantic_bottleneck.book.params import resolve_parameters
from semantic_bottleneck.book.plots import REAL
from semantic_bottleneck.core.analysis import Missing
from semantic_bottleneck.evaluation.clip_score import (
    DEFAULT_MODEL,
    DEFAULT_PRETRAINED,
    DEFAULT_TEMPLATE,
)
from semantic_bottleneck.evaluation.fidelity import to_adm_images
from semantic_bottleneck.evaluation.inputs import MissingInputError
from semantic_bottleneck.evaluation.paired import reference_features
from semantic_bottleneck.evaluation.scores import (
    PaperEval,
    baseline_spread,
    paired_scores,
    score_samples,
)
from semantic_bottleneck.generation.cli import default_device, init_distributed, resolve_model
from semantic_bottleneck.generation.npz import load_samples
from semantic_bottleneck.generation.rows import RowSampler
from semantic_bottleneck.generation.run import rank_and_world
from semantic_bottleneck.sampling import balanced_labels, sample_seeds
from semantic_bottleneck.sweeps.spec import (
    CONTROLS,
    GRID_CLASSES,
    SCHEDULE_NAMES,
    SweepRow,
    SweepSettings,
    class_grid,
    control_rows,
    matched_count,
    matched_tau,
    paper_rows,
    prune_spec,
    removed_summary,
    result_row,
    spec_table,
    table2_rows,
    window_rows,
    window_settings,
    window_sweep_rows,
)
from semantic_bottleneck.sweeps.testbed import testbed_sweep
from semantic_bottleneck.training.data import digits
from semantic_bottleneck.training.testbed import SEED_MODEL, TRAINING_SEEDS, seed_name
from semantic_bottleneck.verdicts import paper
from semantic_bottleneck.zoo import fetch, registry

__all__ = [
    "CONTROLS",
    "GRID_CLASSES",
    "SCHEDULE_NAMES",
    "PaperEval",
    "SweepRow",
    "SweepSettings",
    "class_grid",
    "control_rows",
    "matched_count",
    "matched_tau",
    "paper_rows",
    "prune_spec",
    "removed_summary",
    "result_row",
    "spec_table",
    "window_rows",
]


def run_testbed_sweep(name: str, rows: list[SweepRow], settings: SweepSettings, **train) -> dict:
    """Sample every row from a testbed model and evaluate it (cached by every parameter).

    Args:
        name: testbed model ("testbed-ddpm" or "testbed-flow").
        rows: the paper's rows (`paper_rows`), matched to the model's d.
        settings: sampling settings.
        **train: overrides of the model's training config (e.g. steps).

    Returns:
        {"table": list of row dicts (row, tau, target count, removed, fid, is, class_prob,
        precision, recall), "grids": {row label: uint8 (classes, grid_per_class, 8, 8, 3)},
        "sampler": the sampler config as text}.
    """
    result = testbed_sweep(name, rows, settings, **train)  # each row cached
    result["numerics"] = numerics(settings.bf16)
    result["grids"] = {REAL: real_digits_grid(settings.grid_per_class), **result["grids"]}
    return result


SEED_ROWS = ("tail 0.02 t_i", "head 1 t_i", "tail 0.01 t_0")  # the headline rows of Table 2


def training_seed_sweeps(
    settings: SweepSettings, rows: tuple[str, ...] = SEED_ROWS
) -> dict[int, list[dict]]:
    """Table 2's baseline and `rows` swept from each training run of `testbed.SEED_MODEL` (seed 0
    and the shipped `testbed.TRAINING_SEEDS`), with the same sampling settings and noise.

    Returns:
        training seed -> the sweep's row dicts (each pruned row with its paired "ci").
    """
    chosen = list(table2_rows(rows).values())
    return {
        seed: run_testbed_sweep(seed_name(SEED_MODEL, seed), chosen, settings)["table"]
        for seed in (0, *TRAINING_SEEDS)
    }


def training_seed_table(sweeps: dict[int, list[dict]], metric: str = "fid") -> pd.DataFrame:
    """Each row's change from the baseline per training seed, with its 95% paired interval, and
    the spread of that change over the training seeds beside the two sampling noises of one
    run (the paired bootstrap's sd and the seed-block sd, each averaged over the seeds).

    Columns: row, "seed S" for each seed ("difference [low, high]"), mean change, sd over
    training seeds, bootstrap sd, seed-block sd.
    """
    labels = [r["row"] for r in next(iter(sweeps.values())) if r.get("ci")]
    out = []
    for label in labels:
        rows = {s: next(r for r in table if r["row"] == label) for s, table in sweeps.items()}
        cis = {s: r["ci"][metric] for s, r in rows.items()}
        diffs = np.array([ci["difference"] for ci in cis.values()])
        entry = {"row": label}
        entry |= {f"seed {s}": change_text(ci, CHANGE_FORMATS[metric]) for s, ci in cis.items()}
        blocks = [
            (r.get("seed_blocks") or {}).get(metric, {}).get("sd_at_n") for r in rows.values()
        ]
        entry |= {
            "mean change": float(diffs.mean()),
            "sd over training seeds": float(diffs.std(ddof=1)),
            "bootstrap sd": float(np.mean([ci["sd"] for ci in cis.values()])),
            "seed-block sd": float(np.mean(blocks)) if None not in blocks else None,
        }
        out.append(entry)
    return pd.DataFrame(out, columns=None if out else ["row"])


def real_digits_grid(per_class: int) -> np.ndarray:
    """The first `per_class` test digits of each class, beside which the figures show samples.

    Shapes: -> uint8 (10, per_class, 8, 8, 3).
    """
    x, y = digits("test")
    images, y = to_adm_images(x).numpy(), y.numpy()
    return np.stack([images[y == k][:per_class] for k in range(int(y.max()) + 1)])


def paper_inputs(name: str, cache_dir: str | None = None) -> list:
    """`analysis.Missing` for every input a paper-profile sweep of `name` needs and lacks:
    the checkpoint, its VAE, the ADM reference batch, the Inception and the CLIP weights."""
    entry = registry.get_checkpoint(name)
    needed = [name, entry.vae, "adm-ref-imagenet256", "inception-fidelity", "clip-vit-l-14-openai"]
    return [
        Missing(n, n, fetch.fetch_command(n)) for n in needed if fetch.locate(n, cache_dir) is None
    ]


class NeedsGPUError(RuntimeError):
    """A paper-profile sweep would sample full-size models on a CPU."""


def numerics(bf16: bool) -> str:
    """How the model ran, as a page shows it."""
    return "bf16 autocast" if bf16 else "float32 with TF32 matmuls (as the official scripts)"


def paper_sweep_plan(
    name: str, rows: list[SweepRow], settings: SweepSettings, cache_dir: str | None = None
) -> dict:
    """What a paper-profile sweep of `name` samples, before anything is loaded: the model's own
    sampler (its registry entry's settings, with `settings.num_steps` / `cfg_scale` applied),
    labels, seeds, each row's prune spec and each row's sample-cache key.

    The key holds the checkpoint file's identity, the decoder, the sampler, the labels' layout,
    the seeds and the numerics (`bf16`), so that every one of them is recorded with the row.
    """
    source = resolve_model(name)
    sampler = source.sampler_config(num_steps=settings.num_steps, cfg_scale=settings.cfg_scale)
    labels = balanced_labels(source.num_classes, settings.per_class)
    seeds = sample_seeds(settings.base_seed, len(labels))
    path = fetch.locate(name, cache_dir)
    base = dict(
        checkpoint=dict(name=name, size=path.stat().st_size, sha256=fetch.recorded_sha256(path)),
        vae=source.vae,
        sampler=repr(sampler),
        per_class=settings.per_class,
        base_seed=settings.base_seed,
        bf16=settings.bf16,
    )
    specs = spec_table(rows, None, settings.last_k, source.num_classes)
    keys = [dict(base, prune=None if r["spec"] is None else r["spec"].__dict__) for r in specs]
    return dict(source=source, sampler=sampler, labels=labels, seeds=seeds, specs=specs, keys=keys)


def cached_paper_sweep(
    name: str, rows: list[SweepRow], settings: SweepSettings, cache_dir: str | None = None
) -> dict | None:
    """The paper sweep's result when every row's samples are already cached, else None
    (nothing is sampled; missing scores of cached rows are computed)."""
    if paper_inputs(name, cache_dir):
        return None
    keys = paper_sweep_plan(name, rows, settings, cache_dir)["keys"]
    if any(lookup("paper-samples", key) is None for key in keys):
        return None
    return run_paper_sweep(name, rows, settings, cache_dir=cache_dir, progress=False)


def rows_to_fill(
    name: str, rows: list[SweepRow], settings: SweepSettings, cache_dir: str | None = None
) -> list[str]:
    """The labels of the rows whose samples are not cached yet (all of them when an input of
    the sweep is absent)."""
    if paper_inputs(name, cache_dir):
        return [r.label for r in rows]
    keys = paper_sweep_plan(name, rows, settings, cache_dir)["keys"]
    return [
        r.label for r, key in zip(rows, keys, strict=True) if lookup("paper-samples", key) is None
    ]


def run_paper_sweep(
    name: str,
    rows: list[SweepRow],
    settings: SweepSettings,
    scoring: PaperEval | None = None,
    *,
    cache_dir: str | None = None,
    device: str | None = None,
    batch_size: int = 64,
    progress: bool = True,
    allow_cpu: bool = False,
) -> dict | None:
    """Sample every row from an official checkpoint with the paper's tau and evaluate it: FID, IS
    and precision/recall against the ADM batch, and CLIP score. Needs a GPU in practice.

    Each row's samples are an artifact of their own (an ADM `.npz` with labels, seeds and removed
    counts, reusable by ADM's evaluator), keyed by the checkpoint, sampler, labels, seeds, prune
    spec and bf16; its scores are keyed by those samples and `scoring`. A killed sweep resumes at
    the first row not yet written, and pages sharing a sweep share its rows. Under torchrun every
    rank samples its shard of each row (`generation.run.generate_npz`) and rank 0 scores them.

    Args:
        name: registry checkpoint.
        rows: the paper's rows (`paper_rows`), pruned with the paper's tau.
        settings: sampling settings.
        scoring: CLIP settings (default `PaperEval()`).
        cache_dir: weights cache (default `fetch.default_cache_dir()`).
        device: where sampling runs (default: cuda:LOCAL_RANK when available). The model runs
            in float32 with TF32 matmuls as in the official scripts, unless settings.bf16.
        batch_size: samples per sampler call (per rank).
        progress: progress bars.
        allow_cpu: sample rows on a CPU (at XL size 5,000 samples take days there).

    Returns:
        {"table": row dicts (row, tau, removed, d, fid, is, clip, precision, recall), "grids":
        {row label: uint8 (classes, grid_per_class, H, W, 3)}, "sampler": the config as text,
        "samples": {row label: path of its .npz}}; None on ranks other than 0.

    Raises:
        MissingInputError: an input is not in the weights cache (named, with its fetch command),
            before any model is loaded.
        NeedsGPUError: rows are still to be sampled, the device is a CPU and allow_cpu is off.
    """
    scoring = scoring or PaperEval()
    missing = paper_inputs(name, cache_dir)
    if missing:
        listed = "; ".join(f"{m.name} (`{m.command}`)" for m in missing)
        raise MissingInputError(f"the {name} sweep needs {listed}", tuple(m.name for m in missing))
    device = device or default_device()
    plan = paper_sweep_plan(name, rows, settings, cache_dir)
    source, sampler, specs, keys = plan["source"], plan["sampler"], plan["specs"], plan["keys"]
    labels, seeds = plan["labels"], plan["seeds"]
    todo = sum(lookup("paper-samples", key) is None for key in keys)
    if todo and torch.device(device).type == "cpu" and not allow_cpu:
        raise NeedsGPUError(
            f"{todo} of the {len(keys)} rows of the {name} sweep are not sampled yet and no CUDA "
            f"device is present: {len(labels)} samples per row take days on a CPU. Run "
            f"`semantic-bottleneck sweep` on a GPU machine (rows are cached under the artifact "
            "cache's paper-samples/ and reused here), or call run_paper_sweep with allow_cpu=True."
        )
    sample = RowSampler(source, sampler, labels, seeds, cache_dir, device, settings.bf16)
    options = dict(batch_size=batch_size, progress=progress)
    folders = [
        cached_on_ranks("paper-samples", key, lambda out, s=r["spec"]: sample(s, out, **options))
        for r, key in zip(specs, keys, strict=True)
    ]
    if rank_and_world()[0] != 0:
        return None
    table, grids, files = [], {}, {}
    d = registry.get_checkpoint(name).config["hidden_size"]
    reference = []  # the ADM batch's features, computed once a row's scores are not cached
    scored = [
        _paper_scores(f / "samples.npz", f.name, scoring, cache_dir, reference) for f in folders
    ]
    base = next((i for i, r in enumerate(specs) if r["spec"] is None), None)
    for i, (spec_row, folder) in enumerate(zip(specs, folders, strict=True)):
        npz = folder / "samples.npz"
        samples = load_samples(npz)
        scores, features = scored[i]
        row = result_row(spec_row, {"removed": samples.removed}, scores, d)
        row["clip"] = scores["clip"]
        if base is not None:
            row.update(_paper_paired(scored[base][1], features, np.asarray(labels), settings,
                                     i == base, cache_dir, reference))  # fmt: skip
        table.append(row)
        grid = class_grid(samples.images, settings.per_class, settings.grid_per_class)
        grids[spec_row["row"]] = grid
        files[spec_row["row"]] = str(npz)
    return {
        "table": table,
        "grids": grids,
        "sampler": repr(sampler),
        "numerics": numerics(settings.bf16),
        "samples": files,
    }


def _eval_inputs(cache_dir) -> dict:
    return {n: fetch.recorded_sha256(fetch.locate(n, cache_dir)) for n in _EVAL_INPUTS}


def _paper_scores(npz, samples_key: str, scoring: PaperEval, cache_dir,
                  reference: list) -> tuple[dict, Path]:  # fmt: skip
    """FID, IS, precision/recall and CLIP score of one sample file, and the file of its
    per-sample quantities (cached); `reference` as in `_paper_paired`."""

    def produce(out) -> None:
        scores, per_sample = score_samples(
            npz, scoring, _reference(reference, cache_dir), cache_dir
        )
        (out / "scores.json").write_text(json.dumps(scores))
        np.savez(out / "features.npz", **per_sample)

    key = dict(samples=samples_key, scoring=scoring.__dict__, inputs=_eval_inputs(cache_dir))
    folder, _ = cached("paper-scores", key, produce)
    return json.loads((folder / "scores.json").read_text()), folder / "features.npz"


def _paper_paired(base: Path, features: Path, labels, settings: SweepSettings, is_base: bool,
                  cache_dir, reference: list) -> dict:  # fmt: skip
    """A paper row's paired bootstrap against the baseline ("ci"), or the baseline's own spread
    ("spread"), cached by the two feature files (their scores' folders) and the resampling;
    `reference` holds the ADM batch's features once a row has needed them."""
    key = dict(base=base.parent.name, row=features.parent.name, n_boot=settings.n_boot,
               seed=settings.base_seed, inputs=_eval_inputs(cache_dir))  # fmt: skip

    def produce(out) -> None:
        ref, n_boot, seed = _reference(reference, cache_dir), settings.n_boot, settings.base_seed
        if is_base:
            found = {"spread": baseline_spread(base, labels, n_boot, seed, ref)}
        else:
            found = {"ci": paired_scores(base, features, labels, n_boot, seed, ref)}
        (out / "paired.json").write_text(json.dumps(found))

    folder, _ = cached("paper-paired", key, produce)
    return json.loads((folder / "paired.json").read_text())


def _reference(reference: list, cache_dir):
    """The ADM batch's features (`paired.reference_features`), computed by the first row that
    needs them and kept in `reference` for the rest of the sweep."""
    if not reference:
        reference.append(reference_features("paper", cache_dir))
    return reference[0]


_EVAL_INPUTS = ("adm-ref-imagenet256", "inception-fidelity")


# is_10_splits is the protocol the paper's IS values match; is_adm has no paper column
METRIC_COLUMNS = ["fid", "is_10_splits", "is_adm", "clip", "precision", "recall"]


# the format of a difference from the baseline and its interval, per metric
CHANGE_FORMATS = {
    "fid": "{:+.3f}",
    "is_10_splits": "{:+.3f}",
    "clip": "{:+.2f}",
    "precision": "{:+.3f}",
    "recall": "{:+.3f}",
}


def change_text(ci: dict | None, fmt: str) -> str | None:
    """A difference from the baseline as a table shows it: "difference [low, high]"."""
    if not ci:
        return None
    return f"{fmt.format(ci['difference'])} [{fmt.format(ci['low'])}, {fmt.format(ci['high'])}]"


def ordered_labels(paper_labels: list[str], measured: list[str]) -> list[str]:
    """The paper's rows in order, each followed by its measured control rows ("<row> | ..."),
    then every other measured row (all-of-c and window rows) in the sweep's order."""
    extra = [m for m in measured if m not in paper_labels]
    out = []
    for label in paper_labels:
        out += [label, *(m for m in extra if m.startswith(f"{label} | "))]
    return out + [m for m in extra if m not in out]


def rows_beside_paper(table: list[dict], table_id: str, model: str, profile: str) -> pd.DataFrame:
    """The sweep's rows beside the paper's rows of the same label: paper | this run per metric,
    and, in the paper profile (same checkpoint, same metric), their difference; then, per
    metric, this run's difference from its own baseline with its 95% paired-bootstrap interval
    ("vs baseline": "difference [low, high]"). Control and window rows follow the row they
    control; they have no paper values. Columns keep the value keys (`display.readable` gives
    the headers a page shows). IS is reported under both protocols; the paper's values are
    `is_10_splits`, so only that one has a paper column.

    In the testbed profile the CLIP column holds the digits classifier's probability of the
    conditioned class (x100), the stand-in for CLIP score, and FID/IS/precision/recall use the
    digits classifier's features instead of Inception's.
    """
    theirs = paper.paper_table(table_id)
    theirs = theirs[theirs["model"] == model].reset_index(drop=True)
    paper_labels = [r.label for r in paper_rows(table_id, model)]
    theirs = theirs.assign(row=paper_labels).set_index("row")
    ours = pd.DataFrame(table, columns=["row"] if not table else None)
    ours = ours.rename(columns={"class_prob": "clip"}).set_index("row")
    labels = ordered_labels(paper_labels, list(ours.index))
    out = pd.DataFrame(index=pd.Index(labels, name="row"))
    out["removed (paper)"] = theirs.get("removed")
    for col in ("removed", "tau"):
        if col in ours.columns:
            out[f"{col} (this run)"] = ours[col]
    for col in METRIC_COLUMNS:
        if col in theirs.columns:
            out[f"{col} (paper)"] = theirs[col]
        if col in ours.columns:
            out[f"{col} (this run)"] = ours[col]
        if profile == "paper" and col in theirs.columns and col in ours.columns:
            out[f"{col} (diff)"] = ours[col] - theirs[col]  # same checkpoint, same metric
    if "ci" in ours.columns:
        for col, fmt in CHANGE_FORMATS.items():
            cis = ours["ci"].map(lambda ci, c=col: ci.get(c) if isinstance(ci, dict) else None)
            out[f"{col} (vs baseline)"] = cis.map(lambda ci, f=fmt: change_text(ci, f))
    if profile == "testbed":
        out = out.rename(
            columns={
                "clip (this run)": "class prob. x100 (this run, CLIP stand-in)",
                "clip (vs baseline)": "class prob. x100 (vs baseline)",
            }
        )
    return out


def relative_change(table: list[dict], label: str) -> tuple[float, float, float]:
    """A row's FID change relative to the baseline's FID, with its 95% paired interval:
    (estimate, low, high); without an interval (a sweep measured before them) low = high."""
    rows = {r["row"]: r for r in table}
    base, row = rows["baseline"]["fid"], rows[label]
    ci = (row.get("ci") or {}).get("fid")
    if ci is None:
        return (row["fid"] / base - 1,) * 3
    return tuple(v / base for v in (ci["difference"], ci["low"], ci["high"]))


# the Table 2 rows `ledger_measurements` reads besides the baseline: the ledger sweeps only these
# (each row is cached, so where the Table 2 page ran they are read, not sampled)
LEDGER_ROWS = (
    "tail 0.01 t_i",
    "tail 0.01 t_0",
    "tail 0.01 t_{n-k,n}",
    "tail 0.02 t_i",
    "head 1 t_i",
)


def ledger_measurements(table: list[dict]):
    """The evaluation claims of the ledger, measured on a Table 2 sweep (claim id ->
    Measurement): the relative FID change at the 66% tail row and at the 8-dimension head row,
    and that of the t_{n-k,n} row, each (estimate, low, high) with its 95% paired interval."""
    from semantic_bottleneck.verdicts.measures import Measurement  # the ledger's own type

    def measured(label: str, what: str) -> Measurement:
        est, low, high = relative_change(table, label)
        text = f"{est:+.2%} [{low:+.2%}, {high:+.2%}]"
        return Measurement((est, low, high), text, f"{what}: FID {text} vs baseline (95% paired)")

    late = measured("tail 0.01 t_{n-k,n}", "t_{n-k,n}")
    others = ", ".join(
        f"{name} {relative_change(table, f'tail 0.01 {name}')[0]:+.2%}" for name in ("t_i", "t_0")
    )
    late = Measurement(late.value, late.text, f"{late.detail}; other schedules: {others}")
    return {
        "pruning-keeps-quality": measured("tail 0.02 t_i", "66% tail row"),
        "head-removal-destroys-quality": measured("head 1 t_i", "8 head dims"),
        "late-step-pruning-best-fid": late,
    }


# metric -> which way is better, for the paper's improvement claims
BETTER = {"fid": "lower", "is_10_splits": "higher", "clip": "higher", "precision": "higher",
          "recall": "higher"}  # fmt: skip
PAPER_SAMPLES = 5000  # the paper's sample count of Tables 2, 3, 6


def paper_claims(table: list[dict], table_id: str, model: str, profile: str) -> pd.DataFrame:
    """The paper's own improvement claims of a table (a pruned row better than the paper's
    baseline in a metric), each judged against the noise this sweep measures at the paper's
    5,000 samples, in two ways.

    Paired: the paper's difference plus this run's paired interval of the same row about its own
    estimate. It holds if the paper's two runs shared their noise and its row moves the samples
    as much as this run's row does; a row that leaves the samples nearly unchanged here (a t_0
    row) has a paired interval near zero width, whatever the paper's row does.
    Independent sets: the paper's difference plus the sampling noise of a difference of two
    independently sampled sets, sqrt(2) times the half-width of the baseline's own 95% interval
    (`evaluation.paired.bootstrap_spread`), the noise of a 5,000-sample metric itself.

    Both are scaled from this run's sample count to 5,000 (spread as n^{-1/2},
    `core.bootstrap.scaled_interval`); in the testbed profile they are also taken relative to
    the testbed baseline's value and set on the paper's baseline (the testbed's noise as a
    fraction of its own metric, not ImageNet's). Verdicts: `rules.change_verdict`.

    Returns:
        One row per claim: row, metric, paper difference, interval at 5,000 and verdict (paired),
        independent interval and independent verdict (None without the baseline's spread), noise
        from (the row of this run, its sample count); empty without paired intervals.
    """
    from semantic_bottleneck.core.bootstrap import scaled_interval
    from semantic_bottleneck.verdicts.rules import change_verdict

    theirs = paper.paper_table(table_id)
    theirs = theirs[theirs["model"] == model].reset_index(drop=True)
    theirs.index = [r.label for r in paper_rows(table_id, model)]
    ours = {r["row"]: r for r in table}
    spread = (ours.get("baseline") or {}).get("spread") or {}
    out = []
    for label in theirs.index[1:]:
        row = ours.get(label) or {}
        for metric, better in BETTER.items():
            if metric not in theirs.columns or (ci := (row.get("ci") or {}).get(metric)) is None:
                continue
            diff = float(theirs.loc[label, metric] - theirs.loc["baseline", metric])
            if (diff < 0) != (better == "lower") or diff == 0:
                continue  # not an improvement claim
            scale = 1.0
            if profile == "testbed":
                scale = theirs.loc["baseline", metric] / ours["baseline"][_OURS.get(metric, metric)]
            d, low, high = ci["difference"], ci["low"], ci["high"]
            low, high = (d + (v - d) * scale for v in (low, high))
            low, high = scaled_interval(d, (low, high), row["n"], PAPER_SAMPLES)
            low, high = diff + (low - d), diff + (high - d)
            claim = {
                "row": label,
                "metric": metric,
                "paper difference": diff,
                "interval at 5,000": f"[{low:+.4g}, {high:+.4g}]",
                "verdict": change_verdict(low, high, better),
                "independent interval": None,
                "independent verdict": None,
                "noise from": f"this run's {label}, {row['n']} samples",
            }
            own = spread.get(metric)
            if own is not None:
                half = math.sqrt(2) * (own["high"] - own["low"]) / 2 * scale
                ilow, ihigh = scaled_interval(diff, (diff - half, diff + half), row["n"],
                                              PAPER_SAMPLES)  # fmt: skip
                claim["independent interval"] = f"[{ilow:+.4g}, {ihigh:+.4g}]"
                claim["independent verdict"] = change_verdict(ilow, ihigh, better)
            out.append(claim)
    return pd.DataFrame(out, columns=CLAIM_COLUMNS)


CLAIM_COLUMNS = ["row", "metric", "paper difference", "interval at 5,000", "verdict",
                 "independent interval", "independent verdict", "noise from"]  # fmt: skip
_OURS = {"clip": "class_prob"}  # a testbed row's key of a metric (the CLIP stand-in)


# ----------------------------------------------------------------------------- command line

SWEEP_PAGES = {
    "table2": "tab02-pruning-repa",
    "table3": "tab03-pruning-mg-lightningdit",
    "windows": "pruning-windows",  # Table 2's rows confined to windows of the sampler's steps
}


PAGE_SETTINGS = ("per_class", "base_seed", "num_steps", "last_k")  # sweep settings a page sets


def page_settings(table: str, profile: str, **overrides) -> tuple[dict, SweepSettings]:
    """The parameters of the table's page in a profile, with `overrides` applied, and the sweep
    settings they give: what the page samples (the windows page's last k is its width)."""
    page = {**resolve_parameters(SWEEP_PAGES[table], profile), **overrides}
    if table == "windows":
        page.setdefault("last_k", page["width"])
        return page, window_settings(page["per_class"], page["base_seed"], page["num_steps"],
                                     page["last_k"], page.get("cfg_scale"))  # fmt: skip
    values = {k: page[k] for k in PAGE_SETTINGS}
    return page, SweepSettings(**values, cfg_scale=page.get("cfg_scale"))


def sweep_rows(table: str, model: str, controls: bool, settings: SweepSettings) -> list[SweepRow]:
    """The rows `semantic-bottleneck sweep` samples: what the table's paper-profile page reads
    (the paper's rows of `model`, with the page's controls when `controls`; for the windows
    page, its windows of `settings.last_k` of the `settings.num_steps` steps)."""
    if table == "windows":
        return window_sweep_rows(settings.num_steps, settings.last_k)
    page, _ = page_settings(table, "paper")
    rows = paper_rows(table, None if table == "table2" else model)
    if controls:
        rows += control_rows(rows, page.get("controls", "all"), page.get("draws", 3))
    return rows


def sweep_settings(table: str, args) -> SweepSettings:
    """The paper-profile settings of the table's page, with the flags that were given applied, so
    that by default the command writes exactly the rows the page reads."""
    given = {k: getattr(args, k) for k in (*PAGE_SETTINGS, "cfg_scale")}
    settings = page_settings(table, "paper", **{k: v for k, v in given.items() if v is not None})
    n_boot = getattr(args, "n_boot", None)
    return settings[1] if n_boot is None else dataclasses.replace(settings[1], n_boot=n_boot)


def _cmd_sweep(args) -> int:
    name = args.model
    # Table 3 prints the same rows for MG and LightningDiT; other checkpoints are shown beside MG
    paper_model = "REPA" if args.table != "table3" else paper.PAPER_MODEL_NAMES.get(name, "MG")
    if paper_model not in ("REPA", "MG", "LightningDiT"):
        paper_model = "MG"
    try:
        settings = sweep_settings(args.table, args)
        rows = sweep_rows(args.table, paper_model, args.controls, settings)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    started = init_distributed()
    try:
        scoring = PaperEval(args.clip_model, args.clip_pretrained, args.clip_template)
        result = run_paper_sweep(
            name, rows, settings, scoring, cache_dir=args.cache_dir, device=args.device,
            batch_size=args.batch_size, progress=not args.no_progress, allow_cpu=args.allow_cpu,
        )  # fmt: skip
    except (MissingInputError, NeedsGPUError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        if started:
            torch.distributed.destroy_process_group()
    if result is not None:
        table_id = "table2" if args.table == "windows" else args.table
        table = rows_beside_paper(result["table"], table_id, paper_model, "paper")
        print(readable(table).to_string())  # plain text: the page shows display.table
    return 0


def add_parser(subparsers) -> None:
    """Register the `sweeps.run` subcommand."""
    p = subparsers.add_parser(
        "sweep",
        help="sample and score a pruning table from an official checkpoint into the cache the "
        "paper-profile pages read (under torchrun every rank samples a shard of each row)",
    )
    p.add_argument("table", choices=sorted(SWEEP_PAGES),
                   help="the paper's table, or the windows page's rows")  # fmt: skip
    p.add_argument(
        "model", help="registry checkpoint: repa-sit-xl-2 (table2), mg-sit-xl-2 or "
        "lightningdit-xl-1 (table3)",
    )  # fmt: skip
    unset = "default: the paper profile's value for the table's page"
    p.add_argument("--per-class", type=int, default=None, help=f"samples per class ({unset})")
    p.add_argument("--base-seed", type=int, default=None, help=f"seed of sample 0 ({unset})")
    p.add_argument("--num-steps", type=int, default=None, help=f"sampler steps ({unset})")
    p.add_argument("--last-k", type=int, default=None,
                   help=f"k of t_(n-k,n); for windows, the window width ({unset})")  # fmt: skip
    p.add_argument("--cfg-scale", type=float, default=None, help="default: the headline scale")
    p.add_argument("--n-boot", type=int, default=None,
                   help="resamples of each row's paired bootstrap (default 500)")  # fmt: skip
    p.add_argument("--clip-model", default=DEFAULT_MODEL, help="open_clip model of CLIP score")
    p.add_argument("--clip-pretrained", default=DEFAULT_PRETRAINED, help="open_clip tag or file")
    p.add_argument("--clip-template", default=DEFAULT_TEMPLATE, help='prompt with one "{}"')
    p.add_argument("--batch-size", type=int, default=64, help="samples per sampler call per rank")
    p.add_argument("--device", default=None, help="default: cuda:LOCAL_RANK if available")
    p.add_argument("--cache-dir", default=None, help="weights cache")
    p.add_argument("--allow-cpu", action="store_true", help="sample on a CPU (days at XL size)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument(
        "--controls", action="store_true",
        help="also the page's control rows (random, mean, variance, all of c)",
    )  # fmt: skip
    p.set_defaults(func=_cmd_sweep)
