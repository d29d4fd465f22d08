"""The shipped testbed models: every testbed recipe in every tier (`testbed.TIERS`: "ci", the
book-build length, and "long", 8x longer at the scale study's faster rate), kept in
data/testbed/NAME/ (NAME: `testbed.tier_name`) as EMA weights, monitor log, config and provenance.

    .venv/bin/python scripts/testbed_models.py                               # all, resumable
    .venv/bin/python scripts/testbed_models.py --tier long --only testbed-ddpm
    .venv/bin/python scripts/testbed_models.py --record                      # copy finished runs
    .venv/bin/python scripts/testbed_models.py --seeds [--record]            # training seeds 1, 2

Runs go to runs/testbed/NAME/ (checkpointed every 500 steps: a killed run resumes exactly when
the command is repeated) on one CPU thread, so that a run is bitwise repeatable and a shipped log
can be checked against a short retraining (tests/test_shipped_models.py). testbed-flow's long
config is the scale study's width-128, lr 3e-3 run, so either script trains that model.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path

import torch

from semantic_bottleneck.training.runs import record_run, write_text_atomic
from semantic_bottleneck.training.testbed import (
    SEED_MODEL,
    SHIPPED,
    TESTBED_MODELS,
    TIERS,
    TRAINING_SEEDS,
    seed_name,
    testbed_config,
    tier_name,
)
from semantic_bottleneck.training.trainer import train

ROOT = Path(__file__).resolve().parents[1]


def record(run: Path, dest: Path) -> Path:
    """Copy a finished run into the shipped folder `dest`, its weights' sha256 in run.json."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("model.safetensors", "config.json"):
        shutil.copyfile(run / name, dest / f".{name}.tmp")
        (dest / f".{name}.tmp").replace(dest / name)
    written = record_run(run, dest.name, folder=dest)
    prov = json.loads(written.read_text())
    prov["sha256"] = hashlib.sha256((dest / "model.safetensors").read_bytes()).hexdigest()
    write_text_atomic(dest / "run.json", json.dumps(prov, indent=1))
    written.unlink()
    (dest / f"{dest.name}.jsonl").replace(dest / "log.jsonl")
    return dest


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="*", default=None, choices=sorted(TESTBED_MODELS))
    p.add_argument("--tier", nargs="*", default=None, choices=sorted(TIERS))
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "testbed")
    p.add_argument("--record", action="store_true", help="copy finished runs to " + SHIPPED)
    p.add_argument(
        "--seeds", action="store_true",
        help=f"the further training seeds {list(TRAINING_SEEDS)} of {SEED_MODEL} instead",
    )  # fmt: skip
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    names = [tier_name(n, t) for t in args.tier or TIERS for n in args.only or TESTBED_MODELS]
    if args.seeds:
        names = [seed_name(SEED_MODEL, s) for s in TRAINING_SEEDS]
    for name in names:
        run = args.out / name
        if args.record:
            if (run / "model.safetensors").exists():
                print(record(run, ROOT / SHIPPED / run.name))
            continue
        train(testbed_config(run.name), run, progress=True, checkpoint_every=500)
    return 0


if __name__ == "__main__":
    sys.exit(main())
