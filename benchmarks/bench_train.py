"""Benchmark: REPA-B/2 training steps per second, the project's trainer against a naive loop.

Both loops run in this process, on the same device, with the same model class and size, batch,
losses (denoising + 0.5 x projection to a DINOv2-B/14 target), clipping and EMA:

  (a) trainer: `training.trainer.train_step` with the paper recipe at bf16 autocast, fused AdamW
      on CUDA, SDPA attention (`fused_attn=True`), the encoder under autocast; `--compile` adds
      torch.compile.
  (b) naive: float32 throughout, the explicit softmax attention (`fused_attn=False`), the
      for-loop AdamW (`foreach=False`), the encoder in float32.

Data are synthetic (fixed VAE moments and raw images on the device, a fresh latent sample per
step) and the encoder has random weights: the data pipeline and weight files are not measured,
the arithmetic is the same. Each loop runs --warmup steps, then --steps timed steps
(synchronised). Prints one JSON line: device, versions, sizes, steps/s and peak memory of each,
and the speed-up of (a) over (b).

Usage: python benchmarks/bench_train.py [--size B/2|tiny] [--batch 256] [--steps 20]
       [--warmup 5] [--compile] [--device cuda]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import sys
import time

import torch

from semantic_bottleneck.training import distributed
from semantic_bottleneck.training.imagenet import sample_posterior
from semantic_bottleneck.training.recipes import REPA_B2_RECIPE
from semantic_bottleneck.training.repa import DINOV2_ARCH, DinoV2Tokens, repa_loss
from semantic_bottleneck.training.trainer import new_session, train_step, update_ema, with_overrides
from semantic_bottleneck.zoo import build_model

# "tiny" exercises every code path in seconds on a CPU (a smoke test of this script)
TINY = dict(hidden_size=64, depth=2, num_heads=2, encoder_depth=1, projector_dim=128, z_dim=32)


class SyntheticSource:
    """Fixed moments and raw images on the device; a fresh latent sample per batch."""

    def __init__(self, batch: int, encoder: torch.nn.Module, device: torch.device, seed: int = 0):
        gen = torch.Generator().manual_seed(seed)
        mean = torch.randn(batch, 4, 32, 32, generator=gen)
        self.moments = torch.cat([mean, torch.full_like(mean, 0.1)], dim=1).to(device)
        self.raw = torch.randint(0, 256, (batch, 3, 256, 256), generator=gen, dtype=torch.uint8)
        self.raw = self.raw.to(device)
        self.y = torch.randint(0, 1000, (batch,), generator=gen).to(device)
        self.encoder = encoder.to(device)

    def batch(self, generator, autocast=None):
        x0 = sample_posterior(self.moments, generator)
        with torch.no_grad(), autocast if autocast is not None else contextlib.nullcontext():
            zs = [self.encoder(self.raw)]
        return x0, self.y, zs


def make_encoder(size: str) -> DinoV2Tokens:
    """DINOv2-B/14 at 224 px with random weights (tiny: a one-block 32-wide ViT/14)."""
    import timm
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    if size == "tiny":
        vit = VisionTransformer(
            img_size=224, patch_size=14, embed_dim=32, depth=1, num_heads=2, num_classes=0
        )
    else:
        vit = timm.create_model(DINOV2_ARCH, pretrained=False, img_size=224, num_classes=0)
    return DinoV2Tokens(vit).eval().requires_grad_(False)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(step, warmup: int, steps: int, device: torch.device) -> dict:
    for _ in range(warmup):
        step()
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return {"steps_per_s": steps / seconds, "seconds": seconds, "peak_mem_gib": peak}


def bench_trainer(config, device, encoder, compile_model, warmup, steps) -> dict:
    procs = distributed.Processes(0, 1, device)
    source = SyntheticSource(config.batch_size, encoder, device)
    session = new_session(config, procs, source, compile_model)
    session.model.train()
    return _timed(lambda: train_step(session), warmup, steps, device)


def bench_naive(config, device, encoder, warmup, steps) -> dict:
    torch.manual_seed(config.seed)
    model = build_model("repa", **config.model_config(), fused_attn=False).to(device).train()
    ema = build_model("repa", **config.model_config(), fused_attn=False).to(device).eval()
    ema.load_state_dict(model.state_dict())
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.0, foreach=False)
    source = SyntheticSource(config.batch_size, encoder, device)
    gen = torch.Generator(device).manual_seed(1)

    def step():
        x0, y, zs = source.batch(gen)
        denoising, projection = repa_loss(model, x0, y, zs, gen)
        loss = denoising + config.proj_coeff * projection
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        opt.step()
        update_ema(ema, model, config.ema_decay)

    return _timed(step, warmup, steps, device)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=["B/2", "tiny"], default="B/2")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    overrides = dict(
        batch_size=args.batch, mixed_precision="bf16", **(TINY if args.size == "tiny" else {})
    )
    config = with_overrides(REPA_B2_RECIPE, **overrides)
    encoder = make_encoder(args.size)
    naive = bench_naive(config, device, encoder, args.warmup, args.steps)
    if device.type == "cuda":
        torch.cuda.empty_cache()
    trainer = bench_trainer(config, device, encoder, args.compile, args.warmup, args.steps)
    result = {
        "benchmark": "repa_train_step",
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "size": args.size,
        "batch": args.batch,
        "timed_steps": args.steps,
        "trainer": {**trainer, "precision": "bf16", "compile": args.compile, "attention": "sdpa"},
        "naive": {**naive, "precision": "fp32", "attention": "explicit softmax"},
        "speedup": trainer["steps_per_s"] / naive["steps_per_s"],
        "images_per_s": trainer["steps_per_s"] * args.batch,
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
