"""Training configuration: one frozen dataclass for every run the trainer makes.

Its fields are everything that changes a trained model, so its hash keys the artifact cache and
it is stored in every checkpoint (`args`) as plain types. Fields added for REPA, ImageNet,
limited timestep sets and mixed precision default to "off": older configs train as before.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch

from semantic_bottleneck.core.conventions import convention
from semantic_bottleneck.training.data import THUMBNAIL
from semantic_bottleneck.training.repa import ENCODERS, default_encoder_depth

OBJECTIVES = ("ddpm", "repa")
# dataset -> model geometry: 8x8 one-channel digits; 256 px ImageNet as 32x32x4 SD-VAE latents
DATASETS = {
    "digits": dict(input_size=8, in_channels=1, num_classes=10),
    # the class-count axis of the scale study: digit x 4 rotations x 2 mirror images
    "digits-80": dict(input_size=8, in_channels=1, num_classes=80),
    # continuous condition: each digit's 4x4 thumbnail, a Linear embedding summed with T
    "digits-thumbnail": dict(input_size=8, in_channels=1, num_classes=0, cond_dim=THUMBNAIL**2),
    "imagenet": dict(input_size=32, in_channels=4, num_classes=1000),
}
PRECISIONS = {"no": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class TrainConfig:
    """Everything that changes a trained model (its hash keys the artifact cache).

    New fields default to "off", so older configs train exactly as before.
    """

    family: str = "dit"  # zoo family of the model class
    objective: str = "ddpm"  # "ddpm" (integer t, epsilon) or "repa" (t = 1 noise, velocity)
    hidden_size: int = 128
    depth: int = 4
    num_heads: int = 4
    patch_size: int = 2
    learn_sigma: bool = True  # DiT's variance head (ddpm only)
    class_dropout_prob: float = 0.1  # label dropout inside the model, as in every XL model
    steps: int = 2000
    batch_size: int = 64  # global: split over the processes of a torchrun run
    lr: float = 1e-3  # constant: no warm-up, no decay (REPA)
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    log_every: int = 25
    seed: int = 0
    dataset: str = "digits"  # "digits", "digits-80", "digits-thumbnail" or "imagenet"
    data_dir: str = ""  # imagenet: folder written by `semantic-bottleneck train prepare-imagenet`
    repa_encoder: str = ""  # REPA target: "" (off), "digits-classifier" or "dinov2-vit-b"
    encoder_weights: str = ""  # dinov2 weights file ("": Hugging Face or torch hub cache)
    z_dim: int = 0  # encoder token width the projector maps to (768 for DINOv2-B)
    encoder_depth: int = 0  # projector reads after this block (0: REPA's rule for the depth)
    projector_dim: int = 2048  # REPA's projector MLP width
    proj_coeff: float = 0.5  # weight of the projection loss
    timestep_set: int = 0  # 0: t ~ U[0, 1]; K >= 2: K equally spaced t in [0, 1] (Fig. 43)
    mixed_precision: str = "no"  # autocast: "no", "bf16" or "fp16" (with a gradient scaler)
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_eps: float = 1e-8

    def __post_init__(self):
        _check_choice("objective", self.objective, OBJECTIVES)
        _check_choice("dataset", self.dataset, tuple(DATASETS))
        _check_choice("mixed_precision", self.mixed_precision, tuple(PRECISIONS))
        _check_choice("repa_encoder", self.repa_encoder, ("", *ENCODERS))
        if self.steps < 1 or self.batch_size < 2 or self.log_every < 1:
            raise ValueError(
                f"need steps >= 1, batch_size >= 2, log_every >= 1; got steps={self.steps}, "
                f"batch_size={self.batch_size}, log_every={self.log_every}"
            )
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.family == "repa" and self.objective != "repa":
            raise ValueError(f"family 'repa' trains with objective 'repa', got {self.objective!r}")
        if self.repa_encoder and (self.family != "repa" or self.z_dim < 1):
            raise ValueError(
                "a REPA encoder needs family='repa' (the model with projectors) and z_dim >= 1, "
                f"got family={self.family!r}, z_dim={self.z_dim}"
            )
        if self.timestep_set == 1 or self.timestep_set < 0:
            raise ValueError(
                f"timestep_set must be 0 (continuous) or >= 2, got {self.timestep_set}"
            )
        if self.timestep_set and self.objective != "repa":
            raise ValueError("timestep_set applies to the 'repa' objective (continuous t)")
        if "cond_dim" in DATASETS[self.dataset] and self.family not in ("dit", "sit"):
            raise ValueError(
                f"dataset {self.dataset!r} (a continuous condition) trains family 'dit' or 'sit', "
                f"got {self.family!r}"
            )
        if self.proj_coeff < 0:
            raise ValueError(f"proj_coeff must be >= 0, got {self.proj_coeff}")

    @property
    def time_convention(self):
        return convention(self.objective)

    @property
    def num_classes(self) -> int:
        return DATASETS[self.dataset]["num_classes"]

    def model_config(self) -> dict:
        """Constructor keywords of the zoo model this config trains."""
        cfg = dict(
            **DATASETS[self.dataset],
            patch_size=self.patch_size,
            hidden_size=self.hidden_size,
            depth=self.depth,
            num_heads=self.num_heads,
            class_dropout_prob=self.class_dropout_prob,
        )
        if self.family in ("dit", "sit"):
            cfg["learn_sigma"] = self.learn_sigma and self.objective == "ddpm"
        if self.family == "repa":
            cfg.update(
                path_type="linear",
                decoder_hidden_size=self.hidden_size,
                encoder_depth=self.encoder_depth or default_encoder_depth(self.depth),
                z_dims=[self.z_dim] if self.repa_encoder else [],
                projector_dim=self.projector_dim,
                use_cfg=self.class_dropout_prob > 0,
            )
        return cfg

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(
                f"unknown TrainConfig fields {sorted(unknown)}; expected {sorted(names)}"
            )
        return cls(**d)


def _check_choice(name: str, value, choices: tuple) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def with_overrides(config: TrainConfig, **overrides) -> TrainConfig:
    """`config` with the fields given (None values ignored)."""
    return replace(config, **{k: v for k, v in overrides.items() if v is not None})
