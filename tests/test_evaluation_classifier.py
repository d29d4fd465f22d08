"""The testbed's digits classifier: accuracy, the token contract, input conversion, caching."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from semantic_bottleneck.evaluation.classifier import (
    ClassifierConfig,
    DigitsClassifier,
    classifier_folder,
    classifier_input,
    digits_classifier,
    load_classifier,
)
from semantic_bottleneck.training.data import digits, to_uint8
from semantic_bottleneck.zoo.dit import PatchEmbed


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The default classifier, trained once per session into a temporary artifact cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SEMANTIC_BOTTLENECK_CACHE", str(tmp_path_factory.getbasetemp() / "eval-cache"))
        yield digits_classifier()


def test_held_out_accuracy_is_at_least_97_percent(trained):
    model, info = trained
    x, y = digits("test", 0)
    assert info["n_test"] == len(y) == 359 and info["n_train"] == 1438
    assert info["test_accuracy"] >= 0.97
    # the reported number is the loaded model's accuracy on the test split
    acc = (model.logits(x).argmax(1) == y).float().mean().item()
    assert acc == pytest.approx(info["test_accuracy"], abs=1e-6)


def test_second_request_reads_the_cache(trained, tmp_path_factory, monkeypatch):
    monkeypatch.setenv(
        "SEMANTIC_BOTTLENECK_CACHE", str(tmp_path_factory.getbasetemp() / "eval-cache")
    )
    monkeypatch.setattr(
        "semantic_bottleneck.evaluation.classifier.train_classifier",
        lambda *a: pytest.fail("retrained although the artifact is cached"),
    )
    model, info = digits_classifier()
    assert info == trained[1]
    for key, value in model.state_dict().items():
        assert torch.equal(value, trained[0].state_dict()[key])
    assert (classifier_folder() / "model.safetensors").is_file()


def test_output_shapes():
    model = DigitsClassifier(width=8, dim=12)
    x = torch.randn(5, 1, 8, 8)
    assert model.feature_map(x).shape == (5, 12, 4, 4)
    assert model.patch_tokens(x).shape == (5, 16, 12)
    assert model.features(x).shape == (5, 12)
    assert model.logits(x).shape == (5, 10)
    assert torch.allclose(model.features(x), model.patch_tokens(x).mean(1))


def test_tokens_are_the_feature_map_row_major():
    torch.manual_seed(0)
    model = DigitsClassifier(width=8, dim=12)
    x = torch.randn(3, 1, 8, 8)
    fmap, tokens = model.feature_map(x), model.patch_tokens(x)
    for r in range(4):
        for c in range(4):
            assert torch.equal(tokens[:, 4 * r + c], fmap[:, :, r, c])


def _symmetrise(conv: torch.nn.Conv2d) -> None:
    w = conv.weight.data
    conv.weight.data = (w + w.flip(-1) + w.flip(-2) + w.flip(-1, -2)) / 4


def test_token_order_matches_a_patch2_transformer():
    # With mirror-symmetric kernels both networks commute with image flips, so a flip permutes
    # their tokens; equal permutations mean token i covers the same 2x2 patch in both.
    torch.manual_seed(0)
    model, embed = DigitsClassifier(width=8, dim=12), PatchEmbed(8, 2, 1, 12)
    for conv in (model.conv1, model.conv2, model.conv3, model.conv4, embed.proj):
        _symmetrise(conv)
    x = torch.randn(2, 1, 8, 8)
    index = torch.arange(16).view(4, 4)
    for dims in ((-1,), (-2,)):
        perm = index.flip(dims).flatten()  # token 4r + c of the flipped image comes from perm[...]
        for tokens in (model.patch_tokens, embed):
            assert torch.allclose(tokens(x.flip(dims)), tokens(x)[:, perm], atol=1e-5)


def test_classifier_input_inverts_to_uint8_at_8x8():
    x, _ = digits("test", 0)
    rgb = to_uint8(x).expand(-1, 3, -1, -1)
    back = classifier_input(rgb)
    assert back.shape == x.shape and back.dtype == torch.float32
    assert torch.equal(to_uint8(back), to_uint8(x))
    assert (back - x).abs().max() <= 0.5 / 127.5 + 1e-6  # only the uint8 rounding


def test_classifier_input_takes_the_channel_mean_and_resizes_larger_images():
    g = torch.Generator().manual_seed(0)
    rgb = torch.randint(0, 256, (2, 3, 32, 24), generator=g, dtype=torch.uint8)
    gray = rgb.float().mean(1, keepdim=True)
    expected = F.interpolate(gray, (8, 8), mode="bilinear", antialias=True, align_corners=False)
    assert torch.allclose(classifier_input(rgb), expected / 127.5 - 1, atol=1e-6)


@pytest.mark.parametrize(
    "bad",
    [
        torch.zeros(2, 3, 8, 8),
        torch.zeros(2, 1, 8, 8, dtype=torch.uint8),
        torch.zeros(8, 8, 3, dtype=torch.uint8),
    ],
)
def test_classifier_input_rejects_other_layouts(bad):
    with pytest.raises(ValueError, match="uint8 images of shape"):
        classifier_input(bad)


def test_model_rejects_wrong_image_size():
    with pytest.raises(ValueError, match=r"\(N, 1, 8, 8\)"):
        DigitsClassifier().features(torch.zeros(2, 1, 16, 16))


@pytest.mark.parametrize("field", [{"epochs": 0}, {"lr": 0.0}, {"shift": 8}, {"dim": 0}])
def test_config_rejects_bad_values(field):
    with pytest.raises(ValueError):
        ClassifierConfig(**field)


def test_load_classifier_names_a_folder_without_weights(tmp_path):
    with pytest.raises(FileNotFoundError, match="trained digits classifier"):
        load_classifier(tmp_path)
