"""`forward_with_cfg` per family: the official signature, and the same numbers as `sampling.guidance`.

Each family that keeps the method (dit, sit, mg, lightningdit, mdt, mdtv2) is run on a tiny random
model; `guided(model, headline guidance)` on the N conditional rows must give bit for bit the
first half of `forward_with_cfg` on the 2N-row batch: both run the model once on the identical
[x; x], [t; t], [y; null] batch and apply the same elementwise ops in the same order. REPA's
official SiT has no such method, so neither does ours.
"""

from __future__ import annotations

import dataclasses
import inspect

import pytest
import torch
from fakes import TINY_LIGHTNINGDIT, TINY_MDT

from semantic_bottleneck.sampling import default_config
from semantic_bottleneck.sampling.guidance import Guidance, guided
from semantic_bottleneck.zoo import build_model
from semantic_bottleneck.zoo.dit import REPASiT

NULL = 10  # the tiny models have 10 classes, so the null label is 10
N = 3

DIT_SMALL = dict(
    input_size=8, patch_size=2, in_channels=4, hidden_size=32, depth=2, num_heads=2, num_classes=10
)
TINY = {
    "dit": DIT_SMALL,
    "sit": DIT_SMALL,
    "mg": DIT_SMALL,
    "lightningdit": TINY_LIGHTNINGDIT,  # 8 latent channels: 5 pass through unguided
    "mdt": {**TINY_MDT, "decode_layer": 1},
    "mdtv2": {**TINY_MDT, "decode_layer": 2},
}
DDPM_TIME = {"dit", "mdt", "mdtv2"}  # int64 DDPM index; the others take a float time in [0, 1]

# the official signature of each family's method, defaults included (without our c_fn)
OFFICIAL_SIGNATURES = {
    "dit": [("x", None), ("t", None), ("y", None), ("cfg_scale", None)],
    "sit": [("x", None), ("t", None), ("y", None), ("cfg_scale", None)],
    "mg": [("x", None), ("t", None), ("y", None), ("cfg_scale", None)],
    "lightningdit": [
        ("x", None),
        ("t", None),
        ("y", None),
        ("cfg_scale", None),
        ("cfg_interval", None),
        ("cfg_interval_start", None),
    ],
    "mdt": [
        ("x", None),
        ("t", None),
        ("y", None),
        ("cfg_scale", None),
        ("diffusion_steps", 1000),
        ("scale_pow", 4.0),
    ],
}
OFFICIAL_SIGNATURES["mdtv2"] = OFFICIAL_SIGNATURES["mdt"]
HEADLINE = ["dit", "sit", "lightningdit", "mdt", "mdtv2"]  # families whose headline guides


def tiny(family: str, seed: int = 0, **overrides) -> torch.nn.Module:
    """A tiny eval-mode model with every weight random (the official init zeroes the output)."""
    torch.manual_seed(seed)
    model = build_model(family, **{**TINY[family], **overrides}).eval()
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.2 * torch.randn(p.shape, generator=g))
    return model


def batch(family: str, t_value=None, seed: int = 2):
    """N rows of (x, t, y); every row shares t (as in a sampler step) unless t_value is a list."""
    config = TINY[family]
    g = torch.Generator().manual_seed(seed)
    size = config["input_size"]
    x = torch.randn(N, config["in_channels"], size, size, generator=g)
    y = torch.randint(0, NULL, (N,), generator=g)
    if t_value is None:
        t_value = 500 if family in DDPM_TIME else 0.5
    dtype = torch.int64 if family in DDPM_TIME else torch.float32
    t = torch.as_tensor(t_value, dtype=dtype).expand(N).clone()
    return x, t, y


def doubled(x, t, y):
    """The 2N-row batch the official samplers feed `forward_with_cfg`."""
    return torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, torch.full_like(y, NULL)])


def headline(family: str) -> Guidance:
    return dataclasses.replace(default_config(family).guidance, null_class=NULL)


def official_kwargs(family: str, guidance: Guidance) -> dict:
    """forward_with_cfg's keywords as the family's official sampler passes them."""
    kwargs = dict(cfg_scale=guidance.scale)
    if family == "lightningdit":
        kwargs.update(cfg_interval=True, cfg_interval_start=guidance.interval[0])
    if family in ("mdt", "mdtv2"):
        kwargs.update(diffusion_steps=guidance.diffusion_steps, scale_pow=guidance.scale_pow)
    return kwargs


# ----------------------------------------------------------------------------- signatures


@pytest.mark.parametrize("family", sorted(OFFICIAL_SIGNATURES))
def test_signature_and_defaults_are_the_official_ones(family):
    params = list(inspect.signature(tiny(family).forward_with_cfg).parameters.values())
    assert params[-1].name == "c_fn" and params[-1].default is None  # the project's hook, last
    got = [(p.name, None if p.default is inspect.Parameter.empty else p.default) for p in params]
    assert got[:-1] == OFFICIAL_SIGNATURES[family]
    required = [p.name for p in params if p.default is inspect.Parameter.empty]
    assert required == (
        ["x", "t", "y"] if family in ("mdt", "mdtv2") else ["x", "t", "y", "cfg_scale"]
    )


def test_repa_has_no_forward_with_cfg():
    # sihyun-yu/REPA models/sit.py defines none; REPA guides in samplers.py (sampling.repa)
    model = build_model(
        "repa", **DIT_SMALL, decoder_hidden_size=32, encoder_depth=1, z_dims=[12], projector_dim=16
    )
    assert not hasattr(REPASiT, "forward_with_cfg")
    assert not hasattr(model, "forward_with_cfg")
    with pytest.raises(AttributeError, match="forward_with_cfg"):
        model.forward_with_cfg  # noqa: B018


# ----------------------------------------------------------------------------- equal to guided


@pytest.mark.parametrize("family", HEADLINE)
def test_first_half_equals_guided_with_the_headline_guidance(family):
    model, guidance = tiny(family), headline(family)
    assert guidance.enabled
    x, t, y = batch(family)
    xx, tt, yy = doubled(x, t, y)
    with torch.no_grad():
        out = model.forward_with_cfg(xx, tt, yy, **official_kwargs(family, guidance))
        expected = guided(model, guidance)(x, t, y)
        raw = model(xx, tt, yy)
    k = guidance.guided_channels
    assert out.shape == (2 * N, *expected.shape[1:])  # 2N rows, as officially
    assert torch.equal(out[:N], expected)
    assert torch.equal(out[N:, :k], out[:N, :k])  # the guided eps in both halves
    assert torch.equal(out[N:, k:], raw[N:, k:])  # unguided channels: the raw null rows
    assert not torch.equal(out[:N, :k], raw[:N, :k])  # guidance did act


@pytest.mark.parametrize("family", ["dit", "sit", "mg"])
def test_only_the_first_half_of_x_is_read(family):
    model = tiny(family)
    x, t, y = batch(family)
    xx, tt, yy = doubled(x, t, y)
    garbage = torch.cat([x, torch.randn_like(x) * 100])
    with torch.no_grad():
        assert torch.equal(
            model.forward_with_cfg(garbage, tt, yy, 4.0), model.forward_with_cfg(xx, tt, yy, 4.0)
        )


def test_dit_guides_three_channels_of_eight():
    # DiT's quirk: channel 3 of epsilon and the 4 variance channels keep the row's own output
    model = tiny("dit")
    x, t, y = batch("dit")
    xx, tt, yy = doubled(x, t, y)
    with torch.no_grad():
        out = model.forward_with_cfg(xx, tt, yy, cfg_scale=4.0)
        raw = model(xx, tt, yy)
        expected = guided(model, Guidance(scale=4.0, guided_channels=3, null_class=NULL))(x, t, y)
    assert out.shape == (2 * N, 8, 8, 8)
    assert torch.equal(out[:N], expected)
    assert torch.equal(out[:, 3:], raw[:, 3:])
    cond, uncond = raw[:N, 3], raw[N:, 3]
    assert not torch.allclose(out[:N, 3], uncond + 4.0 * (cond - uncond))


def test_sit_guides_three_of_its_four_velocity_channels():
    model = tiny("sit")
    x, t, y = batch("sit")
    xx, tt, yy = doubled(x, t, y)
    with torch.no_grad():
        out = model.forward_with_cfg(xx, tt, yy, cfg_scale=4.0)
        raw = model(xx, tt, yy)
    assert out.shape == (2 * N, 4, 8, 8)  # SiT's forward already dropped the sigma half
    assert torch.equal(out[:, 3:], raw[:, 3:])


# ----------------------------------------------------------------------------- MG


def test_mg_guides_every_channel_unlike_sit():
    sit, mg = tiny("sit", learn_sigma=False), tiny("mg")
    mg.load_state_dict(sit.state_dict())  # same layers; the null row exists in both (p = 0.1)
    x, t, y = batch("mg")
    xx, tt, yy = doubled(x, t, y)
    with torch.no_grad():
        out = mg.forward_with_cfg(xx, tt, yy, cfg_scale=1.45)
        expected = guided(mg, Guidance(scale=1.45, guided_channels=None, null_class=NULL))(x, t, y)
        sit_out = sit.forward_with_cfg(xx, tt, yy, cfg_scale=1.45)
    assert out.shape == (2 * N, 4, 8, 8)
    assert torch.equal(out[:N], expected) and torch.equal(out[N:], expected)
    assert torch.equal(out[:, :3], sit_out[:, :3])
    assert not torch.equal(out[:, 3], sit_out[:, 3])  # SiT leaves channel 3 unguided


def test_mg_headline_is_unguided_and_scale_one_is_the_conditional_output():
    model, guidance = tiny("mg"), headline("mg")
    assert not guidance.enabled  # MG samples without guidance
    x, t, y = batch("mg")
    xx, tt, yy = doubled(x, t, y)
    with torch.no_grad():
        out = model.forward_with_cfg(xx, tt, yy, cfg_scale=guidance.scale)
        expected = guided(model, guidance)(x, t, y)
    assert expected.shape == (N, 4, 8, 8)  # guided() runs the N conditional rows alone
    # uncond + 1 * (cond - uncond) is cond up to the rounding of the difference, and the N-row
    # batch's matmuls need not round like the 2N-row one's (about 5e-6 here): not bit for bit
    torch.testing.assert_close(out[:N], expected, rtol=0, atol=1e-4)
    torch.testing.assert_close(out[N:], expected, rtol=0, atol=1e-4)


# ----------------------------------------------------------------------------- LightningDiT


def test_lightningdit_interval_start_is_guided_and_below_it_is_conditional():
    model, guidance = tiny("lightningdit"), headline("lightningdit")
    start = guidance.interval[0]
    assert start == 0.125
    kwargs = official_kwargs("lightningdit", guidance)
    with torch.no_grad():
        # t == start: guided by both (official test is t[0] < start)
        x, t, y = batch("lightningdit", start)
        out = model.forward_with_cfg(*doubled(x, t, y), **kwargs)
        assert torch.equal(out[:N], guided(model, guidance)(x, t, y))
        raw = model(*doubled(x, t, y))
        assert not torch.equal(out[:N, :3], raw[:N, :3])
        # t just below start: no guidance, the conditional rows on every channel
        x, t, y = batch("lightningdit", 0.1)
        xx, tt, yy = doubled(x, t, y)
        out = model.forward_with_cfg(xx, tt, yy, **kwargs)
        raw = model(xx, tt, yy)
        expected = guided(model, guidance)(x, t, y)
    assert torch.equal(out[:N], raw[:N]) and torch.equal(out[N:, :3], raw[:N, :3])
    assert torch.equal(out[N:, 3:], raw[N:, 3:])
    # guided() runs only the N conditional rows there, and an N-row batch's matmuls need not
    # round like a 2N-row one's (about 6e-6 here)
    torch.testing.assert_close(out[:N], expected, rtol=0, atol=1e-4)


def test_lightningdit_interval_is_off_unless_exactly_true():
    model = tiny("lightningdit")
    x, t, y = batch("lightningdit", 0.1)
    xx, tt, yy = doubled(x, t, y)
    with torch.no_grad():
        plain = model.forward_with_cfg(xx, tt, yy, 6.7)  # defaults None: always guided
        for flag in (None, False, 1):
            out = model.forward_with_cfg(
                xx, tt, yy, 6.7, cfg_interval=flag, cfg_interval_start=0.125
            )
            assert torch.equal(out, plain)
        expected = guided(model, Guidance(scale=6.7, guided_channels=3, null_class=NULL))(x, t, y)
    assert torch.equal(plain[:N], expected)


# ----------------------------------------------------------------------------- MDT


@pytest.mark.parametrize("family", ["mdt", "mdtv2"])
def test_mdt_power_cosine_weight_per_row_with_scale_pow(family):
    model = tiny(family)
    guidance = dataclasses.replace(headline(family), scale_pow=2.0)
    x, t, y = batch(family, [0, 500, 999])  # one weight per row, read from the first half of t
    xx, tt, yy = doubled(x, t, y)
    with torch.no_grad():
        out = model.forward_with_cfg(xx, tt, yy, **official_kwargs(family, guidance))
        expected = guided(model, guidance)(x, t, y)
        default_pow = model.forward_with_cfg(xx, tt, yy, cfg_scale=guidance.scale)
    assert torch.equal(out[:N], expected) and torch.equal(out[N:, :3], expected[:, :3])
    assert not torch.equal(out[:N, :3], default_pow[:N, :3])  # scale_pow is used


@pytest.mark.parametrize("family", ["mdt", "mdtv2"])
def test_mdt_without_cfg_scale_is_the_plain_forward(family):
    model = tiny(family)
    xx, tt, yy = doubled(*batch(family))
    with torch.no_grad():
        assert torch.equal(model.forward_with_cfg(xx, tt, yy), model(xx, tt, yy))
