"""Tests of X-MDPT: checkpoint layout of the three releases, forward against a retyped reference
of the official math, the c the blocks read, guidance, and the condition-input file."""

import math

import pytest
import torch
import torch.nn.functional as F
from fakes import TINY_MASKED, randomize, tiny_sd_vae
from torch import nn

from semantic_bottleneck.core.systems import combine
from semantic_bottleneck.core.torchfile import CheckpointError
from semantic_bottleneck.zoo import mdt, xmdpt
from semantic_bottleneck.zoo.registry import read_manifest
from semantic_bottleneck.zoo.xmdpt import INPUTS, XMDPT, condition_parts

# the dims the tiny DINOv2 stand-ins give; the token count is the real one
TINY_DINO = dict(pose_dim=24, image_dim=40, dino_tokens=257)
TINY = dict(input_size=8, patch_size=2, in_channels=4, **TINY_MASKED, **TINY_DINO)


def manifest(name: str) -> dict:
    return read_manifest(f"appendix/{name}.json")


def tiny_of(name: str) -> dict:
    """A manifest's config at a tiny width and latent: the same keys, smaller shapes."""
    return {**manifest(name)["config"], "hidden_size": 32, "num_heads": 4, "input_size": 8}


def small_model(seed: int = 0, **overrides) -> XMDPT:
    torch.manual_seed(seed)
    return randomize(XMDPT(**{**TINY, **overrides}), seed + 1).eval()


def condition_inputs(n: int = 3, seed: int = 2) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "dino_tgt_pose": torch.randn(n, 257, TINY_DINO["pose_dim"], generator=g),
        "dino_src_img": torch.randn(n, 257, TINY_DINO["image_dim"], generator=g),
        "src_latent": torch.randn(n, 4, 8, 8, generator=g),
    }


def noisy(n: int = 3, seed: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 4, 8, 8, generator=g), torch.randint(0, 1000, (n,), generator=g)


# ----------------------------------------------------------------------------- reference


def beit_index(side: int) -> torch.Tensor:
    """BEiT's relative position index, retyped step by step from the official constructor."""
    grid = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    coords = torch.stack(grid).flatten(1)  # (2, L)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0).clone()  # (L, L, 2)
    rel[:, :, 0] += side - 1
    rel[:, :, 1] += side - 1
    rel[:, :, 0] *= 2 * side - 1
    return rel.sum(-1)


def reference_forward(sd, cfg, x, t, pose, img, src, keep):
    """The official inference forward (models.py:573-634) from the state dict alone."""
    d, heads, p = cfg["hidden_size"], cfg["num_heads"], cfg["patch_size"]
    side = cfg["input_size"] // p
    index = beit_index(side)

    def lin(z, name):
        return F.linear(z, sd[f"{name}.weight"], sd[f"{name}.bias"])

    def ln(z, name=None, eps=1e-6):
        if name is None:
            return F.layer_norm(z, (d,), eps=eps)
        return F.layer_norm(z, (d,), sd[f"{name}.weight"], sd[f"{name}.bias"], eps=eps)

    def embed(z):
        w, b = sd["x_embedder.proj.weight"], sd["x_embedder.proj.bias"]
        return F.conv2d(z, w, b, stride=p).flatten(2).transpose(1, 2) + sd["pos_embed"]

    def mlp3(z, name):  # Linear -> GELU -> LayerNorm(1e-12)
        return ln(F.gelu(lin(z, f"{name}.0")), f"{name}.2", eps=1e-12)

    def pool(z, name):  # Conv1d(tokens -> 1, k=1) -> GELU -> LayerNorm(1e-12)
        w, b = sd[f"{name}.0.weight"], sd[f"{name}.0.bias"]
        return ln(F.gelu(F.conv1d(z, w, b)), f"{name}.2", eps=1e-12)

    half = 128
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
    args = t[:, None].float() * freqs[None]
    t_freq = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    t_emb = lin(F.silu(lin(t_freq, "t_embedder.mlp.0")), "t_embedder.mlp.2")

    y2 = pool(mlp3(pose, "mlp_dino_pose"), "conv1d_pose")
    y3 = pool(mlp3(img, "mlp_dino_img"), "conv1d_global")
    y4 = pool(embed(src), "conv1d_local")
    y = mlp3((y2 + y3 + y4).squeeze(1), "mlp_final")
    c = t_emb + keep.float().view(-1, 1) * y

    def attention(z, name):
        n, length, _ = z.shape
        qkv = lin(z, f"{name}.qkv").reshape(n, length, 3, heads, d // heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        table = sd[f"{name}.rel_pos_bias.relative_position_bias_table"]
        bias = table[index.view(-1)].view(length, length, -1).permute(2, 0, 1)
        a = ((q @ k.transpose(-2, -1)) * (d // heads) ** -0.5 + bias).softmax(-1)
        return lin((a @ v).transpose(1, 2).reshape(n, length, d), f"{name}.proj")

    def modulate(z, shift, scale):
        return z * (1 + scale[:, None]) + shift[:, None]

    h = embed(x)
    depth = cfg["depth"]
    for i in range(depth):
        if i == depth - cfg["decode_layer"]:
            h = h + sd["decoder_pos_embed"]
        name = f"blocks.{i}"
        s1, c1, g1, s2, c2, g2 = lin(F.silu(c), f"{name}.adaLN_modulation.1").chunk(6, dim=1)
        h = h + g1[:, None] * attention(modulate(ln(h), s1, c1), f"{name}.attn")
        m = modulate(ln(h), s2, c2)
        m = lin(F.gelu(lin(m, f"{name}.mlp.fc1"), approximate="tanh"), f"{name}.mlp.fc2")
        h = h + g2[:, None] * m
    shift, scale = lin(F.silu(c), "final_layer.adaLN_modulation.1").chunk(2, dim=1)
    h = lin(modulate(ln(h), shift, scale), "final_layer.linear")
    out_c = h.shape[-1] // (p * p)
    h = h.reshape(h.shape[0], side, side, p, p, out_c)
    return torch.einsum("nhwpqc->nchpwq", h).reshape(h.shape[0], out_c, side * p, side * p)


# ----------------------------------------------------------------------------- checkpoints


@pytest.mark.parametrize("name", xmdpt.MANIFESTS)
def test_released_config_matches_manifest(name):
    m = manifest(name)
    with torch.device("meta"):
        model = xmdpt.build_xmdpt(name)
    state = model.state_dict()
    assert list(state) == list(m["keys"])  # same keys in the same order
    assert {k: list(v.shape) for k, v in state.items()} == m["keys"]
    assert {k: str(v.dtype).removeprefix("torch.") for k, v in state.items()} == m["dtypes"]
    assert sorted(n for n, _ in model.named_buffers()) == sorted(m["buffers_in_state_dict"])
    assert [n for n, p in model.named_parameters() if not p.requires_grad] == m["frozen_parameters"]
    assert sum(p.numel() for p in model.parameters()) == m["num_params"]
    assert (
        sum(p.numel() for p in model.parameters() if p.requires_grad) == m["num_trainable_params"]
    )
    defines_c = set(m["conditioning_tensors"]["defines_c"])
    assert defines_c <= set(state)
    assert all(
        k.endswith("adaLN_modulation.1.weight") or k.endswith("adaLN_modulation.1.bias")
        for k in m["conditioning_tensors"]["consumers"]
    )


@pytest.mark.parametrize("name", xmdpt.MANIFESTS)
def test_synthetic_checkpoint_loads_strictly(name, tmp_path, monkeypatch):
    config = {**tiny_of(name), **TINY_DINO}
    torch.manual_seed(0)
    source = randomize(XMDPT(**config), seed=1)
    assert list(source.state_dict()) == list(manifest(name)["keys"])  # the release's key set
    path = tmp_path / "ema_0.9999_300000.pt"
    torch.save(source.state_dict(), path)  # official layout: a bare state dict

    # load_xmdpt reads the architecture from the manifest: here, the tiny one
    real = manifest(name)
    monkeypatch.setattr(xmdpt.registry, "read_manifest", lambda f: {**real, "config": config})
    model = xmdpt.load_xmdpt(path, name)
    assert not model.training
    for key, value in source.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key

    state = torch.load(path, weights_only=True)
    state["mlp_finals.0.weight"] = state.pop("mlp_final.0.weight")
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"missing keys \(1\): .*mlp_final\.0\.weight"):
        xmdpt.load_xmdpt(path, name)
    with pytest.raises(CheckpointError, match=r"unexpected keys \(1\): .*mlp_finals\.0\.weight"):
        xmdpt.load_xmdpt(path, name)


def test_unknown_manifest_and_bad_config_raise():
    with pytest.raises(ValueError, match="xmdpt_s2"):
        xmdpt.build_xmdpt("xmdpt_xl2")
    with pytest.raises(ValueError, match="decode_layer"):
        XMDPT(**{**TINY, "decode_layer": None})
    with pytest.raises(ValueError, match="num_heads"):
        XMDPT(**{**TINY, "num_heads": 5})


# ----------------------------------------------------------------------------- forward and c


def test_forward_equals_reference_of_official_math():
    model = small_model()
    sd = model.state_dict()
    assert torch.equal(sd["blocks.0.attn.rel_pos_bias.relative_position_index"], beit_index(4))
    x, t = noisy()
    inputs = condition_inputs()
    args = (inputs["dino_tgt_pose"], inputs["dino_src_img"], inputs["src_latent"])
    for drop, keep in ((0.0, torch.ones(3)), (1.0, torch.zeros(3))):
        out = model(x, t, *args, drop_prob=drop)
        assert out.shape == (3, 8, 8, 8)  # learn_sigma: 2C channels
        expected = reference_forward(sd, TINY, x, t, *args, keep)
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_condition_parts_equal_the_c_every_modulation_reads():
    model = small_model()
    inputs = condition_inputs()
    x, _ = noisy()
    t = torch.full((3,), 999)
    seen = []
    modulations = [*(b.adaLN_modulation for b in model.blocks), model.final_layer.adaLN_modulation]
    for m in modulations:
        m.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    args = [inputs[name] for name in INPUTS]
    model(x, t, *args)
    time, cond = condition_parts(model, inputs, 999.0)
    assert time.shape == (1, 32) and cond.shape == (3, 32)
    assert time.dtype == cond.dtype == torch.float32
    assert len(seen) == len(modulations)
    for c in seen:
        torch.testing.assert_close(c, combine(time, cond, "sum"), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(model.condition(t, *args), seen[0], rtol=0, atol=0)

    seen.clear()  # the unconditional c: the time part alone, whatever the inputs
    model(x, t, *args, drop_prob=1.0)
    for c in seen:
        torch.testing.assert_close(c, time.expand(3, -1), rtol=1e-5, atol=1e-5)
    other = condition_inputs(seed=9)
    assert torch.equal(
        model.condition(t, *args, drop_prob=1.0),
        model.condition(t, *[other[name] for name in INPUTS], drop_prob=1.0),
    )
    with pytest.raises(KeyError, match="src_latent"):
        condition_parts(model, {k: v for k, v in inputs.items() if k != "src_latent"}, 999.0)


def test_time_part_is_the_dit_sinusoid_mlp_and_condition_part_has_no_t():
    model = small_model()
    inputs = condition_inputs(1)
    t = torch.tensor([0, 999])
    emb = model.t_embedder.mlp(xmdpt.dit.timestep_embedding(t, 256))
    assert torch.equal(model.time_part(t), emb)
    cond = model.condition_part(*[inputs[name] for name in INPUTS])
    assert cond.shape == (1, 32)  # a single condition stays a row
    c = model.condition(t[:1], *[inputs[name] for name in INPUTS])
    torch.testing.assert_close(c, emb[:1] + cond, rtol=1e-5, atol=1e-5)


def test_token_pools_are_weighted_sums_over_tokens():
    model = small_model()
    pool = model.conv1d_pose
    with torch.no_grad():  # weight 1 on token 0 only: the pool reads the CLS row
        pool[0].weight.zero_()
        pool[0].weight[0, 0, 0] = 1.0
        pool[0].bias.zero_()
    z = torch.randn(2, 257, 32)
    expected = F.layer_norm(F.gelu(z[:, :1]), (32,), pool[2].weight, pool[2].bias, eps=1e-12)
    torch.testing.assert_close(pool(z), expected, rtol=0, atol=1e-6)
    assert model.conv1d_local[0].in_channels == model.num_patches == 16


def test_keep_mask_known_answers():
    assert mdt.keep_mask(4, 0.0).tolist() == [True] * 4
    assert mdt.keep_mask(4, 1.0).tolist() == [False] * 4
    torch.manual_seed(0)
    share = mdt.keep_mask(20000, 0.1).float().mean().item()
    assert abs(share - 0.9) < 0.01  # training's prob=0.1 keeps about 90%


def test_decoder_pos_embed_enters_before_the_last_decode_layer_blocks():
    model = small_model(depth=4, decode_layer=2)
    outs, ins = [], []
    model.blocks[1].register_forward_hook(lambda _m, _a, out: outs.append(out))
    model.blocks[2].register_forward_pre_hook(lambda _m, args: ins.append(args[0]))
    inputs = condition_inputs()
    model(*noisy(), *[inputs[name] for name in INPUTS])
    assert torch.equal(ins[0], outs[0] + model.decoder_pos_embed)


def test_c_fn_reaches_every_block():
    model = small_model()
    inputs = [condition_inputs()[name] for name in INPUTS]
    x, t = noisy()
    out = model(x, t, *inputs)
    assert torch.equal(model(x, t, *inputs, c_fn=lambda c: c), out)
    assert not torch.allclose(model(x, t, *inputs, c_fn=torch.zeros_like), out)


@pytest.mark.parametrize("t_value", [999, 0, 500])
def test_cfg_is_power_cosine_on_every_channel(t_value):
    model = small_model()
    inputs = condition_inputs()
    args = [inputs[name] for name in INPUTS]
    x, _ = noisy()
    t = torch.full((3,), t_value)
    cond = model(x, t, *args, drop_prob=0.0)
    uncond = model(x, t, *args, drop_prob=1.0)
    # infer_xmdpt.py: cfg_scale 2, scale_pow 0.01; the weight is 2 at t = 0, 1.98905 at t = 999
    w = 1 + (1 - math.cos(((1 - t_value / 1000) ** 0.01) * math.pi)) / 2
    if t_value == 999:
        assert w == pytest.approx(1.98905, abs=1e-5)
    out = model.forward_with_cfg(x, t, 2.0, 1000, 0.01, *args)
    torch.testing.assert_close(out, uncond + w * (cond - uncond), rtol=1e-5, atol=1e-5)
    assert torch.equal(model.forward_with_cfg(x, t, None, 1000, 0.01, *args), cond)


def test_cross_attention_is_scaled_dot_product_with_bias():
    attn = small_model().sideblocks_cross[0].attn
    g = torch.Generator().manual_seed(0)
    x, ctx = torch.randn(2, 16, 32, generator=g), torch.randn(2, 16, 32, generator=g)
    q = attn.to_q(x).view(2, 16, 4, 8).transpose(1, 2)
    k, v = (z.view(2, 16, 4, 8).transpose(1, 2) for z in attn.to_kv(ctx).chunk(2, dim=-1))
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=attn.rel_pos_bias())
    ref = attn.proj(ref.transpose(1, 2).reshape(2, 16, 32))
    torch.testing.assert_close(attn(x, ctx), ref, rtol=1e-5, atol=1e-5)


def test_masked_training_forward_runs_side_blocks_and_is_seeded():
    model = small_model(mask_ratio=0.5).train()
    assert model.mask_token.requires_grad
    inputs = [condition_inputs()[name] for name in INPUTS]
    x, t = noisy()
    side = []
    for block in (*model.sideblocks, *model.sideblocks_cross):
        block.register_forward_hook(lambda _m, _a, out: side.append(out))
    torch.manual_seed(3)
    out = model(x, t, *inputs, drop_prob=0.1, enable_mask=True)
    assert len(side) == 2 and out.shape == (3, 8, 8, 8)
    torch.manual_seed(3)
    assert torch.equal(model(x, t, *inputs, drop_prob=0.1, enable_mask=True), out)
    plain = model(x, t, *inputs, enable_mask=False)
    assert not torch.allclose(plain, out)
    assert not small_model().mask_token.requires_grad  # inference build: stored, frozen


# ----------------------------------------------------------------------------- input file


class FakeDino(nn.Module):
    """DINOv2's `get_intermediate_layers` contract: 14-pixel patches, final norm, CLS apart."""

    def __init__(self, width: int, seed: int):
        super().__init__()
        torch.manual_seed(seed)
        self.patch = nn.Conv2d(3, width, 14, 14)
        self.norm = nn.LayerNorm(width)

    def get_intermediate_layers(self, x, n=1, return_class_token=False):
        assert x.shape[-2:] == (224, 224) and n == 1 and return_class_token
        tokens = self.norm(self.patch(x).flatten(2).transpose(1, 2))  # (N, 256, width)
        return ((tokens, tokens.mean(1)),)


def test_encode_conditions_writes_the_inputs_file(tmp_path):
    g = torch.Generator().manual_seed(0)
    source = torch.rand(2, 3, 16, 16, generator=g) * 2 - 1
    pose = torch.rand(2, 3, 16, 16, generator=g)
    dino_pose, dino_image, vae = FakeDino(24, 0), FakeDino(40, 1), tiny_sd_vae()
    inputs = xmdpt.encode_conditions(
        source,
        pose,
        dino_pose=dino_pose,
        dino_image=dino_image,
        vae=vae,
        generator=torch.Generator().manual_seed(1),
    )
    assert list(inputs) == list(INPUTS)
    assert inputs["dino_tgt_pose"].shape == (2, 257, 24)
    assert inputs["dino_src_img"].shape == (2, 257, 40)
    assert inputs["src_latent"].shape == (2, 4, 8, 8)
    assert all(v.dtype == torch.float32 for v in inputs.values())
    resized = F.interpolate(pose, size=(224, 224), mode="bicubic", align_corners=False)
    patches, cls = dino_pose.get_intermediate_layers(resized, 1, return_class_token=True)[0]
    torch.testing.assert_close(inputs["dino_tgt_pose"][:, 0], cls, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(inputs["dino_tgt_pose"][:, 1:], patches, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        dist = vae.encode(source).latent_dist
    assert not torch.allclose(inputs["src_latent"], dist.mean * xmdpt.LATENT_SCALE)  # a sample

    path = xmdpt.save_inputs(inputs, tmp_path / "conditions.safetensors")
    back = xmdpt.read_inputs(path)
    assert all(torch.equal(back[k], inputs[k]) for k in INPUTS)
    time, cond = condition_parts(small_model(), back, 999)
    assert time.shape == (1, 32) and cond.shape == (2, 32)
    with pytest.raises(ValueError, match="disagree on N"):
        xmdpt.save_inputs({**inputs, "src_latent": inputs["src_latent"][:1]}, path)
