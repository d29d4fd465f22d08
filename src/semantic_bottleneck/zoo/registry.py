"""Registry of the released checkpoints and of the other downloaded inputs (VAEs, evaluators).

One `CheckpointEntry` per released XL model the paper studies, one `AssetEntry` per non-model
input. Each entry says where the official file lives (URLs exactly as the official repository
gives them), how to read it (`weights_key`), which model builds it (`family`, manifest `config`),
what t means at its `t_embedder` (`time_convention`) and how its official script samples it
(the family's headline sampler with the checkpoint's own `sampler_overrides`, built by
`generation.source.checkpoint_source(name).sampler_config()`).

Sources, each official repository at the commit read (book/method.md#method-official-defaults):
- DiT: facebookresearch/DiT @ ed81ce2, `README.md`, `download.py`, `sample_ddp.py` (issue #83).
- SiT: willisma/SiT @ 947f95b, `README.md`, `download.py`, `sample_ddp.py` (issues #18, #42).
- REPA: sihyun-yu/REPA @ 67f7145, `README.md`, `utils.py`, `generate.py`, `samplers.py`.
- LightningDiT: hustvl/LightningDiT @ 2725fed, `README.md`, `inference.py`,
  `configs/reproductions/lightningdit_xl_vavae_f16d32_800ep_cfg.yaml` (issue #21).
- MDT: sail-sg/MDT @ 7d26c21 (MDTv2) and branch mdtv1, `README.md`, `run_sample.sh`,
  `scripts/image_sample.py`.
- MG: tzco/Diffusion-wo-CFG, read through the fork Peterande/Diffusion-wo-CFG: `download.sh`,
  `test.py`, `sampler.py` @ 74cde0c and a01b4b7.
- Inputs: openai/guided-diffusion `evaluations/README.md` (ADM reference batch), torch-fidelity's
  `URL_INCEPTION_V3`, open_clip 3.3's `pretrained.py` tags.
The time conventions are those of book/method.md#method-time-conventions.

No repository publishes a checksum for its checkpoint, so `sha256` is None everywhere: fetch.py
records the hash on first download and verifies it afterwards. Git-LFS hashes of third-party
mirrors are kept in `notes` only, since nothing shows those mirrors equal the official files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from importlib import resources

from semantic_bottleneck.core.conventions import CONVENTIONS, TimeConvention
from semantic_bottleneck.zoo import FAMILIES


@dataclass(frozen=True, kw_only=True)
class Entry:
    """A downloadable input: one main file, plus companion files for Hugging Face entries.

    Attributes:
        name: registry name, e.g. 'dit-xl-2' (also the folder name in the weights cache).
        urls: official URLs. Direct downloads: the parts, concatenated in order into `filename`
            (one URL in most cases). Hugging Face entries: the file pages, for reference only.
        filename: local file name of the main file.
        size: main file size in bytes, where a trustworthy value is known.
        sha256: pinned sha256 of the main file, where a trustworthy value is known.
        hf_repo: Hugging Face repository id; set, the files come through huggingface_hub.
        hf_revision: branch, tag or commit of `hf_repo`.
        extra_files: further files of `hf_repo` stored beside the main file (e.g. config.json).
        notes: provenance and caveats.
    """

    name: str
    urls: tuple[str, ...]
    filename: str
    size: int | None = None
    sha256: str | None = None
    hf_repo: str | None = None
    hf_revision: str = "main"
    extra_files: tuple[str, ...] = ()
    notes: str = ""

    def __post_init__(self):
        if not self.urls and self.hf_repo is None:
            raise ValueError(f"{self.name}: an entry needs urls or an hf_repo")
        if self.extra_files and self.hf_repo is None:
            raise ValueError(f"{self.name}: extra_files are only supported for hf_repo entries")


@dataclass(frozen=True, kw_only=True)
class CheckpointEntry(Entry):
    """A released model checkpoint.

    Attributes:
        family: model family, the key `zoo.build_model` takes (one of FAMILIES).
        manifest: file in `semantic_bottleneck/manifests/` with its keys, shapes and config.
        weights_key: entry holding the weights ('ema', 'model'); None = bare dict or auto
            ('ema' -> 'model' -> bare, as the official loaders do).
        time_convention: key of conventions.CONVENTIONS (gives `initial_t`, the t of the
            sampler's first, pure-noise step, at which the paper takes its statistics).
        vae: registry name of the autoencoder that decodes its latents.
        sampler_overrides: where this checkpoint's official sampling settings depart from its
            family's headline sampler (`sampling.default_config(family)`), as that function's
            keywords; empty for the model whose settings the family's headline is.
        num_classes: number of real classes.
        null_class: label of the unconditional (null) row of the label table.
    """

    family: str
    manifest: str
    weights_key: str | None
    time_convention: str
    vae: str
    sampler_overrides: dict = field(default_factory=dict)
    num_classes: int = 1000
    null_class: int = 1000

    def __post_init__(self):
        super().__post_init__()
        if self.family not in FAMILIES:
            raise ValueError(f"{self.name}: family {self.family!r} not in {FAMILIES}")
        if self.time_convention not in CONVENTIONS:
            raise ValueError(f"{self.name}: time_convention {self.time_convention!r} unknown")

    @property
    def config(self) -> dict:
        """Constructor keywords of the official model (the manifest's 'config'); a fresh copy."""
        return dict(read_manifest(self.manifest)["config"])

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        """{state-dict key: shape} of the official model (from the manifest)."""
        return {k: tuple(v) for k, v in read_manifest(self.manifest)["keys"].items()}

    @property
    def time(self) -> TimeConvention:
        """The named time convention."""
        return CONVENTIONS[self.time_convention]


@dataclass(frozen=True, kw_only=True)
class AssetEntry(Entry):
    """A non-model input: autoencoder, evaluator weights, reference batch.

    Attributes:
        kind: 'vae', 'reference-batch', 'inception', 'clip', 'lpips' or 'dinov2'.
    """

    kind: str


@dataclass(frozen=True, kw_only=True)
class SystemEntry(Entry):
    """A released appendix system (U-ViT, X-MDPT, MDSGen, SD3, AudioLDM): its c is measured over
    a set of conditions (`core.systems`), not over a label table.

    Attributes:
        system: module of `semantic_bottleneck.zoo` that loads it and computes c's parts
            (one of SYSTEM_KINDS).
        label: the paper's row label (Tables 1, 4, 5) of what this release stands for.
        manifest: file in `semantic_bottleneck/manifests/` with its keys and config (None where
            no manifest exists; the loader then checks the model's own config).
        initial_t: the t its official sampler feeds at the first, pure-noise step.
        weights_key: entry holding the weights (None: a bare state dict, or a diffusers folder).
        gated: the Hugging Face repository needs an accepted licence and a token.
    """

    system: str
    label: str
    manifest: str | None
    initial_t: float
    weights_key: str | None = None
    gated: bool = False

    def __post_init__(self):
        super().__post_init__()
        if self.system not in SYSTEM_KINDS:
            raise ValueError(f"{self.name}: system {self.system!r} not in {SYSTEM_KINDS}")


SYSTEM_KINDS = ("uvit", "xmdpt", "mdsgen", "sd3", "audioldm")


@cache
def _manifest_text(filename: str) -> str:
    return (resources.files("semantic_bottleneck") / "manifests" / filename).read_text()


def read_manifest(filename: str) -> dict:
    """Parse a packaged manifest file, e.g. 'dit_xl2.json' (a fresh dict per call)."""
    return json.loads(_manifest_text(filename))


# ----------------------------------------------------------------------------- the entries

_EMA_VAE = "sd-vae-ft-ema"  # the sampling scripts' default decoder for 32x32x4 latents
_HF = "https://huggingface.co"
_MG_RELEASE = "https://github.com/tzco/diffusion-wo-cfg/releases/download/1.0"

CHECKPOINTS: tuple[CheckpointEntry, ...] = (
    CheckpointEntry(
        name="dit-xl-2",
        family="dit",
        manifest="dit_xl2.json",
        urls=("https://dl.fbaipublicfiles.com/DiT/models/DiT-XL-2-256x256.pt",),
        filename="DiT-XL-2-256x256.pt",
        weights_key=None,
        time_convention="ddpm",
        vae=_EMA_VAE,
        notes=(
            "Bare state_dict ported from JAX (README; issue #83: no 'ema' key). A third-party "
            "copy (HF iasudakov/model_checkpoints) has LFS sha256 9ec1876e4c03471bca126663a30e2d1b"
            "20610b6d2f87850a39a36f25cc685521 and 2,700,611,775 bytes; not proven identical, so "
            "not pinned. sample.py defaults to sd-vae-ft-mse, sample_ddp.py to ft-ema."
        ),
    ),
    CheckpointEntry(
        name="sit-xl-2",
        family="sit",
        manifest="sit_xl2.json",
        urls=(
            "https://www.dl.dropboxusercontent.com/scl/fi/as9oeomcbub47de5g4be0/"
            "SiT-XL-2-256.pt?rlkey=uxzxmpicu46coq3msb17b9ofa&dl=0",
        ),
        filename="SiT-XL-2-256x256.pt",
        weights_key=None,
        time_convention="sit",
        vae=_EMA_VAE,
        notes=(
            "Bare state_dict with the 8-channel learn_sigma head. Third-party copy "
            "(HF iasudakov/model_checkpoints SiT-XL-2-256.pt) LFS sha256 e645b5cd82d1d645cfd9b7c9"
            "6041b56b2a0aa61faed90c0869e79be02ab55aca, 2,700,608,707 bytes; not pinned. "
            "SiT issue #42 mentions HF nyu-visionx/SiT-collections."
        ),
    ),
    CheckpointEntry(
        name="repa-sit-xl-2",
        family="repa",
        manifest="repa_sitxl2.json",
        urls=(
            "https://www.dl.dropboxusercontent.com/scl/fi/cxedbs4da5ugjq5wg3zrg/"
            "last.pt?rlkey=8otgrdkno0nd89po3dpwngwcc&st=apcc645o&dl=0",
        ),
        filename="last.pt",
        weights_key=None,
        time_convention="repa",
        vae=_EMA_VAE,
        notes="Bare state_dict with the projector (4M iterations); URL from REPA utils.py.",
    ),
    CheckpointEntry(
        name="lightningdit-xl-1",
        family="lightningdit",
        manifest="lightningdit_xl1.json",
        urls=(
            f"{_HF}/hustvl/lightningdit-xl-imagenet256-800ep/blob/main/"
            "lightningdit-xl-imagenet256-800ep.pt",
        ),
        filename="lightningdit-xl-imagenet256-800ep.pt",
        hf_repo="hustvl/lightningdit-xl-imagenet256-800ep",
        weights_key=None,
        time_convention="sit",
        vae="vavae-f16d32",
        notes="Bare or {'ema', ...} not known offline; inference.py takes 'ema' when present.",
    ),
    CheckpointEntry(
        name="lightningdit-xl-1-64ep",
        family="lightningdit",
        manifest="lightningdit_xl1.json",
        urls=(
            f"{_HF}/hustvl/lightningdit-xl-imagenet256-64ep/blob/main/"
            "lightningdit-xl-imagenet256-64ep.pt",
        ),
        filename="lightningdit-xl-imagenet256-64ep.pt",
        hf_repo="hustvl/lightningdit-xl-imagenet256-64ep",
        weights_key=None,
        time_convention="sit",
        vae="vavae-f16d32",
        # configs/reproductions/lightningdit_xl_vavae_f16d32_64ep_cfg.yaml (FID 2.11)
        sampler_overrides={"scale": 10.0, "interval": (0.10, 1.0)},
        notes="64-epoch model; the base config (not its reproduction config) has start 0.11.",
    ),
    CheckpointEntry(
        name="mdtv2-xl-2",
        family="mdtv2",
        manifest="mdtv2_xl2.json",
        urls=(f"{_HF}/shgao/MDT-XL2/tree/main",),
        filename="mdt_xl2_v2_ckpt.pt",
        hf_repo="shgao/MDT-XL2",
        weights_key=None,
        time_convention="ddpm",
        vae=_EMA_VAE,
        notes="Bare state_dict. The README links the repository page, not the file.",
    ),
    CheckpointEntry(
        name="mdt-xl-2",
        family="mdt",
        manifest="mdt_xl2.json",
        urls=(f"{_HF}/shgao/MDT-XL2/tree/main",),
        filename="mdt_xl2_v1_ckpt.pt",
        hf_repo="shgao/MDT-XL2",
        weights_key=None,
        time_convention="ddpm",
        vae=_EMA_VAE,
        notes="MDT v1 (branch mdtv1). Sampler settings assumed equal to v2's image_sample.py.",
    ),
    CheckpointEntry(
        name="mg-sit-xl-2",
        family="mg",
        manifest="mg_sitxl2.json",
        urls=tuple(f"{_MG_RELEASE}/SiT-XL-2-MG-{part}" for part in "abcdef"),
        filename="SiT-XL-2-MG.pt",
        weights_key=None,
        time_convention="repa",
        vae=_EMA_VAE,
        notes=(
            "Six parts joined with cat (download.sh). test.py reads 'ema', else 'model' (auto). "
            "The final SDE time is 0.04 in sampler.py @74cde0c and 0.004 @a01b4b7 (fork)."
        ),
    ),
)

ASSETS: tuple[AssetEntry, ...] = (
    AssetEntry(
        name="sd-vae-ft-ema",
        kind="vae",
        urls=(f"{_HF}/stabilityai/sd-vae-ft-ema",),
        filename="diffusion_pytorch_model.safetensors",
        extra_files=("config.json",),
        hf_repo="stabilityai/sd-vae-ft-ema",
        notes="diffusers AutoencoderKL; load with from_pretrained(<folder>). Latent scale 0.18215.",
    ),
    AssetEntry(
        name="sd-vae-ft-mse",
        kind="vae",
        urls=(f"{_HF}/stabilityai/sd-vae-ft-mse",),
        filename="diffusion_pytorch_model.safetensors",
        extra_files=("config.json",),
        hf_repo="stabilityai/sd-vae-ft-mse",
        notes="diffusers AutoencoderKL; DiT sample.py's default and REPA's training encoder.",
    ),
    AssetEntry(
        name="vavae-f16d32",
        kind="vae",
        urls=(
            f"{_HF}/hustvl/vavae-imagenet256-f16d32-dinov2/blob/main/"
            "vavae-imagenet256-f16d32-dinov2.pt",
            f"{_HF}/hustvl/vavae-imagenet256-f16d32-dinov2/blob/main/latents_stats.pt",
        ),
        filename="vavae-imagenet256-f16d32-dinov2.pt",
        extra_files=("latents_stats.pt",),
        hf_repo="hustvl/vavae-imagenet256-f16d32-dinov2",
        notes="LightningDiT's VA-VAE; latents_stats.pt holds the channel 'mean' and 'std'.",
    ),
    AssetEntry(
        name="adm-ref-imagenet256",
        kind="reference-batch",
        urls=(
            "https://openaipublic.blob.core.windows.net/diffusion/jul-2021/ref_batches/"
            "imagenet/256/VIRTUAL_imagenet256_labeled.npz",
        ),
        filename="VIRTUAL_imagenet256_labeled.npz",
        notes="ADM evaluator reference batch (guided-diffusion evaluations/README.md).",
    ),
    AssetEntry(
        name="inception-fidelity",
        kind="inception",
        urls=(
            "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
            "weights-inception-2015-12-05-6726825d.pth",
        ),
        filename="weights-inception-2015-12-05-6726825d.pth",
        notes=(
            "torch-fidelity's InceptionV3 (URL_INCEPTION_V3); pass it as "
            "feature_extractor_weights_path. By torch.hub naming, 6726825d would be the sha256 "
            "prefix; torch-fidelity does not check it."
        ),
    ),
    AssetEntry(
        name="clip-vit-l-14-openai",
        kind="clip",
        urls=(f"{_HF}/timm/vit_large_patch14_clip_224.openai",),
        filename="open_clip_pytorch_model.bin",
        hf_repo="timm/vit_large_patch14_clip_224.openai",
        notes=(
            "open_clip 3.3 'ViT-L-14'/'openai' resolves to hf_hub 'timm/vit_large_patch14_clip_"
            "224.openai/' (tries open_clip_model.safetensors first, then this file). Loading a "
            "file path skips the tag's quick_gelu: use 'ViT-L-14-quickgelu'. The OpenAI URL "
            "(openaipublic.azureedge.net/clip/models/b8cca3fd.../ViT-L-14.pt) is a TorchScript "
            "file with a different layout."
        ),
    ),
    AssetEntry(
        name="xmdpt-vae",
        kind="vae",
        urls=(
            "https://drive.google.com/file/d/1zjoCLuJV-_d-pq7f_N0vZXppUkq8LTP0/view?usp=sharing",
        ),
        filename="diffuser_finetune_vae.zip",
        notes=(
            "X-MDPT's VAE (README.md 'VAE' link): infer_xmdpt.py:50-51 loads it as the diffusers "
            "AutoencoderKL folder model_zoo/diffuser_finetune_vae (config.json and weights), "
            "decoder fine-tuned, latent scale 0.18215. The README does not name or describe the "
            "Drive file; it is taken to be an archive of that folder: unpack it in place "
            "(`unzip diffuser_finetune_vae.zip -d <cache>/xmdpt-vae`), so that "
            "<cache>/xmdpt-vae/diffuser_finetune_vae/config.json exists. `sweeps.xmdpt` reads "
            "the folder and names the unpacking command while only the archive is there."
        ),
    ),
    AssetEntry(
        name="lpips",
        kind="lpips",
        urls=("https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",),
        filename="alexnet-owt-7be5be79.pth",
        notes=(
            "torchvision's ImageNet AlexNet, LPIPS' backbone (net='alex', PIDM metrics.py:454); "
            "fetched to <cache>/lpips/, where evaluation.deepfashion.lpips_backbone looks. By "
            "torch.hub naming, 7be5be79 is the sha256 prefix. LPIPS' linear layers (v0.1) ship "
            "with torchmetrics."
        ),
    ),
    *(
        AssetEntry(
            name=f"dinov2-{arch}",
            kind="dinov2",
            urls=(
                f"https://dl.fbaipublicfiles.com/dinov2/dinov2_{arch}/dinov2_{arch}_pretrain.pth",
            ),
            filename=f"dinov2_{arch}_pretrain.pth",
            notes=(
                f"DINOv2 {arch} (facebookresearch/dinov2's hubconf `dinov2_{arch}`, the URL its "
                f"pretrained=True reads); X-MDPT encodes the {what} with it (infer_xmdpt.py:61-62, "
                "82-85). Built from a local clone of facebookresearch/dinov2 with "
                "pretrained=False and these weights loaded strictly (zoo.xmdpt.load_dinov2)."
            ),
        )
        for arch, what in (("vitb14", "target pose map"), ("vitg14", "source image"))
    ),
)


# The appendix systems. Sources, each official repository at the commit read:
# - U-ViT: baofff/U-ViT @ ce55170, README.md (checkpoint links), eval_ldm_discrete.py (H models:
#   t = 1000 at the first step), eval_ldm.py and eval.py (L and M models: t = 999).
# - X-MDPT: trungpx/xmdpt @ 8397056, README.md, infer_xmdpt.py (DDPM index 999 at the first step).
# - MDSGen: triton99/MDSGen @ f51ce3d, README.md, inference.py (DPM-Solver model time 999.0).
# - SD3 and AudioLDM: the diffusers pipelines (zoo/sd3.py, zoo/audioldm.py give the initial t).
# Google Drive links are the README's file pages; `fetch` downloads them through Drive's
# direct-download endpoint.
_DRIVE = "https://drive.google.com/file/d"
_UVIT_NOTES = {
    "discrete": "eval_ldm_discrete.py: DPM-Solver++, 50 steps; the network gets 1000 t.",
    "continuous": "eval_ldm.py / eval.py: DPM-Solver, 50 steps; the network gets 999 t.",
}


def _uvit(name: str, size: str, drive_id: str, filename: str, kind: str) -> SystemEntry:
    return SystemEntry(
        name=name,
        system="uvit",
        label="U-ViT (concatenation)",
        manifest=f"appendix/uvit_{size}.json",
        urls=(f"{_DRIVE}/{drive_id}/view?usp=share_link",),
        filename=filename,
        initial_t=1000.0 if kind == "discrete" else 999.0,
        notes=f"Bare state_dict. {_UVIT_NOTES[kind]} Table 4 does not say which U-ViT it measured.",
    )


def _xmdpt(size: str, drive_id: str, params: str) -> SystemEntry:
    return SystemEntry(
        name=f"xmdpt-{size}-2",
        system="xmdpt",
        label=f"X-MDPT-{size.upper()}",
        manifest=f"appendix/xmdpt_{size}2.json",
        urls=(f"{_DRIVE}/{drive_id}/view?usp=sharing",),
        filename="ema_0.9999_300000.pt",
        initial_t=999.0,
        notes=(
            f"Bare EMA state_dict (infer_xmdpt.py:44-45). The README states {params} parameters; "
            "the class builds more (its training-only side blocks included)."
        ),
    )


_SD3_FILES = ("model_index.json", "transformer/config.json", "scheduler/scheduler_config.json")
_AUDIOLDM_FILES = ("model_index.json", "unet/config.json", "scheduler/scheduler_config.json")

SYSTEMS: tuple[SystemEntry, ...] = (
    _uvit("uvit-h-2-imagenet256", "h2_imagenet256", "13StUdrjaaSXjfqqF7M47BzPyhMAArQ4u",
          "imagenet256_uvit_huge.pth", "discrete"),
    _uvit("uvit-h-4-imagenet512", "h4_imagenet512", "1uegr2o7cuKXtf2akWGAN2Vnlrtw5YKQq",
          "imagenet512_uvit_huge.pth", "discrete"),
    _uvit("uvit-l-2-imagenet256", "l2_imagenet256", "1w7T1hiwKODgkYyMH9Nc9JNUThbxFZgs3",
          "imagenet256_uvit_large.pth", "continuous"),
    _uvit("uvit-l-4-imagenet512", "l4_imagenet512", "1mkj4aN2utHMBTWQX9l1nYue9vleL7ZSB",
          "imagenet512_uvit_large.pth", "continuous"),
    _uvit("uvit-l-4-imagenet64", "l4_imagenet64", "19rmun-T7RwkNC1feEPWinIo-1JynpW7J",
          "imagenet64_uvit_large.pth", "continuous"),
    _uvit("uvit-m-4-imagenet64", "m4_imagenet64", "1igVgRY7-A0ZV3XqdNcMGOnIGOxKr9azv",
          "imagenet64_uvit_mid.pth", "continuous"),
    _xmdpt("l", "1No_WJBD25HVmYLaKirrI_7k04RpOkNos", "460.2M"),
    _xmdpt("b", "1nNPWGhvRZVwjBMfgilbgZNdcn1I1DUgH", "131.9M"),
    _xmdpt("s", "1loztAzrL6sQI7rarwb_x2233ZwNTVlvD", "33.5M"),
    SystemEntry(
        name="mdsgen-b-2",
        system="mdsgen",
        label="MDSGen",
        manifest="appendix/mdsgen_b2.json",
        urls=(f"{_DRIVE}/1XZoK-uU0mTWeRLilLZ_FtysRgearBxOp/view?usp=sharing",),
        filename="mdsgen_audioldm.pt",
        initial_t=999.0,
        notes="Bare state_dict (inference.py:55-56); condition: CAVP video features (32, 512).",
    ),
    SystemEntry(
        name="sd3-medium",
        system="sd3",
        label="SD3.0 (2B)",
        manifest="appendix/sd3_medium_transformer.json",
        hf_repo="stabilityai/stable-diffusion-3-medium-diffusers",
        urls=(f"{_HF}/stabilityai/stable-diffusion-3-medium-diffusers",),
        filename="transformer/diffusion_pytorch_model.safetensors",
        extra_files=_SD3_FILES,
        initial_t=1000.0,
        gated=True,
        notes="c needs the transformer's time_text_embed.* only; the prompts' pooled CLIP-L/G "
        "embeddings come from the pipeline's text encoders.",
    ),
    SystemEntry(
        name="sd3.5-large",
        system="sd3",
        label="SD3.0 (8B)",
        manifest=None,
        hf_repo="stabilityai/stable-diffusion-3.5-large",
        urls=(f"{_HF}/stabilityai/stable-diffusion-3.5-large",),
        filename="transformer/diffusion_pytorch_model.safetensors.index.json",
        extra_files=(
            *_SD3_FILES,
            "transformer/diffusion_pytorch_model-00001-of-00002.safetensors",
            "transformer/diffusion_pytorch_model-00002-of-00002.safetensors",
        ),
        initial_t=1000.0,
        gated=True,
        notes="The paper's 'SD3.0 (8B)' was never released; SD3.5-Large is the public 8B-class "
        "model and stands in for that row. Shard names not verified against the hub.",
    ),
    *(
        SystemEntry(
            name=f"audioldm-{size}",
            system="audioldm",
            label="AudioLDM (cross-attention)",
            manifest=f"appendix/audioldm_{size[0]}_full_unet.json",
            hf_repo=f"cvssp/audioldm-{size}",
            urls=(f"{_HF}/cvssp/audioldm-{size}",),
            filename="unet/diffusion_pytorch_model.bin",
            extra_files=_AUDIOLDM_FILES,
            initial_t=901.0,
            notes="The paper does not say which AudioLDM it measured, and its '(cross-attention)' "
            "does not describe this UNet (time and CLAP embeddings are concatenated). Weight "
            "file name not verified against the hub.",
        )
        for size in ("s-full-v2", "m-full", "l-full")
    ),
)  # fmt: skip

REGISTRY: dict[str, Entry] = {entry.name: entry for entry in (*CHECKPOINTS, *ASSETS, *SYSTEMS)}


def names(kind: str | None = None) -> list[str]:
    """Registry names: all, or only 'checkpoint' / 'asset' / 'system' entries."""
    if kind is None:
        return list(REGISTRY)
    groups = {"checkpoint": CHECKPOINTS, "asset": ASSETS, "system": SYSTEMS}
    if kind not in groups:
        raise ValueError(f"kind must be 'checkpoint', 'asset' or 'system', got {kind!r}")
    return [entry.name for entry in groups[kind]]


def get_entry(name: str) -> Entry:
    """The registry entry called `name`.

    Raises:
        ValueError: `name` is unknown (the message lists the valid names).
    """
    if name not in REGISTRY:
        raise ValueError(
            f"unknown checkpoint or input {name!r}; valid names: {', '.join(REGISTRY)}"
        )
    return REGISTRY[name]


def get_checkpoint(name: str) -> CheckpointEntry:
    """The model checkpoint entry called `name` (not an asset)."""
    entry = get_entry(name)
    if not isinstance(entry, CheckpointEntry):
        raise ValueError(
            f"{name!r} is an input ({entry.kind}), not a model; models: {', '.join(names('checkpoint'))}"
        )
    return entry


def get_system(name: str) -> SystemEntry:
    """The appendix system entry called `name`."""
    entry = get_entry(name)
    if not isinstance(entry, SystemEntry):
        raise ValueError(
            f"{name!r} is not an appendix system; systems: {', '.join(names('system'))}"
        )
    return entry
