import huggingface_hub
import pytest
import torch
from safetensors.torch import save_file

from semantic_bottleneck.training import repa
from semantic_bottleneck.training.objectives import linear_flow_loss, sample_t
from semantic_bottleneck.training.repa import (
    default_encoder_depth,
    dinov2_encoder,
    find_dinov2_weights,
    projection_loss,
    repa_loss,
)


def test_projection_loss_is_the_negative_cosine_averaged_over_tokens_then_samples():
    # sample 0: token cosines +1 and -1 -> token mean 0; sample 1: both +1 -> -1. Mean: -0.5
    z = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [0.0, 1.0]]])
    z_tilde = torch.tensor([[[2.0, 0.0], [0.0, -3.0]], [[5.0, 0.0], [0.0, 0.5]]])
    assert projection_loss([z], [z_tilde]).item() == pytest.approx(-0.5)
    # two encoders: the mean of their losses (-0.5 and -1)
    assert projection_loss([z, z], [z_tilde, z]).item() == pytest.approx(-0.75)


def test_projection_loss_matches_a_loop_over_samples_and_ignores_scale():
    gen = torch.Generator().manual_seed(0)
    z, z_tilde = torch.randn(3, 5, 4, generator=gen), torch.randn(3, 5, 4, generator=gen)
    expected = (
        sum(
            -torch.nn.functional.cosine_similarity(z[j], z_tilde[j], dim=-1).mean()
            for j in range(3)
        )
        / 3
    )
    assert projection_loss([z], [7.0 * z_tilde]).item() == pytest.approx(expected.item(), abs=1e-6)


def test_projection_loss_refuses_mismatched_shapes():
    with pytest.raises(ValueError, match="differ"):
        projection_loss([torch.zeros(2, 4, 3)], [torch.zeros(2, 4, 5)])
    with pytest.raises(ValueError, match="one projector output per encoder"):
        projection_loss([torch.zeros(2, 4, 3)], [])


@pytest.mark.parametrize("k", [2, 5, 50])
def test_a_timestep_set_draws_only_k_equally_spaced_times_including_noise(k):
    t = sample_t(20_000, torch.Generator().manual_seed(0), k)
    values = torch.unique(t)
    assert len(values) == k
    assert torch.allclose(values, torch.linspace(0, 1, k))
    assert values[-1].item() == 1.0  # t = 1 (noise) is trained on


def test_continuous_times_are_uniform_and_a_set_of_one_is_refused():
    t = sample_t(10_000, torch.Generator().manual_seed(0))
    assert len(torch.unique(t)) > 9_000 and 0 <= t.min() and t.max() < 1
    with pytest.raises(ValueError, match="timestep_set"):
        sample_t(4, torch.Generator(), 1)


def test_repa_loss_feeds_pure_noise_at_t_1_and_data_at_t_0_on_a_limited_set():
    x0 = torch.randn(64, 2, 4, 4, generator=torch.Generator().manual_seed(1))
    seen = {}

    def model_fn(x, t, y):
        seen.update(x=x, t=t)
        return torch.zeros_like(x), []

    repa_loss(model_fn, x0, torch.zeros(64), [], torch.Generator().manual_seed(2), 3)
    # the same draws, in REPA's order: t, then noise
    gen = torch.Generator().manual_seed(2)
    t, noise = sample_t(64, gen, 3), torch.randn(x0.shape, generator=gen)
    assert torch.equal(seen["t"], t) and set(t.tolist()) == {0.0, 0.5, 1.0}
    assert torch.equal(seen["x"][t == 1], noise[t == 1])
    assert torch.equal(seen["x"][t == 0], x0[t == 0])


def test_repa_denoising_loss_equals_the_flow_loss_and_vanishes_for_the_true_velocity():
    x0 = torch.zeros(16, 1, 4, 4)

    def exact(x, t, y):  # with x0 = 0: x_t = t eps, v = eps - x0 = x_t / t
        return x / t.view(-1, 1, 1, 1), []

    d, p = repa_loss(exact, x0, torch.zeros(16), [], torch.Generator().manual_seed(0))
    assert d.item() < 1e-10 and p.item() == 0.0
    x0 = torch.randn(8, 1, 4, 4)
    zero = lambda x, t, y: torch.zeros_like(x)  # noqa: E731
    flow = linear_flow_loss(zero, x0, None, torch.Generator().manual_seed(3), 10)
    d, _ = repa_loss(
        lambda x, t, y: (zero(x, t, y), []), x0, None, [], torch.Generator().manual_seed(3), 10
    )
    assert d.item() == flow.item()


def test_encoder_depth_rule_matches_repa():
    assert default_encoder_depth(12) == 4  # SiT-B/2 (REPA issue #5)
    assert default_encoder_depth(24) == 8 and default_encoder_depth(28) == 8  # L/2, XL/2
    assert default_encoder_depth(4) == 1 and default_encoder_depth(1) == 1


def test_missing_dinov2_weights_give_a_message_naming_the_remedies(monkeypatch, tmp_path):
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *a, **k: None)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(FileNotFoundError) as err:
        find_dinov2_weights()
    text = str(err.value)
    assert "--encoder-weights" in text and repa.DINOV2_HF_REPO in text
    assert repa.DINOV2_HUB_FILE in text and "never downloads" in text
    with pytest.raises(FileNotFoundError, match="no such file"):
        find_dinov2_weights(tmp_path / "absent.pth")


@pytest.mark.slow
def test_dinov2_loads_official_layout_resamples_pos_embed_and_gives_patch_tokens(tmp_path):
    import timm
    from timm.layers import resample_abs_pos_embed

    arch = "vit_small_patch14_dinov2"  # same layout as ViT-B/14, a quarter of the size
    torch.manual_seed(0)
    official = timm.create_model(arch, pretrained=False, num_classes=0)  # 518 px: 37 x 37
    state = {k: v.contiguous() for k, v in official.state_dict().items()}
    state["mask_token"] = torch.zeros(1, official.embed_dim)  # present in the official file
    path = tmp_path / "dinov2.safetensors"
    save_file(state, path)
    enc = dinov2_encoder(path, arch=arch)
    expected = resample_abs_pos_embed(state["pos_embed"], [16, 16], num_prefix_tokens=1)
    assert torch.equal(enc.vit.pos_embed.data, expected)
    raw = torch.randint(0, 256, (2, 3, 256, 256), dtype=torch.uint8)
    tokens = enc(raw)
    assert tokens.shape == (2, 256, official.embed_dim)
    assert not any(p.requires_grad for p in enc.parameters())


def test_dinov2_refuses_a_file_of_another_model(tmp_path):
    path = tmp_path / "other.safetensors"
    save_file({"weight": torch.zeros(2)}, path)
    with pytest.raises(ValueError, match="not a DINOv2"):
        dinov2_encoder(path, arch="vit_small_patch14_dinov2")


def test_unknown_encoder_is_refused():
    with pytest.raises(ValueError, match="unknown REPA encoder"):
        repa.load_encoder("clip-vit-l")
