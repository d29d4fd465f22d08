"""LightningDiT: DiT with RoPE, RMSNorm, SwiGLU and optional qk-norm / shift-free adaLN.

Matches, key for key and op for op (eval mode), the model of Yao, Yang & Wang, "Reconstruction
vs. Generation: Taming Optimization Dilemma in Latent Diffusion Models" (CVPR 2025),
hustvl/LightningDiT `models/lightningdit.py` with its helpers `models/rmsnorm.py` (Llama's
RMSNorm), `models/swiglu_ffn.py` and `models/pos_embed.py` (EVA-02's VisionRotaryEmbeddingFast).
The released `lightningdit-xl-imagenet256-800ep.pt` is a torch pickle holding either the bare
state_dict or a training dict whose `ema` entry is it; `LightningDiT-XL/1` runs on 16x16x32
VA-VAE latents with patch 1, and its state_dict carries the RoPE tables as persistent buffers
(`feat_rope.freqs_cos` / `freqs_sin`, see `semantic_bottleneck/manifests/lightningdit_xl1.json`).

Time is a float in [0, 1] with t = 0 pure noise (SiT convention, velocity prediction). The
embedders, the patch embedding, the sin-cos `pos_embed`, the final layer and the initialisation
are DiT's and come from `zoo/dit.py`. As there, c = t_embedder(t) + y_embedder(y) is exposed as
`condition(t, y)` and every forward takes `c_fn`, applied to c before the blocks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from semantic_bottleneck.zoo import dit
from semantic_bottleneck.zoo.dit import (
    CFn,
    DiT,
    FinalLayer,
    LabelEmbedder,
    Mlp,
    PatchEmbed,
    TimestepEmbedder,
    modulate,
)

# ----------------------------------------------------------------------------- helpers


def modulate_scale(x: Tensor, shift: Tensor | None, scale: Tensor) -> Tensor:
    """AdaLN modulation that also takes shift=None (the `wo_shift` blocks: scale only).

    Shapes: x (N, T, D), shift/scale (N, D) -> (N, T, D).
    """
    if shift is None:
        return x * (1 + scale.unsqueeze(1))
    return modulate(x, shift, scale)


def rotate_half(x: Tensor) -> Tensor:
    """Rotate interleaved pairs by 90 degrees: (x0, x1, x2, x3, ...) -> (-x1, x0, -x3, x2, ...).

    EVA-02's convention: the rotated pairs are adjacent channels (2i, 2i+1), not the two halves.

    Shapes: (..., d) with d even -> (..., d).
    """
    pairs = x.unflatten(-1, (-1, 2))  # (..., d/2, 2)
    x1, x2 = pairs.unbind(dim=-1)
    return torch.stack((-x2, x1), dim=-1).flatten(-2)


def rope_angles(dim: int, grid_size: int, theta: float = 10000.0) -> Tensor:
    """2-D axial RoPE angles of EVA-02's VisionRotaryEmbeddingFast ('lang' frequencies).

    Each axis gets `dim` channels: `dim // 2` frequencies theta^(-2i/dim), each repeated twice
    (one rotated pair). The first `dim` channels encode the row, the last `dim` the column.

    Args:
        dim: channels per axis (half the attention head size).
        grid_size: tokens per side; positions are arange(L) / L * L as in the official code.
        theta: base of the frequencies.

    Returns:
        float32 angles, row-major token order (token = row * grid_size + col).

    Shapes: -> (grid_size**2, 2 * dim).
    """
    freqs = 1.0 / (theta ** (torch.arange(0, dim, 2)[: dim // 2].float() / dim))  # (dim/2,)
    pos = torch.arange(grid_size) / grid_size * grid_size  # float32 positions
    angles = (pos[:, None] * freqs[None, :]).repeat_interleave(2, dim=-1)  # (L, dim)
    rows = angles[:, None, :].expand(grid_size, grid_size, dim)
    cols = angles[None, :, :].expand(grid_size, grid_size, dim)
    return torch.cat([rows, cols], dim=-1).reshape(grid_size * grid_size, 2 * dim)


# ----------------------------------------------------------------------------- layers


class RMSNorm(nn.Module):
    """Llama's RMSNorm: normalise in float32, cast back to the input dtype, then scale by weight.

    The weight multiplies after the cast, so a bf16 input and an fp32 weight give fp32 output,
    as in the official layer.
    """

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        """Shapes: (..., dim) -> (..., dim)."""
        xf = x.float()
        normed = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return normed.type_as(x) * self.weight


class SwiGLUFFN(nn.Module):
    """w12 -> split (x1, x2) -> SiLU(x1) * x2 -> w3 (keys `mlp.w12`, `mlp.w3`)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.w12 = nn.Linear(dim, 2 * hidden)
        self.w3 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        """Shapes: (N, T, D) -> (N, T, D)."""
        x1, x2 = self.w12(x).chunk(2, dim=-1)
        return self.w3(F.silu(x1) * x2)


class VisionRotaryEmbeddingFast(nn.Module):
    """2-D RoPE on a square token grid; the cos/sin tables are persistent buffers (checkpoint keys)."""

    def __init__(self, dim: int, pt_seq_len: int):
        super().__init__()
        angles = rope_angles(dim, pt_seq_len)
        self.register_buffer("freqs_cos", angles.cos())
        self.register_buffer("freqs_sin", angles.sin())

    def forward(self, x: Tensor) -> Tensor:
        """Shapes: (N, H, T, Dh) -> (N, H, T, Dh), with T = pt_seq_len**2 and Dh = 2 * dim."""
        return x * self.freqs_cos + rotate_half(x) * self.freqs_sin


class RoPEAttention(dit.Attention):
    """Self-attention with optional RMSNorm qk-norm and RoPE on q and k (after the qk-norm)."""

    def __init__(self, dim: int, num_heads: int, qk_norm: bool = False, use_rmsnorm: bool = False):
        super().__init__(dim, num_heads, qk_norm=qk_norm)
        if qk_norm and use_rmsnorm:  # the official block swaps LayerNorm for RMSNorm here too
            self.q_norm = RMSNorm(self.head_dim)
            self.k_norm = RMSNorm(self.head_dim)

    def forward(self, x: Tensor, rope: VisionRotaryEmbeddingFast | None = None) -> Tensor:
        """Shapes: x (N, T, D) -> (N, T, D)."""
        n, t, d = x.shape
        qkv = self.qkv(x).reshape(n, t, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # (N, H, T, Dh) each
        q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            q, k = rope(q), rope(k)
        if self.fused_attn:
            x = F.scaled_dot_product_attention(q, k, v)
        else:
            x = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1) @ v
        return self.proj(x.transpose(1, 2).reshape(n, t, d))


class LightningDiTBlock(nn.Module):
    """adaLN-Zero block; 6-way modulation, or 4-way (no shifts) with `wo_shift`."""

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        use_qknorm: bool = False,
        use_swiglu: bool = False,
        use_rmsnorm: bool = False,
        wo_shift: bool = False,
    ):
        super().__init__()
        if use_rmsnorm:
            self.norm1, self.norm2 = RMSNorm(hidden_size), RMSNorm(hidden_size)
        else:
            self.norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
            self.norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.attn = RoPEAttention(hidden_size, num_heads, use_qknorm, use_rmsnorm)
        mlp_hidden = int(hidden_size * mlp_ratio)
        if use_swiglu:  # 2/3 of the MLP width keeps the parameter count of the GELU MLP
            self.mlp = SwiGLUFFN(hidden_size, int(2 / 3 * mlp_hidden))
        else:
            self.mlp = Mlp(hidden_size, mlp_hidden)
        self.wo_shift = wo_shift
        n_mod = 4 if wo_shift else 6
        self.adaLN_modulation = nn.Sequential(
            nn.SiLU(), nn.Linear(hidden_size, n_mod * hidden_size)
        )

    def forward(self, x: Tensor, c: Tensor, feat_rope: VisionRotaryEmbeddingFast | None = None):
        """Shapes: x (N, T, D), c (N, D) -> (N, T, D)."""
        if self.wo_shift:
            scale_msa, gate_msa, scale_mlp, gate_mlp = self.adaLN_modulation(c).chunk(4, dim=1)
            shift_msa = shift_mlp = None
        else:
            shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.adaLN_modulation(
                c
            ).chunk(6, dim=1)
        h = modulate_scale(self.norm1(x), shift_msa, scale_msa)
        x = x + gate_msa.unsqueeze(1) * self.attn(h, rope=feat_rope)
        h = modulate_scale(self.norm2(x), shift_mlp, scale_mlp)
        return x + gate_mlp.unsqueeze(1) * self.mlp(h)


class LightningFinalLayer(FinalLayer):
    """DiT's final layer (always shift and scale), with RMSNorm when `use_rmsnorm`."""

    def __init__(self, hidden_size: int, patch_size: int, out_channels: int, use_rmsnorm=False):
        super().__init__(hidden_size, patch_size, out_channels)
        if use_rmsnorm:
            self.norm_final = RMSNorm(hidden_size)


# ----------------------------------------------------------------------------- model


class LightningDiT(nn.Module):
    """LightningDiT: velocity prediction on VA-VAE latents, float t in [0, 1] with t = 0 noise."""

    def __init__(
        self,
        input_size: int = 32,
        patch_size: int = 2,
        in_channels: int = 32,
        hidden_size: int = 1152,
        depth: int = 28,
        num_heads: int = 16,
        mlp_ratio: float = 4.0,
        class_dropout_prob: float = 0.1,
        num_classes: int = 1000,
        learn_sigma: bool = False,
        use_qknorm: bool = False,
        use_swiglu: bool = False,
        use_rope: bool = False,
        use_rmsnorm: bool = False,
        wo_shift: bool = False,
        use_checkpoint: bool = False,
    ):
        super().__init__()
        if hidden_size % num_heads or input_size % patch_size:
            raise ValueError(
                f"need hidden_size % num_heads == 0 and input_size % patch_size == 0, got "
                f"hidden_size={hidden_size}, num_heads={num_heads}, input_size={input_size}, "
                f"patch_size={patch_size}"
            )
        head_dim = hidden_size // num_heads
        if use_rope and head_dim % 4:  # two axes, each made of rotated pairs
            raise ValueError(f"use_rope needs a head size divisible by 4, got {head_dim}")
        self.learn_sigma = learn_sigma
        self.in_channels = in_channels
        self.out_channels = in_channels * 2 if learn_sigma else in_channels
        self.input_size = input_size
        self.patch_size = patch_size
        self.num_heads = num_heads
        self.num_classes = num_classes
        self.use_rope = use_rope
        self.use_rmsnorm = use_rmsnorm
        self.depth = depth
        self.hidden_size = hidden_size
        self.use_checkpoint = use_checkpoint
        self.x_embedder = PatchEmbed(input_size, patch_size, in_channels, hidden_size)
        self.t_embedder = TimestepEmbedder(hidden_size)
        self.y_embedder = LabelEmbedder(num_classes, hidden_size, class_dropout_prob)
        num_patches = self.x_embedder.num_patches
        # fixed sin-cos embedding, stored in the state_dict but never trained (added besides RoPE)
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches, hidden_size), requires_grad=False)
        if use_rope:
            self.feat_rope = VisionRotaryEmbeddingFast(head_dim // 2, input_size // patch_size)
        else:
            self.feat_rope = None
        self.blocks = nn.ModuleList(
            LightningDiTBlock(
                hidden_size, num_heads, mlp_ratio, use_qknorm, use_swiglu, use_rmsnorm, wo_shift
            )
            for _ in range(depth)
        )
        self.final_layer = LightningFinalLayer(
            hidden_size, patch_size, self.out_channels, use_rmsnorm
        )
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """The official initialisation, DiT's: xavier Linears, sin-cos pos_embed, adaLN-Zero.

        RMSNorm weights keep their ones and the RoPE tables are fixed at construction.
        """
        DiT.initialize_weights(self)

    def unpatchify(self, x: Tensor) -> Tensor:
        """Shapes: (N, T, p*p*C) -> (N, C, H, W)."""
        return DiT.unpatchify(self, x)

    def condition(self, t: Tensor, y: Tensor) -> Tensor:
        """The conditional vector c = t_embedder(t) + y_embedder(y). Shapes: (N,), (N,) -> (N, D)."""
        return self.t_embedder(t) + self.y_embedder(y, self.training)

    def _check_inputs(self, x: Tensor, t: Tensor, y: Tensor) -> None:
        """Raise ValueError unless x is (N, C, H, W) at the model's size and t, y are (N,)."""
        expected = (self.in_channels, self.input_size, self.input_size)
        if x.ndim != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(
                f"x must be (N, {', '.join(map(str, expected))}), got {tuple(x.shape)}"
            )
        if t.shape != (x.shape[0],) or y.shape != (x.shape[0],):
            raise ValueError(
                f"t and y must be ({x.shape[0]},), got {tuple(t.shape)} and {tuple(y.shape)}"
            )

    def forward(self, x: Tensor, t: Tensor, y: Tensor, c_fn: CFn = None) -> Tensor:
        """The official forward; c_fn, if given, transforms c before the first block.

        Args:
            x: latents (VA-VAE, normalised by the latent statistics).
            t: float time in [0, 1], 0 = noise.
            y: class labels; `num_classes` is the null class.
            c_fn: callable on c (N, D) -> (N, D), e.g. the pruning operator; None = official.

        Returns:
            the velocity (the first half of the channels when learn_sigma).

        Shapes: x (N, C, H, W), t (N,), y (N,) -> (N, C, H, W).
        """
        self._check_inputs(x, t, y)
        x = self.x_embedder(x) + self.pos_embed  # (N, T, D)
        c = self.condition(t, y)  # (N, D)
        if c_fn is not None:
            c = c_fn(c)
        for block in self.blocks:
            if self.use_checkpoint:  # recompute activations in backward; same values
                x = checkpoint(block, x, c, self.feat_rope, use_reentrant=True)
            else:
                x = block(x, c, self.feat_rope)  # (N, T, D)
        x = self.final_layer(x, c)  # (N, T, p*p*C_out)
        x = self.unpatchify(x)  # (N, C_out, H, W)
        return x.chunk(2, dim=1)[0] if self.learn_sigma else x

    def forward_with_cfg(
        self,
        x: Tensor,
        t: Tensor,
        y: Tensor,
        cfg_scale: float,
        cfg_interval: bool | None = None,
        cfg_interval_start: float | None = None,
        c_fn: CFn = None,
    ) -> Tensor:
        """`LightningDiT.forward_with_cfg` of hustvl/LightningDiT `models/lightningdit.py`.

        DiT's method (channels 0-2 guided, copied to both halves; the others raw per row) with
        one addition: when `cfg_interval is True` (an identity test, as officially) and
        t[0] < cfg_interval_start, the guided channels keep the conditional output, i.e. no
        guidance near the noise end; only the first time of the batch is read. The project's
        samplers do not call this: they wrap `forward` in `sampling.guidance.guided` with
        guided_channels=3 and interval=(cfg_interval_start, 1), which computes the same
        combination on the conditional rows (and, outside the interval, runs those rows alone).

        Args:
            x: (2N, ...) latents; only the first half is read.
            t: times, (2N,).
            y: [labels; null labels], (2N,).
            cfg_scale: guidance scale w: uncond + w (cond - uncond).
            cfg_interval: True switches guidance off below `cfg_interval_start`.
            cfg_interval_start: first t (inclusive) that gets guidance; read only when
                `cfg_interval is True`.
            c_fn: callable on c, as in `forward` (not in the official signature; None there).

        Returns:
            [guided; guided] on channels :3, the raw [cond; uncond] output on the rest.

        Shapes: x (2N, C, H, W), t (2N,), y (2N,) -> (2N, C, H, W).
        """
        if len(x) % 2:
            raise ValueError(f"x must hold [cond; uncond] halves, got odd batch {len(x)}")
        half = x[: len(x) // 2]
        out = self.forward(torch.cat([half, half], dim=0), t, y, c_fn)
        guide = not (cfg_interval is True and t[0] < cfg_interval_start)
        return dit.combine_cfg_halves(out, cfg_scale, 3, guide=guide)


# Official size names -> architecture (models/lightningdit.py); the released model is XL/1.
SIZES = {
    "LightningDiT-B/1": dict(depth=12, hidden_size=768, patch_size=1, num_heads=12),
    "LightningDiT-B/2": dict(depth=12, hidden_size=768, patch_size=2, num_heads=12),
    "LightningDiT-L/2": dict(depth=24, hidden_size=1024, patch_size=2, num_heads=16),
    "LightningDiT-XL/1": dict(depth=28, hidden_size=1152, patch_size=1, num_heads=16),
    "LightningDiT-XL/2": dict(depth=28, hidden_size=1152, patch_size=2, num_heads=16),
    "LightningDiT-1p0B/1": dict(depth=24, hidden_size=1536, patch_size=1, num_heads=24),
    "LightningDiT-1p0B/2": dict(depth=24, hidden_size=1536, patch_size=2, num_heads=24),
    "LightningDiT-1p6B/1": dict(depth=28, hidden_size=1792, patch_size=1, num_heads=28),
    "LightningDiT-1p6B/2": dict(depth=28, hidden_size=1792, patch_size=2, num_heads=28),
}
