"""Loading the appendix systems' c: a release from the weights cache (`zoo.registry.SYSTEMS`),
its condition file, and the two parts of c at its initial t (`core.systems.SystemC`).

A condition file is one safetensors file per system, `<weights cache>/conditions/<system>.safetensors`,
holding the tensors its zoo module's `INPUTS` names with one row per condition (X-MDPT: DINOv2
tokens of the target pose and the source image and the source latent; MDSGen: CAVP video
features; SD3: pooled CLIP-L/G prompt embeddings; AudioLDM: CLAP prompt embeddings). U-ViT needs
none: its conditions are the ImageNet classes.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from semantic_bottleneck.book import cache as artifacts
from semantic_bottleneck.core.analysis import Missing
from semantic_bottleneck.core.conventions import check_profile
from semantic_bottleneck.core.systems import SystemC
from semantic_bottleneck.zoo import checkpoint, fetch, registry

# how each model combines the parts (U-ViT's tokens: Table 4's "concatenation" reading; SD3's
# and AudioLDM's as their modules state)
_COMBINE = {"uvit": "concat", "xmdpt": "sum", "mdsgen": "sum"}
TABLE1_SYSTEMS = ["xmdpt-l-2", "mdsgen-b-2"]  # Table 1's continuous rows
SYSTEM_C_KIND = "system-c"  # artifact kind of a system's two parts of c (book.cache.PRODUCERS)

# The prompt sets of the text-conditioned systems when none is given (the paper names none):
# SD3, the 1000 ImageNet classes in the CLIP score's template; AudioLDM, the 50 ESC-50 classes.
ESC50_CLASSES = (
    "dog", "rooster", "pig", "cow", "frog", "cat", "hen", "insects", "sheep", "crow", "rain",
    "sea waves", "crackling fire", "crickets", "chirping birds", "water drops", "wind",
    "pouring water", "toilet flush", "thunderstorm", "crying baby", "sneezing", "clapping",
    "breathing", "coughing", "footsteps", "laughing", "brushing teeth", "snoring",
    "drinking sipping", "door wood knock", "mouse click", "keyboard typing", "door wood creaks",
    "can opening", "washing machine", "vacuum cleaner", "clock alarm", "clock tick",
    "glass breaking", "helicopter", "chainsaw", "siren", "car horn", "engine", "train",
    "church bells", "airplane", "fireworks", "hand saw",
)  # fmt: skip
PROMPT_SETS = {
    "sd3": ("ImageNet classes", "a photo of a {}", None),  # open_clip's cleaned class names
    "audioldm": ("ESC-50 classes", "the sound of {}", ESC50_CLASSES),
}


def default_prompts(system: str) -> tuple[list[str], str]:
    """The default prompts of a text-conditioned system and their description."""
    if system not in PROMPT_SETS:
        raise ValueError(f"default prompts: expected one of {sorted(PROMPT_SETS)}, got {system!r}")
    name, template, classes = PROMPT_SETS[system]
    if classes is None:
        from open_clip import IMAGENET_CLASSNAMES  # the CLIP score's names; a heavy import

        classes = IMAGENET_CLASSNAMES
    prompts = [template.format(c) for c in classes]
    return prompts, f"{len(prompts)} prompts '{template}' over the {name}"


# ----------------------------------------------------------------------------- loading


def conditions_path(system: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """Where a system's condition inputs live: `<weights cache>/conditions/<system>.safetensors`
    (one file per system: the X-MDPT sizes share their DeepFashion features, the AudioLDM sizes
    their CLAP embeddings)."""
    cache = Path(cache_dir) if cache_dir is not None else fetch.default_cache_dir()
    return cache / "conditions" / f"{system}.safetensors"


def conditions_command(system: str) -> str:
    """The command that says what a system's condition file holds and prepares it."""
    return f"semantic-bottleneck conditions {system}"


def conditions_note(path: str | os.PathLike) -> str:
    """What a condition file's rows are, as recorded when it was written ('' if not recorded)."""
    with safe_open(str(path), "pt") as f:
        return (f.metadata() or {}).get("conditions", "")


def system_module(system: str) -> ModuleType:
    """The zoo module of an appendix system (`semantic_bottleneck.zoo.<system>`), imported when
    first needed: SD3's and AudioLDM's load diffusers, which a testbed page never needs."""
    if system not in registry.SYSTEM_KINDS:
        raise ValueError(f"system: expected one of {registry.SYSTEM_KINDS}, got {system!r}")
    return importlib.import_module(f"semantic_bottleneck.zoo.{system}")


def combine_rule(system: str) -> str:
    """How a system combines T and Y into c: "sum" or "concat"."""
    return _COMBINE.get(system) or system_module(system).COMBINE


def read_conditions(system: str, path: str | os.PathLike) -> dict[str, Tensor]:
    """A system's condition file, checked to hold every tensor its module's INPUTS names, with
    one row per condition."""
    inputs = load_file(str(path))
    expected = sorted(system_module(system).INPUTS)
    missing = [k for k in expected if k not in inputs]
    if missing:
        raise ValueError(
            f"{path}: expected tensors {expected} ({system} INPUTS), missing {missing}"
        )
    if len({inputs[k].shape[0] for k in expected}) != 1:
        raise ValueError(f"{path}: expected the same number of conditions (dim 0) in {expected}")
    return {k: inputs[k].float() for k in expected}


def _folder(entry: registry.SystemEntry, path: Path) -> Path:
    """A diffusers release's pipeline folder, from the path of its main file."""
    return path.parents[len(Path(entry.filename).parts) - 1]


def _load(entry: registry.SystemEntry, path: Path) -> nn.Module:
    manifest = None if entry.manifest is None else entry.manifest.split("/")[-1]
    module = system_module(entry.system)
    if entry.system == "uvit":
        return module.load_uvit(path, manifest).eval()
    if entry.system == "xmdpt":
        return module.load_xmdpt(path, manifest.removesuffix(".json"))
    if entry.system == "mdsgen":
        return module.load_mdsgen(path, manifest)
    if entry.system == "sd3":
        return module.load_sd3(_folder(entry, path))
    return module.load_audioldm_unet(_folder(entry, path))


def system_c(
    entry: registry.SystemEntry,
    model: nn.Module,
    inputs: dict[str, Tensor] | None,
    how: str | None = None,
    source: str = "",
) -> SystemC:
    """c of a loaded system at its initial t over its conditions: the condition file's rows,
    or for U-ViT every real class (its label table without the null row).

    Args:
        how: "sum" or "concat"; default the model's own (U-ViT: "concat", Table 4's reading).
    """
    module = system_module(entry.system)
    if entry.system == "uvit":
        labels = torch.arange(model.label_emb.num_embeddings - (1 if _has_null(entry) else 0))
        time, cond = module.condition_parts(model, labels, entry.initial_t)
        what = f"{len(labels)} ImageNet classes"
    else:
        time, cond = module.condition_parts(model, inputs, entry.initial_t)
        what = f"{cond.shape[0]} conditions ({entry.system} condition file)"
    return _system_c(entry, time, cond, what, how, source)


def _system_c(entry, time: Tensor, cond: Tensor, what: str, how: str | None, source: str):
    """SystemC of `entry` from its parts, combined the model's own way unless `how` says."""
    return SystemC(
        entry.name, entry.label, time, cond, how or combine_rule(entry.system), entry.initial_t,
        what, source, entry.system, entry.system != "uvit",
    )  # fmt: skip


def _has_null(entry: registry.SystemEntry) -> bool:
    """Whether the label table ends with a null row (the guided 256 and 512 models do)."""
    return "imagenet64" not in entry.name


def load_system(
    name: str, cache_dir: str | os.PathLike | None = None, how: str | None = None
) -> SystemC | Missing:
    """c of an appendix system from the weights cache and its condition file, or Missing with
    the command that provides the absent input (the weights first)."""
    entry = registry.get_system(name)
    path = fetch.locate(entry, cache_dir)
    if path is None:
        return Missing(name, entry.label, fetch.fetch_command(name))
    where = None if entry.system == "uvit" else conditions_path(entry.system, cache_dir)
    if where is not None and not where.is_file():
        return Missing(name, entry.label, conditions_command(entry.system))

    def produce(out: Path) -> None:  # the full model is loaded only here, once per input
        inputs = None if where is None else read_conditions(entry.system, where)
        parts = system_c(entry, _load(entry, path), inputs)
        save_file({"time": parts.time, "cond": parts.cond}, str(out / "parts.safetensors"),
                  metadata={"conditions": parts.conditions})  # fmt: skip

    # keyed by the files' identity: an edited weight or condition file is read again
    files = {"weights": path} | ({} if where is None else {"conditions": where})
    key = {"system": name, **{k: _identity(f) for k, f in files.items()}}
    folder, _ = artifacts.cached(SYSTEM_C_KIND, key, produce)
    with safe_open(str(folder / "parts.safetensors"), "pt") as f:
        time, cond, what = f.get_tensor("time"), f.get_tensor("cond"), f.metadata()["conditions"]
    note = "" if where is None else conditions_note(where)
    return _system_c(entry, time, cond, f"{what}: {note}" if note else what, how, str(path))


def _identity(path: Path) -> dict:
    """A file's path, size and modification time (what changes when it is replaced)."""
    stat = path.stat()
    return {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def load_systems(profile: str, names: list[str]) -> tuple[list[SystemC], list[Missing]]:
    """The appendix systems a paper-profile page measures: (present, absent with the command
    that provides each); none in the testbed profile, which has its own analogues."""
    check_profile(profile)
    if profile == "testbed":
        return [], []
    loaded = [load_system(name) for name in names]
    return [m for m in loaded if isinstance(m, SystemC)], [
        m for m in loaded if isinstance(m, Missing)
    ]


def with_reading(sys_c: SystemC, how: str) -> SystemC:
    """The same parts combined the other way (U-ViT's two readings), labelled with it."""
    label = sys_c.label.split(" (")[0] + (" (concatenation)" if how == "concat" else " (sum)")
    return dataclasses.replace(sys_c, how=how, label=label)


# ----------------------------------------------------------------------------- preparing


def mdsgen_conditions(folder: str | os.PathLike, frames: int = 32) -> dict[str, Tensor]:
    """MDSGen's inputs from a folder of CAVP feature files, as its inference.py reads them: each
    `.npz` holds `arr_0` (frames, 512); the first `frames` frames are kept.

    Shapes: -> {"video_features": (N, frames, 512)} float32, files in name order.
    """
    files = sorted(Path(folder).glob("*.npz"))
    if not files:
        raise FileNotFoundError(
            f"{folder}: expected CAVP feature files *.npz (arr_0: frames x 512)"
        )
    rows = []
    for f in files:
        with np.load(f, allow_pickle=False) as data:
            feats = torch.from_numpy(data["arr_0"]).float()
        if feats.ndim != 2 or feats.shape[0] < frames:
            raise ValueError(
                f"{f}: expected arr_0 of shape (>= {frames}, 512), got {tuple(feats.shape)}"
            )
        rows.append(feats[:frames])
    return {"video_features": torch.stack(rows)}


def describe(system: str, cache_dir: str | os.PathLike | None = None) -> str:
    """What a system's condition file must hold, where it goes, and whether it is there."""
    if system == "uvit":
        return "uvit: no condition file; c is measured over the ImageNet classes."
    path = conditions_path(system, cache_dir)
    lines = [f"{system}: {path} ({'present' if path.is_file() else 'missing'})", "tensors:"]
    lines += [f"  {name}: {spec}" for name, spec in system_module(system).INPUTS.items()]
    how = {
        "mdsgen": "--npz DIR (CAVP feature files, as MDSGen's inference.py reads them)",
        "sd3": "--pipeline DIR [--prompts FILE] (a local SD3 pipeline's CLIP encoders; default: "
        + default_prompts("sd3")[1]
        + ")",
        "audioldm": "--pipeline DIR [--prompts FILE] (a local AudioLDM pipeline's CLAP encoder; "
        "default: " + default_prompts("audioldm")[1] + ")",
        "xmdpt": "semantic-bottleneck xmdpt-conditions --dinov2-repo DIR (the DeepFashion test "
        "pairs; target poses drawn from their keypoints, DINOv2 and VAE weights from the cache)",
    }[system]
    return "\n".join([*lines, f"prepare with: {how}"])


def _cmd_conditions(args) -> int:
    system = args.system
    if args.npz is None and args.pipeline is None:
        print(describe(system, args.cache_dir))
        return 0
    if args.npz is not None:
        if system != "mdsgen":
            raise ValueError("--npz: expected system mdsgen (CAVP video features)")
        inputs = mdsgen_conditions(args.npz)
        note = f"{len(inputs['video_features'])} clips of CAVP features from {args.npz.name}/"
    else:
        if system not in PROMPT_SETS:
            raise ValueError("--pipeline: expected system sd3 or audioldm (prompt encoders)")
        if args.prompts is None:
            prompts, note = default_prompts(system)
        else:
            prompts = [p for p in args.prompts.read_text().splitlines() if p.strip()]
            note = f"{len(prompts)} prompts from {args.prompts.name}"
        inputs = system_module(system).encode_prompts(args.pipeline, prompts)
    where = conditions_path(system, args.cache_dir)
    out = checkpoint.save_atomic(inputs, where, metadata={"conditions": note})
    print(f"wrote {out}: {next(iter(inputs.values())).shape[0]} conditions")
    return 0


def add_parser(subparsers) -> None:
    """Register `conditions SYSTEM`: describe or prepare an appendix system's condition file."""
    parser = subparsers.add_parser(
        "conditions", help="describe or prepare an appendix system's condition file"
    )
    parser.add_argument("system", choices=[s for s in registry.SYSTEM_KINDS])
    parser.add_argument("--npz", type=Path, default=None, help="mdsgen: CAVP feature folder")
    parser.add_argument(
        "--prompts", type=Path, default=None, help="sd3/audioldm: one per line (default: a set)"
    )
    parser.add_argument("--pipeline", type=Path, default=None, help="a local pipeline folder")
    parser.add_argument("--cache-dir", type=Path, default=None, help="the weights cache")
    parser.set_defaults(func=_cmd_conditions)
