"""The DeepFashion evaluation on synthetic data in the documented layout: pairs, targets, SSIM and
PSNR against retyped formulas, LPIPS with a random local backbone, FID with a random Inception."""

import numpy as np
import pytest
import torch
import torchvision
from fakes import deepfashion_root, keypoints, random_inception
from PIL import Image
from scipy.ndimage import uniform_filter

from semantic_bottleneck.evaluation import deepfashion as df
from semantic_bottleneck.evaluation.inputs import MissingInputError

KEYS = [f"img/WOMEN/Dresses/id_0000000{i}/0{i}_1_front" for i in range(4)]
SIDES = [f"img/MEN/Tees_Tanks/id_0000001{i}/0{i}_2_side" for i in range(4)]


def smooth_images(n: int, size=(256, 256), seed: int = 0) -> np.ndarray:
    """Low-frequency RGB images (coarse noise upsampled), closer to photos than white noise."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 8, 6, generator=g)
    up = torch.nn.functional.interpolate(coarse, size=size, mode="bicubic", align_corners=False)
    up = up + 0.05 * torch.rand(n, 3, *size, generator=g)
    return (up.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


@pytest.fixture
def root(tmp_path):
    """ROOT/test_pairs.txt, train_pairs.txt and 256-256/<key>.png, as the module documents."""
    lines = [f"{t}.jpg,{s}.jpg" for t, s in zip(KEYS, SIDES, strict=True)]
    (tmp_path / "test_pairs.txt").write_text("\n".join(lines) + "\n\n")
    (tmp_path / "train_pairs.txt").write_text(f"{SIDES[0]}.jpg,{SIDES[1]}.jpg\n{SIDES[2]}.jpg,"
                                              f"{SIDES[3]}.jpg,{SIDES[0]}.jpg\n")  # fmt: skip
    images = smooth_images(8)
    for key, image in zip(KEYS + SIDES, images, strict=True):
        path = tmp_path / "256-256" / f"{key}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(path)
    return tmp_path


# ----------------------------------------------------------------------------- pairs and images


def test_pairs_are_target_then_source_with_png_keys(root):
    pairs = df.read_pairs(root / "test_pairs.txt")
    assert [p.target for p in pairs] == [f"{k}.png" for k in KEYS]
    assert [p.source for p in pairs] == [f"{k}.png" for k in SIDES]
    (root / "multi.txt").write_text("a.jpg,b.jpg,c.jpg\n")
    assert df.read_pairs(root / "multi.txt") == [df.Pair("a.png", "b.png")]
    (root / "bad.txt").write_text("a.jpg\n")
    with pytest.raises(ValueError, match="target,source"):
        df.read_pairs(root / "bad.txt")


def test_targets_load_in_pair_order_and_other_sizes_are_resized_bicubic(root):
    targets = df.load_targets(root)
    assert targets.shape == (4, 256, 256, 3) and targets.dtype == np.uint8
    again = np.asarray(Image.open(root / "256-256" / f"{KEYS[2]}.png"))
    assert np.array_equal(targets[2], again)
    # an original-size (176 wide) file is stretched to 256x256 as PIDM's prepare_data does
    narrow = smooth_images(1, (256, 176), seed=3)[0]
    Image.fromarray(narrow).save(root / "256-256" / f"{KEYS[0]}.png")
    want = np.asarray(Image.fromarray(narrow).resize((256, 256), Image.BICUBIC))
    assert np.array_equal(df.load_targets(root)[0], want)


def test_missing_images_are_named(root):
    (root / "256-256" / f"{KEYS[1]}.png").unlink()
    with pytest.raises(FileNotFoundError, match="02_1_front|01_1_front"):
        df.load_targets(root)


def test_train_split_is_every_distinct_train_image(root):
    assert df.split_keys(root, "train") == [f"{k}.png" for k in SIDES]
    assert df.split_keys(root, "test") == [f"{k}.png" for k in KEYS]


def test_to_uint8_rounds_as_save_image():
    x = torch.tensor([0.0, 0.5, 1.0, 1.2, 0.998]).view(1, 1, 1, 5).expand(1, 3, 1, 5)
    assert df.to_uint8(x)[0, 0, :, 0].tolist() == [0, 128, 255, 255, 254]


def test_eval_size_is_cv2s_bilinear_rule():
    # half-pixel centres, no antialias: a 4-wide ramp halved averages neighbour pairs
    x = torch.tensor([[0.0, 1.0, 2.0, 3.0]]).view(1, 1, 1, 4)
    out = df.resize_for_eval(x, (1, 2))
    assert out.flatten().tolist() == [0.5, 2.5]


# ----------------------------------------------------------------------------- SSIM and PSNR


def skimage_ssim(x: np.ndarray, y: np.ndarray, win: int = 51, sample_cov: bool = True) -> float:
    """skimage's `structural_similarity` (uniform window, multichannel), retyped."""
    scores = []
    for ch in range(x.shape[-1]):
        a, b = x[..., ch].astype(np.float64), y[..., ch].astype(np.float64)
        norm = win * win / (win * win - 1) if sample_cov else 1.0
        ux, uy = uniform_filter(a, win), uniform_filter(b, win)
        vx = norm * (uniform_filter(a * a, win) - ux * ux)
        vy = norm * (uniform_filter(b * b, win) - uy * uy)
        vxy = norm * (uniform_filter(a * b, win) - ux * uy)
        c1, c2 = 0.01**2, 0.03**2
        s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
        pad = (win - 1) // 2
        scores.append(s[pad:-pad, pad:-pad].mean())
    return float(np.mean(scores))


def test_ssim_of_identical_images_is_one_and_matches_skimages_formula():
    x, y = smooth_images(3, seed=1), smooth_images(3, seed=2)
    assert df.ssim_scores(x, x) == pytest.approx(np.ones(3), abs=1e-12)
    got = df.ssim_scores(x, y)
    for i in range(3):
        a, b = x[i] / 255.0, y[i] / 255.0
        # exactly skimage's map and crop with population covariance (torchmetrics' estimate)
        assert got[i] == pytest.approx(skimage_ssim(a, b, sample_cov=False), abs=1e-5)
        # and within 1e-4 of skimage's sample-covariance SSIM, the one PIDM ran
        assert abs(got[i] - skimage_ssim(a, b)) < 1e-4
    assert -1 < got.min() and got.max() < 1
    # in float64 the same computation is skimage's formula to rounding (small window: fast)
    x, y = smooth_images(2, (64, 64), seed=1), smooth_images(2, (64, 64), seed=2)
    got = df.ssim_scores(x, y, window=7, dtype=torch.float64)
    want = [skimage_ssim(x[i] / 255.0, y[i] / 255.0, 7, sample_cov=False) for i in range(2)]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def test_psnr_known_answers():
    zeros = np.zeros((2, 64, 64, 3), dtype=np.uint8)
    grey = np.full((2, 64, 64, 3), 51, dtype=np.uint8)  # 0.2 everywhere: MSE 0.04
    assert df.psnr_scores(grey, zeros) == pytest.approx(np.full(2, 10 * np.log10(25)), rel=1e-6)
    assert np.isinf(df.psnr_scores(grey, grey)).all()


def test_shapes_must_agree():
    with pytest.raises(ValueError, match="differ in shape"):
        df.psnr_scores(smooth_images(2), smooth_images(3))


# ----------------------------------------------------------------------------- LPIPS


@pytest.fixture
def alexnet_file(tmp_path):
    """A random torchvision AlexNet saved under the file name of the real backbone."""
    torch.manual_seed(0)
    net = torchvision.models.alexnet(weights=None).eval()
    path = tmp_path / "weights" / df.LPIPS_CACHE_DIR / df.LPIPS_BACKBONES["alex"]
    path.parent.mkdir(parents=True)
    torch.save(net.state_dict(), path)
    return net, path


def lpips_reference(net, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """LPIPS (v0.1, AlexNet) retyped from its definition, torchmetrics' normalisation."""
    lin = torch.load(df._linear_weights("alex"), map_location="cpu", weights_only=True)
    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)
    fa, fb = (a - shift) / scale, (b - shift) / scale
    total = 0
    layer = 0
    for i, module in enumerate(net.features):
        fa, fb = module(fa), module(fb)
        if i in (1, 4, 7, 9, 11):  # the ReLU outputs LPIPS reads
            na = fa / torch.sqrt(1e-8 + (fa**2).sum(1, keepdim=True))
            nb = fb / torch.sqrt(1e-8 + (fb**2).sum(1, keepdim=True))
            w = lin[f"lin{layer}.model.1.weight"]
            total = total + torch.nn.functional.conv2d((na - nb) ** 2, w).mean((2, 3))
            layer += 1
    return total.flatten()


def test_lpips_is_zero_for_identical_pairs_and_matches_its_definition(alexnet_file):
    net, path = alexnet_file
    model = df.load_lpips("alex", cache_dir=path.parent.parent)
    x, y = smooth_images(3, seed=4), smooth_images(3, seed=5)
    assert np.array_equal(df.lpips_scores(x, x, model), np.zeros(3))
    got = df.lpips_scores(x, y, model, batch_size=2)
    a, b = (torch.from_numpy(v).permute(0, 3, 1, 2).float() / 255 for v in (x, y))
    a, b = (df.resize_for_eval(v) * 2 - 1 for v in (a, b))  # 256x176 in [-1, 1]
    with torch.no_grad():
        want = lpips_reference(net, a, b)
    np.testing.assert_allclose(got, want.double().numpy(), rtol=1e-4)
    assert (got > 0).all()


def test_missing_lpips_backbone_names_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(MissingInputError, match="alexnet-owt-7be5be79.pth") as err:
        df.load_lpips("alex", cache_dir=tmp_path / "empty")
    assert err.value.names == ("alexnet-owt-7be5be79.pth",)
    with pytest.raises(MissingInputError, match="not found"):
        df.lpips_backbone("alex", tmp_path / "nope.pth")


def test_lpips_backbone_is_found_in_torchs_hub_cache(alexnet_file, tmp_path, monkeypatch):
    _, path = alexnet_file
    hub = tmp_path / "hub"
    (hub / "checkpoints").mkdir(parents=True)
    (hub / "checkpoints" / path.name).write_bytes(path.read_bytes())
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    assert (
        df.lpips_backbone("alex", cache_dir=tmp_path / "empty") == hub / "checkpoints" / path.name
    )


# ----------------------------------------------------------------------------- FID


@pytest.fixture
def inception_file(tmp_path):
    net = random_inception()
    path = tmp_path / "inception.pth"
    torch.save(net.state_dict(), path)
    return net, path


def _pool(net, images: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        pool, _ = net(torch.from_numpy(images).permute(0, 3, 1, 2))
    return pool.double().numpy()


def test_reference_statistics_are_the_train_images_at_256x176(root, inception_file, tmp_path):
    net, weights = inception_file
    out = df.reference_statistics(root, tmp_path / "ref.npz", weights=weights, cuda=False)
    train = df.load_images(root, df.split_keys(root, "train"))
    small = df.eval_images(train)
    assert small.shape == (4, 256, 176, 3)
    pool = _pool(net, small)
    with np.load(out) as npz:
        np.testing.assert_allclose(npz["mu"], pool.mean(0), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(npz["sigma"], np.cov(pool, rowvar=False), rtol=1e-3, atol=1e-6)
        assert int(npz["n"]) == 4 and str(npz["split"]) == "train"


def test_fid_resizes_the_samples_and_uses_the_reference_statistics(inception_file, tmp_path):
    net, weights = inception_file
    samples = smooth_images(4, seed=6)
    # sigma = 0 makes the reference term vanish: FID = |mu_s - mu|^2 + tr(sigma_s)
    mu = np.full(2048, 0.01)
    np.savez(tmp_path / "ref.npz", mu=mu, sigma=np.zeros((2048, 2048)))
    got = df.fid_score(samples, tmp_path / "ref.npz", weights=weights, cuda=False)
    pool = _pool(net, df.eval_images(samples))
    want = ((pool.mean(0) - mu) ** 2).sum() + np.trace(np.cov(pool, rowvar=False))
    assert got == pytest.approx(want, rel=1e-4)


def test_fid_names_missing_inception_weights(tmp_path):
    with pytest.raises(MissingInputError, match="inception-fidelity"):
        df.fid_score(smooth_images(2), tmp_path / "ref.npz", cache_dir=tmp_path)


# ----------------------------------------------------------------------------- all together


def test_evaluate_pairs_known_answers_for_identical_images(root, alexnet_file, inception_file):
    _, backbone = alexnet_file
    _, weights = inception_file
    targets = df.load_targets(root)
    lpips = df.load_lpips(backbone=backbone)
    out = df.evaluate_pairs(targets, targets, lpips_net=lpips, fid_reference=targets,
                            weights=weights, cuda=False)  # fmt: skip
    assert out["n"] == 4
    assert out["ssim"] == pytest.approx(np.ones(4), abs=1e-12) and out["ssim_ci"] is not None
    assert out["lpips_mean"] == 0 and out["lpips_ci"] == 0
    assert np.isinf(out["psnr"]).all() and out["psnr_mean"] == np.inf and out["psnr_ci"] is None
    assert out["fid"] == pytest.approx(0, abs=1e-3)  # a set against itself

    other = smooth_images(4, seed=9)
    out = df.evaluate_pairs(other, targets, lpips_net=lpips)
    assert out["fid"] is None and 0 < out["ssim_mean"] < 1 and out["lpips_mean"] > 0
    assert np.isfinite(out["psnr"]).all() and out["psnr_ci"] > 0


# ----------------------------------------------------------------------------- target poses


def official_pose(keypoint: np.ndarray, size=(256, 256)) -> np.ndarray:
    """X-MDPT's FashionDataset.get_label_tensor with trans_keypoins at inference (no rescale, no
    crop: my_dataset.py:162-229), retyped with its variable names; returns (3, H, W) float32."""
    import math

    import cv2
    import torchvision.transforms.functional as F

    limb_seq = [[2, 3], [2, 6], [3, 4], [4, 5], [6, 7], [7, 8], [2, 9], [9, 10], [10, 11],
                [2, 12], [12, 13], [13, 14], [2, 1], [1, 15], [15, 17], [1, 16], [16, 18],
                [3, 17], [6, 18]]  # fmt: skip
    colors = [[255, 0, 0], [255, 85, 0], [255, 170, 0], [255, 255, 0], [170, 255, 0],
              [85, 255, 0], [0, 255, 0], [0, 255, 85], [0, 255, 170], [0, 255, 255],
              [0, 170, 255], [0, 85, 255], [0, 0, 255], [85, 0, 255], [170, 0, 255],
              [255, 0, 255], [255, 0, 170], [255, 0, 85]]  # fmt: skip
    keypoints = keypoint.copy()
    img_h, img_w = size
    param = {"crop_param": (0, 0, img_w, img_h), "scale_size": (img_h, img_w)}
    missing_keypoint_index = keypoints == -1
    keypoints[:, 0] = keypoints[:, 0] - 40
    scale_w = 1.0 / 176.0 * img_w
    scale_h = 1.0 / 256.0 * img_h
    new_h, new_w = param["scale_size"]
    scale_w = scale_w / img_w * new_w
    scale_h = scale_h / img_h * new_h
    w, h, _, _ = param["crop_param"]
    keypoints[:, 0] = keypoints[:, 0] * scale_w - w
    keypoints[:, 1] = keypoints[:, 1] * scale_h - h
    keypoints[missing_keypoint_index] = -1
    keypoint = keypoints
    canvas = np.zeros((img_h, img_w, 3)).astype(np.uint8)
    stickwidth = 4
    for i in range(18):
        x, y = keypoint[i, 0:2]
        if x == -1 or y == -1:
            continue
        cv2.circle(canvas, (int(x), int(y)), 4, colors[i], thickness=-1)
    for i in range(17):
        Y = keypoint[np.array(limb_seq[i]) - 1, 0]
        X = keypoint[np.array(limb_seq[i]) - 1, 1]
        cur_canvas = canvas.copy()
        if -1 in Y or -1 in X:
            continue
        mX = np.mean(X)
        mY = np.mean(Y)
        length = ((X[0] - X[1]) ** 2 + (Y[0] - Y[1]) ** 2) ** 0.5
        angle = math.degrees(math.atan2(X[0] - X[1], Y[0] - Y[1]))
        polygon = cv2.ellipse2Poly(
            (int(mY), int(mX)), (int(length / 2), stickwidth), int(angle), 0, 360, 1
        )
        cv2.fillConvexPoly(cur_canvas, polygon, colors[i])
        canvas = cv2.addWeighted(canvas, 0.4, cur_canvas, 0.6, 0)
    pose = F.to_tensor(Image.fromarray(cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB)))
    pose /= pose.max()
    return pose.numpy()


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("size", [(256, 256), (256, 176)])
def test_pose_map_equals_the_official_drawing(seed, size):
    points = keypoints(seed, missing=seed % 4)
    got = df.render_pose(points, size)
    assert got.shape == (3, *size) and got.dtype == np.float32
    assert np.array_equal(got, official_pose(points, size))


def test_pose_map_known_answers():
    # one visible joint (the nose, keypoint 1): a disc of radius 4 in its colour, nothing else;
    # the canvas' (255, 0, 0) is blue after BGR -> RGB, and the map is divided by its maximum
    points = np.full((18, 2), -1.0)
    points[0] = (40 + 88, 128)  # the centre of the person strip
    pose = df.render_pose(points)
    lit = np.argwhere(pose.max(0) > 0)
    assert (tuple(lit.min(0)), tuple(lit.max(0))) == ((124, 124), (132, 132))  # radius 4
    assert np.array_equal(pose[:, 128, 128], [0.0, 0.0, 1.0])
    # x is moved out of the 176-wide strip and scaled to the frame; y scales by H / 256
    points[0] = (40 + 44, 64)
    lit = np.argwhere(df.render_pose(points, (128, 128)).max(0) > 0)
    assert tuple(lit.mean(0).round()) == (32, 32)
    # a limb needs both ends: keypoints 2 and 3 (neck, right shoulder) give an ellipse between
    points = np.full((18, 2), -1.0)
    points[1], points[2] = (100, 100), (140, 100)
    pose = df.render_pose(points)
    limb = pose.max(0) > 0
    assert limb[100, 120] and limb[97, 120] and not limb[92, 120]  # half-width 4 about y = 100
    only_ends = df.render_pose(np.where(np.arange(18)[:, None] == 2, -1, points))
    assert not only_ends.max(0)[100, 120]  # with one end missing the limb is not drawn


def test_pose_map_refuses_what_it_cannot_draw():
    with pytest.raises(ValueError, match=r"\(18, 2\)"):
        df.render_pose(np.zeros((17, 2)))
    with pytest.raises(ValueError, match="no keypoint is visible"):
        df.render_pose(np.full((18, 2), -1.0))


def test_keypoint_files_are_read_beside_the_images(tmp_path):
    root = deepfashion_root(tmp_path, 2, poses=True)
    key = df.read_pairs(root / df.PAIRS_FILE)[1].target
    file = df.pose_file(root, key)
    assert file == root / key.replace("img/", "pose/").replace(".png", ".txt") and file.is_file()
    poses = df.load_poses(root, [key])
    assert poses.shape == (1, 3, 256, 256)
    assert np.array_equal(poses[0], df.render_pose(df.read_keypoints(file)))
    assert df.has_poses(root, [key]) and not df.has_poses(root, ["img/none.png"])
    with pytest.raises(FileNotFoundError, match="keypoint files are missing"):
        df.load_poses(root, [key, "img/none.png"])
    file.write_text("1 2\n3 4\n")
    with pytest.raises(ValueError, match="expected 18 rows"):
        df.read_keypoints(file)
