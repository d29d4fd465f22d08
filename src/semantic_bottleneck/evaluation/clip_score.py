"""CLIP score of class-conditional samples, and its testbed stand-in.

CLIP score of a sample = max(100 * cos(E_I(image), E_T(prompt of its class)), 0), averaged over the
samples. The clamp is per sample: the formula torchmetrics' `CLIPScore` documents (its code clamps
the mean instead; the two agree whenever no cosine is negative, as with trained CLIP on images).
The paper names neither the model nor the prompt, so both are parameters: by default
open_clip's ViT-L-14 with the OpenAI weights and "a photo of a {}" filled with open_clip's
cleaned ImageNet class names (`IMAGENET_CLASSNAMES`). Images go through the model's own
preprocessing (resize of the shorter side, bicubic, to 224, centre crop, CLIP mean/std).

Weights come from the weights cache (`semantic-bottleneck fetch clip-vit-l-14-openai`) or, for
other open_clip tags, from the Hugging Face cache; nothing is downloaded here. Loading a weights
file skips the tag's settings, so OpenAI weights get QuickGELU explicitly (their training used it).

Testbed stand-in: `class_probability_score`, the digits classifier's probability of the
conditioned class, x 100.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from semantic_bottleneck.evaluation.classifier import (
    DigitsClassifier,
    classifier_input,
    digits_classifier,
)
from semantic_bottleneck.evaluation.fidelity import as_chw_images
from semantic_bottleneck.evaluation.inputs import CLIP_L14, MissingInputError, missing_message
from semantic_bottleneck.zoo import fetch

DEFAULT_MODEL = "ViT-L-14"
DEFAULT_PRETRAINED = "openai"
DEFAULT_TEMPLATE = "a photo of a {}"
# open_clip (model, tag) pairs whose weights file is a registry entry
REGISTRY_WEIGHTS = {(DEFAULT_MODEL, DEFAULT_PRETRAINED): CLIP_L14}
# file names open_clip looks for in a Hugging Face repository, in its order
HF_FILENAMES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
PathLike = str | os.PathLike


@dataclass
class Clip:
    """A CLIP model ready to score: the model, its image preprocessing and its tokenizer."""

    model: nn.Module
    preprocess: Callable[[Image.Image], Tensor]
    tokenizer: Callable[[list[str]], Tensor]


def _hf_cached(hf_hub: str, hf_cache_dir: PathLike | None) -> Path | None:
    """The tag's weights file in the Hugging Face cache, if there (no network)."""
    from huggingface_hub import try_to_load_from_cache

    repo, filename = os.path.split(hf_hub)
    for name in (filename,) if filename else HF_FILENAMES:
        found = try_to_load_from_cache(repo, name, cache_dir=hf_cache_dir)
        if isinstance(found, str):
            return Path(found)
    return None


def resolve_clip_weights(
    model_name: str = DEFAULT_MODEL,
    pretrained: PathLike = DEFAULT_PRETRAINED,
    cache_dir: PathLike | None = None,
    hf_cache_dir: PathLike | None = None,
) -> tuple[Path, bool]:
    """Find the weights file of an open_clip model and whether it needs QuickGELU.

    Args:
        model_name: open_clip model name, e.g. "ViT-L-14".
        pretrained: an open_clip tag ("openai") or a weights file.
        cache_dir: the project's weights cache (default `fetch.default_cache_dir()`).
        hf_cache_dir: the Hugging Face hub cache (default: huggingface_hub's).

    Returns:
        (path, quick_gelu): quick_gelu is the tag's setting; False for a file given directly.

    Raises:
        ValueError: unknown model name, or `pretrained` is neither a tag nor a file.
        MissingInputError: the tag's weights are in neither cache.
    """
    import open_clip  # imported on use: it takes seconds, and the testbed never needs it

    if model_name not in open_clip.list_models():
        raise ValueError(f"unknown open_clip model {model_name!r}; see open_clip.list_models()")
    if Path(pretrained).is_file():
        return Path(pretrained), False
    pretrained = str(pretrained)
    tag = open_clip.get_pretrained_cfg(model_name, pretrained)
    if not tag:
        raise ValueError(
            f"{pretrained!r} is neither a file nor an open_clip tag of {model_name}; tags: "
            f"{open_clip.list_pretrained_tags_by_model(model_name)}"
        )
    quick_gelu = bool(tag.get("quick_gelu", False))
    entry = REGISTRY_WEIGHTS.get((model_name, pretrained))
    if entry is not None and (path := fetch.locate(entry, cache_dir)) is not None:
        return path, quick_gelu
    if tag.get("hf_hub") and (path := _hf_cached(tag["hf_hub"], hf_cache_dir)) is not None:
        return path, quick_gelu
    if entry is not None:
        purpose = f"CLIP score ({model_name}/{pretrained})"
        raise MissingInputError(missing_message([entry], purpose), (entry,))
    raise MissingInputError(
        f"CLIP score ({model_name}/{pretrained}) needs weights that are in no local cache: the "
        f"Hugging Face cache lacks {tag.get('hf_hub') or tag.get('url')}. Download them on a "
        f"connected machine (open_clip.create_model({model_name!r}, pretrained={pretrained!r})) "
        "and copy the cache, or pass the weights file as `pretrained`.",
        (),
    )


def load_clip(
    model_name: str = DEFAULT_MODEL,
    pretrained: PathLike = DEFAULT_PRETRAINED,
    quick_gelu: bool | None = None,
    device: str | torch.device = "cpu",
    cache_dir: PathLike | None = None,
    hf_cache_dir: PathLike | None = None,
) -> Clip:
    """An open_clip model with its weights, preprocessing and tokenizer, offline.

    Args:
        model_name: open_clip model name.
        pretrained: an open_clip tag or a weights file (see `resolve_clip_weights`).
        quick_gelu: force QuickGELU; None = the tag's setting (True for "openai"), False for a
            file. Give True for OpenAI weights passed as a file.
        device: where the model runs.
        cache_dir: the project's weights cache.
        hf_cache_dir: the Hugging Face hub cache.

    Returns:
        the Clip bundle, model in eval mode.
    """
    import open_clip

    path, tag_quick_gelu = resolve_clip_weights(model_name, pretrained, cache_dir, hf_cache_dir)
    model, _, preprocess = open_clip.create_model_and_transforms(
        model_name,
        pretrained=str(path),
        force_quick_gelu=tag_quick_gelu if quick_gelu is None else quick_gelu,
        device=device,
        weights_only=True,
    )
    return Clip(model.eval().requires_grad_(False), preprocess, open_clip.get_tokenizer(model_name))


def _check_labels(labels, n: int, num_classes: int) -> Tensor:
    labels = torch.as_tensor(labels, dtype=torch.long)
    if labels.shape != (n,):
        raise ValueError(f"expected {n} labels, got shape {tuple(labels.shape)}")
    if n and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"labels must be in 0..{num_classes - 1}, got {labels.min()}..{labels.max()}"
        )
    return labels


@torch.no_grad()
def clip_scores(
    clip: Clip,
    images,
    labels,
    template: str = DEFAULT_TEMPLATE,
    class_names: Sequence[str] | None = None,
    batch_size: int = 64,
) -> Tensor:
    """Per-sample CLIP score max(100 * cos(image embedding, prompt embedding), 0).

    Args:
        clip: model bundle (`load_clip`).
        images: uint8 (N, H, W, 3) samples.
        labels: class of each sample.
        template: prompt with one "{}" for the class name.
        class_names: names by label; None = open_clip's IMAGENET_CLASSNAMES.
        batch_size: images per forward pass.

    Returns:
        float32 scores in [0, 100].

    Shapes: images (N, H, W, 3), labels (N,) -> (N,).
    """
    if class_names is None:
        from open_clip import IMAGENET_CLASSNAMES

        class_names = IMAGENET_CLASSNAMES
    class_names = list(class_names)
    if template.count("{}") != 1:
        raise ValueError(f"template must hold exactly one '{{}}', got {template!r}")
    pixels = (
        as_chw_images(images, "images", min_count=1).permute(0, 2, 3, 1).numpy()
    )  # (N, H, W, 3)
    labels = _check_labels(labels, len(pixels), len(class_names))
    device = next(clip.model.parameters()).device
    classes = labels.unique()  # one prompt per class present
    tokens = clip.tokenizer([template.format(class_names[c]) for c in classes.tolist()])
    text = clip.model.encode_text(tokens.to(device), normalize=True)  # (K, D)
    row = torch.empty(len(class_names), dtype=torch.long)
    row[classes] = torch.arange(len(classes))
    scores = []
    for start in range(0, len(pixels), batch_size):
        batch = pixels[start : start + batch_size]
        x = torch.stack(
            [clip.preprocess(Image.fromarray(np.ascontiguousarray(im))) for im in batch]
        )
        image = clip.model.encode_image(x.to(device), normalize=True)  # (B, D)
        cos = (image * text[row[labels[start : start + batch_size]]]).sum(dim=-1)
        scores.append((100 * cos).clamp(min=0).float().cpu())
    return torch.cat(scores)


def clip_score(
    images,
    labels,
    model_name: str = DEFAULT_MODEL,
    pretrained: PathLike = DEFAULT_PRETRAINED,
    template: str = DEFAULT_TEMPLATE,
    class_names: Sequence[str] | None = None,
    clip: Clip | None = None,
    device: str | torch.device = "cpu",
    batch_size: int = 64,
    quick_gelu: bool | None = None,
    cache_dir: PathLike | None = None,
    hf_cache_dir: PathLike | None = None,
) -> float:
    """Mean CLIP score of class-conditional samples (see `clip_scores`, `load_clip`).

    Args:
        images: uint8 (N, H, W, 3) samples.
        labels: class of each sample (ImageNet indices unless class_names is given).
        model_name: open_clip model name.
        pretrained: open_clip tag or weights file.
        template: prompt with one "{}" for the class name.
        class_names: names by label; None = open_clip's IMAGENET_CLASSNAMES.
        clip: an already loaded model; the loading arguments are then unused.
        device: where a newly loaded model runs.
        batch_size: images per forward pass.
        quick_gelu, cache_dir, hf_cache_dir: as in `load_clip`.

    Returns:
        the mean over samples, on the 0..100 scale.

    Shapes: images (N, H, W, 3), labels (N,) -> ().
    """
    if clip is None:
        clip = load_clip(model_name, pretrained, quick_gelu, device, cache_dir, hf_cache_dir)
    return clip_scores(clip, images, labels, template, class_names, batch_size).mean().item()


@torch.no_grad()
def class_probability_score(
    images, labels, classifier: DigitsClassifier | None = None, per_sample: bool = False
) -> float | Tensor:
    """Testbed stand-in for CLIP score: 100 x the classifier's probability of the conditioned class.

    Args:
        images: uint8 (N, H, W, 3) samples (converted as in `classifier.classifier_input`).
        labels: digit class of each sample.
        classifier: the digits classifier; None = the default trained one.
        per_sample: return the (N,) scores instead of their mean.

    Returns:
        the mean (a float in 0..100), or the per-sample scores.

    Shapes: images (N, H, W, 3), labels (N,) -> () or (N,).
    """
    chw = as_chw_images(images, "images", min_count=1)
    if classifier is None:
        classifier, _ = digits_classifier()
    labels = _check_labels(labels, chw.shape[0], classifier.head.out_features)
    device = next(classifier.parameters()).device
    probs = classifier.logits(classifier_input(chw).to(device)).softmax(dim=-1).cpu()  # (N, 10)
    scores = 100 * probs.gather(1, labels[:, None]).squeeze(1)
    return scores if per_sample else scores.mean().item()
