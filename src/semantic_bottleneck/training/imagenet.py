"""ImageNet for REPA-B/2: the prepared folder, its dataset and REPA's latent sampling.

`semantic-bottleneck train prepare-imagenet --source ILSVRC/Data/CLS-LOC/train --dest DIR` writes
the layout of REPA's `preprocessing/` (edm2's `dataset_tool.py convert` then `encode`):

    DIR/images/NNNNN/imgXXXXXXXX.png          ADM center crop to 256, uncompressed PNG
    DIR/images/dataset.json                   {"labels": [[file, label], ...]}
    DIR/vae-sd/NNNNN/img-mean-std-XXXXXXXX.npy  float32 (8, 32, 32): SD-VAE posterior mean, std
    DIR/vae-sd/dataset.json

Labels are the index of the image's top-level folder (its synset) in sorted order. Every file is
written atomically and existing ones are kept, so an interrupted preparation resumes; the two
dataset.json files are written last, so a folder without them is incomplete. Training reads raw
images (for DINOv2) and moments, and draws z = (mean + std * N(0, 1)) * 0.18215 per batch.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset, Sampler
from tqdm import tqdm

from semantic_bottleneck.zoo import fetch
from semantic_bottleneck.zoo.checkpoint import atomic_write

RESOLUTION = 256
LATENT_SCALE = 0.18215  # SD-VAE latent scale (REPA's latents_scale; latents_bias is 0)
VAE_ASSET = "sd-vae-ft-mse"  # REPA's preprocessing encoder
IMAGE_EXTENSIONS = {".jpeg", ".jpg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


# ----------------------------------------------------------------------------- preparation


def center_crop_adm(image: Image.Image, size: int = RESOLUTION) -> np.ndarray:
    """ADM's ImageNet crop (guided-diffusion `center_crop_arr`), as edm2's center-crop-dhariwal.

    Halve with BOX filtering while the short side is >= 2 * size, resize the short side to size
    with BICUBIC, then take the central size x size square.

    Shapes: -> (size, size, 3) uint8.
    """
    while min(*image.size) >= 2 * size:
        image = image.resize(tuple(x // 2 for x in image.size), resample=Image.Resampling.BOX)
    scale = size / min(*image.size)
    image = image.resize(
        tuple(round(x * scale) for x in image.size), resample=Image.Resampling.BICUBIC
    )
    arr = np.array(image)
    top, left = (arr.shape[0] - size) // 2, (arr.shape[1] - size) // 2
    return arr[top : top + size, left : left + size]


def list_images(source: Path) -> list[tuple[Path, int]]:
    """Image files under `source` in sorted order, labelled by their sorted top-level folder."""
    source = Path(source)
    if not source.is_dir():
        raise ValueError(
            f"--source must be a folder of class folders (ImageNet train), got {source}"
        )
    files = sorted(
        p for p in source.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
    )
    if not files:
        raise ValueError(f"no images ({sorted(IMAGE_EXTENSIONS)}) found under {source}")
    tops = [
        p.relative_to(source).parts[0] if len(p.relative_to(source).parts) > 1 else ""
        for p in files
    ]
    index = {name: i for i, name in enumerate(sorted(set(tops)))}
    return [(p, index[t]) for p, t in zip(files, tops, strict=True)]


def load_vae(path: str | Path = "") -> torch.nn.Module:
    """SD-VAE ft-MSE (diffusers AutoencoderKL) from `path` or the project's weights cache."""
    from diffusers.models import AutoencoderKL

    if path:
        folder = Path(path)
    else:
        located = fetch.locate(VAE_ASSET)
        if located is None:
            raise FileNotFoundError(
                f"the SD-VAE ({VAE_ASSET}) is not in the weights cache; run "
                f"`{fetch.fetch_command(VAE_ASSET)}` or pass --vae FOLDER"
            )
        folder = located.parent
    return AutoencoderKL.from_pretrained(folder).eval().requires_grad_(False)


@torch.no_grad()
def encode_moments(vae: torch.nn.Module, images: Tensor) -> Tensor:
    """concat(mean, std) of the VAE posterior of uint8 images mapped to [-1, 1] (edm2 `encode`).

    Shapes: images (N, 3, H, W) uint8 -> (N, 8, H/8, W/8) float32.
    """
    x = images.to(torch.float32) / 127.5 - 1
    dist = vae.encode(x)["latent_dist"]
    return torch.cat([dist.mean, dist.std], dim=1)


def _save_png(path: Path, arr: np.ndarray) -> None:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="png", compress_level=0, optimize=False)
    with atomic_write(path) as f:
        f.write(buf.getvalue())


def _save_npy(path: Path, arr: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, arr)
    with atomic_write(path) as f:
        f.write(buf.getvalue())


def _names(idx: int) -> tuple[str, str]:
    s = f"{idx:08d}"
    return f"{s[:5]}/img{s}.png", f"{s[:5]}/img-mean-std-{s}.npy"


def prepare_imagenet(
    source: str | Path,
    dest: str | Path,
    vae: torch.nn.Module | str | Path = "",
    max_images: int | None = None,
    vae_batch_size: int = 1,
    device: str = "cuda" if torch.cuda.is_available() else "cpu",
    resolution: int = RESOLUTION,
    progress: bool = True,
) -> Path:
    """Crop, store and encode ImageNet into REPA's training layout (see the module docstring).

    Args:
        source: ImageNet train folder (one sub-folder per synset).
        dest: output folder; existing complete files are kept (resumable).
        vae: an AutoencoderKL, or its folder ("" = the weights cache's sd-vae-ft-mse).
        max_images: stop after this many images (None: all).
        vae_batch_size: images per VAE call; REPA encodes one at a time (1), larger is faster
            and changes the moments only at float rounding level.
        device: where the VAE runs.
        resolution: crop size (256 for REPA-B/2).
        progress: show a tqdm bar.

    Returns:
        dest.
    """
    if vae_batch_size < 1:
        raise ValueError(f"vae_batch_size must be >= 1, got {vae_batch_size}")
    files = list_images(Path(source))[:max_images]
    dest = Path(dest)
    if not isinstance(vae, torch.nn.Module):
        vae = load_vae(vae)
    vae = vae.to(device)
    labels = []
    pending: list[tuple[np.ndarray, Path]] = []

    def flush():
        if pending:
            batch = torch.from_numpy(np.stack([a for a, _ in pending])).permute(0, 3, 1, 2)
            moments = encode_moments(vae, batch.to(device)).cpu().numpy()
            for m, (_, path) in zip(moments, pending, strict=True):
                _save_npy(path, m.astype(np.float32))
            pending.clear()

    for idx, (path, label) in enumerate(tqdm(files, disable=not progress, desc="prepare")):
        png, npy = _names(idx)
        labels.append((png, npy, label))
        png_path, npy_path = dest / "images" / png, dest / "vae-sd" / npy
        if png_path.exists() and npy_path.exists():
            continue
        arr = center_crop_adm(Image.open(path).convert("RGB"), resolution)
        _save_png(png_path, arr)
        pending.append((arr, npy_path))
        if len(pending) >= vae_batch_size:
            flush()
    flush()
    for folder, col in (("images", 0), ("vae-sd", 1)):
        meta = {"labels": [[row[col], row[2]] for row in labels]}
        with atomic_write(dest / folder / "dataset.json") as f:
            f.write(json.dumps(meta).encode())
    return dest


# ----------------------------------------------------------------------------- training data


def require_prepared(root: str | Path) -> list[Path]:
    """The two dataset.json files of a complete prepared folder (else a FileNotFoundError)."""
    root = Path(root)
    metas = [root / "images" / "dataset.json", root / "vae-sd" / "dataset.json"]
    for meta in metas:
        if not meta.is_file():
            raise FileNotFoundError(
                f"{meta} is missing: {root} is not a complete prepared ImageNet folder; run "
                f"`semantic-bottleneck train prepare-imagenet --source ... --dest {root}`"
            )
    return metas


class ImageNetLatents(Dataset):
    """A prepared folder: (raw uint8 image, VAE moments, label) per index (REPA's CustomDataset)."""

    def __init__(self, root: str | Path):
        root = Path(root)
        images, latents = (json.loads(m.read_text())["labels"] for m in require_prepared(root))
        if len(images) != len(latents):
            raise ValueError(f"{root}: {len(images)} images but {len(latents)} latents")
        self.root = root
        self.images = [name for name, _ in images]
        self.latents = [name for name, _ in latents]
        self.labels = np.array([label for _, label in latents], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, idx: int) -> tuple[Tensor, Tensor, Tensor]:
        """Shapes: -> (3, 256, 256) uint8, (8, 32, 32) float32, () int64."""
        with Image.open(self.root / "images" / self.images[idx]) as im:
            image = torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1)
        moments = torch.from_numpy(np.load(self.root / "vae-sd" / self.latents[idx]))
        return image, moments, torch.tensor(self.labels[idx])


class StepBatches(Sampler[list[int]]):
    """Batches of one process by training step: resuming at a step gives the same batches.

    Epoch e is a permutation drawn from seed + e (the same on every process); step s takes the
    global batch s mod (steps per epoch) of its epoch (last partial batch dropped, as REPA's
    drop_last) and this process keeps its slice of it.
    """

    def __init__(
        self, n: int, global_batch: int, rank: int, world_size: int, seed: int, start_step: int
    ):
        if global_batch > n:
            raise ValueError(f"batch {global_batch} exceeds the dataset's {n} samples")
        self.n, self.batch, self.seed, self.start = n, global_batch, seed, start_step
        self.local = global_batch // world_size
        self.offset = rank * self.local

    def __iter__(self) -> Iterator[list[int]]:
        per_epoch = self.n // self.batch
        step = self.start
        while True:
            epoch, i = divmod(step, per_epoch)
            perm = torch.randperm(
                self.n, generator=torch.Generator().manual_seed(self.seed + epoch)
            )
            batch = perm[i * self.batch : (i + 1) * self.batch]
            yield batch[self.offset : self.offset + self.local].tolist()
            step += 1


@torch.no_grad()
def sample_posterior(moments: Tensor, generator: torch.Generator) -> Tensor:
    """z = (mean + std * eps) * 0.18215 (+ 0), REPA's `sample_posterior` with SD-VAE's scale.

    Shapes: moments (N, 8, H, W) -> (N, 4, H, W).
    """
    mean, std = torch.chunk(moments, 2, dim=1)
    eps = torch.randn(mean.shape, generator=generator, device=generator.device).to(mean)
    return (mean + std * eps) * LATENT_SCALE + 0.0


class ImageNetSource:
    """Training batches of a prepared folder: latents drawn from the moments, DINOv2 tokens.

    Args:
        root: prepared folder.
        global_batch: batch over all processes (256 for REPA-B/2).
        rank, world_size: this process's share.
        seed: seed of the epoch permutations.
        start_step: first step to serve (resuming).
        device: where batches go.
        encoder: frozen target encoder of raw images (None: no alignment).
        num_workers: DataLoader worker processes (PNG decoding).
    """

    def __init__(
        self,
        root: str | Path,
        global_batch: int,
        rank: int,
        world_size: int,
        seed: int,
        start_step: int,
        device: torch.device,
        encoder: torch.nn.Module | None = None,
        num_workers: int = 4,
    ):
        from torch.utils.data import DataLoader

        data = ImageNetLatents(root)
        sampler = StepBatches(len(data), global_batch, rank, world_size, seed, start_step)
        self.loader = iter(
            DataLoader(
                data,
                batch_sampler=sampler,
                num_workers=num_workers,
                pin_memory=device.type == "cuda",
                persistent_workers=num_workers > 0,
            )
        )
        self.device = device
        self.encoder = encoder.to(device) if encoder is not None else None

    def batch(self, generator: torch.Generator, autocast=None) -> tuple[Tensor, Tensor, list]:
        """(z, y, [tokens]) for the next step: posterior sample first, then the encoder (REPA).

        Shapes: -> (B, 4, 32, 32), (B,), [(B, 256, 768)] or [].
        """
        raw, moments, y = next(self.loader)
        raw, moments = raw.to(self.device, non_blocking=True), moments.to(self.device)
        x0 = sample_posterior(moments, generator)
        zs = []
        if self.encoder is not None:
            with torch.no_grad(), autocast if autocast is not None else _null():
                zs = [self.encoder(raw)]
        return x0, y.to(self.device), zs


def _null():
    from contextlib import nullcontext

    return nullcontext()
