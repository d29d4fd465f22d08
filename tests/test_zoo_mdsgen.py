"""Tests of MDSGen: checkpoint layout, forward against a retyped reference, c and its parts."""

import math

import pytest
import torch
import torch.nn.functional as F
from fakes import TINY_MASKED, randomize
from safetensors.torch import save_file

from semantic_bottleneck.core.systems import combine
from semantic_bottleneck.core.torchfile import CheckpointError
from semantic_bottleneck.zoo import mdsgen, mdt
from semantic_bottleneck.zoo.mdsgen import (
    INITIAL_T,
    INPUTS,
    MDSGen,
    condition_parts,
    load_inputs,
    load_mdsgen,
    temporal_masking,
)
from semantic_bottleneck.zoo.registry import read_manifest

MANIFEST = "appendix/mdsgen_b2.json"
# a 4 x 2 token grid (8 x 4 latent, 2 x 2 patches); the video input keeps its real 32 x 512
TINY = dict(input_size=(8, 4), patch_size=(2, 2), in_channels=2, **TINY_MASKED)
GRID = (4, 2)


def tiny_model(seed: int = 0, **overrides) -> MDSGen:
    """A tiny model whose every float tensor is random (the official init zeroes the output)."""
    torch.manual_seed(seed)
    return randomize(MDSGen(**{**TINY, **overrides}), seed + 1).eval()


def inputs(n: int = 3, seed: int = 2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, 8, 4, generator=g)
    t = torch.tensor([999.0, 979.02, 3.5, 0.0][:n])
    video = F.normalize(torch.randn(n, 32, 512, generator=g), dim=-1)  # unit norm, as CAVP
    return x, t, video


# ----------------------------------------------------------------------------- a retyped reference


def sinusoid(t: torch.Tensor, dim: int = 204) -> torch.Tensor:
    """[cos(t f_i), sin(t f_i)], f_i = 10000^(-i / (dim / 2)), i < dim / 2 (MDSGen models.py)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


def rel_index(h: int, w: int) -> torch.Tensor:
    """BEiT's relative position index by enumeration of token pairs (row-major tokens)."""
    pos = [(r, c) for r in range(h) for c in range(w)]
    return torch.tensor(
        [[(ri - rj + h - 1) * (2 * w - 1) + (ci - cj + w - 1) for rj, cj in pos] for ri, ci in pos]
    )


def ref_c(sd: dict, t: torch.Tensor, video: torch.Tensor, keep: bool) -> torch.Tensor:
    d = sd["pos_embed"].shape[-1]
    h = F.linear(sinusoid(t), sd["t_embedder.mlp.0.weight"], sd["t_embedder.mlp.0.bias"])
    time = F.linear(F.silu(h), sd["t_embedder.mlp.2.weight"], sd["t_embedder.mlp.2.bias"])
    f = F.gelu(F.linear(video, sd["mlp_feat.0.weight"], sd["mlp_feat.0.bias"]))
    f = F.layer_norm(f, (d,), sd["mlp_feat.2.weight"], sd["mlp_feat.2.bias"], eps=1e-12)
    pooled = torch.einsum("nfd,f->nd", f, sd["conv1d_feat.0.weight"][0, :, 0])
    y = F.gelu(pooled + sd["conv1d_feat.0.bias"])
    y = F.layer_norm(y, (d,), sd["conv1d_feat.2.weight"], sd["conv1d_feat.2.bias"], eps=1e-12)
    return time + y if keep else time


def ref_block(sd: dict, p: str, x: torch.Tensor, c: torch.Tensor, heads: int) -> torch.Tensor:
    n, length, d = x.shape
    mod = F.linear(
        F.silu(c), sd[f"{p}adaLN_modulation.1.weight"], sd[f"{p}adaLN_modulation.1.bias"]
    )
    sh1, sc1, g1, sh2, sc2, g2 = (m[:, None] for m in mod.chunk(6, dim=1))
    h = F.layer_norm(x, (d,), eps=1e-6) * (1 + sc1) + sh1
    qkv = F.linear(h, sd[f"{p}attn.qkv.weight"], sd[f"{p}attn.qkv.bias"])
    q, k, v = qkv.view(n, length, 3, heads, d // heads).permute(2, 0, 3, 1, 4)
    table = sd[f"{p}attn.rel_pos_bias.relative_position_bias_table"]
    bias = table[rel_index(*GRID)].permute(2, 0, 1)  # (heads, L, L)
    att = (q @ k.transpose(-1, -2) / math.sqrt(d // heads) + bias).softmax(-1) @ v
    att = F.linear(att.transpose(1, 2).reshape(n, length, d), sd[f"{p}attn.proj.weight"])
    x = x + g1 * (att + sd[f"{p}attn.proj.bias"])
    h = F.layer_norm(x, (d,), eps=1e-6) * (1 + sc2) + sh2
    h = F.gelu(F.linear(h, sd[f"{p}mlp.fc1.weight"], sd[f"{p}mlp.fc1.bias"]), approximate="tanh")
    return x + g2 * F.linear(h, sd[f"{p}mlp.fc2.weight"], sd[f"{p}mlp.fc2.bias"])


def ref_forward(sd: dict, x, t, video, keep: bool, depth=3, decode_layer=1, heads=4):
    """The inference forward of MDSGen models.py (no masking), from the state dict alone."""
    tokens = F.conv2d(x, sd["x_embedder.proj.weight"], sd["x_embedder.proj.bias"], stride=2)
    h = tokens.flatten(2).transpose(1, 2) + sd["pos_embed"]
    c = ref_c(sd, t, video, keep)
    for i in range(depth):
        if i == depth - decode_layer:
            h = h + sd["decoder_pos_embed"]
        h = ref_block(sd, f"blocks.{i}.", h, c, heads)
    mod = F.linear(F.silu(c), sd["final_layer.adaLN_modulation.1.weight"])
    shift, scale = (mod + sd["final_layer.adaLN_modulation.1.bias"]).chunk(2, dim=1)
    h = F.layer_norm(h, (h.shape[-1],), eps=1e-6) * (1 + scale[:, None]) + shift[:, None]
    out = F.linear(h, sd["final_layer.linear.weight"], sd["final_layer.linear.bias"])
    n, channels = x.shape[0], out.shape[-1] // 4
    out = out.view(n, *GRID, 2, 2, channels).permute(0, 5, 1, 3, 2, 4)  # n c h p w q
    return out.reshape(n, channels, GRID[0] * 2, GRID[1] * 2)


# ----------------------------------------------------------------------------- checkpoint


def test_release_config_on_meta_has_the_manifest_keys():
    manifest = read_manifest(MANIFEST)
    with torch.device("meta"):
        model = MDSGen(**manifest["config"])
    state = model.state_dict()
    assert list(state) == list(manifest["keys"])  # same keys in the same order
    assert {k: list(v.shape) for k, v in state.items()} == manifest["keys"]
    assert {k: str(v.dtype).removeprefix("torch.") for k, v in state.items()} == manifest["dtypes"]
    assert sorted(n for n, _ in model.named_buffers()) == sorted(manifest["buffers_in_state_dict"])
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert frozen == manifest["frozen_parameters"]
    assert sum(p.numel() for p in model.parameters()) == manifest["num_params"]
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == manifest["num_trainable_params"]
    assert set(manifest["conditioning_tensors"]["defines_c"]) <= set(state)
    assert model.grid == (102, 8) and model.t_embedder.mlp[0].in_features == 204


def test_synthetic_checkpoint_loads_strictly(tmp_path, monkeypatch):
    model = tiny_model()
    path = tmp_path / "mdsgen_audioldm.pt"
    torch.save(model.state_dict(), path)  # the official layout: a bare state_dict
    monkeypatch.setattr(mdsgen, "read_manifest", lambda name: {"config": dict(TINY)})
    loaded = load_mdsgen(path)
    assert not loaded.training
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    x, t, video = inputs()
    assert torch.equal(loaded(x, t, video), model(x, t, video))


def test_wrong_key_is_a_clear_error(tmp_path, monkeypatch):
    state = tiny_model().state_dict()
    state["conv1d_feats.0.weight"] = state.pop("conv1d_feat.0.weight")
    path = tmp_path / "renamed.pt"
    torch.save(state, path)
    monkeypatch.setattr(mdsgen, "read_manifest", lambda name: {"config": dict(TINY)})
    with pytest.raises(CheckpointError, match=r"missing keys \(1\).*conv1d_feat\.0\.weight"):
        load_mdsgen(path)
    state = tiny_model().state_dict()
    state["mlp_feat.0.weight"] = state["mlp_feat.0.weight"][:, :256]  # 256-d features
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="mlp_feat.0.weight"):
        load_mdsgen(path)


def test_bad_config_raises_value_error():
    with pytest.raises(ValueError, match="decode_layer"):
        MDSGen(**{**TINY, "decode_layer": None})  # the official class needs it given too
    with pytest.raises(ValueError, match="num_heads"):
        MDSGen(**{**TINY, "num_heads": 3})
    with pytest.raises(ValueError, match="video_features"):
        tiny_model().condition_part(torch.zeros(2, 40, 512))  # untruncated 10 s clip


# ----------------------------------------------------------------------------- forward


@pytest.mark.parametrize("keep", [True, False])
def test_forward_matches_retyped_reference(keep):
    model = tiny_model()
    x, t, video = inputs()
    with torch.no_grad():
        out = model(x, t, video, prob=0.0 if keep else 1.0)
        expected = ref_forward(model.state_dict(), x, t, video, keep)
    assert out.shape == (3, 4, 8, 4)  # learn_sigma: epsilon and variance channels
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)


def test_eval_forward_is_conditional_and_deterministic():
    model = tiny_model()
    x, t, video = inputs()
    torch.manual_seed(0)
    out = model(x, t, video)
    torch.manual_seed(1)  # eval: no drop, no masking, so the RNG state is irrelevant
    assert torch.equal(model(x, t, video), out)
    assert torch.equal(model(x, t, video, prob=0.0), out)
    assert torch.equal(model(x, t, video, enable_mask=True), out)  # no mask_ratio: never masks
    assert not torch.allclose(model(x, t, video, prob=1.0), out)


def test_official_init_predicts_zero():
    torch.manual_seed(0)
    model = MDSGen(**TINY).eval()  # adaLN-Zero and a zeroed head
    x, t, video = inputs()
    assert torch.equal(model(x, t, video), torch.zeros(3, 4, 8, 4))


def test_decoder_pos_embed_enters_before_last_decode_layer_blocks():
    model = tiny_model(depth=3, decode_layer=1)
    outs, ins = [], []
    model.blocks[1].register_forward_hook(lambda _m, _a, out: outs.append(out))
    model.blocks[2].register_forward_pre_hook(lambda _m, args: ins.append(args[0]))
    model(*inputs())
    assert torch.equal(ins[0], outs[0] + model.decoder_pos_embed)


def test_cfg_weight_is_power_cosine_over_all_channels():
    model = tiny_model()
    x, _, video = inputs(2)
    for t_value, scale_pow in [(0.0, 0.01), (1000.0, 0.01), (INITIAL_T, 0.01), (500.0, 2.0)]:
        t = torch.full((2,), t_value)
        cond = model(x, t, video, prob=0.0)
        uncond = model(x, t, video, prob=1.0)
        w = 1 + 4 * (1 - math.cos(math.pi * (1 - t_value / 1000) ** scale_pow)) / 2
        out = model.forward_with_cfg(x, t, video, cfg_scale=5.0, scale_pow=scale_pow)
        torch.testing.assert_close(out, uncond + w * (cond - uncond), rtol=0, atol=1e-5)
    t = torch.full((2,), 1000.0)  # w = 1: the conditional prediction
    torch.testing.assert_close(model.forward_with_cfg(x, t, video), model(x, t, video))


# ----------------------------------------------------------------------------- c


def test_condition_parts_is_the_c_every_modulation_receives():
    model = tiny_model()
    x, _, video = inputs()
    t = torch.full((3,), INITIAL_T)
    seen = []
    modulations = [model.blocks[0], model.blocks[2], model.final_layer]
    for m in modulations:
        m.adaLN_modulation.register_forward_hook(lambda _m, args, _out: seen.append(args[0]))
    model(x, t, video, prob=0.0)
    time, cond = condition_parts(model, {"video_features": video}, INITIAL_T)
    assert time.shape == (1, 32) and cond.shape == (3, 32)
    assert time.dtype == cond.dtype == torch.float32
    c = combine(time, cond, "sum")
    assert len(seen) == len(modulations)
    for captured in seen:
        torch.testing.assert_close(captured, c, rtol=1e-6, atol=1e-6)
    seen.clear()
    model(x, t, video, prob=1.0)  # unconditional: no learned null, c is the time part alone
    for captured in seen:
        torch.testing.assert_close(captured, time.expand(3, -1), rtol=1e-6, atol=1e-6)


def test_time_sinusoid_is_the_official_204_features():
    model = tiny_model()
    assert model.t_embedder.frequency_embedding_size == 204
    t = torch.tensor([0.0, 1.0, 999.0])
    s = sinusoid(t)
    assert s.shape == (3, 204)
    assert torch.equal(s[0], torch.cat([torch.ones(102), torch.zeros(102)]))  # t = 0: cos 1, sin 0
    torch.testing.assert_close(s[1, [0, 102]], torch.tensor([math.cos(1.0), math.sin(1.0)]))
    lowest = 10000 ** (-101 / 102)  # the smallest frequency: 10000^(-101/102), not 1/10000
    torch.testing.assert_close(s[2, 101], torch.tensor(math.cos(999 * lowest)))
    mlp = model.t_embedder.mlp
    torch.testing.assert_close(model.time_part(t), mlp(s), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(model.time_part(999.0), mlp(s[2:]), rtol=1e-6, atol=1e-6)


def test_parts_depend_on_their_own_input_only():
    model = tiny_model()
    _, _, video = inputs()
    other = inputs(seed=5)[2]
    t1, y1 = condition_parts(model, {"video_features": video}, INITIAL_T)
    t2, y2 = condition_parts(model, {"video_features": other}, 10.0)
    assert torch.equal(t1, condition_parts(model, {"video_features": other}, INITIAL_T)[0])
    assert torch.equal(y2, condition_parts(model, {"video_features": other}, INITIAL_T)[1])
    assert not torch.allclose(t1, t2) and not torch.allclose(y1, y2)
    with pytest.raises(ValueError, match="video_features"):
        condition_parts(model, {"video": video}, INITIAL_T)


def test_video_part_is_a_layernorm_of_a_frame_weighted_sum():
    torch.manual_seed(0)
    model = MDSGen(**TINY).eval()  # the LayerNorms' fresh affine: weight 1, bias 0
    _, _, video = inputs()
    y = model.condition_part(video)
    torch.testing.assert_close(y.mean(1), torch.zeros(3), rtol=0, atol=1e-5)
    torch.testing.assert_close(y.norm(dim=1), torch.full((3,), math.sqrt(32)), rtol=1e-4, atol=0)
    with torch.no_grad():  # a one-hot frame weight: Y reads frame 7 alone
        model.conv1d_feat[0].weight.zero_()
        model.conv1d_feat[0].weight[0, 7, 0] = 1.0
        model.conv1d_feat[0].bias.zero_()
    changed = video.clone()
    changed[:, [0, 8, 31]] = torch.randn(3, 3, 512)
    torch.testing.assert_close(model.condition_part(changed), model.condition_part(video))
    frame = model.mlp_feat(video[:, 7])
    expected = F.layer_norm(F.gelu(frame), (32,), eps=1e-12)
    torch.testing.assert_close(model.condition_part(video), expected, rtol=1e-5, atol=1e-5)


def test_training_drops_the_video_part_per_row():
    model = tiny_model().train()
    t = torch.full((400,), INITIAL_T)
    video = torch.randn(400, 32, 512)
    time = model.time_part(t)
    torch.manual_seed(0)
    c = model.condition(t, video, prob=0.1)  # the official training default
    dropped = (c - time).abs().amax(dim=1) == 0
    assert 20 <= int(dropped.sum()) <= 65  # about 40 of 400
    assert torch.equal(mdt.keep_mask(4, 0.0), torch.ones(4, dtype=torch.bool))
    assert torch.equal(mdt.keep_mask(4, 1.0), torch.zeros(4, dtype=torch.bool))


# ----------------------------------------------------------------------------- grid and masking


def test_relative_position_index_on_the_rectangular_grid():
    attn = tiny_model().blocks[0].attn
    assert torch.equal(attn.rel_pos_bias.relative_position_index, rel_index(*GRID))
    assert attn.rel_pos_bias.relative_position_bias_table.shape == (7 * 3 + 3, 4)
    assert rel_index(102, 8).max() + 1 + 3 == 3048  # the release's table rows


def test_temporal_masking_removes_whole_rows():
    x = torch.randn(5, 8, 16)  # 4 rows of 2 tokens
    torch.manual_seed(0)
    kept, mask, ids_restore, ids_keep = temporal_masking(x, 0.5, grid_w=2)
    assert kept.shape == (5, 4, 16) and ids_keep.shape == (5, 4)
    assert torch.equal(mask.view(5, 4, 2)[..., 0], mask.view(5, 4, 2)[..., 1])  # rows as a whole
    assert torch.equal(mask.sum(1), torch.full((5,), 4.0))
    assert torch.equal(ids_keep[:, 0::2] + 1, ids_keep[:, 1::2])  # a row's tokens stay together
    assert torch.equal(torch.gather(x, 1, ids_keep[..., None].expand(-1, -1, 16)), kept)


def test_masked_training_forward_runs_the_side_block():
    model = tiny_model(mask_ratio=0.5).train()
    x, t, video = inputs()
    calls = []
    model.sideblocks[0].register_forward_hook(lambda _m, _a, out: calls.append(out))
    torch.manual_seed(3)
    out = model(x, t, video, enable_mask=True, prob=0.0)
    torch.manual_seed(3)
    assert torch.equal(model(x, t, video, enable_mask=True, prob=0.0), out)  # seeded
    assert len(calls) == 2 and out.shape == (3, 4, 8, 4)
    assert not torch.allclose(model(x, t, video, prob=0.0), out)


# ----------------------------------------------------------------------------- inputs on disk


def test_condition_inputs_file_roundtrip(tmp_path):
    assert INPUTS["video_features"]["shape"] == ("N", 32, 512)
    video = inputs()[2]
    save_file({"video_features": video}, str(tmp_path / "conditions.safetensors"))
    read = load_inputs(tmp_path / "conditions.safetensors")
    assert torch.equal(read["video_features"], video)
    save_file({"video_features": video[:, :16].contiguous()}, str(tmp_path / "short.safetensors"))
    with pytest.raises(ValueError, match="shape"):
        load_inputs(tmp_path / "short.safetensors")
