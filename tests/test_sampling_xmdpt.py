"""X-MDPT's sampler against a retyped reference of the official loop (respacing, DDIM eta 0, the
power-cosine guidance of `forward_with_cfg`), the pruning hook on its c, and generation."""

import math

import numpy as np
import pytest
import torch
from fakes import tiny_sd_vae
from test_zoo_xmdpt import condition_inputs, small_model

from semantic_bottleneck import sampling
from semantic_bottleneck.sampling import PruneSpec
from semantic_bottleneck.sampling.xmdpt import (
    CFG_SCALE,
    NULL_ROW,
    SCALE_POW,
    XMDPT_DDIM,
    DDIMConfig,
    condition_rows,
    ddim_sample,
    generate_xmdpt,
    sample_xmdpt,
    xmdpt_condition_fn,
    xmdpt_denoiser,
    xmdpt_prune_hook,
)
from semantic_bottleneck.zoo import xmdpt as zoo_xmdpt

# ----------------------------------------------------------------------------- reference


def official_timesteps(num_timesteps: int, count: int) -> list[int]:
    """guided-diffusion's `space_timesteps(T, str(count))`, one section, retyped."""
    stride = (num_timesteps - 1) / (count - 1)
    taken, cur = [], 0.0
    for _ in range(count):
        taken.append(round(cur))
        cur += stride
    return sorted(set(taken))


def official_process(count: int) -> dict[str, np.ndarray]:
    """SpacedDiffusion's float64 arrays for `create_diffusion(str(count))`."""
    betas = np.linspace(1e-4, 0.02, 1000, dtype=np.float64)
    abar_full = np.cumprod(1.0 - betas)
    keep = set(official_timesteps(1000, count))
    new_betas, last, tmap = [], 1.0, []
    for i, a in enumerate(abar_full):
        if i in keep:
            new_betas.append(1 - a / last)
            last = a
            tmap.append(i)
    abar = np.cumprod(1.0 - np.array(new_betas))
    return {
        "abar": abar,
        "abar_prev": np.append(1.0, abar[:-1]),
        "recip": np.sqrt(1.0 / abar),
        "recipm1": np.sqrt(1.0 / abar - 1),
        "map": np.array(tmap),
    }


def extract(arr: np.ndarray, t: torch.Tensor, shape) -> torch.Tensor:
    """`_extract_into_tensor`: float64 -> float32, broadcast to the batch."""
    res = torch.from_numpy(arr)[t].float()
    while res.ndim < len(shape):
        res = res[..., None]
    return res + torch.zeros(shape)


def official_loop(model, inputs, z, count=50, cfg=CFG_SCALE, pow_=SCALE_POW, c_fns=(None, None)):
    """`ddim_sample_loop(model.forward_with_cfg, ..., clip_denoised=False)`, eta 0, retyped.

    cfg None runs the conditional forward alone (no guidance). c_fns: (conditional,
    unconditional) c transforms, applied inside each of the two forwards.
    """
    p = official_process(count)
    args = [inputs[k] for k in zoo_xmdpt.INPUTS]
    img = z
    for i in reversed(range(count)):
        t = torch.tensor([i] * z.shape[0])
        ts = torch.tensor(p["map"].tolist(), dtype=t.dtype)[t]
        if cfg is None:
            out = model(img, ts, *args, drop_prob=0.0, c_fn=c_fns[0])
        else:
            uncond = model(img, ts, *args, drop_prob=1.0, c_fn=c_fns[1])
            cond = model(img, ts, *args, drop_prob=0.0, c_fn=c_fns[0])
            step = (1 - torch.cos(((1 - ts / 1000) ** pow_) * math.pi)) * 1 / 2
            w = ((cfg - 1) * step + 1)[: len(img)].view(-1, 1, 1, 1)
            out = uncond + w * (cond - uncond)
        eps, _ = torch.split(out, img.shape[1], dim=1)
        x0 = extract(p["recip"], t, img.shape) * img - extract(p["recipm1"], t, img.shape) * eps
        eps = (extract(p["recip"], t, img.shape) * img - x0) / extract(p["recipm1"], t, img.shape)
        ab = extract(p["abar"], t, img.shape)
        ab_prev = extract(p["abar_prev"], t, img.shape)
        sigma = 0.0 * torch.sqrt((1 - ab_prev) / (1 - ab)) * torch.sqrt(1 - ab / ab_prev)
        mean = x0 * torch.sqrt(ab_prev) + torch.sqrt(1 - ab_prev - sigma**2) * eps
        nonzero = (t != 0).float().view(-1, 1, 1, 1)
        img = mean + nonzero * sigma * torch.randn_like(img)
    return img


def noise(n: int = 3, seed: int = 7) -> torch.Tensor:
    return torch.randn(n, 4, 8, 8, generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------- settings


def test_headline_config_is_the_official_one():
    config = sampling.default_config("xmdpt")
    assert config == XMDPT_DDIM and isinstance(config, DDIMConfig)
    assert config.num_sampling_steps == 50 and config.eta == 0.0 and not config.clip_denoised
    assert config.model_var_type == "learned_range" and config.noise_schedule == "linear"
    g = config.guidance
    assert (g.scale, g.scale_pow, g.schedule, g.guided_channels) == (
        2.0,
        0.01,
        "power_cosine",
        None,
    )
    assert g.null_class == NULL_ROW
    assert sampling.num_steps(config) == 50 and sampling.initial_t(config) == 999
    times = sampling.model_times(config)
    assert times == [float(t) for t in reversed(official_timesteps(1000, 50))]
    assert times[:3] == [999.0, 979.0, 958.0] and times[-1] == 0.0


def test_guidance_weight_is_1_989_at_the_first_step_and_2_at_the_last():
    w = sampling.power_cosine_scale(torch.tensor([999, 0]), CFG_SCALE, 1000, SCALE_POW)
    assert w[0].item() == pytest.approx(1.98905, abs=1e-5) and w[1].item() == 2.0


# ----------------------------------------------------------------------------- the loop


@pytest.mark.parametrize("count", [50, 7])
def test_sampler_equals_the_official_loop(count):
    model, inputs, z = small_model(), condition_inputs(), noise()
    config = sampling.default_config("xmdpt", num_steps=count)
    with torch.no_grad():
        got, hook = sample_xmdpt(model, inputs, z, config=config)
        want = official_loop(model, inputs, z, count)
    assert torch.equal(got, want)
    assert hook.removed.tolist() == [0, 0, 0]


def test_unguided_sampler_is_the_conditional_model_alone():
    model, inputs, z = small_model(), condition_inputs(), noise()
    config = sampling.default_config("xmdpt", num_steps=5, cfg_scale=1.0)
    with torch.no_grad():
        got, _ = sample_xmdpt(model, inputs, z, config=config)
        want = official_loop(model, inputs, z, 5, cfg=None)
    assert torch.equal(got, want)


def test_denoiser_runs_each_row_with_its_own_condition():
    model, inputs = small_model(), condition_inputs()
    x, t = noise(), torch.tensor([999, 500, 3])
    fn = xmdpt_denoiser(model, inputs)
    y = torch.tensor([2, NULL_ROW, 0])
    with torch.no_grad():
        got = fn(x, t, y)
        for j, (row, drop) in enumerate([(2, 0.0), (0, 1.0), (0, 0.0)]):
            args = [inputs[k][row : row + 1] for k in zoo_xmdpt.INPUTS]
            want = model(x[j : j + 1], t[j : j + 1], *args, drop_prob=drop)
            # one row alone vs three in a batch: the kernels may round differently
            torch.testing.assert_close(got[j : j + 1], want, rtol=1e-4, atol=1e-4)


def test_condition_fn_gives_c_and_t_alone_for_dropped_rows():
    model, inputs = small_model(), condition_inputs()
    t = torch.full((4,), 999)
    with torch.no_grad():
        c = xmdpt_condition_fn(model, inputs)(t, torch.tensor([1, 0, NULL_ROW, NULL_ROW]))
        args = [inputs[k][[1, 0]] for k in zoo_xmdpt.INPUTS]
        torch.testing.assert_close(c[:2], model.condition(t[:2], *args))
        torch.testing.assert_close(c[2:], model.time_part(t[2:]))
        assert torch.equal(c[2], c[3])


def test_eta_above_zero_needs_a_generator_and_changes_the_sample():
    model, inputs, z = small_model(), condition_inputs(), noise()
    fn, rows = xmdpt_denoiser(model, inputs), condition_rows(3)
    config = DDIMConfig(num_sampling_steps=4, eta=1.0)
    with pytest.raises(ValueError, match="generator"):
        ddim_sample(fn, z, rows, config)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        noisy = ddim_sample(fn, z, rows, config, g)
        plain = ddim_sample(fn, z, rows, DDIMConfig(num_sampling_steps=4))
    assert not torch.allclose(noisy, plain)


# ----------------------------------------------------------------------------- pruning


def _masks(model, inputs, tau):
    """Masks retyped from the definition: |c| < tau of c at t = 999, conditional and c = T."""
    t = torch.full((3,), 999)
    args = [inputs[k] for k in zoo_xmdpt.INPUTS]
    with torch.no_grad():
        cond = model.condition(t, *args, drop_prob=0.0).abs() < tau
        null = model.condition(t, *args, drop_prob=1.0).abs() < tau
    return cond, null


def test_pruned_sampler_equals_the_official_loop_with_both_branches_pruned():
    model, inputs, z = small_model(), condition_inputs(), noise()
    c = xmdpt_condition_fn(model, inputs)(torch.full((3,), 999), condition_rows(3))
    tau = float(c.detach().abs().median())  # removes about half of c's coordinates
    spec = PruneSpec(side="tail", tau=tau, schedule="every")
    config = sampling.default_config("xmdpt", num_steps=6)
    with torch.no_grad():
        got, hook = sample_xmdpt(model, inputs, z, spec, config)
        cond, null = _masks(model, inputs, tau)
        fns = (lambda c: c.masked_fill(cond, 0), lambda c: c.masked_fill(null, 0))
        want = official_loop(model, inputs, z, 6, c_fns=fns)
        base, _ = sample_xmdpt(model, inputs, z, None, config)
    assert torch.equal(hook.mask, cond) and torch.equal(hook.null_mask, null)
    assert 0 < hook.removed.sum() < cond.numel()
    assert torch.equal(got, want) and not torch.allclose(got, base)


def test_initial_schedule_prunes_only_the_first_step():
    model, inputs = small_model(), condition_inputs()
    spec = PruneSpec(side="head", count=8, schedule="initial")
    config = sampling.default_config("xmdpt", num_steps=4)
    hook = xmdpt_prune_hook(model, inputs, spec, config)
    assert hook.steps == 4 and hook.removed.tolist() == [8, 8, 8]
    assert hook(1)(torch.ones(6, 32)).eq(1).all()  # steps after the first: c itself
    pruned = hook(0)(torch.ones(6, 32))
    assert (pruned == 0).sum(dim=1).tolist() == [8] * 6


def test_empty_spec_is_the_baseline_bit_for_bit():
    model, inputs, z = small_model(), condition_inputs(), noise()
    config = sampling.default_config("xmdpt", num_steps=4)
    with torch.no_grad():
        base, _ = sample_xmdpt(model, inputs, z, None, config)
        empty, hook = sample_xmdpt(model, inputs, z, PruneSpec("tail", count=0), config)
    assert torch.equal(base, empty) and hook.removed.sum() == 0


# ----------------------------------------------------------------------------- generation


def test_generate_decodes_to_unit_range_and_is_batch_independent(tmp_path):
    model, inputs = small_model(), condition_inputs(n=3)
    vae = tiny_sd_vae()
    vae.save_pretrained(tmp_path / "vae")
    zoo_xmdpt.save_inputs(inputs, tmp_path / "cond.safetensors")
    config = sampling.default_config("xmdpt", num_steps=3)
    spec = PruneSpec(side="tail", tau=0.5)
    with torch.no_grad():
        one, info = generate_xmdpt(
            model, tmp_path / "cond.safetensors", tmp_path / "vae", [5, 6, 7],
            prune=spec, config=config, batch_size=3,
        )  # fmt: skip
        split, _ = generate_xmdpt(
            model, inputs, vae, [5, 6, 7], prune=spec, config=config, batch_size=2
        )
    assert one.shape == (3, 3, 16, 16) and one.dtype == torch.float32
    assert one.min() >= 0 and one.max() <= 1
    torch.testing.assert_close(one, split, rtol=1e-5, atol=1e-6)
    assert info["family"] == "xmdpt" and info["num_samples"] == 3 and len(info["removed"]) == 3
    assert info["null_removed"] is not None and info["prune"]["tau"] == 0.5

    # the images are the decoded latents of the seeded noise
    z = sampling.sample_noise((4, 8, 8), [5, 6, 7])
    with torch.no_grad():
        latents, _ = sample_xmdpt(model, inputs, z, spec, config)
        decoded = vae.decode(latents / 0.18215).sample
    torch.testing.assert_close(one, (decoded.clamp(-1, 1) + 1) / 2, rtol=1e-5, atol=1e-6)


def test_generate_refuses_a_seed_count_that_is_not_the_condition_count():
    with pytest.raises(ValueError, match="one per condition"):
        generate_xmdpt(small_model(), condition_inputs(n=3), tiny_sd_vae(), [1, 2])
