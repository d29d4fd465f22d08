"""Tests for conditioning.py: c from the five embedder tensors, and the embedder cache."""

from __future__ import annotations

import argparse
import math
import os

import pytest
import torch
from torch import nn

from semantic_bottleneck.core import conditioning
from semantic_bottleneck.core.conditioning import (
    EMBEDDER_KEYS,
    class_conditions,
    condition,
    embedders_from_model,
    label_only,
    read_embedders,
    time_only,
)

D, FREQ, CLASSES = 16, 256, 10


def _embedders(seed: int = 0, d: int = D) -> dict[str, torch.Tensor]:
    """Random embedders at the scale of a trained model (|c| of order 1)."""
    g = torch.Generator().manual_seed(seed)
    shapes = [(d, FREQ), (d,), (d, d), (d,), (CLASSES + 1, d)]
    scales = [FREQ**-0.5, 0.1, d**-0.5, 0.1, 1.0]
    return {
        k: torch.randn(*s, generator=g) * a
        for k, s, a in zip(EMBEDDER_KEYS, shapes, scales, strict=True)
    }


def _reference_c(emb: dict, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """c written out from its definition (book/method.md#method-conditional-vector), not the package."""
    half = FREQ // 2
    i = torch.arange(half, dtype=torch.float32)
    freqs = torch.exp(-math.log(10000.0) * i / half)
    args = t.float()[:, None] * freqs[None]
    sinusoid = torch.cat([torch.cos(args), torch.sin(args)], dim=1)  # cosine first
    h = sinusoid @ emb["t_embedder.mlp.0.weight"].T + emb["t_embedder.mlp.0.bias"]
    h = h * torch.sigmoid(h)  # SiLU
    t_emb = h @ emb["t_embedder.mlp.2.weight"].T + emb["t_embedder.mlp.2.bias"]
    return t_emb + emb["y_embedder.embedding_table.weight"][y]


@pytest.mark.parametrize("t", [999, 500, 0, 1.0, 0.25, 0.0])
def test_condition_matches_reference(t):
    emb = _embedders()
    y = torch.tensor([0, 3, 9, CLASSES])  # includes the null class
    c = condition(emb, t, y)
    assert c.dtype == torch.float32 and c.shape == (4, D)
    torch.testing.assert_close(c, _reference_c(emb, torch.full((4,), t), y), atol=1e-6, rtol=1e-6)


def test_condition_with_per_sample_times():
    emb = _embedders(1)
    t = torch.tensor([0, 250, 999])
    y = torch.tensor([1, 2, 3])
    torch.testing.assert_close(condition(emb, t, y), _reference_c(emb, t, y), atol=1e-6, rtol=1e-6)
    assert torch.equal(condition(emb, t[1], y), condition(emb, torch.full((3,), 250), y))


def test_condition_equals_the_models_own_condition():
    from semantic_bottleneck.zoo.dit import DiT

    torch.manual_seed(0)
    model = DiT(input_size=8, patch_size=2, in_channels=4, hidden_size=32, depth=1, num_heads=2,
                num_classes=CLASSES, class_dropout_prob=0.1).eval()  # fmt: skip
    for p in model.parameters():
        nn.init.normal_(p, std=0.5)  # the zero init of the official model would hide errors
    emb = embedders_from_model(model)
    y = torch.arange(CLASSES + 1)
    for t in (torch.full((CLASSES + 1,), 999), torch.full((CLASSES + 1,), 0.3)):
        with torch.no_grad():
            assert torch.equal(condition(emb, t, y), model.condition(t, y))


def test_class_conditions_is_all_real_classes_at_one_t():
    emb = _embedders(2)
    c = class_conditions(emb, 0.0)
    assert c.shape == (CLASSES, D)  # null row excluded
    assert torch.equal(c, condition(emb, 0.0, torch.arange(CLASSES)))
    subset = torch.tensor([4, CLASSES])
    assert torch.equal(class_conditions(emb, 0.0, subset), condition(emb, 0.0, subset))
    with pytest.raises(ValueError, match="one t"):
        class_conditions(emb, torch.tensor([0.0, 1.0]))


def test_label_only_and_time_only_add_up_to_c():
    emb = _embedders(3)
    table = emb["y_embedder.embedding_table.weight"]
    assert torch.equal(label_only(emb), table[:CLASSES])
    assert torch.equal(label_only(emb, torch.tensor([CLASSES])), table[CLASSES:])
    t_emb = time_only(emb, 999)
    assert t_emb.shape == (1, D)
    torch.testing.assert_close(class_conditions(emb, 999), t_emb + table[:CLASSES])


@pytest.mark.parametrize(
    ("t", "y", "message"),
    [
        (0.0, torch.tensor([CLASSES + 1]), "labels must lie in"),
        (0.0, torch.tensor([-1]), "labels must lie in"),
        (0.0, torch.tensor([0.5]), "integers"),
        (torch.zeros(2, 2), torch.tensor([0, 1]), "scalar or a vector"),
        (torch.zeros(3), torch.tensor([0, 1]), "3 entries"),
        (float("nan"), torch.tensor([0]), "finite"),
    ],
)
def test_bad_inputs_raise_value_error(t, y, message):
    with pytest.raises(ValueError, match=message):
        condition(_embedders(), t, y)


def test_bad_embedders_raise_value_error():
    emb = _embedders()
    with pytest.raises(ValueError, match="lack"):
        condition({k: v for k, v in emb.items() if "mlp.2.bias" not in k}, 0.0, [0])
    emb["t_embedder.mlp.2.weight"] = torch.zeros(D, D + 1)
    with pytest.raises(ValueError, match=r"mlp.2.weight: expected \(16, 16\)"):
        condition(emb, 0.0, [0])


class _Embedders(nn.Module):
    """Just the two embedders, named as in every official model."""

    def __init__(self):
        super().__init__()
        self.t_embedder = nn.Module()
        self.t_embedder.mlp = nn.Sequential(nn.Linear(FREQ, D), nn.SiLU(), nn.Linear(D, D))
        self.y_embedder = nn.Module()
        self.y_embedder.embedding_table = nn.Embedding(CLASSES + 1, D)
        self.other = nn.Linear(D, D)


def test_embedders_from_model_handles_wrappers():
    model = _Embedders()
    emb = embedders_from_model(model)
    assert list(emb) == list(EMBEDDER_KEYS)
    wrapper = nn.Module()
    wrapper.module = model  # DistributedDataParallel layout
    for k, v in embedders_from_model(wrapper).items():
        assert torch.equal(v, emb[k])
    with pytest.raises(ValueError, match="t_embedder"):
        embedders_from_model(nn.Linear(2, 2))


def _checkpoint_with_extras(path, emb, wrap=False):
    state = dict(emb)
    state["blocks.0.mlp.fc1.weight"] = torch.zeros(1024, 1024)  # unrelated, 4 MB
    state["pos_embed"] = torch.zeros(1, 256, D)
    obj = {"ema": state, "model": {}, "args": argparse.Namespace(lr=1e-4)} if wrap else state
    torch.save(obj, path)
    return path


def test_read_embedders_takes_only_the_five_tensors_and_caches(tmp_path, monkeypatch):
    emb = _embedders(4)
    ckpt = _checkpoint_with_extras(tmp_path / "model.pt", emb)
    cache = tmp_path / "cache"
    loads = []
    real_load = conditioning.load_state_dict
    monkeypatch.setattr(
        conditioning, "load_state_dict", lambda p, **kw: loads.append(p) or real_load(p, **kw)
    )

    first = read_embedders(ckpt, cache_dir=cache)
    assert list(first) == list(EMBEDDER_KEYS)
    for k in EMBEDDER_KEYS:
        assert torch.equal(first[k], emb[k])
    assert loads == [ckpt]
    cached = list(cache.glob("*.safetensors"))
    assert len(cached) == 1 and cached[0].stat().st_size < 100_000

    second = read_embedders(ckpt, cache_dir=cache)
    assert loads[1:] == [cached[0]]  # served from the cache, checkpoint not opened
    assert list(second) == list(EMBEDDER_KEYS)
    for k in EMBEDDER_KEYS:
        assert torch.equal(second[k], emb[k])


def test_cache_is_invalidated_when_the_checkpoint_changes(tmp_path):
    ckpt = _checkpoint_with_extras(tmp_path / "model.pt", _embedders(5))
    cache = tmp_path / "cache"
    read_embedders(ckpt, cache_dir=cache)
    new = _embedders(6)
    _checkpoint_with_extras(ckpt, new)
    os.utime(ckpt, ns=(1, 1))  # force a different mtime even on coarse file systems
    assert torch.equal(
        read_embedders(ckpt, cache_dir=cache)[EMBEDDER_KEYS[0]], new[EMBEDDER_KEYS[0]]
    )
    assert len(list(cache.glob("*.safetensors"))) == 2


def test_unreadable_cache_entry_is_rebuilt(tmp_path):
    emb = _embedders(9)
    ckpt = _checkpoint_with_extras(tmp_path / "model.pt", emb)
    cache = tmp_path / "cache"
    read_embedders(ckpt, cache_dir=cache)
    (cached,) = cache.glob("*.safetensors")
    cached.write_bytes(b"garbage")
    assert torch.equal(
        read_embedders(ckpt, cache_dir=cache)[EMBEDDER_KEYS[1]], emb[EMBEDDER_KEYS[1]]
    )
    assert len(cached.read_bytes()) > 1000  # rewritten


def test_read_embedders_unwraps_training_checkpoints(tmp_path):
    emb = _embedders(7)
    ckpt = _checkpoint_with_extras(tmp_path / "train.pt", emb, wrap=True)
    out = read_embedders(ckpt, cache_dir=tmp_path / "cache")
    assert torch.equal(out[EMBEDDER_KEYS[4]], emb[EMBEDDER_KEYS[4]])


def test_read_embedders_by_registry_name(tmp_path, monkeypatch):
    monkeypatch.setenv("SEMANTIC_BOTTLENECK_WEIGHTS", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="semantic-bottleneck fetch dit-xl-2"):
        read_embedders("dit-xl-2")
    emb = _embedders(8)
    (tmp_path / "dit-xl-2").mkdir()
    _checkpoint_with_extras(tmp_path / "dit-xl-2" / "DiT-XL-2-256x256.pt", emb)
    out = read_embedders("dit-xl-2")
    assert torch.equal(out[EMBEDDER_KEYS[2]], emb[EMBEDDER_KEYS[2]])
    assert len(list((tmp_path / "embedders").glob("*.safetensors"))) == 1
