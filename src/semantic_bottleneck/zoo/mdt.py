"""MDT and MDTv2: masked diffusion transformers with relative position bias and a side-interpolater.

Matches, key for key and op for op, `masked_diffusion/models.py` of sail-sg/MDT (Gao et al.,
"Masked Diffusion Transformer is a Strong Image Synthesizer", ICCV 2023; MDTv2 in its arXiv v3):
  - MDT   (branch `mdtv1`): plain `blocks`; the decoder positional embedding is added before the
    last `decode_layer` blocks. Released as `mdt_xl2_v1_ckpt.pt` (XL/2, decode_layer=2).
  - MDTv2 (branch `main`): `en_inblocks` -> `en_outblocks` (U-Net long skips) -> `de_blocks`
    (each skips from the input tokens). Released as `mdt_xl2_v2_ckpt.pt` (XL/2, decode_layer=4).
Both files (Hub repo shgao/MDT-XL2) are bare state_dicts that load here with `strict=True` (see
`semantic_bottleneck/manifests/mdt*_xl2.json`). Every attention adds a learned BEiT relative
position bias; `pos_embed` and `decoder_pos_embed` are learnable (sin-cos initialised).

The side-interpolater (`sideblocks`, `mask_token`) runs only in masked training: a `mask_ratio`
and `enable_mask=True`, as officially. c = t_embedder(t) + y_embedder(y) is `condition(t, y)`;
every forward takes `c_fn`, applied to c before any block (the same c reaches every block, the
side block and the final layer); `c_fn=None` is the official forward.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from functools import partial

import numpy as np
import torch
from torch import Tensor, nn

from semantic_bottleneck.zoo import dit
from semantic_bottleneck.zoo.dit import CFn

# ----------------------------------------------------------------------------- helpers


def relative_position_index(height: int, width: int) -> Tensor:
    """BEiT's index of each token pair into the relative position bias table.

    Token i sits at (h_i, w_i) in row-major order; the pair (i, j) reads row
    (h_i - h_j + height - 1) * (2 width - 1) + (w_i - w_j + width - 1) of the table.

    Shapes: -> (height*width, height*width) int64.
    """
    hh, ww = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    coords = torch.stack([hh.flatten(), ww.flatten()])  # (2, T)
    rel = coords[:, :, None] - coords[:, None, :]  # (2, T, T): position of i minus position of j
    return (rel[0] + height - 1) * (2 * width - 1) + (rel[1] + width - 1)


def trunc_normal_(tensor: Tensor, std: float, a: float = -2.0, b: float = 2.0) -> Tensor:
    """In place N(0, std^2) truncated to [a, b] by the inverse CDF, as timm (which MDT uses).

    torch's own trunc_normal_ now samples differently, so a seeded build would not match.
    """
    cdf_a, cdf_b = (0.5 * (1 + math.erf(v / std / math.sqrt(2))) for v in (a, b))
    with torch.no_grad():
        tensor.uniform_(2 * cdf_a - 1, 2 * cdf_b - 1).erfinv_()
        return tensor.mul_(std * math.sqrt(2.0)).clamp_(min=a, max=b)


def random_masking(x: Tensor, mask_ratio: float | Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """MAE's per-sample random masking: keep the int(L (1 - mask_ratio)) tokens of lowest noise.

    Returns (kept tokens, mask with 1 = removed in grid order, ids_restore, ids_keep).
    Shapes: x (N, L, D) -> (N, K, D), (N, L), (N, L), (N, K).
    """
    n, length, _ = x.shape
    len_keep = int(length * (1 - mask_ratio))
    noise = torch.rand(n, length, device=x.device)
    ids_shuffle = torch.argsort(noise, dim=1)  # ascending: the first len_keep are kept
    return keep_first(x, ids_shuffle, len_keep)


def keep_first(
    x: Tensor, ids_shuffle: Tensor, len_keep: int
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """MAE's masking once the tokens are ordered: keep the first len_keep of ids_shuffle.

    Returns (kept tokens, mask with 1 = removed in grid order, ids_restore, ids_keep).
    Shapes: x (N, L, D), ids_shuffle (N, L) -> (N, K, D), (N, L), (N, L), (N, K).
    """
    n, length, d = x.shape
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    ids_keep = ids_shuffle[:, :len_keep]
    x_kept = torch.gather(x, 1, ids_keep.unsqueeze(-1).repeat(1, 1, d))
    mask = torch.ones(n, length, device=x.device)
    mask[:, :len_keep] = 0
    return x_kept, torch.gather(mask, 1, ids_restore), ids_restore, ids_keep


# ----------------------------------------------------------------------------- layers


def keep_mask(n: int, drop_prob: float, device: torch.device | str | None = None) -> Tensor:
    """Which rows keep their condition in the MDT-derived continuous models (X-MDPT, MDSGen):
    all for drop_prob = 0, none for 1, else each row with probability 1 - drop_prob, one uniform
    draw per row (their `prob_mask_like(shape, 1 - prob)`).

    Shapes: -> (n,) bool.
    """
    if drop_prob == 0:
        return torch.ones(n, dtype=torch.bool, device=device)
    if drop_prob == 1:
        return torch.zeros(n, dtype=torch.bool, device=device)
    return torch.zeros(n, device=device).uniform_(0, 1) < 1 - drop_prob


def check_masking(depth: int, decode_layer: int | None, mask_ratio: float | None) -> None:
    """Raise ValueError unless decode_layer is in 0..depth and mask_ratio is None or in [0, 1)
    (the settings of every masked diffusion transformer: MDT, X-MDPT, MDSGen)."""
    if decode_layer is None or not 0 <= int(decode_layer) <= depth:
        raise ValueError(f"decode_layer must be an int in 0..depth={depth}, got {decode_layer}")
    if mask_ratio is not None and not 0 <= mask_ratio < 1:
        raise ValueError(f"mask_ratio must be None or in [0, 1), got {mask_ratio}")


def power_cosine_weight(
    t: Tensor, cfg_scale: float, diffusion_steps: int = 1000, scale_pow: float = 4.0
) -> Tensor:
    """MDT's guidance weight per row, from 1 at t = diffusion_steps (noise) to cfg_scale at 0:
    w(t) = 1 + (cfg_scale - 1) (1 - cos(pi (1 - t / diffusion_steps)^scale_pow)) / 2, in the
    official op order (X-MDPT and MDSGen copy it).

    Shapes: t (N,) -> (N,).
    """
    s = (1 - torch.cos(((1 - t / diffusion_steps) ** scale_pow) * math.pi)) * 1 / 2
    return (cfg_scale - 1) * s + 1


def guide_all_channels(
    uncond: Tensor,
    cond: Tensor,
    t: Tensor,
    cfg_scale: float,
    diffusion_steps: int = 1000,
    scale_pow: float = 4.0,
) -> Tensor:
    """uncond + w(t) (cond - uncond) on every channel (the learned variance included), with the
    power-cosine weight: the combination of X-MDPT's and MDSGen's `forward_with_cfg`.

    Shapes: uncond, cond (N, C, H, W), t (N,) -> (N, C, H, W).
    """
    w = power_cosine_weight(t, cfg_scale, diffusion_steps, scale_pow)[: len(cond)]
    return uncond + w.view(-1, 1, 1, 1) * (cond - uncond)


class LabelEmbedder(dit.LabelEmbedder):
    """DiT's label embedder; MDT draws the training label dropout on the CPU generator."""

    def token_drop(self, labels: Tensor, force_drop_ids: Tensor | None = None) -> Tensor:
        """Replace dropped labels by the null class. Shapes: (N,) -> (N,)."""
        if force_drop_ids is None:
            drop = torch.rand(labels.shape[0]) < self.dropout_prob
        else:
            drop = force_drop_ids == 1
        return torch.where(drop.to(labels.device), self.num_classes, labels)


class RelativePositionBias(nn.Module):
    """Learned per-head bias for each relative offset on a square token grid (BEiT).

    The table has (2 Wh - 1)(2 Ww - 1) + 3 rows; the last 3 (BEiT's cls-token rows) are unused.
    """

    def __init__(self, window_size: tuple[int, int], num_heads: int):
        super().__init__()
        self.window_size = window_size
        num_relative_distance = (2 * window_size[0] - 1) * (2 * window_size[1] - 1) + 3
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros(num_relative_distance, num_heads)
        )
        self.register_buffer("relative_position_index", relative_position_index(*window_size))
        trunc_normal_(self.relative_position_bias_table, std=0.02)  # at build, as officially

    def forward(self) -> Tensor:
        """Shapes: -> (H, T, T)."""
        tokens = self.window_size[0] * self.window_size[1]
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        return bias.view(tokens, tokens, -1).permute(2, 0, 1).contiguous()


class Attention(dit.Attention):
    """Explicit softmax attention plus relative position bias; logits are (q k^T) * scale.

    The bias covers a square grid of num_patches tokens, or the (rows, columns) `grid` given.
    """

    def __init__(
        self, dim: int, num_heads: int, num_patches: int, grid: tuple[int, int] | None = None
    ):
        super().__init__(dim, num_heads)
        side = int(num_patches**0.5)
        self.rel_pos_bias = RelativePositionBias(tuple(grid or (side, side)), num_heads)

    def forward(self, x: Tensor, ids_keep: Tensor | None = None) -> Tensor:
        """Attention over all L grid tokens, or over the kept ones `ids_keep` (masked training).

        Shapes: x (N, L, D) and ids_keep None, or x (N, K, D) and ids_keep (N, K) -> as x.
        """
        n, t, d = x.shape
        qkv = self.qkv(x).reshape(n, t, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # (N, H, T, Dh) each
        attn = (q @ k.transpose(-2, -1)) * self.scale  # scale after the product, as officially
        bias = self.rel_pos_bias()  # (H, L, L)
        if ids_keep is not None:  # rows then columns of the kept tokens: (N, H, K, K)
            bias = bias[:, ids_keep[:, :, None], ids_keep[:, None, :]].transpose(0, 1)
        attn = (attn + bias).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(n, t, d))


class MDTBlock(nn.Module):
    """DiT's adaLN-Zero block with relative-position attention and an optional long-skip input.

    `grid` (rows, columns) is the token grid of the bias; None: square, of num_patches tokens.
    """

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        mlp_ratio: float,
        num_patches: int,
        skip: bool = False,
        grid: tuple[int, int] | None = None,
    ):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(hidden_size, num_heads, num_patches, grid)
        self.norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.mlp = dit.Mlp(hidden_size, int(hidden_size * mlp_ratio))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 6 * hidden_size))
        self.skip_linear = nn.Linear(2 * hidden_size, hidden_size) if skip else None

    def forward(
        self, x: Tensor, c: Tensor, skip: Tensor | None = None, ids_keep: Tensor | None = None
    ) -> Tensor:
        """Shapes: x (N, T, D), c (N, D), skip (N, T, D) or None -> (N, T, D)."""
        if self.skip_linear is not None:  # fuse the long skip before the block (MDTv2)
            x = self.skip_linear(torch.cat([x, skip], dim=-1))
        modulation = self.adaLN_modulation(c).chunk(6, dim=1)  # 6 x (N, D)
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = modulation
        h = dit.modulate(self.norm1(x), shift_msa, scale_msa)
        x = x + gate_msa.unsqueeze(1) * self.attn(h, ids_keep=ids_keep)
        x = x + gate_mlp.unsqueeze(1) * self.mlp(dit.modulate(self.norm2(x), shift_mlp, scale_mlp))
        return x


# ----------------------------------------------------------------------------- models


class MaskedTransformer(nn.Module):
    """What every masked diffusion transformer here (MDT, MDTv2, X-MDPT, MDSGen) shares around
    its blocks: the settings, the decoder positional embedding and mask token, the official
    initialisation, the side-interpolater, the plain block stack with its decoder start, and the
    head. Subclasses build their layers in the official registration order and call these.
    """

    def _set_config(
        self,
        in_channels: int,
        learn_sigma: bool,
        patch_size: int | tuple[int, int],
        num_heads: int,
        depth: int,
        mask_ratio: float | None,
        decode_layer: int | None,
    ) -> None:
        """Check the masking settings and store the settings every forward reads."""
        check_masking(depth, decode_layer, mask_ratio)
        self.learn_sigma = learn_sigma
        self.in_channels = in_channels
        self.out_channels = in_channels * 2 if learn_sigma else in_channels
        self.patch_size = patch_size
        self.num_heads = num_heads
        self.mask_ratio = None if mask_ratio is None else float(mask_ratio)
        self.decode_layer = int(decode_layer)

    def _add_decoder_parts(self, hidden_size: int) -> None:
        """Register `decoder_pos_embed` and `mask_token` (after the final layer, as officially)."""
        self.decoder_pos_embed = nn.Parameter(torch.zeros(1, self.num_patches, hidden_size))
        # stored in every checkpoint, trained only when masking is on
        self.mask_token = nn.Parameter(
            torch.zeros(1, 1, hidden_size), requires_grad=self.mask_ratio is not None
        )

    def _init_masked(
        self, pos: np.ndarray, blocks: Iterable[nn.Module], labels: LabelEmbedder | None = None
    ) -> None:
        """DiT's adaLN-Zero initialisation with both positional embeddings starting as `pos`,
        then N(0, 0.02) for the mask token when masking is on (the official order of draws).

        Shapes: pos (T, D).
        """
        dit.init_adaln_zero(self, pos, [self.pos_embed, self.decoder_pos_embed], blocks, labels)
        if self.mask_ratio is not None:
            nn.init.normal_(self.mask_token, std=0.02)

    unpatchify = dit.DiT.unpatchify  # the same tokens -> image map as DiT

    def forward_side_interpolater(
        self, x: Tensor, c: Tensor, mask: Tensor, ids_restore: Tensor, context: Tensor | None = None
    ) -> Tensor:
        """Fill the removed tokens with mask_token, add decoder_pos_embed, predict them.

        Kept tokens pass through unchanged (masked shortcut); removed ones take the side output.
        `context` reaches the side blocks (X-MDPT's cross block reads it; None elsewhere).

        Shapes: x (N, K, D), c (N, D), mask (N, L) 1 = removed, ids_restore (N, L), context
        (N, L, D) or None -> (N, L, D).
        """
        n, kept, d = x.shape
        mask_tokens = self.mask_token.repeat(n, ids_restore.shape[1] - kept, 1)
        x = torch.cat([x, mask_tokens], dim=1)
        x = torch.gather(x, 1, ids_restore.unsqueeze(-1).repeat(1, 1, d))  # unshuffle
        x = x + self.decoder_pos_embed
        x_before = x
        x = self._side_blocks(x, c, context)
        mask = mask.unsqueeze(-1)
        return x * mask + (1 - mask) * x_before

    def _side_blocks(self, x: Tensor, c: Tensor, context: Tensor | None) -> Tensor:
        """The side-interpolater's blocks. Shapes: x (N, L, D), c (N, D) -> (N, L, D)."""
        for block in self.sideblocks:
            x = block(x, c)
        return x

    def _run_blocks(
        self,
        x: Tensor,
        c: Tensor,
        masking: Callable[[Tensor], tuple[Tensor, Tensor, Tensor, Tensor]] | None = None,
        context: Tensor | None = None,
    ) -> Tensor:
        """`self.blocks` in a row (MDT v1, X-MDPT, MDSGen), then the final layer and unpatchify.

        decoder_pos_embed enters before the last `decode_layer` blocks; in masked training
        (`masking`: tokens -> random_masking's four results) the blocks before it see the kept
        tokens only and the side-interpolater fills the others there. `context` (X-MDPT's
        source tokens, masked training only) runs through those blocks too, without gradient,
        and reaches the side-interpolater detached.

        Shapes: x (N, L, D), c (N, D), context (N, L, D) or None -> (N, C_out, H, W).
        """
        ids_keep = None
        if masking is not None:
            x, mask, ids_restore, ids_keep = masking(x)  # (N, K, D)
        decoder_start = len(self.blocks) - self.decode_layer
        for i, block in enumerate(self.blocks):
            if i == decoder_start:  # decoder starts: full length again
                if masking is not None:
                    if context is not None:
                        context = context.detach()
                    x = self.forward_side_interpolater(x, c, mask, ids_restore, context)
                    ids_keep = None
                else:
                    x = x + self.decoder_pos_embed
            x = block(x, c, ids_keep=ids_keep)  # (N, L or K, D)
            if context is not None and i < decoder_start:
                with torch.no_grad():
                    context = block(context, c)
        x = self.final_layer(x, c)  # (N, L, p*p*C_out)
        return self.unpatchify(x)  # (N, C_out, H, W)


class _MaskedDiT(MaskedTransformer):
    """What MDT and MDTv2 share beyond `MaskedTransformer`: the label embedder, c and the CFG
    forward.

    The constructor is the official one of both versions; subclasses lay out their blocks in
    `_build_blocks` and set `default_decode_layer`. t is the DDPM index 0..999.

    Args:
        input_size: latent side (32 for 256 px); patch_size, in_channels, hidden_size, depth,
            num_heads, mlp_ratio, class_dropout_prob, num_classes, learn_sigma: as in DiT.
        mask_ratio: None at inference; in training the masked fraction of tokens (MDTv2 draws
            it per batch in [mask_ratio, mask_ratio + 0.2)).
        decode_layer: number of decoder blocks, after which the side-interpolater would sit;
            None takes the class default (MDTv2: 4; MDT has none and needs it given).
    """

    default_decode_layer: int | None = None

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
        mask_ratio: float | None = None,
        decode_layer: int | None = None,
    ):
        super().__init__()
        decode_layer = self.default_decode_layer if decode_layer is None else decode_layer
        dit.check_sizes(hidden_size, num_heads, input_size, patch_size)
        self._set_config(
            in_channels, learn_sigma, patch_size, num_heads, depth, mask_ratio, decode_layer
        )
        self.num_classes = num_classes
        # registration order as officially, so that a seeded build initialises identically
        self.x_embedder = dit.PatchEmbed(input_size, patch_size, in_channels, hidden_size)
        self.t_embedder = dit.TimestepEmbedder(hidden_size)
        self.y_embedder = LabelEmbedder(num_classes, hidden_size, class_dropout_prob)
        self.num_patches = self.x_embedder.num_patches
        self.pos_embed = nn.Parameter(torch.zeros(1, self.num_patches, hidden_size))  # learnable
        block = partial(MDTBlock, hidden_size, num_heads, mlp_ratio, self.num_patches)
        self._build_blocks(depth, block)
        self.sideblocks = nn.ModuleList([block()])
        self.final_layer = dit.FinalLayer(hidden_size, patch_size, self.out_channels)
        self._add_decoder_parts(hidden_size)
        self.initialize_weights()

    def _build_blocks(self, depth: int, block: Callable[..., MDTBlock]) -> None:
        raise NotImplementedError  # register the main blocks; block(skip=False) makes one

    def initialize_weights(self) -> None:
        """The official initialisation (DiT's adaLN-Zero, skip_linear's Linear included; the
        bias tables keep their build init)."""
        grid = int(self.num_patches**0.5)  # both positional embeddings start as 2-D sin-cos
        pos = dit.get_2d_sincos_pos_embed(self.pos_embed.shape[-1], grid)
        blocks = (m for m in self.modules() if isinstance(m, MDTBlock))  # side block included
        self._init_masked(pos, blocks, self.y_embedder)

    def condition(self, t: Tensor, y: Tensor) -> Tensor:
        """The conditional vector c = t_embedder(t) + y_embedder(y). Shapes: (N,), (N,) -> (N, D)."""
        return self.t_embedder(t) + self.y_embedder(y, self.training)

    def _embed(self, x: Tensor, t: Tensor, y: Tensor, c_fn: CFn) -> tuple[Tensor, Tensor]:
        """Tokens with positional embedding and c (after c_fn). Shapes: -> (N, T, D), (N, D)."""
        if c_fn is not None and not callable(c_fn):
            raise ValueError(f"c_fn must be callable or None, got {c_fn!r} (enable_mask is 5th)")
        x = self.x_embedder(x) + self.pos_embed  # (N, T, D)
        c = self.condition(t, y)  # (N, D)
        return x, (c if c_fn is None else c_fn(c))

    def forward_with_cfg(
        self,
        x: Tensor,
        t: Tensor,
        y: Tensor,
        cfg_scale: float | None = None,
        diffusion_steps: int = 1000,
        scale_pow: float = 4.0,
        c_fn: CFn = None,
    ) -> Tensor:
        """`MDT.forward_with_cfg` of sail-sg/MDT `masked_diffusion/models.py` (the same method on
        the `mdtv1` and `main` branches), with MDT's power-cosine guidance weight.

        DiT's method (channels 0-2 guided, copied to both halves; the others raw per row) with a
        per-row weight read from the first half of t, which grows from 1 at t = diffusion_steps
        (noise) to cfg_scale at t = 0:
        w(t) = 1 + (cfg_scale - 1) (1 - cos(pi (1 - t / diffusion_steps)^scale_pow)) / 2.
        With cfg_scale None it is the plain forward on x as given. The project's samplers do not
        call this: they wrap `forward` in `sampling.guidance.guided` with guided_channels=3 and
        schedule="power_cosine" (`power_cosine_scale`), which computes the same combination on
        the conditional rows.

        Shapes: x (2N, C, H, W), t (2N,), y = [labels; null] (2N,) -> (2N, C_out, H, W).
        """
        if cfg_scale is None:
            return self.forward(x, t, y, c_fn=c_fn)
        half = x[: len(x) // 2]
        out = self.forward(torch.cat([half, half], dim=0), t, y, c_fn=c_fn)
        w = power_cosine_weight(t, cfg_scale, diffusion_steps, scale_pow)  # (2N,)
        return dit.combine_cfg_halves(out, w[: len(x) // 2].view(-1, 1, 1, 1), 3)


class MDT(_MaskedDiT):
    """MDT (v1): `depth` plain blocks; decoder_pos_embed (or, when masking, the side-interpolater)
    enters before the last `decode_layer` blocks. The released XL/2 uses decode_layer=2."""

    def _build_blocks(self, depth: int, block: Callable[..., MDTBlock]) -> None:
        if self.mask_ratio is not None and self.decode_layer == 0:
            raise ValueError(
                "masked training needs decode_layer >= 1 (the side-interpolater "
                "runs before the decoder blocks), got decode_layer=0"
            )
        self.blocks = nn.ModuleList(block() for _ in range(depth))

    def forward(
        self, x: Tensor, t: Tensor, y: Tensor, c_fn: CFn = None, enable_mask: bool = False
    ) -> Tensor:
        """MDT forward; masks tokens only with a mask_ratio and enable_mask=True (training).

        Shapes: x (N, C, H, W), t (N,), y (N,) -> (N, 2C or C, H, W).
        """
        x, c = self._embed(x, t, y, c_fn)  # (N, T, D), (N, D)
        masking = None
        if self.mask_ratio is not None and enable_mask:
            masking = partial(random_masking, mask_ratio=self.mask_ratio)
        return self._run_blocks(x, c, masking)


class MDTv2(_MaskedDiT):
    """MDTv2: (depth - decode_layer) // 2 encoder in-blocks and out-blocks joined by LIFO long
    skips, then `decode_layer` decoder blocks that each skip from the input tokens. As officially,
    an odd depth - decode_layer drops one block."""

    default_decode_layer = 4

    def _build_blocks(self, depth: int, block: Callable[..., MDTBlock]) -> None:
        self.half_depth = (depth - self.decode_layer) // 2
        self.en_inblocks = nn.ModuleList(block() for _ in range(self.half_depth))
        self.en_outblocks = nn.ModuleList(block(skip=True) for _ in range(self.half_depth))
        self.de_blocks = nn.ModuleList(block(skip=True) for _ in range(self.decode_layer))

    def forward(
        self, x: Tensor, t: Tensor, y: Tensor, c_fn: CFn = None, enable_mask: bool = False
    ) -> Tensor:
        """MDTv2 forward; masks tokens only with a mask_ratio and enable_mask=True (training).

        Shapes: x (N, C, H, W), t (N,), y (N,) -> (N, 2C or C, H, W).
        """
        x, c = self._embed(x, t, y, c_fn)  # (N, T, D), (N, D)
        input_skip = x  # every decoder block skips from here
        masked = self.mask_ratio is not None and enable_mask
        ids_keep = None
        if masked:  # the ratio is drawn per batch in [mask_ratio, mask_ratio + 0.2)
            ratio = torch.rand(1, device=x.device) * 0.2 + self.mask_ratio
            x, mask, ids_restore, ids_keep = random_masking(x, ratio)  # (N, K, D)
        skips = []
        for block in self.en_inblocks:
            x = block(x, c, ids_keep=ids_keep)
            skips.append(x)
        for block in self.en_outblocks:  # innermost skip first, as in a U-Net
            x = block(x, c, skip=skips.pop(), ids_keep=ids_keep)
        if masked:
            x = self.forward_side_interpolater(x, c, mask, ids_restore)  # (N, T, D)
        else:
            x = x + self.decoder_pos_embed
        for block in self.de_blocks:
            x = block(x, c, skip=input_skip)  # (N, T, D)
        x = self.final_layer(x, c)  # (N, T, p*p*C_out)
        return self.unpatchify(x)  # (N, C_out, H, W)
