"""SD3's conditioning vector: manifest keys, local loading, and temb as the forward uses it."""

import importlib.util

import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel
from fakes import assert_manifest_builds, diffusers_layout
from safetensors.torch import save_file

from semantic_bottleneck.core.systems import combine
from semantic_bottleneck.zoo import diffusers_io, sd3
from semantic_bottleneck.zoo.registry import read_manifest

TINY = dict(
    sample_size=8,
    patch_size=2,
    in_channels=4,
    num_layers=2,
    attention_head_dim=8,
    num_attention_heads=4,
    joint_attention_dim=16,
    caption_projection_dim=32,
    pooled_projection_dim=24,
    out_channels=4,
    pos_embed_max_size=8,
)


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A tiny random transformer saved as a pipeline folder (transformer/ + scheduler/)."""
    root = tmp_path_factory.mktemp("sd3")
    torch.manual_seed(0)
    SD3Transformer2DModel(**TINY).save_pretrained(root / "transformer")
    FlowMatchEulerDiscreteScheduler(shift=3.0).save_config(root / "scheduler")
    return root


def load(path, **kwargs):
    # the tiny config is not SD3-medium's: every load warns
    with pytest.warns(UserWarning, match="num_layers"):
        return sd3.load_sd3(path, **kwargs)


def forward_temb(model, pooled, t):
    """The temb the first block receives in a full forward (its norm1's `emb`)."""
    seen = {}

    def grab(module, args, kwargs):
        seen["emb"] = kwargs["emb"]

    hook = model.transformer_blocks[0].norm1.register_forward_pre_hook(grab, with_kwargs=True)
    n = pooled.shape[0]
    g = torch.Generator().manual_seed(3)
    dtype = model.dtype
    with torch.no_grad():
        model(
            hidden_states=torch.randn(n, 4, 8, 8, generator=g).to(dtype),
            encoder_hidden_states=torch.randn(n, 5, 16, generator=g).to(dtype),
            pooled_projections=pooled.to(dtype),
            timestep=torch.full((n,), t, dtype=torch.float32),  # as the pipeline: t.expand(n)
        )
    hook.remove()
    return seen["emb"]


def test_sd3_medium_manifest_keys_are_what_diffusers_builds():
    manifest = read_manifest("appendix/sd3_medium_transformer.json")
    with torch.device("meta"):
        model = SD3Transformer2DModel(**manifest["config"])
    assert_manifest_builds(model, manifest, "time_text_embed.")
    assert model.inner_dim == 1536
    assert sd3.config_differences(manifest["config"]) == []


def test_sd35_large_builds_with_the_same_class():
    with torch.device("meta"):
        model = SD3Transformer2DModel(**sd3.SD35_LARGE_CONFIG)
    assert model.inner_dim == 2432 and len(model.transformer_blocks) == 38
    embed = model.time_text_embed
    assert embed.timestep_embedder.linear_1.weight.shape == (2432, 256)
    assert embed.text_embedder.linear_1.weight.shape == (2432, 2048)
    assert 7.9e9 < sum(p.numel() for p in model.parameters()) < 8.3e9  # the 8B-class model
    assert sd3.config_differences(sd3.SD35_LARGE_CONFIG, "sd3.5-large") == []


@pytest.mark.parametrize("layout", ["pipeline", "model", "single-file"])
def test_condition_parts_equal_the_forward_temb(saved, layout):
    model = load(diffusers_layout(saved, "transformer", layout))
    pooled = torch.randn(3, 24, generator=torch.Generator().manual_seed(1))
    for t in (sd3.INITIAL_T, 371.5):
        time, cond = sd3.condition_parts(model, {"pooled_text": pooled}, t)
        assert time.shape == (1, 32) and cond.shape == (3, 32) and time.dtype == torch.float32
        # equal up to float32 rounding (a batch of 1 and of N may accumulate differently)
        temb = forward_temb(model, pooled, t)
        torch.testing.assert_close(combine(time, cond, sd3.COMBINE), temb, rtol=1e-6, atol=1e-6)


def test_condition_parts_in_bfloat16_follow_the_forward_casts(saved):
    model = load(saved, dtype=torch.bfloat16)
    pooled = torch.randn(3, 24, generator=torch.Generator().manual_seed(1))
    time, cond = sd3.condition_parts(model, {"pooled_text": pooled})
    temb = forward_temb(model, pooled, sd3.INITIAL_T)
    # the forward sums in bfloat16, combine in float32: they differ by one bf16 rounding
    torch.testing.assert_close(combine(time, cond, "sum"), temb.float(), rtol=1e-2, atol=1e-2)


def test_condition_parts_check_the_input_width(saved):
    model = load(saved)
    with pytest.raises(ValueError, match=r"expected \(N, 24\)"):
        sd3.condition_parts(model, {"pooled_text": torch.zeros(2, 2048)})


def test_config_differences_report_a_changed_key():
    config = dict(sd3.expected_config(sd3.MANIFEST))
    # a config.json written by an older diffusers lacks these keys; the defaults fill them
    del config["dual_attention_layers"], config["qk_norm"]
    assert sd3.config_differences(config) == []
    config["num_layers"] = 23
    assert sd3.config_differences(config) == ["num_layers: manifest 24, config 23"]
    assert any("qk_norm" in line for line in sd3.config_differences(config, "sd3.5-large"))


def test_loader_refuses_missing_paths_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist; expected a diffusers model"):
        sd3.load_sd3(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="neither config.json nor transformer/config.json"):
        sd3.load_sd3(tmp_path)
    lone = tmp_path / "lone.safetensors"
    save_file({"x": torch.zeros(1)}, str(lone))
    with pytest.raises(FileNotFoundError, match="single file needs the config.json"):
        sd3.load_sd3(lone)


def test_initial_t_is_the_schedulers_first_timestep(saved):
    assert diffusers_io.initial_timestep(saved, sd3.NUM_INFERENCE_STEPS) == sd3.INITIAL_T
    assert diffusers_io.initial_timestep(saved, 4) == sd3.INITIAL_T  # for any step count


def test_inputs_round_trip(tmp_path):
    pooled = torch.randn(4, 2048)
    diffusers_io.save_inputs(tmp_path / "c.safetensors", {"pooled_text": pooled}, notes="test")
    read = diffusers_io.load_inputs(tmp_path / "c.safetensors", list(sd3.INPUTS))
    assert torch.equal(read["pooled_text"], pooled)
    with pytest.raises(KeyError, match="clap_text"):
        diffusers_io.load_inputs(tmp_path / "c.safetensors", ["clap_text"])


@pytest.mark.skipif(
    importlib.util.find_spec("transformers") is not None, reason="transformers is installed"
)
def test_encode_prompts_say_what_they_need(saved):
    with pytest.raises(ImportError, match="transformers"):
        sd3.encode_prompts(saved, ["a photo of a cat"])
