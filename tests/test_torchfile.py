"""Tests for torchfile.py: torch-free reading of torch.save files, and c in numpy."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from semantic_bottleneck.core import conditioning, torchfile
from semantic_bottleneck.core.torchfile import (
    EMBEDDER_KEYS,
    class_conditions_numpy,
    read_index,
    read_tensors,
    timestep_embedding_numpy,
)
from semantic_bottleneck.zoo.checkpoint import CheckpointError, UnsafeCheckpointError
from semantic_bottleneck.zoo.dit import timestep_embedding

ROOT = Path(__file__).resolve().parents[1]
D, FREQ, CLASSES = 32, 256, 10


def _state() -> dict[str, torch.Tensor]:
    """Tensors of every supported dtype and layout, as torch.save writes them."""
    g = torch.Generator().manual_seed(0)
    base = torch.randn(4, 5, generator=g)
    return {
        "float32": torch.randn(3, 7, generator=g),
        "float16": torch.randn(6, generator=g).half(),
        "bfloat16": torch.randn(2, 3, generator=g).bfloat16(),
        "float64": torch.randn(2, generator=g).double(),
        "int64": torch.randint(-(2**40), 2**40, (5,), generator=g),
        "bool": torch.tensor([True, False, True]),
        "uint16": torch.tensor([1, 60000], dtype=torch.uint16),  # a _rebuild_tensor_v3 record
        "complex64": torch.randn(3, generator=g, dtype=torch.complex64),
        "base": base,
        "rows": base[1:3],  # a view: storage offset 5, storage shared with "base"
        "transposed": base.t(),  # strides (1, 5)
        "expanded": torch.tensor([1.0, 2.0]).expand(3, 2),  # stride 0
        "scalar": torch.tensor(3.5),
        "empty": torch.zeros(0, 4),
        "param": torch.nn.Parameter(torch.randn(2, 2, generator=g)),
    }


def _expected(t: torch.Tensor) -> np.ndarray:
    t = t.detach()
    return t.float().numpy() if t.dtype == torch.bfloat16 else t.numpy()


def _assert_same(arrays: dict, tensors: dict) -> None:
    assert list(arrays) == list(tensors)
    for key, t in tensors.items():
        want = _expected(t)
        got = arrays[key]
        assert got.dtype == want.dtype and got.shape == want.shape, key
        assert got.flags.c_contiguous and got.flags.writeable, key
        np.testing.assert_array_equal(got, want, err_msg=key)


def test_reads_every_dtype_and_layout_like_torch_load(tmp_path):
    state = _state()
    path = tmp_path / "state.pt"
    torch.save(state, path)
    loaded = torch.load(path, weights_only=True)
    arrays = read_tensors(path, state)
    _assert_same(arrays, loaded)
    assert arrays["bfloat16"].dtype == np.float32  # widened exactly
    index = read_index(path)
    assert index["rows"].offset == 5 and index["rows"].shape == (2, 5)
    assert index["rows"].storage == index["base"].storage


def test_reads_only_the_requested_keys_and_copies(tmp_path):
    state = _state()
    path = tmp_path / "state.pt"
    torch.save(state, path)
    arrays = read_tensors(path, ["rows", "float16"])
    assert list(arrays) == ["rows", "float16"]
    arrays["rows"][:] = 0  # independent of the file: the next read is unchanged
    np.testing.assert_array_equal(read_tensors(path, ["rows"])["rows"], state["rows"].numpy())


def _training_checkpoint(path: Path, ema: dict, model: dict) -> None:
    net = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    net(torch.ones(1, 3)).sum().backward()
    opt.step()
    obj = {
        "model": model,
        "ema": ema,
        "opt": opt.state_dict(),  # tensors, lists, tuples, floats, None
        "args": argparse.Namespace(lr=1e-4, model="DiT-XL/2", global_batch_size=256),
        "steps": 7000,
    }
    torch.save(obj, path)


def test_unwraps_training_checkpoints_and_ddp_prefix(tmp_path):
    g = torch.Generator().manual_seed(1)
    ema = {"module.w": torch.randn(4, 4, generator=g), "module.b": torch.randn(4, generator=g)}
    model = {"w": torch.randn(4, 4, generator=g), "b": torch.randn(4, generator=g)}
    path = tmp_path / "train.pt"
    _training_checkpoint(path, ema, model)
    _assert_same(read_tensors(path, ["w", "b"]), {"w": ema["module.w"], "b": ema["module.b"]})
    _assert_same(read_tensors(path, ["w"], weights_key="model"), {"w": model["w"]})
    with pytest.raises(CheckpointError, match="no 'nope' entry"):
        read_tensors(path, ["w"], weights_key="nope")


def test_big_endian_files_are_byteswapped(tmp_path):
    state = {k: v for k, v in _state().items() if k != "complex64"}
    little = tmp_path / "little.pt"
    torch.save(state, little)
    index = read_index(little)
    dtypes = {ref.storage: torchfile._DTYPES[ref.dtype] for ref in index.values()}
    big = tmp_path / "big.pt"
    with zipfile.ZipFile(little) as src, zipfile.ZipFile(big, "w", zipfile.ZIP_STORED) as dst:
        for name in src.namelist():
            data = src.read(name)
            if name.endswith("/byteorder"):
                data = b"big"
            elif "/data/" in name:
                data = np.frombuffer(data, "<" + dtypes[name.rsplit("/", 1)[1]]).byteswap()
                data = data.tobytes()
            dst.writestr(name, data)
    _assert_same(read_tensors(big, state), state)


def test_refuses_a_malicious_pickle_without_running_it(tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    path = tmp_path / "evil.pt"
    torch.save({"w": torch.zeros(2), "x": Exploit()}, path)
    with pytest.raises(UnsafeCheckpointError, match=r"requires (posix|os|nt)\.system"):
        read_tensors(path, ["w"])
    assert not marker.exists()


def _raw_archive(path: Path, data_pkl: bytes) -> Path:
    """A zip laid out like torch.save's, holding an arbitrary data.pkl."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("archive/data.pkl", data_pkl)
        zf.writestr("archive/byteorder", "little")
    return path


@pytest.mark.parametrize(
    ("module", "name", "attribute"),
    [
        ("argparse", "Namespace", "poison"),
        ("torch._utils", "_rebuild_tensor_v2", "__defaults__"),
        ("torch", "FloatStorage", "name"),
    ],
)
def test_a_pickle_cannot_alter_the_allowed_objects(tmp_path, module, name, attribute):
    # GLOBAL module.name; BUILD with slot state {attribute: 1}; the object itself as the result
    data = (
        b"\x80\x02c" + f"{module}\n{name}\n".encode()
        + b"N}X" + len(attribute).to_bytes(4, "little") + attribute.encode() + b"K\x01s\x86b."
    )  # fmt: skip
    path = _raw_archive(tmp_path / "build.pt", data)
    with pytest.raises(CheckpointError):
        read_index(path)
    assert not hasattr(argparse.Namespace, "poison")
    assert torchfile._rebuild_tensor_v2.__defaults__ == (None,)
    assert torchfile._MARKERS[("torch", "FloatStorage")].name == "float32"
    state = _state()
    torch.save(state, tmp_path / "clean.pt")
    _assert_same(read_tensors(tmp_path / "clean.pt", ["float32"]), {"float32": state["float32"]})


def test_missing_keys_and_non_tensors_are_clear_errors(tmp_path):
    path = tmp_path / "state.pt"
    torch.save({"w": torch.zeros(2), "n": 5}, path)
    with pytest.raises(CheckpointError, match=r"missing keys \['v'\]; keys found: \['n', 'w'\]"):
        read_tensors(path, ["w", "v"])
    with pytest.raises(CheckpointError, match=r"\['n'\] are not tensors"):
        read_tensors(path, ["n"])


def test_bad_arguments_and_other_formats_are_refused(tmp_path):
    path = tmp_path / "state.pt"
    torch.save({"w": torch.zeros(2), "f8": torch.zeros(2, dtype=torch.float8_e4m3fn)}, path)
    with pytest.raises(ValueError, match="the string 'w'"):
        read_tensors(path, "w")
    with pytest.raises(ValueError, match="non-empty"):
        read_tensors(path, [])
    with pytest.raises(FileNotFoundError):
        read_tensors(tmp_path / "absent.pt", ["w"])
    with pytest.raises(CheckpointError, match="float8_e4m3fn is not supported"):
        read_tensors(path, ["f8"])
    assert read_tensors(path, ["w"])["w"].shape == (2,)  # the other tensors stay readable
    legacy = tmp_path / "legacy.pt"
    torch.save({"w": torch.zeros(2)}, legacy, _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointError, match="not a zip-format torch.save file"):
        read_tensors(legacy, ["w"])


# ----------------------------------------------------------------------------- c in numpy


def _embedders(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random embedders at the scale of a trained model (|c| of order 1)."""
    g = torch.Generator().manual_seed(seed)
    shapes = [(D, FREQ), (D,), (D, D), (D,), (CLASSES + 1, D)]
    scales = [FREQ**-0.5, 0.1, D**-0.5, 0.1, 1.0]
    return {
        k: torch.randn(*s, generator=g) * a
        for k, s, a in zip(EMBEDDER_KEYS, shapes, scales, strict=True)
    }


def test_embedder_keys_are_the_conditioning_keys():
    assert EMBEDDER_KEYS == conditioning.EMBEDDER_KEYS


@pytest.mark.parametrize("t", [0.0, 0.25, 1.0, 500, 999])
def test_timestep_embedding_numpy_matches_torch(t):
    want = timestep_embedding(torch.tensor([t], dtype=torch.float32)).numpy()
    got = timestep_embedding_numpy(t)
    assert got.dtype == np.float32 and got.shape == (1, 256)
    # float32 exp differs by an ulp between libraries in a few frequencies; t = 999 scales it
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6 if t <= 1 else 2e-4)
    odd = timestep_embedding_numpy(t, dim=7)
    np.testing.assert_allclose(odd, timestep_embedding(torch.tensor([t]), dim=7).numpy(), atol=2e-4)


@pytest.mark.parametrize("t", [999, 500, 0, 1.0, 0.25])
def test_class_conditions_numpy_equals_torch(t):
    emb = _embedders(2)
    want = conditioning.class_conditions(emb, t).numpy()
    got = class_conditions_numpy({k: v.numpy() for k, v in emb.items()}, t)
    assert got.dtype == np.float32 and got.shape == (CLASSES, D)
    assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max()
    subset = [4, CLASSES]  # includes the null class
    want = conditioning.class_conditions(emb, t, torch.tensor(subset)).numpy()
    got = class_conditions_numpy({k: v.numpy() for k, v in emb.items()}, t, subset)
    assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max()


def test_numpy_c_from_a_checkpoint_equals_the_torch_path(tmp_path):
    emb = _embedders(3)
    path = tmp_path / "train.pt"
    _training_checkpoint(path, {**emb, "blocks.0.mlp.fc1.weight": torch.zeros(64, 64)}, {})
    got = class_conditions_numpy(read_tensors(path, EMBEDDER_KEYS), 999)
    torch_emb = conditioning.read_embedders(path, cache_dir=tmp_path / "cache")
    want = conditioning.class_conditions(torch_emb, 999).numpy()
    assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max()


@pytest.mark.parametrize(
    ("change", "t", "classes", "message"),
    [
        ({"t_embedder.mlp.2.bias": None}, 0.0, None, "lack"),
        ({"t_embedder.mlp.2.weight": np.zeros((D, D + 1))}, 0.0, None, r"expected \(32, 32\)"),
        ({}, [0.0, 1.0], None, "one t"),
        ({}, float("nan"), None, "finite"),
        ({}, 0.0, [0.5], "integers"),
        ({}, 0.0, [CLASSES + 1], "labels must lie in"),
    ],
)
def test_class_conditions_numpy_bad_inputs(change, t, classes, message):
    arrays = {k: v.numpy() for k, v in _embedders().items()}
    arrays.update(change)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    with pytest.raises(ValueError, match=message):
        class_conditions_numpy(arrays, t, classes)


def test_reading_and_c_never_import_torch(tmp_path):
    path = tmp_path / "model.pt"
    torch.save(_embedders(4), path)
    script = (
        "import sys\n"
        "from semantic_bottleneck.core import torchfile\n"
        "c = torchfile.class_conditions_numpy(torchfile.read_tensors(sys.argv[1], "
        "torchfile.EMBEDDER_KEYS), 999)\n"
        "print(c.shape, 'torch' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(path)], cwd=ROOT, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["(10,", "32)", "False"]
