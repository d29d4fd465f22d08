"""The diffusion trainer: AdaLN transformers from the zoo, with REPA alignment and the nPR monitor.

One loop for both conventions ("ddpm": DiT's epsilon/learned-sigma objective with integer t;
"repa": linear path, velocity, t = 1 noise) and both datasets (the testbed's digits, ImageNet
latents). With `family="repa"` and a `repa_encoder` it is REPA's `train.py`: the projection loss
on block `encoder_depth`, AdamW at a constant rate, gradient clipping, EMA, autocast, and
several processes under torchrun. Checkpoints carry the model, its EMA, the optimiser, the config
as plain types (`args`), the step (`steps`) and every process's RNG states, so
`torch.load(weights_only=True)` reads them and a resumed run continues exactly where it stopped.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file
from tqdm import tqdm

from semantic_bottleneck.training import distributed, runs
from semantic_bottleneck.training.config import PRECISIONS, TrainConfig, with_overrides
from semantic_bottleneck.training.data import DIGITS_DATASETS, DigitsSource, condition_inputs
from semantic_bottleneck.training.imagenet import ImageNetSource, require_prepared
from semantic_bottleneck.training.monitor import (
    JsonlLog,
    c_statistics,
    class_conditions,
    time_label_statistics,
)
from semantic_bottleneck.training.objectives import ddpm_loss, dit_process, linear_flow_loss
from semantic_bottleneck.training.repa import load_encoder, repa_loss
from semantic_bottleneck.zoo import build_model

__all__ = ["Session", "TrainConfig", "new_session", "train", "train_step", "with_overrides"]

RANK_SEED_STRIDE = 1_000_003  # keeps the batch generators of different processes apart
# fields a resumed run may change: where inputs live and where the run stops, not its trajectory
RESUMABLE_CHANGES = ("steps", "data_dir", "encoder_weights")


@torch.no_grad()
def update_ema(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model, parameter by parameter."""
    for e, p in zip(ema.parameters(), model.parameters(), strict=True):
        e.mul_(decay).add_(p.detach(), alpha=1 - decay)


def make_source(config: TrainConfig, procs, local_batch: int, start_step: int, num_workers: int):
    """The batch source of `config.dataset`, with the frozen REPA encoder when one is set.

    The encoder is built before any seeding (building the digits classifier may train it).
    """
    if config.dataset == "imagenet" and not config.data_dir:
        raise ValueError(
            "dataset 'imagenet' needs --data-dir, the folder written by "
            "`semantic-bottleneck train prepare-imagenet`"
        )
    if config.dataset == "imagenet":
        require_prepared(config.data_dir)  # before loading the encoder
    encoder = (
        load_encoder(config.repa_encoder, config.encoder_weights) if config.repa_encoder else None
    )
    if encoder is not None and encoder.embed_dim != config.z_dim:
        raise ValueError(
            f"z_dim={config.z_dim} but the {config.repa_encoder} encoder gives "
            f"{encoder.embed_dim}-wide tokens"
        )
    if config.dataset in DIGITS_DATASETS:
        return DigitsSource(local_batch, procs.device, encoder, config.dataset)
    return ImageNetSource(
        config.data_dir,
        config.batch_size,
        procs.rank,
        procs.world_size,
        config.seed,
        start_step,
        procs.device,
        encoder,
        num_workers,
    )


def _rng_state(gen: torch.Generator, device: torch.device) -> dict:
    state = {"generator": gen.get_state(), "cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(gen: torch.Generator, state: dict, device: torch.device) -> None:
    gen.set_state(state["generator"])
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _check_resume(state: dict, config: TrainConfig, path: Path, world_size: int) -> None:
    """Refuse a checkpoint of another trajectory, or one written by another process count."""
    now = asdict(config)
    saved = state["args"]
    changed = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
    if any(k not in RESUMABLE_CHANGES for k in changed):
        raise ValueError(
            f"{path} was written by another config (differs in {changed}; only "
            f"{list(RESUMABLE_CHANGES)} may change on resume)"
        )
    if len(state["rng"]) != world_size:
        raise ValueError(
            f"{path} was written by {len(state['rng'])} processes; an exact resume needs the "
            f"same number, got {world_size}"
        )


@dataclass
class Session:
    """The live objects of a run: model (and its DDP/compiled wrapper), EMA, optimiser, data."""

    config: TrainConfig
    procs: distributed.Processes
    model: torch.nn.Module  # the plain module: state dicts, monitor
    net: torch.nn.Module  # what the step calls (DDP and/or compiled around model)
    ema: torch.nn.Module
    opt: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    gen: torch.Generator  # t, noise, batches, latent samples
    source: object  # .batch(generator, autocast) -> (x0, y, zs)
    autocast: torch.autocast
    schedule: object = None  # DDPM process (ddpm objective)


def new_session(
    config: TrainConfig, procs: distributed.Processes, source, compile_model: bool = False
) -> Session:
    """Seed, build the model, its EMA, AdamW (fused on CUDA) and the gradient scaler.

    The model starts from seed + rank (REPA); DDP then broadcasts rank 0's weights.
    """
    dev = procs.device
    torch.manual_seed(config.seed + procs.rank)  # model init and label dropout
    model = build_model(config.family, **config.model_config()).to(dev)
    ema = copy.deepcopy(model).requires_grad_(False).eval()
    opt = torch.optim.AdamW(
        model.parameters(),
        lr=config.lr,
        betas=(config.adam_beta1, config.adam_beta2),
        eps=config.adam_eps,
        weight_decay=config.weight_decay,
        fused=True if dev.type == "cuda" else None,
    )
    net = distributed.wrap(model, procs)
    dtype = PRECISIONS[config.mixed_precision]
    return Session(
        config=config,
        procs=procs,
        model=model,
        net=torch.compile(net) if compile_model else net,
        ema=ema,
        opt=opt,
        scaler=torch.amp.GradScaler(dev.type, enabled=config.mixed_precision == "fp16"),
        gen=torch.Generator(dev).manual_seed(config.seed + 1 + RANK_SEED_STRIDE * procs.rank),
        source=source,
        autocast=torch.autocast(dev.type, dtype=dtype or torch.float32, enabled=dtype is not None),
        schedule=dit_process() if config.objective == "ddpm" else None,
    )


def train_step(s: Session, c_fn: Callable | None = None) -> dict[str, torch.Tensor]:
    """One optimiser step: batch, loss (REPA: denoising + proj_coeff * projection), clipped
    AdamW update, EMA update. The forward runs under autocast, the losses in float32.

    Args:
        s: the session.
        c_fn: called on c inside the forward (the monitor records the batch's c with it).

    Returns:
        {"loss": denoising loss, "grad_norm": pre-clip norm, "proj_loss" (repa family)}, tensors.
    """
    cfg = s.config
    x0, y, zs = s.source.batch(s.gen, s.autocast)

    def model_fn(x, t, y):
        with s.autocast:
            return s.net(x, t, y, c_fn=c_fn)

    out = {}
    if cfg.family == "repa":
        denoising, out["proj_loss"] = repa_loss(model_fn, x0, y, zs, s.gen, cfg.timestep_set)
        loss = denoising + cfg.proj_coeff * out["proj_loss"]
    elif cfg.objective == "ddpm":
        loss = denoising = ddpm_loss(model_fn, x0, y, s.gen, s.schedule)
    else:
        loss = denoising = linear_flow_loss(model_fn, x0, y, s.gen, cfg.timestep_set)
    s.opt.zero_grad(set_to_none=True)
    s.scaler.scale(loss).backward()
    s.scaler.unscale_(s.opt)  # clip the true gradients (a no-op without fp16)
    grad_norm = torch.nn.utils.clip_grad_norm_(s.model.parameters(), cfg.grad_clip)
    s.scaler.step(s.opt)
    s.scaler.update()
    update_ema(s.ema, s.model, cfg.ema_decay)
    return {"loss": denoising, **out, "grad_norm": grad_norm}


def _checkpoint(s: Session, step: int) -> dict:
    return dict(
        model=s.model.state_dict(),
        ema=s.ema.state_dict(),
        opt=s.opt.state_dict(),
        scaler=s.scaler.state_dict(),
        args=asdict(s.config),
        steps=step,
    )


def _restore(s: Session, state: dict) -> None:
    s.model.load_state_dict(state["model"])
    s.ema.load_state_dict(state["ema"])
    s.opt.load_state_dict(state["opt"])
    s.scaler.load_state_dict(state["scaler"])
    _set_rng_state(s.gen, state["rng"][s.procs.rank], s.procs.device)


def train(
    config: TrainConfig,
    out_dir: Path,
    progress: bool = True,
    checkpoint_every: int = 0,
    resume: bool = True,
    stop_after: int | None = None,
    device: str | None = None,
    compile_model: bool = False,
    num_workers: int = 4,
) -> Path:
    """Train one model, logging the nPR monitor to `out_dir/log.jsonl`.

    Args:
        config: what to train.
        out_dir: receives `log.jsonl`, `run.json` (provenance), `checkpoint.pt` (if
            checkpoint_every > 0) and, at the end, `model.safetensors` (EMA weights, the ones
            analysed, as the official releases), `online.safetensors` and `config.json`.
        progress: show a tqdm bar.
        checkpoint_every: save a resumable checkpoint every this many steps (0: never).
        resume: continue from `out_dir/checkpoint.pt` when present.
        stop_after: stop (as if killed) after this many steps of this call; for tests.
        device: "cpu", "cuda", ...; None: the cpu for digits, cuda (if present) for imagenet.
        compile_model: torch.compile the model (GPU runs).
        num_workers: data loader processes (imagenet).

    Returns:
        out_dir.
    """
    procs = distributed.setup(device, prefer_cuda=config.dataset == "imagenet")
    try:
        return _train(config, Path(out_dir), procs, progress, checkpoint_every, resume,
                      stop_after, compile_model, num_workers)  # fmt: skip
    finally:
        distributed.teardown(procs)


def _train(config, out_dir, procs, progress, checkpoint_every, resume, stop_after, compile_model,
           num_workers) -> Path:  # fmt: skip
    if config.batch_size % procs.world_size:
        raise ValueError(
            f"batch_size {config.batch_size} is not divisible by {procs.world_size} processes"
        )
    ckpt_path = out_dir / "checkpoint.pt"
    state = None
    if resume and ckpt_path.exists():
        state = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        _check_resume(state, config, ckpt_path, procs.world_size)
    step = state["steps"] if state else 0
    local_batch = config.batch_size // procs.world_size
    # the encoder is built before any seeding: building the digits classifier may train it
    source = make_source(config, procs, local_batch, step, num_workers)
    s = new_session(config, procs, source, compile_model)
    log = JsonlLog(out_dir / "log.jsonl")
    if state:
        _restore(s, state)
        if procs.main:
            _truncate_log(log.path, step)
    elif procs.main:
        out_dir.mkdir(parents=True, exist_ok=True)
        log.path.unlink(missing_ok=True)  # a fresh run starts a fresh log
    if procs.main:
        runs.write_provenance(out_dir, config, procs, resumed_at=step)
    seen = {}
    conds = condition_inputs(config.dataset, config.num_classes)

    def record_c(c):
        seen["c"] = c
        return c

    def monitor(step: int, losses: dict) -> None:
        time_conv = config.time_convention
        rec = {"step": step, **losses}
        rec.update(c_statistics(class_conditions(s.model, time_conv, conds), "classes"))
        rec.update(c_statistics(class_conditions(s.ema, time_conv, conds), "ema_classes"))
        rec.update(time_label_statistics(s.ema, time_conv, conds, "ema"))
        if "c" in seen:
            rec.update(c_statistics(seen.pop("c"), "batch"))
        log.write(rec)

    if step == 0 and procs.main:
        monitor(0, {"loss": None})
    s.model.train()
    show = progress and procs.main
    bar = tqdm(total=config.steps, initial=step, disable=not show, desc="train", leave=False)
    start, done_here = time.time(), 0
    while step < config.steps:
        log_now = (step + 1) % config.log_every == 0 or step + 1 == config.steps
        values = train_step(s, record_c if log_now and procs.main else None)
        step += 1
        done_here += 1
        bar.update(1)
        if log_now:
            values = {k: distributed.mean_over_processes(v, procs) for k, v in values.items()}
            if procs.main:
                monitor(step, values)
            bar.set_postfix(loss=f"{values['loss']:.4f}")
        if checkpoint_every and (step % checkpoint_every == 0 or step == config.steps):
            rng = distributed.gather_objects(_rng_state(s.gen, procs.device), procs)
            if procs.main:
                runs.save_checkpoint(ckpt_path, {**_checkpoint(s, step), "rng": rng})
        if stop_after is not None and done_here >= stop_after and step < config.steps:
            bar.close()
            return out_dir
    bar.close()
    if procs.main:
        save_file(_contiguous(s.ema.state_dict()), out_dir / "model.safetensors")
        save_file(_contiguous(s.model.state_dict()), out_dir / "online.safetensors")
        meta = dict(config=asdict(config), seconds=time.time() - start, steps_this_run=done_here)
        (out_dir / "config.json").write_text(json.dumps(meta, indent=1))
        runs.finish_provenance(out_dir, step, time.time() - start)
    distributed.barrier(procs)
    return out_dir


def _contiguous(state: dict) -> dict:
    return {k: v.detach().cpu().contiguous() for k, v in state.items()}


def _truncate_log(path: Path, step: int) -> None:
    """Drop log records written after the checkpoint's step (they will be written again)."""
    if not path.exists():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["step"] <= step:
                keep.append(line)
        except (json.JSONDecodeError, KeyError):
            continue  # a torn last line from a killed run
    runs.write_text_atomic(path, "".join(line + "\n" for line in keep))
