"""MDSGen: a masked diffusion transformer that generates sound from video features.

Matches, key for key and op for op, `masked_diffusion/models.py` of triton99/MDSGen @ f51ce3d
(Pham, Ton and Yoo, "MDSGen: Fast and Efficient Masked Diffusion Temporal-Aware Transformers for
Open-Domain Sound Generation", ICLR 2025), class `MDSGen`, size `MDSGen_B_2` (depth 12, width 768,
12 heads, patch 2x2; models.py:629-630) built by `inference.py:54` with decode_layer=4.

Checkpoint: `mdsgen_audioldm.pt` (README: Google Drive), a bare state_dict that inference.py:55-56
reads with torch.load and loads strictly (`load_state_dict` default); 177 keys, listed in
`manifests/appendix/mdsgen_b2.json`. It loads here with `strict=True` (`load_mdsgen`).

Latents: AudioLDM-S's VAE (`cvssp/audioldm-s-full-v2`, inference.py:60-64): x is (N, 8, 204, 16)
(inference.py:82-84), a 102 x 8 grid of 2x2 patches, 816 tokens. MDSGen derives from MDT: every
attention adds a learned BEiT relative position bias over that grid (the window is hard-coded to
[102, 8] officially, models.py:45-46; here it is input_size / patch_size, the same for the
release), `pos_embed` and `decoder_pos_embed` are learnable, and a side block (`sideblocks`,
`mask_token`) runs only in masked training. Its masking is temporal: whole rows of the grid
(models.py:439-472).

The conditioning vector (models.py:504-516), the same c for every block, the side block and the
final layer:

    T = t_embedder(t)                                            models.py:508
        sinusoid of 204 features (frequency_embedding_size=204, models.py:131), computed as DiT's:
        half = 102, f_i = exp(-ln(10000) i / 102), [cos(t f), sin(t f)] (no padding, 204 even;
        models.py:141-161), then Linear(204, d) -> SiLU -> Linear(d, d) (models.py:133-137)
    Y = conv1d_feat(mlp_feat(v)).squeeze(1)                      models.py:510-511
        mlp_feat: per frame Linear(512, d) -> GELU (exact) -> LayerNorm(d, eps=1e-12, affine)
        (models.py:352-356); conv1d_feat: Conv1d(32 -> 1, kernel 1) over the frame axis, i.e. a
        learned weighted sum of the 32 frames plus a bias, -> GELU -> LayerNorm(d, eps=1e-12,
        affine) (models.py:358-362). No pooling other than the conv, no attention mask.
    c = T + cond_mask * Y                                        models.py:513-516
        cond_mask ~ Bernoulli(1 - prob) per row (`prob_mask_like`, models.py:22-28): prob = 0
        keeps Y, prob = 1 gives c = T (the unconditional c has no learned null). The forward's
        default prob = 0.1 is the training dropout; `forward_with_cfg` runs prob = 1 and prob = 0
        (models.py:553-554).

Input: v = per-frame CAVP video features of Diff-Foley (luosiallen/Diff-Foley @ 0ba1e8a,
`inference/demo_util.py:80-170`, as the MDSGen README says): the video re-encoded at 4 fps, each
frame resized to 224 x 224 and scaled to [0, 1] (`transforms.ToTensor`, no mean/std), encoded by
CAVP's SlowOnly video tower with `encode_video(normalize=True, pool=False)`: one unit-norm 512-d
vector per frame. inference.py:48-51 and :75-77 keep the first int(4 * 130560 / 16000) = 32
frames (8 s) of the `.npz` ('arr_0', float32): v is (N, 32, 512).

Time: t is DPM-Solver's model input for a discrete schedule (linear betas, 1000 steps;
inference.py:70-71): t = 1000 (s - 1/1000) for the solver time s in [1/1000, 1]
(dpm_solver_pytorch.py:277-278), a float, not an integer index. The sampler (DPM-Solver++,
multistep, order 2, 50 time-uniform steps; inference.py:44-46, :90-111) starts at s = T = 1
(dpm_solver_pytorch.py:104, :1160, :1173, :474), so the first, pure-noise step feeds t = 999.0 to
every row (:404 expands it); the last step feeds t = 0. Guidance (inference.py:44-45, :66-69):
cfg_scale 5 with MDT's power-cosine weight at scale_pow 0.01, applied to all 16 output channels,
of which the sampler keeps the first 8 (epsilon).

Numerics: the official forward runs under `torch.cuda.amp.autocast(dtype=torch.bfloat16)`
(models.py:504), which changes CUDA ops only; `bf16_autocast=True` reproduces it. The default
runs in the input dtype, and `condition_parts` measures c in float32.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from semantic_bottleneck.core.systems import combine
from semantic_bottleneck.zoo import dit, mdt
from semantic_bottleneck.zoo.checkpoint import load_into
from semantic_bottleneck.zoo.dit import CFn
from semantic_bottleneck.zoo.registry import read_manifest

FREQUENCY_EMBEDDING_SIZE = 204  # TimestepEmbedder's default in MDSGen (DiT uses 256)
VIDEO_FRAMES = 32  # frames the Conv1d mixes (its in_channels)
VIDEO_DIM = 512  # CAVP feature size (mlp_feat's in_features)
INITIAL_T = 999.0  # t of the sampler's first step (see the module docstring)

# The condition inputs on disk: one safetensors file holding a tensor per name below, one row per
# condition (e.g. one test video). `load_inputs` reads and checks it; `condition_parts` takes it.
INPUTS: dict[str, dict] = {
    "video_features": {
        "shape": ("N", VIDEO_FRAMES, VIDEO_DIM),
        "dtype": "float32",
        "what": (
            "Diff-Foley CAVP video features: frames at 4 fps, 224 x 224, encode_video("
            "normalize=True, pool=False), unit norm per frame; the first 32 frames (8 s) of "
            "each clip, as inference.py truncates them"
        ),
    },
}


# ----------------------------------------------------------------------------- helpers


def get_2d_sincos_pos_embed(embed_dim: int, grid_h: int, grid_w: int) -> np.ndarray:
    """MAE's fixed 2-D sin-cos embedding on a grid_h x grid_w grid (row-major tokens).

    The first half of the features encodes the column index, the second the row index; each half
    is [sin, cos] of the position times 10000^(-2i / (embed_dim / 2)).

    Shapes: -> (grid_h * grid_w, embed_dim) float64.
    """
    if embed_dim % 4:
        raise ValueError(f"embed_dim must be a multiple of 4 for 2-D sin-cos, got {embed_dim}")
    cols, rows = np.meshgrid(
        np.arange(grid_w, dtype=np.float32), np.arange(grid_h, dtype=np.float32)
    )

    def sincos(pos: np.ndarray) -> np.ndarray:
        quarter = embed_dim // 4
        omega = 1.0 / 10000 ** (np.arange(quarter, dtype=np.float64) / quarter)
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    return np.concatenate([sincos(cols), sincos(rows)], axis=1)


def temporal_masking(
    x: Tensor, mask_ratio: float, grid_w: int
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """MDSGen's masking: drop whole rows of the token grid (time frames), keep the rest.

    Of the L / grid_w rows, the int(rows (1 - mask_ratio)) of lowest uniform noise are kept,
    every token of a row together.

    Returns (kept tokens, mask with 1 = removed in grid order, ids_restore, ids_keep).
    Shapes: x (N, L, D) -> (N, K, D), (N, L), (N, L), (N, K) with K = kept rows * grid_w.
    """
    n, length, _ = x.shape
    rows = length // grid_w
    len_keep = int(rows * (1 - mask_ratio)) * grid_w
    noise = torch.rand(n, rows, device=x.device)
    row_order = torch.argsort(noise, dim=1)  # ascending: the first rows are kept
    tokens = torch.arange(length, device=x.device).view(rows, grid_w)
    ids_shuffle = tokens[row_order].flatten(1)  # (N, L): token ids, row by row
    return mdt.keep_first(x, ids_shuffle, len_keep)


# ----------------------------------------------------------------------------- layers


class PatchEmbed(nn.Module):
    """Non-overlapping (p_h, p_w) patches of an (H, W) latent to tokens, row-major."""

    def __init__(
        self, img_size: tuple[int, int], patch_size: tuple[int, int], in_chans: int, embed_dim: int
    ):
        super().__init__()
        self.img_size = tuple(img_size)
        self.patch_size = tuple(patch_size)
        self.grid_size = (img_size[0] // patch_size[0], img_size[1] // patch_size[1])
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        """Shapes: (N, C, H, W) -> (N, T, D) with T = (H / p_h) (W / p_w)."""
        return self.proj(x).flatten(2).transpose(1, 2)


class FinalLayer(nn.Module):
    """adaLN (shift, scale) -> Linear to p_h * p_w * out_channels."""

    def __init__(self, hidden_size: int, patch_size: tuple[int, int], out_channels: int):
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden_size, patch_size[0] * patch_size[1] * out_channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size))

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        """Shapes: x (N, T, D), c (N, D) -> (N, T, p_h p_w C_out)."""
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return self.linear(dit.modulate(self.norm_final(x), shift, scale))


# ----------------------------------------------------------------------------- model


class MDSGen(mdt.MaskedTransformer):
    """MDSGen: video-conditioned masked diffusion transformer on AudioLDM latents.

    Its blocks are MDT's (`mdt.MDTBlock`, the official class name, with the bias over the
    rectangular token grid); so are the side-interpolater and the decoder start.

    Args:
        input_size: latent (H, W), (204, 16) officially (mel frames / 4, mel bins / 4).
        patch_size: (p_h, p_w), (2, 2) officially.
        in_channels: latent channels (8).
        hidden_size, depth, num_heads, mlp_ratio: transformer width, blocks, heads, MLP ratio.
        learn_sigma: the head predicts epsilon and the variance (2 in_channels outputs).
        mask_ratio: None at inference (mask_token frozen); in training the fraction of grid rows
            removed before the encoder.
        decode_layer: number of final blocks that form the decoder (4 for the release); the
            decoder positional embedding (or, when masking, the side block) enters before them.
        bf16_autocast: run the forward under CUDA bf16 autocast, as officially (models.py:504).
    """

    def __init__(
        self,
        input_size: Sequence[int] = (204, 16),
        patch_size: Sequence[int] = (2, 2),
        in_channels: int = 8,
        hidden_size: int = 1152,
        depth: int = 28,
        num_heads: int = 16,
        mlp_ratio: float = 4.0,
        learn_sigma: bool = True,
        mask_ratio: float | None = None,
        decode_layer: int | None = None,
        bf16_autocast: bool = False,
    ):
        super().__init__()
        input_size, patch_size = tuple(input_size), tuple(patch_size)
        if len(input_size) != 2 or len(patch_size) != 2:
            raise ValueError(
                f"input_size and patch_size are (H, W) pairs, got {input_size}, {patch_size}"
            )
        if (
            hidden_size % num_heads
            or input_size[0] % patch_size[0]
            or input_size[1] % patch_size[1]
        ):
            raise ValueError(
                f"need hidden_size % num_heads == 0 and input_size divisible by patch_size, got "
                f"{hidden_size=}, {num_heads=}, {input_size=}, {patch_size=}"
            )
        self._set_config(
            in_channels, learn_sigma, patch_size, num_heads, depth, mask_ratio, decode_layer
        )
        self.bf16_autocast = bf16_autocast
        # registration order as officially, so that a seeded build initialises identically
        self.x_embedder = PatchEmbed(input_size, patch_size, in_channels, hidden_size)
        self.t_embedder = dit.TimestepEmbedder(hidden_size, FREQUENCY_EMBEDDING_SIZE)
        self.grid = self.x_embedder.grid_size  # (102, 8) for the release
        self.num_patches = self.x_embedder.num_patches
        self.pos_embed = nn.Parameter(torch.zeros(1, self.num_patches, hidden_size))  # learnable
        block = partial(
            mdt.MDTBlock, hidden_size, num_heads, mlp_ratio, self.num_patches, grid=self.grid
        )
        self.blocks = nn.ModuleList(block() for _ in range(depth))
        self.sideblocks = nn.ModuleList([block()])
        self.final_layer = FinalLayer(hidden_size, patch_size, self.out_channels)
        self._add_decoder_parts(hidden_size)
        self.mlp_feat = nn.Sequential(
            nn.Linear(VIDEO_DIM, hidden_size), nn.GELU(), nn.LayerNorm(hidden_size, eps=1e-12)
        )
        self.conv1d_feat = nn.Sequential(
            nn.Conv1d(VIDEO_FRAMES, 1, kernel_size=1),
            nn.GELU(),
            nn.LayerNorm(hidden_size, eps=1e-12),
        )
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """The official initialisation (adaLN-Zero, mlp_feat's Linear included; bias tables and
        the Conv1d bias keep theirs)."""
        pos = get_2d_sincos_pos_embed(self.pos_embed.shape[-1], *self.grid)  # rectangular grid
        self._init_masked(pos, (*self.blocks, *self.sideblocks))
        nn.init.normal_(self.mlp_feat[0].weight, std=0.02)
        nn.init.normal_(self.conv1d_feat[0].weight, std=0.02)

    def unpatchify(self, x: Tensor) -> Tensor:
        """Shapes: (N, T, p_h p_w C) -> (N, C, H, W)."""
        (h, w), (p, q) = self.grid, self.patch_size
        x = x.reshape(x.shape[0], h, w, p, q, self.out_channels)
        x = torch.einsum("nhwpqc->nchpwq", x)
        return x.reshape(x.shape[0], self.out_channels, h * p, w * q)

    # ------------------------------------------------------------------------- c

    def time_part(self, t: Tensor | float) -> Tensor:
        """T = t_embedder(t): 204-d sinusoid of t -> Linear -> SiLU -> Linear.

        Args:
            t: DPM-Solver model time (999.0 at the first step), a float or one per row.

        Shapes: t (N,) or a float (N = 1) -> (N, D).
        """
        if not isinstance(t, Tensor):
            t = torch.tensor([float(t)])
        return self.t_embedder(t.reshape(-1).to(self.pos_embed.device))

    def condition_part(self, video_features: Tensor) -> Tensor:
        """Y = conv1d_feat(mlp_feat(v)).squeeze(1), the video part of c (kept, not dropped).

        Shapes: video_features (N, 32, 512) -> (N, D).
        """
        want = (VIDEO_FRAMES, VIDEO_DIM)
        if video_features.ndim != 3 or tuple(video_features.shape[1:]) != want:
            raise ValueError(
                f"video_features: expected (N, {want[0]}, {want[1]}), got {tuple(video_features.shape)}"
            )
        h = self.mlp_feat(video_features)  # (N, 32, D): every frame alone
        return self.conv1d_feat(h).squeeze(1)  # frames as channels: (N, 1, D) -> (N, D)

    def condition(self, t: Tensor | float, video_features: Tensor, prob: float = 0.0) -> Tensor:
        """c = T + cond_mask Y with cond_mask ~ Bernoulli(1 - prob) per row (prob 0: all kept).

        Shapes: t (N,) or a float, video_features (N, 32, 512) -> (N, D).
        """
        time = self.time_part(t)
        y = self.condition_part(video_features)
        keep = mdt.keep_mask(y.shape[0], prob, y.device)
        return time + keep.view(-1, 1) * y

    # ------------------------------------------------------------------------- forward

    def forward(
        self,
        x: Tensor,
        t: Tensor,
        video_features: Tensor,
        c_fn: CFn = None,
        enable_mask: bool = False,
        prob: float | None = None,
    ) -> Tensor:
        """The official forward (models.py:496-543): embed, c, blocks, head, unpatchify.

        Args:
            x: noisy latents.
            t: DPM-Solver model time per row (999.0 at the first step).
            video_features: CAVP features, 32 frames per row.
            c_fn: applied to c before any block (None: the official forward).
            enable_mask: temporal masking with the side block (needs a mask_ratio; training).
            prob: probability of dropping each row's video part. The official default 0.1 (the
                training dropout) applies here in train mode; None in eval mode means 0. Pass 0
                (conditional) or 1 (unconditional), as `forward_with_cfg` does.

        Shapes: x (N, C, H, W), t (N,), video_features (N, 32, 512) -> (N, 2C or C, H, W).
        """
        if c_fn is not None and not callable(c_fn):
            raise ValueError(f"c_fn must be callable or None, got {c_fn!r} (enable_mask is 5th)")
        if prob is None:
            prob = 0.1 if self.training else 0.0
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.bf16_autocast):
            x = self.x_embedder(x) + self.pos_embed  # (N, T, D)
            c = self.condition(t, video_features, prob)  # (N, D)
            if c_fn is not None:
                c = c_fn(c)
            masking = None
            if self.mask_ratio is not None and enable_mask:  # whole rows of the grid
                masking = partial(temporal_masking, mask_ratio=self.mask_ratio, grid_w=self.grid[1])
            return self._run_blocks(x, c, masking)  # (N, C_out, H, W)

    def forward_with_cfg(
        self,
        x: Tensor,
        t: Tensor,
        video_features: Tensor,
        cfg_scale: float = 5.0,
        diffusion_steps: int = 1000,
        scale_pow: float = 0.01,
        c_fn: CFn = None,
    ) -> Tensor:
        """The official guided forward (models.py:546-562); defaults as inference.py:44-45.

        Two forwards of the same x: unconditional (prob 1, c = T) and conditional (prob 0);
        every output channel gets uncond + w(t) (cond - uncond) with MDT's power-cosine weight
        w(t) = 1 + (cfg_scale - 1) (1 - cos(pi (1 - t / diffusion_steps)^scale_pow)) / 2.
        inference.py:69 then keeps the first in_channels channels (epsilon).

        Shapes: x (N, C, H, W), t (N,), video_features (N, 32, 512) -> (N, 2C or C, H, W).
        """
        uncond = self.forward(x, t, video_features, c_fn=c_fn, prob=1.0)
        cond = self.forward(x, t, video_features, c_fn=c_fn, prob=0.0)
        return mdt.guide_all_channels(uncond, cond, t, cfg_scale, diffusion_steps, scale_pow)


# ----------------------------------------------------------------------------- c and files


def condition_parts(model: MDSGen, inputs: Mapping[str, Tensor], t: float) -> tuple[Tensor, Tensor]:
    """The two parts of c over N conditions at one t: c = combine(T, Y, "sum").

    Args:
        model: an MDSGen (eval mode or not: the video part is never dropped here).
        inputs: {"video_features": (N, 32, 512)} (see INPUTS).
        t: DPM-Solver model time; 999.0 (INITIAL_T) is the first, pure-noise step.

    Returns:
        (T, Y) float32 on the CPU, computed in float32 without autocast.

    Shapes: -> T (1, D), Y (N, D).
    """
    missing = [name for name in INPUTS if name not in inputs]
    if missing:
        raise ValueError(f"inputs: missing {missing}; expected {list(INPUTS)}, got {list(inputs)}")
    device = model.pos_embed.device
    video = inputs["video_features"].to(device=device, dtype=torch.float32)
    with torch.no_grad(), torch.autocast(device.type, enabled=False):
        time = model.time_part(torch.tensor([float(t)], device=device))
        cond = model.condition_part(video)
    combine(time, cond, "sum")  # checks the shapes
    return time.float().cpu(), cond.float().cpu()


def load_inputs(path: str | Path) -> dict[str, Tensor]:
    """Read a condition-input file (safetensors, one tensor per INPUTS name) and check it.

    Shapes: -> {"video_features": (N, 32, 512) float32}.
    """
    from safetensors.torch import load_file

    tensors = load_file(str(path), device="cpu")
    out = {}
    for name, spec in INPUTS.items():
        if name not in tensors:
            raise ValueError(f"{path}: no tensor {name!r}; found {sorted(tensors)}")
        value = tensors[name]
        if value.ndim != len(spec["shape"]) or tuple(value.shape[1:]) != spec["shape"][1:]:
            raise ValueError(
                f"{path}: {name} has shape {tuple(value.shape)}, expected {spec['shape']}"
            )
        out[name] = value.float()
    return out


def load_mdsgen(path: str | Path, manifest_name: str = "mdsgen_b2.json") -> MDSGen:
    """Build MDSGen from a packaged manifest's config and load an official checkpoint strictly.

    Args:
        path: `mdsgen_audioldm.pt`, a bare state_dict (inference.py:55-56), or a .safetensors.
        manifest_name: file in `manifests/appendix/`.

    Returns:
        the model in eval mode, on the CPU, float32.

    Raises:
        CheckpointError: any missing, unexpected or misshapen key (nothing is copied then).

    Shapes: n/a.
    """
    config = read_manifest(f"appendix/{manifest_name}")["config"]
    model = MDSGen(**config)
    return load_into(model, path, weights_key=None).eval()
