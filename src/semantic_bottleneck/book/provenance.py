"""Where a number was measured: the machine's CPU (torch-free, so benchmarks can use it in a
process that must not import torch)."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import time
from pathlib import Path


def cpu_name() -> str:
    """The CPU model and core count, e.g. "Intel(R) Xeon(R) Processor (2 CPUs)"."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} CPUs)"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()} ({os.cpu_count()} CPUs)"


def build_info(profile: str) -> dict[str, str]:
    """Which profile built the book, when (UTC), from which commit, on what hardware."""
    git = git_commit()
    commit = git["commit"][:12]
    if git["dirty"]:
        commit += " (with uncommitted changes)"
    return {
        "profile": profile,
        "built": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "commit": commit,
        "hardware": gpu_name() or cpu_name(),
    }


def git_commit(root: Path | None = None) -> dict:
    """{"commit": sha or "unknown", "dirty": bool or None} of the checkout holding this package."""
    root = root or Path(__file__).resolve().parents[3]
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10
        )
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return {"commit": "unknown", "dirty": None}
    if sha.returncode:
        return {"commit": "unknown", "dirty": None}
    return {"commit": sha.stdout.strip(), "dirty": bool(status.stdout.strip())}


def gpu_name() -> str:
    """The first NVIDIA GPU's name (nvidia-smi, torch-free), or "" when there is none."""
    if shutil.which("nvidia-smi") is None:
        return ""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=10,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return ""
    names = out.stdout.strip().splitlines() if out.returncode == 0 else []
    return f"{names[0]} (x{len(names)})" if names else ""
