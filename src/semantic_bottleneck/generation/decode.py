"""Decoders from sampled latents to uint8 images, one per family's official convention.

A decoder is a callable latents -> uint8 images (N, H, W, 3) on the CPU. Each family's official
sampling script decodes and quantises in its own way, and the bytes differ between them:

| family | autoencoder input | pixels from the decoder output x (then `.to(uint8)`, truncating) |
|---|---|---|
| dit, sit | SD-VAE, z / 0.18215 | clamp(127.5 x + 128, 0, 255) (DiT/SiT `sample_ddp.py`) |
| repa, mg | SD-VAE, z / 0.18215 | clamp(255 ((x + 1) / 2), 0, 255) (REPA `generate.py`, MG) |
| mdt, mdtv2 | SD-VAE, z / 0.18215 | ((x + 1) 127.5).clamp(0, 255) (MDT `scripts/image_sample.py`) |
| lightningdit | VA-VAE, z std / 1.0 + mean | clamp(127.5 x + 128, 0, 255) (`decode_to_images`) |

MG's `evaluate` clamps x to [-1, 1] first and writes to_pil_image((x + 1) / 2), which gives the
same bytes as REPA. The +128 of DiT rounds to nearest; the other two truncate. REPA divides by a
(1, 4, 1, 1) tensor of 0.18215, the others by the Python number; on CUDA the latter is a
multiplication by the reciprocal, so the two differ in the last bit there (`per_channel_scale`).

The SD-VAEs are the diffusers `stabilityai/sd-vae-ft-ema` / `-ft-mse` folders of the weights
cache; the VA-VAE is read from its LDM-format file (see `vavae.py`) with the channel mean and std
of `latents_stats.pt`. The testbed decoder maps 8x8 one-channel digits in [-1, 1] to gray RGB
with `training.data.to_uint8`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

from semantic_bottleneck.training.data import to_uint8
from semantic_bottleneck.zoo import registry
from semantic_bottleneck.zoo.checkpoint import CheckpointError
from semantic_bottleneck.zoo.fetch import default_cache_dir, fetch_command, locate

from .vavae import VAVAE_F16D32, LDMConfig, build_autoencoder, read_ldm_state_dict

SD_VAE_SCALE = 0.18215  # latent scale of the SD-VAE (every 32x32x4 model's sampling script)
SD_VAES = ("sd-vae-ft-ema", "sd-vae-ft-mse")
VAVAE = "vavae-f16d32"
DIGITS = "digits"  # the testbed's identity decoder
LATENT_CHANNELS = {"sd-vae-ft-ema": 4, "sd-vae-ft-mse": 4, VAVAE: 32, DIGITS: 1}
Decoder = Callable[[Tensor], Tensor]  # latents (N, C, h, w) -> uint8 (N, H, W, 3) on the CPU


def dit_pixels(x: Tensor) -> Tensor:
    """DiT/SiT/LightningDiT: clamp(127.5 x + 128, 0, 255), truncated. Shapes: any -> same."""
    return torch.clamp(127.5 * x + 128.0, 0, 255).to(torch.uint8)


def repa_pixels(x: Tensor) -> Tensor:
    """REPA/MG: clamp(255 ((x + 1) / 2), 0, 255), truncated. Shapes: any -> same."""
    return torch.clamp(255.0 * ((x + 1) / 2.0), 0, 255).to(torch.uint8)


def mdt_pixels(x: Tensor) -> Tensor:
    """MDT/MDTv2: ((x + 1) 127.5).clamp(0, 255), truncated (no rounding offset). Shapes: same."""
    return ((x + 1) * 127.5).clamp(0, 255).to(torch.uint8)


PIXELS: dict[str, Callable[[Tensor], Tensor]] = {
    "dit": dit_pixels,
    "repa": repa_pixels,
    "mdt": mdt_pixels,
}
# model family -> pixel convention of its official sampling script
FAMILY_PIXELS = {
    "dit": "dit",
    "sit": "dit",
    "lightningdit": "dit",
    "repa": "repa",
    "mg": "repa",
    "mdt": "mdt",
    "mdtv2": "mdt",
}


def pixels_of(family: str) -> str:
    """The pixel convention of a model family (a key of PIXELS)."""
    if family not in FAMILY_PIXELS:
        raise ValueError(f"unknown family {family!r}; expected one of {sorted(FAMILY_PIXELS)}")
    return FAMILY_PIXELS[family]


def to_images(x: Tensor, pixels: str) -> Tensor:
    """Decoder output in [-1, 1] to uint8 HWC images on the CPU, by a family's convention.

    Shapes:
        x (N, 3, H, W) -> (N, H, W, 3).
    """
    if pixels not in PIXELS:
        raise ValueError(f"pixels: expected one of {sorted(PIXELS)}, got {pixels!r}")
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"x: expected an (N, 3, H, W) image batch, got shape {tuple(x.shape)}")
    return PIXELS[pixels](x).permute(0, 2, 3, 1).contiguous().cpu()


class MissingAssetError(FileNotFoundError):
    """A registry input is not in the weights cache; the message says how to fetch it."""


def asset_folder(name: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache folder of a registry input, or MissingAssetError naming the fetch command."""
    entry = registry.get_entry(name)
    main = locate(entry, cache_dir)
    if main is None:
        folder = (Path(cache_dir) if cache_dir else default_cache_dir()) / entry.name
        files = (entry.filename, *entry.extra_files)
        missing = [f for f in files if not (folder / f).is_file()] or list(files)
        raise MissingAssetError(
            f"{name}: {', '.join(missing)} missing (or incomplete) in {folder}. Run "
            f"`{fetch_command(name)}` (needs network; on an offline machine, fetch on a "
            "connected one and copy the cache folder)."
        )
    return main.parent


class LatentDecoder(nn.Module):
    """A VAE decoder with a family's latent scaling and pixel convention.

    Args:
        vae: a diffusers AutoencoderKL (only `decode` is used).
        pixels: pixel convention, a key of PIXELS.
        scale: SD-VAE latent scale; the VAE gets z / scale (used when mean is None).
        per_channel_scale: divide by a (1, C, 1, 1) tensor of `scale` (REPA) rather than by the
            number (DiT, SiT, MDT, MG).
        mean: channel means of the VA-VAE latents; the VAE gets z std / multiplier + mean.
        std: channel standard deviations (with mean).
        multiplier: LightningDiT's `latent_multiplier` (1.0).
    """

    def __init__(
        self,
        vae: nn.Module,
        pixels: str,
        scale: float = SD_VAE_SCALE,
        per_channel_scale: bool = False,
        mean: Tensor | None = None,
        std: Tensor | None = None,
        multiplier: float = 1.0,
    ):
        super().__init__()
        if pixels not in PIXELS:
            raise ValueError(f"pixels: expected one of {sorted(PIXELS)}, got {pixels!r}")
        if (mean is None) != (std is None):
            raise ValueError("give both mean and std (VA-VAE latents) or neither (SD-VAE)")
        self.vae = vae.eval().requires_grad_(False)
        self.pixels, self.scale, self.multiplier = pixels, scale, multiplier
        self.per_channel_scale = per_channel_scale
        self.latent_channels = int(vae.config.latent_channels)
        for name, value in (("mean", mean), ("std", std)):
            if value is not None:
                value = _channel_stat(value, self.latent_channels, name)
            self.register_buffer(name, value, persistent=False)

    def vae_latents(self, z: Tensor) -> Tensor:
        """What the VAE decodes: z / scale (SD-VAE) or z std / multiplier + mean (VA-VAE)."""
        if self.mean is None and self.per_channel_scale:  # REPA generate.py's latents_scale
            return z / torch.full((1, z.shape[1], 1, 1), self.scale, dtype=z.dtype, device=z.device)
        if self.mean is None:
            return z / self.scale
        # LightningDiT inference.py: (samples * latent_std) / latent_multiplier + latent_mean
        return (z * self.std) / self.multiplier + self.mean

    @torch.no_grad()
    def forward(self, z: Tensor) -> Tensor:
        """Latents to uint8 images on the CPU.

        Shapes:
            z (N, C, h, w) -> (N, H, W, 3).
        """
        if z.dim() != 4 or z.shape[1] != self.latent_channels:
            raise ValueError(
                f"latents: expected (N, {self.latent_channels}, h, w), got {tuple(z.shape)}"
            )
        x = self.vae.decode(self.vae_latents(z.float())).sample
        return to_images(x, self.pixels)


def _channel_stat(value: Tensor, channels: int, name: str) -> Tensor:
    if not isinstance(value, Tensor) or value.numel() != channels:
        got = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
        raise ValueError(f"{name}: expected {channels} channel values, got {got}")
    return value.detach().float().reshape(1, channels, 1, 1)


def load_sd_vae(
    name: str = "sd-vae-ft-ema",
    family: str = "dit",
    cache_dir: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
) -> LatentDecoder:
    """An SD-VAE from the weights cache (no network), scaled by 1 / 0.18215.

    Args:
        name: "sd-vae-ft-ema" (every sampling script's default) or "sd-vae-ft-mse".
        family: model family, for its pixel convention and latent division.
        cache_dir: weights cache (default: `fetch.default_cache_dir()`).
        device: where the decoder runs.
    """
    if name not in SD_VAES:
        raise ValueError(f"SD-VAE: expected one of {SD_VAES}, got {name!r}")
    from diffusers import AutoencoderKL

    pixels = pixels_of(family)  # validates family before any file is read
    folder = asset_folder(name, cache_dir)
    vae = AutoencoderKL.from_pretrained(folder, local_files_only=True)
    return LatentDecoder(vae, pixels, per_channel_scale=family == "repa").to(device)


def load_latent_stats(path: str | os.PathLike) -> tuple[Tensor, Tensor]:
    """(mean, std) of LightningDiT's `latents_stats.pt`, read with weights_only=True."""
    try:
        stats = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(f"{path}: not a tensor-only torch file ({err})") from None
    if not isinstance(stats, dict) or not {"mean", "std"} <= set(stats):
        found = sorted(stats) if isinstance(stats, dict) else type(stats).__name__
        raise CheckpointError(f"{path}: expected a dict with 'mean' and 'std', found {found}")
    return stats["mean"], stats["std"]


def load_vavae(
    cache_dir: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    expect: LDMConfig | None = VAVAE_F16D32,
) -> LatentDecoder:
    """LightningDiT's VA-VAE f16d32 from the weights cache, de-normalising with its latent stats.

    Args:
        cache_dir: weights cache (default: `fetch.default_cache_dir()`).
        device: where the decoder runs.
        expect: architecture the weights must have (None: any LDM autoencoder).
    """
    folder = asset_folder(VAVAE, cache_dir)
    entry = registry.get_entry(VAVAE)
    vae = build_autoencoder(read_ldm_state_dict(folder / entry.filename), expect)
    mean, std = load_latent_stats(folder / "latents_stats.pt")
    return LatentDecoder(vae, "dit", mean=mean, std=std).to(device)


def decode_digits(x: Tensor) -> Tensor:
    """Testbed decoder: one-channel digits in [-1, 1] to gray uint8 RGB on the CPU.

    Shapes:
        x (N, 1, H, W) -> (N, H, W, 3).
    """
    if x.dim() != 4 or x.shape[1] != 1:
        raise ValueError(f"digits: expected (N, 1, H, W) samples, got shape {tuple(x.shape)}")
    return to_uint8(x.float()).permute(0, 2, 3, 1).expand(-1, -1, -1, 3).contiguous().cpu()


def load_decoder(
    vae: str,
    family: str,
    cache_dir: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
) -> Decoder:
    """The decoder of a VAE name, with the pixel convention of a model family.

    Args:
        vae: "sd-vae-ft-ema", "sd-vae-ft-mse", "vavae-f16d32" or "digits" (testbed).
        family: the model family (dit, sit, repa, mg, lightningdit, mdt, mdtv2).
        cache_dir: weights cache.
        device: where the decoder runs.

    Raises:
        ValueError: unknown vae or family. MissingAssetError: files not in the cache.
    """
    pixels = pixels_of(family)
    if vae == DIGITS:
        return decode_digits
    if vae in SD_VAES:
        return load_sd_vae(vae, family, cache_dir, device)
    if vae == VAVAE:
        if pixels != "dit":
            raise ValueError(f"the VA-VAE decodes LightningDiT latents, not {family!r} ones")
        return load_vavae(cache_dir, device)
    raise ValueError(f"vae: expected one of {[*SD_VAES, VAVAE, DIGITS]}, got {vae!r}")


def decoder_for_checkpoint(
    name: str,
    vae: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
) -> Decoder:
    """The decoder a registry checkpoint's sampling script uses (or `vae` instead)."""
    entry = registry.get_checkpoint(name)
    return load_decoder(vae or entry.vae, entry.family, cache_dir, device)
