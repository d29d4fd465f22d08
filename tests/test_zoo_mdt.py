"""Tests of the MDT / MDTv2 models: checkpoint layout, forward, c hook, CFG schedule, rel-pos bias."""

import math

import pytest
import torch
import torch.nn.functional as F
from fakes import TINY_MDT, family_manifest, randomize

from semantic_bottleneck.zoo import build_model
from semantic_bottleneck.zoo.mdt import (
    MDT,
    MDTv2,
    RelativePositionBias,
    relative_position_index,
)

SMALL = TINY_MDT
FAMILIES = {"mdt": (MDT, 1), "mdtv2": (MDTv2, 2)}  # class and the decode_layer of the small model


def small_model(family: str, seed: int = 0, **overrides) -> torch.nn.Module:
    """A small model whose every float tensor is random (the official init zeroes the output)."""
    cls, decode_layer = FAMILIES[family]
    torch.manual_seed(seed)
    model = cls(**{**SMALL, "decode_layer": decode_layer, **overrides})
    return randomize(model, seed + 1, scale=0.2).eval()


def inputs(n: int = 4, seed: int = 2):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, 8, 8, generator=g)
    t = torch.randint(0, 1000, (n,), generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    return x, t, y


@pytest.mark.parametrize("family", ["mdt", "mdtv2"])
def test_xl_config_matches_manifest(family):
    manifest = family_manifest(family)
    with torch.device("meta"):
        model = build_model(family, **manifest["config"])
    state = model.state_dict()
    assert list(state) == list(manifest["keys"])  # same keys in the same order
    assert {k: list(v.shape) for k, v in state.items()} == manifest["keys"]
    assert {k: str(v.dtype).removeprefix("torch.") for k, v in state.items()} == manifest["dtypes"]
    assert sorted(name for name, _ in model.named_buffers()) == sorted(
        manifest["buffers_in_state_dict"]
    )
    frozen = [name for name, p in model.named_parameters() if not p.requires_grad]
    assert frozen == manifest["frozen_parameters"]
    assert sum(p.numel() for p in model.parameters()) == manifest["num_params"]


@pytest.mark.parametrize("family", ["mdt", "mdtv2"])
def test_state_dict_roundtrip_strict(family, tmp_path):
    model = small_model(family)
    path = tmp_path / "model.pt"
    torch.save(model.state_dict(), path)
    state = torch.load(path, weights_only=True)
    fresh = small_model(family, seed=7)
    fresh.load_state_dict(state, strict=True)
    x, t, y = inputs()
    assert torch.equal(fresh(x, t, y), model(x, t, y))
    state["final_layer.linears.weight"] = state.pop("final_layer.linear.weight")
    with pytest.raises(RuntimeError, match="final_layer.linears.weight"):
        fresh.load_state_dict(state, strict=True)


def test_v2_block_layout_follows_official_split():
    # (depth - decode_layer) // 2 in- and out-blocks; an odd remainder drops a block, as officially
    model = MDTv2(**{**SMALL, "depth": 5, "decode_layer": 2})
    assert (len(model.en_inblocks), len(model.en_outblocks), len(model.de_blocks)) == (1, 1, 2)
    assert all(b.skip_linear is None for b in model.en_inblocks)
    assert all(b.skip_linear is not None for b in [*model.en_outblocks, *model.de_blocks])
    assert all(b.skip_linear is None for b in MDT(**SMALL, decode_layer=1).blocks)


def test_bad_config_raises_value_error():
    with pytest.raises(ValueError, match="decode_layer"):
        MDT(**SMALL)  # MDT v1 has no default decode_layer
    with pytest.raises(ValueError, match="decode_layer"):
        MDTv2(**{**SMALL, "decode_layer": 5})
    with pytest.raises(ValueError, match="num_heads"):
        MDTv2(**{**SMALL, "num_heads": 3})
    with pytest.raises(ValueError, match="c_fn"):
        small_model("mdt")(*inputs(), True)  # enable_mask passed where c_fn goes


@pytest.mark.parametrize("family", ["mdt", "mdtv2"])
def test_forward_shape_and_determinism(family):
    model = small_model(family)
    x, t, y = inputs()
    torch.manual_seed(0)
    out = model(x, t, y)
    torch.manual_seed(1)  # eval: no label dropout, no masking, so the RNG state is irrelevant
    assert out.shape == (4, 8, 8, 8)  # learn_sigma: 2C channels
    assert torch.equal(model(x, t, y), out)
    assert torch.equal(model(x, t, y, enable_mask=True), out)  # no mask_ratio: never masks
    assert small_model(family, learn_sigma=False)(x, t, y).shape == (4, 4, 8, 8)


@pytest.mark.parametrize("family", ["mdt", "mdtv2"])
def test_condition_drops_labels_only_in_training(family):
    model = small_model(family, class_dropout_prob=1.0)
    t = torch.tensor([0, 500])
    y = torch.tensor([1, 2])
    t_emb = model.t_embedder(t)
    assert torch.equal(model.condition(t, y), t_emb + model.y_embedder.embedding_table(y))
    model.train()  # dropout probability 1: every label becomes the null class 10
    null = model.y_embedder.embedding_table(torch.tensor([10, 10]))
    assert torch.equal(model.condition(t, y), t_emb + null)


@pytest.mark.parametrize("family", ["mdt", "mdtv2"])
def test_c_fn_identity_is_bit_identical_and_zero_changes_output(family):
    model = small_model(family)
    x, t, y = inputs()
    out = model(x, t, y)
    assert torch.equal(model(x, t, y, c_fn=lambda c: c), out)
    assert not torch.allclose(model(x, t, y, c_fn=torch.zeros_like), out)


@pytest.mark.parametrize("family", ["mdt", "mdtv2"])
def test_c_fn_output_reaches_every_block_and_side_block(family):
    model = small_model(family, mask_ratio=0.3).train()
    seen = []
    modulations = [m.adaLN_modulation for m in model.modules() if hasattr(m, "adaLN_modulation")]
    for m in modulations:
        m.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    calls = []

    def c_fn(c):
        calls.append(c)
        return 2 * c

    torch.manual_seed(0)
    model(*inputs(), c_fn=c_fn, enable_mask=True)  # masked training: the side block runs too
    assert len(calls) == 1 and calls[0].shape == (4, 64)
    assert len(seen) == len(modulations)  # every block, the side block and the final layer
    assert all(torch.equal(c, 2 * calls[0]) for c in seen)


def test_v2_long_skips_are_lifo_and_decoder_skips_from_input():
    model = small_model("mdtv2", depth=6, decode_layer=2)  # 2 in-, 2 out-, 2 decoder blocks
    outs, skips = [], []
    for b in model.en_inblocks:
        b.register_forward_hook(lambda _m, _a, out: outs.append(out))
    for b in [*model.en_outblocks, *model.de_blocks]:
        b.register_forward_pre_hook(lambda _m, _a, kw: skips.append(kw["skip"]), with_kwargs=True)
    x, t, y = inputs()
    model(x, t, y)
    tokens = model.x_embedder(x) + model.pos_embed
    assert torch.equal(skips[0], outs[1]) and torch.equal(skips[1], outs[0])
    assert torch.equal(skips[2], tokens) and torch.equal(skips[3], tokens)


def test_v1_decoder_pos_embed_enters_before_last_decode_layer_blocks():
    model = small_model("mdt", depth=4, decode_layer=1)
    outs, ins = [], []
    model.blocks[2].register_forward_hook(lambda _m, _a, out: outs.append(out))
    model.blocks[3].register_forward_pre_hook(lambda _m, args: ins.append(args[0]))
    model(*inputs())
    assert torch.equal(ins[0], outs[0] + model.decoder_pos_embed)


@pytest.mark.parametrize("family", ["mdt", "mdtv2"])
def test_masked_training_forward(family):
    model = small_model(family, mask_ratio=0.5).train()
    x, t, y = inputs()
    torch.manual_seed(3)
    out = model(x, t, y, enable_mask=True)
    torch.manual_seed(3)
    assert torch.equal(model(x, t, y, enable_mask=True), out)  # seeded: reproducible
    assert out.shape == (4, 8, 8, 8)
    torch.manual_seed(3)
    assert not torch.allclose(model(x, t, y), out)  # masking changes the prediction


def test_side_interpolater_keeps_visible_tokens():
    model = small_model("mdtv2", mask_ratio=0.5)
    n, length, d = 2, model.num_patches, 64
    ids_restore = torch.stack([torch.randperm(length) for _ in range(n)])
    kept = torch.randn(n, length // 2, d)
    mask = torch.ones(n, length)
    mask[:, : length // 2] = 0
    mask = torch.gather(mask, 1, ids_restore)  # 1 = removed, in grid order
    out = model.forward_side_interpolater(kept, model.condition(*inputs(n)[1:]), mask, ids_restore)
    full = torch.cat([kept, model.mask_token.expand(n, length - length // 2, d)], dim=1)
    before = torch.gather(full, 1, ids_restore[..., None].expand(-1, -1, d))
    before = before + model.decoder_pos_embed
    visible = mask == 0
    assert torch.equal(out[visible], before[visible])
    assert not torch.allclose(out[~visible], before[~visible])


@pytest.mark.parametrize("family", ["mdt", "mdtv2"])
def test_cfg_scale_one_is_the_conditional_forward(family):
    model = small_model(family)
    x, t, y = inputs(2)
    xx, tt, yy = torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, torch.full((2,), 10)])
    out = model.forward_with_cfg(xx, tt, yy, cfg_scale=1.0)
    plain = model(xx, tt, yy)
    torch.testing.assert_close(out[:2, :3], plain[:2, :3], rtol=0, atol=1e-5)
    torch.testing.assert_close(out[2:, :3], plain[:2, :3], rtol=0, atol=1e-5)
    assert torch.equal(out[:, 3:], plain[:, 3:])  # unguided channels pass through
    assert torch.equal(model.forward_with_cfg(xx, tt, yy), plain)  # cfg_scale None: plain


@pytest.mark.parametrize("t_value, weight", [(0, 4.0), (1000, 1.0), (500, None)])
def test_cfg_power_cosine_schedule(t_value, weight):
    # w(t) = 1 + (s - 1)(1 - cos(pi (1 - t/T)^pow)) / 2: s at t = 0, 1 at t = T
    model = small_model("mdtv2")
    x, _, y = inputs(2)
    t = torch.full((4,), t_value)
    xx, yy = torch.cat([x, x]), torch.cat([y, torch.full((2,), 10)])
    plain = model(xx, t, yy)
    cond, uncond = plain[:2, :3], plain[2:, :3]
    if weight is None:  # t/T = 1/2 with pow 2: (1 - cos(pi/4)) / 2
        weight = 1 + 3 * (1 - math.cos(math.pi / 4)) / 2
    out = model.forward_with_cfg(xx, t, yy, cfg_scale=4.0, scale_pow=2.0)
    expected = uncond + weight * (cond - uncond)
    torch.testing.assert_close(out[:2, :3], expected, rtol=0, atol=1e-5)
    assert torch.equal(out[:2, :3], out[2:, :3])  # both halves carry the guided eps


def test_relative_position_index_by_hand():
    # 2x2 grid, tokens (0,0), (0,1), (1,0), (1,1); entry (i, j) = (dh + 1) * 3 + (dw + 1) with
    # (dh, dw) = position of i minus position of j
    expected = torch.tensor([[4, 3, 1, 0], [5, 4, 2, 1], [7, 6, 4, 3], [8, 7, 5, 4]])
    index = relative_position_index(2, 2)
    assert index.dtype == torch.int64
    assert torch.equal(index, expected)
    # 2x3 grid: 3 * 5 offsets, each pair of equal offset shares a row
    index = relative_position_index(2, 3)
    assert index.shape == (6, 6) and index.unique().numel() == 15 and index.max() == 14
    assert torch.equal(index.diagonal(), torch.full((6,), 7))  # zero offset: the middle row


def test_relative_position_bias_reads_table_by_index():
    bias_module = RelativePositionBias((2, 2), num_heads=2)
    with torch.no_grad():
        # 3 * 3 + 3 rows; entry (row, head) = 2 row + head
        bias_module.relative_position_bias_table.copy_(torch.arange(24.0).view(12, 2))
    bias = bias_module()  # (H, T, T)
    assert bias.shape == (2, 4, 4)
    assert torch.equal(bias[0], 2 * relative_position_index(2, 2).float())
    assert torch.equal(bias[1], 2 * relative_position_index(2, 2).float() + 1)


def test_attention_is_scaled_dot_product_with_bias():
    block = small_model("mdtv2").en_inblocks[0]
    attn = block.attn
    x = torch.randn(3, 16, 64, generator=torch.Generator().manual_seed(0))
    q, k, v = attn.qkv(x).view(3, 16, 3, 4, 16).permute(2, 0, 3, 1, 4)
    reference = F.scaled_dot_product_attention(q, k, v, attn_mask=attn.rel_pos_bias())
    reference = attn.proj(reference.transpose(1, 2).reshape(3, 16, 64))
    torch.testing.assert_close(attn(x), reference, rtol=1e-5, atol=1e-5)
    # masked training: attention among the kept tokens with the matching rows/columns of the bias
    keep = torch.stack([torch.randperm(16)[:6] for _ in range(3)])
    xk = torch.gather(x, 1, keep[..., None].expand(-1, -1, 64))
    q, k, v = attn.qkv(xk).view(3, 6, 3, 4, 16).permute(2, 0, 3, 1, 4)
    bias = torch.stack([attn.rel_pos_bias()[:, ids][:, :, ids] for ids in keep])  # per sample
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    ref = attn.proj(ref.transpose(1, 2).reshape(3, 6, 64))
    torch.testing.assert_close(attn(xk, ids_keep=keep), ref, rtol=1e-5, atol=1e-5)
