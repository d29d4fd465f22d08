"""Evaluation of samples: FID, IS and precision/recall through torch-fidelity, CLIP score, and the
testbed's digits classifier that stands in for Inception and CLIP.

| quantity | paper profile | testbed profile |
|---|---|---|
| FID, IS (`IS_PROTOCOLS`: ADM's and torch-fidelity's), precision/recall | `evaluate(samples, profile="paper")`: torch-fidelity InceptionV3 against the ADM reference batch | `evaluate(samples)`: the digits classifier (registered with torch-fidelity) against the digits test split |
| class agreement | `clip_score(samples, labels)`: open_clip ViT-L-14/openai, "a photo of a {}" | `class_probability_score(samples, labels)` |

Samples are the ADM npz layout: uint8 (N, H, W, 3). Missing inputs raise `MissingInputError`,
naming the `semantic-bottleneck fetch` command that provides them.
"""

from semantic_bottleneck.evaluation.classifier import (
    ClassifierConfig,
    DigitsClassifier,
    classifier_folder,
    classifier_input,
    digits_classifier,
    load_classifier,
    train_classifier,
)
from semantic_bottleneck.evaluation.clip_score import (
    Clip,
    class_probability_score,
    clip_score,
    clip_scores,
    load_clip,
    resolve_clip_weights,
)
from semantic_bottleneck.evaluation.fidelity import (
    DIGITS_EXTRACTOR,
    IS_PROTOCOLS,
    DigitsFeatureExtractor,
    ISProtocol,
    adm_inception_score,
    digits_reference,
    evaluate,
    inception_scores,
    load_reference,
    register_digits_extractor,
    split_inception_score,
    to_adm_images,
)
from semantic_bottleneck.evaluation.inputs import MissingInputError

__all__ = [
    "DIGITS_EXTRACTOR",
    "IS_PROTOCOLS",
    "ClassifierConfig",
    "Clip",
    "DigitsClassifier",
    "DigitsFeatureExtractor",
    "ISProtocol",
    "MissingInputError",
    "adm_inception_score",
    "class_probability_score",
    "classifier_folder",
    "classifier_input",
    "clip_score",
    "clip_scores",
    "digits_classifier",
    "digits_reference",
    "evaluate",
    "inception_scores",
    "load_classifier",
    "load_clip",
    "load_reference",
    "register_digits_extractor",
    "resolve_clip_weights",
    "split_inception_score",
    "to_adm_images",
    "train_classifier",
]
