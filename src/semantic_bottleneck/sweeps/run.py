"""The pruning sweeps of Sec. 5 (Tables 2, 3, 6): run them, cached, and set them beside the paper.

The rows are defined in `sweeps.spec` (the paper's rows, matched to the testbed's d); the testbed
rows are produced by `sweeps.testbed`, the paper-profile rows by `generation.rows` (samples) and
`evaluation.scores` (scores), each cached under its own artifact kind. This module runs them
for a page or the `semantic-bottleneck sweep` command and shows them beside the paper's rows.
"""

from __future__ import annotations

import json
import sys
from functools import partial

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
from semantic_bottleneck.evaluation.scores import PaperEval, score_samples
from semantic_bottleneck.generation.cli import default_device, init_distributed, resolve_model
from semantic_bottleneck.generation.npz import load_samples
from semantic_bottleneck.generation.rows import RowSampler
from semantic_bottleneck.generation.run import rank_and_world
from semantic_bottleneck.sampling import balanced_labels, sample_seeds
from semantic_bottleneck.sweeps.spec import (
    GRID_CLASSES,
    SCHEDULE_NAMES,
    SweepRow,
    SweepSettings,
    class_grid,
    matched_count,
    matched_tau,
    paper_rows,
    prune_spec,
    removed_summary,
    result_row,
    spec_table,
)
from semantic_bottleneck.sweeps.testbed import cached_sweep, testbed_sweep
from semantic_bottleneck.training.data import digits
from semantic_bottleneck.verdicts import paper
from semantic_bottleneck.zoo import fetch, registry

__all__ = [
    "GRID_CLASSES",
    "SCHEDULE_NAMES",
    "PaperEval",
    "SweepRow",
    "SweepSettings",
    "class_grid",
    "matched_count",
    "matched_tau",
    "paper_rows",
    "prune_spec",
    "removed_summary",
    "result_row",
    "spec_table",
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
    produce = partial(testbed_sweep, name, rows, settings, **train)
    result = cached_sweep("pruning-sweep", name, rows, settings, produce, **train)
    result["numerics"] = numerics(settings.bf16)
    result["grids"] = {REAL: real_digits_grid(settings.grid_per_class), **result["grids"]}
    return result


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
    specs = spec_table(rows, None, settings.last_k)
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
    for spec_row, folder in zip(specs, folders, strict=True):
        npz = folder / "samples.npz"
        samples = load_samples(npz)
        scores = _paper_scores(npz, folder.name, scoring, cache_dir)
        row = result_row(spec_row, {"removed": samples.removed}, scores, d)
        row["clip"] = scores["clip"]
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


def _paper_scores(npz, samples_key: str, scoring: PaperEval, cache_dir) -> dict:
    """FID, IS, precision/recall and CLIP score of one sample file (cached)."""

    def produce(out) -> None:
        scores = score_samples(npz, scoring, cache_dir)
        (out / "scores.json").write_text(json.dumps(scores))

    inputs = {n: fetch.recorded_sha256(fetch.locate(n, cache_dir)) for n in _EVAL_INPUTS}
    key = dict(samples=samples_key, scoring=scoring.__dict__, inputs=inputs)
    folder, _ = cached("paper-scores", key, produce)
    return json.loads((folder / "scores.json").read_text())


_EVAL_INPUTS = ("adm-ref-imagenet256", "inception-fidelity")


# is_10_splits is the protocol the paper's IS values match; is_adm has no paper column
METRIC_COLUMNS = ["fid", "is_10_splits", "is_adm", "clip", "precision", "recall"]


def rows_beside_paper(table: list[dict], table_id: str, model: str, profile: str) -> pd.DataFrame:
    """The sweep's rows beside the paper's rows of the same label: paper | this run per metric,
    and, in the paper profile (same checkpoint, same metric), their difference. Columns keep the
    value keys (`display.readable` gives the headers a page shows). IS is reported under both
    protocols; the paper's values are `is_10_splits`, so only that one has a paper column.

    In the testbed profile the CLIP column holds the digits classifier's probability of the
    conditioned class (x100), the stand-in for CLIP score, and FID/IS/precision/recall use the
    digits classifier's features instead of Inception's.
    """
    theirs = paper.paper_table(table_id)
    theirs = theirs[theirs["model"] == model].reset_index(drop=True)
    labels = [r.label for r in paper_rows(table_id, model)]
    theirs = theirs.assign(row=labels).set_index("row")
    ours = pd.DataFrame(table, columns=["row"] if not table else None)
    ours = ours.rename(columns={"class_prob": "clip"}).set_index("row")
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
    if profile == "testbed":
        out = out.rename(columns={"clip (this run)": "class prob. x100 (this run, CLIP stand-in)"})
    return out


def ledger_measurements(table: list[dict]) -> dict[str, float]:
    """The evaluation claims of the ledger, measured on a Table 2 sweep (claim id -> value):
    relative FID change at the 66% tail row and at the 8-dimension head row, and FID of
    t_{n-k,n} pruning relative to the best of the other two schedules."""
    fid = {r["row"]: r["fid"] for r in table}
    base = fid["baseline"]
    other = min(fid["tail 0.01 t_i"], fid["tail 0.01 t_0"])
    return {
        "pruning-keeps-quality": fid["tail 0.02 t_i"] / base - 1,
        "head-removal-destroys-quality": fid["head 1 t_i"] / base - 1,
        "late-step-pruning-best-fid": fid["tail 0.01 t_{n-k,n}"] / other - 1,
    }


# ----------------------------------------------------------------------------- command line

SWEEP_PAGES = {"table2": "tab02-pruning-repa", "table3": "tab03-pruning-mg-lightningdit"}


PAGE_SETTINGS = ("per_class", "base_seed", "num_steps", "last_k")  # sweep settings a page sets


def page_settings(table: str, profile: str, **overrides) -> tuple[dict, SweepSettings]:
    """The parameters of the table's page in a profile, with `overrides` applied, and the sweep
    settings they give: what the page samples."""
    page = {**resolve_parameters(SWEEP_PAGES[table], profile), **overrides}
    values = {k: page[k] for k in PAGE_SETTINGS}
    return page, SweepSettings(**values, cfg_scale=page.get("cfg_scale"))


def sweep_settings(table: str, args) -> SweepSettings:
    """The paper-profile settings of the table's page, with the flags that were given applied, so
    that by default the command writes exactly the rows the page reads."""
    given = {k: getattr(args, k) for k in (*PAGE_SETTINGS, "cfg_scale")}
    return page_settings(table, "paper", **{k: v for k, v in given.items() if v is not None})[1]


def _cmd_sweep(args) -> int:
    name = args.model
    # Table 3 prints the same rows for MG and LightningDiT; other checkpoints are shown beside MG
    paper_model = "REPA" if args.table == "table2" else paper.PAPER_MODEL_NAMES.get(name, "MG")
    if paper_model not in ("REPA", "MG", "LightningDiT"):
        paper_model = "MG"
    try:
        rows = paper_rows(args.table, None if args.table == "table2" else paper_model)
        settings = sweep_settings(args.table, args)
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
        table = rows_beside_paper(result["table"], args.table, paper_model, "paper")
        print(readable(table).to_string())  # plain text: the page shows display.table
    return 0


def add_parser(subparsers) -> None:
    """Register the `sweeps.run` subcommand."""
    p = subparsers.add_parser(
        "sweep",
        help="sample and score a pruning table from an official checkpoint into the cache the "
        "paper-profile pages read (under torchrun every rank samples a shard of each row)",
    )
    p.add_argument("table", choices=sorted(SWEEP_PAGES), help="the paper's table")
    p.add_argument(
        "model", help="registry checkpoint: repa-sit-xl-2 (table2), mg-sit-xl-2 or "
        "lightningdit-xl-1 (table3)",
    )  # fmt: skip
    unset = "default: the paper profile's value for the table's page"
    p.add_argument("--per-class", type=int, default=None, help=f"samples per class ({unset})")
    p.add_argument("--base-seed", type=int, default=None, help=f"seed of sample 0 ({unset})")
    p.add_argument("--num-steps", type=int, default=None, help=f"sampler steps ({unset})")
    p.add_argument("--last-k", type=int, default=None, help=f"k of t_(n-k,n) ({unset})")
    p.add_argument("--cfg-scale", type=float, default=None, help="default: the headline scale")
    p.add_argument("--clip-model", default=DEFAULT_MODEL, help="open_clip model of CLIP score")
    p.add_argument("--clip-pretrained", default=DEFAULT_PRETRAINED, help="open_clip tag or file")
    p.add_argument("--clip-template", default=DEFAULT_TEMPLATE, help='prompt with one "{}"')
    p.add_argument("--batch-size", type=int, default=64, help="samples per sampler call per rank")
    p.add_argument("--device", default=None, help="default: cuda:LOCAL_RANK if available")
    p.add_argument("--cache-dir", default=None, help="weights cache")
    p.add_argument("--allow-cpu", action="store_true", help="sample on a CPU (days at XL size)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_sweep)
