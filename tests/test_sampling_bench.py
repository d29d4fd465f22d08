"""The sampling benchmark runs end to end on the CPU at tiny size and prints one JSON line."""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    path = ROOT / "benchmarks/bench_sampling.py"
    spec = importlib.util.spec_from_file_location("bench_sampling", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_bench_sampling_prints_one_json_line_comparing_both_samplers(capsys):
    argv = ["--size", "tiny", "--batch", "3", "--steps", "5", "--naive-steps", "5"]
    result = _bench().main([*argv, "--forward-iters", "2", "--device", "cpu"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and json.loads(lines[0]) == json.loads(json.dumps(result))
    ours, naive = result["ours"], result["naive"]
    assert ours["evaluations"] == naive["evaluations"] == 5  # 4 SDE steps and the mean step
    assert ours["images_per_s"] == pytest.approx(3 / (ours["seconds_per_evaluation"] * 250))
    assert result["speedup"] == ours["images_per_s"] / naive["images_per_s"]
    # same noise, same labels, same steps: bf16 and fp32 samples agree up to rounding
    assert 0 < result["max_abs_difference"] < 0.05
    forward = result["forward"]
    assert forward["batch"] == 6 and forward["flops"] > 0 and forward["fraction_of_peak"] is None


def test_forward_flops_count_every_matmul_of_the_tiny_sit():
    bench = _bench()
    import torch

    model = bench.sit_xl2("tiny", False)
    n, t, d, depth = 2, 16, 64, 2  # 8x8 latents, patch 2: 16 tokens of width 64
    patch = 2 * t * d * (4 * 2 * 2)  # the patch embedding convolution
    per_block = 2 * t * d * (3 * d + d + 2 * 4 * d) + 2 * 2 * t * t * d + 2 * d * 6 * d
    embed = 2 * (256 * d + d * d)  # the timestep MLP
    final = 2 * (d * 2 * d + t * d * 2 * 2 * 8)  # adaLN of the final layer and its projection
    want = n * (patch + depth * per_block + embed + final)
    got = bench.forward_flops(model, bench.latent_shape("tiny"), n, torch.device("cpu"))
    assert got == want


def test_peak_is_looked_up_by_device_name_and_can_be_given():
    bench = _bench()
    assert bench.peak_tflops(__import__("torch").device("cpu"), None) is None
    assert bench.peak_tflops(__import__("torch").device("cpu"), 500.0) == 500.0
    assert dict(bench.PEAKS)["H100"] == 989.4 and bench.PEAKS[0][0] == "H100 PCIe"
