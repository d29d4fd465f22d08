"""CLIP score with open_clip (tiny random models, offline) and its testbed stand-in."""

from __future__ import annotations

import numpy as np
import open_clip
import pytest
import torch
from fakes import TINY_CLIP as TINY
from fakes import tiny_clip
from PIL import Image

from semantic_bottleneck.evaluation.classifier import digits_classifier
from semantic_bottleneck.evaluation.clip_score import (
    class_probability_score,
    clip_score,
    clip_scores,
    load_clip,
    resolve_clip_weights,
)
from semantic_bottleneck.evaluation.fidelity import to_adm_images
from semantic_bottleneck.evaluation.inputs import MissingInputError
from semantic_bottleneck.training.data import digits


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    """A randomly initialised tiny open_clip model registered as TINY, and its weights file."""
    return tiny_clip(tmp_path_factory.mktemp("clip"))


def _images(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 40, 48, 3), generator=g, dtype=torch.uint8)


def test_clip_score_equals_hand_computation(tiny_weights):
    model, path = tiny_weights
    clip = load_clip(TINY, path)
    for key, value in model.state_dict().items():  # the file was loaded, strictly
        assert torch.equal(clip.model.state_dict()[key], value)
    images, labels = _images(6), [0, 5, 0, 999, 5, 1]
    # the model's preprocessing: bicubic resize of the shorter side, centre crop, OpenAI mean/std
    preprocess = open_clip.image_transform(32, is_train=False)
    with torch.no_grad():
        x = torch.stack([preprocess(Image.fromarray(im.numpy())) for im in images])
        img = model.encode_image(x)
        prompts = [f"a photo of a {open_clip.IMAGENET_CLASSNAMES[y]}" for y in labels]
        txt = model.encode_text(open_clip.get_tokenizer(TINY)(prompts))
    cos = torch.nn.functional.cosine_similarity(img, txt, dim=-1)
    expected = (100 * cos).clamp(min=0)
    assert (cos < 0).any() and (cos > 0).any()  # the clamp is exercised
    scores = clip_scores(clip, images, labels, batch_size=4)
    assert torch.allclose(scores, expected, atol=1e-4)
    mean = clip_score(images.numpy(), labels, clip=clip)
    assert mean == pytest.approx(expected.mean().item(), abs=1e-4)


def test_template_and_class_names_are_parameters(tiny_weights):
    model, path = tiny_weights
    clip = load_clip(TINY, path)
    images = _images(2)
    with torch.no_grad():
        txt = model.encode_text(open_clip.get_tokenizer(TINY)(["art of zero", "art of one"]))
    custom = clip_scores(clip, images, [0, 1], template="art of {}", class_names=["zero", "one"])
    default = clip_scores(clip, images, [0, 1])
    assert not torch.allclose(custom, default)
    with torch.no_grad():
        img = model.encode_image(
            torch.stack([clip.preprocess(Image.fromarray(im.numpy())) for im in images])
        )
    cos = torch.nn.functional.cosine_similarity(img, txt, dim=-1)
    assert torch.allclose(custom, (100 * cos).clamp(min=0), atol=1e-4)


def test_quick_gelu_follows_the_tag_and_can_be_forced(tiny_weights):
    _, path = tiny_weights
    gelu = load_clip(TINY, path).model.visual.transformer.resblocks[0].mlp.gelu
    quick = load_clip(TINY, path, quick_gelu=True).model.visual.transformer.resblocks[0].mlp.gelu
    assert isinstance(gelu, torch.nn.GELU) and type(quick).__name__ == "QuickGELU"


def test_bad_labels_and_template_are_refused(tiny_weights):
    clip = load_clip(TINY, tiny_weights[1])
    with pytest.raises(ValueError, match=r"labels must be in 0\.\.999"):
        clip_scores(clip, _images(2), [0, 1000])
    with pytest.raises(ValueError, match="expected 2 labels"):
        clip_scores(clip, _images(2), [0])
    with pytest.raises(ValueError, match="exactly one"):
        clip_scores(clip, _images(2), [0, 1], template="a photo")


def test_missing_clip_weights_name_the_fetch_command(tmp_path):
    with pytest.raises(MissingInputError) as err:
        resolve_clip_weights("ViT-L-14", "openai", cache_dir=tmp_path, hf_cache_dir=tmp_path)
    assert err.value.names == ("clip-vit-l-14-openai",)
    assert "`semantic-bottleneck fetch clip-vit-l-14-openai`" in str(err.value)
    with pytest.raises(MissingInputError, match="Hugging Face cache"):  # a tag with no entry
        resolve_clip_weights("ViT-B-32", "openai", cache_dir=tmp_path, hf_cache_dir=tmp_path)


def test_registry_file_and_hugging_face_cache_are_found(tmp_path):
    weights = tmp_path / "weights" / "clip-vit-l-14-openai" / "open_clip_pytorch_model.bin"
    weights.parent.mkdir(parents=True)
    weights.write_bytes(b"stand-in")
    assert resolve_clip_weights("ViT-L-14", "openai", cache_dir=tmp_path / "weights") == (
        weights,
        True,
    )
    snapshot = tmp_path / "hub" / "models--timm--vit_base_patch32_clip_224.openai"
    (snapshot / "refs").mkdir(parents=True)
    (snapshot / "refs" / "main").write_text("abc")
    (snapshot / "snapshots" / "abc").mkdir(parents=True)
    (snapshot / "snapshots" / "abc" / "open_clip_model.safetensors").write_bytes(b"stand-in")
    path, quick = resolve_clip_weights("ViT-B-32", "openai", tmp_path / "w", tmp_path / "hub")
    assert path.name == "open_clip_model.safetensors" and quick is True


def test_unknown_model_or_tag_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown open_clip model"):
        resolve_clip_weights("ViT-Q-99", "openai")
    with pytest.raises(ValueError, match="neither a file nor an open_clip tag"):
        resolve_clip_weights("ViT-L-14", str(tmp_path / "missing.pt"))


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SEMANTIC_BOTTLENECK_CACHE", str(tmp_path_factory.getbasetemp() / "eval-cache"))
        yield digits_classifier()[0]


def test_class_probability_score_is_the_mean_probability_of_the_label(classifier):
    x, y = digits("test", 0)
    images = to_adm_images(x)
    right = class_probability_score(images, y, classifier)
    wrong = class_probability_score(images, (y + 1) % 10, classifier)
    assert right > 90 and wrong < 5  # a 98 %-accurate, confident classifier
    per_sample = class_probability_score(images[:3], y[:3], classifier, per_sample=True)
    with torch.no_grad():
        probs = classifier.logits(x[:3]).softmax(-1)  # the images encode x up to uint8 rounding
    expected = 100 * probs[torch.arange(3), y[:3]]
    assert torch.allclose(per_sample, expected, atol=0.5)
    assert np.isclose(
        per_sample.mean().item(), class_probability_score(images[:3], y[:3], classifier), atol=1e-5
    )
