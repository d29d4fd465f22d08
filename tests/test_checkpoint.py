"""Tests for zoo/checkpoint.py: safe loading, unwrapping, strict loading, atomic saving."""

from __future__ import annotations

import argparse
import os
import pathlib

import pytest
import torch
from torch import nn

from semantic_bottleneck.zoo.checkpoint import (
    CheckpointError,
    UnsafeCheckpointError,
    load_into,
    load_state_dict,
    save_atomic,
)


def _state(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"a.weight": torch.randn(3, 2, generator=g), "a.bias": torch.randn(3, generator=g)}


def _assert_same(x: dict, y: dict) -> None:
    assert set(x) == set(y)
    for k in x:
        assert torch.equal(x[k], y[k]), k


class _RunsCode:
    """A pickle payload that would run a shell command when unpickled."""

    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_bare_state_dict_loads_all_tensors(tmp_path):
    torch.save(_state(), tmp_path / "bare.pt")
    _assert_same(load_state_dict(tmp_path / "bare.pt"), _state())


def test_training_checkpoint_with_namespace_unwraps_ema_first(tmp_path):
    ckpt = {
        "model": _state(1),
        "ema": _state(2),
        "opt": {"state": {}, "param_groups": [{"lr": 1e-4}]},
        "args": argparse.Namespace(model="SiT-XL/2", lr=1e-4),
        "step": 10,
    }
    torch.save(ckpt, tmp_path / "train.pt")
    _assert_same(load_state_dict(tmp_path / "train.pt"), _state(2))
    _assert_same(load_state_dict(tmp_path / "train.pt", weights_key="model"), _state(1))


def test_falls_back_to_model_without_ema(tmp_path):
    torch.save({"model": _state(1), "args": argparse.Namespace(x=1)}, tmp_path / "m.pt")
    _assert_same(load_state_dict(tmp_path / "m.pt"), _state(1))


def test_missing_weights_key_lists_top_level_keys(tmp_path):
    torch.save({"model": _state()}, tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match=r"no 'ema' entry.*model"):
        load_state_dict(tmp_path / "m.pt", weights_key="ema")


def test_module_prefix_is_stripped(tmp_path):
    torch.save({f"module.{k}": v for k, v in _state().items()}, tmp_path / "ddp.pt")
    _assert_same(load_state_dict(tmp_path / "ddp.pt"), _state())


def test_keys_subset_and_missing_key_message(tmp_path):
    torch.save(_state(), tmp_path / "s.pt")
    out = load_state_dict(tmp_path / "s.pt", keys=["a.bias"])
    assert list(out) == ["a.bias"] and torch.equal(out["a.bias"], _state()["a.bias"])
    with pytest.raises(CheckpointError) as err:
        load_state_dict(tmp_path / "s.pt", keys=["a.bias", "t_embedder.mlp.0.weight"])
    message = str(err.value)
    assert "t_embedder.mlp.0.weight" in message and "a.weight" in message and "s.pt" in message


def test_pickle_that_runs_code_is_refused(tmp_path):
    marker = tmp_path / "was_run"
    torch.save({"w": torch.ones(2), "payload": _RunsCode(marker)}, tmp_path / "evil.pt")
    with pytest.raises(UnsafeCheckpointError) as err:
        load_state_dict(tmp_path / "evil.pt")
    assert not marker.exists()
    message = str(err.value)
    assert "evil.pt" in message and "Only tensors" in message and "system" in message
    assert isinstance(err.value, ValueError)


def test_only_namespace_is_allowed_beyond_tensors(tmp_path):
    # a harmless but non-allowlisted class is refused too: the allowlist is exactly Namespace
    torch.save({"ema": _state(), "path": pathlib.PurePosixPath("/x")}, tmp_path / "p.pt")
    with pytest.raises(UnsafeCheckpointError, match="PurePosixPath"):
        load_state_dict(tmp_path / "p.pt")


def test_legacy_non_zip_format_loads(tmp_path):
    torch.save(_state(), tmp_path / "old.pt", _use_new_zipfile_serialization=False)
    _assert_same(load_state_dict(tmp_path / "old.pt"), _state())


def test_unreadable_file_gives_clear_error(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="junk.pt"):
        load_state_dict(tmp_path / "junk.pt")
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_state_dict(tmp_path / "nope.pt")


def test_safetensors_roundtrip_and_subset(tmp_path):
    path = save_atomic(_state(), tmp_path / "s.safetensors", metadata={"source": "test"})
    _assert_same(load_state_dict(path), _state())
    assert list(load_state_dict(path, keys=["a.weight"])) == ["a.weight"]
    with pytest.raises(CheckpointError, match="missing keys"):
        load_state_dict(path, keys=["nope"])


def test_save_atomic_pt_roundtrip_leaves_no_temp_files(tmp_path):
    save_atomic({"ema": _state(), "args": argparse.Namespace(a=1)}, tmp_path / "c.pt")
    _assert_same(load_state_dict(tmp_path / "c.pt"), _state())
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


def test_save_atomic_failure_keeps_old_file(tmp_path):
    path = save_atomic(_state(0), tmp_path / "c.pt")
    with pytest.raises(Exception):  # noqa: B017 - lambdas cannot be pickled; any error will do
        save_atomic({"x": lambda: 0}, path)
    _assert_same(load_state_dict(path), _state(0))
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


def test_save_atomic_rejects_non_tensor_safetensors(tmp_path):
    with pytest.raises(ValueError, match="name: tensor"):
        save_atomic({"x": 1}, tmp_path / "bad.safetensors")
    assert not any(tmp_path.iterdir())


class _Tiny(nn.Module):
    def __init__(self, width: int = 3):
        super().__init__()
        self.a = nn.Linear(2, width)


def test_load_into_strict_roundtrip(tmp_path):
    src, dst = _Tiny(), _Tiny()
    torch.save({"ema": src.state_dict()}, tmp_path / "t.pt")
    load_into(dst, tmp_path / "t.pt")
    _assert_same(dst.state_dict(), src.state_dict())


def test_load_into_lists_missing_unexpected_and_shape_mismatch(tmp_path):
    state = {"a.weight": torch.zeros(4, 2), "extra.bias": torch.zeros(1)}
    torch.save(state, tmp_path / "bad.pt")
    model = _Tiny()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError) as err:
        load_into(model, tmp_path / "bad.pt")
    message = str(err.value)
    assert "missing keys (1): a.bias" in message
    assert "unexpected keys (1): extra.bias" in message
    assert "a.weight: expected (3, 2), found (4, 2)" in message
    _assert_same(model.state_dict(), before)  # nothing copied on failure
