"""The testbed's feature network: a small CNN trained here to classify the 8x8 digits.

It plays three roles on the testbed, where Inception and CLIP have nothing to see:
the feature network of FID, IS and precision/recall (through torch-fidelity, see `fidelity.py`),
the class-probability stand-in for CLIP score (`clip_score.class_probability_score`), and a frozen
target encoder whose 4x4 feature map gives one token per 2x2 patch (REPA alignment).

Architecture (input (N, 1, 8, 8) in [-1, 1]):
conv3x3 -> GELU -> conv3x3 -> GELU at 8x8 (`width` channels), 2x2 average pool,
conv3x3 -> GELU -> conv3x3 -> GELU at 4x4 (`dim` channels) = the patch tokens,
mean over the 16 tokens = the features, linear head = the logits.

Training: AdamW, cosine learning-rate decay to 0, cross entropy, random translations of up to
`shift` pixels (the background, -1, fills in). Weights are saved as safetensors, the held-out
accuracy and the config as JSON, in the artifact cache.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from semantic_bottleneck.book.cache import cached
from semantic_bottleneck.training.data import DIGITS_CLASSES, DIGITS_SIZE, digits

TOKENS = (DIGITS_SIZE // 2) ** 2  # one per 2x2 patch of the 8x8 image: 16
WEIGHTS_FILE = "model.safetensors"
INFO_FILE = "info.json"


@dataclass(frozen=True)
class ClassifierConfig:
    """Everything that changes the trained classifier (its hash keys the artifact cache)."""

    width: int = 32  # channels at 8x8
    dim: int = 64  # channels at 4x4: the token and feature size C
    epochs: int = 40
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 0.01
    shift: int = 1  # augmentation: random translation of up to this many pixels
    seed: int = 0  # initialisation, batch order and augmentation
    split_seed: int = 0  # seed of the digits train/test split

    def __post_init__(self):
        if min(self.width, self.dim, self.epochs, self.batch_size) < 1:
            raise ValueError(
                f"width, dim, epochs and batch_size must be >= 1; got {self.width}, {self.dim}, "
                f"{self.epochs}, {self.batch_size}"
            )
        if self.lr <= 0 or self.weight_decay < 0 or not 0 <= self.shift < DIGITS_SIZE:
            raise ValueError(
                f"need lr > 0, weight_decay >= 0, 0 <= shift < {DIGITS_SIZE}; got lr={self.lr}, "
                f"weight_decay={self.weight_decay}, shift={self.shift}"
            )


class DigitsClassifier(nn.Module):
    """CNN over 8x8 digits with a 4x4 token map, pooled features and class logits.

    Args:
        width: channels of the two 8x8 convolutions.
        dim: channels of the two 4x4 convolutions (token and feature size C).
        num_classes: number of classes.
    """

    def __init__(self, width: int = 32, dim: int = 64, num_classes: int = DIGITS_CLASSES):
        super().__init__()
        self.conv1 = nn.Conv2d(1, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.conv3 = nn.Conv2d(width, dim, 3, padding=1)
        self.conv4 = nn.Conv2d(dim, dim, 3, padding=1)
        self.head = nn.Linear(dim, num_classes)
        self.dim = dim

    def feature_map(self, x: Tensor) -> Tensor:
        """The last convolution's output, before pooling.

        Shapes: x (N, 1, 8, 8) -> (N, C, 4, 4).
        """
        if x.ndim != 4 or tuple(x.shape[1:]) != (1, DIGITS_SIZE, DIGITS_SIZE):
            raise ValueError(f"expected images of shape (N, 1, 8, 8), got {tuple(x.shape)}")
        h = F.gelu(self.conv1(x))  # (N, width, 8, 8)
        h = F.gelu(self.conv2(h))
        h = F.avg_pool2d(h, 2)  # (N, width, 4, 4): cell (r, c) covers pixels 2r..2r+1, 2c..2c+1
        h = F.gelu(self.conv3(h))  # (N, C, 4, 4)
        return F.gelu(self.conv4(h))

    def patch_tokens(self, x: Tensor) -> Tensor:
        """The feature map as tokens, row-major: token 4r + c is cell (r, c), the 2x2 patch a
        patch-2 transformer on the 8x8 image numbers the same way.

        Shapes: x (N, 1, 8, 8) -> (N, 16, C).
        """
        return self.feature_map(x).flatten(2).transpose(1, 2)

    def features(self, x: Tensor) -> Tensor:
        """Pooled penultimate features: the mean of the 16 tokens.

        Shapes: x (N, 1, 8, 8) -> (N, C).
        """
        return self.patch_tokens(x).mean(dim=1)

    def logits(self, x: Tensor) -> Tensor:
        """Class logits. Shapes: x (N, 1, 8, 8) -> (N, 10)."""
        return self.head(self.features(x))

    def forward(self, x: Tensor) -> Tensor:
        """Same as `logits`. Shapes: x (N, 1, 8, 8) -> (N, 10)."""
        return self.logits(x)


def classifier_input(images: Tensor) -> Tensor:
    """uint8 RGB images to the classifier's input: channel mean, resize to 8x8, scale to [-1, 1].

    The resize (only when the images are not 8x8) is bilinear with antialiasing
    (`F.interpolate(mode="bilinear", antialias=True, align_corners=False)`), applied to the
    0..255 gray values; then x / 127.5 - 1, which inverts `training.data.to_uint8`.

    Args:
        images: uint8 (N, 3, H, W).

    Returns:
        float32 (N, 1, 8, 8).

    Shapes: (N, 3, H, W) -> (N, 1, 8, 8).
    """
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(
            f"expected uint8 images of shape (N, 3, H, W), got {images.dtype} {tuple(images.shape)}"
        )
    gray = images.float().mean(dim=1, keepdim=True)  # (N, 1, H, W) in 0..255
    if tuple(gray.shape[2:]) != (DIGITS_SIZE, DIGITS_SIZE):
        size = (DIGITS_SIZE, DIGITS_SIZE)
        gray = F.interpolate(gray, size=size, mode="bilinear", antialias=True, align_corners=False)
    return gray / 127.5 - 1.0


# ----------------------------------------------------------------------------- training


def _translate(x: Tensor, max_shift: int, generator: torch.Generator) -> Tensor:
    """Shift each image by a random (dy, dx) in [-max_shift, max_shift]^2, filling with -1.

    Shapes: (N, 1, 8, 8) -> (N, 1, 8, 8).
    """
    if max_shift == 0:
        return x
    n, size = x.shape[0], x.shape[-1]
    padded = F.pad(x[:, 0], (max_shift,) * 4, value=-1.0)  # (N, 8 + 2s, 8 + 2s)
    dy, dx = torch.randint(0, 2 * max_shift + 1, (2, n, 1), generator=generator)
    rows = (dy + torch.arange(size))[:, :, None]  # (N, 8, 1)
    cols = (dx + torch.arange(size))[:, None, :]  # (N, 1, 8)
    return padded[torch.arange(n)[:, None, None], rows, cols].unsqueeze(1)


@torch.no_grad()
def accuracy(model: DigitsClassifier, x: Tensor, y: Tensor) -> float:
    """Fraction of images whose arg-max logit is the label. Shapes: x (N, 1, 8, 8), y (N,)."""
    return (model.logits(x).argmax(dim=1) == y).float().mean().item()


@contextmanager
def _one_thread() -> Iterator[None]:
    # The model is tiny: intra-op threads cost more than they save, and on a busy machine
    # oversubscribed threads slow training by an order of magnitude.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def train_classifier(config: ClassifierConfig, out_dir: str | Path) -> dict:
    """Train on the digits train split, measure on the test split, save weights and info.

    Args:
        config: the training settings.
        out_dir: folder that receives `model.safetensors` and `info.json`.

    Returns:
        info: test_accuracy, train_accuracy, n_train, n_test, parameters, final_loss, seconds,
        config (as a dict).
    """
    with _one_thread():
        model, info = _fit(config)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file(model.state_dict(), str(out_dir / WEIGHTS_FILE))
    (out_dir / INFO_FILE).write_text(json.dumps(info, indent=1))
    return info


def _fit(config: ClassifierConfig) -> tuple[DigitsClassifier, dict]:
    """The training loop and the accuracy measurement (see `train_classifier`)."""
    x_train, y_train = digits("train", config.split_seed)
    x_test, y_test = digits("test", config.split_seed)
    # seed the initialisation without touching the caller's global RNG
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = DigitsClassifier(config.width, config.dim)
    gen = torch.Generator().manual_seed(config.seed)
    steps_per_epoch = -(-len(y_train) // config.batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, config.epochs * steps_per_epoch)
    start = time.perf_counter()
    model.train()
    for _ in range(config.epochs):
        order = torch.randperm(len(y_train), generator=gen)
        for batch in order.split(config.batch_size):
            x = _translate(x_train[batch], config.shift, gen)
            loss = F.cross_entropy(model.logits(x), y_train[batch])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    info = {
        "test_accuracy": accuracy(model, x_test, y_test),
        "train_accuracy": accuracy(model, x_train, y_train),
        "n_train": len(y_train),
        "n_test": len(y_test),
        "parameters": sum(p.numel() for p in model.parameters()),
        "final_loss": loss.item(),
        "seconds": time.perf_counter() - start,
        "config": asdict(config),
    }
    return model, info


def load_classifier(folder: str | Path) -> tuple[DigitsClassifier, dict]:
    """Read a trained classifier (weights and info) from its folder.

    Args:
        folder: a folder written by `train_classifier`.

    Returns:
        (model in eval mode with gradients off, info dict).
    """
    folder = Path(folder)
    if not (folder / WEIGHTS_FILE).is_file() or not (folder / INFO_FILE).is_file():
        raise FileNotFoundError(
            f"{folder} does not hold a trained digits classifier ({WEIGHTS_FILE} and {INFO_FILE})"
        )
    info = json.loads((folder / INFO_FILE).read_text())
    config = ClassifierConfig(**info["config"])
    model = DigitsClassifier(config.width, config.dim)
    model.load_state_dict(load_file(str(folder / WEIGHTS_FILE)))  # strict: every key and shape
    return model.eval().requires_grad_(False), info


def classifier_folder(config: ClassifierConfig | None = None) -> Path:
    """The artifact folder of the trained classifier, training it first if absent."""
    config = config or ClassifierConfig()
    folder, _ = cached("digits-classifier", config, lambda out: train_classifier(config, out))
    return folder


def digits_classifier(config: ClassifierConfig | None = None) -> tuple[DigitsClassifier, dict]:
    """The trained digits classifier, from the artifact cache (trained once per config).

    Args:
        config: training settings; None uses the defaults.

    Returns:
        (model in eval mode with gradients off, info dict with `test_accuracy`).
    """
    return load_classifier(classifier_folder(config))
