"""Command line: `semantic-bottleneck generate MODEL --out FILE.npz`, single process or torchrun.

MODEL is a registry checkpoint (`semantic-bottleneck inputs` lists them; its file and its VAE must
be fetched) or a testbed model (testbed-ddpm, testbed-flow, testbed-repa; trained on first use). The samples are
`--per-class` per class of every class, seeds `--base-seed`, `--base-seed` + 1, ..., so two runs
that differ only in the `--prune-*` flags are a paired comparison. Under torchrun every rank
samples a shard and rank 0 writes the one `.npz`:

    torchrun --nproc_per_node 8 -m semantic_bottleneck.generation.cli dit-xl-2 --out dit.npz \\
        --per-class 5 --prune-side tail --prune-count 700

Everything is validated (model name, sampler settings, prune spec, labels) before any weight is
read or any sample drawn.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

import torch

from semantic_bottleneck import sampling
from semantic_bottleneck.sampling.pruning import (
    SCHEDULES,
    SIDES,
    PruneSpec,
    PruneSpecError,
    check_settings,
    check_spec,
)
from semantic_bottleneck.training.testbed import load_trained, testbed_config, testbed_source
from semantic_bottleneck.zoo import denoiser

from .decode import DIGITS, LATENT_CHANNELS, SD_VAES, VAVAE, MissingAssetError, load_decoder
from .run import SHARDINGS, check_request, generate_npz, rank_and_world
from .source import ModelSource, checkpoint_source, load_checkpoint


def resolve_model(name: str) -> ModelSource:
    """Describe a registry checkpoint or testbed model without reading any weights."""
    return testbed_source(name) if name.startswith("testbed-") else checkpoint_source(name)


def load_model(source: ModelSource, cache_dir: Path | None, device: str) -> torch.nn.Module:
    """The model in eval mode on `device` (testbed models are trained when not cached)."""
    if source.vae == DIGITS:
        model = load_trained(testbed_config(source.name))[0]
        return model.eval().requires_grad_(False).to(device)
    return load_checkpoint(source.name, cache_dir, device)


# PruneSpec field -> the flag that sets it, to name flags in the spec's own messages
PRUNE_FLAGS = {
    "side": "--prune-side",
    "tau": "--prune-tau",
    "count": "--prune-count",
    "schedule": "--prune-schedule",
    "k": "--prune-k",
    "steps": "--num-steps",
}


def prune_from_args(args: argparse.Namespace) -> PruneSpec | None:
    """The PruneSpec of the --prune-* flags (None without any), checked by the spec's own rules.

    Each flag's value is checked for itself first, then with the others, then that
    --prune-side was given; k <= steps waits for the sampler (`check_request`).

    Raises:
        ValueError: naming the flags at fault (PruneSpecError messages, fields as flags).
    """
    given = {field: getattr(args, f"prune_{field}") for field in ("tau", "count", "schedule", "k")}
    schedule = given["schedule"] or "every"
    try:
        check_settings(given["tau"], given["count"], schedule, given["k"])
        if args.prune_side is None:
            named = [PRUNE_FLAGS[f] for f, value in given.items() if value is not None]
            if named:
                raise ValueError(f"--prune-side is required with {', '.join(named)}")
            return None
        spec = PruneSpec(args.prune_side, given["tau"], given["count"], schedule, given["k"])
        check_spec(spec)
    except PruneSpecError as err:
        raise ValueError(err.render(PRUNE_FLAGS)) from None
    return spec


def check_flags(args: argparse.Namespace) -> None:
    """Each numeric flag checked for what it is, naming the flag, before anything else runs."""
    counts = [("--per-class", args.per_class, 1), ("--batch-size", args.batch_size, 1)]
    counts += [("--base-seed", args.base_seed, 0)]
    if args.num_steps is not None:
        counts.append(("--num-steps", args.num_steps, 1))
    for flag, value, low in counts:
        if value < low:
            raise ValueError(f"{flag}: expected an integer >= {low}, got {value}")
    scale = args.cfg_scale
    if scale is not None and not (math.isfinite(scale) and scale >= 1.0):
        raise ValueError(
            f"--cfg-scale: expected a finite number >= 1 (1 = no guidance), got {scale}"
        )


def sampler_from_args(source: ModelSource, args: argparse.Namespace):
    """The model's own sampler config, with --mode, --num-steps and --cfg-scale applied."""
    return source.sampler_config(args.mode, num_steps=args.num_steps, cfg_scale=args.cfg_scale)


def init_distributed() -> bool:
    """Join the torchrun process group (nccl on GPUs, else gloo); False when not under torchrun."""
    dist = torch.distributed
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return False
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl")
    else:
        dist.init_process_group("gloo")
    return True


def default_device() -> str:
    """cuda:LOCAL_RANK when a GPU is present (torchrun sets LOCAL_RANK), else cpu."""
    if torch.cuda.is_available():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return "cpu"


def run(args: argparse.Namespace) -> Path | None:
    """Validate everything, then load the model and decoder and write the `.npz`.

    Returns:
        the `.npz` path on rank 0 (the only process without torchrun), None on other ranks.
    """
    check_flags(args)
    source = resolve_model(args.model)
    prune = prune_from_args(args)
    config = sampler_from_args(source, args)
    labels = sampling.balanced_labels(source.num_classes, args.per_class)
    seeds = sampling.sample_seeds(args.base_seed, len(labels))
    check_request(source.family, labels, seeds, config, prune, args.batch_size, source.latent_shape)
    if args.shard not in SHARDINGS:
        raise ValueError(f"--shard: expected one of {SHARDINGS}, got {args.shard!r}")
    vae = args.vae or source.vae
    if LATENT_CHANNELS[vae] != source.latent_shape[0]:
        raise ValueError(
            f"--vae {vae} decodes {LATENT_CHANNELS[vae]}-channel latents; {source.name} samples "
            f"{source.latent_shape[0]} channels"
        )
    if args.dry_run:
        print(f"model: {source.name} ({source.family}, {source.num_classes} classes, vae {vae})")
        print(f"sampler: {config!r}")
        print(f"samples: {len(labels)} (seeds {seeds[0]}..{seeds[-1]}), prune: {prune}")
        print(f"numerics: {'bf16 autocast' if args.bf16 else 'float32'}, TF32 {args.tf32}")
        return None
    started = init_distributed()
    try:
        torch.backends.cuda.matmul.allow_tf32 = args.tf32  # the official scripts' default: on
        device = args.device or default_device()
        model = load_model(source, args.cache_dir, device)
        decode = load_decoder(vae, source.family, args.cache_dir, device)

        rank = rank_and_world()[0]
        path = generate_npz(
            args.out, denoiser(model), model.condition, source.family, labels, seeds, config,
            decode, latent_shape=source.latent_shape, shard=args.shard,
            extra_info={"model": source.name, "vae": vae},
            prune=prune, batch_size=args.batch_size, device=device, bf16=args.bf16,
            progress=not args.no_progress and rank == 0,
        )  # fmt: skip
        return path if rank == 0 else None
    finally:
        if started:
            torch.distributed.destroy_process_group()


def _cmd_generate(args: argparse.Namespace) -> int:
    try:
        path = run(args)
    except PruneSpecError as err:  # a rule that needs the sampler (k <= steps): flag names
        print(f"error: {err.render(PRUNE_FLAGS)}", file=sys.stderr)
        return 2
    except (ValueError, MissingAssetError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if path is not None:
        print(path)
    return 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of `generate` (kebab-case names of the settings they set)."""
    p.add_argument("model", help="registry checkpoint (e.g. dit-xl-2) or testbed-ddpm/-flow/-repa")
    p.add_argument("--out", type=Path, required=True, help="output .npz (ADM format)")
    p.add_argument("--per-class", type=int, default=5, help="samples per class (paper: 5)")
    p.add_argument("--base-seed", type=int, default=0, help="seed of sample 0; sample i: +i")
    p.add_argument(
        "--mode", default=None, help="sampler mode: ddpm, sde or ode (default: headline)"
    )
    p.add_argument("--num-steps", type=int, default=None, help="sampler steps (default: headline)")
    p.add_argument(
        "--cfg-scale", type=float, default=None, help="guidance scale (default: headline)"
    )
    p.add_argument("--vae", choices=[*SD_VAES, VAVAE, DIGITS], default=None,
                   help="decoder (default: the model's)")  # fmt: skip
    p.add_argument("--prune-side", choices=SIDES, default=None, help="tail or head; unset: none")
    p.add_argument("--prune-tau", type=float, default=None, help="threshold on |c_i|")
    p.add_argument("--prune-count", type=int, default=None, help="coordinates removed per row")
    p.add_argument("--prune-schedule", choices=SCHEDULES, default=None,
                   help="steps pruned (default: every)")  # fmt: skip
    p.add_argument("--prune-k", type=int, default=None, help="k of schedule last_k")
    p.add_argument("--batch-size", type=int, default=32, help="samples per sampler call per rank")
    p.add_argument("--shard", choices=SHARDINGS, default="contiguous", help="split over ranks")
    p.add_argument("--device", default=None, help="default: cuda:LOCAL_RANK if available, else cpu")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast for the model")
    p.add_argument("--tf32", action=argparse.BooleanOptionalAction, default=True,
                   help="TF32 matmuls (on in the official scripts)")  # fmt: skip
    p.add_argument("--cache-dir", type=Path, default=None, help="weights cache")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--dry-run", action="store_true",
                   help="print the model, sampler and request, then stop (nothing is loaded)")  # fmt: skip


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the `generate` subcommand."""
    p = subparsers.add_parser("generate", help="sample images (optionally with c pruned) to .npz")
    add_arguments(p)
    p.set_defaults(func=_cmd_generate)


def build_parser() -> argparse.ArgumentParser:
    """The stand-alone parser of `python -m semantic_bottleneck.generation.cli`."""
    parser = argparse.ArgumentParser(prog="generate", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    """`python -m semantic_bottleneck.generation.cli ...` (the torchrun entry)."""
    return _cmd_generate(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
