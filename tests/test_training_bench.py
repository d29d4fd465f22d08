"""The training benchmark runs end to end on the CPU at tiny size and prints one JSON line."""

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_train_prints_one_json_line_comparing_both_loops(capsys):
    spec = importlib.util.spec_from_file_location("bench_train", ROOT / "benchmarks/bench_train.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    result = bench.main(
        ["--size", "tiny", "--batch", "4", "--steps", "2", "--warmup", "1", "--device", "cpu"]
    )
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and json.loads(lines[0]) == json.loads(json.dumps(result))
    assert result["trainer"]["steps_per_s"] > 0 and result["naive"]["steps_per_s"] > 0
    assert result["speedup"] == result["trainer"]["steps_per_s"] / result["naive"]["steps_per_s"]
    assert result["trainer"]["precision"] == "bf16" and result["naive"]["precision"] == "fp32"
