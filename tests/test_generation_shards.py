"""Sharded generation over torch.distributed ranks (gloo on CPU) merges to the one-process result.

Kept apart from test_generation_run.py with light imports: each spawned rank imports this module.
"""

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from semantic_bottleneck import sampling as S
from semantic_bottleneck.generation import decode as D
from semantic_bottleneck.generation import npz as N
from semantic_bottleneck.generation import run as R
from semantic_bottleneck.sampling import PruneSpec
from semantic_bottleneck.zoo import build_model, denoiser

KW = dict(input_size=8, patch_size=2, in_channels=4, hidden_size=32, depth=1, num_heads=2)
LABELS, SEEDS = [1, 2, 3, 4, 5, 6, 7, 8], [10, 11, 12, 13, 14, 15, 16, 17]
SPEC = PruneSpec("tail", count=3)


def tiny_setup():
    model = build_model("sit", num_classes=10, **KW)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return model.eval(), S.default_config("sit", null_class=10, num_steps=6)


def first_channels(x: torch.Tensor) -> torch.Tensor:
    """A stand-in decoder: latent channels 0-2 as an image (the VAE path is tested elsewhere)."""
    return D.to_images(x[:, :3], "dit")


def run_npz(path, model, config, shard: str = "contiguous"):
    return R.generate_npz(
        path, denoiser(model), model.condition, "sit", LABELS, SEEDS, config, first_channels,
        latent_shape=(4, 8, 8), shard=shard, prune=SPEC, batch_size=2, progress=False,
        extra_info={"model": "tiny"},
    )  # fmt: skip


@pytest.mark.parametrize("mode", R.SHARDINGS)
def test_shards_cover_every_index_once(mode):
    parts = [R.shard_indices(7, r, 3, mode) for r in range(3)]
    assert sorted(np.concatenate(parts).tolist()) == list(range(7))
    assert [len(p) for p in parts] == [3, 2, 2]
    with pytest.raises(ValueError, match="rank"):
        R.shard_indices(7, 3, 3, mode)
    with pytest.raises(ValueError, match="shard mode"):
        R.shard_indices(7, 0, 3, "random")


def test_single_process_npz_holds_what_generate_returns(tmp_path):
    model, config = tiny_setup()
    images, info = R.generate(
        denoiser(model), model.condition, "sit", LABELS, SEEDS, config, first_channels,
        latent_shape=(4, 8, 8), prune=SPEC, batch_size=2, progress=False,
    )  # fmt: skip
    got = N.load_samples(run_npz(tmp_path / "s.npz", model, config))
    assert np.array_equal(got.images, images.numpy()) and got.labels.tolist() == LABELS
    assert got.seeds.tolist() == SEEDS and got.removed.tolist() == info["removed"] == [3] * 8
    assert got.null_removed.tolist() == info["null_removed"]
    assert got.info["model"] == "tiny" and got.info["prune"]["count"] == 3
    assert got.info["world_size"] == 1 and "removed" not in got.info
    assert (tmp_path / "s.json").is_file()


def _rank_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world
    )
    try:
        model, config = tiny_setup()
        for shard in R.SHARDINGS:
            run_npz(f"{out_dir}/{shard}.npz", model, config, shard)
    finally:
        torch.distributed.destroy_process_group()


def test_two_gloo_ranks_merge_to_the_single_process_result(tmp_path):
    mp.spawn(_rank_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    model, config = tiny_setup()
    single = N.load_samples(run_npz(tmp_path / "single.npz", model, config))
    for shard in R.SHARDINGS:
        got = N.load_samples(tmp_path / f"{shard}.npz")
        assert got.labels.tolist() == LABELS and got.seeds.tolist() == SEEDS
        assert got.removed.tolist() == single.removed.tolist() and got.info["world_size"] == 2
        if shard == "contiguous":  # ranks run the same batches: [0, 1], [2, 3] | [4, 5], [6, 7]
            assert np.array_equal(got.images, single.images)
        else:  # other batch shapes: only float summation order may differ
            assert np.abs(got.images.astype(int) - single.images.astype(int)).max() <= 1
    assert not list(tmp_path.glob("*.shard-*"))  # shards merged, then removed
