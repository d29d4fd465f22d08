"""The pruning sweep of Sec. 5 (Tables 2, 3, 6): sample with c pruned, evaluate, beside the paper.

Each row of the paper's pruning tables becomes a `SweepRow`: which side of c is removed (tail
|c_i| < tau or head |c_i| > tau), when (the schedules t_i, t_0, t_{n-k,n}), and how much. In the
paper profile a row prunes with the paper's own tau. In the testbed profile d is far smaller than
1152, so each row's tau is chosen so that the removed fraction matches the paper's row (tail) or
the removed count matches it (head: "a handful of head dimensions"), and both tau and the count
are reported. Baseline and pruned runs share labels and noise seeds (paired comparison).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from semantic_bottleneck import metrics, paper
from semantic_bottleneck.cache import cached, lookup
from semantic_bottleneck.evaluation.clip_score import (
    DEFAULT_MODEL,
    DEFAULT_PRETRAINED,
    DEFAULT_TEMPLATE,
)
from semantic_bottleneck.sampling import PruneSpec


@dataclass(frozen=True)
class SweepRow:
    """One row of a pruning table.

    Attributes:
        label: row name, e.g. "tail 0.01 t_i".
        side: "tail", "head" or None (the baseline).
        schedule: "every" (t_i), "initial" (t_0) or "last_k" (t_{n-k,n}).
        paper_tau: the paper's tau for this row (None for the baseline).
        paper_removed: dimensions the paper removes, of paper_d.
        paper_d: dimension of the paper's c (1152).
    """

    label: str
    side: str | None
    schedule: str = "every"
    paper_tau: float | None = None
    paper_removed: int = 0
    paper_d: int = 1152


SCHEDULE_NAMES = {"every": "t_i", "initial": "t_0", "last_k": "t_{n-k,n}"}


def paper_rows(table_id: str, model: str | None = None) -> list[SweepRow]:
    """The rows of one of the paper's pruning tables (table2, table3, table6), in printed order.

    Args:
        table_id: "table2" (REPA), "table3" (MG, LightningDiT) or "table6".
        model: keep only this model's rows (the paper's model name); all when None.
    """
    if table_id not in ("table2", "table3", "table6"):
        raise ValueError(f"table_id must be table2, table3 or table6, got {table_id!r}")
    frame = paper.paper_table(table_id)
    if model is not None:
        frame = frame[frame["model"] == model]
        if frame.empty:
            raise ValueError(f"{table_id} has no rows of model {model!r}")
    rows = []
    for r in frame.to_dict("records"):
        side = r.get("side") if isinstance(r.get("side"), str) else None
        schedule = r.get("schedule") if isinstance(r.get("schedule"), str) else "every"
        tau = r.get("tau")
        tau = None if tau is None or (isinstance(tau, float) and np.isnan(tau)) else float(tau)
        removed = r.get("removed")
        removed = 0 if removed is None or np.isnan(removed) else int(removed)
        d = r.get("d")
        d = 1152 if d is None or np.isnan(d) else int(d)
        label = "baseline" if side is None else f"{side} {tau:g} {SCHEDULE_NAMES[schedule]}"
        rows.append(SweepRow(label, side, schedule, tau, removed, d))
    return rows


def matched_count(row: SweepRow, d: int) -> int:
    """Dimensions to remove at dimension d: the paper's fraction for the tail, its count for the
    head (both kept within 1..d-1 so something is removed and something kept)."""
    if row.side is None:
        return 0
    if row.side == "tail":
        return int(min(max(round(row.paper_removed / row.paper_d * d), 1), d - 1))
    return int(min(max(row.paper_removed, 1), d - 1))


def matched_tau(c: Tensor, row: SweepRow) -> tuple[float | None, int]:
    """The tau that removes `matched_count(row, d)` coordinates of the class-mean |c|.

    Args:
        c: c of every class at the initial t.
        row: the paper's row.

    Returns:
        (tau, count); (None, 0) for the baseline.

    Shapes: c (n, d).
    """
    count = matched_count(row, c.shape[1])
    if row.side is None:
        return None, 0
    mean_abs = c.abs().mean(0).double().numpy()
    return float(metrics.tau_for_count(mean_abs, count, row.side)), count


def prune_spec(row: SweepRow, tau: float | None, last_k: int) -> PruneSpec | None:
    """The pruning operator of a row (None for the baseline)."""
    if row.side is None:
        return None
    k = last_k if row.schedule == "last_k" else None
    return PruneSpec(side=row.side, tau=tau, schedule=row.schedule, k=k)


def spec_table(rows: list[SweepRow], c: Tensor | None, last_k: int) -> list[dict]:
    """Each row with its tau (matched to the testbed's d when c is given, else the paper's),
    its target count, and its PruneSpec."""
    out = []
    for row in rows:
        if c is None:
            tau, count = row.paper_tau, None
        else:
            tau, count = matched_tau(c, row)
        out.append(
            {
                "row": row.label,
                "side": row.side,
                "schedule": row.schedule,
                "tau": tau,
                "target count": count,
                "paper tau": row.paper_tau,
                "paper removed": f"{row.paper_removed}/{row.paper_d}",
                "spec": prune_spec(row, tau, last_k),
            }
        )
    return out


def result_row(spec_row: dict, info: dict, scores: dict, d: int) -> dict:
    """One measured row of a sweep: its tau and removed count, and FID, IS, precision, recall."""
    row = {k: spec_row[k] for k in ("row", "tau", "target count")}
    row.update(removed=removed_summary(info), d=d)
    row.update({k: scores[k] for k in ("fid", "is", "precision", "recall")})
    return row


def removed_summary(info: dict) -> float:
    """Mean number of coordinates of c removed per sample (conditional rows)."""
    removed = info.get("removed")
    if removed is None:
        return 0.0
    return float(torch.as_tensor(removed, dtype=torch.float64).mean())


@dataclass(frozen=True)
class SweepSettings:
    """What a sweep samples: every parameter that changes its numbers (hashed into the cache).

    Attributes:
        per_class: samples per class (the paper: 5 per ImageNet class).
        base_seed: seed of sample i is derived from (base_seed, i); shared by every row.
        num_steps: sampler steps (None: the family's headline count, 250).
        last_k: k of the t_{n-k,n} schedule (the paper does not state it).
        cfg_scale: guidance scale (None: the family's headline scale).
        grid_per_class: samples per class kept for the figure grids.
    """

    per_class: int = 20
    base_seed: int = 0
    num_steps: int | None = 100
    last_k: int = 20
    cfg_scale: float | None = None
    grid_per_class: int = 2


def testbed_sampler_config(objective: str, settings: SweepSettings, num_classes: int):
    """The headline sampler of the testbed model's convention (DiT DDPM or REPA SDE).

    The digits have one channel, so DiT's "first 3 channels" guidance becomes that one channel.
    """
    from semantic_bottleneck.sampling import headline_config

    family, extra = ("dit", {"guided_channels": 1}) if objective == "ddpm" else ("repa", {})
    steps, scale = settings.num_steps, settings.cfg_scale
    return family, headline_config(family, num_classes, num_steps=steps, cfg_scale=scale, **extra)


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
    from semantic_bottleneck.testbed import testbed_config, trained

    config = testbed_config(name, **train)
    key = dict(model=trained(config).name, rows=[r.__dict__ for r in rows], **settings.__dict__)

    def produce(out):
        result = _testbed_sweep(config, rows, settings)
        grids = result.pop("grids")
        np.savez(out / "grids.npz", **{f"row{i}": g for i, g in enumerate(grids.values())})
        (out / "sweep.json").write_text(json.dumps({**result, "labels": list(grids)}))

    folder, _ = cached("pruning-sweep", key, produce)
    result = json.loads((folder / "sweep.json").read_text())
    with np.load(folder / "grids.npz") as z:
        result["grids"] = {label: z[f"row{i}"] for i, label in enumerate(result.pop("labels"))}
    return result


def _testbed_sweep(config, rows: list[SweepRow], settings: SweepSettings) -> dict:
    from semantic_bottleneck.evaluation.clip_score import class_probability_score
    from semantic_bottleneck.evaluation.fidelity import evaluate
    from semantic_bottleneck.generation.decode import decode_digits
    from semantic_bottleneck.generation.run import generate
    from semantic_bottleneck.sampling import balanced_labels, initial_time, sample_seeds
    from semantic_bottleneck.testbed import load_trained
    from semantic_bottleneck.zoo import denoiser

    model, _, _ = load_trained(config)
    num_classes = model.num_classes
    family, sampler = testbed_sampler_config(config.objective, settings, num_classes)
    labels = balanced_labels(num_classes, settings.per_class)
    seeds = sample_seeds(settings.base_seed, len(labels))
    with torch.no_grad():
        t0 = config.time_convention.initial(num_classes)
        c = model.condition(t0, torch.arange(num_classes))
    table, grids = [], {}
    for spec_row in spec_table(rows, c, settings.last_k):
        images, info = generate(
            denoiser(model),
            model.condition,
            family,
            labels,
            seeds,
            sampler,
            decode_digits,
            latent_shape=(1, 8, 8),
            prune=spec_row["spec"],
            batch_size=len(labels),
            progress=False,
        )
        scores = evaluate(images, profile="testbed", metrics=("fid", "is", "prc"))
        row = result_row(spec_row, info, scores, c.shape[1])
        row["class_prob"] = class_probability_score(images, labels)
        table.append(row)
        grids[spec_row["row"]] = class_grid(images, settings.per_class, settings.grid_per_class)
    return {
        "table": table,
        "grids": grids,
        "sampler": repr(sampler),
        "initial_t": initial_time(sampler),
    }


def paper_inputs(name: str, cache_dir: str | None = None) -> list:
    """`analysis.Missing` for every input a paper-profile sweep of `name` needs and lacks:
    the checkpoint, its VAE, the ADM reference batch, the Inception and the CLIP weights."""
    from semantic_bottleneck.analysis import Missing
    from semantic_bottleneck.zoo import fetch, registry

    entry = registry.get_checkpoint(name)
    needed = [name, entry.vae, "adm-ref-imagenet256", "inception-fidelity", "clip-vit-l-14-openai"]
    return [
        Missing(n, n, fetch.fetch_command(n)) for n in needed if fetch.locate(n, cache_dir) is None
    ]


class NeedsGPUError(RuntimeError):
    """A paper-profile sweep would sample full-size models on a CPU."""


def page_sweep(
    profile: str, model: str, rows: list[SweepRow], settings: SweepSettings, train_steps=None
) -> dict | None:
    """The sweep behind a page: the testbed sweep (`run_testbed_sweep`), or the paper sweep
    (`run_paper_sweep`) when the checkpoint's inputs are present and its rows are cached or a GPU
    is there. Otherwise a notice saying what is missing, and None.

    Args:
        profile: "testbed" or "paper".
        model: testbed model or registry checkpoint.
        rows, settings: as in the sweeps.
        train_steps: testbed only: training steps of the model (None: its default).
    """
    from semantic_bottleneck import pages

    if profile == "testbed":
        return run_testbed_sweep(model, rows, settings, steps=train_steps)
    if profile != "paper":
        raise ValueError(f"profile must be 'testbed' or 'paper', got {profile!r}")
    missing = paper_inputs(model)
    pages.show_notice(missing)
    if missing:
        return None
    try:
        return run_paper_sweep(model, rows, settings)
    except NeedsGPUError as err:
        pages.show_note(str(err))
        return None


# the classes DiT's sample.py draws; the paper-profile figure grids show them
GRID_CLASSES = (207, 360, 387, 974, 88, 979, 417, 279)


@dataclass(frozen=True)
class PaperEval:
    """How a paper-profile sweep scores its samples (keys the score cache, not the samples').

    Attributes:
        clip_model: open_clip model name.
        clip_pretrained: open_clip tag or weights file.
        clip_template: CLIP prompt with one "{}" for the class name.
    """

    clip_model: str = DEFAULT_MODEL
    clip_pretrained: str = DEFAULT_PRETRAINED
    clip_template: str = DEFAULT_TEMPLATE


def run_paper_sweep(
    name: str,
    rows: list[SweepRow],
    settings: SweepSettings,
    scoring: PaperEval = PaperEval(),
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
        scoring: CLIP settings.
        cache_dir: weights cache (default `fetch.default_cache_dir()`).
        device: where sampling runs (default: cuda:LOCAL_RANK when available; bf16 there).
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
    from semantic_bottleneck.cache import cached_on_ranks
    from semantic_bottleneck.evaluation.inputs import MissingInputError
    from semantic_bottleneck.generation.cli import default_device, resolve_model
    from semantic_bottleneck.generation.npz import load_samples
    from semantic_bottleneck.generation.run import rank_and_world
    from semantic_bottleneck.sampling import balanced_labels, headline_config, sample_seeds
    from semantic_bottleneck.zoo import fetch, registry

    missing = paper_inputs(name, cache_dir)
    if missing:
        listed = "; ".join(f"{m.name} (`{m.command}`)" for m in missing)
        raise MissingInputError(f"the {name} sweep needs {listed}", tuple(m.name for m in missing))
    source = resolve_model(name)
    device = device or default_device()
    steps, scale = settings.num_steps, settings.cfg_scale
    sampler = headline_config(source.family, source.num_classes, num_steps=steps, cfg_scale=scale)
    labels = balanced_labels(source.num_classes, settings.per_class)
    seeds = sample_seeds(settings.base_seed, len(labels))
    path = fetch.locate(name, cache_dir)
    base = dict(
        checkpoint=dict(name=name, size=path.stat().st_size, sha256=fetch.recorded_sha256(path)),
        vae=source.vae,
        sampler=repr(sampler),
        per_class=settings.per_class,
        base_seed=settings.base_seed,
        bf16=torch.device(device).type == "cuda",
    )
    specs = spec_table(rows, None, settings.last_k)
    keys = [dict(base, prune=None if r["spec"] is None else r["spec"].__dict__) for r in specs]
    todo = sum(lookup("paper-samples", key) is None for key in keys)
    if todo and torch.device(device).type == "cpu" and not allow_cpu:
        raise NeedsGPUError(
            f"{todo} of the {len(keys)} rows of the {name} sweep are not sampled yet and no CUDA "
            f"device is present: {len(labels)} samples per row take days on a CPU. Run "
            f"`semantic-bottleneck sweep` on a GPU machine (rows are cached under the artifact "
            "cache's paper-samples/ and reused here), or call run_paper_sweep with allow_cpu=True."
        )
    sample = _RowSampler(source, sampler, labels, seeds, cache_dir, device, base["bf16"])
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
    return {"table": table, "grids": grids, "sampler": repr(sampler), "samples": files}


class _RowSampler:
    """Writes one row's samples.npz; loads the model and decoder on its first call."""

    def __init__(self, source, sampler, labels, seeds, cache_dir, device, bf16: bool):
        self.source, self.sampler, self.labels, self.seeds = source, sampler, labels, seeds
        self.cache_dir, self.device, self.bf16 = cache_dir, device, bf16
        self.model = self.decode = None

    def __call__(self, spec: PruneSpec | None, out, batch_size: int, progress: bool) -> None:
        from semantic_bottleneck.generation.cli import load_model
        from semantic_bottleneck.generation.decode import load_decoder
        from semantic_bottleneck.generation.run import generate_npz
        from semantic_bottleneck.zoo import denoiser

        src = self.source
        if self.model is None:
            torch.backends.cuda.matmul.allow_tf32 = True  # the official scripts' default
            self.model = load_model(src, self.cache_dir, self.device)
            self.decode = load_decoder(src.vae, src.family, self.cache_dir, self.device)
        generate_npz(
            out / "samples.npz", denoiser(self.model), self.model.condition, src.family,
            self.labels, self.seeds, self.sampler, self.decode, latent_shape=src.latent_shape,
            extra_info={"model": src.name, "vae": src.vae}, prune=spec, batch_size=batch_size,
            device=self.device, bf16=self.bf16, progress=progress,
        )  # fmt: skip


def _paper_scores(npz, samples_key: str, scoring: PaperEval, cache_dir) -> dict:
    """FID, IS, precision/recall and CLIP score of one sample file (cached)."""
    from semantic_bottleneck.evaluation.clip_score import clip_score
    from semantic_bottleneck.evaluation.fidelity import evaluate
    from semantic_bottleneck.generation.npz import load_samples
    from semantic_bottleneck.zoo import fetch

    def produce(out) -> None:
        samples = load_samples(npz)
        scores = evaluate(samples.images, profile="paper", cache_dir=cache_dir)
        scores["clip"] = clip_score(
            samples.images,
            samples.labels,
            scoring.clip_model,
            scoring.clip_pretrained,
            scoring.clip_template,
            device="cuda" if torch.cuda.is_available() else "cpu",
            cache_dir=cache_dir,
        )
        (out / "scores.json").write_text(json.dumps(scores))

    inputs = {n: fetch.recorded_sha256(fetch.locate(n, cache_dir)) for n in _EVAL_INPUTS}
    key = dict(samples=samples_key, scoring=scoring.__dict__, inputs=inputs)
    folder, _ = cached("paper-scores", key, produce)
    return json.loads((folder / "scores.json").read_text())


_EVAL_INPUTS = ("adm-ref-imagenet256", "inception-fidelity")


def class_grid(images, per_class: int, grid_per_class: int) -> np.ndarray:
    """The figure grid of a class-major sample set: the first `grid_per_class` samples of each
    class, or of `GRID_CLASSES` for an ImageNet-size set.

    Shapes: images (classes * per_class, H, W, 3) -> (classes shown, grid_per_class, H, W, 3).
    """
    images = np.asarray(images)
    num_classes = len(images) // per_class
    classes = list(GRID_CLASSES) if num_classes >= 1000 else slice(None)
    per = images.reshape(num_classes, per_class, *images.shape[1:])
    return np.ascontiguousarray(per[classes, :grid_per_class])


METRIC_COLUMNS = ["fid", "is", "clip", "precision", "recall"]


def beside_paper(table: list[dict], table_id: str, model: str, profile: str) -> pd.DataFrame:
    """The sweep's rows beside the paper's rows of the same label: paper | this run per metric,
    and, in the paper profile (same checkpoint, same metric), their difference.

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
    out = pd.DataFrame(index=labels)
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


def sweep_settings(table: str, args) -> SweepSettings:
    """The paper-profile settings of the table's page, with the flags that were given applied, so
    that by default the command writes exactly the rows the page reads."""
    from semantic_bottleneck.book_params import resolve_parameters

    page = resolve_parameters(SWEEP_PAGES[table], "paper")
    keys = ("per_class", "base_seed", "num_steps", "last_k")
    values = {k: page[k] for k in keys} | {
        k: getattr(args, k) for k in (*keys, "cfg_scale") if getattr(args, k) is not None
    }
    return SweepSettings(**values)


def _cmd_sweep(args) -> int:
    import sys

    from semantic_bottleneck.evaluation.inputs import MissingInputError
    from semantic_bottleneck.generation.cli import init_distributed

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
        print(beside_paper(result["table"], args.table, paper_model, "paper").to_string())
    return 0


def add_parser(subparsers) -> None:
    """Register the `sweep` subcommand."""
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
