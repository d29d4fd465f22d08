"""Run records: provenance of a training run, atomic checkpoints, and GPU runs kept in data/runs.

Every run writes `run.json` beside its log: the command line, the git commit (and whether the tree
had uncommitted changes), the device, the process count, the library versions and the config.
`semantic-bottleneck train record RUN_DIR --name NAME` copies a finished (or running) run's
provenance and monitor log into `data/runs/NAME.json` and `data/runs/NAME.jsonl`, where the book's
training pages find them and draw them beside the testbed curves.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

from semantic_bottleneck.book.params import find_root
from semantic_bottleneck.book.provenance import cpu_name, git_commit
from semantic_bottleneck.training.monitor import read_log
from semantic_bottleneck.zoo.checkpoint import save_atomic

PROVENANCE = "run.json"


def write_text_atomic(path: Path, text: str) -> None:
    """Write text through a temporary file and a rename (readers never see half a file)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save_checkpoint(path: Path, state: dict) -> None:
    """torch.save `state` (tensors and plain types only) atomically."""
    save_atomic(state, path)


def device_name(device: torch.device) -> str:
    """A readable device name (GPU model, or the CPU model and core count)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_name()


def write_provenance(out_dir: Path, config, procs, resumed_at: int = 0) -> None:
    """Write `run.json` at the start of a run (a resumed run adds its restart step)."""
    path = Path(out_dir) / PROVENANCE
    old = json.loads(path.read_text()) if resumed_at and path.exists() else {}
    record = {
        "command": old.get("command") or shlex.join(sys.argv),
        **git_commit(),
        "device": device_name(procs.device),
        "processes": procs.world_size,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "started": old.get("started") or time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "resumed_at": [*old.get("resumed_at", []), resumed_at] if resumed_at else [],
        "config": asdict(config),
    }
    write_text_atomic(path, json.dumps(record, indent=1))


def finish_provenance(out_dir: Path, steps: int, seconds: float) -> None:
    """Add the final step and the wall time of the last session to `run.json`."""
    path = Path(out_dir) / PROVENANCE
    record = json.loads(path.read_text())
    record.update(steps_done=steps, finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"), seconds=seconds)
    write_text_atomic(path, json.dumps(record, indent=1))


def runs_dir(root: Path | None = None) -> Path:
    """`data/runs` of the project root (the folder holding `_toc.yml`)."""
    return (Path(root) if root else find_root()) / "data" / "runs"


def record_run(
    run_dir: str | Path,
    name: str,
    root: Path | None = None,
    scale: str = "",
    folder: Path | None = None,
) -> Path:
    """Copy a run's provenance and monitor log into data/runs/NAME.json(l).

    Args:
        run_dir: the run's output folder (holds run.json and log.jsonl).
        name: record name (letters, digits, '-', '_').
        root: project root (default: found from this package).
        scale: a sentence on the run's scale (default: built from the config).
        folder: where the record goes (default data/runs, the GPU runs the training pages draw).

    Returns:
        the written NAME.json.
    """
    if not name or not all(ch.isalnum() or ch in "-_" for ch in name):
        raise ValueError(f"name must be letters, digits, '-' or '_', got {name!r}")
    run_dir = Path(run_dir)
    prov_path, log_path = run_dir / PROVENANCE, run_dir / "log.jsonl"
    for p in (prov_path, log_path):
        if not p.is_file():
            raise FileNotFoundError(f"{p} is missing: {run_dir} is not a training run folder")
    prov = json.loads(prov_path.read_text())
    records = read_log(log_path)
    cfg = prov["config"]
    prov["name"] = name
    prov["steps"] = records[-1]["step"] if records else 0
    prov["scale"] = scale or describe_scale(cfg)
    dest = Path(folder) if folder is not None else runs_dir(root)
    dest.mkdir(parents=True, exist_ok=True)
    write_text_atomic(dest / f"{name}.jsonl", "".join(json.dumps(r) + "\n" for r in records))
    write_text_atomic(dest / f"{name}.json", json.dumps(prov, indent=1))
    return dest / f"{name}.json"


def describe_scale(cfg: dict) -> str:
    """One line naming the scale a curve was made at (model width/depth, data, batch, steps)."""
    data = {
        "imagenet": "ImageNet-1K 256 px latents",
        "digits-80": "8x8 digits in 8 orientations (80 classes)",
    }.get(cfg["dataset"], "8x8 digits")
    target = f", REPA target {cfg['repa_encoder']}" if cfg.get("repa_encoder") else ""
    limited = f", {cfg['timestep_set']} discrete t" if cfg.get("timestep_set") else ""
    return (
        f"{cfg['family']} width {cfg['hidden_size']}, depth {cfg['depth']}, on {data}, "
        f"batch {cfg['batch_size']}, lr {cfg['lr']:g}, {cfg['steps']} steps{target}{limited}"
    )


def recorded_runs(root: Path | None = None, folder: Path | None = None) -> list[dict]:
    """Every recorded run in data/runs (or `folder`): its provenance with the monitor records
    under "records" (empty when its NAME.jsonl is absent).

    Returns:
        list sorted by name; empty when the folder holds none.
    """
    folder = Path(folder) if folder is not None else runs_dir(root)
    out = []
    for meta in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        prov = json.loads(meta.read_text())
        log = meta.with_suffix(".jsonl")
        prov["records"] = read_log(log) if log.is_file() else []
        out.append(prov)
    return out
