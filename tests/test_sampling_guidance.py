"""Classifier-free guidance: the 3-channel quirk, the interval, MDT's power-cosine schedule."""

import math

import pytest
import torch

from semantic_bottleneck.sampling.guidance import (
    Guidance,
    combine,
    guidance_active,
    guided,
    power_cosine_scale,
    validate_guidance,
)

NULL = 10


class LabelModel:
    """Output = (y + 1) on every channel for class rows, 0 for null rows; records batch sizes."""

    def __init__(self):
        self.batches = []
        self.c_fns = []

    def __call__(self, x, t, y, c_fn=None):
        self.batches.append(x.shape[0])
        self.c_fns.append(c_fn)
        value = torch.where(y == NULL, torch.zeros_like(y), y + 1).to(x.dtype)
        return value.view(-1, 1, 1, 1) * torch.ones_like(x)


def _inputs(n=3, channels=4, t=0.5):
    x = torch.zeros(n, channels, 2, 2)
    return x, torch.full((n,), t), torch.arange(n)


def test_three_channel_quirk_leaves_the_other_channels_conditional():
    model = LabelModel()
    x, t, y = _inputs()
    out = guided(model, Guidance(scale=4.0, guided_channels=3, null_class=NULL))(x, t, y)
    cond = (y + 1).float().view(-1, 1, 1)
    torch.testing.assert_close(out[:, :3], 4.0 * cond.expand(-1, 3, 4).view(3, 3, 2, 2))
    torch.testing.assert_close(out[:, 3:], cond.expand(-1, 1, 4).view(3, 1, 2, 2))
    assert model.batches == [6]  # one call on [x; x] with labels [y; null]


def test_guiding_all_channels_when_the_quirk_is_off():
    model = LabelModel()
    x, t, y = _inputs()
    out = guided(model, Guidance(scale=4.0, guided_channels=None, null_class=NULL))(x, t, y)
    torch.testing.assert_close(out, 4.0 * (y + 1).float().view(-1, 1, 1, 1).expand_as(x))


def test_combine_is_uncond_plus_scale_times_difference():
    cond, uncond = torch.randn(2, 5, 3), torch.randn(2, 5, 3)
    out = combine(cond, uncond, 1.5, 3)
    torch.testing.assert_close(out[:, :3], uncond[:, :3] + 1.5 * (cond[:, :3] - uncond[:, :3]))
    assert torch.equal(out[:, 3:], cond[:, 3:])
    with pytest.raises(ValueError):
        combine(cond, uncond, 1.5, 6)


@pytest.mark.parametrize("t, expected_batch", [(0.8, 3), (0.7, 6), (0.3, 6), (0.0, 6)])
def test_guidance_interval_is_closed_and_skips_the_unconditional_pass(t, expected_batch):
    model = LabelModel()
    x, tt, y = _inputs(t=t)
    g = Guidance(scale=2.0, interval=(0.0, 0.7), null_class=NULL)
    out = guided(model, g)(x, tt, y)
    assert model.batches == [expected_batch]
    factor = 2.0 if expected_batch == 6 else 1.0
    torch.testing.assert_close(out, factor * (y + 1).float().view(-1, 1, 1, 1).expand_as(x))


def test_interval_compares_in_the_time_dtype():
    g = Guidance(scale=2.0, interval=(0.125, 1.0))
    assert not guidance_active(g, torch.full((2,), 0.12, dtype=torch.float32))
    assert guidance_active(g, torch.full((2,), 0.125, dtype=torch.float32))
    # REPA: t <= 0.7 in float64
    repa = Guidance(scale=1.8, interval=(0.0, 0.7))
    assert guidance_active(repa, torch.tensor([0.7], dtype=torch.float64))
    assert not guidance_active(repa, torch.tensor([0.7000001], dtype=torch.float64))


def test_scale_one_never_runs_the_unconditional_branch():
    model = LabelModel()
    x, t, y = _inputs()
    out = guided(model, Guidance(scale=1.0, null_class=NULL))(x, t, y)
    assert model.batches == [3]
    torch.testing.assert_close(out, (y + 1).float().view(-1, 1, 1, 1).expand_as(x))


def test_guided_batch_passes_c_fn_through():
    model = LabelModel()
    x, t, y = _inputs()

    def c_fn(c):
        return c

    guided(model, Guidance(scale=2.0, null_class=NULL))(x, t, y, c_fn)
    assert model.c_fns == [c_fn]


def test_power_cosine_values():
    t = torch.tensor([0, 500, 1000])
    # pow 1: s(500) = (1 - cos(pi / 2)) / 2 = 1/2
    torch.testing.assert_close(
        power_cosine_scale(t, 3.0, 1000, 1.0), torch.tensor([3.0, 2.0, 1.0]), atol=1e-6, rtol=0
    )
    # pow 4 (MDT): s(500) = (1 - cos(pi / 16)) / 2
    s = (1 - math.cos(math.pi / 16)) / 2
    expected = torch.tensor([3.8, 1 + 2.8 * s, 1.0])
    torch.testing.assert_close(power_cosine_scale(t, 3.8, 1000, 4.0), expected, atol=1e-6, rtol=0)
    # at the initial DDPM step (t = 999) guidance is practically off
    assert abs(power_cosine_scale(torch.tensor([999]), 3.8).item() - 1.0) < 1e-6


def test_power_cosine_schedule_scales_each_row():
    model = LabelModel()
    x, _, y = _inputs()
    t = torch.tensor([0, 500, 1000])
    g = Guidance(
        scale=3.0, guided_channels=None, schedule="power_cosine", scale_pow=1.0, null_class=NULL
    )
    out = guided(model, g)(x, t, y)
    w = torch.tensor([3.0, 2.0, 1.0]).view(-1, 1, 1, 1)
    torch.testing.assert_close(
        out, w * (y + 1).float().view(-1, 1, 1, 1).expand_as(x), atol=1e-5, rtol=0
    )


@pytest.mark.parametrize(
    "g",
    [
        Guidance(scale=0.5),
        Guidance(scale=float("nan")),
        Guidance(scale=2.0, guided_channels=0),
        Guidance(scale=2.0, interval=(0.7, 0.0)),
        Guidance(scale=2.0, schedule="linear"),
        Guidance(scale=2.0, null_class=-1),
    ],
)
def test_bad_guidance_settings_raise(g):
    with pytest.raises(ValueError):
        validate_guidance(g)
    with pytest.raises(ValueError):
        guided(LabelModel(), g)
