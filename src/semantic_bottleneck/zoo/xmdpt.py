"""X-MDPT: the cross-view masked diffusion transformer for pose-guided person image synthesis.

Pham, Zhang and Yoo, "Cross-view Masked Diffusion Transformers for Person Image Synthesis",
ICML 2024 (arXiv 2402.01516). Matches, key for key and op for op, the class `XMDPT` of
`masked_diffusion/models.py` in trungpx/xmdpt @ 8397056 (83970562dce8b563ec241dd0338ed42bc341b33e);
file:line citations below are to that commit. X-MDPT is MDT (sail-sg/MDT, `zoo.mdt`) with the
class label replaced by a pose and a source image: the same relative-position-bias blocks, the
decoder positional embedding before the last `decode_layer` blocks, the side-interpolater
(`sideblocks`, here followed by one cross-attention block `sideblocks_cross`) and `mask_token`.

Checkpoints. Sizes S/2, B/2, L/2 (`XMDPT_{S,B,L}_2`, models.py:723-730): widths 384/768/1024,
depths 12/12/24, heads 6/12/16, all built as `XMDPT_*_2(input_size=32, decode_layer=2)`
(infer_xmdpt.py:37-42). The released files `ema_0.9999_300000.pt` are bare state dicts (the
EMA parameters saved by `TrainLoop.save`, train_util.py:317-327) that infer_xmdpt.py:44-45
passes straight to `load_state_dict`; `load_xmdpt` loads them strictly. Their keys and shapes
are `semantic_bottleneck/manifests/appendix/xmdpt_{s2,b2,l2}.json`. The class builds
39.1M / 153.7M / 498.9M parameters, 33.8M / 132.5M / 461.1M without the side blocks that only
masked training runs; the README's 33.5M / 131.9M / 460.2M match neither exactly.

The conditioning vector (models.py:581-602, inside `autocast(dtype=torch.bfloat16)`):

    T = t_embedder(t)                                                    models.py:585
    P = conv1d_pose(mlp_dino_pose(dino_tgt_pose))                        models.py:586, 589
    G = conv1d_global(mlp_dino_img(dino_src_img))                        models.py:587, 590
    L = conv1d_local(x_embedder(src_latent) + pos_embed)                 models.py:592-593
    Y = mlp_final((P + G + L).squeeze())                                 models.py:596-597
    c = T + cond_mask * Y                                                models.py:599-602

Each `mlp_*` is Linear -> GELU (exact) -> LayerNorm(eps 1e-12) over the features; each
`conv1d_*` is a 1x1 Conv1d over the token axis (257 DINOv2 tokens, or the 256 latent tokens,
into 1) -> GELU -> LayerNorm: a learned weighted pooling of the tokens (models.py:405-440).
`x_embedder` and `pos_embed` are the ones the noisy latent uses (models.py:582-583). cond_mask
keeps each row with probability 1 - prob (`prob_mask_like`, models.py:21-27); there is no
learned null: the unconditional c, what `forward_with_cfg` computes with prob=1
(models.py:643), is T alone. Every block, the side blocks and the final layer read this c.

Inputs at the released size (infer_xmdpt.py:75-87, my_dataset.py:99-104, train_util.py:214-222;
`INPUTS` is the on-disk format):
  - dino_tgt_pose (N, 257, 768): DINOv2 ViT-B/14 (`torch.hub` 'dinov2_vitb14') on the target
    pose map, an OpenPose-style skeleton drawn in colour on black, RGB in [0, 1]
    (my_dataset.py:162-193), resized to 224x224 bicubic: `get_intermediate_layers(x, 1,
    return_class_token=True)` (the last block, after the final LayerNorm), rows [CLS; 16x16
    patch tokens]. No ImageNet normalisation is applied to either DINOv2 input.
  - dino_src_img (N, 257, 1536): the same from DINOv2 ViT-g/14 ('dinov2_vitg14') on the source
    image, RGB in [-1, 1] (my_dataset.py:255-257), resized to 224x224.
  - src_latent (N, 4, 32, 32): VAE latent of the 256x256 source image,
    `vae.encode(img).latent_dist.sample() * 0.18215` (infer_xmdpt.py:87; training encodes with
    stabilityai/sd-vae-ft-mse, train_util.py:113, 143-145; inference with the released VAE,
    whose decoder alone was fine-tuned, infer_xmdpt.py:50-51). The official forward calls it
    `src_img`.
Images are DeepFashion test pairs (`test_pairs.txt`, my_dataset.py:29) from PIDM's LMDB at
256x256 (the 176-wide originals stretched, PIDM data/prepare_data.py:26), without augmentation
at inference (my_dataset.py:32).

Time: t is the integer DDPM index 0..999 of a linear-beta, 1000-step schedule. The sampler is
DDIM (eta 0) over the 50 respaced steps `space_timesteps(1000, "50")` (infer_xmdpt.py:24, 48,
102; respace.py:12-62); `_WrappedModel` maps each respaced index to the original one before the
model sees it (respace.py:123-128), so the initial, pure-noise step feeds t = 999
(gaussian_diffusion.py:658-667: the respaced index 49, mapped to 999).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from pathlib import Path

import torch
from torch import Tensor, nn

from semantic_bottleneck.zoo import checkpoint, dit, mdt, registry
from semantic_bottleneck.zoo.dit import CFn

POSE_DIM = 768  # DINOv2 ViT-B/14 width (models.py:406)
IMAGE_DIM = 1536  # DINOv2 ViT-g/14 width (models.py:411)
DINO_TOKENS = 257  # [CLS] + (224 / 14)^2 patch tokens (models.py:417, 422)

# The on-disk condition-input file: one safetensors file, tensors named as the keys below, first
# dim N (one row per condition), float32; shapes at the released size (all three sizes alike).
INPUTS: dict[str, dict[str, object]] = {
    "dino_tgt_pose": {
        "shape": ("N", DINO_TOKENS, POSE_DIM),
        "dtype": "float32",
        "what": "DINOv2 ViT-B/14 [CLS; 256 patch tokens], last layer after its norm, of the "
        "target pose map (RGB in [0, 1], 224x224 bicubic)",
    },
    "dino_src_img": {
        "shape": ("N", DINO_TOKENS, IMAGE_DIM),
        "dtype": "float32",
        "what": "DINOv2 ViT-g/14 [CLS; 256 patch tokens], last layer after its norm, of the "
        "source image (RGB in [-1, 1], 224x224 bicubic)",
    },
    "src_latent": {
        "shape": ("N", 4, 32, 32),
        "dtype": "float32",
        "what": "VAE latent of the 256x256 source image (RGB in [-1, 1]): "
        "latent_dist.sample() * 0.18215",
    },
}
LATENT_SCALE = 0.18215  # infer_xmdpt.py:87
INITIAL_T = 999  # the DDPM index of the sampler's first, pure-noise step
MANIFESTS = ("xmdpt_s2", "xmdpt_b2", "xmdpt_l2")


# ----------------------------------------------------------------------------- layers


def _token_mlp(in_features: int, hidden_size: int) -> nn.Sequential:
    """Linear -> GELU -> LayerNorm(eps 1e-12): `mlp_dino_pose`, `mlp_dino_img`, `mlp_final`."""
    return nn.Sequential(
        nn.Linear(in_features, hidden_size), nn.GELU(), nn.LayerNorm(hidden_size, eps=1e-12)
    )


def _token_pool(tokens: int, hidden_size: int) -> nn.Sequential:
    """1x1 Conv1d with the tokens as channels (a learned weighted sum into one token) -> GELU
    -> LayerNorm(eps 1e-12): `conv1d_pose`, `conv1d_global`, `conv1d_local`.

    Shapes: (N, tokens, D) -> (N, 1, D).
    """
    return nn.Sequential(
        nn.Conv1d(tokens, 1, kernel_size=1), nn.GELU(), nn.LayerNorm(hidden_size, eps=1e-12)
    )


class CrossAttention(nn.Module):
    """`Attention_Cross` (models.py:271-321): queries from x, keys and values from a context of
    the same token grid, plus the relative position bias; logits (q k^T) * scale."""

    def __init__(self, dim: int, num_heads: int, num_patches: int):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.to_q = nn.Linear(dim, dim)
        self.to_kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        side = int(num_patches**0.5)
        self.rel_pos_bias = mdt.RelativePositionBias((side, side), num_heads)

    def forward(self, x: Tensor, context: Tensor) -> Tensor:
        """Shapes: x (N, L, D), context (N, L, D) -> (N, L, D)."""
        n, length, d = x.shape

        def heads(z: Tensor) -> Tensor:  # (N, L, D) -> (N, H, L, Dh)
            return z.reshape(n, -1, self.num_heads, self.head_dim).transpose(1, 2)

        k, v = self.to_kv(context).chunk(2, dim=-1)
        q, k, v = heads(self.to_q(x)), heads(k), heads(v)
        attn = (q @ k.transpose(-2, -1)) * self.scale + self.rel_pos_bias()
        out = attn.softmax(dim=-1) @ v  # (N, H, L, Dh)
        return self.proj(out.transpose(1, 2).reshape(n, length, d))


class MDTCrossBlock(nn.Module):
    """`MDTBlock_inter` (models.py:239-269): MDT's adaLN-Zero block with cross-attention."""

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float, num_patches: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.attn = CrossAttention(hidden_size, num_heads, num_patches)
        self.norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.mlp = dit.Mlp(hidden_size, int(hidden_size * mlp_ratio))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 6 * hidden_size))

    def forward(self, x: Tensor, c: Tensor, context: Tensor) -> Tensor:
        """Shapes: x (N, L, D), c (N, D), context (N, L, D) -> (N, L, D)."""
        modulation = self.adaLN_modulation(c).chunk(6, dim=1)  # 6 x (N, D)
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = modulation
        h = dit.modulate(self.norm1(x), shift_msa, scale_msa)
        x = x + gate_msa.unsqueeze(1) * self.attn(h, context)
        x = x + gate_mlp.unsqueeze(1) * self.mlp(dit.modulate(self.norm2(x), shift_mlp, scale_mlp))
        return x


# ----------------------------------------------------------------------------- model


class XMDPT(mdt.MaskedTransformer):
    """X-MDPT (models.py:347-655). Attribute names are the official state-dict keys; the
    side-interpolater, the decoder start and unpatchify (models.py:506-571) are MDT's.

    Args:
        input_size: latent side (32 for 256x256 images); patch_size, in_channels, hidden_size,
            depth, num_heads, mlp_ratio, learn_sigma: as in DiT.
        mask_ratio: None at inference (then `mask_token` is stored but frozen); the masked
            fraction of tokens in training (0.30 in run_train.sh).
        decode_layer: number of final blocks preceded by decoder_pos_embed (or, when masking,
            by the side-interpolater); 2 in every release.
        pose_dim, image_dim, dino_tokens: widths and token count of the DINOv2 inputs; the
            official class hard-codes 768, 1536 and 257 (models.py:405-425).
    """

    # the official forward runs under CUDA bf16 autocast (models.py:581); on the CPU that
    # autocast is off, so CPU results are float32 either way. False: float32 on CUDA as well.
    official_autocast: bool = True

    def __init__(
        self,
        input_size: int = 32,
        patch_size: int = 2,
        in_channels: int = 4,
        hidden_size: int = 1152,
        depth: int = 28,
        num_heads: int = 16,
        mlp_ratio: float = 4.0,
        learn_sigma: bool = True,
        mask_ratio: float | None = None,
        decode_layer: int | None = None,
        pose_dim: int = POSE_DIM,
        image_dim: int = IMAGE_DIM,
        dino_tokens: int = DINO_TOKENS,
    ):
        super().__init__()
        dit.check_sizes(hidden_size, num_heads, input_size, patch_size)
        self._set_config(
            in_channels, learn_sigma, patch_size, num_heads, depth, mask_ratio, decode_layer
        )
        # registration order as officially (models.py:372-440): a seeded build draws alike
        self.x_embedder = dit.PatchEmbed(input_size, patch_size, in_channels, hidden_size)
        self.t_embedder = dit.TimestepEmbedder(hidden_size)
        self.num_patches = self.x_embedder.num_patches
        self.pos_embed = nn.Parameter(torch.zeros(1, self.num_patches, hidden_size))
        block_args = (hidden_size, num_heads, mlp_ratio, self.num_patches)
        self.blocks = nn.ModuleList(mdt.MDTBlock(*block_args) for _ in range(depth))
        self.sideblocks = nn.ModuleList([mdt.MDTBlock(*block_args)])
        self.sideblocks_cross = nn.ModuleList([MDTCrossBlock(*block_args)])
        self.final_layer = dit.FinalLayer(hidden_size, patch_size, self.out_channels)
        self._add_decoder_parts(hidden_size)  # mask_token trained only when masking (:394-402)
        self.mlp_dino_pose = _token_mlp(pose_dim, hidden_size)
        self.mlp_dino_img = _token_mlp(image_dim, hidden_size)
        self.conv1d_pose = _token_pool(dino_tokens, hidden_size)
        self.conv1d_global = _token_pool(dino_tokens, hidden_size)
        # the official hard-codes 256 channels: the latent tokens at input_size 32, patch 2
        self.conv1d_local = _token_pool(self.num_patches, hidden_size)
        self.mlp_final = _token_mlp(hidden_size, hidden_size)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """The official initialisation (models.py:444-504); Conv1d and LayerNorm biases keep
        PyTorch's defaults, as there."""
        pos = dit.get_2d_sincos_pos_embed(self.pos_embed.shape[-1], int(self.num_patches**0.5))
        self._init_masked(pos, (*self.blocks, *self.sideblocks, *self.sideblocks_cross))
        for layer in (self.mlp_dino_pose, self.mlp_dino_img, self.mlp_final):
            nn.init.normal_(layer[0].weight, std=0.02)
        for layer in (self.conv1d_pose, self.conv1d_global, self.conv1d_local):
            nn.init.normal_(layer[0].weight, std=0.02)

    # ------------------------------------------------------------------------- c

    def time_part(self, t: Tensor) -> Tensor:
        """T = t_embedder(t) (models.py:585), the whole of the unconditional c.

        Shapes: t (N,) DDPM indices -> (N, D).
        """
        return self.t_embedder(t)

    def _source_tokens(self, src_latent: Tensor) -> Tensor:
        """The source latent as tokens, through the noisy latent's own embedding (models.py:592).

        Shapes: (N, C, H, W) -> (N, L, D).
        """
        return self.x_embedder(src_latent) + self.pos_embed

    def condition_part(
        self, dino_tgt_pose: Tensor, dino_src_img: Tensor, src_latent: Tensor
    ) -> Tensor:
        """Y = mlp_final(pose + global + local pooled tokens) (models.py:586-597), before the
        condition dropout.

        Shapes: dino_tgt_pose (N, 257, 768), dino_src_img (N, 257, 1536), src_latent
        (N, 4, 32, 32) -> (N, D).
        """
        pose = self.conv1d_pose(self.mlp_dino_pose(dino_tgt_pose))  # (N, 1, D)
        image = self.conv1d_global(self.mlp_dino_img(dino_src_img))  # (N, 1, D)
        local = self.conv1d_local(self._source_tokens(src_latent))  # (N, 1, D)
        # squeeze(1), not the official squeeze(): the same values, and N = 1 keeps its row
        return self.mlp_final((pose + image + local).squeeze(1))

    def condition(
        self,
        t: Tensor,
        dino_tgt_pose: Tensor,
        dino_src_img: Tensor,
        src_latent: Tensor,
        drop_prob: float = 0.0,
    ) -> Tensor:
        """c = T + keep * Y (models.py:585-602); drop_prob=1 gives the unconditional c = T.

        Shapes: t (N,), inputs as `condition_part` -> (N, D).
        """
        y = self.condition_part(dino_tgt_pose, dino_src_img, src_latent)  # (N, D)
        keep = mdt.keep_mask(y.shape[0], drop_prob, y.device)
        return self.time_part(t) + keep.view(-1, 1) * y

    # ------------------------------------------------------------------------- forward

    def _side_blocks(self, x: Tensor, c: Tensor, context: Tensor | None) -> Tensor:
        """The side block, then the cross block with keys and values from the source tokens
        `context` (models.py:550-571; in `forward_side_interpolater`, masked training only).

        Shapes: x (N, L, D), c (N, D), context (N, L, D) -> (N, L, D).
        """
        for block in self.sideblocks:
            x = block(x, c)
        for block in self.sideblocks_cross:
            x = block(x, c, context)
        return x

    def forward(
        self,
        x: Tensor,
        t: Tensor,
        dino_tgt_pose: Tensor,
        dino_src_img: Tensor,
        src_latent: Tensor,
        drop_prob: float = 0.0,
        enable_mask: bool = False,
        c_fn: CFn = None,
    ) -> Tensor:
        """The official forward (models.py:573-634).

        Args:
            x: noisy latent.
            t: DDPM indices 0..999.
            dino_tgt_pose, dino_src_img, src_latent: the condition (see `INPUTS`).
            drop_prob: the official `prob`, the chance that a row loses its condition. The
                official default 0.1 is the training one; `forward_with_cfg` passes 1
                (unconditional) and 0 (conditional), as here, so inference is deterministic.
            enable_mask: masked training (needs a mask_ratio), as officially.
            c_fn: applied to c before any block (every block, side block and the final layer
                read the result); None is the official forward.

        At inference the official also runs the source tokens through every block (under
        no_grad, models.py:629-630) but uses them only as the masked-training context, so that
        dead computation is skipped here unless masking is on.

        Shapes: x (N, C, H, W), t (N,), dino_tgt_pose (N, 257, 768), dino_src_img
        (N, 257, 1536), src_latent (N, C, H, W) -> (N, 2C or C, H, W).
        """
        on_cuda = x.device.type == "cuda"
        with torch.autocast("cuda", torch.bfloat16, enabled=self.official_autocast and on_cuda):
            tokens = self.x_embedder(x) + self.pos_embed  # (N, L, D)
            c = self.condition(t, dino_tgt_pose, dino_src_img, src_latent, drop_prob)
            if c_fn is not None:
                c = c_fn(c)
            if not (self.mask_ratio is not None and enable_mask):
                return self._run_blocks(tokens, c)
            # the source tokens: `_run_blocks` carries them through the encoder blocks as the
            # side-interpolater's context
            masking = partial(mdt.random_masking, mask_ratio=self.mask_ratio)
            return self._run_blocks(tokens, c, masking, self._source_tokens(src_latent))

    def forward_with_cfg(
        self,
        x: Tensor,
        t: Tensor,
        cfg_scale: float | None = None,
        diffusion_steps: int = 1000,
        scale_pow: float = 4.0,
        dino_tgt_pose: Tensor | None = None,
        dino_src_img: Tensor | None = None,
        src_latent: Tensor | None = None,
        c_fn: CFn = None,
    ) -> Tensor:
        """Guidance on the pose and source image (models.py:637-655): one unconditional (c = T)
        and one conditional forward on the same x, combined on every output channel (the
        learned variance included) with MDT's power-cosine weight
        w(t) = 1 + (cfg_scale - 1) (1 - cos(pi (1 - t / diffusion_steps)^scale_pow)) / 2.

        infer_xmdpt.py:25-26 uses cfg_scale 2.0 and scale_pow 0.01 (w = 1.989 at t = 999).
        cfg_scale None returns the conditional forward (the official method returns None).

        Shapes: x (N, C, H, W), t (N,), inputs as `forward` -> (N, 2C or C, H, W).
        """
        inputs = (dino_tgt_pose, dino_src_img, src_latent)
        cond = self.forward(x, t, *inputs, drop_prob=0.0, c_fn=c_fn)
        if cfg_scale is None:
            return cond
        uncond = self.forward(x, t, *inputs, drop_prob=1.0, c_fn=c_fn)
        return mdt.guide_all_channels(uncond, cond, t, cfg_scale, diffusion_steps, scale_pow)


# ----------------------------------------------------------------------------- c and loading


@torch.no_grad()
def condition_parts(
    model: XMDPT, inputs: Mapping[str, Tensor], t: float = INITIAL_T
) -> tuple[Tensor, Tensor]:
    """The two parts of c over N conditions at one t, c = combine(T, Y, "sum").

    Args:
        model: an X-MDPT.
        inputs: `dino_tgt_pose`, `dino_src_img` and `src_latent` (see `INPUTS`), N rows each.
        t: the DDPM index fed to t_embedder (999 at the initial step).

    Returns:
        (T, Y) in float32, computed in float32 without autocast (the official forward computes c
        under CUDA bf16 autocast).

    Shapes: -> T (1, D), Y (N, D).
    """
    missing = [name for name in INPUTS if name not in inputs]
    if missing:
        raise KeyError(f"condition inputs lack {missing}; expected {list(INPUTS)}")
    param = model.pos_embed
    args = [inputs[name].to(device=param.device, dtype=param.dtype) for name in INPUTS]
    time = model.time_part(torch.tensor([float(t)], device=param.device))
    return time.float(), model.condition_part(*args).float()


def _manifest_file(manifest_name: str) -> str:
    name = Path(manifest_name).name.removesuffix(".json")
    if name not in MANIFESTS:
        raise ValueError(f"unknown X-MDPT manifest {manifest_name!r}; expected one of {MANIFESTS}")
    return f"appendix/{name}.json"


def build_xmdpt(manifest_name: str) -> XMDPT:
    """The released model's architecture, from its manifest config ('xmdpt_s2', 'xmdpt_b2',
    'xmdpt_l2', with or without '.json'); built under the current default device."""
    return XMDPT(**registry.read_manifest(_manifest_file(manifest_name))["config"])


def load_xmdpt(path: str | Path, manifest_name: str) -> XMDPT:
    """A released X-MDPT checkpoint, built from its manifest and loaded strictly, in eval mode.

    The official file is a bare state dict (infer_xmdpt.py:44-45); it is read with
    weights_only (`zoo.checkpoint.load_into`), which also explains any key or shape mismatch.

    Args:
        path: `ema_0.9999_300000.pt` of the matching size.
        manifest_name: 'xmdpt_s2', 'xmdpt_b2' or 'xmdpt_l2'.

    Raises:
        CheckpointError: the file's keys or shapes are not the manifest's.
    """
    return checkpoint.load_into(build_xmdpt(manifest_name), path, weights_key=None).eval()


# ----------------------------------------------------------------------------- condition inputs


def load_dinov2(repo_dir: str | Path, name: str, weights: str | Path) -> nn.Module:
    """A DINOv2 backbone from local files only, as infer_xmdpt.py:61-65 builds it by hub.

    Args:
        repo_dir: a local copy of facebookresearch/dinov2 (its `hubconf.py` builds the model).
        name: 'dinov2_vitb14' (pose) or 'dinov2_vitg14' (source image).
        weights: the matching official `*_pretrain.pth` state dict.
    """
    model = torch.hub.load(str(repo_dir), name, source="local", pretrained=False)
    model.load_state_dict(checkpoint.load_state_dict(weights), strict=True)
    return model.eval()


def load_vae(folder: str | Path) -> nn.Module:
    """A diffusers AutoencoderKL from a local folder (config.json and weights), never fetched."""
    from diffusers import AutoencoderKL

    return AutoencoderKL.from_pretrained(str(folder), local_files_only=True).eval()


def _dino_tokens(dino: nn.Module, images: Tensor) -> Tensor:
    """[CLS; patch tokens] of the last block after the final norm (infer_xmdpt.py:82-85).

    Shapes: (N, 3, 224, 224) -> (N, 1 + 256, width).
    """
    patches, cls = dino.get_intermediate_layers(images, 1, return_class_token=True)[0]
    return torch.cat([cls.unsqueeze(1), patches], dim=1)


@torch.no_grad()
def encode_conditions(
    source_images: Tensor,
    target_poses: Tensor,
    *,
    dino_pose: nn.Module,
    dino_image: nn.Module,
    vae: nn.Module,
    generator: torch.Generator | None = None,
    official_autocast: bool = True,
) -> dict[str, Tensor]:
    """The condition inputs of N (source image, target pose) pairs, as the official pipeline
    computes them (my_dataset.py:99-104, infer_xmdpt.py:80-87).

    Args:
        source_images: RGB in [-1, 1] (the dataset's `source_image`).
        target_poses: the rendered target skeleton, RGB in [0, 1] (`target_skeleton`).
        dino_pose, dino_image: DINOv2 ViT-B/14 and ViT-g/14 (`load_dinov2`), or any module
            with DINOv2's `get_intermediate_layers`.
        vae: the AutoencoderKL whose latents the model was trained on (`load_vae`).
        generator: seeds the latent sample (the official draws `latent_dist.sample()`).
        official_autocast: on CUDA, run DINOv2 under bf16 autocast as officially.

    Returns:
        {name: float32 tensor} with the names and shapes of `INPUTS`, on the CPU.

    Shapes: source_images (N, 3, 256, 256), target_poses (N, 3, 256, 256) -> as `INPUTS`.
    """
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.functional import resize

    def to_dino(images: Tensor) -> Tensor:  # torchvision 0.13 resized tensors without antialias
        return resize(images, 224, interpolation=InterpolationMode.BICUBIC, antialias=False)

    device = source_images.device
    with torch.autocast(
        "cuda", torch.bfloat16, enabled=official_autocast and device.type == "cuda"
    ):
        pose = _dino_tokens(dino_pose, to_dino(target_poses))
        image = _dino_tokens(dino_image, to_dino(source_images))
    latent = vae.encode(source_images).latent_dist.sample(generator) * LATENT_SCALE
    out = {"dino_tgt_pose": pose, "dino_src_img": image, "src_latent": latent}
    return {name: v.float().cpu().contiguous() for name, v in out.items()}


def check_inputs(inputs: Mapping[str, Tensor]) -> None:
    """Raise ValueError unless `inputs` has exactly the `INPUTS` names, one N and their ranks."""
    if set(inputs) != set(INPUTS):
        raise ValueError(f"condition inputs {sorted(inputs)}; expected {sorted(INPUTS)}")
    sizes = {name: v.shape[0] for name, v in inputs.items()}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"condition inputs disagree on N: {sizes}")
    for name, spec in INPUTS.items():
        if inputs[name].ndim != len(spec["shape"]):
            raise ValueError(
                f"{name}: expected shape {spec['shape']}, got {tuple(inputs[name].shape)}"
            )


def save_inputs(inputs: Mapping[str, Tensor], path: str | Path) -> Path:
    """Write the condition inputs as the `INPUTS` safetensors file, atomically."""
    check_inputs(inputs)
    return checkpoint.save_atomic({k: v.float() for k, v in inputs.items()}, path)


def read_inputs(path: str | Path) -> dict[str, Tensor]:
    """Read an `INPUTS` safetensors file. Shapes: as `INPUTS`."""
    inputs = checkpoint.load_state_dict(path)
    check_inputs(inputs)
    return inputs
