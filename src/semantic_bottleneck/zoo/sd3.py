"""Stable Diffusion 3's conditioning vector, through diffusers' SD3Transformer2DModel.

c is the `temb` of the MMDiT (diffusers 0.42.1):

    temb = time_text_embed(timestep, pooled)                     transformer_sd3.py:294
         = timestep_embedder(time_proj(t).to(pooled.dtype))      embeddings.py:1360
           + text_embedder(pooled)                               embeddings.py:1362-1364

with `time_proj` = Timesteps(256, flip_sin_to_cos=True, shift 0), `timestep_embedder` =
TimestepEmbedding(256 -> d, SiLU) and `text_embedder` = PixArtAlphaTextProjection(2048 -> d, SiLU)
(CombinedTimestepTextProjEmbeddings, embeddings.py:1350; built at transformer_sd3.py:150).
`temb` modulates every JointTransformerBlock (AdaLayerNormZero `norm1` and `norm1_context`,
linear(SiLU(temb)), attention.py:694, normalization.py:167) and `norm_out`. The token sequence
(CLIP-L/G + T5 hidden states) enters through joint attention only and is no part of c. The sum
is `combine(T, Y, "sum")` with T the time part and Y the text part; d = 1536 for SD3-medium
(24 heads x 64) and 2432 for SD3.5-Large (38 x 64).

Inputs: `pooled` = cat[CLIP-L `text_embeds` (768), CLIP-G `text_embeds` (1280)] of the prompt,
the pooled, projected outputs of the two CLIPTextModelWithProjection encoders, concatenated as
pipeline_stable_diffusion_3.py:464 does; it reaches the model as `pooled_projections` (:1078).

t at the initial step: the pipeline feeds `timestep = t` of FlowMatchEulerDiscreteScheduler
(:1069), t = sigma * 1000 (scheduling_flow_match_euler_discrete.py:376). The first sigma is 1, the
pure-noise end, which the shift (3.0 in both releases; sigma' = 3 sigma / (1 + 2 sigma), :357)
leaves at 1: t = 1000.0 at the initial step for any step count (the pipeline's default is 28).

The paper's rows: "SD3.0 (2B)" is SD3-medium (stabilityai/stable-diffusion-3-medium-diffusers,
manifest `sd3_medium_transformer`). "SD3.0 (8B)" was never released; the public 8B-class model of
the same class is SD3.5-Large (stabilityai/stable-diffusion-3.5-large: 38 layers, d = 2432, RMS
query-key norm), supported here with `SD35_LARGE_CONFIG` as its expected config.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import torch
from diffusers import SD3Transformer2DModel
from torch import Tensor

from semantic_bottleneck.zoo import diffusers_io

COMBINE = "sum"
INITIAL_T = 1000.0
NUM_INFERENCE_STEPS = 28  # the pipeline's default; the initial t does not depend on it
MANIFEST = "sd3_medium_transformer"

# transformer/config.json of stabilityai/stable-diffusion-3.5-large as public copies give it
# (the gated original was not read); no manifest is packaged for it.
SD35_LARGE_CONFIG = {
    "sample_size": 128,
    "patch_size": 2,
    "in_channels": 16,
    "num_layers": 38,
    "attention_head_dim": 64,
    "num_attention_heads": 38,
    "joint_attention_dim": 4096,
    "caption_projection_dim": 2432,
    "pooled_projection_dim": 2048,
    "out_channels": 16,
    "pos_embed_max_size": 192,
    "dual_attention_layers": [],
    "qk_norm": "rms_norm",
}

INPUTS = {
    "pooled_text": (
        "(N, 2048) float32: cat[CLIP-L text_embeds (768), CLIP-G text_embeds (1280)] of each "
        "prompt, as StableDiffusion3Pipeline.encode_prompt builds `pooled_prompt_embeds`"
    ),
}


def expected_config(name: str) -> dict:
    """The config a release should have: 'sd3.5-large', or an appendix manifest's name."""
    if name == "sd3.5-large":
        return dict(SD35_LARGE_CONFIG)
    return diffusers_io.manifest_config(name)


def _release(config: Mapping) -> str:
    # the two releases differ in depth; anything else is compared with SD3-medium's manifest
    return (
        "sd3.5-large" if config.get("num_layers") == SD35_LARGE_CONFIG["num_layers"] else MANIFEST
    )


def config_differences(config: Mapping, manifest_name: str = MANIFEST) -> list[str]:
    """Differences between a real transformer config.json and a release's expected config.

    Args:
        config: the config (a parsed config.json or `model.config`).
        manifest_name: an appendix manifest ('sd3_medium_transformer') or 'sd3.5-large'.

    Returns:
        one line per differing key; empty when they agree.
    """
    return diffusers_io.config_differences(
        config, expected_config(manifest_name), SD3Transformer2DModel
    )


def load_sd3(
    path: str | os.PathLike,
    *,
    config: str | os.PathLike | None = None,
    dtype: torch.dtype | None = None,
    manifest_name: str | None = None,
) -> SD3Transformer2DModel:
    """SD3's transformer from local files, never downloading.

    Args:
        path: the transformer folder, the pipeline folder (with `transformer/`), or one weights
            file (diffusers or original layout, `from_single_file`).
        config: for a single file, the local folder with its config.json (default: beside it).
        dtype: dtype to load in (default: as stored).
        manifest_name: the release to compare the config with (a warning lists differences);
            default: SD3.5-Large for a 38-layer config, else SD3-medium's manifest.

    Returns:
        the model in eval mode.
    """
    return diffusers_io.load_checked(
        SD3Transformer2DModel,
        path,
        "transformer",
        lambda found: config_differences(found, manifest_name or _release(found)),
        config=config,
        dtype=dtype,
    )


@torch.no_grad()
def condition_parts(
    model: SD3Transformer2DModel, inputs: Mapping[str, Tensor], t: float = INITIAL_T
) -> tuple[Tensor, Tensor]:
    """The time part T and the text part Y of temb, with the model's own submodules.

    Casts as the forward does: the pooled embedding in the model's dtype (the pipeline's), the
    sinusoidal projection (float32) to the pooled embedding's dtype before the timestep MLP.

    Args:
        model: the transformer.
        inputs: {'pooled_text': (N, 2048)} (see INPUTS).
        t: the timestep the pipeline feeds (1000.0 at the initial step).

    Returns:
        (T, Y), float32; temb = combine(T, Y, COMBINE).

    Shapes: inputs['pooled_text'] (N, 2048) -> T (1, d), Y (N, d).
    """
    embed = model.time_text_embed
    weight = embed.text_embedder.linear_1.weight
    pooled = inputs["pooled_text"].to(device=weight.device, dtype=weight.dtype)
    if pooled.ndim != 2 or pooled.shape[1] != model.config.pooled_projection_dim:
        raise ValueError(
            f"pooled_text: expected (N, {model.config.pooled_projection_dim}), got "
            f"{tuple(pooled.shape)}"
        )
    # the scheduler's timesteps are float32
    timestep = torch.full((1,), float(t), dtype=torch.float32, device=weight.device)
    time = embed.timestep_embedder(embed.time_proj(timestep).to(dtype=pooled.dtype))
    return time.float(), embed.text_embedder(pooled).float()


@torch.no_grad()
def encode_prompts(
    pipeline_path: str | os.PathLike,
    prompts: Sequence[str],
    *,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
) -> dict[str, Tensor]:
    """`pooled_text` of each prompt with the pipeline's two CLIP encoders (needs transformers).

    Loads only the CLIP tokenizers and encoders of a local StableDiffusion3Pipeline folder and
    calls the pipeline's own `_get_clip_prompt_embeds` for each, concatenated as `encode_prompt`
    does (T5 and the transformer are not loaded: they do not enter the pooled embedding).

    Shapes: -> {'pooled_text': (N, 2048)} float32.
    """
    diffusers_io.require_transformers("encode_prompts")
    from diffusers import StableDiffusion3Pipeline

    pipe = StableDiffusion3Pipeline.from_pretrained(
        str(diffusers_io.existing(pipeline_path, "an SD3 pipeline folder")),
        transformer=None,
        vae=None,
        text_encoder_3=None,
        tokenizer_3=None,
        local_files_only=True,
        torch_dtype=dtype,
    ).to(device)
    pooled = [
        pipe._get_clip_prompt_embeds(list(prompts), device=device, clip_model_index=i)[1]
        for i in (0, 1)
    ]
    return {"pooled_text": torch.cat(pooled, dim=-1).float().cpu()}
