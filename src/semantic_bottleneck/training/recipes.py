"""The REPA-B/2 recipe of the paper's training figures (Figs. 12 and 43) and its testbed scale.

`paper`: REPA's `train.py` for SiT-B/2 point by point (sihyun-yu/REPA; README and issue #5):
ImageNet-1K at 256 px as SD-VAE latents, linear path, velocity prediction, t ~ U[0, 1] with t = 1
noise, 10% label dropout inside the model, AdamW at a constant 1e-4 without weight decay,
gradient clipping at 1.0, EMA 0.9999, fp16 autocast (bf16 on request), global batch 256, and the
projection loss (MLP 768 -> 2048 -> 2048 -> 768 after block 4, negative cosine to DINOv2-B/14's
patch tokens, weight 0.5). The paper trains it for 200k steps.

`testbed`: the same code path at CPU scale: a 128-wide, 4-block REPA SiT on the 8x8 digits,
aligned after block 1 (B/2's third of the depth) to the project's frozen digits classifier,
with the testbed's faster schedule (lr 1e-3, batch 64, EMA 0.999) so that the rise and fall of
nPR shows within a couple of CPU minutes (measured with the project's trainer,
book/method.md#method-testbed).
"""

from __future__ import annotations

from semantic_bottleneck.core.conventions import check_profile
from semantic_bottleneck.evaluation.classifier import ClassifierConfig
from semantic_bottleneck.training.repa import default_encoder_depth
from semantic_bottleneck.training.trainer import TrainConfig, with_overrides

REPA_B2_RECIPE = TrainConfig(
    family="repa",
    objective="repa",  # linear path, velocity, t ~ U[0, 1], t = 1 noise
    dataset="imagenet",
    hidden_size=768,  # SiT-B/2
    depth=12,
    num_heads=12,
    patch_size=2,
    learn_sigma=False,
    class_dropout_prob=0.1,  # inside the model (LabelEmbedder), not in train.py
    steps=200_000,  # the paper's run (REPA's default max is 400k)
    batch_size=256,  # global
    lr=1e-4,
    weight_decay=0.0,
    grad_clip=1.0,
    ema_decay=0.9999,
    log_every=500,
    seed=0,
    repa_encoder="dinov2-vit-b",
    z_dim=768,
    encoder_depth=4,  # B/2 aligns after block 4 (REPA issue #5); L and XL after 8
    projector_dim=2048,
    proj_coeff=0.5,
    timestep_set=0,
    mixed_precision="fp16",  # REPA's default --mixed-precision
    adam_beta1=0.9,
    adam_beta2=0.999,
    adam_eps=1e-8,
)


def _testbed_z_dim() -> int:
    return ClassifierConfig().dim


def testbed_recipe() -> TrainConfig:
    """The REPA recipe at testbed scale (see the module docstring)."""
    depth = 4
    return TrainConfig(
        family="repa",
        objective="repa",
        dataset="digits",
        hidden_size=128,
        depth=depth,
        num_heads=4,
        patch_size=2,  # 16 tokens, one per 2x2 patch: the classifier's token grid
        learn_sigma=False,
        class_dropout_prob=0.1,
        steps=2000,
        batch_size=64,
        lr=1e-3,
        weight_decay=0.0,
        grad_clip=1.0,
        ema_decay=0.999,
        log_every=25,
        seed=0,
        repa_encoder="digits-classifier",
        z_dim=_testbed_z_dim(),
        encoder_depth=default_encoder_depth(depth),
        projector_dim=256,  # 2x the width, where B/2's 2048 is 2.7x (CPU budget)
        proj_coeff=0.5,
        mixed_precision="no",  # CPU: bitwise repeatable float32
    )


def repa_config(profile: str = "testbed", **overrides) -> TrainConfig:
    """The REPA training config of a profile, with fields overridden (None values ignored).

    Args:
        profile: "testbed" (digits, CPU minutes) or "paper" (REPA-B/2 on ImageNet, GPUs).
        **overrides: TrainConfig fields, e.g. steps=500, timestep_set=50.

    Returns:
        the config.
    """
    check_profile(profile)
    base = REPA_B2_RECIPE if profile == "paper" else testbed_recipe()
    return with_overrides(base, **overrides)
