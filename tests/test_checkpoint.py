"""Tests for zoo/checkpoint.py: safe loading, unwrapping, strict loading, atomic saving."""

from __future__ import annotations

import argparse
import os
import pathlib

import pytest
import torch
from torch import nn

from semantic_bottleneck.zoo import build_model, registry
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


# ----------------------------------------------------------------------------- mismatch messages
# Files shaped like the released checkpoints, read from the packaged manifests: every tensor is
# a stride-0 view of one zero, so a file of XL shapes takes a few kB on disk.


def _manifest_state(name: str, prefix: str = "", **shapes) -> dict[str, torch.Tensor]:
    keys = dict(registry.get_checkpoint(name).shapes, **shapes)
    zero = torch.zeros(())
    return {f"{prefix}{k}": zero.expand(*s) for k, s in keys.items()}


def _xl(name: str) -> nn.Module:
    entry = registry.get_checkpoint(name)
    with torch.device("meta"):
        return build_model(entry.family, **entry.config)


def _error(model: nn.Module, obj: object, path: pathlib.Path, **kw) -> str:
    torch.save(obj, path)
    with pytest.raises(CheckpointError) as err:
        load_into(model, path, **kw)
    return str(err.value)


@pytest.mark.parametrize("family", ["mdt", "mdtv2"])
def test_another_family_is_named_with_counts_and_a_few_keys(tmp_path, family):
    file = _manifest_state(f"{family}-xl-2")
    expected = _xl("dit-xl-2").state_dict()
    missing, unexpected = sorted(set(expected) - set(file)), sorted(set(file) - set(expected))
    message = _error(_xl("dit-xl-2"), file, tmp_path / "mdt.pt")
    assert f"{family}-xl-2" in message and f"'{family}'" in message  # the registry entry
    assert f"unexpected keys ({len(unexpected)})" in message
    assert unexpected[0] in message and unexpected[-1] not in message
    assert f"... and {len(unexpected) - 5} more" in message
    if missing:
        assert f"missing keys ({len(missing)})" in message and missing[0] in message
    assert len(message.splitlines()) < 25 and len(message) < 2500


def test_training_checkpoint_names_its_entries_and_the_weights_key(tmp_path):
    ckpt = {
        "model_ema": _manifest_state("dit-xl-2"),
        "opt": {"state": {}, "param_groups": [{"lr": 1e-4}]},
        "args": argparse.Namespace(model="DiT-XL/2"),
        "steps": 400000,
    }
    message = _error(_xl("dit-xl-2"), ckpt, tmp_path / "train.pt")
    assert "training checkpoint" in message
    for entry in ("model_ema", "opt", "args", "steps"):
        assert entry in message
    assert "weights_key='model_ema'" in message
    assert len(message.splitlines()) < 25


def test_auto_picked_ema_of_another_model_says_where_the_weights_came_from(tmp_path):
    ckpt = {"ema": _manifest_state("mdt-xl-2"), "model": _manifest_state("dit-xl-2"), "steps": 10}
    message = _error(_xl("dit-xl-2"), ckpt, tmp_path / "train.pt")
    assert "'ema'" in message and "weights_key='model'" in message and "mdt-xl-2" in message


def test_ddp_and_compile_prefixes_are_named(tmp_path):
    file = _manifest_state("dit-xl-2", prefix="module._orig_mod.")
    message = _error(_xl("dit-xl-2"), file, tmp_path / "ddp.pt")
    assert "'module.'" in message and "'_orig_mod.'" in message
    assert "torch.compile" in message and "DistributedDataParallel" in message
    assert len(message.splitlines()) < 25


def test_nested_ddp_state_dict_names_the_entry_and_the_prefix(tmp_path):
    file = {"state_dict": _manifest_state("dit-xl-2", prefix="module.")}
    message = _error(_xl("dit-xl-2"), file, tmp_path / "nested.pt")
    assert "nested" in message and "weights_key='state_dict'" in message and "'module.'" in message


def test_wrapped_model_is_named(tmp_path):
    class Wrapper(nn.Module):
        def __init__(self, inner: nn.Module):
            super().__init__()
            self.module = inner

    message = _error(Wrapper(_Tiny()), _Tiny().state_dict(), tmp_path / "t.pt")
    assert "'module.'" in message and "model.module" in message


def test_wrong_class_count_names_num_classes(tmp_path):
    file = _manifest_state("dit-xl-2", **{"y_embedder.embedding_table.weight": [11, 1152]})
    message = _error(_xl("dit-xl-2"), file, tmp_path / "classes.pt")
    assert "shape mismatches (1)" in message and "y_embedder.embedding_table.weight" in message
    assert "num_classes" in message and "1000" in message and "10" in message
    assert "missing keys" not in message and "unexpected keys" not in message


def test_other_size_names_the_config_differences(tmp_path):
    # a tiny DiT's file into another tiny DiT: depth, width and patch size differ
    small = dict(input_size=8, in_channels=4, num_heads=2, num_classes=10)
    file = build_model("dit", **small, patch_size=4, hidden_size=16, depth=1).state_dict()
    model = build_model("dit", **small, patch_size=2, hidden_size=32, depth=2)
    message = _error(model, file, tmp_path / "small.pt")
    for name in ("depth 2 vs 1", "hidden_size 32 vs 16", "patch_size 2 vs 4"):
        assert name in message


def test_safetensors_read_whole_strips_the_ddp_prefix_too(tmp_path):
    path = save_atomic({f"module.{k}": v for k, v in _state().items()}, tmp_path / "d.safetensors")
    _assert_same(load_state_dict(path), _state())
    load_into(_Tiny(), path)  # the same keys as the model once the prefix is gone
