"""Small stand-ins for the downloaded inputs, built in the tests (nothing is fetched).

Each has the layout of the real file so that the real loading code reads it: a diffusers
AutoencoderKL folder, torch-fidelity's InceptionV3 state dict, an open_clip model and its weights.
Also small conditioning paths (`small_emb`, `model_c`) and the check that a recorded training log
is reproduced by retraining its first steps (`assert_retrains_alike`).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL
from safetensors.torch import save_file

from semantic_bottleneck.core import analysis, conditioning
from semantic_bottleneck.core.conventions import convention
from semantic_bottleneck.training.monitor import read_log
from semantic_bottleneck.training.trainer import TrainConfig, train
from semantic_bottleneck.zoo import build_model
from semantic_bottleneck.zoo.registry import CHECKPOINTS, read_manifest

RETRAIN_KEYS = (
    "loss",
    "classes_npr_mean",
    "classes_cos_mean",
    "ema_classes_npr_mean",
    "ema_t_norm",
)

# tiny configs of the model families shared by the zoo tests
TINY_LIGHTNINGDIT = dict(
    input_size=4,
    patch_size=1,
    in_channels=8,
    hidden_size=64,
    depth=2,
    num_heads=4,
    num_classes=10,
    use_swiglu=True,
    use_rope=True,
    use_rmsnorm=True,
)
TINY_MDT = dict(
    input_size=8,
    patch_size=2,
    in_channels=4,
    hidden_size=64,
    depth=4,
    num_heads=4,
    mlp_ratio=4.0,
    class_dropout_prob=0.1,
    num_classes=10,
    learn_sigma=True,
)

# the transformer part of the tiny MDT-derived continuous models (X-MDPT, MDSGen)
TINY_MASKED = dict(
    hidden_size=32, depth=3, num_heads=4, mlp_ratio=4.0, learn_sigma=True, decode_layer=1
)

TINY_CLIP = "tiny-clip-eval-test"
TINY_CLIP_CONFIG = {  # a ViT CLIP small enough for a CPU test; the real tokenizer (77 tokens, BPE)
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


def randomize(model: torch.nn.Module, seed: int, scale: float = 0.3) -> torch.nn.Module:
    """Every parameter N(0, scale^2), drawn from a generator seeded `seed` (the official inits
    zero the modulations and the output, which would hide most of a forward)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(scale * torch.randn(p.shape, generator=g))
    return model


def assert_manifest_builds(
    model: torch.nn.Module, manifest: dict, c_prefixes: str | tuple[str, ...]
) -> None:
    """`model`, built from the manifest's config, has the manifest's keys in order, their shapes,
    its parameter count, and as the tensors of c the keys starting with `c_prefixes`."""
    state = model.state_dict()
    assert list(state) == list(manifest["keys"])
    assert {k: list(v.shape) for k, v in state.items()} == manifest["keys"]
    assert sum(p.numel() for p in model.parameters()) == manifest["num_params"]
    defines_c = [k for k in state if k.startswith(c_prefixes)]
    assert defines_c == manifest["conditioning_tensors"]["defines_c"]


def diffusers_layout(root: Path, subfolder: str, layout: str) -> Path:
    """What a diffusers loader is given for a saved pipeline folder `root`: the folder itself
    ("pipeline"), its model folder ("model") or the model's one weights file ("single-file")."""
    return {
        "pipeline": root,
        "model": root / subfolder,
        "single-file": root / subfolder / "diffusion_pytorch_model.safetensors",
    }[layout]


def tiny_sd_vae(seed: int = 0) -> AutoencoderKL:
    """A 4-channel AutoencoderKL that up-samples latents 2x (SD-VAE's layout, tiny widths)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return AutoencoderKL(
            block_out_channels=(8, 8),
            down_block_types=("DownEncoderBlock2D",) * 2,
            up_block_types=("UpDecoderBlock2D",) * 2,
            layers_per_block=1,
            latent_channels=4,
            norm_num_groups=4,
        ).eval()


def random_inception(seed: int = 0) -> torch.nn.Module:
    """torch-fidelity's InceptionV3 with random weights (its weights file is never read)."""
    import torch_fidelity.feature_extractor_inceptionv3 as inception

    Inception = inception.FeatureExtractorInceptionV3
    with (
        mock.patch.object(inception, "load_state_dict_from_url", lambda *a, **k: None),
        mock.patch.object(Inception, "load_state_dict", lambda self, state: None),
        torch.random.fork_rng(),
    ):
        torch.manual_seed(seed)
        net = Inception("inception-v3-compat", ["2048", "logits_unbiased"])
        # He initialisation keeps the activations alive through the 90-odd ReLU layers (the
        # default one shrinks the pool features to ~1e-7, which makes every metric constant)
        for m in net.modules():
            if isinstance(m, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            elif isinstance(m, torch.nn.Linear):
                torch.nn.init.normal_(m.weight, std=m.in_features**-0.5)
        return net


def tiny_clip(folder: Path, seed: int = 0) -> tuple[torch.nn.Module, Path]:
    """Register TINY_CLIP with open_clip and save a random model's weights under `folder`."""
    import open_clip

    (folder / f"{TINY_CLIP}.json").write_text(json.dumps(TINY_CLIP_CONFIG))
    open_clip.add_model_config(folder / f"{TINY_CLIP}.json")
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = open_clip.create_model(TINY_CLIP)
    save_file(model.state_dict(), str(folder / "tiny.safetensors"))
    return model.eval(), folder / "tiny.safetensors"


def model_c(emb, name="demo", time="repa"):
    """A ModelC of the SiT class over embedder tensors held in memory."""
    return analysis.ModelC(name, name, "sit", convention(time), emb, "memory")


def small_emb(d=16, classes=5, seed=0):
    """The five embedder tensors of a tiny random SiT (width d, `classes` labels)."""
    torch.manual_seed(seed)
    model = build_model(
        "sit",
        input_size=4,
        patch_size=2,
        in_channels=1,
        hidden_size=d,
        depth=1,
        num_heads=2,
        num_classes=classes,
    )
    return conditioning.embedders_from_model(model.eval())


def assert_retrains_alike(config: TrainConfig, log: list[dict], out: Path, steps: int) -> None:
    """Retrain the first `steps` of `config` into `out` and compare with the recorded `log`:
    exact at initialisation, 1e-3 relative after it (another CPU's kernels may round
    differently; the machine that made the record reproduces it bitwise). The rate is constant,
    so the first steps do not depend on how long the recorded run went on."""
    train(dataclasses.replace(config, steps=steps), out, progress=False)
    again = {r["step"]: r for r in read_log(out / "log.jsonl")}
    checked = 0
    for r in (r for r in log if r["step"] <= steps):
        rel = 1e-6 if r["step"] == 0 else 1e-3
        for key in RETRAIN_KEYS:
            if r.get(key) is not None:
                assert again[r["step"]][key] == pytest.approx(r[key], rel=rel), (r["step"], key)
                checked += 1
    trained = [r for r in log if 0 < r["step"] <= steps]  # records after initialisation
    assert trained and checked > len(RETRAIN_KEYS), "the record has too few early steps to compare"


def manifest_state(manifest: str, width: int = 1152, classes: int = 1000, seed: int = 0,
                   real_c: bool = False) -> dict[str, torch.Tensor]:  # fmt: skip
    """A random state dict with the real key set of a packaged manifest (e.g. 'dit_xl2.json').

    Widths shrink by width / 1152 (every dimension that is a multiple of 1152 scales with it) and
    the label table has `classes` + 1 rows; `real_c` keeps the five tensors of c at their real
    (XL) shapes.

    Shapes: the manifest's, shrunk as above.
    """
    keys = read_manifest(manifest)["keys"]
    g = torch.Generator().manual_seed(seed)

    def shrink(dim: int) -> int:
        if dim == 1001:
            return classes + 1
        return dim // 1152 * width if dim % 1152 == 0 else dim

    state = {}
    for key, shape in keys.items():
        keep = real_c and key in conditioning.EMBEDDER_KEYS
        state[key] = torch.randn(shape if keep else [shrink(n) for n in shape], generator=g)
    return state


def family_manifest(family: str) -> dict:
    """The manifest (keys, shapes, config) of the first released checkpoint of `family`."""
    return read_manifest(next(e for e in CHECKPOINTS if e.family == family).manifest)


# ----------------------------------------------------------------------------- X-MDPT, DeepFashion

DEEPFASHION_TARGETS = "img/WOMEN/Dresses/id_{:08d}/{:02d}_1_front"
DEEPFASHION_SOURCES = "img/MEN/Tees_Tanks/id_{:08d}/{:02d}_2_side"


def smooth_images(n: int, size=(256, 256), seed: int = 0):
    """Low-frequency uint8 RGB images (coarse noise upsampled), closer to photos than noise.

    Shapes: -> (n, *size, 3).
    """
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 8, 6, generator=g)
    up = torch.nn.functional.interpolate(coarse, size=size, mode="bicubic", align_corners=False)
    up = up + 0.05 * torch.rand(n, 3, *size, generator=g)
    return (up.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def keypoints(seed: int, missing: int = 3) -> np.ndarray:
    """18 OpenPose keypoints (x, y) in the stored frame's pixels (x within the 176-wide person
    strip 40..216, y in 0..255), `missing` of them -1 -1 (not visible)."""
    rng = np.random.default_rng(seed)
    points = np.stack([rng.uniform(40, 216, 18), rng.uniform(0, 255, 18)], 1).round(0)
    points[rng.choice(18, missing, replace=False)] = -1
    return points


def deepfashion_root(root: Path, pairs: int, seed: int = 0, poses: bool = False) -> Path:
    """ROOT/test_pairs.txt, train_pairs.txt and 256-256/<key>.png in `evaluation.deepfashion`'s
    layout: `pairs` test pairs (target, source) and the sources as the train split; with
    `poses`, every image's keypoints as ROOT/pose/<key>.txt."""
    from PIL import Image

    targets = [DEEPFASHION_TARGETS.format(i, i) for i in range(pairs)]
    sources = [DEEPFASHION_SOURCES.format(i, i) for i in range(pairs)]
    root.mkdir(parents=True, exist_ok=True)
    lines = [f"{t}.jpg,{s}.jpg" for t, s in zip(targets, sources, strict=True)]
    (root / "test_pairs.txt").write_text("\n".join(lines) + "\n")
    train = [f"{sources[i]}.jpg,{sources[(i + 1) % pairs]}.jpg" for i in range(pairs)]
    (root / "train_pairs.txt").write_text("\n".join(train) + "\n")
    for key, image in zip(targets + sources, smooth_images(2 * pairs, seed=seed), strict=True):
        path = root / "256-256" / f"{key}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(path)
    for i, key in enumerate(targets + sources if poses else []):
        path = root / key.replace("img/", "pose/")
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savetxt(path.with_suffix(".txt"), keypoints(seed + i), fmt="%d")
    return root


def tiny_xmdpt_vae(seed: int = 0) -> AutoencoderKL:
    """A 4-channel AutoencoderKL that up-samples latents 8x, as X-MDPT's (tiny widths):
    32x32 latents decode to 256x256 images."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return AutoencoderKL(
            block_out_channels=(4, 4, 4, 4),
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            layers_per_block=1,
            latent_channels=4,
            norm_num_groups=2,
        ).eval()


def xmdpt_weights_cache(cache: Path, pairs: int, system: str = "xmdpt-s-2", seed: int = 0):
    """A weights cache with every input of the Table 7 sweep, synthetic, in the real layouts:
    the release's checkpoint (its manifest's keys and shapes, the official init perturbed so that
    c reaches the output), the unpacked VAE folder, the condition file (`pairs` rows at the
    released shapes), torch-fidelity's Inception (random) and LPIPS' AlexNet (random)."""
    import torchvision

    from semantic_bottleneck.core import appendix
    from semantic_bottleneck.zoo import registry, xmdpt

    entry = registry.get_system(system)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = xmdpt.build_xmdpt(entry.manifest.split("/")[-1].removesuffix(".json"))
        state = {
            k: v + 0.02 * torch.randn_like(v) if v.is_floating_point() else v
            for k, v in model.state_dict().items()
        }
        (cache / system).mkdir(parents=True)
        torch.save(state, cache / system / entry.filename)
        tiny_xmdpt_vae(seed).save_pretrained(cache / "xmdpt-vae" / "diffuser_finetune_vae")
        g = torch.Generator().manual_seed(seed)
        inputs = {
            name: torch.randn(pairs, *spec["shape"][1:], generator=g)
            for name, spec in xmdpt.INPUTS.items()
        }
        xmdpt.save_inputs(inputs, appendix.conditions_path("xmdpt", cache))
        (cache / "inception-fidelity").mkdir()
        torch.save(
            random_inception(seed).state_dict(),
            cache / "inception-fidelity" / registry.get_entry("inception-fidelity").filename,
        )
        (cache / "lpips").mkdir()
        alexnet = torchvision.models.alexnet(weights=None).eval()
        torch.save(alexnet.state_dict(), cache / "lpips" / "alexnet-owt-7be5be79.pth")
    return cache
