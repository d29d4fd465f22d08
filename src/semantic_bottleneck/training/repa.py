"""REPA's representation alignment (Yu et al. 2025, sihyun-yu/REPA `loss.py`, `utils.py`, `train.py`).

The diffusion transformer's hidden tokens after block `encoder_depth` go through the projector
MLP and are pulled towards the patch tokens of a frozen encoder by a negative cosine loss, added
to the denoising loss with weight `proj_coeff` (0.5). Two target encoders:

  - "dinov2-vit-b": DINOv2 ViT-B/14, the paper profile's target. Built with timm
    (`vit_base_patch14_dinov2`) at 224 pixels, its positional embedding resampled to the 16 x 16
    patch grid as REPA does; raw uint8 images are scaled to [0, 1], normalised with the ImageNet
    mean and std, then resized bicubically to 224. Weights come from a local file, the Hugging
    Face cache (timm's `vit_base_patch14_dinov2.lvd142m`) or torch hub's checkpoint folder; the
    project never downloads them during training.
  - "digits-classifier": the testbed's frozen digits classifier; its 16 tokens (one per 2 x 2
    patch, row-major) line up with a patch-2 transformer on 8 x 8 digits.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from semantic_bottleneck.evaluation.classifier import digits_classifier
from semantic_bottleneck.training.objectives import linear_path, mean_flat, sample_t

ENCODERS = ("digits-classifier", "dinov2-vit-b")
DINOV2_ARCH = "vit_base_patch14_dinov2"  # timm name of DINOv2 ViT-B/14 (no registers)
DINOV2_HF_REPO = "timm/vit_base_patch14_dinov2.lvd142m"  # timm's copy of the official weights
DINOV2_HUB_FILE = "dinov2_vitb14_pretrain.pth"  # torch.hub's file name for the official weights
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # timm IMAGENET_DEFAULT_MEAN, as REPA's preprocessing
IMAGENET_STD = (0.229, 0.224, 0.225)
ENCODER_RESOLUTION = 224  # REPA resizes 256 px images to 224 for DINOv2: 16 x 16 patches of 14
PATCH_GRID = 16  # tokens per side of a 256 px image's 32 x 32 latent with patch 2

ModelFn = Callable[[Tensor, Tensor, Tensor], tuple[Tensor, list[Tensor]]]


def default_encoder_depth(depth: int) -> int:
    """REPA's alignment block for a model of `depth` blocks.

    REPA aligns SiT-B/2 (12 blocks) after block 4 (maintainer, sihyun-yu/REPA issue #5) and the
    24- and 28-block L and XL models after block 8; other depths keep B/2's third, at least 1.
    """
    return 8 if depth >= 24 else max(1, round(depth / 3))


# ----------------------------------------------------------------------------- the loss


def projection_loss(zs: list[Tensor], zs_tilde: list[Tensor]) -> Tensor:
    """REPA's alignment loss: negative cosine of encoder tokens and projected hidden tokens.

    Per sample the negative cosine is averaged over tokens; the result is summed over samples
    and encoders and divided by (number of encoders x batch size), as REPA's `SILoss`. (REPA sums
    the samples one by one; this sums them in one reduction, equal up to float rounding.)

    Args:
        zs: target tokens, one tensor per encoder (frozen; no gradient needed).
        zs_tilde: the model's projector outputs, same shapes.

    Returns:
        scalar in [-1, 1]; -1 when every token is aligned.

    Shapes: zs[i], zs_tilde[i] (N, T, C_i) -> ().
    """
    if len(zs) != len(zs_tilde) or not zs:
        raise ValueError(
            f"need one projector output per encoder, got {len(zs)} targets and "
            f"{len(zs_tilde)} projections"
        )
    batch = zs[0].shape[0]
    total = zs_tilde[0].new_zeros(())
    for z, z_tilde in zip(zs, zs_tilde, strict=True):
        if z.shape != z_tilde.shape:
            raise ValueError(
                f"target tokens {tuple(z.shape)} and projections {tuple(z_tilde.shape)} differ; "
                "check z_dim and the token grid (a patch-2 model on the encoder's grid)"
            )
        z = F.normalize(z.float(), dim=-1)
        z_tilde = F.normalize(z_tilde.float(), dim=-1)
        total = total + mean_flat(-(z * z_tilde).sum(dim=-1)).sum()
    return total / (len(zs) * batch)


def repa_loss(
    model_fn: ModelFn,
    x0: Tensor,
    y: Tensor,
    zs: list[Tensor],
    generator: torch.Generator,
    timestep_set: int = 0,
) -> tuple[Tensor, Tensor]:
    """REPA's two losses on one batch: denoising (linear path, velocity) and projection.

    Args:
        model_fn: (x_t, t, y) -> (velocity, projector outputs), a REPASiT forward.
        x0: clean latents (or testbed images).
        y: labels (the model drops 10% of them itself in train mode).
        zs: the frozen encoder's tokens of x0's images, one tensor per encoder; [] for none.
        generator: source of t and noise, drawn in that order as REPA does.
        timestep_set: 0 for t ~ U[0, 1); K for K discrete times (see `objectives.sample_t`).

    Returns:
        (denoising loss, projection loss), scalars; the projection loss is 0 without encoders.

    Shapes: x0 (N, C, H, W), y (N,), zs[i] (N, T, C_i).
    """
    t = sample_t(x0.shape[0], generator, timestep_set).to(x0.device)
    noise = torch.randn(x0.shape, generator=generator, device=generator.device).to(x0)
    x_t, target = linear_path(x0, noise, t)
    out, zs_tilde = model_fn(x_t, t, y)
    denoising = mean_flat((out.float() - target) ** 2).mean()
    projection = projection_loss(zs, zs_tilde) if zs else denoising.new_zeros(())
    return denoising, projection


# ----------------------------------------------------------------------------- encoders


class DigitsTokens(nn.Module):
    """The testbed's digits classifier as a REPA target: 16 patch tokens of an 8 x 8 digit."""

    def __init__(self, classifier: nn.Module, embed_dim: int):
        super().__init__()
        self.classifier = classifier
        self.embed_dim = embed_dim

    @torch.no_grad()
    def forward(self, x: Tensor) -> Tensor:
        """Shapes: x (N, 1, 8, 8) in [-1, 1] -> (N, 16, C)."""
        return self.classifier.patch_tokens(x)


class DinoV2Tokens(nn.Module):
    """DINOv2 patch tokens of raw images, with REPA's preprocessing (`preprocess_raw_image`)."""

    def __init__(self, vit: nn.Module):
        super().__init__()
        self.vit = vit
        self.embed_dim = vit.embed_dim
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    @torch.no_grad()
    def forward(self, raw: Tensor) -> Tensor:
        """Shapes: raw (N, 3, H, W) uint8 -> (N, 256, 768): the normed patch tokens."""
        x = raw.float() / 255.0
        x = (x - self.mean) / self.std  # torchvision Normalize: subtract, then divide
        x = F.interpolate(x, ENCODER_RESOLUTION, mode="bicubic")
        tokens = self.vit.forward_features(x)  # final LayerNorm applied: DINOv2's x_norm
        return tokens[:, self.vit.num_prefix_tokens :]  # drop the class token


def _weights_hint(tried: list[str]) -> str:
    return (
        "DINOv2 ViT-B/14 weights were not found. Looked for: "
        + "; ".join(tried)
        + ". Provide them with --encoder-weights FILE (the official dinov2_vitb14_pretrain.pth, "
        f"or timm's model.safetensors from {DINOV2_HF_REPO}), or place them in the Hugging Face "
        f"cache (huggingface-cli download {DINOV2_HF_REPO} model.safetensors) or in "
        f"$TORCH_HOME/hub/checkpoints/{DINOV2_HUB_FILE}. Training never downloads them."
    )


def find_dinov2_weights(weights: str | Path = "") -> Path:
    """The DINOv2 weights file: `weights` if given, else the Hugging Face cache, else torch hub's.

    Raises:
        FileNotFoundError: with the places looked at and how to provide the file.
    """
    if weights:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise FileNotFoundError(_weights_hint([f"--encoder-weights {path} (no such file)"]))
        return path
    tried = []
    try:
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(DINOV2_HF_REPO, "model.safetensors")
        if isinstance(hit, str) and Path(hit).is_file():
            return Path(hit)
        tried.append(f"the Hugging Face cache ({DINOV2_HF_REPO})")
    except ImportError:
        tried.append("the Hugging Face cache (huggingface_hub not installed)")
    hub = Path(torch.hub.get_dir()) / "checkpoints" / DINOV2_HUB_FILE
    if hub.is_file():
        return hub
    tried.append(str(hub))
    raise FileNotFoundError(_weights_hint(tried))


def _read_weights(path: Path) -> dict[str, Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("model", "state_dict", "teacher"):  # training dicts wrap the weights
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    return state


def dinov2_encoder(weights: str | Path = "", arch: str = DINOV2_ARCH) -> DinoV2Tokens:
    """DINOv2 built with timm at 224 px, weights loaded strictly, in eval mode, frozen.

    The official and timm files share key names; the official `mask_token` is dropped and the
    positional embedding (37 x 37 patches at 518 px) is resampled to 16 x 16 with timm's
    `resample_abs_pos_embed` (bicubic, antialiased), the call REPA's `load_encoders` makes.

    Args:
        weights: a weights file; "" searches the caches (see `find_dinov2_weights`).
        arch: timm architecture (tests use a smaller DINOv2).

    Returns:
        the encoder module mapping raw uint8 images to patch tokens.
    """
    import timm
    from timm.layers import resample_abs_pos_embed

    path = find_dinov2_weights(weights)
    vit = timm.create_model(arch, pretrained=False, img_size=ENCODER_RESOLUTION, num_classes=0)
    state = {k: v for k, v in _read_weights(path).items() if k != "mask_token"}
    state = {k: v for k, v in state.items() if not k.startswith("head.")}
    if "pos_embed" in state and state["pos_embed"].shape != vit.pos_embed.shape:
        state["pos_embed"] = resample_abs_pos_embed(
            state["pos_embed"], [PATCH_GRID, PATCH_GRID], num_prefix_tokens=vit.num_prefix_tokens
        )
    missing, unexpected = vit.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"{path} is not a DINOv2 {arch} state dict: missing {missing[:8]}, "
            f"unexpected {unexpected[:8]}"
        )
    return DinoV2Tokens(vit).eval().requires_grad_(False)


def digits_encoder() -> DigitsTokens:
    """The testbed's digits classifier (trained and cached by the evaluation package), frozen."""
    model, info = digits_classifier()
    model = model.eval().requires_grad_(False)
    with torch.no_grad():
        dim = model.patch_tokens(torch.zeros(1, 1, 8, 8)).shape[-1]
    return DigitsTokens(model, dim).eval()


def load_encoder(name: str, weights: str | Path = "") -> nn.Module:
    """The frozen target encoder `name` (one of ENCODERS), with `embed_dim` set."""
    if name == "dinov2-vit-b":
        return dinov2_encoder(weights)
    if name == "digits-classifier":
        return digits_encoder()
    raise ValueError(f"unknown REPA encoder {name!r}; expected one of {ENCODERS}")
