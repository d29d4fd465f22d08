"""ImageNet preparation (ADM crop, SD-VAE moments) and the latent dataset, on tiny fakes."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from semantic_bottleneck.training import imagenet, repa
from semantic_bottleneck.training.imagenet import (
    ImageNetLatents,
    StepBatches,
    center_crop_adm,
    encode_moments,
    list_images,
    prepare_imagenet,
    sample_posterior,
)
from semantic_bottleneck.training.monitor import read_log
from semantic_bottleneck.training.trainer import TrainConfig, train


def test_adm_crop_of_a_256_high_image_only_takes_the_central_square():
    arr = np.random.default_rng(0).integers(0, 256, (256, 300, 3), dtype=np.uint8)
    out = center_crop_adm(Image.fromarray(arr))
    assert np.array_equal(out, arr[:, 22:278])


def test_adm_crop_halves_large_images_then_resizes_the_short_side():
    image = Image.fromarray(np.full((1100, 700, 3), 77, dtype=np.uint8))
    out = center_crop_adm(image)
    assert out.shape == (256, 256, 3) and (out == 77).all()  # a flat image stays flat


def _fake_imagenet(root, per_class=2, sizes=((300, 260), (280, 400))):
    rng = np.random.default_rng(0)
    for synset in ("n02", "n01"):  # labels follow the sorted folder names: n01 -> 0
        (root / synset).mkdir(parents=True)
        for i in range(per_class):
            w, h = sizes[i % len(sizes)]
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(
                root / synset / f"{synset}_{i}.JPEG", quality=95
            )
    return root


def test_images_are_listed_sorted_and_labelled_by_their_sorted_folder(tmp_path):
    files = list_images(_fake_imagenet(tmp_path / "src"))
    assert [(p.parent.name, label) for p, label in files] == [("n01", 0)] * 2 + [("n02", 1)] * 2
    with pytest.raises(ValueError, match="folder of class folders"):
        list_images(tmp_path / "src" / "n01" / "no-such-folder")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        list_images(tmp_path / "empty")


def tiny_vae():
    from diffusers.models import AutoencoderKL

    torch.manual_seed(0)
    blocks = 4  # factor 8, as SD-VAE: 256 px -> 32 x 32
    return AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * blocks,
        up_block_types=("UpDecoderBlock2D",) * blocks,
        block_out_channels=(4,) * blocks,
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
    ).eval()


@pytest.mark.slow
def test_prepare_writes_repas_layout_and_resumes_without_rewriting(tmp_path):
    src, dest = _fake_imagenet(tmp_path / "src"), tmp_path / "prepared"
    vae = tiny_vae()
    prepare_imagenet(src, dest, vae=vae, vae_batch_size=3, device="cpu", progress=False)
    meta = json.loads((dest / "vae-sd" / "dataset.json").read_text())["labels"]
    assert meta == [[f"00000/img-mean-std-{i:08d}.npy", i // 2] for i in range(4)]
    images = json.loads((dest / "images" / "dataset.json").read_text())["labels"]
    assert images[0] == ["00000/img00000000.png", 0]
    data = ImageNetLatents(dest)
    raw, moments, label = data[3]
    assert raw.shape == (3, 256, 256) and raw.dtype == torch.uint8
    assert moments.shape == (8, 32, 32) and moments.dtype == torch.float32 and label.item() == 1
    # the stored moments are the VAE's posterior of the stored (lossless PNG) image
    assert torch.allclose(moments, encode_moments(vae, raw[None])[0], atol=1e-5)
    assert (moments[4:] > 0).all()  # the std half
    stamp = (dest / "vae-sd" / meta[0][0]).stat().st_mtime_ns
    prepare_imagenet(src, dest, vae=vae, device="cpu", progress=False)
    assert (dest / "vae-sd" / meta[0][0]).stat().st_mtime_ns == stamp


def test_an_incomplete_folder_names_the_prepare_command(tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(FileNotFoundError, match="prepare-imagenet"):
        ImageNetLatents(tmp_path)


def test_missing_vae_names_the_fetch_command(monkeypatch):
    from semantic_bottleneck.zoo import fetch

    monkeypatch.setattr(fetch, "locate", lambda *a, **k: None)
    with pytest.raises(FileNotFoundError, match="semantic-bottleneck fetch sd-vae-ft-mse"):
        imagenet.load_vae()


def test_step_batches_resume_at_any_step_and_split_the_global_batch():
    def take(sampler, n):
        it = iter(sampler)
        return [next(it) for _ in range(n)]

    full = take(StepBatches(10, 4, 0, 1, seed=3, start_step=0), 6)  # 2 steps per epoch
    assert take(StepBatches(10, 4, 0, 1, seed=3, start_step=4), 2) == full[4:6]
    assert len(set(full[0] + full[1])) == 8  # no repeats within an epoch
    halves = [take(StepBatches(10, 4, r, 2, seed=3, start_step=0), 6) for r in (0, 1)]
    assert all(halves[0][s] + halves[1][s] == full[s] for s in range(6))


def test_posterior_sample_is_scaled_mean_plus_std_noise():
    moments = torch.cat([torch.full((2, 4, 3, 3), 2.0), torch.zeros(2, 4, 3, 3)], dim=1)
    assert torch.allclose(
        sample_posterior(moments, torch.Generator()), torch.full((2, 4, 3, 3), 2 * 0.18215)
    )
    moments[:, 4:] = 1.0
    z = sample_posterior(moments, torch.Generator().manual_seed(0))
    eps = torch.randn(2, 4, 3, 3, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(z, (2.0 + eps) * 0.18215)


class PooledTokens(nn.Module):
    """A stand-in for DINOv2: 16 x 16 average-pooled pixels as 256 three-wide tokens."""

    embed_dim = 3

    def forward(self, raw):
        return nn.functional.avg_pool2d(raw.float() / 255, 16).flatten(2).transpose(1, 2)


def _fake_prepared(root, n=8):
    rng = np.random.default_rng(0)
    rows_img, rows_lat = [], []
    for i in range(n):
        png, npy = f"00000/img{i:08d}.png", f"00000/img-mean-std-{i:08d}.npy"
        (root / "images/00000").mkdir(parents=True, exist_ok=True)
        (root / "vae-sd/00000").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)).save(
            root / "images" / png
        )
        moments = np.concatenate([rng.standard_normal((4, 32, 32)), np.full((4, 32, 32), 0.1)])
        np.save(root / "vae-sd" / npy, moments.astype(np.float32))
        rows_img.append([png, i % 3])
        rows_lat.append([npy, i % 3])
    (root / "images/dataset.json").write_text(json.dumps({"labels": rows_img}))
    (root / "vae-sd/dataset.json").write_text(json.dumps({"labels": rows_lat}))
    return root


def test_training_on_prepared_imagenet_with_the_encoder_path(tmp_path, monkeypatch):
    monkeypatch.setattr(repa, "dinov2_encoder", lambda weights="": PooledTokens())
    config = TrainConfig(
        family="repa",
        objective="repa",
        dataset="imagenet",
        data_dir=str(_fake_prepared(tmp_path / "in")),
        hidden_size=32,
        depth=2,
        num_heads=2,
        batch_size=4,
        steps=2,
        log_every=1,
        repa_encoder="dinov2-vit-b",
        z_dim=3,
        encoder_depth=1,
        projector_dim=16,
    )
    train(config, tmp_path / "run", progress=False, device="cpu", num_workers=0)
    records = read_log(tmp_path / "run" / "log.jsonl")
    assert [r["step"] for r in records] == [0, 1, 2]
    assert records[0]["classes_npr_mean"] > 0  # all 1000 classes at t = 1
    assert -1 <= records[-1]["proj_loss"] <= 1


def test_imagenet_training_without_a_data_dir_says_how_to_make_one(tmp_path):
    config = TrainConfig(
        family="repa",
        objective="repa",
        dataset="imagenet",
        hidden_size=32,
        depth=1,
        num_heads=2,
        batch_size=4,
        steps=1,
    )
    with pytest.raises(ValueError, match="prepare-imagenet"):
        train(config, tmp_path, progress=False, device="cpu")


def test_an_unprepared_folder_is_refused_before_the_encoder_loads(tmp_path, monkeypatch):
    def no_encoder(weights=""):
        raise AssertionError("the encoder must not load for an unprepared folder")

    monkeypatch.setattr(repa, "dinov2_encoder", no_encoder)
    config = TrainConfig(
        family="repa", objective="repa", dataset="imagenet", data_dir=str(tmp_path), hidden_size=32,
        depth=1, num_heads=2, batch_size=4, steps=1, repa_encoder="dinov2-vit-b", z_dim=3,
    )  # fmt: skip
    with pytest.raises(FileNotFoundError, match="prepare-imagenet"):
        train(config, tmp_path / "run", progress=False, device="cpu")
