"""AudioLDM's conditioning vector, through diffusers' UNet2DConditionModel.

AudioLDM's UNet (`class_embed_type="simple_projection"`, `class_embeddings_concat=True`) builds
one embedding from the time and the CLAP text embedding (diffusers 0.42.1,
models/unets/unet_2d_condition.py):

    T = time_embedding(time_proj(t))          :1081-1082 (Timesteps(C0, flip_sin_to_cos=True,
                                              shift 0), :569; TimestepEmbedding(C0 -> 4 C0), :285)
    Y = class_embedding(clap)                 :1084, get_class_embed :887 (nn.Linear(512 -> 4 C0),
                                              :651)
    emb = cat[T, Y]                           :1087 (blocks take 2 x 4 C0 = 8 C0, :357)

and every ResnetBlock2D adds time_emb_proj(SiLU(emb)) to its features (models/resnet.py:344-345).
c = emb = `combine(T, Y, "concat")`, d = 8 C0: 1024 (AudioLDM-S, C0 = 128), 1536 (M, 192),
2048 (L, 256). `time_embed_act` is None in these configs; where set, it is applied to both parts.

Inputs: `clap` = the `text_embeds` of ClapTextModelWithProjection for the prompt, L2-normalised
(pipelines/deprecated/audioldm/pipeline_audioldm.py:176-178), passed as `class_labels` (:523).

The paper labels this model "AudioLDM (cross-attention)"; that does not describe it: the pipeline
calls the UNet with `encoder_hidden_states=None` (:522), so its CrossAttn blocks attend to the
latent alone, and the text enters only through emb above. AudioLDM 2 is the cross-attention
variant (text as a token sequence of its UNet's cross-attention).

t at the initial step: the pipeline feeds the scheduler's first timestep (:513-521), 10 steps by
default (:366). The converted pipelines carry a DDIMScheduler (diffusers
scripts/convert_original_audioldm_to_diffusers.py: 1000 steps, scaled_linear betas 0.0015-0.0195,
steps_offset 1, 'leading' spacing), whose first timestep is 901 for 10 steps (996 for the 200 the
AudioLDM authors use). The hub folders' scheduler_config.json was not read here:
`diffusers_io.initial_timestep(folder, 10)` reads it.

Released models (Hugging Face cvssp/...): audioldm-s-full-v2, audioldm-m-full, audioldm-l-full
(manifests `audioldm_{s,m,l}_full_unet`, configs derived from the original configs, not read from
the hub). The paper does not say which AudioLDM it measured.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from diffusers import UNet2DConditionModel
from torch import Tensor

from semantic_bottleneck.zoo import diffusers_io

COMBINE = "concat"
INITIAL_T = 901.0  # DDIM, 10 steps, steps_offset 1 (see the module docstring)
NUM_INFERENCE_STEPS = 10
MANIFESTS = {128: "audioldm_s_full_unet", 192: "audioldm_m_full_unet", 256: "audioldm_l_full_unet"}

INPUTS = {
    "clap_text": (
        "(N, 512) float32: ClapTextModelWithProjection text_embeds of each prompt, raw or "
        "L2-normalised (condition_parts normalises, as the pipeline does; it is idempotent)"
    ),
}


def _release(config: Mapping) -> str:
    # the three sizes differ in their base width C0
    return MANIFESTS.get(config["block_out_channels"][0], MANIFESTS[128])


def config_differences(config: Mapping, manifest_name: str) -> list[str]:
    """Differences between a real unet config.json and a manifest's config.

    Args:
        config: the config (a parsed config.json or `model.config`).
        manifest_name: an appendix manifest, e.g. 'audioldm_s_full_unet'.

    Returns:
        one line per differing key; empty when they agree.
    """
    expected = diffusers_io.manifest_config(manifest_name)
    return diffusers_io.config_differences(config, expected, UNet2DConditionModel)


def load_audioldm_unet(
    path: str | os.PathLike,
    *,
    config: str | os.PathLike | None = None,
    dtype: torch.dtype | None = None,
    manifest_name: str | None = None,
) -> UNet2DConditionModel:
    """AudioLDM's UNet from local files, never downloading.

    Args:
        path: the unet folder, the pipeline folder (with `unet/`), or one weights file
            (`from_single_file`).
        config: for a single file, the local folder with its config.json (default: beside it).
        dtype: dtype to load in (default: as stored).
        manifest_name: the manifest to compare the config with (a warning lists differences);
            default: the size whose base width C0 the config has.

    Returns:
        the model in eval mode.
    """
    return diffusers_io.load_checked(
        UNet2DConditionModel,
        path,
        "unet",
        lambda found: config_differences(found, manifest_name or _release(found)),
        config=config,
        dtype=dtype,
    )


@torch.no_grad()
def condition_parts(
    model: UNet2DConditionModel, inputs: Mapping[str, Tensor], t: float = INITIAL_T
) -> tuple[Tensor, Tensor]:
    """The time part T and the CLAP part Y of emb, with the UNet's own methods and submodules.

    Normalises the CLAP embedding as the pipeline does, then casts it to the model's dtype (the
    pipeline's); `get_time_embed` and `get_class_embed` cast as the forward does.

    Args:
        model: the UNet (simple_projection class embedding, concatenated).
        inputs: {'clap_text': (N, 512)} (see INPUTS).
        t: the timestep the pipeline feeds (901 at the initial step of 10 DDIM steps).

    Returns:
        (T, Y), float32; emb = combine(T, Y, COMBINE).

    Shapes: inputs['clap_text'] (N, 512) -> T (1, 4 C0), Y (N, 4 C0).
    """
    cfg = model.config
    if cfg.class_embed_type != "simple_projection" or not cfg.class_embeddings_concat:
        raise ValueError(
            "expected AudioLDM's UNet (class_embed_type='simple_projection', "
            f"class_embeddings_concat=True), got {cfg.class_embed_type!r}, "
            f"{cfg.class_embeddings_concat!r}"
        )
    if cfg.addition_embed_type is not None:
        raise ValueError(f"addition_embed_type {cfg.addition_embed_type!r} would add to emb")
    clap = inputs["clap_text"]
    if clap.ndim != 2 or clap.shape[1] != cfg.projection_class_embeddings_input_dim:
        raise ValueError(
            f"clap_text: expected (N, {cfg.projection_class_embeddings_input_dim}), got "
            f"{tuple(clap.shape)}"
        )
    device, dtype = model.device, model.dtype
    clap = F.normalize(clap.to(device), dim=-1).to(dtype)
    # the forward reads only the batch size, device and dtype of its latent
    latent = torch.empty(clap.shape[0], device=device, dtype=dtype)
    timestep = torch.tensor(float(t), device=device)
    time = model.time_embedding(model.get_time_embed(sample=latent[:1], timestep=timestep), None)
    cond = model.get_class_embed(sample=latent, class_labels=clap)
    if model.time_embed_act is not None:  # elementwise, so it acts on each part alone
        time, cond = model.time_embed_act(time), model.time_embed_act(cond)
    return time.float(), cond.float()


@torch.no_grad()
def encode_prompts(
    pipeline_path: str | os.PathLike,
    prompts: Sequence[str],
    *,
    device: str | torch.device = "cpu",
) -> dict[str, Tensor]:
    """`clap_text` of each prompt with the pipeline's CLAP encoder (needs transformers).

    Loads only the tokenizer and text encoder of a local AudioLDMPipeline folder and calls the
    pipeline's own `_encode_prompt` (no guidance), which returns the normalised embeddings.

    Shapes: -> {'clap_text': (N, 512)} float32, L2-normalised.
    """
    diffusers_io.require_transformers("encode_prompts")
    from diffusers import AudioLDMPipeline

    pipe = AudioLDMPipeline.from_pretrained(
        str(diffusers_io.existing(pipeline_path, "an AudioLDM pipeline folder")),
        unet=None,
        vae=None,
        vocoder=None,
        local_files_only=True,
    ).to(device)
    clap = pipe._encode_prompt(list(prompts), device, 1, False)
    return {"clap_text": clap.float().cpu()}
