"""Model zoo: the official model families, state-dict compatible, built from their manifest config.

`build_model(family, **config)` takes a manifest's `family` and `config` as they stand; keyword
names follow the official constructors.
"""

from __future__ import annotations

import importlib

from torch import Tensor, nn

# family -> (module, class). Modules are imported on first use.
FAMILIES = {
    "dit": ("semantic_bottleneck.zoo.dit", "DiT"),
    "sit": ("semantic_bottleneck.zoo.dit", "SiT"),
    "repa": ("semantic_bottleneck.zoo.dit", "REPASiT"),
    "mg": ("semantic_bottleneck.zoo.dit", "MGSiT"),
    "lightningdit": ("semantic_bottleneck.zoo.lightningdit", "LightningDiT"),
    "mdt": ("semantic_bottleneck.zoo.mdt", "MDT"),
    "mdtv2": ("semantic_bottleneck.zoo.mdt", "MDTv2"),
}


def model_class(family: str) -> type[nn.Module]:
    """The class implementing `family` (one of FAMILIES)."""
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}; expected one of {sorted(FAMILIES)}")
    module, name = FAMILIES[family]
    return getattr(importlib.import_module(module), name)


def build_model(family: str, **config) -> nn.Module:
    """Build a model of `family` with the official constructor's keyword arguments.

    Args:
        family: manifest `family` field (dit, sit, repa, mg, lightningdit, mdt, mdtv2).
        **config: constructor keywords, e.g. a manifest's `config` unchanged.

    Returns:
        the model, in train mode as any freshly built nn.Module (call .eval() to sample).
    """
    cls = model_class(family)
    try:
        return cls(**config)
    except TypeError as err:
        raise ValueError(f"bad config for family {family!r}: {err}") from err


def denoiser(model: nn.Module):
    """The model as a callable (x, t, y, c_fn=None) -> prediction tensor (drops REPA's zs)."""

    def call(x: Tensor, t: Tensor, y: Tensor, c_fn=None) -> Tensor:
        out = model(x, t, y, c_fn=c_fn)
        return out[0] if isinstance(out, tuple) else out

    return call
