"""Small stand-ins for the downloaded inputs, built in the tests (nothing is fetched).

Each has the layout of the real file so that the real loading code reads it: a diffusers
AutoencoderKL folder, torch-fidelity's InceptionV3 state dict, an open_clip model and its weights.
"""

from __future__ import annotations

import json
from pathlib import Path
from unittest import mock

import torch
from diffusers import AutoencoderKL
from safetensors.torch import save_file

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

TINY_CLIP = "tiny-clip-eval-test"
TINY_CLIP_CONFIG = {  # a ViT CLIP small enough for a CPU test; the real tokenizer (77 tokens, BPE)
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


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
