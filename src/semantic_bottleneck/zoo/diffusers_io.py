"""Local, offline loading of diffusers models, and their config checked against a manifest.

The SD3 and AudioLDM modules (`zoo.sd3`, `zoo.audioldm`) load their denoiser through diffusers'
own classes from files already on disk: a model folder (config.json + weights), a pipeline folder
with the model in a subfolder (`transformer/`, `unet/`), or one weights file read with the class's
`from_single_file` and the config.json of a local folder. A path that does not exist is refused
before diffusers sees it, so a name is never taken for a Hub repository id and nothing is
downloaded. The condition inputs (prompt embeddings) travel as a safetensors file whose tensor
names are the `inputs` keys of the system's `condition_parts`.
"""

from __future__ import annotations

import inspect
import json
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from semantic_bottleneck.zoo.registry import read_manifest

WEIGHT_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")


def manifest_config(manifest_name: str) -> dict:
    """The constructor config of an appendix manifest, e.g. 'sd3_medium_transformer'."""
    name = manifest_name.removeprefix("appendix/").removesuffix(".json")
    return read_manifest(f"appendix/{name}.json")["config"]


def _plain(value: Any) -> Any:
    # JSON gives lists where a constructor's defaults and a loaded config give tuples
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def config_differences(config: Mapping, expected: Mapping, cls: type) -> list[str]:
    """Where `config` (a config.json) and `expected` (a manifest's config) build different models.

    A key absent from either side takes the default of `cls.__init__`, as diffusers does when it
    builds the model; keys starting with '_' (class name, versions, paths) are ignored.

    Returns:
        one line per differing key, 'key: manifest X, config Y'; empty when they agree.
    """
    params = inspect.signature(cls.__init__).parameters
    defaults = {k: p.default for k, p in params.items() if p.default is not p.empty}
    lines = []
    for key in sorted({*config, *expected, *defaults}):
        if key.startswith("_"):
            continue
        real = _plain(config.get(key, defaults.get(key)))
        want = _plain(expected.get(key, defaults.get(key)))
        if key not in params and key in config:
            lines.append(f"{key}: not an argument of {cls.__name__} (config {real!r})")
        elif real != want:
            lines.append(f"{key}: manifest {want!r}, config {real!r}")
    return lines


def _has_config(folder: Path) -> bool:
    return (folder / "config.json").is_file()


def load_local(
    cls: type,
    path: str | os.PathLike,
    subfolder: str,
    *,
    config: str | os.PathLike | None = None,
    dtype: torch.dtype | None = None,
):
    """A diffusers model of class `cls` from local files only.

    Args:
        cls: the diffusers model class (SD3Transformer2DModel, UNet2DConditionModel).
        path: a model folder (config.json and weights), a pipeline folder holding `subfolder`, or
            one weights file (`from_single_file`).
        subfolder: the model's folder in a pipeline ('transformer', 'unet').
        config: for a single file, the folder whose config.json describes it (the model folder
            or the pipeline folder); default: the file's own folder.
        dtype: torch dtype to load the weights in (default: as stored).

    Returns:
        the model, in eval mode.

    Raises:
        FileNotFoundError: `path` (or the config of a single file) is not where it should be.
    """
    what = f"{cls.__name__}"
    path = Path(path).expanduser()
    layouts = (
        f"a diffusers model folder with config.json and diffusion_pytorch_model*.safetensors, a "
        f"pipeline folder with {subfolder}/config.json, or one weights file "
        f"({', '.join(WEIGHT_SUFFIXES)}) beside its config.json"
    )
    if not path.exists():
        raise FileNotFoundError(f"{what}: {path} does not exist; expected {layouts}")
    if path.is_dir():
        if _has_config(path):
            folder, sub = path, None
        elif _has_config(path / subfolder):
            folder, sub = path, subfolder
        else:
            raise FileNotFoundError(
                f"{what}: {path} has neither config.json nor {subfolder}/config.json; "
                f"expected {layouts}"
            )
        model = cls.from_pretrained(
            str(folder), subfolder=sub, local_files_only=True, torch_dtype=dtype
        )
    else:
        if path.suffix not in WEIGHT_SUFFIXES:
            raise FileNotFoundError(f"{what}: {path} is not a weights file; expected {layouts}")
        base = Path(config).expanduser() if config is not None else path.parent
        if _has_config(base):
            sub = None
        elif _has_config(base / subfolder):
            sub = subfolder
        else:
            raise FileNotFoundError(
                f"{what}: a single file needs the config.json of a local diffusers folder; "
                f"{base} has neither config.json nor {subfolder}/config.json (pass config=)"
            )
        model = cls.from_single_file(
            str(path), config=str(base), subfolder=sub, local_files_only=True, torch_dtype=dtype
        )
    return model.eval()


def load_checked(
    cls: type,
    path: str | os.PathLike,
    subfolder: str,
    differences: Callable[[Mapping], list[str]],
    *,
    config: str | os.PathLike | None = None,
    dtype: torch.dtype | None = None,
):
    """`load_local`, then a warning (`warn_differences`) when the model's config is not the one
    its release should have.

    Args:
        cls, path, subfolder, config, dtype: as `load_local`.
        differences: the loaded config -> one line per key that differs from the release's.

    Returns:
        the model, in eval mode.
    """
    model = load_local(cls, path, subfolder, config=config, dtype=dtype)
    found = differences(model.config)
    if found:
        warn_differences(model, path, found, stacklevel=4)
    return model


def warn_differences(
    model, path: str | os.PathLike, differences: Sequence[str], stacklevel: int = 3
) -> None:
    """Warn (UserWarning) that a loaded model's config is not the one its release should have."""
    warnings.warn(
        f"{type(model).__name__} at {path} differs from its expected config: "
        + "; ".join(differences),
        stacklevel=stacklevel,
    )


def existing(path: str | os.PathLike, what: str) -> Path:
    """`path` as a Path, or a FileNotFoundError naming what was expected there."""
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; expected {what}")
    return path


def initial_timestep(path: str | os.PathLike, num_inference_steps: int, **kwargs: Any) -> float:
    """The t a pipeline feeds its model at the first sampling step, from its scheduler config.

    Builds the scheduler named by `_class_name` of `scheduler_config.json` (in `path`, or in its
    `scheduler/` subfolder) and calls its `set_timesteps`, as the pipeline does.

    Args:
        path: a pipeline folder or its scheduler folder.
        num_inference_steps: the pipeline's number of steps.
        **kwargs: further `set_timesteps` arguments (e.g. `mu` under dynamic shifting).
    """
    import diffusers

    path = Path(path).expanduser()
    for folder in (path, path / "scheduler"):
        file = folder / "scheduler_config.json"
        if file.is_file():
            config = json.loads(file.read_text())
            scheduler = getattr(diffusers, config["_class_name"]).from_config(config)
            scheduler.set_timesteps(num_inference_steps, **kwargs)
            return float(scheduler.timesteps[0])
    raise FileNotFoundError(f"no scheduler_config.json in {path} or {path / 'scheduler'}")


def save_inputs(path: str | os.PathLike, inputs: Mapping[str, Tensor], notes: str = "") -> None:
    """Write condition inputs as a safetensors file (float32, contiguous, on the CPU)."""
    tensors = {k: v.detach().float().cpu().contiguous() for k, v in inputs.items()}
    save_file(tensors, str(path), metadata={"notes": notes} if notes else None)


def load_inputs(path: str | os.PathLike, names: Sequence[str]) -> dict[str, Tensor]:
    """Read condition inputs written by `save_inputs`; every name in `names` must be present.

    Shapes: each tensor as stored, (N, d_in).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"condition inputs {path} do not exist (expected {list(names)})")
    tensors = load_file(str(path))
    missing = [n for n in names if n not in tensors]
    if missing:
        raise KeyError(f"{path}: missing {missing}; it holds {sorted(tensors)}")
    return {n: tensors[n] for n in names}


def require_transformers(what: str) -> None:
    """Raise a clear ImportError when `transformers` (the text encoders) is not installed."""
    try:
        import transformers  # noqa: F401
    except ImportError as err:
        raise ImportError(
            f"{what} runs the pipeline's text encoders, which need the 'transformers' package "
            "(pip install transformers)"
        ) from err
