"""PSNR and SSIM of generated images against the image each condition asks for (Table 7).

A continuous condition that fixes its target (X-MDPT's pose and source image; the testbed's
thumbnail of a held-out digit) makes every sample comparable with one ground-truth image, so
quality is also measured pair by pair, not only as a distribution (FID).

Both come from torchmetrics, on gray images scaled to [0, 1] (data range 1):
- PSNR: 10 log10(1 / MSE) per image, then the mean over images;
- SSIM: the Gaussian-window SSIM of Wang et al. (2004) with sigma 1.5, K1 = 0.01, K2 = 0.03 and
  a `kernel_size` window (7 by default: an 8x8 digit cannot hold the standard 11x11 one), the
  mean of the SSIM map per image, then the mean over images.
Every mean comes with a 95% interval (normal approximation, 1.96 standard errors), and a paired
difference to a baseline gets its own interval, since rows share conditions and noise seeds.
"""

from __future__ import annotations

import numpy as np
import torch
from torchmetrics.functional.image import (
    peak_signal_noise_ratio,
    structural_similarity_index_measure,
)

Z95 = 1.959964  # the two-sided 95% normal quantile
SSIM_KERNEL = 7


def _gray01(images) -> torch.Tensor:
    """uint8 (N, H, W, 3) gray RGB or (N, H, W) images as float64 (N, 1, H, W) in [0, 1]."""
    x = torch.as_tensor(np.asarray(images))
    if x.dtype != torch.uint8 or x.ndim not in (3, 4) or (x.ndim == 4 and x.shape[-1] != 3):
        raise ValueError(
            f"images: expected uint8 (N, H, W, 3) or (N, H, W), got {x.dtype} {tuple(x.shape)}"
        )
    if x.ndim == 4:
        x = x.double().mean(-1)  # gray RGB: the three channels are equal
    return (x.double() / 255.0).unsqueeze(1)


def pair_scores(samples, targets, kernel_size: int = SSIM_KERNEL) -> dict[str, np.ndarray]:
    """PSNR (dB) and SSIM of each sample against its target.

    Args:
        samples: uint8 generated images, (N, H, W, 3) or (N, H, W).
        targets: uint8 ground-truth images in the same layout, row i the target of sample i.
        kernel_size: side of SSIM's Gaussian window (odd, at most the image side).

    Returns:
        {"psnr": (N,), "ssim": (N,)} float64; PSNR is inf for an exact copy.
    """
    x, y = _gray01(samples), _gray01(targets)
    if x.shape != y.shape:
        raise ValueError(f"samples {tuple(x.shape)} and targets {tuple(y.shape)} differ in shape")
    if kernel_size % 2 == 0 or kernel_size > min(x.shape[-2:]):
        raise ValueError(f"kernel_size must be odd and at most {min(x.shape[-2:])}")
    psnr = peak_signal_noise_ratio(x, y, data_range=1.0, reduction="none", dim=(1, 2, 3))
    ssim = structural_similarity_index_measure(
        x, y, data_range=1.0, kernel_size=kernel_size, sigma=1.5, reduction="none"
    )
    return {"psnr": psnr.numpy(), "ssim": ssim.numpy()}


def mean_interval(values) -> tuple[float, float]:
    """The mean and the half-width of its 95% interval (normal approximation)."""
    v = np.asarray(values, dtype=np.float64)
    if v.size < 2 or not np.isfinite(v).all():
        raise ValueError(f"need at least 2 finite values, got {v.size} ({v[:5]})")
    return float(v.mean()), float(Z95 * v.std(ddof=1) / np.sqrt(v.size))
