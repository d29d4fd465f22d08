"""The evaluators' downloadable inputs: where they are, and a clear error when they are not.

The ADM reference batch, torch-fidelity's Inception weights and the CLIP weights are registry
entries (`zoo/registry.py`), fetched by `semantic-bottleneck fetch NAME` into the verified
weights cache like the checkpoints. Nothing here downloads: a missing file is an error that
names it and the command that provides it.
"""

from __future__ import annotations

import os
from pathlib import Path

from semantic_bottleneck.zoo import fetch, registry
from semantic_bottleneck.zoo.checkpoint import load_state_dict

ADM_REFERENCE = "adm-ref-imagenet256"
INCEPTION = "inception-fidelity"
CLIP_L14 = "clip-vit-l-14-openai"


class MissingInputError(FileNotFoundError):
    """Inputs of an evaluation are not in the weights cache.

    Attributes:
        names: the registry names of the missing inputs.
    """

    def __init__(self, message: str, names: tuple[str, ...]):
        super().__init__(message)
        self.names = names


def missing_message(names: list[str], purpose: str) -> str:
    """One message naming each missing input, its file and the command that fetches it."""
    lines = [
        f"{purpose} needs inputs that are not in the weights cache ({fetch.default_cache_dir()}):"
    ]
    for name in names:
        entry = registry.get_entry(name)
        lines.append(f"  - {name} ({entry.filename}): run `{fetch.fetch_command(name)}`")
    lines.append("On an offline machine, fetch on a connected one and copy the cache folder.")
    return "\n".join(lines)


def locate_inputs(
    names: list[str], purpose: str, cache_dir: str | os.PathLike | None = None
) -> dict[str, Path]:
    """Paths of registry inputs in the weights cache.

    Args:
        names: registry names.
        purpose: what needs them, for the error message (e.g. "paper-profile FID").
        cache_dir: weights cache (default `fetch.default_cache_dir()`).

    Returns:
        {name: path of the main file}.

    Raises:
        MissingInputError: one or more are missing; the message lists all of them.
    """
    found = {name: fetch.locate(name, cache_dir) for name in names}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        raise MissingInputError(missing_message(missing, purpose), tuple(missing))
    return found


def check_tensor_only(path: str | os.PathLike) -> Path:
    """Make sure a torch file holds only tensors before a third-party loader unpickles it.

    torch-fidelity reads its Inception weights with `torch.load(weights_only=False)`; reading the
    file once with `weights_only=True` first refuses any file whose pickle asks for Python objects.

    Raises:
        FileNotFoundError: no such file.
        UnsafeCheckpointError: the pickle references anything beyond tensors and containers.
        CheckpointError: not a readable torch file, or an entry is not a tensor.
    """
    path = Path(path)
    load_state_dict(path)  # weights_only=True, memory-mapped (cheap); every entry a tensor
    return path
