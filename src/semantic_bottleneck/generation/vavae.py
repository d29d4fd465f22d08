"""LightningDiT's VA-VAE as a diffusers AutoencoderKL, loaded from its LDM-format weights.

The VA-VAE (hustvl/LightningDiT `tokenizer/autoencoder.py`, `tokenizer/configs/vavae_f16d32.yaml`)
is the latent-diffusion (LDM / VQGAN-KL) autoencoder with embed_dim = z_channels = 32,
ch = 128, ch_mult = (1, 1, 2, 2, 4), num_res_blocks = 2, attention at resolution 16 (the last
level of encoder and decoder, on top of the mid-block attention), GroupNorm(32, eps 1e-6), swish.
Its weights use the LDM names (`encoder.down.0.block.0.norm1.weight`, `decoder.up.4.attn.2.q`,
`quant_conv`, ...). `convert_ldm_state_dict` renames them to diffusers' AutoencoderKL:

| LDM | diffusers |
|---|---|
| `encoder.down.{i}.block.{j}` | `encoder.down_blocks.{i}.resnets.{j}` |
| `encoder.down.{i}.attn.{j}` | `encoder.down_blocks.{i}.attentions.{j}` (AttnDownEncoderBlock2D) |
| `encoder.down.{i}.downsample.conv` | `encoder.down_blocks.{i}.downsamplers.0.conv` |
| `decoder.up.{i}.block / attn / upsample.conv` | `decoder.up_blocks.{L-1-i}....` (see below) |
| `*.mid.block_1`, `block_2`, `attn_1` | `*.mid_block.resnets.0`, `resnets.1`, `attentions.0` |
| `*.norm_out` | `*.conv_norm_out` |
| resnet `nin_shortcut` | resnet `conv_shortcut` (both 1x1) |
| attention `norm`, `q`, `k`, `v`, `proj_out` (1x1 convs) | `group_norm`, `to_q/k/v`, `to_out.0` |

diffusers counts the decoder's levels from the lowest resolution, LDM from the highest; the 1x1
convolutions of the attention become linear layers (same weights, kernel dimensions dropped).

Only the autoencoder's own keys are read; the training file's other entries (loss, foundation
model) are skipped, as the official loader's `strict=False` skips them. Every autoencoder key must
map and every diffusers parameter must be filled: the load is strict.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from semantic_bottleneck.zoo.checkpoint import CheckpointError, state_dict_mismatch

AUTOENCODER_PREFIXES = ("encoder.", "decoder.", "quant_conv.", "post_quant_conv.")
NORM_GROUPS = 32  # LDM's Normalize: GroupNorm(32, eps=1e-6) everywhere

_RESNET = {n: n for n in ("norm1", "conv1", "norm2", "conv2")} | {"nin_shortcut": "conv_shortcut"}
_ATTN = {"norm": "group_norm", "q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0"}
_PARAM = r"(weight|bias)"


@dataclass(frozen=True)
class LDMConfig:
    """The LDM `ddconfig` fields that shape an autoencoder's weights.

    Attributes:
        in_channels: image channels in (3).
        out_ch: image channels out (3).
        ch: base width; level i has ch * ch_mult[i] channels.
        ch_mult: width multipliers per resolution level.
        num_res_blocks: resnet blocks per encoder level (the decoder has one more).
        encoder_attn_levels: encoder levels with attention after each block.
        decoder_attn_levels: decoder levels with attention after each block.
        z_channels: latent channels between encoder/decoder and the quant convs.
        embed_dim: latent channels the diffusion model sees.
    """

    in_channels: int
    out_ch: int
    ch: int
    ch_mult: tuple[int, ...]
    num_res_blocks: int
    encoder_attn_levels: tuple[int, ...]
    decoder_attn_levels: tuple[int, ...]
    z_channels: int
    embed_dim: int


# tokenizer/configs/vavae_f16d32.yaml: attn_resolutions [16] at resolution 256 = the last level
VAVAE_F16D32 = LDMConfig(3, 3, 128, (1, 1, 2, 2, 4), 2, (4,), (4,), 32, 32)


def read_ldm_state_dict(path: str | Path) -> dict[str, Tensor]:
    """The autoencoder tensors of an LDM-format checkpoint (bare or under 'state_dict').

    Read with weights_only=True (memory-mapped for zip files): no Python object is unpickled.

    Returns:
        {LDM key: tensor} for the keys under AUTOENCODER_PREFIXES.
    """
    path = Path(path)
    try:
        obj = torch.load(path, map_location="cpu", mmap=zipfile.is_zipfile(path), weights_only=True)
    except Exception as err:  # pickle refusals and corrupt files alike
        raise CheckpointError(f"{path}: not a tensor-only torch checkpoint ({err})") from None
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]  # a Lightning-style wrapper, unwrapped as the official loader does
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: expected a state dict, found {type(obj).__name__}")
    state = {k: v for k, v in obj.items() if k.startswith(AUTOENCODER_PREFIXES)}
    if not state:
        raise CheckpointError(
            f"{path}: no autoencoder keys (expected keys starting with {AUTOENCODER_PREFIXES})"
        )
    return state


def _levels(state: Mapping[str, Tensor], pattern: str) -> list[int]:
    return sorted({int(m.group(1)) for k in state if (m := re.match(pattern, k))})


def _shape(state: Mapping[str, Tensor], key: str) -> tuple[int, ...]:
    if key not in state:
        raise CheckpointError(f"LDM autoencoder state dict lacks {key!r}")
    return tuple(state[key].shape)


def infer_ldm_config(state: Mapping[str, Tensor]) -> LDMConfig:
    """Read the architecture off an LDM autoencoder state dict (key names and shapes).

    Raises:
        CheckpointError: keys missing, or a layout diffusers' AutoencoderKL cannot express.
    """
    enc_levels = _levels(state, r"encoder\.down\.(\d+)\.")
    dec_levels = _levels(state, r"decoder\.up\.(\d+)\.")
    if not dec_levels or enc_levels != dec_levels or dec_levels != list(range(len(dec_levels))):
        raise CheckpointError(
            f"LDM autoencoder: encoder levels {enc_levels} and decoder levels {dec_levels} must "
            "both be 0..L-1"
        )
    widths = [_shape(state, f"encoder.down.{i}.block.0.conv1.weight")[0] for i in enc_levels]
    dec_widths = [_shape(state, f"decoder.up.{i}.block.0.conv1.weight")[0] for i in dec_levels]
    ch = _shape(state, "encoder.conv_in.weight")[0]
    if dec_widths != widths or ch != widths[0] or any(w % ch for w in widths):
        raise CheckpointError(
            f"LDM autoencoder: level widths encoder {widths}, decoder {dec_widths}, conv_in {ch}; "
            "expected equal widths and ch_mult[0] = 1"
        )
    blocks = len(_levels(state, r"encoder\.down\.0\.block\.(\d+)\."))
    dec_blocks = len(_levels(state, r"decoder\.up\.0\.block\.(\d+)\."))
    if dec_blocks != blocks + 1:
        raise CheckpointError(
            f"LDM autoencoder: {blocks} encoder and {dec_blocks} decoder blocks per level; the "
            "decoder should have one more"
        )
    z_channels = _shape(state, "decoder.conv_in.weight")[1]
    embed_dim = _shape(state, "post_quant_conv.weight")[0]
    if z_channels != embed_dim or _shape(state, "encoder.conv_out.weight")[0] != 2 * z_channels:
        raise CheckpointError(
            f"LDM autoencoder: z_channels {z_channels}, embed_dim {embed_dim}; expected equal, "
            "with a double_z encoder"
        )
    return LDMConfig(
        in_channels=_shape(state, "encoder.conv_in.weight")[1],
        out_ch=_shape(state, "decoder.conv_out.weight")[0],
        ch=ch,
        ch_mult=tuple(w // ch for w in widths),
        num_res_blocks=blocks,
        encoder_attn_levels=tuple(_levels(state, r"encoder\.down\.(\d+)\.attn\.")),
        decoder_attn_levels=tuple(_levels(state, r"decoder\.up\.(\d+)\.attn\.")),
        z_channels=z_channels,
        embed_dim=embed_dim,
    )


def diffusers_config(cfg: LDMConfig) -> dict:
    """Keyword arguments of diffusers' AutoencoderKL with the same architecture as `cfg`."""
    levels = len(cfg.ch_mult)
    down = [
        "AttnDownEncoderBlock2D" if i in cfg.encoder_attn_levels else "DownEncoderBlock2D"
        for i in range(levels)
    ]
    # diffusers' up_blocks[k] is LDM's decoder.up[L-1-k] (lowest resolution first)
    up = [
        "AttnUpDecoderBlock2D" if levels - 1 - k in cfg.decoder_attn_levels else "UpDecoderBlock2D"
        for k in range(levels)
    ]
    return dict(
        in_channels=cfg.in_channels,
        out_channels=cfg.out_ch,
        down_block_types=tuple(down),
        up_block_types=tuple(up),
        block_out_channels=tuple(cfg.ch * m for m in cfg.ch_mult),
        layers_per_block=cfg.num_res_blocks,
        act_fn="silu",
        latent_channels=cfg.embed_dim,
        norm_num_groups=NORM_GROUPS,
    )


def _block_param(kind: str, rest: str) -> str | None:
    """`norm1.weight` -> `norm1.weight`, `q.weight` -> `to_q.weight`, ...; None if unknown."""
    m = re.fullmatch(r"(\w+)\." + _PARAM, rest)
    if m is None:
        return None
    table = _RESNET if kind == "resnet" else _ATTN
    return f"{table[m.group(1)]}.{m.group(2)}" if m.group(1) in table else None


def ldm_to_diffusers_key(key: str, levels: int) -> str | None:
    """The diffusers AutoencoderKL key of one LDM autoencoder key (None if it has none).

    Args:
        key: LDM key, e.g. 'decoder.up.4.attn.0.q.weight'.
        levels: number of resolution levels L (len(ch_mult)).
    """
    if m := re.fullmatch(r"(quant_conv|post_quant_conv)\." + _PARAM, key):
        return key
    if m := re.fullmatch(r"(encoder|decoder)\.(conv_in|conv_out|norm_out)\." + _PARAM, key):
        layer = "conv_norm_out" if m.group(2) == "norm_out" else m.group(2)
        return f"{m.group(1)}.{layer}.{m.group(3)}"
    if m := re.fullmatch(r"(encoder|decoder)\.mid\.(block_1|block_2|attn_1)\.(.+)", key):
        kind = "attn" if m.group(2) == "attn_1" else "resnet"
        param = _block_param(kind, m.group(3))
        where = "attentions.0" if kind == "attn" else f"resnets.{int(m.group(2)[-1]) - 1}"
        return f"{m.group(1)}.mid_block.{where}.{param}" if param else None
    if m := re.fullmatch(r"encoder\.down\.(\d+)\.(block|attn)\.(\d+)\.(.+)", key):
        param = _block_param("resnet" if m.group(2) == "block" else "attn", m.group(4))
        group = "resnets" if m.group(2) == "block" else "attentions"
        return f"encoder.down_blocks.{m.group(1)}.{group}.{m.group(3)}.{param}" if param else None
    if m := re.fullmatch(r"encoder\.down\.(\d+)\.downsample\.conv\." + _PARAM, key):
        return f"encoder.down_blocks.{m.group(1)}.downsamplers.0.conv.{m.group(2)}"
    if m := re.fullmatch(r"decoder\.up\.(\d+)\.(block|attn)\.(\d+)\.(.+)", key):
        param = _block_param("resnet" if m.group(2) == "block" else "attn", m.group(4))
        group = "resnets" if m.group(2) == "block" else "attentions"
        k = levels - 1 - int(m.group(1))
        return f"decoder.up_blocks.{k}.{group}.{m.group(3)}.{param}" if param else None
    if m := re.fullmatch(r"decoder\.up\.(\d+)\.upsample\.conv\." + _PARAM, key):
        return f"decoder.up_blocks.{levels - 1 - int(m.group(1))}.upsamplers.0.conv.{m.group(2)}"
    return None


def convert_ldm_state_dict(state: Mapping[str, Tensor], cfg: LDMConfig) -> dict[str, Tensor]:
    """Rename (and reshape) every LDM autoencoder tensor to its diffusers AutoencoderKL key.

    Attention q/k/v/proj_out are 1x1 convolutions in LDM and linear layers in diffusers: their
    (C, C, 1, 1) weights become (C, C); the product is the same.

    Raises:
        CheckpointError: an autoencoder key with no diffusers counterpart.

    Shapes: as stored, but (C, C, 1, 1) -> (C, C) for the attention projections.
    """
    levels, out, unknown = len(cfg.ch_mult), {}, []
    for key, value in state.items():
        new = ldm_to_diffusers_key(key, levels)
        if new is None:
            unknown.append(key)
            continue
        if ".attentions." in new and new.endswith("weight") and value.dim() == 4:
            value = value[:, :, 0, 0]  # 1x1 conv kernel -> linear weight
        out[new] = value
    if unknown:
        raise CheckpointError(
            f"LDM autoencoder keys with no diffusers counterpart ({len(unknown)}): "
            + ", ".join(sorted(unknown)[:20])
        )
    return out


def build_autoencoder(state: Mapping[str, Tensor], expect: LDMConfig | None = None):
    """A diffusers AutoencoderKL loaded strictly from an LDM autoencoder state dict.

    Args:
        state: LDM keys (see `read_ldm_state_dict`).
        expect: the architecture the weights must have (e.g. VAVAE_F16D32); None accepts any.

    Returns:
        the AutoencoderKL in eval mode, with the LDM attention's op order (explicit scores,
        softmax, then values; see diffusers' AttnProcessor).
    """
    from diffusers import AutoencoderKL
    from diffusers.models.attention_processor import AttnProcessor

    cfg = infer_ldm_config(state)
    if expect is not None and cfg != expect:
        raise CheckpointError(f"LDM autoencoder architecture {cfg} differs from expected {expect}")
    vae = AutoencoderKL(**diffusers_config(cfg))
    converted = convert_ldm_state_dict(state, cfg)
    problems = state_dict_mismatch(vae.state_dict(), converted)
    if problems:
        raise CheckpointError(f"LDM autoencoder does not fill AutoencoderKL:\n{problems}")
    vae.load_state_dict(converted, strict=True)
    vae.set_attn_processor(AttnProcessor())
    return vae.eval().requires_grad_(False)
