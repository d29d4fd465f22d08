"""Benchmark: SiT-XL/2 sampling with the 250-step Euler-Maruyama SDE and CFG, the project's
sampler against a naive loop, and the fraction of the chip's bf16 peak the forward reaches.

Both runs use the same random-weight SiT-XL/2 (the arithmetic of the official checkpoint, without
its file), the same labels and noise, and `sampling.sample` with SiT's headline SDE config (CFG
1.5 on the first 3 channels, so every step runs the model on 2 x batch latents):

  (a) ours: bf16 autocast, SDPA attention, TF32 matmuls; `--compile` adds torch.compile.
  (b) naive: float32 throughout, TF32 off, the explicit softmax attention.

Each run samples with --steps grid points (the cost of a model evaluation does not depend on the
step), and images/s are reported for the full 250-step sampler: batch / (seconds per evaluation x
evaluations of the 250-step sampler). The forward alone is then timed at 2 x batch in bf16 (as
in (a)), and its FLOPs counted once with torch.utils.flop_counter on the explicit-attention
model (2 per multiply-add, the attention matmuls included); the fraction of peak is
FLOPs / seconds / --peak-tflops (default: the device's dense bf16 peak, where known).

Prints one JSON line. Usage: python benchmarks/bench_sampling.py [--size XL/2|tiny] [--batch 64]
    [--steps 26] [--naive-steps 6] [--forward-iters 20] [--compile] [--device cuda]
    [--peak-tflops N]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time

import torch

from semantic_bottleneck import sampling
from semantic_bottleneck.book.provenance import cpu_name
from semantic_bottleneck.generation.source import checkpoint_source
from semantic_bottleneck.zoo import build_model, denoiser, registry

# "tiny" exercises every code path in seconds on a CPU (a smoke test of this script)
TINY = dict(input_size=8, hidden_size=64, depth=2, num_heads=2)
FULL_STEPS = 250
# dense bf16 tensor-core peaks (TFLOP/s) from the vendors' data sheets, by device-name fragment;
# the first match wins, so the more specific names come first
PEAKS = (("H100 PCIe", 756.0), ("H100", 989.4), ("H200", 989.4), ("A100", 312.0), ("L40S", 362.1))


def sit_config(size: str) -> dict:
    return registry.get_checkpoint("sit-xl-2").config | (TINY if size == "tiny" else {})


def latent_shape(size: str) -> tuple[int, int, int]:
    config = sit_config(size)
    return config["in_channels"], config["input_size"], config["input_size"]


def sit_xl2(size: str, fused_attn: bool) -> torch.nn.Module:
    """SiT-XL/2 (or the tiny stand-in) with random weights, its zero-initialised layers included,
    so that the samples depend on every weight."""
    config = sit_config(size)
    model = build_model("sit", **config)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        for p in model.parameters():
            p.data.normal_(0.0, 0.02)
    for m in model.modules():
        if hasattr(m, "fused_attn"):
            m.fused_attn = fused_attn
    return model.eval().requires_grad_(False)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_sampler(model, shape, batch: int, steps: int, device: torch.device, bf16: bool) -> dict:
    """Sample `batch` latents of `shape` with `steps` grid points; seconds per evaluation."""
    config = checkpoint_source("sit-xl-2").sampler_config(num_steps=steps)
    labels = torch.arange(batch, device=device) % 1000
    seeds = sampling.sample_seeds(0, batch)
    noise = sampling.sample_noise(shape, seeds, device=device)
    fn = denoiser(model)

    def go():
        gens = sampling.sample_generators(seeds)
        return sampling.sample(fn, noise, labels, config, gens, bf16=bf16)

    go()  # warm-up: kernels chosen, compilation done
    _sync(device)
    start = time.perf_counter()
    x = go()
    _sync(device)
    seconds = time.perf_counter() - start
    evaluations = sampling.num_steps(config)
    per_eval = seconds / evaluations
    full = sampling.num_steps(checkpoint_source("sit-xl-2").sampler_config())
    return {
        "grid_points": steps,
        "evaluations": evaluations,
        "seconds": seconds,
        "seconds_per_evaluation": per_eval,
        "images_per_s": batch / (per_eval * full),
        "latents": x.float().cpu(),
    }


def forward_flops(model, shape, batch: int, device: torch.device) -> float:
    """FLOPs of one forward at `batch` latents: 2 per multiply-add of every matmul and
    convolution (FlopCounterMode); give a model with explicit (unfused) attention."""
    from torch.utils.flop_counter import FlopCounterMode

    x, t, y = _forward_inputs(shape, batch, device)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x, t, y)
    return float(counter.get_total_flops())


def _forward_inputs(shape, batch: int, device: torch.device):
    g = torch.Generator(device).manual_seed(0)
    x = torch.randn(batch, *shape, generator=g, device=device)
    t = torch.rand(batch, generator=g, device=device)
    return x, t, torch.arange(batch, device=device) % 1000


def time_forward(model, shape, batch: int, iters: int, device: torch.device) -> float:
    """Median seconds of one bf16-autocast forward at `batch` latents."""
    x, t, y = _forward_inputs(shape, batch, device)
    times = []
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16):
        for i in range(iters + 2):
            _sync(device)
            start = time.perf_counter()
            model(x, t, y)
            _sync(device)
            if i >= 2:  # two warm-up calls
                times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def peak_tflops(device: torch.device, given: float | None) -> float | None:
    if given is not None or device.type != "cuda":
        return given
    name = torch.cuda.get_device_name(device)
    return next((peak for fragment, peak in PEAKS if fragment in name), None)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=["XL/2", "tiny"], default="XL/2")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=26, help="grid points of the timed run (a)")
    parser.add_argument("--naive-steps", type=int, default=6, help="grid points of run (b)")
    parser.add_argument("--forward-iters", type=int, default=20)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--peak-tflops", type=float, default=None)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    shape = latent_shape(args.size)

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    naive_model = sit_xl2(args.size, False).to(device)
    naive = run_sampler(naive_model, shape, args.batch, args.naive_steps, device, False)
    # counted on the explicit attention: the counter misses some fused SDPA kernels (CPU)
    flops = forward_flops(naive_model, shape, 2 * args.batch, device)
    del naive_model

    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    model = sit_xl2(args.size, True).to(device)
    if args.compile:
        model = torch.compile(model)
    ours = run_sampler(model, shape, args.batch, args.steps, device, True)
    seconds = time_forward(model, shape, 2 * args.batch, args.forward_iters, device)
    peak = peak_tflops(device, args.peak_tflops)
    achieved = flops / seconds / 1e12

    # both runs start from the same noise: with the same steps they agree up to bf16 rounding
    same = args.steps == args.naive_steps
    result = {
        "benchmark": "sit_xl2_sde_cfg_sampling",
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "size": args.size,
        "batch": args.batch,
        "full_steps": FULL_STEPS,
        "ours": {
            **{k: v for k, v in ours.items() if k != "latents"},
            "precision": "bf16 autocast",
            "attention": "sdpa",
            "compile": args.compile,
        },
        "naive": {
            **{k: v for k, v in naive.items() if k != "latents"},
            "precision": "fp32 (TF32 off)",
            "attention": "explicit softmax",
        },
        "speedup": ours["images_per_s"] / naive["images_per_s"],
        "forward": {
            "batch": 2 * args.batch,
            "flops": flops,
            "seconds": seconds,
            "tflops_per_s": achieved,
            "peak_tflops": peak,
            "fraction_of_peak": None if peak is None else achieved / peak,
        },
        "max_abs_difference": float((ours["latents"] - naive["latents"]).abs().max())
        if same
        else None,
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
