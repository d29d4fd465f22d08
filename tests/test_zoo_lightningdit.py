"""Tests of zoo/lightningdit.py: manifest keys, strict loading, forward, c_fn, CFG, RoPE, RMSNorm."""

from __future__ import annotations

import math

import pytest
import torch
from fakes import TINY_LIGHTNINGDIT, family_manifest

from semantic_bottleneck.zoo import build_model
from semantic_bottleneck.zoo.lightningdit import (
    LightningDiT,
    RMSNorm,
    VisionRotaryEmbeddingFast,
    rotate_half,
)

SMALL = TINY_LIGHTNINGDIT


def small_model(seed: int = 0, **overrides) -> LightningDiT:
    """A small eval-mode model with every weight random (the official init zeroes the output)."""
    torch.manual_seed(seed)
    model = LightningDiT(**{**SMALL, **overrides}).eval()
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name != "pos_embed":
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return model


def inputs(n: int = 3, seed: int = 2, channels: int = 8, size: int = 4):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, channels, size, size, generator=g)
    t = torch.rand(n, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    return x, t, y


def cfg_batch(n: int = 2):
    """[cond; uncond] batch as the sampler builds it: x repeated, labels then null labels."""
    x, t, y = inputs(n)
    return torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, torch.full_like(y, 10)])


# ----------------------------------------------------------------------------- structure


def test_xl_state_dict_matches_manifest():
    manifest = family_manifest("lightningdit")
    with torch.device("meta"):
        model = build_model("lightningdit", **manifest["config"])
    sd = model.state_dict()
    assert list(sd) == list(manifest["keys"])
    assert {k: list(v.shape) for k, v in sd.items()} == manifest["keys"]
    assert {k: str(v.dtype).removeprefix("torch.") for k, v in sd.items()} == manifest["dtypes"]
    assert [k for k, _ in model.named_buffers()] == manifest["buffers_in_state_dict"]
    frozen = [k for k, p in model.named_parameters() if not p.requires_grad]
    assert frozen == manifest["frozen_parameters"]
    assert sum(p.numel() for p in model.parameters()) == manifest["num_params"]
    assert sum(v.numel() for v in sd.values()) == manifest["num_state_dict_elements"]


def test_options_change_keys_as_official():
    sd = LightningDiT(**{**SMALL, "use_qknorm": True, "wo_shift": True}).state_dict()
    assert sd["blocks.0.adaLN_modulation.1.weight"].shape == (4 * 64, 64)
    assert sd["blocks.0.attn.q_norm.weight"].shape == (16,)  # RMSNorm: weight only
    assert "blocks.0.attn.q_norm.bias" not in sd
    assert sd["final_layer.adaLN_modulation.1.weight"].shape == (2 * 64, 64)  # always shifts
    plain = LightningDiT(**{**SMALL, "use_swiglu": False, "use_rope": False, "use_rmsnorm": False})
    keys = set(plain.state_dict())
    assert "blocks.0.mlp.fc1.weight" in keys and "blocks.0.norm1.weight" not in keys
    assert not any(k.startswith("feat_rope") for k in keys)
    sigma = LightningDiT(**{**SMALL, "learn_sigma": True})
    assert sigma.final_layer.linear.weight.shape == (16, 64)


def test_state_dict_roundtrip_strict(tmp_path):
    model = small_model()
    path = tmp_path / "ckpt.pt"
    torch.save(model.state_dict(), path)
    state = torch.load(path, weights_only=True)
    fresh = LightningDiT(**SMALL).eval()
    fresh.load_state_dict(state, strict=True)
    x, t, y = inputs()
    with torch.no_grad():
        assert torch.equal(fresh(x, t, y), model(x, t, y))
    state["blocks.0.mlp.fc1.weight"] = state.pop("blocks.0.mlp.w12.weight")
    with pytest.raises(RuntimeError, match="blocks.0.mlp"):
        fresh.load_state_dict(state, strict=True)


def test_bad_config_and_input_raise():
    with pytest.raises(ValueError, match="divisible by 4"):
        LightningDiT(**{**SMALL, "hidden_size": 24, "num_heads": 4})  # head 6
    with pytest.raises(ValueError, match="num_heads"):
        LightningDiT(**{**SMALL, "hidden_size": 66})
    model = small_model()
    x, t, y = inputs(channels=4)
    with pytest.raises(ValueError, match=r"x must be \(N, 8, 4, 4\)"):
        model(x, t, y)
    x, t, y = inputs()
    with pytest.raises(ValueError, match="t and y"):
        model(x, t[:2], y)


# ----------------------------------------------------------------------------- forward


def test_fresh_model_outputs_zero():
    # adaLN-Zero: the official init zeroes the final linear layer, so the output is exactly 0
    x, t, y = inputs()
    with torch.no_grad():
        out = LightningDiT(**SMALL).eval()(x, t, y)
    assert torch.equal(out, torch.zeros_like(out))


@pytest.mark.parametrize(
    "overrides",
    [{}, {"use_qknorm": True, "wo_shift": True}, {"learn_sigma": True, "use_rmsnorm": False}],
)
def test_forward_shape_and_determinism(overrides):
    model = small_model(**overrides)
    x, t, y = inputs()
    with torch.no_grad():
        out, again = model(x, t, y), model(x, t, y)
    assert out.shape == x.shape  # learn_sigma keeps the first half of the channels
    assert torch.isfinite(out).all()
    assert torch.equal(out, again)


def test_eval_mode_uses_no_label_dropout():
    model = small_model(class_dropout_prob=1.0)  # training drops every label
    _, t, y = inputs()
    table = model.y_embedder.embedding_table.weight
    with torch.no_grad():
        t_emb = model.t_embedder(t)
        assert torch.equal(model.condition(t, y), t_emb + table[y])
        model.train()
        assert torch.equal(model.condition(t, y), t_emb + table[torch.full_like(y, 10)])


@pytest.mark.filterwarnings("ignore:None of the inputs have requires_grad")
def test_checkpointing_gives_same_output():
    x, t, y = inputs()
    with torch.no_grad():
        out = small_model()(x, t, y)
        assert torch.equal(small_model(use_checkpoint=True)(x, t, y), out)


def test_c_fn_identity_is_bit_identical_and_zero_changes_output():
    model = small_model()
    x, t, y = inputs()
    seen = []
    with torch.no_grad():
        out = model(x, t, y)
        assert torch.equal(model(x, t, y, c_fn=lambda c: seen.append(c) or c), out)
        zeroed = model(x, t, y, c_fn=torch.zeros_like)
    assert seen[0].shape == (3, 64)
    assert torch.equal(seen[0], model.condition(t, y))
    assert not torch.allclose(zeroed, out)


# ----------------------------------------------------------------------------- guidance


def test_cfg_scale_one_equals_conditional_forward():
    model = small_model()
    x, t, y = cfg_batch()
    with torch.no_grad():
        out = model.forward_with_cfg(x, t, y, cfg_scale=1.0)
        plain = model(x, t, y)
    cond = plain[:2, :3]
    torch.testing.assert_close(out[:2, :3], cond, rtol=0, atol=1e-6)
    torch.testing.assert_close(out[2:, :3], cond, rtol=0, atol=1e-6)
    assert torch.equal(out[:, 3:], plain[:, 3:])  # unguided channels: raw [cond; uncond]


def test_cfg_guides_first_three_channels():
    model = small_model()
    x, t, y = cfg_batch()
    with torch.no_grad():
        out = model.forward_with_cfg(x, t, y, cfg_scale=4.0)
        plain = model(x, t, y)
    cond, uncond = plain[:2, :3], plain[2:, :3]
    torch.testing.assert_close(out[:2, :3], uncond + 4.0 * (cond - uncond))
    assert torch.equal(out[:2, :3], out[2:, :3])
    assert torch.equal(out[:, 3:], plain[:, 3:])


def test_cfg_interval_reads_first_time_only():
    model = small_model()
    x, t, y = cfg_batch()
    with torch.no_grad():
        plain = model(x, t, y)
        guided = model.forward_with_cfg(x, t, y, 4.0)
        t_low = t.clone()
        t_low[0], t_low[1:] = 0.05, 0.9  # only t[0] is below the start
        off = model.forward_with_cfg(x, t_low, y, 4.0, cfg_interval=True, cfg_interval_start=0.1)
        on = model.forward_with_cfg(x, t, y, 4.0, cfg_interval=True, cfg_interval_start=t[0].item())
        plain_low = model(x, t_low, y)
    assert torch.equal(off[:2, :3], plain_low[:2, :3])  # guidance off: conditional output
    assert torch.equal(on, guided)  # t[0] == start is guided (strict <)
    assert not torch.allclose(guided[:2, :3], plain[:2, :3])


# ----------------------------------------------------------------------------- RoPE, RMSNorm


def test_rope_tables_match_hand_computation():
    # dim 4 per axis -> frequencies 10000^(0/4) = 1 and 10000^(-2/4) = 0.01, each used for one
    # adjacent pair; the first 4 channels rotate with the row, the last 4 with the column.
    rope = VisionRotaryEmbeddingFast(dim=4, pt_seq_len=3)
    assert rope.freqs_cos.shape == (9, 8) and rope.freqs_cos.dtype == torch.float32
    for row in range(3):
        for col in range(3):
            angles = [row, row, 0.01 * row, 0.01 * row, col, col, 0.01 * col, 0.01 * col]
            token = row * 3 + col
            want_cos = torch.tensor([math.cos(a) for a in angles])
            want_sin = torch.tensor([math.sin(a) for a in angles])
            torch.testing.assert_close(rope.freqs_cos[token], want_cos, rtol=0, atol=1e-6)
            torch.testing.assert_close(rope.freqs_sin[token], want_sin, rtol=0, atol=1e-6)
    assert "feat_rope.freqs_cos" in LightningDiT(**SMALL).state_dict()  # persistent


def test_rope_rotates_adjacent_pairs():
    assert rotate_half(torch.tensor([1.0, 2.0, 3.0, 4.0])).tolist() == [-2.0, 1.0, -4.0, 3.0]
    rope = VisionRotaryEmbeddingFast(dim=4, pt_seq_len=2)
    q = torch.randn(2, 3, 4, 8, generator=torch.Generator().manual_seed(0))
    out = rope(q)
    a, b = q[..., 0::2], q[..., 1::2]  # pair (2i, 2i+1) is a point in the plane
    cos, sin = rope.freqs_cos[:, 0::2], rope.freqs_sin[:, 0::2]
    torch.testing.assert_close(out[..., 0::2], a * cos - b * sin)
    torch.testing.assert_close(out[..., 1::2], b * cos + a * sin)
    torch.testing.assert_close(out.norm(dim=-1), q.norm(dim=-1))  # a rotation


def test_rmsnorm_matches_formula():
    norm = RMSNorm(6)
    with torch.no_grad():
        norm.weight.copy_(torch.linspace(0.5, 2.0, 6))
    x = torch.randn(4, 5, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    w = norm.weight.double()
    want = x / torch.sqrt((x**2).mean(-1, keepdim=True) + 1e-6) * w
    torch.testing.assert_close(norm(x.float()), want.float(), rtol=1e-6, atol=1e-6)
    # bf16 input: normalised in fp32, rounded to bf16, then scaled by the fp32 weight -> fp32
    xb = x.to(torch.bfloat16)
    xf = xb.float()
    rounded = (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + 1e-6)).to(torch.bfloat16)
    out = norm(xb)
    assert out.dtype == torch.float32
    assert torch.equal(out, rounded.float() * norm.weight)
