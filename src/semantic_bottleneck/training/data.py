"""Datasets: scikit-learn's handwritten digits as a class-conditional image set (the testbed),
as a continuously conditioned one (each digit conditioned on its own 4x4 thumbnail), and the batch
source the trainer draws them from."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

DIGITS_CLASSES = 10
DIGITS_SIZE = 8


def digits(split: str = "all", seed: int = 0, test_fraction: float = 0.2) -> tuple[Tensor, Tensor]:
    """The 1,797 8x8 digits scaled from 0..16 to [-1, 1], one channel.

    Args:
        split: "all", "train" or "test"; train/test is a seeded stratified-by-shuffle split.
        seed: seed of the split.
        test_fraction: share of each class held out for "test".

    Returns:
        (x, y): float32 images and int64 labels 0..9.

    Shapes: x (n, 1, 8, 8), y (n,).
    """
    if split not in ("all", "train", "test"):
        raise ValueError(f"split must be 'all', 'train' or 'test', got {split!r}")
    # imported here: scikit-learn and SciPy take a second to import, and most pages never
    # read the digits themselves (they load trained models)
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.from_numpy(bunch.images.astype(np.float32) / 8.0 - 1.0).unsqueeze(1)
    y = torch.from_numpy(bunch.target.astype(np.int64))
    if split == "all":
        return x, y
    rng = np.random.default_rng(seed)
    test = np.zeros(len(y), dtype=bool)
    for cls in range(DIGITS_CLASSES):
        idx = np.flatnonzero(bunch.target == cls)
        test[rng.permutation(idx)[: int(round(test_fraction * len(idx)))]] = True
    keep = torch.from_numpy(test if split == "test" else ~test)
    return x[keep], y[keep]


ORIENTATIONS = 8  # 4 quarter turns x (as is, mirrored)


def digits_80() -> tuple[Tensor, Tensor]:
    """Every digit in 8 orientations as 80 classes: class = 8 * digit + 2 * quarter_turns + mirrored.

    A mirrored image is flipped left-right after its rotation. Some classes look alike (a 6 turned
    twice is close to a 9): the classes are defined by the transform, not by appearance.

    Shapes: -> x (8 * 1797, 1, 8, 8), y (8 * 1797,).
    """
    x, y = digits()
    xs, ys = [], []
    for turns in range(4):
        for mirrored in (0, 1):
            view = torch.rot90(x, turns, dims=(2, 3))
            xs.append(view.flip(3) if mirrored else view)
            ys.append(ORIENTATIONS * y + 2 * turns + mirrored)
    return torch.cat(xs), torch.cat(ys)


THUMBNAIL = 4  # side of the continuous condition: a 4x4 thumbnail, 16 numbers
CONDITIONS_PER_CLASS = 10  # held-out digits per class in the continuous model's condition set


def thumbnail(x: Tensor) -> Tensor:
    """The continuous condition of a digit: its 4x4 thumbnail (2x2 mean pooling), flattened.

    It fixes the digit's coarse shape, so a model conditioned on it is asked for one target image
    (PSNR and SSIM against that digit are meaningful), as X-MDPT's pose and source image are.

    Shapes: (n, 1, 8, 8) in [-1, 1] -> (n, 16).
    """
    return F.avg_pool2d(x, DIGITS_SIZE // THUMBNAIL).flatten(1)


def digits_thumbnail() -> tuple[Tensor, Tensor]:
    """The training digits, each conditioned on its own thumbnail: (x, v = thumbnail(x)).

    The held-out split is never trained on: the condition set is drawn from it.

    Shapes: -> x (n, 1, 8, 8), v (n, 16).
    """
    x, _ = digits("train")
    return x, thumbnail(x)


def condition_set(per_class: int = CONDITIONS_PER_CLASS) -> tuple[Tensor, Tensor, Tensor]:
    """The continuous model's analogue of "every class": the first `per_class` held-out digits of
    each class, as (thumbnails, target images, their digit labels), ordered by digit.

    Shapes: -> v (10 * per_class, 16), x (10 * per_class, 1, 8, 8), y (10 * per_class,).
    """
    x, y = digits("test")
    idx = torch.cat([torch.nonzero(y == k).flatten()[:per_class] for k in range(DIGITS_CLASSES)])
    if len(idx) != DIGITS_CLASSES * per_class:
        raise ValueError(f"per_class={per_class} exceeds the held-out digits of some class")
    return thumbnail(x[idx]), x[idx], y[idx]


# the digits datasets by TrainConfig.dataset name -> loader of (x, y); y is a label, or the
# continuous condition for "digits-thumbnail"
DIGITS_DATASETS = {"digits": digits, "digits-80": digits_80, "digits-thumbnail": digits_thumbnail}


def condition_inputs(dataset: str, num_classes: int) -> Tensor:
    """What the model is conditioned on when c is analysed: every class label, or for the
    continuous dataset the thumbnails of `condition_set`.

    Shapes: -> (num_classes,) int64, or (n, 16) float32.
    """
    if dataset == "digits-thumbnail":
        return condition_set()[0]
    return torch.arange(num_classes)


def to_uint8(x: Tensor) -> Tensor:
    """Images in [-1, 1] to uint8 0..255 (clamped). Shapes: any -> same."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


class DigitsSource:
    """Training batches of the digits (or `digits_80`): uniform random indices, with their
    encoder tokens.

    The frozen encoder's tokens depend only on the clean image, so they are computed once for
    all the images instead of once per batch (the same numbers, no per-step cost).
    """

    def __init__(
        self, batch_size: int, device: torch.device, encoder=None, dataset: str = "digits"
    ):
        if dataset not in DIGITS_DATASETS:
            raise ValueError(f"dataset must be one of {sorted(DIGITS_DATASETS)}, got {dataset!r}")
        x, y = DIGITS_DATASETS[dataset]()
        self.x, self.y, self.batch_size = x.to(device), y.to(device), batch_size
        self.z = None
        if encoder is not None:
            with torch.no_grad():
                self.z = encoder.to(device)(self.x).float()

    def batch(self, generator: torch.Generator, autocast=None) -> tuple[Tensor, Tensor, list]:
        """One batch (x0, y, zs) drawn with `generator`.

        Shapes: -> (B, 1, 8, 8), (B,) labels or (B, 16) thumbnails, [(B, 16, C)] or [].
        """
        idx = torch.randint(
            0, len(self.y), (self.batch_size,), generator=generator, device=generator.device
        ).to(self.x.device)
        zs = [self.z[idx]] if self.z is not None else []
        return self.x[idx], self.y[idx], zs
