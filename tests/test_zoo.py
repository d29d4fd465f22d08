"""The zoo entry point and the DiT-family models (DiT, SiT, REPA's SiT, MG's SiT)."""

import pytest
import torch
from fakes import family_manifest

from semantic_bottleneck.zoo import FAMILIES, build_model, denoiser

SMALL = dict(
    input_size=8, patch_size=2, in_channels=4, hidden_size=32, depth=2, num_heads=2, num_classes=10
)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_xl_config_has_exactly_the_manifest_keys_and_shapes(family):
    manifest = family_manifest(family)
    with torch.device("meta"):
        model = build_model(family, **manifest["config"])
    state = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert state == manifest["keys"]
    assert (
        sum(v.numel() for v in model.state_dict().values()) == manifest["num_state_dict_elements"]
    )


def small(family, **extra):
    torch.manual_seed(0)
    config = dict(SMALL, **extra)
    if family == "repa":
        config.update(decoder_hidden_size=32, encoder_depth=1, z_dims=[12], projector_dim=16)
    return build_model(family, **config).eval()


@pytest.mark.parametrize("family", ["dit", "sit", "repa", "mg"])
def test_state_dict_round_trip_is_strict(family, tmp_path):
    model = small(family)
    torch.save(model.state_dict(), tmp_path / "ckpt.pt")
    other = small(family)
    other.load_state_dict(torch.load(tmp_path / "ckpt.pt", weights_only=True), strict=True)
    state = model.state_dict()
    state["bogus.weight"] = torch.zeros(1)
    with pytest.raises(RuntimeError, match="bogus"):
        other.load_state_dict(state, strict=True)


def randomize(model):
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.2)  # the zero-initialised adaLN would hide every difference
    return model


def inputs(n=4):
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 4, 8, 8, generator=g), torch.rand(n, generator=g), torch.arange(n)


def test_output_channels_per_family():
    x, t, y = inputs()
    assert small("dit")(x, t, y).shape == (4, 8, 8, 8)  # eps and variance
    assert small("sit")(x, t, y).shape == (4, 4, 8, 8)  # the first half only
    assert small("mg")(x, t, y).shape == (4, 4, 8, 8)
    out, zs = small("repa")(x, t, y)
    assert out.shape == (4, 4, 8, 8) and zs[0].shape == (4, 16, 12)
    assert denoiser(small("repa"))(x, t, y).shape == (4, 4, 8, 8)


def test_sit_keeps_the_first_half_of_the_dit_output():
    dit, sit = randomize(small("dit")), small("sit")
    sit.load_state_dict(dit.state_dict())
    x, t, y = inputs()
    assert torch.equal(sit(x, t, y), dit(x, t, y)[:, :4])


def test_mg_label_table_keeps_the_null_row_without_dropout():
    assert small("mg", class_dropout_prob=0.0).y_embedder.embedding_table.num_embeddings == 11
    assert small("sit", class_dropout_prob=0.0).y_embedder.embedding_table.num_embeddings == 10


@pytest.mark.parametrize("family", ["dit", "sit", "repa", "mg"])
def test_c_fn_identity_is_the_official_forward_and_zeroing_c_changes_it(family):
    model = randomize(small(family))
    f = denoiser(model)
    x, t, y = inputs()
    seen = []
    base = f(x, t, y)
    assert torch.equal(f(x, t, y, c_fn=lambda c: seen.append(c) or c), base)
    assert torch.equal(seen[0], model.condition(t, y))
    assert not torch.equal(f(x, t, y, c_fn=torch.zeros_like), base)


def test_eval_mode_drops_no_label_and_train_mode_can():
    model = small("dit", class_dropout_prob=1.0)
    t, y = torch.rand(4), torch.arange(4)
    assert torch.equal(
        model.condition(t, y), model.t_embedder(t) + model.y_embedder.embedding_table(y)
    )
    model.train()
    null = torch.full((4,), 10)
    assert torch.equal(
        model.condition(t, y), model.t_embedder(t) + model.y_embedder.embedding_table(null)
    )


def test_repa_explicit_and_fused_attention_agree():
    fused = randomize(small("repa", fused_attn=True))
    explicit = small("repa", fused_attn=False)
    explicit.load_state_dict(fused.state_dict())
    x, t, y = inputs()
    assert torch.allclose(fused(x, t, y)[0], explicit(x, t, y)[0], atol=1e-5)


def test_bad_family_and_config_are_refused():
    with pytest.raises(ValueError, match="unknown model family"):
        build_model("unet")
    with pytest.raises(ValueError, match="bad config"):
        build_model("dit", hidden_sizes=3)
    with pytest.raises(ValueError, match="hidden_size % num_heads"):
        build_model("dit", hidden_size=30, num_heads=4)
