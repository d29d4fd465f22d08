"""One GPU session: sampling and training speed, a REPA-B/2 nPR curve on record, and the paper
path end to end on CUDA, written to one JSON file as each stage finishes.

Stages, in order, each with its own time budget (`--budget-STAGE`) inside a global deadline
(`--deadline`, 8 minutes by default); a stage that would start with less than
`--min-stage-seconds` left is skipped and reported as skipped, with the reason:

  sampling  SiT-XL/2 and LightningDiT-XL/1 at random weights on their headline samplers with
            CFG (SiT: the 250-step SDE; LightningDiT: the 250-step Euler ODE). The official
            scripts' way (float32, TF32 matmuls, their batch of 32, SiT's explicit softmax
            attention, LightningDiT's SDPA) against the project's default path on the same noise
            (float32, TF32, SDPA, --batch), eager and with `torch.compile` (`--compile-scope`
            blocks: each transformer block, compiled once and shared by all 28; `model`: the
            whole forward, and `--compile-mode reduce-overhead` adds CUDA graphs). The latents of
            the shared samples are compared (`agreement`). Then the bf16 option: images/s, and
            the bf16 forward at 2 x --batch rows against the chip's dense bf16 peak (and against
            a measured 8192^3 bf16 matmul). Images/s are for the full 250-step samplers: the
            timed runs use --sampling-steps grid points, and each model call's cost is taken per
            row (a guided call runs 2N rows, an unguided one N).
  training  REPA-B/2 steps/s with the recipe of `training/recipes.py` (bf16 autocast, fused
            AdamW, SDPA, eager and compiled) against a plain float32 loop (TF32 off, explicit
            attention, for-loop AdamW), through `bench_train.py`'s two loops.
  curve     REPA-B/2 (width 768, depth 12, patch 2, projector after block 4, lr 1e-4, batch
            256, EMA 0.9999, the recipe's autocast) trained on the 8x8 digits at ImageNet-latent
            geometry: each digit resized to 32 x 32 (bilinear) and copied into 4 channels, so the
            model is B/2 with its 256 tokens. The alignment target is the frozen digits
            classifier (DINOv2 weights cannot be downloaded): its 4 x 4 tokens, each repeated
            over the 4 x 4 model tokens it covers. It trains for as many steps as the budget
            allows, logging the nPR monitor, then `training.runs.record_run` (what
            `semantic-bottleneck train record` runs) writes `OUT/runs/NAME.json(l)`: commit
            those two files under data/runs/ and the Fig. 12 page draws the run.
  e2e       For each XL family (dit, sit, repa, mg, lightningdit, mdt, mdtv2): a synthetic
            checkpoint with the official file's exact layout (the manifest's keys and shapes,
            random weights, a bare state dict saved with torch.save) in a weights cache
            ($SEMANTIC_BOTTLENECK_WEIGHTS), then `semantic-bottleneck generate` and one row of
            the pruning sweep (`sweeps.run.run_paper_sweep`, row "tail 0.05 t_i") on the device,
            decoded and scored with stand-in inputs: a small SD-VAE folder, a VA-VAE with the
            f16d32 layout, torch-fidelity's InceptionV3 and a small open_clip model, all with
            random weights, and an ADM-format reference batch. On CUDA the families run in
            `--e2e-workers` processes at once (loading an XL file is CPU and disk work).

`--size tiny --device cpu` runs every stage at toy sizes in about a minute on a 2-core CPU
(tiny models registered beside the official ones; the VA-VAE stand-in has a small layout).

The GPU machine has no network, and its python3 (torch 2.11, timm, numpy, scipy, pandas,
matplotlib, ...) lacks torch-fidelity, diffusers and open_clip. Here, once, download their wheels
(about 9 MB: the working tree and the carried paths must stay under 64 MiB together) into the
ignored folder `.whl`:

    echo /.whl/ >> .git/info/exclude
    .venv/bin/python benchmarks/gpu_session.py --download-wheels .whl

then call the device tool's `run` with carry [".whl"], timeout_s 590, and the command (one line):

    set -o pipefail; python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 && python3 benchmarks/gpu_session.py --out $OUT --commit COMMIT 2>&1 | tee $OUT/session.log

with COMMIT the output of `git rev-parse HEAD` here (the copy there may have no .git). The
project itself needs no install: this script puts `src/` on the path when the package is not
installed. Where the project is installed with `pip install -e .[book,eval,dev]` (this machine),
`.venv/bin/python benchmarks/gpu_session.py --out DIR` is the whole command. Results come back
in $OUT: gpu_session.json, session.log, curve.png and runs/NAME.json(l). ipywidgets, which the
project imports for the book's interactive pages only, is replaced by a stand-in module where it
is absent (recorded under "imports").
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import importlib
import importlib.util
import io
import json
import math
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if importlib.util.find_spec("semantic_bottleneck") is None:  # a bare checkout: use src/
    sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(HERE))  # bench_sampling.py, bench_train.py

import torch  # noqa: E402


class _Absent:
    """Whatever the interactive widgets module is asked for, where it is not installed."""

    def __init__(self, *args: Any, **kwargs: Any):
        pass

    def __call__(self, *args: Any, **kwargs: Any) -> _Absent:
        return _Absent()

    def __getattr__(self, name: str) -> _Absent:
        return _Absent()


def _absent_widgets(name: str) -> type:
    if name.startswith("__"):
        raise AttributeError(name)
    return _Absent


# The project imports ipywidgets at module level for the book's interactive pages only (none of
# which a stage uses); where it is absent (the GPU machine's image) a stand-in module takes its
# place, so that its 17 dependent wheels need not travel.
try:
    import ipywidgets  # noqa: F401
except ImportError:
    _stub = type(sys)("ipywidgets")
    _stub.__version__ = "absent: stand-in module (the book's widgets are not used here)"
    _stub.__getattr__ = _absent_widgets
    sys.modules["ipywidgets"] = _stub

STAGES = ("sampling", "training", "curve", "e2e")
SAMPLING_MODELS = ("sit-xl-2", "lightningdit-xl-1")
# the attention of each official code base: SiT's timm Attention on its explicit path, and
# LightningDiT's own Attention, which calls scaled_dot_product_attention
OFFICIAL_ATTENTION = {"sit-xl-2": "explicit", "lightningdit-xl-1": "sdpa"}
OFFICIAL_BATCH = 32  # SiT sample_ddp.py --per-proc-batch-size
E2E_FAMILIES = ("repa", "mg", "lightningdit", "dit", "sit", "mdt", "mdtv2")
E2E_ROW = "tail 0.05 t_i"  # the sweep row sampled per family: c pruned at every step
CURVE_NAME = "repa-b2-digits32"
# the packages the stages need that the GPU machine's image lacks, at the versions this project's
# environment resolved (pure-Python wheels, except wcwidth's abi3 one); about 9 MB
WHEELS = (
    "torch-fidelity==0.4.0",
    "diffusers==0.42.1",
    "importlib_metadata==10.2.0",
    "open_clip_torch==3.3.0",
    "ftfy==6.3.1",
    "wcwidth==0.9.4",
)
IMPORT_CHECKS = ("torch_fidelity", "diffusers", "open_clip", "ipywidgets", "timm", "scipy")

# per size: stage budgets (s) and the sizes each stage runs at
BUDGETS = {
    "xl": {"sampling": 120.0, "training": 95.0, "curve": 105.0, "e2e": 130.0},
    "tiny": {"sampling": 60.0, "training": 60.0, "curve": 12.0, "e2e": 120.0},
}
SIZES = {
    "xl": dict(
        batch=256, official_batch=OFFICIAL_BATCH, sampling_steps=8, forward_iters=10,
        train_batch=256, train_steps=10, train_warmup=3,
        curve_batch=256, curve_log_every=25, curve_max_steps=200_000,
        e2e_per_class=1, e2e_steps=2, e2e_batch=125,
    ),
    "tiny": dict(
        batch=4, official_batch=2, sampling_steps=3, forward_iters=2,
        train_batch=4, train_steps=2, train_warmup=1,
        curve_batch=8, curve_log_every=2, curve_max_steps=12,
        e2e_per_class=3, e2e_steps=2, e2e_batch=12,
    ),
}  # fmt: skip
# toy stand-ins of the XL configs (CPU seconds)
TINY_SAMPLING = {
    "sit": dict(input_size=8, hidden_size=64, depth=2, num_heads=2),
    "lightningdit": dict(input_size=4, hidden_size=64, depth=2, num_heads=4),
}
TINY_CURVE = dict(hidden_size=64, depth=2, num_heads=2, projector_dim=128, encoder_depth=1)
TINY_CLASSES = 4  # the tiny checkpoints' classes: 3 per class give the 10 samples IS needs
TINY_E2E = {
    "dit": dict(input_size=8, hidden_size=32, depth=2, num_heads=2),
    "sit": dict(input_size=8, hidden_size=32, depth=2, num_heads=2),
    "mg": dict(input_size=8, hidden_size=32, depth=2, num_heads=2),
    "repa": dict(
        input_size=8, hidden_size=32, decoder_hidden_size=32, depth=2, num_heads=2,
        encoder_depth=1, z_dims=[16], projector_dim=32,
    ),
    "lightningdit": dict(input_size=4, hidden_size=64, depth=2, num_heads=4),
    "mdt": dict(input_size=8, hidden_size=64, depth=4, num_heads=4, decode_layer=2),
    "mdtv2": dict(input_size=8, hidden_size=64, depth=4, num_heads=4, decode_layer=2),
}  # fmt: skip
# the stand-in VA-VAE: the f16d32 layout (XL), or a small one with its 32 latent channels (tiny)
LDM_LAYOUTS = {
    "xl": dict(ch=128, ch_mult=(1, 1, 2, 2, 4), blocks=2, attn_levels=(4,), z=32),
    "tiny": dict(ch=32, ch_mult=(1, 2), blocks=1, attn_levels=(1,), z=32),
}
CLIP_NAME = "clip-stand-in"
CLIP_CONFIG = {  # a small ViT CLIP with open_clip's real tokenizer (77 tokens, BPE)
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}

_T0 = time.monotonic()


def log(message: str) -> None:
    """A progress line on stderr, with the seconds since the script started."""
    print(f"[{time.monotonic() - _T0:7.1f}s] {message}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- time


class Budget:
    """Seconds left of a time budget, on a clock that can be replaced in tests."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic):
        self.seconds = float(seconds)
        self.clock = clock
        self.start = clock()

    def used(self) -> float:
        """Seconds spent since the budget started."""
        return self.clock() - self.start

    def left(self) -> float:
        """Seconds left (negative once overrun)."""
        return self.seconds - self.used()


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def free_memory() -> None:
    """Collect garbage and return cached device memory between runs."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def write_json(path: Path, data: dict) -> None:
    """Write `data` through a temporary file and a rename (a killed run leaves the last one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    os.replace(tmp, path)


@contextlib.contextmanager
def environment(**values: str) -> Iterator[None]:
    """Set environment variables for the duration of the block, then restore them."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def device_label(device: torch.device) -> str:
    """The GPU's name, or the CPU model and core count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    from semantic_bottleneck.book.provenance import cpu_name

    return cpu_name()


def import_status() -> dict[str, str]:
    """Version (or 'missing: ...') of each package the stages import."""
    out = {}
    for name in IMPORT_CHECKS:
        try:
            module = importlib.import_module(name)
            out[name] = str(getattr(module, "__version__", "present"))
        except Exception as err:  # noqa: BLE001 (any import failure is reported, not raised)
            out[name] = f"missing: {type(err).__name__}: {err}"
    return out


def commit_info(given: str | None) -> dict:
    """{"commit", "dirty"} of this checkout; `given` replaces an unknown commit."""
    from semantic_bottleneck.book.provenance import git_commit

    info = git_commit(ROOT)
    if given and info["commit"] == "unknown":
        info = {"commit": given, "dirty": None}
    return info


# ----------------------------------------------------------------------------- sampling


def sampling_config(name: str, size: str) -> dict:
    """The constructor config of a checkpoint (XL) or its toy stand-in (tiny)."""
    from semantic_bottleneck.zoo import registry

    entry = registry.get_checkpoint(name)
    return entry.config | (TINY_SAMPLING[entry.family] if size == "tiny" else {})


def set_attention(model: torch.nn.Module, fused: bool) -> None:
    """SDPA (fused) or the explicit softmax in every attention module of the model."""
    for m in model.modules():
        if hasattr(m, "fused_attn"):
            m.fused_attn = fused


def random_model(family: str, config: dict, device: torch.device, seed: int = 0):
    """A model built on `device` with every parameter drawn from N(0, 0.02) (its zero-initialised
    layers included, so that the output depends on every weight), in eval mode."""
    from semantic_bottleneck.zoo import build_model

    with torch.device(device):
        model = build_model(family, **config)
    gen = torch.Generator(device).manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.02, generator=gen)
    return model.eval().requires_grad_(False)


def compile_model(model: torch.nn.Module, scope: str, mode: str, backend: str) -> torch.nn.Module:
    """torch.compile the model's blocks in place (scope "blocks") or the whole model ("model").

    Every block of a model has the same code, so with scope "blocks" one compiled graph serves
    all of them: seconds of compilation instead of a minute for the whole forward.
    """
    import torch._dynamo

    torch._dynamo.config.cache_size_limit = max(64, torch._dynamo.config.cache_size_limit)
    options = dict(mode=None if mode == "default" else mode, backend=backend, dynamic=False)
    if scope == "model":
        return torch.compile(model, **options)
    for block in model.blocks:
        block.compile(**options)
    return model


def rows_per_image(config, channels: int) -> int:
    """Model rows one image costs in a sampler run: 2 per guided call, 1 per unguided one.

    The sampler runs on a stub that counts the rows it is called on.
    """
    from semantic_bottleneck import sampling

    seen = [0]

    def stub(x, t, y, c_fn=None):
        seen[0] += x.shape[0]
        return torch.zeros(x.shape[0], channels, *x.shape[2:])

    gens = [torch.Generator().manual_seed(0)]
    sampling.sample(stub, torch.zeros(1, channels, 2, 2), torch.zeros(1, dtype=torch.int64),
                    config, gens)  # fmt: skip
    return seen[0]


def sample_run(model_fn, name: str, shape, n: int, steps: int, device, bf16: bool):
    """The headline sampler of checkpoint `name` with `steps` grid points on samples 0..n-1
    (labels i mod 1000, seeds 0..n-1): (latents on the CPU, seconds of the timed run, seconds
    of the warm-up run before it)."""
    from semantic_bottleneck import sampling
    from semantic_bottleneck.generation.source import checkpoint_source

    config = checkpoint_source(name).sampler_config(num_steps=steps)
    labels = torch.arange(n, device=device) % 1000
    seeds = sampling.sample_seeds(0, n)
    noise = sampling.sample_noise(shape, seeds, device=device)

    def go():
        gens = sampling.sample_generators(seeds)
        with torch.no_grad():
            return sampling.sample(model_fn, noise, labels, config, gens, bf16=bf16)

    times = []
    for _ in range(2):  # warm-up (kernel choice, compilation), then the timed run
        sync(device)
        start = time.perf_counter()
        x = go()
        sync(device)
        times.append(time.perf_counter() - start)
    return x.float().cpu(), times[1], times[0]


def sampler_speed(name: str, shape, n: int, steps: int, seconds: float) -> dict:
    """Seconds per model row and images/s of the full-length headline sampler."""
    from semantic_bottleneck.generation.source import checkpoint_source

    source = checkpoint_source(name)
    timed_rows = n * rows_per_image(source.sampler_config(num_steps=steps), shape[0])
    full_rows = rows_per_image(source.sampler_config(), shape[0])
    per_row = seconds / timed_rows
    return {
        "samples": n,
        "grid_points": steps,
        "model_rows": timed_rows,
        "seconds": seconds,
        "seconds_per_row": per_row,
        "full_sampler_rows_per_image": full_rows,
        "images_per_s": 1.0 / (per_row * full_rows),
    }


def agreement(reference, other, tolerance: float) -> dict:
    """How far `other` is from `reference` on the samples they share."""
    k = min(len(reference), len(other))
    ref, out = reference[:k], other[:k]
    diff = float((ref - out).abs().max())
    scale = float(ref.abs().max())
    return {
        "samples": k,
        "max_abs_difference": diff,
        "max_abs_reference": scale,
        "relative": diff / scale if scale else None,
        "tolerance": tolerance,
        "within_tolerance": bool(scale and diff <= tolerance * scale),
        "finite": bool(torch.isfinite(out).all()),
    }


def forward_inputs(shape, rows: int, device: torch.device):
    """A fixed batch (x, t, y) of `rows` model inputs."""
    g = torch.Generator(device).manual_seed(0)
    x = torch.randn(rows, *shape, generator=g, device=device)
    t = torch.rand(rows, generator=g, device=device)
    return x, t, torch.arange(rows, device=device) % 1000


def count_flops(model, shape, device: torch.device) -> float:
    """FLOPs of one forward row (2 per multiply-add of every matmul and convolution)."""
    from torch.utils.flop_counter import FlopCounterMode

    x, t, y = forward_inputs(shape, 1, device)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x, t, y)
    return float(counter.get_total_flops())


def median_seconds(fn: Callable[[], Any], iters: int, device: torch.device, warmup: int = 2):
    """Median wall seconds of fn() over `iters` calls after `warmup` calls (synchronised)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_ceiling(device: torch.device, n: int = 8192) -> float | None:
    """TFLOP/s of an n^3 bf16 matrix product on this GPU (None on a CPU)."""
    if device.type != "cuda":
        return None
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    seconds = median_seconds(lambda: a @ b, 10, device, warmup=3)
    return 2 * n**3 / seconds / 1e12


def sampling_model(name: str, args, budget: Budget, device: torch.device) -> dict:
    """Every variant of one model's sampler, its agreement with the official way, and the bf16
    forward against the peak; a variant that does not fit the budget is listed as skipped."""
    import bench_sampling

    from semantic_bottleneck.zoo import denoiser, registry

    family = registry.get_checkpoint(name).family
    config = sampling_config(name, args.size)
    shape = (config["in_channels"], config["input_size"], config["input_size"])
    out: dict = {"config": config, "latent_shape": list(shape), "variants": {}, "skipped": {}}
    model = random_model(family, config, device)
    set_attention(model, False)
    out["flops_per_row"] = count_flops(model, shape, device)  # on the explicit attention
    torch.backends.cuda.matmul.allow_tf32 = True  # the official scripts' setting
    torch.backends.cudnn.allow_tf32 = True
    steps, latents = args.sampling_steps, {}
    plan = [
        ("official", args.official_batch, False, OFFICIAL_ATTENTION[name] == "sdpa", False),
        ("default", args.batch, False, True, False),
        ("default_compiled", args.batch, False, True, True),
        ("bf16", args.batch, True, True, args.compile),
    ]
    for label, n, bf16, fused, compiled in plan:
        if compiled and not args.compile:
            out["skipped"][label] = "compilation off (--no-compile)"
            continue
        need = args.compile_reserve if compiled and not getattr(model, "_compiled", False) else 5
        if budget.left() < need:
            out["skipped"][label] = f"time budget: {budget.left():.0f} s left, needs {need:.0f}"
            continue
        log(f"sampling {name}: {label} (batch {n}, {'bf16' if bf16 else 'fp32+TF32'})")
        set_attention(model, fused)
        if compiled and not getattr(model, "_compiled", False):
            model = compile_model(
                model, args.compile_scope, args.compile_mode, args.compile_backend
            )
            model._compiled = True
        x, seconds, warmup = sample_run(denoiser(model), name, shape, n, steps, device, bf16)
        latents[label] = x
        speed = sampler_speed(name, shape, n, steps, seconds)
        out["variants"][label] = {
            **speed,
            "warmup_seconds": warmup,
            "precision": "bf16 autocast" if bf16 else "float32, TF32 matmuls",
            "attention": "sdpa" if fused else "explicit softmax",
            "compiled": compiled,
        }
        free_memory()
    variants = out["variants"]
    if "official" in latents:
        out["agreement"] = {
            k: agreement(latents["official"], v, args.tolerance)
            for k, v in latents.items()
            if k != "official"
        }
        base = variants["official"]["images_per_s"]
        fp32 = [
            variants[k]["images_per_s"] for k in ("default", "default_compiled") if k in variants
        ]
        out["speedup_default_vs_official"] = max(fp32) / base if fp32 else None
        if "bf16" in variants:
            out["speedup_bf16_vs_official"] = variants["bf16"]["images_per_s"] / base
    if "bf16" in variants and budget.left() > 3:
        rows = 2 * args.batch  # the guided batch
        x, t, y = forward_inputs(shape, rows, device)

        def forward(net=model):
            with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16):
                net(x, t, y)

        seconds = median_seconds(forward, args.forward_iters, device)
        achieved = out["flops_per_row"] * rows / seconds / 1e12
        peak = bench_sampling.peak_tflops(device, args.peak_tflops)
        out["forward_bf16"] = {
            "rows": rows,
            "seconds": seconds,
            "tflops_per_s": achieved,
            "peak_tflops": peak,
            "fraction_of_peak": None if peak is None else achieved / peak,
            "compiled": bool(getattr(model, "_compiled", False)),
        }
    del model
    free_memory()
    return out


def stage_sampling(args, budget: Budget, report: dict, flush: Callable[[], None]) -> None:
    """Stage 1: sampling speed of SiT-XL/2 and LightningDiT-XL/1 (see the module docstring)."""
    device = torch.device(args.device)
    report["official_batch"] = args.official_batch
    report["batch"] = args.batch
    report["compile"] = dict(on=args.compile, scope=args.compile_scope, mode=args.compile_mode,
                             backend=args.compile_backend)  # fmt: skip
    # fraction_of_peak is against the data-sheet peak; this is the ceiling measured here
    report["matmul_bf16_tflops"] = matmul_ceiling(device)
    report["models"] = {}
    for i, name in enumerate(SAMPLING_MODELS):
        share = Budget(budget.left() / (len(SAMPLING_MODELS) - i), budget.clock)
        try:
            report["models"][name] = sampling_model(name, args, share, device)
        except Exception as err:  # noqa: BLE001 (one model's failure leaves the other's result)
            report["models"][name] = {"error": repr(err), "traceback": traceback.format_exc()}
            free_memory()
        flush()


# ----------------------------------------------------------------------------- training


def stage_training(args, budget: Budget, report: dict, flush: Callable[[], None]) -> None:
    """Stage 2: REPA-B/2 steps/s, the recipe's trainer (eager, compiled) against a plain float32
    loop, through bench_train.py."""
    import bench_train

    from semantic_bottleneck.training.recipes import REPA_B2_RECIPE
    from semantic_bottleneck.training.trainer import with_overrides

    device = torch.device(args.device)
    tiny = bench_train.TINY if args.size == "tiny" else {}
    config = with_overrides(
        REPA_B2_RECIPE, batch_size=args.train_batch, mixed_precision="bf16", **tiny
    )
    encoder = bench_train.make_encoder("tiny" if args.size == "tiny" else "B/2")
    report.update(batch=args.train_batch, timed_steps=args.train_steps, variants={}, skipped={})
    plan = [("naive", False), ("trainer", False), ("trainer_compiled", True)]
    for label, compiled in plan:
        if compiled and not args.compile:
            report["skipped"][label] = "compilation off (--no-compile)"
            continue
        need = args.compile_reserve if compiled else 5
        if budget.left() < need:
            report["skipped"][label] = f"time budget: {budget.left():.0f} s left, needs {need:.0f}"
            continue
        log(f"training: {label}")
        # the plain loop is plain float32; the trainer's matmuls run in bf16 under autocast
        torch.backends.cuda.matmul.allow_tf32 = label != "naive"
        start = time.monotonic()
        if label == "naive":
            result = bench_train.bench_naive(
                config, device, encoder, args.train_warmup, args.train_steps
            )
            result.update(precision="float32 (TF32 off)", attention="explicit softmax",
                          optimizer="AdamW, for-loop")  # fmt: skip
        else:
            with compile_backend(args.compile_backend):
                result = bench_train.bench_trainer(
                    config, device, encoder, compiled, args.train_warmup, args.train_steps
                )
            result.update(precision="bf16 autocast", attention="sdpa",
                          optimizer="AdamW, fused on CUDA", compiled=compiled)  # fmt: skip
        result["wall_seconds"] = time.monotonic() - start
        report["variants"][label] = result
        free_memory()
        flush()
    variants = report["variants"]
    if "naive" in variants:
        fast = [
            variants[k]["steps_per_s"] for k in ("trainer", "trainer_compiled") if k in variants
        ]
        report["speedup"] = max(fast) / variants["naive"]["steps_per_s"] if fast else None
        report["images_per_s"] = max(fast) * args.train_batch if fast else None


@contextlib.contextmanager
def compile_backend(backend: str) -> Iterator[None]:
    """torch.compile calls inside the block use `backend` ("inductor" is torch's default)."""
    if backend == "inductor":
        yield
        return
    original = torch.compile

    def with_backend(model=None, **kwargs):
        kwargs.setdefault("backend", backend)
        return original(model, **kwargs)

    with mock.patch.object(torch, "compile", with_backend):
        yield


# ----------------------------------------------------------------------------- curve


def curve_config_class():
    """TrainConfig whose model sees 32 x 32 x 4 inputs (the ImageNet latents' geometry) while
    the data are the 10-class digits; every field is TrainConfig's."""
    from semantic_bottleneck.training.trainer import TrainConfig

    @dataclasses.dataclass(frozen=True)
    class Digits32Config(TrainConfig):
        def model_config(self) -> dict:
            return {**super().model_config(), "input_size": 32, "in_channels": 4}

    return Digits32Config


class Digits32Source:
    """The digits at ImageNet-latent geometry, with the digits classifier's tokens on the model's
    16 x 16 token grid.

    Each 8 x 8 digit is resized to 32 x 32 (bilinear) and copied into 4 channels; each of the
    classifier's 4 x 4 tokens (one per 2 x 2 patch of the digit) is repeated over the 4 x 4
    model tokens (2 x 2 patches of the 32 x 32 input) covering the same pixels.
    """

    def __init__(self, batch_size: int, device: torch.device, encoder: torch.nn.Module):
        import torch.nn.functional as F

        from semantic_bottleneck.training.data import digits

        x, y = digits()
        big = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)
        self.x, self.y = big.repeat(1, 4, 1, 1).to(device), y.to(device)
        self.batch_size = batch_size
        with torch.no_grad():
            z = encoder.to(device)(x.to(device)).float()  # (n, 16, C), row-major 4 x 4
        n, _, width = z.shape
        grid = z.reshape(n, 4, 4, width).repeat_interleave(4, 1).repeat_interleave(4, 2)
        self.z = grid.reshape(n, 256, width).contiguous()

    def batch(self, generator: torch.Generator, autocast=None):
        """One batch (x0, y, [z]) drawn with `generator`.

        Shapes: -> (B, 4, 32, 32), (B,), [(B, 256, C)].
        """
        idx = torch.randint(
            0, len(self.y), (self.batch_size,), generator=generator, device=generator.device
        ).to(self.x.device)
        return self.x[idx], self.y[idx], [self.z[idx]]


def curve_scale(config, steps: int, device: str) -> str:
    """The one line on the run's scale that the Fig. 12 page shows beside its curve."""
    return (
        f"REPA-B/2 recipe (width {config.hidden_size}, depth {config.depth}, patch "
        f"{config.patch_size}, projector after block {config.encoder_depth}) on the 8x8 digits "
        f"resized to 32x32x4 (256 tokens, ImageNet-latent geometry), digits-classifier target, "
        f"batch {config.batch_size}, lr {config.lr:g}, {config.mixed_precision} autocast, "
        f"{steps} steps on {device}"
    )


def stage_curve(args, budget: Budget, report: dict, flush: Callable[[], None]) -> None:
    """Stage 3: the REPA-B/2 nPR curve on the digits at 32 x 32 x 4, recorded into OUT/runs."""
    from semantic_bottleneck.training import distributed, runs
    from semantic_bottleneck.training.cli import write_curves
    from semantic_bottleneck.training.monitor import (
        JsonlLog,
        c_statistics,
        class_conditions,
        time_label_statistics,
    )
    from semantic_bottleneck.training.recipes import REPA_B2_RECIPE
    from semantic_bottleneck.training.repa import load_encoder
    from semantic_bottleneck.training.testbed import curve_summary
    from semantic_bottleneck.training.trainer import new_session, train_step, with_overrides

    device = torch.device(args.device)
    encoder = load_encoder("digits-classifier")
    precision = REPA_B2_RECIPE.mixed_precision if device.type == "cuda" else "no"
    base = with_overrides(
        REPA_B2_RECIPE, dataset="digits", repa_encoder="digits-classifier",
        z_dim=encoder.embed_dim, batch_size=args.curve_batch, log_every=args.curve_log_every,
        steps=args.curve_max_steps, mixed_precision=precision,
        **(TINY_CURVE if args.size == "tiny" else {}),
    )  # fmt: skip
    config = curve_config_class()(**dataclasses.asdict(base))
    run_dir = Path(args.work) / "curve-run"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    procs = distributed.Processes(0, 1, device)
    torch.backends.cuda.matmul.allow_tf32 = True
    source = Digits32Source(config.batch_size, device, encoder)
    with compile_backend(args.compile_backend):
        s = new_session(config, procs, source, args.curve_compile)
    logf = JsonlLog(run_dir / "log.jsonl")
    runs.write_provenance(run_dir, config, procs)
    conds = torch.arange(config.num_classes)
    seen: dict = {}

    def record_c(c):
        seen["c"] = c
        return c

    def monitor(step: int, losses: dict) -> None:
        rec = {"step": step, **losses}
        rec.update(
            c_statistics(class_conditions(s.model, config.time_convention, conds), "classes")
        )
        rec.update(c_statistics(class_conditions(s.ema, config.time_convention, conds),
                                "ema_classes"))  # fmt: skip
        rec.update(time_label_statistics(s.ema, config.time_convention, conds, "ema"))
        if "c" in seen:
            rec.update(c_statistics(seen.pop("c"), "batch"))
        logf.write(rec)

    monitor(0, {"loss": None})
    s.model.train()
    every, step, reserve = config.log_every, 0, args.curve_reserve
    log(f"curve: training REPA-B/2 at 32x32x4 on {device} for up to {budget.left():.0f} s")
    start = chunk_start = time.monotonic()
    first_step = chunk = None
    stopped = "max steps"
    while step < config.steps:
        log_now = (step + 1) % every == 0
        values = train_step(s, record_c if log_now else None)
        step += 1
        if step == 1:
            sync(device)
            first_step = time.monotonic() - start  # compilation included
            chunk_start = time.monotonic()
        if not log_now:
            continue
        monitor(step, {k: distributed.mean_over_processes(v, procs) for k, v in values.items()})
        now = time.monotonic()
        timed = max(1, every - (step == every))  # the first interval starts after step 1
        chunk = (now - chunk_start) / timed * every  # seconds per log interval
        chunk_start = now
        if step % (every * 10) == 0:
            log(f"curve: step {step}, loss {values['loss'].item():.4f}")
        if budget.left() < reserve + chunk:
            stopped = "time budget"
            break
    sync(device)
    seconds = time.monotonic() - start
    # the run stopped at `step`: its config says so (the rate is constant, so a shorter run is
    # the start of any longer one)
    prov_path = run_dir / runs.PROVENANCE
    prov = json.loads(prov_path.read_text())
    prov["config"]["steps"] = step
    prov["command"] = "python benchmarks/gpu_session.py " + shlex.join(args.argv)
    prov.update(commit_info(args.commit))
    prov["data"] = "sklearn digits 8x8 -> 32x32 bilinear, copied into 4 channels; 10 classes"
    prov["target"] = "digits classifier tokens, 4x4 -> 16x16 by repetition"
    prov["geometry"] = {"input_size": 32, "in_channels": 4, "tokens": 256}
    prov["stopped_by"] = stopped
    runs.write_text_atomic(prov_path, json.dumps(prov, indent=1))
    runs.finish_provenance(run_dir, step, seconds)
    scale = curve_scale(config, step, device_label(device))
    record = runs.record_run(run_dir, args.curve_name, scale=scale, folder=Path(args.out) / "runs")
    records = [json.loads(line) for line in record.with_suffix(".jsonl").read_text().splitlines()]
    summary = write_curves(run_dir)
    shutil.copy(run_dir / "curves.png", Path(args.out) / "curve.png")
    report.update(
        steps=step,
        train_seconds=seconds,
        first_step_seconds=first_step,
        steps_per_s=(step - 1) / (seconds - first_step) if step > 1 and first_step else None,
        stopped_by=stopped,
        log_every=every,
        logged_records=len(records),
        classes_npr=summary,
        batch_npr=curve_summary(records, "batch_npr_mean") if step >= every else None,
        record=str(record),
        record_log=str(record.with_suffix(".jsonl")),
        scale=scale,
        model_config=config.model_config(),
        parameters=sum(p.numel() for p in s.model.parameters()),
    )


# ----------------------------------------------------------------------------- e2e inputs


def ldm_layout(ch: int, ch_mult, blocks: int, attn_levels, z: int) -> dict[str, tuple]:
    """Key -> shape of an LDM (VQGAN-KL) autoencoder state dict, as LightningDiT's
    `tokenizer/autoencoder.py` names its modules (3 image channels in and out)."""
    shapes: dict[str, tuple] = {}

    def conv(p: str, cin: int, cout: int, k: int) -> None:
        shapes[f"{p}.weight"], shapes[f"{p}.bias"] = (cout, cin, k, k), (cout,)

    def norm(p: str, c: int) -> None:
        shapes[f"{p}.weight"], shapes[f"{p}.bias"] = (c,), (c,)

    def resnet(p: str, cin: int, cout: int) -> None:
        norm(f"{p}.norm1", cin)
        conv(f"{p}.conv1", cin, cout, 3)
        norm(f"{p}.norm2", cout)
        conv(f"{p}.conv2", cout, cout, 3)
        if cin != cout:
            conv(f"{p}.nin_shortcut", cin, cout, 1)

    def attn(p: str, c: int) -> None:
        norm(f"{p}.norm", c)
        for name in ("q", "k", "v", "proj_out"):
            conv(f"{p}.{name}", c, c, 1)

    def mid(p: str, c: int) -> None:
        resnet(f"{p}.mid.block_1", c, c)
        attn(f"{p}.mid.attn_1", c)
        resnet(f"{p}.mid.block_2", c, c)

    levels = len(ch_mult)
    conv("encoder.conv_in", 3, ch, 3)
    c = ch
    for i, m in enumerate(ch_mult):
        for j in range(blocks):
            resnet(f"encoder.down.{i}.block.{j}", c, ch * m)
            c = ch * m
            if i in attn_levels:
                attn(f"encoder.down.{i}.attn.{j}", c)
        if i != levels - 1:
            conv(f"encoder.down.{i}.downsample.conv", c, c, 3)
    mid("encoder", c)
    norm("encoder.norm_out", c)
    conv("encoder.conv_out", c, 2 * z, 3)
    conv("quant_conv", 2 * z, 2 * z, 1)
    conv("post_quant_conv", z, z, 1)
    conv("decoder.conv_in", z, c, 3)
    mid("decoder", c)
    for i in reversed(range(levels)):
        for j in range(blocks + 1):
            resnet(f"decoder.up.{i}.block.{j}", c, ch * ch_mult[i])
            c = ch * ch_mult[i]
            if i in attn_levels:
                attn(f"decoder.up.{i}.attn.{j}", c)
        if i != 0:
            conv(f"decoder.up.{i}.upsample.conv", c, c, 3)
    norm("decoder.norm_out", c)
    conv("decoder.conv_out", c, 3, 3)
    return shapes


def random_ldm_state(layout: dict[str, tuple], seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights for an LDM layout: fan-in scaled, GroupNorm gains near 1."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in layout.items():
        fan_in = math.prod(shape[1:]) if len(shape) > 1 else 1
        value = torch.randn(shape, generator=g) / fan_in**0.5
        if len(shape) == 1 and ".norm" in key and key.endswith("weight"):
            value = 1 + 0.1 * value
        state[key] = value
    return state


def random_inception(seed: int = 0) -> torch.nn.Module:
    """torch-fidelity's InceptionV3 with random He-initialised weights (no file is read)."""
    import torch_fidelity.feature_extractor_inceptionv3 as inception

    cls = inception.FeatureExtractorInceptionV3
    with (
        mock.patch.object(inception, "load_state_dict_from_url", lambda *a, **k: None),
        mock.patch.object(cls, "load_state_dict", lambda self, state: None),
        torch.random.fork_rng(),
    ):
        torch.manual_seed(seed)
        net = cls("inception-v3-compat", ["2048", "logits_unbiased"])
        for m in net.modules():  # keeps the activations alive through the ReLU layers
            if isinstance(m, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            elif isinstance(m, torch.nn.Linear):
                torch.nn.init.normal_(m.weight, std=m.in_features**-0.5)
    return net


def register_clip(inputs: Path) -> None:
    """Make the stand-in CLIP config known to open_clip (once per process)."""
    import open_clip

    open_clip.add_model_config(inputs / f"{CLIP_NAME}.json")


def prepare_inputs(weights: Path, inputs: Path, size: str) -> dict:
    """The stand-ins of every decoding and scoring input in the weights cache; returns what was
    written (names and bytes)."""
    import numpy as np
    from diffusers import AutoencoderKL

    from semantic_bottleneck.generation import vavae

    written = {}
    with torch.random.fork_rng():
        torch.manual_seed(0)
        vae = AutoencoderKL(
            block_out_channels=(8, 8), down_block_types=("DownEncoderBlock2D",) * 2,
            up_block_types=("UpDecoderBlock2D",) * 2, layers_per_block=1, latent_channels=4,
            norm_num_groups=4,
        ).eval()  # fmt: skip
    vae.save_pretrained(weights / "sd-vae-ft-ema")
    written["sd-vae-ft-ema"] = "AutoencoderKL, 2x up-sampling, random weights"
    state = random_ldm_state(ldm_layout(**LDM_LAYOUTS[size]))
    config = vavae.infer_ldm_config(state)
    folder = weights / "vavae-f16d32"
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(state, folder / "vavae-imagenet256-f16d32-dinov2.pt")
    g = torch.Generator().manual_seed(1)
    stats = {"mean": 0.1 * torch.randn(1, 32, 1, 1, generator=g),
             "std": 0.5 + torch.rand(1, 32, 1, 1, generator=g)}  # fmt: skip
    torch.save(stats, folder / "latents_stats.pt")
    written["vavae-f16d32"] = f"LDM autoencoder {config}, f16d32: {config == vavae.VAVAE_F16D32}"
    folder = weights / "inception-fidelity"
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(random_inception().state_dict(),
               folder / "weights-inception-2015-12-05-6726825d.pth")  # fmt: skip
    written["inception-fidelity"] = "torch-fidelity InceptionV3, random weights"
    folder = weights / "adm-ref-imagenet256"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    side = 64 if size == "xl" else 16
    np.savez(folder / "VIRTUAL_imagenet256_labeled.npz",
             arr_0=rng.integers(0, 256, (16, side, side, 3), dtype=np.uint8),
             mu=np.full(2048, 0.01), sigma=np.zeros((2048, 2048)))  # fmt: skip
    written["adm-ref-imagenet256"] = f"16 random {side}x{side} images, mu 0.01, sigma 0"
    import open_clip

    inputs.mkdir(parents=True, exist_ok=True)
    (inputs / f"{CLIP_NAME}.json").write_text(json.dumps(CLIP_CONFIG))
    register_clip(inputs)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        clip = open_clip.create_model(CLIP_NAME)
    folder = weights / "clip-vit-l-14-openai"
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(clip.state_dict(), folder / "open_clip_pytorch_model.bin")
    written["clip-vit-l-14-openai"] = f"open_clip {CLIP_NAME} (ViT, width 64), random weights"
    return written


def e2e_entry(family: str):
    """The first released checkpoint of a family in the registry."""
    from semantic_bottleneck.zoo.registry import CHECKPOINTS

    return next(e for e in CHECKPOINTS if e.family == family)


@contextlib.contextmanager
def tiny_registry(size: str) -> Iterator[dict[str, str]]:
    """At tiny size, a toy checkpoint "tiny-NAME" registered beside each family's official one
    (its entry with TINY_CLASSES classes and a toy config), and the VA-VAE loader accepting the
    small stand-in layout. Yields family -> checkpoint name (the official names at XL size)."""
    from semantic_bottleneck.generation import decode
    from semantic_bottleneck.zoo import registry

    names = {f: e2e_entry(f).name for f in E2E_FAMILIES}
    if size != "tiny":
        yield names
        return
    manifests, entries = {}, {}
    for family in E2E_FAMILIES:
        entry = e2e_entry(family)
        config = entry.config | TINY_E2E[family] | {"num_classes": TINY_CLASSES}
        name = f"tiny-{entry.name}"
        manifests[f"{name}.json"] = {"config": config}
        entries[name] = dataclasses.replace(
            entry, name=name, manifest=f"{name}.json", urls=("https://example.invalid/x.pt",),
            hf_repo=None, num_classes=TINY_CLASSES, null_class=TINY_CLASSES,
        )  # fmt: skip
        names[family] = name
    read = registry.read_manifest
    load_vavae = decode.load_vavae
    with (
        mock.patch.dict(registry.REGISTRY, entries),
        mock.patch.object(registry, "read_manifest", lambda f: manifests.get(f) or read(f)),
        mock.patch.object(decode, "load_vavae", lambda *a, **k: load_vavae(*a, **k, expect=None)),
    ):
        yield names


def write_checkpoint(name: str, weights: Path, device: torch.device) -> dict:
    """A checkpoint file of `name` with random weights in the official layout: the model built
    from its manifest config, every trainable parameter drawn from N(0, 0.02), buffers and
    fixed tables as built, saved as a bare state dict (as the official files are)."""
    from semantic_bottleneck.zoo import build_model, registry

    entry = registry.get_checkpoint(name)
    start = time.monotonic()
    with torch.device(device):
        model = build_model(entry.family, **entry.config)
    gen = torch.Generator(device).manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.normal_(0.0, 0.02, generator=gen)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    del model
    manifest = registry.read_manifest(entry.manifest).get("keys")
    layout = {k: list(v.shape) for k, v in state.items()}
    path = weights / entry.name / entry.filename
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return {
        "file": entry.filename,
        "bytes": path.stat().st_size,
        "keys": len(state),
        "parameters": sum(v.numel() for v in state.values()),
        "layout_matches_manifest": None if manifest is None else layout == manifest,
        "seconds": time.monotonic() - start,
    }


def run_cli(argv: list[str]) -> tuple[int, str]:
    """`semantic-bottleneck ARGV` in this process: (exit code, what it printed on stderr)."""
    from semantic_bottleneck.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = main(argv)
    sys.stderr.write(err.getvalue())
    return rc, err.getvalue()


def e2e_family(family: str, args, weights: Path, inputs: Path) -> dict:
    """Checkpoint, `generate` and one sweep row of one family on the device."""
    import numpy as np

    from semantic_bottleneck.generation.npz import load_samples
    from semantic_bottleneck.sweeps import run as sweep

    device = torch.device(args.device)
    out: dict = {}
    register_clip(inputs)
    cache = Path(args.work) / f"artifacts-{family}"
    with (
        tiny_registry(args.size) as names,
        environment(
            SEMANTIC_BOTTLENECK_WEIGHTS=str(weights), SEMANTIC_BOTTLENECK_CACHE=str(cache)
        ),  # fmt: skip
    ):
        name = names[family]
        out["checkpoint_name"] = name
        log(f"e2e {family}: writing {name}")
        out["checkpoint"] = write_checkpoint(name, weights, device)
        npz = Path(args.work) / f"generate-{family}.npz"
        argv = ["generate", name, "--out", str(npz), "--per-class", str(args.e2e_per_class),
                "--num-steps", str(args.e2e_steps), "--batch-size", str(args.e2e_batch),
                "--device", args.device, "--cache-dir", str(weights), "--no-progress"]  # fmt: skip
        log(f"e2e {family}: semantic-bottleneck {shlex.join(argv)}")
        start = time.monotonic()
        rc, err = run_cli(argv)
        gen: dict = {"command": "semantic-bottleneck " + shlex.join(argv), "rc": rc}
        gen["seconds"] = time.monotonic() - start
        if rc == 0:
            samples = load_samples(npz)
            images = samples.images
            gen.update(
                samples=int(images.shape[0]), image_shape=list(images.shape[1:]),
                dtype=str(images.dtype), pixel_mean=float(images.mean()),
                pixel_std=float(images.std()),
                distinct_images=int(len(np.unique(images.reshape(len(images), -1), axis=0))),
                info_model=samples.info.get("model"), bf16=samples.info.get("bf16"),
            )  # fmt: skip
            npz.unlink()
        else:
            gen["stderr"] = err[-2000:]
        out["generate"] = gen
        if family in args.sweep_families:
            log(f"e2e {family}: sweep row {E2E_ROW!r}")
            rows = [r for r in sweep.paper_rows("table2") if r.label == E2E_ROW]
            settings = sweep.SweepSettings(per_class=args.e2e_per_class, num_steps=args.e2e_steps,
                                           last_k=1, grid_per_class=1)  # fmt: skip
            scoring = sweep.PaperEval(clip_model=CLIP_NAME, clip_pretrained=str(
                weights / "clip-vit-l-14-openai" / "open_clip_pytorch_model.bin"))  # fmt: skip
            start = time.monotonic()
            result = sweep.run_paper_sweep(
                name, rows, settings, scoring, cache_dir=str(weights), device=args.device,
                batch_size=args.e2e_batch, progress=False, allow_cpu=device.type == "cpu",
            )  # fmt: skip
            row = dict(result["table"][0])
            numbers = {k: v for k, v in row.items() if isinstance(v, (int, float))}
            out["sweep_row"] = {
                **row,
                "seconds": time.monotonic() - start,
                "numerics": result["numerics"],
                "finite": all(math.isfinite(v) for v in numbers.values()),
            }
        else:
            out["sweep_row"] = {"skipped": "not in --sweep-families"}
        shutil.rmtree(weights / e2e_entry(family).name, ignore_errors=True)
        shutil.rmtree(weights / name, ignore_errors=True)
    shutil.rmtree(cache, ignore_errors=True)
    ok = out["generate"]["rc"] == 0 and out["sweep_row"].get("finite", True)
    out["status"] = "ok" if ok else "failed"
    return out


def child_argv(family: str, args, weights: Path, inputs: Path, result: Path) -> list[str]:
    """The command line of a process that runs one family's end-to-end check."""
    argv = [sys.executable, str(Path(__file__).resolve()), "--e2e-child", family,
            "--e2e-weights", str(weights), "--e2e-inputs", str(inputs),
            "--e2e-result", str(result), "--size", args.size, "--device", args.device,
            "--work", str(args.work), "--out", str(args.out),
            "--sweep-families", ",".join(args.sweep_families)]  # fmt: skip
    for flag in ("e2e_per_class", "e2e_steps", "e2e_batch"):
        argv += ["--" + flag.replace("_", "-"), str(getattr(args, flag))]
    return argv


def stage_e2e(args, budget: Budget, report: dict, flush: Callable[[], None]) -> None:
    """Stage 4: the paper path on the device for every XL family (see the module docstring)."""
    weights = Path(args.work) / "weights"
    inputs = Path(args.work) / "inputs"
    log("e2e: writing the stand-in inputs")
    start = time.monotonic()
    report["inputs"] = prepare_inputs(weights, inputs, args.size)
    report["inputs_seconds"] = time.monotonic() - start
    report.update(per_class=args.e2e_per_class, num_steps=args.e2e_steps, row=E2E_ROW,
                  workers=args.e2e_workers, families={})  # fmt: skip
    families = [f for f in E2E_FAMILIES if f in args.families]
    for family in (f for f in E2E_FAMILIES if f not in families):
        report["families"][family] = {"status": "skipped", "reason": "not in --families"}
    if args.e2e_workers <= 0:
        for family in families:
            if budget.left() < args.e2e_reserve:
                report["families"][family] = {
                    "status": "skipped",
                    "reason": f"time budget: {budget.left():.0f} s left",
                }
                continue
            start = time.monotonic()
            try:
                report["families"][family] = e2e_family(family, args, weights, inputs)
            except Exception as err:  # noqa: BLE001 (one family's failure is its result)
                report["families"][family] = {"status": "error", "error": repr(err),
                                              "traceback": traceback.format_exc()}  # fmt: skip
            report["families"][family]["seconds"] = time.monotonic() - start
            flush()
    else:
        run_children(families, args, weights, inputs, budget, report, flush)
    done = [f for f, r in report["families"].items() if r.get("status") == "ok"]
    report["families_ok"] = done


def run_children(families, args, weights, inputs, budget, report, flush) -> None:
    """Run each family's check in its own process, `args.e2e_workers` at a time, until the
    budget ends (then the running ones are stopped and reported)."""
    pending, running = list(families), {}
    while pending or running:
        while pending and len(running) < args.e2e_workers and budget.left() > args.e2e_reserve:
            family = pending.pop(0)
            result = Path(args.work) / f"e2e-{family}.json"
            proc = subprocess.Popen(child_argv(family, args, weights, inputs, result))
            running[family] = (proc, result, time.monotonic())
        if not running:
            break
        time.sleep(0.5)
        for family, (proc, result, started) in list(running.items()):
            if proc.poll() is None and budget.left() > 0:
                continue
            if proc.poll() is None:
                proc.kill()
                proc.wait()
                report["families"][family] = {
                    "status": "skipped",
                    "reason": "time budget: stopped while running",
                }
            elif result.is_file():
                report["families"][family] = json.loads(result.read_text())
            else:
                report["families"][family] = {"status": "error", "rc": proc.returncode}
            report["families"][family]["seconds"] = time.monotonic() - started
            del running[family]
            flush()
    for family in pending:
        report["families"][family] = {
            "status": "skipped",
            "reason": f"time budget: {budget.left():.0f} s left",
        }


def e2e_child(args) -> int:
    """The --e2e-child mode: one family's check, its result written to --e2e-result."""
    weights, inputs = Path(args.e2e_weights), Path(args.e2e_inputs)
    try:
        result = e2e_family(args.e2e_child, args, weights, inputs)
    except Exception as err:  # noqa: BLE001 (reported to the parent)
        result = {"status": "error", "error": repr(err), "traceback": traceback.format_exc()}
    write_json(Path(args.e2e_result), result)
    return 0


# ----------------------------------------------------------------------------- the session

STAGE_FUNCTIONS: dict[str, Callable] = {
    "sampling": stage_sampling,
    "training": stage_training,
    "curve": stage_curve,
    "e2e": stage_e2e,
}


def run_stages(args, session: dict, flush: Callable[[], None], clock=time.monotonic) -> None:
    """Run the stages in order inside the global deadline, writing the JSON after each."""
    deadline = Budget(args.deadline, clock)
    for name in args.stages:
        left = deadline.left()
        stage_budget = min(args.budgets[name], left)
        report: dict = {"budget_s": stage_budget}
        session["stages"][name] = report
        if left < args.min_stage_seconds:
            report.update(status="skipped", reason=f"global deadline: {max(left, 0):.0f} s of "
                          f"{args.deadline:.0f} s left, a stage needs {args.min_stage_seconds:.0f}")  # fmt: skip
            log(f"stage {name}: skipped ({report['reason']})")
            flush()
            continue
        log(f"stage {name}: start (budget {stage_budget:.0f} s)")
        report["status"] = "running"
        flush()
        budget = Budget(stage_budget, clock)
        try:
            STAGE_FUNCTIONS[name](args, budget, report, flush)
            report["status"] = "ok"
        except Exception as err:  # noqa: BLE001 (a failed stage is reported; the next runs)
            report.update(status="error", error=repr(err), traceback=traceback.format_exc())
            log(f"stage {name}: error {err!r}")
        free_memory()
        report["seconds"] = budget.used()
        session["elapsed_s"] = deadline.used()
        log(f"stage {name}: {report['status']} in {report['seconds']:.1f} s")
        flush()


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The command line, with size-dependent defaults filled in."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=os.environ.get("OUT") or "gpu_session_out",
                   help="results folder (default: $OUT)")  # fmt: skip
    p.add_argument("--work", default=None, help="scratch folder (default: a temporary one)")
    p.add_argument("--size", choices=sorted(SIZES), default="xl")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--stages", default=",".join(STAGES), help="comma-separated, in order")
    p.add_argument("--deadline", type=float, default=480.0, help="global seconds")
    p.add_argument("--min-stage-seconds", type=float, default=10.0)
    for stage in STAGES:
        p.add_argument(f"--budget-{stage}", type=float, default=None, help="seconds")
    p.add_argument("--commit", default=None, help="commit to record where .git is absent")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="torch.compile the fast paths (default: on CUDA)")  # fmt: skip
    p.add_argument("--compile-scope", choices=["blocks", "model"], default="blocks")
    p.add_argument("--compile-mode", default="default",
                   help="default, reduce-overhead (CUDA graphs), max-autotune-no-cudagraphs")  # fmt: skip
    p.add_argument("--compile-backend", default="inductor", help="inductor, or eager (tests)")
    p.add_argument("--compile-reserve", type=float, default=None,
                   help="seconds a compiled variant needs to start (default: 40 on CUDA)")  # fmt: skip
    p.add_argument("--tolerance", type=float, default=1e-2,
                   help="relative max difference of latents counted as agreeing")  # fmt: skip
    p.add_argument("--peak-tflops", type=float, default=None)
    for key, value in SIZES["xl"].items():
        p.add_argument("--" + key.replace("_", "-"), type=type(value), default=None)
    p.add_argument("--curve-name", default=CURVE_NAME)
    p.add_argument("--curve-compile", action=argparse.BooleanOptionalAction, default=False,
                   help="torch.compile the curve's model (its compilation costs training time)")  # fmt: skip
    p.add_argument("--curve-reserve", type=float, default=None,
                   help="seconds kept for recording after training (default 8, tiny 1)")  # fmt: skip
    p.add_argument("--families", default=",".join(E2E_FAMILIES))
    p.add_argument("--sweep-families", default=None,
                   help="families with a sweep row (default: all; tiny: repa)")  # fmt: skip
    p.add_argument("--e2e-workers", type=int, default=None,
                   help="processes at once (0: in this process; default 3 on CUDA, else 0)")  # fmt: skip
    p.add_argument("--e2e-reserve", type=float, default=None,
                   help="seconds a family needs to start (default 20, tiny 2)")  # fmt: skip
    p.add_argument("--download-wheels", default=None, metavar="DIR",
                   help="download the wheels the GPU machine lacks into DIR, then stop")  # fmt: skip
    for hidden in ("--e2e-child", "--e2e-weights", "--e2e-inputs", "--e2e-result"):
        p.add_argument(hidden, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.argv = list(argv)
    cuda = args.device.startswith("cuda")
    for key, value in SIZES[args.size].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.stages = [s for s in args.stages.split(",") if s]
    unknown = set(args.stages) - set(STAGES)
    if unknown:
        p.error(f"--stages: unknown {sorted(unknown)}; expected {list(STAGES)}")
    args.budgets = {
        s: BUDGETS[args.size][s]
        if getattr(args, f"budget_{s}") is None
        else getattr(args, f"budget_{s}")
        for s in STAGES
    }
    args.compile = cuda if args.compile is None else args.compile
    if args.compile_reserve is None:
        args.compile_reserve = 40.0 if cuda and args.compile_backend == "inductor" else 5.0
    if args.curve_reserve is None:
        args.curve_reserve = 1.0 if args.size == "tiny" else 8.0
    args.families = [f for f in args.families.split(",") if f]
    if args.sweep_families is None:
        args.sweep_families = "repa" if args.size == "tiny" else ",".join(E2E_FAMILIES)
    args.sweep_families = [f for f in args.sweep_families.split(",") if f]
    if args.e2e_workers is None:
        args.e2e_workers = 3 if cuda else 0
    if args.e2e_reserve is None:
        args.e2e_reserve = 2.0 if args.size == "tiny" else 20.0
    return args


def download_wheels(folder: str) -> int:
    """pip download WHEELS for the GPU machine's Python (3.12, x86-64) into `folder`."""
    platforms = ["manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--python-version", "3.12", "--implementation", "cp", "-d", folder]  # fmt: skip
    for name in platforms:
        cmd += ["--platform", name]
    return subprocess.call([*cmd, *WHEELS])


def main(argv: list[str] | None = None) -> dict:
    """Run the session; returns what it wrote to OUT/gpu_session.json."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    if args.download_wheels:
        rc = download_wheels(args.download_wheels)
        return {"download_wheels": args.download_wheels, "rc": rc}
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is downloaded, anywhere
    if args.e2e_child:
        return {"rc": e2e_child(args)}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    own_work = args.work is None
    args.work = args.work or tempfile.mkdtemp(prefix="gpu_session_")
    Path(args.work).mkdir(parents=True, exist_ok=True)
    device = torch.device(args.device)
    session = {
        "script": "benchmarks/gpu_session.py",
        "command": "python benchmarks/gpu_session.py " + shlex.join(argv),
        **commit_info(args.commit),
        "device": device_label(device),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "size": args.size,
        "deadline_s": args.deadline,
        "budgets_s": args.budgets,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "imports": import_status(),
        "stages": {},
    }
    path = out / "gpu_session.json"

    def flush() -> None:
        write_json(path, session)

    flush()
    try:
        run_stages(args, session, flush)
    finally:
        session["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        flush()
        if own_work:
            shutil.rmtree(args.work, ignore_errors=True)
    log(f"wrote {path}")
    return session


if __name__ == "__main__":
    main()
