"""Tests of the U-ViT model: released layouts, strict loading, the official forward, c tokens."""

import json
import math
from importlib import resources

import pytest
import torch
import torch.nn.functional as F
from fakes import randomize

from semantic_bottleneck.core.systems import COMBINE, combine
from semantic_bottleneck.core.torchfile import CheckpointError
from semantic_bottleneck.zoo import checkpoint
from semantic_bottleneck.zoo.registry import read_manifest
from semantic_bottleneck.zoo.uvit import (
    INITIAL_T,
    READINGS,
    UViT,
    build_uvit,
    condition_parts,
    load_uvit,
)

MANIFESTS = sorted(
    p.name
    for p in (resources.files("semantic_bottleneck") / "manifests" / "appendix").iterdir()
    if p.name.startswith("uvit_") and p.name.endswith(".json")
)
TINY = dict(
    img_size=8,
    patch_size=2,
    in_chans=3,
    embed_dim=32,
    depth=4,
    num_heads=4,
    mlp_ratio=4,
    qkv_bias=False,
    qk_scale=None,
    mlp_time_embed=False,
    num_classes=11,  # 10 classes and the null row 10, as the guided models lay it out
    use_checkpoint=False,
    conv=True,
    skip=True,
)


def manifest(name: str) -> dict:
    return read_manifest(f"appendix/{name}")


def small_model(seed: int = 0, **overrides) -> UViT:
    """A tiny U-ViT whose every tensor is random (the official init zeroes the biases)."""
    torch.manual_seed(seed)
    return randomize(UViT(**{**TINY, **overrides}), seed + 1).eval()


def inputs(n: int = 3, seed: int = 2, channels: int = 3, side: int = 8):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, channels, side, side, generator=g)
    t = torch.tensor([1000.0, 999.0, 3.5])[:n]
    y = torch.randint(0, 11, (n,), generator=g)
    return x, t, y


# ----------------------------------------------------------------------------- reference


def ref_sinusoid(t: torch.Tensor, dim: int) -> torch.Tensor:
    """libs/uvit.py timestep_embedding: float32 [cos(t f), sin(t f)], f = 10000^(-i / half)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(0, half, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def ref_tokens(sd: dict, cfg: dict, x, t, y) -> torch.Tensor:
    """The official sequence [label, time, patches] + pos_embed, from the state dict alone."""
    p, d = cfg["patch_size"], cfg["embed_dim"]
    patches = F.conv2d(x, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=p)
    patches = patches.flatten(2).transpose(1, 2)
    time = ref_sinusoid(t, d)
    if cfg["mlp_time_embed"]:
        hidden = F.silu(F.linear(time, sd["time_embed.0.weight"], sd["time_embed.0.bias"]))
        time = F.linear(hidden, sd["time_embed.2.weight"], sd["time_embed.2.bias"])
    seq = [time[:, None], patches]
    if y is not None:
        seq = [sd["label_emb.weight"][y][:, None], *seq]
    return torch.cat(seq, dim=1) + sd["pos_embed"]


def ref_block(sd: dict, prefix: str, h, heads: int, skip=None):
    """Official Block._forward with the 'math' attention (explicit softmax)."""

    def lin(x, name):
        return F.linear(x, sd[f"{prefix}.{name}.weight"], sd.get(f"{prefix}.{name}.bias"))

    def norm(x, name):
        w, b = sd[f"{prefix}.{name}.weight"], sd[f"{prefix}.{name}.bias"]
        return F.layer_norm(x, w.shape, w, b, eps=1e-5)

    if skip is not None:
        h = lin(torch.cat([h, skip], dim=-1), "skip_linear")
    n, length, d = h.shape
    dh = d // heads
    q, k, v = lin(norm(h, "norm1"), "attn.qkv").chunk(3, dim=-1)  # '(K H D)': K outermost
    q, k, v = (z.view(n, length, heads, dh).transpose(1, 2) for z in (q, k, v))
    attn = ((q @ k.transpose(-2, -1)) * dh**-0.5).softmax(dim=-1)
    h = h + lin((attn @ v).transpose(1, 2).reshape(n, length, d), "attn.proj")
    return h + lin(F.gelu(lin(norm(h, "norm2"), "mlp.fc1")), "mlp.fc2")


def ref_forward(sd: dict, cfg: dict, x, t, y):
    """libs/uvit.py UViT.forward retyped on the state dict; unpatchify by F.fold."""
    h = ref_tokens(sd, cfg, x, t, y)
    half, heads = cfg["depth"] // 2, cfg["num_heads"]
    skips = []
    for i in range(half):
        h = ref_block(sd, f"in_blocks.{i}", h, heads)
        skips.append(h)
    h = ref_block(sd, "mid_block", h, heads)
    for i in range(half):
        h = ref_block(sd, f"out_blocks.{i}", h, heads, skips.pop() if cfg["skip"] else None)
    w, b = sd["norm.weight"], sd["norm.bias"]
    h = F.linear(F.layer_norm(h, w.shape, w, b), sd["decoder_pred.weight"], sd["decoder_pred.bias"])
    h = h[:, (2 if y is not None else 1) :]
    n, length, _ = h.shape
    p, c = cfg["patch_size"], cfg["in_chans"]
    side = int(length**0.5) * p
    # features (p1, p2, C) -> fold's (C, p1, p2) columns
    cols = h.view(n, length, p, p, c).permute(0, 4, 2, 3, 1).reshape(n, c * p * p, length)
    img = F.fold(cols, output_size=(side, side), kernel_size=p, stride=p)
    if cfg["conv"]:
        img = F.conv2d(img, sd["final_layer.weight"], sd["final_layer.bias"], padding=1)
    return img


# ----------------------------------------------------------------------------- layouts


def test_every_manifest_has_an_initial_t():
    assert len(MANIFESTS) == 6
    assert sorted(INITIAL_T) == MANIFESTS
    # discrete-time H models start at step 1000, the continuous ones at 999 * 1
    assert {k: v for k, v in INITIAL_T.items() if v == 1000.0} == {
        "uvit_h2_imagenet256.json": 1000.0,
        "uvit_h4_imagenet512.json": 1000.0,
    }
    assert all(v == 999.0 for k, v in INITIAL_T.items() if "_h" not in k)


@pytest.mark.parametrize("name", MANIFESTS)
def test_meta_build_matches_manifest(name):
    m = manifest(name)
    with torch.device("meta"):
        model = UViT(**m["config"])
    state = model.state_dict()
    assert list(state) == list(m["keys"])  # same keys in the same order
    assert {k: list(v.shape) for k, v in state.items()} == m["keys"]
    assert {k: str(v.dtype).removeprefix("torch.") for k, v in state.items()} == m["dtypes"]
    assert len(state) == m["num_state_dict_keys"]
    assert sum(p.numel() for p in model.parameters()) == m["num_params"]
    assert [n for n, _ in model.named_buffers()] == m["buffers_in_state_dict"] == []
    # the label table counts the null row of the guided models
    rows = m["keys"]["label_emb.weight"][0]
    assert rows == m["config"]["num_classes"]
    assert m["null_label"] == (1000 if rows == 1001 else None)
    assert model.extras == 2 and m["keys"]["pos_embed"][1] == 2 + model.num_patches


@pytest.mark.parametrize("name", MANIFESTS)
def test_wrong_key_is_explained_for_every_manifest(name):
    with torch.device("meta"):
        model = build_uvit(name.removesuffix(".json"))  # by name, '.json' optional
        state = dict(model.state_dict())
    state["label_embed.weight"] = state.pop("label_emb.weight")
    message = checkpoint.explain_mismatch(model, state)
    assert "missing keys (1): " in message and "label_emb.weight" in message
    assert "unexpected keys (1): " in message and "label_embed.weight" in message


def write_manifest(folder, model: UViT, config: dict):
    keys = {k: list(v.shape) for k, v in model.state_dict().items()}
    path = folder / "uvit_tiny.json"
    path.write_text(json.dumps({"config": config, "keys": keys}))
    return path


def test_load_uvit_strict_roundtrip(tmp_path):
    model = small_model()
    ckpt = tmp_path / "tiny_uvit.pth"
    torch.save(model.state_dict(), ckpt)  # a bare state_dict, as released
    loaded = load_uvit(ckpt, write_manifest(tmp_path, model, TINY))
    assert not loaded.training
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    x, t, y = inputs()
    assert torch.equal(loaded(x, t, y), model(x, t, y))


def test_load_uvit_wrong_key_or_shape_is_a_clear_error(tmp_path):
    model = small_model()
    manifest_path = write_manifest(tmp_path, model, TINY)
    state = model.state_dict()
    state["time_embed.0.weight"] = torch.zeros(4, 4)  # an mlp_time_embed key the file lacks
    state["mid_block.attn.qkv.weight"] = state["mid_block.attn.qkv.weight"][:, :16]
    ckpt = tmp_path / "bad.pth"
    torch.save(state, ckpt)
    with pytest.raises(CheckpointError) as err:
        load_uvit(ckpt, manifest_path)
    message = str(err.value)
    assert "unexpected keys (1): time_embed.0.weight" in message
    assert "mid_block.attn.qkv.weight: expected (96, 32), found (96, 16)" in message


def test_unknown_manifest_name_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="uvit_h2_imagenet256.json"):
        build_uvit("uvit_h9_imagenet256")
    with pytest.raises(ValueError, match="unknown U-ViT manifest"):
        load_uvit(tmp_path / "missing.pth", "dit_xl2.json")


def test_bad_config_raises_value_error():
    with pytest.raises(ValueError, match="num_heads"):
        UViT(**{**TINY, "num_heads": 5})
    with pytest.raises(ValueError, match="pass y"):
        small_model()(*inputs()[:2])  # a conditional model needs its labels
    with pytest.raises(ValueError, match="unconditional"):
        small_model(num_classes=-1).label_token(torch.tensor([0]))


# ----------------------------------------------------------------------------- forward

VARIANTS = {
    "released": {},
    "mlp-time-qkv-bias": {"mlp_time_embed": True, "qkv_bias": True},
    "no-conv": {"conv": False, "in_chans": 4},
    "no-skip": {"skip": False, "depth": 2},
    "unconditional": {"num_classes": -1},
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_forward_matches_official_math(variant):
    cfg = {**TINY, **VARIANTS[variant]}
    model = small_model(**VARIANTS[variant])
    x, t, y = inputs(channels=cfg["in_chans"])
    y = None if cfg["num_classes"] <= 0 else y
    sd = model.state_dict()
    with torch.no_grad():
        out = model(x, t, y)
        ref = ref_forward(sd, cfg, x, t, y)
    assert out.shape == x.shape
    assert torch.allclose(out, ref, atol=1e-5, rtol=1e-5), (out - ref).abs().max()


def test_integer_and_float_steps_give_the_same_output():
    # training feeds int64 steps (train_ldm_discrete.py), the sampler float ones
    model = small_model()
    x, _, y = inputs()
    steps = torch.tensor([1000, 1, 500])
    assert torch.equal(model(x, steps, y), model(x, steps.float(), y))


def test_long_skips_are_last_in_first_out():
    model = small_model(depth=6)  # 3 in-blocks, 3 out-blocks
    outs, skips = [], []
    for block in model.in_blocks:
        block.register_forward_hook(lambda _m, _a, out: outs.append(out))
    for block in model.out_blocks:
        block.register_forward_pre_hook(lambda _m, args: skips.append(args[1]))
    with torch.no_grad():
        model(*inputs())
    assert len(skips) == 3 and all(s is o for s, o in zip(skips, outs[::-1], strict=True))


def test_gradient_checkpointing_keeps_values_and_gradients():
    x, t, y = inputs()
    results = []
    for use_checkpoint in (False, True):
        model = small_model(use_checkpoint=use_checkpoint).train()
        out = model(x, t, y)
        out.square().sum().backward()
        results.append((out.detach(), model.label_emb.weight.grad))
    assert torch.allclose(results[0][0], results[1][0], atol=1e-6)
    assert torch.allclose(results[0][1], results[1][1], atol=1e-5)


# ----------------------------------------------------------------------------- the c tokens


def first_block_input(model: UViT, x, t, y) -> torch.Tensor:
    seen = []
    handle = model.in_blocks[0].register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    with torch.no_grad():
        model(x, t, y)
    handle.remove()
    return seen[0]


@pytest.mark.parametrize("mlp_time_embed", [False, True])
def test_tokens_are_those_the_forward_puts_in_the_sequence(mlp_time_embed):
    model = small_model(mlp_time_embed=mlp_time_embed)
    x, t, y = inputs()
    seq = first_block_input(model, x, t, y)  # (N, 2 + L, D): [label, time, patches] + pos
    cfg = {**TINY, "mlp_time_embed": mlp_time_embed}
    assert torch.allclose(seq, ref_tokens(model.state_dict(), cfg, x, t, y), atol=1e-6)
    pos = model.pos_embed[0].detach()
    with torch.no_grad():
        assert torch.equal(seq[:, 0], model.label_token(y, positional=True))
        assert torch.equal(seq[:, 1], model.time_token(t, positional=True))
        assert torch.allclose(seq[:, 0] - pos[0], model.label_token(y), atol=1e-6)
        assert torch.allclose(seq[:, 1] - pos[1], model.time_token(t), atol=1e-6)
    # condition_parts at one shared t: T is the time token, Y the label tokens
    t0 = INITIAL_T["uvit_h2_imagenet256.json"]
    seq = first_block_input(model, x, torch.full((3,), t0), y)
    time, cond = condition_parts(model, y, t0)
    assert time.shape == (1, 32) and cond.shape == (3, 32)
    assert time.dtype == cond.dtype == torch.float32 and not time.requires_grad
    assert torch.allclose(time.expand(3, -1), seq[:, 1] - pos[1], atol=1e-6)
    assert torch.allclose(cond, seq[:, 0] - pos[0], atol=1e-6)
    time_p, cond_p = condition_parts(model, y, t0, positional=True)
    assert torch.equal(cond_p, seq[:, 0])
    # equal up to rounding: with mlp_time_embed a batch of 1 and of 3 may round apart
    assert torch.allclose(time_p.expand(3, -1), seq[:, 1], atol=1e-6)


def test_unconditional_time_token_takes_pos_row_zero():
    model = small_model(num_classes=-1)
    x, t, _ = inputs()
    seq = first_block_input(model, x, t, None)
    with torch.no_grad():
        assert torch.equal(seq[:, 0], model.time_token(t, positional=True))


def test_time_token_is_the_parameter_free_sinusoid():
    model = small_model()
    assert isinstance(model.time_embed, torch.nn.Identity)
    assert not list(model.time_embed.parameters())
    with torch.no_grad():
        zero = model.time_token(torch.zeros(1))
        assert torch.equal(zero, torch.cat([torch.ones(1, 16), torch.zeros(1, 16)], dim=1))
        t = torch.tensor([1.0, 999.0, 1000.0])
        token = model.time_token(t).double()
    # cosine half first, frequencies 10000^(-i / 16), computed here in float64
    freqs = torch.exp(-math.log(10000) * torch.arange(16, dtype=torch.float64) / 16)
    args = t.double()[:, None] * freqs
    assert torch.allclose(token, torch.cat([args.cos(), args.sin()], dim=1), atol=5e-4)
    assert torch.allclose(token.norm(dim=1), torch.full((3,), 4.0, dtype=torch.float64))


def test_label_tokens_are_embedding_rows():
    model = small_model()
    y = torch.tensor([0, 3, 10, 3])  # 10: the null row
    with torch.no_grad():
        assert torch.equal(model.label_token(y), model.label_emb.weight[y])
        # the label token ignores t, the time token ignores y
        _, a = condition_parts(model, y, 1000.0)
        _, b = condition_parts(model, y, 1.0)
    assert torch.equal(a, b)


def test_readings_combine_the_two_parts():
    assert sorted(READINGS) == sorted(COMBINE)
    model = small_model()
    y = torch.arange(10)
    time, cond = condition_parts(model, y, 999.0)
    concat = combine(time, cond, "concat")
    assert concat.shape == (10, 64)
    assert torch.equal(concat[:, :32], time.expand(10, -1)) and torch.equal(concat[:, 32:], cond)
    assert torch.equal(combine(time, cond, "sum"), time + cond)
