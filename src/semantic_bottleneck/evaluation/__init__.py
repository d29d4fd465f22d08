"""Evaluation of samples: FID, IS and precision/recall through torch-fidelity, CLIP score, and the
testbed's digits classifier that stands in for Inception and CLIP.

| quantity | paper profile | testbed profile |
|---|---|---|
| FID, IS (`IS_PROTOCOLS`: ADM's and torch-fidelity's), precision/recall | `evaluate(samples, profile="paper")`: torch-fidelity InceptionV3 against the ADM reference batch | `evaluate(samples)`: the digits classifier (registered with torch-fidelity) against the digits test split |
| class agreement | `clip_score(samples, labels)`: open_clip ViT-L-14/openai, "a photo of a {}" | `class_probability_score(samples, labels)` |

Samples are the ADM npz layout: uint8 (N, H, W, 3). Missing inputs raise `MissingInputError`,
naming the `semantic-bottleneck fetch` command that provides them.

Each module is imported on its own (`evaluation.fidelity`, `evaluation.classifier`, ...): this
package imports none of them, so that a page using the classifier does not load torch-fidelity.
"""
