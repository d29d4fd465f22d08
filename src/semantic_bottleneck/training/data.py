"""Datasets: scikit-learn's handwritten digits as a class-conditional image set (the testbed),
and the batch source the trainer draws them from."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_digits
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


# the digits datasets by TrainConfig.dataset name -> loader of (x, y)
DIGITS_DATASETS = {"digits": digits, "digits-80": digits_80}


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

        Shapes: -> (B, 1, 8, 8), (B,), [(B, 16, C)] or [].
        """
        idx = torch.randint(
            0, len(self.y), (self.batch_size,), generator=generator, device=generator.device
        ).to(self.x.device)
        zs = [self.z[idx]] if self.z is not None else []
        return self.x[idx], self.y[idx], zs
