"""The paper-profile pruning sweep with every input present: a tiny REPA checkpoint registered
beside the official ones, and small stand-ins of its VAE, the ADM batch, Inception and CLIP, all
in a temporary weights cache read by the real loading code."""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import replace
from pathlib import Path
from unittest import mock

import matplotlib
import nbformat
import numpy as np
import pytest
import torch
import torch.multiprocessing as torch_mp
from fakes import TINY_CLIP, random_inception, tiny_clip, tiny_sd_vae

from semantic_bottleneck.book.params import resolve_parameters
from semantic_bottleneck.cli import main
from semantic_bottleneck.evaluation.clip_score import clip_score
from semantic_bottleneck.evaluation.fidelity import evaluate
from semantic_bottleneck.evaluation.inputs import MissingInputError
from semantic_bottleneck.evaluation.paired import METRICS
from semantic_bottleneck.generation import cli as G_cli
from semantic_bottleneck.generation import rows as G_rows
from semantic_bottleneck.generation.decode import load_decoder
from semantic_bottleneck.generation.npz import load_samples
from semantic_bottleneck.generation.run import generate
from semantic_bottleneck.sampling import balanced_labels, sample_seeds
from semantic_bottleneck.sections import pruning
from semantic_bottleneck.sweeps import run as sweep
from semantic_bottleneck.zoo import build_model, denoiser, registry

ROOT = Path(__file__).resolve().parents[1]
NAME = "tiny-repa"
TINY_CONFIG = dict(
    path_type="edm", input_size=4, patch_size=2, in_channels=4, hidden_size=32,
    decoder_hidden_size=32, encoder_depth=1, depth=2, num_heads=2, mlp_ratio=4.0,
    class_dropout_prob=0.1, num_classes=4, use_cfg=True, z_dims=[16], projector_dim=32,
    fused_attn=False, qk_norm=False,
)  # fmt: skip
# 3 per class: 12 samples, since IS under the 10-split protocol needs at least 10
SETTINGS = sweep.SweepSettings(per_class=3, num_steps=4, last_k=2, grid_per_class=1, n_boot=3)


def _tiny_model() -> torch.nn.Module:
    """The tiny REPA model with every weight random (its zero-initialised layers included)."""
    model = build_model("repa", **TINY_CONFIG)
    g = torch.Generator().manual_seed(0)
    state = {k: 0.2 * torch.randn(v.shape, generator=g) for k, v in model.state_dict().items()}
    model.load_state_dict(state)
    return model.eval().requires_grad_(False)


def register_tiny(mp: pytest.MonkeyPatch) -> None:
    """Register the tiny checkpoint NAME beside the official ones (REPA's entry, tiny config)."""
    entry = replace(
        registry.get_checkpoint("repa-sit-xl-2"), name=NAME, manifest="tiny.json",
        urls=("https://example.invalid/last.pt",), num_classes=4, null_class=4,
    )  # fmt: skip
    manifests = {"tiny.json": {"config": TINY_CONFIG}}
    read_manifest = registry.read_manifest
    mp.setitem(registry.REGISTRY, NAME, entry)
    mp.setattr(registry, "read_manifest", lambda f: manifests.get(f) or read_manifest(f))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A weights cache holding every input of the tiny checkpoint's sweep, the tiny checkpoint
    registered, and the artifact cache in a temporary folder. Yields (weights dir, scoring)."""
    weights = tmp_path_factory.mktemp("weights")
    with pytest.MonkeyPatch.context() as mp:
        register_tiny(mp)
        mp.setenv("SEMANTIC_BOTTLENECK_WEIGHTS", str(weights))
        mp.setenv("SEMANTIC_BOTTLENECK_CACHE", str(tmp_path_factory.mktemp("cache")))
        (weights / NAME).mkdir()
        torch.save(_tiny_model().state_dict(), weights / NAME / "last.pt")
        tiny_sd_vae().save_pretrained(weights / "sd-vae-ft-ema")
        (weights / "inception-fidelity").mkdir()
        inception = weights / "inception-fidelity" / "weights-inception-2015-12-05-6726825d.pth"
        torch.save(random_inception().state_dict(), inception)
        (weights / "adm-ref-imagenet256").mkdir()
        g = np.random.default_rng(1)
        np.savez(
            weights / "adm-ref-imagenet256" / "VIRTUAL_imagenet256_labeled.npz",
            arr_0=g.integers(0, 256, (8, 8, 8, 3), dtype=np.uint8),
            mu=np.full(2048, 0.01),
            sigma=np.zeros((2048, 2048)),
        )
        clip_model, clip_file = tiny_clip(tmp_path_factory.mktemp("clip"))
        clip_weights = weights / "clip-vit-l-14-openai" / "open_clip_pytorch_model.bin"
        clip_weights.parent.mkdir()
        torch.save(clip_model.state_dict(), clip_weights)
        scoring = sweep.PaperEval(clip_model=TINY_CLIP, clip_pretrained=str(clip_weights))
        yield weights, scoring, clip_file.parent


@pytest.fixture(scope="module")
def result(inputs):
    return sweep.run_paper_sweep(
        NAME, sweep.paper_rows("table2"), SETTINGS, inputs[1], progress=False, allow_cpu=True
    )


def test_every_row_is_sampled_and_scored(result):
    table = {r["row"]: r for r in result["table"]}
    assert list(table) == [r.label for r in sweep.paper_rows("table2")]
    for row in table.values():
        assert row["d"] == 32
        for metric in ("fid", "is_adm", "is_10_splits", "clip", "precision", "recall"):
            assert np.isfinite(row[metric]), (row["row"], metric)
    assert table["baseline"]["removed"] == 0 and table["baseline"]["tau"] is None
    # the official numerics unless bf16 is asked for, recorded with the result and each file
    assert result["numerics"].startswith("float32")
    assert load_samples(result["samples"]["baseline"]).info["bf16"] is False
    # the stand-in networks see the images: pruned samples score differently
    assert table["head 1 t_i"]["fid"] != table["baseline"]["fid"]
    assert table["head 1 t_i"]["clip"] != table["baseline"]["clip"]
    assert table["tail 0.05 t_i"]["tau"] == 0.05  # the paper's own tau, not a matched one


def test_every_row_has_its_paired_interval_and_the_baseline_its_own_noise(result, inputs):
    table = {r["row"]: r for r in result["table"]}
    base = table["baseline"]
    assert "ci" not in base and set(base["spread"]) == set(METRICS)
    assert base["spread"]["fid"]["value"] == pytest.approx(base["fid"], rel=1e-5)
    for label, row in table.items():
        if label == "baseline":
            continue
        for metric in METRICS:
            ci = row["ci"][metric]
            assert ci["low"] <= ci["high"], (label, metric)
            # the bootstrap's metrics equal the evaluator's to 1e-5 of their size (`paired`)
            tol = 1e-5 * max(1.0, abs(base[metric]))
            assert ci["difference"] == pytest.approx(row[metric] - base[metric], abs=tol), (
                label, metric)  # fmt: skip
    assert table["head 1 t_i"]["ci"]["fid"]["high"] > table["head 1 t_i"]["ci"]["fid"]["low"]
    # the intervals are cached with the scores: the page's paired notes and verdicts show
    shown = sweep.rows_beside_paper(result["table"], "table2", "REPA", "paper")
    assert shown.loc["head 1 t_i", "fid (vs baseline)"].startswith(
        f"{table['head 1 t_i']['ci']['fid']['difference']:+.3f} ["
    )
    claims = sweep.paper_claims(result["table"], "table2", "REPA", "paper")
    assert not claims.empty and claims["verdict"].notna().all()


def test_removed_counts_follow_the_papers_tau_on_c_at_t1(result):
    model = _tiny_model()
    labels = balanced_labels(4, SETTINGS.per_class)
    c = model.condition(torch.ones(len(labels)), labels).abs()
    table = {r["row"]: r for r in result["table"]}
    for row in sweep.paper_rows("table2")[1:]:
        kept = c < row.paper_tau if row.side == "tail" else c > row.paper_tau
        assert table[row.label]["removed"] == pytest.approx(kept.sum(1).double().mean().item())
    assert 0 < table["tail 0.05 t_i"]["removed"] < 32  # the stand-in prunes for real


def test_samples_are_paired_adm_npz_files_equal_to_generate(result, inputs):
    base = load_samples(result["samples"]["baseline"])
    assert base.images.dtype == np.uint8 and base.images.shape == (12, 8, 8, 3)
    assert base.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert base.seeds.tolist() == sample_seeds(SETTINGS.base_seed, 12)
    # the baseline is what `generate` samples from the checkpoint with the headline sampler
    source = G_cli.resolve_model(NAME)
    model = G_cli.load_model(source, inputs[0], "cpu")
    sampler = G_cli.resolve_model(NAME).sampler_config(num_steps=SETTINGS.num_steps)
    decode = load_decoder("sd-vae-ft-ema", "repa", inputs[0])
    images, _ = generate(
        denoiser(model), model.condition, "repa", base.labels, base.seeds, sampler, decode,
        latent_shape=(4, 4, 4), progress=False,
    )  # fmt: skip
    assert np.array_equal(images.numpy(), base.images)
    head = load_samples(result["samples"]["head 1 t_i"])
    assert head.seeds.tolist() == base.seeds.tolist()  # same noise, pruned c: other images
    assert not np.array_equal(head.images, base.images)
    assert head.info["prune"]["side"] == "head" and head.info["model"] == NAME


def test_scores_equal_the_metrics_on_the_saved_samples(result, inputs):
    samples = load_samples(result["samples"]["tail 0.02 t_i"])
    row = next(r for r in result["table"] if r["row"] == "tail 0.02 t_i")
    scores = evaluate(samples.images, profile="paper", cuda=False)
    for metric in ("fid", "is_adm", "is_10_splits", "precision", "recall"):
        assert row[metric] == pytest.approx(scores[metric])
    scoring = inputs[1]
    want = clip_score(samples.images, samples.labels, scoring.clip_model, scoring.clip_pretrained)
    assert row["clip"] == pytest.approx(want)


def test_grids_hold_the_first_samples_of_each_class(result):
    base = load_samples(result["samples"]["baseline"]).images
    grid = result["grids"]["baseline"]
    assert grid.shape == (4, 1, 8, 8, 3)
    assert np.array_equal(grid[:, 0], base[::3])


def test_a_second_sweep_reads_every_row_from_the_cache(result, inputs):
    boom = mock.Mock(side_effect=AssertionError("nothing should be recomputed"))
    with (
        mock.patch.object(G_rows, "load_checkpoint", boom),
        mock.patch("semantic_bottleneck.evaluation.fidelity.evaluate", boom),
    ):  # every row cached: no GPU needed either
        again = sweep.run_paper_sweep(
            NAME, sweep.paper_rows("table2"), SETTINGS, inputs[1], progress=False
        )
    assert again["table"] == result["table"]


def test_rows_to_sample_on_a_cpu_need_allow_cpu(inputs, result):
    load = mock.Mock()
    other = replace(SETTINGS, base_seed=1)  # other noise: no row is cached
    with mock.patch.object(G_rows, "load_checkpoint", load):
        with pytest.raises(sweep.NeedsGPUError, match="9 of the 9 rows"):
            sweep.run_paper_sweep(NAME, sweep.paper_rows("table2"), other, inputs[1])
        out = pruning.sweep_outcome("paper", NAME, sweep.paper_rows("table2"), other)
    assert out.result is None and "9 of the 9 rows are not sampled yet" in out.notes[0]
    load.assert_not_called()


def test_a_page_sweep_names_the_fetch_commands_of_missing_inputs(tmp_path, monkeypatch):
    monkeypatch.setenv("SEMANTIC_BOTTLENECK_WEIGHTS", str(tmp_path))
    rows = sweep.paper_rows("table2")
    out = pruning.sweep_outcome("paper", "repa-sit-xl-2", rows, SETTINGS)
    assert out.result is None
    assert any("semantic-bottleneck fetch repa-sit-xl-2" in m.command for m in out.missing)
    with pytest.raises(ValueError, match="profile must be"):
        pruning.sweep_outcome("imagenet", "repa-sit-xl-2", rows, SETTINGS)


def test_missing_inputs_are_named_before_any_model_is_loaded(inputs, tmp_path):
    load = mock.Mock()
    with (
        mock.patch.object(G_rows, "load_checkpoint", load),
        pytest.raises(MissingInputError) as err,
    ):
        sweep.run_paper_sweep(NAME, sweep.paper_rows("table2"), SETTINGS, cache_dir=tmp_path)
    assert "semantic-bottleneck fetch sd-vae-ft-ema" in str(err.value)
    assert NAME in err.value.names and "adm-ref-imagenet256" in err.value.names
    load.assert_not_called()


# ----------------------------------------------------------------------------- the command


def test_cli_defaults_are_the_paper_profile_page_parameters():
    args = argparse.Namespace(per_class=None, base_seed=None, num_steps=None, last_k=None,
                              cfg_scale=None)  # fmt: skip
    page = resolve_parameters("tab02-pruning-repa", "paper")
    settings = sweep.sweep_settings("table2", args)
    assert (settings.per_class, settings.num_steps, settings.last_k) == (
        page["per_class"], page["num_steps"], page["last_k"],
    )  # fmt: skip
    args.per_class, args.cfg_scale = 2, 3.0
    assert sweep.sweep_settings("table3", args).per_class == 2
    assert sweep.sweep_settings("table3", args).cfg_scale == 3.0


def test_cli_fills_the_rows_the_pages_read(inputs, result, capsys):
    scoring = inputs[1]
    flags = [
        "--per-class",
        "3",
        "--num-steps",
        "4",
        "--last-k",
        "2",
        "--n-boot",
        "3",
        "--allow-cpu",
    ]
    flags += ["--clip-model", scoring.clip_model, "--clip-pretrained", scoring.clip_pretrained]
    load = mock.Mock(side_effect=AssertionError("every row is cached"))
    with mock.patch.object(G_rows, "load_checkpoint", load):
        assert main(["sweep", "table2", NAME, *flags, "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "FID (this run)" in out and "IS (ADM, 5,000 per split) (this run)" in out
    assert "tail 0.01 t_{n-k,n}" in out
    assert main(["sweep", "table2", "no-such-model", *flags]) == 2
    assert "unknown checkpoint or input 'no-such-model'" in capsys.readouterr().err


def _sweep_rank(rank: int, world: int, init_file: str, cache: str, clip_folder, scoring) -> None:
    import open_clip

    torch.set_num_threads(1)
    os.environ["SEMANTIC_BOTTLENECK_CACHE"] = cache
    register_tiny(pytest.MonkeyPatch())
    open_clip.add_model_config(Path(clip_folder) / f"{TINY_CLIP}.json")
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world
    )
    try:
        rows = [r for r in sweep.paper_rows("table2") if r.label in RANK_ROWS]
        out = sweep.run_paper_sweep(NAME, rows, SETTINGS, scoring, progress=False, allow_cpu=True)
        if rank == 0:
            Path(cache, "result.json").write_text(json.dumps(out["samples"]))
        else:
            assert out is None
    finally:
        torch.distributed.destroy_process_group()


RANK_ROWS = ("baseline", "tail 0.05 t_i", "head 1 t_i")


def test_two_gloo_ranks_share_each_row_and_match_one_process(inputs, result, tmp_path):
    cache = tmp_path / "ranks-cache"
    args = (2, str(tmp_path / "init"), str(cache), str(inputs[2]), inputs[1])
    torch_mp.spawn(_sweep_rank, args=args, nprocs=2, join=True)
    files = json.loads((cache / "result.json").read_text())
    assert list(files) == list(RANK_ROWS)
    for label, path in files.items():
        got, single = load_samples(path), load_samples(result["samples"][label])
        assert got.labels.tolist() == single.labels.tolist()
        assert got.removed.tolist() == single.removed.tolist() and got.info["world_size"] == 2
        # other batch shapes than the single process: only float summation order may differ
        assert np.abs(got.images.astype(int) - single.images.astype(int)).max() <= 1
    assert not list(cache.rglob("*.staging")) and not list(cache.rglob("*.shard-*"))


# ----------------------------------------------------------------------------- the pages


def _run_page(name: str, **params) -> dict:
    """Execute a page's code cells in this process, with its parameters replaced."""
    nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    space: dict = {"display": lambda *a, **k: None}
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        exec(cell.source, space)
        if "parameters" in cell.metadata.get("tags", []):
            space.update(params)
    return space


PAGE_PARAMS = dict(profile="paper", per_class=3, num_steps=4, last_k=2)
RUN_PAPER_SWEEP = sweep.run_paper_sweep


def _page_sweep(inputs):
    """The sweep a page runs, with the tests' scoring and resample count."""

    def run(name, rows, settings, *args, **kwargs):
        kwargs.update(scoring=inputs[1], progress=False, allow_cpu=True)
        return RUN_PAPER_SWEEP(name, rows, replace(settings, n_boot=SETTINGS.n_boot), **kwargs)

    return run


@pytest.mark.parametrize(
    "page",
    [
        "tab02-pruning-repa",
        "tab03-pruning-mg-lightningdit",
        "tab06-precision-recall",
        "fig07-head-removal",
        "fig08-tail-removal",
    ],
)
def test_sweep_pages_render_measured_rows_in_the_paper_profile(inputs, result, page):
    matplotlib.use("Agg")
    params = dict(PAGE_PARAMS, model=NAME)
    if page.startswith("tab03"):
        params["model_lightningdit"] = NAME
    if page.startswith("tab06"):
        params["model_table3"] = NAME
    with mock.patch.object(sweep, "run_paper_sweep", _page_sweep(inputs)):
        shown = _run_page(page, **params)["page"]
    if page.startswith("fig"):
        assert shown.figures["samples"] is not None and len(shown.figures["samples"].axes) >= 3
        return
    frames = [f for f in shown.tables.values() if f is not None and "(this run)" in " ".join(
        map(str, f.columns))]  # fmt: skip
    assert frames
    for frame in frames:
        measured = frame.filter(like="(this run)").drop(columns=["tau (this run)"], errors="ignore")
        assert not measured.empty and np.isfinite(measured.to_numpy(dtype=float)).all()
        assert any(c.endswith("(diff)") for c in frame.columns)


def test_tab02_summary_glues_measured_numbers(inputs, result):
    with mock.patch.object(sweep, "run_paper_sweep", _page_sweep(inputs)):
        shown = _run_page("tab02-pruning-repa", **PAGE_PARAMS, model=NAME)["page"]
    base = next(r for r in result["table"] if r["row"] == "baseline")
    assert shown.values["fid_base"][0] == pytest.approx(base["fid"])
    assert shown.values["d_model"][0] == 32


def test_cli_windows_samples_the_rows_and_settings_the_windows_page_reads(monkeypatch):
    seen = {}

    def capture(profile, model, rows, settings, train_steps=None):
        seen.update(rows=rows, settings=settings)
        return pruning.SweepOutcome(None)

    monkeypatch.setattr(pruning, "sweep_outcome", capture)
    monkeypatch.setattr(pruning, "modulation_tables", lambda *a, **k: {})
    page = resolve_parameters("pruning-windows", "paper")
    pruning.pruning_windows_page(**{k: v for k, v in page.items() if k != "profile"},
                                 profile="paper")  # fmt: skip
    args = argparse.Namespace(per_class=None, base_seed=None, num_steps=None, last_k=None,
                              cfg_scale=None, n_boot=None)  # fmt: skip
    settings = sweep.sweep_settings("windows", args)
    assert settings == seen["settings"]
    rows = sweep.sweep_rows("windows", "REPA", False, settings)
    assert rows == seen["rows"]
    assert sum(r.window is not None for r in rows) == 2 * page["num_steps"] // page["width"]
    args.last_k = 125  # the width of the windows
    assert (
        len(sweep.sweep_rows("windows", "REPA", False, sweep.sweep_settings("windows", args))) == 7
    )
