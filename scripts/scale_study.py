"""The testbed scale study: the flow-convention testbed model at several widths, learning rates
and class counts, trained far longer than CI can, each run's monitor log recorded under data/scale/.

    .venv/bin/python scripts/scale_study.py                      # every run, resumable
    .venv/bin/python scripts/scale_study.py --only w128-lr3e-3   # one run
    .venv/bin/python scripts/scale_study.py --record             # copy finished runs to data/scale

Runs go to runs/scale/NAME/ (checkpointed every 500 steps: a killed run resumes exactly when the
command is repeated) on one CPU thread, so that a run is bitwise repeatable and the committed
log can be checked against a short retraining (tests/test_scale_study.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from semantic_bottleneck.training.runs import record_run
from semantic_bottleneck.training.testbed import testbed_config
from semantic_bottleneck.training.trainer import train

ROOT = Path(__file__).resolve().parents[1]
STEPS = 16000
LOG_EVERY = 100
# name -> (testbed model, TrainConfig overrides)
RUNS = {
    f"w{width}-lr{lr}": ("testbed-flow", {"hidden_size": width, "lr": float(lr)})
    for width in (64, 128, 256)
    for lr in ("1e-3", "3e-3")
}
# the class-count axis: 80 classes (digit x orientation) at the fastest 10-class setting
RUNS["w128-lr3e-3-c80"] = ("testbed-flow", {"hidden_size": 128, "lr": 3e-3, "dataset": "digits-80"})


def run_config(name: str, steps: int = STEPS):
    """The TrainConfig of a scale-study run."""
    model, overrides = RUNS[name]
    return testbed_config(model, steps=steps, log_every=LOG_EVERY, **overrides)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="*", default=None, choices=sorted(RUNS), help="runs to train")
    p.add_argument("--steps", type=int, default=STEPS, help="steps per run")
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "scale")
    p.add_argument("--record", action="store_true", help="copy finished runs to data/scale")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    for name in args.only or RUNS:
        out = args.out / name
        if args.record:
            if (out / "model.safetensors").exists():
                print(record_run(out, name, folder=ROOT / "data" / "scale"))
            continue
        train(run_config(name, args.steps), out, progress=True, checkpoint_every=500)
    return 0


if __name__ == "__main__":
    sys.exit(main())
