"""U-ViT: a ViT backbone for diffusion that takes time and label as tokens (ImageNet, by class).

Matches, key for key and op for op, `libs/uvit.py` of baofff/U-ViT @ ce55170 (Bao et al., "All are
Worth Words: A ViT Backbone for Diffusion Models", CVPR 2023). The six released class-conditional
ImageNet models (README.md:86-91) are bare state_dicts (`eval*.py`: `load_state_dict(torch.load(
nnet_path))`) that load here with `strict=True`; their keys, shapes and constructor keywords are
`semantic_bottleneck/manifests/appendix/uvit_*.json` (configs/imagenet{64,256,512}_uvit_*.py).

There is no AdaLN and no summed conditioning vector. The two conditions are tokens of the sequence
(libs/uvit.py, forward at :201-212):
  - time token  T(t) = time_embed(timestep_embedding(t, embed_dim))       :205, sinusoid :20-38
    `time_embed` is nn.Identity when `mlp_time_embed=False` (:150-154), as in every ImageNet
    config, so T(t) = [cos(t f), sin(t f)], f_i = 10000^(-i / (D/2)): parameter-free, D features.
  - label token Y(y) = label_emb(y), nn.Embedding(num_classes, embed_dim)   :156-158, :209
    `num_classes` counts the null row where there is one: 1001 for the latent (256/512) models,
    whose row 1000 is the classifier-free-guidance null (eval_ldm_discrete.py:76,
    eval_ldm.py:70: y = dataset.K, 1000 at datasets.py:181, :206);
    1000 and no null row for the unguided ImageNet 64 models.
The sequence is [label, time, patches] (time prepended :207, then label :211), and `pos_embed`
(1, 2 + L, D) is added to all of it (:212): row 0 to the label token, row 1 to the time token.
Every block attends over the whole sequence; the two condition tokens are dropped after
`decoder_pred` (:227).

c for the paper's statistics (Table 4, "U-ViT (concatenation)") is built from T and Y by
`core.systems.combine` in one of the two `READINGS`; `condition_parts(model, y, t)` gives T and Y.
`INITIAL_T` is the t each released model's official sampler feeds at its first (pure-noise) step.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import Tensor, nn

from semantic_bottleneck.zoo import checkpoint, registry

# the same sinusoid as libs/uvit.py:20-38 op for op: freqs exp(-ln(10000) i / half) in float32,
# args t.float() * freqs, [cos, sin] (cosine half first), a zero column for odd dim
from semantic_bottleneck.zoo.dit import timestep_embedding
from semantic_bottleneck.zoo.mdt import trunc_normal_  # timm 0.3.2's, as libs/timm.py

# ----------------------------------------------------------------------------- conditioning

# The two readings of "y+t" (c over the N labels at one t). Both are built by
# `core.systems.combine(T, Y, how)` from `condition_parts`.
READINGS = {
    "concat": (
        "c = [T; Y], d = 2 embed_dim: the token pair the forward places in the sequence, taken "
        "together (the sequence holds them as [label, time]; the feature order changes no cosine "
        "and no participation ratio)"
    ),
    "sum": "c = T + Y, d = embed_dim: the two tokens summed, as an AdaLN model would form c",
}

# The t each released model's official sampler feeds the network at its first (pure-noise) step.
INITIAL_T = {
    # Discrete-time latent models, eval_ldm_discrete.py (README.md:207, :213): the network gets
    # t = t_continuous * N with N = 1000 (:88, :96-98); DPM-Solver++ starts at T = 1. (:102;
    # dpm_solver_pp.py:901, time-uniform grid :350 via :931) and evaluates the model at that
    # first time (:661). Trained on n in {1, ..., 1000} (train_ldm_discrete.py:79, :89).
    "uvit_h2_imagenet256.json": 1000.0,
    "uvit_h4_imagenet512.json": 1000.0,
    # Continuous-time models, eval_ldm.py (latent, README.md:204, :210) and eval.py (pixels,
    # README.md:198, :201): VP linear schedule with T = 1. (eval_ldm.py:94, eval.py:72;
    # dpm_solver_pytorch.py:60, :571), time_input_type '0' passes t unchanged
    # (dpm_solver_pytorch.py:174-177), the first logSNR step is t = 1 (:298, :252-255; exactly 1.0
    # in float32) and ScoreModel feeds the network t * 999 (sde.py:174).
    "uvit_l2_imagenet256.json": 999.0,
    "uvit_l4_imagenet512.json": 999.0,
    "uvit_l4_imagenet64.json": 999.0,
    "uvit_m4_imagenet64.json": 999.0,
}


# ----------------------------------------------------------------------------- helpers


def unpatchify(x: Tensor, channels: int) -> Tensor:
    """Patch tokens back to a square image; each token's features are ordered (p1, p2, C).

    Shapes: x (N, h*w, p*p*C) -> (N, C, h*p, w*p).
    """
    n, length, features = x.shape
    patch = int((features // channels) ** 0.5)
    side = int(length**0.5)
    if side * side != length or patch * patch * channels != features:
        raise ValueError(f"cannot unpatchify {tuple(x.shape)} into a square {channels}-ch image")
    x = x.reshape(n, side, side, patch, patch, channels)  # (N, h, w, p1, p2, C)
    return x.permute(0, 5, 1, 3, 2, 4).reshape(n, channels, side * patch, side * patch)


# ----------------------------------------------------------------------------- layers


class Attention(nn.Module):
    """Multi-head self-attention, keys `qkv` (bias optional) and `proj`.

    The official module computes q, k, v in float32 and calls scaled_dot_product_attention
    (its 'flash' mode, chosen whenever torch has it: libs/uvit.py:8-9, :70-74); this is the same
    computation. Its dropouts have rate 0 and hold no weights, so they are left out.
    """

    def __init__(
        self, dim: int, num_heads: int, qkv_bias: bool = False, qk_scale: float | None = None
    ):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        # the 'math' mode's scale (:59, :83); 'flash' uses sdpa's default head_dim**-0.5, equal
        # whenever qk_scale is None, as in every released config
        self.scale = qk_scale or self.head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        """Shapes: (N, L, D) -> (N, L, D)."""
        n, length, d = x.shape
        qkv = self.qkv(x).reshape(n, length, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).float().unbind(0)  # (N, H, L, Dh) each, float32
        out = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        return self.proj(out.transpose(1, 2).reshape(n, length, d))


class Mlp(nn.Module):
    """fc1 -> exact GELU -> fc2 (libs/timm.py:96-112; its dropout has rate 0)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        """Shapes: (N, L, D) -> (N, L, D)."""
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block; with `skip`, a long skip is fused in first by a Linear(2D, D)."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = False,
        qk_scale: float | None = None,
        skip: bool = False,
        use_checkpoint: bool = False,
    ):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads, qkv_bias, qk_scale)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.skip_linear = nn.Linear(2 * dim, dim) if skip else None
        self.use_checkpoint = use_checkpoint

    def forward(self, x: Tensor, skip: Tensor | None = None) -> Tensor:
        """Shapes: x (N, L, D), skip (N, L, D) or None -> (N, L, D)."""
        # recomputation saves memory only when gradients are kept; the values are the same
        if self.use_checkpoint and torch.is_grad_enabled():
            return torch.utils.checkpoint.checkpoint(self._forward, x, skip, use_reentrant=False)
        return self._forward(x, skip)

    def _forward(self, x: Tensor, skip: Tensor | None) -> Tensor:
        if self.skip_linear is not None:
            x = self.skip_linear(torch.cat([x, skip], dim=-1))
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    """Non-overlapping patches to tokens by a strided convolution (key `patch_embed.proj`)."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        """Shapes: (N, C, H, W) -> (N, H*W / p^2, D)."""
        if x.shape[-2] % self.patch_size or x.shape[-1] % self.patch_size:
            raise ValueError(f"image {tuple(x.shape[-2:])} not divisible by {self.patch_size}")
        return self.proj(x).flatten(2).transpose(1, 2)


# ----------------------------------------------------------------------------- model


class UViT(nn.Module):
    """U-ViT with the official constructor (configs' `nnet` keywords, `name` aside).

    depth // 2 in-blocks, a mid-block and depth // 2 out-blocks; out-block i fuses the output of
    in-block depth // 2 - 1 - i (last in, first out). t is fed as the official samplers feed it
    (see INITIAL_T): the discrete step for the H models, 999 t for the continuous ones.

    Args:
        img_size: input side (latent side for the latent models).
        patch_size, in_chans, embed_dim, depth, num_heads, mlp_ratio, qkv_bias, qk_scale: as ViT.
        mlp_time_embed: pass the sinusoid through Linear(D, 4D) -> SiLU -> Linear(4D, D).
        num_classes: rows of `label_emb` (null row included); <= 0 builds an unconditional model
            with no label token.
        use_checkpoint: recompute blocks in the backward pass (no effect on values).
        conv: a 3x3 convolution `final_layer` after unpatchify.
        skip: long skips into the out-blocks.
    """

    def __init__(
        self,
        img_size: int = 224,
        patch_size: int = 16,
        in_chans: int = 3,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = False,
        qk_scale: float | None = None,
        mlp_time_embed: bool = False,
        num_classes: int = -1,
        use_checkpoint: bool = False,
        conv: bool = True,
        skip: bool = True,
    ):
        super().__init__()
        if embed_dim % num_heads or img_size % patch_size:
            raise ValueError(
                f"need embed_dim % num_heads == 0 and img_size % patch_size == 0, got "
                f"{embed_dim=}, {num_heads=}, {img_size=}, {patch_size=}"
            )
        self.embed_dim = embed_dim
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.patch_size = patch_size
        # registration order as officially, so that a seeded build initialises identically
        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim)
        self.num_patches = (img_size // patch_size) ** 2
        self.time_embed = (
            nn.Sequential(
                nn.Linear(embed_dim, 4 * embed_dim), nn.SiLU(), nn.Linear(4 * embed_dim, embed_dim)
            )
            if mlp_time_embed
            else nn.Identity()
        )
        if num_classes > 0:
            self.label_emb = nn.Embedding(num_classes, embed_dim)
        self.extras = 2 if num_classes > 0 else 1  # condition tokens ahead of the patches
        self.pos_embed = nn.Parameter(torch.zeros(1, self.extras + self.num_patches, embed_dim))
        block = dict(
            dim=embed_dim,
            num_heads=num_heads,
            mlp_ratio=mlp_ratio,
            qkv_bias=qkv_bias,
            qk_scale=qk_scale,
            use_checkpoint=use_checkpoint,
        )
        self.in_blocks = nn.ModuleList(Block(**block) for _ in range(depth // 2))
        self.mid_block = Block(**block)
        self.out_blocks = nn.ModuleList(Block(**block, skip=skip) for _ in range(depth // 2))
        self.norm = nn.LayerNorm(embed_dim)
        self.patch_dim = patch_size**2 * in_chans
        self.decoder_pred = nn.Linear(embed_dim, self.patch_dim, bias=True)
        self.final_layer = nn.Conv2d(in_chans, in_chans, 3, padding=1) if conv else nn.Identity()
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """The official initialisation: truncated normal (std 0.02) for pos_embed and every
        Linear weight, zero biases, unit LayerNorms; the embedding and convolutions keep
        torch's defaults."""
        trunc_normal_(self.pos_embed, std=0.02)
        self.apply(self._init_module)

    @staticmethod
    def _init_module(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.zeros_(m.bias)
            nn.init.ones_(m.weight)

    # ------------------------------------------------------------------ the condition tokens

    def time_token(self, timesteps: Tensor, positional: bool = False) -> Tensor:
        """T(t) = time_embed(sinusoid(t, embed_dim)) (libs/uvit.py:205), the token of t.

        Args:
            timesteps: t as the official sampler feeds it (see INITIAL_T).
            positional: also add its `pos_embed` row (row 1; row 0 without labels), as it
                stands in the sequence the blocks see.

        Shapes: timesteps (N,) -> (N, D).
        """
        token = self.time_embed(timestep_embedding(timesteps, self.embed_dim))
        return token + self.pos_embed[0, self.extras - 1] if positional else token

    def label_token(self, y: Tensor, positional: bool = False) -> Tensor:
        """Y(y) = label_emb(y) (libs/uvit.py:209), the token of label y.

        Args:
            y: labels; for the guided models, 1000 is the null label.
            positional: also add its `pos_embed` row (row 0).

        Shapes: y (N,) int64 -> (N, D).
        """
        if self.extras < 2:
            raise ValueError("this U-ViT is unconditional (num_classes <= 0): no label token")
        token = self.label_emb(y)
        return token + self.pos_embed[0, 0] if positional else token

    # ------------------------------------------------------------------ forward

    def embed(self, x: Tensor, timesteps: Tensor, y: Tensor | None = None) -> Tensor:
        """The sequence [label, time, patches] plus pos_embed, as the first block receives it.

        Shapes: x (N, C, H, W), timesteps (N,), y (N,) or None -> (N, extras + L, D).
        """
        x = self.patch_embed(x)  # (N, L, D)
        tokens = [self.time_token(timesteps).unsqueeze(1), x]
        if y is not None:
            tokens.insert(0, self.label_token(y).unsqueeze(1))
        x = torch.cat(tokens, dim=1)
        if x.shape[1] != self.pos_embed.shape[1]:
            raise ValueError(
                f"sequence of {x.shape[1]} tokens, pos_embed has {self.pos_embed.shape[1]}: "
                f"pass y exactly when num_classes > 0 (here {self.num_classes})"
            )
        return x + self.pos_embed

    def forward(self, x: Tensor, timesteps: Tensor, y: Tensor | None = None) -> Tensor:
        """Noise prediction (every released config has pred='noise_pred').

        Args:
            x: noisy image or latent.
            timesteps: t as the official sampler feeds it (float or int; see INITIAL_T).
            y: labels, None for an unconditional model.

        Shapes: x (N, C, H, W), timesteps (N,), y (N,) -> (N, C, H, W).
        """
        x = self.embed(x, timesteps, y)  # (N, extras + L, D)
        skips = []
        for block in self.in_blocks:
            x = block(x)
            skips.append(x)
        x = self.mid_block(x)
        for block in self.out_blocks:
            x = block(x, skips.pop())  # the innermost in-block first, as in a U-Net
        x = self.decoder_pred(self.norm(x))  # (N, extras + L, p*p*C)
        x = unpatchify(x[:, self.extras :], self.in_chans)  # the condition tokens are dropped
        return self.final_layer(x)


# ----------------------------------------------------------------------------- c and loading


def condition_parts(
    model: UViT, y: Tensor, t: float, positional: bool = False
) -> tuple[Tensor, Tensor]:
    """The two parts of c at one t: the time token and the label tokens, float32, no grad.

    Combine them with `core.systems.combine(T, Y, how)`, `how` one of READINGS.

    Args:
        model: a class-conditional U-ViT.
        y: the labels (the N conditions).
        t: the t fed to the network, in the model's own convention (e.g. INITIAL_T[manifest]).
        positional: add the tokens' pos_embed rows (the sequence as the blocks see it).

    Returns:
        (T, Y).

    Shapes: y (N,) -> T (1, D), Y (N, D).
    """
    device = model.pos_embed.device
    with torch.no_grad():
        time = model.time_token(torch.tensor([t], dtype=torch.float32, device=device), positional)
        cond = model.label_token(y.to(device), positional)
    return time.float(), cond.float()


def read_uvit_manifest(manifest_name: str | os.PathLike) -> dict:
    """A released U-ViT's manifest by name (a key of INITIAL_T, '.json' optional), or the
    manifest file at a path (same fields: 'config', 'keys')."""
    path = Path(manifest_name)
    if path.is_file():
        return json.loads(path.read_text())
    name = path.name.removesuffix(".json") + ".json"
    if name not in INITIAL_T:
        raise ValueError(
            f"unknown U-ViT manifest {str(manifest_name)!r}; expected a manifest file or one of "
            f"{sorted(INITIAL_T)}"
        )
    return registry.read_manifest(f"appendix/{name}")


def build_uvit(manifest_name: str | os.PathLike) -> UViT:
    """The architecture a manifest describes (see `read_uvit_manifest`), officially initialised,
    under the current default device (`with torch.device("meta"):` builds it without memory)."""
    return UViT(**read_uvit_manifest(manifest_name)["config"])


def load_uvit(
    path: str | os.PathLike, manifest_name: str | os.PathLike, weights_key: str | None = None
) -> UViT:
    """Build the U-ViT a manifest describes and load a checkpoint into it strictly.

    Args:
        path: the checkpoint (the released files are bare state_dicts).
        manifest_name: a released model's manifest ('uvit_h2_imagenet256.json', a key of
            INITIAL_T) or the path of a manifest file with the same fields.
        weights_key: as in `checkpoint.load_state_dict`; None finds the weights.

    Returns:
        the model on the CPU, in eval mode.

    Raises:
        CheckpointError: the file's keys or shapes differ from the manifest's (with what the
            file looks like instead), before any weight is copied.

    Shapes: as the manifest.
    """
    # built without initialising (2 GB for the H models): the strict load overwrites every tensor
    with torch.device("meta"):
        model = build_uvit(manifest_name)
    model = model.to_empty(device="cpu")
    checkpoint.load_into(model, path, weights_key=weights_key)
    return model.eval()
