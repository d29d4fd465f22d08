"""Command line: `semantic-bottleneck generate MODEL --out FILE.npz`, single process or torchrun.

MODEL is a registry checkpoint (`semantic-bottleneck inputs` lists them; its file and its VAE must
be fetched) or a testbed model (testbed-ddpm, testbed-flow; trained on first use). The samples are
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
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from semantic_bottleneck import sampling
from semantic_bottleneck.sampling.pruning import SCHEDULES, SIDES, PruneSpec

from .decode import DIGITS, LATENT_CHANNELS, SD_VAES, VAVAE, MissingAssetError, load_decoder
from .run import SHARDINGS, check_request, generate_npz, rank_and_world

# testbed models: training objective -> sampler family of the same time convention
_TESTBED_SAMPLERS = {"ddpm": "dit", "repa": "repa"}


@dataclass(frozen=True)
class ModelSource:
    """What the command needs to know about a model before loading it.

    Attributes:
        name: registry checkpoint or testbed model name.
        family: sampler family (and pixel convention).
        num_classes: real classes (labels 0..num_classes-1); the null class is num_classes.
        latent_shape: (C, H, W) of one latent.
        vae: decoder name (see `decode.load_decoder`).
    """

    name: str
    family: str
    num_classes: int
    latent_shape: tuple[int, int, int]
    vae: str


def resolve_model(name: str) -> ModelSource:
    """Describe a registry checkpoint or testbed model without reading any weights."""
    from semantic_bottleneck.zoo import registry

    if name.startswith("testbed-"):
        from semantic_bottleneck.testbed import testbed_config
        from semantic_bottleneck.training.data import DIGITS_CLASSES, DIGITS_SIZE

        config = testbed_config(name)
        shape = (1, DIGITS_SIZE, DIGITS_SIZE)
        return ModelSource(name, _TESTBED_SAMPLERS[config.objective], DIGITS_CLASSES, shape, DIGITS)
    entry = registry.get_checkpoint(name)
    cfg = entry.config
    shape = (cfg["in_channels"], cfg["input_size"], cfg["input_size"])
    return ModelSource(name, entry.family, entry.num_classes, shape, entry.vae)


def load_model(source: ModelSource, cache_dir: Path | None, device: str) -> torch.nn.Module:
    """The model in eval mode on `device` (testbed models are trained when not cached)."""
    if source.vae == DIGITS:
        from semantic_bottleneck.testbed import load_trained, testbed_config

        model = load_trained(testbed_config(source.name))[0]
    else:
        from semantic_bottleneck.zoo import build_model, registry
        from semantic_bottleneck.zoo.checkpoint import load_into
        from semantic_bottleneck.zoo.fetch import fetch_command, locate

        entry = registry.get_checkpoint(source.name)
        path = locate(entry, cache_dir)
        if path is None:
            raise MissingAssetError(
                f"{entry.name}: {entry.filename} is not in the weights cache; run "
                f"`{fetch_command(entry.name)}`"
            )
        model = load_into(build_model(entry.family, **entry.config), path, entry.weights_key)
    return model.eval().requires_grad_(False).to(device)


def prune_from_args(args: argparse.Namespace) -> PruneSpec | None:
    """The PruneSpec of the --prune-* flags (None without --prune-side)."""
    if args.prune_side is None:
        given = [f for f in ("prune_tau", "prune_count", "prune_k") if getattr(args, f) is not None]
        if given:
            raise ValueError(f"--prune-side is required with {', '.join(given)}")
        return None
    return PruneSpec(
        side=args.prune_side,
        tau=args.prune_tau,
        count=args.prune_count,
        schedule=args.prune_schedule,
        k=args.prune_k,
    )


def sampler_from_args(family: str, num_classes: int, args: argparse.Namespace):
    """The family's headline sampler config, with --mode, --num-steps and --cfg-scale applied."""
    return sampling.headline_config(
        family, num_classes, args.mode, num_steps=args.num_steps, cfg_scale=args.cfg_scale
    )


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
    source = resolve_model(args.model)
    prune = prune_from_args(args)
    config = sampler_from_args(source.family, source.num_classes, args)
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
    started = init_distributed()
    try:
        torch.backends.cuda.matmul.allow_tf32 = args.tf32  # the official scripts' default: on
        device = args.device or default_device()
        model = load_model(source, args.cache_dir, device)
        decode = load_decoder(vae, source.family, args.cache_dir, device)
        from semantic_bottleneck.zoo import denoiser

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
    except (ValueError, MissingAssetError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if path is not None:
        print(path)
    return 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of `generate` (kebab-case names of the settings they set)."""
    p.add_argument("model", help="registry checkpoint (e.g. dit-xl-2) or testbed-ddpm/-flow")
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
    p.add_argument("--prune-schedule", choices=SCHEDULES, default="every", help="steps pruned")
    p.add_argument("--prune-k", type=int, default=None, help="k of schedule last_k")
    p.add_argument("--batch-size", type=int, default=32, help="samples per sampler call per rank")
    p.add_argument("--shard", choices=SHARDINGS, default="contiguous", help="split over ranks")
    p.add_argument("--device", default=None, help="default: cuda:LOCAL_RANK if available, else cpu")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast for the model")
    p.add_argument("--tf32", action=argparse.BooleanOptionalAction, default=True,
                   help="TF32 matmuls (on in the official scripts)")  # fmt: skip
    p.add_argument("--cache-dir", type=Path, default=None, help="weights cache")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


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
