"""The `generate` command's checks of its flags: each value first, then the flags together,
all before any model is built, trained or read."""

from __future__ import annotations

import pytest

from semantic_bottleneck.generation import cli as G_cli
from semantic_bottleneck.training import testbed


@pytest.fixture
def no_model(monkeypatch):
    """Any attempt to load or train a model fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the flags were checked")

    monkeypatch.setattr(G_cli, "load_model", refuse)
    monkeypatch.setattr(testbed, "trained", refuse)


def _generate(tmp_path, capsys, *flags: str) -> str:
    out = tmp_path / "x.npz"
    code = G_cli.main(["testbed-flow", "--out", str(out), "--no-progress", *flags])
    err = capsys.readouterr().err
    assert code == 2, err
    assert not out.exists()
    return err


@pytest.mark.parametrize(
    "flags, message",
    [
        # each value for itself, with or without --prune-side
        (["--prune-tau", "-0.1"], "--prune-tau: expected a finite number >= 0, got -0.1"),
        (["--prune-tau", "nan"], "--prune-tau: expected a finite number >= 0, got nan"),
        (["--prune-side", "head", "--prune-tau", "inf"], "--prune-tau: expected a finite number"),
        (["--prune-count", "-1"], "--prune-count: expected an integer >= 0, got -1"),
        (["--prune-side", "tail", "--prune-count", "-3"], "--prune-count: expected an integer"),
        (["--prune-k", "0", "--prune-schedule", "last_k"], "--prune-k: expected an integer >= 1"),
        # the prune flags together
        (
            ["--prune-side", "tail", "--prune-tau", "0.1", "--prune-count", "3"],
            "give exactly one of --prune-tau and --prune-count, got --prune-tau 0.1 and "
            "--prune-count 3",
        ),
        (
            ["--prune-side", "tail"],
            "give exactly one of --prune-tau and --prune-count, got neither",
        ),
        (
            ["--prune-side", "tail", "--prune-tau", "0.1", "--prune-k", "3"],
            "--prune-k: only --prune-schedule 'last_k' takes it, got 3 with --prune-schedule "
            "'every'",
        ),
        (
            ["--prune-side", "tail", "--prune-tau", "0.1", "--prune-schedule", "last_k"],
            "--prune-k: --prune-schedule 'last_k' needs an integer k >= 1, got none",
        ),
        # then that --prune-side was given
        (["--prune-tau", "0.1"], "--prune-side is required with --prune-tau"),
        (["--prune-count", "0"], "--prune-side is required with --prune-count"),
        (
            ["--prune-schedule", "last_k", "--prune-k", "2"],
            "--prune-side is required with --prune-schedule, --prune-k",
        ),
        (["--prune-schedule", "initial"], "--prune-side is required with --prune-schedule"),
    ],
)
def test_prune_flags_are_checked_for_their_values_first(tmp_path, capsys, no_model, flags, message):
    assert message in _generate(tmp_path, capsys, *flags)


def test_a_bad_value_is_reported_before_the_missing_side(tmp_path, capsys, no_model):
    err = _generate(tmp_path, capsys, "--prune-tau", "-0.1", "--prune-k", "0")
    assert "--prune-tau: expected a finite number >= 0, got -0.1" in err
    assert "--prune-side" not in err and "--prune-k" not in err


def test_valid_prune_flags_make_the_spec():
    args = G_cli.build_parser().parse_args(
        ["testbed-flow", "--out", "x.npz", "--prune-side", "head", "--prune-count", "0"]
    )
    spec = G_cli.prune_from_args(args)
    assert (spec.side, spec.tau, spec.count, spec.schedule, spec.k) == (
        "head",
        None,
        0,
        "every",
        None,
    )
    args = G_cli.build_parser().parse_args(["testbed-flow", "--out", "x.npz"])
    assert G_cli.prune_from_args(args) is None


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--cfg-scale", "0.5"], "--cfg-scale: expected a finite number >= 1"),
        (["--cfg-scale", "nan"], "--cfg-scale: expected a finite number >= 1"),
        (["--num-steps", "0"], "--num-steps: expected an integer >= 1, got 0"),
        (["--per-class", "0"], "--per-class: expected an integer >= 1, got 0"),
        (["--batch-size", "0"], "--batch-size: expected an integer >= 1, got 0"),
        (["--base-seed", "-1"], "--base-seed: expected an integer >= 0, got -1"),
        (
            [
                "--prune-side",
                "tail",
                "--prune-tau",
                "0.1",
                "--prune-schedule",
                "last_k",
                "--prune-k",
                "9999",
            ],
            "--prune-k: --prune-schedule 'last_k' needs 1 <= k <=",
        ),  # fmt: skip
    ],
)
def test_sampler_and_request_flags_are_named_before_any_work(
    tmp_path, capsys, no_model, flags, message
):
    assert message in _generate(tmp_path, capsys, *flags)
