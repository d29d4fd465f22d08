"""Every sampler: shapes, determinism, per-sample seeds, the times the model sees, closed forms."""

import math

import numpy as np
import pytest
import torch
from fakes import randomize

from semantic_bottleneck import sampling as S
from semantic_bottleneck.sampling import schedules as sch
from semantic_bottleneck.sampling.guidance import Guidance
from semantic_bottleneck.zoo import build_model, denoiser

NUM_CLASSES = 10
KW = dict(input_size=8, patch_size=2, in_channels=4, hidden_size=32, depth=1, num_heads=2)
# (zoo family, sampler family, mode, small overrides)
CASES = [
    ("dit", "dit", "ddpm", {"num_sampling_steps": 8}),
    ("dit", "mdt", "ddpm", {"num_sampling_steps": 8}),
    ("sit", "sit", "sde", {"num_steps": 8}),
    ("sit", "sit", "ode", {"num_steps": 6}),
    ("sit", "lightningdit", "ode", {"num_steps": 8}),
    ("repa", "repa", "sde", {"num_steps": 8}),
    ("repa", "repa", "ode", {"num_steps": 6, "heun": True}),
    ("mg", "mg", "sde", {"num_steps": 8}),
]
IDS = [f"{c[1]}-{c[2]}" for c in CASES]


def tiny_model(family):
    extra = {}
    if family == "repa":
        extra = dict(decoder_hidden_size=32, encoder_depth=1, z_dims=[8], projector_dim=16)
    model = build_model(family, num_classes=NUM_CLASSES, **KW, **extra)
    return randomize(model, 0, scale=0.05).eval()


def run(case, seeds, labels):
    zoo_family, family, mode, overrides = case
    config = S.default_config(family, mode, null_class=NUM_CLASSES, **overrides)
    model_fn = denoiser(tiny_model(zoo_family))
    noise = S.sample_noise((4, 8, 8), seeds)
    return S.sample(model_fn, noise, labels, config, S.sample_generators(seeds))


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_sampler_shape_and_bitwise_determinism(case):
    labels = torch.tensor([1, 2, 3])
    out = run(case, [0, 1, 2], labels)
    assert out.shape == (3, 4, 8, 8) and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    assert torch.equal(out, run(case, [0, 1, 2], labels))
    assert not torch.equal(out, run(case, [5, 1, 2], labels))


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_per_sample_seeding_is_batch_size_independent(case):
    labels = torch.tensor([4, 5, 6, 7])
    whole = run(case, [10, 11, 12, 13], labels)
    halves = torch.cat([run(case, [10, 11], labels[:2]), run(case, [12, 13], labels[2:])])
    torch.testing.assert_close(whole, halves, rtol=1e-5, atol=1e-5)


class Spy:
    """A fake model: records (t, batch size) and returns a fixed function of x."""

    def __init__(self, out=lambda x, t: torch.zeros_like(x), channels_factor=1):
        self.calls, self.out, self.factor = [], out, channels_factor

    def __call__(self, x, t, y, c_fn=None):
        self.calls.append((t.clone(), x.shape[0]))
        out = self.out(x, t)
        return torch.cat([out] * self.factor, dim=1) if self.factor > 1 else out


def _noise(n=2):
    return S.sample_noise((4, 2, 2), list(range(n))), torch.arange(n)


@pytest.mark.parametrize("sampler", [S.ddpm_sample, S.sit_sde_sample, S.repa_sde_sample])
def test_stochastic_samplers_need_a_generator_before_any_model_call(sampler):
    spy = Spy(channels_factor=2)
    noise, labels = _noise()
    with pytest.raises(ValueError, match="generator"):
        sampler(spy, noise, labels)
    with pytest.raises(ValueError, match="generator"):
        sampler(spy, noise, labels, generator=S.sample_generators([0]))  # 1 for 2 samples
    assert spy.calls == []


def test_ddpm_feeds_the_original_timesteps_with_cfg_batches():
    spy = Spy(channels_factor=2)
    noise, labels = _noise()
    S.ddpm_sample(
        spy,
        noise,
        labels,
        S.default_config("dit", null_class=NUM_CLASSES),
        S.sample_generators([0, 1]),
    )
    kept = sch.space_timesteps(1000, "250")
    assert [int(t[0]) for t, _ in spy.calls] == kept[::-1]  # 999, 995, ..., 4, 0
    assert all(t.dtype == torch.int64 for t, _ in spy.calls)
    assert {b for _, b in spy.calls} == {4}  # [x; x] with labels [y; null]


def test_sit_sde_time_grid_and_last_mean_step():
    spy = Spy()
    noise, labels = _noise()
    S.sit_sde_sample(
        spy,
        noise,
        labels,
        S.default_config("sit", null_class=NUM_CLASSES),
        S.sample_generators([0, 1]),
    )
    times = torch.stack([t[0] for t, _ in spy.calls])
    grid = torch.linspace(0, 0.96, 250)
    assert len(spy.calls) == 250 and times.dtype == torch.float32
    assert torch.equal(times[:249], grid[:249])  # 249 Euler-Maruyama steps
    assert times[249] == torch.tensor(0.96)  # then the mean step of size 0.04 from 0.96


def test_repa_sde_time_grid_and_guidance_interval():
    spy = Spy()
    noise, labels = _noise()
    config = S.default_config("repa", null_class=NUM_CLASSES)
    S.repa_sde_sample(spy, noise, labels, config, S.sample_generators([0, 1]))
    grid64 = torch.linspace(1.0, 0.04, 250, dtype=torch.float64)
    times = torch.stack([t[0] for t, _ in spy.calls])
    assert len(spy.calls) == 250  # 249 Euler-Maruyama steps + the mean step from 0.04
    assert torch.equal(times, grid64.float())
    batches = torch.tensor([b for _, b in spy.calls])
    assert torch.equal(batches, torch.where(grid64 <= 0.7, 4, 2))  # guidance only for t <= 0.7


def test_lightningdit_shifted_grid_and_cfg_interval():
    spy = Spy()
    noise, labels = _noise()
    config = S.default_config("lightningdit", null_class=NUM_CLASSES)
    S.flow_ode_sample(spy, noise, labels, config)
    grid = torch.from_numpy(sch.flow_ode_grid(250, 0.3)).float()
    times = torch.stack([t[0] for t, _ in spy.calls])
    assert len(spy.calls) == 249 and torch.equal(times, grid[:-1])
    batches = torch.tensor([b for _, b in spy.calls])
    assert torch.equal(batches, torch.where(grid[:-1] >= 0.125, 4, 2))


def test_ode_step_counts_and_heun_evaluations():
    noise, labels = _noise()
    spy = Spy()
    config = S.FlowODEConfig(num_steps=5, method="heun2", timestep_shift=0.0)
    S.flow_ode_sample(spy, noise, labels, config)
    assert [float(t[0]) for t, _ in spy.calls] == [0.0, 0.25, 0.25, 0.5, 0.5, 0.75, 0.75, 1.0]
    spy = Spy()
    S.repa_ode_sample(
        spy, noise, labels, S.REPAODEConfig(num_steps=4, heun=True, guidance=Guidance())
    )
    # Heun on every step but the last; t = 1 -> 0
    assert [float(t[0]) for t, _ in spy.calls] == [1.0, 0.75, 0.75, 0.5, 0.5, 0.25, 0.25]


def test_ddpm_oracle_denoiser_returns_its_target():
    """A model that knows x_0 predicts eps exactly; ancestral sampling then ends at x_0."""
    x0 = torch.randn(2, 4, 2, 2, generator=torch.Generator().manual_seed(1))
    abar = torch.from_numpy(np.cumprod(1 - sch.linear_betas(1000)))

    def oracle(x, t, y, c_fn=None):  # t must be the ORIGINAL timestep
        a = abar[t].view(-1, 1, 1, 1)
        eps = ((x.double() - a.sqrt() * x0.double()) / (1 - a).sqrt()).float()
        return torch.cat([eps, torch.zeros_like(eps)], dim=1)

    noise, labels = _noise()
    config = S.DDPMConfig(num_sampling_steps=25, guidance=Guidance())
    out = S.ddpm_sample(oracle, noise, labels, config, S.sample_generators([0, 1]))
    torch.testing.assert_close(out, x0, atol=1e-3, rtol=0)


@pytest.mark.parametrize("v", [-1.0, 0.0, 1.0])
def test_ddpm_learned_range_variance_by_hand(v):
    """Two respaced steps (original t = 999, 0), eps = 0, variance channel = v."""
    ac = np.cumprod(1 - sch.linear_betas(1000))
    a0, a1 = ac[0], ac[999]
    beta1 = 1 - a1 / a0
    post_var = beta1 * (1 - a0) / (1 - a1)
    log_var = (v + 1) / 2 * math.log(beta1) + (1 - (v + 1) / 2) * math.log(post_var)
    c1 = beta1 * math.sqrt(a0) / (1 - a1)
    c2 = (1 - a0) * math.sqrt(1 - beta1) / (1 - a1)

    def model(x, t, y, c_fn=None):
        return torch.cat([torch.zeros_like(x), torch.full_like(x, v)], dim=1)

    noise, labels = _noise()
    out = S.ddpm_sample(
        model,
        noise,
        labels,
        S.DDPMConfig(num_sampling_steps=2, guidance=Guidance()),
        torch.Generator().manual_seed(3),
    )
    z = torch.randn(noise.shape, generator=torch.Generator().manual_seed(3)).double()
    x1 = c1 * noise.double() / math.sqrt(a1) + c2 * noise.double() + math.exp(0.5 * log_var) * z
    expected = x1 / math.sqrt(a0)  # last step: the x_0 prediction itself, no noise
    torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "sampler, config",
    [
        (S.flow_ode_sample, S.FlowODEConfig(num_steps=7, method="euler", timestep_shift=0.3)),
        (S.flow_ode_sample, S.FlowODEConfig(num_steps=7, method="heun2", timestep_shift=0.0)),
        (S.repa_ode_sample, S.REPAODEConfig(num_steps=6, heun=False)),
        (S.repa_ode_sample, S.REPAODEConfig(num_steps=6, heun=True)),
    ],
)
def test_odes_with_zero_velocity_return_their_input(sampler, config):
    noise, labels = _noise()
    assert torch.equal(sampler(Spy(), noise, labels, config), noise)


def test_euler_odes_follow_a_point_mass_oracle_to_its_target():
    x0 = torch.randn(2, 4, 2, 2, generator=torch.Generator().manual_seed(2))
    noise, labels = _noise()

    def sit_oracle(x, t, y, c_fn=None):  # x_t = t x0 + (1 - t) eps, t = 0 noise
        return (x0 - x) / (1 - t.view(-1, 1, 1, 1))

    def repa_oracle(x, t, y, c_fn=None):  # x_t = (1 - t) x0 + t eps, t = 1 noise
        return (x - x0) / t.view(-1, 1, 1, 1)

    out = S.flow_ode_sample(
        sit_oracle, noise, labels, S.FlowODEConfig(num_steps=9, guidance=Guidance())
    )
    torch.testing.assert_close(out, x0, atol=1e-5, rtol=0)
    out = S.repa_ode_sample(
        repa_oracle, noise, labels, S.REPAODEConfig(num_steps=8, guidance=Guidance())
    )
    torch.testing.assert_close(out, x0, atol=1e-5, rtol=0)


def test_heun_integrates_a_constant_velocity_exactly():
    noise, labels = _noise()
    b = torch.linspace(-1, 1, 16).view(1, 4, 2, 2)
    config = S.default_config("sit", "ode", num_steps=6, scale=1.0)
    out = S.flow_ode_sample(Spy(out=lambda x, t: b.expand_as(x)), noise, labels, config)
    torch.testing.assert_close(out, noise + b, atol=1e-6, rtol=0)


def _linear_velocity(x, t, y=None, c_fn=None):
    return 0.5 * x - t.view(-1, 1, 1, 1)


def test_repa_sde_matches_a_hand_unrolled_reference():
    """Grid 1 -> 0.52 -> 0.04 -> 0: two Euler-Maruyama steps and the mean step, in float64."""
    seeds = [7, 8]
    noise, labels = S.sample_noise((4, 2, 2), seeds), torch.tensor([1, 2])
    config = S.REPASDEConfig(num_steps=3, t_last=0.04, guidance=Guidance())
    out = S.repa_sde_sample(_linear_velocity, noise, labels, config, S.sample_generators(seeds))
    gens = S.sample_generators(seeds)
    x = noise.double()

    def drift(x, t):  # score on x_t = (1 - t) x0 + t eps: var = t, score = (-(1 - t) v - x) / t
        v = _linear_velocity(x.float(), torch.full((2,), t, dtype=torch.float32)).double()
        return v - t * (-(1 - t) * v - x) / t

    for t_cur, t_next in [(1.0, 0.52), (0.52, 0.04)]:
        eps = torch.stack([torch.randn(4, 2, 2, generator=g, dtype=torch.float64) for g in gens])
        dt = t_next - t_cur
        x = x + drift(x, t_cur) * dt + math.sqrt(2 * t_cur) * math.sqrt(abs(dt)) * eps
    x = x + (0.0 - 0.04) * drift(x, 0.04)
    torch.testing.assert_close(out.double(), x, rtol=1e-5, atol=1e-5)


def test_sit_sde_matches_a_hand_unrolled_reference():
    """Grid 0 -> 0.48 -> 0.96: two Euler-Maruyama steps, then the mean step of size 0.04."""
    seeds = [3, 4]
    noise, labels = S.sample_noise((4, 2, 2), seeds), torch.tensor([1, 2])
    config = S.SiTSDEConfig(num_steps=3, guidance=Guidance())
    out = S.sit_sde_sample(_linear_velocity, noise, labels, config, S.sample_generators(seeds))
    gens = S.sample_generators(seeds)
    x = noise.double()

    def drift(x, t):  # x_t = t x1 + (1 - t) eps: var = 1 - t, score = (t v - x) / (1 - t)
        v = _linear_velocity(x.float(), torch.full((2,), t, dtype=torch.float32)).double()
        return v + (1 - t) * (t * v - x) / (1 - t)

    dt = 0.48
    for t in [0.0, 0.48]:
        w = torch.stack([torch.randn(4, 2, 2, generator=g) for g in gens]).double()
        x = x + drift(x, t) * dt + math.sqrt(2 * (1 - t)) * math.sqrt(dt) * w
    x = x + drift(x, 0.96) * 0.04
    torch.testing.assert_close(out.double(), x, rtol=1e-5, atol=1e-5)


def test_bf16_autocast_and_progress_bar_run():
    labels = torch.tensor([1, 2])
    model_fn = denoiser(tiny_model("repa"))
    config = S.default_config("repa", null_class=NUM_CLASSES, num_steps=4)
    noise = S.sample_noise((4, 8, 8), [0, 1])
    out = S.sample(
        model_fn, noise, labels, config, S.sample_generators([0, 1]), progress=True, bf16=True
    )
    assert out.dtype == torch.float32 and torch.isfinite(out).all()


def test_num_steps_and_initial_time_of_the_headline_configs():
    expected = {
        ("dit", None): (250, 999),
        ("mdtv2", None): (250, 999),
        ("sit", None): (250, 0.0),
        ("sit", "ode"): (125, 0.0),
        ("lightningdit", None): (249, 0.0),
        ("repa", None): (250, 1.0),
        ("mg", None): (250, 1.0),
    }
    for (family, mode), (steps, t0) in expected.items():
        config = S.default_config(family, mode)
        assert S.num_steps(config) == steps and S.initial_t(config) == t0, family
        assert type(S.initial_t(config)) is type(t0)


def test_default_configs_carry_the_official_guidance():
    assert S.default_config("dit").guidance == Guidance(scale=1.5, guided_channels=3)
    mdt = S.default_config("mdt").guidance
    assert (mdt.scale, mdt.schedule, mdt.scale_pow, mdt.guided_channels) == (
        3.8,
        "power_cosine",
        4.0,
        3,
    )
    assert S.default_config("repa").guidance == Guidance(scale=1.8, interval=(0.0, 0.7))
    assert S.default_config("lightningdit").guidance == Guidance(
        scale=6.7, guided_channels=3, interval=(0.125, 1.0)
    )
    assert not S.default_config("mg").guidance.enabled
    config = S.default_config("repa", num_steps=20, null_class=10, guided_channels=3)
    assert config.num_steps == 20 and config.guidance.null_class == 10
    assert config.guidance.guided_channels == 3 and config.guidance.scale == 1.8
    with pytest.raises(ValueError):
        S.default_config("repa", bogus=1)
    with pytest.raises(ValueError):
        S.default_config("unet")
    with pytest.raises(ValueError):
        S.default_config("dit", "sde")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_samplers_on_cuda_match_the_cpu(case):
    """CPU generators keep the noise machine-independent; CUDA results match the CPU closely."""
    zoo_family, family, mode, overrides = case
    config = S.default_config(family, mode, null_class=NUM_CLASSES, **overrides)
    model = tiny_model(zoo_family)
    seeds, labels = [0, 1, 2], torch.tensor([1, 2, 3])
    noise = S.sample_noise((4, 8, 8), seeds)
    cpu = S.sample(denoiser(model), noise, labels, config, S.sample_generators(seeds))
    tf32 = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False  # full float32 convolutions, as on the CPU
    try:
        cuda = S.sample(
            denoiser(model.cuda()), noise.cuda(), labels.cuda(), config, S.sample_generators(seeds)
        )
    finally:
        torch.backends.cudnn.allow_tf32 = tf32
    assert cuda.device.type == "cuda"
    torch.testing.assert_close(cuda.cpu(), cpu, rtol=5e-3, atol=5e-3)
    bf16 = S.sample(
        denoiser(model), noise.cuda(), labels.cuda(), config, S.sample_generators(seeds), bf16=True
    )
    assert torch.isfinite(bf16).all()
