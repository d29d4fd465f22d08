"""DeepFashion pose transfer scored as X-MDPT reports it: FID, SSIM, LPIPS and PSNR (Table 7).

X-MDPT's repository (trungpx/xmdpt @ 8397056) ships no evaluation code; it takes its data from
PIDM (README.md:43, "Refer to PIDM ... for this LMDB") and compares with PIDM's numbers, whose
evaluation is `utils/metrics.py` of ankanbhunia/PIDM @ e4f1d88 (file:line below). That protocol:

| metric | PIDM | here |
|---|---|---|
| pairs | `test_pairs.txt`, one line per pair: target, then source(s) (X-MDPT my_dataset.py:44-58, PIDM data/fashion_data.py:56-70) | `read_pairs`; row i of the samples is pair i |
| FID | pytorch-fid InceptionV3 pool3 (2048) of the generated images against the DeepFashion TRAIN images (`train_256x256_pngs`, metrics.py:644, 650), both resized to 176x256 (W x H) by `cv2.resize` (bilinear, :110) | torch-fidelity's InceptionV3 (the same 2015-12-05 graph, `fidelity.evaluate`, paper profile) on both sets resized to 256x176 (bilinear, no antialias, as cv2's INTER_LINEAR) and rounded to uint8; reference statistics from the train split's images (`reference_statistics`) |
| SSIM | skimage `compare_ssim(gt, pred, data_range=1, win_size=51, multichannel=True)` on float images in [0, 1] as stored, 256x256 (:261, 329-343) | torchmetrics SSIM, uniform 51x51 window, K1 0.01, K2 0.03, data range 1, on RGB in [0, 1] at 256x256, the map averaged away from the 25-pixel border strip as skimage does |
| LPIPS | `lpips.LPIPS(net='alex')` (v0.1) on images resized to 176x256 and mapped to [-1, 1] (:450-526) | torchmetrics' LPIPS (the same v0.1 linear layers, shipped with torchmetrics), AlexNet backbone, same resize and range |
| PSNR | skimage `compare_psnr(gt, pred, data_range=1)` on [0, 1] images at 256x256 (:341) | torchmetrics PSNR, data range 1, over RGB, per pair |

Each score is per pair, then the mean over pairs (FID is one number for the set).

Choices the paper (arXiv 2602.21596) does not state, and what differs from PIDM in the last bits:
- SSIM variant: the 51x51 uniform-window SSIM on RGB (per-channel maps, averaged), PIDM's
  reported "ssim". PIDM also prints a Gaussian-window "ssim_256" (sigma 1.2, population
  covariance, data range max - min on 0..255, metrics.py:349-351); it is not this one.
  skimage scales the window variances by the sample-covariance factor 2601/2600, torchmetrics does
  not, and its window sums run in float32 here: SSIM differs by < 1e-4 (checked in the tests
  against a retyping of skimage's formula).
- LPIPS normalises each feature as f / sqrt(sum f^2 + 1e-8) (torchmetrics) where the `lpips`
  package divides by sqrt(sum f^2) + 1e-10: the same but where a feature vector is nearly 0.
- LPIPS network: AlexNet (PIDM's `net='alex'`), lin layers v0.1, inputs 176 wide.
- PSNR of an identical pair is inf (not capped), as skimage's; the mean over pairs is then inf.
- PIDM drops the last incomplete batch of 64 in FID and LPIPS (metrics.py:175-176, 490-491);
  every pair and image counts here.

On-disk layout of the test set (PIDM's LMDB `256-256`, exported key by key to files):

    ROOT/
      test_pairs.txt     # "img/WOMEN/Dresses/id_00000002/02_1_front.jpg,img/WOMEN/.../02_2_side.jpg"
      train_pairs.txt    # same format; its images are the FID reference (the train split)
      256-256/           # IMAGE_DIR: one PNG per LMDB key, the pair file's path with .png
        img/WOMEN/Dresses/id_00000002/02_1_front.png
        ...
      pose/              # keypoints of each image (PIDM's pose folder): 18 lines "x y", -1 -1
        WOMEN/Dresses/id_00000002/02_1_front.txt   # where not visible (`render_pose` draws it)

The keys are the pair file's paths with `.jpg` replaced by `.png` (my_dataset.py:53, 55); the
images are the 176x256 originals stretched to 256x256 bicubic (PIDM data/prepare_data.py:26), the
size X-MDPT generates: the ground-truth target is compared pixel for pixel with the sample at
256x256 (SSIM, PSNR), and both are resized to 256x176 for LPIPS and FID. A stored image of another
size is resized to 256x256 bicubic first, as prepare_data.py makes them. LPIPS' AlexNet backbone
is torchvision's `alexnet-owt-7be5be79.pth`, looked up locally (`lpips_backbone`), never fetched.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn
from torch.utils.data import Dataset
from torchmetrics.functional.image import (
    peak_signal_noise_ratio,
    structural_similarity_index_measure,
)

from semantic_bottleneck.evaluation.fidelity import (
    FEATURE_LAYERS,
    INCEPTION_EXTRACTOR,
    as_chw_images,
    evaluate,
)
from semantic_bottleneck.evaluation.inputs import (
    INCEPTION,
    MissingInputError,
    check_tensor_only,
    locate_inputs,
)
from semantic_bottleneck.evaluation.reconstruction import mean_interval
from semantic_bottleneck.zoo import fetch
from semantic_bottleneck.zoo.checkpoint import load_state_dict

PAIRS_FILE = "test_pairs.txt"
TRAIN_PAIRS_FILE = "train_pairs.txt"
IMAGE_DIR = "256-256"  # PIDM's LMDB folder name, here a folder of PNG files
GENERATED_SIZE = (256, 256)  # (H, W) X-MDPT generates and SSIM/PSNR compare at
EVAL_SIZE = (256, 176)  # (H, W) of LPIPS and FID (cv2.resize(img, (176, 256)), metrics.py:110)
SSIM_WINDOW = 51  # metrics.py:261
LPIPS_NET = "alex"  # metrics.py:454
# torchvision's backbone files (the names its weights enums download to; read locally only)
LPIPS_BACKBONES = {"alex": "alexnet-owt-7be5be79.pth", "vgg": "vgg16-397923af.pth"}
LPIPS_CACHE_DIR = "lpips"  # folder of the weights cache that may hold a backbone file
PathLike = str | os.PathLike


# ----------------------------------------------------------------------------- pairs and images


@dataclass(frozen=True)
class Pair:
    """One test pair: the image to generate and the image it is generated from.

    Attributes:
        target: key of the ground-truth target (the pair file's path, `.png`).
        source: key of the source image.
    """

    target: str
    source: str


def _key(path: str) -> str:
    return path.strip().replace(".jpg", ".png")


def read_pairs(path: PathLike) -> list[Pair]:
    """The pairs of a `test_pairs.txt`-style file, in file order.

    Each non-empty line is `target,source[,source...]`; where a line lists several sources, the
    official readers draw one at random (my_dataset.py:78), here the first is taken.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a line without a source.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pair file not found: {path}")
    pairs = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        fields = [f for f in line.strip().split(",") if f.strip()]
        if len(fields) < 2:
            raise ValueError(f"{path}:{number}: expected 'target,source', got {line!r}")
        pairs.append(Pair(_key(fields[0]), _key(fields[1])))
    if not pairs:
        raise ValueError(f"{path}: no pairs")
    return pairs


def image_file(root: PathLike, key: str, image_dir: str = IMAGE_DIR) -> Path:
    """Where the image of `key` lies: ROOT/IMAGE_DIR/key."""
    return Path(root) / image_dir / key


def _read(file: Path, size: tuple[int, int]) -> np.ndarray:
    with Image.open(file) as img:
        img = img.convert("RGB")
        if img.size != (size[1], size[0]):  # PIL sizes are (W, H)
            img = img.resize((size[1], size[0]), Image.BICUBIC)
        return np.asarray(img, dtype=np.uint8)


def load_images(
    root: PathLike,
    keys: Sequence[str],
    size: tuple[int, int] = GENERATED_SIZE,
    image_dir: str = IMAGE_DIR,
) -> np.ndarray:
    """The images of `keys` as uint8 RGB, resized to `size` (bicubic) where stored otherwise.

    Raises:
        FileNotFoundError: every missing file is named (the first ten).

    Shapes:
        -> (len(keys), H, W, 3).
    """
    files = [image_file(root, k, image_dir) for k in keys]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} DeepFashion images are missing under {Path(root) / image_dir}, e.g. "
            f"{missing[:10]}; expected one PNG per pair-file path (see evaluation.deepfashion)"
        )
    return np.stack([_read(f, size) for f in files])


def load_targets(root: PathLike, pairs: Sequence[Pair] | None = None, **kwargs) -> np.ndarray:
    """The ground-truth targets of `pairs` (default: all of ROOT/test_pairs.txt), in pair order.

    Shapes:
        -> uint8 (N, 256, 256, 3).
    """
    pairs = read_pairs(Path(root) / PAIRS_FILE) if pairs is None else pairs
    return load_images(root, [p.target for p in pairs], **kwargs)


def split_keys(root: PathLike, split: str = "train") -> list[str]:
    """The distinct images of a split, in first-appearance order: every path of
    train_pairs.txt ("train", the FID reference) or the targets of test_pairs.txt ("test")."""
    if split == "train":
        keys = []
        for line in (Path(root) / TRAIN_PAIRS_FILE).read_text().splitlines():
            keys += [_key(f) for f in line.split(",") if f.strip()]
    elif split == "test":
        keys = [p.target for p in read_pairs(Path(root) / PAIRS_FILE)]
    else:
        raise ValueError(f"split: expected 'train' or 'test', got {split!r}")
    return list(dict.fromkeys(keys))


# ----------------------------------------------------------------------------- target poses

# OpenPose's 18 keypoints, their colours and the 17 limbs drawn (1-based keypoint pairs), as
# X-MDPT's FashionDataset draws them (my_dataset.py:33-39); the colours are given in the canvas'
# channel order, which is converted BGR -> RGB at the end (my_dataset.py:192).
POSE_KEYPOINTS = 18
POSE_LIMBS = ((2, 3), (2, 6), (3, 4), (4, 5), (6, 7), (7, 8), (2, 9), (9, 10), (10, 11), (2, 12),
              (12, 13), (13, 14), (2, 1), (1, 15), (15, 17), (1, 16), (16, 18))  # fmt: skip
POSE_COLOURS = ((255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0),
                (85, 255, 0), (0, 255, 0), (0, 255, 85), (0, 255, 170), (0, 255, 255),
                (0, 170, 255), (0, 85, 255), (0, 0, 255), (85, 0, 255), (170, 0, 255),
                (255, 0, 255), (255, 0, 170), (255, 0, 85))  # fmt: skip
POSE_STICK = 4  # half-width of a limb's ellipse and radius of a joint's disc, pixels
KEYPOINT_CROP = 40  # the white strip each side of the 256x256 stored frame (my_dataset.py:206)
KEYPOINT_FRAME = (256, 176)  # (H, W) the keypoint files' coordinates refer to, after the crop


def pose_file(root: PathLike, key: str) -> Path:
    """The keypoint file of an image key: ROOT/pose/... .txt (my_dataset.py:136-137, where the
    pose folder sits beside the image folder under the data root)."""
    return Path(root) / key.replace("img/", "pose/").replace(".png", ".txt")


def read_keypoints(file: PathLike) -> np.ndarray:
    """A keypoint file: 18 lines `x y` (pixels of the stored frame; -1 -1 where not visible).

    Raises:
        FileNotFoundError, ValueError: no such file, or not 18 rows of 2 numbers.

    Shapes:
        -> float64 (18, 2), columns (x, y).
    """
    file = Path(file)
    if not file.is_file():
        raise FileNotFoundError(f"keypoint file not found: {file}")
    points = np.loadtxt(file, dtype=np.float64, ndmin=2)
    if points.shape != (POSE_KEYPOINTS, 2):
        raise ValueError(f"{file}: expected {POSE_KEYPOINTS} rows 'x y', got {points.shape}")
    return points


def render_pose(keypoints: np.ndarray, size: tuple[int, int] = GENERATED_SIZE) -> np.ndarray:
    """The target-pose map X-MDPT conditions on (`target_skeleton`, my_dataset.py:162-197 at
    inference, where the dataset neither rescales nor crops).

    The keypoints are moved into the generated frame: x less the 40-pixel strip, then scaled by
    W / 176 and y by H / 256, in the official order of float operations; missing points (-1)
    stay missing. Each visible point is a filled disc of radius 4 in its colour. Each limb with
    both ends visible is a filled ellipse (half-axes: half its length and 4, at its angle)
    blended over the drawing so far as 0.4 drawing + 0.6 (drawing with the ellipse), by
    OpenCV's own ellipse2Poly, fillConvexPoly and addWeighted. The map is then divided by its
    maximum, as the official is; a map with nothing visible is refused instead of divided by 0.

    Raises:
        ValueError: not (18, 2), or no keypoint visible.

    Shapes:
        keypoints (18, 2) float (x, y) as `read_keypoints` -> float32 (3, H, W) RGB in [0, 1].
    """
    import cv2  # opencv-python-headless (the `eval` extra): the official raster rules

    points = np.array(keypoints, dtype=np.float64)
    if points.shape != (POSE_KEYPOINTS, 2):
        raise ValueError(f"keypoints: expected shape ({POSE_KEYPOINTS}, 2), got {points.shape}")
    height, width = size
    missing = points == -1
    points[:, 0] = points[:, 0] - KEYPOINT_CROP
    scale_w = 1.0 / KEYPOINT_FRAME[1] * width / width * width
    scale_h = 1.0 / KEYPOINT_FRAME[0] * height / height * height
    points[:, 0] = points[:, 0] * scale_w - 0
    points[:, 1] = points[:, 1] * scale_h - 0
    points[missing] = -1
    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    for (x, y), colour in zip(points, POSE_COLOURS, strict=True):
        if x != -1 and y != -1:
            cv2.circle(canvas, (int(x), int(y)), POSE_STICK, colour, thickness=-1)
    for (a, b), colour in zip(POSE_LIMBS, POSE_COLOURS, strict=False):
        xs, ys = points[[a - 1, b - 1], 0], points[[a - 1, b - 1], 1]
        if -1 in xs or -1 in ys:
            continue
        length = ((ys[0] - ys[1]) ** 2 + (xs[0] - xs[1]) ** 2) ** 0.5
        angle = math.degrees(math.atan2(ys[0] - ys[1], xs[0] - xs[1]))
        centre = (int(np.mean(xs)), int(np.mean(ys)))
        polygon = cv2.ellipse2Poly(centre, (int(length / 2), POSE_STICK), int(angle), 0, 360, 1)
        drawn = canvas.copy()
        cv2.fillConvexPoly(drawn, polygon, colour)
        canvas = cv2.addWeighted(canvas, 0.4, drawn, 0.6, 0)
    rgb = torch.from_numpy(np.ascontiguousarray(canvas[:, :, ::-1])).permute(2, 0, 1)
    pose = rgb.float() / 255.0
    if pose.max() == 0:
        raise ValueError("keypoints: no keypoint is visible, so the pose map would be empty")
    return (pose / pose.max()).numpy()


def load_poses(
    root: PathLike, keys: Sequence[str], size: tuple[int, int] = GENERATED_SIZE
) -> np.ndarray:
    """The rendered pose maps of image keys (`render_pose` of ROOT/pose/<key>.txt).

    Raises:
        FileNotFoundError: every missing keypoint file is named (the first ten).

    Shapes:
        -> float32 (len(keys), 3, H, W) in [0, 1].
    """
    files = [pose_file(root, k) for k in keys]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} keypoint files are missing under {Path(root) / 'pose'}, e.g. "
            f"{missing[:10]}; expected one 18-line 'x y' file per image (see evaluation.deepfashion)"
        )
    return np.stack([render_pose(read_keypoints(f), size) for f in files])


def has_poses(root: PathLike, keys: Sequence[str]) -> bool:
    """Whether every key has its keypoint file."""
    return all(pose_file(root, k).is_file() for k in keys)


# ----------------------------------------------------------------------------- image forms


def to_uint8(images: Tensor) -> np.ndarray:
    """RGB in [0, 1] to uint8 as `torchvision.utils.save_image` writes it (x * 255 + 0.5,
    clamped, truncated).

    Shapes:
        (N, 3, H, W) -> (N, H, W, 3).
    """
    if not isinstance(images, Tensor) or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(
            f"images: expected a tensor (N, 3, H, W), got {getattr(images, 'shape', images)}"
        )
    out = images.detach().float().mul(255).add(0.5).clamp(0, 255).to(torch.uint8)
    return out.permute(0, 2, 3, 1).cpu().numpy()


def _unit(images, what: str) -> Tensor:
    """uint8 (N, H, W, 3) as float64 (N, 3, H, W) in [0, 1]."""
    return as_chw_images(images, what, min_count=1).double() / 255.0


def resize_for_eval(images: Tensor, size: tuple[int, int] = EVAL_SIZE) -> Tensor:
    """Bilinear resize without antialiasing (half-pixel centres), cv2.INTER_LINEAR's rule.

    Shapes:
        (N, C, H, W) -> (N, C, *size).
    """
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    return F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=False)


def _check_pairs(samples, targets) -> tuple[Tensor, Tensor]:
    x, y = _unit(samples, "samples"), _unit(targets, "targets")
    if x.shape != y.shape:
        raise ValueError(f"samples {tuple(x.shape)} and targets {tuple(y.shape)} differ in shape")
    return x, y


# ----------------------------------------------------------------------------- SSIM and PSNR


def ssim_scores(
    samples, targets, window: int = SSIM_WINDOW, dtype: torch.dtype = torch.float32
) -> np.ndarray:
    """SSIM of each sample against its target: skimage's `compare_ssim(win_size=51,
    multichannel=True, data_range=1)` as PIDM runs it, through torchmetrics.

    Uniform window of `window` pixels, K1 = 0.01, K2 = 0.03, data range 1, on each RGB channel;
    the SSIM map is averaged over the pixels whose window lies inside the image (skimage crops
    (window - 1) / 2 pixels at each border, where torchmetrics' own mean keeps its
    reflection-padded border), then over the channels. The window sums run in `dtype`: float32 by
    default (a 51x51 float64 convolution is some 100 times slower on a CPU), within 1e-5 of the
    float64 formula (checked in the tests); float64 gives skimage's numbers but the covariance.

    Args:
        samples: uint8 (N, H, W, 3), the generated images at the size they are generated.
        targets: uint8 (N, H, W, 3), row i the ground truth of sample i.
        window: odd window side, at most min(H, W).
        dtype: float32 or float64, the precision of the window sums.

    Returns:
        (N,) float64; 1 for an identical pair.

    Shapes:
        samples, targets (N, H, W, 3) -> (N,).
    """
    x, y = _check_pairs(samples, targets)
    if window % 2 == 0 or window > min(x.shape[-2:]):
        raise ValueError(f"window must be odd and at most {min(x.shape[-2:])}, got {window}")
    _, full = structural_similarity_index_measure(
        x.to(dtype),
        y.to(dtype),
        gaussian_kernel=False,
        kernel_size=window,
        data_range=1.0,
        k1=0.01,
        k2=0.03,
        reduction="none",
        return_full_image=True,
    )
    pad = (window - 1) // 2
    inner = full[..., pad : full.shape[-2] - pad, pad : full.shape[-1] - pad]
    return inner.double().mean(dim=(1, 2, 3)).numpy()


def psnr_scores(samples, targets) -> np.ndarray:
    """PSNR (dB) of each sample against its target: 10 log10(1 / MSE) over the RGB values in
    [0, 1] (skimage `compare_psnr(data_range=1)`, as PIDM runs it), through torchmetrics.

    Returns:
        (N,) float64; inf for an identical pair (not capped).

    Shapes:
        samples, targets (N, H, W, 3) -> (N,).
    """
    x, y = _check_pairs(samples, targets)
    psnr = peak_signal_noise_ratio(x, y, data_range=1.0, reduction="none", dim=(1, 2, 3))
    return psnr.numpy()


# ----------------------------------------------------------------------------- LPIPS


def lpips_backbone(
    net: str = LPIPS_NET, path: PathLike | None = None, cache_dir: PathLike | None = None
) -> Path:
    """The local file of LPIPS' backbone weights (torchvision's ImageNet AlexNet or VGG16).

    Looked up, in order: `path`; the weights cache (`<cache>/lpips/<file>`); torch's hub cache
    (`<torch.hub.get_dir()>/checkpoints/<file>`, where torchvision, the `lpips` package and
    torchmetrics keep it after a download). Nothing is downloaded.

    Raises:
        MissingInputError: no such file; the message names the file and where to put it.
    """
    if net not in LPIPS_BACKBONES:
        raise ValueError(f"net: expected one of {sorted(LPIPS_BACKBONES)}, got {net!r}")
    name = LPIPS_BACKBONES[net]
    if path is not None:
        if not Path(path).is_file():
            raise MissingInputError(f"LPIPS backbone not found: {path} (expected {name})", (name,))
        return Path(path)
    cache = Path(cache_dir) if cache_dir else fetch.default_cache_dir()
    places = [cache / LPIPS_CACHE_DIR / name, Path(torch.hub.get_dir()) / "checkpoints" / name]
    for place in places:
        if place.is_file():
            return place
    raise MissingInputError(
        f"LPIPS ({net}) needs torchvision's ImageNet backbone weights {name}, which are not "
        f"here: put the file at {places[0]} or {places[1]} (it is what "
        f"torchvision.models.{'alexnet' if net == 'alex' else 'vgg16'}(weights='DEFAULT') "
        "downloads), or pass its path. The LPIPS layers themselves ship with torchmetrics.",
        (name,),
    )


def _linear_weights(net: str) -> Path:
    """torchmetrics' packaged LPIPS v0.1 linear layers (`lpips_models/<net>.pth`)."""
    import torchmetrics.functional.image.lpips as tm_lpips

    return Path(tm_lpips.__file__).parent / "lpips_models" / f"{net}.pth"


def load_lpips(
    net: str = LPIPS_NET, backbone: PathLike | None = None, cache_dir: PathLike | None = None
) -> nn.Module:
    """torchmetrics' LPIPS network built offline: backbone and linear layers from local files.

    torchmetrics' public LPIPS asks torchvision for the backbone, which downloads it when absent
    and unpickles it without `weights_only`; here the network is built without weights and both
    files are read as tensors only (`zoo.checkpoint.load_state_dict`).

    Args:
        net: "alex" (PIDM's) or "vgg".
        backbone: the backbone file (default: `lpips_backbone(net)`).
        cache_dir: weights cache searched for the backbone.

    Returns:
        the network in eval mode: (img0, img1) in [-1, 1] -> (N, 1, 1, 1) distances.

    Raises:
        MissingInputError: the backbone file is not found.
    """
    from torchmetrics.functional.image.lpips import _NoTrainLpips

    path = lpips_backbone(net, backbone, cache_dir)
    model = _NoTrainLpips(pretrained=False, net=net, pnet_rand=True)  # no weights, no download
    state = load_state_dict(path, weights_key=None)
    # torchvision's `features.<i>` layers sit in the slices under the same index <i>
    mapped = {}
    for slice_name, part in model.net.named_children():
        for index, _ in part.named_children():
            for param in ("weight", "bias"):
                key = f"features.{index}.{param}"
                if key in state:
                    mapped[f"{slice_name}.{index}.{param}"] = state[key]
    expected = set(model.net.state_dict())
    if set(mapped) != expected:
        raise ValueError(
            f"{path}: not a torchvision {net} state dict (missing {sorted(expected - set(mapped))})"
        )
    model.net.load_state_dict(mapped, strict=True)
    # torchmetrics' own file, saved from CUDA tensors: mapped to the CPU, tensors only
    linear = torch.load(_linear_weights(net), map_location="cpu", weights_only=True)
    needed = {k for k in model.state_dict() if k.startswith("lin") and not k.startswith("lins.")}
    if not needed <= set(linear):
        raise ValueError(f"{_linear_weights(net)}: LPIPS layers missing: {needed - set(linear)}")
    model.load_state_dict(linear, strict=False)  # the backbone keys are loaded above
    return model.eval()


def lpips_scores(
    samples,
    targets,
    net: nn.Module,
    size: tuple[int, int] = EVAL_SIZE,
    batch_size: int = 64,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """LPIPS of each sample against its target, both resized to `size` and mapped to [-1, 1]
    (metrics.py:503-504, 520).

    Args:
        samples, targets: uint8 (N, H, W, 3).
        net: `load_lpips()` (or any module (a, b) -> (N, 1, 1, 1) distances).
        size: (H, W) both are compared at (256x176).
        batch_size: pairs per forward.
        device: where the network runs (default: its parameters' device).

    Returns:
        (N,) float64; 0 for an identical pair.

    Shapes:
        samples, targets (N, H, W, 3) -> (N,), compared at (N, 3, *size).
    """
    x, y = _check_pairs(samples, targets)
    param = next(net.parameters(), None)
    device = device or (param.device if param is not None else "cpu")
    net = net.to(device)
    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            a, b = (resize_for_eval(v[i : i + batch_size].float(), size) for v in (x, y))
            d = net(a.to(device) * 2 - 1, b.to(device) * 2 - 1)
            out.append(d.reshape(len(a)).double().cpu())
    return torch.cat(out).numpy()


# ----------------------------------------------------------------------------- FID


class _ImageFiles(Dataset):
    """torch-fidelity's input form, read lazily: uint8 (3, H, W) of each key at `size`."""

    def __init__(self, root: PathLike, keys: Sequence[str], size: tuple[int, int], image_dir: str):
        self.root, self.keys, self.size, self.image_dir = root, list(keys), size, image_dir

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, i: int) -> Tensor:
        image = load_images(self.root, [self.keys[i]], GENERATED_SIZE, self.image_dir)
        return torch.from_numpy(eval_images(image)[0]).permute(2, 0, 1)


def eval_images(images, size: tuple[int, int] = EVAL_SIZE) -> np.ndarray:
    """uint8 images resized to `size` (bilinear, as cv2.INTER_LINEAR) and rounded back to uint8:
    what FID reads.

    Shapes:
        (N, H, W, 3) -> (N, *size, 3).
    """
    x = _unit(images, "images").float()
    out = (resize_for_eval(x, size) * 255).round().clamp(0, 255).to(torch.uint8)
    return out.permute(0, 2, 3, 1).numpy()


def _inception(weights: PathLike | None, cache_dir: PathLike | None) -> Path:
    if weights is not None:
        return check_tensor_only(weights)
    found = locate_inputs([INCEPTION], "DeepFashion FID", cache_dir)
    return check_tensor_only(found[INCEPTION])


def reference_statistics(
    root: PathLike,
    out: PathLike,
    split: str = "train",
    *,
    weights: PathLike | None = None,
    cache_dir: PathLike | None = None,
    image_dir: str = IMAGE_DIR,
    batch_size: int = 64,
    cuda: bool | None = None,
    verbose: bool = False,
) -> Path:
    """Write the FID statistics of a split's images at 256x176 as an npz of `mu` and `sigma`.

    The reference of X-MDPT's FID is PIDM's: the train split ("train", every image of
    train_pairs.txt; metrics.py:644, 650). "test" (the test targets) is offered for comparison.
    The npz is what `fid_score` takes as `reference` (no images: `fidelity.load_reference` reads
    the statistics only).

    Args:
        root: the DeepFashion folder (see the module docstring).
        out: npz path to write.
        split: "train" or "test".
        weights: torch-fidelity Inception weights (default: the registry entry in the cache).
        cache_dir: weights cache.
        image_dir: folder of the images under root.
        batch_size: images per Inception batch.
        cuda: run Inception on the GPU (default: when available).
        verbose: torch-fidelity progress.

    Returns:
        `out`.
    """
    from torch_fidelity.metric_fid import fid_features_to_statistics
    from torch_fidelity.utils import create_feature_extractor, get_featuresdict_from_dataset

    weights = _inception(weights, cache_dir)
    keys = split_keys(root, split)
    load_images(root, keys[:1], image_dir=image_dir)  # fail early on a wrong root
    cuda = torch.cuda.is_available() if cuda is None else cuda
    layer = FEATURE_LAYERS[INCEPTION_EXTRACTOR]["fid"]
    extractor = create_feature_extractor(
        INCEPTION_EXTRACTOR, [layer], cuda=cuda, verbose=verbose,
        feature_extractor_weights_path=str(weights),
    )  # fmt: skip
    data = _ImageFiles(root, keys, EVAL_SIZE, image_dir)
    feats = get_featuresdict_from_dataset(data, extractor, batch_size, cuda, True, verbose)
    stats = fid_features_to_statistics(feats[layer])
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, mu=stats["mu"], sigma=stats["sigma"], n=len(keys), split=split)
    return out


def fid_score(
    samples,
    reference: PathLike | np.ndarray,
    *,
    weights: PathLike | None = None,
    cache_dir: PathLike | None = None,
    cuda: bool | None = None,
    batch_size: int = 64,
) -> float:
    """FID of the generated set against the reference, both at 256x176.

    Args:
        samples: uint8 (N, H, W, 3) generated images (resized here to 256x176).
        reference: an npz of `reference_statistics`, or uint8 reference images (resized here).
        weights, cache_dir, cuda, batch_size: as `fidelity.evaluate`.

    Returns:
        the FID.

    Shapes:
        samples (N, H, W, 3), N >= 2 -> scalar.
    """
    if not isinstance(reference, (str, os.PathLike)):
        reference = eval_images(reference)
    out = evaluate(
        eval_images(samples),
        reference,
        profile="paper",
        metrics=("fid",),
        weights=_inception(weights, cache_dir),
        batch_size=batch_size,
        cuda=cuda,
        cache_dir=cache_dir,
    )
    return out["fid"]


# ----------------------------------------------------------------------------- all together


def _summary(values: np.ndarray) -> tuple[float, float | None]:
    """Mean and 95% half-width; the half-width is None for fewer than 2 or non-finite values."""
    if len(values) >= 2 and np.isfinite(values).all():
        return mean_interval(values)
    return float(np.mean(values)), None


def evaluate_pairs(
    samples,
    targets,
    *,
    lpips_net: nn.Module | None = None,
    fid_reference: PathLike | np.ndarray | None = None,
    weights: PathLike | None = None,
    cache_dir: PathLike | None = None,
    cuda: bool | None = None,
    window: int = SSIM_WINDOW,
) -> dict:
    """Table 7's scores of N generated images against their targets.

    Args:
        samples: uint8 (N, 256, 256, 3) generated images, row i for pair i (`to_uint8`).
        targets: uint8 (N, 256, 256, 3) ground-truth targets (`load_targets`).
        lpips_net: `load_lpips()`; None builds it (needs the backbone file).
        fid_reference: `reference_statistics` npz or reference images; None skips FID.
        weights, cache_dir, cuda: Inception weights, weights cache, device for FID.
        window: SSIM window (51).

    Returns:
        {"ssim", "lpips", "psnr"}: per-pair (N,) arrays; "<metric>_mean" and "<metric>_ci" (95%
        half-width, None when undefined); "fid" (None without a reference); "n".

    Shapes:
        samples, targets (N, 256, 256, 3) -> per-pair arrays (N,).
    """
    net = load_lpips(cache_dir=cache_dir) if lpips_net is None else lpips_net
    scores = {
        "ssim": ssim_scores(samples, targets, window),
        "lpips": lpips_scores(samples, targets, net),
        "psnr": psnr_scores(samples, targets),
    }
    out: dict = dict(scores)
    for key, values in scores.items():
        out[f"{key}_mean"], out[f"{key}_ci"] = _summary(values)
    out["fid"] = None
    if fid_reference is not None:
        out["fid"] = fid_score(
            samples, fid_reference, weights=weights, cache_dir=cache_dir, cuda=cuda
        )
    out["n"] = len(scores["ssim"])
    return out
