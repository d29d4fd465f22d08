"""Table 7 in the paper profile: X-MDPT-L's c pruned on the DeepFashion test pairs, scored as
X-MDPT reports it (FID, SSIM, LPIPS, PSNR; `evaluation.deepfashion`).

Rows (`xmdpt_rows`): the baseline; the paper's row, tail tau = 0.1 (about 40% of X-MDPT-L's 1024
coordinates), under each schedule t_i, t_0 and t_{n-k,n}, since the paper does not state one;
the head control (the 4 largest coordinates, by count); and the controls of the class-conditional
sweeps beside the paper's row (`sweeps.spec.control_rows`): the same count removed at random,
the removed coordinates replaced by their mean over the conditions of the condition file (for a
continuous condition the "classes" are the file's conditions), and all of c.

Inputs, each checked before anything loads (`xmdpt_inputs`): the checkpoint, X-MDPT's VAE
folder (`xmdpt-vae`, unpacked), the condition file (`core.appendix.conditions_path("xmdpt")`,
whose row i must be the condition of pair i of ROOT/test_pairs.txt), the DeepFashion folder
(`evaluation.deepfashion`'s layout), torch-fidelity's Inception and LPIPS' AlexNet.

Sampling: X-MDPT's own sampler (`sampling.xmdpt`: DDIM over 50 respaced steps, power-cosine
guidance 2.0 / 0.01), noise of pair i from its own seed, so rows are paired with the baseline.
Each row's samples are one artifact (`xmdpt-samples`: an ADM npz of uint8 images with the pair
index as label, the seeds and the removed counts), keyed by the checkpoint file, the condition
file, the sampler, the seeds and the prune spec; a killed sweep resumes at the first row not
written. Under torchrun every rank samples a contiguous shard of each row and rank 0 merges the
shards and scores. Scores (`xmdpt-scores`) are per pair (SSIM, LPIPS, PSNR) with the Inception
features of the samples; a row's FID change against the baseline has a 95% paired-bootstrap
interval from those features, its SSIM, LPIPS and PSNR changes the normal interval of the
per-pair differences (`evaluation.reconstruction.mean_interval`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open

from semantic_bottleneck.book.cache import cached, cached_on_ranks, lookup
from semantic_bottleneck.core import appendix
from semantic_bottleneck.core.analysis import Missing
from semantic_bottleneck.core.bootstrap import percentile_interval, stratified_indices
from semantic_bottleneck.evaluation import deepfashion as df
from semantic_bottleneck.evaluation.inputs import MissingInputError
from semantic_bottleneck.evaluation.paired import frechet_to_reference, sample_features, sqrt_psd
from semantic_bottleneck.evaluation.reconstruction import mean_interval
from semantic_bottleneck.generation.npz import load_samples, merge_shards, save_samples, shard_path
from semantic_bottleneck.generation.ranks import barrier, rank_and_world
from semantic_bottleneck.generation.run import shard_indices
from semantic_bottleneck.sampling import initial_t, num_steps, sample_seeds
from semantic_bottleneck.sampling.labels import sample_noise
from semantic_bottleneck.sampling.pruning import prune_hook
from semantic_bottleneck.sampling.xmdpt import (
    NULL_ROW,
    XMDPT_DDIM,
    DDIMConfig,
    condition_rows,
    ddim_sample,
    decode_latents,
    xmdpt_condition_fn,
    xmdpt_denoiser,
)
from semantic_bottleneck.sweeps.continuous import TABLE7_ROWS
from semantic_bottleneck.sweeps.spec import SweepRow, control_rows, spec_table
from semantic_bottleneck.zoo import checkpoint, fetch, registry
from semantic_bottleneck.zoo import xmdpt as zoo_xmdpt

MODEL = "xmdpt-l-2"  # the paper's Table 7 model
VAE = "xmdpt-vae"
VAE_FOLDER = "diffuser_finetune_vae"  # infer_xmdpt.py:50
LPIPS = "lpips"  # registry asset of LPIPS' AlexNet backbone
INCEPTION = "inception-fidelity"
DEEPFASHION = "deepfashion"  # default folder of the test set under the weights cache
PAPER_ROW = "tail 0.1 t_i"
HEAD_ROW = "head 4 dims t_i"
CONDITIONS_COMMAND = "semantic-bottleneck xmdpt-conditions --dinov2-repo DIR"
DEFAULT_CONTROLS = {PAPER_ROW: ["random", "mean", "all"]}
CHANGE_METRICS = ("fid", "ssim", "lpips", "psnr")

# artifact kinds of this sweep (book.cache.PRODUCERS keys them by this module's code)
SAMPLES_KIND, SCORES_KIND, REFERENCE_KIND = "xmdpt-samples", "xmdpt-scores", "xmdpt-reference"


@dataclass(frozen=True)
class XmdptSettings:
    """What the Table 7 sweep samples and scores (hashed into the cache keys).

    Attributes:
        num_pairs: the first N pairs of the condition file and test_pairs.txt (None: every row
            of the condition file; the paper: the whole test set).
        base_seed: seed of pair i's noise is derived from (base_seed, i); shared by every row.
        num_steps: DDIM steps (X-MDPT: 50, infer_xmdpt.py:24).
        last_k: k of the t_{n-k,n} schedule (the paper does not state it).
        n_boot: resamples of the paired FID bootstrap.
        grid: pairs whose samples the figures show.
    """

    num_pairs: int | None = None
    base_seed: int = 0
    num_steps: int = 50
    last_k: int = 10
    n_boot: int = 500
    grid: int = 4


def xmdpt_rows(controls: str | dict | None = None, draws: int = 1) -> list[SweepRow]:
    """Table 7's rows (`sweeps.continuous.TABLE7_ROWS`: baseline, tail 0.1 under each schedule,
    the head control) and their controls (default `DEFAULT_CONTROLS`; {} for none)."""
    rows = list(TABLE7_ROWS)
    controls = DEFAULT_CONTROLS if controls is None else controls
    pruned = [r for r in rows if r.side == "tail"]
    return rows + (control_rows(pruned, controls, draws) if controls else [])


def xmdpt_specs(rows: list[SweepRow], last_k: int, conditions: int) -> list[dict]:
    """Each row's prune spec with the paper's tau; the head control by count (4 coordinates).

    Args:
        rows: `xmdpt_rows`.
        last_k: k of t_{n-k,n}.
        conditions: the conditions the mean control averages over (the file's rows).
    """
    specs = spec_table(rows, None, last_k, conditions)
    for spec_row, row in zip(specs, rows, strict=True):
        if row.side is not None and row.paper_tau is None and row.control != "all":
            spec = dataclasses.replace(spec_row["spec"], tau=None, count=row.paper_removed)
            spec_row.update(spec=spec, tau=None)
            spec_row["target count"] = row.paper_removed
    return specs


# ----------------------------------------------------------------------------- inputs


def default_root(cache_dir=None) -> Path:
    """Where the DeepFashion test set is looked for by default: `<weights cache>/deepfashion`."""
    return (Path(cache_dir) if cache_dir else fetch.default_cache_dir()) / DEEPFASHION


def vae_folder(cache_dir=None) -> Path:
    """The unpacked VAE folder: `<weights cache>/xmdpt-vae/diffuser_finetune_vae`."""
    cache = Path(cache_dir) if cache_dir else fetch.default_cache_dir()
    return cache / VAE / VAE_FOLDER


def _vae_missing(cache_dir) -> Missing | None:
    folder = vae_folder(cache_dir)
    if (folder / "config.json").is_file():
        return None
    unpack = f"unzip {folder.parent / registry.get_entry(VAE).filename} -d {folder.parent}"
    if fetch.locate(VAE, cache_dir) is not None:
        return Missing(VAE, "X-MDPT's VAE (archive not unpacked)", unpack)
    return Missing(VAE, "X-MDPT's VAE", f"{fetch.fetch_command(VAE)} && {unpack}")


def _root_missing(root: Path) -> Missing | None:
    needed = [root / df.PAIRS_FILE, root / df.TRAIN_PAIRS_FILE, root / df.IMAGE_DIR]
    absent = [str(p) for p in needed if not p.exists()]
    if not absent:
        return None
    return Missing(
        DEEPFASHION,
        "the DeepFashion test set",
        f"the DeepFashion pairs and images in evaluation.deepfashion's layout at {root} "
        f"(absent: {', '.join(absent)})",
    )


def xmdpt_inputs(name: str = MODEL, root=None, cache_dir=None) -> list[Missing]:
    """`analysis.Missing` for each input of the sweep that is absent, with the command or path
    that provides it: the checkpoint, X-MDPT's VAE, the condition file, the DeepFashion folder,
    the Inception weights and LPIPS' AlexNet."""
    root = Path(root) if root is not None else default_root(cache_dir)
    entry = registry.get_system(name)
    out = []
    if fetch.locate(entry, cache_dir) is None:
        out.append(Missing(name, entry.label, fetch.fetch_command(name)))
    out.append(_vae_missing(cache_dir))
    if not appendix.conditions_path("xmdpt", cache_dir).is_file():
        out.append(Missing("conditions", "X-MDPT's condition file", CONDITIONS_COMMAND))
    out.append(_root_missing(root))
    if fetch.locate(INCEPTION, cache_dir) is None:
        out.append(Missing(INCEPTION, "Inception (FID)", fetch.fetch_command(INCEPTION)))
    try:
        df.lpips_backbone(cache_dir=cache_dir)
    except MissingInputError:
        out.append(Missing(LPIPS, "LPIPS' AlexNet", fetch.fetch_command(LPIPS)))
    return [m for m in out if m is not None]


class NeedsGPUError(RuntimeError):
    """Rows of the X-MDPT sweep are still to be sampled and the device is a CPU."""


def _file_id(path: Path) -> dict:
    """A file's identity in a cache key: its name, size and sha256 (recorded by fetch, or
    hashed here)."""
    sha = fetch.recorded_sha256(path) or fetch.sha256_file(path)
    return dict(name=path.name, size=path.stat().st_size, sha256=sha)


def _text_sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def sweep_plan(name: str, rows, settings: XmdptSettings, root=None, cache_dir=None) -> dict:
    """What the sweep samples, before anything loads: the sampler config, the pairs, seeds,
    each row's prune spec and its sample-cache key (checkpoint file, condition file, VAE config,
    sampler, pair count, seeds)."""
    root = Path(root) if root is not None else default_root(cache_dir)
    conditions = appendix.conditions_path("xmdpt", cache_dir)
    with safe_open(str(conditions), "pt") as f:
        n_file = f.get_slice("src_latent").get_shape()[0]
    n = n_file if settings.num_pairs is None else settings.num_pairs
    pairs = df.read_pairs(root / df.PAIRS_FILE)
    if not 2 <= n <= min(n_file, len(pairs)):
        raise ValueError(
            f"num_pairs: expected 2 .. {min(n_file, len(pairs))} (the condition file has "
            f"{n_file} rows, test_pairs.txt {len(pairs)} pairs), got {n}"
        )
    config = dataclasses.replace(XMDPT_DDIM, num_sampling_steps=settings.num_steps)
    seeds = sample_seeds(settings.base_seed, n)
    vae = vae_folder(cache_dir) / "config.json"
    base = dict(
        checkpoint=_file_id(fetch.locate(registry.get_system(name), cache_dir)),
        system=name,
        conditions=_file_id(conditions),
        vae=dict(config=_text_sha(vae)),
        sampler=repr(config),
        num_pairs=n,
        base_seed=settings.base_seed,
    )
    specs = xmdpt_specs(rows, settings.last_k, n)
    keys = [dict(base, prune=None if r["spec"] is None else r["spec"].__dict__) for r in specs]
    return dict(config=config, seeds=seeds, n=n, pairs=pairs[:n], specs=specs, keys=keys,
                root=root)  # fmt: skip


def rows_to_fill(name: str, rows, settings: XmdptSettings, root=None, cache_dir=None) -> list:
    """The labels of the rows whose samples are not cached (all when an input is absent)."""
    if xmdpt_inputs(name, root, cache_dir):
        return [r.label for r in rows]
    keys = sweep_plan(name, rows, settings, root, cache_dir)["keys"]
    return [r.label for r, k in zip(rows, keys, strict=True) if lookup(SAMPLES_KIND, k) is None]


def cached_xmdpt_sweep(
    name: str, rows, settings: XmdptSettings, root=None, cache_dir=None
) -> dict | None:
    """The sweep's result when every row's samples are cached, else None (never samples;
    missing scores of cached rows are computed)."""
    if rows_to_fill(name, rows, settings, root, cache_dir):
        return None
    return run_xmdpt_sweep(name, rows, settings, root=root, cache_dir=cache_dir, progress=False)


# ----------------------------------------------------------------------------- sampling


class FileConditions:
    """(t, y) -> c of X-MDPT over the rows y of a whole condition file (NULL_ROW: c = T), in
    chunks moved to the model's device; the query of every row at one t (the class statistics of
    the mean control) is computed once and kept."""

    def __init__(self, model, inputs: dict, chunk: int = 256):
        self.model, self.inputs, self.chunk, self._all = model, inputs, chunk, {}
        self.n = len(inputs["src_latent"])

    def _compute(self, t, y):
        out = []
        for s in range(0, len(y), self.chunk):
            yy, tt = y[s : s + self.chunk], t[s : s + self.chunk]
            null = yy == NULL_ROW
            src = yy.masked_fill(null, 0).cpu()
            sub = {k: v[src] for k, v in self.inputs.items()}
            local = torch.where(null, yy, condition_rows(len(yy), yy.device))
            out.append(xmdpt_condition_fn(self.model, sub)(tt, local))
        return torch.cat(out)

    def __call__(self, t, y):
        every = len(y) == self.n and bool((y == torch.arange(self.n, device=y.device)).all())
        if every and bool((t == t[0]).all()):
            key = float(t[0])
            if key not in self._all:
                self._all[key] = self._compute(t, y)
            return self._all[key]
        return self._compute(t, y)


def sample_rows(model, inputs, vae, seeds, index, spec, config: DDIMConfig, batch_size: int,
                progress: bool = False) -> tuple[np.ndarray, list, list]:  # fmt: skip
    """uint8 samples of the pairs `index` of the condition file, with c pruned by `spec`: the
    sampler of `sampling.xmdpt.generate_xmdpt`, with the pruning masks and the class statistics
    of the mean control taken over the whole file (`FileConditions`).

    Returns:
        (images (len(index), 256, 256, 3) uint8, removed per pair, removed per null row).
    """
    from semantic_bottleneck.sampling.common import steps_iter

    device = model.pos_embed.device
    conditions = FileConditions(model, inputs)
    null = config.guidance.null_class if config.guidance.enabled else None
    latent_shape = tuple(inputs["src_latent"].shape[1:])
    images, removed, null_removed = [], [], []
    batches = [index[i : i + batch_size] for i in range(0, len(index), batch_size)]
    for rows in steps_iter(batches, progress, len(batches), "X-MDPT"):
        rows = torch.as_tensor(np.asarray(rows), dtype=torch.int64)
        batch = {k: v[rows] for k, v in inputs.items()}
        noise = sample_noise(latent_shape, [seeds[i] for i in rows.tolist()], device=device)
        hook = prune_hook(conditions, rows.to(device), initial_t(config), spec,
                          num_steps(config), null)  # fmt: skip
        local = condition_rows(len(rows), device)
        latents = ddim_sample(xmdpt_denoiser(model, batch), noise, local, config, c_fn_at=hook)
        images.append(df.to_uint8(decode_latents(vae, latents).cpu()))
        removed += hook.removed.tolist()
        if hook.null_mask is not None:
            null_removed += hook.null_mask.sum(dim=1).tolist()
    return np.concatenate(images), removed, null_removed


class _Sampler:
    """Writes one row's samples.npz (this rank's shard under torchrun); loads on first call."""

    def __init__(self, name, plan, cache_dir, device, batch_size, progress):
        self.name, self.plan, self.cache_dir, self.device = name, plan, cache_dir, device
        self.batch_size, self.progress, self.loaded = batch_size, progress, None

    def _load(self):
        if self.loaded is None:
            entry = registry.get_system(self.name)
            manifest = entry.manifest.split("/")[-1].removesuffix(".json")
            path = fetch.locate(entry, self.cache_dir)
            model = zoo_xmdpt.load_xmdpt(path, manifest).to(self.device)
            vae = zoo_xmdpt.load_vae(vae_folder(self.cache_dir)).to(self.device)
            inputs = zoo_xmdpt.read_inputs(appendix.conditions_path("xmdpt", self.cache_dir))
            n = self.plan["n"]
            self.loaded = model, vae, {k: v[:n] for k, v in inputs.items()}
        return self.loaded

    def __call__(self, spec, out: Path) -> None:
        model, vae, inputs = self._load()
        plan, (rank, world) = self.plan, rank_and_world()
        index = shard_indices(plan["n"], rank, world)
        info = dict(system=self.name, sampler=plan["config"].__class__.__name__,
                    prune=None if spec is None else spec.__dict__, world_size=world)  # fmt: skip
        path = out / "samples.npz"
        if len(index):
            images, removed, null_removed = sample_rows(
                model, inputs, vae, plan["seeds"], index, spec, plan["config"], self.batch_size,
                self.progress,
            )  # fmt: skip
            seeds = [plan["seeds"][i] for i in index]
            extra = dict(null_removed=null_removed or None, info=info)
            if world == 1:
                save_samples(path, images, index, seeds, removed, **extra)
            else:
                save_samples(shard_path(path, rank, world), images, index, seeds, removed,
                             index=index, sidecar=False, **extra)  # fmt: skip
        if world > 1:
            barrier()
            if rank == 0:
                shards = [shard_path(path, r, world) for r in range(world)
                          if len(shard_indices(plan["n"], r, world))]  # fmt: skip
                merge_shards(shards, path, remove=True)


# ----------------------------------------------------------------------------- scoring


def _reference(root: Path, cache_dir, cuda) -> Path:
    """FID statistics of the train split at 256x176 (`deepfashion.reference_statistics`)."""
    weights = fetch.locate(INCEPTION, cache_dir)
    key = dict(root=str(root.resolve()), train_pairs=_text_sha(root / df.TRAIN_PAIRS_FILE),
               inception=_file_id(weights))  # fmt: skip

    def produce(out: Path) -> None:
        df.reference_statistics(root, out / "reference.npz", weights=weights, cuda=cuda)

    return cached(REFERENCE_KIND, key, produce)[0] / "reference.npz"


def _features(images: np.ndarray, cache_dir, cuda) -> np.ndarray:
    """Inception pool features (2048) of the images at 256x176, FID's input."""
    return sample_features(df.eval_images(images), "paper", cache_dir, cuda=cuda)["fid"]


def _pair_scores(folder: Path, targets, lpips_net, context: dict) -> dict:
    """Per-pair SSIM, LPIPS and PSNR and the Inception features of one row's samples (cached)."""

    def produce(out: Path) -> None:
        images = load_samples(folder / "samples.npz").images
        scores = df.evaluate_pairs(images, targets, lpips_net=lpips_net())
        feats = _features(images, context["cache_dir"], context["cuda"])
        np.savez(out / "scores.npz", ssim=scores["ssim"], lpips=scores["lpips"],
                 psnr=scores["psnr"], features=feats)  # fmt: skip

    key = dict(samples=folder.name, targets=context["targets"], inputs=context["inputs"])
    out, _ = cached(SCORES_KIND, key, produce)
    with np.load(out / "scores.npz") as data:
        return {k: data[k] for k in data.files}


class _Fid:
    """FID of any resample of a set's features against fixed reference statistics (float64,
    `paired.frechet_to_reference`, R^1/2 computed once)."""

    def __init__(self, reference: Path, device: str):
        with np.load(reference) as ref:
            self.mu = torch.as_tensor(ref["mu"], dtype=torch.float64, device=device)
            self.sigma = torch.as_tensor(ref["sigma"], dtype=torch.float64, device=device)
        self.root = sqrt_psd(self.sigma)
        self.device, self.key = device, Path(reference).parent.name

    def __call__(self, feats: torch.Tensor, idx=None) -> float:
        x = feats if idx is None else feats[torch.as_tensor(idx, device=feats.device)]
        return frechet_to_reference(x, self.mu, self.sigma, self.root)


def _changes(row: dict, base: dict, fid: _Fid, n_boot: int) -> dict:
    """Each metric's difference row - baseline with its 95% interval: FID by the paired
    bootstrap of the features (`core.bootstrap`), SSIM, LPIPS and PSNR by the normal interval of
    the per-pair differences."""
    out = {}
    a, b = (torch.as_tensor(s["features"], dtype=torch.float64, device=fid.device)
            for s in (base, row))  # fmt: skip
    everyone = fid(b) - fid(a)
    draws = [fid(b, idx) - fid(a, idx) for idx in stratified_indices(np.zeros(len(a)), n_boot)]
    low, high = percentile_interval(draws)
    out["fid"] = dict(difference=everyone, low=low, high=high, sd=float(np.std(draws)))
    for key in ("ssim", "lpips", "psnr"):
        diff = np.asarray(row[key], np.float64) - np.asarray(base[key], np.float64)
        if len(diff) < 2 or not np.isfinite(diff).all():
            out[key] = dict(difference=float(np.mean(diff)), low=None, high=None)
            continue
        mean, half = mean_interval(diff)
        out[key] = dict(difference=mean, low=mean - half, high=mean + half)
    return out


def _summary(values) -> tuple[float, float | None]:
    v = np.asarray(values, np.float64)
    if len(v) >= 2 and np.isfinite(v).all():
        return mean_interval(v)
    return float(np.mean(v)), None


def run_xmdpt_sweep(
    name: str,
    rows: list[SweepRow],
    settings: XmdptSettings,
    *,
    root=None,
    cache_dir=None,
    device: str | None = None,
    batch_size: int = 16,
    progress: bool = True,
    allow_cpu: bool = False,
) -> dict | None:
    """Sample every row (cached per row, sharded under torchrun) and score it on rank 0.

    Args:
        name: the X-MDPT release (`xmdpt-l-2` for the paper's Table 7).
        rows: `xmdpt_rows`.
        settings: what is sampled.
        root: the DeepFashion folder (default `default_root`).
        cache_dir: weights cache.
        device: where sampling runs (default: cuda:LOCAL_RANK when available).
        batch_size: pairs per sampler call (per rank); the samples do not depend on it.
        progress: progress bars.
        allow_cpu: sample rows on a CPU.

    Returns:
        {"table": one dict per row (row, tau, target count, control, removed, null_removed, d, n,
        fid, ssim, ssim_ci, lpips, lpips_ci, psnr, psnr_ci, ci: {metric: {difference, low,
        high}} against the baseline), "grids": {"source", "target", row label: uint8
        (grid, 256, 256, 3)}, "sampler", "pairs", "samples": {row: npz path}}; None on other ranks.

    Raises:
        MissingInputError: an input is absent (each named with what provides it), before loading.
        NeedsGPUError: rows are still to be sampled on a CPU without allow_cpu.
    """
    from semantic_bottleneck.generation.cli import default_device

    missing = xmdpt_inputs(name, root, cache_dir)
    if missing:
        listed = "; ".join(f"{m.name} ({m.command})" for m in missing)
        raise MissingInputError(f"the {name} Table 7 sweep needs {listed}",
                                tuple(m.name for m in missing))  # fmt: skip
    if rows[0].side is not None:
        raise ValueError(f"rows: expected the baseline first, got {rows[0].label!r}")
    device = device or default_device()
    plan = sweep_plan(name, rows, settings, root, cache_dir)
    todo = sum(lookup(SAMPLES_KIND, k) is None for k in plan["keys"])
    if todo and torch.device(device).type == "cpu" and not allow_cpu:
        raise NeedsGPUError(
            f"{todo} of the {len(rows)} rows of the {name} Table 7 sweep are not sampled yet and "
            "no CUDA device is present. Run `semantic-bottleneck xmdpt-sweep` on a GPU machine "
            "(rows are cached under the artifact cache's xmdpt-samples/ and reused here), or "
            "call run_xmdpt_sweep with allow_cpu=True."
        )
    sampler = _Sampler(name, plan, cache_dir, device, batch_size, progress)
    folders = [
        cached_on_ranks(SAMPLES_KIND, key, lambda out, s=r["spec"]: sampler(s, out))
        for r, key in zip(plan["specs"], plan["keys"], strict=True)
    ]
    if rank_and_world()[0] != 0:
        return None
    return _score(name, plan, folders, settings, cache_dir, device)


def _score(name, plan, folders, settings, cache_dir, device) -> dict:
    root = plan["root"]
    cuda = torch.device(device).type == "cuda"
    targets = df.load_targets(root, plan["pairs"])
    inputs = {INCEPTION: _file_id(fetch.locate(INCEPTION, cache_dir)),
              LPIPS: _file_id(df.lpips_backbone(cache_dir=cache_dir))}  # fmt: skip
    context = dict(cache_dir=cache_dir, cuda=cuda, inputs=inputs,
                   targets=dict(root=str(root.resolve()), pairs=_text_sha(root / df.PAIRS_FILE),
                                n=plan["n"]))  # fmt: skip
    net = []

    def lpips_net():
        if not net:
            net.append(df.load_lpips(cache_dir=cache_dir).to(device))
        return net[0]

    reference = _reference(root, cache_dir, cuda)
    fid = _Fid(reference, device)
    scores = [_pair_scores(f, targets, lpips_net, context) for f in folders]
    d = registry.read_manifest(registry.get_system(name).manifest)["config"]["hidden_size"]
    table, grids, files = [], {}, {}
    shown = min(settings.grid, plan["n"])
    grids["source"] = df.load_images(root, [p.source for p in plan["pairs"][:shown]])
    grids["target"] = targets[:shown]
    pose_keys = [p.target for p in plan["pairs"][:shown]]
    if df.has_poses(root, pose_keys):
        poses = torch.from_numpy(df.load_poses(root, pose_keys))
        grids["pose"] = df.to_uint8(poses)
    for spec_row, folder, row_scores in zip(plan["specs"], folders, scores, strict=True):
        samples = load_samples(folder / "samples.npz")
        row = {k: spec_row[k] for k in ("row", "tau", "target count", "control")}
        removed = np.zeros(1) if samples.removed is None else samples.removed
        nulls = samples.null_removed
        row.update(removed=float(np.mean(removed)), d=d, n=len(samples))
        row["null_removed"] = None if nulls is None else float(np.mean(nulls))
        row["fid"] = fid(torch.as_tensor(row_scores["features"], dtype=torch.float64,
                                         device=device))  # fmt: skip
        for key in ("ssim", "lpips", "psnr"):
            row[key], row[f"{key}_ci"] = _summary(row_scores[key])
        row["ci"] = _change(folders[0], folder, scores[0], row_scores, fid, settings.n_boot)
        table.append(row)
        grids[spec_row["row"]] = samples.images[:shown]
        files[spec_row["row"]] = str(folder / "samples.npz")
    return {"table": table, "grids": grids, "sampler": repr(plan["config"]), "pairs": plan["n"],
            "samples": files, "reference": str(reference)}  # fmt: skip


def _change(base_folder, folder, base, row, fid: _Fid, n_boot: int) -> dict:
    """A row's changes against the baseline (cached: the bootstrap of 2048-d FIDs is slow)."""
    if folder == base_folder:
        return {}

    def produce(out: Path) -> None:
        (out / "changes.json").write_text(json.dumps(_changes(row, base, fid, n_boot)))

    key = dict(changes=folder.name, baseline=base_folder.name, n_boot=n_boot,
               reference=fid.key)  # fmt: skip
    out, _ = cached(SCORES_KIND, key, produce)
    return json.loads((out / "changes.json").read_text())


# ----------------------------------------------------------------------------- the condition file

DINOV2 = {"dino_pose": "dinov2-vitb14", "dino_image": "dinov2-vitg14"}  # registry assets


def condition_inputs(root=None, dinov2_repo=None, cache_dir=None, num_pairs=None) -> list[Missing]:
    """`analysis.Missing` for each input of `build_conditions` that is absent: the DeepFashion
    pairs, the source images and target keypoints of the pairs, a local facebookresearch/dinov2
    clone, the two DINOv2 weight files and X-MDPT's VAE."""
    root = Path(root) if root is not None else default_root(cache_dir)
    out = []
    if not (root / df.PAIRS_FILE).is_file():
        out.append(Missing(DEEPFASHION, "the DeepFashion test pairs", str(root / df.PAIRS_FILE)))
    else:
        pairs = df.read_pairs(root / df.PAIRS_FILE)[:num_pairs]
        images = [p.source for p in pairs if not df.image_file(root, p.source).is_file()]
        poses = [p.target for p in pairs if not df.pose_file(root, p.target).is_file()]
        if images:
            out.append(Missing(DEEPFASHION, f"{len(images)} source images", f"e.g. "
                               f"{df.image_file(root, images[0])}"))  # fmt: skip
        if poses:
            out.append(Missing(DEEPFASHION, f"{len(poses)} target keypoint files", f"e.g. "
                               f"{df.pose_file(root, poses[0])}"))  # fmt: skip
    if dinov2_repo is None or not (Path(dinov2_repo) / "hubconf.py").is_file():
        out.append(Missing("dinov2-repo", "facebookresearch/dinov2's code (hubconf.py)",
                           "git clone https://github.com/facebookresearch/dinov2 DIR; "
                           "pass --dinov2-repo DIR"))  # fmt: skip
    for name in DINOV2.values():
        if fetch.locate(name, cache_dir) is None:
            out.append(Missing(name, registry.get_entry(name).notes.split(" (")[0],
                               fetch.fetch_command(name)))  # fmt: skip
    out.append(_vae_missing(cache_dir))
    return [m for m in out if m is not None]


def source_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 images as the dataset's `source_image`: ToTensor then Normalize(0.5, 0.5), i.e.
    (x / 255 - 0.5) / 0.5 (my_dataset.py:152-154, 247-250).

    Shapes: (N, H, W, 3) uint8 -> float32 (N, 3, H, W) in [-1, 1].
    """
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div(255)
    return (x - 0.5) / 0.5


def build_conditions(
    root=None, dinov2_repo=None, cache_dir=None, num_pairs: int | None = None,
    batch_size: int = 8, seed: int = 0, device: str | None = None, progress: bool = True,
    encoders: dict | None = None,
) -> Path:  # fmt: skip
    """Write X-MDPT's condition file from the DeepFashion test pairs: row i is pair i of
    ROOT/test_pairs.txt, its source image and its target pose drawn from the target's keypoints
    as X-MDPT draws them (`evaluation.deepfashion.render_pose`), encoded by
    `zoo.xmdpt.encode_conditions` (DINOv2 B/14 on the pose, g/14 on the source image, the VAE
    latent of the source image).

    Args:
        root: the DeepFashion folder (default `<weights cache>/deepfashion`).
        dinov2_repo: a local clone of facebookresearch/dinov2 (its hubconf builds the models).
        cache_dir: the weights cache (DINOv2 weights, X-MDPT's VAE; the file goes to its
            `conditions/xmdpt.safetensors`).
        num_pairs: the first N pairs (None: all).
        batch_size: pairs per encoder call.
        seed: seeds the VAE latent samples, drawn batch after batch in pair order.
        device: default cuda when available.
        progress: a progress bar.
        encoders: {"dino_pose", "dino_image", "vae"} modules to use instead of loading them
            (the inputs of the data are still checked).

    Raises:
        MissingInputError: an input is absent (each is named with what provides it), before
            anything loads.

    Returns:
        The condition file's path.
    """
    from tqdm.auto import tqdm

    root = Path(root) if root is not None else default_root(cache_dir)
    missing = condition_inputs(root, dinov2_repo, cache_dir, num_pairs)
    if encoders is not None:
        missing = [m for m in missing if m.name == DEEPFASHION]
    if missing:
        raise MissingInputError(
            "X-MDPT's condition file needs:\n"
            + "\n".join(f"- {m.label} ({m.name}): {m.command}" for m in missing),
            tuple(m.name for m in missing),
        )
    pairs = df.read_pairs(root / df.PAIRS_FILE)[:num_pairs]
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if encoders is None:
        encoders = {key: zoo_xmdpt.load_dinov2(dinov2_repo, name.replace("-", "_"),
                                               fetch.locate(name, cache_dir))
                    for key, name in DINOV2.items()}  # fmt: skip
        encoders["vae"] = zoo_xmdpt.load_vae(vae_folder(cache_dir))
    encoders = {k: m.to(device) for k, m in encoders.items()}
    generator = torch.Generator(device).manual_seed(seed)
    parts = []
    for s in tqdm(range(0, len(pairs), batch_size), desc="X-MDPT conditions", unit="batch",
                  disable=not progress):  # fmt: skip
        batch = pairs[s : s + batch_size]
        source = source_tensor(df.load_images(root, [p.source for p in batch])).to(device)
        poses = torch.from_numpy(df.load_poses(root, [p.target for p in batch])).to(device)
        parts.append(zoo_xmdpt.encode_conditions(source, poses, generator=generator, **encoders))
    inputs = {k: torch.cat([p[k] for p in parts]) for k in zoo_xmdpt.INPUTS}
    note = (f"{len(pairs)} DeepFashion test pairs of {root / df.PAIRS_FILE} in file order "
            f"(row i = pair i); target poses drawn from pose/ keypoints; VAE latent samples "
            f"seed {seed}, batches of {batch_size}")  # fmt: skip
    out = appendix.conditions_path("xmdpt", cache_dir)
    return checkpoint.save_atomic(inputs, out, metadata={"conditions": note})


def _cmd_conditions(args) -> int:
    try:
        out = build_conditions(args.root, args.dinov2_repo, args.cache_dir, args.num_pairs,
                               args.batch_size, args.seed, args.device,
                               not args.no_progress)  # fmt: skip
    except (MissingInputError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


# ----------------------------------------------------------------------------- command line

PAGE = "tab07-pruning-continuous"


def page_settings(**overrides) -> tuple[dict, XmdptSettings]:
    """The paper-profile parameters of Table 7's page, with `overrides`, and the settings they
    give: what the page reads."""
    from semantic_bottleneck.book.params import resolve_parameters

    page = {**resolve_parameters(PAGE, "paper"), **overrides}
    settings = XmdptSettings(num_pairs=page["num_pairs"], base_seed=page["base_seed"],
                             num_steps=page["num_steps"], last_k=page["last_k"])  # fmt: skip
    return page, settings


def _cmd(args) -> int:
    from semantic_bottleneck.generation.cli import init_distributed

    given = dict(num_pairs=args.num_pairs, base_seed=args.base_seed, num_steps=args.num_steps,
                 last_k=args.last_k)  # fmt: skip
    page, settings = page_settings(**{k: v for k, v in given.items() if v is not None})
    name = args.model or page["system"]
    rows = xmdpt_rows(page["controls"], page["draws"])
    root = args.root or page["deepfashion_root"]
    started = init_distributed()
    try:
        result = run_xmdpt_sweep(
            name, rows, settings, root=root, cache_dir=args.cache_dir, device=args.device,
            batch_size=args.batch_size, progress=not args.no_progress, allow_cpu=args.allow_cpu,
        )  # fmt: skip
    except (MissingInputError, NeedsGPUError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        if started:
            torch.distributed.destroy_process_group()
    if result is not None:
        for row in result["table"]:
            print(row["row"], {k: row[k] for k in ("removed", "fid", "ssim", "lpips", "psnr")})
    return 0


def add_parser(subparsers) -> None:
    """Register `xmdpt-sweep`: sample and score Table 7 from X-MDPT into the cache the
    paper-profile page reads (under torchrun every rank samples a shard of each row)."""
    p = subparsers.add_parser(
        "xmdpt-sweep",
        help="sample and score Table 7 (X-MDPT on DeepFashion) into the cache the paper-profile "
        "page reads; rows resume one by one, sharded under torchrun",
    )
    unset = "default: the paper profile's value for Table 7's page"
    p.add_argument("--model", default=None, help=f"X-MDPT release ({unset}: {MODEL})")
    p.add_argument("--root", default=None, help="DeepFashion folder (default: <cache>/deepfashion)")
    p.add_argument("--num-pairs", type=int, default=None, help=f"first N test pairs ({unset})")
    p.add_argument("--base-seed", type=int, default=None, help=f"seed of pair 0 ({unset})")
    p.add_argument("--num-steps", type=int, default=None, help=f"DDIM steps ({unset})")
    p.add_argument("--last-k", type=int, default=None, help=f"k of t_(n-k,n) ({unset})")
    p.add_argument("--batch-size", type=int, default=16, help="pairs per sampler call per rank")
    p.add_argument("--device", default=None, help="default: cuda:LOCAL_RANK if available")
    p.add_argument("--cache-dir", default=None, help="weights cache")
    p.add_argument("--allow-cpu", action="store_true", help="sample on a CPU")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd)
    c = subparsers.add_parser(
        "xmdpt-conditions",
        help="write X-MDPT's condition file from the DeepFashion test pairs (target poses drawn "
        "from their keypoints, encoded by DINOv2 and the VAE)",
    )
    c.add_argument("--root", default=None, help="DeepFashion folder (default: <cache>/deepfashion)")
    c.add_argument("--dinov2-repo", default=None, help="a local clone of facebookresearch/dinov2")
    c.add_argument("--num-pairs", type=int, default=None, help="first N test pairs (default: all)")
    c.add_argument("--batch-size", type=int, default=8, help="pairs per encoder call")
    c.add_argument("--seed", type=int, default=0, help="seed of the VAE latent samples")
    c.add_argument("--device", default=None, help="default: cuda if available")
    c.add_argument("--cache-dir", default=None, help="weights cache")
    c.add_argument("--no-progress", action="store_true", help="no progress bar")
    c.set_defaults(func=_cmd_conditions)
