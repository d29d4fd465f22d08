"""DiT, SiT, REPA's SiT and MG's SiT: the AdaLN-Zero diffusion transformers of the paper.

Matches, key for key and op for op, the official model files:
  - DiT  (Peebles & Xie 2023), facebookresearch/DiT `models.py`: `DiT-XL-2-256x256.pt` (bare state_dict).
  - SiT  (Ma et al. 2024), willisma/SiT `models.py`: same layers; the released file carries the
    8-channel learn_sigma head and the forward keeps only the first half of the output channels.
  - REPA (Yu et al. 2025), sihyun-yu/REPA `models/sit.py`: SiT plus the projector MLPs after block
    `encoder_depth`; the forward returns (x, zs).
  - MG   (Tang et al. 2025), tzco/Diffusion-wo-CFG `models.py`: SiT whose label table always has the
    null row (its LabelEmbedder hard-codes it), even with class_dropout_prob = 0.

Attribute names equal the checkpoint keys (see `semantic_bottleneck/manifests/*.json`), so official
files load with `strict=True`. The conditional vector c = t_embedder(t) + y_embedder(y) is exposed
as `condition(t, y)`, and every forward takes `c_fn`, a callable applied to c before the blocks
(the pruning operator P(c) of the paper); `c_fn=None` is the official forward.

`forward_with_cfg` exists exactly where the official class has one: DiT, SiT and MG (whose copy
guides every channel rather than DiT's first three); REPA's SiT has none (its guidance lives in
REPA's `samplers.py`), so `REPASiT` derives from the CFG-free `DiTBackbone`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

CFn = Callable[[Tensor], Tensor] | None


# ----------------------------------------------------------------------------- helpers


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """AdaLN modulation. Shapes: x (N, T, D), shift/scale (N, D) -> (N, T, D)."""
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


def timestep_embedding(t: Tensor, dim: int = 256, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal features of t, cosine half first (GLIDE/DiT); t is not rescaled.

    Args:
        t: timesteps as the model's sampler feeds them (DDPM index or float time).
        dim: feature size (256 in every official model).
        max_period: controls the lowest frequency.

    Returns:
        float32 features [cos(t f), sin(t f)] with f_i = exp(-ln(max_period) i / (dim // 2)).

    Shapes: t (N,) -> (N, dim).
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
    args = t[:, None].float() * freqs.to(t.device)[None]
    embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        embedding = torch.cat([embedding, torch.zeros_like(embedding[:, :1])], dim=-1)
    return embedding


def get_2d_sincos_pos_embed(embed_dim: int, grid_size: int) -> np.ndarray:
    """Fixed 2-D sin-cos positional embedding (MAE), first half encodes the column index.

    Shapes: -> (grid_size**2, embed_dim) float64.
    """
    if embed_dim % 4:
        raise ValueError(f"embed_dim must be a multiple of 4 for 2-D sin-cos, got {embed_dim}")
    grid_w, grid_h = np.meshgrid(
        np.arange(grid_size, dtype=np.float32), np.arange(grid_size, dtype=np.float32)
    )
    return np.concatenate(
        [_sincos_1d(embed_dim // 2, grid_w), _sincos_1d(embed_dim // 2, grid_h)], axis=1
    )


def _sincos_1d(embed_dim: int, pos: np.ndarray) -> np.ndarray:
    """Shapes: pos (...) -> (pos.size, embed_dim), sin half first."""
    omega = 1.0 / 10000 ** (np.arange(embed_dim // 2, dtype=np.float64) / (embed_dim / 2.0))
    out = np.einsum("m,d->md", pos.reshape(-1), omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def combine_cfg_halves(
    out: Tensor, cfg_scale: float | Tensor, channels: int, guide: bool = True
) -> Tensor:
    """The combination step shared by the official `forward_with_cfg` methods.

    The leading `channels` channels of the [cond; uncond] output become
    uncond + cfg_scale (cond - uncond) (or stay cond when `guide` is False), written to both
    halves; the remaining channels are returned row for row as the model produced them.

    Args:
        out: model output on the batch [cond; uncond].
        cfg_scale: guidance scale, a float or a tensor broadcasting against (N, channels, H, W).
        channels: number of leading channels to guide.
        guide: False keeps the conditional rows (LightningDiT outside its interval).

    Returns:
        the 2N-row result.

    Shapes: out (2N, C, H, W) -> (2N, C, H, W).
    """
    eps, rest = out[:, :channels], out[:, channels:]
    cond_eps, uncond_eps = torch.split(eps, len(eps) // 2, dim=0)
    half_eps = uncond_eps + cfg_scale * (cond_eps - uncond_eps) if guide else cond_eps
    return torch.cat([torch.cat([half_eps, half_eps], dim=0), rest], dim=1)


def check_sizes(hidden_size: int, num_heads: int, input_size: int, patch_size: int) -> None:
    """Raise ValueError unless the heads divide the width and the patches tile the latent."""
    if hidden_size % num_heads or input_size % patch_size:
        raise ValueError(
            f"need hidden_size % num_heads == 0 and input_size % patch_size == 0, got "
            f"{hidden_size=}, {num_heads=}, {input_size=}, {patch_size=}"
        )


# ----------------------------------------------------------------------------- embedders


class PatchEmbed(nn.Module):
    """Non-overlapping patches to tokens (timm's PatchEmbed with norm=Identity, flatten=True)."""

    def __init__(self, img_size: int, patch_size: int, in_chans: int, embed_dim: int):
        super().__init__()
        self.patch_size = (patch_size, patch_size)
        self.num_patches = (img_size // patch_size) ** 2
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        """Shapes: (N, C, H, W) -> (N, T, D)."""
        return self.proj(x).flatten(2).transpose(1, 2)


class TimestepEmbedder(nn.Module):
    """t -> 256-d sinusoid -> Linear -> SiLU -> Linear (keys `t_embedder.mlp.{0,2}`)."""

    def __init__(
        self, hidden_size: int, frequency_embedding_size: int = 256, cast_to_t_dtype: bool = False
    ):
        super().__init__()
        self.frequency_embedding_size = frequency_embedding_size
        self.cast_to_t_dtype = cast_to_t_dtype  # REPA casts the sinusoid to t's dtype
        self.mlp = nn.Sequential(
            nn.Linear(frequency_embedding_size, hidden_size),
            nn.SiLU(),
            nn.Linear(hidden_size, hidden_size),
        )

    def forward(self, t: Tensor) -> Tensor:
        """Shapes: (N,) -> (N, D)."""
        t_freq = timestep_embedding(t, self.frequency_embedding_size)
        if self.cast_to_t_dtype:
            t_freq = t_freq.to(t.dtype)
        return self.mlp(t_freq)


class LabelEmbedder(nn.Module):
    """Class label -> row of `embedding_table`; row `num_classes` is the null (unconditional) class.

    The null row exists when label dropout is on (`dropout_prob > 0`) or when `null_row=True`
    (MG keeps it with dropout 0).
    """

    def __init__(self, num_classes: int, hidden_size: int, dropout_prob: float, null_row=False):
        super().__init__()
        self.num_classes = num_classes
        self.dropout_prob = dropout_prob
        has_null = dropout_prob > 0 or null_row
        self.embedding_table = nn.Embedding(num_classes + int(has_null), hidden_size)

    def token_drop(self, labels: Tensor, force_drop_ids: Tensor | None = None) -> Tensor:
        """Replace dropped labels by the null class. Shapes: (N,) -> (N,)."""
        if force_drop_ids is None:
            drop = torch.rand(labels.shape[0], device=labels.device) < self.dropout_prob
        else:
            drop = force_drop_ids == 1
        return torch.where(drop, self.num_classes, labels)

    def forward(self, labels: Tensor, train: bool, force_drop_ids: Tensor | None = None) -> Tensor:
        """Shapes: (N,) int64 -> (N, D). Dropout only in training (or when forced)."""
        if (train and self.dropout_prob > 0) or force_drop_ids is not None:
            labels = self.token_drop(labels, force_drop_ids)
        return self.embedding_table(labels)


class VectorEmbedder(nn.Module):
    """A continuous condition v -> Linear(v), summed with t_embedder(t) as X-MDPT and MDSGen do.

    A dropped condition adds nothing (their `cond_mask`): the unconditional c is t_embedder(t)
    alone, there is no learned null. Not an official family's module: the testbed's
    continuous-condition model uses it in place of the label table.
    """

    def __init__(self, cond_dim: int, hidden_size: int, dropout_prob: float):
        super().__init__()
        self.cond_dim = cond_dim
        self.dropout_prob = dropout_prob
        self.proj = nn.Linear(cond_dim, hidden_size)

    def forward(self, v: Tensor, train: bool, force_drop_ids: Tensor | None = None) -> Tensor:
        """Shapes: (N, cond_dim) float -> (N, D); dropped rows are 0. Dropout only in training."""
        out = self.proj(v)
        if (train and self.dropout_prob > 0) or force_drop_ids is not None:
            if force_drop_ids is None:
                drop = torch.rand(v.shape[0], device=v.device) < self.dropout_prob
            else:
                drop = force_drop_ids == 1
            out = torch.where(drop[:, None], torch.zeros_like(out), out)
        return out


# ----------------------------------------------------------------------------- blocks


class Attention(nn.Module):
    """Multi-head self-attention with timm's keys (`qkv`, `proj`, optional `q_norm`/`k_norm`)."""

    def __init__(self, dim: int, num_heads: int, qk_norm: bool = False, fused_attn: bool = True):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.fused_attn = fused_attn
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.q_norm = nn.LayerNorm(self.head_dim) if qk_norm else nn.Identity()
        self.k_norm = nn.LayerNorm(self.head_dim) if qk_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        """Shapes: (N, T, D) -> (N, T, D)."""
        n, t, d = x.shape
        qkv = self.qkv(x).reshape(n, t, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # (N, H, T, Dh) each
        q, k = self.q_norm(q), self.k_norm(k)
        if self.fused_attn:
            x = F.scaled_dot_product_attention(q, k, v)
        else:  # the explicit softmax path of timm (REPA's default, fused_attn=False)
            attn = (q * self.scale) @ k.transpose(-2, -1)
            x = attn.softmax(dim=-1) @ v
        return self.proj(x.transpose(1, 2).reshape(n, t, d))


class Mlp(nn.Module):
    """fc1 -> GELU(tanh) -> fc2 (timm's Mlp keys; DiT uses the tanh approximation)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        """Shapes: (N, T, D) -> (N, T, D)."""
        return self.fc2(self.act(self.fc1(x)))


class DiTBlock(nn.Module):
    """Transformer block with adaLN-Zero: c -> (shift, scale, gate) for attention and MLP."""

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float = 4.0, **attn_kwargs):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(hidden_size, num_heads, **attn_kwargs)
        self.norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(hidden_size, int(hidden_size * mlp_ratio))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 6 * hidden_size))

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        """Shapes: x (N, T, D), c (N, D) -> (N, T, D)."""
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.adaLN_modulation(
            c
        ).chunk(6, dim=1)
        x = x + gate_msa.unsqueeze(1) * self.attn(modulate(self.norm1(x), shift_msa, scale_msa))
        x = x + gate_mlp.unsqueeze(1) * self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))
        return x


class FinalLayer(nn.Module):
    """adaLN (shift, scale) -> Linear to patch_size**2 * out_channels."""

    def __init__(self, hidden_size: int, patch_size: int, out_channels: int):
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden_size, patch_size * patch_size * out_channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size))

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        """Shapes: x (N, T, D), c (N, D) -> (N, T, p*p*C_out)."""
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return self.linear(modulate(self.norm_final(x), shift, scale))


# ----------------------------------------------------------------------------- models


def init_adaln_zero(
    model: nn.Module,
    pos: np.ndarray,
    pos_embeds: Sequence[nn.Parameter],
    blocks: Iterable[nn.Module],
    labels: LabelEmbedder | None = None,
) -> None:
    """DiT's initialisation (Sec. 3.2 "adaLN-Zero"), shared by the models built on its layers.

    Xavier for every Linear, `pos` into each positional embedding, the patch embedding
    initialised like a Linear, N(0, 0.02) for the label table and the timestep MLP, and zero
    modulation and output: every block in `blocks` and the final layer start as the identity.
    The draws run in this order (the official one), so a seeded build matches.

    Args:
        model: has `x_embedder` (PatchEmbed-like), `t_embedder` and `final_layer`.
        pos: the fixed sin-cos embedding to start from.
        pos_embeds: the parameters that start as `pos`.
        blocks: the adaLN blocks to zero.
        labels: the label embedder, or None (no label table).

    Shapes: pos (T, D); each of pos_embeds (1, T, D).
    """
    for module in model.modules():  # xavier for every Linear: transformer default
        if isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            nn.init.zeros_(module.bias)
    for pos_embed in pos_embeds:
        pos_embed.data.copy_(torch.from_numpy(pos).float().unsqueeze(0))
    w = model.x_embedder.proj.weight.data  # patch embedding initialised like a Linear
    nn.init.xavier_uniform_(w.view(w.shape[0], -1))
    nn.init.zeros_(model.x_embedder.proj.bias)
    if labels is not None:
        nn.init.normal_(labels.embedding_table.weight, std=0.02)
    nn.init.normal_(model.t_embedder.mlp[0].weight, std=0.02)
    nn.init.normal_(model.t_embedder.mlp[2].weight, std=0.02)
    for block in blocks:
        nn.init.zeros_(block.adaLN_modulation[-1].weight)
        nn.init.zeros_(block.adaLN_modulation[-1].bias)
    nn.init.zeros_(model.final_layer.adaLN_modulation[-1].weight)
    nn.init.zeros_(model.final_layer.adaLN_modulation[-1].bias)
    nn.init.zeros_(model.final_layer.linear.weight)
    nn.init.zeros_(model.final_layer.linear.bias)


class DiTBackbone(nn.Module):
    """The AdaLN-Zero transformer that DiT, SiT, REPA and MG share, with DiT's forward and no CFG
    forward (REPA's official SiT has none)."""

    def __init__(
        self,
        input_size: int = 32,
        patch_size: int = 2,
        in_channels: int = 4,
        hidden_size: int = 1152,
        depth: int = 28,
        num_heads: int = 16,
        mlp_ratio: float = 4.0,
        class_dropout_prob: float = 0.1,
        num_classes: int = 1000,
        learn_sigma: bool = True,
        null_row: bool = False,
        cond_dim: int = 0,
        **attn_kwargs,
    ):
        super().__init__()
        check_sizes(hidden_size, num_heads, input_size, patch_size)
        self.learn_sigma = learn_sigma
        self.in_channels = in_channels
        self.out_channels = in_channels * 2 if learn_sigma else in_channels
        self.patch_size = patch_size
        self.num_heads = num_heads
        self.num_classes = num_classes
        self.x_embedder = PatchEmbed(input_size, patch_size, in_channels, hidden_size)
        self.t_embedder = TimestepEmbedder(hidden_size)
        if cond_dim:  # a continuous condition (the testbed's analogue of X-MDPT and MDSGen)
            self.y_embedder = VectorEmbedder(cond_dim, hidden_size, class_dropout_prob)
        else:
            self.y_embedder = LabelEmbedder(num_classes, hidden_size, class_dropout_prob, null_row)
        num_patches = self.x_embedder.num_patches
        # fixed sin-cos embedding, stored in the state_dict but never trained
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches, hidden_size), requires_grad=False)
        self.blocks = nn.ModuleList(
            DiTBlock(hidden_size, num_heads, mlp_ratio, **attn_kwargs) for _ in range(depth)
        )
        self.final_layer = FinalLayer(hidden_size, patch_size, self.out_channels)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """The official initialisation (DiT Sec. 3.2 "adaLN-Zero")."""
        grid = int(self.x_embedder.num_patches**0.5)
        pos = get_2d_sincos_pos_embed(self.pos_embed.shape[-1], grid)
        # a VectorEmbedder stays a xavier Linear
        labels = self.y_embedder if isinstance(self.y_embedder, LabelEmbedder) else None
        init_adaln_zero(self, pos, [self.pos_embed], self.blocks, labels)

    def unpatchify(self, x: Tensor) -> Tensor:
        """Shapes: (N, T, p*p*C) -> (N, C, H, W)."""
        c, p = self.out_channels, self.patch_size
        h = w = int(x.shape[1] ** 0.5)
        x = x.reshape(x.shape[0], h, w, p, p, c)
        x = torch.einsum("nhwpqc->nchpwq", x)
        return x.reshape(x.shape[0], c, h * p, w * p)

    def condition(self, t: Tensor, y: Tensor) -> Tensor:
        """The conditional vector c = t_embedder(t) + y_embedder(y).

        Shapes: t (N,), y (N,) labels, or (N, cond_dim) vectors with `cond_dim` -> (N, D).
        """
        return self.t_embedder(t) + self.y_embedder(y, self.training)

    def backbone(self, x: Tensor, t: Tensor, y: Tensor, c_fn: CFn = None) -> Tensor:
        """Patchify, c (optionally transformed by c_fn), blocks, final layer, unpatchify.

        Shapes: x (N, C, H, W), t (N,), y (N,) -> (N, out_channels, H, W).
        """
        x = self.x_embedder(x) + self.pos_embed  # (N, T, D)
        c = self.condition(t, y)  # (N, D)
        if c_fn is not None:
            c = c_fn(c)
        for block in self.blocks:
            x = block(x, c)  # (N, T, D)
        x = self.final_layer(x, c)  # (N, T, p*p*C_out)
        return self.unpatchify(x)  # (N, C_out, H, W)

    def forward(self, x: Tensor, t: Tensor, y: Tensor, c_fn: CFn = None) -> Tensor:
        """DiT forward. Shapes: x (N, C, H, W), t (N,), y (N,) -> (N, 2C or C, H, W)."""
        return self.backbone(x, t, y, c_fn)


class ConditionSetModel(nn.Module):
    """A continuous-condition model seen as a class-conditional one over a fixed set of n
    conditions: label i stands for condition i and label n (the null class) for the dropped
    condition, whose c is t_embedder(t) alone. Samplers, guidance, pruning hooks and c analysis
    then treat it exactly as a class model with n classes.

    Shapes: conditions (n, cond_dim).
    """

    def __init__(self, model: DiTBackbone, conditions: Tensor):
        super().__init__()
        if not isinstance(model.y_embedder, VectorEmbedder):
            raise ValueError(f"{type(model).__name__} has no continuous condition (cond_dim=0)")
        want = (len(conditions), model.y_embedder.cond_dim)
        if conditions.ndim != 2 or tuple(conditions.shape) != want:
            raise ValueError(f"conditions: expected shape (n, {want[1]}), got {conditions.shape}")
        self.model = model
        self.register_buffer("conditions", conditions.float(), persistent=False)

    @property
    def num_classes(self) -> int:
        return len(self.conditions)

    def _vectors(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """Condition vectors of labels y and which rows are null. Shapes: (N,) -> (N, k), (N,)."""
        if y.is_floating_point() or y.min() < 0 or y.max() > self.num_classes:
            raise ValueError(f"labels must be integers in [0, {self.num_classes}] (null)")
        null = y == self.num_classes
        return self.conditions[y.clamp(max=self.num_classes - 1)], null

    def condition(self, t: Tensor, y: Tensor) -> Tensor:
        """c = t_embedder(t) + Linear(v_y), and t_embedder(t) for the null label.

        Shapes: (N,), (N,) -> (N, D)."""
        v, null = self._vectors(y)
        return self.model.t_embedder(t) + self.model.y_embedder(v, False, null.long())

    def forward(self, x: Tensor, t: Tensor, y: Tensor, c_fn: CFn = None) -> Tensor:
        """The model's forward on the conditions of labels y. Shapes: as the model's."""
        v, null = self._vectors(y)

        def drop_then(c: Tensor) -> Tensor:
            # null rows carry no condition: c = T exactly, as a dropped condition in training
            if null.any():
                c = torch.where(null[:, None], self.model.t_embedder(t), c)
            return c if c_fn is None else c_fn(c)

        return self.model(x, t, v, c_fn=drop_then)


class DiT(DiTBackbone):
    """DiT: epsilon (and, with learn_sigma, variance) prediction; t is the DDPM index 0..999."""

    def forward_with_cfg(
        self, x: Tensor, t: Tensor, y: Tensor, cfg_scale: float, c_fn: CFn = None
    ) -> Tensor:
        """`DiT.forward_with_cfg` of facebookresearch/DiT `models.py` (and, through inheritance,
        `SiT.forward_with_cfg` of willisma/SiT `models.py`, the same method over SiT's forward).

        The first half of x is run twice, against the labels y = [labels; null]; channels 0-2
        only (`cfg_channels`; not the whole epsilon: the official default, kept for parity) get
        uncond + cfg_scale (cond - uncond), copied to both halves, and every other channel is the
        raw output of its own row. The project's samplers do not call this: they wrap `forward`
        in `sampling.guidance.guided`, which computes the same combination (guided_channels=3)
        on the conditional rows.

        Args:
            x: (2N, ...) latents; only the first half is read.
            t: timesteps, (2N,).
            y: [labels; null labels], (2N,).
            cfg_scale: guidance scale w.
            c_fn: callable on c, as in `forward` (not in the official signature; None there).

        Returns:
            [guided; guided] on channels :3, the raw [cond; uncond] output on the rest.

        Shapes: x (2N, C, H, W), t (2N,), y (2N,) -> (2N, C_out, H, W).
        """
        half = x[: len(x) // 2]
        out = self.forward(torch.cat([half, half], dim=0), t, y, c_fn)
        return combine_cfg_halves(out, cfg_scale, self.cfg_channels)

    @property
    def cfg_channels(self) -> int:
        """Channels `forward_with_cfg` guides: DiT's and SiT's first 3 (MG: all)."""
        return 3


class SiT(DiT):
    """SiT: velocity prediction, float t in [0, 1] with t = 0 noise. With learn_sigma the head is
    8-channel (as in the released file) and the forward keeps the first half."""

    def forward(self, x: Tensor, t: Tensor, y: Tensor, c_fn: CFn = None) -> Tensor:
        """Shapes: x (N, C, H, W), t (N,), y (N,) -> (N, C, H, W)."""
        out = self.backbone(x, t, y, c_fn)
        return out.chunk(2, dim=1)[0] if self.learn_sigma else out


class MGSiT(SiT):
    """MG's SiT: plain SiT whose label table keeps the null row at any dropout (t = 1 is noise)."""

    def __init__(self, **config):
        config.setdefault("learn_sigma", False)
        super().__init__(null_row=True, **config)

    @property
    def cfg_channels(self) -> int:
        """MG's `SiT.forward_with_cfg` (tzco/Diffusion-wo-CFG `models.py`, read in its copy
        Peterande/Diffusion-wo-CFG) guides the first `in_channels` channels: every channel the
        forward returns, so nothing passes through unguided. MG samples without guidance; where
        guidance is wanted the samplers use `sampling.guidance.guided` with guided_channels=None.
        """
        return self.in_channels


def build_projector(hidden_size: int, projector_dim: int, z_dim: int) -> nn.Sequential:
    """REPA's projector MLP: hidden -> projector_dim -> projector_dim -> z_dim with SiLU."""
    return nn.Sequential(
        nn.Linear(hidden_size, projector_dim),
        nn.SiLU(),
        nn.Linear(projector_dim, projector_dim),
        nn.SiLU(),
        nn.Linear(projector_dim, z_dim),
    )


class REPASiT(DiTBackbone):
    """REPA's SiT: no learn_sigma, projectors after block `encoder_depth`, forward -> (x, zs).

    Float t in [0, 1] with t = 1 noise (linear path x_t = (1 - t) x + t eps, velocity target).
    The official class (sihyun-yu/REPA `models/sit.py`) has no `forward_with_cfg`: REPA guides in
    its `samplers.py`, which `sampling.repa` reproduces, so this class offers none either.
    """

    def __init__(
        self,
        path_type: str = "edm",
        input_size: int = 32,
        patch_size: int = 2,
        in_channels: int = 4,
        hidden_size: int = 1152,
        decoder_hidden_size: int = 768,
        encoder_depth: int = 8,
        depth: int = 28,
        num_heads: int = 16,
        mlp_ratio: float = 4.0,
        class_dropout_prob: float = 0.1,
        num_classes: int = 1000,
        use_cfg: bool = False,
        z_dims: tuple[int, ...] | list[int] = (768,),
        projector_dim: int = 2048,
        fused_attn: bool = True,
        qk_norm: bool = False,
    ):
        if decoder_hidden_size != hidden_size:
            raise ValueError(
                f"decoder_hidden_size must equal hidden_size (as in every released REPA model), "
                f"got {decoder_hidden_size} and {hidden_size}"
            )
        if not 1 <= encoder_depth <= depth:
            raise ValueError(f"encoder_depth must be in 1..depth={depth}, got {encoder_depth}")
        self.path_type = path_type
        self.use_cfg = use_cfg
        self.encoder_depth = encoder_depth
        self.z_dims = list(z_dims)
        super().__init__(
            input_size=input_size,
            patch_size=patch_size,
            in_channels=in_channels,
            hidden_size=hidden_size,
            depth=depth,
            num_heads=num_heads,
            mlp_ratio=mlp_ratio,
            class_dropout_prob=class_dropout_prob,
            num_classes=num_classes,
            learn_sigma=False,
            fused_attn=fused_attn,
            qk_norm=qk_norm,
        )
        self.t_embedder.cast_to_t_dtype = True
        self.projectors = nn.ModuleList(
            build_projector(hidden_size, projector_dim, z) for z in self.z_dims
        )
        for module in self.projectors.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(
        self, x: Tensor, t: Tensor, y: Tensor, c_fn: CFn = None
    ) -> tuple[Tensor, list[Tensor]]:
        """Shapes: x (N, C, H, W), t (N,), y (N,) -> ((N, C, H, W), [(N, T, z_dim), ...])."""
        x = self.x_embedder(x) + self.pos_embed  # (N, T, D)
        n, tokens, d = x.shape
        c = self.condition(t, y)  # (N, D)
        if c_fn is not None:
            c = c_fn(c)
        zs = []
        for i, block in enumerate(self.blocks):
            x = block(x, c)  # (N, T, D)
            if i + 1 == self.encoder_depth:
                zs = [p(x.reshape(-1, d)).reshape(n, tokens, -1) for p in self.projectors]
        x = self.final_layer(x, c)  # (N, T, p*p*C)
        return self.unpatchify(x), zs


# Official size names -> architecture (DiT-style configs; input/in_channels follow each family).
SIZES = {
    "XL/2": dict(depth=28, hidden_size=1152, patch_size=2, num_heads=16),
    "L/2": dict(depth=24, hidden_size=1024, patch_size=2, num_heads=16),
    "B/2": dict(depth=12, hidden_size=768, patch_size=2, num_heads=12),
    "S/2": dict(depth=12, hidden_size=384, patch_size=2, num_heads=6),
}
