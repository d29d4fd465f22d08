"""The diffusion trainer: AdaLN transformers from the zoo, on the testbed's digits, with the nPR monitor.

One loop for both conventions ("ddpm": DiT's epsilon/learned-sigma objective with integer t;
"repa": linear path, velocity, t = 1 noise). Checkpoints carry the model, its EMA, the optimiser,
the RNG states, the step and the config as plain types, so `torch.load(weights_only=True)` reads
them and a resumed run continues exactly where it stopped.
"""

from __future__ import annotations

import copy
import json
import os
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from safetensors.torch import save_file
from tqdm import tqdm

from semantic_bottleneck.conventions import convention
from semantic_bottleneck.training.data import DIGITS_CLASSES, DIGITS_SIZE, digits
from semantic_bottleneck.training.monitor import JsonlLog, c_statistics, class_conditions
from semantic_bottleneck.training.objectives import ddpm_loss, dit_process, linear_flow_loss
from semantic_bottleneck.zoo import build_model

OBJECTIVES = ("ddpm", "repa")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that changes a trained testbed model (its hash keys the artifact cache)."""

    family: str = "dit"  # zoo family of the model class
    objective: str = "ddpm"  # "ddpm" (integer t, epsilon) or "repa" (t = 1 noise, velocity)
    hidden_size: int = 128
    depth: int = 4
    num_heads: int = 4
    patch_size: int = 2
    learn_sigma: bool = True  # DiT's variance head (ddpm only)
    class_dropout_prob: float = 0.1  # label dropout inside the model, as in every XL model
    steps: int = 2000
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    log_every: int = 25
    seed: int = 0

    def __post_init__(self):
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {self.objective!r}")
        if self.steps < 1 or self.batch_size < 2 or self.log_every < 1:
            raise ValueError(
                f"need steps >= 1, batch_size >= 2, log_every >= 1; got steps={self.steps}, "
                f"batch_size={self.batch_size}, log_every={self.log_every}"
            )
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")

    @property
    def time_convention(self):
        return convention(self.objective)

    def model_config(self) -> dict:
        """Constructor keywords of the zoo model this config trains."""
        cfg = dict(
            input_size=DIGITS_SIZE,
            patch_size=self.patch_size,
            in_channels=1,
            hidden_size=self.hidden_size,
            depth=self.depth,
            num_heads=self.num_heads,
            class_dropout_prob=self.class_dropout_prob,
            num_classes=DIGITS_CLASSES,
        )
        if self.family in ("dit", "sit"):
            cfg["learn_sigma"] = self.learn_sigma and self.objective == "ddpm"
        return cfg

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(
                f"unknown TrainConfig fields {sorted(unknown)}; expected {sorted(names)}"
            )
        return cls(**d)


@torch.no_grad()
def update_ema(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model, parameter by parameter."""
    for e, p in zip(ema.parameters(), model.parameters(), strict=True):
        e.mul_(decay).add_(p.detach(), alpha=1 - decay)


def _save_checkpoint(path: Path, state: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def train(
    config: TrainConfig,
    out_dir: Path,
    progress: bool = True,
    checkpoint_every: int = 0,
    resume: bool = True,
    stop_after: int | None = None,
) -> Path:
    """Train one model, logging the nPR monitor to `out_dir/log.jsonl`.

    Args:
        config: what to train.
        out_dir: receives `log.jsonl`, `checkpoint.pt` (if checkpoint_every > 0) and, at the end,
            `model.safetensors` (EMA weights, the ones analysed, as the official releases) and
            `online.safetensors` (the trained weights) with `config.json`.
        progress: show a tqdm bar.
        checkpoint_every: save a resumable checkpoint every this many steps (0: never).
        resume: continue from `out_dir/checkpoint.pt` when present.
        stop_after: stop (as if killed) after this many steps of this call; for tests.

    Returns:
        out_dir.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    time_conv = config.time_convention
    x_all, y_all = digits()
    torch.manual_seed(config.seed)  # model init and label dropout draw from the global RNG
    model = build_model(config.family, **config.model_config())
    ema = copy.deepcopy(model).requires_grad_(False).eval()
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    gen = torch.Generator().manual_seed(config.seed + 1)  # batches, t and noise
    schedule = dit_process() if config.objective == "ddpm" else None
    log = JsonlLog(out_dir / "log.jsonl")
    ckpt_path = out_dir / "checkpoint.pt"
    step = 0
    if resume and ckpt_path.exists():
        state = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        if state["config"] != asdict(config):
            raise ValueError(f"{ckpt_path} was written by another config: {state['config']}")
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["opt"])
        gen.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        step = state["step"]
        _truncate_log(log.path, step)
    elif log.path.exists():
        log.path.unlink()  # a fresh run starts a fresh log

    seen = {}

    def record_c(c):
        seen["c"] = c
        return c

    def monitor(step: int, loss: float | None) -> None:
        rec = {"step": step, "loss": loss}
        rec.update(c_statistics(class_conditions(model, time_conv, DIGITS_CLASSES), "classes"))
        rec.update(c_statistics(class_conditions(ema, time_conv, DIGITS_CLASSES), "ema_classes"))
        if "c" in seen:
            rec.update(c_statistics(seen.pop("c"), "batch"))
        log.write(rec)

    if step == 0:
        monitor(0, None)
    model.train()
    bar = tqdm(total=config.steps, initial=step, disable=not progress, desc="train", leave=False)
    start, done_here = time.time(), 0
    while step < config.steps:
        idx = torch.randint(0, len(y_all), (config.batch_size,), generator=gen)
        x0, y = x_all[idx], y_all[idx]
        log_now = (step + 1) % config.log_every == 0 or step + 1 == config.steps
        c_fn = record_c if log_now else None

        def model_fn(x, t, y, c_fn=c_fn):
            return model(x, t, y, c_fn=c_fn)

        if config.objective == "ddpm":
            loss = ddpm_loss(model_fn, x0, y, gen, schedule)
        else:
            loss = linear_flow_loss(model_fn, x0, y, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        opt.step()
        update_ema(ema, model, config.ema_decay)
        step += 1
        done_here += 1
        bar.update(1)
        if log_now:
            monitor(step, loss.item())
            bar.set_postfix(loss=f"{loss.item():.4f}")
        if checkpoint_every and (step % checkpoint_every == 0 or step == config.steps):
            _save_checkpoint(
                ckpt_path,
                dict(
                    model=model.state_dict(),
                    ema=ema.state_dict(),
                    opt=opt.state_dict(),
                    generator=gen.get_state(),
                    torch_rng=torch.get_rng_state(),
                    step=step,
                    config=asdict(config),
                ),
            )
        if stop_after is not None and done_here >= stop_after and step < config.steps:
            bar.close()
            return out_dir
    bar.close()
    save_file(_contiguous(ema.state_dict()), out_dir / "model.safetensors")
    save_file(_contiguous(model.state_dict()), out_dir / "online.safetensors")
    meta = dict(config=asdict(config), seconds=time.time() - start, steps_this_run=done_here)
    (out_dir / "config.json").write_text(json.dumps(meta, indent=1))
    return out_dir


def _contiguous(state: dict) -> dict:
    return {k: v.contiguous() for k, v in state.items()}


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
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(line + "\n" for line in keep))
    os.replace(tmp, path)
