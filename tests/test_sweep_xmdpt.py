"""Table 7's paper-profile sweep end to end on a synthetic X-MDPT-S checkpoint (the release's
layout, perturbed official init) and synthetic DeepFashion-shaped data: inputs named when absent,
rows sampled, cached and reused, scored with intervals, and read by the page."""

import numpy as np
import pytest
import torch
from fakes import deepfashion_root, tiny_sd_vae, tiny_xmdpt_vae, xmdpt_weights_cache
from test_zoo_xmdpt import condition_inputs, small_model

from semantic_bottleneck.sampling import PruneSpec
from semantic_bottleneck.sampling.xmdpt import XMDPT_DDIM, generate_xmdpt
from semantic_bottleneck.sweeps import xmdpt as sweep
from semantic_bottleneck.sweeps.spec import SweepRow

PAIRS = 3
SETTINGS = sweep.XmdptSettings(num_steps=2, last_k=1, n_boot=4, grid=2)
ROWS = [
    SweepRow("baseline", None),
    SweepRow("tail 0.1 t_i", "tail", "every", 0.1, 410, 1024),
    SweepRow("tail 0.1 t_i | mean", "tail", "every", 0.1, 410, 1024, "mean"),
]


@pytest.fixture
def inputs(tmp_path, monkeypatch):
    monkeypatch.setenv("SEMANTIC_BOTTLENECK_CACHE", str(tmp_path / "artifacts"))
    cache = xmdpt_weights_cache(tmp_path / "weights", PAIRS)
    monkeypatch.setenv("SEMANTIC_BOTTLENECK_WEIGHTS", str(cache))
    root = deepfashion_root(cache / "deepfashion", PAIRS, poses=True)
    return cache, root


def test_absent_inputs_are_named_with_what_provides_them(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    missing = sweep.xmdpt_inputs("xmdpt-l-2", tmp_path / "df", tmp_path / "empty")
    names = [m.name for m in missing]
    assert names == ["xmdpt-l-2", "xmdpt-vae", "conditions", "deepfashion",
                     "inception-fidelity", "lpips"]  # fmt: skip
    commands = {m.name: m.command for m in missing}
    assert commands["xmdpt-l-2"] == "semantic-bottleneck fetch xmdpt-l-2"
    assert "fetch xmdpt-vae" in commands["xmdpt-vae"] and "unzip" in commands["xmdpt-vae"]
    assert commands["conditions"] == sweep.CONDITIONS_COMMAND
    assert "test_pairs.txt" in commands["deepfashion"]
    assert sweep.rows_to_fill("xmdpt-l-2", ROWS, SETTINGS, tmp_path / "df", tmp_path / "e") == [
        r.label for r in ROWS
    ]
    with pytest.raises(sweep.MissingInputError, match="xmdpt-vae"):
        sweep.run_xmdpt_sweep("xmdpt-l-2", ROWS, SETTINGS, root=tmp_path, cache_dir=tmp_path)


def test_rows_are_the_paper_row_under_each_schedule_the_head_and_the_controls():
    rows = sweep.xmdpt_rows()
    labels = [r.label for r in rows]
    assert labels[:5] == ["baseline", "tail 0.1 t_i", "tail 0.1 t_0", "tail 0.1 t_{n-k,n}",
                          "head 4 dims t_i"]  # fmt: skip
    assert labels[5:] == ["tail 0.1 t_i | random 1", "tail 0.1 t_i | mean", "all of c t_i"]
    specs = {r["row"]: r["spec"] for r in sweep.xmdpt_specs(rows, 10, 8570)}
    assert specs["baseline"] is None
    assert specs["tail 0.1 t_0"] == PruneSpec(side="tail", tau=0.1, schedule="initial")
    assert specs["tail 0.1 t_{n-k,n}"].k == 10
    assert specs["head 4 dims t_i"] == PruneSpec(side="head", count=4)
    assert specs["tail 0.1 t_i | mean"].replace == "mean"
    assert specs["tail 0.1 t_i | mean"].classes == 8570  # the conditions of the file
    assert specs["all of c t_i"].select == "all"


def test_row_sampler_is_generate_xmdpt_for_the_paper_operator():
    model, inputs = small_model(), condition_inputs(n=3)
    vae, seeds = tiny_sd_vae(), [4, 5, 6]
    config = XMDPT_DDIM.__class__(num_sampling_steps=3)
    spec = PruneSpec(side="tail", tau=0.3)
    want, info = generate_xmdpt(model, inputs, vae, seeds, prune=spec, config=config, batch_size=2)
    got, removed, _ = sweep.sample_rows(model, inputs, vae, seeds, np.arange(3), spec, config, 2)
    assert np.array_equal(got, sweep.df.to_uint8(want)) and removed == info["removed"]


def test_one_row_and_the_baseline_end_to_end_cached_and_reused(inputs, monkeypatch):
    cache, root = inputs
    name = "xmdpt-s-2"
    assert sweep.xmdpt_inputs(name, root, cache) == []
    assert sweep.rows_to_fill(name, ROWS, SETTINGS, root, cache) == [r.label for r in ROWS]
    assert sweep.cached_xmdpt_sweep(name, ROWS, SETTINGS, root, cache) is None
    with pytest.raises(sweep.NeedsGPUError):
        sweep.run_xmdpt_sweep(name, ROWS, SETTINGS, root=root, cache_dir=cache, device="cpu")
    result = sweep.run_xmdpt_sweep(name, ROWS, SETTINGS, root=root, cache_dir=cache,
                                   device="cpu", batch_size=2, progress=False, allow_cpu=True)  # fmt: skip
    table = {r["row"]: r for r in result["table"]}
    assert list(table) == [r.label for r in ROWS]
    base, row = table["baseline"], table["tail 0.1 t_i"]
    assert base["removed"] == 0 and 0 < row["removed"] < 384 and base["n"] == PAIRS
    for key in ("fid", "ssim", "lpips", "psnr"):
        assert np.isfinite(row[key]) and np.isfinite(base[key])
    for key in ("ssim", "lpips", "psnr"):
        assert row[f"{key}_ci"] > 0
        ci = row["ci"][key]
        assert ci["low"] <= ci["difference"] <= ci["high"]
        assert ci["difference"] == pytest.approx(row[key] - base[key], abs=1e-9)
    fid = row["ci"]["fid"]
    assert fid["difference"] == pytest.approx(row["fid"] - base["fid"], rel=1e-6)
    assert base["ci"] == {}
    assert result["grids"]["source"].shape == (2, 256, 256, 3)
    assert result["grids"]["tail 0.1 t_i"].dtype == np.uint8
    pose = sweep.df.load_poses(root, [sweep.df.read_pairs(root / "test_pairs.txt")[0].target])
    assert np.array_equal(result["grids"]["pose"][0], sweep.df.to_uint8(torch.from_numpy(pose))[0])

    # the second call reads every row from the cache: nothing is sampled again
    def refuse(*args, **kwargs):
        raise AssertionError("a cached row was sampled again")

    monkeypatch.setattr(sweep, "sample_rows", refuse)
    assert sweep.rows_to_fill(name, ROWS, SETTINGS, root, cache) == []
    again = sweep.cached_xmdpt_sweep(name, ROWS, SETTINGS, root, cache)
    assert again is not None and again["table"] == result["table"]

    # the paper-profile page shows the measured rows from the cache
    from semantic_bottleneck.sections import continuous

    page = continuous.tab07_page("paper", "unused", system=name, num_steps=2, last_k=1,
                                 controls={"tail 0.1 t_i": ["mean"]}, draws=1,
                                 n_boot=4)  # fmt: skip
    measured = page.tables["beside paper"]
    assert "tail 0.1 t_i" in measured.index and "baseline" in measured.index
    assert page.values["removed"][0] == pytest.approx(row["removed"])
    assert page.values["fid_change"][0] == pytest.approx(fid["difference"])
    assert not page.missing
    figure = continuous.fig10_page("paper", "unused", system=name, num_steps=2, last_k=1,
                                   controls={"tail 0.1 t_i": ["mean"]}, draws=1, n_boot=4,
                                   shown=2)  # fmt: skip
    titles = [ax.get_title() for ax in figure.figures["pairs"].axes[:4]]
    assert titles == ["source", "pose", "target", "unpruned"]
    assert not any("shown through" in note for note in figure.notes)


def test_condition_file_is_built_from_the_pairs_with_drawn_target_poses(tmp_path, monkeypatch):
    from test_zoo_xmdpt import FakeDino

    from semantic_bottleneck.core import appendix
    from semantic_bottleneck.zoo import xmdpt as zoo_xmdpt

    cache = tmp_path / "weights"
    root = deepfashion_root(tmp_path / "df", PAIRS, poses=True)
    missing = {m.name for m in sweep.condition_inputs(root, None, cache)}
    assert missing == {"dinov2-repo", "dinov2-vitb14", "dinov2-vitg14", "xmdpt-vae"}
    with pytest.raises(sweep.MissingInputError, match="fetch dinov2-vitg14"):
        sweep.build_conditions(root, tmp_path / "no-repo", cache)
    encoders = dict(dino_pose=FakeDino(24, 0), dino_image=FakeDino(40, 1), vae=tiny_xmdpt_vae())
    path = sweep.build_conditions(root, None, cache, batch_size=2, seed=3, progress=False,
                                  encoders=encoders)  # fmt: skip
    assert path == appendix.conditions_path("xmdpt", cache)
    got = zoo_xmdpt.read_inputs(path)
    assert got["dino_tgt_pose"].shape == (PAIRS, 257, 24)
    pairs = sweep.df.read_pairs(root / sweep.df.PAIRS_FILE)
    generator = torch.Generator().manual_seed(3)
    for s in (0, 2):  # the same batches, in pair order, from the same generator
        batch = pairs[s : s + 2]
        source = sweep.source_tensor(sweep.df.load_images(root, [p.source for p in batch]))
        poses = torch.from_numpy(sweep.df.load_poses(root, [p.target for p in batch]))
        want = zoo_xmdpt.encode_conditions(source, poses, generator=generator, **encoders)
        for name in zoo_xmdpt.INPUTS:
            assert torch.equal(got[name][s : s + 2], want[name]), name
    assert "row i = pair i" in appendix.conditions_note(path)
    # a pair whose target has no keypoint file is named before anything is encoded
    sweep.df.pose_file(root, pairs[1].target).unlink()
    with pytest.raises(sweep.MissingInputError, match="1 target keypoint files"):
        sweep.build_conditions(root, None, cache, encoders=encoders)


def test_source_images_are_normalised_as_the_dataset_does():
    images = np.array([[[[0, 128, 255]]]], dtype=np.uint8)
    x = sweep.source_tensor(images)
    assert x.shape == (1, 3, 1, 1)
    assert torch.equal(x.flatten(), (torch.tensor([0, 128, 255]) / 255.0 - 0.5) / 0.5)
