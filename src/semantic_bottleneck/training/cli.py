"""`semantic-bottleneck train ...`: REPA training runs, ImageNet preparation, run records.

    semantic-bottleneck train repa --profile testbed                     # CPU minutes, digits
    semantic-bottleneck train repa --profile testbed --timestep-set 50   # Fig. 43 at testbed scale
    semantic-bottleneck train prepare-imagenet --source ILSVRC/Data/CLS-LOC/train --dest data/imagenet256
    torchrun --nproc-per-node 8 --no-python semantic-bottleneck train repa --profile paper \\
        --data-dir data/imagenet256 --out runs/repa-b2                  # the paper's REPA-B/2 run
    semantic-bottleneck train record runs/repa-b2 --name repa-b2-200k    # into data/runs for the book
    semantic-bottleneck train testbed testbed-flow --steps 16000 --lr 3e-3 --out runs/flow-lr3e-3

Every TrainConfig field has a kebab-case flag (`--timestep-set 50` sets `timestep_set`); flags
left out keep the profile's value. A run killed at any point resumes from its last checkpoint
when started again with the same command (--no-resume starts over).
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import asdict, fields
from pathlib import Path

from semantic_bottleneck.book import plots
from semantic_bottleneck.core.conventions import PROFILES
from semantic_bottleneck.training.imagenet import prepare_imagenet
from semantic_bottleneck.training.monitor import read_log
from semantic_bottleneck.training.recipes import repa_config
from semantic_bottleneck.training.runs import record_run
from semantic_bottleneck.training.testbed import TESTBED_NAMES, curve_summary, testbed_config
from semantic_bottleneck.training.trainer import TrainConfig, train

# rolling checkpoint interval per profile (steps): a few seconds of CPU, about 15 GPU minutes
CHECKPOINT_EVERY = {"testbed": 250, "paper": 5000}


def _field_flag(parser: argparse.ArgumentParser, name: str, default) -> None:
    flag = "--" + name.replace("_", "-")
    help_text = f"TrainConfig.{name} (profile value if omitted)"
    if isinstance(default, bool):
        parser.add_argument(
            flag, action=argparse.BooleanOptionalAction, default=None, help=help_text
        )
    else:
        parser.add_argument(flag, type=type(default), default=None, help=help_text)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `train` with its sub-commands `repa`, `prepare-imagenet` and `record`."""
    train = subparsers.add_parser("train", help="REPA training runs and their inputs")
    sub = train.add_subparsers(dest="train_command", required=True)

    repa = sub.add_parser("repa", help="train a REPA SiT with the nPR monitor (Figs. 12, 43)")
    repa.add_argument("--profile", choices=PROFILES, default="testbed")
    repa.add_argument(
        "--out", type=Path, default=None, help="run folder (default runs/repa-PROFILE)"
    )
    repa.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True)
    repa.add_argument(
        "--checkpoint-every", type=int, default=None, help="steps between checkpoints"
    )
    repa.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: by dataset)")
    repa.add_argument("--compile", action="store_true", help="torch.compile the model")
    repa.add_argument("--num-workers", type=int, default=4, help="data loader processes")
    repa.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True)
    for f in fields(TrainConfig):
        _field_flag(repa, f.name, f.default)
    repa.set_defaults(func=run_repa)

    tb = sub.add_parser("testbed", help="train a testbed model (its config, fields overridden)")
    tb.add_argument("name", choices=TESTBED_NAMES, help="testbed model (tier in its name)")
    tb.add_argument("--out", type=Path, default=None, help="run folder (default runs/NAME)")
    tb.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True)
    tb.add_argument("--checkpoint-every", type=int, default=CHECKPOINT_EVERY["testbed"])
    tb.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True)
    for f in fields(TrainConfig):
        _field_flag(tb, f.name, f.default)
    tb.set_defaults(func=run_testbed)

    prep = sub.add_parser("prepare-imagenet", help="ADM crop + SD-VAE latents, REPA's layout")
    prep.add_argument("--source", type=Path, required=True, help="ImageNet train folder")
    prep.add_argument("--dest", type=Path, required=True, help="output folder")
    prep.add_argument("--vae", default="", help="AutoencoderKL folder (default: weights cache)")
    prep.add_argument("--max-images", type=int, default=None)
    prep.add_argument("--vae-batch-size", type=int, default=1, help="1 as REPA; larger is faster")
    prep.add_argument("--device", default=None)
    prep.set_defaults(func=run_prepare)

    rec = sub.add_parser("record", help="copy a run's provenance and log into data/runs")
    rec.add_argument("run_dir", type=Path)
    rec.add_argument("--name", required=True)
    rec.add_argument("--scale", default="", help="one line on the run's scale (default: derived)")
    rec.set_defaults(func=run_record)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The profile's config with every given field flag applied."""
    overrides = {f.name: getattr(args, f.name) for f in fields(TrainConfig)}
    return repa_config(args.profile, **overrides)


def run_repa(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    out = args.out or Path("runs") / f"repa-{args.profile}"
    every = args.checkpoint_every
    train(
        config,
        out,
        progress=args.progress,
        checkpoint_every=CHECKPOINT_EVERY[args.profile] if every is None else every,
        resume=args.resume,
        device=args.device,
        compile_model=args.compile,
        num_workers=args.num_workers,
    )
    if os.environ.get("RANK", "0") == "0" and (out / "config.json").exists():
        summary = write_curves(out)  # only the writing process plots
        print(json.dumps({"out": str(out), "config": asdict(config), "classes_npr": summary}))
    return 0


def write_curves(run_dir: Path) -> dict:
    """Plot the run's monitor log to `curves.png`; return the nPR curve's start, peak and end."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_log(run_dir / "log.jsonl")
    fig = plots.training_curves({run_dir.name: records}, prefix="classes")
    fig.savefig(run_dir / "curves.png", dpi=120)
    plt.close(fig)
    return curve_summary(records)


def run_testbed(args: argparse.Namespace) -> int:
    """Train a testbed model with the given fields overridden into a resumable run folder."""
    overrides = {f.name: getattr(args, f.name) for f in fields(TrainConfig)}
    config = testbed_config(args.name, **overrides)
    out = args.out or Path("runs") / args.name
    train(
        config, out, progress=args.progress, checkpoint_every=args.checkpoint_every,
        resume=args.resume,
    )  # fmt: skip
    summary = write_curves(out)
    print(json.dumps({"out": str(out), "config": asdict(config), "classes_npr": summary}))
    return 0


def run_prepare(args: argparse.Namespace) -> int:
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    prepare_imagenet(
        args.source,
        args.dest,
        vae=args.vae,
        max_images=args.max_images,
        vae_batch_size=args.vae_batch_size,
        device=device,
    )
    print(f"prepared {args.dest}")
    return 0


def run_record(args: argparse.Namespace) -> int:
    path = record_run(args.run_dir, args.name, scale=args.scale)
    print(f"recorded {path} and {path.with_suffix('.jsonl')}")
    return 0
