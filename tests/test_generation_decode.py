"""Decoders: pixel conventions, SD-VAE from the cache, VA-VAE's LDM key mapping, missing files."""

import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from fakes import tiny_sd_vae

from semantic_bottleneck.generation import decode as D
from semantic_bottleneck.generation import vavae as V
from semantic_bottleneck.zoo.checkpoint import CheckpointError

# ----------------------------------------------------------------------------- pixel conventions


def test_pixel_conventions_match_the_official_formulas():
    x = torch.tensor([-1.5, -1.0, -0.5, 0.0, 0.5, 0.999, 1.0, 1.5])
    # DiT: 127.5 x + 128 then truncation = round half up of 127.5 (x + 1); 0 -> 128, 0.5 -> 191.75
    assert D.dit_pixels(x).tolist() == [0, 0, 64, 128, 191, 255, 255, 255]
    # MDT: (x + 1) 127.5 truncated: 0 -> 127.5 -> 127, 0.999 -> 254.87 -> 254
    assert D.mdt_pixels(x).tolist() == [0, 0, 63, 127, 191, 254, 255, 255]
    # REPA/MG: 255 (x + 1) / 2 truncated: the same real numbers as MDT
    assert D.repa_pixels(x).tolist() == [0, 0, 63, 127, 191, 254, 255, 255]


def test_family_pixels_follow_each_official_script():
    assert {f: D.pixels_of(f) for f in D.FAMILY_PIXELS} == {
        "dit": "dit", "sit": "dit", "lightningdit": "dit",
        "repa": "repa", "mg": "repa", "mdt": "mdt", "mdtv2": "mdt",
    }  # fmt: skip
    with pytest.raises(ValueError, match="unknown family"):
        D.pixels_of("unet")


def test_to_images_is_nhwc_uint8_on_cpu():
    x = torch.linspace(-1, 1, 2 * 3 * 4 * 5).reshape(2, 3, 4, 5)
    out = D.to_images(x, "dit")
    assert out.shape == (2, 4, 5, 3) and out.dtype == torch.uint8
    assert torch.equal(out[1, 2, 3], D.dit_pixels(x[1, :, 2, 3]))
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        D.to_images(x[:, :2], "dit")
    with pytest.raises(ValueError, match="pixels"):
        D.to_images(x, "jpeg")


def test_digits_decoder_replicates_gray():
    x = torch.tensor([[-1.0, 0.0], [0.5, 1.0]]).reshape(1, 1, 2, 2)
    out = D.decode_digits(x)
    assert out.shape == (1, 2, 2, 3) and out.dtype == torch.uint8
    # to_uint8 rounds (x + 1) 127.5: 0, 127.5 -> 128, 191.25 -> 191, 255
    assert out[0, :, :, 0].tolist() == [[0, 128], [191, 255]]
    assert torch.equal(out[..., 0], out[..., 2])
    with pytest.raises(ValueError, match="digits"):
        D.decode_digits(torch.zeros(1, 4, 8, 8))


# ----------------------------------------------------------------------------- SD-VAE


def test_latent_decoder_scales_by_0_18215():
    vae = tiny_sd_vae()
    z = torch.randn(2, 4, 4, 4, generator=torch.Generator().manual_seed(1))
    out = D.LatentDecoder(vae, "mdt")(z)
    with torch.no_grad():
        want = D.mdt_pixels(vae.decode(z / 0.18215).sample).permute(0, 2, 3, 1)
    assert out.shape == (2, 8, 8, 3) and torch.equal(out, want)
    with pytest.raises(ValueError, match=r"\(N, 4, h, w\)"):
        D.LatentDecoder(vae, "mdt")(torch.zeros(1, 3, 4, 4))


def test_sd_vae_loads_from_the_cache_offline(tmp_path):
    vae = tiny_sd_vae()
    vae.save_pretrained(tmp_path / "sd-vae-ft-mse")
    decoder = D.load_sd_vae("sd-vae-ft-mse", "repa", cache_dir=tmp_path)
    # REPA divides by a per-channel tensor, MG by the number (equal on the CPU)
    assert decoder.per_channel_scale
    assert not D.load_sd_vae("sd-vae-ft-mse", "mg", cache_dir=tmp_path).per_channel_scale
    z = torch.randn(1, 4, 4, 4, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want = D.repa_pixels(vae.decode(z / 0.18215).sample).permute(0, 2, 3, 1)
    assert torch.equal(decoder(z), want)
    assert isinstance(D.load_decoder("sd-vae-ft-mse", "mg", tmp_path), D.LatentDecoder)


@pytest.mark.parametrize("name", ["sd-vae-ft-ema", "sd-vae-ft-mse", "vavae-f16d32"])
def test_missing_vae_names_the_asset_and_the_fetch_command(tmp_path, name):
    with pytest.raises(D.MissingAssetError) as err:
        D.load_decoder(name, "lightningdit" if name.startswith("vavae") else "dit", tmp_path)
    message = str(err.value)
    assert name in message and f"semantic-bottleneck fetch {name}" in message


def test_missing_companion_file_is_named(tmp_path):
    folder = tmp_path / "vavae-f16d32"
    folder.mkdir()
    (folder / "vavae-imagenet256-f16d32-dinov2.pt").write_bytes(b"x")
    with pytest.raises(D.MissingAssetError, match="latents_stats.pt"):
        D.load_vavae(tmp_path)


def test_load_decoder_rejects_unknown_names():
    with pytest.raises(ValueError, match="vae: expected"):
        D.load_decoder("sdxl-vae", "dit")
    with pytest.raises(ValueError, match="VA-VAE"):
        D.load_decoder("vavae-f16d32", "mdt")
    assert D.load_decoder("digits", "repa") is D.decode_digits


# ----------------------------------------------------------------------------- VA-VAE (LDM format)
# The LDM layout below is written from the constructor logic of LightningDiT's
# tokenizer/autoencoder.py (Encoder, Decoder, ResnetBlock, AttnBlock), independently of vavae.py.

TINY = dict(ch=32, ch_mult=(1, 2), blocks=1, attn_levels=(1,), z=4)


def ldm_layout(ch, ch_mult, blocks, attn_levels, z, in_ch=3, out_ch=3) -> dict:
    shapes = {}

    def conv(p, cin, cout, k):
        shapes[f"{p}.weight"], shapes[f"{p}.bias"] = (cout, cin, k, k), (cout,)

    def norm(p, c):
        shapes[f"{p}.weight"], shapes[f"{p}.bias"] = (c,), (c,)

    def resnet(p, cin, cout):
        norm(f"{p}.norm1", cin), conv(f"{p}.conv1", cin, cout, 3)
        norm(f"{p}.norm2", cout), conv(f"{p}.conv2", cout, cout, 3)
        if cin != cout:
            conv(f"{p}.nin_shortcut", cin, cout, 1)

    def attn(p, c):
        norm(f"{p}.norm", c)
        for n in ("q", "k", "v", "proj_out"):
            conv(f"{p}.{n}", c, c, 1)

    def mid(p, c):
        (
            resnet(f"{p}.mid.block_1", c, c),
            attn(f"{p}.mid.attn_1", c),
            resnet(f"{p}.mid.block_2", c, c),
        )

    levels = len(ch_mult)
    conv("encoder.conv_in", in_ch, ch, 3)
    c = ch
    for i, m in enumerate(ch_mult):
        for j in range(blocks):
            resnet(f"encoder.down.{i}.block.{j}", c, ch * m)
            c = ch * m
            if i in attn_levels:
                attn(f"encoder.down.{i}.attn.{j}", c)
        if i != levels - 1:
            conv(f"encoder.down.{i}.downsample.conv", c, c, 3)
    mid("encoder", c)
    norm("encoder.norm_out", c), conv("encoder.conv_out", c, 2 * z, 3)
    conv("quant_conv", 2 * z, 2 * z, 1), conv("post_quant_conv", z, z, 1)
    conv("decoder.conv_in", z, c, 3)
    mid("decoder", c)
    for i in reversed(range(levels)):
        for j in range(blocks + 1):
            resnet(f"decoder.up.{i}.block.{j}", c, ch * ch_mult[i])
            c = ch * ch_mult[i]
            if i in attn_levels:
                attn(f"decoder.up.{i}.attn.{j}", c)
        if i != 0:
            conv(f"decoder.up.{i}.upsample.conv", c, c, 3)
    norm("decoder.norm_out", c), conv("decoder.conv_out", c, out_ch, 3)
    return shapes


def ldm_state(seed: int = 0, **layout) -> dict:
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in ldm_layout(**layout).items():
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        value = torch.randn(shape, generator=g) / fan_in**0.5
        if len(shape) == 1 and ".norm" in key and key.endswith("weight"):
            value = 1 + 0.1 * value  # GroupNorm gains near 1
        state[key] = value
    return state


def _gn(x, sd, p):
    return F.group_norm(x, 32, sd[f"{p}.weight"], sd[f"{p}.bias"], eps=1e-6)


def _conv(x, sd, p, padding=1, stride=1):
    return F.conv2d(x, sd[f"{p}.weight"], sd[f"{p}.bias"], stride=stride, padding=padding)


def _resnet(x, sd, p):
    h = _conv(F.silu(_gn(x, sd, f"{p}.norm1")), sd, f"{p}.conv1")
    h = _conv(F.silu(_gn(h, sd, f"{p}.norm2")), sd, f"{p}.conv2")
    if f"{p}.nin_shortcut.weight" in sd:
        x = _conv(x, sd, f"{p}.nin_shortcut", padding=0)
    return x + h


def _attn(x, sd, p):
    h = _gn(x, sd, f"{p}.norm")
    q, k, v = (_conv(h, sd, f"{p}.{n}", padding=0) for n in "qkv")
    b, c, hh, ww = q.shape
    w = torch.bmm(q.reshape(b, c, -1).permute(0, 2, 1), k.reshape(b, c, -1)) * c**-0.5
    w = torch.softmax(w, dim=2)
    out = torch.bmm(v.reshape(b, c, -1), w.permute(0, 2, 1)).reshape(b, c, hh, ww)
    return x + _conv(out, sd, f"{p}.proj_out", padding=0)


def _mid(h, sd, p):
    h = _resnet(h, sd, f"{p}.mid.block_1")
    return _resnet(_attn(h, sd, f"{p}.mid.attn_1"), sd, f"{p}.mid.block_2")


def ldm_decode(z, sd, levels, blocks):
    h = _mid(_conv(_conv(z, sd, "post_quant_conv", 0), sd, "decoder.conv_in"), sd, "decoder")
    for i in reversed(range(levels)):
        for j in range(blocks + 1):
            h = _resnet(h, sd, f"decoder.up.{i}.block.{j}")
            if f"decoder.up.{i}.attn.{j}.q.weight" in sd:
                h = _attn(h, sd, f"decoder.up.{i}.attn.{j}")
        if i != 0:
            h = _conv(
                F.interpolate(h, scale_factor=2.0, mode="nearest"),
                sd,
                f"decoder.up.{i}.upsample.conv",
            )
    return _conv(F.silu(_gn(h, sd, "decoder.norm_out")), sd, "decoder.conv_out")


def ldm_encode_mean(x, sd, levels, blocks):
    h = _conv(x, sd, "encoder.conv_in")
    for i in range(levels):
        for j in range(blocks):
            h = _resnet(h, sd, f"encoder.down.{i}.block.{j}")
            if f"encoder.down.{i}.attn.{j}.q.weight" in sd:
                h = _attn(h, sd, f"encoder.down.{i}.attn.{j}")
        if i != levels - 1:  # LDM pads right and bottom by one, then a stride-2 valid conv
            h = _conv(F.pad(h, (0, 1, 0, 1)), sd, f"encoder.down.{i}.downsample.conv", 0, 2)
    h = _conv(F.silu(_gn(_mid(h, sd, "encoder"), sd, "encoder.norm_out")), sd, "encoder.conv_out")
    moments = _conv(h, sd, "quant_conv", 0)
    return moments[:, : moments.shape[1] // 2]


def test_vavae_layout_maps_every_key_at_full_size():
    layout = ldm_layout(128, (1, 1, 2, 2, 4), 2, (4,), 32)
    state = {k: torch.empty(s, device="meta") for k, s in layout.items()}
    cfg = V.infer_ldm_config(state)
    assert cfg == V.VAVAE_F16D32
    converted = V.convert_ldm_state_dict(state, cfg)
    with torch.device("meta"):
        target = AutoencoderKL(**V.diffusers_config(cfg)).state_dict()
    assert len(converted) == len(state)  # one diffusers key per LDM key, none merged or dropped
    assert {k: tuple(v.shape) for k, v in converted.items()} == {
        k: tuple(v.shape) for k, v in target.items()
    }
    # spot checks of the table in vavae.py
    key = V.ldm_to_diffusers_key
    assert (
        key("decoder.up.4.attn.2.proj_out.weight", 5)
        == "decoder.up_blocks.0.attentions.2.to_out.0.weight"
    )
    assert (
        key("decoder.up.0.block.1.nin_shortcut.bias", 5)
        == "decoder.up_blocks.4.resnets.1.conv_shortcut.bias"
    )
    assert (
        key("encoder.down.3.downsample.conv.weight", 5)
        == "encoder.down_blocks.3.downsamplers.0.conv.weight"
    )
    assert key("encoder.mid.block_2.norm1.bias", 5) == "encoder.mid_block.resnets.1.norm1.bias"
    assert (
        key("decoder.mid.attn_1.norm.weight", 5)
        == "decoder.mid_block.attentions.0.group_norm.weight"
    )
    assert key("loss.discriminator.main.0.weight", 5) is None


def test_vavae_strict_load_decodes_and_encodes_like_ldm():
    state = ldm_state(**TINY)
    vae = V.build_autoencoder(state)
    assert sum(p.numel() for p in vae.parameters()) == sum(v.numel() for v in state.values())
    g = torch.Generator().manual_seed(3)
    z = torch.randn(2, 4, 4, 4, generator=g)
    with torch.no_grad():
        got = vae.decode(z).sample
        want = ldm_decode(z, state, levels=2, blocks=1)
        assert got.shape == (2, 3, 8, 8)
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
        x = torch.randn(2, 3, 8, 8, generator=g)
        mean = vae.encode(x).latent_dist.mean
        torch.testing.assert_close(mean, ldm_encode_mean(x, state, 2, 1), rtol=1e-4, atol=1e-5)


def test_vavae_mapping_rejects_missing_and_unknown_keys():
    state = ldm_state(**TINY)
    missing = {k: v for k, v in state.items() if k != "decoder.up.1.attn.0.q.bias"}
    with pytest.raises(
        CheckpointError, match=re.escape("decoder.up_blocks.0.attentions.0.to_q.bias")
    ):
        V.build_autoencoder(missing)
    with pytest.raises(CheckpointError, match="no diffusers counterpart"):
        V.build_autoencoder(state | {"decoder.up.1.block.0.temb_proj.weight": torch.zeros(64, 8)})
    with pytest.raises(CheckpointError, match="differs from expected"):
        V.build_autoencoder(state, expect=V.VAVAE_F16D32)


def test_read_ldm_state_dict_keeps_only_autoencoder_keys(tmp_path):
    state = ldm_state(**TINY)
    extra = {"loss.logvar": torch.zeros(()), "foundation_model.model.w": torch.zeros(2)}
    torch.save({"state_dict": state | extra}, tmp_path / "wrapped.pt")
    assert set(V.read_ldm_state_dict(tmp_path / "wrapped.pt")) == set(state)
    torch.save({"state_dict": state, "cfg": object.__new__(Unsafe)}, tmp_path / "unsafe.pt")
    with pytest.raises(CheckpointError, match="tensor-only"):
        V.read_ldm_state_dict(tmp_path / "unsafe.pt")


class Unsafe:
    """A class a weights-only load must refuse to build."""


def test_load_vavae_denormalises_with_latent_stats(tmp_path):
    state = ldm_state(**TINY)
    folder = tmp_path / "vavae-f16d32"
    folder.mkdir()
    torch.save(state, folder / "vavae-imagenet256-f16d32-dinov2.pt")
    g = torch.Generator().manual_seed(4)
    mean, std = torch.randn(1, 4, 1, 1, generator=g), torch.rand(1, 4, 1, 1, generator=g) + 0.5
    torch.save({"mean": mean, "std": std}, folder / "latents_stats.pt")
    decoder = D.load_vavae(tmp_path, expect=None)
    z = torch.randn(2, 4, 4, 4, generator=g)
    out = decoder(z)
    with torch.no_grad():
        want = D.dit_pixels(ldm_decode(z * std / 1.0 + mean, state, 2, 1)).permute(0, 2, 3, 1)
    assert out.shape == (2, 8, 8, 3) and out.dtype == torch.uint8
    # float differences between the two implementations may move a pixel across a level
    assert (out.int() - want.int()).abs().max() <= 1
    with pytest.raises(CheckpointError, match="differs from expected"):
        D.load_vavae(tmp_path)  # the tiny file is not the f16d32 architecture
