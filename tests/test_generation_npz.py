"""ADM-format sample files: round trip, atomic writes, sidecar, shard merging."""

import json

import numpy as np
import pytest
import torch

from semantic_bottleneck.generation import npz as N


def batch(n: int = 6, seed: int = 0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 4, 5, 3), dtype=np.uint8)
    labels = np.arange(n) % 3
    seeds = np.arange(100, 100 + n)
    return images, labels, seeds


def test_round_trip_keeps_every_entry(tmp_path):
    images, labels, seeds = batch()
    info = {"family": "sit", "prune": {"side": "tail", "count": 2}, "steps": 8}
    path = N.save_samples(
        tmp_path / "s.npz", torch.from_numpy(images), labels, seeds,
        removed=[2] * 6, null_removed=[2] * 6, info=info,
    )  # fmt: skip
    got = N.load_samples(path)
    assert np.array_equal(got.images, images) and got.images.dtype == np.uint8
    assert np.array_equal(got.labels, labels) and got.labels.dtype == np.int64
    assert np.array_equal(got.seeds, seeds) and got.removed.tolist() == [2] * 6
    assert got.null_removed.tolist() == [2] * 6 and got.index is None
    assert got.info == info and len(got) == 6


def test_file_is_adm_format_and_needs_no_pickle(tmp_path):
    images, labels, seeds = batch()
    N.save_samples(tmp_path / "s.npz", images, labels, seeds)
    with np.load(tmp_path / "s.npz", allow_pickle=False) as data:
        assert data["arr_0"].dtype == np.uint8 and data["arr_0"].shape == (6, 4, 5, 3)
        assert data["labels"].dtype == np.int64


def test_sidecar_repeats_settings_and_per_sample_values(tmp_path):
    images, labels, seeds = batch()
    N.save_samples(tmp_path / "s.npz", images, labels, seeds, removed=[1] * 6, info={"a": 1})
    side = json.loads((tmp_path / "s.json").read_text())
    assert side["info"] == {"a": 1} and side["num_samples"] == 6
    assert side["labels"] == labels.tolist() and side["seeds"] == seeds.tolist()
    assert side["removed"] == [1] * 6 and side["image_shape"] == [4, 5, 3]


def test_reads_guided_diffusion_labels_from_arr_1(tmp_path):
    images, labels, _ = batch()
    np.savez(tmp_path / "adm.npz", images, labels)  # image_sample.py's positional layout
    got = N.load_samples(tmp_path / "adm.npz")
    assert got.labels.tolist() == labels.tolist() and got.seeds is None and got.info == {}


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(images=np.zeros((2, 4, 4, 3), np.float32)), "uint8"),
        (dict(images=np.zeros((2, 4, 4, 1), np.uint8)), r"\(N, H, W, 3\)"),
        (dict(labels=[0, 1, 2]), "labels: expected 6"),
        (dict(seeds=np.zeros(6, np.float64)), "seeds"),
        (dict(info={"x": object()}), "JSON-serialisable"),
    ],
)
def test_bad_input_is_rejected_and_writes_nothing(tmp_path, kwargs, match):
    images, labels, seeds = batch()
    args = dict(images=images, labels=labels, seeds=seeds) | kwargs
    with pytest.raises(ValueError, match=match):
        N.save_samples(tmp_path / "s.npz", **args)
    assert list(tmp_path.iterdir()) == []


def test_failed_write_leaves_no_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    images, labels, seeds = batch()
    path = N.save_samples(tmp_path / "s.npz", images, labels, seeds)
    before = path.read_bytes()

    def broken_savez(f, **arrays):
        f.write(b"PK\x03\x04 partial")
        raise OSError("disk full")

    monkeypatch.setattr(N.np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        N.save_samples(path, images[::-1].copy(), labels, seeds)
    with pytest.raises(OSError):
        N.save_samples(tmp_path / "new.npz", images, labels, seeds)
    assert path.read_bytes() == before  # old file untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.json", "s.npz"]  # no temp, no new


def test_merge_orders_shards_by_index(tmp_path):
    images, labels, seeds = batch(7)
    shards = []
    for rank in range(3):  # strided shards, written in reverse rank order
        idx = np.arange(rank, 7, 3)
        path = N.shard_path(tmp_path / "all.npz", rank, 3)
        N.save_samples(path, images[idx], labels[idx], seeds[idx], removed=idx * 0 + rank,
                       index=idx, info={"rank": 0}, sidecar=False)  # fmt: skip
        shards.insert(0, path)
    out = N.merge_shards(shards, tmp_path / "all.npz", remove=True)
    got = N.load_samples(out)
    assert np.array_equal(got.images, images) and np.array_equal(got.labels, labels)
    assert np.array_equal(got.seeds, seeds) and got.removed.tolist() == [0, 1, 2, 0, 1, 2, 0]
    assert got.index is None and got.info == {"rank": 0}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["all.json", "all.npz"]


def test_merge_rejects_gaps_duplicates_and_plain_files(tmp_path):
    images, labels, seeds = batch(4)
    a = N.save_samples(tmp_path / "a.npz", images[:2], labels[:2], index=[0, 1], sidecar=False)
    b = N.save_samples(tmp_path / "b.npz", images[2:], labels[2:], index=[1, 3], sidecar=False)
    with pytest.raises(ValueError, match="exactly 0..3"):
        N.merge_shards([a, b], tmp_path / "m.npz")
    c = N.save_samples(tmp_path / "c.npz", images[2:], labels[2:], sidecar=False)
    with pytest.raises(ValueError, match="not a shard file"):
        N.merge_shards([a, c], tmp_path / "m.npz")
    d = N.save_samples(tmp_path / "d.npz", images[2:], labels[2:], seeds[2:], index=[2, 3])
    with pytest.raises(ValueError, match="differ"):
        N.merge_shards([a, d], tmp_path / "m.npz")
    assert not (tmp_path / "m.npz").exists()


def test_shard_path_names_rank_and_world(tmp_path):
    assert N.shard_path(tmp_path / "x.npz", 1, 4).name == "x.shard-001-of-004.npz"
