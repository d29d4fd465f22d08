"""Tests for zoo/registry.py: entries agree with the manifests, the paper and the official repos."""

from __future__ import annotations

import dataclasses
import re

import pytest

from semantic_bottleneck import sampling
from semantic_bottleneck.core.conventions import CONVENTIONS
from semantic_bottleneck.generation.source import checkpoint_source
from semantic_bottleneck.zoo import registry
from semantic_bottleneck.zoo.registry import (
    ASSETS,
    CHECKPOINTS,
    AssetEntry,
    CheckpointEntry,
    get_checkpoint,
    get_entry,
)

MODEL_NAMES = [
    "dit-xl-2",
    "sit-xl-2",
    "repa-sit-xl-2",
    "lightningdit-xl-1",
    "lightningdit-xl-1-64ep",
    "mdtv2-xl-2",
    "mdt-xl-2",
    "mg-sit-xl-2",
]
# t at the initial (pure-noise) step (book/method.md#method-time-conventions)
INITIAL_T = {"dit": 999, "mdt": 999, "mdtv2": 999, "sit": 0.0, "lightningdit": 0.0}
INITIAL_T |= {"repa": 1.0, "mg": 1.0}
# Git-LFS hashes of third-party mirrors (HF iasudakov/model_checkpoints): must never be pinned
MIRROR_SHA256 = {
    "9ec1876e4c03471bca126663a30e2d1b20610b6d2f87850a39a36f25cc685521",
    "e645b5cd82d1d645cfd9b7c96041b56b2a0aa61faed90c0869e79be02ab55aca",
}


def test_one_entry_per_released_checkpoint():
    assert [entry.name for entry in CHECKPOINTS] == MODEL_NAMES
    assert registry.names("checkpoint") == MODEL_NAMES
    systems = set(registry.names("system"))
    assert set(registry.names()) == set(MODEL_NAMES) | {entry.name for entry in ASSETS} | systems


SYSTEM_T = {"uvit-h-2-imagenet256": 1000.0, "uvit-l-2-imagenet256": 999.0, "xmdpt-l-2": 999.0}
SYSTEM_T |= {"mdsgen-b-2": 999.0, "sd3-medium": 1000.0, "audioldm-s-full-v2": 901.0}


@pytest.mark.parametrize("name", registry.names("system"))
def test_system_entries_name_their_module_manifest_and_initial_t(name):
    import importlib

    entry = registry.get_system(name)
    module = importlib.import_module(f"semantic_bottleneck.zoo.{entry.system}")
    assert callable(module.condition_parts)
    if entry.manifest is not None:
        assert registry.read_manifest(entry.manifest)["keys"]
    assert entry.initial_t == SYSTEM_T.get(name, entry.initial_t)
    if entry.system in ("sd3", "audioldm"):
        assert entry.initial_t == module.INITIAL_T and entry.hf_repo
    elif entry.system == "uvit":
        assert entry.initial_t == module.INITIAL_T[entry.manifest.split("/")[1]]
    else:
        assert entry.initial_t == module.INITIAL_T
        assert all(u.startswith("https://drive.google.com/file/d/") for u in entry.urls)
    with pytest.raises(ValueError, match="not an appendix system"):
        registry.get_system("dit-xl-2")


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_entry_agrees_with_its_manifest(name):
    entry = get_checkpoint(name)
    manifest = registry.read_manifest(entry.manifest)
    assert manifest["family"] == entry.family
    assert entry.config == manifest["config"]
    assert entry.config["num_classes"] == entry.num_classes == 1000
    rows, width = entry.shapes["y_embedder.embedding_table.weight"]
    assert rows == entry.null_class + 1 and width == entry.config["hidden_size"]


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_time_convention_and_initial_t(name):
    entry = get_checkpoint(name)
    assert entry.time is CONVENTIONS[entry.time_convention]
    assert entry.time.initial_t == INITIAL_T[entry.family]
    assert isinstance(entry.time.initial_t, int) == entry.time.integer
    # one initial t: the sampler's first step feeds the model its convention's initial t
    t0 = sampling.initial_t(checkpoint_source(name).sampler_config())
    assert t0 == entry.time.initial_t and type(t0) is type(entry.time.initial_t)


def test_each_checkpoint_samples_with_its_own_official_settings():
    by_name = {e.name: checkpoint_source(e.name).sampler_config() for e in CHECKPOINTS}
    for name in ("dit-xl-2", "sit-xl-2", "mdtv2-xl-2", "mdt-xl-2", "lightningdit-xl-1"):
        assert by_name[name].guidance.guided_channels == 3, name
    for name in ("repa-sit-xl-2", "mg-sit-xl-2"):
        assert by_name[name].guidance.guided_channels is None, name
    assert all(config.guidance.null_class == 1000 for config in by_name.values())
    assert by_name["dit-xl-2"] == sampling.DDPMConfig()
    assert by_name["repa-sit-xl-2"].guidance.interval == (0.0, 0.7)
    assert by_name["repa-sit-xl-2"].guidance.scale == 1.8
    assert by_name["mdtv2-xl-2"].guidance.scale_pow == 4.0
    assert by_name["mdtv2-xl-2"].guidance.scale == 3.8
    assert not by_name["mg-sit-xl-2"].guidance.enabled
    # LightningDiT: configs/reproductions/lightningdit_xl_vavae_f16d32_{800ep,64ep}_cfg.yaml
    ep800, ep64 = by_name["lightningdit-xl-1"], by_name["lightningdit-xl-1-64ep"]
    assert (ep800.guidance.scale, ep800.guidance.interval) == (6.7, (0.125, 1.0))
    assert (ep64.guidance.scale, ep64.guidance.interval) == (10.0, (0.10, 1.0))
    assert ep800.timestep_shift == ep64.timestep_shift == 0.3
    assert ep800.num_steps == ep64.num_steps == 250


def test_sampler_config_applies_steps_and_scale_over_the_checkpoints_own():
    source = checkpoint_source("lightningdit-xl-1-64ep")
    config = source.sampler_config(num_steps=20, cfg_scale=4.0)
    assert config.num_steps == 20 and config.guidance.scale == 4.0
    assert config.guidance.interval == (0.10, 1.0)  # the checkpoint's own interval is kept
    ddpm = checkpoint_source("dit-xl-2").sampler_config(num_steps=50)
    assert ddpm.num_sampling_steps == 50


def test_urls_are_the_official_ones():
    assert get_entry("dit-xl-2").urls == (
        "https://dl.fbaipublicfiles.com/DiT/models/DiT-XL-2-256x256.pt",
    )
    mg = get_entry("mg-sit-xl-2")
    assert [url.rsplit("-", 1)[1] for url in mg.urls] == list("abcdef")
    assert all(url.startswith("https://github.com/tzco/diffusion-wo-cfg/") for url in mg.urls)
    for entry in (*CHECKPOINTS, *ASSETS):
        assert entry.urls and all(url.startswith("https://") for url in entry.urls), entry.name


def test_no_mirror_hash_is_pinned_and_pins_are_well_formed():
    for entry in (*CHECKPOINTS, *ASSETS):
        assert entry.sha256 not in MIRROR_SHA256, entry.name
        if entry.sha256 is not None:
            assert re.fullmatch(r"[0-9a-f]{64}", entry.sha256), entry.name
        if entry.size is not None:
            assert entry.size > 0


def test_every_vae_is_a_registered_asset():
    for entry in CHECKPOINTS:
        vae = get_entry(entry.vae)
        assert isinstance(vae, AssetEntry) and vae.kind == "vae", entry.name
    kinds = {entry.kind for entry in ASSETS}
    assert {"vae", "reference-batch", "inception", "clip"} <= kinds
    assert get_entry("sd-vae-ft-ema").extra_files == ("config.json",)
    assert get_entry("vavae-f16d32").extra_files == ("latents_stats.pt",)


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="dit-xl-2") as err:
        get_entry("DiT-XL/2")
    assert "mg-sit-xl-2" in str(err.value) and "DiT-XL/2" in str(err.value)
    with pytest.raises(ValueError, match="not a model"):
        get_checkpoint("sd-vae-ft-ema")


def test_entries_are_frozen_and_config_is_a_copy():
    entry = get_checkpoint("dit-xl-2")
    with pytest.raises(dataclasses.FrozenInstanceError):
        entry.family = "sit"  # type: ignore[misc]
    config = entry.config
    config["depth"] = 1
    assert entry.config["depth"] == 28


def test_bad_entries_are_rejected():
    common = dict(
        name="x",
        urls=("https://example.org/x.pt",),
        filename="x.pt",
        manifest="dit_xl2.json",
        weights_key=None,
        vae="sd-vae-ft-ema",
    )
    with pytest.raises(ValueError, match="family"):
        CheckpointEntry(family="unet", time_convention="ddpm", **common)
    with pytest.raises(ValueError, match="time_convention"):
        CheckpointEntry(family="dit", time_convention="edm", **common)
    with pytest.raises(ValueError, match="extra_files"):
        AssetEntry(
            name="y", kind="vae", urls=("https://e.org/y",), filename="y", extra_files=("z",)
        )


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_family_and_config_build_the_manifest_layout(name):
    # built on the meta device: shapes only, no 2.7 GB allocation
    import torch

    from semantic_bottleneck.zoo import build_model

    entry = get_checkpoint(name)
    with torch.device("meta"):
        model = build_model(entry.family, **entry.config)
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == entry.shapes
