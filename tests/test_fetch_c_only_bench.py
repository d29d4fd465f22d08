"""The c-only fetch benchmark runs end to end at a tiny width (loopback server, temp folder)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_fetch_c_only_runs_at_a_tiny_width(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location(
        "bench_fetch_c_only", ROOT / "benchmarks/bench_fetch_c_only.py"
    )
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--width", "8", "--workdir", str(tmp_path)]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["c_bit_identical"] and record["shrunk"] and record["keys"] == 292
    assert record["c_only"]["bytes_server"] < record["full"]["bytes_server"]
    assert not any(tmp_path.iterdir())  # the work folder is removed
