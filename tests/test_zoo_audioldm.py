"""AudioLDM's conditioning vector: manifest keys, local loading, and emb as the ResNets use it."""

import importlib.util

import pytest
import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, UNet2DConditionModel
from fakes import assert_manifest_builds, diffusers_layout

from semantic_bottleneck.core.systems import combine
from semantic_bottleneck.zoo import audioldm, diffusers_io
from semantic_bottleneck.zoo.registry import read_manifest

TINY = dict(
    sample_size=8,
    in_channels=4,
    out_channels=4,
    block_out_channels=(8, 16),
    layers_per_block=1,
    norm_num_groups=4,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
    cross_attention_dim=(8, 16),
    attention_head_dim=2,
    class_embed_type="simple_projection",
    projection_class_embeddings_input_dim=12,
    class_embeddings_concat=True,
)


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A tiny random UNet saved as a pipeline folder (unet/ + scheduler/)."""
    root = tmp_path_factory.mktemp("audioldm")
    torch.manual_seed(0)
    UNet2DConditionModel(**TINY).save_pretrained(root / "unet")
    # the scheduler of diffusers' AudioLDM conversion script
    DDIMScheduler(
        num_train_timesteps=1000,
        beta_start=0.0015,
        beta_end=0.0195,
        beta_schedule="scaled_linear",
        steps_offset=1,
        clip_sample=False,
        set_alpha_to_one=False,
    ).save_config(root / "scheduler")
    return root


def load(path, **kwargs):
    # the tiny config is no released size: every load warns
    with pytest.warns(UserWarning, match="block_out_channels"):
        return audioldm.load_audioldm_unet(path, **kwargs)


def resnet_temb(model, clap, t):
    """What the first ResNet block's time_emb_proj receives in a full forward: SiLU(emb)."""
    seen = {}

    def grab(module, args):
        seen["x"] = args[0]

    hook = model.down_blocks[0].resnets[0].time_emb_proj.register_forward_pre_hook(grab)
    n = clap.shape[0]
    with torch.no_grad():
        # as the pipeline calls it: no encoder states, the normalised CLAP embedding as label
        model(
            torch.randn(n, 4, 8, 8, generator=torch.Generator().manual_seed(3)).to(model.dtype),
            torch.tensor(int(t)),
            encoder_hidden_states=None,
            class_labels=F.normalize(clap, dim=-1).to(model.dtype),
        )
    hook.remove()
    return seen["x"]


@pytest.mark.parametrize("size", ["s", "m", "l"])
def test_manifest_keys_are_what_diffusers_builds(size):
    manifest = read_manifest(f"appendix/audioldm_{size}_full_unet.json")
    with torch.device("meta"):
        model = UNet2DConditionModel(**manifest["config"])
    assert_manifest_builds(model, manifest, ("time_embedding.", "class_embedding."))
    c0 = manifest["config"]["block_out_channels"][0]
    assert 8 * c0 == manifest["c_dim"] == model.down_blocks[0].resnets[0].time_emb_proj.in_features
    assert audioldm.config_differences(manifest["config"], f"audioldm_{size}_full_unet") == []


@pytest.mark.parametrize("layout", ["pipeline", "model", "single-file"])
def test_condition_parts_equal_the_forward_emb(saved, layout):
    model = load(diffusers_layout(saved, "unet", layout))
    clap = 3 * torch.randn(3, 12, generator=torch.Generator().manual_seed(1))  # not normalised
    for t in (audioldm.INITIAL_T, 17):
        time, cond = audioldm.condition_parts(model, {"clap_text": clap}, t)
        assert time.shape == (1, 32) and cond.shape == (3, 32) and cond.dtype == torch.float32
        c = combine(time, cond, audioldm.COMBINE)
        assert c.shape == (3, 64)
        # equal up to float32 rounding (a batch of 1 and of N may accumulate differently)
        torch.testing.assert_close(F.silu(c), resnet_temb(model, clap, t), rtol=1e-6, atol=1e-6)
    # the embedding is normalised first, as the pipeline does: a raw or a normalised file agree
    again = audioldm.condition_parts(model, {"clap_text": F.normalize(clap, dim=-1)})
    torch.testing.assert_close(again[1], audioldm.condition_parts(model, {"clap_text": clap})[1])


def test_condition_parts_in_half_precision_follow_the_forward_casts(saved):
    model = load(saved, dtype=torch.bfloat16)
    clap = torch.randn(3, 12, generator=torch.Generator().manual_seed(1))
    time, cond = audioldm.condition_parts(model, {"clap_text": clap})
    temb = resnet_temb(model, clap, audioldm.INITIAL_T)
    assert temb.dtype == torch.bfloat16
    # the ResNets take SiLU in bfloat16: compared at bfloat16's tolerance
    torch.testing.assert_close(F.silu(combine(time, cond, "concat").to(temb.dtype)), temb)


def test_condition_parts_refuse_other_unets():
    with torch.device("meta"):
        plain = UNet2DConditionModel(**{**TINY, "class_embeddings_concat": False})
    with pytest.raises(ValueError, match="class_embeddings_concat=True"):
        audioldm.condition_parts(plain, {"clap_text": torch.zeros(1, 12)})


def test_config_differences_report_a_changed_key():
    config = diffusers_io.manifest_config("audioldm_m_full_unet")
    assert audioldm.config_differences(config, "audioldm_m_full_unet") == []
    lines = audioldm.config_differences(
        {**config, "attention_head_dim": 32}, "audioldm_m_full_unet"
    )
    assert lines == ["attention_head_dim: manifest 8, config 32"]
    assert any(
        line.startswith("block_out_channels")
        for line in audioldm.config_differences(config, "audioldm_s_full_unet")
    )


def test_loader_refuses_missing_paths_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist; expected a diffusers model"):
        audioldm.load_audioldm_unet(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="neither config.json nor unet/config.json"):
        audioldm.load_audioldm_unet(tmp_path)


def test_initial_t_is_the_schedulers_first_timestep(saved):
    steps = audioldm.NUM_INFERENCE_STEPS
    assert diffusers_io.initial_timestep(saved, steps) == audioldm.INITIAL_T == 901
    assert diffusers_io.initial_timestep(saved / "scheduler", 200) == 996


@pytest.mark.skipif(
    importlib.util.find_spec("transformers") is not None, reason="transformers is installed"
)
def test_encode_prompts_say_what_they_need(saved):
    with pytest.raises(ImportError, match="transformers"):
        audioldm.encode_prompts(saved, ["a dog barking"])
